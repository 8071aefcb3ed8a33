//! The frame decoder, as the daemon and the clients run it, on arbitrary bytes: it never panics,
//! never allocates past its cap, and a request it decodes encodes back to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mesh_proto::{
    ClientHello, FrameCodec, LenientCodec, Request, Response, ServerHello, read_frame,
};
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    // The daemon's request decoder, fed in two chunks (split where the first byte says, so a
    // frame boundary can fall anywhere) and drained after each, as tokio's Framed does.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut codec = LenientCodec::<Request, Response>::new();
    let mut buf = BytesMut::new();
    'chunks: for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Ok(request))) => round_trip(&request),
                // Undecodable payload: answered with an error, the stream stays in sync.
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                // Oversize or otherwise out of sync: the daemon closes the connection.
                Err(_) => break 'chunks,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);

    // The handshake decoder, and the clients' blocking readers.
    let mut hello = FrameCodec::<ClientHello, ServerHello>::new();
    let _ = hello.decode(&mut BytesMut::from(data));
    let _: Result<Response, _> = read_frame(&mut &data[..]);
    let _: Result<ServerHello, _> = read_frame(&mut &data[..]);
});

/// Encode a decoded request again and decode it: the same request.
fn round_trip(request: &Request) {
    let mut out = BytesMut::new();
    FrameCodec::<Response, Request>::new()
        .encode(request.clone(), &mut out)
        .expect("a decoded request encodes");
    let again = FrameCodec::<Request, Response>::new()
        .decode(&mut out)
        .expect("its own encoding decodes")
        .expect("a whole frame");
    assert_eq!(&again, request);
}

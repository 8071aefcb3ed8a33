use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::{ClientHello, Request, Response};

type ServerSide = FrameCodec<Request, Response>;
type ClientSide = FrameCodec<Response, Request>;

fn encode_req(req: &Request) -> BytesMut {
    let mut buf = BytesMut::new();
    ClientSide::new()
        .encode(req.clone(), &mut buf)
        .expect("encode");
    buf
}

proptest! {
    #[test]
    fn request_round_trips(req in any::<Request>()) {
        let mut buf = encode_req(&req);
        let back = ServerSide::new().decode(&mut buf).expect("decode").expect("complete frame");
        prop_assert_eq!(back, req);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn response_round_trips(resp in any::<Response>()) {
        let mut buf = BytesMut::new();
        ServerSide::new().encode(resp.clone(), &mut buf).expect("encode");
        let back = ClientSide::new().decode(&mut buf).expect("decode").expect("complete frame");
        prop_assert_eq!(back, resp);
    }

    #[test]
    fn blocking_and_async_paths_agree(req in any::<Request>()) {
        let mut wire = Vec::new();
        write_frame(&mut wire, &req).expect("write");
        prop_assert_eq!(&wire[..], &encode_req(&req)[..]);
        let back: Request = read_frame(&mut &wire[..]).expect("read");
        prop_assert_eq!(back, req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = ServerSide::new();
        // Any outcome is fine except a panic or an allocation from the header.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        let _ = read_frame::<_, Request>(&mut &bytes[..]);
    }
}

#[test]
fn oversize_header_is_rejected_before_allocating() {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    buf.extend_from_slice(&u32::MAX.to_be_bytes());
    let cap = buf.capacity();
    let err = ServerSide::new().decode(&mut buf).expect_err("must refuse");
    assert!(
        matches!(err, FrameError::TooLarge { len, .. } if len == u32::MAX as usize),
        "{err}"
    );
    assert_eq!(
        buf.capacity(),
        cap,
        "decoder reserved memory for a refused frame"
    );

    // Blocking path: a reader that would hand out 4 GiB of zeros fails after the header.
    let header = u32::MAX.to_be_bytes();
    let mut reader = io::Read::chain(&header[..], io::repeat(0));
    let err = read_frame::<_, Request>(&mut reader).expect_err("must refuse");
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
}

#[test]
fn limit_plus_one_is_rejected_and_limit_is_accepted() {
    let mut codec = FrameCodec::<Vec<u8>, Vec<u8>>::with_max(64);
    let mut buf = BytesMut::new();
    // A 62-byte vec encodes as 1 length byte + 62 bytes = 63; 64 bytes encodes as 65.
    codec.encode(vec![7u8; 62], &mut buf).expect("fits");
    assert!(matches!(
        codec.encode(vec![7u8; 64], &mut buf),
        Err(FrameError::TooLarge { len: 65, max: 64 })
    ));
    let mut oversize = BytesMut::new();
    oversize.extend_from_slice(&65u32.to_be_bytes());
    assert!(matches!(
        codec.decode(&mut oversize),
        Err(FrameError::TooLarge { len: 65, max: 64 })
    ));
    assert_eq!(codec.decode(&mut buf).expect("decode"), Some(vec![7u8; 62]));
}

#[test]
fn truncated_frame_waits_then_fails_at_eof() {
    let full = encode_req(&Request::Ping(crate::Ping {}));
    let hello = {
        let mut b = BytesMut::new();
        FrameCodec::<ClientHello, ClientHello>::new()
            .encode(ClientHello::current("9.9.9"), &mut b)
            .expect("encode");
        b
    };
    for cut in 1..hello.len() {
        let mut part = BytesMut::from(&hello[..cut]);
        let mut codec = FrameCodec::<ClientHello, ClientHello>::new();
        assert!(
            codec
                .decode(&mut part)
                .expect("partial is not an error")
                .is_none()
        );
        assert!(matches!(
            codec.decode_eof(&mut part),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame::<_, ClientHello>(&mut &hello[..cut]),
            Err(FrameError::Truncated)
        ));
    }
    assert!(matches!(
        read_frame::<_, Request>(&mut &[][..]),
        Err(FrameError::Closed)
    ));
    let mut empty = BytesMut::new();
    assert!(
        ServerSide::new()
            .decode_eof(&mut empty)
            .expect("clean eof")
            .is_none()
    );
    assert!(!full.is_empty());
}

#[test]
fn two_frames_in_one_read() {
    let a = Request::Ping(crate::Ping {});
    let b = Request::Deregister(crate::Deregister {
        session_id: "abcd".into(),
    });
    let mut buf = encode_req(&a);
    buf.extend_from_slice(&encode_req(&b));
    let mut codec = ServerSide::new();
    assert_eq!(codec.decode(&mut buf).expect("first"), Some(a));
    assert_eq!(codec.decode(&mut buf).expect("second"), Some(b));
    assert_eq!(codec.decode(&mut buf).expect("none left"), None);
}

#[test]
fn garbage_payload_is_malformed_and_stream_stays_in_sync() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&4u32.to_be_bytes());
    buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let good = Request::Ping(crate::Ping {});
    buf.extend_from_slice(&encode_req(&good));
    let mut codec = ServerSide::new();
    let err = codec.decode(&mut buf).expect_err("garbage");
    assert!(err.is_recoverable(), "{err}");
    assert_eq!(codec.decode(&mut buf).expect("next frame"), Some(good));
}

#[test]
fn lenient_codec_yields_malformed_payloads_as_items() {
    use futures::StreamExt;
    let good = Request::Ping(crate::Ping {});
    let mut wire = vec![0, 0, 0, 2, 0xee, 0xee];
    wire.extend_from_slice(&encode_req(&good));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut frames =
            tokio_util::codec::FramedRead::new(&wire[..], LenientCodec::<Request, Response>::new());
        assert!(matches!(
            frames.next().await,
            Some(Ok(Err(FrameError::Malformed(_))))
        ));
        assert!(matches!(frames.next().await, Some(Ok(Ok(r))) if r == good));
        assert!(frames.next().await.is_none());
    });
}

//! Request handling: arbitrary bytes as a request frame to a real daemon (`mesh_daemon::run`,
//! in this process, with a real SQLite file in a temp dir). The daemon answers every whole frame,
//! never with an internal error, and keeps serving. A decodable `Ask`/`AwaitAnswer` has its wait
//! capped at 50 ms so that no input can park an iteration.
#![no_main]

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mesh_proto::{
    ClientHello, ErrorCode, MAX_FRAME_LEN, Request, Response, ServerHello, read_frame, write_frame,
};

struct Daemon {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("mesh.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let mut config = mesh_daemon::Config::new(dir.path().join("mesh.db"));
        // In-process: every connection is this process's; no per-process limit.
        config.max_connections_per_process = 0;
        std::thread::spawn(move || {
            let runtime = mesh_daemon::runtime().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
                let never = tokio_util::sync::CancellationToken::new();
                mesh_daemon::run(listener, config, never)
                    .await
                    .expect("daemon");
            });
        });
        for _ in 0..500 {
            if UnixStream::connect(&socket).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon { socket, _dir: dir }
    })
}

fn connect() -> UnixStream {
    let mut s = UnixStream::connect(&daemon().socket).expect("the daemon is listening");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(&mut s, &ClientHello::current("fuzz")).unwrap();
    let hello: ServerHello = read_frame(&mut s).expect("handshake answer");
    assert_eq!(hello.error, None);
    s
}

fuzz_target!(|data: &[u8]| {
    let payload = match postcard::from_bytes::<Request>(data) {
        Ok(mut request) => {
            match &mut request {
                Request::Ask(a) => a.timeout_ms = a.timeout_ms.min(50),
                Request::AwaitAnswer(a) => a.timeout_ms = a.timeout_ms.min(50),
                _ => {}
            }
            postcard::to_stdvec(&request).unwrap()
        }
        Err(_) => data.to_vec(),
    };
    if payload.len() > MAX_FRAME_LEN {
        return;
    }
    let mut s = connect();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    s.write_all(&frame).unwrap();
    let answer: Response = read_frame(&mut s).expect("the daemon answers every whole frame");
    if let Response::Error(e) = &answer {
        assert_ne!(e.code, ErrorCode::Internal, "{e}");
    }
    drop(s);
    // And it goes on serving.
    let mut s = connect();
    write_frame(&mut s, &Request::Ping(mesh_proto::Ping {})).unwrap();
    let pong: Response = read_frame(&mut s).expect("a pong");
    assert!(matches!(pong, Response::Pong(_)), "{pong:?}");
});

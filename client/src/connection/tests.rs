//! How the client handles handshake answers, against a plain std listener in a temp dir that
//! reads the ClientHello frame and writes a canned ServerHello.

use std::os::unix::net::UnixListener;
use std::thread;

use mesh_proto::{ErrorCode, WireError};

use super::*;

fn hello(protocol: u32, version: &str, error: Option<WireError>) -> ServerHello {
    ServerHello {
        magic: MAGIC,
        protocol,
        program_version: version.into(),
        pid: 4242,
        error,
    }
}

/// Serve one connection: read the client's hello, answer `answer`, then answer every request
/// with `Pong` until the client goes away.
fn fake_daemon(
    answer: ServerHello,
) -> (tempfile::TempDir, PathBuf, thread::JoinHandle<ClientHello>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mesh.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let got: ClientHello = read_frame(&mut stream).unwrap();
        write_frame(&mut stream, &answer).unwrap();
        while let Ok(req) = read_frame::<_, Request>(&mut stream) {
            let resp = match req {
                // Answered with another request's response (a confused daemon).
                Request::Ping(_) | Request::WhoAmI(_) => Response::Pong(Pong {
                    pid: 4242,
                    uptime_ms: 1,
                }),
                _ => Response::Error(WireError::new(ErrorCode::UnknownPeer, "no such peer `x`")),
            };
            write_frame(&mut stream, &resp).unwrap();
        }
        got
    });
    (dir, socket, handle)
}

#[test]
fn older_daemon_protocol_is_a_version_mismatch() {
    let older = PROTOCOL_VERSION - 1;
    let (_dir, socket, server) = fake_daemon(hello(older, "0.0.1", None));
    let err = Connection::connect(&socket, &ConnectOptions::default()).unwrap_err();
    assert!(
        matches!(err, ClientError::VersionMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "daemon is version 0.0.1 (protocol {older}) but this mesh is {} (protocol {PROTOCOL_VERSION}): restart it with `mesh restart`",
            env!("CARGO_PKG_VERSION")
        )
    );
    let sent = server.join().unwrap();
    assert_eq!(sent, ClientHello::current(env!("CARGO_PKG_VERSION")));
}

#[test]
fn newer_daemon_protocol_says_upgrade() {
    // A newer daemon refuses us itself, and says so in `error`; the versions still decide.
    let refusal = WireError::new(ErrorCode::Incompatible, "protocol 2 required");
    let (_dir, socket, _server) = fake_daemon(hello(PROTOCOL_VERSION + 1, "9.0.0", Some(refusal)));
    let err = Connection::connect(&socket, &ConnectOptions::default()).unwrap_err();
    assert!(err.to_string().ends_with("upgrade it"), "{err}");
}

#[test]
fn refusal_is_typed() {
    let refusal = WireError::new(ErrorCode::Busy, "too many connections");
    let (_dir, socket, _server) =
        fake_daemon(hello(PROTOCOL_VERSION, "0.1.0", Some(refusal.clone())));
    match Connection::connect(&socket, &ConnectOptions::default()) {
        Err(ClientError::Refused(w)) => assert_eq!(w, refusal),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn accepted_connection_calls_and_maps_remote_errors() {
    let (_dir, socket, _server) = fake_daemon(hello(PROTOCOL_VERSION, "0.1.0", None));
    let mut conn = Connection::connect(&socket, &ConnectOptions::default()).unwrap();
    assert_eq!(conn.daemon_pid(), 4242);
    assert_eq!(conn.daemon_version(), "0.1.0");
    assert_eq!(conn.ping().unwrap().pid, 4242);
    let err = conn
        .message_status(MessageStatus { message_id: 1 })
        .unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::UnknownPeer));
    // A remote error leaves the connection usable.
    assert!(conn.ping().is_ok());
    // An answer of the wrong type names the request and what came instead.
    let err = conn
        .whoami(WhoAmI {
            caller: mesh_proto::Caller::default(),
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Unexpected {
                request: "WhoAmI",
                response: "Pong"
            }
        ),
        "{err:?}"
    );
    assert!(conn.ping().is_ok());
}

#[test]
fn wrong_magic_is_not_a_mesh_daemon() {
    let mut answer = hello(PROTOCOL_VERSION, "0.1.0", None);
    answer.magic = 0x1234_5678;
    let (_dir, socket, _server) = fake_daemon(answer);
    let err = Connection::connect(&socket, &ConnectOptions::default()).unwrap_err();
    assert!(matches!(err, ClientError::NotAMeshDaemon { .. }), "{err:?}");
}

#[test]
fn silent_listener_times_out_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mesh.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let opts = ConnectOptions {
        handshake_timeout: Duration::from_millis(100),
        ..ConnectOptions::default()
    };
    let err = Connection::connect(&socket, &opts).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}

#[test]
fn missing_or_stale_socket_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("mesh.sock");
    let err = Connection::connect(&socket, &ConnectOptions::default()).unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
    // A socket file nobody listens on any more: refused.
    drop(UnixListener::bind(&socket).unwrap());
    let err = Connection::connect(&socket, &ConnectOptions::default()).unwrap_err();
    assert!(err.is_not_running(), "{err:?}");
}

#[test]
fn pipelined_handshake_checks_the_hello_at_the_first_call() {
    let (_dir, socket, _server) = fake_daemon(hello(PROTOCOL_VERSION, "0.1.0", None));
    let mut conn = Connection::connect_pipelined(&socket, &ConnectOptions::default()).unwrap();
    assert_eq!(conn.daemon_pid(), 0, "unknown until the first answer");
    assert_eq!(conn.ping().unwrap().pid, 4242);
    assert_eq!(conn.daemon_pid(), 4242);
    assert!(conn.ping().is_ok());

    let older = PROTOCOL_VERSION - 1;
    let (_dir, socket, _server) = fake_daemon(hello(older, "0.0.1", None));
    let mut conn = Connection::connect_pipelined(&socket, &ConnectOptions::default()).unwrap();
    let err = conn.ping().unwrap_err();
    assert!(
        matches!(err, ClientError::VersionMismatch { .. }),
        "{err:?}"
    );
    assert!(conn.ping().is_err(), "a refused connection stays unusable");
}

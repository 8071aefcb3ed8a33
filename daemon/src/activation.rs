//! Getting the listening socket: inherited from systemd (`LISTEN_FDS`) or launchd
//! (`launch_activate_socket`), or bound by the daemon itself at `mesh.sock` (mode 0600) while
//! holding an exclusive lock on `mesh.lock`, so that two daemons never serve one state dir.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesh_proto::{ClientHello, MAGIC, ServerHello, read_frame, write_frame};

use crate::paths::StateDir;

/// How long `acquire` waits for a lock held by a daemon that does not answer yet.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// Connect, read and write timeout of the hello probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the listener came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Systemd,
    Launchd,
    /// Bound by this daemon; the socket file is removed on clean shutdown.
    Bound,
}

/// A listener ready to serve, plus what must live as long as the daemon.
#[derive(Debug)]
pub struct Acquired {
    /// Blocking-mode std listener; the caller makes it non-blocking for tokio.
    pub listener: UnixListener,
    pub source: Source,
    /// The flock on `mesh.lock`, held for the daemon's whole life.
    pub lock: File,
    /// The socket path to unlink on clean shutdown (only when `source` is `Bound`).
    pub remove_on_exit: Option<PathBuf>,
    /// Device and inode of the socket file this daemon bound (only when `source` is
    /// `Bound`): the daemon watches that the path still names it, and removes it on exit only
    /// if it does.
    pub bound_id: Option<(u64, u64)>,
}

/// Device and inode of what `path` names, not following a symbolic link.
pub fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("a daemon is already running (pid {pid}) on {socket}")]
    AlreadyRunning { pid: u32, socket: PathBuf },
    // Transparent: `{0}` plus the io::Error as its source would print the message twice.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Take a listener passed by systemd or launchd, if any. Call before starting the tokio
/// runtime or any other thread: when activation variables are present it reads and then
/// unsets them (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) so children do not inherit them.
pub fn inherited() -> std::io::Result<Option<(UnixListener, Source)>> {
    #[cfg(target_os = "macos")]
    {
        launchd()
    }
    #[cfg(not(target_os = "macos"))]
    {
        systemd()
    }
}

/// Acquire the listener: inherited if socket-activated, else lock, check for a live or stale
/// socket, bind `mesh.sock` with mode 0600. Call before any other thread exists (see
/// [`inherited`]).
pub fn acquire(state: &StateDir) -> Result<Acquired, ActivationError> {
    acquire_with(state, LOCK_WAIT)
}

fn acquire_with(state: &StateDir, lock_wait: Duration) -> Result<Acquired, ActivationError> {
    let activated = inherited()?;
    let socket = state.socket();
    if activated.is_none() {
        sockaddr(&socket)?;
    }
    state.ensure()?;
    let lock = take_lock(state, &socket, lock_wait)?;
    if let Some((listener, source)) = activated {
        return Ok(Acquired {
            listener,
            source,
            lock,
            remove_on_exit: None,
            bound_id: None,
        });
    }
    // Something that is not a socket (a dangling symbolic link, a file left by hand) would
    // make bind fail with "Address already in use" forever: we hold the lock, so remove it.
    if let Ok(meta) = fs::symlink_metadata(&socket) {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if !kind.is_socket() {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_dir() {
                "a directory"
            } else {
                "not a socket"
            };
            tracing::warn!(
                "removing {} ({what}) to bind the socket there",
                socket.display()
            );
            let removed = if kind.is_dir() {
                fs::remove_dir(&socket)
            } else {
                fs::remove_file(&socket)
            };
            removed.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} is {what}, not the daemon's socket, and cannot be removed: {e}",
                        socket.display()
                    ),
                )
            })?;
        }
    }
    match probe(&socket) {
        Probe::Missing => {}
        Probe::Daemon(pid) => return Err(ActivationError::AlreadyRunning { pid, socket }),
        Probe::Stale => {
            tracing::info!("removing stale socket {}", socket.display());
            fs::remove_file(&socket).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove stale {}: {e}", socket.display()),
                )
            })?;
        }
        Probe::Silent(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "something is listening on {} but does not answer as a mesh daemon ({e}); \
                     stop it or remove the file",
                    socket.display()
                ),
            )
            .into());
        }
    }
    let listener = bind_private(&socket)?;
    let bound_id = Some(file_id(&socket)?);
    Ok(Acquired {
        listener,
        source: Source::Bound,
        lock,
        remove_on_exit: Some(socket),
        bound_id,
    })
}

/// Lock `mesh.lock`. While another process holds it, return `AlreadyRunning` as soon as a
/// daemon answers on the socket; give up after `wait`.
fn take_lock(state: &StateDir, socket: &Path, wait: Duration) -> Result<File, ActivationError> {
    let path = state.daemon_lock();
    let mut file = crate::paths::open_regular(
        &path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
        false,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                let msg = format!("cannot lock {}: {e}", path.display());
                return Err(io::Error::new(e.kind(), msg).into());
            }
        }
        if let Probe::Daemon(pid) = probe(socket) {
            return Err(ActivationError::AlreadyRunning {
                pid,
                socket: socket.to_path_buf(),
            });
        }
        if Instant::now() >= deadline {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another mesh daemon{holder} holds {} but does not answer on {}; \
                     stop it (`mesh stop`, or kill that process) and try again",
                    path.display(),
                    socket.display()
                ),
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Record the holder for diagnostics; the lock, not this text, is what counts.
    let written = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    written
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    Ok(file)
}

/// What is at the socket path.
enum Probe {
    Missing,
    /// A mesh daemon answered the hello with this pid.
    Daemon(u32),
    /// Nothing listens (connection refused, or not a socket).
    Stale,
    /// Something accepted but did not answer, or the path could not be probed.
    Silent(io::Error),
}

fn probe(socket: &Path) -> Probe {
    match connect_timeout(socket, PROBE_TIMEOUT) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Missing,
        Err(e)
            if e.kind() == io::ErrorKind::ConnectionRefused
                || e.raw_os_error() == Some(libc::ENOTSOCK) =>
        {
            Probe::Stale
        }
        Err(e) => Probe::Silent(e),
        Ok(mut stream) => match hello(&mut stream) {
            Ok(pid) => Probe::Daemon(pid),
            Err(e) => Probe::Silent(e),
        },
    }
}

/// Send our hello and return the daemon's pid from its answer.
fn hello(stream: &mut UnixStream) -> io::Result<u32> {
    write_frame(stream, &ClientHello::current(env!("CARGO_PKG_VERSION")))
        .map_err(io::Error::other)?;
    let answer: ServerHello = read_frame(stream).map_err(io::Error::other)?;
    if answer.magic != MAGIC {
        return Err(io::Error::other("the answer is not a mesh hello"));
    }
    Ok(answer.pid)
}

/// A `sockaddr_un` for `path`, or a clear error if the path does not fit in `sun_path`.
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is a plain C struct; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    let room = addr.sun_path.len() - 1; // the terminating NUL
    if bytes.len() > room || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is {} bytes; a Unix socket path may have at most {room} here. \
                 Set CLAUDE_MESH_HOME to a shorter directory",
                path.display(),
                bytes.len()
            ),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    #[cfg(target_os = "macos")]
    {
        addr.sun_len = len as u8;
    }
    Ok((addr, len as libc::socklen_t))
}

/// `connect(2)` without blocking longer than `timeout` (a daemon with a full backlog makes a
/// blocking connect hang). The stream comes back blocking, with read/write timeouts.
fn connect_timeout(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let (addr, len) = sockaddr(path)?;
    // SAFETY: socket(2) takes integers only.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_cloexec(fd.as_raw_fd())?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un whose first `len` bytes are initialized.
        let r = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
                len,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EISCONN) => break,
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN | libc::EINPROGRESS | libc::EALREADY) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return Err(e),
        }
    }
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Bind `path` so that the socket file is created 0600 (umask 0177 around the bind; the
/// umask is process-wide, hence done before other threads run), then chmod it to be sure.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask(2) cannot fail and only swaps the process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFD/F_SETFD) on an fd we own touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Check that an inherited fd is a listening Unix stream socket, make it close-on-exec and
/// take ownership of it.
fn adopt(fd: RawFd) -> io::Result<UnixListener> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited fd {fd} is not a listening Unix stream socket ({what})"),
        )
    };
    // SAFETY: libc::stat is plain data; fstat writes it fully on success.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; a closed fd only yields EBADF.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(bad("not a socket"));
    }
    // SAFETY: the service manager handed this fd to us and nothing else in the process owns
    // it; from here on it is closed on every error path by the OwnedFd.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if sockopt(&owned, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(bad("not SOCK_STREAM"));
    }
    if sockopt(&owned, libc::SO_ACCEPTCONN)? == 0 {
        return Err(bad("not listening"));
    }
    // SAFETY: sockaddr_storage is plain data; getsockname fills at most `len` bytes of it.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` are valid out-pointers of the advertised size.
    let r = unsafe {
        libc::getsockname(
            owned.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::c_int::from(ss.ss_family) != libc::AF_UNIX {
        return Err(bad("not AF_UNIX"));
    }
    set_cloexec(owned.as_raw_fd())?;
    Ok(UnixListener::from(owned))
}

fn sockopt(fd: &OwnedFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid out-pointers; the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut val as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val)
}

#[cfg(not(target_os = "macos"))]
fn systemd() -> io::Result<Option<(UnixListener, Source)>> {
    if std::env::var_os("LISTEN_PID").is_none() && std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    // SAFETY: `inherited`'s documented precondition: no other thread exists yet, so nothing
    // reads the environment concurrently. Outside activation (no variables) we never get here.
    let fds = unsafe { sd_notify::listen_fds_and_unset_env() };
    // SAFETY: as above.
    unsafe { std::env::remove_var("LISTEN_FDNAMES") };
    let mut fds = fds?;
    let Some(first) = fds.next() else {
        return Ok(None);
    };
    for extra in fds {
        tracing::warn!("closing unexpected extra inherited fd {extra}");
        // SAFETY: the fd was passed to us by systemd and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(extra) });
    }
    Ok(Some((adopt(first)?, Source::Systemd)))
}

#[cfg(target_os = "macos")]
fn launchd() -> io::Result<Option<(UnixListener, Source)>> {
    // SAFETY: the signature of launch_activate_socket(3) in <launch.h>, part of libSystem.
    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const libc::c_char,
            fds: *mut *mut libc::c_int,
            cnt: *mut libc::size_t,
        ) -> libc::c_int;
    }
    let mut fds: *mut libc::c_int = std::ptr::null_mut();
    let mut cnt: libc::size_t = 0;
    // SAFETY: the name is a NUL-terminated literal; `fds` and `cnt` are valid out-pointers.
    let err = unsafe { launch_activate_socket(c"mesh".as_ptr(), &mut fds, &mut cnt) };
    if err == libc::ESRCH || err == libc::ENOENT {
        return Ok(None); // not under launchd, or no socket of that name in the plist
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    let raw: Vec<RawFd> = if fds.is_null() {
        Vec::new()
    } else {
        // SAFETY: on success launchd returns a malloc'd array of `cnt` fds.
        unsafe { std::slice::from_raw_parts(fds, cnt) }.to_vec()
    };
    // SAFETY: the array was allocated by launchd with malloc and is ours to free (free(NULL)
    // is a no-op).
    unsafe { libc::free(fds.cast::<libc::c_void>()) };
    let mut raw = raw.into_iter();
    let Some(first) = raw.next() else {
        return Ok(None);
    };
    for extra in raw {
        // SAFETY: launchd handed this fd to us and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(extra) });
    }
    Ok(Some((adopt(first)?, Source::Launchd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixDatagram;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Answer one hello on `listener` as a daemon with pid `pid`.
    fn responder(listener: UnixListener, pid: u32) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let hello: ClientHello = read_frame(&mut s).unwrap();
            assert_eq!(hello.magic, MAGIC);
            let answer = ServerHello {
                magic: MAGIC,
                protocol: hello.protocol,
                program_version: "test".into(),
                pid,
                error: None,
            };
            write_frame(&mut s, &answer).unwrap();
        })
    }

    #[test]
    fn fresh_dir_binds_private_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        let got = acquire(&state).unwrap();
        assert_eq!(got.source, Source::Bound);
        assert_eq!(
            got.remove_on_exit.as_deref(),
            Some(state.socket().as_path())
        );
        assert!(
            fs::metadata(state.socket())
                .unwrap()
                .file_type()
                .is_socket()
        );
        assert_eq!(mode(&state.socket()), 0o600);
        assert_eq!(mode(state.root()), 0o700);
        assert_eq!(mode(&state.daemon_lock()), 0o600);
        UnixStream::connect(state.socket()).unwrap();
    }

    #[test]
    fn stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        state.ensure().unwrap();
        drop(UnixListener::bind(state.socket()).unwrap());
        assert!(state.socket().exists());
        let got = acquire(&state).unwrap();
        assert_eq!(got.source, Source::Bound);
        UnixStream::connect(state.socket()).unwrap();
    }

    #[test]
    fn second_daemon_sees_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        let first = acquire(&state).unwrap();
        let answering = responder(first.listener.try_clone().unwrap(), 4242);
        match acquire(&state) {
            Err(ActivationError::AlreadyRunning { pid, socket }) => {
                assert_eq!(pid, 4242);
                assert_eq!(socket, state.socket());
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        answering.join().unwrap();
    }

    #[test]
    fn unlocked_but_answering_socket_is_already_running() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        state.ensure().unwrap();
        let answering = responder(UnixListener::bind(state.socket()).unwrap(), 7);
        let err = acquire(&state).unwrap_err();
        assert!(
            matches!(err, ActivationError::AlreadyRunning { pid: 7, .. }),
            "{err}"
        );
        answering.join().unwrap();
    }

    #[test]
    fn silent_lock_holder_times_out_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        let Acquired { listener, lock, .. } = acquire(&state).unwrap();
        drop(listener);
        let err = acquire_with(&state, Duration::from_millis(300)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&state.daemon_lock().display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(lock);
        acquire(&state).unwrap();
    }

    #[test]
    fn too_long_path_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("x".repeat(120)));
        let msg = acquire(&state).unwrap_err().to_string();
        assert!(msg.contains(&state.socket().display().to_string()), "{msg}");
        assert!(msg.contains("CLAUDE_MESH_HOME"), "{msg}");
        assert!(!state.root().exists());
    }

    #[test]
    fn adopt_checks_the_fd() {
        let tmp = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(tmp.path().join("s")).unwrap();
        let fd = listener.into_raw_fd();
        adopt(fd).unwrap();
        let file = File::create(tmp.path().join("f")).unwrap();
        assert!(adopt(file.into_raw_fd()).is_err());
        let dgram = UnixDatagram::bind(tmp.path().join("d")).unwrap();
        assert!(adopt(dgram.into_raw_fd()).is_err());
    }
}

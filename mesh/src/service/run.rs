//! Running a service-manager command with a deadline (a wedged D-Bus must not hang install).

use std::ffi::OsString;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::changes::ServiceError;

/// How long one `systemctl` / `launchctl` call may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `program args…` with `env` added; `Err` only when it cannot run or exceeds [`TIMEOUT`].
pub fn run(
    program: &str,
    args: &[&str],
    env: &[(OsString, OsString)],
) -> Result<Output, ServiceError> {
    let shown = shown(program, args);
    let fail = |detail: String| ServiceError::Command {
        command: shown.clone(),
        detail,
    };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    // Drain both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("no answer after {TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Like [`run`], but a non-zero exit is an error carrying stderr.
pub fn check(
    program: &str,
    args: &[&str],
    env: &[(OsString, OsString)],
) -> Result<Output, ServiceError> {
    let out = run(program, args, env)?;
    if out.success {
        Ok(out)
    } else {
        let detail = out.stderr.trim();
        Err(ServiceError::Command {
            command: shown(program, args),
            detail: if detail.is_empty() {
                "non-zero exit".to_owned()
            } else {
                detail.to_owned()
            },
        })
    }
}

/// The command as a user would type it.
pub fn shown(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

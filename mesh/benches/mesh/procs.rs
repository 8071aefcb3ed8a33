//! Measuring processes: `/proc` accounting (RSS, CPU time), and compiling and timing the
//! reference binaries. The daemon and session guards are mesh-testkit's (`mesh_testkit::procs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use mesh_testkit::procs::{Daemon, InProcessDaemon, Sleepers, register};
pub use mesh_testkit::{mesh_bin, opts};

use crate::report::{Stats, stats, us};

/// `(VmRSS, VmHWM)` of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time a process has used so far (all its threads), in µs, from the scheduler's own
/// accounting (`/proc/<pid>/task/*/schedstat`, nanoseconds).
pub fn cpu_us(pid: u32) -> f64 {
    let mut ns = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e3
}

/// CPU time a whole process has used so far, in µs: all its threads, including those that
/// already exited (which `cpu_us` misses: it sums the live threads' `schedstat`). The kernel's
/// CPU clock of the process (`clock_getcpuclockid` + `clock_gettime`), the same scheduler
/// accounting in nanoseconds.
pub fn process_cpu_us(pid: u32) -> f64 {
    let pid = libc::pid_t::try_from(pid).unwrap();
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the result; the call only writes it.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    assert_eq!(rc, 0, "clock_getcpuclockid({pid}): error {rc}");
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(
        rc,
        0,
        "clock_gettime(CPU clock of {pid}): {}",
        std::io::Error::last_os_error()
    );
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// CPUs this process may run on (its affinity), at least 1.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most operations per second a path that costs `cpu_us_per_op` µs of CPU time in total
/// (all its processes) could reach on this machine's CPUs if it never waited at all.
pub fn cpu_bound(cpu_us_per_op: f64) -> f64 {
    if cpu_us_per_op <= 0.0 {
        return f64::INFINITY;
    }
    cpus() as f64 * 1e6 / cpu_us_per_op
}

/// CPU time of the calling thread so far, in µs.
pub fn thread_cpu_us() -> f64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1e3
}

/// Time `n` calls of `f` (µs each), and the daemon's CPU time per call over the loop.
pub fn timed(n: usize, daemon_pid: u32, mut f: impl FnMut(usize)) -> (Stats, f64) {
    let cpu0 = cpu_us(daemon_pid);
    let lat = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            us(t.elapsed())
        })
        .collect();
    let cpu = (cpu_us(daemon_pid) - cpu0) / n as f64;
    (stats(lat), cpu)
}

/// Compile `src` with the toolchain's rustc at -C opt-level=3.
pub fn compile(dir: &Path, name: &str, src: &str) -> PathBuf {
    let source = dir.join(format!("{name}.rs"));
    let out = dir.join(name);
    fs::write(&source, src).unwrap();
    let status = Command::new(rustc())
        .args(["-C", "opt-level=3", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "rustc failed on {}", source.display());
    out
}

/// `$RUSTC`, else the rustc next to the cargo running us, else `rustc` from PATH.
fn rustc() -> PathBuf {
    if let Some(r) = std::env::var_os("RUSTC").filter(|v| !v.is_empty()) {
        return r.into();
    }
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO").map(PathBuf::from));
    if let Some(sibling) = cargo.and_then(|c| Some(c.parent()?.join("rustc")))
        && sibling.exists()
    {
        return sibling;
    }
    "rustc".into()
}

/// Wall time of spawn + exit of `cmd`, in µs.
pub fn time_exec(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let e = us(t.elapsed());
    assert!(status.success(), "{cmd:?} failed: {status}");
    e
}

//! Socket limits: a raw `UnixStream` ping-pong of the protocol's very frame sizes (pinned to one
//! CPU and not), and the raw hand-off chain an answer takes inside the daemon (a thread wakes a
//! tokio task, which writes to a socket, which wakes a blocked reader).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mesh_proto::{Request, Response, write_frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::report::{Stats, fmt_stats, ratio, stats, us, us_between};

/// Size of `req`'s frame on the wire.
pub fn request_len(req: &Request) -> usize {
    let mut v = Vec::new();
    write_frame(&mut v, req).unwrap();
    v.len()
}

/// Size of `resp`'s frame on the wire.
pub fn response_len(resp: &Response) -> usize {
    let mut v = Vec::new();
    write_frame(&mut v, resp).unwrap();
    v.len()
}

/// Round trips of a raw `UnixStream` pair, the floor under any request over the socket.
#[derive(Debug, Clone, Copy)]
pub struct Raw {
    /// Client and echo thread pinned to one CPU: a wake-up is a plain context switch.
    pub pinned: Stats,
    /// Left to the scheduler: a wake-up may cross CPUs (an inter-processor interrupt, costly in
    /// a VM).
    pub unpinned: Stats,
}

impl Raw {
    /// The faster of the two: the limit.
    pub fn best(&self) -> Stats {
        if self.pinned.median <= self.unpinned.median {
            self.pinned
        } else {
            self.unpinned
        }
    }

    /// `result ÷ (raw + extra)`, against each of the two raw measurements.
    pub fn vs(&self, result: f64, extra: f64) -> String {
        format!(
            "{} (one CPU) / {} (unpinned)",
            ratio(result, self.pinned.median + extra),
            ratio(result, self.unpinned.median + extra)
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (both threads on one CPU; unpinned {})",
            fmt_stats(&self.pinned),
            fmt_stats(&self.unpinned)
        )
    }
}

/// Pin the calling thread to `cpu`; returns its previous affinity.
fn pin_to(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; the sched_* calls only read/write the sets we pass, for
    // the calling thread (pid 0).
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        (libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0)
            .then_some(old)
    }
}

fn restore_affinity(old: &libc::cpu_set_t) {
    // SAFETY: see `pin_to`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
}

/// Write `req_len` bytes, the echo thread reads them and writes `resp_len` bytes back; pinned
/// to one CPU, then not.
pub fn raw_socket(req_len: usize, resp_len: usize, iters: usize, warmup: usize) -> Raw {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0);
    Raw {
        pinned: raw_socket_once(req_len, resp_len, iters, warmup, Some(cpu)),
        unpinned: raw_socket_once(req_len, resp_len, iters, warmup, None),
    }
}

fn raw_socket_once(
    req_len: usize,
    resp_len: usize,
    iters: usize,
    warmup: usize,
    cpu: Option<usize>,
) -> Stats {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let total = iters + warmup;
    let echo = thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_to(cpu);
        }
        let mut req = vec![0u8; req_len];
        let resp = vec![1u8; resp_len];
        for _ in 0..total {
            b.read_exact(&mut req).unwrap();
            b.write_all(&resp).unwrap();
        }
    });
    let old = cpu.and_then(pin_to);
    let req = vec![2u8; req_len];
    let mut resp = vec![0u8; resp_len];
    let mut out = Vec::with_capacity(iters);
    for i in 0..total {
        let t = Instant::now();
        a.write_all(&req).unwrap();
        a.read_exact(&mut resp).unwrap();
        if i >= warmup {
            out.push(us(t.elapsed()));
        }
    }
    if let Some(old) = &old {
        restore_affinity(old);
    }
    echo.join().unwrap();
    stats(out)
}

/// The raw path of an answer from the daemon's store thread to a blocked asker, with none of
/// the daemon's code: this thread (the store thread's stand-in) fires a `tokio::sync::oneshot`
/// that a task awaits on the daemon's runtime ([`mesh_daemon::runtime`]); the task writes
/// `len` bytes to a Unix socket; a thread blocked in `read_exact` on the other end takes the
/// time when they arrived. Between hand-offs everything idles for 300 µs, so that the task is
/// parked on its oneshot and the reader blocked in `read`, as in the daemon. One-way
/// latencies (µs) from the signal to the reader's return: two cross-thread wake-ups and one
/// socket transfer, all on the same clock.
pub fn raw_wake_chain(len: usize, iters: usize, warmup: usize) -> Stats {
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let (to_task, mut from_main) = tokio::sync::mpsc::unbounded_channel::<oneshot::Receiver<()>>();
    // The daemon's runtime, driven by its own thread as `mesh daemon` drives it.
    let writer = thread::spawn(move || {
        mesh_daemon::runtime().unwrap().block_on(async move {
            let mut a = tokio::net::UnixStream::from_std(a).unwrap();
            let frame = vec![1u8; len];
            while let Some(signal) = from_main.recv().await {
                if signal.await.is_err() {
                    break;
                }
                a.write_all(&frame).await.unwrap();
            }
        })
    });
    let total = iters + warmup;
    let (arrived_tx, arrived) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; len];
        for _ in 0..total {
            b.read_exact(&mut buf).unwrap();
            arrived_tx.send(Instant::now()).unwrap();
        }
    });
    let mut out = Vec::with_capacity(iters);
    for i in 0..total {
        let (signal, parked) = oneshot::channel();
        to_task.send(parked).unwrap();
        // Part of what is measured: the task must be parked (asleep on `parked`) when the
        // signal comes, as the daemon's asker is; 300 µs lets it get there. Nothing outside the
        // runtime shows that it has, so this stays a fixed pause.
        thread::sleep(Duration::from_micros(300));
        let t = Instant::now();
        signal.send(()).unwrap();
        let got = arrived.recv_timeout(Duration::from_secs(10)).unwrap();
        if i >= warmup {
            out.push(us_between(t, got));
        }
    }
    drop(to_task);
    reader.join().unwrap();
    writer.join().unwrap();
    stats(out)
}

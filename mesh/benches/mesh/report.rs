//! Statistics, formatting, and the markdown report (rows of the results table and notes).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::Plan;

/// Median and p99 of samples in microseconds (may be negative: differences of timestamps).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
}

pub fn stats(mut v: Vec<f64>) -> Stats {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let at = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stats {
        n,
        median: at(0.5),
        p99: at(0.99),
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Signed microseconds from `a` to `b`.
pub fn us_between(a: Instant, b: Instant) -> f64 {
    if b >= a { us(b - a) } else { -us(a - b) }
}

pub fn fmt_us(x: f64) -> String {
    let a = x.abs();
    if a < 1_000.0 {
        format!("{x:.1} µs")
    } else if a < 1_000_000.0 {
        format!("{:.2} ms", x / 1e3)
    } else {
        format!("{:.2} s", x / 1e6)
    }
}

pub fn fmt_stats(s: &Stats) -> String {
    format!("{} / {}", fmt_us(s.median), fmt_us(s.p99))
}

pub fn fmt_bytes(b: usize) -> String {
    if b < 10_000 {
        format!("{b} B")
    } else if b < 10_000_000 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

pub fn fmt_mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

pub fn ratio(result: f64, limit: f64) -> String {
    if limit <= 0.0 {
        return "—".into();
    }
    format!("{:.1}×", result / limit)
}

pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

pub fn progress(msg: &str) {
    eprintln!("[mesh bench] {msg}");
}

/// One line of the results table.
#[derive(Debug)]
pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub result: String,
    pub limit: String,
    pub vs: String,
    pub target: String,
    pub met: String,
}

pub fn row(
    id: &'static str,
    what: impl Into<String>,
    result: impl Into<String>,
    limit: impl Into<String>,
    vs: impl Into<String>,
) -> Row {
    Row {
        id,
        what: what.into(),
        result: result.into(),
        limit: limit.into(),
        vs: vs.into(),
        target: "—".into(),
        met: "—".into(),
    }
}

impl Row {
    pub fn target(mut self, target: impl Into<String>, ok: bool) -> Self {
        self.target = target.into();
        self.met = met(ok).into();
        self
    }
}

/// Everything the run found: the table's rows, in order, and the notes under it.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// The markdown report, to stdout.
pub fn print(plan: &Plan, info: &[String], report: &Report) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## claude-mesh benchmark{}\n",
        if plan.quick { " (--quick)" } else { "" }
    );
    for l in info {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "\nLatencies are median / p99. Each limit was measured in this same run.\n"
    );
    let _ = writeln!(
        out,
        "| # | Measurement | Result | Limit (same run) | Result ÷ limit | Target | Met |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in &report.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.what, r.result, r.limit, r.vs, r.target, r.met
        );
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out);
        for n in &report.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    print!("{out}");
}

//! A small unified-style line diff for `--dry-run` output. Our edits are local, so the common
//! prefix and suffix are trimmed first and an LCS table is built only for the differing middle
//! (a plain "remove all, add all" when that middle is unusually large).

use std::fmt::Write;

const CONTEXT: usize = 3;
const MAX_TABLE: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Same,
    Del,
    Add,
}

/// Unified diff of `old` to `new` with `---`/`+++` headers; empty when the texts are equal.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Walk ops keeping (index in a, index in b); emit hunks around changes.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => (i, j) = (i + 1, j + 1),
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    let mut k = 0;
    while k < ops.len() {
        if ops[k] == Op::Same {
            k += 1;
            continue;
        }
        let start = k.saturating_sub(CONTEXT);
        // Extend the hunk while changes are within 2*CONTEXT lines of each other.
        let mut end = k;
        let mut last_change = k;
        while end < ops.len() && end <= last_change + 2 * CONTEXT {
            if ops[end] != Op::Same {
                last_change = end;
            }
            end += 1;
        }
        let end = (last_change + 1 + CONTEXT).min(ops.len());
        let count = |op: Op| {
            ops[start..end]
                .iter()
                .filter(|o| **o == Op::Same || **o == op)
                .count()
        };
        let (a_len, b_len) = (count(Op::Del), count(Op::Add));
        let (a0, b0) = pos[start];
        let line = |n: usize, len: usize| if len == 0 { n } else { n + 1 };
        let _ = writeln!(
            out,
            "@@ -{},{a_len} +{},{b_len} @@",
            line(a0, a_len),
            line(b0, b_len)
        );
        for (op, &(i, j)) in ops[start..end].iter().zip(&pos[start..end]) {
            let _ = match op {
                Op::Same => writeln!(out, " {}", a[i]),
                Op::Del => writeln!(out, "-{}", a[i]),
                Op::Add => writeln!(out, "+{}", b[j]),
            };
        }
        k = end;
    }
    if !old.is_empty() && !new.is_empty() && old.ends_with('\n') != new.ends_with('\n') {
        out.push_str("\\ (trailing newline differs)\n");
    }
    out
}

fn line_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Same; prefix];
    if (am.len() + 1) * (bm.len() + 1) > MAX_TABLE {
        ops.extend(std::iter::repeat_n(Op::Del, am.len()));
        ops.extend(std::iter::repeat_n(Op::Add, bm.len()));
    } else {
        // lcs[i][j] = LCS length of am[i..] and bm[j..].
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() || j < bm.len() {
            if i < am.len() && j < bm.len() && am[i] == bm[j] {
                ops.push(Op::Same);
                (i, j) = (i + 1, j + 1);
            } else if i < am.len() && (j == bm.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])
            {
                ops.push(Op::Del);
                i += 1;
            } else {
                ops.push(Op::Add);
                j += 1;
            }
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nX\nf\ng\nh\n";
        let d = unified("a/f", "b/f", old, new);
        assert_eq!(
            d,
            "--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+X\n f\n g\n h\n"
        );
        assert_eq!(unified("a", "b", old, old), "");
    }

    #[test]
    fn diff_of_new_file() {
        let d = unified("/dev/null", "b/f", "", "{\n}\n");
        assert_eq!(d, "--- /dev/null\n+++ b/f\n@@ -0,0 +1,2 @@\n+{\n+}\n");
    }
}

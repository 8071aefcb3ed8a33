//! The mesh across machines from the command line, on one machine: `mesh join` / `mesh leave`
//! (the files they write, the daemon they restart, what they refuse), `mesh keys`, `mesh list
//! --scope machine|mesh`, `list_peers`' scope and `mesh health`'s `federation` lines. Always the
//! real `mesh` binary and a real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use mesh_testkit::Mesh;

fn text(out: &Output) -> String {
    mesh_testkit::output_text(out)
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// The cells of the table row whose first cell is `name` (names have no spaces).
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name}: {table}"))
}

#[test]
fn list_on_a_machine_outside_any_mesh_has_a_host_column_and_no_remote_rows() {
    let mesh = Mesh::start();
    let _api = mesh.session("api");
    let _web = mesh.session("web");
    for scope in ["machine", "mesh"] {
        let table = stdout(
            &mesh
                .mesh()
                .args(["list", "--scope", scope])
                .output()
                .unwrap(),
        );
        let header = row(&table, "NAME");
        assert_eq!(header[1], "HOST", "{table}");
        for name in ["api", "web"] {
            let cells = row(&table, name);
            assert_eq!(cells[1], "-", "not joined: no host: {table}");
        }
        assert_eq!(table.lines().count(), 3, "{table}");

        let doc = json(
            &mesh
                .mesh()
                .args(["list", "--scope", scope, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(doc["scope"], scope, "{doc:#}");
        let sessions = doc["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "{doc:#}");
        for s in sessions {
            assert!(s["host"].is_null(), "{doc:#}");
            assert_eq!(s["remote"], false, "{doc:#}");
            assert!(
                s["pid"].as_u64().is_some(),
                "the local fields stay: {doc:#}"
            );
        }
    }
    // The scopes that existed before still work, and still have their own names.
    let doc = json(
        &mesh
            .mesh()
            .args(["list", "--scope", "repo", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(doc["scope"], "repo", "{doc:#}");
    let out = mesh
        .mesh()
        .args(["list", "--scope", "galaxy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

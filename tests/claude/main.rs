//! End to end with the REAL Claude Code binary (`@anthropic-ai/claude-code`, pinned in
//! `.ci/run`), run headless (`claude -p`) against a scripted model on 127.0.0.1, with the hooks
//! and the MCP server registered as `mesh install` registers them, and a real `mesh daemon`.
//!
//! Each test scripts the model's turns and then asserts what reached the model's requests:
//! hook injections, tool results, the MCP tool list. The harness is mesh-testkit's `claude` module.
//! Without the binary these tests print SKIPPED, except under CI, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_daemon::paths::StateDir;
use mesh_testkit::claude::{Claude, MCP_PREFIX, Model, Request, Turn, interactive};
use mesh_testkit::{Mesh, wait_for};
use mesh_testkit::{claude, tty};
use serde_json::{Value, json};

/// Upper bound for one Claude Code run (a run with a few tool calls takes 2-4 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound for a hand-off between the test and a session (registration, delivery).
const STEP: Duration = Duration::from_secs(30);

/// The tools CONTRACT.md promises, with (required, optional) arguments.
const CONTRACT_TOOLS: [(&str, &[&str], &[&str]); 11] = [
    ("whoami", &[], &[]),
    ("list_peers", &[], &["scope"]),
    ("send_message", &["to", "body"], &["kind"]),
    ("ask_peer", &["to", "question"], &["timeout_s"]),
    ("reply_to_peer", &["message_id", "body"], &[]),
    ("check_messages", &[], &[]),
    ("message_status", &["message_id"], &[]),
    ("set_summary", &["summary"], &[]),
    ("read_history", &["peer"], &["last_n_turns", "redact"]),
    ("search_history", &["peer", "query"], &["redact"]),
    // `redact?` as on the other two transcript tools (CONTRACT lists it for those), so that a
    // turn found redacted can be read whole.
    ("get_turn", &["peer", "turn_index"], &["redact"]),
];

fn mcp(tool: &str) -> String {
    format!("{MCP_PREFIX}{tool}")
}

// --- test fixtures -----------------------------------------------------------------------------

/// A mesh daemon on a temp HOME, and Claude Code configured in that HOME.
struct Fixture {
    mesh: Mesh,
    claude: Claude,
}

impl Fixture {
    /// With the `mesh` hooks and MCP server registered; `None` (SKIPPED) without the binary.
    fn mesh(test: &str) -> Option<Self> {
        let bin = claude::claude_bin(test)?;
        let mesh = Mesh::start();
        claude::write_mesh_config(mesh.home.path(), Path::new(mesh_testkit::mesh_bin()));
        let claude = Claude::new(bin, mesh.home.path(), mesh.state.root());
        Some(Self { mesh, claude })
    }

    fn cli(&self) -> Cli {
        Cli {
            home: self.mesh.home.path().to_path_buf(),
            state: self.mesh.state.clone(),
        }
    }

    /// Everything useful when a test fails.
    fn report(&self, models: &[&Model]) -> String {
        let mut s = String::new();
        for m in models {
            s.push_str(&m.summary());
        }
        s.push_str("daemon log (tail):\n");
        let log = self.mesh.log();
        let lines: Vec<&str> = log.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// The `mesh` CLI in a test's HOME, outside any session (as the user). `Clone + Send`, for use
/// inside scripted turns.
#[derive(Debug, Clone)]
struct Cli {
    home: PathBuf,
    state: StateDir,
}

impl Cli {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(mesh_testkit::mesh_bin());
        mesh_testkit::isolate(&mut cmd, &self.home, &self.state);
        cmd
    }

    /// Run `mesh <args> --json` and parse its output; panics on failure.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "mesh {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("mesh {args:?} --json: {e}: {:?}", out.stdout))
    }

    /// Live sessions (`mesh list --json`).
    fn live(&self) -> Vec<Value> {
        self.json(&["list"])["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The live sessions named `name`.
    fn live_named(&self, name: &str) -> Vec<Value> {
        self.live()
            .into_iter()
            .filter(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .collect()
    }

    /// Whether mail marked `needle` has reached session `name`: already in the model's
    /// conversation (`req`), or pending for the session within [`STEP`] (its next tool call's
    /// PostToolUse hook then injects it).
    fn mail_seen_or_pending(&self, req: &Request, name: &str, needle: &str) -> bool {
        let pending = || {
            self.live_named(name)
                .first()
                .and_then(|s| s["pending"].as_u64())
                .unwrap_or(0)
                > 0
        };
        req.conversation_contains(needle)
            || mesh_testkit::poll(STEP, || pending().then_some(())).is_some()
    }

    /// Wait until a live session named `name` is listed; returns it.
    fn wait_live(&self, name: &str, deadline: Duration) -> Result<Value, String> {
        mesh_testkit::poll(deadline, || self.live_named(name).into_iter().next()).ok_or_else(|| {
            format!(
                "no live session named {name} after {deadline:?}; mesh list: {:?}",
                self.live()
            )
        })
    }

    /// `mesh send <to> <body>`; returns the message id.
    fn send(&self, to: &str, body: &str) -> u64 {
        let sent = self.json(&["send", to, body]);
        sent["messages"][0]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no message id in {sent}"))
    }

    /// `mesh message <id> --json`.
    fn message(&self, id: u64) -> Value {
        self.json(&["message", &format!("m{id}")])
    }
}

/// Where in `texts` a message id appears next to `marker`: the nearest `m<N>` / `#<N>` before
/// the marker in the same text, else the first after it.
fn id_near(texts: &[String], marker: &str) -> Option<u64> {
    for t in texts {
        let Some(pos) = t.find(marker) else { continue };
        if let Some(id) = claude::message_ids(&t[..pos]).last() {
            return Some(*id);
        }
        if let Some(id) = claude::message_ids(&t[pos..]).first() {
            return Some(*id);
        }
    }
    None
}

/// The value to pass as `message_id` to `tool`, following the schema Claude Code loaded for it
/// (an integer, or the `m<N>` form the CLI prints).
fn message_id_arg(req: &Request, tool: &str, id: u64) -> Value {
    let ty = req
        .tool(tool)
        .map(|t| t["input_schema"]["properties"]["message_id"]["type"].clone())
        .unwrap_or(Value::Null);
    let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
    let accepts_string = match &ty {
        Value::String(s) => s == "string",
        Value::Array(a) => a.iter().any(|t| t == "string"),
        _ => true,
    };
    let accepts_number = match &ty {
        Value::Array(a) => a.iter().any(numeric),
        t => numeric(t),
    };
    if accepts_number && !accepts_string {
        json!(id)
    } else {
        json!(format!("m{id}"))
    }
}

// --- the scripted model itself ---------------------------------------------------------------

fn read_response(r: &mut BufReader<TcpStream>) -> (String, Vec<(String, String)>, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (
        status.trim().to_owned(),
        headers,
        String::from_utf8(body).unwrap(),
    )
}

/// The server alone, over a raw socket: keep-alive, chunked and Content-Length bodies, the SSE
/// events of a tool call, side requests that do not consume the script, other endpoints.
#[test]
fn scripted_model_speaks_http_and_sse() {
    let model = Model::start(
        "raw",
        vec![
            Turn::tool("Bash", json!({"command": "echo hi"})),
            Turn::compute(|req| Turn::text(format!("saw {} messages", req.message_texts().len()))),
        ],
    );
    let stream = TcpStream::connect(model.addr()).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);

    // 1. A turn, with a chunked body split mid-JSON.
    let body = json!({"model": "m", "stream": true, "tools": [{"name": "Bash"}],
                      "messages": [{"role": "user", "content": "hello"}]})
    .to_string();
    let (a, b) = body.split_at(10);
    write!(
        w,
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         X-Claude-Code-Session-Id: sess-1\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    let (status, headers, sse) = read_response(&mut r);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(&("content-type".into(), "text/event-stream".into())));
    let events: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        events,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let partial: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|d| d["delta"]["type"] == "input_json_delta")
        .map(|d| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"command": "echo hi"})
    );
    assert!(sse.contains(r#""stop_reason":"tool_use""#), "{sse}");

    // 2. A side request (no tools), Content-Length, same connection, not streamed.
    let side =
        json!({"model": "m", "messages": [{"role": "user", "content": "title?"}]}).to_string();
    write!(
        w,
        "POST /v1/messages HTTP/1.1\r\nContent-Length: {}\r\n\r\n{side}",
        side.len()
    )
    .unwrap();
    let (_, _, whole) = read_response(&mut r);
    let whole: Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(whole["content"][0]["text"], claude::model::SIDE_ANSWER);

    // 3. Another endpoint.
    write!(w, "GET /api/hello HTTP/1.1\r\n\r\n").unwrap();
    let (status, _, answer) = read_response(&mut r);
    assert_eq!(
        (status.as_str(), answer.as_str()),
        ("HTTP/1.1 200 OK", "{}")
    );

    // 4. The second turn, computed from its request.
    write!(
        w,
        "POST /v1/messages HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (_, _, sse) = read_response(&mut r);
    let text: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|d| d["delta"]["type"] == "text_delta")
        .map(|d| d["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "saw 1 messages", "{sse}");

    assert_eq!(model.requests().len(), 3);
    let turns = model.turns();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].session_id(), Some("sess-1"));
    assert!(turns[0].conversation_contains("hello"));
    assert_eq!(model.probes(), ["GET /api/hello (0 bytes)"]);
    assert!(model.failures().is_empty(), "{:?}", model.failures());
}

// --- the harness against real Claude Code, without mesh --------------------------------------

const SHELL_HOOK: &str = r#"#!/bin/sh
# Test hook: records each call, adds context after tools, blocks the first Stop once.
dir=$(dirname "$0")
input=$(cat)
mkdir -p "$dir/hooks"
printf '{"event":"%s","claude_pid":"%s","mesh_home":"%s","input":%s}\n' \
    "$1" "$CLAUDE_PID" "$CLAUDE_MESH_HOME" "$input" > "$dir/hooks/$(date +%s%N)-$1.json"
case "$1" in
PostToolUse)
    printf '%s' '{"hookSpecificOutput":{"hookEventName":"PostToolUse","additionalContext":"SHELL-HOOK-CONTEXT"}}' ;;
Stop)
    if [ -e "$dir/block-once" ]; then
        rm -f "$dir/block-once"
        printf '%s' '{"decision":"block","reason":"SHELL-STOP-REASON"}'
    fi ;;
esac
exit 0
"#;

/// A stdio MCP server in sh: one tool, `whoami`. Answers unknown requests with -32601.
const SHELL_MCP: &str = r#"#!/bin/sh
while IFS= read -r line; do
    id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\("[^"]*"\|-\{0,1\}[0-9][0-9]*\).*/\1/p')
    method=$(printf '%s\n' "$line" | sed -n 's/.*"method":"\([^"]*\)".*/\1/p')
    [ -z "$id" ] && continue
    case "$method" in
    initialize) result='{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"shell-mcp","version":"0"}}' ;;
    tools/list) result='{"tools":[{"name":"whoami","description":"Shell stand-in","inputSchema":{"type":"object","properties":{}}}]}' ;;
    tools/call) result='{"content":[{"type":"text","text":"SHELL-MCP-RESULT"}]}' ;;
    ping) result='{}' ;;
    *) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}\n' "$id"; continue ;;
    esac
    printf '{"jsonrpc":"2.0","id":%s,"result":%s}\n' "$id" "$result"
done
"#;

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The harness itself, with shell-script hooks and a shell MCP server instead of `mesh`: the
/// scripted model drives real turns, tool calls (ToolSearch, an MCP tool, Bash), all five hooks
/// fire with the documented input, hook context and a Stop block reach the next request, and
/// Claude Code passes CLAUDE_MESH_HOME and CLAUDE_PID to hooks.
#[test]
fn harness_drives_real_claude_with_shell_hooks() {
    let Some(bin) = claude::claude_bin("harness_drives_real_claude_with_shell_hooks") else {
        return;
    };
    let _serial = claude::serial();
    let home = tempfile::Builder::new()
        .prefix("mesh-claude")
        .tempdir()
        .unwrap();
    let tools = home.path().join("tools");
    fs::create_dir_all(&tools).unwrap();
    let hook = tools.join("hook.sh");
    write_script(&hook, SHELL_HOOK);
    let mcp_server = tools.join("mcp.sh");
    write_script(&mcp_server, SHELL_MCP);
    fs::write(tools.join("block-once"), "").unwrap();
    claude::write_hooks(home.path(), &claude::HookCommands::script(&hook));
    claude::write_mcp_server(home.path(), &mcp_server, &[]);
    let project = home.path().join("projects/alpha");
    fs::create_dir_all(&project).unwrap();
    let mesh_home = home.path().join(".claude-mesh");

    let model = Model::start(
        "shell",
        vec![
            Turn::tool_search(&[&mcp("whoami")]),
            Turn::tool(mcp("whoami"), json!({})),
            Turn::bash("echo bash-ran"),
            Turn::text("first stop"),
            Turn::text("done"),
        ],
    );
    let claude = Claude::new(bin, home.path(), &mesh_home);
    let run = claude.start("shell", &model, &project, "hello from the test");
    let pid = run.pid();
    let out = run.wait(RUN_TIMEOUT);
    let why = || format!("{}\n{}", out.describe(), model.summary());
    assert!(out.success(), "{}", why());
    assert_eq!(out.result(), "done", "{}", why());
    assert!(model.failures().is_empty(), "{}", why());

    let turns = model.turns();
    assert_eq!(turns.len(), 5, "{}", why());
    assert!(turns[0].conversation_contains("hello from the test"));
    // Requests carry the session id.
    assert_eq!(turns[0].session_id(), Some(out.session_id()));
    // ToolSearch loaded the MCP tool's schema into `tools`.
    assert!(
        turns[1].tool_names().contains(&mcp("whoami")),
        "{:?}",
        turns[1].tool_names()
    );
    // The MCP tool ran in our server, its result reached the model.
    assert!(
        turns[2].last_tool_result().as_deref() == Some("SHELL-MCP-RESULT"),
        "{}",
        why()
    );
    // Bash ran; PostToolUse context reached the next request (and not the one before).
    assert!(turns[3].conversation_contains("bash-ran"), "{}", why());
    assert!(!turns[0].conversation_contains("SHELL-HOOK-CONTEXT"));
    assert!(turns[1].conversation_contains("SHELL-HOOK-CONTEXT"));
    // The first Stop was blocked and its reason reached the model.
    assert!(!turns[3].conversation_contains("SHELL-STOP-REASON"));
    assert!(
        turns[4].conversation_contains("SHELL-STOP-REASON"),
        "{}",
        why()
    );

    // Hooks: every event, in order, with the documented input and environment.
    let mut files: Vec<PathBuf> = fs::read_dir(tools.join("hooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let calls: Vec<Value> = files
        .iter()
        .map(|f| serde_json::from_str(&fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let events: Vec<&str> = calls.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "SessionStart",
            "UserPromptSubmit",
            "PostToolUse",
            "PostToolUse",
            "PostToolUse",
            "Stop",
            "Stop",
            "SessionEnd"
        ],
        "{}",
        why()
    );
    for c in &calls {
        assert_eq!(c["input"]["session_id"], out.session_id(), "{c}");
        assert_eq!(c["input"]["hook_event_name"], c["event"], "{c}");
        assert_eq!(c["claude_pid"], pid.to_string(), "CLAUDE_PID: {c}");
        assert_eq!(c["mesh_home"], mesh_home.to_str().unwrap(), "{c}");
    }
    assert_eq!(calls[0]["input"]["source"], "startup");
    assert_eq!(calls[1]["input"]["prompt"], "hello from the test");
    assert_eq!(calls[3]["input"]["tool_name"], mcp("whoami"));
    assert_eq!(calls[4]["input"]["tool_name"], "Bash");
    assert_eq!(calls[5]["input"]["stop_hook_active"], false);
    assert_eq!(calls[6]["input"]["stop_hook_active"], true);
    assert!(calls[7]["input"]["reason"].is_string());
}

// --- mesh inside real Claude Code -------------------------------------------------------------

/// The MCP tools Claude Code gets from `mesh mcp` are exactly CONTRACT.md's, with its
/// arguments; `whoami` answers for the calling session.
#[test]
fn mcp_tool_list_matches_contract() {
    let Some(fx) = Fixture::mesh("mcp_tool_list_matches_contract") else {
        return;
    };
    let _serial = claude::serial();
    let project = fx.mesh.project("india");
    let all: Vec<String> = CONTRACT_TOOLS.iter().map(|(t, _, _)| mcp(t)).collect();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let model = Model::start(
        "india",
        vec![
            // A direct call first: Claude Code waits for the server's connection.
            Turn::tool(mcp("whoami"), json!({})),
            Turn::tool_search(&all_refs),
            Turn::text("done"),
        ],
    );
    let out = fx
        .claude
        .run("india", &model, &project, "which tools?", RUN_TIMEOUT);
    let why = || format!("{}\n{}", out.describe(), fx.report(&[&model]));
    let turns = model.turns();
    assert_eq!(turns.len(), 3, "{}", why());

    // whoami: this session's name and cwd.
    let who = turns[1].last_tool_result().unwrap_or_default();
    assert!(
        who.contains("india") && who.contains(project.to_str().unwrap()),
        "whoami should name the session (india, {}): {who}\n{}",
        project.display(),
        why()
    );

    // Every mcp__claude-mesh__* name Claude Code showed the model (deferred-tool announcements
    // and loaded tools) is a CONTRACT tool.
    let mut seen = BTreeSet::new();
    for r in model.requests() {
        let mut rest = r.raw.as_str();
        while let Some(i) = rest.find(MCP_PREFIX) {
            let name: String = rest[i + MCP_PREFIX.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            seen.insert(name);
            rest = &rest[i + MCP_PREFIX.len()..];
        }
    }
    seen.remove("");
    let expected: BTreeSet<String> = CONTRACT_TOOLS
        .iter()
        .map(|(t, _, _)| (*t).to_owned())
        .collect();
    let unknown: Vec<&String> = seen.iter().filter(|t| !expected.contains(*t)).collect();
    assert!(unknown.is_empty(), "tools not in CONTRACT.md: {unknown:?}");
    let missing: Vec<&String> = expected.iter().filter(|t| !seen.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "CONTRACT tools never shown: {missing:?}\n{}",
        why()
    );

    // Loaded through ToolSearch, each has its schema, with CONTRACT's arguments.
    let loaded = &turns[2];
    for (tool, required, optional) in CONTRACT_TOOLS {
        let t = loaded
            .tool(&mcp(tool))
            .unwrap_or_else(|| panic!("{tool} not loaded: {:?}\n{}", loaded.tool_names(), why()));
        let schema = &t["input_schema"];
        assert_eq!(schema["type"], "object", "{tool}: {schema}");
        let props: BTreeSet<&str> = schema["properties"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let req: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for arg in required {
            assert!(props.contains(arg), "{tool}: no argument {arg}: {schema}");
            assert!(
                req.contains(arg),
                "{tool}: {arg} should be required: {schema}"
            );
        }
        for arg in optional {
            assert!(props.contains(arg), "{tool}: no argument {arg}: {schema}");
            assert!(
                !req.contains(arg),
                "{tool}: {arg} should be optional: {schema}"
            );
        }
        let extra: Vec<&&str> = props
            .iter()
            .filter(|p| !required.contains(p) && !optional.contains(p))
            .collect();
        assert!(
            extra.is_empty(),
            "{tool}: arguments not in CONTRACT.md: {extra:?}"
        );
        assert!(
            t["description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty()),
            "{tool} has no description"
        );
    }
    out.assert_success();
}

/// A message sent with `mesh send` while the session runs a tool reaches the model's next
/// request, injected by the PostToolUse hook.
#[test]
fn message_sent_during_a_tool_reaches_the_next_request() {
    let Some(fx) = Fixture::mesh("message_sent_during_a_tool_reaches_the_next_request") else {
        return;
    };
    let _serial = claude::serial();
    let project = fx.mesh.project("delta");
    let started = project.join(".tool-started");
    let go = project.join(".tool-go");
    // The tool says it started, then waits (at most 20 s) for the test to say go.
    let command = format!(
        "touch {s}; i=0; while [ ! -e {g} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; \
         echo tool-finished",
        s = claude::sh_quote(started.to_str().unwrap()),
        g = claude::sh_quote(go.to_str().unwrap()),
    );
    let model = Model::start("delta", vec![Turn::bash(command), Turn::text("done")]);
    let run = fx
        .claude
        .start("delta", &model, &project, "run the slow tool");
    let cli = fx.cli();
    wait_for("the tool to start", STEP, || started.exists());
    const TASK: &str = "TASK-7f3a: please rebase on main";
    let id = cli.send("delta", TASK);
    fs::write(&go, "").unwrap();
    let out = run.wait(RUN_TIMEOUT);
    let why = || format!("{}\n{}", out.describe(), fx.report(&[&model]));

    let turns = model.turns();
    assert_eq!(turns.len(), 2, "{}", why());
    assert!(!turns[0].contains(TASK), "sent after the first request");
    assert!(turns[1].conversation_contains("tool-finished"), "{}", why());
    assert!(
        turns[1].conversation_contains(TASK),
        "the task should be injected after the tool\n{}",
        why()
    );
    assert_eq!(cli.message(id)["status"], "delivered", "{}", why());
    out.assert_success();
}

/// A Stop with a pending task is blocked with the task as reason; the task reaches the model;
/// the next Stop goes through.
#[test]
fn stop_with_a_pending_task_is_blocked_once() {
    let Some(fx) = Fixture::mesh("stop_with_a_pending_task_is_blocked_once") else {
        return;
    };
    let _serial = claude::serial();
    let project = fx.mesh.project("echo");
    const TASK: &str = "TASK-5c1e: also update the changelog";
    let cli = fx.cli();
    let (tx, rx) = mpsc::channel();
    let c = cli.clone();
    let model = Model::start(
        "echo",
        vec![
            // While the model "thinks", a task arrives: no hook runs before the Stop.
            Turn::compute(move |_| {
                tx.send(c.send("echo", TASK)).unwrap();
                Turn::text("all done, stopping")
            }),
            Turn::text("changelog updated"),
        ],
    );
    let out = fx
        .claude
        .run("echo", &model, &project, "do the work", RUN_TIMEOUT);
    let why = || format!("{}\n{}", out.describe(), fx.report(&[&model]));
    let id = rx
        .try_recv()
        .unwrap_or_else(|_| panic!("no task sent\n{}", why()));

    let turns = model.turns();
    assert!(
        turns.len() >= 2,
        "the Stop should have been blocked\n{}",
        why()
    );
    assert!(!turns[0].contains(TASK));
    assert!(
        turns[1].conversation_contains(TASK),
        "the Stop hook's reason should carry the task\n{}",
        why()
    );
    assert_eq!(
        turns.len(),
        2,
        "the second Stop should go through\n{}",
        why()
    );
    out.assert_success();
    assert_eq!(out.result(), "changelog updated");
    assert_eq!(cli.message(id)["status"], "delivered", "{}", why());
}

/// Session A's `ask_peer` is answered by live session B through `reply_to_peer`: B sees the
/// question (with its id) injected, replies, and the answer reaches A's model as the tool's
/// result.
#[test]
fn ask_peer_is_answered_by_a_live_peer() {
    let Some(fx) = Fixture::mesh("ask_peer_is_answered_by_a_live_peer") else {
        return;
    };
    let _serial = claude::serial();
    const QUESTION: &str = "QUESTION-91b2: which port does the API listen on?";
    const ANSWER: &str = "ANSWER-91b2: 8080";
    let dir_a = fx.mesh.project("alpha");
    let dir_b = fx.mesh.project("bravo");

    // B: wait until the question is queued for it, run a tool (its PostToolUse hook injects
    // the question), then reply to the id it was shown. (A starts only once B's first request
    // is in, so the question comes after B's UserPromptSubmit.)
    let cli = fx.cli();
    let model_b = Model::start("bravo", Vec::new());
    let sink = model_b.failure_sink();
    model_b.push(Turn::compute(move |req| {
        if !cli.mail_seen_or_pending(req, "bravo", QUESTION) {
            sink.fail("no question pending for bravo");
        }
        Turn::tool_search(&[&mcp("reply_to_peer")])
    }));
    let sink = model_b.failure_sink();
    let (id_tx, id_rx) = mpsc::channel();
    model_b.push(Turn::compute(move |req| {
        let texts = req.message_texts();
        if !texts.iter().any(|t| t.contains(QUESTION)) {
            sink.fail("the question was not injected into bravo's context");
            return Turn::text("no question seen");
        }
        let Some(id) = id_near(&texts, QUESTION) else {
            sink.fail("no message id (m<N>) next to the injected question");
            return Turn::text("no id seen");
        };
        id_tx.send(id).unwrap();
        let tool = mcp("reply_to_peer");
        Turn::tool(
            &tool,
            json!({"message_id": message_id_arg(req, &tool, id), "body": ANSWER}),
        )
    }));
    model_b.push(Turn::text("replied"));

    // A: once B is live, load ask_peer and ask.
    let cli = fx.cli();
    let model_a = Model::start("alpha", Vec::new());
    let fail_a = model_a.failure_sink();
    model_a.push(Turn::compute(move |_| {
        if let Err(e) = cli.wait_live("bravo", STEP) {
            fail_a.fail(e);
        }
        Turn::tool_search(&[&mcp("ask_peer")])
    }));
    model_a.push(Turn::tool(
        mcp("ask_peer"),
        json!({"to": "bravo", "question": QUESTION, "timeout_s": 60}),
    ));
    model_a.push(Turn::text("got the answer"));

    let run_b = fx
        .claude
        .start("bravo", &model_b, &dir_b, "wait for questions");
    model_b.wait_turn(0, STEP);
    let run_a = fx.claude.start("alpha", &model_a, &dir_a, "ask bravo");
    let out_a = run_a.wait(RUN_TIMEOUT);
    let out_b = run_b.wait(RUN_TIMEOUT);
    let why = || {
        format!(
            "{}\n{}\n{}",
            out_a.describe(),
            out_b.describe(),
            fx.report(&[&model_a, &model_b])
        )
    };

    assert!(model_b.failures().is_empty(), "{}", why());
    assert!(model_a.failures().is_empty(), "{}", why());
    let turns_a = model_a.turns();
    assert_eq!(turns_a.len(), 3, "{}", why());
    let result = turns_a[2].last_tool_result().unwrap_or_default();
    assert!(
        result.contains(ANSWER),
        "ask_peer's result should carry the answer: {result}\n{}",
        why()
    );
    let turns_b = model_b.turns();
    assert_eq!(turns_b.len(), 3, "{}", why());
    assert!(
        !turns_b[2]
            .last_tool_result()
            .unwrap_or_default()
            .to_lowercase()
            .contains("error"),
        "reply_to_peer failed: {:?}\n{}",
        turns_b[2].last_tool_result(),
        why()
    );
    let id = id_rx.try_recv().unwrap();
    let question = fx.cli().message(id);
    assert_eq!(question["kind"], "question", "{question}");
    assert_eq!(question["body"], QUESTION, "{question}");
    assert_eq!(question["status"], "answered", "{question}");
    out_a.assert_success();
    out_b.assert_success();
}

/// A "machine" for the cross-machine test: a HOME whose daemon `mesh join` joined to the NATS
/// server at `url` as `host`, with Claude Code configured in that HOME as [`Fixture::mesh`]
/// configures it.
fn joined_machine(bin: PathBuf, url: &str, host: &str) -> Fixture {
    let mut mesh = Mesh::without_daemon();
    let out = mesh
        .mesh()
        .args(["join", url, "--host", host, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mesh join: {}",
        mesh_testkit::output_text(&out)
    );
    // `mesh join` (re)started a daemon outside our handle: stop it and run ours, so that its
    // log is in the failure report and it dies with the test.
    let _ = mesh.mesh().arg("stop").output();
    mesh.spawn_daemon();
    claude::write_mesh_config(mesh.home.path(), Path::new(mesh_testkit::mesh_bin()));
    let claude = Claude::new(bin, mesh.home.path(), mesh.state.root());
    Fixture { mesh, claude }
}

/// Two "machines" (two HOMEs, each with its daemon joined to one real NATS server and its own
/// Claude Code): session `alpha` on `laptop` calls `ask_peer` with `to: "bravo@devbox"`; the
/// question crosses NATS (sealed for devbox's key) and is injected into `bravo`'s context by
/// its PostToolUse hook, from `"alpha@laptop"`, inside the frame's quotes; bravo's model calls
/// `reply_to_peer`, the answer crosses back, and alpha's blocked `ask_peer` returns it to
/// alpha's model, from `bravo@devbox`. bravo then sends a task to `alpha@laptop`
/// (`send_message`), which alpha's PostToolUse hook injects into alpha's next request, from
/// `"bravo@devbox"` inside the frame's quotes.
///
/// Against Debian's nats-server only: the two real Claude Code runs make this test long, and
/// the federation tests in tests/mesh run every server flavor.
#[test]
fn ask_peer_across_machines_is_answered_by_real_claude_code_on_the_other() {
    const TEST: &str = "ask_peer_across_machines_is_answered_by_real_claude_code_on_the_other";
    let Some(bin) = claude::claude_bin(TEST) else {
        return;
    };
    let Some((_, nats_bin)) = mesh_testkit::nats::flavors()
        .into_iter()
        .find(|(f, _)| *f == mesh_testkit::nats::Flavor::Debian)
    else {
        eprintln!("SKIPPED {TEST}: no Debian nats-server");
        return;
    };
    let _serial = claude::serial();
    const QUESTION: &str = "QUESTION-5e0d: which port does the API listen on over there?";
    const ANSWER: &str = "ANSWER-5e0d: 9090";
    const FOLLOWUP: &str = "FOLLOWUP-5e0d: restart the API on your side";
    let server = mesh_testkit::nats::NatsServer::start(&nats_bin);
    let laptop = joined_machine(bin.clone(), &server.url(), "laptop");
    let devbox = joined_machine(bin, &server.url(), "devbox");
    let dir_a = laptop.mesh.project("alpha");
    let dir_b = devbox.mesh.project("bravo");

    // B (devbox): wait until the question is queued for it, run a tool (its PostToolUse hook
    // injects the question), then reply to the id it was shown.
    let cli_b = devbox.cli();
    let model_b = Model::start("bravo", Vec::new());
    let sink = model_b.failure_sink();
    model_b.push(Turn::compute(move |req| {
        if !cli_b.mail_seen_or_pending(req, "bravo", QUESTION) {
            sink.fail("no question pending for bravo on devbox");
        }
        Turn::tool_search(&[&mcp("reply_to_peer"), &mcp("send_message")])
    }));
    let sink = model_b.failure_sink();
    let (id_tx, id_rx) = mpsc::channel();
    model_b.push(Turn::compute(move |req| {
        let texts = req.message_texts();
        let Some(injected) = texts.iter().find(|t| t.contains(QUESTION)) else {
            sink.fail("the question was not injected into bravo's context");
            return Turn::text("no question seen");
        };
        // The frame names the asker by its address, quoted, as coming from another machine.
        if !injected.contains(" · question from \"alpha@laptop\"") {
            sink.fail(format!(
                "the injected head does not say from \"alpha@laptop\": {injected}"
            ));
        }
        if !injected.contains("from the Claude Code session \"alpha@laptop\" on another machine") {
            sink.fail(format!(
                "the injection does not say it comes from another machine: {injected}"
            ));
        }
        let Some(id) = id_near(&texts, QUESTION) else {
            sink.fail("no message id (m<N>) next to the injected question");
            return Turn::text("no id seen");
        };
        id_tx.send(id).unwrap();
        let tool = mcp("reply_to_peer");
        Turn::tool(
            &tool,
            json!({"message_id": message_id_arg(req, &tool, id), "body": ANSWER}),
        )
    }));
    // Then a task back to alpha, which its PostToolUse hook injects on laptop.
    model_b.push(Turn::tool(
        mcp("send_message"),
        json!({"to": "alpha@laptop", "body": FOLLOWUP, "kind": "task"}),
    ));
    model_b.push(Turn::text("replied"));

    // A (laptop): once bravo@devbox is listed, load ask_peer and ask by address.
    let cli_a = laptop.cli();
    let model_a = Model::start("alpha", Vec::new());
    let fail_a = model_a.failure_sink();
    model_a.push(Turn::compute(move |_| {
        let listed = mesh_testkit::poll(STEP, || {
            cli_a.json(&["list", "--scope", "mesh"])["sessions"]
                .as_array()
                .and_then(|all| {
                    all.iter()
                        .find(|s| s["address"] == "bravo@devbox" && s["live"] == true)
                        .cloned()
                })
        });
        if listed.is_none() {
            fail_a.fail("laptop never listed bravo@devbox");
        }
        Turn::tool_search(&[&mcp("ask_peer")])
    }));
    model_a.push(Turn::tool(
        mcp("ask_peer"),
        json!({"to": "bravo@devbox", "question": QUESTION, "timeout_s": 60}),
    ));
    // Once bravo's task is pending here, run a tool: the PostToolUse hook injects it. When it
    // crossed before ask_peer's own PostToolUse hook ran, that hook injected it already: it is
    // in this very request, and nothing is pending.
    let cli_a = laptop.cli();
    let fail_a = model_a.failure_sink();
    model_a.push(Turn::compute(move |req| {
        if !cli_a.mail_seen_or_pending(req, "alpha", FOLLOWUP) {
            fail_a.fail("bravo's task never reached alpha on laptop");
        }
        Turn::bash("echo checked")
    }));
    model_a.push(Turn::text("got the answer and the task"));

    let run_b = devbox
        .claude
        .start("bravo", &model_b, &dir_b, "wait for questions");
    model_b.wait_turn(0, STEP);
    let run_a = laptop
        .claude
        .start("alpha", &model_a, &dir_a, "ask bravo on devbox");
    let out_a = run_a.wait(RUN_TIMEOUT);
    let out_b = run_b.wait(RUN_TIMEOUT);
    let why = || {
        format!(
            "{}\n{}\nlaptop:\n{}\ndevbox:\n{}",
            out_a.describe(),
            out_b.describe(),
            laptop.report(&[&model_a]),
            devbox.report(&[&model_b])
        )
    };

    assert!(model_b.failures().is_empty(), "{}", why());
    assert!(model_a.failures().is_empty(), "{}", why());
    let turns_a = model_a.turns();
    assert_eq!(turns_a.len(), 4, "{}", why());
    // The answer reached alpha's model, from bravo@devbox.
    let result = turns_a[2].last_tool_result().unwrap_or_default();
    assert!(
        result.contains(ANSWER),
        "ask_peer's result should carry the answer: {result}\n{}",
        why()
    );
    let doc = tool_json(&turns_a[2]);
    assert_eq!(doc["status"], "answered", "{result}\n{}", why());
    assert_eq!(doc["peer"], "bravo@devbox", "{result}\n{}", why());
    assert_eq!(doc["answer"], ANSWER, "{result}\n{}", why());
    // bravo's task reached alpha's model in the hook's frame, from "bravo@devbox", quoted.
    let texts = turns_a[3].message_texts();
    let injected = texts
        .iter()
        .find(|t| t.contains(FOLLOWUP))
        .unwrap_or_else(|| panic!("the task was not injected into alpha's context\n{}", why()));
    assert!(
        injected.contains(" · task from \"bravo@devbox\" ("),
        "the head should say from \"bravo@devbox\": {injected}\n{}",
        why()
    );
    assert!(
        injected.contains("from the Claude Code session \"bravo@devbox\" on another machine"),
        "{injected}\n{}",
        why()
    );
    assert!(
        injected.contains(&format!("│ {FOLLOWUP}\n")),
        "{injected}\n{}",
        why()
    );
    let turns_b = model_b.turns();
    assert_eq!(turns_b.len(), 4, "{}", why());
    let sent = turns_b[3].last_tool_result().unwrap_or_default();
    assert!(
        !sent.to_lowercase().contains("error"),
        "send_message failed: {sent}\n{}",
        why()
    );
    let replied = turns_b[2].last_tool_result().unwrap_or_default();
    assert!(
        !replied.to_lowercase().contains("error"),
        "reply_to_peer failed: {replied}\n{}",
        why()
    );
    // On devbox the question is from alpha@laptop, and answered.
    let id = id_rx.try_recv().unwrap();
    let question = devbox.cli().message(id);
    assert_eq!(question["kind"], "question", "{question}");
    assert_eq!(question["body"], QUESTION, "{question}");
    assert_eq!(question["from"]["name"], "alpha@laptop", "{question}");
    assert_eq!(question["status"], "answered", "{question}");
    out_a.assert_success();
    out_b.assert_success();
}

/// A session that exits leaves `mesh list`; a late SessionEnd (of the old session, replayed
/// after a new session of the same name registered) does not disturb the new session, which
/// stays listed and still gets its mail.
#[test]
fn exited_session_leaves_list_and_late_session_end_is_harmless() {
    let Some(fx) = Fixture::mesh("exited_session_leaves_list_and_late_session_end_is_harmless")
    else {
        return;
    };
    let _serial = claude::serial();
    let project = fx.mesh.project("golf");
    let cli = fx.cli();

    // Session 1: registers, answers, exits.
    let (tx, rx) = mpsc::channel();
    let c = cli.clone();
    let model1 = Model::start(
        "golf-1",
        vec![Turn::compute(move |_| {
            tx.send(c.wait_live("golf", STEP)).unwrap();
            Turn::text("bye")
        })],
    );
    let out1 = fx
        .claude
        .run("golf-1", &model1, &project, "say bye", RUN_TIMEOUT);
    let why1 = || format!("{}\n{}", out1.describe(), fx.report(&[&model1]));
    let listed = rx
        .try_recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", why1()));
    assert_eq!(
        listed["pid"],
        out1.pid,
        "registered with its pid\n{}",
        why1()
    );
    assert_eq!(listed["id"], out1.session_id(), "{}", why1());
    out1.assert_success();
    wait_for("the ended session to leave mesh list", STEP, || {
        cli.live_named("golf").is_empty()
    });

    // Session 2, same project and name; its first turn waits for the test.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let model2 = Model::start(
        "golf-2",
        vec![
            Turn::compute(move |_| {
                let _ = go_rx.recv_timeout(Duration::from_secs(60));
                Turn::bash("echo checked")
            }),
            Turn::text("done"),
        ],
    );
    let run2 = fx.claude.start("golf-2", &model2, &project, "keep working");
    let second = cli
        .wait_live("golf", STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", debug_now(&run2.debug_log, &fx, &model2)));
    assert_eq!(second["pid"], run2.pid());
    let second_id = second["id"].as_str().unwrap().to_owned();

    // Late SessionEnds: session 1's (its dead process), and one for a stale session id in
    // session 2's own process (as after /clear).
    let replays = [
        (out1.pid, out1.session_id().to_owned(), "other"),
        (run2.pid(), out1.session_id().to_owned(), "clear"),
    ];
    for (pid, session_id, reason) in &replays {
        let input = json!({
            "session_id": session_id,
            "transcript_path": fx.mesh.home.path().join(format!(".claude/projects/x/{session_id}.jsonl")),
            "cwd": project,
            "hook_event_name": "SessionEnd",
            "reason": reason,
        });
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "{} hook session-end",
                claude::sh_quote(mesh_testkit::mesh_bin())
            ))
            .env("HOME", fx.mesh.home.path())
            .env("CLAUDE_MESH_HOME", fx.mesh.state.root())
            .env("CLAUDE_PID", pid.to_string())
            .env("CLAUDE_CODE_SESSION_ID", session_id)
            .env("CLAUDE_PROJECT_DIR", &project)
            .env("CLAUDECODE", "1")
            .current_dir(&project)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "mesh hook session-end: {done:?}");
        let live = cli.live_named("golf");
        assert!(
            live.len() == 1 && live[0]["pid"] == run2.pid() && live[0]["id"] == second_id.as_str(),
            "a late SessionEnd (pid {pid}, session {session_id}, reason {reason}) disturbed \
             the newer session: mesh list shows {live:?}\n{}",
            fx.report(&[&model2])
        );
    }

    // The newer session still gets its mail.
    const TASK: &str = "TASK-0d4c: still there?";
    let id = cli.send("golf", TASK);
    go_tx.send(()).unwrap();
    let out2 = run2.wait(RUN_TIMEOUT);
    let why2 = || format!("{}\n{}", out2.describe(), fx.report(&[&model2]));
    let turns = model2.turns();
    assert_eq!(turns.len(), 2, "{}", why2());
    assert!(turns[1].conversation_contains(TASK), "{}", why2());
    assert_eq!(cli.message(id)["status"], "delivered");
    out2.assert_success();
    wait_for("the second session to leave mesh list", STEP, || {
        cli.live_named("golf").is_empty()
    });
}

/// Mail for a session that ended waits, and is handed to the next session of that name when
/// it starts.
#[test]
fn mail_for_an_ended_session_reaches_the_next_one() {
    let Some(fx) = Fixture::mesh("mail_for_an_ended_session_reaches_the_next_one") else {
        return;
    };
    let _serial = claude::serial();
    let project = fx.mesh.project("hotel");
    let cli = fx.cli();
    let model1 = Model::start("hotel-1", vec![Turn::text("bye")]);
    let out1 = fx
        .claude
        .run("hotel-1", &model1, &project, "say bye", RUN_TIMEOUT);
    out1.assert_success();
    wait_for("the session to leave mesh list", STEP, || {
        cli.live_named("hotel").is_empty()
    });

    const TASK: &str = "TASK-e29f: pick this up next time";
    let id = cli.send("hotel", TASK);
    assert_eq!(cli.message(id)["status"], "queued");

    let model2 = Model::start("hotel-2", vec![Turn::text("picked up")]);
    let out2 = fx
        .claude
        .run("hotel-2", &model2, &project, "hello again", RUN_TIMEOUT);
    let why = || format!("{}\n{}", out2.describe(), fx.report(&[&model1, &model2]));
    let turns = model2.turns();
    assert!(!turns.is_empty(), "{}", why());
    assert!(
        turns[0].conversation_contains(TASK),
        "the waiting task should reach the new session's first request\n{}",
        why()
    );
    assert_eq!(cli.message(id)["status"], "delivered", "{}", why());
    out2.assert_success();
}

/// Diagnostics while a run is still going.
fn debug_now(debug_log: &Path, fx: &Fixture, model: &Model) -> String {
    format!(
        "{}\n{}",
        claude::run::debug_excerpt(debug_log),
        fx.report(&[model])
    )
}

// --- interactive Claude Code in a pseudo-terminal ---------------------------------------------

/// The pty harness itself (`mesh_testkit::tty`), on a shell: the size is set before the
/// program starts and changes with `resize`, typed lines reach it, the output and the screen
/// show what it printed, the exit status comes back.
#[test]
fn tty_harness_drives_a_shell_in_a_pty() {
    const T: Duration = Duration::from_secs(10);
    let cmd = tty::Command::new("/bin/sh").args([
        "-c",
        "stty size; read x; echo got:$x; stty size; printf '\\033[31mred\\033[0m\\n'; exit 3",
    ]);
    let t = tty::Tty::spawn(cmd, 30, 100);
    t.wait_for("30 100", T).unwrap();
    let mark = t.mark();
    t.resize(20, 60);
    t.write(b"hello\r");
    t.wait_for("got:hello", T).unwrap();
    t.wait_for_since(mark, "20 60", T).unwrap();
    t.wait_for_bytes(b"\x1b[31mred\x1b[0m", T).unwrap();
    let status = t
        .wait_exit(T)
        .unwrap_or_else(|| panic!("still running\n{}", t.describe()));
    assert_eq!(status.code(), Some(3), "{}", t.describe());
    assert!(t.eof());
    // `since` starts at the mark; colours are gone from the text and the screen; the terminal
    // echoed the typed line.
    assert!(!t.since(mark).contains("30 100"));
    assert!(t.text().contains("\nred\n"), "{:?}", t.text());
    assert_eq!(t.screen(), "30 100\nhello\ngot:hello\n20 60\nred");
    // Waiting for what never comes fails at once when the output ended, with the screen.
    let err = t.wait_for("never printed", T).unwrap_err();
    assert!(
        err.contains("output ended") && err.contains("got:hello"),
        "{err}"
    );
}

/// Real Claude Code run interactively in a pty (no `-p`): with `prepare_home` it goes straight
/// to its prompt, a prompt typed as `submit` types it reaches the scripted model, the reply is
/// drawn, the hooks register the session, mark it idle after the turn (Stop) and remove it on
/// `/exit` (SessionEnd), and it exits with status 0.
#[test]
fn interactive_claude_in_a_pty_runs_a_turn_with_hooks() {
    let Some(fx) = Fixture::mesh("interactive_claude_in_a_pty_runs_a_turn_with_hooks") else {
        return;
    };
    let _serial = claude::serial();
    const PROMPT: &str = "PROMPT-6a1f: hello from a terminal";
    const REPLY: &str = "REPLY-6a1f";
    let project = fx.mesh.project("kilo");
    let model = Model::start("kilo", vec![Turn::text(format!("{REPLY}: hello, human"))]);
    let started = Instant::now();
    let session = interactive::Session::start(&fx.claude, "kilo", &model, &project);
    let why = || format!("{}\n{}", session.describe(), fx.report(&[&model]));
    session
        .wait_ready(STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let ready_after = started.elapsed();
    let cli = fx.cli();
    let listed = cli
        .wait_live("kilo", STEP)
        .unwrap_or_else(|e| panic!("SessionStart: {e}\n{}", why()));
    assert_eq!(listed["pid"], session.tty.pid(), "{}", why());
    assert!(
        model.turns().is_empty(),
        "no turn before a prompt\n{}",
        why()
    );

    let mark = session.tty.mark();
    session.submit(PROMPT);
    let turn = model.wait_turn(0, STEP);
    assert!(
        turn.conversation_contains(PROMPT),
        "the typed prompt should reach the model\n{}",
        why()
    );
    session
        .tty
        .wait_for_since(mark, REPLY, STEP)
        .unwrap_or_else(|e| panic!("the reply should be drawn: {e}\n{}", why()));
    // The Stop hook ran and marked the session idle.
    wait_for("the session to be idle after its turn", STEP, || {
        cli.live_named("kilo")
            .first()
            .is_some_and(|s| s["idle"] == true)
    });
    // Claude Code logs each hook when it finished (the Stop hook may still be finishing).
    for hook in ["SessionStart", "UserPromptSubmit", "Stop"] {
        let line = format!("Hooks: {hook}");
        let logged = mesh_testkit::poll(STEP, || {
            fs::read_to_string(&session.debug_log)
                .unwrap_or_default()
                .contains(&line)
                .then_some(())
        });
        assert!(
            logged.is_some(),
            "no {hook} hook in the debug log\n{}",
            why()
        );
    }

    let status = session
        .exit(STEP)
        .unwrap_or_else(|| panic!("claude did not exit\n{}", why()));
    assert!(status.success(), "exit status {status}\n{}", why());
    wait_for("the session to leave mesh list (SessionEnd)", STEP, || {
        cli.live_named("kilo").is_empty()
    });
    assert_eq!(model.turns().len(), 1, "{}", why());
    assert!(model.failures().is_empty(), "{}", why());
    eprintln!(
        "interactive claude: prompt after {ready_after:?}, whole session {:?}",
        started.elapsed()
    );
}

/// `mesh run` with the real Claude Code, interactive in a pty: after its first turn the session
/// is idle; a task from the user makes the supervisor type the wake line, Claude Code submits
/// it, the UserPromptSubmit hook delivers the task, and the model's next turn has both.
#[test]
fn mesh_run_wakes_an_idle_interactive_claude_when_a_task_arrives() {
    let Some(fx) = Fixture::mesh("mesh_run_wakes_an_idle_interactive_claude_when_a_task_arrives")
    else {
        return;
    };
    let _serial = claude::serial();
    const TASK: &str = "TASK-5e2d: please bump the version";
    let project = fx.mesh.project("lima");
    let model = Model::start(
        "lima",
        vec![
            Turn::text("REPLY-5e2d-1: hello"),
            Turn::text("REPLY-5e2d-2: bumping it"),
        ],
    );
    let session = interactive::Session::start_supervised(
        &fx.claude,
        "lima",
        &model,
        &project,
        Path::new(mesh_testkit::mesh_bin()),
    );
    let run_log = fx.mesh.state.run_log();
    let why = || {
        format!(
            "{}\nmesh run log:\n{}\n{}",
            session.describe(),
            fs::read_to_string(&run_log).unwrap_or_default(),
            fx.report(&[&model])
        )
    };
    session
        .wait_ready(STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    let cli = fx.cli();
    let listed = cli
        .wait_live("lima", STEP)
        .unwrap_or_else(|e| panic!("SessionStart: {e}\n{}", why()));
    assert_ne!(
        listed["pid"],
        session.tty.pid(),
        "the session is Claude Code, not its supervisor\n{}",
        why()
    );

    session.submit("hello");
    model.wait_turn(0, STEP);
    wait_for("the session to be idle after its turn", STEP, || {
        cli.live_named("lima")
            .first()
            .is_some_and(|s| s["idle"] == true)
    });

    let id = cli.send("lima", TASK);
    let woken = model.wait_turn(1, STEP);
    assert!(
        woken.conversation_contains(
            "[claude-mesh] New mail while you were idle: 1 task from \"user\"."
        ),
        "the wake line should be the prompt\n{}",
        why()
    );
    assert!(
        woken.conversation_contains(TASK),
        "the hook should deliver the task with it\n{}",
        why()
    );
    session
        .tty
        .wait_for("REPLY-5e2d-2", STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", why()));
    assert_eq!(cli.message(id)["status"], "delivered", "{}", why());

    let status = session
        .exit(STEP)
        .unwrap_or_else(|| panic!("mesh run did not exit\n{}", why()));
    assert!(status.success(), "exit status {status}\n{}", why());
    assert_eq!(model.turns().len(), 2, "woken once\n{}", why());
    assert!(model.failures().is_empty(), "{}", why());
}

// --- a peer's transcript, read from the file real Claude Code wrote ---------------------------

impl Cli {
    /// Run `mesh <args>` and return what it printed; panics on failure.
    fn text(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "mesh {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The last tool result in `req`, parsed as the JSON document the transcript tools answer with
/// (`Null` when there is none, or it is not JSON: an error text).
fn tool_json(req: &Request) -> Value {
    req.last_tool_result()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Session A (`mike`) runs one headless turn: a prompt, a Bash call printing 400 lines, a
/// three-line reply; it ends, and Claude Code has written its transcript under the temp HOME,
/// whose path A's SessionStart hook reported. Session B (`november`) then reads that real file
/// through the MCP tools: `read_history` gives the last two turns (the Bash result cut by the
/// default redaction, and the reply), `search_history` finds the reply's marker with the lines
/// around it, `get_turn` returns the turn it found and the prompt (turn 0). The peer has ended:
/// the tools (and the CLI) resolve ended sessions too. `mesh history` and `mesh search` show
/// the same.
#[test]
fn transcript_tools_read_a_real_claude_code_transcript() {
    let Some(fx) = Fixture::mesh("transcript_tools_read_a_real_claude_code_transcript") else {
        return;
    };
    let _serial = claude::serial();
    const PROMPT: &str = "MARKER-PROMPT-3c9e: count to four hundred";
    const REPLY: &str = "Counted.\nMARKER-REPLY-3c9e: counted to 400\nThe last number was 400.";
    const OUTPUT_LINES: usize = 400;
    let cli = fx.cli();

    // A: the prompt, `seq 1 400`, the reply; then it exits.
    let dir_a = fx.mesh.project("mike");
    let model_a = Model::start(
        "mike",
        vec![
            Turn::bash(format!("seq 1 {OUTPUT_LINES}")),
            Turn::text(REPLY),
        ],
    );
    let out_a = fx.claude.run("mike", &model_a, &dir_a, PROMPT, RUN_TIMEOUT);
    let why_a = || format!("{}\n{}", out_a.describe(), fx.report(&[&model_a]));
    out_a.assert_success();
    let turns_a = model_a.turns();
    assert_eq!(turns_a.len(), 2, "{}", why_a());
    assert_eq!(
        turns_a[1]
            .last_tool_result()
            .unwrap_or_default()
            .lines()
            .count(),
        OUTPUT_LINES,
        "the Bash call should have printed {OUTPUT_LINES} lines\n{}",
        why_a()
    );
    wait_for("mike to end (SessionEnd)", STEP, || {
        cli.live_named("mike").is_empty()
    });
    // The transcript A reported is Claude Code's own file under the temp HOME.
    let raw = cli.json(&["history", "mike", "-n", "2", "--raw"]);
    let transcript = PathBuf::from(raw["transcript"].as_str().unwrap_or_default());
    assert!(
        transcript.starts_with(fx.mesh.home.path().join(".claude/projects"))
            && transcript.ends_with(format!("{}.jsonl", out_a.session_id()))
            && transcript.is_file(),
        "the transcript path A's SessionStart hook reported: {raw}\n{}",
        why_a()
    );

    // B: load the three tools, read mike's last two turns, search for the reply, get the turn
    // found, then turn 0.
    let dir_b = fx.mesh.project("november");
    let names = [mcp("read_history"), mcp("search_history"), mcp("get_turn")];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let model_b = Model::start("november", Vec::new());
    model_b.push(Turn::tool_search(&refs));
    model_b.push(Turn::tool(
        mcp("read_history"),
        json!({"peer": "mike", "last_n_turns": 2}),
    ));
    model_b.push(Turn::tool(
        mcp("search_history"),
        json!({"peer": "mike", "query": "MARKER-REPLY"}),
    ));
    let sink = model_b.failure_sink();
    model_b.push(Turn::compute(move |req| {
        match tool_json(req)["matches"][0]["turn"].as_u64() {
            Some(turn) => Turn::tool(mcp("get_turn"), json!({"peer": "mike", "turn_index": turn})),
            None => {
                sink.fail(format!(
                    "search_history found no turn: {:?}",
                    req.last_tool_result()
                ));
                Turn::text("nothing found")
            }
        }
    }));
    model_b.push(Turn::tool(
        mcp("get_turn"),
        json!({"peer": "mike", "turn_index": 0}),
    ));
    model_b.push(Turn::text("read mike's history"));
    let out_b = fx.claude.run(
        "november",
        &model_b,
        &dir_b,
        "what did mike do?",
        RUN_TIMEOUT,
    );
    let why = || {
        format!(
            "{}\n{}\nmike's transcript: {}",
            out_b.describe(),
            fx.report(&[&model_b]),
            transcript.display()
        )
    };
    assert!(model_b.failures().is_empty(), "{}", why());
    let turns = model_b.turns();
    assert_eq!(turns.len(), 6, "{}", why());

    // read_history: of A's transcript records only the prompt, the Bash call, its result and
    // the reply are turns; the last two are the result (redacted) and the reply.
    let history = tool_json(&turns[2]);
    assert_eq!(history["peer"], "mike", "{history}\n{}", why());
    assert_eq!(history["session_id"], out_a.session_id(), "{history}");
    assert_eq!(history["redacted"], true, "{history}");
    assert_eq!(
        history["total_turns"], 4,
        "prompt, tool_use, tool_result, reply; attachments, API request records and the \
         like are not turns: {history}"
    );
    let last = history["turns"].as_array().cloned().unwrap_or_default();
    let at = |i: usize, key: &str| last.get(i).map(|t| t[key].clone()).unwrap_or(Value::Null);
    assert_eq!(last.len(), 2, "{history}\n{}", why());
    assert_eq!((at(0, "index"), at(0, "role")), (json!(2), json!("user")));
    assert_eq!(
        (at(1, "index"), at(1, "role")),
        (json!(3), json!("assistant"))
    );
    let cut = mesh::transcript::BLOCK_LINES;
    let mut expected = vec!["[tool_result]".to_owned()];
    expected.extend((1..=cut).map(|n| n.to_string()));
    expected.push(format!("… [{} more lines]", OUTPUT_LINES - cut));
    let result_lines: Vec<String> = at(0, "text")
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        result_lines,
        expected,
        "the Bash output should be cut to {cut} lines and a note\n{}",
        why()
    );
    assert_eq!(at(1, "text"), REPLY, "{history}");
    assert!(
        !history.to_string().contains("MARKER-PROMPT"),
        "the prompt is not among the last two turns: {history}"
    );

    // search_history: the reply's marker, with its line before and after.
    let search = tool_json(&turns[3]);
    assert_eq!(search["more_matches"], false, "{search}\n{}", why());
    let matches = search["matches"].as_array().cloned().unwrap_or_default();
    assert_eq!(matches.len(), 1, "{search}\n{}", why());
    assert_eq!(matches[0]["turn"], 3, "{search}");
    assert_eq!(matches[0]["role"], "assistant", "{search}");
    assert_eq!(matches[0]["line"], 1, "{search}");
    assert_eq!(
        matches[0]["excerpt"],
        json!(REPLY.lines().collect::<Vec<_>>()),
        "{search}"
    );

    // get_turn: the turn search found is the one read_history gave; turn 0 is the prompt.
    let found = tool_json(&turns[4]);
    assert_eq!(found["turn"], last[1], "{found}\n{}", why());
    let first = tool_json(&turns[5]);
    assert_eq!(first["redacted"], true, "{first}\n{}", why());
    assert_eq!(first["turn"]["index"], 0, "{first}");
    assert_eq!(first["turn"]["role"], "user", "{first}");
    assert_eq!(first["turn"]["text"], PROMPT, "{first}");
    assert!(first["turn"]["timestamp"].is_string(), "{first}");
    out_b.assert_success();

    // The CLI reads the same file: `mesh history` (redacted), `mesh search`, and `--raw`.
    let shown = cli.text(&["history", "mike"]);
    for needle in [
        PROMPT,
        "MARKER-REPLY-3c9e: counted to 400",
        "last 4 of 4 turns (redacted; --raw for all)",
        &format!("… [{} more lines]", OUTPUT_LINES - cut),
        "── turn 0 · user",
        "── turn 3 · assistant",
    ] {
        assert!(
            shown.contains(needle),
            "mesh history mike should show {needle:?}:\n{shown}"
        );
    }
    assert!(!shown.lines().any(|l| l == "│ 400"), "redacted:\n{shown}");
    let searched = cli.text(&["search", "mike", "MARKER-PROMPT"]);
    assert!(
        searched.contains("── turn 0 · user · line 0 ──") && searched.contains(PROMPT),
        "mesh search mike MARKER-PROMPT:\n{searched}"
    );
    let raw_result = raw["turns"][0]["text"].as_str().unwrap_or_default();
    assert_eq!(
        raw_result.lines().count(),
        OUTPUT_LINES + 1,
        "--raw keeps all of the Bash output: {raw}"
    );
    assert_eq!(raw["turns"][1]["text"], REPLY, "{raw}");
}

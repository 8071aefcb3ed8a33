//! A scripted stand-in for the Anthropic Messages API, served on 127.0.0.1 so that the real
//! Claude Code binary can run headless with no network (`ANTHROPIC_BASE_URL`).
//!
//! HTTP/1.1 on std `TcpListener`, one thread per connection, keep-alive, request bodies by
//! `Content-Length` or chunked. `POST /v1/messages` is answered with a Server-Sent-Events stream
//! (`message_start`, `content_block_start` / `_delta` / `_stop`, `message_delta`,
//! `message_stop`), or with one JSON message when the request does not ask to stream.
//!
//! A request that carries `tools` is a *turn* of the main conversation and takes the next
//! [`Turn`] of the script; a request without `tools` is a side request (titles, summaries) and
//! gets a fixed text, without consuming the script. Every `/v1/messages` request is recorded
//! (headers, raw body, parsed body) so a test can assert what reached the model. Any other
//! endpoint gets a harmless `200 {}` and is logged in [`Model::probes`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the model says in one turn.
pub enum Turn {
    /// A plain text answer; `stop_reason` `end_turn`.
    Text(String),
    /// A call of tool `name` with `input`; `stop_reason` `tool_use`. The input is streamed as
    /// `input_json_delta` fragments.
    Tool { name: String, input: Value },
    /// Decide when the request arrives: the closure sees the request (and may block, e.g. to
    /// wait for the test to set something up; Claude Code waits up to 600 s for an answer).
    Compute(Box<dyn FnOnce(&Request) -> Turn + Send>),
}

impl Turn {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Self {
        Self::Tool {
            name: name.into(),
            input,
        }
    }

    pub fn compute(f: impl FnOnce(&Request) -> Turn + Send + 'static) -> Self {
        Self::Compute(Box::new(f))
    }

    /// A `Bash` tool call.
    pub fn bash(command: impl Into<String>) -> Self {
        Self::tool(
            "Bash",
            json!({"command": command.into(), "description": "scripted command"}),
        )
    }

    /// Load deferred tools by exact name through Claude Code's `ToolSearch` (their schemas then
    /// appear in the next request's `tools`). Claude Code waits for pending MCP connections
    /// before it answers.
    pub fn tool_search(names: &[&str]) -> Self {
        Self::tool(
            "ToolSearch",
            json!({"query": format!("select:{}", names.join(",")), "max_results": names.len()}),
        )
    }
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Self::Tool { name, input } => f
                .debug_struct("Tool")
                .field("name", name)
                .field("input", input)
                .finish(),
            Self::Compute(_) => f.write_str("Compute(..)"),
        }
    }
}

/// One recorded `/v1/messages` request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Order of arrival among all `/v1/messages` requests to this model.
    pub seq: usize,
    /// `Some(n)` (0-based) when this request was turn `n` of the script; `None` for a side
    /// request.
    pub turn: Option<usize>,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub raw: String,
    pub body: Value,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Claude Code's session id, sent with every request.
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    /// Names in the request's `tools` (loaded tools, with schemas).
    pub fn tool_names(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `tools` entry named `name`.
    pub fn tool(&self, name: &str) -> Option<&Value> {
        self.body["tools"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == name)
    }

    /// Every string anywhere in `messages` (text blocks, tool results, system reminders), in
    /// order. This is the conversation as the model sees it, without the system prompt and
    /// tool definitions.
    pub fn message_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_strings(&self.body["messages"], &mut out);
        out
    }

    /// Whether `needle` occurs in the conversation (`messages`).
    pub fn conversation_contains(&self, needle: &str) -> bool {
        self.message_texts().iter().any(|t| t.contains(needle))
    }

    /// Whether `needle` occurs anywhere in the raw request body.
    pub fn contains(&self, needle: &str) -> bool {
        self.raw.contains(needle) || self.body.to_string().contains(needle)
    }

    /// The `tool_result` content (flattened to text) for tool use `id`.
    pub fn tool_result(&self, tool_use_id: &str) -> Option<String> {
        let messages = self.body["messages"].as_array()?;
        for m in messages {
            for block in m["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" && block["tool_use_id"] == tool_use_id {
                    let mut out = Vec::new();
                    collect_strings(&block["content"], &mut out);
                    return Some(out.join("\n"));
                }
            }
        }
        None
    }

    /// The last `tool_result` in the conversation, flattened to text.
    pub fn last_tool_result(&self) -> Option<String> {
        let messages = self.body["messages"].as_array()?;
        let mut last = None;
        for m in messages {
            for block in m["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" {
                    let mut out = Vec::new();
                    collect_strings(&block["content"], &mut out);
                    last = Some(out.join("\n"));
                }
            }
        }
        last
    }
}

/// The text in a piece of `messages`: every string value except structural ones (`type`,
/// `role`, ids, cache control, and the `output_config` 2.1.330 puts in its system messages).
fn collect_strings(v: &Value, out: &mut Vec<String>) {
    const STRUCTURAL: [&str; 7] = [
        "type",
        "role",
        "id",
        "tool_use_id",
        "cache_control",
        "signature",
        "output_config",
    ];
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !STRUCTURAL.contains(&k.as_str()))
            .for_each(|(_, x)| collect_strings(x, out)),
        _ => {}
    }
}

/// Text given to side requests (requests without `tools`).
pub const SIDE_ANSWER: &str = "Scripted side answer";
/// Text given to turns past the end of the script (also recorded as a failure).
pub const EXHAUSTED: &str = "(scripted model: script exhausted)";

struct Shared {
    label: String,
    script: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<Request>>,
    changed: Condvar,
    probes: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
    turns_served: AtomicUsize,
    tool_ids: AtomicUsize,
    stop: AtomicBool,
}

/// The scripted model server. Dropping it stops accepting connections.
pub struct Model {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("label", &self.shared.label)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Model {
    /// Serve `script` on 127.0.0.1 (a free port). `label` names this model in logs.
    pub fn start(label: &str, script: Vec<Turn>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            label: label.to_owned(),
            script: Mutex::new(script.into()),
            requests: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            probes: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            turns_served: AtomicUsize::new(0),
            tool_ids: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::Builder::new()
            .name(format!("model-{label}-accept"))
            .spawn(move || accept_loop(&listener, &s))
            .unwrap();
        Self { addr, shared }
    }

    /// `http://127.0.0.1:<port>`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Append turns to the script.
    pub fn push(&self, turn: Turn) {
        lock(&self.shared.script).push_back(turn);
    }

    /// Every `/v1/messages` request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The turn requests (those that consumed the script), in order.
    pub fn turns(&self) -> Vec<Request> {
        let mut t: Vec<Request> = self
            .requests()
            .into_iter()
            .filter(|r| r.turn.is_some())
            .collect();
        t.sort_by_key(|r| r.turn);
        t
    }

    /// Turn request `n` (0-based), waiting up to `deadline` for it.
    pub fn wait_turn(&self, n: usize, deadline: Duration) -> Request {
        let end = Instant::now() + deadline;
        let mut requests = lock(&self.shared.requests);
        loop {
            if let Some(r) = requests.iter().find(|r| r.turn == Some(n)) {
                return r.clone();
            }
            let now = Instant::now();
            assert!(
                now < end,
                "model {}: no turn request #{n} within {deadline:?} ({} requests so far)",
                self.shared.label,
                requests.len()
            );
            requests = self
                .shared
                .changed
                .wait_timeout(requests, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many turns have been answered from the script (including exhausted ones).
    pub fn turns_served(&self) -> usize {
        self.shared.turns_served.load(Ordering::SeqCst)
    }

    /// Turns still in the script.
    pub fn remaining(&self) -> usize {
        lock(&self.shared.script).len()
    }

    /// Requests to endpoints other than `/v1/messages`.
    pub fn probes(&self) -> Vec<String> {
        lock(&self.shared.probes).clone()
    }

    /// Problems inside the model: a panicking `Compute` turn, the script running out, a
    /// malformed request.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared.failures).clone()
    }

    /// Record a failure from a `Compute` closure (shown by [`Model::summary`]).
    pub fn fail(&self, what: impl Into<String>) {
        lock(&self.shared.failures).push(what.into());
    }

    /// A handle a `Compute` closure can hold to record failures.
    pub fn failure_sink(&self) -> FailureSink {
        FailureSink(self.shared.clone())
    }

    /// A short description for assertion messages.
    pub fn summary(&self) -> String {
        let requests = self.requests();
        let mut s = format!(
            "model {}: {} requests ({} turns served, {} turns left in the script)\n",
            self.shared.label,
            requests.len(),
            self.turns_served(),
            self.remaining()
        );
        for r in &requests {
            let tail = r.message_texts().last().cloned().unwrap_or_default();
            s.push_str(&format!(
                "  #{} turn={:?} tools={} last message text: {}\n",
                r.seq,
                r.turn,
                r.tool_names().len(),
                truncate(&tail, 300)
            ));
        }
        for f in self.failures() {
            s.push_str(&format!("  FAILURE: {f}\n"));
        }
        for p in self.probes() {
            s.push_str(&format!("  probe: {p}\n"));
        }
        s
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Lets a `Compute` closure record a failure on its model.
#[derive(Clone)]
pub struct FailureSink(Arc<Shared>);

impl FailureSink {
    pub fn fail(&self, what: impl Into<String>) {
        lock(&self.0.failures).push(what.into());
    }
}

impl fmt::Debug for FailureSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailureSink")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}…")
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let s = shared.clone();
        let _ = thread::Builder::new()
            .name(format!("model-{}-conn", shared.label))
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &s) {
                    // A client closing mid-request is normal (Claude Code exiting).
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        lock(&s.probes).push(format!("connection error: {e}"));
                    }
                }
            });
    }
}

/// One parsed HTTP request.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read one request from `r`; `Ok(None)` on a clean EOF before any byte.
pub fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad request line {line:?}"),
        ));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut req = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let size_str = line.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn serve_connection(stream: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(req) = read_request(&mut reader, &mut writer)? {
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let route = req.path.split('?').next().unwrap_or("").to_owned();
        let (status, content_type, body) = if req.method == "POST" && route == "/v1/messages" {
            messages(&req, shared)
        } else if req.method == "POST" && route == "/v1/messages/count_tokens" {
            log_probe(shared, &req);
            (
                "200 OK",
                "application/json",
                br#"{"input_tokens": 1000}"#.to_vec(),
            )
        } else {
            log_probe(shared, &req);
            ("200 OK", "application/json", b"{}".to_vec())
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             cache-control: no-cache\r\nrequest-id: req_scripted\r\nconnection: {}\r\n\r\n",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        writer.write_all(head.as_bytes())?;
        if req.method != "HEAD" {
            writer.write_all(&body)?;
        }
        writer.flush()?;
        if close {
            break;
        }
    }
    Ok(())
}

fn log_probe(shared: &Shared, req: &HttpRequest) {
    lock(&shared.probes).push(format!(
        "{} {} ({} bytes)",
        req.method,
        req.path,
        req.body.len()
    ));
}

fn messages(req: &HttpRequest, shared: &Arc<Shared>) -> (&'static str, &'static str, Vec<u8>) {
    let raw = String::from_utf8_lossy(&req.body).into_owned();
    let body: Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(e) => {
            lock(&shared.failures).push(format!("unparsable /v1/messages body: {e}"));
            let err = json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": format!("scripted model: bad JSON: {e}")}});
            return (
                "400 Bad Request",
                "application/json",
                err.to_string().into_bytes(),
            );
        }
    };
    let is_turn = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-scripted")
        .to_owned();

    // Take the turn and record the request under one lock, so turn numbers follow arrival.
    let (turn_no, turn) = if is_turn {
        let mut script = lock(&shared.script);
        let n = shared.turns_served.fetch_add(1, Ordering::SeqCst);
        (Some(n), script.pop_front())
    } else {
        (None, None)
    };
    let request = {
        let mut requests = lock(&shared.requests);
        let r = Request {
            seq: requests.len(),
            turn: turn_no,
            path: req.path.clone(),
            headers: req.headers.clone(),
            raw,
            body,
        };
        requests.push(r.clone());
        shared.changed.notify_all();
        r
    };

    let turn = match (turn_no, turn) {
        (None, _) => Turn::text(SIDE_ANSWER),
        (Some(n), None) => {
            lock(&shared.failures).push(format!("turn #{n} requested past the end of the script"));
            Turn::text(EXHAUSTED)
        }
        (Some(_), Some(t)) => t,
    };
    let turn = resolve(turn, &request, shared);
    let blocks = match turn {
        Turn::Text(text) => vec![Block::Text(text)],
        Turn::Tool { name, input } => {
            let id = format!(
                "toolu_scripted_{:04}_{}",
                shared.tool_ids.fetch_add(1, Ordering::SeqCst),
                std::process::id()
            );
            vec![Block::Tool { id, name, input }]
        }
        Turn::Compute(_) => unreachable!("resolved above"),
    };
    if stream {
        ("200 OK", "text/event-stream", sse(&model, &blocks))
    } else {
        ("200 OK", "application/json", whole(&model, &blocks))
    }
}

/// Run `Compute` turns (catching panics, which become failures and a text answer).
fn resolve(mut turn: Turn, request: &Request, shared: &Shared) -> Turn {
    for _ in 0..16 {
        match turn {
            Turn::Compute(f) => match catch_unwind(AssertUnwindSafe(|| f(request))) {
                Ok(t) => turn = t,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panic".to_owned());
                    lock(&shared.failures).push(format!(
                        "Compute turn for request #{} panicked: {msg}",
                        request.seq
                    ));
                    return Turn::text(format!("(scripted model: harness error: {msg})"));
                }
            },
            other => return other,
        }
    }
    lock(&shared.failures).push("Compute turns nested too deep".to_owned());
    Turn::text("(scripted model: harness error)")
}

enum Block {
    Text(String),
    Tool {
        id: String,
        name: String,
        input: Value,
    },
}

fn usage() -> Value {
    json!({"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0,
           "cache_read_input_tokens": 0})
}

fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::Tool { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
}

fn sse(model: &str, blocks: &[Block]) -> Vec<u8> {
    let mut out = Vec::new();
    event(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage()}}),
    );
    event(&mut out, "ping", &json!({"type": "ping"}));
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                event(
                    &mut out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "text", "text": ""}}),
                );
                // Two deltas, to exercise accumulation.
                let cut = text
                    .char_indices()
                    .nth(text.chars().count() / 2)
                    .map_or(text.len(), |(i, _)| i);
                for part in [&text[..cut], &text[cut..]] {
                    if part.is_empty() {
                        continue;
                    }
                    event(
                        &mut out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "text_delta", "text": part}}),
                    );
                }
            }
            Block::Tool { id, name, input } => {
                event(
                    &mut out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": id, "name": name,
                                              "input": {}}}),
                );
                let json = input.to_string();
                let cut = json
                    .char_indices()
                    .nth(json.chars().count() / 2)
                    .map_or(json.len(), |(i, _)| i);
                for part in [&json[..cut], &json[cut..]] {
                    event(
                        &mut out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": part}}),
                    );
                }
            }
        }
        event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": null},
                "usage": {"output_tokens": 10}}),
    );
    event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    out
}

fn whole(model: &str, blocks: &[Block]) -> Vec<u8> {
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::Tool { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        })
        .collect();
    json!({"id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
           "content": content, "stop_reason": stop_reason(blocks), "stop_sequence": null,
           "usage": usage()})
    .to_string()
    .into_bytes()
}

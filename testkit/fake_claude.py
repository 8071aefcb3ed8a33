#!/usr/bin/env python3
"""A stand-in for Claude Code under `mesh run`, for tests/run.rs.

It behaves like the parts of Claude Code that the supervisor deals with, and reports what it
sees as lines on its terminal that a test can wait for:

- `ARGS <json list>` and `TTY <rows>x<cols>` at start, `SIZE <rows>x<cols>` on every SIGWINCH;
- it runs the real `mesh hook session-start` (the session starts busy, as in Claude Code), then
  `STARTED`, and puts its terminal in raw mode like Claude Code does;
- `GOT <hex>` for every read from its terminal, so a test sees the exact bytes that arrived;
- it edits an input line (printable characters, backspace; Ctrl-C clears it; with
  FAKE_CLAUDE_PASTE=1 it turns bracketed paste on, and a paste `ESC[200~ … ESC[201~` goes into
  the line, its newlines included), and Enter on a non-empty line submits it: `mesh hook user-prompt-submit` runs, then `PROMPT <json>` and
  `CONTEXT <json of the hook's additionalContext>`, then `mesh hook stop` marks it idle: `IDLE`;
- the prompt `exit N` exits with code N, `die N` kills itself with signal N;
- SIGTERM, SIGHUP, SIGINT, SIGUSR1: `SIGNAL <n>`; after SIGTERM it exits with code 42;
- the prompt `suspend` stops it (SIGTSTP, as Claude Code's Ctrl-Z does); `CONTINUED` when it is
  continued.

Environment: FAKE_CLAUDE_MESH (the mesh binary), FAKE_CLAUDE_SESSION (the session id).
Hooks get CLAUDE_PID (this process), as Claude Code gives them.
"""

import json
import os
import signal
import subprocess
import sys
import termios
import tty

MESH = os.environ["FAKE_CLAUDE_MESH"]
SESSION = os.environ.get("FAKE_CLAUDE_SESSION", "fake-session-0001")


def say(*parts):
    os.write(1, (" ".join(parts) + "\r\n").encode())


def size():
    s = os.get_terminal_size(0)
    return f"{s.lines}x{s.columns}"


def hook(event, name, **fields):
    data = {
        "session_id": SESSION,
        "transcript_path": os.path.join(os.getcwd(), "transcript.jsonl"),
        "cwd": os.getcwd(),
        "hook_event_name": name,
        **fields,
    }
    env = dict(os.environ, CLAUDE_PID=str(os.getpid()))
    out = subprocess.run(
        [MESH, "hook", event],
        input=json.dumps(data).encode(),
        capture_output=True,
        env=env,
        timeout=20,
    )
    text = out.stdout.decode()
    if not text.strip():
        return {}
    return json.loads(text)


def on_signal(num, _frame):
    say("SIGNAL", str(num))
    if num == signal.SIGTERM:
        restore()
        sys.exit(42)


saved = None


def restore():
    if saved is not None:
        termios.tcsetattr(0, termios.TCSANOW, saved)


def main():
    global saved
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGWINCH, lambda *_: say("SIZE", size()))
    signal.signal(signal.SIGCONT, lambda *_: say("CONTINUED"))
    say("ARGS", json.dumps(sys.argv[1:]))
    say("TTY", size())
    hook("session-start", "SessionStart", source="startup")
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    if os.environ.get("FAKE_CLAUDE_PASTE") == "1":
        os.write(1, b"\x1b[?2004h")
    say("STARTED")
    line = ""
    pasting = False
    while True:
        try:
            data = os.read(0, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        say("GOT", data.hex())
        text = data.decode("utf-8", "replace")
        i = 0
        while i < len(text):
            if text.startswith("\x1b[200~", i) or text.startswith("\x1b[201~", i):
                pasting = text[i + 4] == "0"
                i += 6
                continue
            ch = text[i]
            i += 1
            if pasting:
                line += "\n" if ch == "\r" else ch
            elif ch in "\r\n":
                if line:
                    submit(line)
                line = ""
            elif ch == "\x03":
                line = ""
            elif ch in "\x7f\x08":
                line = line[:-1]
            elif ch >= " ":
                line += ch


def submit(line):
    words = line.split()
    if len(words) == 2 and words[0] == "exit":
        restore()
        sys.exit(int(words[1]))
    if len(words) == 2 and words[0] == "die":
        restore()
        os.kill(os.getpid(), int(words[1]))
    if words == ["suspend"]:
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    out = hook("user-prompt-submit", "UserPromptSubmit", prompt=line)
    context = out.get("hookSpecificOutput", {}).get("additionalContext", "")
    say("PROMPT", json.dumps(line))
    say("CONTEXT", json.dumps(context))
    hook("stop", "Stop", stop_hook_active=False)
    say("IDLE")


if __name__ == "__main__":
    main()

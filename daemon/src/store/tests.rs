//! Store unit tests: a real SQLite file in a temp dir, driven through the store thread.

use super::messages::{self, USER};
use super::sessions::{self, CallerProcs, Registration};
use super::*;
use mesh_proto::{Class, Kind, Scope};

fn open() -> (tempfile::TempDir, Store, StoreThread) {
    let dir = tempfile::tempdir().unwrap();
    let (store, thread) = Store::open(&dir.path().join("mesh.db")).unwrap();
    (dir, store, thread)
}

fn reg(session_id: &str, pid: u32, start: u64, name: &str) -> Registration {
    Registration {
        session_id: session_id.into(),
        pid,
        start_time: start,
        name: name.into(),
        cwd: format!("/work/{name}"),
        project_root: None,
        git_root: Some(format!("/work/{name}")),
        transcript_path: None,
        default_summary: format!("{name} on main"),
    }
}

fn register(store: &Store, r: Registration) -> sessions::SessionRow {
    store
        .call_blocking(move |ctx| sessions::register(ctx, r))
        .unwrap()
}

async fn areg(store: &Store, r: Registration) -> sessions::SessionRow {
    store
        .call(move |ctx| sessions::register(ctx, r))
        .await
        .unwrap()
}

fn send(
    store: &Store,
    from: Option<sessions::SessionRow>,
    to: &str,
    body: &str,
) -> Result<Vec<mesh_proto::Message>, WireError> {
    let (to, body) = (to.to_owned(), body.to_owned());
    store.call_blocking(move |ctx| messages::send(ctx, from.as_ref(), &to, Kind::Task, &body))
}

fn consume(store: &Store, who: sessions::SessionRow, class: Class) -> mesh_proto::Inbox {
    store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), class, false, 0, 0))
        .unwrap()
}

#[test]
fn send_and_consume_fifo_once() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    for i in 0..3 {
        send(&store, Some(a.clone()), "BETA", &format!("m{i}")).unwrap();
    }
    let inbox = consume(&store, b.clone(), Class::All);
    let bodies: Vec<_> = inbox.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert_eq!(inbox.messages[0].from.name, "alpha");
    assert!(consume(&store, b, Class::All).messages.is_empty());
}

#[test]
fn notes_wait_for_class_all() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let from = a.clone();
    store
        .call_blocking(move |ctx| messages::send(ctx, Some(&from), "beta", Kind::Note, "fyi"))
        .unwrap();
    assert!(
        consume(&store, b.clone(), Class::Urgent)
            .messages
            .is_empty()
    );
    assert_eq!(consume(&store, b, Class::All).messages.len(), 1);
}

#[test]
fn unknown_and_ambiguous_peers_are_typed_errors() {
    let (_d, store, _t) = open();
    register(&store, reg("aaaa-1111", 10, 1, "twin"));
    register(&store, reg("bbbb-2222", 20, 2, "twin"));
    let err = send(&store, None, "nobody", "x").unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPeer);
    let err = send(&store, None, "twin", "x").unwrap_err();
    assert_eq!(err.code, ErrorCode::AmbiguousPeer);
    assert!(
        err.message.contains("aaaa-111") && err.message.contains("bbbb-222"),
        "{}",
        err.message
    );
    // An id prefix disambiguates.
    let sent = send(&store, None, "bbbb", "x").unwrap();
    assert_eq!(sent[0].to.session_id.as_deref(), Some("bbbb-2222"));
    assert_eq!(sent[0].from.name, USER);
}

#[test]
fn mail_of_a_dead_session_waits_for_the_next_of_its_name() {
    let (_d, store, _t) = open();
    let old = register(&store, reg("old-session", 10, 1, "backend"));
    send(&store, None, "backend", "queued").unwrap();
    let key = old.key;
    assert!(
        store
            .call_blocking(move |ctx| sessions::process_exited(ctx, key, 10, 1))
            .unwrap()
    );
    // Still addressable while offline.
    send(&store, None, "backend", "while offline").unwrap();
    let new = register(&store, reg("new-session", 30, 3, "backend"));
    assert_ne!(new.key, old.key);
    let bodies: Vec<_> = consume(&store, new, Class::All)
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["queued", "while offline"]);
}

#[test]
fn clear_and_resume_keep_the_row() {
    let (_d, store, _t) = open();
    let first = register(&store, reg("id-1", 10, 1, "app"));
    // /clear: same process, new id.
    let cleared = register(&store, reg("id-2", 10, 1, "app"));
    assert_eq!(cleared.key, first.key);
    // A late SessionEnd of the old id removes nothing.
    assert_eq!(
        store
            .call_blocking(|ctx| sessions::deregister(ctx, "id-1"))
            .unwrap(),
        None
    );
    // --resume: new process, same id.
    let resumed = register(&store, reg("id-2", 11, 5, "app"));
    assert_eq!(resumed.key, first.key);
    assert_eq!(resumed.pid, 11);
}

#[test]
fn caller_resolution_checks_start_time() {
    let (_d, store, _t) = open();
    let s = register(&store, reg("id-1", 10, 1, "app"));
    let who = CallerProcs {
        claude: Some((10, 1)),
        ..Default::default()
    };
    let found = store
        .call_blocking(move |ctx| sessions::resolve_caller(ctx, &who))
        .unwrap();
    assert_eq!(found.map(|r| r.key), Some(s.key));
    // Same PID, another start time: a reused PID is not the session.
    let who = CallerProcs {
        claude: Some((10, 2)),
        lineage: crate::procinfo::LazyLineage::known(vec![(99, 1)]),
        session_id: None,
    };
    assert!(
        store
            .call_blocking(move |ctx| sessions::resolve_caller(ctx, &who))
            .unwrap()
            .is_none()
    );
    let who = CallerProcs {
        session_id: Some("id-1".into()),
        ..Default::default()
    };
    assert!(
        store
            .call_blocking(move |ctx| sessions::resolve_caller(ctx, &who))
            .unwrap()
            .is_some()
    );
}

#[test]
fn list_counts_pending_and_filters_scope() {
    let (_d, store, _t) = open();
    register(&store, reg("id-1", 10, 1, "alpha"));
    register(&store, reg("id-2", 20, 2, "beta"));
    send(&store, None, "beta", "one").unwrap();
    send(&store, None, "beta", "two").unwrap();
    let all = store
        .call_blocking(|ctx| sessions::list(ctx, Scope::Machine, None, None, false))
        .unwrap();
    let pending: Vec<_> = all.iter().map(|s| (s.name.as_str(), s.pending)).collect();
    assert_eq!(pending, [("alpha", 0), ("beta", 2)]);
    let repo = store
        .call_blocking(|ctx| {
            sessions::list(ctx, Scope::Repo, Some("/x"), Some("/work/alpha"), false)
        })
        .unwrap();
    assert_eq!(repo.len(), 1);
    assert_eq!(repo[0].name, "alpha");
}

#[tokio::test]
async fn reply_wakes_the_blocked_asker_and_is_delivered_once() {
    let (_d, store, _t) = open();
    let a = areg(&store, reg("id-a", 10, 1, "asker")).await;
    let b = areg(&store, reg("id-b", 20, 2, "answerer")).await;
    let (tx, rx) = oneshot::channel();
    let from = a.clone();
    let (q, live) = store
        .call(move |ctx| messages::ask(ctx, Some(&from), "answerer", "why?", tx))
        .await
        .unwrap();
    assert!(live);
    let inbox = store
        .call({
            let b = b.clone();
            move |ctx| messages::consume(ctx, Some(&b), Class::Urgent, false, 0, 0)
        })
        .await
        .unwrap();
    assert_eq!(inbox.messages[0].id, q.id);
    let qid = q.id;
    let answer = store
        .call(move |ctx| messages::reply(ctx, Some(&b), qid, "because"))
        .await
        .unwrap();
    match rx.await.unwrap() {
        AskResult::Answered(m) => assert_eq!((m.id, m.body.as_str()), (answer.id, "because")),
        other => panic!("unexpected {other:?}"),
    }
    // Handed to the blocked asker, so not in its inbox again.
    let inbox = store
        .call(move |ctx| messages::consume(ctx, Some(&a), Class::All, false, 0, 0))
        .await
        .unwrap();
    assert!(inbox.messages.is_empty());
    let status = store
        .call(move |ctx| messages::status(ctx, qid))
        .await
        .unwrap();
    assert_eq!(status.status, mesh_proto::Status::Answered);
}

#[tokio::test]
async fn death_of_the_asked_session_wakes_the_asker() {
    let (_d, store, _t) = open();
    let b = areg(&store, reg("id-b", 20, 2, "answerer")).await;
    let (tx, rx) = oneshot::channel();
    store
        .call(move |ctx| messages::ask(ctx, None, "answerer", "still there?", tx))
        .await
        .unwrap();
    let key = b.key;
    store
        .call(move |ctx| sessions::process_exited(ctx, key, 20, 2))
        .await
        .unwrap();
    assert_eq!(rx.await.unwrap(), AskResult::PeerGone);
}

#[tokio::test]
async fn answer_to_an_asker_that_left_waits_in_its_inbox() {
    let (_d, store, _t) = open();
    let b = areg(&store, reg("id-b", 20, 2, "answerer")).await;
    let (tx, rx) = oneshot::channel();
    let (q, _) = store
        .call(move |ctx| messages::ask(ctx, None, "answerer", "q", tx))
        .await
        .unwrap();
    drop(rx);
    let qid = q.id;
    store
        .call(move |ctx| messages::reply(ctx, Some(&b), qid, "late answer"))
        .await
        .unwrap();
    let inbox = store
        .call(|ctx| messages::consume(ctx, None, Class::All, false, 0, 0))
        .await
        .unwrap();
    assert_eq!(inbox.messages.len(), 1);
    assert_eq!(inbox.messages[0].body, "late answer");
    assert_eq!(inbox.messages[0].kind, Kind::Answer);
}

#[test]
fn a_send_to_an_unknown_peer_stores_nothing_beside_a_good_one() {
    let (_d, store, _t) = open();
    register(&store, reg("id-b", 20, 2, "beta"));
    let ok = send(&store, None, "beta", "kept");
    let bad = send(&store, None, "nobody", "lost");
    assert!(ok.is_ok() && bad.is_err());
    let n: i64 = store
        .call_blocking(|ctx| {
            ctx.conn
                .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
                .map_err(|e| sessions::db(ctx, e))
        })
        .unwrap();
    assert_eq!(n, 1);
}

/// A job that writes a hand-out row with `token`, then fails if `fail`.
fn write_then(token: i64, fail: bool) -> impl FnOnce(&mut Ctx<'_>) -> Result<(), WireError> {
    move |ctx| {
        ctx.conn
            .execute(
                "INSERT INTO handouts (token, created_ms, message_ids) VALUES (?1, 0, '')",
                [token],
            )
            .map_err(|e| sessions::db(ctx, e))?;
        if fail {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "failed on purpose",
            ));
        }
        Ok(())
    }
}

fn handout_kept(store: &Store, token: u64) -> bool {
    store.read(|r| messages::handout_exists(r, token)).unwrap()
}

#[test]
fn a_failing_job_leaves_nothing_behind_alone_or_in_a_batch() {
    let (_d, store, _t) = open();
    // Alone in its transaction: it is rolled back, and the store goes on.
    let e = store.call_blocking(write_then(1, true)).unwrap_err();
    assert_eq!(e.message, "failed on purpose");
    assert!(!handout_kept(&store, 1));
    store.call_blocking(write_then(2, false)).unwrap();
    assert!(handout_kept(&store, 2));

    // In a batch: hold the store thread in a job until three more are queued behind it, so
    // that they share one transaction; only the failing one's write is undone.
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let held = store.call(move |_| {
        wait.recv().ok();
        Ok(())
    });
    let (a, b, c) = block_on(async {
        let queue = async {
            let (a, b, c, ()) = tokio::join!(
                store.call(write_then(3, false)),
                store.call(write_then(4, true)),
                store.call(write_then(5, false)),
                async {
                    // Every call above has been polled once, so it is queued: let them go.
                    release.send(()).unwrap();
                }
            );
            (a, b, c)
        };
        tokio::join!(held, queue).1
    });
    assert!(a.is_ok() && b.is_err() && c.is_ok());
    assert!(handout_kept(&store, 3) && !handout_kept(&store, 4) && handout_kept(&store, 5));
}

#[test]
fn hand_outs_are_forgotten_after_their_retry_window() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    send(&store, None, "alpha", "one").unwrap();
    store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&a), Class::All, false, 0, 0xfeed))
        .unwrap();
    let forget_after = |ms: i64| {
        store
            .call_blocking(move |ctx| {
                ctx.now_ms += ms;
                messages::forget_old_handouts(ctx)
            })
            .unwrap()
    };
    assert_eq!(forget_after(messages::HANDOUT_KEPT_MS - 60_000), 0);
    assert!(handout_kept(&store, 0xfeed));
    assert_eq!(forget_after(messages::HANDOUT_KEPT_MS + 60_000), 1);
    assert!(!handout_kept(&store, 0xfeed));
}

#[test]
fn consume_stops_at_its_budget_and_counts_the_rest() {
    let (_d, store, _t) = open();
    let b = register(&store, reg("id-b", 20, 2, "beta"));
    for i in 0..(messages::MAX_CONSUME_MESSAGES + 5) {
        send(&store, None, "beta", &format!("{i:04}")).unwrap();
    }
    let who = b.clone();
    assert_eq!(
        store
            .call_blocking(move |ctx| sessions::pending_of(ctx, &who))
            .unwrap() as usize,
        messages::MAX_CONSUME_MESSAGES + 5
    );
    let who = b.clone();
    let small = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::All, false, 300, 0))
        .unwrap();
    assert_eq!(
        small
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["0000", "0001"]
    );
    assert_eq!(small.remaining as usize, messages::MAX_CONSUME_MESSAGES + 3);
    let who = b.clone();
    let big = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::All, false, 0, 0))
        .unwrap();
    assert_eq!(big.messages.len(), messages::MAX_CONSUME_MESSAGES);
    assert_eq!(big.messages[0].body, "0002");
    assert_eq!(big.remaining, 3);
    let rest = consume(&store, b, Class::All);
    assert_eq!(rest.messages.len(), 3);
    assert_eq!(rest.remaining, 0);
}

#[test]
fn urgent_mail_marks_its_recipient_until_a_consume_leaves_none_behind() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("id-a", 10, 1, "alpha"));
    let b = register(&store, reg("id-b", 20, 2, "beta"));
    let marked = |s: &sessions::SessionRow| store.hints().maybe_waiting(&s.session_id);
    // A note waits for the next prompt: a post-tool-use poll has nothing to take for it.
    let from = b.clone();
    store
        .call_blocking(move |ctx| messages::send(ctx, Some(&from), "alpha", Kind::Note, "fyi"))
        .unwrap();
    assert!(!marked(&a));
    for i in 0..3 {
        send(&store, Some(a.clone()), "beta", &format!("task {i}")).unwrap();
    }
    assert!(marked(&b) && !marked(&a));
    // Neither a look (peek) nor a take that leaves mail behind clears the mark.
    let who = b.clone();
    let seen = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::Urgent, true, 0, 0))
        .unwrap();
    assert_eq!(seen.messages.len(), 3);
    let who = b.clone();
    let some = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::Urgent, false, 1, 0))
        .unwrap();
    assert_eq!((some.messages.len(), some.remaining), (1, 2));
    assert!(marked(&b));
    assert_eq!(consume(&store, b.clone(), Class::Urgent).remaining, 0);
    assert!(!marked(&b));
    // A mark whose mail never committed is only stale: the next consume finds nothing, and
    // clears it.
    let who = b.clone();
    let failed = store.call_blocking(move |ctx| {
        messages::send(ctx, None, "beta", Kind::Task, "rolled back")?;
        assert!(ctx.store().hints().maybe_waiting(&who.session_id));
        Err::<(), _>(WireError::new(ErrorCode::Internal, "failed on purpose"))
    });
    assert!(failed.is_err() && marked(&b));
    let inbox = consume(&store, b.clone(), Class::Urgent);
    assert_eq!((inbox.messages.len(), inbox.remaining), (0, 0));
    assert!(!marked(&b));
    // The note is still there for alpha's next prompt, and taking it leaves no mark.
    assert_eq!(consume(&store, a.clone(), Class::All).messages.len(), 1);
    assert!(!marked(&a));
}

#[test]
fn summary_is_cleaned_and_capped() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("id-a", 10, 1, "alpha"));
    assert_eq!(a.summary, "alpha on main", "the default until one is set");
    let key = a.key;
    store
        .call_blocking(move |ctx| sessions::set_summary(ctx, key, " fixing\tthe\u{1b}[31m login "))
        .unwrap();
    let row = store
        .call_blocking(move |ctx| sessions::by_key(ctx, key))
        .unwrap()
        .unwrap();
    assert_eq!(row.summary, "fixing the [31m login");
    // Cleared: the default (folder and branch, from the registration) shows again.
    store
        .call_blocking(move |ctx| sessions::set_summary(ctx, key, ""))
        .unwrap();
    let row = store
        .call_blocking(move |ctx| sessions::by_key(ctx, key))
        .unwrap()
        .unwrap();
    assert_eq!(row.summary, "alpha on main");
    let long = "x".repeat(mesh_proto::MAX_SUMMARY_LEN + 1);
    let err = store
        .call_blocking(move |ctx| sessions::set_summary(ctx, key, &long))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
}

/// How many times the statements prepared on `conn` had to be prepared again.
fn reprepares(conn: &Connection) -> i64 {
    use rusqlite::ffi;
    let mut total = 0;
    // SAFETY: the handle is live while `conn` is borrowed, and on this thread only;
    // `sqlite3_next_stmt` walks that connection's own statements, which stay valid meanwhile.
    unsafe {
        let db = conn.handle();
        let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            total += i64::from(ffi::sqlite3_stmt_status(
                stmt,
                ffi::SQLITE_STMTSTATUS_REPREPARE,
                0,
            ));
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    total
}

#[test]
fn cached_statements_stay_prepared_whatever_they_are_bound_to() {
    let (_d, store, _t) = open();
    let sessions: Vec<_> = (1..=3)
        .map(|i| {
            register(
                &store,
                reg(&format!("id-{i}"), 10 * i, 1, &format!("app{i}")),
            )
        })
        .collect();
    // The hooks' queries, on both kinds of connection, each time bound to other values.
    let round = |n: usize| {
        for s in &sessions {
            send(&store, None, &s.name, &format!("task {n}")).unwrap();
            let who = CallerProcs {
                claude: Some((s.pid, s.start_time)),
                session_id: Some(s.session_id.clone()),
                ..Default::default()
            };
            let row = store
                .read(|r| {
                    let me = sessions::resolve_caller(r, &who)?.expect("registered");
                    sessions::pending_of(r, &me)?;
                    Ok(me)
                })
                .unwrap();
            assert_eq!(row.key, s.key);
            let inbox = store
                .call_blocking(move |ctx| {
                    let me = sessions::resolve_caller(ctx, &who)?;
                    messages::consume(ctx, me.as_ref(), Class::Urgent, false, 0, 7)
                })
                .unwrap();
            assert_eq!(inbox.messages.len(), 1);
        }
    };
    let counts = || {
        let writer = store.call_blocking(|ctx| Ok(reprepares(ctx.conn))).unwrap();
        (writer, store.read(|r| Ok(reprepares(r.conn))).unwrap())
    };
    // The first round prepares every statement (a new connection's first statement is
    // prepared again once, when it first reads the schema).
    round(0);
    let before = counts();
    for n in 1..4 {
        round(n);
    }
    assert_eq!(
        counts(),
        before,
        "statements prepared again (writer, reader)"
    );
}

#[test]
fn pending_lookups_use_the_indexes_not_a_scan() {
    let (_d, store, _t) = open();
    let plan = store
        .call_blocking(|ctx| {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM messages WHERE delivered_ms IS NULL AND {}",
                sessions::PENDING_FOR_SESSION
            );
            let mut stmt = ctx.conn.prepare(&sql).map_err(|e| sessions::db(ctx, e))?;
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params![1, "x"], |r| r.get::<_, String>(3))
                .and_then(|r| r.collect())
                .map_err(|e| sessions::db(ctx, e))?;
            Ok(rows.join("\n"))
        })
        .unwrap();
    assert!(
        !plan.contains("SCAN messages"),
        "full scan of messages:\n{plan}"
    );
    assert!(
        plan.contains("messages_pending_by_key") && plan.contains("messages_pending_by_name"),
        "{plan}"
    );
}

#[test]
fn reads_off_the_store_thread_see_every_commit_and_cannot_write() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let pending = |row: &sessions::SessionRow| {
        store
            .read(|r| sessions::pending_of(r, row))
            .expect("read the pending count")
    };
    assert_eq!(pending(&a), 0);
    // Each send's result arrives after its commit, so the next read must see it.
    for n in 1..=3 {
        send(&store, None, "alpha", "hello").unwrap();
        assert_eq!(pending(&a), n);
    }
    consume(&store, a.clone(), Class::All);
    assert_eq!(pending(&a), 0);
    // The pooled connections only read.
    let write = store.read(|r| {
        r.conn
            .execute("DELETE FROM messages", [])
            .map_err(|e| sessions::db(r, e))
    });
    let err = write.expect_err("a reader must refuse writes");
    assert!(err.message.contains("readonly"), "{}", err.message);
    let status = store
        .call_blocking(|ctx| {
            Ok(ctx
                .conn
                .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
                .unwrap())
        })
        .unwrap();
    assert_eq!(status, 3, "nothing was deleted");
}

#[test]
fn soft_batches_commit_and_durable_ones_run_on_full_again() {
    let (dir, store, _t) = open();
    let sync_level = |store: &Store| {
        store
            .call_blocking(|ctx| {
                Ok(ctx
                    .conn
                    .query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
                    .unwrap())
            })
            .unwrap()
    };
    assert_eq!(sync_level(&store), 2, "FULL by default");
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    // A soft write runs on NORMAL (1) and is committed: a reader sees it.
    let level = block_on(store.call_soft(move |ctx| {
        sessions::set_idle(ctx, a.key, true)?;
        Ok(ctx
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
            .unwrap())
    }))
    .unwrap();
    assert_eq!(
        level, 1,
        "a soft batch commits without waiting for the fsync"
    );
    let idle = store
        .read(|r| Ok(sessions::by_key(r, 1)?.unwrap().idle))
        .unwrap();
    assert!(idle);
    // The next durable job is back on FULL.
    assert_eq!(sync_level(&store), 2);
    drop(dir);
}

/// Drive one future to completion on a throwaway current-thread runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_retried_handout_returns_the_same_messages_and_takes_nothing_new() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    for body in ["one", "two", "three"] {
        send(&store, None, "alpha", body).unwrap();
    }
    let take = |token: u64, max_bytes: usize| {
        let who = a.clone();
        store
            .call_blocking(move |ctx| {
                messages::consume(ctx, Some(&who), Class::All, false, max_bytes, token)
            })
            .unwrap()
    };
    let bodies = |inbox: &mesh_proto::Inbox| {
        inbox
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect::<Vec<_>>()
    };
    // A small budget: one message per hand-out.
    let first = take(0xfeed, 1);
    assert_eq!(bodies(&first), ["one"]);
    assert_eq!(first.remaining, 2);
    // The answer was "lost": the same token again gets the same message, takes nothing new.
    let again = take(0xfeed, 1);
    assert_eq!(bodies(&again), ["one"]);
    assert_eq!(again.remaining, 2);
    assert!(store.read(|r| messages::handout_exists(r, 0xfeed)).unwrap());
    // A new token takes the next one; token 0 is never remembered.
    assert_eq!(bodies(&take(0xbeef, 1)), ["two"]);
    assert_eq!(bodies(&take(0, 1)), ["three"]);
    assert!(take(0, 1).messages.is_empty());
    assert!(!store.read(|r| messages::handout_exists(r, 0)).unwrap());
}

#[test]
fn mail_sent_by_id_stays_with_that_session_and_never_follows_its_name() {
    let (_d, store, _t) = open();
    let old = register(&store, reg("0ld5e55-1111", 10, 1, "backend"));
    let by_id = send(&store, None, "0ld5e55", "for the old one only").unwrap();
    let by_name = send(&store, None, "backend", "for whoever is backend").unwrap();
    let key = old.key;
    assert!(
        store
            .call_blocking(move |ctx| sessions::process_exited(ctx, key, 10, 1))
            .unwrap()
    );
    // Another session takes the name: it gets the mail sent to the name, not the one sent
    // to the old session's id.
    let new = register(&store, reg("new-session", 30, 3, "backend"));
    let got: Vec<u64> = consume(&store, new.clone(), Class::All)
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, [by_name[0].id]);
    let listed = store
        .read(|r| sessions::list(r, Scope::Machine, None, None, true))
        .unwrap();
    let pending: Vec<(String, u32)> = listed
        .iter()
        .map(|s| (s.session_id.clone(), s.pending))
        .collect();
    assert!(
        pending.contains(&("0ld5e55-1111".to_owned(), 1))
            && pending.contains(&("new-session".to_owned(), 0)),
        "{pending:?}"
    );
    // The old session itself, resumed, still receives it.
    let resumed = register(&store, reg("0ld5e55-1111", 40, 4, "backend"));
    assert_eq!(resumed.key, old.key);
    let got: Vec<u64> = consume(&store, resumed, Class::All)
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, [by_id[0].id]);
}

#[test]
fn sending_or_asking_oneself_is_refused() {
    let (_d, store, _t) = open();
    let me = register(&store, reg("5e1f-1111", 10, 1, "solo"));
    register(&store, reg("0the-2222", 20, 2, "other"));
    for to in ["solo", "5e1f", "SOLO"] {
        let err = send(&store, Some(me.clone()), to, "hi me").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{to}: {err:?}");
        assert!(
            err.message.contains("this session itself"),
            "{}",
            err.message
        );
        let (me, to) = (me.clone(), to.to_owned());
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let err = store
            .call_blocking(move |ctx| messages::ask(ctx, Some(&me), &to, "me?", tx))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }
    // Nothing was stored; the broadcast still skips the sender, and others are reachable.
    assert_eq!(send(&store, Some(me.clone()), "*", "all").unwrap().len(), 1);
    assert_eq!(send(&store, Some(me), "other", "you").unwrap().len(), 1);
    let n: i64 = store
        .read(|r| {
            r.conn
                .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
                .map_err(|e| sessions::db(r, e))
        })
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn a_name_that_is_also_an_id_prefix_of_another_session_is_ambiguous() {
    let (_d, store, _t) = open();
    // A session named `cafe`, and another whose id starts with `cafe`.
    register(&store, reg("1234-named", 10, 1, "cafe"));
    register(&store, reg("cafe0001-other", 20, 2, "other"));
    let err = send(&store, None, "cafe", "x").unwrap_err();
    assert_eq!(err.code, ErrorCode::AmbiguousPeer, "{err:?}");
    assert!(
        err.message.contains("1234-nam") && err.message.contains("cafe0001"),
        "both are listed: {}",
        err.message
    );
    // A longer prefix, or the other's id, settles it.
    let sent = send(&store, None, "cafe0", "x").unwrap();
    assert_eq!(sent[0].to.session_id.as_deref(), Some("cafe0001-other"));
    let sent = send(&store, None, "1234", "x").unwrap();
    assert_eq!(sent[0].to.name, "cafe");
    // A name that is an id prefix of the same session is that session.
    register(&store, reg("beef-3333", 30, 3, "beef"));
    let sent = send(&store, None, "beef", "x").unwrap();
    assert_eq!(sent[0].to.session_id.as_deref(), Some("beef-3333"));
}

/// Run retention as of `later_ms` after now, with an age of `age_ms`, until it is done.
fn prune_all(store: &Store, later_ms: i64, age_ms: i64) -> (usize, usize) {
    let (mut messages, mut sessions, mut after) = (0, 0, 0);
    loop {
        let p = store
            .call_blocking(move |ctx| {
                ctx.now_ms += later_ms;
                super::retention::prune(ctx, age_ms, after, 2)
            })
            .unwrap();
        messages += p.messages;
        sessions += p.sessions;
        after = p.scanned_to;
        if p.done {
            return (messages, sessions);
        }
    }
}

fn ids_kept(store: &Store) -> Vec<u64> {
    store
        .read(|r| {
            r.conn
                .prepare("SELECT id FROM messages ORDER BY id")
                .and_then(|mut s| {
                    s.query_map([], |row| row.get::<_, i64>(0))?
                        .collect::<rusqlite::Result<Vec<i64>>>()
                })
                .map_err(|e| sessions::db(r, e))
        })
        .unwrap()
        .into_iter()
        .map(|i| i as u64)
        .collect()
}

#[test]
fn retention_prunes_delivered_mail_and_ended_sessions_and_never_undelivered_mail() {
    const DAY: i64 = 86_400_000;
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let gone = register(&store, reg("cccc-3333", 30, 3, "gone"));
    let waiting = register(&store, reg("dddd-4444", 40, 4, "waiting"));
    let delivered = send(&store, Some(a.clone()), "beta", "read long ago").unwrap()[0].id;
    let for_waiting = send(&store, Some(a.clone()), "waiting", "never read").unwrap()[0].id;
    // A question answered, and one still open (delivered, not answered).
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let asker = a.clone();
    let answered = store
        .call_blocking(move |ctx| messages::ask(ctx, Some(&asker), "beta", "port?", tx))
        .unwrap()
        .0
        .id;
    consume(&store, b.clone(), Class::All);
    let me = b.clone();
    let answer = store
        .call_blocking(move |ctx| messages::reply(ctx, Some(&me), answered, "8080"))
        .unwrap()
        .id;
    for (s, pid, start) in [(&gone, 30, 3), (&waiting, 40, 4)] {
        let key = s.key;
        assert!(
            store
                .call_blocking(move |ctx| sessions::process_exited(ctx, key, pid, start))
                .unwrap()
        );
    }
    // A newer ended session: the highest key is never pruned (SQLite would reuse it).
    let last = register(&store, reg("eeee-5555", 50, 5, "last"));
    let key = last.key;
    store
        .call_blocking(move |ctx| sessions::process_exited(ctx, key, 50, 5))
        .unwrap();
    let all = ids_kept(&store);

    // Younger than the age: nothing goes.
    assert_eq!(prune_all(&store, DAY, 30 * DAY), (0, 0));
    assert_eq!(ids_kept(&store), all);

    // Older: the delivered task and the answer go first; the question goes with its answer
    // gone (the next sweep); the undelivered task and its recipient stay; the ended session
    // without pending mail goes, and so does nothing else.
    let (m, s) = prune_all(&store, 31 * DAY, 30 * DAY);
    assert_eq!(s, 1, "only `gone` is pruned");
    assert!(m >= 2, "{m}");
    prune_all(&store, 31 * DAY, 30 * DAY);
    assert_eq!(ids_kept(&store), [for_waiting]);
    assert!(!ids_kept(&store).contains(&delivered));
    assert!(!ids_kept(&store).contains(&answer));
    let listed: Vec<String> = store
        .read(|r| sessions::list(r, Scope::Machine, None, None, true))
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, ["alpha", "beta", "last", "waiting"]);
    // The mail kept for the ended session still reaches the next session of its name.
    let next = register(&store, reg("ffff-6666", 60, 6, "waiting"));
    let got: Vec<u64> = consume(&store, next, Class::All)
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, [for_waiting]);
}

#[test]
fn retention_keeps_a_question_whose_asker_waits_and_the_session_that_asked_an_open_one() {
    const DAY: i64 = 86_400_000;
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    register(&store, reg("zzzz-9999", 90, 9, "newest"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asker = a.clone();
    let q = store
        .call_blocking(move |ctx| messages::ask(ctx, Some(&asker), "beta", "port?", tx))
        .unwrap()
        .0
        .id;
    consume(&store, b, Class::All);
    prune_all(&store, 31 * DAY, 30 * DAY);
    assert_eq!(ids_kept(&store), [q], "its asker still waits");
    drop(rx);
    // The asker gave up; the asker's session ends. The delivered open question goes, then
    // the session that asked it.
    let key = a.key;
    store
        .call_blocking(move |ctx| sessions::process_exited(ctx, key, 10, 1))
        .unwrap();
    let (m, s) = prune_all(&store, 31 * DAY, 30 * DAY);
    assert_eq!(m, 1);
    assert_eq!(s, 1);
    assert!(ids_kept(&store).is_empty());
}

#[test]
fn pruning_sessions_looks_messages_up_by_index() {
    let (_d, store, _t) = open();
    let plan = store
        .call_blocking(|ctx| {
            let sql = format!("EXPLAIN QUERY PLAN {}", super::retention::PRUNE_SESSIONS);
            let mut stmt = ctx.conn.prepare(&sql).map_err(|e| sessions::db(ctx, e))?;
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params![1, 2], |r| r.get::<_, String>(3))
                .and_then(|r| r.collect())
                .map_err(|e| sessions::db(ctx, e))?;
            Ok(rows.join("\n"))
        })
        .unwrap();
    assert!(!plan.contains("SCAN messages"), "{plan}");
    assert!(
        plan.contains("messages_open_questions") && plan.contains("messages_pending_by_key"),
        "{plan}"
    );
}

#[test]
fn a_withdrawn_question_goes_back_to_the_queue_when_its_asker_waits_again() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let asker = a.clone();
    let q = store
        .call_blocking(move |ctx| messages::ask(ctx, Some(&asker), "beta", "port?", tx))
        .unwrap()
        .0
        .id;
    // Withdrawn only once nobody waits for it.
    let still = store
        .call_blocking(move |ctx| messages::withdraw(ctx, q))
        .unwrap()
        .unwrap();
    assert_eq!(still.status, mesh_proto::Status::Queued);
    drop(rx);
    let gone = store
        .call_blocking(move |ctx| messages::withdraw(ctx, q))
        .unwrap()
        .unwrap();
    assert_eq!(gone.status, mesh_proto::Status::Withdrawn);
    assert!(consume(&store, b.clone(), Class::All).messages.is_empty());
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let (again, result) = store
        .call_blocking(move |ctx| messages::await_answer(ctx, Some(&a), q, tx))
        .unwrap();
    assert!(result.is_none(), "it waits");
    assert_eq!(again.status, mesh_proto::Status::Queued);
    let got: Vec<u64> = consume(&store, b, Class::All)
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, [q]);
}

#[test]
fn a_large_backlog_is_pruned_in_bounded_batches() {
    const DAY: i64 = 86_400_000;
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let body = "y".repeat(1000);
    for _ in 0..20 {
        let (from, body) = (a.clone(), body.clone());
        store
            .call_blocking(move |ctx| {
                for _ in 0..500 {
                    messages::send(ctx, Some(&from), "beta", Kind::Task, &body)?;
                }
                Ok(())
            })
            .unwrap();
        while !consume(&store, b.clone(), Class::All).messages.is_empty() {}
    }
    let mut jobs = Vec::new();
    let mut after = 0;
    loop {
        let t0 = std::time::Instant::now();
        let p = store
            .call_blocking(move |ctx| {
                ctx.now_ms += 31 * DAY;
                super::retention::prune(ctx, 30 * DAY, after, super::retention::BATCH)
            })
            .unwrap();
        jobs.push((p.messages, t0.elapsed()));
        after = p.scanned_to;
        if p.done {
            break;
        }
    }
    let slowest = jobs.iter().map(|j| j.1).max().unwrap();
    println!(
        "10,000 delivered messages pruned in {} jobs of at most {} rows; slowest job {slowest:?}",
        jobs.len(),
        super::retention::BATCH
    );
    assert!(jobs.iter().all(|j| j.0 <= super::retention::BATCH));
    assert_eq!(jobs.iter().map(|j| j.0).sum::<usize>(), 10_000);
    assert!(ids_kept(&store).is_empty());
}

/// A row whose kind this build does not know (written by something else) is reported as a
/// store error naming it; it is never read as a task, and nothing is handed out with it.
#[test]
fn an_unknown_kind_in_the_database_is_a_store_error() {
    let (_d, store, _t) = open();
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let key = b.key;
    let bogus: i64 = store
        .call_blocking(move |ctx| {
            ctx.conn
                .execute(
                    "INSERT INTO messages (kind, from_name, to_key, to_name, to_name_norm,
                                           to_session_id, body, created_ms)
                     VALUES ('bogus', 'user', ?1, 'beta', 'beta', 'bbbb-2222', 'hi', 1)",
                    rusqlite::params![key],
                )
                .map_err(|e| sessions::db(ctx, e))?;
            Ok(ctx.conn.last_insert_rowid())
        })
        .unwrap();
    let who = b.clone();
    let err = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::All, false, 0, 0))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Storage, "{err:?}");
    assert!(
        err.message.contains("unknown message kind \"bogus\""),
        "{}",
        err.message
    );
    let err = store
        .read(|r| messages::status(r, u64::try_from(bogus).unwrap()))
        .unwrap_err();
    assert!(err.message.contains("\"bogus\""), "{}", err.message);
    // The failed consume handed nothing out: the row is still pending.
    let pending = store.read(|r| sessions::pending_of(r, &b)).unwrap();
    assert_eq!(pending, 1);
}

/// The SQL spells each kind as [`Kind::as_str`] does, the store reads back every kind it
/// writes, and the `'question'` written out in SQL (to match the partial index
/// `messages_open_questions`) is the question's spelling.
#[test]
fn every_kind_round_trips_through_the_database() {
    let (_d, store, _t) = open();
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    assert_eq!(Kind::Question.as_str(), "question");
    assert_eq!(
        messages::kinds_in(|k| k.in_class(Class::Urgent)),
        "('task', 'question', 'answer')"
    );
    let key = b.key;
    for kind in Kind::ALL {
        store
            .call_blocking(move |ctx| {
                ctx.conn
                    .execute(
                        "INSERT INTO messages (kind, from_name, to_key, to_name, to_name_norm,
                                               to_session_id, body, created_ms)
                         VALUES (?1, 'user', ?2, 'beta', 'beta', 'bbbb-2222', ?1, 1)",
                        rusqlite::params![kind.as_str(), key],
                    )
                    .map_err(|e| sessions::db(ctx, e))
            })
            .unwrap();
    }
    let urgent = consume(&store, b.clone(), Class::Urgent);
    let kinds: Vec<Kind> = urgent.messages.iter().map(|m| m.kind).collect();
    let want: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.is_urgent()).collect();
    assert_eq!(kinds, want);
    for m in &urgent.messages {
        assert_eq!(m.body, m.kind.as_str());
    }
    let rest = consume(&store, b, Class::All);
    let kinds: Vec<Kind> = rest.messages.iter().map(|m| m.kind).collect();
    let want: Vec<Kind> = Kind::ALL.into_iter().filter(|k| !k.is_urgent()).collect();
    assert_eq!(kinds, want);
}

/// The supervisor and the notifier see the kinds that wake a session, and only those.
#[test]
fn waking_mail_is_the_kinds_that_wake() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let (from, key) = (a.clone(), b.key);
    let ids = store
        .call_blocking(move |ctx| {
            let mut ids = Vec::new();
            for kind in [Kind::Note, Kind::Task, Kind::Note, Kind::Task] {
                let sent = messages::send(ctx, Some(&from), "beta", kind, "x")?;
                ids.push((kind, sent[0].id));
            }
            sessions::set_idle(ctx, key, true)?;
            Ok(ids)
        })
        .unwrap();
    let want: Vec<u64> = ids
        .iter()
        .filter(|(k, _)| k.wakes())
        .map(|(_, id)| *id)
        .collect();
    let row = store.read(|r| sessions::by_key(r, key)).unwrap().unwrap();
    let seen = store.read(|r| waking::for_session(r, &row)).unwrap();
    assert_eq!(seen.iter().map(|w| w.id).collect::<Vec<_>>(), want);
    assert!(
        seen.iter()
            .all(|w| w.kind == Kind::Task && w.from == "alpha")
    );
    let idle = store.read(|r| waking::idle_sessions(r, i64::MAX)).unwrap();
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].key, key);
    let idle_ids: Vec<u64> = idle[0]
        .message_ids
        .iter()
        .map(|id| u64::try_from(*id).unwrap())
        .collect();
    assert_eq!(idle_ids, want);
    // Nothing was queued before the epoch.
    assert!(
        store
            .read(|r| waking::idle_sessions(r, 0))
            .unwrap()
            .is_empty()
    );
}

/// A hand-out token is any 64 bits: one above `i64::MAX` (half of all random tokens) is kept
/// and answered again like any other, and is not another token's.
#[test]
fn a_handout_token_above_i64_max_is_kept_and_retried() {
    let (_d, store, _t) = open();
    let a = register(&store, reg("aaaa-1111", 10, 1, "alpha"));
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    send(&store, Some(a.clone()), "beta", "one").unwrap();
    let token = u64::MAX - 6;
    let take = |token: u64| {
        let who = b.clone();
        store
            .call_blocking(move |ctx| {
                messages::consume(ctx, Some(&who), Class::All, false, 0, token)
            })
            .unwrap()
    };
    let first = take(token);
    assert_eq!(first.messages.len(), 1);
    assert!(handout_kept(&store, token));
    assert!(
        !handout_kept(&store, token & (u64::MAX >> 1)),
        "the low 63 bits are another token"
    );
    send(&store, Some(a), "beta", "two").unwrap();
    let again = take(token);
    assert_eq!(
        again.messages, first.messages,
        "the retry gets the same, nothing new"
    );
    assert_eq!(again.remaining, 1);
}

/// A negative message id or session key in the database (written by something else) is a store
/// error, never read as a huge number.
#[test]
fn a_negative_id_or_key_in_the_database_is_a_store_error() {
    let (_d, store, _t) = open();
    let b = register(&store, reg("bbbb-2222", 20, 2, "beta"));
    let key = b.key;
    store
        .call_blocking(move |ctx| {
            ctx.conn
                .execute(
                    "INSERT INTO messages (id, kind, from_name, to_key, to_name, to_name_norm,
                                           to_session_id, body, created_ms)
                     VALUES (-7, 'task', 'user', ?1, 'beta', 'beta', 'bbbb-2222', 'hi', 1)",
                    rusqlite::params![key],
                )
                .map_err(|e| sessions::db(ctx, e))
        })
        .unwrap();
    let who = b.clone();
    let err = store
        .call_blocking(move |ctx| messages::consume(ctx, Some(&who), Class::All, false, 0, 0))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Storage, "{err:?}");
    assert!(err.message.contains("-7"), "{}", err.message);

    store
        .call_blocking(|ctx| {
            ctx.conn
                .execute(
                    "INSERT INTO sessions (key, session_id, pid, start_time, name, name_norm, cwd,
                                           registered_ms, last_active_ms)
                     VALUES (-3, 'cccc-3333', 30, 3, 'gamma', 'gamma', '/work/gamma', 1, 1)",
                    [],
                )
                .map_err(|e| sessions::db(ctx, e))
        })
        .unwrap();
    let err = store.read(|r| sessions::by_key(r, -3)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Storage, "{err:?}");
    assert!(err.message.contains("-3"), "{}", err.message);
}

// --- the mesh across machines (store/federation.rs, hosts.rs, outbox.rs, remote.rs) ----------

mod across {
    use super::*;
    use crate::federation::envelope::{Envelope, Mail, Presence, PresenceSession, Receipt};
    use crate::federation::keys::DeviceKey;
    use crate::store::federation::{self as fed, Received};
    use crate::store::{hosts, outbox, remote};

    /// A store joined as `laptop`, knowing host `devbox` (key pinned) and its session `bob`.
    fn joined() -> (tempfile::TempDir, Store, StoreThread, DeviceKey) {
        let (d, store, t) = open();
        store.set_identity(Identity {
            device: "0123456789abcdef0123456789abcdef".into(),
            host: "laptop".into(),
        });
        let devbox = DeviceKey::generate();
        let key = devbox.public();
        store
            .call_blocking(move |ctx| {
                hosts::observe_key(ctx, "devbox", &key)?;
                remote::apply_presence(
                    ctx,
                    "devbox",
                    &Presence {
                        host: "devbox".into(),
                        sent_ms: 1,
                        leaving: false,
                        sessions: vec![PresenceSession {
                            session_id: "bbbb-2222".into(),
                            name: "bob".into(),
                            summary: String::new(),
                            idle: false,
                            pending: 0,
                        }],
                    },
                )
            })
            .unwrap();
        (d, store, t, devbox)
    }

    fn mail(gid: &str, to: &str) -> Mail {
        Mail {
            gid: gid.into(),
            kind: Kind::Task,
            from_name: "bob".into(),
            from_session_id: Some("bbbb-2222".into()),
            to_name: to.into(),
            to_session_id: None,
            body: "from devbox".into(),
            in_reply_to: None,
            created_ms: 1,
        }
    }

    #[test]
    fn a_send_to_another_machine_commits_the_row_and_its_envelope_together() {
        let (_d, store, _t, devbox) = joined();
        let a = register(&store, reg("aaaa-1111", 10, 1, "alice"));
        let sent = send(&store, Some(a.clone()), "bob@devbox", "hi").unwrap();
        assert_eq!(sent[0].to.name, "bob@devbox");
        assert_eq!(sent[0].status, mesh_proto::Status::Queued);
        let waiting = store.read(|r| outbox::sendable(r, 10)).unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].1, devbox.public());
        let env: Envelope = postcard::from_bytes(&waiting[0].0.envelope).unwrap();
        let Envelope::Mail(m) = env else {
            panic!("{env:?}")
        };
        assert_eq!((m.to_name.as_str(), m.body.as_str()), ("bob", "hi"));
        assert!(m.gid.starts_with("0123456789abcdef0123456789abcdef-"));
        // A failed send (unknown host) queues nothing.
        assert!(send(&store, Some(a), "bob@nowhere", "x").is_err());
        assert_eq!(store.read(outbox::outbox_depth).unwrap().0, 1);
    }

    #[test]
    fn mail_that_comes_again_is_stored_once_and_its_hand_out_sends_one_receipt() {
        let (_d, store, _t, _devbox) = joined();
        let a = register(&store, reg("aaaa-1111", 10, 1, "alice"));
        for _ in 0..3 {
            let m = mail("feedfeedfeedfeedfeedfeedfeedfeed-0000000000000001", "alice");
            let got = store
                .call_blocking(move |ctx| fed::receive_mail(ctx, "devbox", &m))
                .unwrap();
            assert!(
                matches!(got, Received::New | Received::Duplicate),
                "{got:?}"
            );
        }
        let inbox = consume(&store, a, Class::All);
        assert_eq!(inbox.messages.len(), 1);
        assert_eq!(inbox.messages[0].from.name, "bob@devbox");
        let waiting = store.read(|r| outbox::sendable(r, 10)).unwrap();
        assert_eq!(waiting.len(), 1, "one receipt");
        let env: Envelope = postcard::from_bytes(&waiting[0].0.envelope).unwrap();
        assert!(matches!(env, Envelope::Receipt(_)), "{env:?}");
    }

    #[test]
    fn receipts_and_answers_are_accepted_only_from_the_host_the_mail_went_to() {
        let (_d, store, _t, _devbox) = joined();
        let me = store.identity().unwrap();
        let a = register(&store, reg("aaaa-1111", 10, 1, "alice"));
        let sent = send(&store, Some(a.clone()), "bob@devbox", "hi").unwrap();
        let gid: String = store
            .read(|r| {
                r.conn
                    .query_row(
                        "SELECT gid FROM messages WHERE id = ?1",
                        [sent[0].id],
                        |row| row.get(0),
                    )
                    .map_err(|e| sessions::db(r, e))
            })
            .unwrap();
        // Another host cannot mark it delivered; devbox can.
        let (me2, g2) = ((*me).clone(), gid.clone());
        let other = store
            .call_blocking(move |ctx| {
                hosts::observe_key(ctx, "ci", &DeviceKey::generate().public())?;
                fed::receive_receipt(
                    ctx,
                    &me2,
                    "ci",
                    &Receipt {
                        gid: g2,
                        delivered_ms: Some(5),
                        answered_ms: None,
                    },
                )
            })
            .unwrap();
        assert!(matches!(other, Received::Refused(_)), "{other:?}");
        let status = |store: &Store| {
            store
                .read(|r| messages::status(r, sent[0].id))
                .unwrap()
                .status
        };
        assert_eq!(status(&store), mesh_proto::Status::Queued);
        let (me3, g3) = ((*me).clone(), gid.clone());
        let ok = store
            .call_blocking(move |ctx| {
                fed::receive_receipt(
                    ctx,
                    &me3,
                    "devbox",
                    &Receipt {
                        gid: g3,
                        delivered_ms: Some(5),
                        answered_ms: None,
                    },
                )
            })
            .unwrap();
        assert_eq!(ok, Received::New);
        assert_eq!(status(&store), mesh_proto::Status::Delivered);
        // An answer "to" a task, or to a question never asked of that host, is refused.
        let mut answer = mail("feedfeedfeedfeedfeedfeedfeedfeed-0000000000000009", "alice");
        answer.kind = Kind::Answer;
        answer.in_reply_to = Some(gid);
        let got = store
            .call_blocking(move |ctx| fed::receive_mail(ctx, "ci", &answer))
            .unwrap();
        assert!(matches!(got, Received::Refused(_)), "{got:?}");
    }

    #[test]
    fn a_changed_key_is_refused_until_trusted_and_then_sealed_for() {
        let (_d, store, _t, devbox) = joined();
        let a = register(&store, reg("aaaa-1111", 10, 1, "alice"));
        let new = DeviceKey::generate().public();
        let verdict = store
            .call_blocking(move |ctx| hosts::observe_key(ctx, "devbox", &new))
            .unwrap();
        assert!(
            matches!(verdict, hosts::KeyVerdict::Changed { .. }),
            "{verdict:?}"
        );
        send(&store, Some(a), "bob@devbox", "waits").unwrap();
        let waiting = store.read(|r| outbox::sendable(r, 10)).unwrap();
        assert_eq!(
            waiting[0].1,
            devbox.public(),
            "until trusted, mail is sealed for the pinned key only (an impostor's offer cannot \
             cut the host off, nor read its mail)"
        );
        let wrong = devbox.public().fingerprint().to_string();
        assert!(
            store
                .call_blocking(move |ctx| hosts::trust_key(ctx, "devbox", &wrong))
                .is_err()
        );
        let right = new.fingerprint().to_string();
        store
            .call_blocking(move |ctx| hosts::trust_key(ctx, "devbox", &right))
            .unwrap();
        let waiting = store.read(|r| outbox::sendable(r, 10)).unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].1, new, "sealed for the key just trusted");
    }
}

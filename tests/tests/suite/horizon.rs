//! The PostgreSQL backend's visibility horizon: pushes commit concurrently, and what a read or a
//! poke reveals stays below every cursor whose transaction may still commit. Real connections,
//! real threads; nothing is timed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use sync_runtime::{
    AnyBackend, ChangeLog, ChangeOp, Engine, Mutation, PostgresBackend, PostgresCommitHook,
    PostgresOptions, PullRequest,
};
use sync_tests::backends::run;
use sync_tests::*;
use tokio::sync::{Notify, Semaphore};

/// A connection of the test's own, outside every engine.
async fn watcher(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A backend whose every commit stalls once its cursors are taken and its writes made, before
/// `COMMIT`: it notifies `reached`, then waits for a permit of `release`.
async fn stalling_backend(url: &str) -> (PostgresBackend, Arc<Notify>, Arc<Semaphore>) {
    let reached = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let mut options = PostgresOptions::default();
    options.before_commit = Some(PostgresCommitHook(Arc::new({
        let (reached, release) = (Arc::clone(&reached), Arc::clone(&release));
        move || {
            let (reached, release) = (Arc::clone(&reached), Arc::clone(&release));
            Box::pin(async move {
                reached.notify_one();
                release.acquire().await.unwrap().forget();
            })
        }
    })));
    let backend = PostgresBackend::connect_with(url, options).await.unwrap();
    (backend, reached, release)
}

/// A push stalls between taking its cursor and `COMMIT` (node `slow`), while a later push on
/// another node commits a higher cursor in another scope. Until the first commits, no pull,
/// head, JOIN cursor, snapshot, `client_seq` or poke may reveal the later cursor, and a trim may
/// not remove it: a client that saw it would skip the lower one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_in_flight_hides_later_cursors_from_reads_and_pokes() {
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (slow_backend, reached, release) = stalling_backend(&url).await;
        let slow = Engine::builder(RulesMutator).backend(slow_backend).build();
        let pokes = PokeLog::default();
        let fast_backend: AnyBackend = b.open().await.unwrap();
        let fast = Engine::builder(RulesMutator)
            .backend(fast_backend.clone())
            .broker(pokes.broker())
            .build();

        let slow_push = tokio::spawn({
            let slow = slow.clone();
            async move { slow.push(vec![put("low").with_scope("slow")]).await }
        });
        reached.notified().await; // the slow push holds its cursor, uncommitted
        let fast_push = tokio::spawn({
            let fast = fast.clone();
            async move {
                fast.push(vec![put("high").with_scope("fast").with_client("c", 1)])
                    .await
            }
        });
        // Until the later push has committed: a connection of its own sees its change.
        let watcher = watcher(&url).await;
        let mut looks = 0;
        let high: i64 = loop {
            let row = watcher
                .query_opt("SELECT cursor FROM sync_changes WHERE scope = 'fast'", &[])
                .await
                .unwrap();
            if let Some(row) = row {
                break row.get(0);
            }
            looks += 1;
            assert!(looks < 4000, "the later push never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let high = u64::try_from(high).unwrap();

        for engine in [&slow, &fast] {
            for scope in ["fast", "slow"] {
                let page = engine
                    .pull(PullRequest::new(scope, 0).with_client("c"))
                    .await
                    .unwrap();
                assert!(page.changes.is_empty(), "{scope}: {:?}", page.changes);
                assert!(page.cursor < high, "{scope}: cursor {}", page.cursor);
                assert!(!page.has_more);
                assert_eq!(page.client_seq, Some(0), "a mutation not yet visible");
            }
            assert!(engine.head().await.unwrap() < high);
            let cursors = engine
                .backend()
                .scope_cursors(&["fast", "slow"])
                .await
                .unwrap();
            assert!(cursors.iter().all(|cursor| *cursor < high), "{cursors:?}");
            let snapshot = engine.snapshot(Some("slow")).await.unwrap();
            assert!(
                snapshot.data.is_empty() && snapshot.cursor < high,
                "{snapshot:?}"
            );
        }
        // The data of scope `fast` holds a change beyond the horizon: its snapshot waits for it
        // rather than answer that data at a cursor below it.
        let fast_snapshot = tokio::spawn({
            let fast = fast.clone();
            async move { fast.snapshot(Some("fast")).await }
        });
        assert!(
            pokes.snapshot().is_empty(),
            "poked before visible: {:?}",
            pokes.snapshot()
        );
        fast.trim(high + 1).await.unwrap();
        assert!(
            !fast_push.is_finished(),
            "the later push answered before it was visible"
        );

        release.add_permits(1);
        let slow_answer = slow_push.await.unwrap().unwrap();
        let fast_answer = fast_push.await.unwrap().unwrap();
        let low = slow_answer.cursor;
        assert!(
            low < high,
            "cursors in the order they were taken: {low}, {high}"
        );
        assert_eq!(fast_answer.cursor, high);
        assert_eq!(
            pokes
                .take()
                .iter()
                .map(|poke| (poke.scope.as_str(), poke.cursor))
                .collect::<Vec<_>>(),
            [("fast", high)]
        );
        // The trim in flight removed nothing beyond the horizon.
        let pulled: Vec<u64> = pull_all(&fast, "fast", 0)
            .await
            .iter()
            .map(|c| c.cursor)
            .collect();
        assert_eq!(pulled, [high]);
        let pulled: Vec<u64> = pull_all(&fast, "slow", 0)
            .await
            .iter()
            .map(|c| c.cursor)
            .collect();
        assert_eq!(pulled, [low]);
        let page = fast
            .pull(PullRequest::new("fast", 0).with_client("c"))
            .await
            .unwrap();
        assert_eq!(page.client_seq, Some(1));
        let snapshot = fast_snapshot.await.unwrap().unwrap();
        assert!(snapshot.cursor >= high);
        assert_eq!(snapshot.data["item"]["high"]["id"], "high");
    })
    .await;
}

/// Several commits of one node wait for one slow commit of another node, and share their looks
/// at the horizon (one looks for all): none answers while the slow commit holds a lower cursor,
/// and all answer once it ends, each with a cursor above it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_waiting_on_one_node_all_answer_once_the_horizon_passes() {
    const WAITING: u64 = 8;
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (slow_backend, reached, release) = stalling_backend(&url).await;
        let slow = Engine::builder(RulesMutator).backend(slow_backend).build();
        let fast = Engine::builder(RulesMutator).backend(b.backend()).build();
        let slow_push = tokio::spawn({
            let slow = slow.clone();
            async move { slow.push(vec![put("low").with_scope("slow")]).await }
        });
        reached.notified().await;
        let fast_pushes: Vec<_> = (0..WAITING)
            .map(|n| {
                let fast = fast.clone();
                tokio::spawn(async move {
                    let scope = format!("fast{n}");
                    fast.push(vec![put("high").with_scope(&scope).with_client(&scope, 1)])
                        .await
                })
            })
            .collect();
        // Until every one of them has committed.
        let watcher = watcher(&url).await;
        let mut looks = 0;
        loop {
            let row = watcher
                .query_one(
                    "SELECT count(*) FROM sync_changes WHERE scope LIKE 'fast%'",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) == WAITING as i64 {
                break;
            }
            looks += 1;
            assert!(looks < 4000, "the later pushes never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Long enough for their waits to look at the horizon a few times.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            fast_pushes.iter().all(|push| !push.is_finished()),
            "a push answered before it was visible"
        );

        release.add_permits(1);
        let low = slow_push.await.unwrap().unwrap().cursor;
        for push in fast_pushes {
            let answer = tokio::time::timeout(Duration::from_secs(30), push)
                .await
                .expect("a push waited on after the horizon passed it")
                .unwrap()
                .unwrap();
            assert!(answer.results[0].ok, "{answer:?}");
            assert!(answer.cursor > low, "{} after {low}", answer.cursor);
        }
    })
    .await;
}

/// The cursor lock is the session's, taken and released by the statement that takes the
/// cursors. Where that statement fails in between (here the sequence overflows), the push fails,
/// and its rollback must release the lock: else the connection would go back to its pool still
/// holding it, and every other node's commit would wait for it in vain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_holding_the_cursor_lock_releases_it() {
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let node = || async {
            let mut options = PostgresOptions::default();
            options.lock_timeout = Duration::from_secs(2);
            let backend = PostgresBackend::connect_with(&url, options).await.unwrap();
            Engine::builder(RulesMutator).backend(backend).build()
        };
        let (first, second) = (node().await, node().await);
        first.push(vec![put("before")]).await.unwrap();

        let watcher = watcher(&url).await;
        let last: i64 = watcher
            .query_one("SELECT last_value FROM sync_cursor", &[])
            .await
            .unwrap()
            .get(0);
        // The next cursor is the last one there is: a push of two changes overflows.
        watcher
            .execute("SELECT setval('sync_cursor', 9223372036854775806)", &[])
            .await
            .unwrap();
        let two = Mutation::new("put_many", json!({"n": 2, "tag": "t"}));
        let failed = first.push(vec![two]).await;
        assert!(failed.is_err(), "{failed:?}");
        watcher
            .execute("SELECT setval('sync_cursor', $1)", &[&last])
            .await
            .unwrap();

        // Another node's commit takes the cursor lock on a connection of its own.
        let after = second.push(vec![put("after")]).await.unwrap();
        assert!(after.results[0].ok && after.cursor > u64::try_from(last).unwrap());
        first.push(vec![put("again")]).await.unwrap();
    })
    .await;
}

/// A push that puts and then deletes an entity it never read locks the entity's scope only at
/// its commit, where it may wait for another push holding that lock (here one that creates the
/// same entity and stalls before `COMMIT`). Its delete must then find that push's row: a
/// `DELETE` whose snapshot were taken before the lock would miss it, leaving the entity in the
/// store while the log says it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_that_waits_for_its_scope_removes_what_the_holder_committed() {
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (slow_backend, reached, release) = stalling_backend(&url).await;
        let slow = Engine::builder(Script::default())
            .backend(slow_backend)
            .build();
        let fast = Engine::builder(Script::default())
            .backend(b.open().await.unwrap())
            .build();

        let create = script(json!([["put", "item", "x", {"id": "x", "by": "slow"}]]))
            .with_scope("s")
            .with_client("slow", 1);
        let slow_push = tokio::spawn({
            let slow = slow.clone();
            async move { slow.push(vec![create]).await }
        });
        reached.notified().await; // the create holds the scope's lock, uncommitted
        let put_and_delete = script(json!([
            ["put", "item", "x", {"id": "x", "by": "fast"}],
            ["delete", "item", "x"]
        ]))
        .with_scope("s")
        .with_client("fast", 1);
        let fast_push = tokio::spawn({
            let fast = fast.clone();
            async move { fast.push(vec![put_and_delete]).await }
        });
        // The delete's commit waits for the scope's lock.
        let watcher = watcher(&url).await;
        let mut looks = 0;
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            looks += 1;
            assert!(looks < 4000, "the delete never waited for the scope's lock");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.add_permits(1);
        let created = slow_push.await.unwrap().unwrap();
        let deleted = fast_push.await.unwrap().unwrap();
        assert!(created.results[0].ok && deleted.results[0].ok);
        assert!(created.cursor < deleted.cursor);

        let snapshot = fast.snapshot(Some("s")).await.unwrap();
        assert!(snapshot.data.is_empty(), "{:?}", snapshot.data);
        let changes = pull_all(&fast, "s", 0).await;
        assert!(replay(&changes).is_empty(), "{changes:?}");
        let ops: Vec<_> = changes.iter().map(|change| change.op).collect();
        assert_eq!(ops.last(), Some(&ChangeOp::Delete), "{changes:?}");
    })
    .await;
}

/// Pushes per pusher; each pusher has a scope and a client of its own.
const PUSHES: u64 = 40;

/// Three nodes on one database, each with two pushers in scopes of their own, push at once;
/// a puller on each node follows every scope and sees each scope's every change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_pushing_at_once_skip_no_change_for_any_puller() {
    run(Kind::Postgres, |b| async move {
        let nodes = [
            b.backend(),
            b.open().await.unwrap(),
            b.open().await.unwrap(),
        ];
        let engines: Vec<Engine> = nodes
            .into_iter()
            .map(|backend| Engine::builder(RulesMutator).backend(backend).build())
            .collect();
        let scopes: Vec<String> = (0..engines.len())
            .flat_map(|node| (0..2).map(move |pusher| format!("n{node}-p{pusher}")))
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let pullers: Vec<_> = engines
            .iter()
            .map(|engine| tokio::spawn(follow(engine.clone(), scopes.clone(), Arc::clone(&done))))
            .collect();
        let pushers: Vec<_> = scopes
            .iter()
            .enumerate()
            .map(|(index, scope)| {
                let engine = engines[index / 2].clone();
                let scope = scope.clone();
                tokio::spawn(async move {
                    for seq in 1..=PUSHES {
                        let group = format!("{scope}-{seq}");
                        let answer = engine
                            .push(vec![
                                Mutation::new("put_group", json!({"group": group, "n": 2}))
                                    .with_scope(&scope)
                                    .with_client(&scope, seq),
                            ])
                            .await
                            .unwrap();
                        assert!(answer.results[0].ok, "{answer:?}");
                    }
                })
            })
            .collect();
        for pusher in pushers {
            pusher.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let mut all = BTreeMap::new();
        for scope in &scopes {
            let cursors: Vec<u64> = pull_all(&engines[0], scope, 0)
                .await
                .iter()
                .map(|change| change.cursor)
                .collect();
            assert_eq!(cursors.len() as u64, PUSHES * 2, "{scope}");
            all.insert(scope.clone(), cursors);
        }
        for puller in pullers {
            let seen = tokio::time::timeout(Duration::from_secs(120), puller)
                .await
                .expect("a puller never finished")
                .unwrap();
            assert_eq!(seen, all, "every change of every scope once, in order");
        }
    })
    .await;
}

/// Pulls every scope in turn, each from its own cursor, until every push was done before a
/// round that found nothing; returns each scope's cursors as seen.
async fn follow(
    engine: Engine,
    scopes: Vec<String>,
    done: Arc<AtomicBool>,
) -> BTreeMap<String, Vec<u64>> {
    let mut cursors: BTreeMap<String, u64> = scopes.iter().map(|s| (s.clone(), 0)).collect();
    let mut seen: BTreeMap<String, Vec<u64>> =
        scopes.iter().map(|s| (s.clone(), Vec::new())).collect();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let mut found = false;
        for scope in &scopes {
            let cursor = cursors.get_mut(scope).unwrap();
            let page = engine
                .pull(PullRequest::new(scope, *cursor).with_limit(7))
                .await
                .unwrap();
            for change in &page.changes {
                assert!(
                    change.cursor > *cursor,
                    "{scope}: {} after {cursor}",
                    change.cursor
                );
                *cursor = change.cursor;
                seen.get_mut(scope).unwrap().push(change.cursor);
            }
            assert!(page.cursor >= *cursor);
            *cursor = page.cursor;
            found |= !page.changes.is_empty();
        }
        if !found {
            if finished {
                return seen; // every push was done before this round: a skipped change never comes
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A database of schema version 2 (one commit at a time under `sync_head`'s lock) is migrated on
/// connect: its changes, clients and head are kept, and new cursors follow its head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_is_migrated_on_connect() {
    let Some(schema) = sync_tests::backends::PgSchema::create().await else {
        return;
    };
    let old = watcher(&schema.url).await;
    // Version 2's tables as sync-runtime 0.1 created them, holding two changes of scope `s`
    // (cursors 4 and 7: the others were trimmed, or in other scopes that were) and a client.
    old.batch_execute(
        r#"
        CREATE TABLE sync_schema (version INTEGER NOT NULL);
        INSERT INTO sync_schema (version) VALUES (2);
        CREATE TABLE sync_entities (scope TEXT COLLATE "C" NOT NULL, entity TEXT COLLATE "C" NOT NULL,
            id TEXT COLLATE "C" NOT NULL, data TEXT NOT NULL, PRIMARY KEY (scope, entity, id));
        CREATE TABLE sync_changes (cursor BIGINT PRIMARY KEY, scope TEXT COLLATE "C" NOT NULL,
            entity TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, data TEXT, ts BIGINT NOT NULL);
        CREATE INDEX sync_changes_scope_cursor ON sync_changes (scope, cursor);
        CREATE TABLE sync_horizons (scope TEXT COLLATE "C" PRIMARY KEY, horizon BIGINT NOT NULL);
        CREATE TABLE sync_clients (client_id TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL);
        CREATE TABLE sync_head (id INTEGER PRIMARY KEY CHECK (id = 1), cursor BIGINT NOT NULL);
        INSERT INTO sync_head (id, cursor) VALUES (1, 9);
        CREATE TABLE sync_meta (name TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO sync_meta (name, value) VALUES ('log_id', 'oldlog0123456789');
        CREATE TABLE sync_failures (client_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
            code TEXT NOT NULL, error TEXT NOT NULL, cursor BIGINT NOT NULL, PRIMARY KEY (client_id, seq));
        CREATE INDEX sync_failures_cursor ON sync_failures (cursor);
        INSERT INTO sync_entities VALUES ('s', 'item', 'a', '{"id":"a","v":2}');
        INSERT INTO sync_changes VALUES
            (4, 's', 'item', 'a', 'create', '{"id":"a","v":1}', 0),
            (7, 's', 'item', 'a', 'update', '{"id":"a","v":2}', 0);
        INSERT INTO sync_clients VALUES ('old-client', 5);
        "#,
    )
    .await
    .unwrap();

    let backend = PostgresBackend::connect(&schema.url).await.unwrap();
    let engine = Engine::builder(RulesMutator).backend(backend).build();
    let version: i32 = old
        .query_one("SELECT max(version) FROM sync_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 3);
    assert_eq!(engine.backend().log_id(), "oldlog0123456789");
    assert_eq!(
        engine.head().await.unwrap(),
        9,
        "the head of version 2 is kept"
    );
    let page = engine
        .pull(PullRequest::new("s", 0).with_client("old-client"))
        .await
        .unwrap();
    let cursors: Vec<u64> = page.changes.iter().map(|change| change.cursor).collect();
    assert_eq!(cursors, [4, 7]);
    assert_eq!(page.client_seq, Some(5));
    assert_eq!(page.cursor, 7);
    let empty = engine.pull(PullRequest::new("t", 0)).await.unwrap();
    assert_eq!(empty.cursor, 9);

    // A retry of the old client is still a duplicate; new cursors follow the old head.
    let answer = engine
        .push(vec![
            put("a").with_scope("s").with_client("old-client", 5),
            put("b").with_scope("s").with_client("old-client", 6),
        ])
        .await
        .unwrap();
    assert!(answer.results[0].duplicate);
    assert_eq!(answer.results[1].cursor, 10);
    let cursors: Vec<u64> = pull_all(&engine, "s", 0)
        .await
        .iter()
        .map(|c| c.cursor)
        .collect();
    assert_eq!(cursors, [4, 7, 10]);
    // Reconnecting to version 3 migrates nothing again.
    let again = PostgresBackend::connect(&schema.url).await.unwrap();
    assert_eq!(again.head().await.unwrap(), 10);
}

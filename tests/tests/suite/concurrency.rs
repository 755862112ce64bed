//! Concurrency: real threads (a multi-threaded runtime and OS threads) against one engine.

use std::collections::BTreeSet;

use std::time::Duration;

use serde_json::json;
use sync_runtime::{ChangeOp, Engine, Mutation, PullRequest};
use sync_tests::*;

sync_tests::on_every_backend!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    concurrent_identical_duplicates_apply_once,
    concurrent_mutations_are_isolated,
    concurrent_puts_of_a_new_id_create_it_once,
    concurrent_pullers_never_skip_or_repeat_a_change,
    snapshots_under_concurrent_pushes_are_exact,
    changelog_appends_from_threads_get_unique_ascending_cursors,
    many_pushers_in_one_scope_lose_and_repeat_nothing,
    concurrent_appends_in_one_scope_see_each_others_rows,
);

async fn concurrent_identical_duplicates_apply_once(b0: TestBackend) {
    for round in 0..5 {
        // A fresh database each round.
        let b = if round == 0 {
            None
        } else {
            TestBackend::new(b0.kind).await
        };
        let b = b.as_ref().unwrap_or(&b0);
        let engine = b.rules_engine();
        let mutation = Mutation::new("slow_put", json!({"id": "a"})).with_client("c", 1);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let engine = engine.clone();
                let mutation = mutation.clone();
                tokio::spawn(async move { engine.push(vec![mutation]).await.unwrap() })
            })
            .collect();
        let mut applied = 0;
        for task in tasks {
            let result = &task.await.unwrap().results[0];
            assert!(result.ok, "round {round}: {result:?}");
            if !result.duplicate {
                applied += 1;
                assert_eq!(result.changes.len(), 1);
            }
        }
        assert_eq!(applied, 1, "round {round}: exactly one push applies it");
        assert_eq!(engine.head().await.unwrap(), 1);
        let state = engine.snapshot(None).await.unwrap();
        assert_eq!(state.data["item"]["a"]["count"], 1);
    }
}

async fn concurrent_mutations_are_isolated(b: TestBackend) {
    let engine = b.rules_engine();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .push(vec![Mutation::new("slow_put", json!({"id": "counter"}))])
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().results[0].ok);
    }
    let state = engine.snapshot(None).await.unwrap();
    assert_eq!(state.data["item"]["counter"]["count"], 16, "no lost update");
}

/// Concurrent pushes that put one new id: exactly one creates it, and each later one, whether
/// it committed on its own or shared a commit with those before it (SQLite's group commit hands
/// an open transaction on), sees it and records an update. `slow_put` holds each push open a
/// millisecond, so that the others wait for it and group commits form; a blind `put` reads
/// nothing, so its commit alone tells.
async fn concurrent_puts_of_a_new_id_create_it_once(b: TestBackend) {
    let engine = b.rules_engine();
    // Read first (`slow_put`), or put blind (`put`): either way the commit decides, from the
    // write, which push created it.
    for (name, scope) in [("slow_put", "read"), ("put", "blind")] {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let engine = engine.clone();
                let mutation = Mutation::new(name, json!({"id": "shared"})).with_scope(scope);
                tokio::spawn(async move { engine.push(vec![mutation]).await.unwrap() })
            })
            .collect();
        let mut creates = 0;
        for task in tasks {
            let result = &task.await.unwrap().results[0];
            assert!(result.ok, "{name}: {result:?}");
            if result.changes[0].op == sync_runtime::ChangeOp::Create {
                creates += 1;
            }
        }
        assert_eq!(
            creates, 1,
            "{name}: one push creates it, the others update it"
        );
        let ops: Vec<_> = pull_all(&engine, scope, 0)
            .await
            .iter()
            .map(|c| c.op)
            .collect();
        let mut expected = vec![sync_runtime::ChangeOp::Update; 16];
        expected[0] = sync_runtime::ChangeOp::Create;
        assert_eq!(ops, expected, "{name}: the log creates it first");
    }
}

/// Pulls `scope` until `expected` changes were seen, checking that cursors only ascend.
async fn pull_until(engine: Engine, scope: String, expected: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut cursor = 0;
    while seen.len() < expected {
        let page = engine
            .pull(PullRequest::new(scope.as_str(), cursor).with_limit(7))
            .await
            .unwrap();
        for change in &page.changes {
            assert_eq!(change.scope, scope);
            assert!(
                change.cursor > cursor,
                "cursor {} after {cursor}",
                change.cursor
            );
            cursor = change.cursor;
            seen.push(change.cursor);
        }
        assert!(page.cursor >= cursor);
        cursor = page.cursor;
        if page.changes.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    seen
}

async fn concurrent_pullers_never_skip_or_repeat_a_change(b: TestBackend) {
    const PUSHERS: usize = 4;
    const PUSHES: usize = 150;
    let engine = b.rules_engine();
    let scopes = ["a", "b"];
    let expected_per_scope = PUSHERS * PUSHES; // every push writes once to each scope
    let pullers: Vec<_> = scopes
        .iter()
        .flat_map(|scope| [scope, scope])
        .map(|scope| {
            tokio::spawn(pull_until(
                engine.clone(),
                scope.to_string(),
                expected_per_scope,
            ))
        })
        .collect();
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..PUSHES {
                    let batch = scopes
                        .iter()
                        .map(|scope| put(&format!("{p}-{i}")).with_scope(*scope))
                        .collect();
                    engine.push(batch).await.unwrap();
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    for (scope, puller) in scopes.iter().flat_map(|s| [s, s]).zip(pullers) {
        let seen = tokio::time::timeout(Duration::from_secs(60), puller)
            .await
            .expect("a puller never saw every change: one was skipped")
            .unwrap();
        let all: Vec<u64> = pull_all(&engine, scope, 0)
            .await
            .iter()
            .map(|c| c.cursor)
            .collect();
        assert_eq!(
            seen, all,
            "scope {scope}: the puller saw every change once, in order"
        );
        assert_eq!(seen.len(), expected_per_scope);
    }
    assert_eq!(engine.head().await.unwrap() as usize, PUSHERS * PUSHES * 2);
}

async fn snapshots_under_concurrent_pushes_are_exact(b: TestBackend) {
    let engine = b.rules_engine();
    // Each push rewrites 100 entities in one mutation: a snapshot must see all or none of it.
    let pushers: Vec<_> = (0..2)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let tag = format!("{p}-{i}");
                    engine
                        .push(vec![Mutation::new(
                            "put_many",
                            json!({"n": 100, "tag": tag}),
                        )])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let snapshotters: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            let done = pushers.iter().map(|p| p.abort_handle()).collect::<Vec<_>>();
            tokio::spawn(async move {
                let mut snapshots = Vec::new();
                while done.iter().any(|pusher| !pusher.is_finished()) {
                    snapshots.push(engine.snapshot(None).await.unwrap());
                    tokio::task::yield_now().await;
                }
                snapshots
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let history = pull_all(&engine, "_default", 0).await;
    let mut checked = BTreeSet::new();
    for snapshotter in snapshotters {
        for snapshot in snapshotter.await.unwrap() {
            let tags: BTreeSet<String> = snapshot
                .data
                .values()
                .flat_map(|ids| ids.values())
                .map(|v| v.to_string())
                .collect();
            assert!(
                tags.len() <= 1,
                "snapshot at {} saw half a commit: {tags:?}",
                snapshot.cursor
            );
            if checked.insert(snapshot.cursor) {
                let upto: Vec<_> = history
                    .iter()
                    .filter(|c| c.cursor <= snapshot.cursor)
                    .cloned()
                    .collect();
                assert_eq!(
                    replay(&upto),
                    snapshot.data,
                    "snapshot at cursor {}",
                    snapshot.cursor
                );
            }
        }
    }
    assert!(checked.len() > 1, "snapshots were taken while pushes ran");
}

/// Pushes from tasks on four worker threads, one change each.
async fn changelog_appends_from_threads_get_unique_ascending_cursors(b: TestBackend) {
    const TASKS: u64 = 4;
    const APPENDS: u64 = 150;
    let engine = b.rules_engine();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..APPENDS {
                    let m = put(&format!("{t}-{i}")).with_scope(format!("s{}", i % 3));
                    let pushed = engine.push(vec![m]).await.unwrap();
                    assert_eq!(pushed.results[0].changes.len(), 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(engine.head().await.unwrap(), TASKS * APPENDS);
    let mut all = Vec::new();
    for s in 0..3 {
        let changes = pull_all(&engine, &format!("s{s}"), 0).await;
        assert!(changes.windows(2).all(|w| w[0].cursor < w[1].cursor));
        all.extend(changes.iter().map(|c| c.cursor));
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=TASKS * APPENDS).collect::<Vec<u64>>(),
        "every cursor once, no gaps"
    );
}

/// Sixteen clients push batches into one scope at once, each retrying some of its pushes: every
/// mutation is logged once, under contiguous cursors that a concurrent puller sees in order.
async fn many_pushers_in_one_scope_lose_and_repeat_nothing(b: TestBackend) {
    const PUSHERS: usize = 16;
    const PUSHES: usize = 12;
    const BATCH: usize = 5;
    let engine = b.rules_engine();
    let total = PUSHERS * PUSHES * BATCH;
    let puller = tokio::spawn(pull_until(engine.clone(), "_default".to_owned(), total));
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let client = format!("c{p}");
                let mut seq = 0;
                for i in 0..PUSHES {
                    let batch: Vec<Mutation> = (0..BATCH)
                        .map(|_| {
                            seq += 1;
                            put(&format!("{p}-{seq}")).with_client(&client, seq)
                        })
                        .collect();
                    let first = engine.push(batch.clone()).await.unwrap();
                    assert!(first.results.iter().all(|r| r.ok && !r.duplicate));
                    if i % 3 == 0 {
                        let again = engine.push(batch).await.unwrap();
                        assert!(
                            again.results.iter().all(|r| r.duplicate),
                            "a retry is answered as a duplicate: {again:?}"
                        );
                    }
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), puller)
        .await
        .expect("the puller never saw every change: one was skipped")
        .unwrap();
    let changes = pull_all(&engine, "_default", 0).await;
    let cursors: Vec<u64> = changes.iter().map(|c| c.cursor).collect();
    assert_eq!(
        cursors,
        (1..=total as u64).collect::<Vec<_>>(),
        "contiguous"
    );
    assert_eq!(seen, cursors, "the puller saw every change once, in order");
    let ids: BTreeSet<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), total, "no mutation logged twice");
    assert!(changes.iter().all(|c| c.op == ChangeOp::Create));
    assert_eq!(engine.head().await.unwrap(), total as u64);
    let state = engine.snapshot(None).await.unwrap();
    assert_eq!(state.data["item"].len(), total);
}

/// Pushes that list a type and then create one of it, at once in one scope: each sees the rows
/// of those before it, so that none writes an id another took.
async fn concurrent_appends_in_one_scope_see_each_others_rows(b: TestBackend) {
    const PUSHERS: usize = 8;
    const APPENDS: usize = 8;
    let engine = b.rules_engine();
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..APPENDS {
                    // An entity of another type in the same push, and the listing after it.
                    let other = put(&format!("other-{p}-{i}"));
                    let append = Mutation::new("append", json!({"entity": "row"}));
                    engine.push(vec![other, append]).await.unwrap();
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let rows: Vec<_> = pull_all(&engine, "_default", 0)
        .await
        .into_iter()
        .filter(|c| c.entity == "row")
        .collect();
    assert!(
        rows.iter().all(|c| c.op == ChangeOp::Create),
        "an append overwrote a row it did not see"
    );
    let ids: BTreeSet<usize> = rows.iter().map(|c| c.id.parse().unwrap()).collect();
    assert_eq!(
        ids,
        (0..PUSHERS * APPENDS).collect(),
        "rows 0, 1, 2, ... each once"
    );
}

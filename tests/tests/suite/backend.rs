//! The backend contract on every backend: what a push's transaction sees and commits (through
//! `Tx`, which buffers its writes above the backend), what the change log answers, and what a
//! durable backend keeps across a restart.

use std::time::Duration;

use serde_json::{Value, json};
use sync_runtime::{Backend, ChangeLog, Engine, Mutation, PullRequest, SyncError, Transaction};
use sync_tests::*;

sync_tests::on_every_backend!(
    #[tokio::test]
    transaction_reads_its_own_writes_and_rolls_back_on_drop,
    a_rolled_back_mutation_keeps_the_earlier_ones,
    last_client_seq_counts_mutations_finished_in_the_transaction,
    since_reads_only_the_scope_after_the_cursor,
    trim_sets_a_horizon_per_scope,
    scope_cursor_is_the_scopes_latest_change,
    retain_keeps_about_the_most_recent,
    lists_are_ordered_by_id_bytes_and_keep_any_text,
    a_cancelled_push_leaves_nothing_behind,
    a_reopened_backend_keeps_everything,
    a_write_after_a_read_knows_whether_the_entity_existed,
    puts_and_deletes_across_a_push_record_what_existed,
    puts_read_nothing_and_their_commit_tells_create_from_update,
    concurrent_pushes_all_commit_whoever_commits_them,
    ids_with_a_nul_character_fail_for_good,
    a_stored_change_goes_out_as_stored_and_a_corrupt_one_is_a_store_error,
    typed_puts_read_back_as_put_and_one_that_cannot_encode_fails_for_good,
);

/// One change per mutation: a `put` of `id` in `scope`, with data `{"id": id}`.
fn change(scope: &str, id: &str) -> Mutation {
    put(id).with_scope(scope)
}

fn cursors(page: &sync_runtime::PullResponse) -> Vec<u64> {
    page.changes.iter().map(|c| c.cursor).collect()
}

fn pull(scope: &str, cursor: u64, limit: usize) -> PullRequest {
    PullRequest::new(scope, cursor).with_limit(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// An engine that runs [`Script`]s on this backend.
fn script_engine(b: &TestBackend) -> (Engine, Script) {
    let script = Script::default();
    (b.builder(script.clone()).build(), script)
}

async fn transaction_reads_its_own_writes_and_rolls_back_on_drop(b: TestBackend) {
    let (engine, observer) = script_engine(&b);
    // A backend of text reads its own writes back from their encoding: exactly what was put.
    let rich = json!({"n": [1.5, -2, 1e300, u64::MAX, i64::MIN], "s": "é\"\n\u{1F600}", "z": null});
    let steps = json!([
        ["exists", "todo", "1"],
        ["put", "todo", "1", 1],
        ["exists", "todo", "1"],
        ["put", "todo", "1", rich],
        ["get", "todo", "1"],
        ["list", "todo"],
        ["stall"],
    ]);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        engine.push(vec![script(steps).with_scope("s")]),
    )
    .await;
    assert!(cancelled.is_err(), "the push was cancelled");
    assert_eq!(
        observer.seen(),
        [
            json!(false),
            json!(null),
            json!(true),
            json!(null),
            rich.clone(),
            json!([rich])
        ],
        "`exists` sees the push's own writes"
    );
    let read = b
        .backend()
        .snapshot("s", sync_runtime::SnapshotPage::default())
        .await
        .unwrap();
    let (data, head) = (read.data, read.head);
    assert!(data.is_empty() && head == 0, "{data:?} at {head}");
    // The backend is usable after an abandoned transaction.
    let read = engine
        .push(vec![script(json!([["get", "todo", "1"]])).with_scope("s")])
        .await
        .unwrap();
    assert_eq!(
        read.results[0].decode::<Value>().unwrap(),
        Some(json!([null]))
    );
    assert_eq!(engine.head().await.unwrap(), 0);
}

async fn a_rolled_back_mutation_keeps_the_earlier_ones(b: TestBackend) {
    let (engine, _) = script_engine(&b);
    let in_s = |steps| script(steps).with_scope("s");
    let pushed = engine
        .push(vec![
            in_s(json!([["put", "todo", "1", "first"]])).with_client("c", 1),
            in_s(json!([
                ["put", "todo", "1", "second"],
                ["put", "todo", "2", "second"],
                ["fail"]
            ]))
            .with_client("c", 2),
            in_s(json!([["get", "todo", "1"], ["get", "todo", "2"]])),
            // A mutation without writes.
            in_s(json!([])),
        ])
        .await
        .unwrap();
    let oks: Vec<bool> = pushed.results.iter().map(|r| r.ok).collect();
    assert_eq!(oks, [true, false, true, true]);
    assert_eq!(
        pushed.results[2].decode::<Value>().unwrap(),
        Some(json!(["first", null]))
    );
    assert_eq!(
        pushed.results.iter().map(|r| r.cursor).collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
    assert_eq!(pushed.results[0].changes[0].cursor, 1);
    // A mutation begun and never finished (its store failed) leaves nothing.
    let failed = engine
        .push(vec![in_s(json!([
            ["put", "todo", "3", "unfinished"],
            ["store_error"]
        ]))])
        .await;
    assert!(
        matches!(failed, Err(SyncError::Unavailable(_))),
        "{failed:?}"
    );
    let read = b
        .backend()
        .snapshot("s", sync_runtime::SnapshotPage::default())
        .await
        .unwrap();
    let (data, head) = (read.data, read.head);
    assert_eq!(
        (serde_json::to_value(data).unwrap(), head),
        (json!({"todo": {"1": "first"}}), 1)
    );
    let retried = engine
        .push(vec![
            in_s(json!([])).with_client("c", 2),
            in_s(json!([])).with_client("c", 3),
        ])
        .await
        .unwrap();
    let duplicate: Vec<bool> = retried.results.iter().map(|r| r.duplicate).collect();
    assert_eq!(duplicate, [true, false], "client_seq 2 was committed");
}

async fn last_client_seq_counts_mutations_finished_in_the_transaction(b: TestBackend) {
    let engine = b.rules_engine();
    // One push: seq 2 is applied, then 1 and 2 are duplicates of it, 3 is new.
    let pushed = engine
        .push(vec![
            put("a").with_client("c", 2),
            put("b").with_client("c", 1),
            put("c").with_client("c", 2),
            put("d").with_client("c", 3),
            put("e").with_client("other", 1),
        ])
        .await
        .unwrap();
    let duplicate: Vec<bool> = pushed.results.iter().map(|r| r.duplicate).collect();
    assert_eq!(duplicate, [false, true, true, false, false]);
    assert_eq!(engine.head().await.unwrap(), 3);
}

async fn since_reads_only_the_scope_after_the_cursor(b: TestBackend) {
    let engine = b.rules_engine();
    for i in 0..10 {
        let scope = if i % 2 == 0 { "a" } else { "b" };
        engine
            .push(vec![change(scope, &i.to_string())])
            .await
            .unwrap();
    }
    let page = engine.pull(pull("a", 3, 2)).await.unwrap();
    assert_eq!(cursors(&page), [5, 7]);
    assert!(page.has_more);
    assert_eq!(page.cursor, 7);
    assert_eq!(page.changes[0].decode().unwrap(), Some(json!({"id": "4"})));
    assert_eq!(page.changes[0].scope, "a");
    let last = engine.pull(pull("a", 7, 100)).await.unwrap();
    assert_eq!((cursors(&last), last.has_more), (vec![9], false));
    let empty = engine.pull(pull("a", 9, 100)).await.unwrap();
    assert_eq!(
        (empty.changes.len(), empty.cursor, empty.has_more),
        (0, 10, false)
    );
    let all = engine.pull(pull("b", 0, usize::MAX)).await.unwrap();
    assert_eq!(cursors(&all), [2, 4, 6, 8, 10]);
    assert!(matches!(
        engine.pull(pull("a", u64::MAX, 10)).await,
        Err(SyncError::CursorAhead { head: 10, .. })
    ));
    assert_eq!(engine.head().await.unwrap(), 10);
    // The backend's own read: the head, no horizon, at least the changes asked for.
    let read = b.backend().read("a", 3, 2, None).await.unwrap();
    assert_eq!((read.head, read.horizon), (10, 0));
    assert_eq!(
        read.changes
            .iter()
            .map(|c| c.cursor)
            .take(2)
            .collect::<Vec<_>>(),
        [5, 7]
    );
}

async fn trim_sets_a_horizon_per_scope(b: TestBackend) {
    let engine = b.rules_engine();
    engine
        .push(vec![change("a", "1"), change("b", "2"), change("a", "3")])
        .await
        .unwrap();
    engine.trim(3).await.unwrap();
    assert!(matches!(
        engine.pull(pull("a", 0, 10)).await,
        Err(SyncError::CursorTooOld { horizon: 1, .. })
    ));
    assert_eq!(
        engine.pull(pull("a", 1, 10)).await.unwrap().changes.len(),
        1
    );
    assert!(matches!(
        engine.pull(pull("b", 0, 10)).await,
        Err(SyncError::CursorTooOld { horizon: 2, .. })
    ));
    assert_eq!(
        engine.pull(pull("b", 2, 10)).await.unwrap().changes.len(),
        0
    );
    assert!(matches!(
        engine.pull(pull("c", 4, 10)).await,
        Err(SyncError::CursorAhead { head: 3, .. })
    ));
    // A later trim that removes nothing of a scope keeps its horizon.
    engine.push(vec![change("b", "4")]).await.unwrap();
    engine.trim(4).await.unwrap();
    assert!(matches!(
        engine.pull(pull("b", 1, 10)).await,
        Err(SyncError::CursorTooOld { horizon: 2, .. })
    ));
    assert!(matches!(
        engine.pull(pull("a", 2, 10)).await,
        Err(SyncError::CursorTooOld { horizon: 3, .. })
    ));
    assert_eq!(cursors(&engine.pull(pull("b", 2, 10)).await.unwrap()), [4]);
}

async fn scope_cursor_is_the_scopes_latest_change(b: TestBackend) {
    let engine = b.rules_engine();
    let log = b.backend();
    assert_eq!(log.scope_cursor("a").await.unwrap(), 0);
    engine
        .push(vec![change("a", "1"), change("b", "2"), change("a", "3")])
        .await
        .unwrap();
    engine.push(vec![change("b", "4")]).await.unwrap();
    assert_eq!(log.scope_cursor("a").await.unwrap(), 3);
    assert_eq!(log.scope_cursor("b").await.unwrap(), 4);
    assert_eq!(log.scope_cursor("c").await.unwrap(), 0);
    assert_eq!(
        log.scope_cursors(&["b", "c", "a"]).await.unwrap(),
        [4, 0, 3],
        "all at once, in the order asked"
    );
    log.trim(4).await.unwrap(); // all of a's changes go
    assert_eq!(
        log.scope_cursor("a").await.unwrap(),
        3,
        "the last one trimmed"
    );
    assert_eq!(log.scope_cursor("b").await.unwrap(), 4);
}

async fn retain_keeps_about_the_most_recent(b: TestBackend) {
    let engine = b.builder(RulesMutator).retain(20).build();
    for i in 0..100 {
        engine
            .push(vec![change("a", &i.to_string())])
            .await
            .unwrap();
    }
    // At least the 20 most recent, at most a tenth more.
    let page = engine.pull(pull("a", 80, 1000)).await.unwrap();
    assert_eq!(page.changes.len(), 20);
    assert!(matches!(
        engine.pull(pull("a", 77, 10)).await,
        Err(SyncError::CursorTooOld { .. })
    ));
    // Keeping none: everything goes.
    engine.trim(101).await.unwrap();
    assert!(matches!(
        engine.pull(pull("a", 99, 10)).await,
        Err(SyncError::CursorTooOld { horizon: 100, .. })
    ));
    assert!(
        engine
            .pull(pull("a", 100, 10))
            .await
            .unwrap()
            .changes
            .is_empty()
    );
    assert_eq!(engine.head().await.unwrap(), 100);
}

async fn lists_are_ordered_by_id_bytes_and_keep_any_text(b: TestBackend) {
    let engine = b.rules_engine();
    let ids = [
        "b",
        "B",
        "a",
        "é",
        "Z",
        "a b",
        "10",
        "9",
        "emoji-🦀",
        "quote'\"\\",
    ];
    let data = json!({"nested": {"list": [1, 2.5, null, true], "text": "line\nbreak ☃"}});
    let mutations = ids
        .iter()
        .map(|id| Mutation::new("put", json!({"id": id, "data": data})))
        .collect();
    engine.push(mutations).await.unwrap();
    let backend = b.backend();
    let mut tx = backend.begin().await.unwrap();
    let listed = tx.list("_default", "item").await.unwrap();
    assert_eq!(listed.len(), ids.len());
    assert!(listed.values().all(|value| value == &data));
    let snapshot = engine.snapshot(None).await.unwrap();
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable(); // byte order, as Rust's `str` orders
    let keys: Vec<&str> = snapshot.data["item"].keys().map(String::as_str).collect();
    assert_eq!(keys, sorted);
    // `list` is ordered by id too: tag each entity with its id to see the order.
    drop(tx);
    let mutations = ids
        .iter()
        .map(|id| Mutation::new("put", json!({"id": id, "entity": "tagged"})))
        .collect();
    engine.push(mutations).await.unwrap();
    let mut tx = backend.begin().await.unwrap();
    let listed: Vec<String> = tx
        .list("_default", "tagged")
        .await
        .unwrap()
        .values()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, sorted);
    let pulled = pull_all(&engine, "_default", 0).await;
    assert_eq!(pulled[3].decode().unwrap(), Some(data.clone()));
    assert_eq!(pulled.len(), ids.len() * 2);
}

async fn a_cancelled_push_leaves_nothing_behind(b: TestBackend) {
    let engine = b.rules_engine();
    engine
        .push(vec![put("kept").with_client("c", 1)])
        .await
        .unwrap();
    // Cancelled while its second mutation waits: the push's transaction is dropped.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        engine.push(vec![
            put("gone").with_client("c", 2),
            Mutation::new("put_then_stall", json!({"id": "slow"})).with_client("c", 3),
        ]),
    )
    .await;
    assert!(cancelled.is_err(), "the push was cancelled");
    let retry = engine
        .push(vec![
            put("gone").with_client("c", 2),
            Mutation::new("slow_put", json!({"id": "slow"})).with_client("c", 3),
        ])
        .await
        .unwrap();
    assert!(
        retry.results.iter().all(|r| r.ok && !r.duplicate),
        "nothing of the cancelled push was recorded: {retry:?}"
    );
    let changes = pull_all(&engine, "_default", 0).await;
    assert_eq!(changes.len(), 3);
    assert_eq!(
        replay(&changes),
        engine.snapshot(None).await.unwrap().data,
        "log and data agree"
    );
}

async fn a_reopened_backend_keeps_everything(b: TestBackend) {
    if b.kind == Kind::Memory {
        return; // nothing survives a restart in memory
    }
    let engine = b.rules_engine();
    for i in 0..5 {
        engine
            .push(vec![
                put(&i.to_string()).with_client("c", i + 1),
                put(&format!("other-{i}")).with_scope("other"),
            ])
            .await
            .unwrap();
    }
    engine
        .push(vec![
            Mutation::new("delete", json!({"id": "0"})).with_client("c", 6),
        ])
        .await
        .unwrap();
    engine.trim(3).await.unwrap();
    let head = engine.head().await.unwrap();
    let before = engine.snapshot(None).await.unwrap();
    let history = pull_all(&engine, "_default", 3).await;
    drop(engine);

    let reopened = b.open().await.unwrap();
    let engine = sync_runtime::Engine::builder(RulesMutator)
        .backend(reopened)
        .build();
    assert_eq!(engine.head().await.unwrap(), head);
    assert_eq!(engine.snapshot(None).await.unwrap(), before);
    assert_eq!(pull_all(&engine, "_default", 3).await, history);
    assert!(matches!(
        engine.pull(PullRequest::default().with_limit(10)).await,
        Err(SyncError::CursorTooOld { horizon: 1, .. })
    ));
    let retry = engine
        .push(vec![
            put("5").with_client("c", 6),
            put("6").with_client("c", 7),
        ])
        .await
        .unwrap();
    assert!(retry.results[0].duplicate, "client seqs survive a restart");
    assert!(!retry.results[1].duplicate);
    assert!(
        retry.results[1].cursor > head,
        "new cursors follow the old ones"
    );
}

/// Writes after reads of committed entities tell creates from updates, before and after a
/// rolled-back mutation (the writes wait in memory, and the backend is asked only what it holds).
async fn a_write_after_a_read_knows_whether_the_entity_existed(b: TestBackend) {
    let (engine, observer) = script_engine(&b);
    let in_s = |steps| script(steps).with_scope("s");
    engine
        .push(vec![in_s(json!([["put", "todo", "old", 1]]))])
        .await
        .unwrap();
    let pushed = engine
        .push(vec![
            in_s(json!([
                ["get", "todo", "old"],
                ["get", "todo", "new"],
                ["put", "todo", "old", 2],
                ["put", "todo", "new", 2],
                ["exists", "todo", "old"],
                ["exists", "todo", "new"],
                ["fail"]
            ])),
            // Undone: `new` does not exist again, `old` still does.
            in_s(json!([
                ["get", "todo", "new"],
                ["put", "todo", "new", 3],
                ["delete", "todo", "old"],
                ["delete", "todo", "old"],
                ["put", "todo", "old", 4]
            ])),
        ])
        .await
        .unwrap();
    assert_eq!(pushed.results[0].code.as_deref(), Some("rejected"));
    let failed_saw = observer.seen().get(1..7).map(<[_]>::to_vec);
    assert_eq!(
        failed_saw,
        Some(vec![
            json!(1),
            json!(null),
            json!(null),
            json!(null),
            json!(true),
            json!(true)
        ]),
        "the failed mutation saw the committed state and its own writes"
    );
    assert_eq!(
        pushed.results[1].decode::<Value>().unwrap(),
        Some(json!([null, null, true, false, null]))
    );
    let ops: Vec<_> = pushed.results[1].changes.iter().map(|c| c.op).collect();
    use sync_runtime::ChangeOp::{Create, Delete};
    assert_eq!(ops, [Create, Delete, Create]);
}

/// Each put is a `create` where the id did not exist at that point and an `update` where it
/// did, whoever holds the entity at that moment: this mutation, an earlier one of the push, one
/// undone, or the store (checked with no read before, so only the backend's existence check
/// answers).
async fn puts_and_deletes_across_a_push_record_what_existed(b: TestBackend) {
    let (engine, _) = script_engine(&b);
    let in_s = |steps| script(steps).with_scope("s");
    let pushed = engine
        .push(vec![
            in_s(json!([["put", "todo", "a", 1]])),
            in_s(json!([["put", "todo", "a", 2], ["put", "todo", "a", 3]])),
            in_s(json!([
                ["delete", "todo", "a"],
                ["put", "todo", "a", 4],
                ["delete", "todo", "a"],
                ["delete", "todo", "a"]
            ])),
            // Undone: its `b` does not stay.
            in_s(json!([["put", "todo", "b", 1], ["fail"]])),
            in_s(json!([["put", "todo", "b", 2], ["put", "todo", "a", 5]])),
        ])
        .await
        .unwrap();
    use sync_runtime::ChangeOp::{Create, Delete, Update};
    let ops = |pushed: &sync_runtime::PushResponse| -> Vec<Vec<sync_runtime::ChangeOp>> {
        let ops = |r: &sync_runtime::MutationResult| r.changes.iter().map(|c| c.op).collect();
        pushed.results.iter().map(ops).collect()
    };
    assert_eq!(
        ops(&pushed),
        [
            vec![Create],
            vec![Update, Update],
            vec![Delete, Create, Delete],
            vec![],
            vec![Create, Create],
        ]
    );
    assert_eq!(
        pushed.results[2].decode::<Value>().unwrap(),
        Some(json!([true, null, true, false]))
    );
    // Now from the store: `a` and `b` exist, `c` does not.
    let again = engine
        .push(vec![
            in_s(json!([["put", "todo", "a", 6], ["put", "todo", "c", 1]])),
            in_s(json!([["delete", "todo", "b"], ["put", "todo", "b", 3]])),
        ])
        .await
        .unwrap();
    assert_eq!(ops(&again), [vec![Update, Create], vec![Delete, Create]]);
    let logged: Vec<_> = pull_all(&engine, "s", 0)
        .await
        .iter()
        .map(|c| (c.id.clone(), c.op))
        .collect();
    let expected = [
        ("a", Create),
        ("a", Update),
        ("a", Update),
        ("a", Delete),
        ("a", Create),
        ("a", Delete),
        ("b", Create),
        ("a", Create),
        ("a", Update),
        ("c", Create),
        ("b", Delete),
        ("b", Create),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, op)| ((*id).to_owned(), *op))
        .collect();
    assert_eq!(
        logged, expected,
        "the log records the ops the mutations saw"
    );
}

/// A put reads nothing from the store, not even whether its entity exists: pushes of puts run
/// on a backend that fails every transaction read, and their commit still logs `create` where
/// the entity did not exist before the push and `update` where it did, for a key put once or
/// several times, put again after a mutation that put it failed, or put and then deleted.
/// `exists` answers from the push's own writes without reading either.
async fn puts_read_nothing_and_their_commit_tells_create_from_update(b: TestBackend) {
    use sync_runtime::ChangeOp::{Create, Delete, Update};
    let (engine, _) = script_engine(&b);
    let in_s = |steps| script(steps).with_scope("s");
    engine
        .push(vec![in_s(json!([
            ["put", "todo", "old", 1],
            ["put", "todo", "doomed", 1]
        ]))])
        .await
        .unwrap();
    let blind = Engine::builder(Script::default())
        .backend(FailingBackend::new(b.backend(), 0))
        .build();
    let pushed = blind
        .push(vec![
            in_s(json!([
                ["put", "todo", "new1", 1],
                ["put", "todo", "old", 2]
            ])),
            // Undone: `new2` is new again for the next mutation.
            in_s(json!([
                ["put", "todo", "new2", 1],
                ["put", "todo", "new2", 2],
                ["fail"]
            ])),
            in_s(json!([
                ["put", "todo", "new2", 3],
                ["put", "todo", "old", 3],
                ["put", "todo", "new1", 2]
            ])),
            in_s(json!([
                ["put", "todo", "fresh", 1],
                ["delete", "todo", "fresh"]
            ])),
            in_s(json!([
                ["put", "todo", "doomed", 2],
                ["delete", "todo", "doomed"],
                ["exists", "todo", "doomed"],
                ["exists", "todo", "new2"]
            ])),
        ])
        .await
        .unwrap();
    let ops: Vec<Vec<_>> = pushed
        .results
        .iter()
        .map(|r| r.changes.iter().map(|c| (c.id.clone(), c.op)).collect())
        .collect();
    let expected: Vec<Vec<_>> = [
        vec![("new1", Create), ("old", Update)],
        vec![],
        vec![("new2", Create), ("old", Update), ("new1", Update)],
        vec![("fresh", Create), ("fresh", Delete)],
        vec![("doomed", Update), ("doomed", Delete)],
    ]
    .iter()
    .map(|ops| ops.iter().map(|(id, op)| ((*id).to_owned(), *op)).collect())
    .collect();
    assert_eq!(ops, expected, "the push's answer");
    assert_eq!(
        pushed.results[4].decode::<Value>().unwrap(),
        Some(json!([null, true, false, true]))
    );
    let logged: Vec<_> = pull_all(&engine, "s", 2)
        .await
        .iter()
        .map(|c| (c.id.clone(), c.op))
        .collect();
    let answered: Vec<_> = expected.into_iter().flatten().collect();
    assert_eq!(logged, answered, "the log records what the push answered");
    let data = engine.snapshot(Some("s")).await.unwrap().data;
    assert_eq!(
        serde_json::to_value(&data).unwrap(),
        json!({"todo": {"new1": 2, "new2": 3, "old": 3}})
    );

    // Many puts in one mutation: all new, then all existing.
    let blind = Engine::builder(RulesMutator)
        .backend(FailingBackend::new(b.backend(), 0))
        .build();
    let many = Mutation::new("put_many", json!({"n": 100, "tag": "t"}));
    for expected in [Create, Update] {
        let pushed = blind.push(vec![many.clone()]).await.unwrap();
        let changes = &pushed.results[0].changes;
        assert_eq!(changes.len(), 100);
        assert!(changes.iter().all(|c| c.op == expected), "{expected:?}");
    }
}

/// PostgreSQL's text cannot hold U+0000: an id or entity type with one fails its mutation for
/// good on every backend, alike, rather than answering 503 to every retry.
async fn ids_with_a_nul_character_fail_for_good(b: TestBackend) {
    let engine = b.rules_engine();
    let pushed = engine
        .push(vec![
            put("before").with_client("c", 1),
            put("nul\0id").with_client("c", 2),
            Mutation::new("put", json!({"id": "x", "entity": "it\0em"})).with_client("c", 3),
            // In the data, inside a JSON string, a NUL is just text.
            Mutation::new("put", json!({"id": "after", "data": {"text": "a\0b"}}))
                .with_client("c", 4),
        ])
        .await
        .unwrap();
    let outcomes: Vec<_> = pushed
        .results
        .iter()
        .map(|r| (r.ok, r.code.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (true, None),
            (false, Some("invalid_args")),
            (false, Some("invalid_args")),
            (true, None)
        ]
    );
    // Recorded like any permanent failure: a retry is a duplicate.
    let retried = engine
        .push(vec![put("nul\0id").with_client("c", 2)])
        .await
        .unwrap();
    assert!(retried.results[0].duplicate, "{retried:?}");
    // A client id is recorded with every mutation: one with a NUL is refused with the push.
    let refused = engine.push(vec![put("y").with_client("c\0", 1)]).await;
    assert!(
        matches!(refused, Err(SyncError::InvalidRequest(_))),
        "{refused:?}"
    );
    let snapshot = engine.snapshot(None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&snapshot.data).unwrap(),
        json!({"item": {"after": {"text": "a\0b"}, "before": {"id": "before"}}})
    );
}

/// Pushes that wait for the writer may share one commit (SQLite's group commit): however they
/// are grouped, each acknowledged push is committed once, in cursor order, a push cancelled
/// inside the writer leaves nothing (and does not take the others down), and a reopened backend
/// has them all.
async fn concurrent_pushes_all_commit_whoever_commits_them(b: TestBackend) {
    let engine = b.rules_engine();
    let (pushers, pushes) = (8, 10);
    let tasks: Vec<_> = (0..pushers)
        .map(|p| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..pushes {
                    let id = format!("{p}-{i}");
                    let m = Mutation::new("slow_put", json!({ "id": id }))
                        .with_client(format!("c{p}"), i + 1);
                    let pushed = engine.push(vec![m]).await.unwrap();
                    assert!(pushed.results[0].ok, "{pushed:?}");
                }
            })
        })
        .collect();
    let stalled = tokio::time::timeout(
        Duration::from_millis(100),
        engine.push(vec![Mutation::new(
            "put_then_stall",
            json!({"id": "stalled"}),
        )]),
    )
    .await;
    assert!(stalled.is_err(), "the stalled push was cancelled");
    for task in tasks {
        task.await.unwrap();
    }
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..pushers)
            .flat_map(|p| (0..pushes).map(move |i| format!("{p}-{i}")))
            .collect();
        ids.sort();
        ids
    };
    let ids = |data: &sync_runtime::ScopeData| -> Vec<String> {
        data.get("item")
            .map(|ids| ids.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(ids(&engine.snapshot(None).await.unwrap().data), expected);
    let history = pull_all(&engine, "_default", 0).await;
    assert_eq!(history.len(), expected.len());
    assert!(history.windows(2).all(|w| w[0].cursor < w[1].cursor));
    drop(engine);
    if b.kind == Kind::Memory {
        return;
    }
    let engine = sync_runtime::Engine::builder(RulesMutator)
        .backend(b.open().await.unwrap())
        .build();
    assert_eq!(ids(&engine.snapshot(None).await.unwrap().data), expected);
}

/// Pulls write a change's stored data as it is, without parsing and encoding it again: valid
/// text comes back byte for byte, and text that is not one JSON value fails the pull as a store
/// error (503 over HTTP, with the protocol's error body), never as broken JSON in an answer.
async fn a_stored_change_goes_out_as_stored_and_a_corrupt_one_is_a_store_error(b: TestBackend) {
    let engine = b.rules_engine();
    engine.push(vec![put("1")]).await.unwrap();
    let stored = r#"{"id" : "1",   "x": [1.50]}"#;
    if !b
        .execute_sql(&format!("UPDATE sync_changes SET data = '{stored}'"))
        .await
    {
        return; // the memory backend keeps no text to corrupt
    }
    let http = Http::new(&engine);
    let pulled = engine.pull(pull("_default", 0, 10)).await.unwrap();
    assert_eq!(pulled.changes[0].data.as_ref().unwrap().as_str(), stored);
    let answer = http
        .post("/_sync/pull", json!({"scope": "_default", "cursor": 0}))
        .await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert_eq!(
        answer.body["changes"][0]["data"],
        json!({"id": "1", "x": [1.5]})
    );

    for corrupt in [r#"{"id": "1"} trailing"#, r#"{"id": "#, "[1,]", ""] {
        b.execute_sql(&format!("UPDATE sync_changes SET data = '{corrupt}'"))
            .await;
        let error = engine.pull(pull("_default", 0, 10)).await.unwrap_err();
        let SyncError::Unavailable(cause) = &error else {
            panic!("{corrupt:?}: {error}");
        };
        assert!(
            cause.to_string().contains("not valid JSON"),
            "{corrupt:?}: {cause}"
        );
        http.post("/_sync/pull", json!({"scope": "_default", "cursor": 0}))
            .await
            .assert_error(503, "unavailable");
    }
}

/// An entity with what JSON makes awkward: floats, the integer extremes, escapes, an absent
/// option, a nested map.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Gadget {
    id: String,
    zeta: f64,
    big: u64,
    small: i64,
    text: String,
    tags: Option<Vec<String>>,
    nested: std::collections::BTreeMap<String, i32>,
}

impl sync_runtime::Entity for Gadget {
    const NAME: &'static str = "gadget";

    fn id(&self) -> String {
        self.id.clone()
    }
}

/// Its map has keys that are not strings: it does not encode as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct Broken {
    id: String,
    by_pair: std::collections::BTreeMap<(u8, u8), u8>,
}

impl sync_runtime::Entity for Broken {
    const NAME: &'static str = "broken";

    fn id(&self) -> String {
        self.id.clone()
    }
}

/// A typed put reads back within its push, and goes out in its change and in the snapshot, as
/// the entity that was put, whichever encoding the backend takes (its own or its `Value`'s); an
/// entity that does not encode fails its mutation for good, and the push goes on.
async fn typed_puts_read_back_as_put_and_one_that_cannot_encode_fails_for_good(b: TestBackend) {
    let gadget = Gadget {
        id: "g1".to_owned(),
        zeta: -1.5e-300,
        big: u64::MAX,
        small: i64::MIN,
        text: "é\"\\\n\u{1F600}".to_owned(),
        tags: None,
        nested: [("b".to_owned(), 2), ("a".to_owned(), 1)].into(),
    };
    let mutator = sync_runtime::MutatorFunc::new({
        let gadget = gadget.clone();
        move |tx, m| {
            let gadget = gadget.clone();
            Box::pin(async move {
                if m.name == "broken" {
                    let by_pair = [((1, 2), 3)].into();
                    tx.put(&Broken {
                        id: "b1".to_owned(),
                        by_pair,
                    })
                    .await?;
                    return Ok(None);
                }
                tx.put(&gadget).await?;
                let read = tx.get::<Gadget>("g1").await?;
                let listed = tx.list::<Gadget>().await?;
                Ok(Some(
                    json!([read == Some(gadget.clone()), listed == [gadget]]).into(),
                ))
            })
        }
    });
    let engine = b.builder(mutator).build();
    let pushed = engine
        .push(vec![
            Mutation::new("broken", json!({})).with_client("c", 1),
            Mutation::new("gadget", json!({})).with_client("c", 2),
        ])
        .await
        .unwrap();
    let (broken, put) = (&pushed.results[0], &pushed.results[1]);
    assert_eq!(broken.code.as_deref(), Some("invalid_args"), "{broken:?}");
    assert!(
        broken
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("cannot encode broken `b1`"),
        "{broken:?}"
    );
    assert_eq!(
        put.decode::<Value>().unwrap(),
        Some(json!([true, true])),
        "read back within the push"
    );
    let change = &put.changes[0];
    let data = change.data.as_ref().map(|data| data.decode::<Gadget>());
    assert!(
        matches!(data, Some(Ok(ref got)) if *got == gadget),
        "{data:?}"
    );
    let snapshot = engine.snapshot(None).await.unwrap();
    let stored = snapshot
        .data
        .get("gadget")
        .and_then(|ids| ids.get("g1"))
        .cloned();
    let stored = stored.map(serde_json::from_value::<Gadget>);
    assert!(
        matches!(stored, Some(Ok(ref got)) if *got == gadget),
        "{stored:?}"
    );
    assert!(
        !snapshot.data.contains_key("broken"),
        "nothing of the failed mutation"
    );
}

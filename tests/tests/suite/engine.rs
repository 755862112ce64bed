//! The engine's tests: push, pull, snapshot, scopes, and the protocol's push rules.

use std::time::Duration;

use serde_json::{Value, json};
use sync_runtime::{ChangeOp, Engine, Mutation, Poke, PullRequest, SyncError};
use sync_tests::*;

sync_tests::on_every_backend!(
    #[tokio::test]
    push_single_mutation,
    push_multiple_mutations_in_order,
    one_failing_mutation_among_several,
    absent_or_null_args_are_an_empty_object,
    pokes_once_per_scope_with_its_highest_cursor,
    pull_pages_from_a_cursor,
    pull_limit_defaults_and_is_capped,
    pull_of_an_empty_scope_answers_the_head,
    snapshot_is_the_state_at_its_cursor,
    create_toggle_rename_delete_flow,
    scopes_and_entities_are_isolated,
    store_keeps_entities_apart,
    duplicates_are_answered_not_applied,
    a_permanent_failure_is_recorded_so_its_retry_is_a_duplicate,
    a_failing_mutation_leaves_nothing_behind,
    a_store_failure_stops_the_push_and_the_retry_completes_it,
    a_push_cancelled_while_it_commits_still_commits_and_pokes,
    a_push_is_validated_whole_before_it_runs,
);

fn pull_req(scope: &str, cursor: u64, limit: i64) -> PullRequest {
    PullRequest::new(scope, cursor).with_limit(limit)
}

async fn push_single_mutation(b: TestBackend) {
    let engine = b.todo_engine();
    let pushed = engine.push(vec![create("milk")]).await.unwrap();
    assert_eq!(pushed.results.len(), 1);
    let result = &pushed.results[0];
    assert!(result.ok, "{result:?}");
    assert_eq!((result.cursor, pushed.cursor), (1, 1));
    assert_eq!(result.changes.len(), 1);
    let change = &result.changes[0];
    assert_eq!(
        (change.op, change.entity.as_str(), change.scope.as_str()),
        (ChangeOp::Create, "todo", "_default")
    );
    assert_eq!(change.decode::<Value>().unwrap().unwrap()["title"], "milk");
    assert_eq!(
        result.decode::<Value>().unwrap().unwrap()["id"],
        json!(change.id)
    );
}

async fn push_multiple_mutations_in_order(b: TestBackend) {
    let engine = b.todo_engine();
    let pushed = engine
        .push(vec![
            create_with_id("a", "one"),
            on_id("todo/toggle", "a"),
            create("two"),
        ])
        .await
        .unwrap();
    let cursors: Vec<u64> = pushed.results.iter().map(|r| r.cursor).collect();
    assert_eq!(cursors, [1, 2, 3]);
    assert_eq!(pushed.cursor, 3);
    assert_eq!(pushed.results[1].changes[0].op, ChangeOp::Update);
    assert_eq!(
        pushed.results[1].changes[0]
            .decode::<Value>()
            .unwrap()
            .unwrap()["completed"],
        true
    );
}

async fn one_failing_mutation_among_several(b: TestBackend) {
    let engine = b.todo_engine();
    let pushed = engine
        .push(vec![
            create("one"),
            on_id("todo/toggle", "missing"),
            Mutation::new("todo/create", json!({"titel": "typo"})),
            Mutation::new("todo/explode", json!({})),
            Mutation::new("todo/create", json!(["not", "an", "object"])),
            create("two"),
        ])
        .await
        .unwrap();
    let r = &pushed.results;
    assert!(r[0].ok && r[5].ok);
    for (i, code) in [
        (1, "not_found"),
        (2, "invalid_args"),
        (3, "unknown_mutation"),
        (4, "invalid_args"),
    ] {
        assert!(!r[i].ok);
        assert_eq!(r[i].code.as_deref(), Some(code), "{:?}", r[i]);
        assert!(r[i].changes.is_empty());
        assert_eq!(
            r[i].cursor, 1,
            "a failed mutation answers the log's cursor at the time"
        );
    }
    assert!(
        r[2].error.as_deref().unwrap().contains("titel"),
        "names the field: {:?}",
        r[2].error
    );
    assert_eq!(r[5].cursor, 2);
    assert_eq!(engine.head().await.unwrap(), 2);
}

async fn absent_or_null_args_are_an_empty_object(b: TestBackend) {
    let engine = b.rules_engine();
    let mut absent = Mutation::new("echo", json!(null));
    absent.args = serde_json::Value::Null;
    let pushed = engine.push(vec![absent]).await.unwrap();
    assert_eq!(
        pushed.results[0].decode::<Value>().unwrap(),
        Some(json!({}))
    );
}

async fn pokes_once_per_scope_with_its_highest_cursor(b: TestBackend) {
    let pokes = PokeLog::default();
    let engine = b.builder(RulesMutator).broker(pokes.broker()).build();
    engine
        .push(vec![
            put("1").with_scope("a"),
            put("2").with_scope("b"),
            put("3").with_scope("a"),
            Mutation::new("echo", json!({})).with_scope("c"),
        ])
        .await
        .unwrap();
    let mut got = pokes.take();
    got.sort_by(|x, y| x.scope.cmp(&y.scope));
    assert_eq!(
        got,
        [
            Poke {
                scope: "a".into(),
                cursor: 3
            },
            Poke {
                scope: "b".into(),
                cursor: 2
            }
        ],
        "a scope without changes is not poked"
    );
    engine
        .push(vec![Mutation::new("put_then_fail", json!({"id": "9"}))])
        .await
        .unwrap();
    assert!(pokes.take().is_empty(), "a failed mutation pokes no one");
}

async fn pull_pages_from_a_cursor(b: TestBackend) {
    let engine = b.todo_engine();
    let mutations = (0..5).map(|i| create(&format!("t{i}"))).collect();
    engine.push(mutations).await.unwrap();
    let first = engine.pull(pull_req("_default", 0, 2)).await.unwrap();
    assert_eq!(
        first.changes.iter().map(|c| c.cursor).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(first.has_more);
    assert_eq!(first.cursor, 2);
    let rest = engine
        .pull(pull_req("_default", first.cursor, 10))
        .await
        .unwrap();
    assert_eq!(
        rest.changes.iter().map(|c| c.cursor).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(!rest.has_more);
    let empty = engine.pull(pull_req("_default", 5, 10)).await.unwrap();
    assert!(empty.changes.is_empty() && !empty.has_more);
    assert_eq!(empty.cursor, 5);
    // Exactly `limit` left: no further page.
    let exact = engine.pull(pull_req("_default", 3, 2)).await.unwrap();
    assert_eq!((exact.changes.len(), exact.has_more), (2, false));
}

async fn pull_limit_defaults_and_is_capped(b: TestBackend) {
    let engine = b.rules_engine();
    let mutations: Vec<Mutation> = (0..1100).map(|i| put(&i.to_string())).collect();
    engine.push(mutations[..1000].to_vec()).await.unwrap();
    engine.push(mutations[1000..].to_vec()).await.unwrap();
    for (limit, expected) in [(0, 100), (-3, 100), (7, 7), (5000, 1000), (i64::MAX, 1000)] {
        let page = engine.pull(pull_req("_default", 0, limit)).await.unwrap();
        assert_eq!(page.changes.len(), expected, "limit {limit}");
        assert!(page.has_more);
    }
}

async fn pull_of_an_empty_scope_answers_the_head(b: TestBackend) {
    let engine = b.todo_engine();
    engine
        .push(vec![create("x").with_scope("other")])
        .await
        .unwrap();
    let page = engine.pull(pull_req("quiet", 0, 10)).await.unwrap();
    assert!(page.changes.is_empty() && !page.has_more);
    assert_eq!(
        page.cursor, 1,
        "nothing at or below the head can still appear"
    );
}

async fn snapshot_is_the_state_at_its_cursor(b: TestBackend) {
    let engine = b.todo_engine();
    engine
        .push(vec![
            create_with_id("a", "one"),
            create_with_id("b", "two"),
            on_id("todo/delete", "a"),
        ])
        .await
        .unwrap();
    let snapshot = engine.snapshot(None).await.unwrap();
    assert_eq!(snapshot.cursor, 3);
    assert_eq!(
        serde_json::to_value(&snapshot.data).unwrap(),
        json!({"todo": {"b": {"id": "b", "title": "two", "completed": false}}})
    );
    assert!(
        engine
            .snapshot(Some("elsewhere"))
            .await
            .unwrap()
            .data
            .is_empty()
    );
}

async fn create_toggle_rename_delete_flow(b: TestBackend) {
    let engine = b.todo_engine();
    let created = engine.push(vec![create("milk")]).await.unwrap();
    let id = created.results[0].decode::<Value>().unwrap().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let steps = vec![
        on_id("todo/toggle", &id),
        Mutation::new("todo/rename", json!({"id": id, "title": "oat milk"})),
    ];
    assert!(
        engine
            .push(steps)
            .await
            .unwrap()
            .results
            .iter()
            .all(|r| r.ok)
    );
    let state = engine.snapshot(None).await.unwrap();
    assert_eq!(
        state.data["todo"][&id],
        json!({"id": id, "title": "oat milk", "completed": true})
    );

    assert!(
        engine
            .push(vec![on_id("todo/delete", &id)])
            .await
            .unwrap()
            .results[0]
            .ok
    );
    let again = engine.push(vec![on_id("todo/delete", &id)]).await.unwrap();
    assert_eq!(again.results[0].code.as_deref(), Some("not_found"));

    let changes = pull_all(&engine, "_default", 0).await;
    let ops: Vec<ChangeOp> = changes.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            ChangeOp::Create,
            ChangeOp::Update,
            ChangeOp::Update,
            ChangeOp::Delete
        ]
    );
    assert!(changes[3].data.is_none(), "a delete carries no data");
    assert!(replay(&changes).is_empty());
    assert!(engine.snapshot(None).await.unwrap().data.is_empty());
}

async fn scopes_and_entities_are_isolated(b: TestBackend) {
    let engine = b.rules_engine();
    engine
        .push(vec![
            Mutation::new("put", json!({"id": "1", "data": {"v": "a"}})).with_scope("a"),
            Mutation::new("put", json!({"id": "1", "data": {"v": "b"}})).with_scope("b"),
            Mutation::new(
                "put",
                json!({"id": "1", "entity": "other", "data": {"v": "o"}}),
            )
            .with_scope("a"),
            Mutation::new("delete", json!({"id": "1"})).with_scope("b"),
        ])
        .await
        .unwrap();
    let a = engine.snapshot(Some("a")).await.unwrap().data;
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"item": {"1": {"v": "a"}}, "other": {"1": {"v": "o"}}})
    );
    assert!(engine.snapshot(Some("b")).await.unwrap().data.is_empty());
    let a_changes = pull_all(&engine, "a", 0).await;
    assert!(a_changes.iter().all(|c| c.scope == "a"));
    assert_eq!(a_changes.len(), 2);
    // The empty scope is the default scope.
    engine.push(vec![put("d").with_scope("")]).await.unwrap();
    assert_eq!(pull_all(&engine, "_default", 0).await.len(), 1);
}

/// Entity types and scopes keep entities apart; a mutation reaches only its own scope.
async fn store_keeps_entities_apart(b: TestBackend) {
    let observer = Script::default();
    let engine = b.builder(observer.clone()).build();
    engine
        .push(vec![
            script(json!([
                ["put", "todo", "1", "todo"],
                ["put", "note", "1", "note"]
            ]))
            .with_scope("s"),
            script(json!([["put", "todo", "1", "other scope"]])).with_scope("t"),
        ])
        .await
        .unwrap();
    let pushed = engine
        .push(vec![
            script(json!([
                ["get", "todo", "1"],
                ["list", "note"],
                ["delete", "todo", "1"],
                ["delete", "todo", "1"]
            ]))
            .with_scope("s"),
            script(json!([["get", "todo", "1"]])).with_scope("t"),
        ])
        .await
        .unwrap();
    assert_eq!(
        pushed.results[0].decode::<Value>().unwrap(),
        Some(json!(["todo", ["note"], true, false]))
    );
    assert_eq!(
        pushed.results[1].decode::<Value>().unwrap(),
        Some(json!(["other scope"]))
    );
    assert_eq!(engine.snapshot(Some("s")).await.unwrap().data.len(), 1);
    let t = engine.snapshot(Some("t")).await.unwrap();
    assert_eq!(
        (serde_json::to_value(t.data).unwrap(), t.cursor),
        (json!({"todo": {"1": "other scope"}}), 4),
        "every write is a change: three puts and a delete"
    );
}

async fn duplicates_are_answered_not_applied(b: TestBackend) {
    let engine = b.todo_engine();
    let first = engine
        .push(vec![create_with_id("a", "one").with_client("c1", 5)])
        .await
        .unwrap();
    assert!(first.results[0].ok && !first.results[0].duplicate);
    for seq in [5, 3] {
        let retry = engine
            .push(vec![create_with_id("a", "one").with_client("c1", seq)])
            .await
            .unwrap();
        let result = &retry.results[0];
        assert!(result.ok && result.duplicate, "seq {seq}: {result:?}");
        assert!(result.changes.is_empty());
        assert_eq!(result.cursor, 1);
    }
    // Gaps are fine, other clients are independent, and seq 0 or no client never dedupes.
    let later = engine
        .push(vec![
            create("two").with_client("c1", 9),
            create("three").with_client("c2", 1),
            create("four").with_client("c3", 0),
            create("five").with_client("c3", 0),
        ])
        .await
        .unwrap();
    assert!(
        later.results.iter().all(|r| r.ok && !r.duplicate),
        "{later:?}"
    );
    assert_eq!(engine.head().await.unwrap(), 5);
}

async fn a_permanent_failure_is_recorded_so_its_retry_is_a_duplicate(b: TestBackend) {
    let engine = b.rules_engine();
    let failing = Mutation::new("put_then_fail", json!({"id": "1"})).with_client("c", 1);
    let first = engine.push(vec![failing.clone()]).await.unwrap();
    assert_eq!(first.results[0].code.as_deref(), Some("rejected"));
    let retry = engine.push(vec![failing]).await.unwrap();
    // Protocol 1.1: the duplicate is answered as the mutation failed, not as a success.
    let answer = &retry.results[0];
    assert!(!answer.ok && answer.duplicate, "{answer:?}");
    assert_eq!(answer.code.as_deref(), Some("rejected"));
}

async fn a_failing_mutation_leaves_nothing_behind(b: TestBackend) {
    let engine = b.rules_engine();
    let pushed = engine
        .push(vec![Mutation::new("put_then_fail", json!({"id": "1"}))])
        .await
        .unwrap();
    assert!(!pushed.results[0].ok);
    assert!(
        engine.snapshot(None).await.unwrap().data.is_empty(),
        "no write"
    );
    assert_eq!(engine.head().await.unwrap(), 0, "no change");

    let error = engine
        .push(vec![
            Mutation::new("put_then_store_error", json!({"id": "2"})).with_client("c", 1),
        ])
        .await
        .unwrap_err();
    assert!(matches!(error, SyncError::Unavailable(_)), "{error}");
    assert!(engine.snapshot(None).await.unwrap().data.is_empty());
    assert_eq!(engine.head().await.unwrap(), 0);
    // The transient failure recorded nothing: the same client_seq is applied on retry.
    let retry = engine
        .push(vec![put("3").with_client("c", 1)])
        .await
        .unwrap();
    assert!(retry.results[0].ok && !retry.results[0].duplicate);
}

async fn a_store_failure_stops_the_push_and_the_retry_completes_it(b: TestBackend) {
    // The first mutation's two reads (its client_seq, its entity) succeed; the second's read
    // of its entity fails (a put alone reads nothing, and the client's seq is staged by then).
    let backend = FailingBackend::new(b.backend(), 2);
    let pokes = PokeLog::default();
    let engine = Engine::builder(RulesMutator)
        .backend(backend.clone())
        .broker(pokes.broker())
        .build();
    let read_put = |id: &str| Mutation::new("slow_put", json!({ "id": id }));
    let batch = vec![
        read_put("1").with_client("c", 1),
        read_put("2").with_client("c", 2),
        read_put("3").with_client("c", 3),
    ];
    let error = engine.push(batch.clone()).await.unwrap_err();
    assert_eq!(error.code(), "unavailable");
    assert_eq!(
        engine.head().await.unwrap(),
        1,
        "the first mutation stays applied"
    );
    assert_eq!(
        pokes.take(),
        [Poke {
            scope: "_default".into(),
            cursor: 1
        }],
        "and is announced"
    );

    backend.allow(10);
    let retry = engine.push(batch).await.unwrap();
    assert!(retry.results[0].duplicate);
    assert!(retry.results[1..].iter().all(|r| r.ok && !r.duplicate));
    assert_eq!(engine.head().await.unwrap(), 3);
}

async fn a_push_is_validated_whole_before_it_runs(b: TestBackend) {
    let engine = b.todo_engine();
    let long_scope = "s".repeat(257);
    for bad in [
        vec![create("ok"), create("bad").with_scope(long_scope.as_str())],
        vec![create("ok"), Mutation::new("", json!({}))],
    ] {
        assert!(engine.push(bad).await.is_err());
    }
    assert!(matches!(
        engine.push(vec![]).await,
        Err(SyncError::NoMutations)
    ));
    let too_many = (0..1001).map(|i| create(&i.to_string())).collect();
    assert!(matches!(
        engine.push(too_many).await,
        Err(SyncError::TooManyMutations {
            count: 1001,
            max: 1000
        })
    ));
    assert_eq!(
        engine.head().await.unwrap(),
        0,
        "nothing of a refused push was applied"
    );
}

/// A client that hangs up while its push commits (hyper then drops the handler) must not stop the
/// commit, nor its pokes: the push goes on without it.
async fn a_push_cancelled_while_it_commits_still_commits_and_pokes(b: TestBackend) {
    let backend = FailingBackend::holding_commits(b.backend());
    let pokes = PokeLog::default();
    let engine = Engine::builder(RulesMutator)
        .backend(backend.clone())
        .broker(pokes.broker())
        .build();
    let push = engine.push(vec![put("kept").with_client("c", 1)]);
    let cancelled = tokio::time::timeout(Duration::from_millis(200), push).await;
    assert!(
        cancelled.is_err(),
        "the push was waiting for its commit when dropped"
    );
    backend.let_commit(1);
    // The commit and the poke complete on their own; wait for them by behaviour, not by time.
    for _ in 0..500 {
        if !pokes.snapshot().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        pokes.take(),
        [Poke {
            scope: "_default".into(),
            cursor: 1
        }]
    );
    assert_eq!(engine.head().await.unwrap(), 1);
    backend.let_commit(1);
    let retry = engine
        .push(vec![put("kept").with_client("c", 1)])
        .await
        .unwrap();
    assert!(
        retry.results[0].duplicate,
        "committed: its retry is a duplicate"
    );
}

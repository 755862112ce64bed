//! What version 1.1 of the protocol adds, on every backend: bounds on what can be stored, the
//! log's identity, remembered failures, and the client's processed sequence number in pulls and
//! snapshots.

use serde_json::json;
use sync_runtime::{Mutation, PullRequest, SyncError};
use sync_tests::*;

sync_tests::on_every_backend!(
    #[tokio::test]
    what_no_backend_can_store_is_refused_alike,
    a_client_seq_beyond_2_63_is_refused_with_the_push,
    every_answer_names_the_log_and_another_log_is_410,
    a_durable_log_keeps_its_identity,
    a_retried_failure_is_answered_as_it_failed_until_trimmed,
    pulls_and_snapshots_tell_a_client_its_processed_seq,
    snapshots_come_in_pages_that_add_up_to_the_whole,
);

/// Ids and entity types some backend cannot hold (PostgreSQL's btree rows, its text) fail their
/// mutation for good with `invalid_args` on every backend, and the push goes on.
async fn what_no_backend_can_store_is_refused_alike(b: TestBackend) {
    let engine = b.rules_engine();
    let put_as = |entity: &str, id: &str| Mutation::new("put", json!({"entity": entity, "id": id}));
    let long_id = "i".repeat(1025);
    let longest_id = "i".repeat(1024);
    let long_entity = "e".repeat(257);
    let longest_entity = "e".repeat(256);
    let pushed = engine
        .push(vec![
            put_as("item", &long_id).with_client("c", 1),
            put_as("item", &longest_id).with_client("c", 2),
            put_as(&long_entity, "x").with_client("c", 3),
            put_as(&longest_entity, "x").with_client("c", 4),
            put_as("item", "").with_client("c", 5),
            put_as("", "x").with_client("c", 6),
            put_as("item", "after").with_client("c", 7),
        ])
        .await
        .unwrap();
    let codes: Vec<Option<&str>> = pushed.results.iter().map(|r| r.code.as_deref()).collect();
    let bad = Some("invalid_args");
    assert_eq!(codes, [bad, None, bad, None, bad, bad, None], "{pushed:?}");
    let retried = engine
        .push(vec![put_as("item", &long_id).with_client("c", 1)])
        .await
        .unwrap();
    assert!(
        retried.results[0].duplicate,
        "recorded: a retry is a duplicate"
    );
}

/// A `client_seq` no backend can store refuses the whole push with 400, before anything of it
/// runs (it used to answer 503 at the commit, taking the valid mutations before it down too).
async fn a_client_seq_beyond_2_63_is_refused_with_the_push(b: TestBackend) {
    let engine = b.rules_engine();
    let refused = engine
        .push(vec![
            put("fine").with_client("c", 1),
            put("huge").with_client("c", 1 << 63),
        ])
        .await;
    assert!(
        matches!(refused, Err(SyncError::InvalidRequest(_))),
        "{refused:?}"
    );
    let highest = engine
        .push(vec![put("top").with_client("c", (1 << 63) - 1)])
        .await
        .unwrap();
    assert!(
        highest.results[0].ok,
        "2^63-1 is the highest a client may use"
    );
    assert_eq!(
        engine.head().await.unwrap(),
        1,
        "nothing of the refused push"
    );
    let http = Http::new(&engine);
    let body = json!({"mutations": [{"name": "put", "client_id": "c", "client_seq": 1u64 << 63}]});
    http.post("/_sync/push", body)
        .await
        .assert_error(400, "invalid_request");
    for client_id in [String::new(), "c".repeat(257), "bad\ncontrol".to_owned()] {
        let body = json!({"mutations": [{"name": "put", "client_id": client_id, "client_seq": 1}]});
        http.post("/_sync/push", body)
            .await
            .assert_error(400, "invalid_request");
    }
}

async fn every_answer_names_the_log_and_another_log_is_410(b: TestBackend) {
    let engine = b.rules_engine();
    let http = Http::new(&engine);
    let pushed = http
        .post(
            "/_sync/push",
            json!({"mutations": [{"name": "put", "args": {"id": "1"}}]}),
        )
        .await;
    let log_id = pushed.body["log_id"].as_str().unwrap().to_owned();
    assert!(
        (8..=64).contains(&log_id.len())
            && log_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{log_id}"
    );
    let pulled = http.post("/_sync/pull", json!({"log_id": log_id})).await;
    assert_eq!(pulled.body["log_id"], log_id.as_str());
    assert_eq!(pulled.body["changes"].as_array().map(Vec::len), Some(1));
    let snapshot = http.post("/_sync/snapshot", json!({})).await;
    assert_eq!(snapshot.body["log_id"], log_id.as_str());
    // Whatever the cursor: cursors of another log mean nothing here.
    for cursor in [0, 1] {
        http.post(
            "/_sync/pull",
            json!({"log_id": "another-log", "cursor": cursor}),
        )
        .await
        .assert_error(410, "log_replaced");
    }
    // A version-1 client names no log and is served as before.
    assert_eq!(
        http.post("/_sync/pull", json!({})).await.status.as_u16(),
        200
    );
}

async fn a_durable_log_keeps_its_identity(b: TestBackend) {
    let engine = b.rules_engine();
    let log_id = engine.push(vec![put("1")]).await.unwrap().log_id;
    match b.open().await {
        Some(reopened) => {
            let again = sync_runtime::Engine::builder(RulesMutator)
                .backend(reopened)
                .build();
            let pulled = again.pull(PullRequest::default()).await.unwrap();
            assert_eq!(
                pulled.log_id, log_id,
                "the same log after a restart or on another node"
            );
        }
        None => {
            let other = sync_tests::todo_engine();
            let pulled = other.pull(PullRequest::default()).await.unwrap();
            assert_ne!(pulled.log_id, log_id, "a new memory log is another log");
        }
    }
}

async fn a_retried_failure_is_answered_as_it_failed_until_trimmed(b: TestBackend) {
    let engine = b.rules_engine();
    let fail = || Mutation::new("put_then_fail", json!({"id": "x"})).with_client("c", 1);
    let first = engine
        .push(vec![fail(), put("a").with_client("c", 2)])
        .await
        .unwrap();
    assert_eq!(first.results[0].code.as_deref(), Some("rejected"));
    // Its answer was lost: the retry says how it failed, not that it succeeded.
    let retried = engine
        .push(vec![fail(), put("a").with_client("c", 2)])
        .await
        .unwrap();
    let answer = &retried.results[0];
    assert!(!answer.ok && answer.duplicate, "{answer:?}");
    assert_eq!(answer.code.as_deref(), Some("rejected"));
    assert_eq!(answer.error, first.results[0].error);
    assert!(retried.results[1].ok && retried.results[1].duplicate);
    // Within one push too: the failure is staged with the push.
    let within = engine
        .push(vec![
            Mutation::new("put_then_fail", json!({"id": "y"})).with_client("d", 1),
            Mutation::new("put_then_fail", json!({"id": "y"})).with_client("d", 1),
        ])
        .await
        .unwrap();
    assert!(
        !within.results[1].ok && within.results[1].duplicate,
        "{within:?}"
    );
    // A trim past the cursor it was processed at forgets it.
    engine.push(vec![put("b")]).await.unwrap();
    let head = engine.head().await.unwrap();
    engine.trim(head + 1).await.unwrap();
    let forgotten = engine.push(vec![fail()]).await.unwrap();
    assert!(
        forgotten.results[0].ok && forgotten.results[0].duplicate,
        "{forgotten:?}"
    );
}

async fn pulls_and_snapshots_tell_a_client_its_processed_seq(b: TestBackend) {
    let engine = b.rules_engine();
    engine
        .push(vec![
            put("1").with_client("c", 3),
            Mutation::new("put_then_fail", json!({"id": "2"})).with_client("c", 5),
        ])
        .await
        .unwrap();
    let pulled = engine
        .pull(PullRequest::default().with_client("c"))
        .await
        .unwrap();
    assert_eq!(
        pulled.client_seq,
        Some(5),
        "failed for good counts as processed"
    );
    let stranger = engine
        .pull(PullRequest::default().with_client("other"))
        .await
        .unwrap();
    assert_eq!(stranger.client_seq, Some(0));
    let anonymous = engine.pull(PullRequest::default()).await.unwrap();
    assert_eq!(anonymous.client_seq, None);
    let http = Http::new(&engine);
    let snapshot = http
        .post("/_sync/snapshot", json!({"client_id": "c"}))
        .await;
    assert_eq!(snapshot.body["client_seq"], 5);
    let pulled = http.post("/_sync/pull", json!({"client_id": "c"})).await;
    assert_eq!(pulled.body["client_seq"], 5);
    assert!(
        http.post("/_sync/pull", json!({}))
            .await
            .body
            .get("client_seq")
            .is_none()
    );
    http.post("/_sync/pull", json!({"client_id": ""}))
        .await
        .assert_error(400, "invalid_request");
}

/// Pages by `limit` and by the byte budget, in `(entity, id)` order: together exactly the whole
/// snapshot, each answer saying whether more remain and where they start.
async fn snapshots_come_in_pages_that_add_up_to_the_whole(b: TestBackend) {
    let engine = b.rules_engine();
    let mutations = ["b", "a", "c"]
        .iter()
        .map(|id| Mutation::new("put", json!({"id": id, "data": {"text": "x".repeat(300)}})))
        .chain(["2", "1"].iter().map(|id| {
            Mutation::new(
                "put",
                json!({"id": id, "entity": "note", "data": {"n": id}}),
            )
        }))
        .collect();
    engine.push(mutations).await.unwrap();
    let whole = engine.snapshot(None).await.unwrap();
    assert!(!whole.has_more && whole.next.is_none());
    for (options, request) in [
        (sync_runtime::HttpOptions::default(), json!({"limit": 2})),
        (
            {
                let mut tiny = sync_runtime::HttpOptions::default();
                tiny.page_budget_bytes = 400;
                tiny
            },
            json!({}),
        ),
    ] {
        let http = Http::of(engine.router_with(options));
        let mut request = request;
        let mut seen = serde_json::Map::new();
        let mut order = Vec::new();
        loop {
            let page = http.post("/_sync/snapshot", request.clone()).await;
            assert_eq!(page.status.as_u16(), 200, "{}", page.body);
            assert_eq!(page.body["cursor"], whole.cursor);
            for (entity, ids) in page.body["data"].as_object().unwrap() {
                let into = seen
                    .entry(entity.clone())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                for (id, data) in ids.as_object().unwrap() {
                    order.push((entity.clone(), id.clone()));
                    assert!(
                        into.insert(id.clone(), data.clone()).is_none(),
                        "{entity} {id} twice"
                    );
                }
            }
            if page.body["has_more"] != json!(true) {
                assert!(page.body.get("next").is_none());
                break;
            }
            request["after"] = page.body["next"].clone();
        }
        assert_eq!(
            serde_json::Value::Object(seen),
            serde_json::to_value(&whole.data).unwrap()
        );
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "pages in (entity, id) order");
    }
}

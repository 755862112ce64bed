//! Trimming and retention: history that is gone is signalled with 410, never silently missing.

use serde_json::json;
use sync_runtime::{PullRequest, SyncError};
use sync_tests::*;

sync_tests::on_every_backend!(
    #[tokio::test]
    trim_answers_cursor_too_old_only_where_a_needed_change_is_gone,
    a_cursor_beyond_the_head_is_ahead,
    retention_keeps_about_the_most_recent_changes,
);

fn from(scope: &str, cursor: u64) -> PullRequest {
    PullRequest::new(scope, cursor).with_limit(100)
}

async fn trim_answers_cursor_too_old_only_where_a_needed_change_is_gone(b: TestBackend) {
    let engine = b.rules_engine();
    // Cursors: a=1, b=2, a=3, b=4, c=5.
    for scope in ["a", "b", "a", "b", "c"] {
        engine
            .push(vec![put(scope).with_scope(scope)])
            .await
            .unwrap();
    }
    engine.trim(4).await.unwrap(); // removes cursors 1, 2, 3
    for (scope, cursor) in [("a", 0), ("a", 2), ("b", 0), ("b", 1)] {
        let error = engine.pull(from(scope, cursor)).await.unwrap_err();
        assert!(
            matches!(error, SyncError::CursorTooOld { .. }),
            "{scope}@{cursor}: {error}"
        );
    }
    assert!(engine.pull(from("a", 3)).await.unwrap().changes.is_empty());
    assert_eq!(engine.pull(from("b", 2)).await.unwrap().changes.len(), 1);
    // Scope c lost nothing: a new client still gets its whole history from 0.
    assert_eq!(engine.pull(from("c", 0)).await.unwrap().changes.len(), 1);
    // A snapshot and a pull from its cursor always work.
    let snapshot = engine.snapshot(Some("a")).await.unwrap();
    assert_eq!(
        serde_json::to_value(&snapshot.data).unwrap(),
        json!({"item": {"a": {"id": "a"}}})
    );
    assert!(engine.pull(from("a", snapshot.cursor)).await.is_ok());
}

async fn a_cursor_beyond_the_head_is_ahead(b: TestBackend) {
    let engine = b.todo_engine();
    engine.push(vec![create("x")]).await.unwrap();
    let error = engine.pull(from("_default", 2)).await.unwrap_err();
    assert!(
        matches!(error, SyncError::CursorAhead { cursor: 2, head: 1 }),
        "{error}"
    );
    let http = Http::new(&engine);
    http.post("/_sync/pull", json!({"cursor": u64::MAX}))
        .await
        .assert_error(410, "cursor_ahead");
}

async fn retention_keeps_about_the_most_recent_changes(b: TestBackend) {
    let engine = b.builder(RulesMutator).retain(10).build();
    for i in 0..50 {
        engine.push(vec![put(&i.to_string())]).await.unwrap();
    }
    let http = Http::new(&engine);
    http.post("/_sync/pull", json!({"cursor": 0}))
        .await
        .assert_error(410, "cursor_too_old");
    http.post("/_sync/pull", json!({"cursor": 39}))
        .await
        .assert_error(410, "cursor_too_old");
    let recent = engine.pull(from("_default", 40)).await.unwrap();
    assert_eq!(recent.changes.len(), 10);
    // A client that fell behind recovers with a snapshot, then pulls from its cursor.
    let snapshot = engine.snapshot(None).await.unwrap();
    assert_eq!(
        snapshot.data["item"].len(),
        50,
        "trimming the log keeps the data"
    );
    assert_eq!(snapshot.cursor, 50);
    engine.push(vec![put("new")]).await.unwrap();
    let next = engine
        .pull(from("_default", snapshot.cursor))
        .await
        .unwrap();
    assert_eq!(next.changes.len(), 1);
}

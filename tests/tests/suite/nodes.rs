//! Several engine nodes on one PostgreSQL database: separate pools in this process, and
//! separate processes. Pushes go to every node while pullers on each see every change exactly
//! once, in order; duplicates that arrive on two nodes at once apply once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use sync_runtime::{Engine, Mutation, PullRequest};
use sync_tests::backends::run;
use sync_tests::*;

/// Mutations each child process pushes (two per push, three changes each).
const CHILD_PUSHES: usize = 60;
/// Pushes each in-process node makes.
const NODE_PUSHES: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pullers_on_every_node_see_every_change_once_in_order() {
    run(Kind::Postgres, |b| async move {
        let store = b.store_arg().unwrap();
        let node = |backend| Engine::builder(RulesMutator).backend(backend).build();
        // Two nodes in this process, each with a pool of its own...
        let a = node(b.backend());
        let c = node(b.open().await.unwrap());
        // ...and two in processes of their own.
        let children: Vec<_> = ["procA", "procB"]
            .iter()
            .map(|client| {
                Command::new(env!("CARGO_BIN_EXE_sync-test-pusher"))
                    .args([store.as_str(), client, &CHILD_PUSHES.to_string(), "2"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("the pusher starts")
            })
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let expected = (CHILD_PUSHES * 2 * 2 + NODE_PUSHES * 2) * 3;
        let pullers: Vec<_> = [&a, &c, &a, &c]
            .into_iter()
            .map(|engine| tokio::spawn(pull_until(engine.clone(), expected, Arc::clone(&done))))
            .collect();
        let pushers: Vec<_> = [("nodeA", &a), ("nodeC", &c)]
            .into_iter()
            .map(|(client, engine)| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for i in 0..NODE_PUSHES {
                        let group = format!("{client}-{i}");
                        engine
                            .push(vec![
                                Mutation::new("put_group", json!({"group": group, "n": 3}))
                                    .with_scope("shared")
                                    .with_client(client, i as u64 + 1),
                            ])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for pusher in pushers {
            pusher.await.unwrap();
        }
        for mut child in children {
            let stdout = child.stdout.take().unwrap();
            let last = BufReader::new(stdout).lines().map_while(Result::ok).last();
            assert_eq!(last.as_deref(), Some("done"));
            assert!(child.wait().unwrap().success());
        }
        done.store(true, Ordering::SeqCst);
        let all: Vec<u64> = pull_all(&a, "shared", 0)
            .await
            .iter()
            .map(|change| change.cursor)
            .collect();
        assert_eq!(all.len(), expected);
        for puller in pullers {
            let seen = tokio::time::timeout(Duration::from_secs(120), puller)
                .await
                .expect("a puller never saw every change: one was skipped")
                .unwrap();
            assert_eq!(seen, all, "every change once, in order");
        }
    })
    .await;
}

/// Pulls scope `shared` until `expected` changes were seen, or until every push is done and
/// nothing more comes, checking that cursors only ascend.
async fn pull_until(engine: Engine, expected: usize, done: Arc<AtomicBool>) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut cursor = 0;
    while seen.len() < expected {
        let finished = done.load(Ordering::SeqCst);
        let page = engine
            .pull(PullRequest::new("shared", cursor).with_limit(50))
            .await
            .unwrap();
        for change in &page.changes {
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
            if finished {
                break; // every push was done before this page: a skipped change never comes
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_on_two_nodes_at_once_apply_once() {
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
        for round in 0..5u64 {
            let mutation = Mutation::new("slow_put", json!({"id": format!("r{round}")}))
                .with_client("dup", round + 1);
            let tasks: Vec<_> = (0..9)
                .map(|i| {
                    let engine = engines[i % engines.len()].clone();
                    let mutation = mutation.clone();
                    tokio::spawn(async move { engine.push(vec![mutation]).await.unwrap() })
                })
                .collect();
            let mut applied = 0;
            for task in tasks {
                let result = &task.await.unwrap().results[0];
                assert!(result.ok, "{result:?}");
                applied += usize::from(!result.duplicate);
            }
            assert_eq!(applied, 1, "round {round}: exactly one node applied it");
            let state = engines[0].snapshot(None).await.unwrap();
            assert_eq!(state.data["item"][&format!("r{round}")]["count"], 1);
        }
        // Concurrent read-modify-write on three nodes loses no update.
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let engine = engines[i % engines.len()].clone();
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
        let state = engines[1].snapshot(None).await.unwrap();
        assert_eq!(state.data["item"]["counter"]["count"], 12);
    })
    .await;
}

/// CI must run the PostgreSQL tests, not skip them.
#[test]
fn postgres_tests_run_in_ci() {
    if std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1") {
        assert!(
            backends::postgres_url().is_some(),
            "CI is set but {} is not: the PostgreSQL tests would be skipped",
            backends::POSTGRES_URL_VAR
        );
    }
}

/// A node that stalls mid-push while it holds its scope's lock (as one that died would, until the
/// kernel notices) holds up the other nodes only until the server ends its idle transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_holding_the_lock_does_not_block_the_others() {
    run(Kind::Postgres, |b| async move {
        let app = format!("stalled-node-{}", std::process::id());
        let url = format!("{}&application_name={app}", b.store_arg().unwrap());
        let mut options = sync_runtime::PostgresOptions::default();
        options.idle_in_transaction_timeout = Duration::from_millis(300);
        let stalling = sync_runtime::PostgresBackend::connect_with(&url, options)
            .await
            .unwrap();
        let a = Engine::builder(RulesMutator).backend(stalling).build();
        let other = Engine::builder(RulesMutator)
            .backend(b.open().await.unwrap())
            .build();
        let stalled = tokio::spawn(async move {
            let stall = Mutation::new("put_then_stall", json!({"id": "stalled"}));
            a.push(vec![stall]).await
        });
        // Until node A sits in its transaction, holding the lock.
        let (watcher, connection) =
            tokio_postgres::connect(&b.store_arg().unwrap(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let idle = "SELECT count(*) FROM pg_stat_activity \
                    WHERE application_name = $1 AND state = 'idle in transaction'";
        let mut waited = 0;
        while watcher
            .query_one(idle, &[&app])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            waited += 1;
            assert!(waited < 1000, "node A never started its push");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Far less than A's one-minute stall: B's push gets through once the server ends A's.
        let pushed = tokio::time::timeout(Duration::from_secs(20), other.push(vec![put("b")]))
            .await
            .expect("another node's push is not held up by a stalled one")
            .unwrap();
        assert!(pushed.results[0].ok);
        stalled.abort();
    })
    .await;
}

//! The PostgreSQL backend's pool under a hot scope: pushes queued behind one scope's lock wait
//! in memory, not on pooled connections, so that pulls and pushes elsewhere are still served.
//! Real connections, real threads; nothing is timed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sync_runtime::{Engine, Mutation, MutatorFunc, PostgresBackend, PostgresOptions, PullRequest};
use sync_tests::backends::run;
use sync_tests::*;
use tokio::sync::{Notify, Semaphore};

/// A push into scope `hot` stalls in its mutator, holding the scope's lock, while 16 more
/// pushes into `hot` (each a client of its own) queue behind it on a node whose pool has 4
/// connections. A pull and a push in scope `cold` on that node must still get a connection:
/// the queued pushes wait in memory for their turn in the hot scope's lane (once, each held a
/// connection while PostgreSQL made it wait, and the others failed after the pool's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_queued_behind_a_hot_scope_leave_the_pool_to_the_others() {
    run(Kind::Postgres, |b| async move {
        let app = format!("hot-scope-{}", std::process::id());
        let url = format!("{}&application_name={app}", b.store_arg().unwrap());
        let reached = Arc::new(Notify::new());
        let release = Arc::new(Semaphore::new(0));
        // `hold` reads its scope (taking its lock) and waits, with no transaction id yet: the
        // horizon stays free for the pushes elsewhere.
        let mutator = MutatorFunc::new({
            let (reached, release) = (Arc::clone(&reached), Arc::clone(&release));
            move |tx, m| {
                let (reached, release) = (Arc::clone(&reached), Arc::clone(&release));
                Box::pin(async move {
                    let id = m.args["id"].as_str().unwrap_or_default().to_owned();
                    tx.get_value("item", &id).await?;
                    if m.name == "hold" {
                        reached.notify_one();
                        release.acquire().await.unwrap().forget();
                    }
                    tx.put_value("item", &id, json!({ "id": id })).await?;
                    Ok(None)
                })
            }
        });
        let mut options = PostgresOptions::default();
        options.pool_size = 4;
        options.timeout = Duration::from_secs(2);
        let backend = PostgresBackend::connect_with(&url, options).await.unwrap();
        let engine = Engine::builder(mutator).backend(backend.clone()).build();

        let push = |n: usize| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let id = format!("t{n}");
                let name = if n == 0 { "hold" } else { "put" };
                let mutation = Mutation::new(name, json!({ "id": id }));
                engine
                    .push(vec![mutation.with_scope("hot").with_client(id.clone(), 1)])
                    .await
            })
        };
        let first = push(0);
        reached.notified().await; // it holds scope `hot`
        let queued: Vec<_> = (1..=16).map(push).collect();

        // Until all 16 wait: in memory, for the pool, or in PostgreSQL for the advisory lock.
        let (watcher, connection) =
            tokio_postgres::connect(&b.store_arg().unwrap(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let locked = "SELECT count(*) FROM pg_stat_activity \
                      WHERE application_name = $1 AND wait_event = 'advisory'";
        let mut looks = 0;
        loop {
            let in_server: i64 = watcher.query_one(locked, &[&app]).await.unwrap().get(0);
            let waiting = backend.waiting();
            let all =
                waiting.for_turn + waiting.for_connection + usize::try_from(in_server).unwrap();
            if all >= 16 {
                break;
            }
            looks += 1;
            assert!(
                looks < 4000,
                "the pushes never queued: {waiting:?}, {in_server}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Served, not failed after the pool's timeout.
        let page = engine.pull(PullRequest::new("cold", 0)).await.unwrap();
        assert!(page.changes.is_empty());
        let cold = Mutation::new("put", json!({ "id": "c" }));
        let cold = engine
            .push(vec![cold.with_scope("cold").with_client("cold", 1)])
            .await
            .unwrap();
        assert!(cold.results[0].ok, "{cold:?}");
        let waiting = backend.waiting();
        assert_eq!(
            (waiting.for_connection, waiting.for_turn),
            (0, 16),
            "{waiting:?}"
        );

        release.add_permits(1);
        for task in std::iter::once(first).chain(queued) {
            let pushed = task.await.unwrap().unwrap();
            assert!(pushed.results[0].ok, "{pushed:?}");
        }
        let snapshot = engine.snapshot(Some("hot")).await.unwrap();
        assert_eq!(snapshot.data["item"].len(), 17);
    })
    .await;
}

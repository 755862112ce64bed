//! The PostgreSQL backend's group commit: pushes queued in a lane run one after another in its
//! transaction, each reading the earlier ones' writes, and commit together; a failure fails the
//! whole group and commits none of it; a push dropped or stalled in its lane holds up no other.
//! Real connections, real threads; nothing is timed (the timeouts only catch a hang).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sync_runtime::{
    ChangeOp, Engine, MutationError, MutatorFunc, PostgresBackend, PostgresOptions, PullRequest,
    PushResponse, SyncError,
};
use sync_tests::backends::run;
use sync_tests::*;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// Where a `hold` mutation tells that it runs, and what lets it go on.
#[derive(Clone)]
struct Held {
    reached: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            reached: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

/// `hold` and `bump` add one to the counter `n` of their scope (`hold` waits for a permit in
/// between, holding its push's lane); `put` and `delete` write item `id` without reading it;
/// `fail` fails for good.
fn mutator(held: Held) -> impl sync_runtime::Mutator {
    MutatorFunc::new(move |tx, m| {
        let held = held.clone();
        Box::pin(async move {
            match m.name.as_str() {
                "hold" | "bump" => {
                    let n = tx.get_value("counter", "n").await?;
                    if m.name == "hold" {
                        held.reached.notify_one();
                        held.release.acquire().await.unwrap().forget();
                    }
                    let next = n.and_then(|n| n["n"].as_u64()).unwrap_or(0) + 1;
                    tx.put_value("counter", "n", json!({ "n": next })).await?;
                    Ok(Some(json!(next).into()))
                }
                "put" => {
                    let id = m.args["id"].as_str().unwrap_or_default();
                    tx.put_value("item", id, json!({ "id": id })).await?;
                    Ok(None)
                }
                "delete" => {
                    let id = m.args["id"].as_str().unwrap_or_default();
                    tx.delete_value("item", id).await?;
                    Ok(None)
                }
                "fail" => Err(MutationError::rejected("fails for good")),
                other => Err(MutationError::rejected(format!("no mutation {other}"))),
            }
        })
    })
}

async fn node(url: &str, options: PostgresOptions, held: &Held) -> (Engine, PostgresBackend) {
    let backend = PostgresBackend::connect_with(url, options).await.unwrap();
    let engine = Engine::builder(mutator(held.clone()))
        .backend(backend.clone())
        .build();
    (engine, backend)
}

/// Pushes `mutations` (name, scope, client, seq, id) in a task of its own.
fn push(
    engine: &Engine,
    mutations: &[(&str, &str, &str, u64, &str)],
) -> JoinHandle<Result<PushResponse, SyncError>> {
    let engine = engine.clone();
    let mutations = mutations
        .iter()
        .map(|(name, scope, client, seq, id)| {
            sync_runtime::Mutation::new(*name, json!({ "id": id }))
                .with_scope(*scope)
                .with_client(*client, *seq)
        })
        .collect();
    tokio::spawn(async move { engine.push(mutations).await })
}

/// Waits until `n` pushes wait for their turn in a lane of `backend`.
async fn until_queued(backend: &PostgresBackend, n: usize) {
    for _ in 0..4000 {
        if backend.waiting().for_turn >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the pushes never queued: {:?}", backend.waiting());
}

/// A task's answer, within a minute: a hang fails the test instead of stalling it.
async fn answer(
    task: JoinHandle<Result<PushResponse, SyncError>>,
) -> Result<PushResponse, SyncError> {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("a push never answered: a lane is wedged")
        .unwrap()
}

/// The counter's values in the order the log holds them.
async fn logged_counts(engine: &Engine, scope: &str) -> Vec<u64> {
    let page = engine.pull(PullRequest::new(scope, 0)).await.unwrap();
    page.changes
        .iter()
        .filter(|change| change.entity == "counter")
        .map(|change| {
            let data: Value = change.data.as_ref().unwrap().decode().unwrap();
            data["n"].as_u64().unwrap()
        })
        .collect()
}

/// Six pushes queue behind one that holds scope `hot`'s lane. Released, all seven run in one
/// transaction, each reading the counter the one before it wrote: the counter ends at 7, the log
/// holds 1 to 7 in order, and the node committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_queued_behind_one_commit_with_it_each_reading_the_last_ones_writes() {
    run(Kind::Postgres, |b| async move {
        let held = Held::default();
        let (engine, backend) =
            node(&b.store_arg().unwrap(), PostgresOptions::default(), &held).await;
        let first = push(&engine, &[("hold", "hot", "h", 1, "")]);
        held.reached.notified().await;
        let clients: Vec<String> = (1..=6).map(|n| format!("b{n}")).collect();
        let queued: Vec<_> = clients
            .iter()
            .map(|client| push(&engine, &[("bump", "hot", client, 1, "")]))
            .collect();
        until_queued(&backend, 6).await;
        let commits = backend.commits();

        held.release.add_permits(1);
        let mut counts = Vec::new();
        for task in std::iter::once(first).chain(queued) {
            let pushed = answer(task).await.unwrap();
            let result = &pushed.results[0];
            assert!(result.ok, "{pushed:?}");
            counts.push(result.value.as_ref().unwrap().decode::<u64>().unwrap());
        }
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=7).collect::<Vec<_>>(),
            "each read the last one's write"
        );
        assert_eq!(
            backend.commits() - commits,
            1,
            "one transaction for all seven"
        );
        assert_eq!(
            logged_counts(&engine, "hot").await,
            (1..=7).collect::<Vec<_>>()
        );
    })
    .await;
}

/// In one group: a retry of the holding push's mutation is a duplicate, the retry of a mutation
/// that failed for good is answered with its failure, and the ops of blind puts and a delete of
/// one key follow the earlier pushes' writes: create, update, delete, create.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_answers_from_its_earlier_pushes_dedupe_failures_and_ops() {
    run(Kind::Postgres, |b| async move {
        let held = Held::default();
        let (engine, backend) =
            node(&b.store_arg().unwrap(), PostgresOptions::default(), &held).await;
        let first = push(&engine, &[("hold", "hot", "h", 1, "")]);
        held.reached.notified().await;
        let mut queued = Vec::new();
        for mutation in [
            ("bump", "hot", "h", 1, ""), // the holding push's retry
            ("fail", "hot", "f", 1, ""),
            ("fail", "hot", "f", 1, ""), // its retry
            ("put", "hot", "p1", 1, "k"),
            ("put", "hot", "p2", 1, "k"),
            ("delete", "hot", "p3", 1, "k"),
            ("put", "hot", "p4", 1, "k"),
        ] {
            queued.push(push(&engine, &[mutation]));
            // One at a time: the lane serves them in the order they queued.
            until_queued(&backend, queued.len()).await;
        }
        let commits = backend.commits();

        held.release.add_permits(1);
        assert!(answer(first).await.unwrap().results[0].ok);
        let mut results = Vec::new();
        for task in queued {
            results.push(answer(task).await.unwrap().results.remove(0));
        }
        assert_eq!(
            backend.commits() - commits,
            1,
            "one transaction for all eight"
        );
        assert!(results[0].duplicate, "{:?}", results[0]);
        assert!(!results[1].ok && !results[1].duplicate, "{:?}", results[1]);
        assert!(results[2].duplicate, "{:?}", results[2]);
        assert_eq!(results[2].code, results[1].code, "answered as it failed");
        assert!(results[3..].iter().all(|result| result.ok), "{results:?}");

        let page = engine.pull(PullRequest::new("hot", 0)).await.unwrap();
        let ops: Vec<ChangeOp> = page
            .changes
            .iter()
            .filter(|change| change.entity == "item")
            .map(|change| change.op)
            .collect();
        use ChangeOp::{Create, Delete, Update};
        assert_eq!(ops, [Create, Update, Delete, Create]);
        assert_eq!(
            logged_counts(&engine, "hot").await,
            [1],
            "the retry applied nothing"
        );
        let snapshot = engine.snapshot(Some("hot")).await.unwrap();
        assert_eq!(snapshot.data["item"].len(), 1);
    })
    .await;
}

/// A push in a group waits, in its second mutation, for scope `x`, which another node holds,
/// until its lock times out: that aborts the group's transaction. Both pushes of the group fail
/// (503), neither is committed nor recorded, and the first one's retry applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_that_fails_in_a_group_fails_every_push_in_it_and_commits_none() {
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let (held_a, held_b) = (Held::default(), Held::default());
        let mut options = PostgresOptions::default();
        options.lock_timeout = Duration::from_millis(300);
        let (a, backend_a) = node(&url, options, &held_a).await;
        let (other, _) = node(&url, PostgresOptions::default(), &held_b).await;
        let holding_x = push(&other, &[("hold", "x", "o", 1, "")]);
        held_b.reached.notified().await;

        let first = push(&a, &[("hold", "hot", "a1", 1, "")]);
        held_a.reached.notified().await;
        let second = push(
            &a,
            &[("bump", "hot", "a2", 1, ""), ("bump", "x", "a2", 2, "")],
        );
        until_queued(&backend_a, 1).await;
        held_a.release.add_permits(1);
        for task in [first, second] {
            let failed = answer(task).await;
            assert!(
                matches!(failed, Err(SyncError::Unavailable(_))),
                "{failed:?}"
            );
        }
        assert_eq!(
            logged_counts(&a, "hot").await,
            Vec::<u64>::new(),
            "nothing committed"
        );

        held_b.release.add_permits(1);
        assert!(answer(holding_x).await.unwrap().results[0].ok);
        let retried = answer(push(&a, &[("bump", "hot", "a1", 1, "")]))
            .await
            .unwrap();
        let result = &retried.results[0];
        assert!(result.ok && !result.duplicate, "not recorded: {result:?}");
        assert_eq!(logged_counts(&a, "hot").await, [1]);
    })
    .await;
}

/// A push dropped while it holds its lane, and one dropped while queued, hold up no other: the
/// pushes queued behind them commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_dropped_in_its_lane_holds_up_no_other() {
    run(Kind::Postgres, |b| async move {
        let held = Held::default();
        let (engine, backend) =
            node(&b.store_arg().unwrap(), PostgresOptions::default(), &held).await;
        let dropped = push(&engine, &[("hold", "hot", "h1", 1, "")]);
        held.reached.notified().await;
        let behind = push(&engine, &[("bump", "hot", "c1", 1, "")]);
        until_queued(&backend, 1).await;
        dropped.abort();
        assert!(answer(behind).await.unwrap().results[0].ok);

        let holding = push(&engine, &[("hold", "hot", "h2", 1, "")]);
        held.reached.notified().await;
        let dropped_queued = push(&engine, &[("bump", "hot", "c2", 1, "")]);
        until_queued(&backend, 1).await;
        let last = push(&engine, &[("bump", "hot", "c3", 1, "")]);
        until_queued(&backend, 2).await;
        dropped_queued.abort();
        held.release.add_permits(1);
        assert!(answer(holding).await.unwrap().results[0].ok);
        assert!(answer(last).await.unwrap().results[0].ok);
        assert_eq!(logged_counts(&engine, "hot").await, [1, 2, 3]);
    })
    .await;
}

/// A push that stalls in its mutation longer than a transaction may stay idle fails its group,
/// and the lane goes on: the push queued behind it commits; the stalled one, released, fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_idle_past_the_timeout_fails_its_group_and_frees_the_lane() {
    run(Kind::Postgres, |b| async move {
        let held = Held::default();
        let mut options = PostgresOptions::default();
        options.idle_in_transaction_timeout = Duration::from_millis(500);
        let (engine, backend) = node(&b.store_arg().unwrap(), options, &held).await;
        let stalled = push(&engine, &[("hold", "hot", "h", 1, "")]);
        held.reached.notified().await;
        let behind = push(&engine, &[("bump", "hot", "c", 1, "")]);
        until_queued(&backend, 1).await;
        let pushed = answer(behind).await.unwrap();
        assert!(pushed.results[0].ok, "{pushed:?}");
        assert_eq!(logged_counts(&engine, "hot").await, [1]);

        held.release.add_permits(1);
        let failed = answer(stalled).await;
        assert!(
            matches!(failed, Err(SyncError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(logged_counts(&engine, "hot").await, [1]);
    })
    .await;
}

/// Two nodes with one lane each: node A's group holds scope `x` and node B's holds `y` (each
/// push stalls there), and each node's next push wants the other's scope. A group that waited
/// for that lock while holding its first push's would wait for the other group, which waits for
/// it: a deadlock, which PostgreSQL breaks by failing one. Instead each group commits its first
/// push and the next waits in a fresh transaction: all four pushes commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_on_two_nodes_that_want_each_others_scope_do_not_deadlock() {
    run(Kind::Postgres, |b| async move {
        let url = b.store_arg().unwrap();
        let mut options = PostgresOptions::default();
        options.lanes = 1;
        let (held_a, held_b) = (Held::default(), Held::default());
        let (a, backend_a) = node(&url, options.clone(), &held_a).await;
        let (b_node, backend_b) = node(&url, options, &held_b).await;
        let a_first = push(&a, &[("hold", "x", "a1", 1, "")]);
        held_a.reached.notified().await;
        let b_first = push(&b_node, &[("hold", "y", "b1", 1, "")]);
        held_b.reached.notified().await;
        let a_next = push(&a, &[("bump", "y", "a2", 1, "")]);
        until_queued(&backend_a, 1).await;
        let b_next = push(&b_node, &[("bump", "x", "b2", 1, "")]);
        until_queued(&backend_b, 1).await;

        held_a.release.add_permits(1);
        held_b.release.add_permits(1);
        for task in [a_first, b_first, a_next, b_next] {
            let pushed = answer(task).await;
            assert!(
                pushed.as_ref().is_ok_and(|pushed| pushed.results[0].ok),
                "{pushed:?}"
            );
        }
        assert_eq!(logged_counts(&a, "x").await, [1, 2]);
        assert_eq!(logged_counts(&a, "y").await, [1, 2]);
    })
    .await;
}

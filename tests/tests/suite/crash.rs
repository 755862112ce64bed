//! Crash tests: a child process pushes acknowledged mutations and is killed with SIGKILL
//! mid-stream; after a restart every acknowledged mutation is there, nothing is half-applied,
//! and new cursors follow all earlier ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use sync_runtime::{Engine, Mutation};
use sync_tests::backends::run;
use sync_tests::*;

/// Kills after this many acknowledged mutations, in each of this many rounds.
const ACKS: usize = 40;
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_mutation_through_sigkill() {
    run(Kind::Sqlite, crash_rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_mutation_through_sigkill() {
    run(Kind::Postgres, crash_rounds).await;
}

/// Runs the pusher as a child until it has `acks` acknowledgements, then kills it with SIGKILL.
/// Returns the acknowledged (client_seq, cursor) pairs.
pub(crate) fn push_then_kill(store: &str, client: &str, acks: usize) -> Vec<(u64, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-test-pusher"))
        .args([store, client, "1000000", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the pusher starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("the pusher's output");
        if let Some(ack) = line.strip_prefix("ack ") {
            let (seq, cursor) = ack.split_once(' ').expect("ack SEQ CURSOR");
            acked.push((seq.parse().unwrap(), cursor.parse().unwrap()));
            if acked.len() >= acks {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL"); // std's `kill` sends SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "killed mid-stream, not finished: {status}"
    );
    assert!(acked.len() >= acks, "the pusher stopped early");
    acked
}

async fn crash_rounds(b: TestBackend) {
    let store = b.store_arg().unwrap();
    // The test keeps no connection open while the child writes.
    let mut acked: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut highest_seen = 0;
    for round in 0..ROUNDS {
        let client = format!("crash{round}");
        let acks = push_then_kill(&store, &client, ACKS);
        highest_seen = highest_seen.max(acks.iter().map(|(_, c)| *c).max().unwrap());
        acked.insert(client.clone(), acks);

        // Restart: open the database anew.
        let backend = b.open().await.unwrap();
        let engine = Engine::builder(RulesMutator).backend(backend).build();
        let head = engine.head().await.unwrap();
        assert!(
            head >= highest_seen,
            "round {round}: head {head} < acknowledged {highest_seen}"
        );
        let snapshot = engine.snapshot(Some("shared")).await.unwrap();
        let history = pull_all(&engine, "shared", 0).await;
        assert_eq!(
            replay(&history),
            snapshot.data,
            "round {round}: log and data agree"
        );
        let items = snapshot.data.get("item").cloned().unwrap_or_default();
        // Every group is whole or absent: nothing half-applied.
        let mut groups: BTreeMap<String, usize> = BTreeMap::new();
        for value in items.values() {
            *groups
                .entry(value["group"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for (group, count) in &groups {
            assert_eq!(*count, 3, "round {round}: group {group} is half-applied");
        }
        // Every acknowledged mutation is there, at its cursor.
        let logged: BTreeSet<u64> = history.iter().map(|c| c.cursor).collect();
        for (client, acks) in &acked {
            for (seq, cursor) in acks {
                assert!(
                    groups.contains_key(&format!("{client}-{seq}")),
                    "round {round}: acknowledged {client}/{seq} was lost"
                );
                assert!(
                    logged.contains(cursor),
                    "round {round}: cursor {cursor} was lost"
                );
            }
        }
        // A retry of the last acknowledged mutation is a duplicate; a new one gets a later cursor.
        let (last_seq, _) = *acked[&client].last().unwrap();
        let pushed = engine
            .push(vec![
                Mutation::new("put_group", json!({"group": "retry", "n": 3}))
                    .with_scope("shared")
                    .with_client(client.as_str(), last_seq),
                Mutation::new(
                    "put_group",
                    json!({"group": format!("after{round}"), "n": 3}),
                )
                .with_scope("shared"),
            ])
            .await
            .unwrap();
        assert!(
            pushed.results[0].duplicate,
            "round {round}: {:?}",
            pushed.results[0]
        );
        let first_new = pushed.results[1].changes[0].cursor;
        assert!(
            first_new > head && first_new > highest_seen,
            "round {round}: new cursor {first_new} after head {head}"
        );
        highest_seen = pushed.cursor;
    }
}

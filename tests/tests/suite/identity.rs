//! Identity on every backend, as the todo example's demo sign-in uses it: 401 and 403 on every
//! endpoint and JOIN, forged tokens, the caller in mutations, membership read from the scope,
//! a claim race, and revocation on the live channel.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use sync_runtime::{Engine, HttpOptions, Mutation};
use sync_tests::backends::TestBackend;
use sync_tests::*;
use todo::{DemoAuth, TodoMutator, User};

use crate::live::{Live, serve_with};

sync_tests::on_every_backend!(
    #[tokio::test]
    every_endpoint_refuses_the_unauthenticated_and_the_unauthorized,
    mutations_know_their_caller_and_lists_keep_their_members,
    two_users_claiming_one_fresh_list_leave_one_owner,
    a_revoked_or_expired_identity_stops_hearing_of_a_scope,
);

/// The demo's signing key in these tests.
const SECRET: &[u8] = b"identity tests";

fn engine(b: &TestBackend) -> Engine {
    Engine::builder(TodoMutator)
        .backend(b.backend())
        .auth(DemoAuth::with_secret(SECRET), todo::auth::rules())
        .build()
}

fn token(name: &str) -> String {
    DemoAuth::with_secret(SECRET).issue(name).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn post_as(http: &Http, token: Option<&str>, path: &str, body: Value) -> Answer {
    let authorization = token.map(bearer);
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    let body = body.to_string().into_bytes();
    http.send(Method::POST, path, Some("application/json"), body, &headers)
        .await
}

fn in_scope(scope: &str, name: &str, args: Value) -> Mutation {
    Mutation::new(name, args).with_scope(scope)
}

async fn every_endpoint_refuses_the_unauthenticated_and_the_unauthorized(b: TestBackend) {
    let engine = engine(&b);
    let http = Http::of(todo::app_with_sign_in(
        &engine,
        DemoAuth::with_secret(SECRET),
    ));
    let ann = token("ann");
    let other_server = DemoAuth::with_secret(b"another key").issue("ann").unwrap();
    let push = |scopes: &[&str]| {
        let mutations: Vec<Value> = scopes
            .iter()
            .map(|scope| json!({"name": "todo/create", "args": {"title": "t"}, "scope": scope}))
            .collect();
        json!({ "mutations": mutations })
    };
    for (path, body) in [
        ("/_sync/push", push(&["user:ann"])),
        ("/_sync/pull", json!({"scope": "user:ann"})),
        ("/_sync/snapshot", json!({"scope": "user:ann"})),
    ] {
        for token in [None, Some("garbage"), Some(other_server.as_str())] {
            post_as(&http, token, path, body.clone())
                .await
                .assert_error(401, "unauthorized");
        }
    }
    // Bob's list, which Ann may not read.
    let claim = in_scope("list:x-owned-by-bob", "list/create", json!({"title": "B"}));
    let pushed = engine
        .push_as(User { name: "bob".into() }, vec![claim])
        .await
        .unwrap();
    assert!(pushed.results[0].ok, "{pushed:?}");
    for (path, body) in [
        // One scope of a push that the caller may not use refuses the whole push.
        ("/_sync/push", push(&["user:ann", "user:bob"])),
        ("/_sync/push", push(&["_default"])),
        ("/_sync/pull", json!({"scope": "user:bob"})),
        ("/_sync/snapshot", json!({"scope": "list:x-owned-by-bob"})),
        ("/_sync/pull", json!({})),
    ] {
        post_as(&http, Some(&ann), path, body)
            .await
            .assert_error(403, "forbidden");
    }
    assert_eq!(
        engine.pull(Default::default()).await.unwrap().changes.len(),
        0,
        "no refused push applied anything"
    );

    let mut options = HttpOptions::default();
    options.live.recheck_interval = Duration::from_secs(3600);
    let addr = serve_with(&engine, options).await;
    let mut live = Live::connect(addr).await;
    live.send(1, 1, json!({"scopes": ["user:ann"]})).await;
    let error = live.recv().await;
    assert_eq!(
        (&error["payload"]["code"], &error["payload"]["scopes"]),
        (&json!("unauthorized"), &json!(["user:ann"])),
        "{error}"
    );
    assert_eq!(live.recv().await["payload"]["cursors"], json!({}));
    live.send(
        1,
        2,
        json!({"scopes": ["user:ann", "user:bob", "list:x-owned-by-bob"], "token": ann}),
    )
    .await;
    let error = live.recv().await;
    assert_eq!(
        (&error["ref"], &error["payload"]["code"]),
        (&json!(2), &json!("forbidden")),
        "one ERROR for the JOIN: {error}"
    );
    assert_eq!(
        error["payload"]["scopes"],
        json!(["list:x-owned-by-bob", "user:bob"])
    );
    let reply = live.recv().await;
    assert_eq!(
        reply["payload"]["cursors"],
        json!({"user:ann": 0}),
        "{reply}"
    );
}

async fn mutations_know_their_caller_and_lists_keep_their_members(b: TestBackend) {
    let engine = engine(&b);
    let (ann, bob, eve) = (
        User { name: "ann".into() },
        User { name: "bob".into() },
        User { name: "eve".into() },
    );
    let create =
        |scope: &str, id: &str| in_scope(scope, "todo/create", json!({"title": "t", "id": id}));
    let one = |pushed: sync_runtime::PushResponse| pushed.results.into_iter().next().unwrap();

    let made = one(engine
        .push_as(ann.clone(), vec![create("user:ann", "t1")])
        .await
        .unwrap());
    assert_eq!(
        made.decode::<Value>().unwrap().unwrap()["created_by"],
        "ann"
    );
    let forged = in_scope(
        "user:ann",
        "todo/create",
        json!({"title": "t", "created_by": "bob"}),
    );
    let refused = one(engine.push_as(ann.clone(), vec![forged]).await.unwrap());
    assert_eq!(refused.code.as_deref(), Some("invalid_args"));
    let anonymous = one(engine
        .push(vec![in_scope(
            "list:l",
            "list/create",
            json!({"title": "L"}),
        )])
        .await
        .unwrap());
    assert_eq!(
        anonymous.code.as_deref(),
        Some("unauthorized"),
        "a mutation that needs a caller fails without one"
    );

    let list = one(engine
        .push_as(
            ann.clone(),
            vec![in_scope("list:l", "list/create", json!({"title": "L"}))],
        )
        .await
        .unwrap());
    assert_eq!(list.decode::<Value>().unwrap().unwrap()["owner"], "ann");
    let share = |name: &str| in_scope("list:l", "list/share", json!({ "name": name }));
    let not_owner = one(engine
        .push_as(bob.clone(), vec![share("bob")])
        .await
        .unwrap());
    assert_eq!(not_owner.code.as_deref(), Some("forbidden"));
    let shared = one(engine
        .push_as(ann.clone(), vec![share("bob")])
        .await
        .unwrap());
    let scopes: Vec<&str> = shared.changes.iter().map(|c| c.scope.as_str()).collect();
    assert_eq!(
        scopes,
        ["list:l"],
        "the answer holds the mutation's scope's changes, not Bob's membership"
    );
    let outsider = one(engine
        .push_as(eve.clone(), vec![create("list:l", "e1")])
        .await
        .unwrap());
    assert_eq!(
        outsider.code.as_deref(),
        Some("forbidden"),
        "the list's rule holds inside the transaction too"
    );

    let by_bob = one(engine
        .push_as(bob.clone(), vec![create("list:l", "b1")])
        .await
        .unwrap());
    assert_eq!(
        by_bob.decode::<Value>().unwrap().unwrap()["created_by"],
        "bob"
    );
    assert!(
        one(engine
            .push_as(ann.clone(), vec![create("list:l", "a1")])
            .await
            .unwrap())
        .ok
    );
    let delete = |id: &str| in_scope("list:l", "todo/delete", json!({ "id": id }));
    let not_creator = one(engine
        .push_as(bob.clone(), vec![delete("a1")])
        .await
        .unwrap());
    assert_eq!(not_creator.code.as_deref(), Some("forbidden"));
    assert!(
        one(engine
            .push_as(bob.clone(), vec![delete("b1")])
            .await
            .unwrap())
        .ok,
        "the creator may"
    );
    assert!(
        one(engine
            .push_as(ann.clone(), vec![create("list:l", "b2")])
            .await
            .unwrap())
        .ok
    );
    assert!(
        one(engine
            .push_as(ann.clone(), vec![delete("b2")])
            .await
            .unwrap())
        .ok,
        "the owner may"
    );

    // Bob's own scope lists the list, and stops listing it when he is removed.
    let memberships = |snapshot: sync_runtime::SnapshotResponse| {
        snapshot
            .data
            .get("membership")
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let bobs = engine.snapshot(Some("user:bob")).await.unwrap();
    assert_eq!(memberships(bobs), ["list:l"]);
    let unshare = in_scope("list:l", "list/unshare", json!({"name": "bob"}));
    assert!(one(engine.push_as(ann.clone(), vec![unshare]).await.unwrap()).ok);
    let bobs = engine.snapshot(Some("user:bob")).await.unwrap();
    assert!(memberships(bobs).is_empty());
    let removed = one(engine
        .push_as(bob.clone(), vec![create("list:l", "b3")])
        .await
        .unwrap());
    assert_eq!(removed.code.as_deref(), Some("forbidden"));
}

/// Two users push to the same fresh list at once, on real threads: one owns it, the other's
/// mutation fails, and the list has exactly one member.
async fn two_users_claiming_one_fresh_list_leave_one_owner(b: TestBackend) {
    let engine = engine(&b);
    let claim = |name: &str| {
        let engine = engine.clone();
        let user = User { name: name.into() };
        tokio::spawn(async move {
            let create = in_scope("list:race", "todo/create", json!({"title": "first!"}));
            engine
                .push_as(user, vec![create])
                .await
                .unwrap()
                .results
                .remove(0)
        })
    };
    let (a, b_) = (claim("ann"), claim("bob"));
    let (a, b_) = (a.await.unwrap(), b_.await.unwrap());
    assert_eq!(
        [a.ok, b_.ok].iter().filter(|ok| **ok).count(),
        1,
        "exactly one claim wins: {a:?} {b_:?}"
    );
    let loser = if a.ok { &b_ } else { &a };
    assert_eq!(loser.code.as_deref(), Some("forbidden"), "{loser:?}");
    let list = engine.snapshot(Some("list:race")).await.unwrap();
    assert_eq!(list.data["member"].len(), 1, "{:?}", list.data);
}

async fn a_revoked_or_expired_identity_stops_hearing_of_a_scope(b: TestBackend) {
    let engine = engine(&b);
    let ann = User { name: "ann".into() };
    let list = in_scope("list:l", "list/create", json!({"title": "L"}));
    let share = in_scope("list:l", "list/share", json!({"name": "bob"}));
    engine
        .push_as(ann.clone(), vec![list, share])
        .await
        .unwrap();
    let mut options = HttpOptions::default();
    options.live.recheck_interval = Duration::from_millis(50);
    let addr = serve_with(&engine, options).await;
    let touch = |id: &str| in_scope("list:l", "todo/create", json!({"title": "t", "id": id}));

    // Revoked: Bob's connection leaves the list, says so, and hears of it no more.
    let mut bob = Live::connect(addr).await;
    bob.send(
        1,
        1,
        json!({"scopes": ["list:l", "user:bob"], "token": token("bob")}),
    )
    .await;
    let reply = bob.recv().await;
    assert!(
        reply["payload"]["cursors"]["list:l"].as_u64() > Some(0),
        "{reply}"
    );
    engine
        .push_as(ann.clone(), vec![touch("a1")])
        .await
        .unwrap();
    assert_eq!(
        bob.recv().await["payload"]["scope"],
        "list:l",
        "a poke while a member"
    );
    let unshare = in_scope("list:l", "list/unshare", json!({"name": "bob"}));
    engine.push_as(ann.clone(), vec![unshare]).await.unwrap();
    let error = loop {
        let frame = bob.recv().await;
        if frame["type"] == 8 {
            break frame;
        }
        assert_eq!(frame["type"], 11, "only pokes before the ERROR: {frame}");
    };
    assert_eq!(
        (
            &error["ref"],
            &error["payload"]["code"],
            &error["payload"]["scopes"]
        ),
        (&json!(0), &json!("forbidden"), &json!(["list:l"])),
        "{error}"
    );
    engine
        .push_as(ann.clone(), vec![touch("a2")])
        .await
        .unwrap();
    let after = bob.sync(2).await;
    assert!(
        after
            .iter()
            .all(|frame| frame["payload"]["scope"] != "list:l"),
        "no poke of the list after the ERROR: {after:?}"
    );

    // Expired: the connection leaves every scope; a JOIN with a fresh token goes on.
    let short = DemoAuth::with_secret(SECRET).lifetime(Duration::from_secs(1));
    let mut ann_live = Live::connect(addr).await;
    ann_live
        .send(
            1,
            1,
            json!({"scopes": ["list:l"], "token": short.issue("ann").unwrap()}),
        )
        .await;
    assert_eq!(ann_live.recv().await["type"], 5);
    let error = loop {
        let frame = ann_live.recv().await;
        if frame["type"] == 8 {
            break frame;
        }
    };
    assert_eq!(
        (&error["payload"]["code"], &error["payload"]["scopes"]),
        (&json!("unauthorized"), &json!(["list:l"])),
        "{error}"
    );
    ann_live
        .send(1, 3, json!({"scopes": ["list:l"], "token": token("ann")}))
        .await;
    let reply = ann_live.recv().await;
    assert_eq!(reply["type"], 5, "{reply}");
    engine.push_as(ann, vec![touch("a3")]).await.unwrap();
    let poke = ann_live.recv().await;
    assert_eq!(
        (&poke["type"], &poke["payload"]["scope"]),
        (&json!(11), &json!("list:l"))
    );
}

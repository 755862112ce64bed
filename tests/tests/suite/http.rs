//! The HTTP layer: every row of the protocol's error table, limits, authorization, compression.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sync_runtime::{Access, AuthError, Credentials, Engine, HttpOptions, Limits, MemoryBackend};
use sync_tests::*;

const ENDPOINTS: [&str; 3] = ["/_sync/push", "/_sync/pull", "/_sync/snapshot"];

fn push_body(mutations: Value) -> Value {
    json!({ "mutations": mutations })
}

#[tokio::test]
async fn push_pull_snapshot_over_http() {
    let engine = todo_engine();
    let http = Http::new(&engine);
    let pushed = http
        .post("/_sync/push", push_body(json!([{"name": "todo/create", "args": {"id": "a", "title": "x"}, "client_id": "c", "client_seq": 1}])))
        .await;
    assert_eq!(pushed.status, StatusCode::OK);
    assert_eq!(pushed.body["cursor"], 1);
    assert_eq!(pushed.body["results"][0]["ok"], true);
    assert_eq!(pushed.body["results"][0]["changes"][0]["op"], "create");
    let ts = pushed.body["results"][0]["changes"][0]["ts"]
        .as_str()
        .unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000Z".len(),
        "{ts}"
    );

    let pulled = http.post("/_sync/pull", json!({})).await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_eq!(
        pulled.body["changes"][0]["data"],
        json!({"id": "a", "title": "x", "completed": false})
    );
    assert_eq!(
        (
            pulled.body["cursor"].clone(),
            pulled.body["has_more"].clone()
        ),
        (json!(1), json!(false))
    );

    let mut snapshot = http.post("/_sync/snapshot", json!({"scope": ""})).await;
    assert_eq!(snapshot.body["log_id"], pulled.body["log_id"]);
    snapshot
        .body
        .as_object_mut()
        .map(|body| body.remove("log_id"));
    assert_eq!(
        snapshot.body,
        json!({"data": {"todo": {"a": {"id": "a", "title": "x", "completed": false}}}, "cursor": 1, "has_more": false})
    );

    let retry = http
        .post("/_sync/push", push_body(json!([{"name": "todo/create", "args": {"id": "a", "title": "x"}, "client_id": "c", "client_seq": 1}])))
        .await;
    assert_eq!(
        retry.body["results"][0],
        json!({"ok": true, "cursor": 1, "duplicate": true})
    );
}

#[tokio::test]
async fn invalid_request_bodies_are_400() {
    let http = Http::new(&todo_engine());
    let cases: &[(&str, &str)] = &[
        ("/_sync/push", "not json"),
        ("/_sync/push", ""),
        ("/_sync/push", "{}"),
        ("/_sync/push", r#"{"mutations": {}}"#),
        ("/_sync/push", r#"{"mutations": [{"args": {}}]}"#),
        ("/_sync/push", r#"{"mutations": [{"name": 5}]}"#),
        ("/_sync/push", r#"{"mutations": [{"name": ""}]}"#),
        (
            "/_sync/push",
            r#"{"mutations": [{"name": "x", "scope": 7}]}"#,
        ),
        (
            "/_sync/push",
            r#"{"mutations": [{"name": "x", "client_seq": -1}]}"#,
        ),
        ("/_sync/push", r#"{"mutations": [{"name": "x"}]} trailing"#),
        ("/_sync/pull", r#"{"cursor": -1}"#),
        ("/_sync/pull", r#"{"cursor": 18446744073709551616}"#),
        ("/_sync/pull", r#"{"cursor": "3"}"#),
        ("/_sync/pull", r#"{"scope": 1}"#),
        ("/_sync/pull", r#"{"limit": 2.5}"#),
        ("/_sync/pull", "[]"),
        ("/_sync/pull", r#"["_default", 2, 1]"#),
        ("/_sync/push", r#"[[{"name": "todo/create"}]]"#),
        ("/_sync/push", r#"{"mutations": [["todo/create"]]}"#),
        ("/_sync/snapshot", r#"["other"]"#),
        ("/_sync/snapshot", r#"{"scope": ["a"]}"#),
        ("/_sync/snapshot", "\u{0}"),
    ];
    for (path, body) in cases {
        let answer = http
            .send(
                Method::POST,
                path,
                Some("application/json"),
                body.to_string(),
                &[],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path} {body:?}: {}",
            answer.body
        );
        answer.assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn decode_errors_name_the_field() {
    let http = Http::new(&todo_engine());
    let answer = http
        .post(
            "/_sync/push",
            push_body(json!([{"name": "a"}, {"name": "b", "client_seq": "7"}])),
        )
        .await;
    answer.assert_error(400, "invalid_request");
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("mutations[1].client_seq"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn push_count_limits() {
    let http = Http::new(&todo_engine());
    http.post("/_sync/push", push_body(json!([])))
        .await
        .assert_error(400, "no_mutations");
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"name": "todo/create", "args": {"title": i.to_string()}}))
        .collect();
    http.post("/_sync/push", push_body(json!(many)))
        .await
        .assert_error(400, "too_many_mutations");
    let engine = Engine::builder(todo::TodoMutator)
        .limits({
            let mut limits = Limits::default();
            limits.max_mutations = 2;
            limits
        })
        .build();
    let three = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
    Http::new(&engine)
        .post("/_sync/push", push_body(three))
        .await
        .assert_error(400, "too_many_mutations");
    assert_eq!(engine.head().await.unwrap(), 0);
}

#[tokio::test]
async fn invalid_scopes_are_400_everywhere() {
    let engine = todo_engine();
    let http = Http::new(&engine);
    for scope in [
        "x".repeat(257),
        "tab\there".into(),
        "nul\u{0}".into(),
        "del\u{7f}".into(),
        "c1\u{85}".into(),
    ] {
        let push = push_body(
            json!([{"name": "todo/create", "args": {"title": "ok"}}, {"name": "todo/create", "args": {"title": "t"}, "scope": scope}]),
        );
        http.post("/_sync/push", push)
            .await
            .assert_error(400, "invalid_scope");
        http.post("/_sync/pull", json!({"scope": scope}))
            .await
            .assert_error(400, "invalid_scope");
        http.post("/_sync/snapshot", json!({"scope": scope}))
            .await
            .assert_error(400, "invalid_scope");
    }
    assert_eq!(
        engine.head().await.unwrap(),
        0,
        "a 4xx push applies nothing"
    );
    let longest = "é".repeat(128);
    assert_eq!(
        http.post("/_sync/pull", json!({"scope": longest}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn content_type_must_be_json() {
    let http = Http::new(&todo_engine());
    for path in ENDPOINTS {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/jsonx"),
            Some("multipart/form-data"),
        ] {
            let answer = http.send(Method::POST, path, content_type, "{}", &[]).await;
            answer.assert_error(415, "unsupported_media_type");
        }
        for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
            let body = if path.ends_with("push") {
                r#"{"mutations":[{"name":"todo/create","args":{"title":"t"}}]}"#
            } else {
                "{}"
            };
            let answer = http
                .send(Method::POST, path, Some(content_type), body, &[])
                .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} {content_type}: {}",
                answer.body
            );
        }
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let engine = todo_engine();
    let http = Http::new(&engine);
    let big_title = "x".repeat(1 << 20);
    let push = push_body(json!([{"name": "todo/create", "args": {"title": big_title}}]));
    http.post("/_sync/push", push)
        .await
        .assert_error(413, "body_too_large");
    let padding = " ".repeat(64 << 10);
    for path in ["/_sync/pull", "/_sync/snapshot"] {
        http.send(
            Method::POST,
            path,
            Some("application/json"),
            format!("{{{padding}}}"),
            &[],
        )
        .await
        .assert_error(413, "body_too_large");
    }
    // Without a Content-Length (a streamed body), the limit holds all the same.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{".into()),
        Ok(padding.clone()),
        Ok(padding),
        Ok("}".into()),
    ];
    let stream = axum::body::Body::from_stream(futures::stream::iter(chunks));
    http.send(
        Method::POST,
        "/_sync/pull",
        Some("application/json"),
        stream,
        &[],
    )
    .await
    .assert_error(413, "body_too_large");
    // Just under the limit is fine.
    let fits = format!("{{{}}}", " ".repeat((64 << 10) - 2));
    assert_eq!(
        http.send(
            Method::POST,
            "/_sync/pull",
            Some("application/json"),
            fits,
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(engine.head().await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let http = Http::new(&todo_engine());
    http.post("/_sync/nope", json!({}))
        .await
        .assert_error(404, "not_found");
    http.post("/_sync/push/extra", json!({}))
        .await
        .assert_error(404, "not_found");
    for path in ENDPOINTS {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let answer = http.send(method.clone(), path, None, "", &[]).await;
            answer.assert_error(405, "method_not_allowed");
            assert_eq!(answer.headers["allow"], "POST");
        }
    }
}

#[tokio::test]
async fn the_prefix_is_configurable_and_the_router_merges() {
    let engine = Engine::builder(todo::TodoMutator).build();
    let mut options = HttpOptions::default();
    options.prefix = "api/sync/".into();
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(engine.router_with(options))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "app fallback") });
    let http = Http::of(app);
    assert_eq!(
        http.post("/api/sync/pull", json!({})).await.status,
        StatusCode::OK
    );
    http.post("/api/sync/other", json!({}))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        http.send(Method::GET, "/health", None, "", &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http.post("/_sync/pull", json!({})).await.status,
        StatusCode::IM_A_TEAPOT
    );
}

#[tokio::test]
async fn the_authorizer_guards_every_endpoint() {
    // The todo mutations take their caller as a `todo::User`: the identity is of that type.
    let authenticate = |credentials: &Credentials<'_>| match credentials.bearer() {
        None => Err(AuthError::unauthorized("log in first")),
        Some(name) => Ok(todo::User {
            name: name.to_owned(),
        }),
    };
    let authorize = |access: &Access<'_, todo::User>| match access.identity.name.as_str() {
        "admin" => Ok(()),
        _ if access.scope.starts_with("private") => Err(AuthError::forbidden(format!(
            "not your scope `{}`",
            access.scope
        ))),
        _ => Ok(()),
    };
    let engine = Engine::builder(todo::TodoMutator)
        .auth(authenticate, authorize)
        .build();
    let http = Http::new(&engine);
    let push = |scope: &str| {
        push_body(json!([{"name": "todo/create", "args": {"title": "t"}}, {"name": "todo/create", "args": {"title": "t"}, "scope": scope}])).to_string()
    };
    let send = |path: &'static str, body: String, auth: Option<&'static str>| {
        let http = http.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            http.send(Method::POST, path, Some("application/json"), body, &headers)
                .await
        }
    };
    send("/_sync/push", push("public"), None)
        .await
        .assert_error(401, "unauthorized");
    send("/_sync/push", push("private-1"), Some("Bearer user"))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        engine.head().await.unwrap(),
        0,
        "a refused push applies nothing, not even its allowed part"
    );
    for path in ["/_sync/pull", "/_sync/snapshot"] {
        send(path, json!({}).to_string(), None)
            .await
            .assert_error(401, "unauthorized");
        send(
            path,
            json!({"scope": "private-2"}).to_string(),
            Some("Bearer user"),
        )
        .await
        .assert_error(403, "forbidden");
        assert_eq!(
            send(
                path,
                json!({"scope": "private-2"}).to_string(),
                Some("Bearer admin")
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        send("/_sync/push", push("public"), Some("Bearer user"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cursor_too_old_over_http() {
    let engine = todo_engine();
    engine.push(vec![create("a"), create("b")]).await.unwrap();
    engine.trim(2).await.unwrap();
    let http = Http::new(&engine);
    http.post("/_sync/pull", json!({"cursor": 0}))
        .await
        .assert_error(410, "cursor_too_old");
    assert_eq!(
        http.post("/_sync/pull", json!({"cursor": 1})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failing_store_is_503() {
    let backend = FailingBackend::new(MemoryBackend::new(), 0);
    let engine = Engine::builder(todo::TodoMutator).backend(backend).build();
    let answer = Http::new(&engine)
        .post(
            "/_sync/push",
            push_body(json!([{"name": "todo/create", "args": {"title": "t"}}])),
        )
        .await;
    answer.assert_error(503, "unavailable");
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let engine = todo_engine();
    let mutations = (0..200)
        .map(|i| create(&format!("a todo with a long and repetitive title {i}")))
        .collect();
    engine.push(mutations).await.unwrap();
    let http = Http::new(&engine);
    let answer = http
        .send(
            Method::POST,
            "/_sync/pull",
            Some("application/json"),
            r#"{"limit": 200}"#,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-encoding"], "gzip");
    let plain = http.post("/_sync/pull", json!({"limit": 200})).await;
    assert!(plain.headers.get("content-encoding").is_none());
    assert_eq!(plain.body["changes"].as_array().unwrap().len(), 200);
}

/// A small deterministic generator, so that a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn mangled_bodies_never_answer_5xx() {
    let engine = todo_engine();
    let http = Http::new(&engine);
    let seeds = [
        r#"{"mutations":[{"name":"todo/create","args":{"title":"x","id":"a"},"client_id":"c","client_seq":1,"scope":"s"}]}"#,
        r#"{"scope":"s","cursor":1,"limit":10}"#,
        r#"{"scope":"s"}"#,
    ];
    let alphabet = br#"{}[]":,0123456789-.eE \tnulltruefalse\u00"#;
    let mut rng = Lcg(42);
    for round in 0..1500 {
        let which = round % 3;
        let mut body = seeds[which].as_bytes().to_vec();
        for _ in 0..=(rng.next() % 4) {
            let at = (rng.next() as usize) % body.len().max(1);
            match rng.next() % 3 {
                0 => body.truncate(at),
                1 => body.insert(at, alphabet[(rng.next() as usize) % alphabet.len()]),
                _ => {
                    if at < body.len() {
                        body[at] = (rng.next() % 256) as u8;
                    }
                }
            }
        }
        let answer = http
            .send(
                Method::POST,
                ENDPOINTS[which],
                Some("application/json"),
                body.clone(),
                &[],
            )
            .await;
        assert!(
            answer.status.is_success() || answer.status.is_client_error(),
            "{} for {:?}",
            answer.status,
            String::from_utf8_lossy(&body)
        );
        if !answer.status.is_success() {
            assert!(
                answer.body["code"].is_string() && answer.body["error"].is_string(),
                "{}",
                answer.body
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408_not_a_hang() {
    let engine = todo_engine();
    let mut options = HttpOptions::default();
    options.body_timeout = std::time::Duration::from_millis(200);
    let http = Http::of(engine.router_with(options));
    let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let send = http.send(
        Method::POST,
        "/_sync/push",
        Some("application/json"),
        axum::body::Body::from_stream(never),
        &[],
    );
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), send)
        .await
        .expect("the server answers a body that never comes");
    answer.assert_error(408, "request_timeout");
}

/// Beyond its first change, a pull page stops at the byte budget, says `has_more`, and its
/// cursor is where the next page starts; a change larger than the budget still comes, alone.
#[tokio::test]
async fn a_pull_page_stays_within_the_byte_budget() {
    let engine = Engine::builder(RulesMutator).build();
    let text = "x".repeat(1000);
    let mutations = (0..5)
        .map(|i| {
            sync_runtime::Mutation::new("put", json!({"id": i.to_string(), "data": {"text": text}}))
        })
        .collect();
    engine.push(mutations).await.unwrap();
    let mut options = HttpOptions::default();
    options.page_budget_bytes = 2500;
    let http = Http::of(engine.router_with(options));
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let page = http.post("/_sync/pull", json!({"cursor": cursor})).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let changes = page.body["changes"].as_array().cloned().unwrap_or_default();
        assert!(!changes.is_empty(), "{}", page.body);
        let encoded: usize = changes.iter().map(|c| c.to_string().len() + 1).sum();
        assert!(changes.len() == 1 || encoded <= 2500, "{encoded} bytes");
        cursor = page.body["cursor"].as_u64().unwrap();
        assert_eq!(
            Some(cursor),
            changes.last().and_then(|c| c["cursor"].as_u64())
        );
        pages.push(changes.len());
        if page.body["has_more"] != json!(true) {
            break;
        }
    }
    assert_eq!(
        pages,
        [2, 2, 1],
        "every change once, in pages within the budget"
    );

    let mut tiny = HttpOptions::default();
    tiny.page_budget_bytes = 10;
    let http = Http::of(engine.router_with(tiny));
    let page = http.post("/_sync/pull", json!({})).await;
    assert_eq!(page.body["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(page.body["has_more"], true);
}

/// What the application's own middleware decided (a session, a decoded JWT) reaches the
/// authenticator through the request's extensions, and the identity reaches the mutations.
#[tokio::test]
async fn an_identity_can_come_from_the_applications_middleware() {
    #[derive(Clone)]
    struct Session(String);

    let authenticate = |credentials: &Credentials<'_>| {
        credentials
            .parts
            .extensions
            .get::<Session>()
            .map(|session| session.0.clone())
            .ok_or_else(|| AuthError::unauthorized("no session"))
    };
    let only_own = |access: &Access<'_, String>| {
        if access.scope == format!("user:{}", access.identity) {
            Ok(())
        } else {
            Err(AuthError::forbidden("not yours"))
        }
    };
    let engine = Engine::builder(todo::TodoMutator)
        .auth(authenticate, only_own)
        .build();
    // A stand-in for a session layer: the `x-session` cookie's user.
    let sessions = axum::middleware::from_fn(
        |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
            let user = request
                .headers()
                .get("x-session")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(user) = user {
                request.extensions_mut().insert(Session(user));
            }
            next.run(request).await
        },
    );
    let http = Http::of(engine.router().layer(sessions));
    let body = json!({"scope": "user:ann"}).to_string();
    let pull = |session: Option<&'static str>| {
        let http = http.clone();
        let body = body.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                session.map(|s| ("x-session", s)).into_iter().collect();
            http.send(
                Method::POST,
                "/_sync/pull",
                Some("application/json"),
                body,
                &headers,
            )
            .await
        }
    };
    pull(None).await.assert_error(401, "unauthorized");
    pull(Some("bob")).await.assert_error(403, "forbidden");
    assert_eq!(pull(Some("ann")).await.status, StatusCode::OK);
}

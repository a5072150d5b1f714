//! The web app without a socket: a real [`Master`] over in-memory channels
//! and requests sent with `oneshot`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::{app, AllowedHosts, WebAccess, WebAuth};
use crate::master::{Master, MasterConfig, MasterHandle, UserClass};
use crate::protocol::transport::{memory_master_link, Frame, Inbound};
use crate::protocol::ToMaster;

/// A running master with no workers; `frames` feeds it worker messages.
struct TestMaster {
    handle: MasterHandle,
    frames: mpsc::Sender<Inbound>,
    /// Kept so the master's sends do not fail.
    _sent: mpsc::UnboundedReceiver<Frame>,
}

fn start_master() -> TestMaster {
    let (link, frames, sent) = memory_master_link(16);
    let classes = vec![UserClass {
        name: "WebsiteUser".into(),
        weight: 1,
    }];
    let (master, handle) = Master::new(MasterConfig::new("http://127.0.0.1:1", classes), link);
    tokio::spawn(master.run());
    TestMaster {
        handle,
        frames,
        _sent: sent,
    }
}

impl TestMaster {
    async fn join_worker(&self, id: &str) {
        let ready = ToMaster::ClientReady {
            version: "2.47.0".into(),
        };
        let frame = Inbound::memory(id, ready.to_wire(id));
        self.frames.send(frame).await.expect("the master runs");
        let joined = self
            .handle
            .wait_for_workers(1, std::time::Duration::from_secs(5))
            .await;
        assert!(joined.is_ok(), "the worker joined");
    }
}

async fn send(router: axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post_form(path: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("a request")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn swarm_names_the_bad_field_and_starts_nothing() {
    let master = start_master();
    master.join_worker("w1").await;
    let router = app(master.handle.clone(), WebAccess::default());
    for (form, field) in [
        ("user_count=abc&spawn_rate=1", "user_count"),
        ("user_count=5&spawn_rate=0", "spawn_rate"),
        ("user_count=5&spawn_rate=1&host=not+a+url", "host"),
        ("user_count=5&spawn_rate=1&run_time=-5s", "run_time"),
    ] {
        let (status, body) = send(router.clone(), post_form("/swarm", form)).await;
        assert_eq!(status, StatusCode::OK);
        let answer = json(&body);
        assert_eq!(answer["success"], false, "{form}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{form}: {message:?} names {field}");
    }
    assert_eq!(master.handle.state().as_str(), "ready");
}

#[tokio::test]
async fn swarm_answers_like_locust() {
    let master = start_master();
    master.join_worker("w1").await;
    let router = app(master.handle.clone(), WebAccess::default());
    let (_, body) = send(
        router.clone(),
        post_form("/swarm", "user_count=3&spawn_rate=3&run_time=1m"),
    )
    .await;
    let answer = json(&body);
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["host"], "http://127.0.0.1:1");
    assert_eq!(
        answer["run_time"], 60,
        "Locust echoes the run time in seconds"
    );
    let (_, body) = send(
        router,
        Request::get("/stats/requests")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    let stats = json(&body);
    assert_eq!(stats["state"], "running");
    assert_eq!(stats["worker_count"], 1);
    assert!(stats["current_rps"].is_number(), "{stats}");
}

#[tokio::test]
async fn exceptions_list_nodes_as_one_string() {
    let master = start_master();
    for id in ["w1", "w2"] {
        // Only joined workers' messages count.
        master.join_worker(id).await;
        let exception = ToMaster::Exception {
            msg: "ZeroDivisionError".into(),
            traceback: "File \"x\", line 1".into(),
            count: 1,
        };
        let frame = Inbound::memory(id, exception.to_wire(id));
        master.frames.send(frame).await.expect("the master runs");
    }
    let router = app(master.handle.clone(), WebAccess::default());
    // Frames and commands race in the master's loop: ask until both count.
    let mut rows = Value::Null;
    for _ in 0..100 {
        let (_, body) = send(
            router.clone(),
            Request::get("/exceptions")
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
        rows = json(&body)["exceptions"].clone();
        if rows[0]["count"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows[0]["count"], 2, "{rows}");
    assert_eq!(rows[0]["nodes"], "w1, w2", "{rows}");
}

#[tokio::test]
async fn basic_auth_guards_every_path() {
    let master = start_master();
    let auth = WebAuth::parse("user:pass").expect("valid");
    let access = WebAccess {
        auth: Some(auth),
        ..WebAccess::default()
    };
    let router = app(master.handle.clone(), access);
    for path in ["/", "/stats/requests", "/exceptions/csv"] {
        let request = |credentials: Option<&str>| {
            let mut builder = Request::get(path);
            if let Some(credentials) = credentials {
                builder = builder.header(header::AUTHORIZATION, credentials);
            }
            builder.body(Body::empty()).expect("a request")
        };
        let (status, _) = send(router.clone(), request(None)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} without credentials"
        );
        // base64("user:wrong")
        let (status, _) = send(router.clone(), request(Some("Basic dXNlcjp3cm9uZw=="))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong password"
        );
        // base64("user:pass")
        let (status, _) = send(router.clone(), request(Some("Basic dXNlcjpwYXNz"))).await;
        assert_eq!(status, StatusCode::OK, "{path} with credentials");
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("a request")
}

async fn state_of(router: &axum::Router) -> Value {
    let (status, body) = send(router.clone(), get("/stats/requests")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json(&body)["state"].clone()
}

#[tokio::test]
async fn absurd_swarm_values_are_refused_and_the_master_keeps_answering() {
    let master = start_master();
    master.join_worker("w1").await;
    let router = app(master.handle.clone(), WebAccess::default());
    for (form, field) in [
        (
            "user_count=5&spawn_rate=5&run_time=18446744073709551615",
            "run_time",
        ),
        ("user_count=1000000000000&spawn_rate=5", "user_count"),
        ("user_count=5&spawn_rate=1e9", "spawn_rate"),
        ("user_count=5&spawn_rate=NaN", "spawn_rate"),
    ] {
        let (status, body) = send(router.clone(), post_form("/swarm", form)).await;
        assert_eq!(status, StatusCode::OK, "{form}: {body}");
        let answer = json(&body);
        assert_eq!(answer["success"], false, "{form}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{form}: {message:?} names {field}");
    }
    assert_eq!(state_of(&router).await, "ready");
    let (status, body) = send(
        router.clone(),
        post_form("/swarm", "user_count=5&spawn_rate=5"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["success"], true, "{body}");
    assert_ne!(state_of(&router).await, "ready");
}

#[tokio::test]
async fn cross_site_requests_are_refused() {
    let master = start_master();
    master.join_worker("w1").await;
    let router = app(master.handle.clone(), WebAccess::default());
    let swarm_from = |headers: &[(&str, &str)]| {
        let mut builder = Request::post("/swarm")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "127.0.0.1:8089");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Body::from("user_count=2&spawn_rate=2"))
            .expect("a request")
    };

    for cross_site in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let (status, body) = send(router.clone(), swarm_from(&[cross_site])).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{cross_site:?}: {body}");
        assert_eq!(state_of(&router).await, "ready", "{cross_site:?}");
    }

    let stop = Request::get("/stop")
        .header(header::HOST, "127.0.0.1:8089")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .expect("a request");
    let (status, body) = send(router.clone(), stop).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, body) = send(
        router.clone(),
        swarm_from(&[("origin", "http://127.0.0.1:8089")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["success"], true, "{body}");

    let (status, body) = send(router.clone(), swarm_from(&[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["success"], true, "{body}");

    let read = Request::get("/stats/requests")
        .header(header::HOST, "127.0.0.1:8089")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .expect("a request");
    let (status, body) = send(router.clone(), read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["state"], "running", "{body}");
}

#[tokio::test]
async fn the_page_and_the_report_carry_the_shared_tables() {
    let master = start_master();
    let router = app(master.handle.clone(), WebAccess::default());
    for path in ["/", "/stats/report"] {
        let (status, body) = send(router.clone(), get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        for id in ["failures-table", "exceptions-table"] {
            assert!(
                body.contains(&format!("<table id=\"{id}\">")),
                "{path} has {id}"
            );
        }
        assert!(
            body.starts_with("<!DOCTYPE html>"),
            "{path} starts with its head"
        );
        assert!(!body.contains("<!--__"), "{path} has no placeholder left");
    }
}

/// `POST /swarm` with `Host` and `Origin` both naming `host`, as a DNS
/// rebinding page's request looks.
fn swarm_as(host: &str) -> Request<Body> {
    Request::post("/swarm")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("http://{host}"))
        .body(Body::from("user_count=2&spawn_rate=2"))
        .expect("a request")
}

#[tokio::test]
async fn state_changes_under_a_foreign_host_name_are_refused_reads_are_not() {
    let master = start_master();
    master.join_worker("w1").await;
    let router = app(master.handle.clone(), WebAccess::default());

    for host in [
        "rebind.example",
        "rebind.example:8089",
        "localhost.evil.example",
    ] {
        let (status, body) = send(router.clone(), swarm_as(host)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}: {body}");
        assert!(
            body.contains(&format!("{host:?}")),
            "names the Host: {body}"
        );
        assert!(
            body.contains("--web-allowed-host"),
            "says what to do: {body}"
        );
        assert_eq!(state_of(&router).await, "ready", "{host}: nothing started");
    }
    for (method, path) in [("POST", "/stop"), ("GET", "/stop"), ("GET", "/stats/reset")] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "rebind.example:8089")
            .body(Body::empty())
            .expect("a request");
        let (status, body) = send(router.clone(), request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    // Locust's reads answer whatever the name.
    for path in ["/stats/requests", "/", "/stats/requests/csv", "/exceptions"] {
        let read = Request::get(path)
            .header(header::HOST, "rebind.example:8089")
            .body(Body::empty())
            .expect("a request");
        let (status, _) = send(router.clone(), read).await;
        assert_eq!(status, StatusCode::OK, "GET {path}");
    }
    for host in [
        "127.0.0.1:8089",
        "[::1]:8089",
        "localhost:8089",
        "ui.localhost",
    ] {
        let (status, body) = send(router.clone(), swarm_as(host)).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
        assert_eq!(json(&body)["success"], true, "{host}: {body}");
    }
    assert_eq!(state_of(&router).await, "running");
}

#[tokio::test]
async fn an_allowed_host_name_may_change_state() {
    let master = start_master();
    master.join_worker("w1").await;
    let access = WebAccess {
        allowed_hosts: AllowedHosts::new(&["ui.example"]).expect("a name"),
        ..WebAccess::default()
    };
    let router = app(master.handle.clone(), access);
    let (status, body) = send(router.clone(), swarm_as("other.example:8089")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(state_of(&router).await, "ready");
    let (status, body) = send(router.clone(), swarm_as("UI.example:8089")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["success"], true, "{body}");
    assert_eq!(state_of(&router).await, "running");
}

//! Authentication: every route but health, login, setup status and the page needs a session;
//! the first key comes from the environment or a one-time setup link; failures are limited.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::serve::{KEY, Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_refuses_requests_without_credentials() {
    let serve = Serve::start(Runtime::Embedded).await;
    let mut protected = 0;
    for route in iot2mqtt_server::routes() {
        let path = route
            .path
            .replace("{connector}", "demo")
            .replace("{id}", "x")
            .replace("{instance}", "x")
            .replace("{device}", "d");
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        for token in [None, Some("v1.9999999999.forged.signature")] {
            let body = (!path.ends_with("/plugin")).then(|| json!({}));
            let (status, body) = serve.call_as(token, method.clone(), &path, body).await;
            match route.access {
                iot2mqtt_server::api::Access::Public => {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{} {path} is public", route.method);
                }
                _ => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path} without a session: {body}", route.method);
                    assert!(body["error"].is_string(), "{} {path}: a JSON error", route.method);
                }
            }
        }
        protected += usize::from(route.access != iot2mqtt_server::api::Access::Public);
    }
    assert!(protected >= 25, "the table lists the API: {protected} protected routes");
    let (status, health) = serve.call_as(None, Method::GET, "/api/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["runtime"], "embedded");
    assert_eq!(health["broker"], "embedded");
    assert!(
        health["mqtt_connected"].is_boolean()
            && health["docker_available"].is_boolean()
            && health["version"].is_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_as_bearer_or_cookie_and_logout_ends_them() {
    let serve = Serve::start(Runtime::Embedded).await;
    let response = serve.client().post(serve.url("/api/auth/login")).json(&json!({"key": KEY})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let token = body["token"].as_str().unwrap().to_string();
    let session_cookie = cookie.split(';').next().unwrap().to_string();
    let by_cookie =
        serve.client().get(serve.url("/api/instances")).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let (status, _) = serve.call_as(Some(&token), Method::GET, "/api/instances", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = serve.call_as(Some(&token), Method::POST, "/api/auth/logout", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = serve.call_as(Some(&token), Method::GET, "/api/instances", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
    let after = serve.client().get(serve.url("/api/instances")).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited() {
    let serve = Serve::start(Runtime::Embedded).await;
    for _ in 0..5 {
        let (status, _) = serve.call_as(None, Method::POST, "/api/auth/login", Some(json!({"key": "wrong key"}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = serve.client().post(serve.url("/api/auth/login")).json(&json!({"key": KEY})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even the right key waits");
    assert!(response.headers().contains_key("retry-after"));
    assert!(serve.log().contains("failed login"), "failures are logged");
    assert!(!serve.log().contains("wrong key"), "tried keys are not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_the_first_start_prints_a_one_time_setup_link() {
    let serve = Serve::start_unconfigured().await;
    let (_, status) = serve.call_as(None, Method::GET, "/api/setup/status", None).await;
    assert_eq!(status["configured"], false);
    let log = serve.log();
    let link = log.lines().find(|l| l.contains("/?setup=")).unwrap_or_else(|| panic!("no setup link in:\n{log}"));
    let token = link.rsplit("setup=").next().unwrap().trim().to_string();
    let (status, _) =
        serve.call_as(None, Method::POST, "/api/auth/login", Some(json!({"key": "anything at all"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no first visitor sets the key by logging in");
    let (status, _) =
        serve.call_as(None, Method::POST, "/api/setup", Some(json!({"token": "guess", "key": "my new key"}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) =
        serve.call_as(None, Method::POST, "/api/setup", Some(json!({"token": token, "key": "short"}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("key")));
    let (status, _) =
        serve.call_as(None, Method::POST, "/api/setup", Some(json!({"token": token, "key": "my new key"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        serve.call_as(None, Method::POST, "/api/setup", Some(json!({"token": token, "key": "another key"}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token works once");
    let (status, _) = serve.call_as(None, Method::POST, "/api/auth/login", Some(json!({"key": "my new key"}))).await;
    assert_eq!(status, StatusCode::OK);
    let stored = std::fs::read_to_string(serve.data().join("secrets/auth.json")).unwrap();
    assert!(stored.contains("$argon2") && !stored.contains("my new key"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

//! Requests a browser sends for another site: a change from a page of another origin (another
//! port of this machine too), a JSON route fed a form encoding, a name this server is not
//! known by (DNS rebinding). And sessions: a logout, "log out everywhere" and a new key hold
//! across a restart.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::serve::{KEY, Runtime, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_other_origins_and_other_body_types_and_unknown_host_names_are_refused() {
    let serve = Serve::start(Runtime::Embedded).await;
    let config = serve.url("/api/mqtt/config");
    let evil = json!({"host": "evil.example"});
    let post = || serve.client().post(&config).bearer_auth(serve.token());

    // Another port of the same machine (Home Assistant's, say) is another origin.
    let other_port = format!("http://127.0.0.1:{}", serve.http + 1);
    let from_other = post().header("origin", &other_port).json(&evil).send().await.unwrap();
    assert_eq!(from_other.status(), StatusCode::FORBIDDEN);
    assert!(from_other.text().await.unwrap().contains("did not come from this site"));
    let same_site = post().header("sec-fetch-site", "same-site").json(&evil).send().await.unwrap();
    assert_eq!(same_site.status(), StatusCode::FORBIDDEN);
    // What a page may send without asking first: text/plain or a form.
    let plain = post().header("content-type", "text/plain").body(evil.to_string()).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(plain.text().await.unwrap().contains("application/json"));
    let (_, settings) = serve.call(Method::GET, "/api/mqtt/config", None).await;
    assert_ne!(settings["host"], "evil.example", "nothing was changed: {settings}");

    // This server's own origin may.
    let own = format!("http://127.0.0.1:{}", serve.http);
    let flows = serve.client().post(serve.url("/api/flows")).bearer_auth(serve.token());
    let from_own = flows.header("origin", &own).header("sec-fetch-site", "same-origin");
    let started = from_own.json(&json!({"integration": "demo"})).send().await.unwrap();
    assert!(started.status().is_success(), "{}", started.status());

    // A name that is not this server's: refused before anything runs, the page included.
    for path in ["/api/health", "/login"] {
        let rebound = serve.client().get(serve.url(path)).header("host", "attacker.example").send().await.unwrap();
        assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        assert!(rebound.text().await.unwrap().contains("IOT2MQTT_HOSTNAMES"), "{path}: the answer says what to do");
    }
    let local_name = serve.client().get(serve.url("/api/health")).header("host", "homeserver.local:8765");
    assert_eq!(local_name.send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logouts_and_a_new_key_hold_across_a_restart() {
    let mut serve = Serve::start(Runtime::Embedded).await;
    let (client, base) = (serve.client().clone(), serve.url(""));
    let login = |key: &'static str| {
        let request = client.post(format!("{base}/api/auth/login")).json(&json!({"key": key}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body["token"].as_str().unwrap_or_default().to_string())
        }
    };
    let (_, first) = login(KEY).await;
    let (_, second) = login(KEY).await;
    let (_, third) = login(KEY).await;
    let (status, _) = serve.call_as(Some(&first), Method::POST, "/api/auth/logout", None).await;
    assert_eq!(status, StatusCode::OK);

    serve.stop();
    serve.spawn().await;
    let works = |token: String| {
        let request = client.get(format!("{base}/api/instances")).bearer_auth(token);
        async move { request.send().await.unwrap().status() == StatusCode::OK }
    };
    assert!(!works(first.clone()).await, "a logout holds across a restart");
    assert!(works(second.clone()).await && works(third.clone()).await);

    let (status, _) = serve.call_as(Some(&second), Method::POST, "/api/auth/logout-everywhere", None).await;
    assert_eq!(status, StatusCode::OK);
    serve.stop();
    serve.spawn().await;
    assert!(!works(second.clone()).await && !works(third.clone()).await, "every session ended, for good");

    let (_, fourth) = login(KEY).await;
    let (_, fifth) = login(KEY).await;
    let change = |old: &str, new: &str| json!({"old_key": old, "new_key": new});
    let (status, refused) =
        serve.call_as(Some(&fourth), Method::POST, "/api/auth/key", Some(change("not the key", "a new key"))).await;
    assert_eq!((status, refused["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("old_key")));
    let (status, changed) =
        serve.call_as(Some(&fourth), Method::POST, "/api/auth/key", Some(change(KEY, "a brand new key"))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let mine = changed["token"].as_str().unwrap().to_string();
    serve.stop();
    serve.spawn().await;
    assert!(!works(fourth).await && !works(fifth).await, "the other sessions ended");
    assert!(works(mine).await, "the caller's new session goes on");
    assert_eq!(login(KEY).await.0, StatusCode::UNAUTHORIZED, "the old key is gone");
    assert_eq!(login("a brand new key").await.0, StatusCode::OK);
}

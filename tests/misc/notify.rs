//! Notifications to a local axum receiver: Slack and generic payloads arrive; a failing, an
//! unreachable and a hanging channel never fail the caller and never leak their URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use ripcord::notify::{ChannelConfig, ChannelKind, Notification, Notifier, Phase};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    async fn ok(State(r): State<Received>, body: axum::Json<Value>) -> StatusCode {
        r.lock().expect("lock").push(("ok".into(), body.0));
        StatusCode::OK
    }
    async fn fail(State(r): State<Received>, body: axum::Json<Value>) -> StatusCode {
        r.lock().expect("lock").push(("fail".into(), body.0));
        StatusCode::INTERNAL_SERVER_ERROR
    }
    async fn hang() -> StatusCode {
        tokio::time::sleep(Duration::from_secs(30)).await;
        StatusCode::OK
    }
    let app = Router::new()
        .route("/ok/secret-token", post(ok))
        .route("/fail/secret-token", post(fail))
        .route("/hang/secret-token", post(hang))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

fn channel(name: &str, kind: ChannelKind, url: String) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind,
        url,
    }
}

fn notification() -> Notification {
    Notification {
        run_id: "r-20261125-110000-abcd".into(),
        playbook: "rollback".into(),
        phase: Phase::Started,
        title: "about to roll back shop/checkout from rev 7 to rev 6".into(),
        text: "run r-20261125-110000-abcd by alice".into(),
        fields: BTreeMap::from([("incident".to_string(), "INC-42".to_string())]),
    }
}

#[tokio::test]
async fn deliveries_reach_good_channels_and_failures_never_fail() {
    let (base, received) = receiver().await;
    // A closed port: bind then drop.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let notifier = Notifier::new(
        vec![
            channel(
                "slack",
                ChannelKind::Slack,
                format!("{base}/ok/secret-token"),
            ),
            channel(
                "hook",
                ChannelKind::Webhook,
                format!("{base}/ok/secret-token"),
            ),
            channel(
                "broken",
                ChannelKind::Webhook,
                format!("{base}/fail/secret-token"),
            ),
            channel(
                "gone",
                ChannelKind::Webhook,
                format!("http://{closed}/x/secret-token"),
            ),
            channel(
                "slow",
                ChannelKind::Webhook,
                format!("{base}/hang/secret-token"),
            ),
        ],
        reqwest::Client::new(),
    )
    .with_timeout(Duration::from_millis(500));

    let deliveries = notifier.send(&notification()).await;
    let by_name: BTreeMap<&str, _> = deliveries.iter().map(|d| (d.channel.as_str(), d)).collect();
    assert_eq!(deliveries.len(), 5);
    assert!(by_name["slack"].ok && by_name["hook"].ok, "{deliveries:?}");
    assert_eq!(by_name["broken"].status, Some(500));
    assert!(!by_name["broken"].ok && !by_name["gone"].ok && !by_name["slow"].ok);
    assert!(
        by_name["slow"]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("timed out")
    );
    for d in &deliveries {
        let text = serde_json::to_string(d).expect("serializes");
        assert!(
            !text.contains("secret-token"),
            "a delivery leaks the URL: {text}"
        );
    }

    let got = received.lock().expect("lock").clone();
    let slack = got
        .iter()
        .find(|(_, body)| body.get("blocks").is_some())
        .expect("the slack payload arrived");
    assert!(
        slack.1["text"]
            .as_str()
            .unwrap_or_default()
            .contains("about to roll back")
    );
    let generic = got
        .iter()
        .find(|(route, body)| route == "ok" && body.get("runId").is_some())
        .expect("the generic payload arrived");
    assert_eq!(generic.1["phase"], "started");
    assert_eq!(generic.1["fields"]["incident"], "INC-42");
}

#[tokio::test]
async fn no_channels_means_no_deliveries() {
    let notifier = Notifier::new(Vec::new(), reqwest::Client::new());
    assert!(notifier.is_empty());
    assert!(notifier.send(&notification()).await.is_empty());
}

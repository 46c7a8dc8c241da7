//! The controller's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
//! The consent callback has its own listener (`reconcile::callback`).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    ready: watch::Receiver<bool>,
}

/// The router, separate from the listener for tests.
pub fn router(metrics: Metrics, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Ready once the caches are synced (a standby replica is ready: it is waiting to lead).
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if *s.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics, ready: watch::Receiver<bool>) {
    if let Err(e) = axum::serve(listener, router(metrics, ready)).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{OutcomeLabels, ResourceLabels};
    use super::*;

    #[tokio::test]
    async fn endpoints_report_health_readiness_and_metrics() {
        let metrics = Metrics::default();
        metrics
            .token_expiry
            .get_or_create(&ResourceLabels {
                namespace: "ns".into(),
                name: "crm".into(),
            })
            .set(1_795_341_600.0);
        metrics
            .refreshes
            .get_or_create(&OutcomeLabels {
                result: "refreshed".into(),
                reason: "RenewalDue".into(),
            })
            .inc();
        metrics.write("output", true);
        let (ready_tx, ready_rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, metrics, ready_rx));
        let get = |path: &str| {
            let url = format!("{base}{path}");
            async move {
                let r = reqwest::get(url).await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503);
        ready_tx.send(true).unwrap();
        assert_eq!(get("/readyz").await.0, 200);
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(r#"connectorauth_token_expiry_timestamp_seconds{namespace="ns",name="crm"} 1795341600.0"#),
            "{body}"
        );
        assert!(
            body.contains(r#"connectorauth_token_requests_total{result="refreshed",reason="RenewalDue"} 1"#),
            "{body}"
        );
        assert!(
            body.contains(r#"connectorauth_writes_total{kind="output"} 1"#),
            "{body}"
        );
    }
}

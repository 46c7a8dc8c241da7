//! The controller with its consent callback served, a Google-style provider and a
//! ConnectorAuth awaiting consent, driven like a browser: open `status.authorizationUrl`, follow
//! the provider's redirect to the callback.

use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::controller::ConsentConfig;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::operator::{Operator, Source};
use super::*;

pub const NS: &str = "team-a";

pub struct Env {
    pub server: FakeApiServer,
    pub client: kube::Client,
    pub base: String,
    pub book: std::sync::Arc<Book>,
    pub callback: String,
    pub op: Option<Operator>,
}

pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// API server, a Google-style provider, a ConnectorAuth awaiting consent and an operator
/// serving the callback.
pub async fn google_env(ttl: u64) -> Env {
    google_env_with(ttl, |base| {
        json!({"credentialsRef": {"name": "google-credentials"}, "oauth2": {
            "grantType": "authorizationCode", "tokenUrl": format!("{base}/token"),
            "clientId": "{{ CLIENT_ID }}", "clientSecret": "{{ CLIENT_SECRET }}", "clientAuth": "client_secret_post",
            "authorizationUrl": format!("{base}/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code&access_type=offline&prompt=consent"),
        }})
    })
    .await
}

/// [`google_env`] with the ConnectorAuth spec made from the provider's base URL.
pub async fn google_env_with(ttl: u64, spec: impl Fn(&str) -> serde_json::Value) -> Env {
    google_env_with_credentials(ttl, |_| vec![], spec).await
}

/// [`google_env_with`], the credentials Secret holding `more(base)` besides the client's id
/// and secret.
pub async fn google_env_with_credentials(
    ttl: u64,
    more: impl Fn(&str) -> Vec<(String, String)>,
    spec: impl Fn(&str) -> serde_json::Value,
) -> Env {
    let (base, book) = google_with_ttl(ttl).await;
    let server = api_server().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let mut data = std::collections::BTreeMap::from([
        ("CLIENT_ID".to_string(), k8s_openapi::ByteString(b"g-client".to_vec())),
        (
            "CLIENT_SECRET".to_string(),
            k8s_openapi::ByteString(b"g-secret".to_vec()),
        ),
    ]);
    for (k, v) in more(&base) {
        data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
    }
    let creds: Secret =
        serde_json::from_value(json!({"metadata": {"name": "google-credentials"}, "data": data})).unwrap();
    secrets.create(&PostParams::default(), &creds).await.unwrap();
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "google", "namespace": NS},
        "spec": spec(&base),
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
    let addr = free_port();
    let callback = format!("http://{addr}");
    let external = callback.clone();
    let op = Operator::start_with(Source::Url(server.url()), "op-1", false, move |c| {
        c.consent = Some(ConsentConfig {
            listen: addr,
            external_url: external,
            key_namespace: "operators".into(),
            advertise_url: None,
        });
    });
    Env {
        server,
        client,
        base,
        book,
        callback,
        op: Some(op),
    }
}

impl Env {
    pub async fn ca(&self) -> ConnectorAuth {
        Api::<ConnectorAuth>::namespaced(self.client.clone(), NS)
            .get("google")
            .await
            .unwrap()
    }

    /// Waits for `Ready=False, AuthorizationRequired` and returns the consent URL.
    pub async fn authorization_url(&self, other_than: Option<&str>) -> String {
        for _ in 0..200 {
            let ca = self.ca().await;
            if let Some(st) = ca.status {
                let awaiting = st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "AuthorizationRequired");
                if let (true, Some(url)) = (awaiting, st.authorization_url)
                    && Some(url.as_str()) != other_than
                {
                    return url;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no authorizationUrl in status: {:#?}", self.ca().await.status);
    }

    /// "The user clicks Allow": the provider redirects to the callback; returns that URL.
    pub async fn consent(&self, url: &str) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with(&format!("{}/oauth2/callback?", self.callback)),
            "{location}"
        );
        location
    }

    pub async fn ready(&self) -> ConnectorAuth {
        for _ in 0..200 {
            let ca = self.ca().await;
            if ca
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            {
                return ca;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not Ready");
    }

    pub fn key(&self) -> Vec<u8> {
        let s = self
            .server
            .object("", "secrets", Some("operators"), "connector-auth-operator-consent-key")
            .expect("key Secret");
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s["data"]["key"].as_str().unwrap())
            .unwrap()
    }

    pub fn writes(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| {
                matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete") && r.group != "events.k8s.io"
            })
            .map(|r| format!("{} {} {}", r.verb, r.resource, r.name.unwrap_or_default()))
            .collect()
    }

    pub fn events(&self, reason: &str) -> usize {
        self.server
            .objects("events.k8s.io", "events")
            .iter()
            .filter(|e| e["reason"] == reason)
            .count()
    }

    pub async fn stop(mut self) {
        self.op.take().unwrap().stop().await;
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string()
}

//! ServiceAccount tokens through the real `kube::Client`: a TokenRequest is answered with a JWT
//! that verifies against the issuer's published keys and names the ServiceAccount and the
//! audience asked for; what kube-apiserver refuses is refused.

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::Value;

fn request(audience: &str, seconds: Option<i64>) -> TokenRequest {
    TokenRequest {
        metadata: ObjectMeta::default(),
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: seconds,
            ..TokenRequestSpec::default()
        }),
        status: None,
    }
}

async fn jwks(server: &FakeApiServer) -> (Value, Value) {
    let client = server.client();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let text = client
                .request_text(http::Request::get(path).body(Vec::new()).unwrap())
                .await
                .unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    (
        get("/.well-known/openid-configuration").await,
        get("/openid/v1/jwks").await,
    )
}

#[tokio::test]
async fn a_token_request_gives_a_signed_audience_bound_token_of_the_service_account() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client, "team-a");
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "crm-sync"}})).unwrap();
    let sa = sas.create(&PostParams::default(), &sa).await.unwrap();

    let answer = sas
        .create_token_request(
            "crm-sync",
            &PostParams::default(),
            &request("https://sts.example.com", Some(900)),
        )
        .await
        .unwrap();
    let status = answer.status.unwrap();
    let token = status.token.clone().unwrap();
    let (discovery, keys) = jwks(&server).await;
    assert_eq!(discovery["issuer"], server.issuer());
    assert_eq!(discovery["jwks_uri"], format!("{}/openid/v1/jwks", server.issuer()));
    let jwk: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let key = jwk.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://sts.example.com"]);
    validation.set_issuer(&[server.issuer()]);
    let claims: Value = jsonwebtoken::decode(&token, &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(), &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "system:serviceaccount:team-a:crm-sync");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"].as_str(),
        sa.metadata.uid.as_deref()
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert_eq!(
        status.expiration_timestamp.clone().unwrap().0.as_second(),
        claims["exp"].as_i64().unwrap()
    );

    // Another audience does not verify as this one.
    let other = sas
        .create_token_request(
            "crm-sync",
            &PostParams::default(),
            &request("https://other.example.com", None),
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(
            &other.token.unwrap(),
            &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(),
            &validation
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_token_request_is_refused_as_kube_apiserver_refuses_it() {
    let server = FakeApiServer::start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(server.client(), "team-a");
    let missing = sas
        .create_token_request("nobody", &PostParams::default(), &request("a", None))
        .await
        .unwrap_err();
    assert!(matches!(&missing, kube::Error::Api(s) if s.code == 404), "{missing}");
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "crm-sync"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let short = sas
        .create_token_request("crm-sync", &PostParams::default(), &request("a", Some(60)))
        .await
        .unwrap_err();
    assert!(
        matches!(&short, kube::Error::Api(s) if s.code == 422 && s.message.contains("may not specify a duration less than 10 minutes")),
        "{short}"
    );
}

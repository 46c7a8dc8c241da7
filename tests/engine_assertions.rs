//! Signed assertions and chained logins against loopback emulators that check what the real
//! providers check: the signature with the public key, and every claim and header they
//! document (Google service accounts, a `private_key_jwt` client as Keycloak and Microsoft
//! Entra ID take it, GitHub Apps, a two-step login). Each emulator refuses a wrong `aud`, an
//! expired `exp`, a reused `jti` and a wrong `iss`; bad keys are specific errors; neither the
//! key nor an assertion appears in errors, logs or the published Secret.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
use axum::Router;
use axum::extract::{Form, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use connector_auth_operator::engine::{EngineError, Inputs};
use support::*;

// --- keys --------------------------------------------------------------------------------------

struct TestKey {
    /// PKCS#8 PEM.
    pem: String,
    public_pem: String,
    alg: Algorithm,
}

fn rsa_key() -> TestKey {
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    TestKey {
        pem: k.serialize_pem(),
        public_pem: k.public_key_pem(),
        alg: Algorithm::RS256,
    }
}

fn p256_key() -> TestKey {
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    TestKey {
        pem: k.serialize_pem(),
        public_pem: k.public_key_pem(),
        alg: Algorithm::ES256,
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

/// The PKCS#1 `RSA PRIVATE KEY` inside a 2048-bit PKCS#8 key (fixed layout: version, the
/// rsaEncryption algorithm, then the OCTET STRING).
fn pkcs1(key: &TestKey) -> String {
    let der = pem_der(&key.pem);
    assert_eq!(&der[22..24], &[0x04, 0x82], "a 2048-bit PKCS#8 RSA key");
    pem_block("RSA PRIVATE KEY", &der[26..])
}

/// The SEC1 `EC PRIVATE KEY` form of a P-256 key.
fn sec1(key: &TestKey) -> String {
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem_der(&key.pem),
    )
    .unwrap();
    let der: EcPrivateKeyRfc5915Der<'static> = pair.private_key().as_der().unwrap();
    pem_block("EC PRIVATE KEY", der.as_ref())
}

fn certificate_for(key_pem: &str) -> (String, Vec<u8>) {
    let kp = rcgen::KeyPair::from_pem(key_pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client.example".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    (cert.pem(), cert.der().to_vec())
}

// --- a provider that verifies assertions --------------------------------------------------------

/// What an emulator expects of an assertion, and what it saw.
struct Verifier {
    key: DecodingKey,
    alg: Algorithm,
    iss: String,
    /// None: the token URL the request was sent to.
    aud: Option<String>,
    sub: Option<String>,
    kid: Option<String>,
    x5t: Option<(String, String)>,
    max_lifetime: i64,
    needs_jti: bool,
    needs_nbf: bool,
    seen_jti: Mutex<HashSet<String>>,
    /// Every verified header and claim set.
    accepted: Mutex<Vec<(Value, Value)>>,
    /// The raw assertions received, to replay one.
    raw: Mutex<Vec<String>>,
    refusals: Mutex<Vec<String>>,
}

impl Verifier {
    fn new(key: &TestKey, iss: &str) -> Verifier {
        let decoding = match key.alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(key.public_pem.as_bytes()),
            _ => DecodingKey::from_rsa_pem(key.public_pem.as_bytes()),
        };
        Verifier {
            key: decoding.unwrap(),
            alg: key.alg,
            iss: iss.into(),
            aud: None,
            sub: None,
            kid: None,
            x5t: None,
            max_lifetime: 3600,
            needs_jti: false,
            needs_nbf: false,
            seen_jti: Mutex::new(HashSet::new()),
            accepted: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        }
    }

    /// Checks one assertion sent to `url`; the error is what the provider would say.
    fn check(&self, jwt: &str, url: &str) -> Result<Value, String> {
        self.raw.lock().unwrap().push(jwt.to_string());
        let result = self.verify(jwt, url);
        if let Err(e) = &result {
            self.refusals.lock().unwrap().push(e.clone());
        }
        result
    }

    fn verify(&self, jwt: &str, url: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("bad header: {e}"))?;
        if header.alg != self.alg {
            return Err(format!("alg {:?}", header.alg));
        }
        if header.kid != self.kid {
            return Err("kid".into());
        }
        if let Some((sha1, sha256)) = &self.x5t
            && (header.x5t.as_ref() != Some(sha1) || header.x5t_s256.as_ref() != Some(sha256))
        {
            return Err("x5t".into());
        }
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.set_audience(&[self.aud.clone().unwrap_or_else(|| url.to_string())]);
        v.set_issuer(&[&self.iss]);
        let mut required = vec!["exp", "iat", "iss", "aud"];
        if self.needs_jti {
            required.push("jti");
        }
        if self.needs_nbf {
            required.push("nbf");
            v.validate_nbf = true;
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Value>(jwt, &self.key, &v).map_err(|e| format!("{:?}", e.kind()))?;
        let c = data.claims;
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        if exp - iat > self.max_lifetime {
            return Err("lifetime too long".into());
        }
        if iat > now_secs() + 5 {
            return Err("issued in the future".into());
        }
        if c.get("sub").and_then(Value::as_str) != self.sub.as_deref() {
            return Err("sub".into());
        }
        if self.needs_jti
            && !self
                .seen_jti
                .lock()
                .unwrap()
                .insert(c["jti"].as_str().unwrap_or("").to_string())
        {
            return Err("jti reused".into());
        }
        self.accepted
            .lock()
            .unwrap()
            .push((serde_json::to_value(&header).unwrap(), c.clone()));
        Ok(c)
    }

    fn last(&self) -> (Value, Value) {
        self.accepted
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an accepted assertion")
    }
}

fn invalid_grant(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_grant", "error_description": description})),
    )
        .into_response()
}

fn token(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// A token endpoint at `/token`: the JWT bearer grant (`assertion`) or, with
/// `client_credentials`, a `private_key_jwt` client (`client_assertion`).
async fn token_endpoint(verifier: Arc<Verifier>, scope: Option<&'static str>) -> String {
    let base = Arc::new(Mutex::new(String::new()));
    let url = base.clone();
    let app = Router::new()
        .route(
            "/token",
            post(move |Form(f): Form<BTreeMap<String, String>>| {
                let v = verifier.clone();
                let url = url.lock().unwrap().clone();
                async move {
                    let jwt = match f.get("grant_type").map(String::as_str) {
                        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => f.get("assertion"),
                        Some("client_credentials")
                            if f.get("client_assertion_type").map(String::as_str)
                                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                                && f.get("client_id") == Some(&v.iss) =>
                        {
                            f.get("client_assertion")
                        }
                        _ => return invalid_grant("unsupported request"),
                    };
                    let Some(jwt) = jwt else {
                        return invalid_grant("no assertion");
                    };
                    match v.check(jwt, &url) {
                        Ok(c) => {
                            if let Some(s) = scope
                                && c.get("scope").and_then(Value::as_str) != Some(s)
                                && f.get("scope").map(String::as_str) != Some(s)
                            {
                                return invalid_grant("scope");
                            }
                            axum::Json(
                                json!({"access_token": token("ya29."), "expires_in": 3599, "token_type": "Bearer"}),
                            )
                            .into_response()
                        }
                        Err(e) => invalid_grant(&e),
                    }
                }
            }),
        )
        .route("/api", get(|| async { "ok" }));
    let addr = serve(app).await;
    *base.lock().unwrap() = format!("{addr}/token");
    addr
}

fn google_key_file(key: &TestKey, email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "connector-test",
        "private_key_id": "kid-4f2a",
        "private_key": key.pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

const SA: &str = "sync@connector-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/drive.readonly https://www.googleapis.com/auth/calendar";

fn google_spec(base: &str, extra: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: google-sa}}
oauth2:
  tokenUrl: "{base}/token"
  grantType: jwtBearer
  scopes: [https://www.googleapis.com/auth/drive.readonly, https://www.googleapis.com/auth/calendar]
  assertion:
    privateKeyKey: key.json
{extra}"#
    )
}

fn google_verifier(key: &TestKey) -> Verifier {
    let mut v = Verifier::new(key, SA);
    v.kid = Some("kid-4f2a".into());
    v
}

#[tokio::test]
async fn google_service_account_key_file_gets_a_token_with_a_fresh_assertion_each_time() {
    let key = rsa_key();
    let v = Arc::new(google_verifier(&key));
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let creds = [("key.json", google_key_file(&key, SA))];
    let creds: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let yaml = google_spec(&base, "");
    let (token, out) = issue(&yaml, &creds).await.unwrap();
    assert!(token.access_token.expose().starts_with("ya29."));
    assert_eq!(out["header_value"], format!("Bearer {}", token.access_token.expose()));
    let lifetime = token.expires_at.unwrap().duration_since(token.issued_at).as_secs();
    assert_eq!(lifetime, 3599);

    let (header, claims) = v.last();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "kid-4f2a", "the key file's private_key_id");
    assert_eq!(claims["iss"], SA, "the key file's client_email");
    assert_eq!(claims["aud"], format!("{base}/token"));
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 120);
    assert!(claims.get("sub").is_none(), "no delegation asked for");

    // Renewal signs a new assertion: a new jti, which the provider accepts.
    issue(&yaml, &creds).await.unwrap();
    let (_, again) = v.last();
    assert_ne!(again["jti"], claims["jti"]);
    assert!(v.refusals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn google_domain_wide_delegation_sets_sub_from_a_template() {
    let key = rsa_key();
    let mut v = google_verifier(&key);
    v.sub = Some("alice@example.com".into());
    let v = Arc::new(v);
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let yaml = google_spec(&base, "    claims: {sub: \"{{ subject }}\"}\n    lifetime: 1h\n");
    let file = google_key_file(&key, SA);
    issue(&yaml, &[("key.json", &file), ("subject", "alice@example.com")])
        .await
        .unwrap();
    let (_, claims) = v.last();
    assert_eq!(claims["sub"], "alice@example.com");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
}

#[tokio::test]
async fn the_google_emulator_refuses_wrong_aud_expired_exp_reused_jti_and_wrong_iss() {
    let key = rsa_key();
    let mut v = google_verifier(&key);
    v.needs_jti = true;
    let v = Arc::new(v);
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let file = google_key_file(&key, SA);
    let creds = creds(&[("key.json", &file)]);
    let engine = engine();
    let refused = |e: EngineError| {
        assert_eq!(e.reason(), "InvalidGrant", "{e}");
        assert!(!e.to_string().contains("eyJ"), "no JWT in {e}");
    };

    let wrong_aud = spec(&google_spec(
        &base,
        "    claims: {aud: \"https://example.com/token\"}\n",
    ));
    refused(issue_with(&engine, &wrong_aud, &creds, None).await.unwrap_err());
    let wrong_iss = spec(&google_spec(
        &base,
        "    claims: {iss: \"someone@else.iam.gserviceaccount.com\"}\n",
    ));
    refused(issue_with(&engine, &wrong_iss, &creds, None).await.unwrap_err());

    // An assertion signed two hours ago has expired when it arrives.
    let good = spec(&google_spec(&base, ""));
    let flow = connector_auth_operator::catalog::compile(&engine, &good).unwrap();
    let inputs = Inputs {
        credentials: creds.clone(),
        ..Default::default()
    };
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let e = engine.obtain(&flow, &inputs, None, "fp", past).await.unwrap_err();
    refused(e);

    // The operator's own request is accepted; the same assertion sent again is not.
    issue_with(&engine, &good, &creds, None).await.unwrap();
    let sent = v.raw.lock().unwrap().last().cloned().unwrap();
    let replay = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &sent),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(
        *v.refusals.lock().unwrap(),
        vec!["InvalidAudience", "InvalidIssuer", "ExpiredSignature", "jti reused"]
    );
}

// --- private_key_jwt ---------------------------------------------------------------------------

fn client_spec(base: &str, assertion: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: entra-cert}}
oauth2:
  tokenUrl: "{base}/token"
  clientId: "{{{{ client_id }}}}"
  clientAuth: private_key_jwt
  scopes: [https://graph.microsoft.com/.default]
  clientAssertion:
{assertion}"#
    )
}

#[tokio::test]
async fn an_entra_certificate_credential_sends_x5t_headers_and_a_fresh_jti_each_request() {
    let key = rsa_key();
    let (cert_pem, cert_der) = certificate_for(&key.pem);
    let mut v = Verifier::new(&key, "app-7c1e");
    v.sub = Some("app-7c1e".into());
    v.needs_jti = true;
    v.needs_nbf = true;
    v.x5t = Some((
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &cert_der,
        )),
        URL_SAFE_NO_PAD.encode(Sha256::digest(&cert_der)),
    ));
    let v = Arc::new(v);
    let base = token_endpoint(v.clone(), Some("https://graph.microsoft.com/.default")).await;
    // A kubernetes.io/tls Secret (tls.crt, tls.key) with the client id beside them; the key
    // here is PKCS#1.
    let key_pem = pkcs1(&key);
    let creds = [
        ("tls.key", key_pem.as_str()),
        ("tls.crt", cert_pem.as_str()),
        ("client_id", "app-7c1e"),
    ];
    let yaml = client_spec(&base, "    privateKeyKey: tls.key\n    certificateKey: tls.crt\n");
    issue(&yaml, &creds).await.unwrap();
    issue(&yaml, &creds).await.unwrap();
    let accepted = v.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 2);
    let (header, claims) = &accepted[0];
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "app-7c1e");
    assert_eq!(claims["sub"], "app-7c1e");
    assert_eq!(claims["aud"], format!("{base}/token"));
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_ne!(accepted[0].1["jti"], accepted[1].1["jti"]);

    // The same assertion sent again is refused (Entra and Keycloak remember jti).
    let sent = v.raw.lock().unwrap().last().cloned().unwrap();
    let replay = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-7c1e"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &sent),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(*v.refusals.lock().unwrap(), vec!["jti reused"]);
}

#[tokio::test]
async fn a_keycloak_client_with_an_ec_sec1_key_signs_es256_and_wrong_claims_are_refused() {
    let key = p256_key();
    let mut v = Verifier::new(&key, "connector");
    v.sub = Some("connector".into());
    v.needs_jti = true;
    v.needs_nbf = true;
    let v = Arc::new(v);
    let base = token_endpoint(v.clone(), None).await;
    let key_pem = sec1(&key);
    let creds = [("private_key", key_pem.as_str()), ("client_id", "connector")];
    let (token, _) = issue(&client_spec(&base, "    algorithm: ES256\n"), &creds)
        .await
        .unwrap();
    assert!(!token.access_token.is_empty());
    assert_eq!(v.last().0["alg"], "ES256");

    for (claims, refusal) in [
        ("{aud: \"https://idp.example.com/realms/x\"}", "InvalidAudience"),
        ("{iss: \"intruder\"}", "InvalidIssuer"),
    ] {
        let e = issue(&client_spec(&base, &format!("    claims: {claims}\n")), &creds)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "InvalidGrant", "{e}");
        assert_eq!(v.refusals.lock().unwrap().last().unwrap(), refusal);
    }
}

// --- GitHub Apps -------------------------------------------------------------------------------

fn github_spec(base: &str, extra: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: github-app}}
githubApp:
  apiUrl: "{base}"
  appId: "81234"
  installationId: "{{{{ installation_id }}}}"
{extra}"#
    )
}

/// GitHub's own checks: RS256 by the app's key, `iss` = app id, `iat` not in the future,
/// `exp` at most 10 minutes after `iat`; there is no `aud`.
fn github_checks(jwt: &str, key: &TestKey, app_id: &str) -> Result<Value, String> {
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_aud = false;
    v.set_issuer(&[app_id]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    let k = DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).unwrap();
    let c = jsonwebtoken::decode::<Value>(jwt, &k, &v)
        .map_err(|e| format!("{:?}", e.kind()))?
        .claims;
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    if iat > now_secs() {
        return Err("iat in the future".into());
    }
    if exp - iat > 600 {
        return Err("exp too far in the future".into());
    }
    Ok(c)
}

#[tokio::test]
async fn github_accepts_the_app_jwt_and_the_installation_token_opens_the_api() {
    let key = rsa_key();
    let seen: Arc<Mutex<Vec<Result<Value, String>>>> = Arc::default();
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let public = TestKey {
        pem: String::new(),
        public_pem: key.public_pem.clone(),
        alg: Algorithm::RS256,
    };
    let public = Arc::new(public);
    let (s, b, p) = (seen.clone(), bodies.clone(), public.clone());
    let app = Router::new()
        .route(
            "/api/v3/app/installations/{id}/access_tokens",
            post(move |Path(id): Path<String>, headers: HeaderMap, body: String| {
                let (s, b, p) = (s.clone(), b.clone(), p.clone());
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    if id != "4242" || h("accept") != "application/vnd.github+json" || h("user-agent").is_empty() {
                        return (StatusCode::NOT_FOUND, "").into_response();
                    }
                    let auth = h("authorization");
                    let checked = github_checks(auth.strip_prefix("Bearer ").unwrap_or(""), &p, "81234");
                    let ok = checked.is_ok();
                    s.lock().unwrap().push(checked);
                    if !ok {
                        return (StatusCode::UNAUTHORIZED, "bad JWT").into_response();
                    }
                    if !body.is_empty() {
                        b.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                    }
                    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"token": token("ghs_"), "expires_at": expires.to_string()})),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/api/v3/installation/repositories",
            get(|headers: HeaderMap| async move {
                let ok = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("Bearer ghs_"));
                if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
            }),
        );
    let base = format!("{}/api/v3", serve(app).await);
    let key_pem = pkcs1(&key);
    let yaml = github_spec(
        &base,
        "  repositories: [connector]\n  permissions: {contents: read}\n  assertion: {privateKeyKey: app.pem}\n",
    );
    let (token, out) = issue(&yaml, &[("app.pem", &key_pem), ("installation_id", "4242")])
        .await
        .unwrap();
    assert!(token.access_token.expose().starts_with("ghs_"));
    let lifetime = token.expires_at.unwrap().duration_since(token.issued_at).as_secs();
    assert!((3598..=3600).contains(&lifetime), "{lifetime}");
    let renew = token.renew_at.unwrap().duration_since(token.issued_at).as_secs();
    assert!((2160..=2400).contains(&renew), "renewed at 2/3 of the hour: {renew}");
    assert_eq!(call_api(&format!("{base}/installation/repositories"), &out).await, 200);

    let claims = seen.lock().unwrap().last().cloned().unwrap().unwrap();
    assert_eq!(claims["iss"], "81234");
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 600, "9 minutes plus iat 60s in the past");
    assert!(iat <= now_secs() - 59, "iat backdated against clock drift");
    assert_eq!(
        bodies.lock().unwrap().last().unwrap(),
        &json!({"repositories": ["connector"], "permissions": {"contents": "read"}})
    );

    // Another app's key, or another app id, is refused by GitHub.
    let other = rsa_key();
    let e = issue(&yaml, &[("app.pem", &other.pem), ("installation_id", "4242")])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "CredentialsRejected", "{e}");
    let wrong_app = yaml.replace("appId: \"81234\"", "appId: \"99\"");
    issue(&wrong_app, &[("app.pem", &key_pem), ("installation_id", "4242")])
        .await
        .unwrap_err();
    let expired = {
        let engine = engine();
        let s = spec(&yaml);
        let flow = connector_auth_operator::catalog::compile(&engine, &s).unwrap();
        let inputs = Inputs {
            credentials: creds(&[("app.pem", &key_pem), ("installation_id", "4242")]),
            ..Default::default()
        };
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(15);
        engine.obtain(&flow, &inputs, None, "fp", past).await.unwrap_err()
    };
    assert_eq!(expired.reason(), "CredentialsRejected");
    let refusals: Vec<String> = seen.lock().unwrap().iter().filter_map(|r| r.clone().err()).collect();
    assert_eq!(refusals, vec!["InvalidSignature", "InvalidIssuer", "ExpiredSignature"]);
}

#[test]
fn a_github_app_jwt_longer_than_ten_minutes_is_refused_before_sending() {
    let e = connector_auth_operator::catalog::compile(
        &engine(),
        &spec(&github_spec("https://api.github.com", "  assertion: {lifetime: 15m}\n")),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "InvalidSpec");
    assert!(e.to_string().contains("spec.githubApp.assertion.lifetime"), "{e}");
}

// --- chained steps -----------------------------------------------------------------------------

/// Log in with a password → a session id (JSON) and a CSRF cookie; exchange both for a token.
async fn two_step_provider() -> String {
    let app = Router::new()
        .route(
            "/api/login",
            post(|Form(f): Form<BTreeMap<String, String>>| async move {
                if f.get("user").map(String::as_str) != Some("svc")
                    || f.get("password").map(String::as_str) != Some("pw&1")
                {
                    return (StatusCode::UNAUTHORIZED, "bad login").into_response();
                }
                (
                    [("set-cookie", "csrf=c-77; Path=/; HttpOnly")],
                    axum::Json(json!({"session": {"id": "s-123"}})),
                )
                    .into_response()
            }),
        )
        .route(
            "/api/session/token",
            post(|headers: HeaderMap| async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                if h("x-session") != "s-123" || h("x-csrf") != "c-77" {
                    return (StatusCode::FORBIDDEN, "no session").into_response();
                }
                axum::Json(json!({"token": token("tok-"), "ttl": 900})).into_response()
            }),
        );
    serve(app).await
}

fn chained_spec(base: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: c}}
refreshableToken:
  steps:
  - name: login
    url: "{base}/api/login"
    form: {{user: "{{{{ username }}}}", password: "{{{{ password }}}}"}}
    extract: {{session_id: {{jsonPath: session.id}}, csrf: {{cookie: csrf}}}}
  authorization:
    url: "{base}/api/session/token"
    headers: {{X-Session: "{{{{ steps.login.session_id }}}}", X-CSRF: "{{{{ steps.login.csrf }}}}"}}
  accessToken: {{jsonPath: token}}
  expiresIn: {{jsonPath: ttl}}
"#
    )
}

#[tokio::test]
async fn a_two_step_login_passes_the_session_of_the_first_step_to_the_second() {
    let base = two_step_provider().await;
    let (token, _) = issue(&chained_spec(&base), &[("username", "svc"), ("password", "pw&1")])
        .await
        .unwrap();
    assert!(token.access_token.expose().starts_with("tok-"));
    assert_eq!(token.expires_at.unwrap().duration_since(token.issued_at).as_secs(), 900);
}

#[tokio::test]
async fn a_failing_chained_step_names_itself() {
    let base = two_step_provider().await;
    let e = issue(&chained_spec(&base), &[("username", "svc"), ("password", "wrong")])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "CredentialsRejected");
    assert!(e.to_string().starts_with("step login request to 127.0.0.1"), "{e}");

    let missing = chained_spec(&base).replace("session.id", "session.key");
    let e = issue(&missing, &[("username", "svc"), ("password", "pw&1")])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ValueNotFound");
    assert!(e.to_string().contains("step login response"), "{e}");

    let typo = chained_spec(&base).replace("steps.login.csrf", "steps.logn.csrf");
    let e = issue(&typo, &[("username", "svc"), ("password", "pw&1")])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "UndefinedVariable");
    assert!(e.to_string().contains("steps.logn.csrf"), "{e}");
    assert!(
        e.to_string().contains("steps.login.session_id"),
        "lists what exists: {e}"
    );
    assert!(!e.to_string().contains("s-123"), "never the values: {e}");
}

#[test]
fn chained_steps_need_unique_names_that_extract_something() {
    let base = "https://example.com";
    let dup = chained_spec(base).replace(
        "  authorization:",
        "  - name: login\n    url: https://example.com/x\n    extract: {a: {jsonPath: a}}\n  authorization:",
    );
    let e = connector_auth_operator::catalog::compile(&engine(), &spec(&dup)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid spec: spec.refreshableToken.steps[login]: two steps have this name"
    );
}

// --- bad keys ----------------------------------------------------------------------------------

#[tokio::test]
async fn unusable_keys_are_specific_errors_naming_the_secret_and_key_but_never_the_material() {
    let rsa = rsa_key();
    let ec = p256_key();
    let other = rsa_key();
    let (other_cert, _) = certificate_for(&other.pem);
    let (cert, _) = certificate_for(&rsa.pem);
    let v = Arc::new(Verifier::new(&rsa, "c"));
    let base = token_endpoint(v.clone(), None).await;
    let field = "spec.oauth2.clientAssertion: key `private_key` of Secret entra-cert";
    let cases: Vec<(String, &str, &str, String)> = vec![
        (rsa.public_pem.clone(), "", "", format!("{field} holds a public key, not a private key")),
        (cert.clone(), "", "", format!("{field} holds a certificate, not a private key")),
        ("not a key at all".into(), "", "", format!("{field} is not PEM (expected `-----BEGIN PRIVATE KEY-----`) nor a JSON key file")),
        (
            r#"{"type": "service_account", "client_email": "x@y"}"#.into(),
            "",
            "",
            format!("{field} is a JSON document without a `private_key` field"),
        ),
        (ec.pem.clone(), "    algorithm: RS256\n", "", format!("{field} is an EC P-256 key, but algorithm RS256 needs an RSA key")),
        (rsa.pem.clone(), "    algorithm: ES256\n", "", format!("{field} is an RSA key, but algorithm ES256 needs an EC P-256 key")),
        (
            rsa.pem.clone(),
            "    certificateKey: cert\n",
            &other_cert,
            "spec.oauth2.clientAssertion: key `cert` of Secret entra-cert holds a certificate that the private key does not belong to".into(),
        ),
    ];
    for (material, extra, cert, expected) in cases {
        let yaml = client_spec(&base, &format!("    privateKeyKey: private_key\n{extra}"));
        let e = issue(&yaml, &[("private_key", &material), ("client_id", "c"), ("cert", cert)])
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "InvalidKey", "{e}");
        assert_eq!(e.to_string(), expected);
        for line in material.lines().filter(|l| l.len() > 20) {
            assert!(!e.to_string().contains(line), "no key material in {e}");
        }
    }
    assert!(v.raw.lock().unwrap().is_empty(), "nothing was sent");

    let e = issue(
        &client_spec(&base, "    claims: {sub: \"{{ tenant_user }}\"}\n"),
        &[("private_key", &rsa.pem), ("client_id", "c")],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "UndefinedVariable");
    assert_eq!(
        e.to_string(),
        "template spec.oauth2.clientAssertion.claims.sub uses undefined variable `tenant_user`; available: client_id, now, private_key, token_url"
    );

    let e = issue(
        &client_spec(&base, "    privateKeyKey: tls.key\n"),
        &[("client_id", "c")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "credentials Secret has no key `tls.key` (needed by spec.oauth2.clientAssertion)"
    );
}

#[test]
fn an_assertion_block_needs_its_grant_or_client_authentication() {
    let yaml = r#"
credentialsRef: {name: c}
oauth2:
  tokenUrl: https://example.com/token
  assertion: {privateKeyKey: key.json}
"#;
    let e = connector_auth_operator::catalog::compile(&engine(), &spec(yaml)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid spec: spec.oauth2.assertion: is only used with grantType jwtBearer"
    );
    let yaml = "credentialsRef: {name: c}\noauth2: {tokenUrl: https://example.com/token, grantType: jwtBearer}\n";
    let e = connector_auth_operator::catalog::compile(&engine(), &spec(yaml)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid spec: spec.oauth2.assertion: is required by grantType jwtBearer"
    );
}

// --- redaction ---------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn neither_the_key_nor_an_assertion_appears_in_trace_logs_errors_or_the_output() {
    let logs = Captured::default();
    let writer = logs.clone();
    // Global, not scoped: a scoped subscriber misses callsites that tests running in parallel
    // registered first. The other tests' lines in the capture do no harm.
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let key = rsa_key();
    let mut v = google_verifier(&key);
    v.needs_jti = true;
    let v = Arc::new(v);
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let file = google_key_file(&key, SA);
    let (token, out) = issue(&google_spec(&base, ""), &[("key.json", &file)]).await.unwrap();
    let refused = issue(
        &google_spec(&base, "    claims: {aud: \"https://example.com\"}\n"),
        &[("key.json", &file)],
    )
    .await
    .unwrap_err();
    let bad_key = issue(&google_spec(&base, "    algorithm: ES256\n"), &[("key.json", &file)])
        .await
        .unwrap_err();
    assert_eq!(bad_key.reason(), "InvalidKey");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token response"), "the trace logs were captured");
    let mut haystacks = vec![
        logs,
        refused.to_string(),
        bad_key.to_string(),
        format!("{token:?}"),
        serde_json::to_string(&out).unwrap(),
    ];
    haystacks.push(format!("{refused:?}"));
    let sent = v.raw.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    let key_lines: Vec<&str> = key.pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for h in &haystacks {
        for jwt in &sent {
            assert!(!h.contains(jwt.as_str()), "an assertion leaked");
            let signature = jwt.rsplit('.').next().unwrap();
            assert!(!h.contains(signature), "an assertion's signature leaked");
        }
        for line in &key_lines {
            assert!(!h.contains(line), "key material leaked");
        }
        assert!(!h.contains("kid-4f2a\",\"private_key"), "the key file leaked");
    }
}

// --- the controller ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_publishes_a_service_account_token_and_keeps_keys_and_assertions_out_of_events_and_status() {
    use connector_auth_operator::api::ConnectorAuth;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    use support::operator::{Operator, Source};

    let key = rsa_key();
    let v = Arc::new(google_verifier(&key));
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let server = api_server().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns");
    let file = google_key_file(&key, SA);
    let creds: Secret =
        serde_json::from_value(json!({"metadata": {"name": "google-sa"}, "stringData": {"key.json": file}})).unwrap();
    secrets.create(&PostParams::default(), &creds).await.unwrap();
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), "ns");
    for (name, extra) in [
        ("drive", ""),
        ("wrong-aud", "    claims: {aud: \"https://example.com\"}\n"),
    ] {
        let spec: Value = serde_saphyr::from_str(&google_spec(&base, extra)).unwrap();
        let ca: ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec,
        }))
        .unwrap();
        cas.create(&PostParams::default(), &ca).await.unwrap();
    }
    let op = Operator::start(Source::Url(server.url()), "op", false);
    let token = eventually(10, "the token is published", || async {
        let s = server.object("", "secrets", Some("ns"), "drive-token")?;
        let t = s["data"]["access_token"].as_str()?.to_string();
        Some(String::from_utf8(STANDARD.decode(t).unwrap()).unwrap())
    })
    .await;
    assert!(token.starts_with("ya29."));
    let reason = eventually(10, "the refused resource reports why", || async {
        let ca = server.object("connectorauth.dev", "connectorauths", Some("ns"), "wrong-aud")?;
        let ready = ca["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready" && c["reason"] != "Pending")?
            .clone();
        Some(ready["reason"].as_str()?.to_string())
    })
    .await;
    assert_eq!(reason, "InvalidGrant");
    op.stop().await;

    let events = serde_json::to_string(&server.objects("events.k8s.io", "events")).unwrap();
    assert!(events.contains("InvalidGrant"), "the refusal was recorded as an Event");
    let status = serde_json::to_string(&server.objects("connectorauth.dev", "connectorauths")).unwrap();
    let output = server.object("", "secrets", Some("ns"), "drive-token").unwrap();
    let output: Vec<String> = output["data"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    let output = output.join("\n");
    let sent = v.raw.lock().unwrap().clone();
    assert!(sent.len() >= 2, "both resources sent assertions");
    let key_lines: Vec<&str> = key.pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for (what, h) in [("Events", &events), ("status", &status), ("the output Secret", &output)] {
        for jwt in &sent {
            let signature = jwt.rsplit('.').next().unwrap();
            assert!(!h.contains(signature), "an assertion leaked into {what}");
        }
        for line in &key_lines {
            assert!(!h.contains(line), "key material leaked into {what}");
        }
    }
}

#[test]
fn every_supported_algorithm_signs_what_the_public_key_verifies_with_the_kid_set() {
    use connector_auth_operator::api::{JwtAlgorithm as J, SignedAssertion};
    use connector_auth_operator::engine::assertion::{Defaults, Plan, SigningKey, sign};

    let gen_key = |alg: &'static rcgen::SignatureAlgorithm| {
        let k = rcgen::KeyPair::generate_for(alg).unwrap();
        (k.serialize_pem(), k.public_key_pem())
    };
    let rsa = gen_key(&rcgen::PKCS_RSA_SHA256);
    let p256 = gen_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let p384 = gen_key(&rcgen::PKCS_ECDSA_P384_SHA384);
    let ed = gen_key(&rcgen::PKCS_ED25519);
    let cases = [
        (&rsa, J::RS256, Algorithm::RS256),
        (&rsa, J::RS384, Algorithm::RS384),
        (&rsa, J::RS512, Algorithm::RS512),
        (&rsa, J::PS256, Algorithm::PS256),
        (&rsa, J::PS384, Algorithm::PS384),
        (&rsa, J::PS512, Algorithm::PS512),
        (&p256, J::ES256, Algorithm::ES256),
        (&p384, J::ES384, Algorithm::ES384),
        (&ed, J::EdDSA, Algorithm::EdDSA),
    ];
    let plan = Plan::compile(
        "spec.x",
        "x",
        &SignedAssertion::default(),
        Defaults {
            claims: vec![],
            lifetime: "2m",
            backdate_secs: 0,
            not_before: true,
            jti: true,
            iss_from_key_file: false,
        },
    )
    .unwrap();
    for ((pem, public), asked, alg) in cases {
        let key = SigningKey::load(pem).unwrap();
        assert_eq!(key.algorithm(Some(asked)).unwrap(), alg);
        let claims = serde_json::Map::from_iter([("iss".to_string(), json!("me"))]);
        let jwt = sign(
            &key,
            alg,
            Some("kid-1".into()),
            None,
            claims,
            jiff::Timestamp::now(),
            &plan,
            "jti-1",
        )
        .unwrap();
        let decoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(public.as_bytes()),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(public.as_bytes()),
            _ => DecodingKey::from_rsa_pem(public.as_bytes()),
        }
        .unwrap();
        let mut v = Validation::new(alg);
        v.validate_aud = false;
        v.validate_nbf = true;
        v.set_issuer(&["me"]);
        let data = jsonwebtoken::decode::<Value>(&jwt, &decoding, &v).unwrap_or_else(|e| panic!("{asked:?}: {e}"));
        assert_eq!(data.header.kid.as_deref(), Some("kid-1"));
        assert_eq!(data.claims["jti"], "jti-1");
        assert_eq!(data.claims["nbf"], data.claims["iat"]);
    }
}

#[tokio::test]
async fn local_mode_issues_tokens_for_a_service_account_and_a_chained_login() {
    use connector_auth_operator::local::LocalRunner;

    let key = rsa_key();
    let v = Arc::new(google_verifier(&key));
    let base = token_endpoint(v.clone(), Some(SCOPE)).await;
    let chain_base = two_step_provider().await;
    let indent = |yaml: &str| {
        yaml.trim()
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let file = serde_json::to_string(&google_key_file(&key, SA)).unwrap();
    let manifests = format!(
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: drive, namespace: ns}}\nspec:\n{}\n---\n\
         apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: erp, namespace: ns}}\nspec:\n{}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: google-sa, namespace: ns}}\nstringData:\n  key.json: {file}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: c, namespace: ns}}\nstringData: {{username: svc, password: 'pw&1'}}\n",
        indent(&google_spec(&base, "")),
        indent(&chained_spec(&chain_base)),
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("all.yaml"), manifests).unwrap();
    let out = tmp.path().join("out");
    let mut runner = LocalRunner::new(engine(), tmp.path().join("all.yaml"), out.clone());
    let reports = runner.pass().await.unwrap();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert!(r.result.is_ok(), "{}: {:?}", r.name, r.result.as_ref().err());
    }
    let google = std::fs::read_to_string(out.join("ns/drive-token/access_token")).unwrap();
    assert!(google.starts_with("ya29."), "{google}");
    let erp = std::fs::read_to_string(out.join("ns/erp-token/access_token")).unwrap();
    assert!(erp.starts_with("tok-"), "{erp}");
}

//! The operator killed abruptly (its runtime dropped mid-flight, no graceful shutdown) at every
//! step of a refresh, against a provider that rotates refresh tokens and revokes the whole
//! token family when a used one comes back. A fresh operator then takes over.
//!
//! The steps of one routine refresh (`RenewalDue`), in the order the controller performs them:
//!
//! | # | step                                                          | held by              |
//! |---|---------------------------------------------------------------|----------------------|
//! | 1 | GET the credentials Secret (reconcile)                        | API server gate      |
//! | 2 | GET the state Secret (driver: load)                           | API server gate      |
//! | 3 | GET the output Secret (driver: load)                          | API server gate      |
//! | 4 | PATCH the state Secret: write-ahead mark of the refresh token | API server gate      |
//! | 5 | token request received by the provider, not yet acted on     | provider gate        |
//! | 6 | provider has rotated the refresh token, answer not yet sent   | provider gate        |
//! | 7 | PATCH the state Secret: the new refresh token, mark cleared   | API server gate      |
//! | 8 | PATCH the output Secret (the new access token is published)   | API server gate      |
//! | 9 | PATCH the ConnectorAuth status                                | API server gate      |
//!
//! (A routine refresh sends no Event.) For each step the operator is killed while the request
//! is held; the held request then lands (is acted on although nobody hears the answer) or is
//! lost, and a new operator starts. Every test asserts that the token family is never revoked,
//! that the output Secret ends up with a working token, that the stored refresh token is the
//! provider's current one, and the exact token requests made after the first issuance.
//!
//! Token requests beyond the one refresh, and why each is unavoidable and safe:
//! - step 7 landed, or step 8 lost: the new refresh token is stored but the access token that
//!   came with it was never published (it lives only in the state of a dead process), so the new
//!   operator refreshes once more — with the newest refresh token, which is no reuse.
//! - steps 4 (landed) to 7 (lost): the stored mark says a refresh with this token was under way
//!   and its answer never stored, so the provider may have rotated it (in 5-lost and 4-landed it
//!   did not, but nothing stored can tell). The token is never sent again: a scheme that can log
//!   in does so (a new family; the old one is abandoned, not revoked); a scheme that can only
//!   refresh reports `RefreshTokenInDoubt` without any token request and recovers as soon as a
//!   new refresh token is put into the credentials Secret.
//!
//! At the end, a slow API server: every request of a refresh answered late, the refresh token
//! write answered seconds later, the output write timed out by the server. The operator waits
//! (kube's client has no response timeout here) or retries the write, and never repeats the
//! token request.
//!
//! Synchronisation is by gates and by polling conditions with deadlines. The only timed waits
//! are the renewal time itself (read steps: the gate goes up just before the refresh pass) and
//! two pauses that give a wrong second token request time to show.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connector_auth_operator::api::ConnectorAuth;
use fake_apiserver::{Delay, FakeApiServer, Gate};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::{Book, api_server, call_api, rotating};

const NS: &str = "ns";
const CREDENTIALS: &str = "creds";
const STATE: &str = "crm-connectorauth-state";
const OUTPUT: &str = "crm-token";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scheme {
    /// `oauth2` password grant: logs in, then refreshes with the rotating refresh tokens.
    Password,
    /// `oauth2` refreshToken grant: an onboarding refresh token and nothing to log in with.
    RefreshOnly,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    ReadCredentials,
    ReadState,
    ReadOutput,
    MarkRefreshToken,
    TokenRequestReceived,
    TokenRequestActedOn,
    StoreRefreshToken,
    WriteOutput,
    PatchStatus,
}

/// What becomes of the held request once the operator is dead.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Let through: the API server applies the write, the provider acts on the request.
    Lands,
    /// Answered with an error instead: it never takes effect.
    Lost,
}

/// What the new operator is expected to do.
enum Expect {
    /// It converges; these token requests (grant types) follow the first issuance in all.
    Recovers(&'static [&'static str]),
    /// It reports `RefreshTokenInDoubt` without any token request; once a new onboarding
    /// refresh token is in the credentials, it converges. `killed` is what the killed operator
    /// sent after the first issuance.
    InDoubtUntilReseeded { killed: &'static [&'static str] },
}

struct World {
    server: FakeApiServer,
    client: kube::Client,
    base: String,
    book: Arc<Book>,
}

impl World {
    async fn new(scheme: Scheme) -> World {
        // First tokens live 2 s, so the refresh under test comes about 1.3 s after issuance.
        let (base, book) = rotating(2).await;
        let server = api_server().await;
        let client = server.client();
        let mut data = vec![("client_id", "rot-client"), ("client_secret", "rot-secret")];
        let grant = match scheme {
            Scheme::Password => {
                data.extend([("username", "rot-user"), ("password", "rot-pass")]);
                "password"
            }
            Scheme::RefreshOnly => {
                data.push(("refresh_token", "rt-seed"));
                "refreshToken"
            }
        };
        let mut creds = Secret::default();
        creds.metadata.name = Some(CREDENTIALS.into());
        creds.data = Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        Api::<Secret>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &creds)
            .await
            .unwrap();
        let ca: ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": "crm", "namespace": NS},
            "spec": {
                "credentialsRef": {"name": CREDENTIALS},
                "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": grant},
            },
        }))
        .unwrap();
        Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &ca)
            .await
            .unwrap();
        World {
            server,
            client,
            base,
            book,
        }
    }

    fn start(&self, identity: &str) -> Operator {
        Operator::start(Source::Url(self.server.url()), identity, false)
    }

    /// A stored Secret's data, decoded; read directly, so no request is recorded.
    fn secret(&self, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
        let s = self.server.object("", "secrets", Some(NS), name)?;
        let data = s["data"].as_object()?;
        Some(
            data.iter()
                .map(|(k, v)| {
                    let bytes = STANDARD.decode(v.as_str().unwrap()).unwrap();
                    (k.clone(), String::from_utf8(bytes).unwrap())
                })
                .collect(),
        )
    }

    fn state(&self) -> Value {
        self.secret(STATE)
            .map(|d| serde_json::from_str(&d["state.json"]).unwrap())
            .unwrap_or(Value::Null)
    }

    fn status(&self) -> Value {
        self.server
            .object("connectorauth.dev", "connectorauths", Some(NS), "crm")
            .map(|ca| ca["status"].clone())
            .unwrap_or(Value::Null)
    }

    fn access_token(&self) -> Option<String> {
        self.secret(OUTPUT).map(|d| d["access_token"].clone())
    }

    fn renew_at(&self) -> jiff::Timestamp {
        let s = self.server.object("", "secrets", Some(NS), OUTPUT).unwrap();
        s["metadata"]["annotations"]["connectorauth.dev/renew-at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn output_works(&self) -> bool {
        let Some(data) = self.secret(OUTPUT) else {
            return false;
        };
        call_api(&format!("{}/api/me", self.base), &data).await == 200
    }

    fn ready(&self) -> bool {
        let status = self.status();
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready
            && self
                .secret(OUTPUT)
                .is_some_and(|d| status["expiresAt"] == d["expires_at"].as_str())
    }

    /// The stored refresh token is the provider's current one and no refresh is marked.
    fn state_is_current(&self) -> bool {
        let state = self.state();
        state["inFlight"].is_null()
            && state["refreshToken"]
                .as_str()
                .is_some_and(|rt| self.book.is_current(rt))
    }

    fn has_condition_reason(&self, reason: &str) -> bool {
        self.status()["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["reason"] == reason)
    }

    /// Converged: a working token other than `replaced` is published and reported, the newest
    /// refresh token is stored, and the operator has read the state since `clear_requests`.
    async fn converged(&self, replaced: &str) -> bool {
        let looked = self
            .server
            .requests()
            .iter()
            .any(|r| r.verb == "get" && r.name.as_deref() == Some(STATE));
        looked
            && self.access_token().is_some_and(|t| t != replaced)
            && self.state_is_current()
            && self.ready()
            && self.output_works().await
    }

    /// Holds the request of `step` at a gate (set up just before the refresh).
    fn arm(&self, step: Step) -> Gate {
        let gate = Gate::new();
        let held = |path: &str, method: &str| self.server.delay_next(Delay::at(&gate, path).method(method));
        match step {
            Step::ReadCredentials => held(&format!("/secrets/{CREDENTIALS}"), "GET"),
            Step::ReadState => held(&format!("/secrets/{STATE}"), "GET"),
            Step::ReadOutput => held(&format!("/secrets/{OUTPUT}"), "GET"),
            Step::MarkRefreshToken => held(&format!("/secrets/{STATE}"), "PATCH"),
            Step::StoreRefreshToken => {
                // The first state write of the refresh is the mark: let it pass.
                let mark = Gate::new();
                mark.open();
                self.server
                    .delay_next(Delay::at(&mark, &format!("/secrets/{STATE}")).method("PATCH"));
                held(&format!("/secrets/{STATE}"), "PATCH");
            }
            Step::WriteOutput => held(&format!("/secrets/{OUTPUT}"), "PATCH"),
            Step::PatchStatus => held("/connectorauths/crm/status", "PATCH"),
            Step::TokenRequestReceived => return self.book.hold_next_request(),
            Step::TokenRequestActedOn => return self.book.hold_next_answer(),
        }
        gate
    }
}

/// Polls `f` every 20 ms until it holds, or fails the test after `secs`.
async fn eventually(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn after(all: &[String], first: usize) -> Vec<&str> {
    all[first..].iter().map(String::as_str).collect()
}

async fn kill_at(scheme: Scheme, step: Step, fate: Fate, expect: Expect) {
    let w = World::new(scheme).await;
    let a = w.start("op-a");
    eventually(10, "first issuance published and reported", async || {
        w.ready() && w.output_works().await
    })
    .await;
    let first_token = w.access_token().unwrap();
    let issued = w.book.grants().len();
    assert_eq!(issued, 1, "one token request for the first issuance");
    // The refreshed token lives an hour: after the refresh under test all is quiet.
    w.book.ttl.store(3600, Ordering::SeqCst);
    if matches!(step, Step::ReadCredentials | Step::ReadState | Step::ReadOutput) {
        just_before_the_refresh(&w).await;
    }
    let gate = w.arm(step);
    tokio::time::timeout(Duration::from_secs(10), gate.arrived())
        .await
        .unwrap_or_else(|_| panic!("{step:?}: the refresh never reached the step"));

    a.kill();
    let at_kill = w.book.grants();
    let sent_refresh = !matches!(
        step,
        Step::ReadCredentials | Step::ReadState | Step::ReadOutput | Step::MarkRefreshToken
    );
    assert_eq!(
        after(&at_kill, issued),
        if sent_refresh { vec!["refresh_token"] } else { vec![] },
        "{step:?}: token requests when the operator was killed"
    );

    match fate {
        Fate::Lands => {
            let (rv, handled) = (w.server.resource_version(), w.book.handled.load(Ordering::SeqCst));
            gate.open();
            match step {
                Step::MarkRefreshToken | Step::StoreRefreshToken | Step::WriteOutput | Step::PatchStatus => {
                    eventually(5, "the held write landed", async || w.server.resource_version() > rv).await
                }
                Step::TokenRequestReceived => {
                    eventually(5, "the provider acted on the held request", async || {
                        w.book.handled.load(Ordering::SeqCst) > handled
                    })
                    .await
                }
                _ => {}
            }
        }
        Fate::Lost => gate.answer(if sent_refresh { 502 } else { 500 }),
    }

    w.server.clear_requests();
    let b = w.start("op-b");
    let expected: Vec<&str> = match expect {
        Expect::Recovers(calls) => {
            eventually(10, "the new operator converged", async || {
                w.converged(&first_token).await
            })
            .await;
            calls.to_vec()
        }
        Expect::InDoubtUntilReseeded { killed } => {
            eventually(10, "RefreshTokenInDoubt reported", async || {
                w.has_condition_reason("RefreshTokenInDoubt")
            })
            .await;
            assert_eq!(
                w.book.grants(),
                at_kill,
                "the token in doubt is never sent, and nothing else is tried"
            );
            assert!(
                w.state()["inFlight"].is_object(),
                "the mark stays until the token is replaced"
            );
            // A person puts a new onboarding token into the credentials Secret.
            w.book.refresh.lock().unwrap().insert("rt-reseeded".into(), (77, true));
            let patch = json!({"data": {"refresh_token": ByteString(b"rt-reseeded".to_vec())}});
            Api::<Secret>::namespaced(w.client.clone(), NS)
                .patch(CREDENTIALS, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            eventually(10, "converged on the new onboarding token", async || {
                w.converged(&first_token).await
            })
            .await;
            killed.iter().copied().chain(["refresh_token"]).collect()
        }
    };
    b.stop().await;

    assert!(
        !w.book.family_revoked(),
        "{step:?}/{fate:?}: a used refresh token was sent again and the family revoked"
    );
    assert_eq!(
        after(&w.book.grants(), issued),
        expected,
        "{step:?}/{fate:?}: token requests after the first issuance"
    );
    assert!(w.state_is_current(), "the newest refresh token is stored");
    assert!(w.output_works().await, "the published token works");
}

use Expect::*;
use Fate::*;
use Scheme::*;
use Step::*;

const REFRESH: &[&str] = &["refresh_token"];
/// The refresh token's answer was stored but its access token never published: one more
/// refresh, with the newest refresh token.
const REFRESH_TWICE: &[&str] = &["refresh_token", "refresh_token"];
/// Killed after the mark was stored and before the answer was: no replay, a login instead.
const REFRESH_THEN_LOGIN: &[&str] = &["refresh_token", "password"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_reading_the_credentials_the_refresh_is_simply_redone() {
    kill_at(Password, ReadCredentials, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_reading_the_state_the_refresh_is_simply_redone() {
    kill_at(Password, ReadState, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_reading_the_output_the_refresh_is_simply_redone() {
    kill_at(Password, ReadOutput, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_marking_a_lost_mark_changes_nothing() {
    kill_at(Password, MarkRefreshToken, Lost, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_marking_a_stored_mark_makes_the_next_operator_log_in() {
    kill_at(Password, MarkRefreshToken, Lands, Recovers(&["password"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_the_token_request_unanswered_the_next_operator_logs_in_instead_of_replaying() {
    kill_at(Password, TokenRequestReceived, Lost, Recovers(REFRESH_THEN_LOGIN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_the_token_request_acted_on_later_the_family_survives() {
    kill_at(Password, TokenRequestReceived, Lands, Recovers(REFRESH_THEN_LOGIN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_provider_rotated_the_token_the_family_survives() {
    kill_at(Password, TokenRequestActedOn, Lands, Recovers(REFRESH_THEN_LOGIN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_storing_the_new_refresh_token_that_lands_it_is_used_next() {
    kill_at(Password, StoreRefreshToken, Lands, Recovers(REFRESH_TWICE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_storing_the_new_refresh_token_that_is_lost_the_old_one_is_never_replayed() {
    kill_at(Password, StoreRefreshToken, Lost, Recovers(REFRESH_THEN_LOGIN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_publishing_a_landed_output_needs_no_token_request() {
    kill_at(Password, WriteOutput, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_publishing_a_lost_output_refreshes_with_the_newest_token() {
    kill_at(Password, WriteOutput, Lost, Recovers(REFRESH_TWICE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_patching_status_that_lands_needs_no_token_request() {
    kill_at(Password, PatchStatus, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_patching_status_that_is_lost_needs_no_token_request() {
    kill_at(Password, PatchStatus, Lost, Recovers(REFRESH)).await;
}

// A scheme that can only refresh: the same steps, where the outcome differs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_while_reading_the_state_the_refresh_is_simply_redone() {
    kill_at(RefreshOnly, ReadState, Lands, Recovers(REFRESH)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_while_marking_a_stored_mark_waits_for_a_new_refresh_token() {
    kill_at(
        RefreshOnly,
        MarkRefreshToken,
        Lands,
        InDoubtUntilReseeded { killed: &[] },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_with_the_token_request_unanswered_waits_for_a_new_refresh_token() {
    kill_at(
        RefreshOnly,
        TokenRequestReceived,
        Lost,
        InDoubtUntilReseeded { killed: REFRESH },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_after_the_provider_rotated_the_token_never_replays_it() {
    kill_at(
        RefreshOnly,
        TokenRequestActedOn,
        Lands,
        InDoubtUntilReseeded { killed: REFRESH },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_while_storing_a_lost_refresh_token_never_replays_the_old_one() {
    kill_at(
        RefreshOnly,
        StoreRefreshToken,
        Lost,
        InDoubtUntilReseeded { killed: REFRESH },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_while_storing_a_landed_refresh_token_uses_it_next() {
    kill_at(RefreshOnly, StoreRefreshToken, Lands, Recovers(REFRESH_TWICE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_only_killed_while_publishing_a_lost_output_refreshes_with_the_newest_token() {
    kill_at(RefreshOnly, WriteOutput, Lost, Recovers(REFRESH_TWICE)).await;
}

// A slow API server. kube's client sets no response timeout on these requests (only watches have
// an idle timeout), so the operator waits for each answer, however late: a refresh stays one
// pass, and the resource's other triggers wait for it (one reconcile per object at a time).

/// Waits until just before the refresh of a resource issued just now: reads happen in every
/// pass, and the refresh pass is the one at the renewal time, so a gate or delay for a read goes
/// up 200 ms before it (after the passes that follow the issuance's own writes).
async fn just_before_the_refresh(w: &World) {
    let lead = w.renew_at().duration_since(jiff::Timestamp::now()) - jiff::SignedDuration::from_millis(200);
    tokio::time::sleep(lead.try_into().unwrap_or_default()).await;
}

/// The first issuance by a new operator; returns it, the first access token and the number of
/// token requests it made.
async fn issued(w: &World) -> (Operator, String, usize) {
    let op = w.start("op");
    eventually(10, "first issuance published and reported", async || {
        w.ready() && w.output_works().await
    })
    .await;
    w.book.ttl.store(3600, Ordering::SeqCst);
    (op, w.access_token().unwrap(), w.book.grants().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_answers_at_every_step_of_a_refresh_cost_no_extra_token_call() {
    let w = World::new(RefreshOnly).await;
    let (op, first_token, issued) = issued(&w).await;
    just_before_the_refresh(&w).await;
    let slow = |ms: u64, path: &str, method: &str| {
        w.server
            .delay_next(Delay::by(Duration::from_millis(ms), path).method(method));
    };
    slow(500, &format!("/secrets/{CREDENTIALS}"), "GET");
    slow(500, &format!("/secrets/{STATE}"), "GET");
    slow(500, &format!("/secrets/{OUTPUT}"), "GET");
    slow(500, &format!("/secrets/{STATE}"), "PATCH"); // the mark
    slow(3000, &format!("/secrets/{STATE}"), "PATCH"); // the new refresh token
    slow(1000, &format!("/secrets/{OUTPUT}"), "PATCH");
    slow(1000, "/connectorauths/crm/status", "PATCH");
    let started = std::time::Instant::now();
    w.server.clear_requests();
    eventually(20, "the refresh converged", async || w.converged(&first_token).await).await;
    assert!(
        started.elapsed() >= Duration::from_millis(6500),
        "every delay was served: {:?}",
        started.elapsed()
    );
    op.stop().await;
    assert_eq!(after(&w.book.grants(), issued), REFRESH, "one token request");
    assert!(!w.book.family_revoked());
    assert!(w.state_is_current());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_write_answered_much_later_is_waited_for_not_repeated() {
    let w = World::new(RefreshOnly).await;
    let (op, first_token, issued) = issued(&w).await;
    let (mark, held) = (Gate::new(), Gate::new());
    mark.open();
    w.server
        .delay_next(Delay::at(&mark, &format!("/secrets/{STATE}")).method("PATCH"));
    w.server
        .delay_next(Delay::at(&held, &format!("/secrets/{STATE}")).method("PATCH"));
    tokio::time::timeout(Duration::from_secs(10), held.arrived())
        .await
        .expect("the refresh reached the state write");
    // While the write hangs the operator neither repeats the refresh nor publishes its token.
    // (Not synchronisation: time for a wrong second attempt to show.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(after(&w.book.grants(), issued), REFRESH);
    assert_eq!(w.access_token().unwrap(), first_token);
    assert!(w.state()["inFlight"].is_object(), "only the mark is stored");
    w.server.clear_requests();
    held.open();
    eventually(10, "the refresh completed", async || {
        w.access_token().is_some_and(|t| t != first_token) && w.state_is_current() && w.ready()
    })
    .await;
    op.stop().await;
    assert_eq!(after(&w.book.grants(), issued), REFRESH, "still one token request");
    assert!(!w.book.family_revoked());
    assert!(w.output_works().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_timing_out_the_output_write_costs_no_extra_token_call() {
    let w = World::new(RefreshOnly).await;
    let (op, first_token, issued) = issued(&w).await;
    // The API server gives up on the output write after a while (504, not applied).
    let held = Gate::new();
    w.server
        .delay_next(Delay::at(&held, &format!("/secrets/{OUTPUT}")).method("PATCH"));
    tokio::time::timeout(Duration::from_secs(10), held.arrived())
        .await
        .expect("the refresh reached the output write");
    // (Not synchronisation: the answer comes late.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.answer(504);
    w.server.clear_requests();
    eventually(20, "the refresh completed", async || w.converged(&first_token).await).await;
    op.stop().await;
    assert_eq!(after(&w.book.grants(), issued), REFRESH, "one token request");
    assert!(!w.book.family_revoked());
}

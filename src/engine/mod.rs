//! The scheme engine's I/O: it sends the token requests the pure core (`engine_core`, re-exported
//! here module by module) renders — login, refresh, code exchange, chained steps, verify and
//! revoke — over the HTTP client with the resource's TLS settings, and reads the answers with
//! the core's extraction. No Kubernetes, no catalog: adapters (controller, local mode) resolve
//! the spec, feed it the credentials and the stored token state, and persist what it returns.

pub mod chain;
pub mod http;
pub mod revocation;
pub mod tls;
pub mod verify;

pub use engine_core::{
    assertion, callback, dpop, error, extract, flow, policy, renewal, schemes, secret, signing, spec, template,
};

use std::collections::BTreeMap;

use base64::Engine as _;
use jiff::Timestamp;

pub use engine_core::compile::compile;
pub use engine_core::state::{self, RefreshChoice, TokenState, fingerprint, refresh_choice};
pub use engine_core::verify::Verification;
pub use error::{EngineError, Result};
pub use flow::Flow;
pub use http::{HttpClient, HttpSettings};
pub use secret::SecretString;
pub use spec::Spec;
pub use template::{TemplateContext, Templates};
pub use tls::ClientOptions;

use flow::{Body, Step, Tmpl};
use http::HttpRequest;
use state::{digest, hex};

/// Fetches a fresh ServiceAccount token (a TokenRequest, or the file a projected volume gives)
/// for flows that read `{{ service_account_token }}`; each call asks anew, and nothing keeps it.
#[derive(Clone)]
pub struct ServiceAccountTokens(pub std::sync::Arc<dyn Fn() -> TokenFuture + Send + Sync>);

/// One fetch of a ServiceAccount token.
pub type TokenFuture = std::pin::Pin<Box<dyn Future<Output = Result<SecretString>> + Send>>;

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAccountTokens")
    }
}

/// The template variable of the ServiceAccount token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "service_account_token";

/// What the engine is given besides the spec.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub credentials: BTreeMap<String, SecretString>,
    pub redirect_url: Option<String>,
    /// Values of an OAuth2 consent callback, as [`callback::accept`] kept them: `code` and the
    /// declared `callbackValues`. Templates see them as `{{ code }}` and `{{ callback.<name> }}`.
    pub callback: BTreeMap<String, SecretString>,
    /// The PKCE `code_verifier` of the consent being completed (flows with `pkce`); the code
    /// exchange sees it as `{{ code_verifier }}`.
    pub code_verifier: Option<SecretString>,
    /// How token requests are sent (`spec.tls` with its material, `spec.allowRedirects`; see
    /// [`tls::resolve`]).
    /// An error (a missing CA ConfigMap, …) is reported only when a request is to be sent, so
    /// a valid token stays published meanwhile.
    pub http: Result<ClientOptions>,
    /// `spec.serviceAccountToken`, where the resource has one.
    pub service_account_tokens: Option<ServiceAccountTokens>,
    /// Values fetched for the requests about to be sent (the ServiceAccount token), as
    /// template variables; never stored.
    pub fresh: BTreeMap<String, SecretString>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            credentials: BTreeMap::new(),
            redirect_url: None,
            callback: BTreeMap::new(),
            code_verifier: None,
            http: Ok(ClientOptions::default()),
            service_account_tokens: None,
            fresh: BTreeMap::new(),
        }
    }
}

impl Inputs {
    /// Digest of the HTTP settings and material, `None` for the defaults. Part of what tells
    /// whether a failed attempt's inputs changed (a fixed CA bundle is retried at once).
    pub fn http_digest(&self) -> Option<String> {
        match &self.http {
            Ok(o) if o.is_default() => None,
            Ok(o) => Some(hex(&o.digest()[..16])),
            Err(e) => Some(digest(&e.to_string())),
        }
    }

    fn client_options(&self) -> Result<&ClientOptions> {
        self.http.as_ref().map_err(Clone::clone)
    }

    /// These inputs with a fresh ServiceAccount token, where the flow reads one and there is
    /// none yet for this round of requests.
    pub async fn with_fresh_tokens(&self, flow: &Flow) -> Result<std::borrow::Cow<'_, Inputs>> {
        if !flow.uses_service_account_token || self.fresh.contains_key(SERVICE_ACCOUNT_TOKEN) {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let tokens = self
            .service_account_tokens
            .as_ref()
            .ok_or_else(|| EngineError::InvalidSpec {
                field: "spec.serviceAccountToken".into(),
                reason: "the templates read `service_account_token`, so the resource must name a ServiceAccount".into(),
            })?;
        let token = (tokens.0)().await?;
        let mut inputs = self.clone();
        inputs.fresh.insert(SERVICE_ACCOUNT_TOKEN.into(), token);
        Ok(std::borrow::Cow::Owned(inputs))
    }
}

/// What a step is for, and what it carries on from.
#[derive(Clone, Copy)]
enum StepKind<'a> {
    Login,
    /// Renews with `token`; `continues` is the state being renewed: its `oauth` fields are
    /// merged with the answer's, and (where the flow says so) its lifetime stands in for an
    /// answer without expiry.
    Refresh {
        token: &'a SecretString,
        continues: Option<&'a TokenState>,
    },
    /// Exchanges a consent callback's values.
    Exchange,
}

/// Runs flows. Holds the shared HTTP client and template environment.
#[derive(Clone)]
pub struct Engine {
    http: HttpClient,
    templates: std::sync::Arc<Templates>,
}

impl Engine {
    pub fn new(settings: HttpSettings) -> std::result::Result<Self, reqwest::Error> {
        Ok(Engine {
            http: HttpClient::new(settings)?,
            templates: std::sync::Arc::new(Templates::new()),
        })
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// `ctx` with the flow's assertions that `step` uses signed into it.
    pub(crate) fn with_assertions(
        &self,
        flow: &Flow,
        step: &Step,
        ctx: &TemplateContext,
        now: Timestamp,
    ) -> Result<TemplateContext> {
        signing::with_assertions(&self.templates, flow, step, ctx, now)
    }

    /// Signs one assertion for `step` (whose URL is the claims' `token_url`).
    pub fn assertion(
        &self,
        plan: &assertion::Plan,
        step: &Step,
        ctx: &TemplateContext,
        now: Timestamp,
        jti: &str,
    ) -> Result<String> {
        signing::sign_assertion(&self.templates, plan, step, ctx, now, jti)
    }

    /// Compiles a resolved spec (see `catalog::Resolved`).
    pub fn compile(&self, spec: &Spec<'_>) -> Result<Flow> {
        compile(spec, &self.templates)
    }

    /// Gets a new token: refresh when a refresh token is at hand, else log in. A refused
    /// (`invalid_grant`) refresh falls back to logging in when the scheme can. Never returns a
    /// state without the newest refresh token it has seen.
    pub async fn obtain(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        prev: Option<&TokenState>,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<TokenState> {
        let choice = refresh_choice(flow, &inputs.credentials, prev);
        self.obtain_with(flow, inputs, prev, choice, fingerprint, now).await
    }

    /// [`obtain`](Self::obtain) with the refresh token chosen by the caller (see
    /// [`refresh_choice`]); a choice without a token logs in (or asks for consent) instead.
    pub async fn obtain_with(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        prev: Option<&TokenState>,
        choice: RefreshChoice,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<TokenState> {
        if let Some(key) = &flow.static_token {
            let ctx = self.context(inputs, None, None, now);
            let token = self.templates.render(&key.field, &key.source, &ctx)?;
            let renew_at = renewal::renew_at(now, None, &flow.renewal, rand::random());
            return Ok(TokenState {
                renew_at,
                ..TokenState::new(token, flow.default_token_type, now, fingerprint)
            });
        }

        let fresh = inputs.with_fresh_tokens(flow).await?;
        let inputs = fresh.as_ref();
        let RefreshChoice {
            token: refresh_token,
            seed_digest,
            ..
        } = choice;
        if let (Some(step), Some(rt)) = (&flow.refresh, &refresh_token) {
            let ctx = self.context(inputs, prev, Some(rt), now);
            // The stored token goes only where it was issued for (a new seed from the
            // credentials is the person's own choice, bound to nothing yet).
            let stored = prev.filter(|p| p.refresh_token.as_ref() == Some(rt));
            if let Some(was) = stored.and_then(|p| p.refresh_origin.clone())
                && let Some(now_origin) = self.refresh_origin(flow, &ctx)
                && was != now_origin
            {
                if flow.login.is_none() && flow.code_exchange.is_some() {
                    tracing::info!(step = step.name, "refresh endpoint changed; consent is required again");
                    return Err(EngineError::AuthorizationRequired);
                }
                if flow.login.is_none() {
                    return Err(EngineError::RefreshTokenEndpointChanged {
                        was,
                        now: now_origin,
                        key: flow.seed_refresh_key.clone().unwrap_or_else(|| "refresh_token".into()),
                    });
                }
                tracing::info!(step = step.name, "refresh endpoint changed; logging in again");
                return self
                    .login_or_consent(flow, inputs, prev, seed_digest, fingerprint, now)
                    .await;
            }
            let kind = StepKind::Refresh {
                token: rt,
                continues: prev,
            };
            match self.run_step(step, &ctx, inputs, flow, kind, now).await {
                Ok(mut t) => {
                    t.fingerprint = fingerprint.into();
                    t.seed_refresh_token = seed_digest;
                    return Ok(t);
                }
                Err(e) if e.is_invalid_grant() && flow.login.is_some() => {
                    tracing::info!(step = step.name, "refresh token refused; logging in again");
                }
                // Revoked consent: ask for consent again instead of retrying a dead token.
                Err(e) if e.is_invalid_grant() && flow.code_exchange.is_some() => {
                    tracing::info!(step = step.name, "refresh token refused; consent is required again");
                    return Err(EngineError::AuthorizationRequired);
                }
                // Nothing else to get a token with: a dead end until a person acts.
                Err(e) if e.is_invalid_grant() => {
                    tracing::info!(step = step.name, "refresh token refused for good");
                    return Err(EngineError::RefreshTokenRevoked {
                        cause: Box::new(e),
                        key: flow.seed_refresh_key.clone().unwrap_or_else(|| "refresh_token".into()),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        self.login_or_consent(flow, inputs, prev, seed_digest, fingerprint, now)
            .await
    }

    /// A token without a refresh: log in, or exchange the consent callback's values.
    async fn login_or_consent(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        prev: Option<&TokenState>,
        seed_digest: Option<String>,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<TokenState> {
        if let Some(step) = &flow.login {
            let ctx = self.context(inputs, prev, None, now);
            let ctx = self.run_chain(flow, inputs, ctx, now).await?;
            let mut t = self.run_step(step, &ctx, inputs, flow, StepKind::Login, now).await?;
            t.fingerprint = fingerprint.into();
            t.seed_refresh_token = seed_digest;
            return Ok(t);
        }
        if flow.code_exchange.is_some() {
            if inputs.callback.is_empty() {
                return Err(EngineError::AuthorizationRequired);
            }
            let mut t = self.exchange(flow, inputs, fingerprint, now).await?;
            t.seed_refresh_token = seed_digest;
            return Ok(t);
        }
        let key = flow.seed_refresh_key.clone().unwrap_or_else(|| "refresh_token".into());
        Err(EngineError::MissingCredential {
            key,
            field: format!("spec.{}.grantType refreshToken", flow.scheme),
        })
    }

    /// Exchanges the values of a consent callback (`code`, or with `withoutCode` whatever the
    /// callback carried) for tokens.
    pub async fn exchange(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<TokenState> {
        let step = flow.code_exchange.as_ref().ok_or_else(|| EngineError::InvalidSpec {
            field: format!("spec.{}.grantType", flow.scheme),
            reason: "consent callbacks need grantType authorizationCode".into(),
        })?;
        let fresh = inputs.with_fresh_tokens(flow).await?;
        let inputs = fresh.as_ref();
        let mut ctx = self.context(inputs, None, None, now);
        ctx.callback = inputs.callback.clone();
        if flow.pkce {
            let verifier = inputs
                .code_verifier
                .clone()
                .ok_or_else(|| EngineError::InvalidRequest {
                    step: "code exchange".into(),
                    reason: "PKCE is on but this consent has no code_verifier".into(),
                })?;
            ctx.extra.insert("code_verifier".into(), verifier);
        }
        let mut t = self.run_step(step, &ctx, inputs, flow, StepKind::Exchange, now).await?;
        t.fingerprint = fingerprint.into();
        // The grant's callback values stay with its tokens; the code is spent.
        t.callback = inputs.callback.clone();
        t.callback.remove("code");
        Ok(t)
    }

    /// The key of `oauth2.callbackHmac`, rendered from the credentials; `None` without one.
    pub fn callback_hmac_key(&self, flow: &Flow, inputs: &Inputs, now: Timestamp) -> Result<Option<SecretString>> {
        let Some((_, key)) = &flow.callback_hmac else {
            return Ok(None);
        };
        self.render(key, &self.context(inputs, None, None, now)).map(Some)
    }

    /// Renders the consent URL of an authorization-code flow; with PKCE, `code_challenge` is the
    /// S256 challenge of the link's verifier.
    pub fn authorization_url(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        state: &str,
        code_challenge: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let Some(t) = &flow.authorization_url else {
            return Ok(None);
        };
        let mut ctx = self.context(inputs, None, None, now);
        ctx.extra.insert("state".into(), state.into());
        let rendered = self.templates.render(&t.field, &t.source, &ctx)?;
        // `state` is added as a query parameter unless the template places `{{ state }}` itself.
        let templated_state = self.templates.variables(&t.source).iter().any(|v| v == "state");
        let challenge = match (flow.pkce, code_challenge) {
            (true, Some(c)) => Some(c),
            (true, None) => {
                return Err(EngineError::InvalidRequest {
                    step: "consent".into(),
                    reason: "PKCE is on but no code_challenge was made for this link".into(),
                });
            }
            (false, _) => None,
        };
        if templated_state && challenge.is_none() && flow.authorization_params.is_empty() {
            return Ok(Some(rendered));
        }
        let mut url = url::Url::parse(rendered.trim()).map_err(|e| EngineError::InvalidRequest {
            step: "consent".into(),
            reason: format!("{} does not render to a valid URL: {e}", t.field),
        })?;
        if !templated_state {
            url.query_pairs_mut().append_pair("state", state);
        }
        for (name, t) in &flow.authorization_params {
            let value = self.render(t, &ctx)?;
            url.query_pairs_mut().append_pair(name, value.expose());
        }
        if let Some(c) = challenge {
            url.query_pairs_mut()
                .append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
        Ok(Some(url.to_string()))
    }

    fn context(
        &self,
        inputs: &Inputs,
        prev: Option<&TokenState>,
        refresh_token: Option<&SecretString>,
        now: Timestamp,
    ) -> TemplateContext {
        TemplateContext {
            credentials: inputs.credentials.clone(),
            access_token: prev.map(|p| p.access_token.clone()),
            refresh_token: refresh_token.cloned(),
            oauth: prev.map(|p| p.oauth.clone()).unwrap_or_default(),
            redirect_url: inputs.redirect_url.clone(),
            extra: prev
                .map(lookup_values)
                .unwrap_or_default()
                .into_iter()
                .chain(inputs.fresh.clone())
                .collect(),
            callback: prev.map(|p| p.callback.clone()).unwrap_or_default(),
            now: Some(now),
        }
    }

    /// `scheme://host[:port]` of the flow's refresh request, as rendered with `ctx`.
    fn refresh_origin(&self, flow: &Flow, ctx: &TemplateContext) -> Option<String> {
        let step = flow.refresh.as_ref()?;
        let url = self.render(&step.url, ctx).ok()?;
        url::Url::parse(url.expose().trim()).ok().map(|u| http::origin_of(&u))
    }

    fn render(&self, t: &Tmpl, ctx: &TemplateContext) -> Result<SecretString> {
        self.templates.render(&t.field, &t.source, ctx).map(SecretString::from)
    }

    /// Renders a step into a request.
    pub fn build_request(&self, step: &Step, ctx: &TemplateContext) -> Result<HttpRequest> {
        let url_text = self.render(&step.url, ctx)?;
        // The parse error would echo the URL; say only what is wrong with it.
        let url = url::Url::parse(url_text.expose().trim()).map_err(|e| EngineError::InvalidRequest {
            step: step.name.into(),
            reason: format!("{} does not render to a valid URL: {e}", step.url.field),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EngineError::InvalidRequest {
                step: step.name.into(),
                reason: format!("{} must be an http or https URL, not {}", step.url.field, url.scheme()),
            });
        }
        let mut headers = Vec::new();
        for (name, t) in &step.headers {
            headers.push((name.clone(), self.render(t, ctx)?));
        }
        let body = match &step.body {
            Body::None => None,
            Body::Raw(t) => Some(self.render(t, ctx)?),
            Body::Form(fields) => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for f in fields {
                    match self.render(&f.value, ctx) {
                        Ok(v) => {
                            ser.append_pair(&f.name, v.expose());
                        }
                        Err(EngineError::UndefinedVariable { .. }) if f.optional => {}
                        Err(e) => return Err(e),
                    }
                }
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                    headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
                }
                Some(SecretString::new(ser.finish()))
            }
        };
        let basic_auth = match &step.basic_auth {
            None => None,
            Some((u, p)) => {
                let user = self.render(u, ctx)?;
                let pass = match p {
                    None => None,
                    Some(p) => match self.render(p, ctx) {
                        Ok(v) => Some(v),
                        // The default `{{ client_secret }}` of a public client.
                        Err(EngineError::UndefinedVariable { .. }) if p.source == "{{ client_secret }}" => None,
                        Err(e) => return Err(e),
                    },
                };
                Some((user, pass))
            }
        };
        Ok(HttpRequest {
            method: step.method.clone(),
            url,
            headers,
            body,
            basic_auth,
        })
    }

    /// Sends one step and reads its answer.
    async fn run_step(
        &self,
        step: &Step,
        ctx: &TemplateContext,
        inputs: &Inputs,
        flow: &Flow,
        kind: StepKind<'_>,
        now: Timestamp,
    ) -> Result<TokenState> {
        let (used_refresh_token, continues) = match kind {
            StepKind::Refresh { token, continues } => (Some(token), continues),
            _ => (None, None),
        };
        let mut req = self.build_request(step, &self.with_assertions(flow, step, ctx, now)?)?;
        if matches!(kind, StepKind::Exchange) && flow.append_code {
            // ChiefOnboarding's `access_token` request: the code goes on the URL, after `?` or
            // `&`, whatever the template says.
            let code = ctx.callback.get("code").ok_or_else(|| EngineError::InvalidRequest {
                step: step.name.into(),
                reason: "the consent callback carried no `code`".into(),
            })?;
            req.url.query_pairs_mut().append_pair("code", code.expose());
        }
        let options = inputs.client_options()?;
        let started = std::time::Instant::now();
        let resp = self.send_with_dpop(flow, inputs, step.name, req, options, now).await?;
        tracing::debug!(step = step.name, host = %resp.host, status = resp.status, elapsed_ms = started.elapsed().as_millis() as u64, "token response");
        let parsed = extract::Parsed::new(step.name, &resp);
        let e = &step.extraction;
        if let Some(rule) = &e.error {
            reported_error(step.name, &resp, &parsed, rule)?;
        }
        // A redirect may carry the token itself (a login setting a cookie); if it does not,
        // say that it was a redirect rather than that the token is missing.
        let access_token = parsed
            .require("access token", &e.access_token)
            .map_err(|err| resp.redirect_error(step.name, options.allow_redirects).unwrap_or(err))?;
        let returned = parsed
            .optional("refresh token", &e.refresh_token)?
            .map(SecretString::from);
        // Tokens are published and sent in headers: a provider (or whoever answers in its
        // place) must not be able to put line breaks into them.
        for (what, v) in [
            ("access token", Some(access_token.as_str())),
            ("refresh token", returned.as_ref().map(|r| r.expose())),
        ] {
            if v.is_some_and(|v| v.chars().any(char::is_control)) {
                return Err(EngineError::InvalidValue {
                    step: step.name.into(),
                    what: what.into(),
                    reason: "it contains control characters (CR, LF, NUL…)".into(),
                });
            }
        }
        // A provider that answers a refresh without a new refresh token (or with the same one)
        // does not rotate them: the one used stays valid.
        let refresh_token_reusable =
            used_refresh_token.is_some() && (returned.is_none() || returned.as_ref() == used_refresh_token);
        let refresh_token = returned.or_else(|| used_refresh_token.cloned());
        let token_type = parsed
            .optional("token type", &e.token_type)?
            .unwrap_or_else(|| flow.default_token_type.into());
        let expires_in = match parsed.optional("expires_in", &e.expires_in)? {
            Some(v) => Some(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| EngineError::InvalidValue {
                        step: step.name.into(),
                        what: "expires_in".into(),
                        reason: "not a number of seconds".into(),
                    })?,
            ),
            None => None,
        };
        let expires_at = match parsed.optional("expiry", &e.expires_at)? {
            Some(v) => Some(template::parse_time(&v).map_err(|_| EngineError::InvalidValue {
                step: step.name.into(),
                what: "expiry".into(),
                reason: "not an RFC 3339 time, a date or Unix seconds".into(),
            })?),
            None => None,
        };
        let mut extras = BTreeMap::new();
        for (key, loc) in &e.extras {
            let v = parsed.require(key, std::slice::from_ref(loc))?;
            extras.insert(key.clone(), SecretString::from(v));
        }
        let mut expires_at = renewal::expiry(now, expires_in, expires_at, extract::jwt_expiry(&access_token));
        if expires_at.is_none()
            && flow.refresh_keeps_lifetime
            && let Some(p) = continues
            && let Some(prev_exp) = p.expires_at
            && prev_exp > p.issued_at
        {
            expires_at = Some(renewal::add_clamped(
                now,
                prev_exp.duration_since(p.issued_at).as_secs_f64(),
            ));
        }
        let mut oauth = continues.map(|p| p.oauth.clone()).unwrap_or_default();
        oauth.retain(|k, _| flow.response_fields.wants(k));
        oauth.extend(parsed.fields(&flow.response_fields)?);
        if let Some(exp) = expires_at
            && exp <= now
        {
            return Err(EngineError::InvalidValue {
                step: step.name.into(),
                what: "access token".into(),
                reason: format!("it expired already ({exp})"),
            });
        }
        let renew_at = renewal::renew_at(now, expires_at, &flow.renewal, rand::random());
        let refresh_origin = refresh_token.as_ref().and_then(|rt| {
            let mut at = ctx.clone();
            at.refresh_token = Some(rt.clone());
            self.refresh_origin(flow, &at)
        });
        Ok(TokenState {
            access_token: access_token.into(),
            refresh_token,
            token_type,
            issued_at: now,
            expires_at,
            renew_at,
            extras,
            fingerprint: String::new(),
            seed_refresh_token: None,
            refresh_token_reusable,
            oauth,
            refresh_origin,
            // A refresh continues the grant: its consent values and lookups stay.
            callback: continues.map(|p| p.callback.clone()).unwrap_or_default(),
            lookups: continues.map(|p| p.lookups.clone()).unwrap_or_default(),
        })
    }

    /// Sends a token request; with `oauth2.dpop`, with a proof of the key, and once more with
    /// the server's nonce when it answers `use_dpop_nonce` (RFC 9449 §8).
    async fn send_with_dpop(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        step: &str,
        req: HttpRequest,
        options: &ClientOptions,
        now: Timestamp,
    ) -> Result<http::HttpResponse> {
        let Some((key_name, alg)) = &flow.dpop else {
            return self.http.send(step, req, options).await;
        };
        let pem = inputs
            .credentials
            .get(key_name)
            .ok_or_else(|| EngineError::MissingCredential {
                key: key_name.clone(),
                field: "spec.oauth2.dpop.privateKeyKey".into(),
            })?;
        let key = engine_core::dpop::DpopKey::from_pem(pem.expose(), *alg, &format!("credentials key `{key_name}`"))?;
        let mut nonce: Option<String> = None;
        for attempt in 0..2 {
            let mut r = req.clone();
            let proof = key.proof(r.method.as_str(), &r.url, None, nonce.as_deref(), now.as_second());
            r.headers.push(("DPoP".into(), proof.into()));
            let resp = self.http.fetch(step, r, options).await?;
            let asked = resp
                .headers
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .filter(|n| !n.is_empty() && n.len() <= 256 && n.chars().all(|c| c.is_ascii_graphic()))
                .map(str::to_string);
            let wants_nonce =
                matches!(resp.status, 400 | 401) && String::from_utf8_lossy(&resp.body).contains("use_dpop_nonce");
            if attempt == 0 && wants_nonce && asked.is_some() {
                nonce = asked;
                continue;
            }
            http::classify_status(step, &resp.host, resp.status, &resp.headers, &resp.body)?;
            return Ok(resp);
        }
        unreachable!("the second attempt returns")
    }

    /// The output Secret's data for a token.
    pub fn render_output(&self, flow: &Flow, inputs: &Inputs, token: &TokenState) -> Result<BTreeMap<String, String>> {
        let o = &flow.output;
        let mut ctx = TemplateContext {
            credentials: inputs.credentials.clone(),
            access_token: Some(token.access_token.clone()),
            refresh_token: token.refresh_token.clone(),
            oauth: token.oauth.clone(),
            redirect_url: inputs.redirect_url.clone(),
            extra: token.extras.clone(),
            callback: token.callback.clone(),
            now: Some(token.issued_at),
        };
        ctx.extra.extend(lookup_values(token));
        // Locoia's header configuration calls the access token `{{ token }}`; a credentials key
        // of that name keeps its meaning.
        if !inputs.credentials.contains_key("token") {
            ctx.extra.insert("token".into(), token.access_token.clone());
        }
        ctx.extra.insert("token_type".into(), token.token_type.clone().into());
        if let Some(e) = token.expires_at {
            ctx.extra.insert("expires_at".into(), e.to_string().into());
        }
        let mut format = self.render(&o.header_format, &ctx)?.expose().to_string();
        if o.header_encode {
            format = base64::engine::general_purpose::STANDARD.encode(format.as_bytes());
        }
        ctx.extra.insert("token_format".into(), format.into());
        let header_value = self.render(&o.header_value, &ctx)?;
        header_safe(&o.header_name, header_value.expose())?;

        let mut headers: flow::Headers = BTreeMap::new();
        headers.insert(o.header_name.clone(), header_value.expose().to_string());
        for (name, t) in &o.extra_headers {
            let value = self.render(t, &ctx)?;
            header_safe(name, value.expose())?;
            headers.insert(name.clone(), value.expose().to_string());
        }

        let mut data = BTreeMap::new();
        for (key, v) in &token.extras {
            data.insert(key.clone(), v.expose().to_string());
        }
        for (key, t) in &o.templates {
            if flow::RESERVED_KEYS.contains(&key.as_str()) {
                return Err(EngineError::InvalidSpec {
                    field: format!("spec.output.template.{key}"),
                    reason: "this key is written by the operator itself".into(),
                });
            }
            data.insert(key.clone(), self.render(t, &ctx)?.expose().to_string());
        }
        data.insert("access_token".into(), token.access_token.expose().to_string());
        data.insert("token_type".into(), token.token_type.clone());
        if let Some(e) = token.expires_at {
            data.insert("expires_at".into(), e.to_string());
        }
        data.insert("header_name".into(), o.header_name.clone());
        data.insert("header_value".into(), header_value.expose().to_string());
        data.insert(
            "headers.json".into(),
            serde_json::to_string(&headers).unwrap_or_default(),
        );
        if o.expose_refresh_token
            && let Some(rt) = &token.refresh_token
        {
            data.insert("refresh_token".into(), rt.expose().to_string());
        }
        // Tokens got over mutual TLS may be bound to that certificate (RFC 8705): its SHA-256
        // thumbprint, as `cnf.x5t#S256` names it, says which one must be presented with them.
        if let Ok(opts) = &inputs.http
            && let Some(id) = &opts.client_certificate
            && let Some(x5t) = certificate_thumbprint(&id.certificate.bytes)
        {
            data.insert(CERTIFICATE_THUMBPRINT.into(), x5t);
        }
        Ok(data)
    }
}

/// Output key of the client certificate's SHA-256 thumbprint (base64url), published when token
/// requests present one (`spec.tls.clientCertificateRef`).
pub const CERTIFICATE_THUMBPRINT: &str = "cnf_x5t_s256";

/// The base64url SHA-256 of the first certificate of a PEM chain.
fn certificate_thumbprint(pem: &[u8]) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(first.as_ref())))
}

/// A token's lookup values as template variables (`lookup.<name>.<key>`).
fn lookup_values(token: &TokenState) -> BTreeMap<String, SecretString> {
    token
        .lookups
        .iter()
        .map(|(k, v)| (engine_core::chain::lookup_variable(k), v.clone()))
        .collect()
}

/// `oauth2.errorCode`: an answer that reports an error where a success would be. Refused as an
/// HTTP error answer would be, with the code (sanitised like any OAuth error code), and as
/// `invalid_grant` where the rule says the code means that.
fn reported_error(
    step: &str,
    resp: &http::HttpResponse,
    parsed: &extract::Parsed<'_>,
    rule: &flow::ErrorRule,
) -> Result<()> {
    let Some(code) = parsed.find("error code", &rule.at)? else {
        return Ok(());
    };
    let code = code.trim();
    if code.is_empty() || code == "false" || code == "null" {
        return Ok(());
    }
    let oauth_error = if rule.invalid_grant.iter().any(|g| g == code) {
        Some("invalid_grant".to_string())
    } else {
        http::safe_error_code(code)
    };
    Err(EngineError::Rejected {
        step: step.into(),
        host: resp.host.clone(),
        status: resp.status,
        oauth_error,
    })
}

/// A published header value must be one line: with CR, LF or NUL in it, a client that pastes
/// it into a request (`curl -H "$(cat header)"`) sends headers, or requests, that the provider
/// or an attacker chose. Refused, naming the header and never the value.
fn header_safe(name: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(EngineError::InvalidValue {
            step: "output".into(),
            what: format!("header `{name}`"),
            reason: "its value contains control characters (CR, LF, NUL…); the token or a template put them there"
                .into(),
        });
    }
    Ok(())
}

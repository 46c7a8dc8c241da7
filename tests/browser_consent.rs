//! The OAuth2 consent pass of local mode with a real browser in the person's place: headless
//! Chromium, driven through ChromeDriver's W3C WebDriver HTTP protocol, opens the consent link
//! of the first pass, signs in on the provider's HTML login page
//! (tests/support/emulators/login_page.rs), is refused once for a wrong password, then follows
//! the provider's redirect to the operator's callback and shows its result page. What the other
//! consent tests take on faith from a hand-made HTTP client is here done by the browser: the
//! link opens as a page, the form posts the OAuth parameters on, the redirect after a POST lands
//! on the callback as a GET, and the callback's page reads as a success to the person.
//!
//! Proves, with PKCE and a callback value: the token is published and works; `realmId` from the
//! redirect reaches the output template; the code is exchanged exactly once, with the verifier
//! that hashes to the link's challenge; the undeclared parameter of the redirect (named
//! `access_token`) and the verifier are nowhere in the output; opening the callback again is
//! refused without a second exchange.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `chromium`,
//! `chromium-driver`); without them the test says it was skipped, unless
//! `CONNECTOR_AUTH_REQUIRE_BROWSER=1`.

mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use connector_auth_operator::consent;
use connector_auth_operator::local::LocalRunner;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the browser may take for any one step (the machine may be busy building).
const STEP: Duration = Duration::from_secs(60);

/// Whether the browser is there; if not, says so (or fails, if it is required).
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CONNECTOR_AUTH_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "CONNECTOR_AUTH_REQUIRE_BROWSER=1 but {} missing (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    // Straight to the process's stderr: `eprintln!` of a passing test is captured and not shown.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: headless Chromium/ChromeDriver not installed (apt-get install chromium chromium-driver)"
    );
    false
}

/// The W3C WebDriver identifier of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver with one headless Chromium session. Dropping it (also when the test panics)
/// ends the session, which quits the browser, then kills ChromeDriver.
struct Browser {
    http: reqwest::Client,
    port: u16,
    driver: Child,
    session: Option<String>,
    /// The browser's process, killed if the session cannot be ended.
    pid: Option<u64>,
    /// Chromium's fresh profile, and ChromeDriver's output.
    dir: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let mut browser = Browser {
            http: reqwest::Client::builder().no_proxy().timeout(STEP).build().unwrap(),
            port,
            driver,
            session: None,
            pid: None,
            dir,
        };
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(status) = browser.call(Method::GET, "/status", None).await
                && status["ready"] == true
            {
                break;
            }
            if let Ok(Some(exit)) = browser.driver.try_wait() {
                panic!("chromedriver exited: {exit}");
            }
            assert!(Instant::now() < deadline, "chromedriver not ready on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = browser.dir.path().join("profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Containers often have a small /dev/shm (Docker's is 64 MB), and Debian's launcher
            // fails to check its size where findmnt prints it twice.
            "--disable-dev-shm-usage",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 10_000, "pageLoad": 60_000, "script": 30_000},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let session = browser
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        browser.session = Some(session["sessionId"].as_str().expect("sessionId").to_string());
        browser.pid = session["capabilities"]["goog:processID"].as_u64();
        browser
    }

    /// One WebDriver command; the `value` of its answer, or what went wrong.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let answer: Value = resp.json().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {}", answer["value"]));
        }
        Ok(answer["value"].clone())
    }

    /// A command of the session, which must succeed.
    async fn command(&self, method: Method, path: &str, body: Value) -> Value {
        let session = self.session.as_deref().expect("a session");
        let body = (method == Method::POST).then_some(body);
        self.call(method, &format!("/session/{session}{path}"), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", json!({"url": url})).await;
    }

    /// The element `css` selects (waiting for it up to the implicit timeout).
    async fn find(&self, css: &str) -> String {
        let found = self
            .command(Method::POST, "/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT].as_str().expect("an element reference").to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(Method::POST, &format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// The current URL and the page's visible text (errors while a page is replaced).
    async fn look(&self) -> Result<(String, String), String> {
        let session = self.session.as_deref().expect("a session");
        let url = self.call(Method::GET, &format!("/session/{session}/url"), None).await?;
        let body = self
            .call(
                Method::POST,
                &format!("/session/{session}/element"),
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await?;
        let body = body[ELEMENT].as_str().ok_or("no body element")?;
        let text = self
            .call(Method::GET, &format!("/session/{session}/element/{body}/text"), None)
            .await?;
        Ok((
            url.as_str().unwrap_or_default().to_string(),
            text.as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Polls until the current URL and page text satisfy `done`; returns them, or on timeout
    /// the last ones seen.
    async fn wait_for(&self, done: impl Fn(&str, &str) -> bool) -> Result<(String, String), String> {
        let deadline = Instant::now() + STEP;
        loop {
            let last = match self.look().await {
                Ok((url, text)) if done(&url, &text) => return Ok((url, text)),
                Ok((url, text)) => format!("at {url}: {text:?}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let ended = self.session.take().is_none_or(|s| end_session(self.port, &s));
        if !ended && let Some(pid) = self.pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
            eprintln!("--- chromedriver output\n{log}");
        }
    }
}

/// `DELETE /session/{id}` with a plain blocking request (no runtime to await on in `drop`):
/// ChromeDriver quits the browser before it answers. True if it answered 200.
fn end_session(port: u16, session: &str) -> bool {
    let ended = || -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        // The status line is enough (ChromeDriver may keep the connection open after it).
        let mut answer = [0u8; 12];
        s.read_exact(&mut answer)?;
        Ok(&answer == b"HTTP/1.1 200")
    };
    ended().unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn manifests(base: &str) -> String {
    let ca = json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "ledger"},
        "spec": {
            "credentialsRef": {"name": "ledger-credentials"},
            "oauth2": {
                "grantType": "authorizationCode",
                "pkce": true,
                "callbackValues": ["realmId"],
                "authorizationUrl": format!("{base}/authorize?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"),
                "tokenUrl": format!("{base}/token"),
                "clientAuth": "client_secret_post",
            },
            "output": {"template": {"realm_id": "{{ callback.realmId }}"}},
        },
    });
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ledger-credentials}}\nstringData: {{client_id: lp-client, client_secret: lp-secret}}\n---\n{}",
        serde_json::to_string(&ca).unwrap()
    )
}

fn query_value(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read_to_string(&p).is_ok_and(|text| text.contains(needle)) {
            found.push(p);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_on_the_providers_login_page_in_chromium_and_the_token_is_published() {
    if !browser_installed() {
        return;
    }
    let started = Instant::now();
    let (base, book) = login_page_server().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ledger.yaml"), manifests(&base)).unwrap();
    let out = tmp.path().join("out");
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), out.clone());
    let addr = runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let reports = runner.pass().await.unwrap();
    assert!(!reports[0].ok(), "no token before consent: {}", reports[0].line());
    let link = reports[0]
        .authorization_url
        .clone()
        .unwrap_or_else(|| panic!("no consent link: {}", reports[0].line()));
    let challenge = query_value(&link, "code_challenge").unwrap_or_else(|| panic!("no code_challenge: {link}"));
    assert_eq!(query_value(&link, "code_challenge_method").as_deref(), Some("S256"));

    let browser = Browser::start().await;
    let ready = Instant::now();
    browser.goto(&link).await;
    let refusals = || book.refused();
    browser
        .wait_for(|_, text| text.contains("Sign in to Ledgerly"))
        .await
        .unwrap_or_else(|last| panic!("the login page did not show: {last}; provider refused {:?}", refusals()));

    // A wrong password: the provider shows its form again, and no code is issued.
    browser.type_into("input[name=username]", LOGIN_PAGE_USER).await;
    browser.type_into("input[name=password]", "looking-glass").await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for(|url, text| url == format!("{base}/login") && text.contains("Wrong username or password"))
        .await
        .unwrap_or_else(|last| panic!("a wrong password was not refused: {last}"));
    assert_eq!(*book.failed_logins.lock().unwrap(), [LOGIN_PAGE_USER]);
    assert_eq!(book.tokens.requests(), 0, "nothing to exchange yet");

    // The right one: the provider redirects to the callback, which completes the consent.
    browser.type_into("input[name=username]", LOGIN_PAGE_USER).await;
    browser.type_into("input[name=password]", LOGIN_PAGE_PASSWORD).await;
    browser.click("button[type=submit]").await;
    let callback = format!("http://{addr}/oauth2/callback?");
    let (landed, page) = browser
        .wait_for(|url, text| url.starts_with(&callback) && text.contains("Connected"))
        .await
        .unwrap_or_else(|last| {
            panic!(
                "the browser did not land on a successful callback {callback}: {last}; provider refused {:?}",
                refusals()
            )
        });
    assert!(
        page.contains("ConnectorAuth default/ledger is authorized. You can close this window."),
        "{page}"
    );
    assert_eq!(query_value(&landed, "realmId").as_deref(), Some(LOGIN_PAGE_REALM));
    assert_eq!(*book.logins.lock().unwrap(), [LOGIN_PAGE_USER]);

    // The token is published, works, and the callback value is in the output.
    let secret = out.join("default/ledger-token");
    let read = |key: &str| {
        std::fs::read_to_string(secret.join(key)).unwrap_or_else(|e| panic!("{}: {e}", secret.join(key).display()))
    };
    let token = read("access_token");
    assert!(token.starts_with("lp-at-"), "the token from the exchange: {token}");
    assert_eq!(read("realm_id"), LOGIN_PAGE_REALM);
    let api = format!("{base}/api");
    let direct = reqwest::Client::new()
        .get(&api)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let headers = std::collections::BTreeMap::from([("headers.json".to_string(), read("headers.json"))]);
    assert_eq!(call_api(&api, &headers).await, 200);

    // PKCE: one exchange, with the verifier that hashes to the challenge of the link the
    // browser opened; nothing refused.
    assert_eq!(book.refused(), Vec::<String>::new());
    let verifiers = book.verifiers.lock().unwrap().clone();
    assert_eq!(verifiers.len(), 1, "{verifiers:?}");
    assert_eq!(consent::pkce_challenge(&verifiers[0]), challenge);
    let challenges = book.challenges.lock().unwrap().clone();
    assert!(
        !challenges.is_empty() && challenges.iter().all(|c| *c == challenge),
        "{challenges:?}"
    );
    assert_eq!(book.exchanges.load(Ordering::SeqCst), 1, "exactly one code exchange");
    assert_eq!(book.tokens.requests(), 1);
    // The undeclared parameter (and the verifier) reached nothing kept or published.
    assert_eq!(files_holding(&out, LOGIN_PAGE_PLANTED), Vec::<PathBuf>::new());
    assert_eq!(files_holding(&out, &verifiers[0]), Vec::<PathBuf>::new());

    // The next pass finds the token good; the callback opened again is refused, unexchanged.
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    browser.goto(&landed).await;
    browser
        .wait_for(|_, text| text.contains("Consent link already used"))
        .await
        .unwrap_or_else(|last| panic!("a replayed callback was not refused: {last}"));
    assert_eq!(book.exchanges.load(Ordering::SeqCst), 1);
    assert_eq!(book.tokens.requests(), 1, "the code was not sent again");
    assert_eq!(read("access_token"), token);

    drop(browser);
    eprintln!(
        "browser consent: {:.1?} in all, {:.1?} of it in the browser once started",
        started.elapsed(),
        ready.elapsed()
    );
}

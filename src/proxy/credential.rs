//! The credential of a route: the mounted output Secret's folder, looked at for each request
//! (one `stat` of `headers.json`, which follows the kubelet's `..data` symlink), read again
//! only when the file changed, and never used once expired.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use jiff::Timestamp;

/// What a route adds to requests.
#[derive(Debug)]
pub struct Credential {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub expires_at: Option<Timestamp>,
    /// For the DPoP proof's `ath`.
    pub access_token: String,
    /// When the files were written (the token's age, for the metric).
    pub written: Timestamp,
}

/// Why there is no credential to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Nothing published yet, or the folder is unreadable.
    Missing(String),
    /// The published token expired and no newer one is there.
    Expired(Timestamp),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Missing(why) => write!(f, "no credential: {why}"),
            Unavailable::Expired(at) => write!(f, "the credential expired at {at} and no newer one is published"),
        }
    }
}

/// Which version of the files a loaded credential is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// A credential folder and the last version read of it.
pub struct CredentialFolder {
    dir: PathBuf,
    cached: Mutex<Option<(Stamp, Arc<Credential>)>>,
}

impl CredentialFolder {
    pub fn new(dir: PathBuf) -> Self {
        CredentialFolder {
            dir,
            cached: Mutex::new(None),
        }
    }

    /// The credential to send now.
    pub fn current(&self, now: Timestamp) -> Result<Arc<Credential>, Unavailable> {
        let headers = self.dir.join("headers.json");
        let s = stamp(&headers).map_err(|e| Unavailable::Missing(format!("{}: {e}", headers.display())))?;
        let cached = self.cached.lock().expect("lock").clone();
        let credential = match cached {
            Some((was, c)) if was == s => c,
            _ => {
                let c = Arc::new(self.read(s)?);
                *self.cached.lock().expect("lock") = Some((s, c.clone()));
                c
            }
        };
        match credential.expires_at {
            Some(exp) if exp <= now => Err(Unavailable::Expired(exp)),
            _ => Ok(credential),
        }
    }

    fn read(&self, s: Stamp) -> Result<Credential, Unavailable> {
        let file = |name: &str| std::fs::read_to_string(self.dir.join(name));
        let missing = |name: &str, e: String| Unavailable::Missing(format!("{}: {e}", self.dir.join(name).display()));
        let text = file("headers.json").map_err(|e| missing("headers.json", e.to_string()))?;
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|_| missing("headers.json", "not a JSON object of strings".into()))?;
        let mut headers = Vec::new();
        for (k, v) in map {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| missing("headers.json", format!("`{k}` is not a header name")))?;
            let value = HeaderValue::try_from(v)
                .map_err(|_| missing("headers.json", format!("the value of `{k}` is not a header value")))?;
            headers.push((name, value));
        }
        let expires_at = match file("expires_at") {
            Ok(t) => Some(
                t.trim()
                    .parse()
                    .map_err(|_| missing("expires_at", "not an RFC 3339 time".into()))?,
            ),
            Err(_) => None,
        };
        let written = Timestamp::from_nanosecond(s.mtime_ns).unwrap_or(Timestamp::UNIX_EPOCH);
        Ok(Credential {
            headers,
            expires_at,
            access_token: file("access_token").unwrap_or_default(),
            written,
        })
    }
}

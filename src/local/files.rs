//! Local mode's store: private state in `OUTPUT/.state/` (0600) and each output Secret as
//! files in the layout kubelet uses for a mounted Secret volume.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::reconcile::record::Record;
use crate::reconcile::{Store, StoreError};

/// Files for one resource: private record and published output.
pub struct FileStore {
    state_file: PathBuf,
    output_dir: PathBuf,
}

impl FileStore {
    /// The files of one resource under `root`. The names are checked where manifests are read
    /// (`crate::api::names`): no name that reaches here can leave `root`.
    pub fn new(root: &Path, namespace: &str, name: &str, secret: &str) -> Self {
        debug_assert!(crate::api::names::check(namespace, name).is_none());
        debug_assert!(crate::api::names::is_dns1123_subdomain(secret));
        FileStore {
            state_file: root.join(".state").join(namespace).join(format!("{name}.json")),
            output_dir: root.join(namespace).join(secret),
        }
    }

    /// The data currently published, read through `..data`.
    pub fn published(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(entries) = fs::read_dir(self.output_dir.join("..data")) {
            for e in entries.flatten() {
                if let (Some(name), Ok(v)) = (e.file_name().to_str().map(str::to_string), fs::read_to_string(e.path()))
                {
                    out.insert(name, v);
                }
            }
        }
        out
    }
}

/// A directory the operator writes into, made if missing. A symbolic link in its place is
/// refused: one planted there would send state (refresh tokens) or output elsewhere, and
/// `chmod` would follow it.
fn own_dir(dir: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(std::io::Error::other(format!(
            "{} is a symbolic link; the operator does not write through links in its output folder",
            dir.display()
        ))),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => own_dir(dir),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

pub(crate) fn mkdir_private(dir: &Path) -> std::io::Result<()> {
    own_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir), mode 0600. The
/// temporary file is created anew (`O_EXCL`), so a link planted in its place is not followed.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("path has a parent");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

impl Store for FileStore {
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        match fs::read(&self.state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::new(format!("state file {} is corrupt", self.state_file.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::new(format!("reading {}", self.state_file.display()), e)),
        }
    }

    async fn save(&self, record: &Record) -> Result<(), StoreError> {
        let what = || format!("writing {}", self.state_file.display());
        let dir = self.state_file.parent().expect("state file has a parent");
        // Both levels of .state are private: they hold refresh tokens.
        let state = dir.parent().expect(".state");
        if let Some(root) = state.parent() {
            fs::create_dir_all(root).map_err(|e| StoreError::new(what(), e))?;
        }
        mkdir_private(state).map_err(|e| StoreError::new(what(), e))?;
        mkdir_private(dir).map_err(|e| StoreError::new(what(), e))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::new(what(), e))?;
        write_atomic(&self.state_file, &bytes).map_err(|e| StoreError::new(what(), e))
    }

    async fn publish(&self, data: &BTreeMap<String, String>) -> Result<bool, StoreError> {
        // Also restore key links removed by hand.
        let links_intact = data.keys().all(|k| self.output_dir.join(k).exists());
        if links_intact && &self.published() == data {
            return Ok(false);
        }
        let what = || format!("writing {}", self.output_dir.display());
        publish_dir(&self.output_dir, data).map_err(|e| StoreError::new(what(), e))?;
        Ok(true)
    }
}

/// kubelet's atomic writer, in short: write a fresh `..<timestamp>` directory, point a
/// temporary symlink at it, rename that over `..data`, link each key to `..data/<key>`, and
/// remove the old directory and keys that are gone. Readers always see one complete version.
fn publish_dir(dir: &Path, data: &BTreeMap<String, String>) -> std::io::Result<()> {
    // OUTPUT/<namespace>/<secret>: the output folder itself is the user's; below it, no links.
    let ns_dir = dir.parent().expect("output dir has a parent");
    if let Some(root) = ns_dir.parent() {
        fs::create_dir_all(root)?;
    }
    own_dir(ns_dir)?;
    own_dir(dir)?;
    let stamp = Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let fresh = dir.join(&stamp);
    fs::create_dir(&fresh)?;
    for (k, v) in data {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(fresh.join(k))?;
        f.write_all(v.as_bytes())?;
        f.sync_all()?;
    }
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o700))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    fs::rename(&tmp_link, dir.join("..data"))?;
    for k in data.keys() {
        let link = dir.join(k);
        let target = Path::new("..data").join(k);
        match fs::read_link(&link) {
            Ok(t) if t == target => {}
            // Missing, or replaced by hand with a file or another link: put the key back.
            Ok(_) | Err(_) => {
                if fs::symlink_metadata(&link).is_ok() {
                    fs::remove_file(&link)?;
                }
                std::os::unix::fs::symlink(&target, &link)?;
            }
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !data.contains_key(&name) {
            fs::remove_file(entry.path())?;
        }
        // Versions left by a run that was killed mid-write, and the one just replaced.
        if is_version_dir(&name) && name != stamp && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// A `..<timestamp>` version directory of [`publish_dir`] (`..2026_12_07_09_30_00.123456`).
fn is_version_dir(name: &str) -> bool {
    name.strip_prefix("..").is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_digit())
            && rest.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '.')
    })
}

/// The consent signing key of local mode, created on first use (0600).
pub(crate) fn consent_key(output: &Path) -> anyhow::Result<Vec<u8>> {
    let path = output.join(".state").join("consent-key");
    if let Ok(k) = fs::read(&path)
        && k.len() >= 32
    {
        return Ok(k);
    }
    fs::create_dir_all(output)?;
    mkdir_private(&output.join(".state"))?;
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    write_atomic(&path, &key)?;
    Ok(key)
}

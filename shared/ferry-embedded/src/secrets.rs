//! The embedded secret store: one file per secret under `FERRY_HOME/secrets` (`ferry secret
//! set|ls|rm`), read by the agent for `secret:NAME` references. The directory is created 0700
//! and each file 0600 (written whole to a temporary file, then renamed into place); a secret
//! file that its group or others may read is refused, naming the `chmod` that fixes it.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_core::secret::{check_secret_name, SecretError, SecretRef, SecretSource};

/// Longest value stored (an environment variable of this size is already unusual).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Errors of `ferry secret set|ls|rm`; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// Bad input (the name or the value); nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The directory or a file is open to others.
    #[error("{0}")]
    Permissions(String),
    /// A file system error.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The secrets under one directory (`FERRY_HOME/secrets`).
#[derive(Debug, Clone)]
pub struct FileSecretStore {
    dir: PathBuf,
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SecretStoreError + 'a {
    move |source| SecretStoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

impl FileSecretStore {
    /// The store in `dir` (created on the first `set`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, SecretStoreError> {
        check_secret_name("NAME", name).map_err(|e| SecretStoreError::Invalid(e.to_string()))?;
        Ok(self.dir.join(name))
    }

    /// Stores `value` as secret `name` (replacing it). The value must be UTF-8 text without a
    /// NUL byte (an environment variable cannot hold one), not empty, at most
    /// [`MAX_SECRET_BYTES`].
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretStoreError> {
        let path = self.path_of(name)?;
        if value.is_empty() {
            return Err(SecretStoreError::Invalid(
                "the value is empty: pipe it on stdin (printf '%s' \"$VALUE\" | ferry secret set NAME) or type it at the prompt".into(),
            ));
        }
        if value.contains('\0') {
            return Err(SecretStoreError::Invalid(
                "the value contains a NUL byte, which an environment variable cannot hold".into(),
            ));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretStoreError::Invalid(format!(
                "the value has {} bytes; at most {MAX_SECRET_BYTES}",
                value.len()
            )));
        }
        self.ensure_dir()?;
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("cannot create", &tmp))?;
            f.write_all(value.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err("cannot write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("cannot replace", &path))
        })();
        if written.is_err() {
            if let Err(e) = fs::remove_file(&tmp) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a temporary secret file");
                }
            }
        }
        written
    }

    /// Creates the directory 0700, or checks that the existing one is not open to others.
    fn ensure_dir(&self) -> Result<(), SecretStoreError> {
        match fs::symlink_metadata(&self.dir) {
            Ok(m) => {
                if !m.is_dir() {
                    return Err(SecretStoreError::Invalid(format!(
                        "{} is not a directory: move it away",
                        self.dir.display()
                    )));
                }
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretStoreError::Permissions(format!(
                        "{} is open to other users (mode {mode:o}): run `chmod 700 {}`",
                        self.dir.display(),
                        self.dir.display()
                    )));
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = self.dir.parent() {
                    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(io_err("cannot create", &self.dir))
            }
            Err(e) => Err(io_err("cannot read", &self.dir)(e)),
        }
    }

    /// The names of the stored secrets, sorted (never their values).
    pub fn list(&self) -> Result<Vec<String>, SecretStoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list", &self.dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("cannot list", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_secret_name("NAME", &name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes secret `name`; `Ok(false)` if there was none.
    pub fn remove(&self, name: &str) -> Result<bool, SecretStoreError> {
        let path = self.path_of(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot remove", &path)(e)),
        }
    }

    /// The value of secret `name`. A file its group or others may read, or that is not a
    /// regular file (a symlink included), is refused.
    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        let path = self
            .path_of(name)
            .map_err(|e| SecretError::Refused(e.to_string()))?;
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SecretError::NotFound),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(SecretError::Refused(format!(
                    "{} is a symbolic link: store the secret with `ferry secret set {name}`",
                    path.display()
                )))
            }
            Err(e) => return Err(SecretError::backend(io_err("cannot open", &path)(e))),
        };
        let meta = f
            .metadata()
            .map_err(|e| SecretError::backend(io_err("cannot read", &path)(e)))?;
        if !meta.is_file() {
            return Err(SecretError::Refused(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Refused(format!(
                "{} is readable by other users (mode {mode:o}): run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let mut value = String::new();
        f.take(MAX_SECRET_BYTES as u64 + 1)
            .read_to_string(&mut value)
            .map_err(|e| SecretError::backend(io_err("cannot read", &path)(e)))?;
        Ok(value)
    }
}

#[async_trait]
impl SecretSource for FileSecretStore {
    async fn resolve(&self, reference: &SecretRef) -> Result<String, SecretError> {
        match reference {
            SecretRef::Embedded { name } => {
                let (store, name) = (self.clone(), name.clone());
                tokio::task::spawn_blocking(move || store.get(&name))
                    .await
                    .map_err(SecretError::backend)?
            }
            other => Err(SecretError::Unsupported(format!(
                "the embedded store holds secret: references only, not {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_stored_owner_only_and_listed_by_name() {
        let home = tempfile::tempdir().unwrap();
        let store = FileSecretStore::new(home.path().join("secrets"));
        assert!(store.list().unwrap().is_empty());
        store.set("db_password", "hunter2").unwrap();
        store.set("api.key", "k-1").unwrap();
        store.set("db_password", "hunter3").unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("db_password")), 0o600);
        assert_eq!(store.list().unwrap(), ["api.key", "db_password"]);
        assert_eq!(store.get("db_password").unwrap(), "hunter3");
        assert!(store.remove("api.key").unwrap());
        assert!(!store.remove("api.key").unwrap());
        assert!(matches!(store.get("api.key"), Err(SecretError::NotFound)));
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused_naming_the_chmod() {
        let home = tempfile::tempdir().unwrap();
        let store = FileSecretStore::new(home.path().join("secrets"));
        store.set("token", "t0p").unwrap();
        let file = store.dir().join("token");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let e = store.get("token").unwrap_err().to_string();
        assert!(e.contains(&format!("chmod 600 {}", file.display())), "{e}");
        assert!(!e.contains("t0p"), "{e}");
    }

    #[test]
    fn a_directory_open_to_others_is_refused_and_bad_names_write_nothing() {
        let home = tempfile::tempdir().unwrap();
        let store = FileSecretStore::new(home.path().join("secrets"));
        for name in ["", "../x", ".hidden", "a/b"] {
            assert!(matches!(
                store.set(name, "v"),
                Err(SecretStoreError::Invalid(_))
            ));
        }
        assert!(matches!(
            store.set("x", ""),
            Err(SecretStoreError::Invalid(_))
        ));
        assert!(!store.dir().exists());
        fs::DirBuilder::new()
            .mode(0o755)
            .create(store.dir())
            .unwrap();
        fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let e = store.set("x", "v").unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
    }
}

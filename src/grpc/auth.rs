//! API-key authentication with `app` and `ops` scopes (contract §4.5).
//!
//! Keys file: one key per line, `NAME SCOPES KEY`, scopes comma-separated (`app`, `ops`);
//! blank lines and `#` comments are skipped. Keys are compared in constant time against every
//! configured key. With no keys the service is open, which `server` allows only on loopback.
//! Keys read from a file are read again on [`Auth::reload`] (SIGHUP): a file that does not
//! parse leaves the keys in force, and a server never turns open, nor keyed, by a reload.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, PoisonError, RwLock},
};

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// User operations on behalf of the `user_id` the caller passes.
    App,
    /// Clear, export and forget for any user.
    Ops,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` header.
    #[error("missing API key: send `authorization: Bearer <key>`")]
    Missing,
    /// The key is not configured.
    #[error("unknown API key")]
    Unknown,
    /// The key lacks the scope the method needs.
    #[error("this API key may not call this method")]
    Scope,
}

#[derive(Clone)]
struct Key {
    name: Arc<str>,
    secret: Vec<u8>,
    app: bool,
    ops: bool,
}

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<Key>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// The shortest key accepted.
    pub const MIN_KEY_LEN: usize = 16;

    /// Parses a keys file's text. Errors name the line, never the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, secret] = fields[..] else {
                return Err(format!("line {}: expected `NAME SCOPES KEY`", n + 1));
            };
            let mut key = Key {
                name: Arc::from(name),
                secret: secret.as_bytes().to_vec(),
                app: false,
                ops: false,
            };
            for scope in scopes.split(',') {
                match scope {
                    "app" => key.app = true,
                    "ops" => key.ops = true,
                    _ => return Err(format!("line {}: unknown scope (app, ops)", n + 1)),
                }
            }
            if secret.len() < Self::MIN_KEY_LEN {
                return Err(format!("line {}: key shorter than 16 characters", n + 1));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no keys in the file".to_owned());
        }
        Ok(Self(keys))
    }

    /// Reads and parses a keys file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read keys file: {e}"))?;
        Self::parse(&text)
    }

    /// The key matching `presented`, compared in constant time against every key.
    fn find(&self, presented: &[u8]) -> Option<&Key> {
        let mut found = None;
        for key in &self.0 {
            if bool::from(key.secret.as_slice().ct_eq(presented)) {
                found = Some(key);
            }
        }
        found
    }
}

/// The caller's name in open mode (every caller is one).
pub const OPEN_CALLER: &str = "open";

static OPEN: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(OPEN_CALLER));

/// Authorizes calls: open (no keys, loopback only) or by key and scope.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    keys: Option<Arc<KeyRing>>,
}

/// The keys in force, and the file they came from.
#[derive(Debug)]
struct KeyRing {
    current: RwLock<Arc<ApiKeys>>,
    file: Option<PathBuf>,
}

impl Auth {
    /// Every call allowed. The server refuses this on a non-loopback address.
    pub fn open() -> Self {
        Self { keys: None }
    }

    /// Calls need one of `keys` (fixed: [`Auth::reload`] has no file to read).
    pub fn with_keys(keys: ApiKeys) -> Self {
        Self::keyed(keys, None)
    }

    /// Calls need one of the keys in the file at `path`, read now and on each
    /// [`Auth::reload`].
    pub fn from_file(path: &Path) -> Result<Self, String> {
        Ok(Self::keyed(ApiKeys::load(path)?, Some(path.to_owned())))
    }

    fn keyed(keys: ApiKeys, file: Option<PathBuf>) -> Self {
        let current = RwLock::new(Arc::new(keys));
        Self {
            keys: Some(Arc::new(KeyRing { current, file })),
        }
    }

    /// Whether no key is required.
    pub fn is_open(&self) -> bool {
        self.keys.is_none()
    }

    /// Reads the keys file again: the number of keys now in force, or why the file was
    /// refused (the keys in force stay; the reason names a line, never a key). `None` when
    /// there is no file (open, or keys given in code).
    pub fn reload(&self) -> Option<Result<usize, String>> {
        let ring = self.keys.as_ref()?;
        let file = ring.file.as_ref()?;
        Some(ApiKeys::load(file).map(|keys| {
            let count = keys.0.len();
            *ring.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
            count
        }))
    }

    /// Allows the call when its key holds any of `scopes`: the caller, named by its key's
    /// name ([`OPEN_CALLER`] in open mode).
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        scopes: &[Scope],
    ) -> Result<Arc<str>, AuthError> {
        let Some(ring) = &self.keys else {
            return Ok(OPEN.clone());
        };
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        let keys = ring
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let key = keys
            .find(presented.trim().as_bytes())
            .ok_or(AuthError::Unknown)?;
        let allowed = scopes.iter().any(|s| match s {
            Scope::App => key.app,
            Scope::Ops => key.ops,
        });
        if allowed {
            Ok(key.name.clone())
        } else {
            Err(AuthError::Scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        md.insert("authorization", value.parse().unwrap());
        md
    }

    const FILE: &str = "# clients\nbackend app aaaaaaaaaaaaaaaa\noncall ops,app bbbbbbbbbbbbbbbb\n";

    #[test]
    fn keys_grant_their_scopes_only() {
        let auth = Auth::with_keys(ApiKeys::parse(FILE).unwrap());
        let app = metadata("Bearer aaaaaaaaaaaaaaaa");
        assert_eq!(
            auth.authorize(&app, &[Scope::App]).as_deref(),
            Ok("backend")
        );
        assert_eq!(auth.authorize(&app, &[Scope::Ops]), Err(AuthError::Scope));
        let ops = metadata("Bearer bbbbbbbbbbbbbbbb");
        assert_eq!(auth.authorize(&ops, &[Scope::Ops]).as_deref(), Ok("oncall"));
        let wrong = metadata("Bearer cccccccccccccccc");
        assert_eq!(
            auth.authorize(&wrong, &[Scope::App]),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            auth.authorize(&MetadataMap::new(), &[Scope::App]),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn a_reload_takes_the_new_file_and_a_bad_one_keeps_the_keys_in_force() {
        let dir = std::env::temp_dir().join(format!("vicinity-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        fs::write(&path, FILE).unwrap();
        let auth = Auth::from_file(&path).unwrap();
        let old = metadata("Bearer aaaaaaaaaaaaaaaa");
        let new = metadata("Bearer dddddddddddddddd");
        assert!(auth.authorize(&old, &[Scope::App]).is_ok());
        assert_eq!(auth.authorize(&new, &[Scope::App]), Err(AuthError::Unknown));

        fs::write(&path, "rotated app dddddddddddddddd\n").unwrap();
        assert_eq!(auth.reload(), Some(Ok(1)));
        assert_eq!(auth.authorize(&old, &[Scope::App]), Err(AuthError::Unknown));
        assert_eq!(
            auth.authorize(&new, &[Scope::App]).as_deref(),
            Ok("rotated")
        );

        // An empty or broken file never opens the service nor drops the keys in force.
        for bad in ["", "rotated app tiny9\n"] {
            fs::write(&path, bad).unwrap();
            let refused = auth.reload().expect("a file to read").unwrap_err();
            assert!(!refused.contains("tiny9"), "{refused}");
            assert!(auth.authorize(&new, &[Scope::App]).is_ok());
        }
        fs::remove_file(&path).unwrap();
        assert!(auth.reload().expect("a file to read").is_err());
        assert!(auth.authorize(&new, &[Scope::App]).is_ok());
        assert!(!auth.is_open());
        // Nothing to read again for keys given in code, or in open mode.
        assert_eq!(
            Auth::with_keys(ApiKeys::parse(FILE).unwrap()).reload(),
            None
        );
        assert_eq!(Auth::open().reload(), None);
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line_and_without_the_key() {
        for bad in [
            "x app",
            "x admin aaaaaaaaaaaaaaaa",
            "x app tiny",
            "# nothing\n",
        ] {
            let err = ApiKeys::parse(bad).unwrap_err();
            assert!(!err.contains("aaaa") && !err.contains("tiny"), "{err}");
        }
    }
}

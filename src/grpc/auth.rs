//! API-key authentication with `app` and `ops` scopes (SPEC §4.5).
//!
//! Keys file: one key per line, `NAME SCOPES KEY`, scopes comma-separated (`app`, `ops`);
//! blank lines and `#` comments are skipped. Keys are compared in constant time against every
//! configured key. With no keys the service is open, which `server` allows only on loopback.

use std::{fs, path::Path};

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
    name: String,
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
                name: name.to_owned(),
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

/// Authorizes calls: open (no keys, loopback only) or by key and scope.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    keys: Option<ApiKeys>,
}

impl Auth {
    /// Every call allowed. The server refuses this on a non-loopback address.
    pub fn open() -> Self {
        Self { keys: None }
    }

    /// Calls need one of `keys`.
    pub fn with_keys(keys: ApiKeys) -> Self {
        Self { keys: Some(keys) }
    }

    /// Whether no key is required.
    pub fn is_open(&self) -> bool {
        self.keys.is_none()
    }

    /// Allows the call when its key holds any of `scopes`: the caller, named by its key's
    /// name ([`OPEN_CALLER`] in open mode).
    pub fn authorize(&self, metadata: &MetadataMap, scopes: &[Scope]) -> Result<&str, AuthError> {
        let Some(keys) = &self.keys else {
            return Ok(OPEN_CALLER);
        };
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        let key = keys
            .find(presented.trim().as_bytes())
            .ok_or(AuthError::Unknown)?;
        let allowed = scopes.iter().any(|s| match s {
            Scope::App => key.app,
            Scope::Ops => key.ops,
        });
        if allowed {
            Ok(&key.name)
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
        assert_eq!(auth.authorize(&app, &[Scope::App]), Ok("backend"));
        assert_eq!(auth.authorize(&app, &[Scope::Ops]), Err(AuthError::Scope));
        let ops = metadata("Bearer bbbbbbbbbbbbbbbb");
        assert_eq!(auth.authorize(&ops, &[Scope::Ops]), Ok("oncall"));
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

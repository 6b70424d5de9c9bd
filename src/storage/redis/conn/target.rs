//! Where a store lives ([`Target`]) and its URLs, which never print a password
//! ([`RedisUrl`], [`redacted`]).

use std::sync::Arc;

use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};

/// Where a store lives: its nodes, and the TLS settings of its `rediss://` URLs. Its `Debug`
/// hides passwords ([`redacted`]) and certificates.
#[derive(Clone)]
pub struct Target {
    nodes: Nodes,
    /// Applied to `rediss://` URLs; `None`: the system's roots and no client certificate.
    pub(super) tls: Option<Arc<TlsCertificates>>,
    /// The password for URLs that carry none (from a file or the environment).
    password: Option<Arc<str>>,
    /// Replicas that must hold a purge or a consent change before it is acknowledged
    /// ([`Conn::replicated`]); 0: none (Redis replicates asynchronously).
    pub(super) replica_acks: u32,
}

/// The nodes of a [`Target`].
#[derive(Clone, PartialEq, Eq)]
pub enum Nodes {
    /// One Redis server.
    Single(String),
    /// A Redis Cluster, by some of its nodes.
    Cluster(Vec<String>),
}

impl Target {
    /// One Redis server.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            nodes: Nodes::Single(url.into()),
            tls: None,
            password: None,
            replica_acks: 0,
        }
    }

    /// A Redis Cluster, by some of its nodes.
    pub fn cluster(urls: Vec<String>) -> Self {
        Self {
            nodes: Nodes::Cluster(urls),
            tls: None,
            password: None,
            replica_acks: 0,
        }
    }

    /// The same nodes, their `rediss://` URLs verified against `tls.root_cert` (when given,
    /// instead of the system's roots) and presenting `tls.client_tls` (when given).
    pub fn with_tls(self, tls: TlsCertificates) -> Self {
        Self {
            tls: Some(Arc::new(tls)),
            ..self
        }
    }

    /// The same nodes, authenticating with `password` wherever a URL carries none.
    pub fn with_password(self, password: &str) -> Self {
        Self {
            password: Some(password.into()),
            ..self
        }
    }

    /// The same nodes, where a purge or a consent change is acknowledged only once `acks`
    /// replicas of every primary written hold it ([`Conn::replicated`]).
    pub fn with_replica_acks(self, acks: u32) -> Self {
        Self {
            replica_acks: acks,
            ..self
        }
    }

    /// Its nodes.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Every node URL it names (one for a single server).
    pub fn urls(&self) -> Vec<String> {
        match &self.nodes {
            Nodes::Single(url) => vec![url.clone()],
            Nodes::Cluster(urls) => urls.clone(),
        }
    }

    /// A client for one of its servers, `url`, with its TLS settings for `rediss://`.
    pub fn client(&self, url: impl IntoConnectionInfo) -> redis::RedisResult<redis::Client> {
        let info = self.authenticated(url.into_connection_info()?);
        match (&self.tls, info.addr()) {
            (Some(tls), ConnectionAddr::TcpTls { .. }) => {
                redis::Client::build_with_tls(info, TlsCertificates::clone(tls))
            }
            _ => redis::Client::open(info),
        }
    }
}

impl Target {
    /// `info` with this target's password when it carries none of its own.
    fn authenticated(&self, info: redis::ConnectionInfo) -> redis::ConnectionInfo {
        match &self.password {
            Some(password) if info.redis_settings().password().is_none() => {
                let settings = info.redis_settings().clone().set_password(&**password);
                info.set_redis_settings(settings)
            }
            _ => info,
        }
    }

    /// The password a cluster client should be given: this target's, unless the first node's
    /// URL carries one of its own.
    pub(super) fn cluster_password(&self, urls: &[String]) -> Option<&str> {
        let own = urls
            .first()
            .and_then(|url| url.as_str().into_connection_info().ok())
            .is_some_and(|info| info.redis_settings().password().is_some());
        self.password.as_deref().filter(|_| !own)
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes
            && self.tls.is_some() == other.tls.is_some()
            && self.password == other.password
            && self.replica_acks == other.replica_acks
    }
}

impl Eq for Target {}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = self.tls.as_ref().map(|_| "<certificates>");
        let password = self.password.as_ref().map(|_| "***");
        match &self.nodes {
            Nodes::Single(url) => f
                .debug_struct("Single")
                .field("url", &redacted(url))
                .field("tls", &tls)
                .field("password", &password)
                .field("replica_acks", &self.replica_acks)
                .finish(),
            Nodes::Cluster(urls) => {
                let urls: Vec<String> = urls.iter().map(|u| redacted(u)).collect();
                f.debug_struct("Cluster")
                    .field("urls", &urls)
                    .field("tls", &tls)
                    .field("password", &password)
                    .field("replica_acks", &self.replica_acks)
                    .finish()
            }
        }
    }
}

/// A Redis URL as an argument: `Debug` and `Display` show it [`redacted`]; only
/// [`RedisUrl::expose`] gives the password back, for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL with its password, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self(url.to_owned()))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redacted(&self.0))
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// `url` fit to print: the password of its user information replaced by `***`, and its query
/// (which may carry credentials) by `?***`. Every URL that reaches a log, an error or `Debug`
/// output goes through this (a Redis password was printed in a start-up error).
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            // A lone user information is a password to Redis (`redis://secret@host`).
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _query)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

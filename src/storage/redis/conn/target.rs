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
    /// The sentinels' own password (`requirepass` on the sentinels), for a Sentinel target.
    sentinel_password: Option<Arc<str>>,
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
    /// The primary that Redis Sentinel names, by a `redis+sentinel://` URL (see
    /// [`Target::sentinel`]).
    Sentinel(String),
}

/// `text` with its `%XX` escapes decoded, as redis-rs decodes a `redis://` URL's password
/// (`None`: a bad escape, or not UTF-8).
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The scheme of a Redis Sentinel URL, and of one reached over TLS.
const SENTINEL_SCHEMES: [&str; 2] = ["redis+sentinel://", "rediss+sentinel://"];

/// A `redis+sentinel://` URL taken apart: the sentinels, the name of the primary they
/// watch, whether both are reached over TLS, and the data nodes' user and password.
pub(super) struct SentinelUrl {
    pub(super) sentinels: Vec<(String, u16)>,
    pub(super) master: String,
    pub(super) tls: bool,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
}

impl SentinelUrl {
    /// Parses `redis+sentinel://[[user]:password@]host:port[,host:port...]/name` (or
    /// `rediss+sentinel://`, TLS to the sentinels and to the primary). The password is the
    /// primary's (and its replicas'); the sentinels' own is [`Target::with_sentinel_password`]'s.
    pub(super) fn parse(url: &str) -> Result<Self, &'static str> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix(SENTINEL_SCHEMES[0]) {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix(SENTINEL_SCHEMES[1]) {
            (true, rest)
        } else {
            return Err("not a redis+sentinel:// URL");
        };
        let (authority, master) = rest
            .split_once('/')
            .ok_or("a sentinel URL ends with /<the primary's name>")?;
        let master = master.trim_end_matches('/');
        if master.is_empty() || master.contains(['/', '?', '#']) {
            return Err("a sentinel URL ends with /<the primary's name>");
        }
        let (user_info, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => (Some(user_info), hosts),
            None => (None, authority),
        };
        // `?` and `#` end a URL's authority wherever `redacted` looks: refused, so that no
        // printed form of the URL can show part of a password (percent-encode them).
        if user_info.is_some_and(|u| u.contains(['?', '#'])) {
            return Err("percent-encode '?' and '#' in a sentinel URL's password");
        }
        let decoded = |text: &str| {
            percent_decoded(text)
                .ok_or("a sentinel URL's user information is not valid percent-encoding")
        };
        let (user, password) = match user_info.map(|u| (u, u.split_once(':'))) {
            None => (None, None),
            Some((alone, None)) => (None, Some(decoded(alone)?)),
            Some((_, Some((user, password)))) => {
                let user = (!user.is_empty()).then(|| decoded(user)).transpose()?;
                (user, Some(decoded(password)?))
            }
        };
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let (name, port) = host.rsplit_once(':').ok_or("each sentinel is host:port")?;
                let port = port.parse().map_err(|_| "each sentinel is host:port")?;
                Ok((name.trim_matches(['[', ']']).to_owned(), port))
            })
            .collect::<Result<Vec<_>, &'static str>>()?;
        Ok(Self {
            sentinels,
            master: master.to_owned(),
            tls,
            user,
            password,
        })
    }
}

impl Target {
    /// One Redis server.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            nodes: Nodes::Single(url.into()),
            tls: None,
            password: None,
            sentinel_password: None,
            replica_acks: 0,
        }
    }

    /// A Redis Cluster, by some of its nodes.
    pub fn cluster(urls: Vec<String>) -> Self {
        Self {
            nodes: Nodes::Cluster(urls),
            tls: None,
            password: None,
            sentinel_password: None,
            replica_acks: 0,
        }
    }

    /// The primary Redis Sentinel names, by a URL
    /// `redis+sentinel://[[user]:password@]host:port[,host:port...]/name` (`rediss+sentinel://`:
    /// TLS to the sentinels and to the primary): the sentinels, and the name of the primary
    /// they watch. Connections follow a failover (docs/operations.md).
    pub fn sentinel(url: impl Into<String>) -> Self {
        Self {
            nodes: Nodes::Sentinel(url.into()),
            tls: None,
            password: None,
            sentinel_password: None,
            replica_acks: 0,
        }
    }

    /// The target a single URL names: a Sentinel's for `redis+sentinel://` and
    /// `rediss+sentinel://`, else one server's.
    pub fn from_url(url: impl Into<String>) -> Self {
        let url = url.into();
        if SENTINEL_SCHEMES.iter().any(|s| url.starts_with(s)) {
            Self::sentinel(url)
        } else {
            Self::single(url)
        }
    }

    /// What is wrong with its URL, if it is a Sentinel's that does not parse (the others are
    /// read when connecting).
    pub fn url_problem(&self) -> Option<&'static str> {
        match &self.nodes {
            Nodes::Sentinel(url) => SentinelUrl::parse(url).err(),
            Nodes::Single(_) | Nodes::Cluster(_) => None,
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

    /// The same nodes, whose sentinels (for a Sentinel target) require `password`
    /// (`requirepass` on the sentinels; the primary's own password is [`Target::with_password`]'s
    /// or its URL's).
    pub fn with_sentinel_password(self, password: &str) -> Self {
        Self {
            sentinel_password: Some(password.into()),
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
            Nodes::Single(url) | Nodes::Sentinel(url) => vec![url.clone()],
            Nodes::Cluster(urls) => urls.clone(),
        }
    }

    /// Clients for the servers that hold its data now: the single server, every node named of
    /// a cluster, or the primary its sentinels name at this moment (they are asked).
    pub async fn clients(&self) -> redis::RedisResult<Vec<redis::Client>> {
        match &self.nodes {
            Nodes::Single(url) => Ok(vec![self.client(url.as_str())?]),
            Nodes::Cluster(urls) => urls.iter().map(|url| self.client(url.as_str())).collect(),
            Nodes::Sentinel(_) => {
                let mut sentinels = self.sentinel_client()?;
                Ok(vec![
                    super::established(sentinels.async_get_client()).await?,
                ])
            }
        }
    }

    /// A Sentinel client for its primary, with its TLS settings and password (the target's
    /// when the URL carries none).
    pub(super) fn sentinel_client(&self) -> redis::RedisResult<redis::sentinel::SentinelClient> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let Nodes::Sentinel(url) = &self.nodes else {
            let why = "not a Sentinel target";
            return Err((redis::ErrorKind::InvalidClientConfig, why).into());
        };
        let parsed = SentinelUrl::parse(url)
            .map_err(|why| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, why)))?;
        let addrs = parsed
            .sentinels
            .iter()
            .map(|(host, port)| match parsed.tls {
                true => ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                },
                false => ConnectionAddr::Tcp(host.clone(), *port),
            });
        let mut builder =
            SentinelClientBuilder::new(addrs, &parsed.master, SentinelServerType::Master)?;
        if parsed.tls {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
            if let Some(tls) = &self.tls {
                builder = builder
                    .set_client_to_redis_certificates(TlsCertificates::clone(tls))
                    .set_client_to_sentinel_certificates(TlsCertificates::clone(tls));
            }
        }
        if let Some(user) = &parsed.user {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = parsed.password.as_deref().or(self.password.as_deref()) {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()
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
            && self.sentinel_password == other.sentinel_password
            && self.replica_acks == other.replica_acks
    }
}

impl Eq for Target {}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = self.tls.as_ref().map(|_| "<certificates>");
        let password = self.password.as_ref().map(|_| "***");
        let sentinel_password = self.sentinel_password.as_ref().map(|_| "***");
        let (topology, urls) = match &self.nodes {
            Nodes::Single(url) => ("Single", vec![redacted(url)]),
            Nodes::Cluster(urls) => ("Cluster", urls.iter().map(|u| redacted(u)).collect()),
            Nodes::Sentinel(url) => ("Sentinel", vec![redacted(url)]),
        };
        f.debug_struct(topology)
            .field("urls", &urls)
            .field("tls", &tls)
            .field("password", &password)
            .field("sentinel_password", &sentinel_password)
            .field("replica_acks", &self.replica_acks)
            .finish()
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

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn only_two_hex_digits_make_an_escape() {
        assert_eq!(percent_decoded("p%40ss%3f").as_deref(), Some("p@ss?"));
        assert_eq!(percent_decoded("%+4"), None, "a sign is not a digit");
        assert_eq!(percent_decoded("%4"), None, "one digit");
        assert_eq!(percent_decoded("%zz"), None);
    }
}

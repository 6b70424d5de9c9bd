//! Connections: one Redis (a `ConnectionManager`, which reconnects by itself) or a Redis
//! Cluster (the async cluster client), behind one type, with tuned timeouts, and the mapping
//! of Redis errors to store errors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo, Pipeline,
    ProtocolVersion, RedisError, RedisFuture, ScriptInvocation, Value,
    aio::{
        AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig,
        MultiplexedConnection,
    },
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
};
pub use redis::{ClientTlsConfig, TlsCertificates};

use crate::{
    storage::{StoreError, StoreErrorKind, StoreResult},
    telemetry::metrics,
};

/// How long connecting may take before the call fails. Measured here with redis 1.8: the
/// default settings blocked a call 9.4 s while Redis was down; with these, every call failed
/// within about 0.5 s and recovered within 30 ms of Redis returning.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Reconnection attempts inside one call, and the longest pause between them.
const RETRIES: usize = 2;
const MAX_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Where a store lives: its nodes, and the TLS settings of its `rediss://` URLs. Its `Debug`
/// hides passwords ([`redacted`]) and certificates.
#[derive(Clone)]
pub struct Target {
    nodes: Nodes,
    /// Applied to `rediss://` URLs; `None`: the system's roots and no client certificate.
    tls: Option<Arc<TlsCertificates>>,
    /// The password for URLs that carry none (from a file or the environment).
    password: Option<Arc<str>>,
    /// Replicas that must hold a purge or a consent change before it is acknowledged
    /// ([`Conn::replicated`]); 0: none (Redis replicates asynchronously).
    replica_acks: u32,
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
    fn cluster_password(&self, urls: &[String]) -> Option<&str> {
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
/// output goes through this (issue 21: a Redis password was printed in a start-up error).
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

/// Milliseconds of a `TIME` reply (seconds, microseconds).
pub fn time_ms((secs, micros): (i64, i64)) -> i64 {
    secs * 1000 + micros / 1000
}

/// The key whose slot's master a cluster's clock is read from ([`Conn::time`]): the sweep
/// schedule's, which every node reads anyway.
const CLOCK_KEY: &str = super::keys::PARTS;

/// A connection to a single Redis or a cluster that bounds every call by the store timeout:
/// the one way the store talks to Redis ([`Conn::script`], [`Conn::query`],
/// [`Conn::pipeline`]). Cheap to clone (clones share the socket).
#[derive(Clone)]
pub struct Conn {
    link: Link,
    timeout: Duration,
    /// [`Target`]'s replica acknowledgements.
    replica_acks: u32,
    /// Which store this is, for the metrics (`locations`, `consents`).
    store: &'static str,
}

#[derive(Clone)]
enum Link {
    /// One server.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(Renewing),
    /// One server over RESP3 with its pushes handed to a sender, and no reconnection: when
    /// it drops, its owner hears of it (a disconnection push) and makes another
    /// ([`super::granted_cache`]).
    Pushed(MultiplexedConnection),
}

impl Conn {
    /// Connects to `target` for `store` (its name in the metrics); one call may take at most
    /// `timeout` (the store call bound), after which it fails as a timeout and the
    /// connection is re-established.
    pub async fn connect(
        target: &Target,
        timeout: Duration,
        store: &'static str,
    ) -> Result<Self, StoreError> {
        let link = Link::connect(target, timeout, store).await?;
        Ok(Self {
            link,
            timeout,
            replica_acks: target.replica_acks,
            store,
        })
    }

    /// Connects to `target`'s server (a single one: a cluster is refused) over RESP3 with its
    /// TLS settings and password, handing every push (invalidations, and the library's own
    /// disconnection notice) to `pushes`; the connection is not re-established.
    pub async fn pushed(
        target: &Target,
        timeout: Duration,
        store: &'static str,
        pushes: impl AsyncPushSender,
    ) -> Result<Self, StoreError> {
        let fail = |e: RedisError| store_error(e, "connecting");
        let url = match target.nodes() {
            Nodes::Single(url) => url.as_str(),
            Nodes::Cluster(_) => {
                let why = "a tracked connection needs a single server";
                return Err(StoreError::new(StoreErrorKind::Unavailable, why));
            }
        };
        let info = url.into_connection_info().map_err(fail)?;
        let settings = info.redis_settings().clone();
        let info = info.set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3));
        let client = target.client(info).map_err(fail)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout))
            .set_push_sender(pushes);
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(fail)?;
        Ok(Self {
            link: Link::Pushed(connection),
            timeout,
            replica_acks: target.replica_acks,
            store,
        })
    }

    /// Whether this is a cluster (cross-slot pipelines are refused there).
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Runs a script call, bounded; `context` names the step for errors.
    pub async fn script<T: FromRedisValue>(
        &self,
        context: &'static str,
        call: &ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        let mut conn = self.clone();
        self.bounded(context, call.invoke_async(&mut conn)).await
    }

    /// The server's clock (`TIME`, seconds and microseconds). On a cluster from the master of
    /// one fixed slot: a keyless `TIME` goes to any node, and after a failover, for seconds, to
    /// the dead one.
    pub async fn time(&self, context: &'static str) -> StoreResult<(i64, i64)> {
        let mut conn = self.clone();
        let read = async move {
            let Link::Cluster(cluster) = &conn.link else {
                return redis::cmd("TIME").query_async(&mut conn).await;
            };
            let mut cluster = cluster.current().await;
            let routing = master_of(CLOCK_KEY.as_bytes());
            let reply = cluster.route_command(redis::cmd("TIME"), routing).await?;
            Ok(redis::from_redis_value(reply.extract_error()?)?)
        };
        self.bounded(context, read).await
    }

    /// Waits until the target's replica acknowledgements hold what this connection wrote
    /// (`WAIT`, on every primary of a cluster; at once when none are asked for). Fewer
    /// replicas within half the store timeout is `Unavailable`: the write is on its primary
    /// but a failover could still lose it, so it is not acknowledged (a purge stays owed and
    /// its sweep writes and waits again; a consent change is answered with an error and
    /// retried by its caller).
    pub async fn replicated(&self, context: &'static str) -> StoreResult<()> {
        if self.replica_acks == 0 {
            return Ok(());
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replica_acks)
            .arg((self.timeout / 2).as_millis().max(1) as u64);
        let acked: u32 = self.query(context, &wait).await?;
        if acked < self.replica_acks {
            return Err(StoreError::new(StoreErrorKind::Unavailable, context));
        }
        Ok(())
    }

    /// After a script `cmd` answered, with replica acknowledgements asked for: `WAIT` on the
    /// node its first key routes to (the one that ran it, on the same connection), so every
    /// step of a write (an update's, a clear's, a sweep's) is held by a replica before the
    /// next step runs or the call is acknowledged. A failover then promotes a replica that
    /// holds every step acknowledged so far, and the orderings that make a cut-off write
    /// safe (docs/decisions.md) hold across it; without this, Redis replicates
    /// asynchronously and a failover can lose one step and keep the next (a member lost
    /// while its record stays, a partition's sweep schedule lost while its cells stay).
    /// Fewer replicas within half the store timeout fail the call (`Unavailable`), which
    /// the callers treat as a call cut off at that step. Scripts that only read, and the
    /// sweep's, do not wait ([`super::scripts::waits_for_replicas`]). The `WAIT` holds this
    /// node's shared connection while it waits (Redis reads nothing more from a blocked
    /// client), so every call on it queues behind it: about one replication round trip with
    /// healthy replicas, up to half the store timeout with one away (docs/operations.md).
    async fn replicated_script(&mut self, cmd: &Cmd) -> redis::RedisResult<()> {
        if self.replica_acks == 0 {
            return Ok(());
        }
        let Some((hash, args)) = evalsha(cmd) else {
            return Ok(());
        };
        if !super::scripts::waits_for_replicas(hash) {
            return Ok(());
        }
        // After the number of keys, the first key.
        let key = args.get(1).copied();
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replica_acks)
            .arg((self.timeout / 2).as_millis().max(1) as u64);
        let reply = match (&mut self.link, key) {
            (Link::Cluster(cluster), Some(key)) => {
                let routing = master_of(key);
                cluster.current().await.route_command(wait, routing).await?
            }
            (link, _) => link.send(&wait).await?,
        };
        let acked: u32 = redis::from_redis_value(reply.extract_error()?)?;
        if acked < self.replica_acks {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "fewer replicas than asked for hold a script's writes",
            )));
        }
        Ok(())
    }

    /// Runs one command, bounded.
    pub async fn query<T: FromRedisValue>(
        &self,
        context: &'static str,
        cmd: &Cmd,
    ) -> StoreResult<T> {
        let mut conn = self.clone();
        self.bounded(context, cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline (one round trip), bounded.
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        context: &'static str,
        pipe: &Pipeline,
    ) -> StoreResult<T> {
        let mut conn = self.clone();
        self.bounded(context, pipe.query_async(&mut conn)).await
    }
}

/// How many store calls in a row must time out on a cluster before its connection is made
/// anew ([`Renewing`]).
const RENEW_AFTER_TIMEOUTS: u32 = 3;

/// A Redis Cluster connection that is made anew from the configured nodes after
/// [`RENEW_AFTER_TIMEOUTS`] calls in a row timed out. redis-rs 1.8's cluster client holds
/// every request while it refreshes its slot map, refreshes again on each redirect or
/// refused connection, and has no way to force, bound or replace a refresh; after a failover
/// (a master killed, its replica promoted, the old one back as a replica) calls to every
/// slot timed out for seconds (docs/decisions.md). A new connection reads the topology
/// afresh. Calls in flight finish (or time out) on the old one, which goes with its last
/// clone.
#[derive(Clone)]
struct Renewing {
    client: Arc<ClusterClient>,
    /// Which store this is, for the metrics.
    store: &'static str,
    current: Arc<tokio::sync::RwLock<ClusterConnection>>,
    /// Calls in a row that timed out (any other outcome resets it).
    timeouts: Arc<AtomicU32>,
}

impl Renewing {
    fn new(client: ClusterClient, connection: ClusterConnection, store: &'static str) -> Self {
        Self {
            client: Arc::new(client),
            store,
            current: Arc::new(tokio::sync::RwLock::new(connection)),
            timeouts: Arc::default(),
        }
    }

    /// The connection to send on: the current one, or, once enough calls in a row timed
    /// out, a new one (one caller makes it while the others wait on the lock, bounded by
    /// their own call's timeout; if it cannot be made, the current one stays).
    async fn current(&self) -> ClusterConnection {
        if self.timeouts.load(Ordering::Relaxed) >= RENEW_AFTER_TIMEOUTS {
            let mut current = self.current.write().await;
            if self.timeouts.load(Ordering::Relaxed) >= RENEW_AFTER_TIMEOUTS {
                self.timeouts.store(0, Ordering::Relaxed);
                match self.client.get_async_connection().await {
                    Ok(renewed) => {
                        metrics::get()
                            .store_renewals
                            .with_label_values(&[self.store])
                            .inc();
                        tracing::warn!("store calls kept timing out: cluster connection renewed");
                        *current = renewed;
                    }
                    Err(error) => {
                        let kind = store_error(error, "renewing the cluster connection").kind;
                        tracing::warn!(
                            kind = kind.as_str(),
                            "renewing the cluster connection failed"
                        );
                    }
                }
                // Calls that timed out while it was being made do not count towards the next.
                self.timeouts.store(0, Ordering::Relaxed);
            }
            return current.clone();
        }
        self.current.read().await.clone()
    }

    /// The current connection alone, never renewed (its own count of timeouts): what one call
    /// sends all its commands on.
    async fn pinned(&self) -> Self {
        Self {
            client: self.client.clone(),
            store: self.store,
            current: Arc::new(tokio::sync::RwLock::new(self.current().await)),
            timeouts: Arc::default(),
        }
    }

    /// Counts a call's outcome towards a renewal.
    fn note<T>(&self, result: &StoreResult<T>) {
        match result {
            Err(error) if error.kind == StoreErrorKind::Timeout => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.timeouts.store(0, Ordering::Relaxed),
        }
    }
}

impl Link {
    async fn connect(
        target: &Target,
        response_timeout: Duration,
        store: &'static str,
    ) -> Result<Self, StoreError> {
        let fail = |e: RedisError| store_error(e, "connecting");
        match target.nodes() {
            Nodes::Single(url) => {
                let client = target.client(url.as_str()).map_err(fail)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(RETRIES)
                    .set_max_delay(MAX_RETRY_DELAY);
                let manager = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(fail)?;
                Ok(Self::Single(manager))
            }
            Nodes::Cluster(urls) => {
                let mut builder = ClusterClient::builder(urls.clone());
                if let Some(tls) = &target.tls {
                    builder = builder.certs(TlsCertificates::clone(tls));
                }
                if let Some(password) = target.cluster_password(urls) {
                    builder = builder.password(password);
                }
                let client = builder
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .retries(RETRIES as u32)
                    .min_retry_wait(50)
                    .max_retry_wait(MAX_RETRY_DELAY.as_millis() as u64)
                    .build()
                    .map_err(fail)?;
                let connection = client.get_async_connection().await.map_err(fail)?;
                Ok(Self::Cluster(Renewing::new(client, connection, store)))
            }
        }
    }
}

impl Link {
    fn send<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => Box::pin(async move {
                let mut current = c.current().await;
                current.req_packed_command(cmd).await
            }),
            Link::Pushed(c) => c.req_packed_command(cmd),
        }
    }
}

/// The `EVAL` of an `EVALSHA` of one of this build's scripts (`None`: another command, or a
/// script this build does not know), with the same keys and arguments, so routed alike.
fn eval_of(cmd: &Cmd) -> Option<Cmd> {
    let (hash, rest) = evalsha(cmd)?;
    let body = super::scripts::body_of(hash)?;
    let mut eval = redis::cmd("EVAL");
    eval.arg(body.as_bytes());
    for arg in rest {
        eval.arg(arg);
    }
    Some(eval)
}

/// The script hash and the rest of the arguments (number of keys, keys, arguments) of an
/// `EVALSHA` whose arguments are all plain (`None`: another command).
fn evalsha(cmd: &Cmd) -> Option<(&[u8], Vec<&[u8]>)> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    if !args.next()??.eq_ignore_ascii_case(b"EVALSHA") {
        return None;
    }
    let hash = args.next()??;
    Some((hash, args.collect::<Option<_>>()?))
}

/// Routing to the master of `key`'s slot.
fn master_of(key: &[u8]) -> RoutingInfo {
    let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))
}

impl ConnectionLike for Conn {
    /// An `EVALSHA` answered `NOSCRIPT` is sent again as an `EVAL` of its body, to the node
    /// its key routes to (which caches it). redis-rs would send `SCRIPT LOAD` instead, which on
    /// a cluster goes to every node and fails while any is down: after a failover the
    /// promoted replica has no scripts, the old master is dead, and every script call failed
    /// until the slot map forgot it (issue 20 point 8).
    ///
    /// With replica acknowledgements asked for, a script's reply counts only once that many
    /// replicas hold what it wrote ([`Conn::replicated_script`]).
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            // One cluster connection for the script, its fallback and its `WAIT` (this `Conn`
            // is the call's own clone): a `WAIT` on a connection renewed in between would
            // cover nothing. Without a `WAIT` to follow there is nothing to pin (and no
            // allocation per call).
            if let Link::Cluster(cluster) = &self.link
                && self.replica_acks > 0
            {
                self.link = Link::Cluster(cluster.pinned().await);
            }
            let mut reply = self.link.send(cmd).await?;
            if let Value::ServerError(error) = &reply
                && error.kind() == Some(redis::ServerErrorKind::NoScript)
                && let Some(eval) = eval_of(cmd)
            {
                reply = self.link.send(&eval).await?;
            }
            if !matches!(reply, Value::ServerError(_)) {
                self.replicated_script(cmd).await?;
            }
            Ok(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => Box::pin(async move {
                let mut current = c.current().await;
                current.req_packed_commands(pipeline, offset, count).await
            }),
            Link::Pushed(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(_) => 0,
            Link::Pushed(c) => c.get_db(),
        }
    }
}

/// Maps a Redis error to a store error. A type or parse error may quote the reply it could
/// not read, which can be stored data, so those keep no source (the context says enough).
pub fn store_error(error: RedisError, context: &'static str) -> StoreError {
    if matches!(
        error.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) {
        return StoreError::new(StoreErrorKind::Corrupt, context);
    }
    // WRONGTYPE from a command, a script (`ERR ...` whose detail names it) or one command of a
    // pipeline (the pipeline's error holds each command's).
    let names_wrong_type = |code: &str, detail: Option<&str>| {
        code == "WRONGTYPE" || detail.is_some_and(|d| d.contains("WRONGTYPE"))
    };
    let wrong_type = names_wrong_type(error.code().unwrap_or(""), error.detail())
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, e)| names_wrong_type(e.code(), e.details()))
        });
    if wrong_type {
        // Data this version cannot read: retrying will not help.
        return StoreError {
            kind: StoreErrorKind::Corrupt,
            context,
            source: Some(Box::new(error)),
        };
    }
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if passes(&error) {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Internal
    };
    StoreError {
        kind,
        context,
        source: Some(Box::new(error)),
    }
}

/// Whether `error` is one of those that pass by themselves or by an operator's hand, so that
/// a client may retry (`STORE_UNAVAILABLE`): the store cannot be reached or the connection
/// broke, it is loading, busy, out of memory or refusing us (authentication, ACL), a cluster
/// is failing over or resharding. Anything else the store answers (a script that failed at
/// run time, a command this code sent wrongly) is this service's fault: `INTERNAL`, so that
/// a client does not retry a bug every second (issue 23 point 3).
fn passes(error: &RedisError) -> bool {
    use redis::ErrorKind;
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return true;
    }
    if matches!(
        error.kind(),
        ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList
    ) {
        return true;
    }
    // What the server answered (one error, or each failed command of a pipeline): every one
    // must pass.
    error
        .clone()
        .into_server_errors()
        .is_some_and(|errors| !errors.is_empty() && errors.iter().all(|(_, e)| answer_passes(e)))
}

/// Server answers that pass: those redis-rs names (loading, a cluster failing over or
/// resharding, ACL), and by their code those it does not (it parses them as extension
/// errors): busy with a script, out of memory, not authenticated, no replicas, cannot persist.
fn answer_passes(error: &redis::ServerError) -> bool {
    use redis::ServerErrorKind;
    match error.kind() {
        Some(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::NoPerm,
        ) => true,
        Some(_) => false,
        None => matches!(
            error.code(),
            "BUSY" | "OOM" | "NOAUTH" | "WRONGPASS" | "NOREPLICAS" | "MISCONF"
        ),
    }
}

/// Whether `error` may go away by itself: a server not up yet (a connection refused, reset
/// or unreachable), a timeout, a server still loading its data or a cluster not yet formed.
/// What start-up waits out; a wrong password, a URL that does not parse, a TLS handshake
/// that fails (a wrong CA or client certificate: invalid data, not a network failure) or data
/// this version cannot read are not.
pub fn transient(error: &StoreError) -> bool {
    if error.kind == StoreErrorKind::Timeout {
        return true;
    }
    let Some(redis) = error
        .source
        .as_deref()
        .and_then(|e| e.downcast_ref::<RedisError>())
    else {
        return false;
    };
    if redis.is_connection_refusal() || redis.is_connection_dropped() || redis.is_timeout() {
        return true;
    }
    if matches!(
        redis.code(),
        Some("LOADING" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN")
    ) {
        return true;
    }
    redis.is_io_error() && io_kind(redis).is_some_and(network_failure)
}

/// The kind of the I/O error at the root of `error`, if one is.
fn io_kind(error: &RedisError) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// Whether an I/O error of `kind` is the network's or the peer's being away (not a
/// handshake that refused what it was shown).
fn network_failure(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | Interrupted
    )
}

impl Conn {
    /// Bounds a store call by the store timeout (past it the call is abandoned as a
    /// timeout) and records it in the metrics under `context`.
    async fn bounded<T>(
        &self,
        context: &'static str,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let start = metrics::recording_calls().then(std::time::Instant::now);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| store_error(e, context)),
            Err(_) => Err(StoreError::new(StoreErrorKind::Timeout, context)),
        };
        if let Link::Cluster(cluster) = &self.link {
            cluster.note(&result);
        }
        if let Some(start) = start {
            metrics::store_call(self.store, context, start.elapsed().as_secs_f64());
        }
        if let Err(error) = &result {
            metrics::get()
                .store_errors
                .with_label_values(&[self.store, context, error.kind.as_str()])
                .inc();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_url_keeps_no_password() {
        let cases = [
            (
                "redis://default:S3cret@10.0.0.1:6379/0",
                "redis://default:***@10.0.0.1:6379/0",
            ),
            ("rediss://:S3cret@host", "rediss://:***@host"),
            ("redis://S3cret@host:1/", "redis://***@host:1/"),
            (
                "redis://host:6379/?password=S3cret",
                "redis://host:6379/?***",
            ),
            ("redis://us:er:S3c@ret@host", "redis://us:***@host"),
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(url), shown);
            assert!(!redacted(url).contains("S3c"), "{url}");
        }
        let target = Target::cluster(vec![cases[0].0.to_owned(), cases[1].0.to_owned()]);
        assert!(!format!("{target:?}").contains("S3cret"), "{target:?}");
        let single = Target::single(cases[2].0.to_owned()).with_password("S3cret-from-a-file");
        assert!(!format!("{single:?}").contains("S3cret"), "{single:?}");
        let arg: RedisUrl = cases[0].0.parse().expect("any text");
        assert!(!format!("{arg} {arg:?}").contains("S3cret"));
        assert_eq!(arg.expose(), cases[0].0);
    }

    /// Review of issue 23 point 3: redis-rs parses BUSY, OOM, NOAUTH and the like as extension
    /// errors, not as server kinds it names; they pass (UNAVAILABLE), a script's `ERR` does not.
    #[test]
    fn answers_that_pass_by_themselves_are_unavailable_and_others_internal() {
        let answer = |code: &str| redis::make_extension_error(code.to_owned(), None);
        for code in [
            "BUSY",
            "OOM",
            "NOAUTH",
            "WRONGPASS",
            "NOREPLICAS",
            "MISCONF",
        ] {
            let kind = store_error(answer(code), "testing").kind;
            assert_eq!(kind, StoreErrorKind::Unavailable, "{code}");
        }
        for code in ["ERR", "NOTAREALCODE"] {
            let kind = store_error(answer(code), "testing").kind;
            assert_eq!(kind, StoreErrorKind::Internal, "{code}");
        }
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            store_error(refused, "testing").kind,
            StoreErrorKind::Unavailable
        );
    }
}

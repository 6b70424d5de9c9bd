//! Connections: one Redis (a `ConnectionManager`, which reconnects by itself), a Redis
//! Cluster (the async cluster client) or the primary Redis Sentinel names (made anew when a
//! failover moves it), behind one type, with tuned timeouts, and the mapping of Redis errors
//! to store errors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, ProtocolVersion,
    RedisError, RedisFuture, ScriptInvocation, Value,
    aio::{
        AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig,
        MultiplexedConnection,
    },
    cluster::ClusterClient,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr},
};
pub use redis::{ClientTlsConfig, TlsCertificates};

mod errors;
mod renewing;
mod target;

pub use errors::{store_error, transient};
use renewing::{Renewing, Sentinel, Source};
pub use target::{Nodes, RedisUrl, Target, redacted};

use super::scripts::Function;
use crate::{
    storage::{StoreError, StoreErrorKind, StoreResult},
    telemetry::metrics,
};

/// How long connecting may take before the call fails. Measured here with redis 1.8: the
/// default settings blocked a call 9.4 s while Redis was down; with these, every call failed
/// within about 0.5 s and recovered within 30 ms of Redis returning.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest making a connection may take where redis-rs bounds only its parts: asking the
/// sentinels (each tried in turn) and then the primary, or a renewal ([`Renewing`]).
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconnection attempts inside one call, and the longest pause between them.
const RETRIES: usize = 2;
const MAX_RETRY_DELAY: Duration = Duration::from_millis(200);

/// `connecting` bounded by [`ESTABLISH_TIMEOUT`]; past it, a timed-out I/O error (which
/// start-up waits out, as it does a server not up yet).
async fn established<T>(
    connecting: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(ESTABLISH_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
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
    /// Set once the server refused a Redis Function (an ACL without `FUNCTION` or `FCALL`):
    /// scripts kept as functions are then sent as the scripts they are ([`Conn::call_function`]).
    functions_refused: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Link {
    /// One server.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(Renewing<ClusterClient>),
    /// The primary Redis Sentinel names.
    Sentinel(Renewing<Sentinel>),
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
            functions_refused: Arc::default(),
        })
    }

    /// Connects to `target`'s server (a single one: a cluster or Sentinel is refused) over
    /// RESP3 with its TLS settings and password, handing every push (invalidations, and the library's own
    /// disconnection notice) to `pushes`; the connection is not re-established.
    pub async fn pushed(
        target: &Target,
        timeout: Duration,
        store: &'static str,
        pushes: impl AsyncPushSender,
    ) -> Result<Self, StoreError> {
        let fail = |e: RedisError| store_error(e, "connecting");
        // Not behind Sentinel either: this connection would not follow a failover.
        let Nodes::Single(url) = target.nodes() else {
            let why = "a tracked connection needs a single server";
            return Err(StoreError::new(StoreErrorKind::Unavailable, why));
        };
        let info = url.as_str().into_connection_info().map_err(fail)?;
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
            functions_refused: Arc::default(),
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
        let acked: u32 = self.query(context, &self.wait()).await?;
        if acked < self.replica_acks {
            return Err(StoreError::new(StoreErrorKind::Unavailable, context));
        }
        Ok(())
    }

    /// `WAIT` for the replicas asked for, at most half the store timeout.
    fn wait(&self) -> Cmd {
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replica_acks)
            .arg((self.timeout / 2).as_millis().max(1) as u64);
        wait
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
        let wait = self.wait();
        let reply = match (&mut self.link, key) {
            (Link::Cluster(cluster), Some(key)) => {
                let routing = master_of(key);
                cluster.current().await.route_command(wait, routing).await?
            }
            (link, _) => link.send(&wait).await?,
        };
        let acked: u32 = redis::from_redis_value(reply.extract_error()?)?;
        if acked < self.replica_acks {
            // A server's NOREPLICAS, as Redis itself answers a write it cannot replicate:
            // retryable (`STORE_UNAVAILABLE`), and not a broken connection (renewing it would
            // not bring a replica back).
            let why = "fewer replicas than asked for hold a script's writes";
            return Err(redis::make_extension_error(
                "NOREPLICAS".to_owned(),
                Some(why.to_owned()),
            ));
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
            Nodes::Sentinel(_) => {
                let source = Sentinel {
                    client: tokio::sync::Mutex::new(target.sentinel_client().map_err(fail)?),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(response_timeout)),
                };
                let connection = established(source.connect()).await.map_err(fail)?;
                Ok(Self::Sentinel(Renewing::new(source, connection, store)))
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
            Link::Sentinel(c) => Box::pin(async move {
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
    let hash = script_hash(cmd)?;
    Some((hash, plain_args(cmd).skip(2).collect::<Option<_>>()?))
}

/// The script hash of an `EVALSHA` (`None`: another command), read without going through the
/// rest of its arguments.
fn script_hash(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = plain_args(cmd);
    if !args.next()??.eq_ignore_ascii_case(b"EVALSHA") {
        return None;
    }
    args.next()?
}

/// `cmd`'s arguments, each `None` where it is not plain bytes.
fn plain_args(cmd: &Cmd) -> impl Iterator<Item = Option<&[u8]>> {
    cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    })
}

impl Conn {
    /// The [`Function`] `cmd` may be sent as: an `EVALSHA` of a script kept as one, with plain
    /// arguments, off a cluster (the functions are the single node's), unless the server
    /// refused functions. Every script call asks, so only the hash is looked at until it names
    /// a function.
    fn function_for(&self, cmd: &Cmd) -> Option<&'static Function> {
        if matches!(self.link, Link::Cluster(_)) || self.functions_refused.load(Ordering::Relaxed) {
            return None;
        }
        let function = super::scripts::function_of(script_hash(cmd)?)?;
        plain_args(cmd).all(|arg| arg.is_some()).then_some(function)
    }

    /// `FCALL` of `function` with `script`'s arguments after its hash (the number of keys, the
    /// keys, the arguments), loading its library first when the server does not have it. The
    /// reply is the script's (the same Lua ran), and `script` answers instead where the
    /// function cannot run:
    /// - a server that refuses functions (`NOPERM` for `FCALL` or `FUNCTION`, or one without
    ///   them) gets the script from now on, for this connection (a warning says so once);
    /// - a load that fails otherwise (out of memory, read-only, loading), or a library gone
    ///   again before the second `FCALL` (a flush, a restart, a failover in between), gets the
    ///   script for this call; the next call tries the function again.
    ///
    /// The load is `FUNCTION LOAD` without `REPLACE`: calls that found the library missing at
    /// once (after a restart, at hundreds in flight) each send one, and every one after the
    /// first is refused as "already exists" before Redis compiles anything. The library's
    /// name is its text's hash, so a library of that name is this one.
    async fn call_function(
        &mut self,
        function: &Function,
        script: &Cmd,
    ) -> redis::RedisResult<Value> {
        let mut fcall = redis::cmd("FCALL");
        fcall.arg(&function.name);
        for arg in plain_args(script).skip(2).flatten() {
            fcall.arg(arg);
        }
        let reply = self.link.send(&fcall).await?;
        let Value::ServerError(error) = &reply else {
            return Ok(reply);
        };
        if refuses_functions(error) {
            return self.refused_functions(script).await;
        }
        if !function_missing(error) {
            // The Lua's own error, or the server's (busy, loading, out of memory).
            return Ok(reply);
        }
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg(&function.library);
        match self.link.send(&load).await? {
            Value::ServerError(error) if refuses_functions(&error) => {
                return self.refused_functions(script).await;
            }
            Value::ServerError(error) if !library_exists(&error) => {
                return self.link.send(script).await;
            }
            _ => {}
        }
        match self.link.send(&fcall).await? {
            Value::ServerError(error) if function_missing(&error) => self.link.send(script).await,
            reply => Ok(reply),
        }
    }

    /// `script` for a server that refused functions, and every call after it on this
    /// connection.
    async fn refused_functions(&mut self, script: &Cmd) -> redis::RedisResult<Value> {
        if !self.functions_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                store = self.store,
                "the server refuses Redis Functions: updates run as scripts, at more of its CPU"
            );
        }
        self.link.send(script).await
    }
}

/// Redis's answer to an `FCALL` of a function it does not have.
fn function_missing(error: &redis::ServerError) -> bool {
    error.code() == "ERR"
        && error
            .details()
            .is_some_and(|d| d.starts_with("Function not found"))
}

/// Redis's answer to a `FUNCTION LOAD` of a library it has.
fn library_exists(error: &redis::ServerError) -> bool {
    error.code() == "ERR"
        && error
            .details()
            .is_some_and(|d| d.contains("already exists"))
}

/// A server that will not run functions for this connection: an ACL without the command, or a
/// server without it.
fn refuses_functions(error: &redis::ServerError) -> bool {
    error.code() == "NOPERM"
        || error
            .details()
            .is_some_and(|d| d.starts_with("unknown command"))
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
    /// until the slot map forgot it.
    ///
    /// With replica acknowledgements asked for, a script's reply counts only once that many
    /// replicas hold what it wrote ([`Conn::replicated_script`]).
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            // One cluster connection for the script, its fallback and its `WAIT` (this `Conn`
            // is the call's own clone): a `WAIT` on a connection renewed in between would
            // cover nothing. Without a `WAIT` to follow there is nothing to pin (and no
            // allocation per call).
            if self.replica_acks > 0 {
                match &self.link {
                    Link::Cluster(cluster) => self.link = Link::Cluster(cluster.pinned().await),
                    Link::Sentinel(primary) => self.link = Link::Sentinel(primary.pinned().await),
                    Link::Single(_) | Link::Pushed(_) => {}
                }
            }
            let mut reply = match self.function_for(cmd) {
                Some(function) => self.call_function(function, cmd).await?,
                None => self.link.send(cmd).await?,
            };
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
            Link::Sentinel(c) => Box::pin(async move {
                let mut current = c.current().await;
                current.req_packed_commands(pipeline, offset, count).await
            }),
            Link::Pushed(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(_) | Link::Sentinel(_) => 0,
            Link::Pushed(c) => c.get_db(),
        }
    }
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
        match &self.link {
            Link::Cluster(cluster) => cluster.note(&result),
            Link::Sentinel(primary) => primary.note(&result),
            Link::Single(_) | Link::Pushed(_) => {}
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

    #[test]
    fn a_sentinel_url_names_its_sentinels_and_primary() {
        let url = "redis+sentinel://:S3cret@10.0.0.1:26379,[::1]:26380/mymaster";
        let parsed = target::SentinelUrl::parse(url).expect("parses");
        let sentinels = [("10.0.0.1".to_owned(), 26379), ("::1".to_owned(), 26380)];
        assert_eq!(parsed.sentinels, sentinels);
        assert_eq!(parsed.master, "mymaster");
        assert!(!parsed.tls && parsed.user.is_none());
        assert_eq!(parsed.password.as_deref(), Some("S3cret"));
        let tls = target::SentinelUrl::parse("rediss+sentinel://u:p@h:1/m").expect("parses");
        assert!(tls.tls);
        assert_eq!(
            (tls.user.as_deref(), tls.password.as_deref()),
            (Some("u"), Some("p"))
        );
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h/m",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://:p#w@h:1/m",
            "redis+sentinel://:p?w@h:1/m",
            "redis+sentinel://:p%4@h:1/m",
        ] {
            assert!(target::SentinelUrl::parse(bad).is_err(), "{bad}");
            assert!(Target::from_url(bad).url_problem().is_some(), "{bad}");
        }
        let target = Target::from_url(url);
        assert!(matches!(target.nodes(), Nodes::Sentinel(_)));
        assert!(target.url_problem().is_none());
        assert!(!format!("{target:?}").contains("S3cret"), "{target:?}");
        assert!(matches!(
            Target::from_url("redis://h/").nodes(),
            Nodes::Single(_)
        ));
        let encoded = target::SentinelUrl::parse("redis+sentinel://:p%40s%23@h:1/m").expect("ok");
        assert_eq!(encoded.password.as_deref(), Some("p@s#"));
    }

    /// redis-rs parses BUSY, OOM, NOAUTH and the like as extension
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

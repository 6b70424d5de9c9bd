//! Connections made anew: a Redis Cluster's after calls kept timing out, and the primary
//! Redis Sentinel names after one was found broken or demoted ([`Renewing`] over a
//! [`Source`]).

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};
use std::time::Duration;

use redis::{
    AsyncConnectionConfig, RedisError,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::SentinelClient,
};

use super::store_error;
use crate::{
    storage::{StoreErrorKind, StoreResult},
    telemetry::metrics,
};

/// How many store calls in a row must time out on a cluster, or behind Sentinel, before its
/// connection is made anew ([`Renewing`]).
const RENEW_AFTER_TIMEOUTS: u32 = 3;
/// How long after a renewal ends the next may start: a renewal that failed is not retried at
/// the rate of calls, and calls still finishing on a replaced connection do not renew the new
/// one at once.
const RENEW_PAUSE: Duration = Duration::from_secs(1);

/// What a [`Renewing`] connection is made from, and made anew from.
pub(super) trait Source: Send + Sync + 'static {
    /// The connection it makes.
    type Connection: ConnectionLike + Clone + Send + Sync + 'static;

    /// Makes a connection to the servers as they are now.
    fn connect(&self) -> impl Future<Output = redis::RedisResult<Self::Connection>> + Send;

    /// Whether `error` shows the connection will not serve again as it is (renewed at the
    /// next call rather than after [`RENEW_AFTER_TIMEOUTS`] timeouts).
    fn broken(error: &RedisError) -> bool;
}

impl Source for ClusterClient {
    type Connection = ClusterConnection;

    fn connect(&self) -> impl Future<Output = redis::RedisResult<ClusterConnection>> + Send {
        self.get_async_connection()
    }

    /// The cluster client reconnects to a node by itself: only its slot refreshes stall.
    fn broken(_: &RedisError) -> bool {
        false
    }
}

/// The primary Redis Sentinel names: each connection is made to the server the sentinels name
/// at that moment (and that says it is a primary), with the store's timeouts.
pub(super) struct Sentinel {
    pub(super) client: tokio::sync::Mutex<SentinelClient>,
    pub(super) config: AsyncConnectionConfig,
}

impl Source for Sentinel {
    type Connection = MultiplexedConnection;

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let primary = self.client.lock().await.async_get_client().await?;
        primary
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    /// A multiplexed connection does not reconnect: once dropped (its server killed) it fails
    /// every call. A server that answers `READONLY` was demoted: the primary is elsewhere now.
    fn broken(error: &RedisError) -> bool {
        let read_only = |text: Option<&str>| text.is_some_and(|t| t.contains("READONLY"));
        error.is_connection_dropped()
            || error.is_io_error()
            || error.is_connection_refusal()
            || read_only(error.code())
            || read_only(error.detail())
    }
}

/// A connection that is made anew from its [`Source`] after [`RENEW_AFTER_TIMEOUTS`] calls in
/// a row timed out, or after one call found it broken ([`Source::broken`]).
///
/// On a cluster: redis-rs 1.8's cluster client holds every request while it refreshes its
/// slot map, refreshes again on each redirect or refused connection, and has no way to force,
/// bound or replace a refresh; after a failover (a master killed, its replica promoted, the
/// old one back as a replica) calls to every slot timed out for seconds (docs/decisions.md).
/// A new connection reads the topology afresh. Behind Sentinel: the sentinels are asked where
/// the primary is now.
///
/// The renewal runs as a task of its own, bounded by [`super::ESTABLISH_TIMEOUT`], one at a
/// time, so no call's own timeout cuts it short (asking sentinels whose first one is
/// unreachable can take longer than a call may); calls meanwhile go to the old connection, and
/// calls in flight finish (or time out) on it. It goes with its last clone.
pub(super) struct Renewing<S: Source> {
    source: Arc<S>,
    /// Which store this is, for the metrics.
    store: &'static str,
    current: Arc<tokio::sync::RwLock<S::Connection>>,
    /// Calls in a row that timed out (a broken connection sets it to the threshold; any other
    /// outcome, and a renewal that succeeded, reset it).
    timeouts: Arc<AtomicU32>,
    /// The renewal in flight, if any; aborted when the last clone goes.
    renewal: Arc<std::sync::Mutex<Option<tokio_util::task::AbortOnDropHandle<()>>>>,
}

impl<S: Source> Clone for Renewing<S> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            store: self.store,
            current: self.current.clone(),
            timeouts: self.timeouts.clone(),
            renewal: self.renewal.clone(),
        }
    }
}

impl<S: Source> Renewing<S> {
    pub(super) fn new(source: S, connection: S::Connection, store: &'static str) -> Self {
        Self {
            source: Arc::new(source),
            store,
            current: Arc::new(tokio::sync::RwLock::new(connection)),
            timeouts: Arc::default(),
            renewal: Arc::default(),
        }
    }

    /// The connection to send on, after starting a renewal when enough calls in a row timed
    /// out (or one found the connection broken) and none is in flight.
    pub(super) async fn current(&self) -> S::Connection {
        if self.timeouts.load(Ordering::Relaxed) >= RENEW_AFTER_TIMEOUTS {
            self.renew();
        }
        self.current.read().await.clone()
    }

    /// Starts a renewal unless one is in flight. It replaces the connection when it succeeds;
    /// when it fails (or times out) the connection stays. Either way the next may start
    /// [`RENEW_PAUSE`] after it ends, once calls count again.
    fn renew(&self) {
        let mut renewal = self.renewal.lock().unwrap_or_else(|p| p.into_inner());
        if renewal.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let (source, current) = (self.source.clone(), self.current.clone());
        let (timeouts, store) = (self.timeouts.clone(), self.store);
        let task = tokio::spawn(async move {
            match super::established(source.connect()).await {
                Ok(renewed) => {
                    *current.write().await = renewed;
                    timeouts.store(0, Ordering::Relaxed);
                    metrics::get()
                        .store_renewals
                        .with_label_values(&[store])
                        .inc();
                    tracing::warn!(store, "store calls kept failing: store connection renewed");
                }
                Err(error) => {
                    let kind = store_error(error, "renewing the store connection").kind;
                    tracing::warn!(
                        store,
                        kind = kind.as_str(),
                        "renewing the store connection failed"
                    );
                }
            }
            // Holds the slot: no other renewal starts meanwhile.
            tokio::time::sleep(RENEW_PAUSE).await;
            timeouts.store(0, Ordering::Relaxed);
        });
        *renewal = Some(tokio_util::task::AbortOnDropHandle::new(task));
    }

    /// The current connection alone, never renewed (its own count of timeouts): what one call
    /// sends all its commands on.
    pub(super) async fn pinned(&self) -> Self {
        Self {
            source: self.source.clone(),
            store: self.store,
            current: Arc::new(tokio::sync::RwLock::new(self.current().await)),
            timeouts: Arc::default(),
            renewal: Arc::default(),
        }
    }

    /// Counts a call's outcome towards a renewal.
    pub(super) fn note<T>(&self, result: &StoreResult<T>) {
        match result {
            Err(error) if error.kind == StoreErrorKind::Timeout => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(error)
                if error
                    .source
                    .as_deref()
                    .and_then(|e| e.downcast_ref())
                    .is_some_and(S::broken) =>
            {
                self.timeouts.store(RENEW_AFTER_TIMEOUTS, Ordering::Relaxed);
            }
            _ => self.timeouts.store(0, Ordering::Relaxed),
        }
    }
}

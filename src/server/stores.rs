//! The stores a server runs on, reached at start: the embedded one, or Redis (checked for
//! persistence, then connected), waited for with back-off while they cannot be reached yet.

use std::{sync::Arc, time::Duration};

use super::ServerError;
use crate::{
    config::{Config, StoreConfig},
    domain::nearby::{Pseudonyms, Tickets},
    storage::{
        ConsentStore, LimitStore, LocationStore, MemoryStore, ShakeStore, StoreError,
        redis::{self, Nodes, RedisConsentStore, RedisStore, Target},
    },
};

/// The location, consent and Shake stores.
pub(super) type Stores = (
    Arc<dyn LocationStore>,
    Arc<dyn ConsentStore>,
    Arc<dyn ShakeStore>,
    Arc<dyn LimitStore>,
);

/// The first pause between two attempts to reach the stores at start, doubled each time up
/// to [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two attempts to reach the stores at start.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// [`stores`], retried with back-off for up to `config.store_wait` while a store cannot be
/// reached (beside a Redis that starts at the same time, exiting at once
/// is a crash loop); a refusal that retrying cannot change (a persisting location store)
/// ends it at once. Each failed attempt is logged.
pub(super) async fn stores_within(config: &Config) -> Result<Stores, ServerError> {
    let give_up = tokio::time::Instant::now() + config.store_wait;
    let mut pause = STORE_RETRY_FIRST;
    loop {
        let error = match stores(config).await {
            Ok(stores) => return Ok(stores),
            Err(error @ ServerError::StoreAtStart { .. }) if waits_out(&error) => error,
            Err(other) => return Err(other),
        };
        if tokio::time::Instant::now() + pause > give_up {
            return Err(error);
        }
        tracing::warn!(
            error = %causes(&error),
            retry_in_ms = pause.as_millis() as u64,
            "a store is not reachable yet; retrying (--store-wait bounds this)"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(STORE_RETRY_MAX);
    }
}

/// `error` and its causes on one line, each once (a library's error often repeats its
/// source's text).
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

/// Whether start-up waits `error` out: a store not reachable yet, not a refusal.
fn waits_out(error: &ServerError) -> bool {
    matches!(error, ServerError::StoreAtStart { error, .. } if redis::transient(error))
}

/// The stores the configuration names, after checking what Redis does with data on disk.
async fn stores(config: &Config) -> Result<Stores, ServerError> {
    let StoreConfig::Redis {
        locations,
        consents,
        allow_persistent,
        timeout,
        consent_cache,
    } = &config.store
    else {
        tracing::warn!(
            "using the embedded in-memory store: data is lost on restart and not shared between nodes"
        );
        let tickets = Tickets::new(&config.secret);
        let store = MemoryStore::start(
            config.clock.clone(),
            config.grid,
            tickets,
            config.sweep_interval,
        );
        return Ok((store.clone(), store.clone(), store.clone(), store));
    };
    let tickets = Tickets::new(&config.secret);
    let at_locations = at_start(locations, false);
    let at_consents = at_start(consents, consents != locations);
    check_persistence(locations, consents, *allow_persistent).await?;
    let location_store = RedisStore::connect(
        locations,
        config.grid,
        tickets,
        Pseudonyms::new(&config.secret),
        config.retention,
        *timeout,
    )
    .await
    .map_err(&at_locations)?;
    let consent_store = RedisConsentStore::connect(consents, *timeout, *consent_cache)
        .await
        .map_err(&at_consents)?;
    let location_store = Arc::new(location_store);
    Ok((
        location_store.clone(),
        Arc::new(consent_store),
        location_store.clone(),
        location_store,
    ))
}

/// Refuses a location store that persists to disk (unless `allow_persistent`), and either
/// store when it may evict keys; warns about a location store that persists anyway, about
/// consent records that share it, and about a consent store that is not durable.
async fn check_persistence(
    locations: &Target,
    consents: &Target,
    allow_persistent: bool,
) -> Result<(), ServerError> {
    let at_locations = at_start(locations, false);
    let at_consents = at_start(consents, consents != locations);
    let found = redis::persistence(locations).await.map_err(&at_locations)?;
    if let Some(first) = unsafe_nodes(Store::Locations, &found, allow_persistent).pop() {
        return Err(first.into_error());
    }
    if found.iter().any(|(_, p)| p.persists()) {
        tracing::warn!(
            "the location store persists to disk: purged data may remain in RDB/AOF files"
        );
    }
    if consents == locations {
        tracing::warn!(
            "consent records share the location store: fine for development only (it must not persist, they should)"
        );
        return Ok(());
    }
    let found = redis::persistence(consents).await.map_err(&at_consents)?;
    if let Some(first) = unsafe_nodes(Store::Consents, &found, allow_persistent).pop() {
        return Err(first.into_error());
    }
    if !found.iter().all(|(_, p)| p.is_durable()) {
        tracing::warn!(
            "the consent store is not durable (want appendonly yes, appendfsync always)"
        );
    }
    Ok(())
}

/// Which store a setting was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Store {
    /// The location store (`--redis-url`, `--redis-cluster`).
    Locations,
    /// The consent store (`--consent-redis-url`).
    Consents,
}

impl Store {
    /// Its `store` label (as the store call metrics name it).
    pub(super) fn label(self) -> &'static str {
        match self {
            Store::Locations => redis::LOCATIONS,
            Store::Consents => redis::CONSENTS,
        }
    }
}

/// A node's setting that breaks a promise.
#[derive(Debug)]
pub(super) struct Unsafe {
    /// The store the node serves.
    pub(super) store: Store,
    /// Its URL, without the password.
    pub(super) url: String,
    /// What it does wrong.
    pub(super) setting: UnsafeSetting,
}

/// What a node does wrong.
#[derive(Debug)]
pub(super) enum UnsafeSetting {
    /// A location store node writes to disk (`--allow-persistent-location-store` not given).
    Persists,
    /// It may evict keys, under this `maxmemory-policy`.
    Evicts(String),
}

impl Unsafe {
    /// Its `setting` label.
    pub(super) fn setting_label(&self) -> &'static str {
        match self.setting {
            UnsafeSetting::Persists => "persistence",
            UnsafeSetting::Evicts(_) => "eviction",
        }
    }

    /// The start-up error it is.
    fn into_error(self) -> ServerError {
        match self.setting {
            UnsafeSetting::Persists => ServerError::PersistentLocationStore(self.url),
            UnsafeSetting::Evicts(policy) => ServerError::EvictingStore {
                store: match self.store {
                    Store::Locations => "location",
                    Store::Consents => "consent",
                },
                url: self.url,
                policy,
            },
        }
    }
}

/// What breaks a promise among `found`, the nodes of `store`: any node that may evict keys, and
/// a location store node that writes to disk unless `allow_persistent`. Evictions come last
/// (the start-up check reports the last one found).
fn unsafe_nodes(
    store: Store,
    found: &[(String, redis::Persistence)],
    allow_persistent: bool,
) -> Vec<Unsafe> {
    let unsafe_at = |url: &str, setting| Unsafe {
        store,
        url: redis::redacted(url),
        setting,
    };
    let persisting = found
        .iter()
        .filter(|(_, p)| store == Store::Locations && p.persists() && !allow_persistent)
        .map(|(url, _)| unsafe_at(url, UnsafeSetting::Persists));
    let evicting = found
        .iter()
        .filter(|(_, p)| p.may_evict())
        .map(|(url, p)| unsafe_at(url, UnsafeSetting::Evicts(p.maxmemory_policy.clone())));
    persisting.chain(evicting).collect()
}

/// Reads the settings of every node of both Redis stores again: what breaks a promise now (a
/// `CONFIG SET` or a failover since the start-up check), node by node; `None` for an embedded
/// store.
pub(super) async fn unsafe_settings(
    config: &StoreConfig,
) -> Option<Result<Vec<Unsafe>, StoreError>> {
    let StoreConfig::Redis {
        locations,
        consents,
        allow_persistent,
        ..
    } = config
    else {
        return None;
    };
    let read = async {
        let mut found = unsafe_nodes(
            Store::Locations,
            &redis::persistence(locations).await?,
            *allow_persistent,
        );
        if consents != locations {
            let nodes = redis::persistence(consents).await?;
            found.extend(unsafe_nodes(Store::Consents, &nodes, *allow_persistent));
        }
        Ok(found)
    };
    Some(read.await)
}

/// How a start-up failure of the store at `target` reads: the flag that names it (the consent
/// store's own flag when `own_consent_flag`) and its URL, without the password.
fn at_start(target: &Target, own_consent_flag: bool) -> impl Fn(StoreError) -> ServerError {
    let (flag, url) = match target.nodes() {
        _ if own_consent_flag => ("--consent-redis-url", target_urls(target)),
        Nodes::Single(_) | Nodes::Sentinel(_) => ("--redis-url", target_urls(target)),
        Nodes::Cluster(_) => ("--redis-cluster", target_urls(target)),
    };
    move |error| ServerError::StoreAtStart {
        flag,
        url: url.clone(),
        error,
    }
}

/// The URLs of `target`, redacted, comma-separated.
fn target_urls(target: &Target) -> String {
    let urls: Vec<String> = target.urls().iter().map(|u| redis::redacted(u)).collect();
    urls.join(",")
}

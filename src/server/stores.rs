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
    for (url, found) in redis::persistence(locations).await.map_err(&at_locations)? {
        refuse_eviction("location", &url, &found)?;
        if found.persists() && !allow_persistent {
            return Err(ServerError::PersistentLocationStore(redis::redacted(&url)));
        }
        if found.persists() {
            tracing::warn!(
                "the location store persists to disk: purged data may remain in RDB/AOF files"
            );
        }
    }
    if consents == locations {
        tracing::warn!(
            "consent records share the location store: fine for development only (it must not persist, they should)"
        );
        return Ok(());
    }
    let found = redis::persistence(consents).await.map_err(&at_consents)?;
    for (url, node) in &found {
        refuse_eviction("consent", url, node)?;
    }
    if !found.iter().all(|(_, p)| p.is_durable()) {
        tracing::warn!(
            "the consent store is not durable (want appendonly yes, appendfsync always)"
        );
    }
    Ok(())
}

/// Refuses a node of the `store` store (at `url`) that may evict keys.
fn refuse_eviction(
    store: &'static str,
    url: &str,
    found: &redis::Persistence,
) -> Result<(), ServerError> {
    if found.may_evict() {
        return Err(ServerError::EvictingStore {
            store,
            url: redis::redacted(url),
            policy: found.maxmemory_policy.clone(),
        });
    }
    Ok(())
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

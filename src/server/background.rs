//! What a server runs beside its calls: the purge sweep, the stores' settings read again, and
//! the reloads SIGHUP asks for (the place policy, the TLS files, the API keys file).

use std::time::Duration;

use super::{
    stores::{self, Store},
    tls, unix_seconds,
};
use crate::{
    config::{ServerTls, StoreConfig},
    grpc::Auth,
    service::Vicinity,
    telemetry::metrics,
};

/// Runs the purge sweep (deadlines and purges owed) every `interval`, for as long as the
/// server runs. Running it on every node at once is safe.
pub(super) async fn sweep(svc: Vicinity, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let start = std::time::Instant::now();
        let result = svc.sweep().await;
        let metrics = metrics::get();
        metrics
            .sweep_duration
            .observe(start.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics.sweeps.with_label_values(&[outcome]).inc();
        match result {
            Ok(_) => metrics.sweep_last_success.set(unix_seconds()),
            Err(error) => tracing::warn!(%error, "purge sweep failed; retrying next interval"),
        }
    }
}

/// Reads the Redis stores' persistence and eviction settings every `interval` after start,
/// for as long as the server runs: `vicinity_store_unsafe_settings` counts the nodes whose
/// settings break a promise now, and each is logged (the start-up check refuses them; a
/// `CONFIG SET` or a failover can bring them back later). While a node of the location store
/// breaks one, `svc` refuses the calls that bring a position into the store
/// ([`Vicinity::set_location_store_unsafe`]; set before the gauge, so whoever sees the gauge
/// sees the refusal). A failed read keeps the counts and the refusal as they were.
pub(super) async fn watch_store_settings(svc: Vicinity, store: StoreConfig, interval: Duration) {
    if !matches!(store, StoreConfig::Redis { .. }) {
        return;
    }
    // The start-up check passed: nothing is unsafe until a read says otherwise.
    count_unsafe(&[]);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let found = match stores::unsafe_settings(&store).await {
            Some(Ok(found)) => found,
            Some(Err(error)) => {
                tracing::warn!(%error, "could not read the stores' settings; checking again at the next interval");
                continue;
            }
            None => return,
        };
        let locations_unsafe = found.iter().any(|u| u.store == Store::Locations);
        if svc.set_location_store_unsafe(locations_unsafe) != locations_unsafe {
            if locations_unsafe {
                tracing::error!(
                    "location writes (UpdateLocation, Shake) are refused until the location store's settings are safe again"
                );
            } else {
                tracing::info!(
                    "the location store's settings are safe again: location writes (UpdateLocation, Shake) resume"
                );
            }
        }
        count_unsafe(&found);
        for node in &found {
            tracing::error!(
                store = node.store.label(),
                url = %node.url,
                setting = node.setting_label(),
                "a store node's settings break a promise (docs/operations.md): set --save \"\" --appendonly no on the location store, --maxmemory-policy noeviction on both"
            );
        }
    }
}

/// Sets `vicinity_store_unsafe_settings` to the nodes of each store and setting in `found`.
fn count_unsafe(found: &[stores::Unsafe]) {
    let gauge = &metrics::get().store_unsafe_settings;
    for store in [Store::Locations, Store::Consents] {
        for setting in ["persistence", "eviction"] {
            let nodes = found
                .iter()
                .filter(|u| u.store == store && u.setting_label() == setting)
                .count();
            gauge
                .with_label_values(&[store.label(), setting])
                .set(nodes as i64);
        }
    }
}

/// SIGHUPs from now on (`None`: none can be caught here).
#[cfg(unix)]
pub(super) type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(super) type Hangups = Option<()>;

/// SIGHUPs from now on ([`Hangups`]).
#[cfg(unix)]
pub(super) fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|error| {
            tracing::warn!(%error, "no SIGHUP handler: the place policy, the signing key and its key set, the TLS files and the API keys reload only with a restart");
        })
        .ok()
}

#[cfg(not(unix))]
pub(super) fn hangups() -> Hangups {
    None
}

/// Reloads the place policy (`--places`), the consent signing key and key set, the TLS files and the API
/// keys file on each SIGHUP,
/// for as long as the server runs.
#[cfg(unix)]
pub(super) async fn reload_on_hangup(
    svc: Vicinity,
    tls: Option<ServerTls>,
    auth: Auth,
    hangups: Hangups,
) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        svc.reload_places().await;
        svc.reload_receipts().await;
        if let Some(tls) = &tls {
            tls::reload(tls).await;
        }
        reload_keys(&auth).await;
    }
}

#[cfg(not(unix))]
pub(super) async fn reload_on_hangup(_: Vicinity, _: Option<ServerTls>, _: Auth, _: Hangups) {}

/// Reads the API keys file again (`--api-keys`): calls from now on are checked against the
/// new keys; a file that does not load is refused (logged, counted in
/// `vicinity_api_keys_reload_failures_total`) and the keys in force stay.
async fn reload_keys(auth: &Auth) {
    let keys = auth.clone();
    match tokio::task::spawn_blocking(move || keys.reload()).await {
        Ok(None) => {}
        Ok(Some(Ok(count))) => tracing::info!(keys = count, "API keys reloaded"),
        Ok(Some(Err(error))) => {
            metrics::get().api_keys_reload_failures.inc();
            tracing::error!(%error, "API keys reload refused, the keys in force stay");
        }
        Err(error) => {
            metrics::get().api_keys_reload_failures.inc();
            tracing::error!(%error, "API keys reload did not finish, the keys in force stay");
        }
    }
}

//! Start-up checks of what the Redis servers will do with our data (contract §4.2): location
//! data must not persist (an RDB or AOF keeps purged coordinates), consent records should
//! (`appendonly yes`, `appendfsync always`), and neither store may evict keys (an evicted clear
//! mark reads as no mark, which lets a write admitted before a withdrawal land after it; an
//! evicted owed purge is never finished).

use super::{
    Target,
    conn::{Nodes, store_error},
};
use crate::storage::StoreResult;

/// What a server does with data on disk, and whether it evicts keys when memory runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `CONFIG GET save`: empty means no RDB snapshots.
    pub save: String,
    /// `CONFIG GET appendonly`.
    pub appendonly: bool,
    /// `CONFIG GET appendfsync`.
    pub appendfsync: String,
    /// `CONFIG GET maxmemory-policy`.
    pub maxmemory_policy: String,
}

impl Persistence {
    /// Whether anything reaches the disk.
    pub fn persists(&self) -> bool {
        !self.save.trim().is_empty() || self.appendonly
    }

    /// Whether an acknowledged write survives a crash.
    pub fn is_durable(&self) -> bool {
        self.appendonly && self.appendfsync == "always"
    }

    /// Whether the server may delete keys before their time when memory runs out: any
    /// `maxmemory-policy` but `noeviction` (even a `volatile-*` one: every location key has a
    /// TTL, the clear marks included).
    pub fn may_evict(&self) -> bool {
        self.maxmemory_policy != "noeviction"
    }
}

/// Reads the persistence and eviction settings of every node named by `target` (each listed
/// cluster node is asked directly: a cluster client would ask just one).
pub async fn persistence(target: &Target) -> StoreResult<Vec<(String, Persistence)>> {
    let fail = |e| store_error(e, "checking persistence");
    let clients = target.clients().await.map_err(fail)?;
    // How each is named: by its URL as configured, or behind Sentinel by the address of the
    // primary the sentinels named.
    let names = match target.nodes() {
        Nodes::Sentinel(_) => clients
            .iter()
            .map(|c| c.get_connection_info().addr().to_string())
            .collect(),
        Nodes::Single(_) | Nodes::Cluster(_) => target.urls(),
    };
    let mut found = Vec::with_capacity(clients.len());
    for (client, url) in clients.into_iter().zip(names) {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(fail)?;
        let mut get = async |name: &str| -> StoreResult<String> {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            Ok(pair.get(1).cloned().unwrap_or_default())
        };
        let persistence = Persistence {
            save: get("save").await?,
            appendonly: get("appendonly").await? == "yes",
            appendfsync: get("appendfsync").await?,
            maxmemory_policy: get("maxmemory-policy").await?,
        };
        found.push((url, persistence));
    }
    Ok(found)
}

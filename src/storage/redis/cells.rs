//! Reading cells for a People Nearby search: a call's cells go to scripts of at most
//! [`MAX_KEYS_PER_SCRIPT`] keys (per partition on a cluster), all in flight at once, and their
//! replies are decoded into visible members.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use h3o::CellIndex;
use redis::Value;

use super::{Conn, RedisStore, keys, scripts};
use crate::{
    domain::{
        Gender, Retention, Timestamp, UserId,
        nearby::{NearbyQuery, earliest},
    },
    storage::StoreResult,
};

/// The most cell keys one cell-reading script is given (contract §4.5: no call holds the Redis
/// thread for more than a few milliseconds): each key costs Redis about 1.5 µs even when
/// empty, so about 1.5 ms. A call's cells ([`crate::domain::nearby::MAX_CELLS_PER_CALL`] at most) go to as many
/// scripts as they need, concurrently. Splitting a band across scripts is safe for the same
/// reason a cluster's partitions are: each script reads its own cells until it holds what the
/// page needs (or to the end), so the page's best members all lie below every script's window.
/// Before, one 50 km list in an empty area sent ~65,000 keys to one script (95 ms of Redis's
/// only thread).
pub const MAX_KEYS_PER_SCRIPT: usize = 1_024;

/// The members of fetched cells: user, gender, last activity.
pub(super) type Fetched = HashMap<CellIndex, Vec<(UserId, Gender, Timestamp)>>;

impl RedisStore {
    /// Reads `cells` (with their bands) for `query`: on a single node in one script call, on
    /// a cluster in one call per partition (a script's keys must share a slot there),
    /// concurrently; each call reads only as far as the page needs. Returns the earliest
    /// (band, key) point where a call stopped short of that (see [`scripts::CELLS_READ`]).
    pub(super) async fn fetch(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
        into: &mut Fetched,
    ) -> StoreResult<Option<(u32, u64)>> {
        let groups = if self.conn.is_cluster() {
            let mut by_part: HashMap<CellIndex, Vec<(CellIndex, u32)>> = HashMap::new();
            for (cell, band) in cells {
                by_part
                    .entry(keys::partition(cell))
                    .or_default()
                    .push((cell, band));
            }
            by_part.into_values().collect()
        } else {
            vec![cells]
        };
        let calls = groups
            .into_iter()
            .flat_map(|mut cells| {
                cells.sort_by_key(|(_, band)| *band);
                let chunks: Vec<_> = cells
                    .chunks(self.keys_per_script)
                    .map(<[_]>::to_vec)
                    .collect();
                chunks
            })
            .map(|cells| self.fetch_partition(conn, query, cells));
        let mut until = None;
        for (cells, reply) in try_join_all(calls).await? {
            let stop = decode_cells(&cells, reply, self.retention, into);
            until = earliest(until, stop);
        }
        Ok(until)
    }

    pub(super) async fn fetch_partition(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
    ) -> StoreResult<(Vec<(CellIndex, u32)>, Vec<Value>)> {
        let call = scripts::cells_read(query, &cells);
        let reply: Vec<Value> = conn.script("reading cells", &call).await?;
        Ok((cells, reply))
    }
}

/// Decodes `{now, stop band, stop key, index, 'member\nmember...', ...}` into visible
/// members; skips anything malformed and anything past its deadline. Returns where the read
/// stopped short, if it did.
pub(super) fn decode_cells(
    cells: &[(CellIndex, u32)],
    reply: Vec<Value>,
    retention: Retention,
    into: &mut Fetched,
) -> Option<(u32, u64)> {
    let mut items = reply.into_iter();
    let mut int = || {
        items
            .next()
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
    };
    let now = int().map_or(Timestamp::from_millis(i64::MAX), Timestamp::from_millis);
    let stop_band = int().and_then(|b| u32::try_from(b).ok());
    let stop_key = int().and_then(|k| u64::try_from(k).ok()).unwrap_or(0);
    let stop = stop_band.map(|band| (band, stop_key));
    let lived = retention.window().as_millis() as i64;
    while let (Some(index), Some(text)) = (items.next(), items.next()) {
        let (Ok(index), Ok(text)) = (
            redis::from_redis_value::<usize>(index),
            redis::from_redis_value::<String>(text),
        ) else {
            continue;
        };
        let Some((cell, _)) = index.checked_sub(1).and_then(|i| cells.get(i)) else {
            continue;
        };
        let list = into.entry(*cell).or_default();
        for member in text.split('\n').filter_map(keys::parse_member) {
            if member.deadline > now {
                let last_active = Timestamp::from_millis(member.deadline.as_millis() - lived);
                list.push((member.user, member.gender, last_active));
            }
        }
    }
    stop
}

//! Reading cells for a People Nearby search. A call's cells go to groups of at most
//! [`MAX_KEYS_PER_SCRIPT`] keys (per partition on a cluster: a group's keys share a slot), all
//! in flight at once. Without a gender filter a group is read with plain commands in pipelines
//! (the cells' sizes, then their members: [`RedisStore::read_plain`]); under one, by the
//! filtering script ([`scripts::CELLS_READ_FILTERED`]), which admits members inside Redis.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use h3o::CellIndex;
use redis::Value;

use super::{Conn, RedisStore, keys, scripts};
use crate::{
    domain::{
        Gender, Retention, Timestamp, UserId,
        nearby::{NearbyQuery, ORDER_SPACE},
        user::GenderFilter,
    },
    storage::StoreResult,
};

/// The most cell keys one group is given (SPEC §4.5: no call holds the Redis thread for more
/// than a few milliseconds): the filtering script costs Redis about 1.5 µs a key even when it
/// is empty, so about 1.5 ms. A call's cells ([`crate::domain::nearby::MAX_CELLS_PER_CALL`] at
/// most) go to as many groups as they need, concurrently. Splitting a band across groups is
/// safe for the same reason a cluster's partitions are: each group reads its own cells until it
/// holds what the page needs (or to the end), so the page's best members all lie below every
/// group's window. Before, one 50 km list in an empty area sent ~65,000 keys to one script
/// (95 ms of Redis's only thread).
pub const MAX_KEYS_PER_SCRIPT: usize = 1_024;

/// The members of fetched cells: user, gender, last activity.
pub(super) type Fetched = HashMap<CellIndex, Vec<(UserId, Gender, Timestamp)>>;

/// One group's visible members by cell, and where its read stopped short.
type GroupRead = (
    Vec<(CellIndex, Vec<(UserId, Gender, Timestamp)>)>,
    Option<(u32, u64)>,
);

impl RedisStore {
    /// Reads `cells` (with their bands) for `query`: on a single node in one script call, on
    /// a cluster in one call per partition (a script's keys must share a slot there),
    /// concurrently; each call reads only as far as the page needs. Returns the earliest
    /// (band, key) point where a call stopped short of that. `now` is the server's time of
    /// the call: members past their deadline then are not read.
    pub(super) async fn fetch(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
        now: Timestamp,
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
        let groups = groups.into_iter().flat_map(|mut cells| {
            cells.sort_by_key(|(_, band)| *band);
            let chunks: Vec<_> = cells
                .chunks(self.keys_per_script)
                .map(<[_]>::to_vec)
                .collect();
            chunks
        });
        let mut until = None;
        if query.gender_filter == GenderFilter::Any {
            let reads = groups.map(|cells| self.read_plain(conn, query, cells, now));
            for (read, stop) in try_join_all(reads).await? {
                for (cell, members) in read {
                    into.entry(cell).or_default().extend(members);
                }
                until = earliest(until, stop);
            }
        } else {
            let calls = groups.map(|cells| self.fetch_partition(conn, query, cells));
            for (cells, reply) in try_join_all(calls).await? {
                let stop = decode_cells(&cells, reply, self.retention, into);
                until = earliest(until, stop);
            }
        }
        Ok(until)
    }

    /// Reads one group's `cells` (sorted by band) for `query` without a script, as
    /// [`scripts::CELLS_READ_FILTERED`] does with one, but passing every member through (the
    /// caller filters and ranks): first every cell's size (one pipeline of `ZCARD`s), then,
    /// band by band, every cell of a band whose members all fit in what is still wanted whole,
    /// and the first band that holds more through one window of the rotated order sized from
    /// its total to hold a little more than what is still wanted, all in one pipeline; the
    /// window is widened (doubling, one more pipeline each) only when it falls short. Once
    /// enough is held the band is complete below the window's end and no later band can make
    /// the page. A call examines at most `20n + 2000` members (n the page and one); short of
    /// what the page needs it stops at a window's end, or at the end of the band before, and
    /// says where: the page ends there and the next one continues from it. Plain commands cost
    /// Redis less than half of what the script's `redis.call`s, its set-up and its replies
    /// turned into Lua values did (docs/performance.md, round 8), and a pipeline does not hold
    /// the Redis thread as a script does.
    ///
    /// The reads are not one atomic snapshot: a user moving between two cells between two
    /// commands may be read in both (the page lists a user once, [`NearbyQuery::rank`]) or in
    /// neither (as if the list had run a moment earlier or later).
    async fn read_plain(
        &self,
        conn: &Conn,
        query: &NearbyQuery,
        cells: Vec<(CellIndex, u32)>,
        now: Timestamp,
    ) -> StoreResult<GroupRead> {
        const M: u64 = ORDER_SPACE;
        let keys: Vec<String> = cells
            .iter()
            .map(|(cell, _)| keys::cell_key(*cell))
            .collect();
        let mut sizes = redis::pipe();
        for key in &keys {
            sizes.zcard(key);
        }
        let totals: Vec<usize> = conn.pipeline("reading cells", &sizes).await?;
        let n = query.limit + 1;
        let want = n + 1 + query.exclude.len();
        let budget = 20 * n + 2_000;
        let (after_band, after_key) = query
            .after
            .as_ref()
            .map_or((None, 0), |c| (Some(c.band_m), c.key));
        let offset = query.order.offset();
        let lived = self.retention.window().as_millis() as i64;
        let mut found: Vec<Vec<(UserId, Gender, Timestamp)>> = vec![Vec::new(); cells.len()];
        let mut keep = |c: usize, reply: Option<Value>| -> usize {
            let Some(Value::Array(members)) = reply else {
                return 0;
            };
            for raw in &members {
                let Value::BulkString(raw) = raw else {
                    continue;
                };
                let member = std::str::from_utf8(raw).ok().and_then(keys::parse_member);
                if let Some(member) = member.filter(|m| m.deadline > now) {
                    let last_active = Timestamp::from_millis(member.deadline.as_millis() - lived);
                    found[c].push((member.user, member.gender, last_active));
                }
            }
            members.len()
        };
        let (mut count, mut examined) = (0usize, 0usize);
        let mut prev_band: Option<u32> = None;
        let mut stop: Option<(u32, u64)> = None;
        let mut i = 0;
        while i < cells.len() && count < want && stop.is_none() {
            // One pipeline: the sparse bands whole, then the first window of a crowded one.
            let mut pipe = redis::pipe();
            let mut reads: Vec<usize> = Vec::new();
            let mut planned = 0;
            let mut crowded: Option<Crowded> = None;
            while i < cells.len() && count + planned < want {
                let band = cells[i].1;
                if examined + planned >= budget
                    && let Some(prev) = prev_band
                {
                    // Out of budget between bands: everything up to the end of the previous
                    // band is read (once this pipeline is).
                    stop = Some((prev, M));
                    break;
                }
                let mut j = i;
                while j < cells.len() && cells[j].1 == band {
                    j += 1;
                }
                let lo = if Some(band) == after_band {
                    after_key + 1
                } else {
                    0
                };
                let total: usize = totals[i..j].iter().sum();
                let need = want - count - planned;
                if lo >= M {
                    // The band was read whole by an earlier page.
                } else if lo == 0 && total <= need {
                    for c in (i..j).filter(|&c| totals[c] > 0) {
                        pipe.zrange(&keys[c], 0, -1);
                        reads.push(c);
                    }
                    planned += total;
                } else {
                    let width = if total > need {
                        let share = ((1.25 * need as f64 + 4.0) / total as f64).min(1.0);
                        (M as f64 * share).ceil() as u64
                    } else {
                        M
                    };
                    let window = Crowded {
                        band,
                        cells: i..j,
                        from: lo,
                        to: lo.saturating_add(width).min(M),
                        width,
                    };
                    window.push(&mut pipe, &keys, &totals, offset);
                    crowded = Some(window);
                    i = j;
                    break;
                }
                prev_band = Some(band);
                i = j;
            }
            if reads.is_empty() && crowded.is_none() {
                break;
            }
            let mut replies = read_all(conn, &pipe).await?;
            for &c in &reads {
                let got = keep(c, replies.next());
                count += got;
                examined += got;
            }
            let Some(mut window) = crowded else {
                continue;
            };
            let need = want.saturating_sub(count);
            let mut got_band = window.take(&mut replies, &totals, offset, &mut keep);
            examined += got_band;
            loop {
                if got_band >= need || window.to >= M {
                    if window.to < M {
                        stop = Some((window.band, window.to));
                    }
                    break;
                }
                if examined >= budget {
                    stop = Some((window.band, window.to));
                    break;
                }
                window.widen();
                let mut pipe = redis::pipe();
                window.push(&mut pipe, &keys, &totals, offset);
                let mut replies = read_all(conn, &pipe).await?;
                let got = window.take(&mut replies, &totals, offset, &mut keep);
                got_band += got;
                examined += got;
            }
            count += got_band;
            prev_band = Some(window.band);
        }
        if stop.is_none()
            && i < cells.len()
            && let Some(prev) = prev_band
        {
            // Enough read before the last bands: the page ends with the last band read whole
            // at most.
            stop = Some((prev, M));
        }
        let read = cells
            .iter()
            .zip(found)
            .filter(|(_, members)| !members.is_empty())
            .map(|((cell, _), members)| (*cell, members))
            .collect();
        Ok((read, stop))
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

/// The replies of `pipe`'s reads, in order (none without a round trip when it has none).
async fn read_all(conn: &Conn, pipe: &redis::Pipeline) -> StoreResult<std::vec::IntoIter<Value>> {
    if pipe.is_empty() {
        return Ok(Vec::new().into_iter());
    }
    let replies: Vec<Value> = conn.pipeline("reading cells", pipe).await?;
    Ok(replies.into_iter())
}

/// The window of a band whose members are more than what is still wanted: every cell of
/// `cells` is read over the rotated keys `[from, to)`.
struct Crowded {
    band: u32,
    cells: std::ops::Range<usize>,
    from: u64,
    to: u64,
    width: u64,
}

impl Crowded {
    /// Adds the window's reads (one or two score ranges a non-empty cell) to `pipe`.
    fn push(&self, pipe: &mut redis::Pipeline, keys: &[String], totals: &[usize], offset: u64) {
        let ranges = score_ranges(offset, self.from, self.to);
        for c in self.cells.clone().filter(|&c| totals[c] > 0) {
            for (min, max) in &ranges {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(&keys[c])
                    .arg(*min)
                    .arg(format!("({max}"));
            }
        }
    }

    /// Takes the window's replies (as [`Self::push`] ordered them) through `keep`; returns how
    /// many members were read.
    fn take(
        &self,
        replies: &mut impl Iterator<Item = Value>,
        totals: &[usize],
        offset: u64,
        keep: &mut impl FnMut(usize, Option<Value>) -> usize,
    ) -> usize {
        let parts = score_ranges(offset, self.from, self.to).len();
        let mut got = 0;
        for c in self.cells.clone().filter(|&c| totals[c] > 0) {
            for _ in 0..parts {
                got += keep(c, replies.next());
            }
        }
        got
    }

    /// The next window: as far again as twice this one.
    fn widen(&mut self) {
        self.width = self.width.saturating_mul(2);
        self.from = self.to;
        self.to = self.from.saturating_add(self.width).min(ORDER_SPACE);
    }
}

/// The score ranges `(min, max exclusive)` of the rotated keys `[a, b)` (ticket = key + offset
/// mod [`ORDER_SPACE`]): one, or two around the rotation (`lua/lib/ranges.lua` in Rust).
fn score_ranges(offset: u64, a: u64, b: u64) -> Vec<(u64, u64)> {
    const M: u64 = ORDER_SPACE;
    let (s, e) = (offset + a, offset + b);
    if s >= M {
        vec![(s - M, e - M)]
    } else if e <= M {
        vec![(s, e)]
    } else {
        vec![(s, M), (0, e - M)]
    }
}

/// The earlier of two (band, key) points where a read stopped, either of which may be absent.
pub(super) fn earliest(a: Option<(u32, u64)>, b: Option<(u32, u64)>) -> Option<(u32, u64)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = ORDER_SPACE;

    #[test]
    fn a_window_is_one_score_range_or_two_around_the_rotation() {
        assert_eq!(score_ranges(10, 0, 5), vec![(10, 15)]);
        assert_eq!(score_ranges(M - 3, 0, 10), vec![(M - 3, M), (0, 7)]);
        assert_eq!(score_ranges(M - 3, 5, 10), vec![(2, 7)]);
        assert_eq!(score_ranges(0, 0, M), vec![(0, M)]);
    }

    #[test]
    fn a_widened_window_starts_where_the_last_ended_and_stops_at_the_end() {
        let mut window = Crowded {
            band: 500,
            cells: 0..2,
            from: 0,
            to: 10,
            width: 10,
        };
        window.widen();
        assert_eq!((window.from, window.to), (10, 30));
        window.width = M;
        window.widen();
        assert_eq!((window.from, window.to), (30, M));
    }
}

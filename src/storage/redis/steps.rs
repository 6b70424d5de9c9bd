//! The write steps of the Redis location store: a record read, the single-node UpdateLocation
//! in one script, and the ordered steps a cluster takes where a member (cell slot) and a record
//! (user slot) cannot change in one script (the orderings and why they are safe are in
//! `docs/decisions.md`, "Leave creates nothing; Clear removes by ticket").
//!
//! A cluster UpdateLocation from cell A to cell B (`RedisStore::upsert`), and what the store
//! holds if the call is cut off (deadline, cancel, a killed node) right after each step:
//!
//! | step | script (slot) | holds after it, if cut off here | what removes it |
//! |---|---|---|---|
//! | 1 schedule | `WRITE_SCHEDULE` (`vc:n:parts`) | sweeps of B's partition and of the user's record shard, due after the hold | nothing to remove |
//! | 2 mark | `USER_MARK` (user shard, fenced) | B among the user's strays | a Clear (drops the members of every stray cell); the shard's sweep at the strays' deadline |
//! | 3 add | `CELL_ADD` (B's partition) | a member in B *held* for `PROVISIONAL_HOLD`, listed meanwhile | a Clear (B is a stray); the partition's sweep when the hold ends |
//! | 4 record | `USER_PUT` (user shard, fenced) | the record naming B, A added to the strays (atomically) | a Clear (record and strays); the shard's sweep at `purge_at` |
//! | 5 drop old | `CELL_DROP_USER` (A's partition) | A's member gone (and those A's write could have held) | nothing left in A |
//! | 6 confirm | `CELL_CONFIRM` (B's partition) | B's member at its full deadline | a Clear (the record names B); the sweep at `purge_at`. If the member was gone (a Clear ran), `USER_DROP_IF` takes back the record and the call fails |
//! | 7 unmark | `USER_UNMARK` (user shard) | the settled user: record only | a Clear; the sweeps at `purge_at` |
//!
//! A fenced step (2, 4) refuses to run when a Clear of the user's shard ran since the fence
//! was read (`storage::Fence`): a write admitted before a withdrawal never lands after it. On a
//! single node the same update is one script (`UPSERT`), with nothing in between to cut.

use std::time::Duration;

use h3o::CellIndex;

use super::{RedisStore, conn::time_ms, keys, scripts};
use crate::{
    domain::{Deadlines, Feature, Retention, Timestamp, UserId},
    storage::{Fence, LocationEntry, Position, StoreError, StoreErrorKind, StoreResult},
};

impl RedisStore {
    pub(super) async fn read_record(
        &self,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<(Timestamp, Option<(Vec<u8>, LocationEntry)>)> {
        let conn = &self.conn;
        let (now, raw): (i64, Option<Vec<u8>>) = if self.conn.is_cluster() {
            let call = scripts::user_get(feature, user);
            conn.script("reading a record", &call).await?
        } else {
            // On one node the clock and the record come from one server: two plain commands
            // in one round trip cost Redis less than a script call.
            let mut pipe = redis::pipe();
            pipe.cmd("TIME")
                .cmd("HGET")
                .arg(keys::user_key(user))
                .arg(keys::user_field(feature, user));
            let (time, raw): ((i64, i64), Option<Vec<u8>>) =
                conn.pipeline("reading a record", &pipe).await?;
            (time_ms(time), raw)
        };
        let entry = raw.and_then(|raw| {
            let entry = keys::decode_record(feature, user, &raw)?;
            Some((raw, entry))
        });
        Ok((Timestamp::from_millis(now), entry))
    }

    /// The user's clear mark and the store's time, to admit writes under: on one node two
    /// plain commands in one round trip; on a cluster a script routed by the mark's key (a
    /// keyless `TIME` would go to any node).
    pub(super) async fn read_fence(&self, user: &UserId) -> StoreResult<Fence> {
        let conn = &self.conn;
        let (now, mark): (i64, Option<i64>) = if conn.is_cluster() {
            conn.script("reading a clear mark", &scripts::fence_read(user))
                .await?
        } else {
            let mut pipe = redis::pipe();
            pipe.cmd("TIME").cmd("GET").arg(keys::clear_mark_key(user));
            let (time, mark): ((i64, i64), Option<i64>) =
                conn.pipeline("reading a clear mark", &pipe).await?;
            (time_ms(time), mark)
        };
        Ok(Fence {
            mark: mark.unwrap_or(0),
            read_at: Timestamp::from_millis(now),
            seen: std::time::Instant::now(),
        })
    }

    /// All of UpdateLocation on a single node in one script ([`scripts::UPSERT`]), deadlines
    /// from the server clock.
    pub(super) async fn write_whole(
        &self,
        position: &Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<Deadlines> {
        let ticket = self.tickets.of(&position.user_id);
        let call = scripts::upsert(position, ticket, retention, fence);
        let (what, last_active, purge): (i64, i64, i64) =
            self.conn.script("updating a location", &call).await?;
        match what {
            4 => {
                // Refused: the next attempt reads the shard's fence afresh.
                self.fences.forget(keys::shard_of(&position.user_id));
                Err(StoreError::fenced())
            }
            _ => Ok(written((last_active, purge))),
        }
    }

    /// The cluster's second step of UpdateLocation, the user's member in their cell
    /// ([`scripts::CELL_ADD`]), with the deadlines from the server clock.
    pub(super) async fn write_position(
        &self,
        position: &Position,
        retention: Retention,
    ) -> StoreResult<Deadlines> {
        let ticket = self.tickets.of(&position.user_id);
        let call = scripts::cell_add(position, ticket, retention, self.hold);
        Ok(written(self.conn.script("adding to a cell", &call).await?))
    }

    /// The cluster's last step of UpdateLocation: the member held since the first step gets
    /// its full deadline (see [`scripts::CELL_ADD`]). When the member is gone, a Clear (or,
    /// after a stall past the hold, the sweep) took it between the steps: the record this
    /// write put after it is taken back too, if nothing replaced it since, and the write
    /// fails, so no record is left without its member.
    pub(super) async fn confirm_member(
        &self,
        position: &Position,
        deadlines: &Deadlines,
    ) -> StoreResult<()> {
        let ticket = self.tickets.of(&position.user_id);
        let call = scripts::cell_confirm(position, ticket, deadlines.purge_at);
        let confirmed: i64 = self.conn.script("confirming a member", &call).await?;
        if confirmed == 1 {
            return Ok(());
        }
        let call = scripts::user_drop_if(position, deadlines);
        let _: i64 = self.conn.script("taking back a record", &call).await?;
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "a concurrent clear took the update",
        ))
    }

    /// Writes `position`'s record under `fence`; returns the previous record. Fenced, it
    /// writes nothing and drops the member the cell step added (by ticket): the clear that
    /// fenced it took the strays that named that cell, possibly before the member was there.
    /// A newer write of the same user in the same cell, whose member this may drop too, then
    /// fails its confirm step and is retried (fail closed). A node that dies before this drop
    /// leaves that member for its provisional hold.
    pub(super) async fn put_record(
        &self,
        position: &Position,
        deadlines: &Deadlines,
        left: bool,
        fence: Fence,
    ) -> StoreResult<Option<Vec<u8>>> {
        let conn = &self.conn;
        let call = scripts::user_put(position, deadlines, left, fence);
        match conn.script("writing a record", &call).await? {
            redis::Value::Int(-1) => {
                self.drop_stray(position.cell, &position.user_id).await?;
                Err(StoreError::fenced())
            }
            redis::Value::Nil => Ok(None),
            old => redis::from_redis_value(old)
                .map_err(|_| StoreError::new(StoreErrorKind::Corrupt, "writing a record")),
        }
    }

    /// [`LocationStore::leave`] on a cluster, where the member and the record live in two
    /// slots: renew the member only if it is there, then the record only if it is there and
    /// still names that cell. Neither step creates anything, so a Clear or a withdrawal that
    /// runs in between is never undone; and the member's deadline is written first, so it is
    /// never earlier than the record's (the sweeper finds records through members).
    pub(super) async fn leave_in_steps(
        &self,
        feature: Feature,
        user: &UserId,
        retention: Retention,
    ) -> StoreResult<Option<Deadlines>> {
        let (now, entry) = self.read_record(feature, user).await?;
        let Some((_, entry)) = entry.filter(|(_, e)| !e.deadlines.is_expired(now)) else {
            return Ok(None);
        };
        let cell = entry.position.cell;
        let conn = &self.conn;
        let renew = scripts::cell_renew(&entry, self.tickets.of(user), retention);
        let renewed: Option<(i64, i64)> = conn.script("renewing a member", &renew).await?;
        let Some(deadlines) = renewed.map(written) else {
            return Ok(None);
        };
        let mark = scripts::user_leave(feature, user, cell, deadlines.purge_at, retention);
        let marked: u32 = conn.script("marking a record left", &mark).await?;
        self.schedule(cell, deadlines.purge_at).await?;
        Ok((marked > 0).then_some(deadlines))
    }

    /// One feature of [`LocationStore::clear`] on a cluster: the member of the cell the record
    /// names is dropped (by ticket, whatever its deadline), then the record is taken, and the
    /// member of the cell the taken record names is dropped too: an UpdateLocation that wrote
    /// its member and record between the first two steps (in the same cell or another) is
    /// removed whole. A member a concurrent Leave renews is one these steps drop (Leave
    /// creates nothing). Returns whether there was a record.
    pub(super) async fn clear_in_steps(
        &self,
        feature: Feature,
        user: &UserId,
    ) -> StoreResult<bool> {
        let (_, read) = self.read_record(feature, user).await?;
        let first = read.as_ref().map(|(_, e)| e.position.cell);
        if let Some((_, entry)) = &read {
            self.drop_member(entry).await?;
        }
        let conn = &self.conn;
        let take = scripts::user_take(feature, user);
        let (taken, strays): (Option<Vec<u8>>, Option<Vec<u8>>) =
            conn.script("deleting a record", &take).await?;
        for cell in strays
            .as_deref()
            .map(keys::strays_cells)
            .unwrap_or_default()
        {
            self.drop_stray(cell, user).await?;
        }
        let Some(raw) = taken else {
            return Ok(first.is_some());
        };
        if let Some(entry) = keys::decode_record(feature, user, &raw) {
            self.drop_member(&entry).await?;
        }
        Ok(true)
    }

    /// The cluster's first step of UpdateLocation: lists `position`'s cell among the user's
    /// strays before a member is added there, so a Clear finds that member whichever later
    /// step is cut off (the node dies, the record's Redis is down). Strays full of writes cut
    /// off within their hold are dropped first (their members, except in the cell the
    /// record names; an update still in flight there then fails its last step, as it would
    /// after a Clear).
    pub(super) async fn mark_stray(
        &self,
        position: &Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<()> {
        let conn = &self.conn;
        let mark = scripts::user_mark(position, self.strays_hold(retention), fence);
        let marked: i64 = conn.script("marking a stray", &mark).await?;
        match marked {
            1 => return Ok(()),
            -1 => return Err(StoreError::fenced()),
            _ => {}
        }
        let (feature, user) = (position.feature, &position.user_id);
        let (_, record) = self.read_record(feature, user).await?;
        let named = record.map(|(_, e)| e.position.cell);
        let mut read = redis::cmd("HGET");
        read.arg(keys::user_key(user))
            .arg(keys::strays_field(feature, user));
        let strays: Option<Vec<u8>> = conn.query("reading strays", &read).await?;
        let cells = strays
            .as_deref()
            .map(keys::strays_cells)
            .unwrap_or_default();
        let cells: Vec<CellIndex> = cells.into_iter().filter(|c| Some(*c) != named).collect();
        for cell in &cells {
            self.drop_stray(*cell, user).await?;
        }
        let unmark = scripts::user_unmark(feature, user, &cells);
        let _: i64 = conn.script("dropping strays", &unmark).await?;
        let marked: i64 = conn.script("marking a stray", &mark).await?;
        match marked {
            1 => Ok(()),
            -1 => Err(StoreError::fenced()),
            _ => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "too many unfinished updates of one user",
            )),
        }
    }

    /// The cluster's last step of UpdateLocation: `cells` leave the user's strays (the members
    /// there were dropped, or are confirmed and named by the record).
    pub(super) async fn unmark(&self, position: &Position, cells: &[CellIndex]) -> StoreResult<()> {
        let call = scripts::user_unmark(position.feature, &position.user_id, cells);
        let _: i64 = self.conn.script("settling strays", &call).await?;
        Ok(())
    }

    /// Removes every member of `user` (under this node's ticket) from `cell`.
    async fn drop_stray(&self, cell: CellIndex, user: &UserId) -> StoreResult<()> {
        let call = scripts::cell_drop_ticket(cell, user, self.tickets.of(user));
        let _: i64 = self.conn.script("removing a stray", &call).await?;
        Ok(())
    }

    /// Removes every member of the user of `entry` from its cell: by this node's ticket, and
    /// by name, the member the entry names or its write held before confirming it (written
    /// under another ticket by a node with another order secret).
    pub(super) async fn drop_member(&self, entry: &LocationEntry) -> StoreResult<()> {
        let conn = &self.conn;
        let ticket = self.tickets.of(&entry.position.user_id);
        let call = scripts::cell_drop_user(entry, ticket, self.hold);
        let _: i64 = conn.script("removing from a cell", &call).await?;
        Ok(())
    }

    /// The cluster's first step of UpdateLocation ([`scripts::WRITE_SCHEDULE`]): the sweeper
    /// visits the partition of `position`'s cell and the user's record shard by the time
    /// anything a later step writes could be due (the provisional hold, or the retention
    /// if shorter, from the fence's time, which is before all of them).
    pub(super) async fn schedule_write(
        &self,
        position: &Position,
        retention: Retention,
        fence: Fence,
    ) -> StoreResult<()> {
        let part_at = fence.read_at.plus(self.hold.min(retention.window()));
        let shard_at = fence.read_at.plus(self.strays_hold(retention));
        let call = scripts::write_schedule(position, part_at, shard_at, retention);
        let _: i64 = self.conn.script("scheduling a sweep", &call).await?;
        Ok(())
    }

    /// How long strays last from their write's first step: the provisional hold, or, where
    /// the retention is shorter, the retention and a second (the member they may name lives
    /// until the retention from the cell step, a moment later, rounded down to a second).
    fn strays_hold(&self, retention: Retention) -> Duration {
        self.hold.min(retention.window() + Duration::from_secs(1))
    }

    /// Makes sure the sweeper visits the partition of `cell` by `at`.
    pub(super) async fn schedule(&self, cell: CellIndex, at: Timestamp) -> StoreResult<()> {
        let conn = &self.conn;
        let call = scripts::part_schedule(cell, at, self.retention);
        let _: i64 = conn.script("scheduling a sweep", &call).await?;
        Ok(())
    }
}

/// The deadlines of a write from a script's `{last_active, purge_at}` reply (server clock;
/// visible until purged, contract §4.2's default).
pub(super) fn written((last_active, purge): (i64, i64)) -> Deadlines {
    Deadlines {
        last_active: Timestamp::from_millis(last_active),
        visible_until: Timestamp::from_millis(purge),
        purge_at: Timestamp::from_millis(purge),
    }
}

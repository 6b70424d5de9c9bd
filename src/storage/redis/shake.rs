//! Shake on Redis: pending shakes under one hash tag (`{shake}`), so pairing is one atomic
//! script whichever service node each shake arrives at; the pending side is woken by a
//! PUBLISH to its node's channel, with a slow poll of its mailbox as the fallback; history per
//! user under the user's tag, swept by deadline.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tonic::async_trait;

use super::{RedisStore, Target, keys, scripts};
use crate::{
    domain::{
        Retention, Timestamp, UserId,
        shake::{PendingShake, ShakeMatch, ShakePair},
    },
    storage::{
        NewShake, SHAKE_HISTORY_CAP, SHAKE_TOMBSTONE, ShakeOutcome, ShakeStore, StoreError,
        StoreErrorKind, StoreResult,
    },
};

/// Users whose history one sweep call trims at most, and calls per sweep pass at most.
const HISTORY_USERS_PER_CALL: usize = 1_000;
const SWEEP_CALLS_PER_PASS: usize = 20;
/// How often a waiting shake looks at its mailbox if no wake-up arrives.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

/// Wakes local waiters when another node pairs their shake.
#[derive(Default)]
pub struct Waker {
    /// This node's channel suffix.
    pub node: String,
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waker {
    /// A waker for a new node id, listening on the first reachable node of `target`.
    pub fn start(target: &Target) -> StoreResult<Arc<Self>> {
        let bytes = crate::random::bytes::<8>()?;
        let waker = Arc::new(Self {
            node: hex::encode(bytes),
            waiting: Mutex::default(),
        });
        tokio::spawn(listen(Arc::downgrade(&waker), target.clone()));
        Ok(waker)
    }

    fn register(&self, id: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.lock().insert(id.to_owned(), notify.clone());
        notify
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn wake(&self, id: &str) {
        if let Some(notify) = self.lock().get(id) {
            notify.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Subscribes to this node's channel and wakes waiters, reconnecting (round the nodes; behind
/// Sentinel, to the primary it names then) until the store is dropped.
async fn listen(waker: std::sync::Weak<Waker>, target: Target) {
    for attempt in 0usize.. {
        let Some(channel) = waker
            .upgrade()
            .map(|w| format!("{}{}", keys::WAKE_PREFIX, w.node))
        else {
            return;
        };
        let clients = target.clients().await.unwrap_or_default();
        if let Some(client) = clients.get(attempt % clients.len().max(1))
            && let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(waker) = waker.upgrade() else { return };
                if let Ok(id) = message.get_payload::<String>() {
                    waker.wake(&id);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn corrupt() -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, "decoding a shake")
}

/// Parses `partner|cell|matched_at` (a mailbox entry names its owner after that).
fn parse_pair(text: &str) -> StoreResult<ShakePair> {
    let mut parts = text.split('|');
    let (Some(user), Some(cell), Some(at)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt());
    };
    Ok(ShakePair {
        partner: UserId::parse(user, "partner").map_err(|_| corrupt())?,
        partner_cell: cell.parse().map_err(|_| corrupt())?,
        matched_at: Timestamp::from_millis(at.parse().map_err(|_| corrupt())?),
    })
}

impl RedisStore {
    async fn take(&self, pending: &PendingShake, withdraw: bool) -> StoreResult<Option<ShakePair>> {
        let conn = &self.conn;
        let call = scripts::shake_take(pending, withdraw);
        let pair: Option<String> = conn.script("taking a shake", &call).await?;
        pair.map(|p| parse_pair(&p)).transpose()
    }

    /// Withdraws every pending shake of `user`; with `clear`, also deletes their pairings,
    /// history and every entry naming them (see [`scripts::SHAKE_CLEAR_USER`]). Returns how
    /// many entries went and the last history deadline left.
    async fn clear_user(&self, user: &UserId, clear: bool) -> StoreResult<(u32, i64)> {
        let conn = &self.conn;
        let call = scripts::shake_clear_user(&self.pseudonyms, user, clear, SHAKE_TOMBSTONE);
        conn.script("clearing shakes", &call).await
    }
}

#[async_trait]
impl ShakeStore for RedisStore {
    async fn shake(&self, shake: &NewShake<'_>) -> StoreResult<ShakeOutcome> {
        let conn = &self.conn;
        let call = scripts::shake_pair(&self.pseudonyms, shake, &self.waker.node);
        let reply: Vec<redis::Value> = conn.script("pairing a shake", &call).await?;
        let text = |i: usize| {
            reply
                .get(i)
                .cloned()
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
        };
        let int = |i: usize| text(i).and_then(|t| t.parse::<i64>().ok());
        if int(0) == Some(2) {
            return Ok(ShakeOutcome::Cleared);
        }
        if int(0) == Some(1) {
            let pair = format!(
                "{}|{}|{}",
                text(1).ok_or_else(corrupt)?,
                text(2).ok_or_else(corrupt)?,
                int(3).ok_or_else(corrupt)?
            );
            return Ok(ShakeOutcome::Paired(parse_pair(&pair)?));
        }
        Ok(ShakeOutcome::Pending(PendingShake {
            id: shake.id,
            user: shake.user.clone(),
            cell: shake.cell,
            arrived: Timestamp::from_millis(int(1).ok_or_else(corrupt)?),
            expires: Timestamp::from_millis(int(2).ok_or_else(corrupt)?),
        }))
    }

    async fn clear_mark(&self, user: &UserId) -> StoreResult<i64> {
        let mut get = redis::cmd("GET");
        get.arg(keys::tombstone_key(&self.pseudonyms, user));
        let mark: Option<String> = self.conn.query("reading a clear mark", &get).await?;
        mark.map_or(Ok(0), |m| m.parse().map_err(|_| corrupt()))
    }

    async fn await_partner(
        &self,
        pending: &PendingShake,
        wait: Duration,
    ) -> StoreResult<Option<ShakePair>> {
        let key = format!("{:x}", pending.id);
        let notify = self.waker.register(&key);
        let end = tokio::time::Instant::now() + wait;
        let result = async {
            loop {
                if let Some(pair) = self.take(pending, false).await? {
                    return Ok(Some(pair));
                }
                let now = tokio::time::Instant::now();
                if now >= end {
                    return self.take(pending, true).await;
                }
                let nap = (end - now).min(FALLBACK_POLL);
                let _ = tokio::time::timeout(nap, notify.notified()).await;
            }
        }
        .await;
        self.waker.forget(&key);
        result
    }

    async fn withdraw(&self, pending: &PendingShake) -> StoreResult<Option<ShakePair>> {
        self.take(pending, true).await
    }

    async fn record_match(
        &self,
        user: &UserId,
        matched: &ShakeMatch,
        retention: Retention,
    ) -> StoreResult<()> {
        let conn = &self.conn;
        let call = scripts::history_add(
            &self.pseudonyms,
            user,
            matched,
            retention,
            SHAKE_HISTORY_CAP,
        );
        let _: i64 = conn.script("recording a match", &call).await?;
        Ok(())
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ShakeMatch>> {
        let conn = &self.conn;
        let call = scripts::history_read(user);
        let reply: Vec<redis::Value> = conn.script("reading history", &call).await?;
        let mut matches = Vec::new();
        for entry in reply.into_iter().skip(1) {
            let entry: String = redis::from_redis_value(entry).map_err(|_| corrupt())?;
            let f: Vec<&str> = entry.split('|').collect();
            let [partner, band, at] = f[..] else {
                return Err(corrupt());
            };
            matches.push(ShakeMatch {
                partner: UserId::parse(partner, "partner").map_err(|_| corrupt())?,
                band_m: band.parse().map_err(|_| corrupt())?,
                matched_at: Timestamp::from_millis(at.parse().map_err(|_| corrupt())?),
            });
        }
        Ok(matches)
    }

    async fn leave_shake(&self, user: &UserId) -> StoreResult<Option<Timestamp>> {
        let (_, last) = self.clear_user(user, false).await?;
        Ok((last > 0).then(|| Timestamp::from_millis(last)))
    }

    async fn clear_shake(&self, user: &UserId) -> StoreResult<u32> {
        let cleared = self.clear_user(user, true).await?.0;
        self.conn.replicated("replicating a clear").await?;
        Ok(cleared)
    }
}

/// Sweeps expired pending shakes, mailboxes and history: one script call takes at most
/// [`HISTORY_USERS_PER_CALL`] users' history and `SHAKE_SWEEP_BATCH` pending shakes and
/// mailboxes each, and is repeated while anything of the three is left due, at most
/// [`SWEEP_CALLS_PER_PASS`] calls (the rest waits for the next pass).
pub(super) async fn sweep(store: &RedisStore) -> StoreResult<u32> {
    let mut purged = 0;
    for _ in 0..SWEEP_CALLS_PER_PASS {
        let conn = &store.conn;
        let call = scripts::shake_sweep(HISTORY_USERS_PER_CALL);
        let (n, left): (u32, u64) = conn.script("sweeping shakes", &call).await?;
        purged += n;
        if left == 0 {
            break;
        }
    }
    Ok(purged)
}

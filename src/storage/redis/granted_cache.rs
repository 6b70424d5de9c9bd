//! A cache of the consent states that read GRANTED, for the users a list shows (and, under a
//! stricter rule, an update's own check): at 1M users the consent `MGET` of a page was the
//! consent Redis's whole cost of a list (about 75 µs of its CPU) and a fifth of the service's.
//!
//! Redis keeps it exact (server-assisted client-side caching): the cache reads through a
//! RESP3 connection of its own with `CLIENT TRACKING ON`, so Redis sends that connection an
//! invalidation of every key it read once the key changes (a withdrawal, an erasure, a
//! grant), in the same event-loop turn as the change, before the writer hears OK. Why it
//! cannot list a withdrawn user (the whole argument is in docs/decisions.md, "A cache of
//! GRANTED consent states"):
//! - only GRANTED is cached: an answer that refuses is always read afresh;
//! - a read's answers are remembered only when nothing was invalidated and the connection
//!   did not change while it was in flight (the *epoch*), since Redis sends an invalidation
//!   after the reply it follows and the two are handled by different tasks;
//! - a lost connection (a restart, a failover, a kill) empties the cache before anything is
//!   read on the next one, whose tracking starts empty;
//! - answers come from the cache only while its connection answered a heartbeat sent within
//!   [`STALENESS`]: every invalidation Redis sent before the heartbeat reached it has been
//!   applied by the time its answer is read, so a stalled connection that does not close
//!   cannot keep an entry longer than that;
//! - reads use it ([`crate::storage::ConsentStore::granted_to_show`]), and a withdrawal purges
//!   the location before it answers OK, so a stale entry for a withdrawn user finds no location
//!   to show (it matters only while a purge failed, and then for at most [`STALENESS`]);
//! - the check that lets an update's write in uses it only with what a heartbeat sent after
//!   the write's fence was read brought ([`GrantedCache::lookup_after`]): a GRANTED it answers
//!   then held in Redis after the fence was read, so a withdrawal's purge, later still, changed
//!   the mark the write compares (docs/decisions.md, "A cached GRANTED admits a write fenced
//!   before the last heartbeat"); an answer from before the fence could be a stale GRANTED
//!   read after the clear, which the fence would pass. A shake's and a leave's checks read the
//!   store.
//!
//! The cache is bounded ([`GrantedCache::start`]'s `capacity`; full, it starts over empty).

use std::{
    collections::HashSet,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use redis::{PushInfo, PushKind, Value};
use siphasher::sip128::{Hasher128, SipHasher13};

use super::{Conn, Target};
use crate::storage::StoreResult;

/// How often the cache's connection is checked with a `PING`.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// How long after a heartbeat was sent the cache answers without a newer one: the most an
/// answer can lag behind a change when the connection stalls without closing (normally an
/// invalidation is applied within microseconds).
pub const STALENESS: Duration = Duration::from_millis(500);

/// A cache of GRANTED consent states (see the module). Cheap to clone; the task that keeps
/// its connection ends when the last clone is dropped.
#[derive(Clone)]
pub struct GrantedCache {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State<Conn>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State<Conn>> {
        // A panic while the lock was held leaves nothing half-done that matters here: the
        // worst case is a missed insert.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A state key as the cache holds it: a 128-bit SipHash of its bytes under a key drawn per
/// process. The table holds 16 bytes per key and no string, so a lookup touches one slot
/// instead of a slot and a string elsewhere in memory (measured: string keys made the
/// lookups of a page a tenth of the service's CPU per list at 100k users, nearly all of it
/// waiting on memory). Two keys collide with odds of about n²/2^129, and nobody can aim for a
/// collision without the per-process keys.
#[derive(Clone, Copy, PartialEq, Eq)]
struct KeyId(u128);

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly spread: the table takes 64 of its bits as they are.
        state.write_u64(self.0 as u64);
    }
}

/// The hasher of [`KeyId`]s: passes their bits through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The per-process key of [`KeyId`]s: one 128-bit SipHash-1-3 of a key's bytes (one pass
/// over the key, not two 64-bit hashes).
struct KeyIds(SipHasher13);

impl KeyIds {
    fn new() -> Self {
        // Process-random 64-bit words, from the standard library's per-process hash keys.
        let word = || RandomState::new().build_hasher().finish();
        Self(SipHasher13::new_with_keys(word(), word()))
    }

    fn of(&self, key: &[u8]) -> KeyId {
        let mut hasher = self.0;
        hasher.write(key);
        KeyId(hasher.finish128().as_u128())
    }
}

/// What the cache holds; every change goes through the lock. `L` is the connection (a
/// stand-in in unit tests).
struct State<L> {
    /// State keys that read GRANTED, each tracked by Redis.
    granted: HashSet<KeyId, BuildHasherDefault<PassThrough>>,
    /// How keys become [`KeyId`]s.
    ids: KeyIds,
    /// The most keys held; full, the cache starts over empty.
    capacity: usize,
    /// Moves on every invalidation and every change of connection.
    epoch: u64,
    /// The tracked connection the reads go through, and its number.
    link: Option<(u64, L)>,
    /// Until when answers may come from `granted`.
    trusted_until: Option<Instant>,
    /// When the last answered heartbeat of the current connection was sent: every change
    /// Redis made before that heartbeat reached it has reached `granted`.
    heard_sent: Option<Instant>,
}

impl<L: Clone> State<L> {
    fn new(capacity: usize) -> Self {
        Self {
            granted: HashSet::default(),
            ids: KeyIds::new(),
            capacity: capacity.max(1),
            epoch: 0,
            link: None,
            trusted_until: None,
            heard_sent: None,
        }
    }

    /// Applies a push from connection `number`.
    fn on_push(&mut self, number: u64, push: &PushInfo) {
        match push.kind {
            PushKind::Invalidate => self.invalidate(&push.data),
            PushKind::Disconnection => self.lose(number),
            _ => {}
        }
    }

    /// Forgets the keys an invalidation names (all of them for a flush, or for anything it
    /// cannot read).
    fn invalidate(&mut self, data: &[Value]) {
        self.epoch += 1;
        let Some(Value::Array(keys)) = data.first() else {
            self.granted.clear();
            return;
        };
        for key in keys {
            match key {
                Value::BulkString(bytes) => {
                    let id = self.ids.of(bytes);
                    self.granted.remove(&id);
                }
                _ => self.granted.clear(),
            }
        }
    }

    /// Connection `number` is gone: empty, and stop answering until another is tracked.
    fn lose(&mut self, number: u64) {
        self.epoch += 1;
        self.granted.clear();
        if self.link.as_ref().is_some_and(|(n, _)| *n == number) {
            self.link = None;
            self.trusted_until = None;
            self.heard_sent = None;
        }
    }

    /// Connection `number` tracks from now on (its tracking was turned on at `since`).
    fn install(&mut self, number: u64, conn: L, since: Instant) {
        self.epoch += 1;
        self.granted.clear();
        self.link = Some((number, conn));
        self.trusted_until = Some(since + STALENESS);
        self.heard_sent = None;
    }

    /// A heartbeat sent at `sent` on connection `number` was answered.
    fn heard(&mut self, number: u64, sent: Instant) {
        if self.link.as_ref().is_some_and(|(n, _)| *n == number) {
            self.trusted_until = Some(sent + STALENESS);
            self.heard_sent = self.heard_sent.max(Some(sent));
        }
    }

    fn trusted(&self, now: Instant) -> Option<&L> {
        let (_, conn) = self.link.as_ref()?;
        self.trusted_until.is_some_and(|t| now < t).then_some(conn)
    }

    /// Per key, whether it is held as GRANTED, with the link and the epoch; `None` when the
    /// cache may not answer.
    fn lookup(&self, keys: &[String], now: Instant) -> Option<(Vec<bool>, L, u64)> {
        let link = self.trusted(now)?.clone();
        // Hash first, then probe: a probe of a large table waits on memory, and short probes
        // in a loop of their own let the processor wait on several at once.
        let ids: Vec<KeyId> = keys.iter().map(|k| self.ids.of(k.as_bytes())).collect();
        let known = ids.iter().map(|id| self.granted.contains(id)).collect();
        Some((known, link, self.epoch))
    }

    /// [`State::lookup`] for the check that admits a write fenced at `fenced`: a key is known
    /// only if the last answered heartbeat was sent after `fenced`, so what it says held in
    /// Redis after the fence was read (docs/decisions.md, "A cached GRANTED admits a write
    /// fenced before the last heartbeat").
    fn lookup_after(
        &self,
        keys: &[String],
        fenced: Instant,
        now: Instant,
    ) -> Option<(Vec<bool>, L, u64)> {
        let (mut known, link, epoch) = self.lookup(keys, now)?;
        let heard_since = self.heard_sent.is_some_and(|sent| sent > fenced);
        if !heard_since {
            known.iter_mut().for_each(|k| *k = false);
        }
        Some((known, link, epoch))
    }

    /// Remembers `keys` as GRANTED if nothing changed since `epoch`.
    fn remember<'a>(&mut self, epoch: u64, keys: impl Iterator<Item = &'a str>) {
        if self.epoch != epoch {
            return;
        }
        for key in keys {
            if self.granted.len() >= self.capacity {
                self.granted.clear();
            }
            let id = self.ids.of(key.as_bytes());
            self.granted.insert(id);
        }
    }
}

/// What the cache knows of some keys (`known[i]`: key `i` reads GRANTED), and the tracked
/// connection to read the others through.
pub struct Lookup {
    /// Per key, whether the cache holds it as GRANTED.
    pub known: Vec<bool>,
    /// The tracked connection: read the unknown keys through it, then [`GrantedCache::remember`].
    pub link: Conn,
    epoch: u64,
}

impl GrantedCache {
    /// A cache of at most `capacity` keys of the consent Redis `target` (a single server),
    /// each read bounded by `timeout`. It answers once its connection is tracked (until then,
    /// and whenever it is lost, [`GrantedCache::lookup`] says to read the store).
    pub fn start(target: Target, timeout: Duration, capacity: usize) -> Self {
        let cache = Self::empty(capacity);
        tokio::spawn(keep(Arc::downgrade(&cache.shared), target, timeout));
        cache
    }

    fn empty(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(capacity)),
            }),
        }
    }

    /// What the cache knows of `keys`; `None` when it may not answer (no tracked connection,
    /// or no heartbeat answered within [`STALENESS`]): read the store instead.
    pub fn lookup(&self, keys: &[String]) -> Option<Lookup> {
        let (known, link, epoch) = self.shared.lock().lookup(keys, Instant::now())?;
        Some(Lookup { known, link, epoch })
    }

    /// [`GrantedCache::lookup`] for the consent check that admits a write whose fence this
    /// node had at `fenced`: a key reads GRANTED only if the cache heard from Redis since
    /// (a heartbeat sent after `fenced` was answered), else it is to be read.
    pub fn lookup_after(&self, keys: &[String], fenced: Instant) -> Option<Lookup> {
        let state = self.shared.lock();
        let (known, link, epoch) = state.lookup_after(keys, fenced, Instant::now())?;
        Some(Lookup { known, link, epoch })
    }

    /// Remembers `keys`, read through `lookup.link` as GRANTED, unless an invalidation or a
    /// new connection came in the meantime.
    pub fn remember<'a>(&self, lookup: &Lookup, keys: impl Iterator<Item = &'a str>) {
        self.shared.lock().remember(lookup.epoch, keys);
    }

    /// Waits until every invalidation Redis sent before now has been applied (a `PING` on
    /// the tracked connection, answered after them). For tests; `false` when not tracking.
    pub async fn settle(&self) -> bool {
        let link = self.shared.lock().link.clone();
        let Some((number, conn)) = link else {
            return false;
        };
        let sent = Instant::now();
        let pong: StoreResult<String> = conn.query("checking the consent cache", &ping()).await;
        // Only an answer vouches for what came before it (and now admits writes).
        if pong.is_ok() {
            self.shared.lock().heard(number, sent);
        }
        pong.is_ok()
    }

    /// Whether answers may come from the cache now.
    pub fn is_tracking(&self) -> bool {
        self.shared.lock().trusted(Instant::now()).is_some()
    }

    /// How many keys the cache holds.
    pub fn len(&self) -> usize {
        self.shared.lock().granted.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn ping() -> redis::Cmd {
    redis::cmd("PING")
}

/// Keeps a tracked connection: makes one when there is none, checks it every [`HEARTBEAT`],
/// and drops it when a check fails (its disconnection empties the cache). Ends when the cache
/// is dropped.
async fn keep(shared: Weak<Shared>, target: Target, timeout: Duration) {
    let mut number = 0;
    loop {
        let Some(cache) = shared.upgrade() else {
            return;
        };
        let link = cache.lock().link.clone();
        match link {
            Some((n, conn)) => {
                let sent = Instant::now();
                let pong: StoreResult<String> =
                    conn.query("checking the consent cache", &ping()).await;
                let mut state = cache.lock();
                match pong {
                    Ok(_) => state.heard(n, sent),
                    Err(_) => state.lose(n),
                }
            }
            None => {
                number += 1;
                let since = Instant::now();
                if let Ok(conn) = connect(&cache, &target, timeout, number).await {
                    cache.lock().install(number, conn, since);
                }
            }
        }
        drop(cache);
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// A RESP3 connection whose pushes reach the cache, with tracking on.
async fn connect(
    cache: &Arc<Shared>,
    target: &Target,
    timeout: Duration,
    number: u64,
) -> StoreResult<Conn> {
    let weak = Arc::downgrade(cache);
    let pushes = move |push: PushInfo| -> Result<(), ()> {
        if let Some(cache) = weak.upgrade() {
            cache.lock().on_push(number, &push);
        }
        Ok(())
    };
    let conn = Conn::pushed(target, timeout, super::CONSENTS, pushes).await?;
    let tracking = redis::cmd("CLIENT").arg("TRACKING").arg("ON").clone();
    let _: String = conn.query("tracking consent reads", &tracking).await?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn invalidation(names: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                names
                    .iter()
                    .map(|n| Value::BulkString(n.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    fn disconnection() -> PushInfo {
        PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        }
    }

    /// A cache state tracking through connection 1 (a stand-in: nothing is sent).
    fn tracked(capacity: usize) -> State<()> {
        let mut state = State::new(capacity);
        state.install(1, (), Instant::now());
        state
    }

    fn known(state: &State<()>, names: &[&str]) -> Vec<bool> {
        let (known, (), _) = state
            .lookup(&keys(names), Instant::now())
            .expect("tracking");
        known
    }

    /// Reads `names` (all GRANTED) as the store does: the epoch first, remembered after.
    fn read(state: &mut State<()>, names: &[&str]) {
        let (_, (), epoch) = state
            .lookup(&keys(names), Instant::now())
            .expect("tracking");
        state.remember(epoch, names.iter().copied());
    }

    #[test]
    fn a_read_that_an_invalidation_overtook_is_not_remembered() {
        let mut state = tracked(16);
        let (known, (), epoch) = state
            .lookup(&keys(&["a"]), Instant::now())
            .expect("tracking");
        assert_eq!(known, [false]);
        // The reply said GRANTED, then Redis invalidated the key before the reader got back.
        state.on_push(1, &invalidation(&["a"]));
        state.remember(epoch, ["a"].into_iter());
        assert!(!known_now(&state, "a"));
        // Without an invalidation in between, it is remembered.
        read(&mut state, &["a"]);
        assert!(known_now(&state, "a"));
    }

    fn known_now(state: &State<()>, name: &str) -> bool {
        known(state, &[name])[0]
    }

    #[test]
    fn an_invalidation_forgets_its_keys_and_a_flush_everything() {
        let mut state = tracked(16);
        read(&mut state, &["a", "b", "c"]);
        state.on_push(1, &invalidation(&["b"]));
        assert_eq!(known(&state, &["a", "b", "c"]), [true, false, true]);
        let flush = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        };
        state.on_push(1, &flush);
        assert!(state.granted.is_empty());
    }

    #[test]
    fn a_lost_connection_empties_the_cache_and_stops_its_answers() {
        let mut state = tracked(16);
        read(&mut state, &["a"]);
        // An older connection's disconnection empties it but keeps the current one.
        state.on_push(0, &disconnection());
        assert!(state.granted.is_empty());
        assert!(state.trusted(Instant::now()).is_some());
        read(&mut state, &["a"]);
        state.on_push(1, &disconnection());
        assert!(state.granted.is_empty());
        assert!(state.lookup(&keys(&["a"]), Instant::now()).is_none());
    }

    #[test]
    fn a_write_is_answered_only_from_what_a_heartbeat_sent_after_its_fence_brought() {
        // Every lookup is at a fixed time just after the fence, within the trust of the
        // connection (made after it) and of every heartbeat below.
        let fenced = Instant::now();
        let ms = Duration::from_millis(1);
        let at = fenced + ms * 10;
        let mut state = tracked(16);
        let read = |state: &mut State<()>| {
            let (_, (), epoch) = state.lookup(&keys(&["a"]), at).expect("tracking");
            state.remember(epoch, ["a"].into_iter());
        };
        let known_after = |state: &State<()>, fenced| {
            let (known, (), _) = state
                .lookup_after(&keys(&["a"]), fenced, at)
                .expect("tracking");
            known
        };
        read(&mut state);
        assert_eq!(known_after(&state, fenced), [false], "nothing heard since");
        state.heard(1, fenced);
        assert_eq!(known_after(&state, fenced), [false], "sent at the fence");
        state.heard(1, fenced + ms);
        assert_eq!(known_after(&state, fenced), [true]);
        state.heard(1, fenced);
        assert_eq!(
            known_after(&state, fenced),
            [true],
            "a late answer lowers nothing"
        );
        assert_eq!(
            known_after(&state, fenced + ms * 2),
            [false],
            "a fence had after the heartbeat was sent"
        );
        state.on_push(1, &invalidation(&["a"]));
        assert_eq!(known_after(&state, fenced), [false], "invalidated");
        read(&mut state);
        assert_eq!(known_after(&state, fenced), [true]);
        // Another connection's heartbeat does not count; a new connection starts over.
        state.heard(2, fenced + ms * 3);
        assert_eq!(known_after(&state, fenced + ms * 2), [false]);
        state.install(3, (), fenced);
        read(&mut state);
        assert_eq!(
            known_after(&state, fenced),
            [false],
            "nothing heard on it yet"
        );
        state.heard(3, fenced + ms);
        assert_eq!(known_after(&state, fenced), [true]);
        state.on_push(3, &disconnection());
        assert!(state.lookup_after(&keys(&["a"]), fenced, fenced).is_none());
    }

    #[test]
    fn answers_stop_when_no_heartbeat_was_answered_within_the_staleness_bound() {
        let mut state = tracked(16);
        let now = Instant::now();
        assert!(state.trusted(now + STALENESS).is_none());
        state.heard(1, now + STALENESS);
        assert!(state.trusted(now + STALENESS).is_some());
        // A heartbeat of another connection does not count.
        state.heard(2, now + STALENESS * 3);
        assert!(state.trusted(now + STALENESS * 2).is_none());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let mut state = tracked(3);
        read(&mut state, &["a", "b", "c", "d", "e"]);
        assert!(
            (1..=3).contains(&state.granted.len()),
            "{}",
            state.granted.len()
        );
    }

    /// Against a real Redis: the cache of one node, a second node writing.
    mod on_redis {
        use std::time::{Duration, Instant};

        use vicinity_testing::redis::RedisServer;

        use crate::{
            domain::{Feature, NoticeVersion, Source, Timestamp, UserId},
            storage::{
                ConsentStore,
                redis::{RedisConsentStore, Target},
            },
        };

        const TIMEOUT: Duration = Duration::from_secs(2);

        /// Waits (bounded) until `done` holds: an event the cache's own task brings about.
        async fn until(what: &str, done: impl Fn() -> bool) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "waited too long for {what}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        /// `MGET` calls Redis has served so far.
        fn mgets(server: &RedisServer) -> u64 {
            server.command_calls("mget").expect("commandstats")
        }

        async fn nodes(server: &RedisServer) -> (RedisConsentStore, RedisConsentStore) {
            let target = Target::single(server.url());
            let cached = RedisConsentStore::connect(&target, TIMEOUT, 1024).await;
            let other = RedisConsentStore::connect(&target, TIMEOUT, 0).await;
            let cached = cached.expect("connects");
            let cache = cached.cache().expect("a cache on a single Redis").clone();
            until("the cache to track", || cache.is_tracking()).await;
            (cached, other.expect("connects"))
        }

        async fn set(store: &RedisConsentStore, user: &UserId, granted: bool) {
            let at = Timestamp::from_millis(1_000);
            let current = store
                .current(user, Feature::PeopleNearby)
                .await
                .expect("current");
            let event = if granted {
                let notice = NoticeVersion::parse("n1").expect("valid");
                current.grant(&notice, &Source::default(), at, "g".into())
            } else {
                current.withdraw(at, "w".into())
            };
            store
                .append(event.expect("a change"))
                .await
                .expect("append");
        }

        /// What a list would be told of `users`, read just after a heartbeat (so the cache
        /// answers however late the machine ran its own).
        async fn shown(store: &RedisConsentStore, users: &[UserId]) -> Vec<bool> {
            if let Some(cache) = store.cache() {
                cache.settle().await;
            }
            let shown = store.granted_to_show(Feature::PeopleNearby, users).await;
            shown.expect("granted_to_show")
        }

        #[tokio::test]
        async fn a_second_read_is_answered_by_the_cache_and_a_withdrawal_reaches_it() {
            let server = RedisServer::start().expect("redis-server starts");
            let (cached, other) = nodes(&server).await;
            let users = ["a", "b"].map(|u| UserId::parse(u, "user_id").expect("valid"));
            set(&other, &users[0], true).await;

            assert_eq!(shown(&cached, &users).await, [true, false]);
            let before = mgets(&server);
            assert_eq!(shown(&cached, &users).await, [true, false]);
            // Only the user who is not GRANTED was read again.
            assert_eq!(mgets(&server), before + 1);
            assert_eq!(shown(&cached, &users[..1]).await, [true]);
            assert_eq!(mgets(&server), before + 1, "a GRANTED state was read again");

            // The other node withdraws; once Redis's invalidation is in, no read shows it.
            set(&other, &users[0], false).await;
            let cache = cached.cache().expect("a cache");
            assert!(cache.settle().await);
            assert_eq!(shown(&cached, &users).await, [false, false]);
            assert!(cache.is_empty());
        }

        /// docs/decisions.md, "A cached GRANTED admits a write fenced before the last
        /// heartbeat": an update's consent check is answered by the cache only when a
        /// heartbeat sent after its fence was read was answered; otherwise, and for a
        /// withdrawn user, the store is read.
        #[tokio::test]
        async fn a_write_is_admitted_from_the_cache_only_after_a_heartbeat_sent_after_its_fence() {
            let server = RedisServer::start().expect("redis-server starts");
            let (cached, other) = nodes(&server).await;
            let user = UserId::parse("a", "user_id").expect("valid");
            set(&other, &user, true).await;
            let cache = cached.cache().expect("a cache").clone();
            let write = |fenced| cached.granted_to_write(Feature::PeopleNearby, &user, fenced);
            // Just after a heartbeat, so the cache answers however late the machine ran its own.
            assert!(cache.settle().await);
            let fenced = Instant::now();

            assert!(write(fenced).await.expect("read and remembered"));
            assert_eq!(cache.len(), 1);
            let before = mgets(&server);
            assert!(cache.settle().await, "a heartbeat sent after the fence");
            assert!(write(fenced).await.expect("from the cache"));
            assert_eq!(mgets(&server), before, "answered by the cache");
            // A fence had after the last heartbeat was sent: the store is read. (This test's
            // runtime has one thread, so no heartbeat runs between the fence and the check.)
            assert!(write(Instant::now()).await.expect("read"));
            assert_eq!(mgets(&server), before + 1);

            set(&other, &user, false).await;
            assert!(cache.settle().await);
            let before = mgets(&server);
            assert!(!write(fenced).await.expect("read"));
            assert_eq!(mgets(&server), before + 1, "a withdrawn user is read");
            assert!(cache.is_empty());
        }

        #[tokio::test]
        async fn a_restarted_consent_redis_is_read_afresh() {
            let mut server = RedisServer::start().expect("redis-server starts");
            let (cached, other) = nodes(&server).await;
            let user = UserId::parse("a", "user_id").expect("valid");
            set(&other, &user, true).await;
            assert_eq!(shown(&cached, std::slice::from_ref(&user)).await, [true]);
            let cache = cached.cache().expect("a cache").clone();
            assert_eq!(cache.len(), 1);

            // A restart without persistence forgets the grant, as a failover may lose one.
            server.kill().expect("kill");
            server.restart().expect("restart");
            until("the lost connection to empty the cache", || {
                cache.is_empty()
            })
            .await;
            until("the cache to track again", || cache.is_tracking()).await;
            // The other node's connection finds the restart on its next call.
            let mut answered = false;
            for _ in 0..50 {
                answered = other.ping().await.is_ok();
                if answered {
                    break;
                }
            }
            assert!(answered, "the other node reconnects");
            assert_eq!(shown(&cached, std::slice::from_ref(&user)).await, [false]);

            // And it caches again on the new connection (once the grant's invalidation of the
            // refusal just read is in: a read it overtakes is not remembered).
            set(&other, &user, true).await;
            assert!(cache.settle().await);
            assert_eq!(shown(&cached, std::slice::from_ref(&user)).await, [true]);
            assert_eq!(cache.len(), 1);
        }
    }
}

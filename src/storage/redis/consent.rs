//! Consent records in Redis, per user under one hash tag: the list of events (the history,
//! whose last event of a feature is that feature's current record) and, per feature, a state
//! key holding `1` while consent is GRANTED and `0` once withdrawn (absent: never decided).
//! The state keys are what every request checks: tiny integer values (Redis keeps them inside
//! the key's object, or shares them), so the consent of a whole page of users is one `MGET`
//! with a reply of 51 one-byte values on a single node (contract §7: one round trip to the consent
//! store per ListNearby). No TTL: consent records are the data that outlive retention
//! (contract §4.1), and they live in a persisting Redis.

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tonic::async_trait;

use super::{
    Conn, Nodes, Target,
    granted_cache::{GrantedCache, Lookup},
    keys::{OWED, consent_key, history_key},
    scripts,
};
use crate::{
    domain::{
        ConsentEvent, ConsentRecord, ConsentState, Feature, Timestamp, UserId,
        consent::HISTORY_PER_FEATURE,
    },
    storage::{ConsentStore, OwedPurge, StoreError, StoreErrorKind, StoreResult},
    telemetry::metrics,
};

/// Separates fields of an encoded record: validated text never contains it.
const SEP: char = '\u{1f}';

/// The Redis consent store.
#[derive(Clone)]
pub struct RedisConsentStore {
    conn: Conn,
    /// GRANTED states cached for what lists show (a single Redis; `None` on a cluster or
    /// when turned off).
    cache: Option<GrantedCache>,
}

fn tag(feature: Feature) -> &'static str {
    match feature {
        Feature::PeopleNearby => "n",
        Feature::Shake => "s",
    }
}

fn encode(record: &ConsentRecord) -> String {
    let at = record
        .changed_at
        .map_or(String::new(), |t| t.as_millis().to_string());
    let mut fields = vec![
        record.state.as_str(),
        tag(record.feature),
        &record.notice_version,
        &record.source,
        &at,
        &record.consent_id,
    ];
    // A seventh field only with a receipt: a build before receipts reads events without
    // one (a rolling deploy back stays possible while receipts are off).
    if !record.receipt.is_empty() {
        fields.push(&record.receipt);
    }
    fields.join(&SEP.to_string())
}

fn decode(user: &UserId, raw: &str) -> StoreResult<ConsentRecord> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt, "decoding a consent record");
    let f: Vec<&str> = raw.split(SEP).collect();
    // Events written before receipts have six fields.
    let (state, feature, notice, source, at, id, receipt) = match f[..] {
        [state, feature, notice, source, at, id] => (state, feature, notice, source, at, id, ""),
        [state, feature, notice, source, at, id, receipt] => {
            (state, feature, notice, source, at, id, receipt)
        }
        _ => return Err(corrupt()),
    };
    let feature = match feature {
        "n" => Feature::PeopleNearby,
        "s" => Feature::Shake,
        _ => return Err(corrupt()),
    };
    Ok(ConsentRecord {
        user_id: user.clone(),
        feature,
        state: ConsentState::parse(state).ok_or_else(corrupt)?,
        notice_version: notice.to_owned(),
        source: source.to_owned(),
        changed_at: at.parse().ok().map(Timestamp::from_millis),
        consent_id: id.to_owned(),
        receipt: receipt.to_owned(),
    })
}

impl RedisConsentStore {
    /// Connects to the consent store, with a cache of at most `cache_entries` GRANTED states
    /// for what lists show on a single Redis (0: none; a cluster has none).
    pub async fn connect(
        target: &Target,
        timeout: Duration,
        cache_entries: usize,
    ) -> StoreResult<Self> {
        let conn = Conn::connect(target, timeout, super::CONSENTS).await?;
        let cache = match target.nodes() {
            Nodes::Single(_) if cache_entries > 0 => {
                Some(GrantedCache::start(target.clone(), timeout, cache_entries))
            }
            _ => None,
        };
        Ok(Self { conn, cache })
    }

    /// The cache of GRANTED states, if any (tests wait on it).
    pub fn cache(&self) -> Option<&GrantedCache> {
        self.cache.as_ref()
    }

    async fn get(&self, user: &UserId, feature: Feature) -> StoreResult<Option<Vec<u8>>> {
        let conn = &self.conn;
        let cmd = redis::cmd("GET")
            .arg(consent_key(user, tag(feature)))
            .clone();
        conn.query("reading consent", &cmd).await
    }
}

/// The member of an owed purge in [`OWED`]: `<feature tag>|<token hex>|<user id>`.
fn owed_member(owed: &OwedPurge) -> String {
    format!("{}|{:x}|{}", tag(owed.feature), owed.token, owed.user)
}

fn parse_owed(member: &str) -> Option<OwedPurge> {
    let mut parts = member.splitn(3, '|');
    let feature = match parts.next()? {
        "n" => Feature::PeopleNearby,
        "s" => Feature::Shake,
        _ => return None,
    };
    let token = u64::from_str_radix(parts.next()?, 16).ok()?;
    let user = UserId::parse(parts.next()?, "user_id").ok()?;
    Some(OwedPurge {
        user,
        feature,
        token,
    })
}

/// Whether each of the state `keys` says GRANTED, in one `MGET` on `conn` (single node); a
/// short reply reads as not granted (fail closed).
async fn granted_states<K: redis::ToRedisArgs>(conn: &Conn, keys: &[K]) -> StoreResult<Vec<bool>> {
    let mget = redis::cmd("MGET").arg(keys).clone();
    let raw: Vec<Option<Vec<u8>>> = conn.query("reading consents", &mget).await?;
    Ok((0..keys.len())
        .map(|i| raw.get(i).is_some_and(granted))
        .collect())
}

/// Whether a state key's value says GRANTED.
fn granted(raw: &Option<Vec<u8>>) -> bool {
    raw.as_deref() == Some(b"1")
}

#[async_trait]
impl ConsentStore for RedisConsentStore {
    async fn current(&self, user: &UserId, feature: Feature) -> StoreResult<ConsentRecord> {
        let records = self.all_current(user).await?;
        Ok(records
            .into_iter()
            .find(|r| r.feature == feature)
            .unwrap_or_else(|| ConsentRecord::undecided(user.clone(), feature)))
    }

    /// The last event of each feature, read with the state keys in one round trip: a record
    /// reads as GRANTED only when its state key says so too, so the record GetConsent shows and
    /// the check every request makes cannot disagree (a store written by an earlier layout, or
    /// a write cut short, reads as undecided, and granting again repairs it).
    async fn all_current(&self, user: &UserId) -> StoreResult<Vec<ConsentRecord>> {
        let mut mget = redis::cmd("MGET");
        for feature in Feature::ALL {
            mget.arg(consent_key(user, tag(feature)));
        }
        let mut pipe = redis::pipe();
        pipe.add_command(mget)
            .cmd("LRANGE")
            .arg(history_key(user))
            .arg(0)
            .arg(-1);
        let conn = &self.conn;
        let (states, raw): (Vec<Option<Vec<u8>>>, Vec<String>) =
            conn.pipeline("reading consent", &pipe).await?;
        let history = raw
            .iter()
            .map(|r| decode(user, r))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Feature::ALL
            .iter()
            .zip(states.iter().chain(std::iter::repeat(&None)))
            .map(|(feature, state)| {
                let last = history.iter().rev().find(|e| e.feature == *feature);
                match last {
                    Some(event) if !event.is_granted() || granted(state) => event.clone(),
                    _ => ConsentRecord::undecided(user.clone(), *feature),
                }
            })
            .collect())
    }

    async fn granted_among(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        if !self.conn.is_cluster() {
            let keys: Vec<String> = users.iter().map(|u| consent_key(u, tag(feature))).collect();
            return granted_states(&self.conn, &keys).await;
        }
        // A cluster refuses cross-slot commands: one GET per user, all in flight at once.
        let calls = users.iter().map(|user| async move {
            let raw = self.get(user, feature).await?;
            Ok::<_, StoreError>(granted(&raw))
        });
        try_join_all(calls).await
    }

    /// From the cache while it is tracking (module `granted_cache` argues why a withdrawn
    /// user is never shown from it), the rest read through its tracked connection.
    async fn granted_to_show(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>> {
        self.granted_through_cache(feature, users, |cache, keys| cache.lookup(keys))
            .await
    }

    /// From the cache only if it heard from Redis since the write's fence was read (module
    /// `granted_cache`), the rest read through its tracked connection.
    async fn granted_to_write(
        &self,
        feature: Feature,
        user: &UserId,
        fenced: Instant,
    ) -> StoreResult<bool> {
        let users = std::slice::from_ref(user);
        let granted = self
            .granted_through_cache(feature, users, |cache, keys| {
                cache.lookup_after(keys, fenced)
            })
            .await?;
        Ok(granted.first().copied().unwrap_or(false))
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ConsentEvent>> {
        let conn = &self.conn;
        let cmd = redis::cmd("LRANGE")
            .arg(history_key(user))
            .arg(0)
            .arg(-1)
            .clone();
        let raw: Vec<String> = conn.query("reading consent history", &cmd).await?;
        raw.iter().map(|r| decode(user, r)).collect()
    }

    async fn append(&self, event: ConsentEvent) -> StoreResult<()> {
        let conn = &self.conn;
        let record = encode(&event);
        let call =
            scripts::consent_append(&event, &record, tag(event.feature), HISTORY_PER_FEATURE);
        let _: i64 = conn.script("recording consent", &call).await?;
        conn.replicated("replicating consent").await
    }

    async fn forget(&self, user: &UserId) -> StoreResult<u32> {
        let conn = &self.conn;
        let tags = Feature::ALL.map(tag);
        let forgotten = conn
            .script("forgetting consent", &scripts::consent_forget(user, &tags))
            .await?;
        conn.replicated("replicating an erasure").await?;
        Ok(forgotten)
    }

    async fn owe_purge(&self, user: &UserId, feature: Feature) -> StoreResult<OwedPurge> {
        let owed = OwedPurge {
            user: user.clone(),
            feature,
            token: crate::random::u64()?,
        };
        let conn = &self.conn;
        let call = scripts::purge_owe(&owed_member(&owed));
        let _: i64 = conn.script("recording a purge owed", &call).await?;
        Ok(owed)
    }

    async fn owed_purges(&self, age: Duration, limit: usize) -> StoreResult<Vec<OwedPurge>> {
        let conn = &self.conn;
        let call = scripts::purges_owed(age, limit);
        let raw: Vec<String> = conn.script("listing purges owed", &call).await?;
        Ok(raw.iter().filter_map(|m| parse_owed(m)).collect())
    }

    async fn settle_purge(&self, owed: &OwedPurge) -> StoreResult<()> {
        let conn = &self.conn;
        let cmd = redis::cmd("ZREM").arg(OWED).arg(owed_member(owed)).clone();
        let _: i64 = conn.query("settling a purge", &cmd).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        let conn = &self.conn;
        let _: String = conn.query("pinging", &redis::cmd("PING")).await?;
        Ok(())
    }
}

impl RedisConsentStore {
    /// `users`' GRANTED states of `feature` as `lookup` finds them in the cache, the rest read
    /// through its tracked connection (and remembered when GRANTED); all from the store when
    /// there is no cache or it may not answer.
    async fn granted_through_cache(
        &self,
        feature: Feature,
        users: &[UserId],
        lookup: impl FnOnce(&GrantedCache, &[String]) -> Option<Lookup>,
    ) -> StoreResult<Vec<bool>> {
        let Some(cache) = &self.cache else {
            return self.granted_among(feature, users).await;
        };
        let keys: Vec<String> = users
            .iter()
            .map(|user| consent_key(user, tag(feature)))
            .collect();
        let Some(lookup) = lookup(cache, &keys) else {
            metrics::consent_cache_reads("bypassed", users.len());
            return self.granted_among(feature, users).await;
        };
        let unknown: Vec<&str> = keys
            .iter()
            .zip(&lookup.known)
            .filter(|(_, known)| !**known)
            .map(|(key, _)| key.as_str())
            .collect();
        metrics::consent_cache_reads("hit", keys.len() - unknown.len());
        if unknown.is_empty() {
            return Ok(lookup.known);
        }
        metrics::consent_cache_reads("miss", unknown.len());
        let Ok(read) = granted_states(&lookup.link, &unknown).await else {
            // The tracked connection failed (its heartbeat drops it): the store answers,
            // and nothing is remembered.
            return self.granted_among(feature, users).await;
        };
        let newly = unknown.iter().zip(&read).filter(|(_, g)| **g);
        cache.remember(&lookup, newly.map(|(key, _)| *key));
        let mut read = read.into_iter();
        Ok(lookup
            .known
            .iter()
            .map(|&known| known || read.next().unwrap_or(false))
            .collect())
    }
}

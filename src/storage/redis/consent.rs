//! Consent records in Redis: one string key per user and feature for the current record and
//! a list of events per user, under one hash tag. The current records are plain strings so
//! that the consent of a whole page of users is one `MGET` on a single node (SPEC §7: one
//! round trip to the consent store per ListNearby). No TTL: consent records are the data that outlive retention (SPEC §4.1), and
//! they live in a persisting Redis.

use std::time::Duration;

use futures_util::future::try_join_all;
use tonic::async_trait;

use super::{
    Conn, Target,
    conn::bounded,
    keys::{consent_key, history_key, legacy_consent_key},
    scripts,
};
use crate::{
    domain::{ConsentEvent, ConsentRecord, ConsentState, Feature, Timestamp, UserId},
    storage::{ConsentStore, StoreError, StoreErrorKind, StoreResult},
};

/// Separates fields of an encoded record: validated text never contains it.
const SEP: char = '\u{1f}';

/// The Redis consent store.
#[derive(Clone)]
pub struct RedisConsentStore {
    conn: Conn,
    timeout: Duration,
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
    [
        record.state.as_str(),
        tag(record.feature),
        &record.notice_version,
        &record.source,
        &at,
        &record.consent_id,
    ]
    .join(&SEP.to_string())
}

fn decode(user: &UserId, raw: &str) -> StoreResult<ConsentRecord> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt, "decoding a consent record");
    let f: Vec<&str> = raw.split(SEP).collect();
    let [state, feature, notice, source, at, id] = f[..] else {
        return Err(corrupt());
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
    })
}

impl RedisConsentStore {
    /// Connects to the consent store.
    pub async fn connect(target: &Target, timeout: Duration) -> StoreResult<Self> {
        Ok(Self {
            conn: Conn::connect(target, timeout).await?,
            timeout,
        })
    }

    async fn get(&self, user: &UserId, feature: Feature) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET")
            .arg(consent_key(user, tag(feature)))
            .clone();
        bounded(self.timeout, "reading consent", cmd.query_async(&mut conn)).await
    }
}

#[async_trait]
impl ConsentStore for RedisConsentStore {
    async fn current(&self, user: &UserId, feature: Feature) -> StoreResult<ConsentRecord> {
        match self.get(user, feature).await? {
            Some(raw) => decode(user, &raw),
            None => Ok(ConsentRecord::undecided(user.clone(), feature)),
        }
    }

    async fn all_current(&self, user: &UserId) -> StoreResult<Vec<ConsentRecord>> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for feature in Feature::ALL {
            cmd.arg(consent_key(user, tag(feature)));
        }
        let raw: Vec<Option<String>> =
            bounded(self.timeout, "reading consent", cmd.query_async(&mut conn)).await?;
        Feature::ALL
            .iter()
            .zip(raw.iter().chain(std::iter::repeat(&None)))
            .map(|(feature, raw)| match raw {
                Some(raw) => decode(user, raw),
                None => Ok(ConsentRecord::undecided(user.clone(), *feature)),
            })
            .collect()
    }

    async fn granted_among(&self, feature: Feature, users: &[UserId]) -> StoreResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let granted =
            |raw: &Option<Vec<u8>>| raw.as_ref().is_some_and(|r| r.starts_with(b"granted"));
        if !self.conn.is_cluster() {
            let mut cmd = redis::cmd("MGET");
            for user in users {
                cmd.arg(consent_key(user, tag(feature)));
            }
            let mut conn = self.conn.clone();
            let raw: Vec<Option<Vec<u8>>> =
                bounded(self.timeout, "reading consents", cmd.query_async(&mut conn)).await?;
            return Ok(raw.iter().map(granted).collect());
        }
        // A cluster refuses cross-slot commands: one GET per user, all in flight at once.
        let calls = users.iter().map(|user| async move {
            let raw = self.get(user, feature).await?;
            Ok::<_, StoreError>(raw.is_some_and(|r| r.starts_with("granted")))
        });
        try_join_all(calls).await
    }

    async fn history(&self, user: &UserId) -> StoreResult<Vec<ConsentEvent>> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("LRANGE")
            .arg(history_key(user))
            .arg(0)
            .arg(-1)
            .clone();
        let raw: Vec<String> = bounded(
            self.timeout,
            "reading consent history",
            cmd.query_async(&mut conn),
        )
        .await?;
        raw.iter().map(|r| decode(user, r)).collect()
    }

    async fn append(&self, event: ConsentEvent) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let mut call = scripts::CONSENT_APPEND.prepare_invoke();
        call.key(consent_key(&event.user_id, tag(event.feature)))
            .key(history_key(&event.user_id))
            .arg(encode(&event));
        let _: i64 = bounded(
            self.timeout,
            "recording consent",
            call.invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn forget(&self, user: &UserId) -> StoreResult<u32> {
        let mut conn = self.conn.clone();
        let mut call = scripts::CONSENT_FORGET.prepare_invoke();
        call.key(history_key(user));
        for feature in Feature::ALL {
            call.key(consent_key(user, tag(feature)));
        }
        // The one-hash-per-user layout of earlier builds: erasure must not leave it behind.
        call.key(legacy_consent_key(user));
        bounded(
            self.timeout,
            "forgetting consent",
            call.invoke_async(&mut conn),
        )
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: String = bounded(
            self.timeout,
            "pinging",
            redis::cmd("PING").query_async(&mut conn),
        )
        .await?;
        Ok(())
    }
}

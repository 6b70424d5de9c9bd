//! Consent operations (contract §3 ConsentService, §4.1).

use tracing::instrument;

use super::{
    ServiceResult, Vicinity,
    audit::{self, Action},
    random_id,
};
use crate::{
    domain::{ConsentEvent, ConsentRecord, Feature, NoticeVersion, Source, UserId},
    telemetry::metrics,
};

impl Vicinity {
    /// Records consent; granting again under the same notice returns the current record.
    #[instrument(skip_all, fields(feature = %feature))]
    pub async fn grant_consent(
        &self,
        user: &UserId,
        feature: Feature,
        notice: &NoticeVersion,
        source: &Source,
    ) -> ServiceResult<ConsentRecord> {
        let current = self.deps.consents.current(user, feature).await?;
        let now = self.deps.clock.now();
        let Some(mut event) = current.grant(notice, source, now, random_id()?) else {
            return Ok(current);
        };
        self.sign(&mut event);
        self.deps.consents.append(event.clone()).await?;
        audit::record(Action::ConsentGranted, user, Some(feature), 0);
        Ok(event)
    }

    /// Withdraws consent, then purges the feature's data at once. Idempotent: withdrawing
    /// again purges again (nothing, normally) and returns the withdrawn record.
    ///
    /// Consent is withdrawn before the purge, so no update can slip in between; both run as
    /// a purge that finishes (`purge_after`): owed first, then detached from the caller, so a
    /// withdrawal cut off by its deadline still completes, and reads are refused meanwhile.
    #[instrument(skip_all, fields(feature = %feature))]
    pub async fn withdraw_consent(
        &self,
        user: &UserId,
        feature: Feature,
    ) -> ServiceResult<(ConsentRecord, u32)> {
        let current = self.deps.consents.current(user, feature).await?;
        let mut event = current.withdraw(self.deps.clock.now(), random_id()?);
        if let Some(event) = &mut event {
            self.sign(event);
        }
        let record = event.clone().unwrap_or(current);
        let consents = self.deps.consents.clone();
        let write = async move {
            if let Some(event) = event {
                consents.append(event).await?;
            }
            Ok(())
        };
        let audit = (Action::ConsentWithdrawn, Some(feature));
        let ((), purged) = self.purge_after(user, &[feature], write, audit).await?;
        Ok((record, purged))
    }

    /// Reads the receipt signing key and the key set (`--consent-key-set`) again (on SIGHUP),
    /// when the service signs receipts: from now on receipts are signed with the new key and
    /// the new set is served. A key or set that does not load, or a set without the new key or
    /// the one in force, is refused (logged, counted) and the pair in force stays.
    pub async fn reload_receipts(&self) {
        let Some(receipts) = self.deps.receipts.clone() else {
            return;
        };
        match tokio::task::spawn_blocking(move || receipts.reload()).await {
            Ok(Ok(key_id)) => tracing::info!(key_id, "consent signing key and key set reloaded"),
            Ok(Err(error)) => {
                metrics::get().signing_key_reload_failures.inc();
                tracing::error!(%error, "--consent-signing-key/--consent-key-set: reload refused, the key and the key set in force stay");
            }
            Err(error) => {
                metrics::get().signing_key_reload_failures.inc();
                tracing::error!(%error, "--consent-signing-key/--consent-key-set: reload did not finish, the key and the key set in force stay");
            }
        }
    }

    /// The key set this node publishes (`--consent-key-set`), as JSON; `None`: none.
    pub fn receipt_key_set(&self) -> Option<std::sync::Arc<str>> {
        self.deps.receipts.as_ref()?.key_set()
    }

    /// Gives `event` its signed receipt, when the service signs receipts. The receipt is
    /// stored with the event, so the export returns the record as it was given.
    fn sign(&self, event: &mut ConsentEvent) {
        if let Some(receipts) = &self.deps.receipts {
            event.receipt = receipts.current().sign(event);
        }
    }

    /// The current record per feature and the whole history.
    #[instrument(skip_all)]
    pub async fn get_consent(
        &self,
        user: &UserId,
    ) -> ServiceResult<(Vec<ConsentRecord>, Vec<ConsentEvent>)> {
        let current = self.deps.consents.all_current(user).await?;
        let history = self.deps.consents.history(user).await?;
        Ok((current, history))
    }
}

//! The abuse limits of SPEC §4.3 as the operations use them: rates counted and places held in
//! the location store (so they hold across every service node), refusals as
//! [`ServiceError::RateLimited`] with the real wait. A refused call has changed nothing.

use std::{sync::Arc, time::Duration};

use super::{ServiceError, ServiceResult, Vicinity};
use crate::{
    domain::{Timestamp, limits::Rate},
    storage::{Admission, LimitKey, LimitStore},
};

impl Vicinity {
    /// Counts one call under `key` against `rate`: the store's time when admitted.
    pub(super) async fn admit(
        &self,
        key: LimitKey,
        rate: Rate,
        limit: &'static str,
    ) -> ServiceResult<Timestamp> {
        admitted(self.deps.limits.admit(&key, rate).await?, limit)
    }

    /// Takes a place under each of `keys` (with its cap and limit name) for `token`, for
    /// `hold` at most; a refusal gives back the places taken before it.
    pub(super) async fn hold(
        &self,
        token: u64,
        keys: Vec<(LimitKey, u32, &'static str)>,
        hold: Duration,
    ) -> ServiceResult<Places> {
        let mut places = Places {
            limits: self.deps.limits.clone(),
            token,
            keys: Vec::with_capacity(keys.len()),
        };
        for (key, cap, limit) in keys {
            let taken = self.deps.limits.hold(&key, token, cap, hold).await;
            let taken = match taken {
                Ok(admission) => admitted(admission, limit),
                Err(error) => Err(error.into()),
            };
            if let Err(refused) = taken {
                places.release().await;
                return Err(refused);
            }
            places.keys.push(key);
        }
        Ok(places)
    }
}

/// The store's time of an admission, or the refusal of `limit` with its wait.
pub(super) fn admitted(admission: Admission, limit: &'static str) -> ServiceResult<Timestamp> {
    match admission {
        Admission::Admitted(now) => Ok(now),
        Admission::Refused(retry_after) => Err(ServiceError::RateLimited { limit, retry_after }),
    }
}

/// Places held for one call: given back by [`Places::release`], or, if the call is dropped
/// first (its client went away), by a task of their own. Every place also ends by itself.
pub(super) struct Places {
    limits: Arc<dyn LimitStore>,
    token: u64,
    keys: Vec<LimitKey>,
}

impl Places {
    /// Gives every place back now; a failure is logged (the place ends by itself).
    pub(super) async fn release(&mut self) {
        for key in std::mem::take(&mut self.keys) {
            if let Err(error) = self.limits.release(&key, self.token).await {
                tracing::warn!(%error, "could not give back a held place");
            }
        }
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut rest = Places {
            limits: self.limits.clone(),
            token: self.token,
            keys: std::mem::take(&mut self.keys),
        };
        tokio::spawn(async move { rest.release().await });
    }
}

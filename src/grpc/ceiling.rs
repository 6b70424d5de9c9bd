//! The per-API-key ceiling on all calls (flood protection, contract §4.3), kept per service node:
//! it protects the node and the stores behind it from one key's flood, so it must cost no
//! store round trip (a store-kept ceiling would send the flood on to the store). N nodes let
//! a key through N times the rate; docs/decisions.md says why that is the right trade.

use std::{collections::HashMap, sync::Mutex};

use crate::{
    domain::{
        Clock,
        limits::{Rate, Verdict},
    },
    service::ServiceError,
};

/// One GCRA state per caller name (bounded: the names are the configured keys', or one in
/// open mode).
pub struct Ceiling {
    rate: Rate,
    clock: std::sync::Arc<dyn Clock>,
    tats: Mutex<HashMap<String, i64>>,
}

impl Ceiling {
    /// A ceiling of `rate` per caller, on `clock`.
    pub fn new(rate: Rate, clock: std::sync::Arc<dyn Clock>) -> Self {
        Self {
            rate,
            clock,
            tats: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one call of `caller`, or refuses it with the real wait (counting nothing).
    pub fn admit(&self, caller: &str) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        match self
            .rate
            .judge(tats.get(caller).copied(), now.as_millis() * 1_000)
        {
            Verdict::Admit(next) => {
                match tats.get_mut(caller) {
                    Some(tat) => *tat = next,
                    None => {
                        tats.insert(caller.to_owned(), next);
                    }
                }
                Ok(())
            }
            Verdict::Refuse(retry_after) => Err(ServiceError::RateLimited {
                limit: crate::storage::Limit::KeyCalls,
                retry_after,
            }),
        }
    }
}

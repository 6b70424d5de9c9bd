//! The one mapping from errors to `tonic::Status` (contract §4.4).

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{AuthError, convert, pb::ErrorReason};
use crate::telemetry::metrics;
use crate::{
    domain::ValidationError, service::ServiceError, storage::StoreError, storage::StoreErrorKind,
};

/// The `google.rpc.ErrorInfo` domain of every error this service sets.
const DOMAIN: &str = "vicinity";

/// `google.rpc.ErrorInfo` of `reason` (its proto name without the `ERROR_REASON_` prefix, as
/// the proto says), with `metadata`.
fn info(reason: ErrorReason, metadata: &[(&str, String)]) -> ErrorDetails {
    let name = reason.as_str_name();
    let name = name.strip_prefix("ERROR_REASON_").unwrap_or(name);
    let metadata = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect::<HashMap<_, _>>();
    ErrorDetails::with_error_info(name, DOMAIN, metadata)
}

/// `INVALID_ARGUMENT` with `reason` and a `google.rpc.BadRequest` naming `field`.
fn bad_request(reason: ErrorReason, field: &str, description: &str, message: String) -> Status {
    let mut details = info(reason, &[]);
    details.add_bad_request_violation(field, description);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// How long a client should wait before retrying a call the store could not serve.
const STORE_RETRY: Duration = Duration::from_secs(1);

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        count_refusal(&error);
        match error {
            ServiceError::Invalid(ValidationError { field, reason }) => {
                let message = format!("invalid {field}: {reason}");
                bad_request(ErrorReason::InvalidArgument, &field, &reason, message)
            }
            ServiceError::PageTokenInvalid(ValidationError { field, reason }) => {
                let message = format!("invalid {field}: {reason}");
                bad_request(ErrorReason::PageTokenInvalid, &field, &reason, message)
            }
            ServiceError::PageTokenExpired => bad_request(
                ErrorReason::PageTokenExpired,
                "page_token",
                "has expired; start again",
                "invalid page_token: has expired; start again from the first page".to_owned(),
            ),
            ServiceError::ConsentRequired(feature) => {
                let name = convert::feature_to_pb(feature).as_str_name().to_owned();
                Status::with_error_details(
                    Code::FailedPrecondition,
                    format!("the user has not granted consent for {name}"),
                    info(ErrorReason::ConsentRequired, &[("feature", name)]),
                )
            }
            ServiceError::LocationRequired => Status::with_error_details(
                Code::FailedPrecondition,
                "the user has no location in People Nearby: update it first",
                info(ErrorReason::LocationRequired, &[]),
            ),
            ServiceError::RateLimited { limit, retry_after } => {
                let mut details = info(
                    ErrorReason::RateLimited,
                    &[("limit", limit.as_str().to_owned())],
                );
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("rate limited ({limit}): retry after the RetryInfo delay"),
                    details,
                )
            }
            ServiceError::ImplausibleJump => Status::with_error_details(
                Code::FailedPrecondition,
                "the new position is farther from the last one than anyone travels in the time \
                 since: nothing was changed",
                info(ErrorReason::ImplausibleJump, &[]),
            ),
            ServiceError::DeadlineExceeded => Status::with_error_details(
                Code::DeadlineExceeded,
                "deadline exceeded",
                info(ErrorReason::DeadlineExceeded, &[]),
            ),
            // Answered as a store that cannot be reached, without a log line per call: the
            // settings check logs the cause once (server/background.rs).
            ServiceError::LocationStoreUnsafe => unavailable(),
            ServiceError::Store(error) => store_status(&error),
        }
    }
}

/// The status of a call the store failed.
fn store_status(error: &StoreError) -> Status {
    tracing::warn!(error = %error, source = ?error.source, "store error");
    match error.kind {
        // Fenced: the service retries; one that kept racing clears is a retry.
        StoreErrorKind::Unavailable | StoreErrorKind::Fenced => unavailable(),
        StoreErrorKind::Timeout => Status::with_error_details(
            Code::DeadlineExceeded,
            "store timed out",
            info(ErrorReason::StoreTimeout, &[]),
        ),
        StoreErrorKind::Corrupt | StoreErrorKind::Internal => Status::with_error_details(
            Code::Internal,
            "internal error",
            info(ErrorReason::Internal, &[]),
        ),
    }
}

/// `UNAVAILABLE` for a store, retryable after the `RetryInfo` delay.
fn unavailable() -> Status {
    let mut details = info(ErrorReason::StoreUnavailable, &[]);
    details.set_retry_info(Some(STORE_RETRY));
    Status::with_error_details(Code::Unavailable, "store unavailable", details)
}

/// Counts a refusal by consent or by an abuse limit in the metrics.
fn count_refusal(error: &ServiceError) {
    let metrics = metrics::get();
    match error {
        ServiceError::ConsentRequired(feature) => metrics
            .consent_refusals
            .with_label_values(&[feature.as_str()])
            .inc(),
        ServiceError::RateLimited { limit, .. } => metrics
            .rate_limit_refusals
            .with_label_values(&[limit.as_str()])
            .inc(),
        ServiceError::ImplausibleJump => metrics.implausible_jumps.inc(),
        _ => {}
    }
}

/// A request that broke a rule: `INVALID_ARGUMENT` through the one mapping above (a function,
/// not a `From`: both types live in other crates).
pub fn invalid(error: ValidationError) -> Status {
    ServiceError::Invalid(error).into()
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let (code, reason) = match error {
            AuthError::Missing => (Code::Unauthenticated, ErrorReason::ApiKeyMissing),
            AuthError::Unknown => (Code::Unauthenticated, ErrorReason::ApiKeyInvalid),
            AuthError::Scope => (Code::PermissionDenied, ErrorReason::ScopeDenied),
        };
        Status::with_error_details(code, error.to_string(), info(reason, &[]))
    }
}

/// The answer to a request body over `limit` bytes: `RESOURCE_EXHAUSTED` (gRPC's convention
/// for "message larger than configured limit"), with its own reason. Not retryable as is.
pub fn request_too_large(limit: usize) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the request is larger than {limit} bytes"),
        info(ErrorReason::RequestTooLarge, &[]),
    )
}

/// The answer of a vicinity service while the server still waits for its stores at start
/// (`--store-wait`): `UNAVAILABLE`, as for a store that cannot be reached, retryable after
/// the `RetryInfo` delay.
pub fn starting() -> Status {
    let mut details = info(ErrorReason::StoreUnavailable, &[]);
    details.set_retry_info(Some(STORE_RETRY));
    Status::with_error_details(
        Code::Unavailable,
        "starting: the stores are not reached yet",
        details,
    )
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;
    use crate::{
        domain::Feature,
        storage::{StoreError, StoreErrorKind},
    };

    /// contract §4.4: every error carries an ErrorInfo of domain `vicinity` whose reason the proto
    /// declares, and the retryable ones (UNAVAILABLE, RESOURCE_EXHAUSTED) a RetryInfo.
    #[test]
    fn every_error_has_a_declared_reason_and_retryable_ones_a_wait() {
        let statuses = one_status_of_each_error();
        let mut reasons = std::collections::HashSet::new();
        for status in &statuses {
            let details = status.get_error_details();
            let info = details.error_info().expect("an ErrorInfo");
            assert_eq!(info.domain, "vicinity");
            let declared = format!("ERROR_REASON_{}", info.reason);
            assert!(
                ErrorReason::from_str_name(&declared).is_some(),
                "{status:?}"
            );
            reasons.insert(info.reason.clone());
            let retryable = matches!(status.code(), Code::Unavailable)
                || (status.code() == Code::ResourceExhausted && info.reason != "REQUEST_TOO_LARGE");
            assert_eq!(details.retry_info().is_some(), retryable, "{status:?}");
        }
        assert_a_service_fault_is_internal_and_not_retryable();
        assert_starting_answers_as_an_unreachable_store();
        // Every declared reason but UNSPECIFIED is one the service can say.
        assert_eq!(reasons.len(), statuses.len());
        assert!(ErrorReason::try_from(reasons.len() as i32).is_ok());
        assert!(ErrorReason::try_from(reasons.len() as i32 + 1).is_err());
    }

    /// A store error of `kind`, as the service reports it.
    fn store(kind: StoreErrorKind) -> ServiceError {
        ServiceError::Store(StoreError::new(kind, "testing"))
    }

    /// One status for each error the service can answer with, but INTERNAL.
    fn one_status_of_each_error() -> Vec<Status> {
        vec![
            ServiceError::Invalid(ValidationError::new("limit", "too big")).into(),
            ServiceError::PageTokenInvalid(ValidationError::new("page_token", "forged")).into(),
            ServiceError::PageTokenExpired.into(),
            ServiceError::ConsentRequired(Feature::Shake).into(),
            ServiceError::LocationRequired.into(),
            ServiceError::RateLimited {
                limit: crate::storage::Limit::Updates,
                retry_after: Duration::from_secs(5),
            }
            .into(),
            ServiceError::ImplausibleJump.into(),
            ServiceError::DeadlineExceeded.into(),
            store(StoreErrorKind::Unavailable).into(),
            store(StoreErrorKind::Timeout).into(),
            store(StoreErrorKind::Corrupt).into(),
            AuthError::Missing.into(),
            AuthError::Unknown.into(),
            AuthError::Scope.into(),
            request_too_large(10),
        ]
    }

    /// A location store found unsafe answers as one that cannot be reached.
    #[test]
    fn an_unsafe_location_store_answers_as_an_unreachable_one() {
        let status = ServiceError::LocationStoreUnsafe.into();
        assert_answers(&status, Code::Unavailable, "STORE_UNAVAILABLE", true);
    }

    /// A fault of the service shares INTERNAL with unreadable data, and is not retryable.
    fn assert_a_service_fault_is_internal_and_not_retryable() {
        let internal = store(StoreErrorKind::Internal).into();
        assert_answers(&internal, Code::Internal, "INTERNAL", false);
    }

    /// A service still waiting for its stores at start answers as for a store that cannot be
    /// reached: retryable.
    fn assert_starting_answers_as_an_unreachable_store() {
        assert_answers(&starting(), Code::Unavailable, "STORE_UNAVAILABLE", true);
    }

    /// `status` has `code`, an ErrorInfo of `reason`, and a RetryInfo when `retryable`.
    fn assert_answers(status: &Status, code: Code, reason: &str, retryable: bool) {
        assert_eq!(status.code(), code);
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, reason);
        assert_eq!(details.retry_info().is_some(), retryable, "{status:?}");
    }
}

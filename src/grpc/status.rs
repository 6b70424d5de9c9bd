//! The one mapping from errors to `tonic::Status` (SPEC §4.4).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{AuthError, convert};
use crate::{domain::ValidationError, service::ServiceError, storage::StoreErrorKind};

/// The `google.rpc.ErrorInfo` domain of every error this service sets.
const DOMAIN: &str = "vicinity.v1";

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(ValidationError { field, reason }) => Status::with_error_details(
                Code::InvalidArgument,
                format!("invalid {field}: {reason}"),
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            ServiceError::ConsentRequired(feature) => {
                let name = convert::feature_to_pb(feature).as_str_name().to_owned();
                Status::with_error_details(
                    Code::FailedPrecondition,
                    format!("the user has not granted consent for {name}"),
                    ErrorDetails::with_error_info(
                        "CONSENT_REQUIRED",
                        DOMAIN,
                        HashMap::from([("feature".to_owned(), name)]),
                    ),
                )
            }
            ServiceError::LocationRequired => Status::with_error_details(
                Code::FailedPrecondition,
                "the user has no location in People Nearby: update it first",
                ErrorDetails::with_error_info("LOCATION_REQUIRED", DOMAIN, HashMap::new()),
            ),
            ServiceError::RateLimited { limit, retry_after } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info(
                    "RATE_LIMITED",
                    DOMAIN,
                    HashMap::from([("limit".to_owned(), limit.to_owned())]),
                );
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
                ErrorDetails::with_error_info("IMPLAUSIBLE_JUMP", DOMAIN, HashMap::new()),
            ),
            ServiceError::DeadlineExceeded => Status::deadline_exceeded("deadline exceeded"),
            ServiceError::Store(error) => {
                tracing::warn!(error = %error, source = ?error.source, "store error");
                match error.kind {
                    StoreErrorKind::Unavailable => Status::unavailable("store unavailable"),
                    StoreErrorKind::Timeout => Status::deadline_exceeded("store timed out"),
                    StoreErrorKind::Corrupt => Status::internal("internal error"),
                }
            }
        }
    }
}

/// A request that broke a rule: `INVALID_ARGUMENT` through the one mapping above (a function,
/// not a `From`: both types live in other crates).
pub fn invalid(error: ValidationError) -> Status {
    ServiceError::Invalid(error).into()
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Unknown => Status::unauthenticated(error.to_string()),
            AuthError::Scope => Status::permission_denied(error.to_string()),
        }
    }
}

/// The answer to a request body over `limit` bytes: `RESOURCE_EXHAUSTED` (gRPC's convention
/// for "message larger than configured limit"), with its own reason. Not retryable as is.
pub fn request_too_large(limit: usize) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the request is larger than {limit} bytes"),
        ErrorDetails::with_error_info("REQUEST_TOO_LARGE", DOMAIN, HashMap::new()),
    )
}

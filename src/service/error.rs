//! The service's error: what a caller can be told, before it becomes a gRPC status.

use crate::{
    domain::{Feature, ValidationError},
    storage::StoreError,
};

/// Why an operation did not happen. Mapped to a `tonic::Status` in exactly one place
/// (`grpc::status`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request broke a rule; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The page token was not issued by this service for this request (forged, corrupt, or
    /// for other filters); the domain's reason says which.
    #[error("invalid page token")]
    PageTokenInvalid(ValidationError),
    /// The page token is too old: start again from the first page.
    #[error("page token expired")]
    PageTokenExpired,
    /// The user has no GRANTED consent for the feature.
    #[error("consent required for {0}")]
    ConsentRequired(Feature),
    /// The user has no recorded location in People Nearby (you are seen when you look).
    #[error("location required")]
    LocationRequired,
    /// A limit refused the call (contract §4.3); nothing was changed. Allowed again after
    /// `retry_after`.
    #[error("rate limited ({limit})")]
    RateLimited {
        /// Which limit.
        limit: crate::storage::Limit,
        /// The real wait.
        retry_after: std::time::Duration,
    },
    /// The update implies a speed no traveller reaches since the user's last activity;
    /// nothing was changed (deadlines included).
    #[error("implausible jump")]
    ImplausibleJump,
    /// The call's deadline passed before it finished.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A node of the location store persists to disk or may evict keys (the last settings
    /// check found it so): a call that would bring a position into the store is refused
    /// before it changes anything.
    #[error("the location store's settings are unsafe (persistence or eviction)")]
    LocationStoreUnsafe,
    /// A store failed or timed out.
    #[error(transparent)]
    Store(#[from] StoreError),
}

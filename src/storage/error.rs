//! The storage layer's error.

use std::fmt;

/// What went wrong in a store, in terms the service can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store cannot be reached or refused the command; retrying later may work.
    Unavailable,
    /// The store did not answer in time.
    Timeout,
    /// The store holds something this version cannot read.
    Corrupt,
    /// A location write refused, changing nothing, because the user was cleared since its
    /// fence was read (`storage::Fence`); the service checks consent again and retries.
    Fenced,
    /// A fault of this service, not of the store's reach: a store script that failed, a
    /// panicked task, randomness the OS would not give, an error the store answered that is
    /// not on the list of those that pass by themselves ([`crate::storage::redis`]'s
    /// `store_error`). Retrying the same call will not help; the details are in the log.
    Internal,
}

impl StoreErrorKind {
    /// The kind's name in the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Fenced => "fenced",
            StoreErrorKind::Internal => "internal",
        }
    }
}

/// A storage error. Its message never contains stored data.
#[derive(Debug, thiserror::Error)]
pub struct StoreError {
    /// The kind.
    pub kind: StoreErrorKind,
    /// What failed, for the log.
    pub context: &'static str,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind` while doing `context`.
    pub fn new(kind: StoreErrorKind, context: &'static str) -> Self {
        Self {
            kind,
            context,
            source: None,
        }
    }

    /// A location write refused by its fence (`storage::Fence`): nothing was written.
    pub fn fenced() -> Self {
        Self::new(StoreErrorKind::Fenced, "updating a location")
    }

    /// A task doing `context` that did not finish: a panic is `Internal`; cancelled (the
    /// runtime shutting down) is `Unavailable`, as the node is.
    pub fn unfinished(error: &tokio::task::JoinError, context: &'static str) -> Self {
        let kind = if error.is_cancelled() {
            StoreErrorKind::Unavailable
        } else {
            StoreErrorKind::Internal
        };
        Self::new(kind, context)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Unavailable => "store unavailable",
            StoreErrorKind::Timeout => "store timed out",
            StoreErrorKind::Corrupt => "store holds data this version cannot read",
            StoreErrorKind::Fenced => "a clear of the user ran since the write was admitted",
            StoreErrorKind::Internal => "internal fault",
        };
        write!(f, "{} ({what})", self.context)
    }
}

/// A storage result.
pub type StoreResult<T> = Result<T, StoreError>;

impl From<crate::random::RandomnessFailed> for StoreError {
    fn from(_: crate::random::RandomnessFailed) -> Self {
        Self::new(StoreErrorKind::Internal, "drawing randomness")
    }
}

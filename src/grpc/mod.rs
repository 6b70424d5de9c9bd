//! Thin gRPC adapters: proto ⇄ domain conversion, auth, and the one mapping of errors to
//! `tonic::Status`. Handlers convert, call the service, convert back; no business rules here.

pub mod auth;
mod ceiling;
mod consent;
mod convert;
mod deadline;
mod nearby;
mod privacy;
mod shake;
mod status;
pub use status::{request_too_large, starting};

use std::sync::Arc;

pub use auth::{ApiKeys, Auth, AuthError, Scope};
pub use deadline::MAX_CALL_TIME;

use ceiling::Ceiling;
use tonic::{Status, metadata::MetadataMap};

use crate::{domain::Clock, domain::limits::Rate, service::Vicinity};

/// The generated protobuf types and services of `vicinity.v1` (the `vicinity-api` crate).
pub use vicinity_api::pb;

/// Implements every `vicinity.v1` service over one [`Vicinity`].
#[derive(Clone)]
pub struct GrpcApi {
    svc: Vicinity,
    auth: Arc<Auth>,
    ceiling: Arc<Ceiling>,
}

impl GrpcApi {
    /// The API over `svc`, authorizing callers with `auth` and holding each caller to
    /// `ceiling` calls on this node (by `clock`).
    pub fn new(svc: Vicinity, auth: Arc<Auth>, ceiling: Rate, clock: Arc<dyn Clock>) -> Self {
        let ceiling = Arc::new(Ceiling::new(ceiling, clock));
        Self { svc, auth, ceiling }
    }

    /// Authorizes a call for `scopes` and counts it against its caller's ceiling: the
    /// caller's name.
    fn admit(&self, metadata: &MetadataMap, scopes: &[Scope]) -> Result<Arc<str>, Status> {
        let caller = self.auth.authorize(metadata, scopes)?;
        self.ceiling.admit(&caller)?;
        Ok(caller)
    }
}

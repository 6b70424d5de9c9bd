//! Thin gRPC adapters: proto ⇄ domain conversion, auth, and the one mapping of errors to
//! `tonic::Status`. Handlers convert, call the service, convert back; no business rules here.

pub mod auth;
mod ceiling;
mod convert;
mod deadline;
mod services;
mod status;
pub use status::{request_too_large, starting};

use std::{future::Future, sync::Arc, time::Duration};

pub use auth::{ApiKeys, Auth, AuthError, Scope};
pub use deadline::MAX_CALL_TIME;

use ceiling::Ceiling;
use tonic::{Request, Status, metadata::MetadataMap};

use crate::{
    domain::Clock,
    domain::limits::Rate,
    service::{ServiceResult, Vicinity},
};

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

    /// Admits `request` for `scopes` ([`Self::admit`]) and reads its deadline: the call, and
    /// the message to convert.
    fn accept<T>(&self, request: Request<T>, scopes: &[Scope]) -> Result<(Call, T), Status> {
        let caller = self.admit(request.metadata(), scopes)?;
        let time = deadline::of(request.metadata());
        Ok((Call { caller, time }, request.into_inner()))
    }
}

/// An admitted call: who made it, and the time its work may take.
struct Call {
    caller: Arc<str>,
    time: Duration,
}

impl Call {
    /// Runs the service's `work` within the call's time ([`deadline::within`]).
    async fn run<R>(&self, work: impl Future<Output = ServiceResult<R>>) -> Result<R, Status> {
        Ok(deadline::within(self.time, work).await?)
    }
}

//! Thin gRPC adapters: proto ⇄ domain conversion, auth, and the one mapping of errors to
//! `tonic::Status`. Handlers convert, call the service, convert back; no business rules here.

pub mod auth;
mod consent;
mod convert;
mod deadline;
mod nearby;
mod privacy;
mod shake;
mod status;
pub use status::request_too_large;

use std::sync::Arc;

pub use auth::{ApiKeys, Auth, AuthError, Scope};
pub use deadline::MAX_CALL_TIME;

use crate::service::Vicinity;

/// The generated protobuf types and services of `vicinity.v1` (the `vicinity-api` crate).
pub use vicinity_api::pb;

/// Implements every `vicinity.v1` service over one [`Vicinity`].
#[derive(Clone)]
pub struct GrpcApi {
    svc: Vicinity,
    auth: Arc<Auth>,
}

impl GrpcApi {
    /// The API over `svc`, authorizing callers with `auth`.
    pub fn new(svc: Vicinity, auth: Arc<Auth>) -> Self {
        Self { svc, auth }
    }
}

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

/// The generated protobuf types and services of `vicinity.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("vicinity.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vicinity_descriptor.bin"));
}

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

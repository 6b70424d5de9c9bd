//! A gRPC service that exists from the start but answers only once it is filled: the server
//! listens (health and reflection answer) while the stores are waited for, and the vicinity
//! services answer UNAVAILABLE until then.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use tonic::{body::Body, server::NamedService};
use tower::{Service, ServiceExt};

/// `S` once [`Deferred::fill`]ed; until then every call answers [`crate::grpc::starting`].
pub struct Deferred<S>(Arc<OnceLock<S>>);

impl<S> Default for Deferred<S> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<S> Clone for Deferred<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> Deferred<S> {
    /// Calls go to `service` from now on (a second fill changes nothing).
    pub fn fill(&self, service: S) {
        let _ = self.0.set(service);
    }
}

impl<S: NamedService> NamedService for Deferred<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Deferred<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The generated servers are always ready; readiness is checked on the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.0.get() {
            Some(service) => Box::pin(service.clone().oneshot(request)),
            None => Box::pin(std::future::ready(Ok(crate::grpc::starting().into_http()))),
        }
    }
}

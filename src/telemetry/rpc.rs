//! One span per gRPC call, and the RPC metrics (`vicinity_rpc_*`), from a tower layer around
//! every service: method, status code and latency, never a request's content.
//!
//! The status code is read where gRPC puts it: in the response headers of a trailers-only
//! answer (every error), else in the trailers after the body; a body dropped before its
//! trailers (the client went away) counts as `CANCELLED`. The latency runs to that point.
//!
//! With the access log on (`--access-log`) each call's end is logged at `info` (target
//! `vicinity::access`): method, status code and elapsed time, in the call's span (its trace
//! id); never a user id, a position or a key, as every other line. Off, the same line is at
//! `debug`.
//!
//! A W3C `traceparent` header from the caller is honoured: its trace id is recorded on the
//! span (`trace_id`, `parent_id`), so the caller's trace and this service's logs can be
//! joined. A malformed header is ignored, as the W3C recommendation says.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tracing::{Instrument, Span, field::Empty};

use super::metrics;

/// The layer: wraps the whole router.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer {
    /// Each call's end logged at `info` (else `debug`).
    pub access_log: bool,
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc {
            inner,
            access_log: self.access_log,
        }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Debug, Clone)]
pub struct Rpc<S> {
    inner: S,
    access_log: bool,
}

impl<S> tower::Service<Request<Body>> for Rpc<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let method = method_name(request.uri().path());
        let span = tracing::info_span!(
            "rpc",
            rpc.method = method,
            rpc.code = Empty,
            elapsed_us = Empty,
            trace_id = Empty,
            parent_id = Empty,
        );
        if let Some(parent) = TraceParent::of(request.headers()) {
            span.record("trace_id", parent.trace_id);
            span.record("parent_id", parent.parent_id);
            super::otlp::adopt_parent(&span, request.headers());
        }
        let mut call = Finish {
            method,
            start: Instant::now(),
            span: span.clone(),
            finished: false,
            access_log: self.access_log,
        };
        let answer = self.inner.call(request).instrument(span);
        // Dropped before an answer (the client reset the stream, or tonic's own timer for the
        // client's deadline fired): `call` records CANCELLED as it goes.
        Box::pin(async move {
            let response = answer.await?;
            if let Some(code) = status_code(response.headers()) {
                call.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(Watched { body, call })))
        })
    }
}

/// What to record when a call ends: once, with its code, or as `CANCELLED` if dropped first.
struct Finish {
    method: &'static str,
    start: Instant,
    span: Span,
    finished: bool,
    access_log: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.finish("CANCELLED");
    }
}

impl Finish {
    fn finish(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.start.elapsed();
        metrics::rpc_finished(self.method, code, elapsed.as_secs_f64());
        let elapsed_us = elapsed.as_micros() as u64;
        if super::otlp::exporting() {
            // Attributes of the exported span. Without an exporter, recording them would
            // only make the log layer format them again (they are in the event below).
            self.span.record("rpc.code", code);
            self.span.record("elapsed_us", elapsed_us);
        }
        if self.access_log {
            tracing::info!(
                target: "vicinity::access",
                parent: &self.span,
                { rpc.code = code, elapsed_us },
                "rpc finished"
            );
        } else {
            tracing::debug!(parent: &self.span, rpc.code = code, elapsed_us, "rpc finished");
        }
    }
}

/// A response body that reports the call's status when its trailers pass (dropped before
/// them: `CANCELLED`, by `Finish`'s drop).
struct Watched {
    body: Body,
    call: Finish,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish("INTERNAL"),
            Poll::Ready(None) => self.finish("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Watched {
    fn finish(&mut self, code: &'static str) {
        self.call.finish(code);
    }
}

/// The methods counted under their own name; any other path is `other`, so a caller cannot
/// create series at will.
const METHODS: [&str; 17] = [
    "vicinity.v1.ConsentService/GrantConsent",
    "vicinity.v1.ConsentService/WithdrawConsent",
    "vicinity.v1.ConsentService/GetConsent",
    "vicinity.v1.PeopleNearby/UpdateLocation",
    "vicinity.v1.PeopleNearby/ListNearby",
    "vicinity.v1.PeopleNearby/LeaveNearby",
    "vicinity.v1.Shake/Shake",
    "vicinity.v1.Shake/ShakeHistory",
    "vicinity.v1.Shake/LeaveShake",
    "vicinity.v1.PrivacyService/ClearLocation",
    "vicinity.v1.PrivacyService/ExportMyData",
    "vicinity.v1.PrivacyService/ForgetUser",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.health.v1.Health/List",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The method label of a request path (`/package.Service/Method`).
fn method_name(path: &str) -> &'static str {
    let name = path.strip_prefix('/').unwrap_or(path);
    METHODS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other")
}

/// The gRPC status codes by number, as their canonical names.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `grpc-status` in `headers`, as a code name (`UNKNOWN` for a number out of range).
fn status_code(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    Some(
        code.and_then(|c| CODES.get(c))
            .copied()
            .unwrap_or("UNKNOWN"),
    )
}

/// A W3C trace context parent (`traceparent: 00-<trace id>-<parent id>-<flags>`).
#[derive(Debug, PartialEq, Eq)]
struct TraceParent<'a> {
    trace_id: &'a str,
    parent_id: &'a str,
}

impl<'a> TraceParent<'a> {
    /// The caller's trace context, if the header is there and well formed: lowercase hex of
    /// the right lengths, neither id all zeros, a version other than `ff`.
    fn of(headers: &'a HeaderMap) -> Option<Self> {
        let value = headers.get("traceparent")?.to_str().ok()?;
        let mut parts = value.split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(parent_id, 16)
            && !zero(parent_id)
            && hex(flags, 2);
        valid.then_some(Self {
            trace_id,
            parent_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", traceparent.parse().unwrap());
        headers
    }

    #[test]
    fn a_well_formed_traceparent_is_read_and_a_malformed_one_ignored() {
        let good = headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            TraceParent::of(&good),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                parent_id: "00f067aa0ba902b7",
            })
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(TraceParent::of(&headers(bad)), None, "{bad}");
        }
        // A later version may append fields.
        let later = headers("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x");
        assert!(TraceParent::of(&later).is_some());
    }

    #[test]
    fn unknown_paths_share_one_label_and_codes_have_their_names() {
        assert_eq!(
            method_name("/vicinity.v1.PeopleNearby/ListNearby"),
            "vicinity.v1.PeopleNearby/ListNearby"
        );
        assert_eq!(method_name("/evil/with-a-user-id-42"), "other");
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "9".parse().unwrap());
        assert_eq!(status_code(&headers), Some("FAILED_PRECONDITION"));
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status_code(&headers), Some("UNKNOWN"));
    }
}

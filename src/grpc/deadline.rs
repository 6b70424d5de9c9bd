//! The call's deadline (`grpc-timeout`), enforced around the service so a slow store answers
//! `DEADLINE_EXCEEDED` within it. (tonic's own server timeout answers `CANCELLED`.)

use std::{future::Future, time::Duration};

use tonic::metadata::MetadataMap;

use crate::service::{ServiceError, ServiceResult};

/// The longest any call may take, whatever deadline the client sent.
pub const MAX_CALL_TIME: Duration = Duration::from_secs(30);

/// How much sooner than the client's deadline the service answers, at most: tonic runs its
/// own timer for the same `grpc-timeout`, started when the request arrived (before the
/// handler), and answers `CANCELLED` without details when it fires; answering earlier keeps
/// the service's `DEADLINE_EXCEEDED`, with its `ErrorInfo`, ahead of it.
pub const TRANSPORT_MARGIN: Duration = Duration::from_millis(20);
/// The margin is this fraction of the deadline (contract §4.4: a small fraction, so a 5 ms
/// deadline leaves 4 ms of work), between [`MIN_MARGIN`] and [`TRANSPORT_MARGIN`].
const MARGIN_DIVISOR: u32 = 5;
/// The smallest margin: the handler starts within microseconds of tonic's timer, and a
/// millisecond covers writing the answer under load.
pub const MIN_MARGIN: Duration = Duration::from_millis(1);

/// The margin kept back from a client deadline `d`: a fifth of it, at least [`MIN_MARGIN`]
/// and at most [`TRANSPORT_MARGIN`].
pub fn margin(d: Duration) -> Duration {
    (d / MARGIN_DIVISOR).clamp(MIN_MARGIN, TRANSPORT_MARGIN)
}

/// The time left for this call: the client's `grpc-timeout` less its [`margin`], capped at
/// [`MAX_CALL_TIME`].
pub fn of(metadata: &MetadataMap) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .map_or(MAX_CALL_TIME, |d| {
            d.saturating_sub(margin(d)).min(MAX_CALL_TIME)
        })
}

/// Parses the gRPC timeout format: at most 8 digits and a unit (`H M S m u n`).
fn parse(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs `call` for at most `budget`.
pub async fn within<T>(
    budget: Duration,
    call: impl Future<Output = ServiceResult<T>>,
) -> ServiceResult<T> {
    tokio::time::timeout(budget, call)
        .await
        .unwrap_or(Err(ServiceError::DeadlineExceeded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_are_capped() {
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5"), None);
        assert_eq!(parse("123456789S"), None);
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "2H".parse().unwrap());
        assert_eq!(of(&md), MAX_CALL_TIME);
        assert_eq!(of(&MetadataMap::new()), MAX_CALL_TIME);
        md.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(of(&md), Duration::from_millis(250) - TRANSPORT_MARGIN);
    }

    #[test]
    fn a_short_deadline_keeps_most_of_its_time_for_the_work() {
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "5m".parse().unwrap());
        assert_eq!(of(&md), Duration::from_millis(4));
        md.insert("grpc-timeout", "50m".parse().unwrap());
        assert_eq!(of(&md), Duration::from_millis(40));
        md.insert("grpc-timeout", "2m".parse().unwrap());
        assert_eq!(of(&md), Duration::from_millis(1));
        md.insert("grpc-timeout", "500u".parse().unwrap());
        assert_eq!(of(&md), Duration::ZERO);
    }
}

//! Redis errors as store errors: which kind each is, and which a caller may retry.

use redis::RedisError;

use crate::storage::{StoreError, StoreErrorKind};

/// Maps a Redis error to a store error. A type or parse error may quote the reply it could
/// not read, which can be stored data, so those keep no source (the context says enough).
pub fn store_error(error: RedisError, context: &'static str) -> StoreError {
    if matches!(
        error.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    ) {
        return StoreError::new(StoreErrorKind::Corrupt, context);
    }
    // WRONGTYPE from a command, a script (`ERR ...` whose detail names it) or one command of a
    // pipeline (the pipeline's error holds each command's).
    let names_wrong_type = |code: &str, detail: Option<&str>| {
        code == "WRONGTYPE" || detail.is_some_and(|d| d.contains("WRONGTYPE"))
    };
    let wrong_type = names_wrong_type(error.code().unwrap_or(""), error.detail())
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, e)| names_wrong_type(e.code(), e.details()))
        });
    if wrong_type {
        // Data this version cannot read: retrying will not help.
        return StoreError {
            kind: StoreErrorKind::Corrupt,
            context,
            source: Some(Box::new(error)),
        };
    }
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if passes(&error) {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Internal
    };
    StoreError {
        kind,
        context,
        source: Some(Box::new(error)),
    }
}

/// Whether `error` is one of those that pass by themselves or by an operator's hand, so that
/// a client may retry (`STORE_UNAVAILABLE`): the store cannot be reached or the connection
/// broke, it is loading, busy, out of memory or refusing us (authentication, ACL), a cluster
/// is failing over or resharding. Anything else the store answers (a script that failed at
/// run time, a command this code sent wrongly) is this service's fault: `INTERNAL`, so that
/// a client does not retry a bug every second.
fn passes(error: &RedisError) -> bool {
    use redis::ErrorKind;
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return true;
    }
    if matches!(
        error.kind(),
        ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList
    ) {
        return true;
    }
    // What the server answered (one error, or each failed command of a pipeline): every one
    // must pass.
    error
        .clone()
        .into_server_errors()
        .is_some_and(|errors| !errors.is_empty() && errors.iter().all(|(_, e)| answer_passes(e)))
}

/// Server answers that pass: those redis-rs names (loading, a cluster failing over or
/// resharding, ACL), and by their code those it does not (it parses them as extension
/// errors): busy with a script, out of memory, not authenticated, no replicas, cannot persist.
fn answer_passes(error: &redis::ServerError) -> bool {
    use redis::ServerErrorKind;
    match error.kind() {
        Some(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::NoPerm,
        ) => true,
        Some(_) => false,
        None => matches!(
            error.code(),
            "BUSY" | "OOM" | "NOAUTH" | "WRONGPASS" | "NOREPLICAS" | "MISCONF"
        ),
    }
}

/// Whether `error` may go away by itself: a server not up yet (a connection refused, reset
/// or unreachable), a timeout, a server still loading its data or a cluster not yet formed.
/// What start-up waits out; a wrong password, a URL that does not parse, a TLS handshake
/// that fails (a wrong CA or client certificate: invalid data, not a network failure) or data
/// this version cannot read are not.
pub fn transient(error: &StoreError) -> bool {
    if error.kind == StoreErrorKind::Timeout {
        return true;
    }
    let Some(redis) = error
        .source
        .as_deref()
        .and_then(|e| e.downcast_ref::<RedisError>())
    else {
        return false;
    };
    if redis.is_connection_refusal() || redis.is_connection_dropped() || redis.is_timeout() {
        return true;
    }
    if matches!(
        redis.code(),
        Some("LOADING" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN")
    ) {
        return true;
    }
    // The sentinels name no primary yet (starting, or a failover under way).
    if redis.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        return true;
    }
    redis.is_io_error() && io_kind(redis).is_some_and(network_failure)
}

/// The kind of the I/O error at the root of `error`, if one is.
fn io_kind(error: &RedisError) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// Whether an I/O error of `kind` is the network's or the peer's being away (not a
/// handshake that refused what it was shown).
fn network_failure(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | Interrupted
    )
}

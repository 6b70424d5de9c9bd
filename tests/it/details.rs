//! Assertions on refusals: the status code and its rich details (`google.rpc.BadRequest`,
//! `google.rpc.ErrorInfo`), read with `tonic_types::StatusExt`.

use std::{collections::HashMap, fmt::Debug};

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The fields a `google.rpc.BadRequest` detail names.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The `google.rpc.ErrorInfo` reason and metadata of a status (whose domain must be
/// `vicinity`, contract §4.4, and whose reason must be one of the proto's `ErrorReason`s).
pub fn error_info(status: &Status) -> Option<(String, HashMap<String, String>)> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    assert_eq!(info.domain, "vicinity", "{status:?}");
    let declared = format!("ERROR_REASON_{}", info.reason);
    assert!(
        vicinity::grpc::pb::ErrorReason::from_str_name(&declared).is_some(),
        "{} is not declared in the proto",
        info.reason
    );
    Some((info.reason.clone(), info.metadata.clone()))
}

/// Asserts `code` with ErrorInfo `reason`.
#[track_caller]
pub fn assert_reason<T: Debug>(reply: Result<T, Status>, code: Code, reason: &str) {
    let status = refusal(reply);
    assert_eq!(status.code(), code, "{status:?}");
    let (found, _) = error_info(&status).expect("an ErrorInfo detail");
    assert_eq!(found, reason, "{status:?}");
}

/// The refusal of a call that should have been refused.
#[track_caller]
pub fn refusal<T: Debug>(reply: Result<T, Status>) -> Status {
    match reply {
        Ok(answer) => panic!("expected a refusal, got {answer:?}"),
        Err(status) => status,
    }
}

/// Asserts INVALID_ARGUMENT with one BadRequest violation naming exactly `field`, and the
/// ErrorInfo reason `INVALID_ARGUMENT` (`PAGE_TOKEN_INVALID` for `page_token`).
#[track_caller]
pub fn assert_invalid<T: Debug>(reply: Result<T, Status>, field: &str) {
    let status = refusal(reply);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), [field], "{status:?}");
    let (reason, _) = error_info(&status).expect("an ErrorInfo detail");
    let want = match field {
        "page_token" => "PAGE_TOKEN_INVALID",
        _ => "INVALID_ARGUMENT",
    };
    assert_eq!(reason, want, "{status:?}");
}

/// Asserts FAILED_PRECONDITION with ErrorInfo `reason`; returns the metadata.
#[track_caller]
pub fn assert_precondition<T: Debug>(
    reply: Result<T, Status>,
    reason: &str,
) -> HashMap<String, String> {
    let status = refusal(reply);
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let (found, metadata) = error_info(&status).expect("an ErrorInfo detail");
    assert_eq!(found, reason, "{status:?}");
    metadata
}

/// Asserts CONSENT_REQUIRED for People Nearby (contract §4.1).
#[track_caller]
pub fn assert_consent_required<T: Debug>(reply: Result<T, Status>) {
    let metadata = assert_precondition(reply, "CONSENT_REQUIRED");
    assert_eq!(
        metadata.get("feature").map(String::as_str),
        Some("FEATURE_PEOPLE_NEARBY")
    );
}

/// Asserts LOCATION_REQUIRED: listing without a location of one's own (contract §4.4).
#[track_caller]
pub fn assert_location_required<T: Debug>(reply: Result<T, Status>) {
    assert_precondition(reply, "LOCATION_REQUIRED");
}

/// Asserts a plain status code.
#[track_caller]
pub fn assert_code<T: Debug>(reply: Result<T, Status>, code: Code) {
    let status = refusal(reply);
    assert_eq!(status.code(), code, "{status:?}");
}

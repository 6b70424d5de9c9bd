//! contract §4.5: per-client API keys with `app` and `ops` scopes.

use tonic::{Code, Response};
use tonic_health::pb::health_check_response::ServingStatus;
use vicinity::client::Client;
use vicinity::grpc::pb::{self, Feature, Gender};
use vicinity::grpc::{ApiKeys, Auth};

use crate::{
    calls::{NOTICE, location},
    details::assert_reason,
    helpers::{Backend, TestApp, on_both_backends},
    places::HOME,
};

const APP_KEY: &str = "app-key-0123456789abcdef";
const OPS_KEY: &str = "ops-key-fedcba9876543210";

async fn app_with_keys(backend: Backend) -> TestApp {
    let keys = ApiKeys::parse(&format!("backend app {APP_KEY}\noncall ops {OPS_KEY}\n"))
        .expect("a valid keys file");
    TestApp::spawn(backend, |config| config.auth = Auth::with_keys(keys)).await
}

async fn grant(client: &Client, user: &str) -> Result<pb::ConsentRecord, tonic::Status> {
    let request = pb::GrantConsentRequest {
        user_id: user.into(),
        feature: Feature::PeopleNearby.into(),
        notice_version: NOTICE.into(),
        source: String::new(),
    };
    let reply = client.consent().grant_consent(request).await;
    reply.map(Response::into_inner)
}

async fn update(client: &Client, user: &str) -> Result<(), tonic::Status> {
    let request = pb::UpdateLocationRequest {
        user_id: user.into(),
        location: Some(location(HOME)),
        gender: Gender::Female.into(),
    };
    client.nearby().update_location(request).await.map(drop)
}

async fn forget(client: &Client, user: &str) -> Result<pb::ForgetUserResponse, tonic::Status> {
    let request = pb::ForgetUserRequest {
        user_id: user.into(),
    };
    let reply = client.privacy().forget_user(request).await;
    reply.map(Response::into_inner)
}

async fn clear(client: &Client, user: &str) -> Result<pb::ClearLocationResponse, tonic::Status> {
    let request = pb::ClearLocationRequest {
        user_id: user.into(),
        feature: Feature::Unspecified.into(),
    };
    let reply = client.privacy().clear_location(request).await;
    reply.map(Response::into_inner)
}

on_both_backends!(calls_without_a_key_or_with_a_wrong_key_are_unauthenticated);
async fn calls_without_a_key_or_with_a_wrong_key_are_unauthenticated(backend: Backend) {
    let app = app_with_keys(backend).await;
    let wrong = app.connect(Some("not-a-configured-key-at-all")).await;

    let (missing, unknown) = (Code::Unauthenticated, Code::Unauthenticated);
    assert_reason(
        grant(&app.client, "alice").await,
        missing,
        "API_KEY_MISSING",
    );
    assert_reason(
        update(&app.client, "alice").await,
        missing,
        "API_KEY_MISSING",
    );
    assert_reason(
        forget(&app.client, "alice").await,
        missing,
        "API_KEY_MISSING",
    );
    assert_reason(grant(&wrong, "alice").await, unknown, "API_KEY_INVALID");
    assert_reason(clear(&wrong, "alice").await, unknown, "API_KEY_INVALID");
    // Neither stored anything.
    let ops = app.connect(Some(OPS_KEY)).await;
    let export = ops
        .privacy()
        .export_my_data(pb::ExportMyDataRequest {
            user_id: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(export.consent_history.is_empty() && export.locations.is_empty());
}

on_both_backends!(each_key_may_call_only_what_its_scope_allows);
async fn each_key_may_call_only_what_its_scope_allows(backend: Backend) {
    let app = app_with_keys(backend).await;
    let backend = app.connect(Some(APP_KEY)).await;
    let oncall = app.connect(Some(OPS_KEY)).await;

    grant(&backend, "alice").await.unwrap();
    update(&backend, "alice").await.unwrap();
    let denied = Code::PermissionDenied;
    assert_reason(forget(&backend, "alice").await, denied, "SCOPE_DENIED");
    assert_reason(update(&oncall, "alice").await, denied, "SCOPE_DENIED");
    assert_reason(grant(&oncall, "alice").await, denied, "SCOPE_DENIED");

    assert_eq!(clear(&backend, "alice").await.unwrap().purged_entries, 1);
    update(&backend, "alice").await.unwrap();
    assert_eq!(clear(&oncall, "alice").await.unwrap().purged_entries, 1);
    let forgotten = forget(&oncall, "alice").await.unwrap();
    assert_eq!(forgotten.consent_events_deleted, 1);
}

on_both_backends!(health_answers_without_a_key);
async fn health_answers_without_a_key(backend: Backend) {
    let app = app_with_keys(backend).await;

    let status = app.health("").await;

    assert_eq!(status.unwrap(), ServingStatus::Serving);
}

//! contract §4.4: every bad input is INVALID_ARGUMENT with a BadRequest naming the field; never a
//! panic, never a partial write, and the server keeps serving.

use tonic_health::pb::health_check_response::ServingStatus;
use vicinity::grpc::pb::{self, ConsentState, Feature, Gender};

use crate::{
    calls::{ACCURACY_M, NOTICE, list_request},
    capture,
    details::{assert_invalid, refusal},
    helpers::{Backend, TestApp, on_both_backends, spawn_app_on},
    places::HOME,
};

/// Ids contract §3 refuses: empty, 129 bytes, and characters outside `[A-Za-z0-9._:@-]`.
fn bad_user_ids() -> Vec<String> {
    let mut ids = vec![String::new(), "a".repeat(129)];
    ids.extend(["with space", "ümlaut", "slash/", "semi;colon", "tab\t"].map(String::from));
    ids
}

fn update(location: Option<pb::Location>, gender: i32) -> pb::UpdateLocationRequest {
    pb::UpdateLocationRequest {
        user_id: "alice".into(),
        location,
        gender,
    }
}

fn at(latitude: f64, longitude: f64, accuracy_m: f32) -> Option<pb::Location> {
    Some(pb::Location {
        latitude,
        longitude,
        accuracy_m,
    })
}

/// UpdateLocation requests with one bad field each, and the field.
fn bad_updates() -> Vec<(pb::UpdateLocationRequest, &'static str)> {
    let (lat, lng) = (HOME.lat, HOME.lng);
    // The valid half of each refused position must not reach the log either.
    capture::remember(lat, lng);
    let female = i32::from(Gender::Female);
    vec![
        (update(None, female), "location"),
        (update(at(91.0, lng, 0.0), female), "location.latitude"),
        (update(at(-90.5, lng, 0.0), female), "location.latitude"),
        (update(at(f64::NAN, lng, 0.0), female), "location.latitude"),
        (update(at(lat, -181.0, 0.0), female), "location.longitude"),
        (
            update(at(lat, f64::INFINITY, 0.0), female),
            "location.longitude",
        ),
        (update(at(lat, f64::NAN, 0.0), female), "location.longitude"),
        (update(at(lat, lng, -1.0), female), "location.accuracy_m"),
        (
            update(at(lat, lng, f32::NAN), female),
            "location.accuracy_m",
        ),
        (
            update(at(lat, lng, f32::INFINITY), female),
            "location.accuracy_m",
        ),
        (update(at(lat, lng, ACCURACY_M), 7), "gender"),
    ]
}

fn grant(user_id: &str, feature: i32, notice: &str, source: &str) -> pb::GrantConsentRequest {
    pb::GrantConsentRequest {
        user_id: user_id.into(),
        feature,
        notice_version: notice.into(),
        source: source.into(),
    }
}

/// GrantConsent requests for "bob" with one bad field each, and the field.
fn bad_grants() -> Vec<(pb::GrantConsentRequest, &'static str)> {
    let nearby = i32::from(Feature::PeopleNearby);
    vec![
        (grant("bob", 0, NOTICE, ""), "feature"),
        (grant("bob", 99, NOTICE, ""), "feature"),
        (grant("bob", nearby, "", ""), "notice_version"),
        (grant("bob", nearby, &"v".repeat(65), ""), "notice_version"),
        (grant("bob", nearby, "2026\n01", ""), "notice_version"),
        (
            grant("bob", nearby, NOTICE, "app\r\nX-Injected: 1"),
            "source",
        ),
        (grant("bob", nearby, NOTICE, &"s".repeat(129)), "source"),
    ]
}

/// ListNearby requests from "alice" with one bad field each, and the field.
fn bad_lists() -> Vec<(pb::ListNearbyRequest, &'static str)> {
    let base = || list_request("alice");
    vec![
        (
            pb::ListNearbyRequest {
                max_distance_m: 50_001,
                ..base()
            },
            "max_distance_m",
        ),
        (
            pb::ListNearbyRequest {
                gender_filter: 9,
                ..base()
            },
            "gender_filter",
        ),
        (
            pb::ListNearbyRequest {
                page_token: "zz".into(),
                ..base()
            },
            "page_token",
        ),
        (
            pb::ListNearbyRequest {
                exclude_user_ids: vec!["bob".into(), "bad id".into()],
                ..base()
            },
            "exclude_user_ids[1]",
        ),
        (
            pb::ListNearbyRequest {
                exclude_user_ids: (0..1_001).map(|i| format!("u{i}")).collect(),
                ..base()
            },
            "exclude_user_ids",
        ),
    ]
}

/// Alice holds consent and a location; Bob holds nothing.
async fn app_with_alice(backend: Backend) -> TestApp {
    let app = spawn_app_on(backend).await;
    app.join("alice", HOME, Gender::Female).await;
    app
}

/// Nothing from the refused requests was written, and the server still serves.
async fn assert_untouched_and_serving(app: &TestApp) {
    let alice = app.export("alice").await.unwrap();
    assert_eq!(alice.consent_history.len(), 1, "{alice:?}");
    let stored = alice.locations[0].location.expect("alice's location");
    let cell = vicinity::domain::SnapGrid::default()
        .snap(vicinity::domain::Coordinates::new(HOME.lat, HOME.lng).unwrap());
    let centre = h3o::LatLng::from(cell);
    assert_eq!(
        (stored.latitude, stored.longitude),
        (centre.lat(), centre.lng())
    );
    assert_eq!(alice.locations[0].gender(), Gender::Female);
    let bob = app.export("bob").await.unwrap();
    assert!(
        bob.consent_history.is_empty() && bob.locations.is_empty(),
        "{bob:?}"
    );
    assert_eq!(app.health("").await.unwrap(), ServingStatus::Serving);
    app.join("carol", HOME.offset_m(30.0, 0.0), Gender::Male)
        .await;
    assert_eq!(app.listed("carol").await, ["alice"]);
}

on_both_backends!(bad_locations_are_refused_naming_the_field_and_nothing_is_stored);
async fn bad_locations_are_refused_naming_the_field_and_nothing_is_stored(backend: Backend) {
    let app = app_with_alice(backend).await;

    for (request, field) in bad_updates() {
        let status = refusal(app.update_location(request).await);
        assert!(!status.message().contains("116.39"), "{status:?}");
        assert_invalid::<()>(Err(status), field);
    }

    assert_untouched_and_serving(&app).await;
}

on_both_backends!(bad_consent_requests_are_refused_naming_the_field_and_nothing_is_recorded);
async fn bad_consent_requests_are_refused_naming_the_field_and_nothing_is_recorded(
    backend: Backend,
) {
    let app = app_with_alice(backend).await;

    for (request, field) in bad_grants() {
        let reply = app.client.consent().grant_consent(request).await;
        assert_invalid(reply, field);
    }
    for feature in [0, 99] {
        let request = pb::WithdrawConsentRequest {
            user_id: "alice".into(),
            feature,
        };
        assert_invalid(
            app.client.consent().withdraw_consent(request).await,
            "feature",
        );
    }

    assert_untouched_and_serving(&app).await;
    assert_eq!(
        app.consent("alice").await.unwrap().current[0].state(),
        ConsentState::Granted
    );
}

on_both_backends!(bad_list_requests_are_refused_naming_the_field);
async fn bad_list_requests_are_refused_naming_the_field(backend: Backend) {
    let app = app_with_alice(backend).await;

    for (request, field) in bad_lists() {
        assert_invalid(app.list_with(request).await, field);
    }
    let request = pb::ClearLocationRequest {
        user_id: "alice".into(),
        feature: 42,
    };
    assert_invalid(
        app.client.privacy().clear_location(request).await,
        "feature",
    );

    assert_untouched_and_serving(&app).await;
}

on_both_backends!(bad_user_ids_are_refused_by_every_method);
async fn bad_user_ids_are_refused_by_every_method(backend: Backend) {
    let app = app_with_alice(backend).await;
    let location = Some(crate::calls::location(HOME.offset_m(10.0, 10.0)));

    for id in bad_user_ids() {
        let field = "user_id";
        let mut request = update(location, 0);
        request.user_id = id.clone();
        assert_invalid(app.update_location(request).await, field);
        let feature = i32::from(Feature::PeopleNearby);
        let grant = grant(&id, feature, NOTICE, "");
        assert_invalid(app.client.consent().grant_consent(grant).await, field);
        assert_invalid(app.withdraw(&id, Feature::PeopleNearby).await, field);
        assert_invalid(app.consent(&id).await, field);
        assert_invalid(app.list(&id).await, field);
        assert_invalid(app.leave(&id).await, field);
        assert_invalid(app.clear(&id, Feature::Unspecified).await, field);
        assert_invalid(app.export(&id).await, field);
        assert_invalid(app.forget(&id).await, field);
    }

    assert_untouched_and_serving(&app).await;
}

on_both_backends!(the_edges_of_every_range_are_accepted);
async fn the_edges_of_every_range_are_accepted(backend: Backend) {
    let app = app_with_alice(backend).await;
    // Poles and the antimeridian are real places; accuracy 0 means unknown.
    for (latitude, longitude) in [(90.0, 180.0), (-90.0, -180.0)] {
        let request = update(at(latitude, longitude, 0.0), 0);
        app.update_location(request).await.unwrap();
    }
    app.update("alice", HOME, Gender::Female).await.unwrap();

    let edges = pb::ListNearbyRequest {
        limit: 100,
        max_distance_m: 50_000,
        exclude_user_ids: (0..1_000).map(|i| format!("u{i}")).collect(),
        ..list_request("alice")
    };
    app.list_with(edges).await.unwrap();
    // A limit above the maximum is coerced to it (AIP-158), not refused.
    let huge = pb::ListNearbyRequest {
        limit: u32::MAX,
        ..list_request("alice")
    };
    assert!(app.list_with(huge).await.unwrap().users.len() <= 100);
    let longest = "a".repeat(128);
    app.grant(&longest, Feature::PeopleNearby).await.unwrap();
    app.grant("a.b:c_d@e-f", Feature::Shake).await.unwrap();
}

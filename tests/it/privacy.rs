//! contract §3 PrivacyService and §1.2-4: clear at once, see everything held, forget everything.

use vicinity::{
    domain::{Coordinates, SnapGrid},
    grpc::pb::{ConsentState, Feature, Gender},
};

use crate::{
    calls::{NOTICE, millis},
    consent::{alice_listed_to_bob, assert_consents, assert_people_nearby_untouched},
    helpers::ROUNDING_MS,
    helpers::{Backend, alice_beside_bob, on_both_backends, spawn_app_on},
    places::HOME,
};

on_both_backends!(clear_location_is_immediate_idempotent_and_keeps_consent);
async fn clear_location_is_immediate_idempotent_and_keeps_consent(backend: Backend) {
    let app = alice_listed_to_bob(backend).await;

    let cleared = app.clear("alice", Feature::Unspecified).await.unwrap();

    assert_eq!(cleared.purged_entries, 1);
    assert!(app.listed("bob").await.is_empty());
    let export = app.export("alice").await.unwrap();
    assert!(export.locations.is_empty(), "{export:?}");
    let again = app.clear("alice", Feature::Unspecified).await.unwrap();
    assert_eq!(again.purged_entries, 0);
    let consent = app.consent("alice").await.unwrap();
    assert_eq!(consent.current[0].feature(), Feature::PeopleNearby);
    assert_eq!(consent.current[0].state(), ConsentState::Granted);
    // Consent kept: coming back needs no new grant.
    app.update("alice", HOME, Gender::Female).await.unwrap();
    assert_eq!(app.listed("bob").await, ["alice"]);
}

on_both_backends!(clearing_another_feature_leaves_people_nearby_alone);
async fn clearing_another_feature_leaves_people_nearby_alone(backend: Backend) {
    let app = alice_beside_bob(backend).await;

    let cleared = app.clear("alice", Feature::Shake).await.unwrap();

    assert_people_nearby_untouched(&app, cleared.purged_entries).await;
    let people_nearby = app.clear("alice", Feature::PeopleNearby).await.unwrap();
    assert_eq!(people_nearby.purged_entries, 1);
    assert!(app.listed("bob").await.is_empty());
}

on_both_backends!(export_shows_consents_history_and_the_stored_cell_only);
async fn export_shows_consents_history_and_the_stored_cell_only(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let before = app.store_now_millis().await;
    app.join("alice", HOME, Gender::Female).await;
    let after = app.store_now_millis().await;

    let export = app.export("alice").await.unwrap();

    assert_eq!(export.user_id, "alice");
    assert_consents(
        &export.consents,
        ConsentState::Granted,
        ConsentState::Unspecified,
    );
    assert_eq!(export.consent_history.len(), 1);
    assert_eq!(export.consent_history[0].notice_version, NOTICE);
    assert_eq!(export.locations.len(), 1);
    let stored = &export.locations[0];
    assert_eq!(stored.feature(), Feature::PeopleNearby);
    assert_eq!(stored.gender(), Gender::Female);
    assert!(!stored.left);
    // The user's own data: the one place a position appears, and only as stored: the centre
    // of the snapped cell, as precise as the cell (it was kept to 11 m).
    let cell = SnapGrid::default().snap(Coordinates::new(HOME.lat, HOME.lng).unwrap());
    let centre = h3o::LatLng::from(cell);
    let location = stored.location.expect("the stored location");
    assert_eq!(
        (location.latitude, location.longitude),
        (centre.lat(), centre.lng())
    );
    assert_ne!(
        (location.latitude, location.longitude),
        (HOME.lat, HOME.lng)
    );
    assert_eq!(location.accuracy_m, 0.0, "accuracy is not kept");
    assert_eq!(stored.precision_m, 201, "a res-9 cell's average edge");
    let last_active = millis(stored.last_active.as_ref());
    let purge_at = millis(stored.purge_at.as_ref());
    assert!(
        (before - ROUNDING_MS..=after).contains(&last_active),
        "{last_active}"
    );
    assert_eq!(purge_at - last_active, app.retention.as_millis() as i64);
    assert_eq!(millis(stored.visible_until.as_ref()), purge_at);
    assert!(export.shake_history.is_empty());
}

on_both_backends!(export_of_a_stranger_holds_nothing);
async fn export_of_a_stranger_holds_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;

    let export = app.export("stranger").await.unwrap();

    assert!(export.consent_history.is_empty() && export.locations.is_empty());
    assert!(
        export
            .consents
            .iter()
            .all(|c| c.state() == ConsentState::Unspecified && c.consent_id.is_empty())
    );
}

on_both_backends!(forget_user_removes_everything_consent_history_included);
async fn forget_user_removes_everything_consent_history_included(backend: Backend) {
    let app = spawn_app_on(backend).await;
    app.join("alice", HOME, Gender::Female).await;
    app.grant("alice", Feature::Shake).await.unwrap();
    app.withdraw("alice", Feature::Shake).await.unwrap();
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;

    let forgotten = app.forget("alice").await.unwrap();

    assert_eq!(forgotten.purged_entries, 1);
    assert_eq!(forgotten.consent_events_deleted, 3);
    let export = app.export("alice").await.unwrap();
    assert!(export.consent_history.is_empty(), "{export:?}");
    assert!(export.locations.is_empty(), "{export:?}");
    assert_eq!(export.consents.len(), 2);
    assert!(
        export
            .consents
            .iter()
            .all(|c| c.state() == ConsentState::Unspecified && c.changed_at.is_none())
    );
    assert!(app.listed("bob").await.is_empty());
    crate::details::assert_consent_required(app.update("alice", HOME, Gender::Female).await);
}

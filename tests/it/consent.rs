//! contract §4.1: consent gates everything, withdrawal is as easy as granting and purges at once.

use std::time::Duration;

use vicinity::grpc::pb::{ConsentRecord, ConsentState, Feature, Gender};

use crate::{
    calls::{NOTICE, millis},
    details::{assert_consent_required, assert_location_required},
    helpers::{Backend, TestApp, alice_beside_bob, on_both_backends, spawn_app_on},
    places::HOME,
};

/// Asserts that `records` are, in order, People Nearby's in `people_nearby` and Shake's in
/// `shake`.
#[track_caller]
pub(crate) fn assert_consents(
    records: &[ConsentRecord],
    people_nearby: ConsentState,
    shake: ConsentState,
) {
    let states: Vec<_> = records.iter().map(|r| (r.feature(), r.state())).collect();
    assert_eq!(
        states,
        [
            (Feature::PeopleNearby, people_nearby),
            (Feature::Shake, shake)
        ]
    );
}

/// A server on `backend` where alice and bob have joined ([`alice_beside_bob`]) and bob sees
/// alice.
pub(crate) async fn alice_listed_to_bob(backend: Backend) -> TestApp {
    let app = alice_beside_bob(backend).await;
    assert_eq!(app.listed("bob").await, ["alice"]);
    app
}

/// Asserts that a call on alice's Shake data alone, answered with `purged_entries`, purged
/// nothing and left her People Nearby entry listed to bob.
pub(crate) async fn assert_people_nearby_untouched(app: &TestApp, purged_entries: u32) {
    assert_eq!(purged_entries, 0);
    assert_eq!(app.listed("bob").await, ["alice"]);
}

on_both_backends!(update_location_without_consent_is_refused_and_nothing_is_stored);
async fn update_location_without_consent_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app_on(backend).await;

    assert_consent_required(app.update("alice", HOME, Gender::Female).await);

    let export = app.export("alice").await.unwrap();
    assert!(export.locations.is_empty(), "{export:?}");
    assert!(export.consent_history.is_empty(), "{export:?}");
}

on_both_backends!(list_nearby_without_consent_is_refused);
async fn list_nearby_without_consent_is_refused(backend: Backend) {
    let app = spawn_app_on(backend).await;
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;

    assert_consent_required(app.list("alice").await);
}

on_both_backends!(list_nearby_without_a_location_of_ones_own_is_refused);
async fn list_nearby_without_a_location_of_ones_own_is_refused(backend: Backend) {
    let app = spawn_app_on(backend).await;
    app.join("bob", HOME.offset_m(40.0, 0.0), Gender::Male)
        .await;
    app.grant("alice", Feature::PeopleNearby).await.unwrap();

    assert_location_required(app.list("alice").await);
}

on_both_backends!(withdrawing_consent_hides_the_user_at_once_and_refuses_later_updates);
async fn withdrawing_consent_hides_the_user_at_once_and_refuses_later_updates(backend: Backend) {
    let app = alice_listed_to_bob(backend).await;

    let withdrawn = app.withdraw("alice", Feature::PeopleNearby).await.unwrap();

    assert_eq!(withdrawn.purged_entries, 1);
    let record = withdrawn.record.expect("the withdrawn record");
    assert_eq!(record.state(), ConsentState::Withdrawn);
    assert!(app.listed("bob").await.is_empty());
    assert!(app.export("alice").await.unwrap().locations.is_empty());
    assert_consent_required(app.update("alice", HOME, Gender::Female).await);
    assert_consent_required(app.list("alice").await);
}

on_both_backends!(refusing_one_feature_leaves_the_other_usable);
async fn refusing_one_feature_leaves_the_other_usable(backend: Backend) {
    let app = alice_beside_bob(backend).await;

    let withdrawn = app.withdraw("alice", Feature::Shake).await.unwrap();

    assert_people_nearby_untouched(&app, withdrawn.purged_entries).await;
    assert_eq!(app.listed("alice").await, ["bob"]);
}

on_both_backends!(get_consent_shows_one_record_per_feature_and_every_event);
async fn get_consent_shows_one_record_per_feature_and_every_event(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let granted_at = app.now_millis();
    let granted = app.grant("alice", Feature::PeopleNearby).await.unwrap();
    app.advance(Duration::from_secs(90));
    app.withdraw("alice", Feature::PeopleNearby).await.unwrap();

    let consent = app.consent("alice").await.unwrap();

    assert_consents(
        &consent.current,
        ConsentState::Withdrawn,
        ConsentState::Unspecified,
    );
    let history: Vec<_> = consent
        .history
        .iter()
        .map(|r| (r.state(), millis(r.changed_at.as_ref())))
        .collect();
    assert_eq!(
        history,
        [
            (ConsentState::Granted, granted_at),
            (ConsentState::Withdrawn, granted_at + 90_000),
        ]
    );
    assert_eq!(consent.history[0].consent_id, granted.consent_id);
    assert_ne!(consent.history[0].consent_id, consent.history[1].consent_id);
    assert_eq!(granted.notice_version, NOTICE);
    assert_eq!(granted.source, "it/1.0");
}

on_both_backends!(granting_again_under_the_same_notice_records_one_event);
async fn granting_again_under_the_same_notice_records_one_event(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let first = app.grant("alice", Feature::PeopleNearby).await.unwrap();

    let again = app.grant("alice", Feature::PeopleNearby).await.unwrap();

    assert_eq!(again.consent_id, first.consent_id);
    assert_eq!(app.consent("alice").await.unwrap().history.len(), 1);
}

on_both_backends!(granting_again_after_withdrawing_lets_the_user_back_in);
async fn granting_again_after_withdrawing_lets_the_user_back_in(backend: Backend) {
    let app = alice_beside_bob(backend).await;
    app.withdraw("alice", Feature::PeopleNearby).await.unwrap();

    app.join("alice", HOME, Gender::Female).await;

    assert_eq!(app.listed("bob").await, ["alice"]);
    assert_eq!(app.consent("alice").await.unwrap().history.len(), 3);
}

on_both_backends!(leave_nearby_without_consent_is_refused_and_renews_nothing);
async fn leave_nearby_without_consent_is_refused_and_renews_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;

    assert_consent_required(app.leave("alice").await);

    app.join("bob", HOME, Gender::Male).await;
    app.withdraw("bob", Feature::PeopleNearby).await.unwrap();
    assert_consent_required(app.leave("bob").await);
    assert!(app.export("bob").await.unwrap().locations.is_empty());
}

on_both_backends!(a_leave_racing_a_withdrawal_never_keeps_the_location);
async fn a_leave_racing_a_withdrawal_never_keeps_the_location(backend: Backend) {
    let app = spawn_app_on(backend).await;
    for round in 0..20 {
        let user = format!("racer-{round}");
        app.join(&user, HOME, Gender::Female).await;
        let (withdrawn, _) =
            tokio::join!(app.withdraw(&user, Feature::PeopleNearby), app.leave(&user));
        withdrawn.expect("the withdrawal answers");
        let export = app.export(&user).await.unwrap();
        assert!(export.locations.is_empty(), "round {round}: {export:?}");
    }
}

on_both_backends!(a_withdrawal_cut_off_by_its_deadline_still_purges_the_location);
async fn a_withdrawal_cut_off_by_its_deadline_still_purges_the_location(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut withdrawn_rounds = 0;
    for round in 0..40u64 {
        let user = format!("cut-{round}");
        app.join(&user, HOME, Gender::Female).await;
        let mut request = tonic::Request::new(vicinity::grpc::pb::WithdrawConsentRequest {
            user_id: user.clone(),
            feature: Feature::PeopleNearby.into(),
        });
        request.set_timeout(Duration::from_micros(300 + round * 1_000));
        let _ = app.client.consent().withdraw_consent(request).await;
        // Whether the withdrawal landed or not, the data must agree with it once the purge
        // (detached from the cut-off call) had a moment to finish.
        let mut settled = None;
        for _ in 0..50 {
            let export = app.export(&user).await.unwrap();
            let withdrawn = export
                .consents
                .iter()
                .any(|c| c.state() == ConsentState::Withdrawn);
            if !withdrawn || export.locations.is_empty() {
                settled = Some(withdrawn);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let withdrawn = settled.unwrap_or_else(|| {
            panic!("round {round}: consent withdrawn, location still held a second later")
        });
        withdrawn_rounds += u32::from(withdrawn);
    }
    assert!(
        withdrawn_rounds > 0,
        "no withdrawal landed: the test proved nothing"
    );
}

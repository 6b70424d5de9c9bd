//! Sensitive places (contract §4.8), through the gRPC API on both
//! backends: a position in a listed place, or anywhere in the coarse parent that holds it, is
//! stored, shown, matched and exported at the parent's one representative cell; a position in
//! a hidden place is not placed at all; the policy reloads under load without a failed call.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use h3o::{CellIndex, LatLng, Resolution};
use tonic::Request;
use vicinity::{
    grpc::pb::{self, Feature, Gender, shake_response::Result as Outcome},
    places::{Action, Category, Placement, Places, Policy, compile},
};

use crate::{
    calls::{list_request, location},
    helpers::{Backend, TestApp, on_both_backends},
    places::{HOME, Point},
};

/// A policy file in a directory of its own, removed when dropped.
struct PolicyFile {
    dir: PathBuf,
    path: PathBuf,
}

impl PolicyFile {
    /// Compiles `geojson` features (a comma-separated list) with one margin ring.
    fn compile(features: &str) -> PolicyFile {
        let dir = std::env::temp_dir().join(format!(
            "vicinity-it-places-{}-{}",
            std::process::id(),
            vicinity::random::u64().expect("randomness")
        ));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("places.policy");
        let file = PolicyFile { dir, path };
        file.write(features);
        file
    }

    /// Replaces the policy with one of `features`.
    fn write(&self, features: &str) {
        std::fs::write(&self.path, policy_text(features)).expect("write the policy");
    }

    fn policy(&self) -> Policy {
        Policy::load(&self.path).expect("a policy")
    }

    fn places(&self) -> Arc<Places> {
        Arc::new(Places::from_file(self.policy(), &self.path))
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The policy file of `features` (a comma-separated list). Compiled before a test server
/// starts: the `geo` crate logs the polygons it tiles, and the leak check would rightly catch
/// their coordinates in the log (the server itself never tiles, and filters `geo` out).
fn policy_text(features: &str) -> String {
    let geojson = format!(r#"{{"type":"FeatureCollection","features":[{features}]}}"#);
    let cells = compile::from_geojson(&geojson, Resolution::Nine, 1).expect("a valid list");
    // Shelters hidden, as an operator would choose with `places compile --hide shelter`.
    let hide = [(Category::Shelter, Action::Hide)];
    compile::render(&cells, Resolution::Nine, Resolution::Seven, &hide)
}

/// A GeoJSON point place.
fn point(at: Point, category: &str, radius_m: u32) -> String {
    format!(
        r#"{{"type":"Feature","properties":{{"category":"{category}","radius_m":{radius_m}}},
            "geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
        at.lng, at.lat
    )
}

/// The clinic of these tests: 300 m north of HOME, 40 m across.
fn clinic() -> Point {
    HOME.offset_m(300.0, 0.0)
}

fn parent(at: Point) -> CellIndex {
    at.cell().parent(Resolution::Seven).expect("a parent")
}

/// Points in `clinic`'s coarse parent that the policy does not list (ordinary places
/// there), and points outside that parent, by a walk outwards from it.
fn around(policy: &Policy, clinic: Point) -> (Vec<Point>, Vec<Point>) {
    let (mut inside_parent, mut outside) = (Vec::new(), Vec::new());
    for ring in 1..=40 {
        for step in 0..12 {
            let angle = f64::from(step) * std::f64::consts::TAU / 12.0;
            let r = f64::from(ring) * 100.0;
            let at = clinic.offset_m(r * angle.cos(), r * angle.sin());
            match policy.place(at.cell()) {
                Placement::Coarse { inside: None, .. } => inside_parent.push(at),
                Placement::Exact(_) => outside.push(at),
                _ => {}
            }
        }
    }
    (inside_parent, outside)
}

async fn spawn(backend: Backend, places: Arc<Places>) -> TestApp {
    TestApp::spawn(backend, |config| config.places = places).await
}

/// The stored cell of `user`'s People Nearby entry (from their own export), if any.
async fn stored_cell(app: &TestApp, user: &str) -> Option<CellIndex> {
    let export = app.export(user).await.expect("export");
    let stored = export.locations.first()?;
    let at = stored.location.as_ref()?;
    let cell = LatLng::new(at.latitude, at.longitude)
        .expect("a position")
        .to_cell(Resolution::Nine);
    Some(cell)
}

/// Every user `viewer` sees within 5 km, with their band, over every page.
async fn bands_seen(app: &TestApp, viewer: &str) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    let mut token = String::new();
    loop {
        let mut request = list_request(viewer);
        request.limit = 100;
        request.max_distance_m = 5_000;
        request.page_token = token;
        let page = app.list_with(request).await.expect("a list");
        seen.extend(page.users.into_iter().map(|u| (u.user_id, u.distance_m)));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
}

on_both_backends!(a_visit_looks_like_anywhere_else_in_its_parent);
async fn a_visit_looks_like_anywhere_else_in_its_parent(backend: Backend) {
    let file = PolicyFile::compile(&point(clinic(), "health", 20));
    let policy = file.policy();
    let (ordinary, outside) = around(&policy, clinic());
    let Placement::Coarse {
        cell: representative,
        ..
    } = policy.place(clinic().cell())
    else {
        panic!("the clinic is listed")
    };
    // Carol is somewhere ordinary in the parent, not at its representative cell.
    let carol_at = *ordinary
        .iter()
        .find(|p| p.cell() != representative)
        .expect("an ordinary place in the parent");
    let app = spawn(backend, file.places()).await;
    app.join("alice", clinic(), Gender::Female).await;
    app.join("carol", carol_at, Gender::Female).await;
    app.join("dave", outside[0], Gender::Male).await;
    app.join("bob", outside[1], Gender::Male).await;

    assert_alice_is_stored_where_carol_is(&app, &policy, representative, carol_at, &outside).await;
    assert_alice_and_carol_are_shown_alike(&app).await;
    assert_alice_and_carol_match_when_they_shake(&app, carol_at).await;
}

/// Alice (in the clinic) and carol (at `carol_at`) are stored at the parent's
/// `representative` cell; dave, at `outside[0]`, exactly.
async fn assert_alice_is_stored_where_carol_is(
    app: &TestApp,
    policy: &Policy,
    representative: CellIndex,
    carol_at: Point,
    outside: &[Point],
) {
    // Stored (and exported) at one cell of the parent, not in the clinic.
    let (alice, carol) = (
        stored_cell(app, "alice").await,
        stored_cell(app, "carol").await,
    );
    assert_eq!(
        alice, carol,
        "inside the clinic looks like elsewhere in the parent"
    );
    let shown = alice.expect("alice is placed");
    assert_eq!(shown.parent(Resolution::Seven), Some(parent(clinic())));
    assert!(matches!(
        policy.place(shown),
        Placement::Coarse { inside: None, .. }
    ));
    assert_ne!(shown, clinic().cell());
    assert_eq!(shown, representative);
    assert_ne!(carol, Some(carol_at.cell()), "carol is coarsened too");
    // Outside the parent, a position is exact.
    assert_eq!(stored_cell(app, "dave").await, Some(outside[0].cell()));
}

/// Bob and dave each see alice and carol in the same band.
async fn assert_alice_and_carol_are_shown_alike(app: &TestApp) {
    // Shown alike to everyone: the same band from any viewer.
    for viewer in ["bob", "dave"] {
        let seen = bands_seen(app, viewer).await;
        assert_eq!(
            seen.get("alice"),
            seen.get("carol"),
            "from {viewer}: {seen:?}"
        );
        assert!(
            seen.contains_key("alice"),
            "alice is still listed: {seen:?}"
        );
    }
}

/// Alice shaking in the clinic and carol at `carol_at` match each other, at one distance.
async fn assert_alice_and_carol_match_when_they_shake(app: &TestApp, carol_at: Point) {
    // Shaking: inside the clinic, she is placed at the representative cell as anyone in the
    // parent is, so she matches whoever shakes there at the same moment, as carol would
    // elsewhere in the parent: the outcome tells nothing about the clinic.
    for user in ["alice", "carol"] {
        app.grant(user, Feature::Shake).await.expect("grant");
    }
    let (a, c) = tokio::join!(shake(app, "alice", clinic()), shake(app, "carol", carol_at));
    let (Outcome::Match(a), Outcome::Match(c)) = (a, c) else {
        panic!("they match each other")
    };
    assert_eq!((a.user_id.as_str(), c.user_id.as_str()), ("carol", "alice"));
    assert_eq!(a.distance_m, c.distance_m);
}

/// Shakes as `user` at `at`.
async fn shake(app: &TestApp, user: &str, at: Point) -> Outcome {
    let request = Request::new(pb::ShakeRequest {
        user_id: user.to_owned(),
        location: Some(location(at)),
    });
    let reply = app.client.shake().shake(request).await.expect("a shake");
    reply.into_inner().result.expect("a result")
}

on_both_backends!(nobody_is_placed_at_a_shelter);
async fn nobody_is_placed_at_a_shelter(backend: Backend) {
    let shelter = HOME.offset_m(-400.0, 200.0);
    let file = PolicyFile::compile(&point(shelter, "shelter", 20));
    let (ordinary, outside) = around(&file.policy(), shelter);
    let app = spawn(backend, file.places()).await;
    app.join("bob", outside[0], Gender::Male).await;
    // Answered as a write would be, and nothing stored.
    app.join("erin", shelter, Gender::Female).await;
    assert_eq!(stored_cell(&app, "erin").await, None);
    assert!(!bands_seen(&app, "bob").await.contains_key("erin"));
    // Elsewhere in the parent she is placed (coarsened), and listed.
    app.update("erin", ordinary[0], Gender::Female)
        .await
        .expect("an update");
    let placed = stored_cell(&app, "erin").await.expect("placed");
    assert_eq!(placed.parent(Resolution::Seven), Some(parent(shelter)));
    assert!(bands_seen(&app, "bob").await.contains_key("erin"));
    // Back at the shelter: the entry is not moved there; it ages as a quiet phone's does.
    app.update("erin", shelter, Gender::Female)
        .await
        .expect("an update");
    assert_eq!(stored_cell(&app, "erin").await, Some(placed));
    // A shake there is never matched, even with a partner at the same moment beside her.
    for user in ["erin", "bob"] {
        app.grant(user, Feature::Shake).await.expect("grant");
    }
    let (e, b) = tokio::join!(
        shake(&app, "erin", shelter),
        shake(&app, "bob", ordinary[0])
    );
    assert!(matches!(e, Outcome::NoMatch(_)), "{e:?}");
    assert!(matches!(b, Outcome::NoMatch(_)), "{b:?}");
}

/// A hidden update is limited as a write is: past the update rate it is refused the same
/// way, so the refusal does not tell a hidden place from another.
#[tokio::test]
async fn a_hidden_update_counts_against_the_update_rate() {
    let shelter = HOME.offset_m(-400.0, 200.0);
    let file = PolicyFile::compile(&point(shelter, "shelter", 20));
    let rate = vicinity::domain::limits::Rate::new(2, Duration::from_secs(60)).unwrap();
    let app = TestApp::spawn(Backend::Memory, |config| {
        config.places = file.places();
        config.policy.updates = rate;
    })
    .await;
    app.join("erin", shelter, Gender::Female).await;
    app.update("erin", shelter, Gender::Female)
        .await
        .expect("the second of two");
    let refused = app.update("erin", shelter, Gender::Female).await;
    let status = refused.expect_err("the third is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
}

/// How many positions the policy moved as `category` by `action`, in this process.
fn placed(category: &str, action: &str) -> u64 {
    let metrics = vicinity::telemetry::metrics::get();
    metrics
        .places_placed
        .with_label_values(&[category, action])
        .get()
}

on_both_backends!(only_an_admitted_update_counts_as_placed);
/// An update refused for consent moves the placement counter by nothing, coarsened or hidden;
/// once consent is granted, each placed update counts once.
async fn only_an_admitted_update_counts_as_placed(backend: Backend) {
    let shelter = HOME.offset_m(-400.0, 200.0);
    let features = format!(
        "{},{}",
        point(clinic(), "health", 20),
        point(shelter, "shelter", 20)
    );
    let file = PolicyFile::compile(&features);
    let app = spawn(backend, file.places()).await;
    let before = (placed("health", "coarsen"), placed("shelter", "hide"));
    for at in [clinic(), shelter] {
        let refused = app.update("mallory", at, Gender::Female).await;
        let status = refused.expect_err("no consent, no update");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    }
    assert_eq!(
        (placed("health", "coarsen"), placed("shelter", "hide")),
        before
    );
    app.join("mallory", clinic(), Gender::Female).await;
    app.update("mallory", shelter, Gender::Female)
        .await
        .expect("an update");
    let after = (placed("health", "coarsen"), placed("shelter", "hide"));
    assert_eq!(after, (before.0 + 1, before.1 + 1));
}

on_both_backends!(the_attacker_does_no_better_than_the_base_rate);
/// 200 victims, half inside the clinic and half elsewhere in its parent;
/// Sybil viewers all around list every page. Whatever the attacker does with the bands, it
/// cannot beat the base rate, because every victim's view is the same: the best rule
/// (majority vote per distinct view) is measured, not assumed.
async fn the_attacker_does_no_better_than_the_base_rate(backend: Backend) {
    let file = PolicyFile::compile(&point(clinic(), "health", 60));
    let policy = file.policy();
    let (ordinary, inside_points) = ordinary_and_inside_points_of_the_clinics_parent(&policy);
    let app = spawn(backend, file.places()).await;
    let truth = join_the_victims(&app, &inside_points, &ordinary).await;
    let views = what_eight_sybils_see_of_each_victim(&app, &truth).await;
    // The attacker's best rule from the views: each distinct view guesses its majority.
    let mut by_view: BTreeMap<&Vec<Option<u32>>, (u32, u32)> = BTreeMap::new();
    for (victim, view) in &views {
        let counts = by_view.entry(view).or_default();
        if truth[victim] {
            counts.0 += 1
        } else {
            counts.1 += 1
        }
    }
    let right: u32 = by_view.values().map(|(i, o)| *i.max(o)).sum();
    let accuracy = f64::from(right) / truth.len() as f64;
    let distinct: BTreeSet<_> = by_view.keys().collect();
    assert!(
        (accuracy - 0.5).abs() <= 0.05,
        "the attacker guessed {accuracy:.2} right (base rate 0.50) from {} distinct views",
        distinct.len()
    );
}

/// Ordinary points of the clinic's coarse parent, and 100 points inside the clinic, each in a
/// listed cell of that parent.
fn ordinary_and_inside_points_of_the_clinics_parent(policy: &Policy) -> (Vec<Point>, Vec<Point>) {
    // What the policy shows is the coarse parent, so the base rate is the one within it: the
    // victims outside the clinic are elsewhere in the clinic's parent. (A place near a
    // parent's edge coarsens both parents; which one a user is in stays visible.)
    let (ordinary, _) = around(policy, clinic());
    let ordinary: Vec<Point> = ordinary
        .into_iter()
        .filter(|p| parent(*p) == parent(clinic()))
        .collect();
    let inside_points = crate::places::crowd(clinic(), 100, 25.0);
    assert!(
        inside_points.iter().all(|p| parent(*p) == parent(clinic())
            && matches!(
                policy.place(p.cell()),
                Placement::Coarse {
                    inside: Some(_),
                    ..
                }
            )),
        "every inside victim is in a listed cell of the clinic's parent"
    );
    (ordinary, inside_points)
}

/// Joins a victim at each of `inside_points` and 100 at `ordinary` points: whether each
/// victim is inside the clinic.
async fn join_the_victims(
    app: &TestApp,
    inside_points: &[Point],
    ordinary: &[Point],
) -> BTreeMap<String, bool> {
    let mut truth = BTreeMap::new();
    for (i, at) in inside_points.iter().enumerate() {
        let victim = format!("in{i}");
        app.join(&victim, *at, Gender::Female).await;
        truth.insert(victim, true);
    }
    for i in 0..100 {
        let victim = format!("out{i}");
        app.join(&victim, ordinary[i % ordinary.len()], Gender::Female)
            .await;
        truth.insert(victim, false);
    }
    truth
}

/// Joins eight Sybils 1.5 km around the clinic: each victim of `truth`'s band in each
/// Sybil's lists (`None`: not listed).
async fn what_eight_sybils_see_of_each_victim(
    app: &TestApp,
    truth: &BTreeMap<String, bool>,
) -> BTreeMap<String, Vec<Option<u32>>> {
    let sybils: Vec<String> = (0..8).map(|i| format!("sybil{i}")).collect();
    for (i, sybil) in sybils.iter().enumerate() {
        let angle = i as f64 * std::f64::consts::TAU / 8.0;
        let at = clinic().offset_m(1_500.0 * angle.cos(), 1_500.0 * angle.sin());
        app.join(sybil, at, Gender::Male).await;
    }
    let mut views: BTreeMap<String, Vec<Option<u32>>> = BTreeMap::new();
    for sybil in &sybils {
        let seen = bands_seen(app, sybil).await;
        for victim in truth.keys() {
            views
                .entry(victim.clone())
                .or_default()
                .push(seen.get(victim).copied());
        }
    }
    views
}

/// The policy is swapped, on another thread, while updates and lists run
/// on two workers; no call fails, and the last policy written is the one in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_reloads_under_load_without_a_failed_call() {
    let file = PolicyFile::compile(&point(clinic(), "health", 20));
    let elsewhere = policy_text(&point(HOME.offset_m(-2_000.0, 0.0), "worship", 20));
    let here = policy_text(&point(clinic(), "health", 20));
    let places = file.places();
    let app = spawn(Backend::Memory, places.clone()).await;
    let users: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
    for user in &users {
        app.join(user, clinic(), Gender::Female).await;
    }
    let load = start_updates_and_lists_of(&app, &users);
    let reloads = start_reloading_the_policy_40_times(&places, &file.path, elsewhere, here);
    reloads.await.expect("reloads");
    for task in load {
        task.await.expect("no panic").expect("no call failed");
    }
    let last = Policy::load(&file.path).expect("a policy");
    assert_eq!(
        places.current().expect("a policy").version(),
        last.version()
    );
    // A file that is not a policy is refused and the one in force stays.
    std::fs::write(&file.path, "not a policy").unwrap();
    assert!(
        places
            .reload_checked(Resolution::Nine)
            .expect("a file")
            .is_err()
    );
    assert_eq!(
        places.current().expect("a policy").version(),
        last.version()
    );
}

/// One task per user of `users`: 60 updates around the clinic, each followed by a list.
fn start_updates_and_lists_of(
    app: &TestApp,
    users: &[String],
) -> Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    users
        .iter()
        .map(|user| {
            let (client, user) = (app.client.clone(), user.clone());
            tokio::spawn(async move {
                for i in 0..60 {
                    let at = clinic().offset_m(f64::from(i % 7) * 50.0, 0.0);
                    let update = pb::UpdateLocationRequest {
                        user_id: user.clone(),
                        location: Some(location(at)),
                        gender: Gender::Female.into(),
                    };
                    client.nearby().update_location(update).await?;
                    client.nearby().list_nearby(list_request(&user)).await?;
                }
                Ok::<_, tonic::Status>(())
            })
        })
        .collect()
}

/// On a blocking thread, writes `here` and `elsewhere` in turn to `path` 40 times, reloading
/// `places` after each write.
fn start_reloading_the_policy_40_times(
    places: &Arc<Places>,
    path: &std::path::Path,
    elsewhere: String,
    here: String,
) -> tokio::task::JoinHandle<()> {
    let (places, path) = (places.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        for i in 0..40 {
            // Ends on `elsewhere` (the server started on `here`), so a reload that never
            // put anything in force fails the check below.
            let text = if i % 2 == 1 { &elsewhere } else { &here };
            std::fs::write(&path, text).expect("write the policy");
            let reloaded = places.reload_checked(Resolution::Nine).expect("a file");
            reloaded.expect("a valid policy");
        }
    })
}

on_both_backends!(crossing_between_coarsened_parents_passes_the_jump_cap);
/// A user crossing from one coarsened parent into the next, a few metres in no time, is
/// stored at one representative cell, then at the other (which may lie more than the jump
/// cap's 2 km slack apart): the move is judged to where they are, so it passes, on the fast
/// path and the slow one alike; a teleport is still refused.
async fn crossing_between_coarsened_parents_passes_the_jump_cap(backend: Backend) {
    let p1 = parent(HOME);
    let p2 = p1.grid_disk::<Vec<_>>(1)[1];
    // Two cells side by side across the border of the two parents.
    let (a, b) = p1
        .children(Resolution::Nine)
        .find_map(|a| {
            let b = a
                .grid_disk::<Vec<_>>(1)
                .into_iter()
                .find(|c| c.parent(Resolution::Seven) == Some(p2))?;
            Some((a, b))
        })
        .expect("the parents share a border");
    let centre = |cell: CellIndex| {
        let at = LatLng::from(cell);
        Point {
            lat: at.lat(),
            lng: at.lng(),
        }
    };
    let places = [p1, p2].map(|p| {
        let middle = centre(p.center_child(Resolution::Nine).expect("a child"));
        point(middle, "worship", 20)
    });
    let file = PolicyFile::compile(&places.join(","));
    let app = TestApp::spawn(backend, |config| {
        config.places = file.places();
        config.policy.jump =
            Some(vicinity::domain::limits::JumpCap::from_kmh(1_200).expect("a cap"));
    })
    .await;
    app.join("walker", centre(a), Gender::Female).await;
    let first = stored_cell(&app, "walker").await.expect("placed");
    app.update("walker", centre(b), Gender::Female)
        .await
        .expect("a step across the border passes");
    let second = stored_cell(&app, "walker").await.expect("placed");
    assert_eq!(first.parent(Resolution::Seven), Some(p1));
    assert_eq!(second.parent(Resolution::Seven), Some(p2));
    let far = app
        .update("walker", HOME.offset_m(300_000.0, 0.0), Gender::Female)
        .await;
    assert_eq!(
        far.expect_err("a teleport is refused").code(),
        tonic::Code::FailedPrecondition
    );
}

on_both_backends!(an_entry_stored_before_its_place_was_listed_is_not_shown);
/// An entry stored at its fine cell before the policy listed its place is not listed once a
/// reload puts that policy in force (it would show the visit the policy now protects); the
/// user's next update places it at the parent's representative cell, and it is listed again.
async fn an_entry_stored_before_its_place_was_listed_is_not_shown(backend: Backend) {
    let file = PolicyFile::compile(&point(HOME.offset_m(-3_000.0, 0.0), "worship", 20));
    // Compiled before the server starts (see `policy_text`).
    let listing_the_clinic = policy_text(&point(clinic(), "health", 20));
    let places = file.places();
    let app = spawn(backend, places.clone()).await;
    app.join("early", clinic(), Gender::Female).await;
    // More users at the clinic before the policy than a page holds, and one far from it.
    let crowd: Vec<String> = (0..6).map(|i| format!("early-{i}")).collect();
    for user in &crowd {
        app.join(user, clinic(), Gender::Female).await;
    }
    let far = clinic().offset_m(-2_500.0, 0.0);
    app.join("ordinary", far, Gender::Female).await;
    app.join("viewer", clinic().offset_m(0.0, 150.0), Gender::Male)
        .await;
    assert!(bands_seen(&app, "viewer").await.contains_key("early"));
    let fine = stored_cell(&app, "early").await.expect("an entry");
    assert_eq!(
        fine,
        clinic().cell(),
        "stored where it is: nothing listed it yet"
    );

    std::fs::write(&file.path, listing_the_clinic).expect("write the policy");
    let reloaded = places.reload_checked(Resolution::Nine).expect("a file");
    let policy = reloaded.expect("a valid policy");
    assert!(!policy.stores_at(fine), "the clinic's cell is listed now");
    assert!(policy.stores_at(far.cell()), "far from the clinic's parent");
    assert!(
        !bands_seen(&app, "viewer").await.contains_key("early"),
        "an entry at a listed place's cell is not shown"
    );
    // The hidden crowd does not fill the first page with nobody: the far user is on it.
    let mut first = list_request("viewer");
    first.limit = 2;
    first.max_distance_m = 5_000;
    let page = app.list_with(first).await.expect("a list");
    let listed: Vec<String> = page.users.into_iter().map(|u| u.user_id).collect();
    assert_eq!(listed, ["ordinary"], "the first page of two");

    app.update("early", clinic(), Gender::Female)
        .await
        .expect("an update");
    let stored = stored_cell(&app, "early").await.expect("an entry");
    assert_ne!(stored, fine, "re-placed");
    assert!(policy.stores_at(stored), "at the parent's representative");
    assert!(bands_seen(&app, "viewer").await.contains_key("early"));
}

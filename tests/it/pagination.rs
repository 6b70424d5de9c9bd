//! contract §3 ListNearby: pages in band order that never repeat or skip a user who stays put,
//! behind opaque page tokens the service authenticates.

use std::{collections::HashSet, time::Duration};

use vicinity::grpc::pb::{self, Gender, GenderFilter};

use crate::{
    calls::list_request,
    details::{assert_invalid, assert_reason},
    helpers::{Backend, TestApp, on_both_backends, spawn_app_on},
    places::{HOME, crowd},
};

const CROWD: usize = 60;

/// The viewer at HOME and [`CROWD`] others within 2.5 km, on `backend`.
async fn crowded_app(backend: Backend) -> TestApp {
    app_with_crowd(backend, 2_500.0).await
}

/// The viewer at HOME and [`CROWD`] others within 40 m (one or two cells, so every cell read
/// is cut short by the page).
async fn dense_app(backend: Backend) -> TestApp {
    app_with_crowd(backend, 40.0).await
}

/// The viewer at HOME and [`CROWD`] others within `radius_m`, alternately female and male.
async fn app_with_crowd(backend: Backend, radius_m: f64) -> TestApp {
    let app = spawn_app_on(backend).await;
    app.join("viewer", HOME, Gender::Male).await;
    for (i, at) in crowd(HOME, CROWD, radius_m).into_iter().enumerate() {
        let gender = if i % 2 == 0 {
            Gender::Female
        } else {
            Gender::Male
        };
        app.join(&format!("user-{i:02}"), at, gender).await;
    }
    app
}

/// Every page of `request`, following next_page_token until it is empty.
async fn all_pages(
    app: &TestApp,
    mut request: pb::ListNearbyRequest,
) -> Vec<pb::ListNearbyResponse> {
    let mut pages = Vec::new();
    loop {
        let page = app.list_with(request.clone()).await.unwrap();
        let next = page.next_page_token.clone();
        pages.push(page);
        assert!(pages.len() <= CROWD, "the pages never end");
        if next.is_empty() {
            return pages;
        }
        request.page_token = next;
    }
}

fn limited(viewer: &str, limit: u32) -> pb::ListNearbyRequest {
    pb::ListNearbyRequest {
        limit,
        ..list_request(viewer)
    }
}

/// Every page the viewer is served of the women around, `limit` at a time.
async fn female_pages(app: &TestApp, limit: u32) -> Vec<pb::ListNearbyResponse> {
    let mut request = limited("viewer", limit);
    request.set_gender_filter(GenderFilter::Female);
    all_pages(app, request).await
}

on_both_backends!(following_page_tokens_lists_everyone_else_exactly_once_in_band_order);
async fn following_page_tokens_lists_everyone_else_exactly_once_in_band_order(backend: Backend) {
    let app = crowded_app(backend).await;

    let pages = all_pages(&app, limited("viewer", 7)).await;

    assert_eq!(pages.len(), CROWD.div_ceil(7));
    assert!(pages.iter().all(|p| p.users.len() <= 7));
    let users: Vec<_> = pages.iter().flat_map(|p| p.users.iter()).collect();
    let ids: HashSet<_> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(users.len(), CROWD, "a user repeated or skipped");
    assert_eq!(ids.len(), CROWD, "a user repeated");
    assert!(!ids.contains("viewer"), "the viewer listed to themselves");
    let bands: Vec<u32> = users.iter().map(|u| u.distance_m).collect();
    assert!(bands.is_sorted(), "bands out of order: {bands:?}");
    assert!(bands.iter().any(|&b| b < 1_000) && bands.iter().any(|&b| b > 1_000));
}

on_both_backends!(pages_follow_the_first_query_and_repeat_it_exactly);
async fn pages_follow_the_first_query_and_repeat_it_exactly(backend: Backend) {
    let app = crowded_app(backend).await;
    app.keep_one_order_epoch_for(Duration::from_secs(5)).await;

    let paged: Vec<String> = all_pages(&app, limited("viewer", 7))
        .await
        .into_iter()
        .flat_map(|p| p.users.into_iter().map(|u| u.user_id))
        .collect();
    let whole = app.list_with(limited("viewer", 100)).await.unwrap();

    let at_once: Vec<String> = whole.users.into_iter().map(|u| u.user_id).collect();
    assert_eq!(paged, at_once);
    assert!(whole.next_page_token.is_empty());
}

on_both_backends!(pages_under_a_gender_filter_hold_only_that_gender);
async fn pages_under_a_gender_filter_hold_only_that_gender(backend: Backend) {
    let app = crowded_app(backend).await;

    let pages = female_pages(&app, 7).await;

    let users: Vec<_> = pages.iter().flat_map(|p| p.users.iter()).collect();
    assert_eq!(users.len(), CROWD / 2);
    assert!(users.iter().all(|u| u.gender() == Gender::Female));
}

on_both_backends!(a_tampered_page_token_is_refused_naming_page_token);
async fn a_tampered_page_token_is_refused_naming_page_token(backend: Backend) {
    let app = crowded_app(backend).await;
    let first = app.list_with(limited("viewer", 7)).await.unwrap();
    let token = first.next_page_token;
    assert!(!token.is_empty());

    // Flip one hex digit in the middle (the cursor), then at the end (the MAC).
    for at in [token.len() / 2, token.len() - 1] {
        let mut tampered = token.clone().into_bytes();
        tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
        let mut request = limited("viewer", 7);
        request.page_token = String::from_utf8(tampered).unwrap();
        assert_invalid(app.list_with(request).await, "page_token");
    }
    for junk in ["not-a-token", "00", &token[..token.len() - 2]] {
        let mut request = limited("viewer", 7);
        request.page_token = junk.to_owned();
        assert_invalid(app.list_with(request).await, "page_token");
    }
}

on_both_backends!(a_page_token_works_only_for_its_viewer_and_filters);
async fn a_page_token_works_only_for_its_viewer_and_filters(backend: Backend) {
    let app = crowded_app(backend).await;
    let first = app.list_with(limited("viewer", 7)).await.unwrap();

    let mut someone_else = limited("user-00", 7);
    someone_else.page_token = first.next_page_token.clone();
    assert_invalid(app.list_with(someone_else).await, "page_token");

    let mut other_filter = limited("viewer", 7);
    other_filter.set_gender_filter(GenderFilter::Male);
    other_filter.page_token = first.next_page_token.clone();
    assert_invalid(app.list_with(other_filter).await, "page_token");

    let mut other_radius = limited("viewer", 7);
    other_radius.max_distance_m = 1_000;
    other_radius.page_token = first.next_page_token;
    assert_invalid(app.list_with(other_radius).await, "page_token");
}

fn ids_of(pages: &[pb::ListNearbyResponse]) -> Vec<&str> {
    pages
        .iter()
        .flat_map(|p| p.users.iter().map(|u| u.user_id.as_str()))
        .collect()
}

on_both_backends!(a_gender_filter_in_a_crowded_cell_still_fills_every_page);
async fn a_gender_filter_in_a_crowded_cell_still_fills_every_page(backend: Backend) {
    let app = dense_app(backend).await;

    let pages = female_pages(&app, 5).await;

    let ids = ids_of(&pages);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), CROWD / 2, "a user repeated or skipped");
    assert_eq!(unique.len(), CROWD / 2);
    assert_eq!(
        pages.len(),
        (CROWD / 2).div_ceil(5),
        "a page came back short"
    );
    assert!(
        pages
            .iter()
            .flat_map(|p| &p.users)
            .all(|u| u.gender() == Gender::Female)
    );
}

on_both_backends!(a_long_block_list_in_a_crowded_cell_still_fills_every_page);
async fn a_long_block_list_in_a_crowded_cell_still_fills_every_page(backend: Backend) {
    const SHOWN: usize = 10;
    let app = dense_app(backend).await;
    let mut request = limited("viewer", 4);
    request.exclude_user_ids = (SHOWN..CROWD).map(|i| format!("user-{i:02}")).collect();

    let pages = all_pages(&app, request).await;

    let ids = ids_of(&pages);
    let expected: HashSet<String> = (0..SHOWN).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(ids.len(), SHOWN, "a user repeated or skipped");
    assert_eq!(
        ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        expected
    );
    assert_eq!(pages.len(), SHOWN.div_ceil(4), "a page came back short");
}

// A token pins the cell its first page was listed around; once the viewer
// has moved to another cell it would keep listing around where they were, so it is refused
// as expired (the client starts again from where the viewer is now).
on_both_backends!(a_page_token_from_before_the_viewer_moved_is_expired);
async fn a_page_token_from_before_the_viewer_moved_is_expired(backend: Backend) {
    let app = crowded_app(backend).await;
    let first = app.list_with(limited("viewer", 7)).await.unwrap();
    assert!(!first.next_page_token.is_empty());
    let mut again = limited("viewer", 7);
    again.page_token = first.next_page_token.clone();
    app.list_with(again.clone())
        .await
        .expect("the token works where it was issued");

    app.update("viewer", HOME.offset_m(1_500.0, 0.0), Gender::Male)
        .await
        .expect("the viewer moves 1.5 km");

    let moved = app.list_with(again).await;
    assert_reason(moved, tonic::Code::InvalidArgument, "PAGE_TOKEN_EXPIRED");
}

/// Memory only: the store's clock has to pass two order epochs (30 minutes). An expired token
/// has its own reason, so a client knows to start again rather than suspect its own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_page_token_has_its_own_reason() {
    let app = crowded_app(Backend::Memory).await;
    let first = app.list_with(limited("viewer", 7)).await.unwrap();
    assert!(!first.next_page_token.is_empty());

    app.advance(Duration::from_secs(31 * 60));

    let mut request = limited("viewer", 7);
    request.page_token = first.next_page_token;
    let expired = app.list_with(request).await;
    assert_reason(expired, tonic::Code::InvalidArgument, "PAGE_TOKEN_EXPIRED");
    app.list_with(limited("viewer", 7))
        .await
        .expect("the first page again");
}

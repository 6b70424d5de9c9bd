"""The README's grpcurl session, walked through Python stubs generated from the proto: consent,
update, list with pagination, errors read from their ErrorInfo, export, clear, withdraw,
forget, shake. Every error is judged by its code and the ErrorInfo reason in the status
details (grpc-status-details-bin), never by its message text.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from status_details import SEEN_REASONS, expect_failure

NOTICE = "2026-11"
T = 10  # seconds: the deadline of every call here
C = grpc.StatusCode


# --------------------------------------------------------------------------------------------
# Helpers


def grant(api, pb, user_id, feature=None):
    feature = feature or pb.FEATURE_PEOPLE_NEARBY
    return api.consent.GrantConsent(
        pb.GrantConsentRequest(user_id=user_id, feature=feature, notice_version=NOTICE,
                               source="python-tests"),
        timeout=T,
    )


def update(api, pb, user_id, lat, lng, gender=0):
    return api.nearby.UpdateLocation(
        pb.UpdateLocationRequest(user_id=user_id, location=pb.Location(latitude=lat, longitude=lng),
                                 gender=gender),
        timeout=T,
    )


def list_all(api, pb, viewer, limit, **filters):
    """Every page of the viewer's list, following next_page_token to the end (bounded)."""
    pages = []
    token = ""
    for _ in range(50):
        page = api.nearby.ListNearby(
            pb.ListNearbyRequest(user_id=viewer, limit=limit, page_token=token, **filters),
            timeout=T,
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages
    pytest.fail("ListNearby never returned an empty next_page_token")


def listed(api, pb, viewer, **filters):
    return [u.user_id for p in list_all(api, pb, viewer, limit=100, **filters) for u in p.users]


def metres(a, b):
    """Great-circle distance between two (lat, lng) pairs."""
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def seconds(ts):
    return ts.seconds + ts.nanos / 1e9


# --------------------------------------------------------------------------------------------
# The README's session


def test_readme_session(api, pb, user, place):
    """The four grpcurl calls of the README, in order."""
    alice, bob = user("alice"), user("bob")
    record = grant(api, pb, alice)
    assert record.state == pb.CONSENT_STATE_GRANTED
    update(api, pb, alice, *place, gender=pb.GENDER_FEMALE)
    expect_failure(api.nearby.ListNearby, pb.ListNearbyRequest(user_id=bob, limit=20),
                   C.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert [loc.feature for loc in export.locations] == [pb.FEATURE_PEOPLE_NEARBY]


# --------------------------------------------------------------------------------------------
# Consent


def test_grant_is_recorded_once_and_get_consent_shows_every_feature(api, pb, user):
    alice = user("alice")
    before = time.time()
    first = grant(api, pb, alice)
    assert first.user_id == alice
    assert first.feature == pb.FEATURE_PEOPLE_NEARBY
    assert first.notice_version == NOTICE and first.source == "python-tests"
    assert first.consent_id
    assert before - 5 <= seconds(first.changed_at) <= time.time() + 5
    # Granting again with the same notice is a no-op: same event, no new history.
    again = grant(api, pb, alice)
    assert again.consent_id == first.consent_id

    got = api.consent.GetConsent(pb.GetConsentRequest(user_id=alice), timeout=T)
    # One record per feature, in Feature order; Shake never decided.
    assert [(r.feature, r.state) for r in got.current] == [
        (pb.FEATURE_PEOPLE_NEARBY, pb.CONSENT_STATE_GRANTED),
        (pb.FEATURE_SHAKE, pb.CONSENT_STATE_UNSPECIFIED),
    ]
    assert not got.current[1].consent_id
    assert [h.consent_id for h in got.history] == [first.consent_id]


def test_grant_needs_a_feature_and_a_notice(api, pb, user):
    alice = user("alice")
    got = expect_failure(
        api.consent.GrantConsent,
        pb.GrantConsentRequest(user_id=alice, notice_version=NOTICE),
        C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "feature" in got.violations()
    got = expect_failure(
        api.consent.GrantConsent,
        pb.GrantConsentRequest(user_id=alice, feature=pb.FEATURE_SHAKE),
        C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "notice_version" in got.violations()
    got = expect_failure(
        api.consent.GrantConsent,
        pb.GrantConsentRequest(user_id="not a user id", feature=pb.FEATURE_SHAKE,
                               notice_version=NOTICE),
        C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert list(got.violations()) == ["user_id"]


# --------------------------------------------------------------------------------------------
# People Nearby


def test_update_location_answers_its_deadlines(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    now = time.time()
    answer = update(api, pb, alice, *place)
    # Retention defaults to one hour; visible until purge_at unless the user leaves.
    assert now < seconds(answer.purge_at) <= now + 3600 + 5
    assert now < seconds(answer.visible_until) <= seconds(answer.purge_at)


def test_list_nearby_pages_through_every_user_once_without_a_position(api, pb, user, place):
    lat, lng = place
    viewer = user("viewer")
    grant(api, pb, viewer)
    update(api, pb, viewer, lat, lng)
    others = {}
    for i in range(7):
        name = user(f"u{i}")
        gender = (pb.GENDER_FEMALE, pb.GENDER_MALE, pb.GENDER_UNSPECIFIED)[i % 3]
        grant(api, pb, name)
        # 0 to about 900 m north of the viewer.
        update(api, pb, name, lat + 0.0013 * i, lng, gender=gender)
        others[name] = gender

    pages = list_all(api, pb, viewer, limit=3)
    assert len(pages) >= 3, "7 users at 3 a page"
    assert all(len(p.users) <= 3 for p in pages)
    seen = [u for p in pages for u in p.users]
    ids = [u.user_id for u in seen]
    assert sorted(ids) == sorted(others), "every other user exactly once, never the viewer"
    for u in seen:
        assert u.gender == others[u.user_id]
        # A band: 100 m steps to 1 km, within the default radius (5 km).
        assert 0 < u.distance_m <= 5000 and u.distance_m % 100 == 0, u
        # last_seen rounded down to the minute.
        assert u.last_seen.seconds % 60 == 0 and u.last_seen.nanos == 0, u
        assert u.last_seen.seconds <= time.time()
    bands = [u.distance_m for u in seen]
    assert bands == sorted(bands), "nearest band first across pages"

    # The same list in one page, and narrowed by gender and a block list.
    assert sorted(listed(api, pb, viewer)) == sorted(others)
    women = {n for n, g in others.items() if g == pb.GENDER_FEMALE}
    assert set(listed(api, pb, viewer, gender_filter=pb.GENDER_FILTER_FEMALE)) == women
    blocked = sorted(others)[:2]
    assert set(listed(api, pb, viewer, exclude_user_ids=blocked)) == set(others) - set(blocked)


def test_a_list_answer_has_no_coordinates_anywhere(pb):
    """NearbyUser carries a band, never a position: no Location and no latitude/longitude
    field anywhere in ListNearbyResponse, however deep."""
    assert [f.name for f in pb.NearbyUser.DESCRIPTOR.fields] == [
        "user_id", "distance_m", "gender", "last_seen"]
    stack, visited = [pb.ListNearbyResponse.DESCRIPTOR], set()
    while stack:
        message = stack.pop()
        if message.full_name in visited:
            continue
        visited.add(message.full_name)
        for f in message.fields:
            assert f.name not in {"latitude", "longitude", "location"}, (message.full_name, f.name)
            if f.message_type is not None:
                assert f.message_type.full_name != "vicinity.v1.Location"
                stack.append(f.message_type)


def test_listing_needs_consent_then_an_own_location(api, pb, user, place):
    """README: bob's ListNearby fails until bob consents and updates."""
    bob = user("bob")
    request = pb.ListNearbyRequest(user_id=bob, limit=20)
    got = expect_failure(api.nearby.ListNearby, request, C.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    assert dict(got.info.metadata) == {"feature": "FEATURE_PEOPLE_NEARBY"}
    assert got.retry is None and got.bad_request is None
    # Nothing is stored without consent either.
    expect_failure(api.nearby.UpdateLocation,
                   pb.UpdateLocationRequest(user_id=bob, location=pb.Location(
                       latitude=place[0], longitude=place[1])),
                   C.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    grant(api, pb, bob)
    expect_failure(api.nearby.ListNearby, request, C.FAILED_PRECONDITION, "LOCATION_REQUIRED")
    update(api, pb, bob, *place)
    assert list(api.nearby.ListNearby(request, timeout=T).users) == []


def test_a_bad_latitude_is_refused_with_a_bad_request_naming_it(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    for lat in (91.0, -90.5, math.nan, math.inf):
        got = expect_failure(
            api.nearby.UpdateLocation,
            pb.UpdateLocationRequest(user_id=alice, location=pb.Location(latitude=lat,
                                                                         longitude=place[1])),
            C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert list(got.violations()) == ["location.latitude"], got
        assert got.retry is None
    got = expect_failure(api.nearby.UpdateLocation, pb.UpdateLocationRequest(user_id=alice),
                         C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert list(got.violations()) == ["location"]
    got = expect_failure(api.nearby.ListNearby,
                         pb.ListNearbyRequest(user_id=alice, max_distance_m=50_001),
                         C.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert list(got.violations()) == ["max_distance_m"]
    # Nothing was written.
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert list(export.locations) == []


def test_a_limit_above_the_maximum_is_coerced_not_refused(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    update(api, pb, alice, *place)
    api.nearby.ListNearby(pb.ListNearbyRequest(user_id=alice, limit=1_000_000), timeout=T)


def test_page_tokens_are_bound_to_their_request(api, pb, user, place):
    lat, lng = place
    viewer, other = user("viewer"), user("other")
    for i, name in enumerate([viewer, other] + [user(f"u{i}") for i in range(3)]):
        grant(api, pb, name)
        update(api, pb, name, lat + 0.001 * i, lng)
    first = api.nearby.ListNearby(pb.ListNearbyRequest(user_id=viewer, limit=1), timeout=T)
    token = first.next_page_token
    assert token

    def refused(request):
        got = expect_failure(api.nearby.ListNearby, request, C.INVALID_ARGUMENT,
                             "PAGE_TOKEN_INVALID")
        assert list(got.violations()) == ["page_token"]

    refused(pb.ListNearbyRequest(user_id=viewer, limit=1, page_token="forged"))
    # One character changed (authenticated: any change is refused).
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    refused(pb.ListNearbyRequest(user_id=viewer, limit=1, page_token=flipped))
    # Another viewer's, or under other filters.
    refused(pb.ListNearbyRequest(user_id=other, limit=1, page_token=token))
    refused(pb.ListNearbyRequest(user_id=viewer, limit=1, page_token=token,
                                 gender_filter=pb.GENDER_FILTER_MALE))
    # The token itself still works.
    api.nearby.ListNearby(pb.ListNearbyRequest(user_id=viewer, limit=1, page_token=token),
                          timeout=T)


def test_an_implausible_jump_changes_nothing(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    update(api, pb, alice, *place)
    before = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    # 5 degrees of latitude (about 550 km) at once.
    expect_failure(api.nearby.UpdateLocation,
                   pb.UpdateLocationRequest(user_id=alice, location=pb.Location(
                       latitude=place[0] + 5, longitude=place[1])),
                   C.FAILED_PRECONDITION, "IMPLAUSIBLE_JUMP")
    after = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert after.locations[0].location == before.locations[0].location


def test_a_request_over_the_size_limit_is_resource_exhausted_without_retry_info(api, pb, user):
    got = expect_failure(
        api.consent.GrantConsent,
        pb.GrantConsentRequest(user_id=user("alice"), feature=pb.FEATURE_PEOPLE_NEARBY,
                               notice_version="x" * 300_000),
        C.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert got.retry is None, "not retryable as is"


def test_a_rate_limit_says_how_long_to_wait(start_server, pb, user, place):
    """A server of its own with the list rate back at two a minute."""
    from vicinity.v1 import vicinity_pb2_grpc as rpc

    server = start_server("--list-rate", "2/1m")
    with grpc.insecure_channel(server.target) as channel:
        consent, nearby = rpc.ConsentServiceStub(channel), rpc.PeopleNearbyStub(channel)
        alice = user("alice")
        consent.GrantConsent(pb.GrantConsentRequest(
            user_id=alice, feature=pb.FEATURE_PEOPLE_NEARBY, notice_version=NOTICE), timeout=T)
        nearby.UpdateLocation(pb.UpdateLocationRequest(
            user_id=alice, location=pb.Location(latitude=place[0], longitude=place[1])),
            timeout=T)
        request = pb.ListNearbyRequest(user_id=alice)
        nearby.ListNearby(request, timeout=T)
        nearby.ListNearby(request, timeout=T)
        got = expect_failure(nearby.ListNearby, request, C.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert dict(got.info.metadata) == {"limit": "lists"}
        assert got.retry is not None
        assert 0 < got.retry_delay_s <= 30, got.retry


# --------------------------------------------------------------------------------------------
# Privacy: export, clear, leave, withdraw, forget


def test_export_shows_the_stored_cell_not_the_reported_point(api, pb, user, place):
    alice = user("alice")
    record = grant(api, pb, alice)
    reported = (place[0] + 0.00037, place[1] + 0.00041)
    update(api, pb, alice, *reported, gender=pb.GENDER_FEMALE)
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert export.user_id == alice
    assert [c.consent_id for c in export.consent_history] == [record.consent_id]
    assert export.consents[0].state == pb.CONSENT_STATE_GRANTED
    [stored] = export.locations
    assert stored.feature == pb.FEATURE_PEOPLE_NEARBY
    assert stored.gender == pb.GENDER_FEMALE and not stored.left
    # The snapping cell's centre, as precise as the cell (about 200 m at resolution 9).
    assert 50 <= stored.precision_m <= 1000
    centre = (stored.location.latitude, stored.location.longitude)
    assert centre != reported
    assert metres(centre, reported) <= stored.precision_m
    assert seconds(stored.last_active) <= seconds(stored.visible_until) <= seconds(stored.purge_at)
    assert list(export.shake_history) == []


def test_clear_location_purges_at_once_and_hides_the_user(api, pb, user, place):
    alice, bob = user("alice"), user("bob")
    for name in (alice, bob):
        grant(api, pb, name)
        update(api, pb, name, *place)
    assert listed(api, pb, bob) == [alice]

    cleared = api.privacy.ClearLocation(pb.ClearLocationRequest(user_id=alice), timeout=T)
    assert cleared.purged_entries == 1
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert list(export.locations) == []
    assert listed(api, pb, bob) == []
    # Consent is unchanged; alice is simply out of the feature.
    assert export.consents[0].state == pb.CONSENT_STATE_GRANTED
    expect_failure(api.nearby.ListNearby, pb.ListNearbyRequest(user_id=alice),
                   C.FAILED_PRECONDITION, "LOCATION_REQUIRED")
    # Idempotent.
    again = api.privacy.ClearLocation(pb.ClearLocationRequest(user_id=alice), timeout=T)
    assert again.purged_entries == 0


def test_leave_nearby_marks_the_entry_left_until_its_purge(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    update(api, pb, alice, *place)
    left = api.nearby.LeaveNearby(pb.LeaveNearbyRequest(user_id=alice), timeout=T)
    assert left.HasField("purge_at")
    [stored] = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T).locations
    assert stored.left
    assert seconds(stored.purge_at) == pytest.approx(seconds(left.purge_at), abs=0.001)


def test_withdrawing_consent_purges_and_hides(api, pb, user, place):
    alice, bob = user("alice"), user("bob")
    for name in (alice, bob):
        grant(api, pb, name)
        update(api, pb, name, *place)
    withdrawn = api.consent.WithdrawConsent(
        pb.WithdrawConsentRequest(user_id=alice, feature=pb.FEATURE_PEOPLE_NEARBY), timeout=T)
    assert withdrawn.record.state == pb.CONSENT_STATE_WITHDRAWN
    assert withdrawn.purged_entries == 1
    assert listed(api, pb, bob) == []
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert list(export.locations) == []
    assert [h.state for h in export.consent_history] == [
        pb.CONSENT_STATE_GRANTED, pb.CONSENT_STATE_WITHDRAWN]
    got = expect_failure(api.nearby.ListNearby, pb.ListNearbyRequest(user_id=alice),
                         C.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    assert got.info.metadata["feature"] == "FEATURE_PEOPLE_NEARBY"


def test_forget_user_deletes_everything_consent_history_included(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)
    grant(api, pb, alice, pb.FEATURE_SHAKE)
    update(api, pb, alice, *place)
    forgotten = api.privacy.ForgetUser(pb.ForgetUserRequest(user_id=alice), timeout=T)
    assert forgotten.purged_entries == 1
    assert forgotten.consent_events_deleted == 2
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert list(export.locations) == [] and list(export.consent_history) == []
    assert {c.state for c in export.consents} == {pb.CONSENT_STATE_UNSPECIFIED}


# --------------------------------------------------------------------------------------------
# Shake


def test_two_shakers_are_paired_and_see_each_other_in_their_history(api, pb, user, place):
    alice, bob = user("alice"), user("bob")
    for name in (alice, bob):
        grant(api, pb, name, pb.FEATURE_SHAKE)

    def shake(name, lat):
        return api.shake.Shake(pb.ShakeRequest(
            user_id=name, location=pb.Location(latitude=lat, longitude=place[1])), timeout=T)

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(shake, alice, place[0])
        time.sleep(0.2)  # alice waits; bob arrives within her window
        b = pool.submit(shake, bob, place[0] + 0.002)
        a, b = a.result(timeout=T), b.result(timeout=T)
    assert a.WhichOneof("result") == b.WhichOneof("result") == "match"
    assert (a.match.user_id, b.match.user_id) == (bob, alice)
    assert a.match.distance_m == b.match.distance_m and a.match.distance_m % 100 == 0

    history = api.shake.ShakeHistory(pb.ShakeHistoryRequest(user_id=bob), timeout=T)
    assert [m.user_id for m in history.matches] == [alice]
    export = api.privacy.ExportMyData(pb.ExportMyDataRequest(user_id=alice), timeout=T)
    assert [m.user_id for m in export.shake_history] == [bob]
    # Both parties: when alice clears Shake, bob's history no longer shows her.
    api.privacy.ClearLocation(pb.ClearLocationRequest(user_id=alice, feature=pb.FEATURE_SHAKE),
                              timeout=T)
    history = api.shake.ShakeHistory(pb.ShakeHistoryRequest(user_id=bob), timeout=T)
    assert list(history.matches) == []
    assert api.shake.LeaveShake(pb.LeaveShakeRequest(user_id=bob), timeout=T) is not None


def test_a_lone_shake_ends_with_no_match_before_the_deadline(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice, pb.FEATURE_SHAKE)
    start = time.monotonic()
    answer = api.shake.Shake(pb.ShakeRequest(
        user_id=alice, location=pb.Location(latitude=place[0], longitude=place[1])), timeout=1.5)
    # The 3 s window is cut to the deadline, less the server's margin for the answer.
    assert answer.WhichOneof("result") == "no_match"
    assert time.monotonic() - start < 1.5


def test_shaking_needs_shake_consent(api, pb, user, place):
    alice = user("alice")
    grant(api, pb, alice)  # People Nearby only
    got = expect_failure(api.shake.Shake, pb.ShakeRequest(
        user_id=alice, location=pb.Location(latitude=place[0], longitude=place[1])),
        C.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    assert dict(got.info.metadata) == {"feature": "FEATURE_SHAKE"}


# --------------------------------------------------------------------------------------------
# API keys


def test_api_keys_and_scopes(start_server, pb, user, place, tmp_path):
    """A server of its own with keys: none, an unknown one and a wrong scope are refused, each
    with its reason; health needs no key (the fixture's readiness check used none)."""
    from vicinity.v1 import vicinity_pb2_grpc as rpc

    keys = tmp_path / "keys"
    keys.write_text("backend app app-key-0123456789abcdef\n"
                    "support ops ops-key-0123456789abcdef\n")
    server = start_server("--api-keys", str(keys))
    app = [("authorization", "Bearer app-key-0123456789abcdef")]
    ops = [("authorization", "Bearer ops-key-0123456789abcdef")]
    with grpc.insecure_channel(server.target) as channel:
        consent, privacy = rpc.ConsentServiceStub(channel), rpc.PrivacyServiceStub(channel)
        alice = user("alice")
        request = pb.GrantConsentRequest(user_id=alice, feature=pb.FEATURE_PEOPLE_NEARBY,
                                         notice_version=NOTICE)
        expect_failure(consent.GrantConsent, request, C.UNAUTHENTICATED, "API_KEY_MISSING")
        expect_failure(consent.GrantConsent, request, C.UNAUTHENTICATED, "API_KEY_INVALID",
                       metadata=[("authorization", "Bearer not-a-key-0123456789")])
        consent.GrantConsent(request, metadata=app, timeout=T)
        # Granting is the user's own act: not for an ops key. Forgetting is for ops only.
        expect_failure(consent.GrantConsent, request, C.PERMISSION_DENIED, "SCOPE_DENIED",
                       metadata=ops)
        forget = pb.ForgetUserRequest(user_id=alice)
        expect_failure(privacy.ForgetUser, forget, C.PERMISSION_DENIED, "SCOPE_DENIED",
                       metadata=app)
        assert privacy.ForgetUser(forget, metadata=ops, timeout=T).consent_events_deleted == 1


# --------------------------------------------------------------------------------------------
# Reasons


# Every reason the tests above trigger (a run of the whole file sees each).
TRIGGERED = {
    "CONSENT_REQUIRED", "LOCATION_REQUIRED", "INVALID_ARGUMENT", "PAGE_TOKEN_INVALID",
    "IMPLAUSIBLE_JUMP", "REQUEST_TOO_LARGE", "RATE_LIMITED", "API_KEY_MISSING",
    "API_KEY_INVALID", "SCOPE_DENIED",
}


def test_every_reason_seen_is_a_declared_error_reason(pb, request):
    """The ErrorInfo reason is the ErrorReason value's name without its prefix, so a client
    compares it with constants from the generated module. Runs last in this file."""
    for reason in TRIGGERED | SEEN_REASONS:
        value = pb.ErrorReason.Value(f"ERROR_REASON_{reason}")
        assert value != pb.ERROR_REASON_UNSPECIFIED
        assert pb.ErrorReason.Name(value).removeprefix("ERROR_REASON_") == reason
    filtered = request.config.getoption("keyword") or request.config.getoption("markexpr")
    if not filtered and request.session.testsfailed == 0:
        assert SEEN_REASONS >= TRIGGERED, TRIGGERED - SEEN_REASONS

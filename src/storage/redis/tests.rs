//! The conformance suite on a private single Redis and on a private 3+3 Redis Cluster.

use std::{sync::Arc, time::Duration};

use h3o::{CellIndex, LatLng};

use super::{
    RedisConsentStore, RedisStore, Target,
    cells::{Fetched, decode_cells},
};
use crate::{
    domain::{
        ConsentRecord, Coordinates, Feature, Gender, Location, NoticeVersion, Retention, SnapGrid,
        Source, Timestamp, UserId,
        limits::Rate,
        nearby::{NearbyRequest, PageToken, Pseudonyms, Secret, Tickets},
        shake::PendingShake,
        user::GenderFilter,
    },
    storage::{
        ConsentStore, LocationStore, NewShake, Position, ShakeOutcome, ShakeStore, StoreError,
        StoreErrorKind, UpdateLimits,
        conformance::{Fixture, ProbeFuture},
    },
};
use vicinity_testing::redis::{RedisCluster, RedisServer};

/// Counts, on one node, every member of a cell set and every user record: what is physically
/// held, including entries past their deadline. (KEYS is fine in a test of a few keys.)
const COUNT_ENTRIES: &str = "#!lua flags=allow-cross-slot-keys,no-writes
local n = 0
for _, k in ipairs(redis.call('KEYS', 'vc:*')) do
  if string.sub(k, 1, 5) == 'vc:n:' and string.find(k, '}:c:', 1, true) then
    n = n + redis.call('ZCARD', k)
  elseif string.sub(k, 1, 5) == 'vc:u:' or k == 'vc:s:{shake}:p' then
    n = n + redis.call('HLEN', k)
  elseif string.find(k, '{shake}:m:', 1, true) then
    n = n + redis.call('LLEN', k)
  elseif string.find(k, '{shake}:h:', 1, true) or string.find(k, '{shake}:n:', 1, true) then
    n = n + redis.call('ZCARD', k)
  end
end
return n";

fn count_on(ports: Vec<u16>) -> ProbeFuture {
    Box::pin(async move {
        let mut total = 0;
        for port in ports {
            let url = format!("redis://127.0.0.1:{port}/");
            let fail = |e| super::conn::store_error(e, "counting");
            let client = redis::Client::open(url).map_err(fail)?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(fail)?;
            let n: usize = redis::cmd("EVAL")
                .arg(COUNT_ENTRIES)
                .arg(0)
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            total += n;
        }
        Ok(total)
    })
}

/// A location store on `target` with the default grid, retention and the tests' secret.
async fn store_on(target: &Target, timeout: Duration) -> Result<RedisStore, StoreError> {
    store_with_secret(target, timeout, Secret::from_bytes([4; 32])).await
}

/// [`store_on`] with its own order `secret`.
async fn store_with_secret(
    target: &Target,
    timeout: Duration,
    secret: Secret,
) -> Result<RedisStore, StoreError> {
    RedisStore::connect(
        target,
        SnapGrid::default(),
        Tickets::new(&secret),
        Pseudonyms::new(&secret),
        Retention::default(),
        timeout,
    )
    .await
}

async fn fixture(target: Target, ports: Vec<u16>) -> Result<Fixture, StoreError> {
    let timeout = Duration::from_secs(2);
    let store = store_on(&target, timeout).await?;
    let store = Arc::new(store);
    let consents = Arc::new(RedisConsentStore::connect(&target, timeout, 1024).await?);
    let sweeper: Arc<dyn LocationStore> = store.clone();
    tokio::spawn(async move {
        loop {
            let _ = sweeper.purge_expired().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(Fixture {
        locations: store.clone(),
        consents,
        shakes: store.clone(),
        limits: store,
        advance: Box::new(|by| Box::pin(tokio::time::sleep(by))),
        physical_entries: Box::new(move || count_on(ports.clone())),
        sweep_bound: Duration::from_secs(5),
    })
}

/// A private single Redis, for one conformance check.
async fn single_fixture() -> (Fixture, RedisServer) {
    let server = RedisServer::start().expect("redis-server starts");
    let target = Target::single(server.url());
    let fx = fixture(target, vec![server.port()])
        .await
        .expect("connects");
    (fx, server)
}

/// A private 3+3 Redis Cluster, for one conformance check.
async fn cluster_fixture() -> (Fixture, RedisCluster) {
    let cluster = RedisCluster::start(3, 1).expect("cluster starts");
    let ports = cluster.masters().iter().map(|m| m.port()).collect();
    let fx = fixture(Target::cluster(cluster.urls()), ports)
        .await
        .expect("connects");
    (fx, cluster)
}

mod conformance_on_a_single_redis {
    crate::storage::conformance::conformance_tests!(super::single_fixture);
}

mod conformance_on_a_redis_cluster {
    crate::storage::conformance::conformance_tests!(super::cluster_fixture);
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_as_unavailable() {
    let mut server = RedisServer::start().expect("redis-server starts");
    let target = Target::single(server.url());
    let store = store_on(&target, Duration::from_secs(1))
        .await
        .expect("connects");
    server.kill().expect("kill");
    let started = std::time::Instant::now();
    let error = store.now().await.expect_err("redis is down");
    assert!(matches!(
        error.kind,
        StoreErrorKind::Unavailable | StoreErrorKind::Timeout
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    server.restart().expect("restart");
    let mut recovered = false;
    for _ in 0..40 {
        if store.now().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store reconnects by itself");
}

/// An error the store answers that is not on the list of those that pass
/// by themselves (here a script that fails at run time, as a bug in one would) is
/// `Internal`, which clients see as INTERNAL, not as STORE_UNAVAILABLE with "retry in 1 s";
/// a server that does not answer stays `Unavailable` (the test above).
#[tokio::test]
async fn a_script_that_fails_at_run_time_is_an_internal_fault() {
    let server = RedisServer::start().expect("redis-server starts");
    let target = Target::single(server.url());
    let conn = super::Conn::connect(&target, Duration::from_secs(2), "locations")
        .await
        .expect("connects");
    let failing = redis::Script::new("return redis.call('NO_SUCH_COMMAND')");
    let call = failing.prepare_invoke();
    let error = conn
        .script::<i64>("running a broken script", &call)
        .await
        .expect_err("the script fails");
    assert_eq!(error.kind, StoreErrorKind::Internal, "{error:?}");
    let nil_arithmetic = redis::Script::new("return nil + 1");
    let error = conn
        .script::<i64>("running a broken script", &nil_arithmetic.prepare_invoke())
        .await
        .expect_err("the script fails");
    assert_eq!(error.kind, StoreErrorKind::Internal, "{error:?}");
    let status = tonic::Status::from(crate::service::ServiceError::Store(error));
    assert_eq!(status.code(), tonic::Code::Internal);
}

/// A private 3+1 Redis Cluster and a location store on it whose calls time out after
/// `timeout`.
async fn on_a_cluster(timeout: Duration) -> (RedisCluster, RedisStore) {
    let cluster = RedisCluster::start(3, 1).expect("cluster starts");
    let store = store_on(&Target::cluster(cluster.urls()), timeout)
        .await
        .expect("connects");
    (cluster, store)
}

/// A People Nearby position of `name` at the centre of `cell`.
fn at_centre(cell: CellIndex, name: &str, gender: Gender) -> Position {
    Position {
        user_id: UserId::parse(name, "user_id").expect("valid"),
        feature: Feature::PeopleNearby,
        cell,
        gender,
    }
}

/// The cell these tests place users in (the crowd's viewer, `crowd-0`, among them).
fn home_cell() -> CellIndex {
    SnapGrid::default().snap(Coordinates::new(39.9, 116.4).expect("valid"))
}

/// Writes `crowd-0` .. `crowd-<count - 1>`, women, user `i` in `cell_of(i)`.
async fn write_crowd(store: &RedisStore, count: usize, cell_of: impl Fn(usize) -> CellIndex) {
    let writes = (0..count).map(|i| {
        store.upsert_now(
            at_centre(cell_of(i), &format!("crowd-{i}"), Gender::Female),
            Retention::default(),
        )
    });
    futures_util::future::try_join_all(writes)
        .await
        .expect("upserts");
}

/// 600 users in the viewer's own cell, 300 in a neighbouring one.
async fn crowd(store: &RedisStore) -> CellIndex {
    let home = home_cell();
    let neighbour = home.grid_disk::<Vec<_>>(1)[1];
    write_crowd(store, 900, |i| if i < 600 { home } else { neighbour }).await;
    home
}

/// Pages through the women near `viewer`, one per page, for at most `pages` pages: who was
/// listed, and the cursor each following page started after.
async fn women_pages(
    store: &RedisStore,
    viewer: &str,
    pages: usize,
) -> (Vec<String>, Vec<crate::domain::nearby::Cursor>) {
    let (mut seen, mut cursors, mut page) = (Vec::new(), Vec::new(), None);
    for _ in 0..pages {
        let mut ask = request(viewer, 1, page.take());
        ask.gender_filter = GenderFilter::Female;
        let result = store
            .nearby(&ask)
            .await
            .expect("nearby")
            .expect("own entry");
        seen.extend(result.page.hits.iter().map(|h| h.user_id.to_string()));
        let Some(cursor) = result.page.next else {
            break;
        };
        cursors.push(cursor.clone());
        page = Some(PageToken {
            epoch: result.epoch,
            viewer_cell: result.viewer_cell,
            cursor,
        });
    }
    (seen, cursors)
}

fn request(viewer: &str, limit: usize, page: Option<PageToken>) -> NearbyRequest {
    NearbyRequest {
        viewer: UserId::parse(viewer, "user_id").expect("valid"),
        max_distance_m: 5_000,
        limit,
        gender_filter: GenderFilter::Any,
        exclude: Default::default(),
        secret: Arc::new(Secret::from_bytes([4; 32])),
        page,
        shown: None,
    }
}

/// A private Redis and a store on it with the default grid and retention (dropping the server
/// kills it, so it is kept for as long as the store is used).
async fn single_store() -> (RedisServer, RedisStore) {
    let server = RedisServer::start().expect("redis-server starts");
    let store = store_on(&Target::single(server.url()), Duration::from_secs(5))
        .await
        .expect("connects");
    (server, store)
}

/// One read of `cells` for the first page of 20 `crowd-0` asks for around `home`, decoded: how
/// many members were read, and where the read stopped.
async fn read_cells(
    store: &RedisStore,
    home: CellIndex,
    cells: Vec<(CellIndex, u32)>,
) -> (usize, Option<(u32, u64)>) {
    let query = request("crowd-0", 20, None).query(home, Timestamp::from_millis(1_790_000_000_000));
    let (cells, reply) = store
        .fetch_partition(&store.conn, &query, cells)
        .await
        .expect("read");
    let mut fetched = Fetched::new();
    let stop = decode_cells(&cells, reply, Retention::default(), &mut fetched);
    (fetched.values().map(Vec::len).sum(), stop)
}

#[tokio::test]
async fn a_crowded_cell_is_read_only_as_far_as_the_page_needs() {
    let (_server, store) = single_store().await;
    let home = crowd(&store).await;
    let cells = vec![(home, 500), (home.grid_disk::<Vec<_>>(1)[1], 500)];
    let (read, _) = read_cells(&store, home, cells).await;
    // The window is sized for 1.5 times the 21 wanted (plus 8), over both cells together.
    assert!(read <= 4 * 21, "read {read} of 900 members");
    assert!(read > 20);
}

/// Pages through everyone `crowd-0` sees, 50 a page, asserting that nobody is listed twice
/// and that the order never goes back; returns who was listed.
async fn page_through_the_crowd(store: &RedisStore) -> std::collections::HashSet<UserId> {
    let (mut seen, mut page, mut last) = (std::collections::HashSet::new(), None, None);
    loop {
        let result = store
            .nearby(&request("crowd-0", 50, page))
            .await
            .expect("nearby");
        let result = result.expect("the viewer has an entry");
        for hit in &result.page.hits {
            assert!(
                seen.insert(hit.user_id.clone()),
                "{} listed twice",
                hit.user_id
            );
            let order = (hit.band_m, hit.key);
            assert!(last.is_none_or(|l| l < order), "out of order");
            last = Some(order);
        }
        let Some(cursor) = result.page.next else {
            return seen;
        };
        page = Some(PageToken {
            epoch: result.epoch,
            viewer_cell: result.viewer_cell,
            cursor,
        });
    }
}

#[tokio::test]
async fn pages_through_a_crowded_cell_list_everyone_once_in_order() {
    let (_server, store) = single_store().await;
    crowd(&store).await;
    let seen = page_through_the_crowd(&store).await;
    assert_eq!(seen.len(), 899, "everyone but the viewer, once");
}

/// The viewer `crowd-0` alone in `home`, one user in each of five neighbours and 600 in the
/// sixth: the density the read sees first (one member per cell) hides the crowd.
async fn hidden_crowd(store: &RedisStore) -> CellIndex {
    let home = home_cell();
    let ring: Vec<CellIndex> = home.grid_disk::<Vec<_>>(1).into_iter().skip(1).collect();
    write_crowd(store, 606, |i| match i {
        0 => home,
        1..=5 => ring[i - 1],
        _ => ring[5],
    })
    .await;
    home
}

#[tokio::test]
async fn a_crowd_in_a_sparse_ring_is_read_only_as_far_as_the_page_needs() {
    let (_server, store) = single_store().await;
    let home = hidden_crowd(&store).await;
    let mut cells = vec![(home, 0)];
    cells.extend(
        home.grid_disk::<Vec<_>>(1)
            .into_iter()
            .skip(1)
            .map(|c| (c, 500)),
    );
    let (read, stop) = read_cells(&store, home, cells).await;
    // 22 wanted (the page and one more, the viewer), 21 once the viewer's cell was read: the
    // ring is read through one window sized from its total, not cell by cell whole.
    assert!(read <= 4 * 22, "read {read} of 606 members");
    assert!(matches!(stop, Some((500, key)) if key < crate::domain::nearby::ORDER_SPACE));
    let seen = page_through_the_crowd(&store).await;
    assert_eq!(seen.len(), 605, "everyone but the viewer, once");
}

async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

#[tokio::test]
async fn scripts_name_cells_and_partitions_exactly_as_h3o_does() {
    let server = RedisServer::start().expect("redis-server starts");
    let mut conn = connection(&server).await;
    let body = format!(
        "{}return {{cell_hex(ARGV[1]), cell_hex(parent_of(ARGV[1], tonumber(ARGV[2])))}}",
        super::scripts::CELLS
    );
    let places = [
        (39.9, 116.4),
        (-33.86, 151.21),
        (64.1, -21.9),
        (0.0, 0.0),
        (-89.9, 10.0),
        (89.9, -170.0),
        (51.5, -0.12),
    ];
    for (lat, lng) in places {
        for res in [6, 7, 8, 9, 10, 15] {
            let res = h3o::Resolution::try_from(res).expect("resolution");
            let cell = LatLng::new(lat, lng).expect("valid").to_cell(res);
            let (hex, part): (String, String) = redis::cmd("EVAL")
                .arg(&body)
                .arg(0)
                .arg(u64::from(cell).to_be_bytes().as_slice())
                .arg(u8::from(super::keys::PARTITION_RES))
                .query_async(&mut conn)
                .await
                .expect("eval");
            assert_eq!(hex, cell.to_string());
            assert_eq!(part, super::keys::partition(cell).to_string());
        }
    }
}

/// An update that stays in the user's cell takes the script's short way (the old member's
/// keys are the write's own; a later deadline renews the member in place, without the
/// by-ticket sweep and the schedules' `ZADD LT`): the cell still holds exactly one member of
/// the user, named with the gender and the deadline the record now holds, whichever way the
/// deadline moved, and the cell's due entry, the partition's schedule and every key's TTL
/// still cover that deadline. The updates alternate between two nodes with different order
/// secrets, so each finds the old member under another ticket than its own: only the removal
/// of the member the record names takes it (the by-ticket sweep of `add_member` would miss it).
#[tokio::test]
async fn updates_within_a_cell_leave_one_member_as_the_record_says() {
    let (server, a) = single_store().await;
    let target = Target::single(server.url());
    let b = store_with_secret(&target, Duration::from_secs(5), Secret::from_bytes([5; 32]))
        .await
        .expect("connects");
    let mut conn = connection(&server).await;
    let user = UserId::parse("stayer", "user_id").expect("valid");
    assert_ne!(a.tickets.of(&user), b.tickets.of(&user));
    let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).expect("valid"));
    let key = super::keys::cell_key(cell);
    // The gender, the retention, and whether the update renews in place (a live record naming
    // the cell, a deadline no earlier): a renewal runs no by-ticket search (`ZRANGEBYSCORE`).
    let steps = [
        (Gender::Female, 600, false),
        (Gender::Female, 3600, true),
        (Gender::Male, 3600, true),
        (Gender::Male, 900, false),
    ];
    for (step, (gender, retention_s, renews)) in steps.into_iter().enumerate() {
        let store = if step % 2 == 0 { &a } else { &b };
        let position = Position {
            user_id: user.clone(),
            feature: Feature::PeopleNearby,
            cell,
            gender,
        };
        let retention = Retention::new(Duration::from_secs(retention_s)).expect("retention");
        let searches = || server.command_calls("zrangebyscore").expect("commandstats");
        let before = searches();
        let deadlines = store.upsert_now(position, retention).await.expect("upsert");
        assert_eq!(
            searches() == before,
            renews,
            "step {step} renews in place: {renews}"
        );
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .expect("zrange");
        assert_eq!(
            members,
            [super::keys::member(gender, deadlines.purge_at, &user)],
            "after {gender:?} for {retention_s} s"
        );
        let purge = deadlines.purge_at.as_millis();
        let part = super::keys::partition(cell);
        let (due, scheduled, ttls): (i64, i64, Vec<i64>) = redis::pipe()
            .cmd("ZSCORE")
            .arg(super::keys::due_key(part))
            .arg(cell.to_string())
            .cmd("ZSCORE")
            .arg(super::keys::PARTS)
            .arg(part.to_string())
            .cmd("EVAL")
            .arg("local t = {} for i, k in ipairs(KEYS) do t[i] = redis.call('PEXPIRETIME', k) end return t")
            .arg(4)
            .arg(&key)
            .arg(super::keys::due_key(part))
            .arg(super::keys::user_key(&user))
            .arg(super::keys::PARTS)
            .query_async(&mut conn)
            .await
            .expect("schedules");
        assert!(
            due <= purge,
            "the cell is due by the deadline: {due} > {purge}"
        );
        assert!(
            scheduled <= purge,
            "the partition is swept by then: {scheduled} > {purge}"
        );
        let backstop = purge + super::scripts::TTL_GRACE.as_millis() as i64;
        assert!(
            ttls.iter().all(|&t| t >= backstop),
            "TTLs {ttls:?} below {backstop}"
        );
    }
}

#[tokio::test]
async fn moving_far_leaves_no_key_of_the_old_place() {
    let (server, store) = single_store().await;
    let mut conn = connection(&server).await;
    let grid = SnapGrid::default();
    let at = |lat: f64| {
        let location = Location::new(lat, 116.4, 0.0).expect("valid");
        Position {
            user_id: UserId::parse("mover", "user_id").expect("valid"),
            feature: Feature::PeopleNearby,
            cell: grid.snap(location.coords),
            gender: Gender::Male,
        }
    };
    let (from, to) = (at(39.9), at(41.9));
    let old_part = super::keys::partition(from.cell);
    assert_ne!(old_part, super::keys::partition(to.cell));
    store
        .upsert_now(from, Retention::default())
        .await
        .expect("upsert");
    let pattern = format!("vc:n:{{{old_part}}}*");
    let keys_there = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let pattern = pattern.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .expect("keys");
            keys
        }
    };
    assert_eq!(keys_there(&mut conn).await.len(), 2, "cell and due index");

    store
        .upsert_now(to, Retention::default())
        .await
        .expect("move");

    assert!(
        keys_there(&mut conn).await.is_empty(),
        "the old place lingers"
    );
    let entry = store
        .get(
            Feature::PeopleNearby,
            &UserId::parse("mover", "user_id").expect("valid"),
        )
        .await
        .expect("get")
        .expect("an entry");
    assert_eq!(
        entry.position.cell,
        grid.snap(Coordinates::new(41.9, 116.4).unwrap())
    );
}

#[tokio::test]
async fn a_rare_gender_in_a_huge_crowd_is_paged_through_in_bounded_reads() {
    const MEN: usize = 9_000;
    const WOMEN: usize = 5;
    let (_server, store) = single_store().await;
    let home = home_cell();
    let writes = (0..MEN + WOMEN).map(|i| {
        let gender = if i < MEN {
            Gender::Male
        } else {
            Gender::Female
        };
        store.upsert_now(
            at_centre(home, &format!("skew-{i}"), gender),
            Retention::default(),
        )
    });
    futures_util::future::try_join_all(writes)
        .await
        .expect("upserts");

    let (seen, cursors) = women_pages(&store, "skew-0", 50).await;
    let cut_short = cursors
        .iter()
        .filter(|c| c.user_id == UserId::greatest())
        .count();

    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), WOMEN, "a woman repeated or skipped: {seen:?}");
    assert_eq!(unique.len(), WOMEN);
    assert!(
        cut_short > 0,
        "no read was cut short: the bound never engaged"
    );
}

#[tokio::test]
async fn a_spent_budget_stops_the_read_between_bands_and_the_next_page_goes_on() {
    let (_server, store) = single_store().await;
    let home = home_cell();
    // 3,000 men in one cell 1 km away: the doubling windows read that whole band before the
    // budget check after a window can see it spent, so the read stops at the next band.
    let crowd_cell = home.grid_ring::<Vec<_>>(3)[0];
    let far = home.grid_ring::<Vec<_>>(14)[0];
    let mut people = vec![
        at_centre(home, "bands-viewer", Gender::Male),
        at_centre(far, "bands-woman", Gender::Female),
    ];
    people.extend((0..3_000).map(|i| at_centre(crowd_cell, &format!("bands-{i}"), Gender::Male)));
    let writes = people
        .into_iter()
        .map(|p| store.upsert_now(p, Retention::default()));
    futures_util::future::try_join_all(writes)
        .await
        .expect("upserts");

    let (seen, cursors) = women_pages(&store, "bands-viewer", 20).await;
    let between_bands = cursors.iter().filter(|c| c.key == (1 << 52) - 1).count();

    assert_eq!(seen, ["bands-woman"]);
    assert!(between_bands > 0, "no read stopped between bands");
}

#[tokio::test]
async fn a_grant_the_state_key_does_not_confirm_reads_as_undecided_until_granted_again() {
    let server = RedisServer::start().expect("redis-server starts");
    let consents =
        RedisConsentStore::connect(&Target::single(server.url()), Duration::from_secs(2), 0)
            .await
            .expect("connects");
    let mut conn = connection(&server).await;
    let user = UserId::parse("half-written", "user_id").expect("valid");
    let notice = crate::domain::NoticeVersion::parse("n1").expect("valid");
    let source = crate::domain::Source::default();
    let at = Timestamp::from_millis(1_000);
    let grant = crate::domain::ConsentRecord::undecided(user.clone(), Feature::PeopleNearby)
        .grant(&notice, &source, at, "c1".into())
        .expect("a change");
    consents.append(grant.clone()).await.expect("append");
    // As if written by an earlier layout, or cut short: the event without its state key.
    let _: i64 = redis::cmd("DEL")
        .arg(super::keys::consent_key(&user, "n"))
        .query_async(&mut conn)
        .await
        .expect("del");

    let current = consents
        .current(&user, Feature::PeopleNearby)
        .await
        .expect("current");
    assert!(!current.is_granted(), "GetConsent and the checks disagree");
    let granted = consents
        .granted_among(Feature::PeopleNearby, std::slice::from_ref(&user))
        .await;
    assert_eq!(granted.expect("granted_among"), [false]);

    let again = current
        .grant(&notice, &source, at, "c2".into())
        .expect("granting again is not a no-op");
    consents.append(again).await.expect("append");
    let granted = consents
        .granted_among(Feature::PeopleNearby, std::slice::from_ref(&user))
        .await;
    assert_eq!(granted.expect("granted_among"), [true]);
    assert!(
        consents
            .current(&user, Feature::PeopleNearby)
            .await
            .expect("current")
            .is_granted()
    );
}

/// A sweep that found the records of only some due cells must not drop the
/// members of the others, or their records (with the position in them) are orphaned.
#[tokio::test]
async fn a_sweeper_stall_in_a_busy_partition_leaves_no_record_behind() {
    let (server, store) = single_store().await;
    let part =
        super::keys::partition(SnapGrid::default().snap(Coordinates::new(39.9, 116.4).unwrap()));
    let retention = Retention::new(Duration::from_secs(1)).expect("valid");
    let cells: Vec<CellIndex> = part.children(h3o::Resolution::Nine).take(1_200).collect();
    let writes = cells.iter().enumerate().map(|(i, cell)| {
        store.upsert_now(
            at_centre(*cell, &format!("stall-{i}"), Gender::Male),
            retention,
        )
    });
    futures_util::future::try_join_all(writes)
        .await
        .expect("upserts");
    // No sweeper ran meanwhile: every entry is overdue when the first pass comes.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    for _ in 0..3 {
        store.purge_expired().await.expect("sweep");
    }
    let held = count_on(vec![server.port()]).await.expect("count");
    assert_eq!(
        held, 0,
        "entries physically held after the sweeps caught up"
    );
}

/// A search's cells go to scripts of at most `MAX_KEYS_PER_SCRIPT` keys,
/// splitting a band if need be; pages stay exact with one cell per script.
#[tokio::test]
async fn pages_read_through_one_cell_per_script_list_everyone_once_in_order() {
    let (_server, mut store) = single_store().await;
    store.keys_per_script = 1;
    crowd(&store).await;
    let seen = page_through_the_crowd(&store).await;
    assert_eq!(seen.len(), 899, "everyone but the viewer, once");
}

/// The Shake-history sweep handled 256 users a pass, three round trips each,
/// and fell behind at W4 rates. One pass now trims thousands of users' due history.
#[tokio::test]
async fn one_sweep_pass_trims_the_history_of_thousands_of_users() {
    use crate::{domain::shake::ShakeMatch, storage::ShakeStore};
    let (server, store) = single_store().await;
    let now = store.now().await.expect("now");
    let brief = Retention::new(Duration::from_secs(1)).expect("valid");
    let users: Vec<UserId> = (0..3_000)
        .map(|i| UserId::parse(&format!("h-{i}"), "user_id").expect("valid"))
        .collect();
    for chunk in users.chunks(500) {
        let writes = chunk.iter().map(|user| {
            let matched = ShakeMatch {
                partner: UserId::parse("partner", "user_id").expect("valid"),
                band_m: 500,
                matched_at: now,
            };
            let store = &store;
            async move { store.record_match(user, &matched, brief).await }
        });
        futures_util::future::try_join_all(writes)
            .await
            .expect("record");
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store.purge_expired().await.expect("one sweep pass");
    let held = count_on(vec![server.port()]).await.expect("count");
    assert_eq!(held, 0, "history entries left after one pass");
}

/// A cell key that expired during a long stall of every node (past its
/// 30 s grace) left its users' records, in hashes other users keep alive, for no sweep to
/// find. The shard sweep deletes any record past its deadline.
#[tokio::test]
async fn a_record_whose_cell_is_gone_is_still_swept() {
    let (server, store) = single_store().await;
    let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).unwrap());
    let retention = Retention::new(Duration::from_secs(1)).expect("valid");
    let user = UserId::parse("stray", "user_id").expect("valid");
    store
        .upsert_now(at_centre(cell, "stray", Gender::Male), retention)
        .await
        .expect("upsert");
    let part = super::keys::partition(cell);
    server
        .cli(&[
            "del",
            &super::keys::cell_key(cell),
            &super::keys::due_key(part),
        ])
        .expect("del");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let shard = super::keys::user_key(&user);
    let number: u64 = shard
        .trim_start_matches("vc:u:{s")
        .trim_end_matches('}')
        .parse()
        .expect("a shard number");
    let swept = super::sweep::sweep_shards(&store, number, 1)
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    assert_eq!(count_on(vec![server.port()]).await.expect("count"), 0);
}

/// A pass visited the first 256 partitions due and left the rest to later
/// passes, so after a stall over a wide area the 5 s bound slipped by passes. One pass now
/// lists them again while a listing comes back full.
#[tokio::test]
async fn one_sweep_pass_visits_more_partitions_than_one_listing_holds() {
    let (server, store) = single_store().await;
    let grid = SnapGrid::default();
    let retention = Retention::new(Duration::from_secs(1)).expect("valid");
    // A 0.5° grid: every user in a partition of their own (res-5 cells are about 8 km).
    let cells: Vec<CellIndex> = (0..300)
        .map(|i| {
            let at = Coordinates::new(
                20.0 + f64::from(i / 20) * 0.5,
                100.0 + f64::from(i % 20) * 0.5,
            );
            grid.snap(at.expect("valid"))
        })
        .collect();
    let parts: std::collections::HashSet<_> =
        cells.iter().map(|c| super::keys::partition(*c)).collect();
    assert_eq!(parts.len(), cells.len(), "one partition each");
    for chunk in cells.chunks(50).enumerate() {
        let (n, chunk) = chunk;
        let writes = chunk.iter().enumerate().map(|(i, cell)| {
            let name = format!("wide-{n}-{i}");
            store.upsert_now(at_centre(*cell, &name, Gender::Female), retention)
        });
        futures_util::future::try_join_all(writes)
            .await
            .expect("written");
    }
    // Wait on the store's own clock until every partition is due.
    let mut conn = connection(&server).await;
    let last: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(super::keys::PARTS)
        .arg(-1)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("parts");
    let due_at = last.first().expect("a partition due").1;
    while store.now().await.expect("now").as_millis() <= due_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    store.purge_expired().await.expect("one sweep pass");

    assert_eq!(count_on(vec![server.port()]).await.expect("count"), 0);
}

/// After a stall, expired pending shakes were swept 1,000 a pass (only a
/// history backlog made a pass call again), so a W4-sized backlog outlived the 5 s bound by
/// passes. One pass now drains several batches of them.
#[tokio::test]
async fn one_sweep_pass_drains_a_backlog_of_expired_pending_shakes() {
    let (server, store) = single_store().await;
    let mut conn = connection(&server).await;
    let now = store.now().await.expect("now").as_millis();
    let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).unwrap());
    let backlog = 3 * super::scripts::SHAKE_SWEEP_BATCH + 17;
    for i in 0..backlog {
        let pending = PendingShake {
            id: i as u64 + 1,
            user: UserId::parse(&format!("s-{i}"), "user_id").expect("valid"),
            cell,
            arrived: Timestamp::from_millis(now - 10_000),
            expires: Timestamp::from_millis(now - 5_000),
        };
        put_pending(&mut conn, &pending).await;
    }

    store.purge_expired().await.expect("one sweep pass");

    let left: u64 = redis::cmd("ZCARD")
        .arg("vc:s:{shake}:all")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    let records: u64 = redis::cmd("HLEN")
        .arg("vc:s:{shake}:p")
        .query_async(&mut conn)
        .await
        .expect("hlen");
    assert_eq!(
        (left, records),
        (0, 0),
        "pending shakes left after one pass"
    );
}

/// Writes a pending shake straight into the store, as `SHAKE_PAIR` leaves one (a state the
/// pairing itself rarely leaves: several users pending at once).
async fn put_pending(conn: &mut redis::aio::MultiplexedConnection, p: &PendingShake) {
    let coarse = crate::domain::shake::coarse(p.cell);
    let (lat, lng) = crate::domain::shake::compared_centre(p.cell);
    let id = format!("{:x}", p.id);
    let record = format!(
        "{}|{}|{lat:.6}|{lng:.6}|{}|{}|test|{coarse}",
        p.user,
        p.cell,
        p.arrived.as_millis(),
        p.expires.as_millis()
    );
    let prefix = "vc:s:{shake}:";
    let _: () = redis::pipe()
        .hset(format!("{prefix}p"), &id, record)
        .zadd(format!("{prefix}c:{coarse}"), &id, p.arrived.as_millis())
        .zadd(format!("{prefix}all"), &id, p.expires.as_millis())
        .sadd(format!("{prefix}u:{}", p.user), &id)
        .query_async(conn)
        .await
        .expect("written");
}

/// Both stores choose a Shake partner by `domain::shake::choose` (the embedded store
/// calls it; the Redis script mirrors it). Over seeded random pending sets (several users,
/// shared cells, ties of arrival, expired and own shakes, crowded coarse cells, far ones), the
/// script picks exactly the shake the domain rule picks. Each of the rule's paths is seen.
#[tokio::test]
async fn the_redis_pairing_script_chooses_the_partner_the_domain_rule_chooses() {
    use crate::domain::shake;
    let (server, store) = single_store().await;
    let mut conn = connection(&server).await;
    let grid = SnapGrid::default();
    let seed = 0x5eed_u64;
    let mut rng = vicinity_testing::draws::Draws::new(seed, 0);
    let names = ["ann", "bob", "cat", "dan", "eve"];
    let mut paths = RulePathsSeen::default();
    for scenario in 0..60 {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("flushed");
        let now = store.now().await.expect("time").as_millis() / 1000 * 1000;
        let (cells, pending) = draw_pending_shakes(&mut rng, &grid, &names, scenario, now);
        for p in &pending {
            put_pending(&mut conn, p).await;
        }
        let me = PendingShake {
            id: (scenario << 16) + 0xffff,
            user: shaker_named(names[0]),
            cell: cells[rng.below(cells.len() as u64) as usize],
            arrived: Timestamp::from_millis(now),
            expires: Timestamp::from_millis(now + 3_000),
        };
        // The script reads its own clock a little after `now`: nothing here expires between.
        let expected = shake::choose(&me, Timestamp::from_millis(now), &pending);
        let chosen = the_partner_the_script_chooses(&store, &me).await;
        assert_eq!(
            chosen,
            expected.map(|p| (p.user.clone(), p.cell)),
            "seed {seed:#x}, scenario {scenario}: {pending:?}"
        );
        if let Some(p) = expected {
            assert_the_chosen_shake_was_taken(&mut conn, p, scenario).await;
            paths.count(&pending, &me, p, now);
        }
    }
    let RulePathsSeen {
        bounded_out,
        far_pool,
        near,
    } = paths;
    println!(
        "seed {seed:#x}: {near} near, {far_pool} from the far pool, {bounded_out} where the bounds changed the choice"
    );
    assert!(
        near > 0 && far_pool > 0 && bounded_out > 0,
        "every path of the rule was seen"
    );
}

/// The user `name` of the pairing scenarios.
fn shaker_named(name: &str) -> UserId {
    UserId::parse(name, "user_id").expect("valid")
}

/// Draws one scenario's pending shakes at `now` (whole seconds): 1 to 14 of users among
/// `names`, some sharing cells, some tied, expired or far. The cells drawn and the shakes.
fn draw_pending_shakes(
    rng: &mut vicinity_testing::draws::Draws,
    grid: &SnapGrid,
    names: &[&str],
    scenario: u64,
    now: i64,
) -> (Vec<CellIndex>, Vec<PendingShake>) {
    let mut cells: Vec<CellIndex> = Vec::new();
    let mut pending = Vec::new();
    for i in 0..1 + rng.below(14) {
        let cell = if !cells.is_empty() && rng.below(4) == 0 {
            cells[rng.below(cells.len() as u64) as usize]
        } else {
            let spread = if rng.below(6) == 0 { 0.6 } else { 0.03 };
            let offset = |r: &mut vicinity_testing::draws::Draws| {
                (r.below(2_001) as f64 / 1_000.0 - 1.0) * spread
            };
            let at = Coordinates::new(39.9 + offset(&mut *rng), 116.4 + offset(&mut *rng));
            grid.snap(at.expect("in range"))
        };
        cells.push(cell);
        let arrived = now - 2_000 + rng.below(4) as i64 * 300;
        let expires = if rng.below(8) == 0 {
            now - 500
        } else {
            now + 60_000
        };
        pending.push(PendingShake {
            id: (scenario << 16) + i + 1,
            user: shaker_named(names[rng.below(names.len() as u64) as usize]),
            cell,
            arrived: Timestamp::from_millis(arrived),
            expires: Timestamp::from_millis(expires),
        });
    }
    (cells, pending)
}

/// Shakes as `me` on the store: the partner and their cell the script chose, if any.
async fn the_partner_the_script_chooses(
    store: &RedisStore,
    me: &PendingShake,
) -> Option<(UserId, CellIndex)> {
    let window = Duration::from_secs(3);
    let shake = NewShake {
        id: me.id,
        user: &me.user,
        cell: me.cell,
        window,
        mark: 0,
    };
    let outcome = store.shake(&shake).await.expect("shake");
    match &outcome {
        ShakeOutcome::Paired(pair) => Some((pair.partner.clone(), pair.partner_cell)),
        ShakeOutcome::Pending(_) | ShakeOutcome::Cleared => None,
    }
}

/// The shake the rule chose (`p`) is no longer pending: the script took that very one.
async fn assert_the_chosen_shake_was_taken(
    conn: &mut redis::aio::MultiplexedConnection,
    p: &PendingShake,
    scenario: u64,
) {
    let gone: bool = redis::cmd("HEXISTS")
        .arg("vc:s:{shake}:p")
        .arg(format!("{:x}", p.id))
        .query_async(conn)
        .await
        .expect("read");
    assert!(
        !gone,
        "scenario {scenario}: the chosen shake itself was taken"
    );
}

/// How often each path of the pairing rule was taken over the scenarios.
#[derive(Default)]
struct RulePathsSeen {
    /// The bounds changed the choice.
    bounded_out: u32,
    /// The partner came from the far pool.
    far_pool: u32,
    /// The partner was in the coarse rings near the shaker.
    near: u32,
}

impl RulePathsSeen {
    /// Counts the paths the rule took to choose `p` for `me` among `pending` at `now`.
    fn count(&mut self, pending: &[PendingShake], me: &PendingShake, p: &PendingShake, now: i64) {
        use crate::domain::shake;
        let unbounded = pending
            .iter()
            .filter(|o| o.user != me.user && o.expires.as_millis() > now)
            .min_by(|a, b| {
                let from = shake::compared_centre(me.cell);
                let d = |o: &PendingShake| shake::separation(from, shake::compared_centre(o.cell));
                d(a).total_cmp(&d(b)).then(a.arrived.cmp(&b.arrived))
            });
        if unbounded.map(|u| (u.user.clone(), u.cell)) != Some((p.user.clone(), p.cell)) {
            self.bounded_out += 1;
        }
        let near_me = shake::coarse_rings(shake::coarse(me.cell))
            .concat()
            .contains(&shake::coarse(p.cell));
        if near_me {
            self.near += 1;
        } else {
            self.far_pool += 1;
        }
    }
}

/// A service node that dies between the steps of a cluster UpdateLocation (here: only
/// the first step runs) leaves a cell member without its record. It counts only for the
/// provisional hold, not the retention; a write whose steps all ran is confirmed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_update_cut_after_its_first_step_stops_counting_after_the_hold() {
    let (_cluster, mut store) = on_a_cluster(Duration::from_secs(5)).await;
    store.hold = Duration::from_secs(1);
    let home = home_cell();
    for name in ["viewer", "whole"] {
        let position = at_centre(home, name, Gender::Male);
        store
            .upsert_now(position, Retention::default())
            .await
            .expect("upsert");
    }
    let cut = at_centre(home, "cut-off", Gender::Female);
    store
        .write_position(&cut, Retention::default())
        .await
        .expect("the first step");
    let listed = || async {
        let result = store.nearby(&request("viewer", 10, None)).await;
        let hits = result.expect("nearby").expect("own entry").page.hits;
        let mut names: Vec<String> = hits.iter().map(|h| h.user_id.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(listed().await, ["cut-off", "whole"], "while held");

    tokio::time::sleep(Duration::from_millis(2_500)).await;

    assert_eq!(
        listed().await,
        ["whole"],
        "the cut-off member stopped counting"
    );
}

/// A Clear that runs between a cluster UpdateLocation's first step and its
/// record write took the new member; the record written after it used to stay without a
/// member (exported, unlisted, missed by the sweep until the shard sweep). The record write
/// is now fenced by the Clear (and the last step, finding the member gone, would take a
/// record back all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_between_the_steps_of_a_cluster_update_leaves_no_record_behind() {
    let (_cluster, store) = on_a_cluster(Duration::from_secs(5)).await;
    let home = home_cell();
    let racer = at_centre(home, "racer", Gender::Female);
    let retention = Retention::default();
    store
        .upsert_now(racer.clone(), retention)
        .await
        .expect("upsert");

    let fence = store.fence(&racer.user_id).await.expect("fence");
    let deadlines = store
        .write_position(&racer, retention)
        .await
        .expect("the first step");
    let cleared = store
        .clear(&racer.user_id, &[Feature::PeopleNearby])
        .await
        .expect("clear");
    let put = store.put_record(&racer, &deadlines, false, fence).await;
    let confirmed = store.confirm_member(&racer, &deadlines).await;

    assert_eq!(cleared, 1);
    assert!(
        put.as_ref()
            .is_err_and(|e| e.kind == StoreErrorKind::Fenced),
        "the record write was fenced: {put:?}"
    );
    assert!(confirmed.is_err(), "the write did not stay: {confirmed:?}");
    let left = store.get(Feature::PeopleNearby, &racer.user_id).await;
    assert!(left.expect("get").is_none(), "no record without its member");
}

/// A cluster UpdateLocation from cell A to cell B cut off after each of its
/// steps (a Redis node killed, the service node dying), then a Clear of the user: nobody
/// lists the user afterwards, in either cell, and no record is left. Before the strays, a
/// cut after the record write left the old member with its full hour, and a cut before it
/// the new member for its hold: both listed after the Clear answered OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_after_a_cluster_update_cut_off_at_any_step_leaves_nothing_listed() {
    let (_cluster, store) = on_a_cluster(Duration::from_secs(5)).await;
    let retention = Retention::default();
    let home = home_cell();
    let away = home.grid_disk::<Vec<_>>(2)[10];
    place_viewers(&store, home, away).await;
    for steps in 1..=5 {
        let name = format!("mover-{steps}");
        let before = at_centre(home, &name, Gender::Female);
        store.upsert_now(before, retention).await.expect("upsert");
        let moved = at_centre(away, &name, Gender::Female);
        update_cut_after(&store, &moved, steps, retention).await;

        let cleared = store.clear(&moved.user_id, &[Feature::PeopleNearby]).await;

        assert_eq!(cleared.expect("clear"), 1, "cut after step {steps}");
        assert_unlisted(&store, &moved.user_id, &format!("cut after step {steps}")).await;
        let left = store.get(Feature::PeopleNearby, &moved.user_id).await;
        assert!(left.expect("get").is_none(), "cut after step {steps}");
    }
}

/// `viewer-a` at `home` and `viewer-b` at `away`, men, for [`assert_unlisted`].
async fn place_viewers(store: &RedisStore, home: CellIndex, away: CellIndex) {
    for (name, cell) in [("viewer-a", home), ("viewer-b", away)] {
        let position = at_centre(cell, name, Gender::Male);
        store
            .upsert_now(position, Retention::default())
            .await
            .expect("upsert");
    }
}

/// Neither viewer of [`place_viewers`] lists `user` (`when` names the case).
async fn assert_unlisted(store: &RedisStore, user: &UserId, when: &str) {
    for viewer in ["viewer-a", "viewer-b"] {
        let listed = store.nearby(&request(viewer, 50, None)).await;
        let hits = listed.expect("nearby").expect("own entry").page.hits;
        assert!(
            hits.iter().all(|h| &h.user_id != user),
            "{when}: {viewer} still lists the cleared user"
        );
    }
}

/// The cluster's UpdateLocation of `position` (as `LocationStore::upsert` runs it), stopped
/// after `steps` of its steps after the sweep schedule: mark, add the member, write the
/// record, drop the old member, confirm.
async fn update_cut_after(
    store: &RedisStore,
    position: &Position,
    steps: usize,
    retention: Retention,
) {
    let fence = store.fence(&position.user_id).await.expect("fence");
    store
        .schedule_write(position, retention, fence)
        .await
        .expect("schedule");
    store
        .mark_stray(position, retention, fence)
        .await
        .expect("mark");
    if steps == 1 {
        return;
    }
    let deadlines = store
        .write_position(position, retention)
        .await
        .expect("add");
    if steps == 2 {
        return;
    }
    let old = store
        .put_record(position, &deadlines, false, fence)
        .await
        .expect("record");
    if steps == 3 {
        return;
    }
    let old =
        old.and_then(|raw| super::keys::decode_record(position.feature, &position.user_id, &raw));
    store
        .drop_member(&old.expect("an old record"))
        .await
        .expect("drop");
    if steps == 4 {
        return;
    }
    store
        .confirm_member(position, &deadlines)
        .await
        .expect("confirm");
}

/// Redis does not replicate its script cache, so after a failover the
/// promoted replica answers every `EVALSHA` with `NOSCRIPT`, and redis-rs's answer, `SCRIPT
/// LOAD` on every master, fails while one does not answer (the dead one, until the slot map
/// forgets it). A script answered `NOSCRIPT` is now sent again as an `EVAL` to the node its
/// key routes to, and the cluster's clock is read from one slot's master (a keyless `TIME`
/// went to any node). Here every cache is flushed, then a master that holds neither the
/// user's slot nor the clock's stops answering: the user's script and the clock still work
/// (the script failed before; the clock failed whenever it drew that master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_on_a_cluster_whose_caches_were_lost_while_a_master_hangs() {
    let (mut cluster, store) = on_a_cluster(Duration::from_secs(2)).await;
    let user = UserId::parse("fenced", "user_id").expect("valid");
    store.fence(&user).await.expect("the script loaded");
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    for port in &ports {
        let node = cluster.node_mut(*port).expect("a node");
        node.cli(&["script", "flush"]).expect("flush");
    }
    let busy = [
        super::keys::clear_mark_key(&user),
        super::keys::PARTS.to_owned(),
    ]
    .map(|key| cluster.master_for_key(&key).expect("a master").port());
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
    let idle = masters
        .into_iter()
        .find(|p| !busy.contains(p))
        .expect("a third master");
    cluster
        .node_mut(idle)
        .expect("a node")
        .pause()
        .expect("pause");

    // Read, not the fence the store saw before: the script must run.
    store
        .read_fence(&user)
        .await
        .expect("a script after the caches were lost");
    for _ in 0..10 {
        store.now().await.expect("the clock");
    }
    cluster
        .node_mut(idle)
        .expect("a node")
        .resume()
        .expect("resume");
}

/// Redis replicates asynchronously, so a purge or a consent change its
/// primary acknowledged could be lost with it in a failover. With replica acknowledgements
/// asked for, a clear, a Shake clear, a consent change and an erasure answer OK only once a
/// replica holds them; with the replica stopped they fail (`Unavailable`: retried, and a
/// purge stays owed). So does every step of an update (ninth session: a failover that lost
/// one step and kept the next broke the orderings that make a cut-off write safe, a cell
/// member lost with its record kept); reads and sweeps go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_consent_changes_are_acknowledged_only_once_a_replica_holds_them() {
    let primary = RedisServer::start().expect("redis");
    let mut replica = start_a_synced_replica_of(&primary).await;
    let target = Target::single(primary.url()).with_replica_acks(1);
    // WAIT gets half of it: room for a replica's acknowledgement on a loaded machine.
    let timeout = Duration::from_secs(2);
    let store = store_on(&target, timeout).await.expect("connects");
    let consents = RedisConsentStore::connect(&target, timeout, 0)
        .await
        .expect("connects");
    let home = home_cell();
    let mover = at_centre(home, "replicated", Gender::Female);
    let who = mover.user_id.clone();
    grant_update_and_clear_acknowledged_by_the_replica(&store, &consents, &mover, &who).await;

    store
        .upsert_now(mover.clone(), Retention::default())
        .await
        .expect("an update held by the replica");
    replica.pause().expect("pause the replica");
    assert_writes_are_unavailable_and_reads_go_on(&store, &consents, &mover, &who).await;

    replica.resume().expect("resume the replica");
    let cleared = store.clear(&who, &[Feature::PeopleNearby]).await;
    cleared.expect("acknowledged again");
}

/// A replica of `primary`, once its link to the primary is up (at most 60 s).
async fn start_a_synced_replica_of(primary: &RedisServer) -> RedisServer {
    RedisServer::start_replica_of(primary, Duration::from_secs(60)).expect("a synced replica")
}

/// With the replica up, a grant, an update and a clear of `mover` (`who`) are acknowledged.
async fn grant_update_and_clear_acknowledged_by_the_replica(
    store: &RedisStore,
    consents: &RedisConsentStore,
    mover: &Position,
    who: &UserId,
) {
    let grant = ConsentRecord::undecided(who.clone(), Feature::PeopleNearby)
        .grant(
            &NoticeVersion::parse("2026-01").expect("valid"),
            &Source::default(),
            Timestamp::from_millis(1_790_000_000_000),
            "g".into(),
        )
        .expect("a grant");
    consents.append(grant).await.expect("replicated");
    store
        .upsert_now(mover.clone(), Retention::default())
        .await
        .expect("an update");
    store
        .clear(who, &[Feature::PeopleNearby])
        .await
        .expect("acknowledged: the replica holds it");
}

/// With the replica paused, an update, a clear, a Shake clear and an erasure of `who` fail as
/// `Unavailable`; a list and a sweep wait for no replica.
async fn assert_writes_are_unavailable_and_reads_go_on(
    store: &RedisStore,
    consents: &RedisConsentStore,
    mover: &Position,
    who: &UserId,
) {
    let unavailable = |result: &Result<u32, StoreError>| {
        result
            .as_ref()
            .is_err_and(|e| e.kind == StoreErrorKind::Unavailable)
    };
    let updated = store
        .upsert_now(mover.clone(), Retention::default())
        .await
        .map(|_| 0);
    assert!(unavailable(&updated), "{updated:?}");
    let listed = store.nearby(&request("replicated", 10, None)).await;
    assert!(listed.is_ok(), "a list waits for no replica: {listed:?}");
    let swept = store.purge_expired().await;
    assert!(swept.is_ok(), "a sweep waits for no replica: {swept:?}");
    let cleared = store.clear(who, &[Feature::PeopleNearby]).await;
    assert!(unavailable(&cleared), "{cleared:?}");
    let shake = store.clear_shake(who).await;
    assert!(unavailable(&shake), "{shake:?}");
    let forgotten = consents.forget(who).await;
    assert!(unavailable(&forgotten), "{forgotten:?}");
}

/// How many `TIME` commands `server` ran (inside scripts too).
fn time_calls(server: &RedisServer) -> u64 {
    server.command_calls("time").expect("commandstats")
}

/// docs/decisions.md, "A fence this node read before": on a single node, node A admits its
/// next update under the fence it read for the last, without reading it again (no `TIME`
/// reaches the server); after node B clears the user, A's fence from before is refused (on
/// the service's limited path) and stores nothing, and the fence A reads next is B's new mark
/// and admits the write. A fresh fence is read whatever A holds.
#[tokio::test]
async fn a_fence_read_before_another_nodes_clear_is_refused_then_read_again() {
    let (server, mut a) = single_store().await;
    // Reused for as long as the test may take, however slow the machine.
    a.fences = Arc::new(super::fences::Fences::new(Duration::from_secs(3600)));
    let b = store_on(&Target::single(server.url()), Duration::from_secs(5))
        .await
        .expect("connects");
    let retention = Retention::default();
    let pos = at_centre(home_cell(), "fenced", Gender::Female);
    let user = &pos.user_id;
    let first = a.fence(user).await.expect("fence");
    a.upsert(pos.clone(), retention, first)
        .await
        .expect("admitted");
    let before = time_calls(&server);
    let again = a.fence(user).await.expect("fence");
    assert_eq!(time_calls(&server), before, "the fence was not read again");
    assert_eq!(again.mark, first.mark, "nothing cleared the shard");

    let cleared = b.clear(user, &[Feature::PeopleNearby]).await;
    assert_eq!(cleared.expect("B's clear"), 1);
    let new = b.fence(user).await.expect("B's fence").mark;
    assert_ne!(new, again.mark, "the clear set a new mark");
    let stale = a.fence(user).await.expect("fence");
    assert_eq!(stale, again, "A still uses the fence it read");
    let limits = UpdateLimits {
        rate: Rate::new(1_000, Duration::from_secs(1)).expect("a rate"),
        near: None,
        starts: None,
    };
    let refused = a.upsert_limited(&pos, retention, &limits, stale).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind == StoreErrorKind::Fenced),
        "{refused:?}"
    );
    let found = a.get(Feature::PeopleNearby, user).await.expect("get");
    assert!(found.is_none(), "the refused write stored {found:?}");

    let before = time_calls(&server);
    let fresh = a.fence(user).await.expect("fence");
    assert_eq!(time_calls(&server), before + 1, "read afresh");
    assert_eq!(fresh.mark, new);
    let before = time_calls(&server);
    let again = a.fresh_fence(user).await.expect("fence");
    assert_eq!(time_calls(&server), before + 1, "a fresh fence is read");
    assert_eq!(again.mark, new);
    a.upsert(pos.clone(), retention, fresh)
        .await
        .expect("admitted under the fence read afresh");
    assert!(
        a.get(Feature::PeopleNearby, user)
            .await
            .expect("get")
            .is_some()
    );
}

/// A cluster reads every fence (a refused cluster write has counted the update rate): after
/// node B's clear, node A's next fence is B's mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reads_every_fence() {
    let (cluster, a) = on_a_cluster(Duration::from_secs(5)).await;
    let b = store_on(&Target::cluster(cluster.urls()), Duration::from_secs(5))
        .await
        .expect("connects");
    let pos = at_centre(home_cell(), "fenced", Gender::Female);
    let user = &pos.user_id;
    let first = a.fence(user).await.expect("fence");
    let retention = Retention::default();
    a.upsert(pos.clone(), retention, first)
        .await
        .expect("admitted");
    b.clear(user, &[Feature::PeopleNearby])
        .await
        .expect("clear");
    let after = a.fence(user).await.expect("fence");
    assert_ne!(after.mark, first.mark, "A read B's mark");
    a.upsert(pos, retention, after).await.expect("admitted");
}

/// Review of the fence (eighth session): a Clear that runs whole between a cluster update's
/// first step (its cell listed among the strays) and its cell step takes the strays before
/// the member exists. The record step, fenced, drops that member, so no viewer lists the
/// cleared user (before, it stayed listed for its provisional hold).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_after_a_clear_by_a_fenced_cluster_update_is_dropped() {
    let (_cluster, store) = on_a_cluster(Duration::from_secs(5)).await;
    let home = home_cell();
    let viewer = at_centre(home, "viewer", Gender::Male);
    store
        .upsert_now(viewer, Retention::default())
        .await
        .expect("upsert");
    let racer = at_centre(home, "racer", Gender::Female);
    let fence = store.fence(&racer.user_id).await.expect("fence");

    store
        .mark_stray(&racer, Retention::default(), fence)
        .await
        .expect("the first step");
    let cleared = store.clear(&racer.user_id, &[Feature::PeopleNearby]).await;
    let deadlines = store
        .write_position(&racer, Retention::default())
        .await
        .expect("the cell step");
    let put = store.put_record(&racer, &deadlines, false, fence).await;

    assert_eq!(cleared.expect("clear"), 0);
    assert!(
        put.as_ref()
            .is_err_and(|e| e.kind == StoreErrorKind::Fenced),
        "{put:?}"
    );
    let result = store.nearby(&request("viewer", 10, None)).await;
    let hits = result.expect("nearby").expect("own entry").page.hits;
    assert!(hits.is_empty(), "the cleared user is listed: {hits:?}");
}

/// Found by the eighth session's cluster checker (seed 1796467344919809556): nodes A and B
/// with different order secrets (a secret being rotated) update one user at once. A holds
/// its member in cell X and writes the record; B moves the record to Y and drops the old
/// member in X, which it used to look for by its own ticket and by the name the record gives
/// it once confirmed: A's member, still held, was neither, so it stayed, A confirmed it, and
/// a later Clear did not find it (listed until its deadline). B now also drops it by the
/// names a held member can have, so A's confirm fails and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_different_secrets_updating_one_user_at_once_leave_no_member_behind() {
    let (cluster, a) = on_a_cluster(Duration::from_secs(5)).await;
    let target = Target::cluster(cluster.urls());
    let b = store_with_secret(&target, Duration::from_secs(5), Secret::from_bytes([5; 32]))
        .await
        .expect("connects");
    let retention = Retention::default();
    let home = home_cell();
    let away = home.grid_disk::<Vec<_>>(2)[10];
    place_viewers(&a, home, away).await;
    let at_home = at_centre(home, "racer", Gender::Female);

    let fence = a.fence(&at_home.user_id).await.expect("fence");
    a.mark_stray(&at_home, retention, fence)
        .await
        .expect("mark");
    let deadlines = a
        .write_position(&at_home, retention)
        .await
        .expect("the cell step");
    a.put_record(&at_home, &deadlines, false, fence)
        .await
        .expect("the record step");
    b.upsert_now(at_centre(away, "racer", Gender::Female), retention)
        .await
        .expect("B's whole update");
    let confirmed = a.confirm_member(&at_home, &deadlines).await;
    let cleared = b.clear(&at_home.user_id, &[Feature::PeopleNearby]).await;

    assert!(confirmed.is_err(), "A's member was taken: {confirmed:?}");
    assert_eq!(cleared.expect("clear"), 1);
    assert_unlisted(&a, &at_home.user_id, "after B's update and Clear").await;
}

/// A cluster UpdateLocation cut off after any of its steps (the node killed)
/// leaves what no later step settles: strays, a member held for the provisional hold, a
/// record with its full deadline whose member is gone. Each is physically gone within the
/// purge bound of its deadline. Before, the record and the strays were found only by the
/// sweep's round of record shards, up to about 4 minutes after their deadline: a write's
/// first step now schedules the sweep's visit of its record shard and its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_update_cut_off_at_any_step_is_purged_by_its_deadlines() {
    let (cluster, mut store) = on_a_cluster(Duration::from_secs(5)).await;
    store.hold = Duration::from_secs(1);
    let retention = Retention::new(Duration::from_secs(3)).expect("valid");
    let away = home_cell().grid_disk::<Vec<_>>(2)[10];
    // Users with no earlier entry, so no old member's deadline finds their record: cut after
    // the mark (strays alone), after the member (held), after the record (its member held).
    for steps in 1..=3 {
        let name = format!("cut-{steps}");
        update_cut_after(
            &store,
            &at_centre(away, &name, Gender::Female),
            steps,
            retention,
        )
        .await;
    }
    let ports: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
    let bound = std::time::Instant::now() + retention.window() + Duration::from_secs(5);
    loop {
        store.purge_expired().await.expect("a sweep");
        let held = count_on(ports.clone()).await.expect("count");
        if held == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < bound,
            "{held} entries held past their deadlines and the purge bound"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A single node's UpdateLocation runs as a Redis Function (`FCALL`), its library loaded by the
/// first call that finds it missing (a new server, a restart, a `FUNCTION FLUSH`), and as the
/// script it is where the server refuses functions (an ACL without `FCALL`, or without
/// `FUNCTION` where the library is missing), from then on without asking again.
#[tokio::test]
async fn updates_run_as_a_function_loaded_when_missing_or_as_the_script_where_refused() {
    let (server, store) = single_store().await;
    let mut conn = connection(&server).await;
    let calls = |command: &str| server.command_calls(command).expect("commandstats");
    let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).expect("valid"));
    let update = |store: &RedisStore, name: &str| {
        let position = Position {
            user_id: UserId::parse(name, "user_id").expect("valid"),
            feature: Feature::PeopleNearby,
            cell,
            gender: Gender::Female,
        };
        let store = store.clone();
        async move {
            store
                .upsert_now(position, Retention::default())
                .await
                .expect("an update lands");
        }
    };
    let members = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("ZCARD")
                .arg(super::keys::cell_key(cell))
                .query_async(&mut conn)
                .await
                .expect("zcard");
            n
        }
    };
    // Missing at first: one `FCALL` refused, the library loaded, the `FCALL` again.
    update(&store, "first").await;
    assert_eq!((calls("fcall"), calls("function|load")), (2, 1));
    update(&store, "second").await;
    assert_eq!((calls("fcall"), calls("function|load")), (3, 1));
    assert_eq!(calls("evalsha"), 0, "no update ran as a script");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");
    update(&store, "third").await;
    assert_eq!((calls("fcall"), calls("function|load")), (5, 2));
    assert_eq!(members(&mut conn).await, 3);
    // A user the server denies functions: the script, and no `FCALL` tried after the first
    // (Redis counts a call its ACL refuses under `rejected_calls`).
    async fn acl(
        conn: &mut redis::aio::MultiplexedConnection,
        port: u16,
        user: &str,
        denied: &[&str],
    ) -> RedisStore {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", user, "on", ">secret", "~*", "&*", "+@all"])
            .arg(denied)
            .query_async(conn)
            .await
            .expect("acl");
        let url = format!("redis://{user}:secret@127.0.0.1:{port}/");
        store_on(&Target::single(url), Duration::from_secs(5))
            .await
            .expect("connects")
    }
    let rejected = |command: &str| server.command_rejections(command).expect("commandstats");
    let port = server.port();
    let denied = ["-fcall", "-fcall_ro", "-function"];
    let scripts_only = acl(&mut conn, port, "scripts", &denied).await;
    let scripts = calls("evalsha");
    update(&scripts_only, "fourth").await;
    assert_eq!(rejected("fcall"), 1, "the FCALL refused");
    assert!(calls("evalsha") > scripts, "the update ran as the script");
    let scripts = calls("evalsha");
    update(&scripts_only, "fifth").await;
    assert_eq!(rejected("fcall"), 1, "no FCALL tried again");
    assert_eq!(calls("evalsha"), scripts + 1, "straight to the script");
    // A user who may call functions but not load them, where the library is missing: the
    // load refused, the script, and no `FCALL` after.
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let no_loads = acl(&mut conn, port, "callers", &["-function"]).await;
    let fcalls = calls("fcall");
    update(&no_loads, "sixth").await;
    assert_eq!(rejected("function|load"), 1, "the load refused");
    assert_eq!(
        calls("fcall"),
        fcalls + 1,
        "the one FCALL that found nothing"
    );
    update(&no_loads, "seventh").await;
    assert_eq!(calls("fcall"), fcalls + 1, "no FCALL tried again");
    assert_eq!(members(&mut conn).await, 7);
}

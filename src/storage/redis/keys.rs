//! The Redis key layout, in one place. Every key that holds location data has a TTL (the
//! backstop) and is also swept explicitly at each entry's deadline.
//!
//! TTLs are the deadline plus 30 s (see `scripts::EXPIRE_AT`): the sweeper deletes at the
//! deadline, the TTL is the backstop when no service node runs.
//!
//! | key | type | holds | TTL | hash tag |
//! |---|---|---|---|---|
//! | `vc:n:{P}:c:<cell>` | ZSET | People Nearby members of one snapping cell: member `<g><deadline><user_id>` (`g` = `u`/`f`/`m`, deadline = `purge_at` in whole seconds, 7 base-36 digits), score = the user's order ticket | max deadline | partition `P` |
//! | `vc:n:{P}:due` | ZSET | the partition's cells, scored by their earliest deadline (ms; what the sweeper reads) | max deadline | `P` |
//! | `vc:n:parts` | ZSET | partitions with data, scored by when to sweep them next | pushed forward on write | none (one slot) |
//! | `vc:n:shards{vc:n:parts}` | ZSET | record shards (`s<shard>`) a cluster write touched, scored by when to sweep them next (no location: shard numbers) | pushed forward on write | `vc:n:parts` (its slot) |
//! | `vc:u:{s<shard>}` | HASH | field `<user_id>` → the user's People Nearby record (below); on a cluster, while an UpdateLocation is in flight or was cut off between its steps, field `w|<user_id>` → the user's strays: a 13-digit deadline and up to `STRAYS_CAP` cells (8 bytes each) where a member of theirs may be that the record does not name (a Clear drops them all; swept at that deadline) | max `purge_at` | user shard |
//! | `vc:x:{s<shard>}` | STRING | the clear mark of the users of one record shard (`storage::Fence`): the store's time in ms (or one more than the last mark) of the latest People Nearby clear of any of them, set in the clear's atomic step; a location write admitted before that clear is refused. One per shard, so it names nobody (a clear of another user of the shard makes a write in flight take its fence again) | `storage::CLEAR_MARK_TTL` (120 s) | user shard |
//! | `vc:s:{shake}:p` | HASH | pending shakes: id → `user|cell|lat|lng|arrived|expires|node|coarse` (snapped cell centre) | latest expiry + 30 s | `shake` |
//! | `vc:s:{shake}:c:<coarse>` | ZSET | pending shake ids of a resolution-7 cell, by arrival | same | `shake` |
//! | `vc:s:{shake}:all` | ZSET | every pending shake id, by expiry (the sweeper and the global pool read it) | same | `shake` |
//! | `vc:s:{shake}:u:<user_id>` | SET | the user's shake ids, pending or with an uncollected pairing (a Clear finds them all) | latest expiry + 40 s | `shake` |
//! | `vc:s:{shake}:m:<id>` | LIST | a pending shake's mailbox: `partner|cell|matched_at|owner` | expiry + 40 s | `shake` |
//! | `vc:s:{shake}:mdue` | ZSET | mailboxes by when to delete them if never collected | — | `shake` |
//! | `vc:s:{shake}:h:<user_id>` | ZSET | Shake history: `partner|band|matched_at` by deadline, at most `storage::SHAKE_HISTORY_CAP` | last deadline + 30 s | `shake` |
//! | `vc:s:{shake}:n:<user_id>` | ZSET | users whose history names this user, by deadline (a Clear of this user removes those entries) | same | `shake` |
//! | `vc:s:{shake}:hdue` | ZSET | users with history or "named by" entries, by earliest deadline | — | `shake` |
//! | `vc:s:{shake}:x:<pseudonym>` | STRING | a Clear's tombstone: when the user cleared Shake (a match recorded late against them is dropped); named by the user's keyed pseudonym (`nearby::Pseudonyms`), so it holds neither the id nor a match, and nobody without the secret can tell whose it is ; the mark a Shake reads before its consent check and its pairing compares, so every Clear sets a larger value than the last | 120 s | `shake` |
//! | `vc:c:{<user_id>}:<f>` | STRING | consent state of feature `f` (`n`/`s`): `1` granted, `0` withdrawn (no location; persisted store), one key each so a page of users is one `MGET` | none | user |
//! | `vc:owed` | ZSET | purges owed: `<f>|<token>|<user_id>` by when they were owed (ms); a sweep finishes any not settled (no location; persisted store) | none | none (one slot) |
//! | `vc:l:{<user_id>}:<u/l/s>` | STRING | a user's UpdateLocation / ListNearby / Shake rate: the theoretical arrival time of the next call (GCRA, µs; no location) | until that time (at most the rate's period) | user |
//! | `vc:l:{<user_id>}:p` | ZSET | the user's pending shakes: token by end (no location) | the last end | user |
//! | `vc:l:{#<hex of key name>}:p` | ZSET | pending shakes of every user one API key calls for: token by end | the last end | API key |
//! | `vc:h:{<user_id>}` | LIST | consent history, whose last event of a feature is its current record (no location; persisted store) | none | user |
//!
//! Cell members are scored by the user's order ticket (`domain::nearby::ticket`), so a search
//! reads each cell in the viewer's in-band order (a rotation of tickets) and takes only what
//! the page needs: work is bounded by `limit`, not by how crowded a cell is. Deadlines are
//! whole seconds (`purge_at` is rounded down when it is set, so what the API reports is
//! exactly when the data goes).
//!
//! `P` is the snapping cell's H3 parent at [`PARTITION_RES`] (about 250 km²), so a search
//! touches one to three partitions, i.e. one to three cluster slots. User records are spread
//! over [`USER_SHARDS`] hashes, small enough to stay in Redis's compact listpack encoding: a
//! separate key per user would cost about 130 bytes by itself.
//!
//! Entry record (26 bytes, under Redis's 64-byte listpack value limit, so a user hash stays
//! compact): `purge_at` as 13 decimal digits (what the sweep script reads), then big-endian
//! binary: cell u64, flags u8 (gender in bits 0-1, left in bit 2), and `purge_at -
//! last_active` u32 ms. The snapped cell is all that is kept of where the user is (contract §4.3
//! data minimisation). `visible_until` is not stored: it equals `purge_at` (contract §4.2
//! default). Records of the earlier 36-byte layout (which also held the position to 11 m,
//! before the flags) are still read, so nodes of two builds can share a store during a
//! rolling deploy; every write replaces one with the new layout.

use h3o::{CellIndex, Resolution};

use crate::{
    domain::{
        Deadlines, Feature, Gender, Retention, Timestamp, UserId, nearby::Pseudonyms,
        user::GenderFilter,
    },
    storage::{LimitKey, LocationEntry, Position},
};

/// The H3 resolution of the partitions (hash tags).
pub const PARTITION_RES: Resolution = Resolution::Five;
/// How many user-record hashes there are.
pub const USER_SHARDS: u64 = 16_384;
/// The sorted set of partitions the sweeper reads.
pub const PARTS: &str = "vc:n:parts";
/// The sorted set of record shards a cluster write scheduled for the sweeper, in the slot of
/// [`PARTS`] (its hash tag is that name), so one script schedules both.
pub const SHARDS: &str = "vc:n:shards{vc:n:parts}";

/// The partition (hash tag) of a snapping cell.
pub fn partition(cell: CellIndex) -> CellIndex {
    cell.parent(PARTITION_RES).unwrap_or(cell)
}

/// A cell key is `CELL_KEY_HEAD <partition> CELL_KEY_MID <cell>`, a due key
/// `CELL_KEY_HEAD <partition> DUE_KEY_TAIL` (the scripts build them from these too).
pub const CELL_KEY_HEAD: &str = "vc:n:{";
/// See [`CELL_KEY_HEAD`].
pub const CELL_KEY_MID: &str = "}:c:";
/// See [`CELL_KEY_HEAD`].
pub const DUE_KEY_TAIL: &str = "}:due";
/// Every Shake key is this prefix and a suffix (`p`, `all`, `c:<coarse>`, ...: the table
/// above); the `{shake}` tag keeps them in one slot.
pub const SHAKE_PREFIX: &str = "vc:s:{shake}:";
/// The Shake keys that schedule deletions, each a ZSET scored by a deadline (ms): pending
/// shakes by expiry, mailboxes by when to delete them, users with history by its earliest
/// deadline (the sweep script reads them, as the prelude's `SHAKE_SCHEDULES`; so does the
/// overdue gauge).
pub const SHAKE_SCHEDULES: [&str; 3] = ["all", "mdue", "hdue"];
/// The pending-shake hash, the key Shake scripts are routed by.
pub const SHAKE_PENDING: &str = "vc:s:{shake}:p";
/// A node's pub/sub channel for waking its waiting shakes is this prefix and the node id.
pub const WAKE_PREFIX: &str = "vc:s:wake:";

/// A user's Shake tombstone (see the table above).
pub fn tombstone_key(pseudonyms: &Pseudonyms, user: &UserId) -> String {
    format!("{SHAKE_PREFIX}x:{}", tombstone_name(pseudonyms, user))
}

/// The name of a user's Shake tombstone (the scripts append it to `x:`): the user's keyed
/// pseudonym, so listing the keys does not tell whose it is.
pub fn tombstone_name(pseudonyms: &Pseudonyms, user: &UserId) -> String {
    format!("{:x}", pseudonyms.of(user))
}

/// The prefix of every cell key of a partition (the sweep scripts append the cell).
pub fn cell_prefix(part: CellIndex) -> String {
    format!("{CELL_KEY_HEAD}{part}{CELL_KEY_MID}")
}

/// The member set of one cell. Built by hand (a list builds 19 to 40 of them): the same
/// text as `format!("{}{cell}", cell_prefix(partition(cell)))`.
pub fn cell_key(cell: CellIndex) -> String {
    let mut key = String::with_capacity(CELL_KEY_HEAD.len() + CELL_KEY_MID.len() + 32);
    key.push_str(CELL_KEY_HEAD);
    push_hex(&mut key, u64::from(partition(cell)));
    key.push_str(CELL_KEY_MID);
    push_hex(&mut key, u64::from(cell));
    key
}

/// Appends `n` in lowercase hexadecimal without leading zeros (H3's text form of an index).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(char::from(DIGITS[(n >> (4 * i)) as usize & 0xf]));
    }
}

/// The due index of a partition.
pub fn due_key(part: CellIndex) -> String {
    format!("{CELL_KEY_HEAD}{part}{DUE_KEY_TAIL}")
}

/// The user-record hash holding `user`.
pub fn user_key(user: &UserId) -> String {
    shard_key(shard_of(user))
}

/// The record shard of `user` (below [`USER_SHARDS`]).
pub(super) fn shard_of(user: &UserId) -> u64 {
    // FNV-1a: std's hashers may change between Rust releases; shard numbers are stored data.
    user.pseudonym() % USER_SHARDS
}

/// `user`'s record shard as an entry of the sweep schedule ([`SHARDS`]): `s<shard>`.
pub fn shard_entry(user: &UserId) -> String {
    shard_entry_of(shard_of(user))
}

/// Shard `shard` as an entry of the sweep schedule (see [`shard_entry`]).
pub fn shard_entry_of(shard: u64) -> String {
    format!("s{shard}")
}

/// The shard an entry of [`SHARDS`] names (`None`: not a shard entry).
pub fn parse_shard_entry(entry: &str) -> Option<u64> {
    let shard: u64 = entry.strip_prefix('s')?.parse().ok()?;
    (shard < USER_SHARDS).then_some(shard)
}

/// The clear mark of `user`'s record shard (see the table): in the slot of [`user_key`], so
/// the steps that write the record compare it atomically.
pub fn clear_mark_key(user: &UserId) -> String {
    format!("vc:x:{{s{}}}", shard_of(user))
}

/// The user-record hash of shard `shard` (below [`USER_SHARDS`]).
pub fn shard_key(shard: u64) -> String {
    format!("vc:u:{{s{shard}}}")
}

/// The field of `user`'s entry in `feature` inside [`user_key`].
pub fn user_field(feature: Feature, user: &UserId) -> String {
    match feature {
        Feature::PeopleNearby => user.to_string(),
        Feature::Shake => format!("s:{user}"),
    }
}

/// The field of `user`'s strays in `feature` inside [`user_key`] (`|`, which no user id holds,
/// keeps it apart from every record's field).
pub fn strays_field(feature: Feature, user: &UserId) -> String {
    format!("w|{}", user_field(feature, user))
}

/// The cells of a strays value (after its 13-digit deadline, 8 bytes each).
pub fn strays_cells(raw: &[u8]) -> Vec<CellIndex> {
    raw.get(13..)
        .unwrap_or_default()
        .chunks_exact(8)
        .filter_map(|c| CellIndex::try_from(u64::from_be_bytes(c.try_into().ok()?)).ok())
        .collect()
}

/// How many cells a user's strays list at most: an UpdateLocation that finds them full
/// (several writes cut off within their hold) drops their members before it goes on.
pub const STRAYS_CAP: usize = 8;

/// The consent state of a user in a feature (`tag` is the feature's one-letter tag).
pub fn consent_key(user: &UserId, tag: &str) -> String {
    // By hand, as `format!("vc:c:{{{user}}}:{tag}")` would: a list builds 51 of them.
    let user = user.as_str();
    let mut key = String::with_capacity(8 + user.len() + tag.len());
    key.push_str("vc:c:{");
    key.push_str(user);
    key.push_str("}:");
    key.push_str(tag);
    key
}

/// The purges owed (in the consent store).
pub const OWED: &str = "vc:owed";

/// What a cluster hashes of `key` (Redis's rule: the text between the first `{` and the next
/// `}` when not empty, else the whole key).
pub fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

/// The key of a limit's state.
pub fn limit_key(key: &LimitKey) -> String {
    match key {
        LimitKey::Updates(user) => format!("vc:l:{{{user}}}:u"),
        LimitKey::Starts(user) => format!("vc:l:{{{user}}}:f"),
        LimitKey::Lists(user) => format!("vc:l:{{{user}}}:l"),
        LimitKey::Shakes(user) => format!("vc:l:{{{user}}}:s"),
        LimitKey::PendingShakes(user) => format!("vc:l:{{{user}}}:p"),
        // Hex: a key's name is the operator's text and may hold braces; `#`, which no user
        // id holds, keeps it apart from every user's keys.
        LimitKey::KeyPendingShakes(name) => format!("vc:l:{{#{}}}:p", hex::encode(name)),
    }
}

/// The consent-history list of a user.
pub fn history_key(user: &UserId) -> String {
    format!("vc:h:{{{user}}}")
}

fn gender_char(gender: Gender) -> char {
    match gender {
        Gender::Unspecified => 'u',
        Gender::Female => 'f',
        Gender::Male => 'm',
    }
}

/// The cell member of a user: gender first, then the id.
/// The cell member of a user whose entry is purged at `purge_at` (the script that writes it
/// builds the same text; see `scripts::CELL_ADD`).
pub fn member(gender: Gender, purge_at: Timestamp, user: &UserId) -> String {
    format!(
        "{}{}{user}",
        gender_char(gender),
        base36(purge_at.as_millis().div_euclid(1000))
    )
}

/// The gender char a cell member starts with.
pub fn gender_tag(gender: Gender) -> char {
    gender_char(gender)
}

/// The gender char a cell member must start with to pass `filter` (empty: any).
pub fn gender_filter_tag(filter: GenderFilter) -> String {
    match filter {
        GenderFilter::Any => String::new(),
        GenderFilter::Female => gender_char(Gender::Female).to_string(),
        GenderFilter::Male => gender_char(Gender::Male).to_string(),
    }
}

/// Seven base-36 digits (enough until the year 4453).
fn base36(mut n: i64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 7];
    for slot in out.iter_mut().rev() {
        *slot = digits[n.rem_euclid(36) as usize];
        n = n.div_euclid(36);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed cell member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The gender shown.
    pub gender: Gender,
    /// The deadline, in whole seconds (as milliseconds).
    pub deadline: Timestamp,
    /// Whose.
    pub user: UserId,
}

/// Parses a cell member.
pub fn parse_member(raw: &str) -> Option<Member> {
    let gender = match raw.as_bytes().first()? {
        b'u' => Gender::Unspecified,
        b'f' => Gender::Female,
        b'm' => Gender::Male,
        _ => return None,
    };
    let seconds = i64::from_str_radix(raw.get(1..8)?, 36).ok()?;
    Some(Member {
        gender,
        deadline: Timestamp::from_millis(seconds * 1000),
        user: UserId::parse(raw.get(8..)?, "member").ok()?,
    })
}

/// The length of an encoded record.
pub const RECORD_LEN: usize = 13 + 8 + 1 + 4;
/// The length of a record of the earlier layout (with the position to 11 m).
pub const LEGACY_RECORD_LEN: usize = 13 + 8 + 4 + 4 + 2 + 1 + 4;

/// Encodes an entry record.
pub fn encode_record(position: &Position, deadlines: &Deadlines, left: bool) -> Vec<u8> {
    let gender = match position.gender {
        Gender::Unspecified => 0u8,
        Gender::Female => 1,
        Gender::Male => 2,
    };
    let lived = deadlines.purge_at.as_millis() - deadlines.last_active.as_millis();
    let mut out = Vec::with_capacity(RECORD_LEN);
    out.extend_from_slice(format!("{:013}", deadlines.purge_at.as_millis()).as_bytes());
    out.extend_from_slice(&u64::from(position.cell).to_be_bytes());
    out.push(gender | (u8::from(left) << 2));
    out.extend_from_slice(&(lived.clamp(0, i64::from(u32::MAX)) as u32).to_be_bytes());
    out
}

/// An entry record without its leading `purge_at` (for a script that knows the server clock
/// to prepend it): `last_active` will be `purge_at - retention`, not left.
pub fn record_without_deadline(position: &Position, retention: Retention) -> Vec<u8> {
    let lived = retention.window().as_millis() as i64;
    let deadlines = Deadlines {
        last_active: Timestamp::from_millis(0),
        visible_until: Timestamp::from_millis(lived),
        purge_at: Timestamp::from_millis(lived),
    };
    encode_record(position, &deadlines, false).split_off(13)
}

/// Decodes an entry record of `user` in `feature`; `None` when it is not one.
pub fn decode_record(feature: Feature, user: &UserId, raw: &[u8]) -> Option<LocationEntry> {
    // The earlier layout had the position (10 bytes) between the cell and the flags.
    let flags_at = match raw.len() {
        RECORD_LEN => 13 + 8,
        LEGACY_RECORD_LEN => 13 + 8 + 10,
        _ => return None,
    };
    let purge_at: i64 = std::str::from_utf8(&raw[..13]).ok()?.parse().ok()?;
    let cell = CellIndex::try_from(u64::from_be_bytes(raw[13..21].try_into().ok()?)).ok()?;
    let flags = raw[flags_at];
    let lived = i64::from(u32::from_be_bytes(
        raw.get(flags_at + 1..flags_at + 5)?.try_into().ok()?,
    ));
    let gender = match flags & 3 {
        0 => Gender::Unspecified,
        1 => Gender::Female,
        2 => Gender::Male,
        _ => return None,
    };
    Some(LocationEntry {
        position: Position {
            user_id: user.clone(),
            feature,
            cell,
            gender,
        },
        deadlines: Deadlines {
            last_active: Timestamp::from_millis(purge_at - lived),
            visible_until: Timestamp::from_millis(purge_at),
            purge_at: Timestamp::from_millis(purge_at),
        },
        left: flags & 4 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Coordinates, SnapGrid};

    #[test]
    fn no_user_shares_a_limit_key_or_slot_with_an_api_key() {
        // `k:616263` is a valid user id and the hex of "abc": it once named both.
        let user = UserId::parse("k:616263", "user_id").unwrap();
        let key = limit_key(&LimitKey::KeyPendingShakes("abc".to_owned()));
        for own in LimitKey::all_of(&user) {
            let own = limit_key(&own);
            assert_ne!(own, key);
            assert_ne!(hash_tag(&own), hash_tag(&key));
        }
        assert_eq!(hash_tag(&key), "#616263");
        assert_eq!(
            hash_tag("vc:l:{}:p"),
            "vc:l:{}:p",
            "an empty tag hashes the whole key"
        );
    }

    #[test]
    fn keys_built_by_hand_read_as_the_formatted_ones() {
        for (lat, lng) in [(39.9, 116.4), (-33.86, 151.21), (0.0, 0.0), (89.9, -170.0)] {
            for res in [0, 5, 9, 10, 15] {
                let res = Resolution::try_from(res).unwrap();
                let cell = h3o::LatLng::new(lat, lng).unwrap().to_cell(res);
                let expected = format!("{}{cell}", cell_prefix(partition(cell)));
                assert_eq!(cell_key(cell), expected);
            }
        }
        let user = UserId::parse("a@b.c-9", "user_id").unwrap();
        assert_eq!(consent_key(&user, "n"), format!("vc:c:{{{user}}}:n"));
    }

    /// A People Nearby entry of user `a@b` at `coords` and its deadlines (purge at
    /// 1,790,003,600,000 ms).
    fn record_at(coords: Coordinates, gender: Gender) -> (UserId, Position, Deadlines) {
        let user = UserId::parse("a@b", "user_id").unwrap();
        let position = Position {
            user_id: user.clone(),
            feature: Feature::PeopleNearby,
            cell: SnapGrid::default().snap(coords),
            gender,
        };
        let deadlines = Deadlines {
            last_active: Timestamp::from_millis(1_790_000_000_000),
            visible_until: Timestamp::from_millis(1_790_003_600_000),
            purge_at: Timestamp::from_millis(1_790_003_600_000),
        };
        (user, position, deadlines)
    }

    #[test]
    fn records_round_trip() {
        let coords = Coordinates::new(39.9123, -116.3988).unwrap();
        let (user, position, deadlines) = record_at(coords, Gender::Female);
        let raw = encode_record(&position, &deadlines, true);
        assert!(raw.len() <= 64, "fits a listpack value");
        assert!(
            raw.starts_with(b"1790003600000"),
            "the sweep script reads purge_at first"
        );
        let entry = decode_record(Feature::PeopleNearby, &user, &raw).unwrap();
        assert_eq!(entry.position, position);
        assert_eq!(entry.deadlines, deadlines);
        assert!(entry.left);
        assert!(decode_record(Feature::PeopleNearby, &user, b"junk").is_none());
    }

    /// Positions were kept to ~11 m although every decision uses the cell;
    /// a record now holds the cell and nothing finer, and one of the earlier layout still reads.
    #[test]
    fn a_record_holds_the_cell_and_nothing_finer() {
        let coords = Coordinates::new(39.912_345, 116.398_765).unwrap();
        let (user, position, deadlines) = record_at(coords, Gender::Male);
        let raw = encode_record(&position, &deadlines, false);
        assert_eq!(raw.len(), 13 + 8 + 1 + 4, "deadline, cell, flags, lifetime");
        let e4 = |v: f64| ((v * 1e4).round() as i32).to_be_bytes();
        for part in [e4(coords.lat()), e4(coords.lng())] {
            assert!(!raw.windows(4).any(|w| w == part), "a coordinate is stored");
        }
        let mut legacy = raw[..21].to_vec();
        legacy.extend_from_slice(&e4(coords.lat()));
        legacy.extend_from_slice(&e4(coords.lng()));
        legacy.extend_from_slice(&[0, 5]);
        legacy.extend_from_slice(&raw[21..]);
        let old = decode_record(Feature::PeopleNearby, &user, &legacy).unwrap();
        assert_eq!(old.position, position, "the earlier layout still reads");
    }

    #[test]
    fn a_cell_and_its_partition_share_a_hash_tag() {
        let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).unwrap());
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&cell_key(cell)), tag(&due_key(partition(cell))));
        let user = UserId::parse("u1", "user_id").unwrap();
        assert_eq!(tag(&consent_key(&user, "n")), tag(&history_key(&user)));
        let at = Timestamp::from_millis(1_790_003_600_999);
        let text = member(Gender::Male, at, &user);
        assert_eq!(text.len(), 1 + 7 + 2, "gender, 7 base-36 digits, id");
        let parsed = parse_member(&text).unwrap();
        assert_eq!(parsed.gender, Gender::Male);
        assert_eq!(parsed.deadline, Timestamp::from_millis(1_790_003_600_000));
        assert_eq!(parsed.user, user);
    }
}

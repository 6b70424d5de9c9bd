//! The Redis key layout, in one place. Every key that holds location data has a TTL (the
//! backstop) and is also swept explicitly at each entry's deadline.
//!
//! TTLs are the deadline plus 30 s (see `scripts::EXPIRE_AT`): the sweeper deletes at the
//! deadline, the TTL is the backstop when no service node runs.
//!
//! | key | type | holds | TTL | hash tag |
//! |---|---|---|---|---|
//! | `vc:n:{P}:c:<cell>` | ZSET | People Nearby members of one snapping cell: member `<g><user_id>` (`g` = `u`/`f`/`m`), score `purge_at` ms | max `purge_at` of its members | partition `P` |
//! | `vc:n:{P}:due` | ZSET | the partition's cells, scored by their earliest `purge_at` (what the sweeper reads) | max `purge_at` | `P` |
//! | `vc:n:parts` | ZSET | partitions with data, scored by when to sweep them next | pushed forward on write | none (one slot) |
//! | `vc:u:{s<shard>}` | HASH | field `n:<user_id>` → the user's entry record (below) | max `purge_at` | user shard |
//! | `vc:c:{<user_id>}` | HASH | current consent per feature (no location; persisted store) | none | user |
//! | `vc:h:{<user_id>}` | LIST | consent history (no location; persisted store) | none | user |
//!
//! `P` is the snapping cell's H3 parent at [`PARTITION_RES`] (about 250 km²), so a search
//! touches one to three partitions, i.e. one to three cluster slots. User records are spread
//! over [`USER_SHARDS`] hashes, small enough to stay in Redis's compact listpack encoding: a
//! separate key per user would cost about 130 bytes by itself.
//!
//! Entry record: `cell|lat_e4|lng_e4|accuracy_m|gender|left|last_active|visible_until|purge_at`,
//! all integers (cell in hex, coordinates in 1e-4 degrees, times in ms).

use h3o::{CellIndex, Resolution};

use crate::{
    domain::{Coordinates, Deadlines, Feature, Gender, Location, Timestamp, UserId},
    storage::{LocationEntry, Position},
};

/// The H3 resolution of the partitions (hash tags).
pub const PARTITION_RES: Resolution = Resolution::Five;
/// How many user-record hashes there are.
pub const USER_SHARDS: u64 = 16_384;
/// The sorted set of partitions the sweeper reads.
pub const PARTS: &str = "vc:n:parts";

/// The partition (hash tag) of a snapping cell.
pub fn partition(cell: CellIndex) -> CellIndex {
    cell.parent(PARTITION_RES).unwrap_or(cell)
}

/// The prefix of every cell key of a partition (the sweep scripts append the cell).
pub fn cell_prefix(part: CellIndex) -> String {
    format!("vc:n:{{{part}}}:c:")
}

/// The member set of one cell.
pub fn cell_key(cell: CellIndex) -> String {
    format!("{}{cell}", cell_prefix(partition(cell)))
}

/// The due index of a partition.
pub fn due_key(part: CellIndex) -> String {
    format!("vc:n:{{{part}}}:due")
}

/// The user-record hash holding `user`.
pub fn user_key(user: &UserId) -> String {
    format!(
        "vc:u:{{s{}}}",
        fnv1a(user.as_str().as_bytes()) % USER_SHARDS
    )
}

/// The field of `user`'s entry in `feature` inside [`user_key`].
pub fn user_field(feature: Feature, user: &UserId) -> String {
    let tag = match feature {
        Feature::PeopleNearby => 'n',
        Feature::Shake => 's',
    };
    format!("{tag}:{user}")
}

/// The current-consent hash of a user.
pub fn consent_key(user: &UserId) -> String {
    format!("vc:c:{{{user}}}")
}

/// The consent-history list of a user.
pub fn history_key(user: &UserId) -> String {
    format!("vc:h:{{{user}}}")
}

/// FNV-1a: a stable hash (std's hashers may change between Rust releases; shard numbers are
/// stored data and must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn gender_char(gender: Gender) -> char {
    match gender {
        Gender::Unspecified => 'u',
        Gender::Female => 'f',
        Gender::Male => 'm',
    }
}

/// The cell member of a user: gender first, then the id.
pub fn member(gender: Gender, user: &UserId) -> String {
    format!("{}{user}", gender_char(gender))
}

/// Parses a cell member back into gender and user.
pub fn parse_member(raw: &str) -> Option<(Gender, UserId)> {
    let mut chars = raw.chars();
    let gender = match chars.next()? {
        'u' => Gender::Unspecified,
        'f' => Gender::Female,
        'm' => Gender::Male,
        _ => return None,
    };
    Some((gender, UserId::parse(chars.as_str(), "member").ok()?))
}

/// Encodes an entry record.
pub fn encode_record(position: &Position, deadlines: &Deadlines, left: bool) -> String {
    let c = position.location.coords;
    let e4 = |v: f64| (v * 1e4).round() as i64;
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}",
        position.cell,
        e4(c.lat()),
        e4(c.lng()),
        position.location.accuracy_m.round() as i64,
        gender_char(position.gender),
        u8::from(left),
        deadlines.last_active.as_millis(),
        deadlines.visible_until.as_millis(),
        deadlines.purge_at.as_millis()
    )
}

/// Decodes an entry record of `user` in `feature`; `None` when it is not one.
pub fn decode_record(feature: Feature, user: &UserId, raw: &str) -> Option<LocationEntry> {
    let f: Vec<&str> = raw.split('|').collect();
    let [cell, lat, lng, acc, gender, left, last, visible, purge] = f[..] else {
        return None;
    };
    let int = |s: &str| s.parse::<i64>().ok();
    let coords = Coordinates::new(int(lat)? as f64 / 1e4, int(lng)? as f64 / 1e4).ok()?;
    let (gender, _) = parse_member(&format!("{gender}x"))?;
    Some(LocationEntry {
        position: Position {
            user_id: user.clone(),
            feature,
            location: Location {
                coords,
                accuracy_m: int(acc)? as f32,
            },
            cell: cell.parse().ok()?,
            gender,
        },
        deadlines: Deadlines {
            last_active: Timestamp::from_millis(int(last)?),
            visible_until: Timestamp::from_millis(int(visible)?),
            purge_at: Timestamp::from_millis(int(purge)?),
        },
        left: left == "1",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SnapGrid;

    #[test]
    fn records_round_trip() {
        let user = UserId::parse("a@b", "user_id").unwrap();
        let location = Location::new(39.9123, -116.3988, 12.0).unwrap();
        let position = Position {
            user_id: user.clone(),
            feature: Feature::PeopleNearby,
            location,
            cell: SnapGrid::default().snap(location.coords),
            gender: Gender::Female,
        };
        let deadlines = Deadlines {
            last_active: Timestamp::from_millis(1),
            visible_until: Timestamp::from_millis(2),
            purge_at: Timestamp::from_millis(3),
        };
        let raw = encode_record(&position, &deadlines, true);
        let entry = decode_record(Feature::PeopleNearby, &user, &raw).unwrap();
        assert_eq!(entry.position, position);
        assert_eq!(entry.deadlines, deadlines);
        assert!(entry.left);
        assert!(decode_record(Feature::PeopleNearby, &user, "junk").is_none());
    }

    #[test]
    fn a_cell_and_its_partition_share_a_hash_tag() {
        let cell = SnapGrid::default().snap(Coordinates::new(39.9, 116.4).unwrap());
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&cell_key(cell)), tag(&due_key(partition(cell))));
        let user = UserId::parse("u1", "user_id").unwrap();
        assert_eq!(tag(&consent_key(&user)), tag(&history_key(&user)));
        assert_eq!(
            parse_member(&member(Gender::Male, &user)),
            Some((Gender::Male, user))
        );
    }
}

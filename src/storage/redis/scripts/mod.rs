//! Every Lua script the Redis store runs: the Lua is in `lua/*.lua` (helpers shared by several
//! scripts in `lua/lib/`, checked by `luacheck` in the test suite), joined here with
//! `include_str!` behind a prelude of constants generated from `keys` and this module (key
//! prefixes, grace periods, record lengths), so the key layout is written in one place. Each
//! script's KEYS/ARGV contract is the doc comment of its static, in the file of its family
//! (cells, records, limits, consent, shakes); this file holds the prelude and the joins.
//!
//! Each script takes time from the Redis server (`TIME`), so all service nodes agree on
//! deadlines whatever their own clocks say. Scripts that a cluster runs touch keys of one
//! hash tag only (one slot); [`UPSERT`] and [`CELLS_READ`] over several partitions run on a
//! single node only, which allows it.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use h3o::CellIndex;
use redis::{Script, ScriptInvocation};

use super::keys;

use crate::{
    domain::{
        ConsentEvent, Deadlines, Feature, Retention, Timestamp, UserId,
        limits::Rate,
        nearby::{NearbyQuery, Pseudonyms},
        shake::{self, PendingShake, ShakeMatch},
        user::GenderFilter,
    },
    storage::{
        CLEAR_MARK_TTL, FENCE_LIFETIME, Fence, Holding, LimitKey, LocationEntry, NewShake, Position,
    },
};

/// How long past its deadline a key's TTL falls (see [`EXPIRE_AT`]).
pub const TTL_GRACE: Duration = Duration::from_secs(30);
/// Expired pending shakes, and uncollected mailboxes, removed per Shake sweep call (each).
pub const SHAKE_SWEEP_BATCH: usize = 1_000;

/// `pub static $name`: the script of `lua/$file` behind the helpers `$joined` adds (built
/// once, on first use).
macro_rules! lua_script {
    ($(#[$doc:meta])* $name:ident, $joined:ident, $file:literal) => {
        $(#[$doc])*
        pub static $name: LazyLock<Script> = LazyLock::new(|| $joined(include_str!($file)));
    };
}

// The families, after the macro they use.
mod cells;
mod consent;
mod limits;
mod records;
mod shakes;

pub use cells::*;
pub use consent::*;
pub use limits::*;
pub use records::*;
pub use shakes::*;

/// The constants every script starts with (names in `lua/.luacheckrc`).
fn constants() -> String {
    format!(
        "local CELL_KEY_HEAD, CELL_KEY_MID, DUE_KEY_TAIL = '{}', '{}', '{}'\n\
         local SHAKE_PREFIX, WAKE_PREFIX = '{}', '{}'\n\
         local SHAKE_SCHEDULES = '{}'\n\
         local TTL_GRACE_MS, UNCOLLECTED_MS, SHAKE_SWEEP_BATCH = {}, {}, {}\n\
         local RECORD_LEN, LEGACY_RECORD_LEN, STRAYS_CAP = {}, {}, {}\n\
         local ORDER_SPACE, CLEAR_MARK_TTL_MS, FENCE_LIFETIME_MS = {}, {}, {}\n",
        keys::CELL_KEY_HEAD,
        keys::CELL_KEY_MID,
        keys::DUE_KEY_TAIL,
        keys::SHAKE_PREFIX,
        keys::WAKE_PREFIX,
        keys::SHAKE_SCHEDULES.join(" "),
        TTL_GRACE.as_millis(),
        crate::storage::SHAKE_UNCOLLECTED.as_millis(),
        SHAKE_SWEEP_BATCH,
        keys::RECORD_LEN,
        keys::LEGACY_RECORD_LEN,
        keys::STRAYS_CAP,
        crate::domain::nearby::ORDER_SPACE,
        CLEAR_MARK_TTL.as_millis(),
        FENCE_LIFETIME.as_millis(),
    )
}

/// A script of `parts` joined behind [`constants`], its body kept for [`body_of`].
fn joined(parts: &[&str]) -> Script {
    let body = constants() + &parts.concat();
    let script = Script::new(&body);
    let mut bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    bodies.insert(script.get_hash().to_owned(), Arc::from(body));
    script
}

/// Every script's body by its SHA1 (scripts are built once each, on first use).
static BODIES: LazyLock<Mutex<HashMap<String, Arc<str>>>> = LazyLock::new(Mutex::default);

/// The body of the script whose SHA1 is `hash` (hex), when it is one of these: what a node
/// that answers `NOSCRIPT` (restarted, or a replica promoted: Redis does not replicate its
/// script cache) is sent as an `EVAL` instead (`conn`).
pub fn body_of(hash: &[u8]) -> Option<Arc<str>> {
    let hash = std::str::from_utf8(hash).ok()?;
    let bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    bodies.get(hash).cloned()
}

/// Whether the script whose SHA1 is `hash` (hex) must have its writes held by replicas
/// before its reply counts, when replica acknowledgements are asked for
/// (`Conn::replicated_script`): every script but those that only read, and the sweep's,
/// whose deletions are safe to lose (a failover that loses one leaves the entry and its
/// schedule on the promoted replica, and the next pass deletes it again), so a sweep goes on
/// while a replica is away.
pub fn waits_for_replicas(hash: &[u8]) -> bool {
    static NO_WAIT: LazyLock<Vec<String>> = LazyLock::new(|| {
        [
            &CELLS_READ,
            &CELLS_READ_FILTERED,
            &FENCE_READ,
            &USER_GET,
            &SWEEP_FIND,
            &PURGES_OWED,
            &HISTORY_READ,
            &USER_SWEEP,
            &USER_PURGE,
            &SWEEP_CELLS,
            &PART_RESCHEDULE,
            &SHAKE_SWEEP,
        ]
        .into_iter()
        .map(|script| script.get_hash().to_owned())
        .collect()
    });
    !NO_WAIT.iter().any(|read| read.as_bytes() == hash)
}

/// `num`, a whole number as a command's text, and the server clock read once per call
/// (`time_now`, what `TIME` answered), in milliseconds as `now` (and its integer text as
/// `now_s`).
const NOW: &str = concat!(
    include_str!("lua/lib/num.lua"),
    include_str!("lua/lib/now.lua")
);

/// [`NOW`]'s clock alone: a [`Function`] reads it in each call.
const CLOCK: &str = include_str!("lua/lib/now.lua");

/// Sets a key's TTL to `at` plus a grace unless it already lives longer (GT, then NX for a key
/// without a TTL). The grace matters: a script sees a key past its TTL as absent while Redis
/// may keep it in memory for minutes, so if the TTL fell on the deadline itself, the sweeper
/// would find nothing to delete and the data would linger. With the grace the sweeper deletes
/// at the deadline, and the TTL only acts when no service node runs at all. Keys that many
/// writes share (a partition's due index, the partition schedule) use `expire_at_shared`,
/// which reads the TTL first: one call where GT then NX made two (docs/performance.md,
/// round 15).
const EXPIRE_AT: &str = include_str!("lua/lib/expire_at.lua");

/// Cell members: `<gender><deadline: 7 base-36 digits of whole seconds><user id>`.
const MEMBERS: &str = include_str!("lua/lib/members.lua");

fn script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, body])
}

/// The score ranges of a rotated window of the order (`lua/lib/ranges.lua`).
const RANGES: &str = include_str!("lua/lib/ranges.lua");

/// A cell-reading script: [`script`]'s helpers and the window's score ranges.
fn cells_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, RANGES, body])
}

/// Limit state: the server clock in µs, GCRA rates and capped places (`lua/lib/limits.lua`).
const LIMITS: &str = include_str!("lua/lib/limits.lua");

fn limit_script(body: &str) -> Script {
    joined(&[NOW, LIMITS, body])
}

/// H3 on raw cells inside a script: the key text of an 8-byte big-endian cell (h3o's
/// lower-case hex, no leading zeros) and its parent at a resolution (resolution field set,
/// finer digits set to 7, as H3 defines it).
pub(super) const CELLS: &str = include_str!("lua/lib/cells.lua");

/// Cell-set steps shared by the scripts that write cells: a user's members found by their
/// ticket (no scan) are dropped, a cell left empty leaves its partition's due index, and a
/// member is added with the cell's due time and the TTLs pushed forward.
const CELL_OPS: &str = include_str!("lua/lib/cell_ops.lua");

/// A script that writes cells: [`script`]'s helpers plus [`CELLS`] and [`CELL_OPS`].
fn cell_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, CELLS, CELL_OPS, body])
}

/// The single node's UpdateLocation: [`record_script`]'s helpers but the strays (a cluster's),
/// with the limit helpers. A script creates every helper it joins on each call (about 600
/// instructions each), and this one runs on most calls, so it also runs as a [`Function`]
/// ([`UPSERT_FUNCTION`]).
fn limited_record_script(body: &str) -> Script {
    joined(&[&[NOW], RECORD_HELPERS, &[LIMITS, body]].concat())
}

/// Where a user's record says their cell set and its due index are (single node only: the
/// keys are derived, not declared). `rec` is a record (`keys::encode_record`), `res` the
/// partition resolution. Returns the cell key, the due key and the cell id.
const RECORD_CELL: &str = include_str!("lua/lib/record_cell.lua");

/// A user's strays beside their record (cluster only; `lua/lib/strays.lua`, the key table in
/// [`keys`]).
const STRAYS: &str = include_str!("lua/lib/strays.lua");

/// A script that reads cells from records: [`cell_script`] plus [`RECORD_CELL`], with the
/// record lengths of `keys` (a record of the earlier layout is read too, and rewritten in the
/// current one: see `keys`).
fn record_script(body: &str) -> Script {
    joined(&[&[NOW], RECORD_HELPERS, &[STRAYS, body]].concat())
}

/// The helpers of [`record_script`] and [`limited_record_script`] after [`NOW`].
const RECORD_HELPERS: &[&str] = &[EXPIRE_AT, MEMBERS, CELLS, CELL_OPS, RECORD_CELL, FENCE];

/// A script that also runs as a Redis Function (`FCALL`), where the server allows: the same
/// Lua, but its helpers are made once, when the library is loaded, instead of on every call
/// (a tenth of the update's instructions in Redis: docs/performance.md, round 17). The
/// connection sends an `EVALSHA` of the script as an `FCALL` of `name` (`conn`), loads
/// `library` when the server does not have it (a restart, a failover to a replica that missed
/// it, another build's node), and falls back to the script where the function cannot run.
/// Named by the library's own text, so two builds sharing a store each load their own unless
/// their libraries are the same, and a library found under the name is this one.
#[derive(Debug)]
pub struct Function {
    /// The function's name (also its library's): `vc_` and the SHA1 of the library's text
    /// without it.
    pub name: String,
    /// The library's source, for `FUNCTION LOAD`.
    pub library: String,
}

/// Where a [`Function`]'s library names itself, before its name is known.
const NAME: &str = "<name>";

/// [`UPSERT`] as a [`Function`], made from the script's own text: what comes before its body
/// (the constants and the helpers) at load, but the clock; the clock, then the body, in each
/// call (whose `KEYS` and `ARGV` are the callback's). Redis runs one call at a time, so the
/// clock's upvalues, set at the start of a call, hold that call's time throughout it.
pub static UPSERT_FUNCTION: LazyLock<Function> = LazyLock::new(|| {
    let script = body_of(UPSERT.get_hash().as_bytes()).expect("every script's body is kept");
    let body = include_str!("lua/upsert.lua");
    let helpers = script
        .strip_suffix(body)
        .expect("a script ends with its body");
    assert!(helpers.contains(CLOCK), "the script reads the clock");
    // The clock's upvalues, which the helpers read, are the library's, set by each call;
    // `now_s`, which only a body reads, stays the call's own.
    let helpers = helpers.replacen(CLOCK, "local time_now, now\n", 1);
    let clock = CLOCK
        .replace("local time_now =", "time_now =")
        .replace("local now =", "now =");
    let unnamed = format!(
        "#!lua name={NAME}\n{helpers}\
         redis.register_function('{NAME}', function(KEYS, ARGV)\n{clock}{body}end)\n"
    );
    let name = format!("vc_{}", Script::new(&unnamed).get_hash());
    let library = unnamed.replace(NAME, &name);
    Function { name, library }
});

/// The [`Function`] an `EVALSHA` of the script whose SHA1 is `hash` (hex) may be sent as.
pub fn function_of(hash: &[u8]) -> Option<&'static Function> {
    (hash == UPSERT.get_hash().as_bytes()).then(|| &*UPSERT_FUNCTION)
}

/// Marks: set by a clear (a clear mark, a Shake tombstone), compared by a fenced write
/// (`lua/lib/fence.lua`).
const FENCE: &str = include_str!("lua/lib/fence.lua");

/// A script that sets or compares clear marks: [`script`]'s helpers and [`FENCE`].
fn fence_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, FENCE, body])
}

/// The names the member of a cluster UpdateLocation whose record is `entry` can have before
/// its last step confirms it ([`CELL_ADD`] holds it until `now + hold`, rounded up to a
/// second, with `purge_at` = `now + retention` rounded down, so `now` lies in the second
/// from `last_active` on, and the hold's end in one of two seconds). A node whose order
/// secret differs from the writer's finds that member by these names alone, so a newer
/// update or a Clear takes it before the writer confirms it (the confirm then fails),
/// instead of missing it and leaving it confirmed where no record names it.
fn held_members(entry: &LocationEntry, hold: Duration) -> impl Iterator<Item = String> + '_ {
    let purge = entry.deadlines.purge_at.as_millis();
    let earliest = entry.deadlines.last_active.as_millis() + hold.as_millis() as i64;
    let first = (earliest + 999).div_euclid(1000) * 1000;
    [first, first + 1000]
        .into_iter()
        .map(move |end| end.min(purge))
        .filter(move |end| *end != purge)
        .map(|end| {
            keys::member(
                entry.position.gender,
                Timestamp::from_millis(end),
                &entry.position.user_id,
            )
        })
}

/// A call of `script` whose KEYS are `cell`'s member set and its partition's due index.
fn on_cell(script: &'static Script, cell: CellIndex) -> ScriptInvocation<'static> {
    let mut call = script.prepare_invoke();
    call.key(keys::cell_key(cell))
        .key(keys::due_key(keys::partition(cell)));
    call
}

/// A call of `script` on `position`'s cell whose ARGV start with the member's parts: gender
/// tag, user id, `ticket`.
fn on_member(
    script: &'static Script,
    position: &Position,
    ticket: u64,
) -> ScriptInvocation<'static> {
    let mut call = on_cell(script, position.cell);
    call.arg(keys::gender_tag(position.gender).to_string())
        .arg(position.user_id.as_str())
        .arg(ticket);
    call
}

/// The member `entry` names in its cell (as the node that wrote it spelled it).
fn named_member(entry: &LocationEntry) -> String {
    keys::member(
        entry.position.gender,
        entry.deadlines.purge_at,
        &entry.position.user_id,
    )
}

/// A call of `script` whose KEYS are `user`'s hash and whose ARGV is their field in `feature`.
fn on_record(
    script: &'static Script,
    feature: Feature,
    user: &UserId,
) -> ScriptInvocation<'static> {
    let mut call = script.prepare_invoke();
    call.key(keys::user_key(user))
        .arg(keys::user_field(feature, user));
    call
}

/// Shake's key names inside scripts (every one under the `{shake}` hash tag) and the steps
/// several Shake scripts share: dropping a pending shake, and a user's history, "named by"
/// index and tombstone.
const SHAKE_OPS: &str = include_str!("lua/lib/shake_ops.lua");

/// A Shake script: [`script`]'s helpers plus [`SHAKE_OPS`] and [`FENCE`] (its tombstone is a
/// mark as a clear's is).
fn shake_script(body: &str) -> Script {
    joined(&[NOW, EXPIRE_AT, MEMBERS, SHAKE_OPS, FENCE, body])
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::*;

    /// `luacheck` (Debian's `lua-check`, which `scripts/test` installs) over every Lua file,
    /// with `lua/.luacheckrc`: Lua 5.1 as Redis runs it, no global but Redis's own, the
    /// prelude's constants and the helpers, nothing unused.
    #[test]
    fn every_lua_file_passes_luacheck() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/redis/scripts/lua");
        let output = Command::new("luacheck")
            .args(["--no-color", "."])
            .current_dir(&dir)
            .output()
            .expect("luacheck runs (apt-get install lua-check; scripts/test installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// Every script as Redis receives it (the prelude, the helpers its family joins, its
    /// body) through `luacheck` with nothing declared but Redis's own globals: a body calling
    /// a helper its join lacks, or a helper shadowing another, passes the per-file check above
    /// (which declares every helper) and fails here. Unused locals are the per-file check's
    /// (a join carries helpers its body does not call).
    #[test]
    fn every_joined_script_passes_luacheck() {
        let scripts = every_script();
        let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/redis/scripts/lua");
        let bodies = std::fs::read_dir(&lua)
            .expect("lua/")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension() == Some("lua".as_ref()))
            })
            .count();
        assert_eq!(
            scripts.len(),
            bodies,
            "every lua/*.lua script is in this list"
        );
        let dir = std::env::temp_dir().join(format!("vicinity-joined-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        for (name, script) in scripts {
            let body = body_of(script.get_hash().as_bytes()).expect("every script's body is kept");
            std::fs::write(dir.join(format!("{name}.lua")), &*body).expect("written");
        }
        // The function library too, as Redis loads it (its first line, `#!lua ...`, is one
        // Lua skips).
        let library = &UPSERT_FUNCTION.library;
        std::fs::write(dir.join("UPSERT_FUNCTION.lua"), library).expect("written");
        let output = luacheck_as_redis_runs(&dir);
        drop(std::fs::remove_dir_all(&dir));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// Every script, by the name of its static.
    fn every_script() -> [(&'static str, &'static Script); 37] {
        macro_rules! named {
            ($($script:ident),* $(,)?) => { [$((stringify!($script), &*$script)),*] };
        }
        named!(
            CELLS_READ,
            CELLS_READ_FILTERED,
            CELL_ADD,
            CELL_CONFIRM,
            CELL_DROP_USER,
            CELL_RENEW,
            CLEAR,
            CONSENT_APPEND,
            CONSENT_FORGET,
            FENCE_READ,
            HISTORY_ADD,
            HISTORY_READ,
            HOLD_TAKE,
            LEAVE,
            LIMIT_ADMIT,
            LIMIT_ADMIT_HOLD,
            PART_RESCHEDULE,
            PART_SCHEDULE,
            PURGES_OWED,
            PURGE_OWE,
            SHAKE_CLEAR_USER,
            SHAKE_PAIR,
            SHAKE_SWEEP,
            SHAKE_TAKE,
            SWEEP_CELLS,
            SWEEP_FIND,
            UPSERT,
            USER_DROP_IF,
            USER_GET,
            USER_LEAVE,
            USER_MARK,
            USER_PURGE,
            USER_PUT,
            USER_SWEEP,
            USER_TAKE,
            USER_UNMARK,
            WRITE_SCHEDULE,
        )
    }

    /// `luacheck` over the files in `dir` as Redis runs them: Lua 5.1, no global but Redis's
    /// own, unused locals allowed (a join carries helpers its body does not call).
    fn luacheck_as_redis_runs(dir: &Path) -> std::process::Output {
        Command::new("luacheck")
            .args([
                "--no-config",
                "--no-color",
                "--std",
                "lua51",
                "--no-max-line-length",
            ])
            .args(["--ignore", "211", "--read-globals"])
            .args([
                "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct", "--",
            ])
            .arg(dir)
            .output()
            .expect("luacheck runs (apt-get install lua-check; scripts/test installs it)")
    }

    /// No script formats a number as floating point (`%.0f`, `%013.0f`, `%g`, ...): glibc's
    /// floating-point printer costs about a microsecond for a millisecond time, and was a tenth
    /// of an update's location Redis time (docs/performance.md, round 15). Whole numbers go
    /// through `num` (lib/num.lua). (A number handed to `redis.call` as it is, which Redis prints
    /// with `%.17g`, is not seen here; the hot scripts pass text.)
    #[test]
    fn no_script_formats_a_number_as_floating_point() {
        let floating = |body: &str| {
            body.match_indices('%').any(|(at, _)| {
                let spec =
                    body[at + 1..].trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
                spec.starts_with(['f', 'g', 'e', 'G', 'E'])
            })
        };
        assert!(floating("string.format('%013.0f', x)") && floating("('%.17g')"));
        assert!(!floating("string.format('%013d', x)") && !floating("n % 36"));
        for (name, script) in every_script() {
            let body = body_of(script.get_hash().as_bytes()).expect("every script's body is kept");
            assert!(
                !floating(&body),
                "{name} formats a number as floating point"
            );
        }
    }

    /// The key layout is written once: what the scripts are given is what `keys` builds.
    #[test]
    fn the_prelude_names_the_keys_as_keys_builds_them() {
        let part = h3o::LatLng::new(39.9, 116.4)
            .expect("valid")
            .to_cell(keys::PARTITION_RES);
        let prelude = constants();
        let cell_key = keys::cell_prefix(part);
        assert!(
            cell_key.starts_with(keys::CELL_KEY_HEAD) && cell_key.ends_with(keys::CELL_KEY_MID)
        );
        assert_eq!(
            keys::due_key(part),
            format!("{}{part}{}", keys::CELL_KEY_HEAD, keys::DUE_KEY_TAIL)
        );
        assert!(keys::SHAKE_PENDING.starts_with(keys::SHAKE_PREFIX));
        assert!(
            prelude.contains("local SHAKE_SCHEDULES = 'all mdue hdue'\n"),
            "{prelude}"
        );
        for constant in [keys::CELL_KEY_HEAD, keys::SHAKE_PREFIX, keys::WAKE_PREFIX] {
            assert!(prelude.contains(&format!("'{constant}'")), "{prelude}");
        }
        assert!(prelude.contains(&format!("= {}, ", TTL_GRACE.as_millis())));
        // The order space the cell reads rotate in is the domain's (`lua/lib/ranges.lua`).
        let order_space = crate::domain::nearby::ORDER_SPACE;
        let (ttl, lifetime) = (CLEAR_MARK_TTL.as_millis(), FENCE_LIFETIME.as_millis());
        assert!(prelude.contains(&format!(
            "local ORDER_SPACE, CLEAR_MARK_TTL_MS, FENCE_LIFETIME_MS = {order_space}, {ttl}, {lifetime}\n"
        )));
    }
}

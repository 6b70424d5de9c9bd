-- luacheck for the Redis scripts (run by the test suite: scripts/mod.rs,
-- `every_lua_file_passes_luacheck`). Redis runs Lua 5.1; each script is the
-- constants prelude (scripts/mod.rs `constants`), some of lib/*.lua, then its body.
std = "lua51"
max_line_length = 120
read_globals = { "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct" }

-- The prelude's constants.
local constants = {
  "CELL_KEY_HEAD", "CELL_KEY_MID", "DUE_KEY_TAIL", "SHAKE_PREFIX", "WAKE_PREFIX", "SHAKE_SCHEDULES",
  "TTL_GRACE_MS", "UNCOLLECTED_MS", "SHAKE_SWEEP_BATCH", "RECORD_LEN", "LEGACY_RECORD_LEN", "STRAYS_CAP",
  "ORDER_SPACE", "CLEAR_MARK_TTL_MS", "FENCE_LIFETIME_MS",
}
-- What lib/*.lua defines for the bodies.
local helpers = {
  "time_now", "now", "now_s", "expire_at", "expire_at_shared", "member", "deadline_ms", "num", "cell_hex", "parent_of",
  "drop_user", "drop_if_empty", "add_member", "record_cell", "is_record", "flags_of",
  "record_gender", "drop_record_member", "u32be", "left_record", "P", "unpend",
  "entry_partner", "forget_box", "cleared_since", "clock_us", "gcra", "gcra_keep",
  "place_wait", "place_take", "is_strays", "strays_cells", "strays_deadline", "strays_put", "strays_add",
  "bounds", "set_mark", "fence_holds",
}

local function all(...)
  local out = {}
  for _, list in ipairs({ ... }) do
    for _, name in ipairs(list) do out[#out + 1] = name end
  end
  return out
end

-- A helper file defines locals for the scripts that include it, and uses the
-- constants and the helpers of the files before it.
files["lib/*.lua"] = { unused = false, read_globals = all(constants, helpers) }
-- A body uses the constants and the helpers.
files["*.lua"] = { read_globals = all(constants, helpers) }

if not fence_holds(KEYS[2], ARGV[4], ARGV[5]) then return -1 end
-- Room for this mark and the old cell USER_PUT adds after it.
local held = math.ceil((now + tonumber(ARGV[3])) / 1000) * 1000
if strays_add(KEYS[1], ARGV[1], ARGV[2], held, 2) then return 1 end
return 0

local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local gone = {}
for i = 2, #ARGV do gone[ARGV[i]] = true end
local keep = {}
for _, c in ipairs(strays_cells(v)) do
  if not gone[c] then keep[#keep + 1] = c end
end
strays_put(KEYS[1], ARGV[1], keep, strays_deadline(v))
return #keep

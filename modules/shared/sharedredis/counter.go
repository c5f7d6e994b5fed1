package sharedredis

import (
	"strconv"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// sumLive is the Lua that sums the parts of a count hash (KEYS[1]) held
// by live instances — its own (ARGV[1]) or one whose heartbeat key
// (ARGV[2] .. name) exists — and drops the parts of dead ones.
const sumLive = `
local function total()
  local h = redis.call('HGETALL', KEYS[1])
  local sum = 0
  for i = 1, #h, 2 do
    if h[i] == ARGV[1] or redis.call('EXISTS', ARGV[2] .. h[i]) == 1 then
      sum = sum + tonumber(h[i + 1])
    else
      redis.call('HDEL', KEYS[1], h[i])
    end
  end
  return sum
end
`

// alive is the Lua that refreshes the instance's heartbeat (ARGV[3]: TTL
// in ms) and the expiry of a count hash it has a part in.
const alive = `
local function alive(hash)
  redis.call('SET', ARGV[2] .. ARGV[1], '1', 'PX', ARGV[3])
  redis.call('PEXPIRE', hash, 3 * tonumber(ARGV[3]))
end
`

// KEYS: count hash, the instance's key set. ARGV: instance, heartbeat
// prefix, TTL ms, limit. Returns {total, ok}.
var acquireScript = redis.NewScript(sumLive + alive + `
local n = total()
local limit = tonumber(ARGV[4])
if limit > 0 and n >= limit then
  return {tostring(n), '0'}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[2], 3 * tonumber(ARGV[3]))
alive(KEYS[1])
return {tostring(n + 1), '1'}
`)

// KEYS: count hash. ARGV: instance, heartbeat prefix, TTL ms. Returns the
// total after.
var releaseScript = redis.NewScript(sumLive + alive + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
  alive(KEYS[1])
end
return total()
`)

// KEYS: count hash. ARGV: instance, heartbeat prefix.
var totalScript = redis.NewScript(sumLive + `
return total()
`)

// KEYS: the instance's key set. ARGV: instance, heartbeat prefix, TTL ms,
// then hash, count pairs. States the instance's parts: those of hashes
// not listed go.
var syncScript = redis.NewScript(alive + `
local own = {}
for i = 4, #ARGV, 2 do own[ARGV[i]] = ARGV[i + 1] end
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not own[h] then redis.call('HDEL', h, ARGV[1]) end
end
redis.call('DEL', KEYS[1])
redis.call('SET', ARGV[2] .. ARGV[1], '1', 'PX', ARGV[3])
for h, n in pairs(own) do
  redis.call('HSET', h, ARGV[1], n)
  alive(h)
  redis.call('SADD', KEYS[1], h)
end
if next(own) ~= nil then
  redis.call('PEXPIRE', KEYS[1], 3 * tonumber(ARGV[3]))
end
return 1
`)

type counter struct{ s *Store }

func (c counter) args(extra ...string) []string {
	o := c.s.opts
	return append([]string{o.Instance, o.Prefix + "inst:", ms(o.TTL)}, extra...)
}

func (c counter) Acquire(key string, limit int) async.Op[shared.Acquired] {
	if key == "" {
		return async.Done(shared.Acquired{}, shared.ErrBadKey)
	}
	op := acquireScript.Strings(c.s.c, []string{c.s.key("cnt", key), c.s.key("ikeys", c.s.opts.Instance)},
		c.args(strconv.Itoa(max(limit, 0)))...)
	return async.Map(op, func(r []string) (shared.Acquired, error) {
		if len(r) != 2 {
			return shared.Acquired{}, redis.ErrType
		}
		n, err := atoi(r[0])
		return shared.Acquired{Total: int(n), OK: r[1] == "1"}, err
	})
}

func (c counter) Release(key string) async.Op[int] {
	if key == "" {
		return async.Done(0, shared.ErrBadKey)
	}
	return async.Map(releaseScript.Int(c.s.c, []string{c.s.key("cnt", key)}, c.args()...),
		func(n int64) (int, error) { return int(n), nil })
}

func (c counter) Total(key string) async.Op[int] {
	o := c.s.opts
	return async.Map(totalScript.Int(c.s.c, []string{c.s.key("cnt", key)}, o.Instance, o.Prefix+"inst:"),
		func(n int64) (int, error) { return int(n), nil })
}

func (c counter) Sync(own map[string]int) async.Op[struct{}] {
	args := c.args()
	for k, n := range own {
		if k != "" && n > 0 {
			args = append(args, c.s.key("cnt", k), strconv.Itoa(n))
		}
	}
	return async.Map(syncScript.Int(c.s.c, []string{c.s.key("ikeys", c.s.opts.Instance)}, args...),
		func(int64) (struct{}, error) { return struct{}{}, nil })
}

package sharedredis

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// KEYS: the AOR's hash. ARGV: now (unix s), max, wildcard (1/0), then
// contact, value pairs (value "" removes). Drops expired bindings, applies
// the REGISTER, and refuses it whole when more than max would be live.
// Returns {'ok', before..., '|', after...} as contact, value pairs, or
// {'toomany', n}. The hash expires with its last binding.
var saveScript = redis.NewScript(`
local now, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local function exp(v) return tonumber(string.match(v, '^(%d+)')) end
local cur = redis.call('HGETALL', KEYS[1])
local before, keep = {}, {}
for i = 1, #cur, 2 do
  if exp(cur[i + 1]) > now then
    table.insert(before, cur[i]); table.insert(before, cur[i + 1])
    if ARGV[3] ~= '1' then keep[cur[i]] = cur[i + 1] end
  end
end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == "" then keep[ARGV[i]] = nil else keep[ARGV[i]] = ARGV[i + 1] end
end
local n, last = 0, 0
for _, v in pairs(keep) do
  n = n + 1
  if exp(v) > last then last = exp(v) end
end
if max > 0 and n > max then return {'toomany', tostring(n)} end
redis.call('DEL', KEYS[1])
local out = {'ok'}
for _, x in ipairs(before) do table.insert(out, x) end
table.insert(out, '|')
for c, v in pairs(keep) do
  redis.call('HSET', KEYS[1], c, v)
  table.insert(out, c); table.insert(out, v)
end
if n > 0 then redis.call('EXPIREAT', KEYS[1], last) end
return out
`)

type location struct{ s *Store }

func (l location) Save(aor string, binds []shared.Binding, wildcard bool, max int, now time.Time) async.Op[shared.Saved] {
	if aor == "" {
		return async.Done(shared.Saved{}, shared.ErrBadKey)
	}
	wc := "0"
	if wildcard {
		wc = "1"
	}
	args := make([]string, 0, 3+2*len(binds))
	args = append(args, strconv.FormatInt(now.Unix(), 10), strconv.Itoa(max), wc)
	for _, b := range binds {
		v := ""
		if b.Live(now) {
			v = encodeBinding(b)
		}
		args = append(args, b.Contact, v)
	}
	op := saveScript.Strings(l.s.c, []string{l.s.key("loc", aor)}, args...)
	return async.Map(op, func(r []string) (shared.Saved, error) {
		if len(r) == 2 && r[0] == "toomany" {
			n, _ := strconv.Atoi(r[1])
			return shared.Saved{}, &shared.TooManyError{Live: n}
		}
		if len(r) == 0 || r[0] != "ok" {
			return shared.Saved{}, errors.New("sharedredis: unexpected reply of the location save")
		}
		var s shared.Saved
		dst := &s.Before
		for i := 1; i < len(r); {
			if r[i] == "|" {
				dst = &s.After
				i++
				continue
			}
			if i+1 >= len(r) {
				break
			}
			if b, ok := decodeBinding(r[i], r[i+1]); ok && b.Live(now) {
				*dst = append(*dst, b)
			}
			i += 2
		}
		byContact(s.Before)
		byContact(s.After)
		return s, nil
	})
}

func byContact(bs []shared.Binding) {
	slices.SortFunc(bs, func(a, b shared.Binding) int { return strings.Compare(a.Contact, b.Contact) })
}

func (l location) Lookup(aor string, limit int, now time.Time) async.Op[[]shared.Binding] {
	return async.Map(l.s.c.HGetAll(l.s.key("loc", aor)), func(m map[string]string) ([]shared.Binding, error) {
		out := make([]shared.Binding, 0, len(m))
		for ct, v := range m {
			if b, ok := decodeBinding(ct, v); ok && b.Live(now) {
				out = append(out, b)
			}
		}
		shared.SortLookup(out)
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
		return out, nil
	})
}

func (l location) Remove(aor, contact string) async.Op[bool] {
	return async.Map(l.s.c.Int("HDEL", l.s.key("loc", aor), contact), func(n int64) (bool, error) { return n > 0, nil })
}

func (l location) RemoveAll(aor string) async.Op[int] {
	// HLEN then DEL in one script so the count is that of what was removed.
	return async.Map(removeAllScript.Int(l.s.c, []string{l.s.key("loc", aor)}), func(n int64) (int, error) { return int(n), nil })
}

var removeAllScript = redis.NewScript(`
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
`)

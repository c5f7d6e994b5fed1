package sharedredis

import (
	"strconv"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/modules/shared"
)

// ARGV: prefix, limit, window ms, ban ms, then key, count pairs. The window
// is on the server's clock (TIME), the same for every instance. Returns
// key, ban ms left pairs for the banned keys.
var ratesScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, w, ban = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local start = now - (now % w)
local out = {}
for i = 5, #ARGV, 2 do
  local k, n = ARGV[i], tonumber(ARGV[i + 1])
  local bk = ARGV[1] .. 'ban:' .. k
  local left = redis.call('PTTL', bk)
  if left > 0 then
    table.insert(out, k)
    table.insert(out, tostring(left))
  else
    local ck = ARGV[1] .. 'rate:' .. start .. ':' .. k
    local sum = redis.call('INCRBY', ck, n)
    if sum == n then redis.call('PEXPIRE', ck, 2 * w) end
    if limit > 0 and sum > limit then
      redis.call('SET', bk, '1', 'PX', ban)
      table.insert(out, k)
      table.insert(out, ban)
    end
  end
end
return out
`)

type rates struct{ s *Store }

func (r rates) Add(counts map[string]int64, limit int64, window, banFor time.Duration) async.Op[map[string]time.Time] {
	if window <= 0 {
		window = time.Second
	}
	args := make([]string, 0, 4+2*len(counts))
	args = append(args, r.s.opts.Prefix, strconv.FormatInt(limit, 10), ms(window), ms(banFor))
	for k, n := range counts {
		if k != "" && n > 0 {
			args = append(args, k, strconv.FormatInt(n, 10))
		}
	}
	return async.Map(ratesScript.Strings(r.s.c, nil, args...), func(out []string) (map[string]time.Time, error) {
		now := time.Now()
		m := make(map[string]time.Time, len(out)/2)
		for i := 0; i+1 < len(out); i += 2 {
			left, err := atoi(out[i+1])
			if err != nil {
				return nil, err
			}
			m[out[i]] = now.Add(time.Duration(left) * time.Millisecond)
		}
		return m, nil
	})
}

// KEYS: the nonce's key. ARGV: nc, ttl ms. 1 when nc is above the last.
var nonceScript = redis.NewScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

type nonces struct{ s *Store }

func (n nonces) Use(key string, nc uint32, ttl time.Duration) async.Op[bool] {
	if key == "" {
		return async.Done(false, shared.ErrBadKey)
	}
	return async.Map(nonceScript.Int(n.s.c, []string{n.s.key("nonce", key)}, strconv.FormatUint(uint64(nc), 10), ms(ttl)),
		func(v int64) (bool, error) { return v == 1, nil })
}

type board struct{ s *Store }

func (b board) Put(key, value string, ttl time.Duration) async.Op[struct{}] {
	if key == "" {
		return async.Done(struct{}{}, shared.ErrBadKey)
	}
	return async.Map(b.s.c.Set(b.s.key("board", key), value, ttl), func(bool) (struct{}, error) { return struct{}{}, nil })
}

func (b board) Get(keys ...string) async.Op[map[string]string] {
	if len(keys) == 0 {
		return async.Done(map[string]string{}, nil)
	}
	args := make([]string, 0, 1+len(keys))
	args = append(args, "MGET")
	for _, k := range keys {
		args = append(args, b.s.key("board", k))
	}
	return async.Map(b.s.c.Do(args...), func(r redis.Reply) (map[string]string, error) {
		out := make(map[string]string, len(keys))
		for i, e := range r.Elems {
			if i < len(keys) && e.Kind == redis.KindString {
				out[keys[i]] = e.Str
			}
		}
		return out, nil
	})
}

// encodeBinding is a binding's hash value: "expires cseq callid".
func encodeBinding(b shared.Binding) string {
	return strconv.FormatInt(b.Expires.Unix(), 10) + " " + strconv.FormatInt(b.CSeq, 10) + " " + b.CallID
}

func decodeBinding(contact, v string) (shared.Binding, bool) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 {
		return shared.Binding{}, false
	}
	exp, err1 := strconv.ParseInt(f[0], 10, 64)
	cseq, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return shared.Binding{}, false
	}
	return shared.Binding{Contact: contact, Expires: time.Unix(exp, 0), CSeq: cseq, CallID: f[2]}, true
}

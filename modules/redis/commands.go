package redis

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/asyncsip/asyncsip/async"
)

// The typed ops below send any command, given as its words
// ("INCR", "calls:trunk1"), and convert the reply. A nil reply is ErrNil
// for String, Int, Float, Strings and StringMap; Bool reads it as false;
// Do returns it as a Reply of KindNil. Error replies are *ReplyError.

// Do sends a command and returns its raw reply: nil is a Reply of KindNil,
// not an error.
func (c *Client) Do(args ...string) async.Op[Reply] { return newOp(c, args, replyCodec) }

// String sends a command whose reply is a string (GET, HGET, SET ... GET);
// an integer or double reply is formatted in decimal.
func (c *Client) String(args ...string) async.Op[string] { return newOp(c, args, stringCodec) }

// Int sends a command whose reply is an integer (INCR, DEL, TTL), or a
// string holding one (GET of a counter).
func (c *Client) Int(args ...string) async.Op[int64] { return newOp(c, args, intCodec) }

// Float sends a command whose reply is a number (INCRBYFLOAT, ZSCORE).
func (c *Client) Float(args ...string) async.Op[float64] { return newOp(c, args, floatCodec) }

// Bool sends a command whose reply says yes or no: an integer (EXPIRE,
// SISMEMBER, HSETNX: non-zero is true), a status ("OK" is true) or nil
// (SET ... NX that did not set: false).
func (c *Client) Bool(args ...string) async.Op[bool] { return newOp(c, args, boolCodec) }

// Strings sends a command whose reply is an array of strings (MGET,
// SMEMBERS, LRANGE, KEYS); nil elements (MGET of a missing key) are "".
func (c *Client) Strings(args ...string) async.Op[[]string] { return newOp(c, args, stringsCodec) }

// StringMap sends a command whose reply is a map or a flat array of field,
// value pairs (HGETALL, CONFIG GET).
func (c *Client) StringMap(args ...string) async.Op[map[string]string] {
	return newOp(c, args, stringMapCodec)
}

// Get is String("GET", key): the value, or ErrNil when the key is missing.
func (c *Client) Get(key string) async.Op[string] { return c.String("GET", key) }

// Set stores value at key; ttl > 0 sets its expiry (PX, millisecond
// precision), ttl <= 0 keeps it forever.
func (c *Client) Set(key, value string, ttl time.Duration) async.Op[bool] {
	if ttl > 0 {
		return c.Bool("SET", key, value, "PX", ms(ttl))
	}
	return c.Bool("SET", key, value)
}

// SetNX stores value at key only if the key does not exist, with an expiry
// when ttl > 0; the result says whether it was stored.
func (c *Client) SetNX(key, value string, ttl time.Duration) async.Op[bool] {
	if ttl > 0 {
		return c.Bool("SET", key, value, "NX", "PX", ms(ttl))
	}
	return c.Bool("SET", key, value, "NX")
}

// Del deletes keys and returns how many existed.
func (c *Client) Del(keys ...string) async.Op[int64] {
	return c.Int(append([]string{"DEL"}, keys...)...)
}

// Incr adds 1 to the counter at key and returns the new value.
func (c *Client) Incr(key string) async.Op[int64] { return c.Int("INCR", key) }

// IncrBy adds n to the counter at key and returns the new value.
func (c *Client) IncrBy(key string, n int64) async.Op[int64] {
	return c.Int("INCRBY", key, strconv.FormatInt(n, 10))
}

// Expire sets the expiry of key; false when the key does not exist.
func (c *Client) Expire(key string, ttl time.Duration) async.Op[bool] {
	return c.Bool("PEXPIRE", key, ms(ttl))
}

// HGetAll returns the fields and values of the hash at key (empty when the
// key is missing).
func (c *Client) HGetAll(key string) async.Op[map[string]string] {
	return c.StringMap("HGETALL", key)
}

// Publish posts message on channel and returns the number of subscribers
// that received it (on this server).
func (c *Client) Publish(channel, message string) async.Op[int64] {
	return c.Int("PUBLISH", channel, message)
}

// rueidisMessage is the reply type the codecs read from the wire.
type rueidisMessage = rueidis.RedisMessage

func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// Kind is the type of a Reply.
type Kind uint8

// The kinds of replies (RESP3 types, with RESP2's mapped onto them).
const (
	KindNil Kind = iota
	KindString
	KindInt
	KindFloat
	KindBool
	KindArray
	KindMap
)

var kindNames = [...]string{"nil", "string", "int", "float", "bool", "array", "map"}

// String returns the kind's name ("nil", "string", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Reply is a reply of Redis, copied out of the connection's buffers: what
// Do returns. Only the fields of its Kind are set.
type Reply struct {
	Kind  Kind
	Str   string  // KindString (simple, bulk or verbatim strings)
	Int   int64   // KindInt
	Float float64 // KindFloat
	Bool  bool    // KindBool
	Elems []Reply // KindArray (arrays, sets, pushes) and KindMap (key, value, key, value... in no particular order)
}

// IsNil reports whether the reply is Redis's nil.
func (r Reply) IsNil() bool { return r.Kind == KindNil }

func toReply(m *rueidis.RedisMessage) (Reply, error) {
	if err := m.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return Reply{Kind: KindNil}, nil
		}
		return Reply{}, err
	}
	switch {
	case m.IsInt64():
		v, _ := m.AsInt64()
		return Reply{Kind: KindInt, Int: v}, nil
	case m.IsFloat64():
		v, err := m.AsFloat64()
		return Reply{Kind: KindFloat, Float: v}, err
	case m.IsBool():
		v, _ := m.AsBool()
		return Reply{Kind: KindBool, Bool: v}, nil
	case m.IsString():
		v, _ := m.ToString()
		return Reply{Kind: KindString, Str: v}, nil
	case m.IsMap():
		kv, _ := m.ToMap()
		r := Reply{Kind: KindMap, Elems: make([]Reply, 0, 2*len(kv))}
		for k, v := range kv {
			e, err := toReply(&v)
			if err != nil {
				e = Reply{Kind: KindString, Str: err.Error()}
			}
			r.Elems = append(r.Elems, Reply{Kind: KindString, Str: k}, e)
		}
		return r, nil
	case m.IsArray():
		vs, _ := m.ToArray()
		r := Reply{Kind: KindArray, Elems: make([]Reply, len(vs))}
		for i := range vs {
			e, err := toReply(&vs[i])
			if err != nil { // an error inside an array (EXEC): keep it as text
				e = Reply{Kind: KindString, Str: err.Error()}
			}
			r.Elems[i] = e
		}
		return r, nil
	}
	return Reply{}, fmt.Errorf("%w: %v", ErrType, m)
}

func toString(m *rueidis.RedisMessage) (string, error) {
	switch {
	case m.IsInt64():
		v, _ := m.AsInt64()
		return strconv.FormatInt(v, 10), nil
	case m.IsFloat64():
		v, err := m.AsFloat64()
		return strconv.FormatFloat(v, 'g', -1, 64), err
	}
	return m.ToString()
}

func toInt(m *rueidis.RedisMessage) (int64, error) { return m.AsInt64() }

func toFloat(m *rueidis.RedisMessage) (float64, error) {
	if m.IsInt64() {
		v, err := m.AsInt64()
		return float64(v), err
	}
	return m.AsFloat64()
}

func toBool(m *rueidis.RedisMessage) (bool, error) {
	if m.IsNil() {
		return false, nil
	}
	return m.AsBool()
}

func toStrings(m *rueidis.RedisMessage) ([]string, error) {
	vs, err := m.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(vs))
	for i := range vs {
		if vs[i].IsNil() {
			continue
		}
		if out[i], err = toString(&vs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func toStringMap(m *rueidis.RedisMessage) (map[string]string, error) {
	if m.IsMap() {
		return m.AsStrMap()
	}
	vs, err := m.ToArray()
	if err != nil {
		return nil, err
	}
	if len(vs)%2 != 0 {
		return nil, fmt.Errorf("%w: odd number of elements (%d) for a map", ErrType, len(vs))
	}
	out := make(map[string]string, len(vs)/2)
	for i := 0; i < len(vs); i += 2 {
		k, err := vs[i].ToString()
		if err != nil {
			return nil, err
		}
		v, err := toString(&vs[i+1])
		if err != nil && !vs[i+1].IsNil() {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

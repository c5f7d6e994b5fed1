// Package sharedredis implements the shared-state contract
// (modules/shared) on Redis, through modules/redis: every op is an async op
// bounded by the client's timeout, and every step that reads and writes
// several values is one Lua script (EVALSHA, loaded on a miss), so it is
// atomic on the server whichever instance runs it.
//
//	rc, _ := redis.Open("redis://127.0.0.1:6379")
//	st := sharedredis.New(rc, sharedredis.Options{Instance: "proxy-a"})
//	tr := dialog.New(dialog.Config{Counter: st.Counter()})
//	rl := ratelimit.New(ratelimit.Config{Shared: st.Rates()})
//	ch.Nonces = st.Nonces()
//	loc := st.Location()
//
// Keys (Options.Prefix, "asyncsip:" by default):
//
//	{p}cnt:{key}       hash: instance → its count (Counter)
//	{p}inst:{name}     an instance's heartbeat, expiring after Options.TTL
//	{p}ikeys:{name}    set: the count hashes an instance has a part in
//	{p}rate:{t}:{key}  a window's count of one key (Rates); {p}ban:{key}
//	{p}nonce:{nonce}   the highest nonce-count used (Nonces)
//	{p}board:{key}     a Board value
//	{p}loc:{aor}       hash: contact → "expires callid cseq" (Location)
//
// The scripts touch keys they compute (the heartbeats of the instances
// that have a part in a count), which a Redis Cluster does not allow: use a
// single server or Sentinel.
package sharedredis

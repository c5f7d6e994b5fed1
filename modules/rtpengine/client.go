package rtpengine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Defaults of Config.
const (
	DefaultTimeout      = 3 * time.Second
	DefaultTryTimeout   = time.Second
	DefaultRetransmit   = 200 * time.Millisecond
	DefaultDisableFor   = 10 * time.Second
	DefaultPingInterval = 5 * time.Second
	DefaultAffinityTTL  = 12 * time.Hour
	DefaultMaxCalls     = 200_000
	// MaxInstances bounds Config.Instances.
	MaxInstances = 64
)

// Instance is one rtpengine ng listener.
type Instance struct {
	// Addr is the ng address: "udp:127.0.0.1:2223", "127.0.0.1:2223" or
	// "udp:[::1]:2223". A host name is resolved once, by New.
	Addr string
	// Weight is the instance's share of new calls relative to the others
	// (default 1; 0 means 1).
	Weight int
}

// ParseInstances parses a list of instances separated by commas or
// spaces, each an address with an optional "=weight":
// "udp:127.0.0.1:2223=2, udp:127.0.0.1:2224".
func ParseInstances(list string) ([]Instance, error) {
	var out []Instance
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		in := Instance{Addr: f}
		if i := strings.LastIndexByte(f, '='); i >= 0 {
			w, err := strconv.Atoi(f[i+1:])
			if err != nil || w < 1 {
				return nil, fmt.Errorf("rtpengine: bad weight in %q", f)
			}
			in = Instance{Addr: f[:i], Weight: w}
		}
		if _, err := resolve(in.Addr); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		return nil, ErrNoInstances
	}
	return out, nil
}

// Config configures a Client. Zero values select the defaults.
type Config struct {
	// Instances are the rtpengine instances; new calls are spread over the
	// healthy ones by weight.
	Instances []Instance
	// Timeout bounds one command, retransmissions and failovers included
	// (default DefaultTimeout). Awaits of the route helpers add a second.
	Timeout time.Duration
	// TryTimeout bounds the wait for one instance (default
	// DefaultTryTimeout): without an answer by then the instance is
	// marked down and an offer moves to the next instance.
	TryTimeout time.Duration
	// Retransmit is the first retransmission interval (default
	// DefaultRetransmit); it doubles after each retransmission. rtpengine
	// answers a retransmitted cookie from its cache, never twice.
	Retransmit time.Duration
	// DisableFor is how long an instance that did not answer stays out of
	// the choice for new calls (default DefaultDisableFor), unless a
	// health ping (StartHealth) brings it back earlier.
	DisableFor time.Duration
	// PingInterval is the period of StartHealth's pings (default
	// DefaultPingInterval).
	PingInterval time.Duration
	// AffinityTTL is how long a call's instance is remembered after its
	// last command (default DefaultAffinityTTL); a full delete forgets it
	// at once.
	AffinityTTL time.Duration
	// MaxCalls bounds the calls whose instance is remembered (default
	// DefaultMaxCalls); beyond it the oldest are forgotten first.
	MaxCalls int
	// Observer receives every command's outcome (nil: none).
	Observer Observer
}

func (c *Config) normalize() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, DefaultTimeout)
	def(&c.TryTimeout, DefaultTryTimeout)
	def(&c.Retransmit, DefaultRetransmit)
	def(&c.DisableFor, DefaultDisableFor)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.AffinityTTL, DefaultAffinityTTL)
	if c.MaxCalls <= 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	if c.TryTimeout > c.Timeout {
		c.TryTimeout = c.Timeout
	}
}

// Client talks the ng protocol to one or more rtpengine instances. Its
// commands are async ops: each loop that runs one gets its own UDP sockets,
// watched by that loop, so a command costs no goroutine and no thread, and
// its reply is read and matched (by cookie) on the loop that sent it. A
// Client is safe for use from every loop at once; the call affinity table
// is shared by all of them.
type Client struct {
	cfg    Config
	inst   []*instance
	aff    *affinity
	prefix string // cookie prefix, random per client

	mu     sync.Mutex
	conns  map[*reactor.Loop]*loopConn
	closed atomic.Bool
	stray  atomic.Uint64
}

// New returns a client of cfg.Instances. It opens no socket: each loop
// opens its own on its first command.
func New(cfg Config) (*Client, error) {
	cfg.normalize()
	if len(cfg.Instances) == 0 {
		return nil, ErrNoInstances
	}
	if len(cfg.Instances) > MaxInstances {
		return nil, fmt.Errorf("rtpengine: %d instances, at most %d", len(cfg.Instances), MaxInstances)
	}
	c := &Client{cfg: cfg, aff: newAffinity(cfg.MaxCalls, cfg.AffinityTTL), conns: map[*reactor.Loop]*loopConn{}}
	for i, in := range cfg.Instances {
		ap, err := resolve(in.Addr)
		if err != nil {
			return nil, err
		}
		w := in.Weight
		if w <= 0 {
			w = 1
		}
		c.inst = append(c.inst, &instance{idx: i, addr: ap, name: ap.String(), weight: w})
	}
	var p [6]byte
	_, _ = rand.Read(p[:])
	c.prefix = hex.EncodeToString(p[:])
	return c, nil
}

// resolve parses "udp:host:port" or "host:port".
func resolve(addr string) (netip.AddrPort, error) {
	a := strings.TrimPrefix(addr, "udp:")
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ua, err := net.ResolveUDPAddr("udp", a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("rtpengine: instance %q: %w", addr, err)
	}
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("rtpengine: instance %q: no address and port", addr)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Instances returns the addresses of the instances, in Config order.
func (c *Client) Instances() []string {
	out := make([]string, len(c.inst))
	for i, in := range c.inst {
		out[i] = in.name
	}
	return out
}

// InstanceOf returns the instance that the call callID is bound to, if it
// is remembered.
func (c *Client) InstanceOf(callID string) (string, bool) {
	i, ok := c.aff.get(callID, time.Now())
	if !ok {
		return "", false
	}
	return c.inst[i].name, true
}

// Offer sends the SDP offer of call: the op's Response carries the SDP to
// send on (Response.SDP). A new call goes to a healthy instance chosen by
// weight and is bound to it; an offer for a known call (a re-INVITE) goes
// to its instance — or, if that one does not answer, to another one, which
// the call is then bound to.
func (c *Client) Offer(call Call, sdp []byte, f *Flags) async.Op[*Response] {
	return c.op("offer", call, sdp, f)
}

// Answer sends the SDP answer of call (call.ToTag set) to the call's
// instance; the Response carries the SDP to send on.
func (c *Client) Answer(call Call, sdp []byte, f *Flags) async.Op[*Response] {
	return c.op("answer", call, sdp, f)
}

// Delete ends call on its instance: the whole call with only CallID (and
// FromTag), one branch with ToTag or ViaBranch too. A full delete forgets
// the call's instance.
func (c *Client) Delete(call Call, f *Flags) async.Op[*Response] {
	return c.op("delete", call, nil, f)
}

// Query asks the call's instance for the call's state and counters.
func (c *Client) Query(call Call) async.Op[*QueryResult] {
	cmd := c.command("query", call, nil, nil)
	return &cmdOp[*QueryResult]{cmd: cmd, conv: ParseQuery}
}

// Ping pings instance i (an index into Config.Instances); the op's value
// is the round trip. A ping that is answered marks the instance up, one
// that is not marks it down.
func (c *Client) Ping(i int) async.Op[time.Duration] {
	if i < 0 || i >= len(c.inst) {
		return async.Done(time.Duration(0), fmt.Errorf("rtpengine: no instance %d", i))
	}
	cmd := c.command("ping", Call{}, nil, nil)
	cmd.pin = i
	return &cmdOp[time.Duration]{cmd: cmd, conv: func(r *Response) (time.Duration, error) {
		if r.Result != "pong" {
			return 0, fmt.Errorf("%w: ping answered %q", ErrBadReply, r.Result)
		}
		return r.Latency, nil
	}}
}

// Do sends any ng command (name is its "command") with the keys of dict
// added; the call and flags are added as for Offer. It is the way to
// commands this package does not wrap (start recording, block DTMF…).
func (c *Client) Do(name string, call Call, f *Flags, dict map[string]any) async.Op[*Response] {
	cmd := c.command(name, call, nil, f)
	for k, v := range dict {
		cmd.dict[k] = v
	}
	return &cmdOp[*Response]{cmd: cmd}
}

func (c *Client) op(name string, call Call, sdp []byte, f *Flags) async.Op[*Response] {
	return &cmdOp[*Response]{cmd: c.command(name, call, sdp, f)}
}

func (c *Client) command(name string, call Call, sdp []byte, f *Flags) *command {
	d := map[string]any{}
	f.addTo(d)
	call.addTo(d)
	if sdp != nil {
		d["sdp"] = sdp
	}
	d["command"] = name
	return &command{c: c, name: name, call: call, dict: d, pin: -1}
}

// command is one ng request, before it is started.
type command struct {
	c    *Client
	name string
	call Call
	dict map[string]any
	pin  int // a fixed instance (ping), or -1
}

// failover reports whether the command may move to another instance when
// its instance does not answer: only an offer, which creates the call
// where it lands. An answer, delete or query elsewhere would only get
// "Unknown call-id".
func (cmd *command) failover() bool { return cmd.name == "offer" && cmd.pin < 0 }

// cmdOp is the async.Op of a command; conv types its Response.
type cmdOp[T any] struct {
	cmd  *command
	conv func(*Response) (T, error)
}

// Describe implements async.Describer: "rtpengine.<command>: <call-id>"
// ("rtpengine.ping: <instance>"), which rtpenginetest's fake matches.
func (o *cmdOp[T]) Describe() string {
	if o.cmd.pin >= 0 {
		return "rtpengine." + o.cmd.name + ": " + o.cmd.c.inst[o.cmd.pin].name
	}
	return "rtpengine." + o.cmd.name + ": " + o.cmd.call.CallID
}

// Command returns the ng command name, and Call the call the op is about
// (for fakes and logs).
func (o *cmdOp[T]) Command() string { return o.cmd.name }

// Call returns the call the op is about.
func (o *cmdOp[T]) Call() Call { return o.cmd.call }

// Dict returns the request dictionary the op sends (a copy).
func (o *cmdOp[T]) Dict() map[string]any {
	d := make(map[string]any, len(o.cmd.dict))
	for k, v := range o.cmd.dict {
		d[k] = v
	}
	return d
}

// Start implements async.Op: it sends the command from l's socket.
func (o *cmdOp[T]) Start(l *reactor.Loop, done func(T, error)) func() {
	fin := func(r *Response, err error) {
		var zero T
		if err != nil {
			done(zero, err)
			return
		}
		if o.conv == nil {
			done(any(r).(T), nil)
			return
		}
		done(o.conv(r))
	}
	c := o.cmd.c
	if c.closed.Load() {
		fin(nil, ErrClosed)
		return nil
	}
	body, err := Encode(nil, o.cmd.dict)
	if err != nil {
		fin(nil, err)
		return nil
	}
	lc, err := c.conn(l)
	if err != nil {
		fin(nil, err)
		return nil
	}
	r := &request{lc: lc, cmd: o.cmd, body: body, done: fin, inst: -1}
	r.start()
	if r.over {
		return nil
	}
	return r.cancel
}

// instance is one rtpengine and its health and counters.
type instance struct {
	idx    int
	addr   netip.AddrPort
	name   string
	weight int

	downUntil atomic.Int64 // unix nanoseconds; 0: up
	stats     instanceStats
}

func (in *instance) usable(now time.Time) bool {
	d := in.downUntil.Load()
	return d == 0 || now.UnixNano() >= d
}

func (c *Client) markDown(in *instance, now time.Time) {
	if in.downUntil.Swap(now.Add(c.cfg.DisableFor).UnixNano()) == 0 {
		in.stats.downs.Add(1)
		if o := c.cfg.Observer; o != nil {
			o.InstanceState(in.name, false)
		}
	}
}

func (c *Client) markUp(in *instance) {
	if in.downUntil.Swap(0) != 0 {
		if o := c.cfg.Observer; o != nil {
			o.InstanceState(in.name, true)
		}
	}
}

// choose picks the instance for the next try of r: its pinned one; the
// call's instance; else a usable untried one by weight; else, when none
// is usable, any untried one by weight (a dead cluster is retried rather
// than refused). -1: nothing left to try.
func (c *Client) choose(r *request, now time.Time) int {
	cmd := r.cmd
	if cmd.pin >= 0 {
		if r.tried != 0 {
			return -1
		}
		return cmd.pin
	}
	if r.tried == 0 && cmd.call.CallID != "" {
		if i, ok := c.aff.get(cmd.call.CallID, now); ok && i < len(c.inst) {
			if !cmd.failover() || c.inst[i].usable(now) {
				return i
			}
			c.inst[i].stats.failovers.Add(1) // the call moves off a down instance

		}
	}
	if i := c.weighted(r.tried, now, true); i >= 0 {
		return i
	}
	return c.weighted(r.tried, now, false)
}

func (c *Client) weighted(tried uint64, now time.Time, healthy bool) int {
	total := 0
	for _, in := range c.inst {
		if tried&(1<<in.idx) == 0 && (!healthy || in.usable(now)) {
			total += in.weight
		}
	}
	if total == 0 {
		return -1
	}
	n := mrand.IntN(total)
	for _, in := range c.inst {
		if tried&(1<<in.idx) == 0 && (!healthy || in.usable(now)) {
			if n < in.weight {
				return in.idx
			}
			n -= in.weight
		}
	}
	return -1
}

// request is a command in flight on one loop.
type request struct {
	lc   *loopConn
	cmd  *command
	body []byte
	done func(*Response, error)

	inst       int // instance of the current try
	cookie     string
	msg        []byte
	tried      uint64 // instances tried, by index
	first      int    // the first instance tried (failover accounting)
	sentAt     time.Time
	attemptEnd time.Time
	end        time.Time
	interval   time.Duration
	timer      *reactor.Timer
	over       bool
}

func (r *request) start() {
	now := r.lc.l.Now()
	r.end = now.Add(r.lc.c.cfg.Timeout)
	r.first = -1
	r.next(now)
}

// next starts a try on the next instance, or fails the request.
func (r *request) next(now time.Time) {
	c := r.lc.c
	i := c.choose(r, now)
	if i < 0 || !now.Before(r.end) {
		r.finish(nil, timeoutError(r.cmd.name, c.cfg.Timeout, bits.OnesCount64(r.tried)))
		return
	}
	if r.first < 0 {
		r.first = i
	} else {
		c.inst[r.inst].stats.failovers.Add(1)
	}
	r.inst = i
	r.tried |= 1 << i
	r.cookie = r.lc.nextCookie()
	r.msg = append(append(append(r.msg[:0], r.cookie...), ' '), r.body...)
	r.lc.pending[r.cookie] = r
	in := c.inst[i]
	in.stats.requests.Add(1)
	r.sentAt = time.Now()
	r.lc.send(in, r.msg)
	r.attemptEnd = minTime(now.Add(c.cfg.TryTimeout), r.end)
	r.interval = c.cfg.Retransmit
	r.arm(now)
}

func (r *request) arm(now time.Time) {
	at := minTime(now.Add(r.interval), r.attemptEnd)
	if r.timer == nil {
		r.timer = r.lc.l.AfterFunc(at.Sub(now), r.tick)
		return
	}
	r.timer.Reset(at.Sub(now))
}

// tick retransmits, or gives up on the current instance.
func (r *request) tick() {
	if r.over {
		return
	}
	c := r.lc.c
	now := r.lc.l.Now()
	in := c.inst[r.inst]
	if !now.Before(r.attemptEnd) {
		delete(r.lc.pending, r.cookie)
		in.stats.timeouts.Add(1)
		c.markDown(in, now)
		if o := c.cfg.Observer; o != nil {
			o.CommandFinished(in.name, r.cmd.name, KindTimeout, time.Since(r.sentAt))
		}
		if r.cmd.failover() && now.Before(r.end) {
			r.next(now)
			return
		}
		r.finish(nil, timeoutError(r.cmd.name, c.cfg.Timeout, bits.OnesCount64(r.tried)))
		return
	}
	in.stats.retransmits.Add(1)
	if o := c.cfg.Observer; o != nil {
		o.Retransmitted(in.name, r.cmd.name)
	}
	r.lc.send(in, r.msg)
	r.interval *= 2
	r.arm(now)
}

// reply completes the request with an instance's answer.
func (r *request) reply(dict map[string]any) {
	c := r.lc.c
	in := c.inst[r.inst]
	lat := time.Since(r.sentAt)
	c.markUp(in)
	resp, err := response(r.cmd.name, in.name, dict)
	kind := KindOK
	switch {
	case err == nil:
		resp.Latency = lat
		in.stats.ok.Add(1)
		in.stats.latency.observe(lat)
	case isRefusal(err):
		kind = KindRefused
		in.stats.refused.Add(1)
	default:
		kind = KindBadReply
		in.stats.badReplies.Add(1)
	}
	if o := c.cfg.Observer; o != nil {
		o.CommandFinished(in.name, r.cmd.name, kind, lat)
	}
	r.bind(err)
	r.finish(resp, err)
}

// bind keeps the affinity table in step with the command's outcome.
func (r *request) bind(err error) {
	c, call := r.lc.c, r.cmd.call
	if call.CallID == "" || r.cmd.pin >= 0 {
		return
	}
	now := r.lc.l.Now()
	switch {
	case r.cmd.name == "delete" && call.ToTag == "" && call.ViaBranch == "":
		c.aff.remove(call.CallID) // the whole call is gone (or was unknown)
	case err != nil:
	case r.cmd.name == "offer":
		c.aff.set(call.CallID, r.inst, now)
	}
}

func (r *request) finish(resp *Response, err error) {
	if r.over {
		return
	}
	r.over = true
	r.timer.Stop()
	if r.cookie != "" {
		delete(r.lc.pending, r.cookie)
	}
	r.done(resp, err)
}

// cancel abandons the request (the await timed out or its context ended).
// A late reply finds no pending cookie and is dropped.
func (r *request) cancel() {
	if r.over {
		return
	}
	r.over = true
	r.timer.Stop()
	delete(r.lc.pending, r.cookie)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// StartHealth pings every instance every Config.PingInterval from the
// loops of g, marking each up or down by its answer; a down instance comes
// back into the choice as soon as it answers. Stop the returned job to end
// it.
func (c *Client) StartHealth(g *reactor.Group) (*reactor.Job, error) {
	return g.Every(c.cfg.PingInterval, func(l *reactor.Loop) {
		for i := range c.inst {
			async.Launch(l, c.Ping(i), func(time.Duration, error) {}, async.Timeout(c.cfg.TryTimeout+time.Second))
		}
	}, reactor.Skip)
}

// Close closes the client's sockets on every loop; commands in flight
// fail with ErrClosed, later ones at once. It does not wait.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	conns := make([]*loopConn, 0, len(c.conns))
	for _, lc := range c.conns {
		conns = append(conns, lc)
	}
	c.mu.Unlock()
	for _, lc := range conns {
		_ = lc.l.Post(lc.close)
	}
	return nil
}

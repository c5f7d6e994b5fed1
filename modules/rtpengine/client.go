package rtpengine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	DefaultMaxInFlight  = 16384
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
	// DefaultMaxCalls); beyond it expired entries are dropped, else
	// arbitrary ones (a forgotten call is found again by its Call-ID's
	// hash while the instances' health is unchanged).
	MaxCalls int
	// MaxInFlight bounds the commands in flight over all loops (default
	// DefaultMaxInFlight); beyond it a command fails at once with an
	// error wrapping async.ErrOverloaded, counted in Stats.Overloaded.
	MaxInFlight int
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
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
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

	conns   sync.Map // *reactor.Loop → *loopConn; each loop stores its own
	closed  atomic.Bool
	stray   atomic.Uint64
	connSeq atomic.Uint64

	inFlight   atomic.Int64
	overloaded atomic.Uint64
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
	c := &Client{cfg: cfg, aff: newAffinity(cfg.MaxCalls, cfg.AffinityTTL)}
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

// Command returns the ng command name (for fakes and logs).
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
	if n := c.inFlight.Add(1); n > int64(c.cfg.MaxInFlight) {
		c.inFlight.Add(-1)
		c.overloaded.Add(1)
		fin(nil, fmt.Errorf("rtpengine: %d commands in flight: %w", n-1, async.ErrOverloaded))
		return nil
	}
	r := &request{lc: lc, cmd: o.cmd, body: body, done: fin, inst: -1}
	r.start()
	if r.over {
		return nil
	}
	return r.cancel
}

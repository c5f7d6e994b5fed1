package tm

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/reactor"
	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Transport sends serialized messages for the server. tm calls Send on the
// owner loop of the transaction, from one place that counts and captures
// every message (send.go), so a transport does neither; Send must not
// block.
type Transport interface {
	// Send writes one message to `to`, on loop l.
	Send(l *reactor.Loop, b []byte, to netip.AddrPort) error
	// Protocol is the Via transport token: "UDP", "TCP", "TLS", "WS".
	Protocol() string
	// Advertised is the host and port put in Via and Record-Route.
	Advertised() (host string, port int)
	// LocalAddr is the bound address, used to pick a transport by family.
	LocalAddr() netip.AddrPort
}

// ErrNoTransport is returned when no transport can reach a destination.
var ErrNoTransport = errors.New("tm: no transport for destination")

// ErrNoRoute is returned when a next hop cannot be resolved.
var ErrNoRoute = errors.New("tm: cannot resolve next hop")

// Server is the transaction layer and stateful proxy core. It owns one
// table per loop; a transaction is only touched by its owner loop, chosen by
// the Call-ID so that every transaction of a call (INVITE, CANCEL, ACK,
// responses) lands on the same loop.
type Server struct {
	cfg      Config
	timers   Timers
	lim      Limits
	ixLim    sipindex.Limits // lim for the index
	log      *slog.Logger
	loops    []*loopState
	group    []*reactor.Loop
	tps      []Transport
	routes   atomic.Pointer[Routes]
	seed     maphash.Seed
	tag      string // random per server: makes branches and to-tags unique
	stats    counters
	draining atomic.Bool
	obs      observe      // capture hook and wire counters (capture.go)
	flowKey  []byte       // authenticates flow tokens in our Record-Route (recordroute.go)
	rrKey    []byte       // signs our Record-Route values (recordroute.go)
	rrMACs   sync.Pool    // *routeMACState keyed with rrKey
	txBytes  atomic.Int64 // memory held by transactions and tombstones, all loops (tombstone.go)
	uac      uacState     // originated requests (uac.go)
}

// loopState is everything one loop owns. No locks: only that loop touches it.
type loopState struct {
	loop   *reactor.Loop
	parser *sip.Parser
	w      writer
	stx    map[string]*serverTx
	ctx    map[string]*clientTx // by branch + method
	ids    *idSource
	kbuf   []byte         // transaction key being looked up (lookupKey, handleResponse)
	ix     sipindex.Index // the message being received (indexed.go)
	splice []byte         // a response relayed from the index, our Via removed (indexed.go)
	out    []byte         // a response or branch request built from the index (lazy.go, splice.go)
	owned  bool           // the message being received is a copy it may keep (lazy.go)
	tombs  tombTable      // completed transactions kept only to absorb retransmissions (tombstone.go)
	// queued counts the received messages posted to this loop by other
	// loops (or queued again by it) and not yet run: Receive keeps the
	// loop's own messages behind them. Written from any loop.
	queued atomic.Int64
}

// NewServer creates the transaction layer on loops (their IDs must be their
// indexes, as in a reactor.Group). Add transports with AddTransport and feed
// received datagrams to Receive.
func NewServer(loops []*reactor.Loop, cfg Config, routes Routes) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AbandonCode == 0 {
		cfg.AbandonCode = 500
	}
	if cfg.SuspendTimeoutCode == 0 {
		cfg.SuspendTimeoutCode = 504
	}
	if cfg.MaxQueuedReplies <= 0 {
		cfg.MaxQueuedReplies = 32
	}
	if cfg.Resolver == nil {
		cfg.Resolver = literalResolver
	}
	if cfg.MaxBreadth <= 0 {
		cfg.MaxBreadth = 60
	}
	if cfg.MaxTransactions <= 0 {
		cfg.MaxTransactions = 100000
	}
	if cfg.MaxSuspended <= 0 {
		cfg.MaxSuspended = 50000
	}
	if cfg.MaxTransactionBytes <= 0 {
		cfg.MaxTransactionBytes = DefaultMaxTransactionBytes
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	s := &Server{
		cfg:    cfg,
		timers: cfg.Timers.withDefaults(),
		lim:    cfg.Limits.withDefaults(),
		ixLim:  indexLimits(cfg.Limits.withDefaults()),
		log:    cfg.Logger,
		group:  loops,
		seed:   maphash.MakeSeed(),
		tag:    hex.EncodeToString(rb[:]),
	}
	s.rrKey, s.flowKey = deriveKeys(cfg.Security.RouteKey)
	branchKey := make([]byte, 32)
	_, _ = rand.Read(branchKey)
	r := routes
	s.routes.Store(&r)
	s.obs.init(len(loops), cfg.Capture)
	s.uac.init(len(loops))
	for i, l := range loops {
		if l.ID() != i {
			panic(fmt.Sprintf("tm: loop %d has ID %d; loop IDs must be their indexes", i, l.ID()))
		}
		s.loops = append(s.loops, &loopState{
			loop:   l,
			parser: newParser(s.lim),
			stx:    make(map[string]*serverTx),
			ctx:    make(map[string]*clientTx),
			ids:    newIDSource(branchKey),
		})
	}
	return s
}

// AddTransport registers a transport. Call it before traffic flows.
func (s *Server) AddTransport(tp Transport) { s.tps = append(s.tps, tp) }

// SetRoutes replaces the routes. Transactions already running keep the
// routes they started with (their Context holds them).
func (s *Server) SetRoutes(r Routes) { s.routes.Store(&r) }

// Drain makes the server answer new requests 503 (with Retry-After) while
// transactions in progress finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Stats returns the server's counters.
func (s *Server) Stats() StatsSnapshot {
	st := s.stats.snapshot()
	st.TransactionBytes = s.txBytes.Load()
	st.Originated = s.uac.snapshot()
	return st
}

// owner returns the loop that owns every transaction of callID.
func (s *Server) owner(callID string) *loopState {
	if len(s.loops) == 1 {
		return s.loops[0]
	}
	h := maphash.String(s.seed, callID)
	return s.loops[h%uint64(len(s.loops))]
}

// Receive handles one message received on loop l from `from` over tp. data
// is only read during the call. Bad input is counted and dropped, or
// answered 400 when the message is complete enough to answer.
//
// The messages passed to Receive on one loop are handled in the order of
// the calls, also across loops: a message that another loop handed over to
// l earlier (the owner of its Call-ID) and that has not run yet goes first,
// and l's own messages queue behind it. Calling Receive in the order a
// source's messages should be handled is the transport's business (package
// transport: datagrams as read, a connection's messages one loop task each,
// in the order read).
func (s *Server) Receive(l *reactor.Loop, data []byte, from netip.AddrPort, tp Transport) {
	ls := s.loopOf(l)
	s.obs.inbound(l, data, from, tp)
	s.stats.received.Add(1)
	if isKeepAlive(data) {
		return
	}
	// Hand the raw bytes to the owner loop before parsing: the sooner a
	// message is queued on its owner, the less two back-to-back messages
	// of one call (ACK then BYE) read by two loops can swap places. A
	// message owned here still queues behind the messages handed over to
	// this loop and not yet run (ls.queued), or it would overtake them.
	// The owner is found by the cheap Call-ID scan; the index
	// (indexed.go) is made by the owner: made here, it would be made
	// twice for every message handed over.
	if id, ok := scanCallID(data); ok && len(s.loops) > 1 {
		owner := s.owner(id)
		if owner != ls || ls.queued.Load() > 0 {
			if owner != ls {
				s.stats.handoffs.Add(1)
			}
			buf := append([]byte(nil), data...)
			owner.queued.Add(1)
			if err := owner.loop.Post(func() {
				owner.queued.Add(-1)
				s.receiveOwnedBuf(owner, buf, from, tp, true)
			}); err != nil {
				owner.queued.Add(-1)
				s.dropped("closed", from, err)
			}
			return
		}
	}
	s.receiveOwnedBuf(ls, data, from, tp, false)
}

// receiveOwnedBuf parses, validates and dispatches a message on ls, which
// should be its owner; if the parsed Call-ID says otherwise (the raw scan
// could not find it or read it differently), the message moves on. owned
// says data is a copy nobody else uses (a message handed over between
// loops), which a lazy Context may keep instead of copying it again.
func (s *Server) receiveOwnedBuf(ls *loopState, data []byte, from netip.AddrPort, tp Transport, owned bool) {
	ls.owned = owned
	s.receiveIndexed(ls, data, from, tp, ls.index(data, s.ixLim))
	ls.owned = false
}

// receiveIndexed is receiveOwnedBuf once data is indexed in ls.ix (clean:
// the index is usable, indexed.go).
func (s *Server) receiveIndexed(ls *loopState, data []byte, from netip.AddrPort, tp Transport, clean bool) {
	var msg sip.Message
	var err error
	if clean && s.owner(unsafeString(ls.ix.Bytes(ls.ix.CallID))) == ls &&
		(s.absorbIndexed(ls, from, tp) || s.relayIndexed(ls, data, from, tp) ||
			(ls.ix.Request && s.handleIndexed(ls, data, from, tp))) {
		return
	}
	if clean {
		msg, err = parseIndexed(ls.parser, data, &ls.ix)
	} else {
		msg, err = parse(ls.parser, data, s.lim)
	}
	if err != nil {
		s.dropped(reasonOf(err), from, err)
		s.rejectUnparsed(ls, data, from, tp, err)
		return
	}
	if err := validateIndexed(msg, s.lim, clean); err != nil {
		// Counted once as an invalid drop, answered 400 when answerable
		// (unless the screen drops it, counted as screened instead).
		req, ok := msg.(*sip.Request)
		ok = ok && canAnswer(req)
		if ok && s.screened(req, from) {
			return
		}
		s.dropped("invalid", from, err)
		if ok {
			code, reason := statusFor(err)
			s.replyRaw(ls, data, string(req.Method), from, tp, code, reason)
		}
		return
	}
	owner := s.owner(string(*msg.CallID()))
	if owner == ls {
		s.dispatch(owner, msg, from, tp)
		return
	}
	s.stats.handoffs.Add(1)
	owner.queued.Add(1)
	if err := owner.loop.Post(func() {
		owner.queued.Add(-1)
		s.dispatch(owner, msg, from, tp)
	}); err != nil {
		owner.queued.Add(-1)
		s.dropped("closed", from, err)
	}
}

// scanCallID finds the Call-ID value (or compact "i") in raw bytes without
// parsing or allocating. It only reads the header section.
func scanCallID(b []byte) (string, bool) {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return "", false
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			return "", false // end of headers
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name := bytes.TrimRight(line[:c], " \t")
		if !bytes.EqualFold(name, []byte("Call-ID")) && !bytes.EqualFold(name, []byte("i")) {
			continue
		}
		v := bytes.TrimSpace(line[c+1:])
		if len(v) == 0 {
			return "", false
		}
		return unsafeString(v), true
	}
	return "", false
}

func (s *Server) dispatch(ls *loopState, msg sip.Message, from netip.AddrPort, tp Transport) {
	switch m := msg.(type) {
	case *sip.Request:
		s.handleRequest(ls, m, from, tp)
	case *sip.Response:
		s.handleResponse(ls, m, from, tp)
	}
}

func (s *Server) dropped(reason string, from netip.AddrPort, err error) {
	s.stats.countDrop(reason)
	if s.log.Enabled(nil, slog.LevelDebug) {
		s.log.Debug("tm: message dropped", "reason", reason, "from", from, "err", err)
	}
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, errTooLarge):
		return "size"
	case errors.Is(err, errTooManyHdrs):
		return "headers"
	default:
		return "parse"
	}
}

// canAnswer reports whether a request carries what a response needs.
func canAnswer(req *sip.Request) bool {
	return req.Method != sip.ACK && req.Via() != nil && req.From() != nil &&
		req.To() != nil && req.CallID() != nil && req.CSeq() != nil
}

func isKeepAlive(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' && c != ' ' {
			return false
		}
	}
	return true
}

// isSelf reports whether addr is the bound address of one of our transports
// (sending there would loop back into this proxy).
func (s *Server) isSelf(addr netip.AddrPort) bool {
	for _, tp := range s.tps {
		la := tp.LocalAddr()
		if la.Port() != addr.Port() {
			continue
		}
		if la.Addr().Unmap() == addr.Addr().Unmap() || (la.Addr().IsUnspecified() && addr.Addr().IsLoopback()) {
			return true
		}
	}
	return false
}

// isLocal reports whether host:port names one of our transports.
func (s *Server) isLocal(host string, port int) bool {
	for _, tp := range s.tps {
		h, p := tp.Advertised()
		if port == 0 {
			port = 5060
		}
		if p == port && (h == host || stripBrackets(h) == stripBrackets(host)) {
			return true
		}
		if la := tp.LocalAddr(); int(la.Port()) == port {
			if a, err := netip.ParseAddr(stripBrackets(host)); err == nil && a == la.Addr() {
				return true
			}
		}
	}
	return false
}

func stripBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// Close ends every transaction at once (after a drain, or to stop now):
// suspended ones are aborted and answered 503, timers are stopped, and
// nothing is sent afterwards. It posts the work to each loop; the loops run
// it before they stop.
func (s *Server) Close() {
	s.draining.Store(true)
	for _, ls := range s.loops {
		ls := ls
		_ = ls.loop.Post(func() { s.closeLoop(ls) })
	}
}

func (s *Server) closeLoop(ls *loopState) {
	for _, t := range ls.stx {
		if c := t.ctx; c != nil {
			if c.suspended {
				c.abort(503)
			}
			for _, b := range c.branches {
				b.timerC.Stop()
				b.guard.Stop()
				b.done = true
			}
		}
		t.terminate()
	}
	for _, t := range ls.ctx {
		t.terminate()
	}
	s.closeOriginated(ls)
	s.clearTombs(ls)
}

// unsafeString views b as a string for hashing only (not retained).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

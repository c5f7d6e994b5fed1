package tm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// Transaction identifiers an off-path host cannot guess (docs/ARCHITECTURE.md,
// "Trust boundaries").
//
// A branch of ours is "z9hG4bK" + tag + "." + kind + id + mac, where tag is
// a per-server prefix (public: it only says "ours"), kind is 'b' (stateful
// branch) or 's' (stateless forward), id is 64 bits from crypto/rand (or,
// for a stateless forward, a keyed hash of the incoming branch so that
// retransmissions get the same branch), and mac is a 64-bit HMAC of kind,
// id and the Via below ours (branch, address and port responses go to).
// Guessing a live branch means guessing 64 random bits; and a response
// whose Via below ours was changed (to send it to a third host) fails the
// MAC. To tags are tag + 64 random bits. Random bytes come from a per-loop
// buffer refilled from crypto/rand 512 bytes at a time, the MAC from a
// per-loop HMAC-SHA256 state that is Reset, not rebuilt: about a
// microsecond per branch.

const (
	idHex     = 16 // hex digits of the random part of a branch or tag
	macHex    = 16 // hex digits of a branch MAC
	randBatch = 512
)

// idSource is the per-loop state that makes identifiers: random bytes and
// the branch MAC. Only its loop touches it. Identifiers are built in its
// scratch buffers and become a string once: a branch costs one allocation.
type idSource struct {
	buf    [randBatch]byte
	n      int // bytes of buf already used
	mac    hash.Hash
	sum    []byte
	in     []byte    // MAC input being built
	out    []byte    // identifier being built
	via    []byte    // a spliced branch's received top Via (splice.go)
	hop    []byte    // what its branch MAC binds of it (appendViaHopBytes)
	ourVia []byte    // our Via value for a spliced branch
	rr     [2][]byte // its Record-Route values
}

func newIDSource(key []byte) *idSource {
	return &idSource{n: randBatch, mac: hmac.New(sha256.New, key)}
}

// appendRandom64 appends 16 hex digits from crypto/rand to b.
func (g *idSource) appendRandom64(b []byte) []byte {
	if g.n+8 > randBatch {
		_, _ = rand.Read(g.buf[:]) // crypto/rand.Read never fails (Go 1.24+)
		g.n = 0
	}
	b = hex.AppendEncode(b, g.buf[g.n:g.n+8])
	g.n += 8
	return b
}

// appendMAC appends to b the hex MAC of msg (kind and id, a zero byte,
// then the hop; see macInput).
func (g *idSource) appendMAC(b, msg []byte) []byte {
	g.mac.Reset()
	g.mac.Write(msg)
	g.sum = g.mac.Sum(g.sum[:0])
	return hex.AppendEncode(b, g.sum[:macHex/2])
}

// macInput returns, in g.in, what a branch MAC covers: kind and id, a zero
// byte, and the Via below ours (see appendViaHop).
func (g *idSource) macInput(kindID []byte, v *sip.ViaHeader) []byte {
	g.in = append(g.in[:0], kindID...)
	g.in = append(g.in, 0)
	g.in = appendViaHop(g.in, v)
	return g.in
}

// appendViaHop appends what a branch MAC binds of the Via below ours: its
// branch and the address and port a response is sent to (received and
// rport when present, as forwardResponseStateless reads them), as
// "branch|TRANSPORT|host|port". Nothing for a nil Via.
func appendViaHop(b []byte, v *sip.ViaHeader) []byte {
	if v == nil {
		return b
	}
	br, _ := v.Params.Get("branch")
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	b = append(b, br...)
	b = append(b, '|')
	b = appendUpper(b, v.Transport)
	b = append(b, '|')
	b = append(b, stripBrackets(host)...)
	b = append(b, '|')
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		return append(b, rp...)
	}
	return strconv.AppendInt(b, int64(v.Port), 10)
}

// appendUpper appends strings.ToUpper(s) to b, without allocating for ASCII.
func appendUpper(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToUpper(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// appendBranchPrefix appends "z9hG4bK", the server tag and the dot.
func (s *Server) appendBranchPrefix(b []byte) []byte {
	b = append(b, "z9hG4bK"...)
	b = append(b, s.tag...)
	return append(b, '.')
}

// newBranch returns a stateful branch for a request whose top Via (before
// ours) is upstream.
func (s *Server) newBranch(ls *loopState, upstream *sip.ViaHeader) string {
	g := ls.ids
	b := s.appendBranchPrefix(g.out[:0])
	kid := len(b)
	b = append(b, 'b')
	b = g.appendRandom64(b)
	b = g.appendMAC(b, g.macInput(b[kid:], upstream))
	g.out = b
	return string(b)
}

// newBranchKey is newBranch for the Via below ours given as
// appendViaHop's bytes (splice.go), returned with the client transaction
// key of method in one string: key is clientKey(branch, method).
func (s *Server) newBranchKey(ls *loopState, hop []byte, method sip.RequestMethod) (branch, key string) {
	g := ls.ids
	b := s.appendBranchPrefix(g.out[:0])
	kid := len(b)
	b = append(b, 'b')
	b = g.appendRandom64(b)
	g.in = append(append(append(g.in[:0], b[kid:]...), 0), hop...)
	b = g.appendMAC(b, g.in)
	n := len(b)
	b = append(append(b, '|'), method...)
	g.out = b
	key = string(b)
	return key[:n], key
}

// statelessBranchHop is statelessBranch for a request not materialised:
// the incoming branch, the Request-URI as received and appendViaHop's
// bytes of the top Via (splice.go). It returns a view of ls's buffer,
// valid until the next identifier is made.
func (s *Server) statelessBranchHop(ls *loopState, inBranch, ruri, hop []byte) []byte {
	g := ls.ids
	g.in = appendStatelessInput(g.in[:0], inBranch, ruri)
	b := s.appendBranchPrefix(g.out[:0])
	kid := len(b)
	b = append(b, 's')
	b = g.appendMAC(b, g.in)
	g.in = append(append(append(g.in[:0], b[kid:]...), 0), hop...)
	b = g.appendMAC(b, g.in)
	g.out = b
	return b
}

// statelessBranch returns the branch of a stateless forward: the same for
// every retransmission of the request (derived from its branch and the
// Request-URI), keyed so it cannot be predicted without the incoming branch.
func (s *Server) statelessBranch(ls *loopState, upstream *sip.ViaHeader, ruri string) string {
	g := ls.ids
	inBranch, _ := upstream.Params.Get("branch")
	g.in = appendStatelessInput(g.in[:0], inBranch, ruri)
	b := s.appendBranchPrefix(g.out[:0])
	kid := len(b)
	b = append(b, 's')
	b = g.appendMAC(b, g.in)
	b = g.appendMAC(b, g.macInput(b[kid:], upstream))
	g.out = b
	return string(b)
}

// ours reports whether branch has the shape of one of ours (prefix and
// length). It says nothing of authenticity: see verifyBranch.
func (s *Server) ours(branch string) bool {
	return len(branch) == 7+len(s.tag)+2+idHex+macHex && branch[7:7+len(s.tag)] == s.tag &&
		branch[7+len(s.tag)] == '.'
}

// branchKind returns 'b' or 's' for a branch that passed ours.
func (s *Server) branchKind(branch string) byte { return branch[7+len(s.tag)+1] }

// verifyBranch reports whether branch is one we made for a request whose
// Via below ours is next (as the response carries it).
func (s *Server) verifyBranch(ls *loopState, branch string, next *sip.ViaHeader) bool {
	if !s.ours(branch) {
		return false
	}
	g := ls.ids
	g.in = append(g.in[:0], branch[7+len(s.tag)+1:len(branch)-macHex]...)
	var want [macHex]byte
	g.appendMAC(want[:0], g.macInput(g.in, next))
	return hmac.Equal(want[:], []byte(branch[len(branch)-macHex:]))
}

// toTag returns a fresh To tag for responses generated by this proxy:
// the server prefix and 64 random bits.
func (s *Server) toTag(ls *loopState) string {
	g := ls.ids
	g.out = g.appendRandom64(append(g.out[:0], s.tag...))
	return string(g.out)
}

// ownTag reports whether req's To tag has the shape of one this proxy
// generated (used only to absorb the ACK of our own final responses).
func (s *Server) ownTag(req *sip.Request) bool {
	to := req.To()
	if to == nil {
		return false
	}
	tag, _ := to.Params.Get("tag")
	return len(tag) == len(s.tag)+idHex && tag[:len(s.tag)] == s.tag
}

// appendStatelessInput appends what a stateless branch's first MAC covers:
// "s-id", a zero byte, the incoming branch, '|' and the Request-URI.
func appendStatelessInput[B, U string | []byte](b []byte, inBranch B, ruri U) []byte {
	b = append(b, "s-id"...)
	b = append(b, 0)
	b = append(b, inBranch...)
	b = append(b, '|')
	return append(b, ruri...)
}

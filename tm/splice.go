package tm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Relaying a request by splicing its bytes (issue 19). A branch of a
// request that is not materialised (lazy.go), with no Branch route, is the
// request as received with the new Request-URI, our Via on top, our
// Record-Route value(s) below it, the received top Via as markReceived
// leaves it and Max-Forwards decremented (appendSplicedRequest, held to
// startBranch's clone-and-serialize by TestIxSpliceMatchesBranch; the whole
// relay by TestLazyRelayMatchesMaterialised in internal/e2e).

// startSplicedBranch is startBranch for a request not materialised and no
// Branch route.
func (c *Context) startSplicedBranch(ruri sip.Uri) error {
	s := c.s
	if badURI(&ruri) {
		return fmt.Errorf("%w: Request-URI", ErrInjection)
	}
	dst, tp, forced, err := c.nextHopURI(nil, &ruri)
	if err != nil {
		return err
	}
	ix := c.index()
	if !forced {
		tp = c.largeSwitchLen(len(c.raw)+len(ruri.Host)+len(ruri.User)+8, dst, tp)
	}
	// The top Via as markReceived leaves it, and the hop the branch MAC
	// binds (appendViaHop of what the next hop will echo back to us).
	g := c.ls.ids
	via, ok := appendReceivedVia(g.via[:0], ix.Bytes(ix.TopVia), c.src)
	g.via = via
	if !ok {
		return c.startParsedBranch(ruri)
	}
	hop, ok := appendViaHopBytes(g.hop[:0], via)
	g.hop = hop
	if !ok {
		return c.startParsedBranch(ruri)
	}
	branch, key := s.newBranchKey(c.ls, hop, c.method)
	v := appendOurVia(g.ourVia[:0], tp, branch)
	g.ourVia = v
	sp := ixSplice{Via: unsafeString(v), AddMaxForwards: true, Src: c.src, Cuts: c.cuts}
	if !c.ruriOrig {
		sp.RURI = ruri.String()
	}
	if rr, _ := ixRecordRoutable(ix); rr && !s.cfg.NoRecordRoute {
		from, _ := ixFromTag(ix)
		g.rr[0], g.rr[1] = c.appendRecordRoutes(g.rr[0][:0], g.rr[1][:0], c.callID, unsafeString(from), dst, tp)
		sp.RR[0], sp.RR[1] = unsafeString(g.rr[0]), unsafeString(g.rr[1])
	}
	w, ok := appendSplicedRequest(make([]byte, 0, len(c.raw)+len(v)+len(g.rr[0])+len(g.rr[1])+len(sp.RURI)+64), ix, &sp)
	if !ok {
		return c.startParsedBranch(ruri)
	}

	var b *Branch
	if len(c.branches) == 0 && c.branchA.c == nil {
		b = &c.branchA
	} else {
		b = &Branch{}
	}
	b.Index, b.c = len(c.branches), c
	c.branches = append(c.branches, b)
	b.tx = s.startClientTxWire(c.ls, w, key, branch, dst, tp, b)
	if c.method == sip.INVITE {
		c.ls.loop.Arm(&b.timerCT, c.firstTimerC(), func() { c.timerC(b) })
		b.timerC = &b.timerCT
	}
	return nil
}

// appendURIHost appends host as sipgo writes a Via or URI host: an IPv6
// address in brackets.
func appendURIHost(b []byte, host string) []byte {
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		b = append(b, '[')
		b = append(b, host...)
		return append(b, ']')
	}
	return append(b, host...)
}

// appendViaHopBytes is appendViaHop for a Via value in wire form (plain:
// plainVia reads it), as sipgo will read it when the next hop echoes it.
func appendViaHopBytes(b, v []byte) ([]byte, bool) {
	host, pi, ok := plainVia(v)
	if !ok {
		return b, false
	}
	params := v[pi:]
	_, bs, be, _, ok1 := plainParam(params, "branch")
	_, rs, re, _, ok2 := plainParam(params, "received")
	_, ps, pe, _, ok3 := plainParam(params, "rport")
	if !ok1 || !ok2 || !ok3 {
		return b, false
	}
	b = append(b, params[bs:be]...)
	b = append(b, '|')
	sp := 8
	for sp < len(v) && v[sp] != ' ' {
		sp++
	}
	b = appendUpper(b, unsafeString(v[8:sp]))
	b = append(b, '|')
	if re > rs {
		b = append(b, stripBrackets(unsafeString(params[rs:re]))...)
	} else {
		b = append(b, host...)
	}
	b = append(b, '|')
	if pe > ps {
		return append(b, params[ps:pe]...), true
	}
	return strconv.AppendInt(b, int64(viaPort(v[:pi])), 10), true
}

// appendRecordRoutes appends to top and below the Record-Route values
// recordRoute would prepend for a branch leaving over out to dst, for the
// dialog of callID and fromTag: the outbound interface's value on top, the
// inbound one below when there are two (below stays empty otherwise).
func (c *Context) appendRecordRoutes(top, below []byte, callID, fromTag string, dst netip.AddrPort, out Transport) ([]byte, []byte) {
	in := c.tp
	var inTok, outTok string
	if in != nil && !strings.EqualFold(in.Protocol(), "UDP") && c.src.IsValid() {
		inTok = c.s.flowToken(c.src)
	}
	if !strings.EqualFold(out.Protocol(), "UDP") {
		outTok = c.s.flowToken(dst)
	}
	top = c.appendRR(top, out, outTok, callID, fromTag)
	if in != nil && (!sameInterface(in, out) || inTok != "" || outTok != "") {
		below = c.appendRR(below, in, inTok, callID, fromTag)
	}
	return top, below
}

// appendRR appends the Record-Route value naming tp as rrHeader and
// signRecordRoute make it: "<sip:[token@]host:port[;transport=…];lr;sig=…>".
func (c *Context) appendRR(w []byte, tp Transport, token, callID, fromTag string) []byte {
	host, port := tp.Advertised()
	w = append(w, "<sip:"...)
	if token != "" {
		w = append(w, token...)
		w = append(w, '@')
	}
	w = appendURIHost(w, host)
	if port > 0 {
		w = append(w, ':')
		w = strconv.AppendInt(w, int64(port), 10)
	}
	if p := tp.Protocol(); !strings.EqualFold(p, "udp") {
		w = append(w, ";transport="...)
		w = append(w, strings.ToLower(p)...)
	}
	w = append(w, ";lr;"+sigParam+"="...)
	w = c.s.appendRouteMAC(w, callID, fromTag, token)
	return append(w, '>')
}

// forwardSpliced is Forward for a request not materialised: the request
// as received, but for our Via on top (the stateless branch), the received
// top Via, Max-Forwards decremented and the Route values of ours removed.
// It reports false, having sent nothing, when the parsed path must do it.
func (c *Context) forwardSpliced() (bool, error) {
	s := c.s
	ruri := c.Recipient()
	ix := c.index()
	dst, tp, _, err := c.nextHopURI(nil, &ruri)
	if err != nil {
		return false, nil // the parsed path fails the same way and says so
	}
	g := c.ls.ids
	via, ok := appendReceivedVia(g.via[:0], ix.Bytes(ix.TopVia), c.src)
	g.via = via
	if !ok {
		return false, nil
	}
	hop, ok := appendViaHopBytes(g.hop[:0], via)
	g.hop = hop
	if !ok {
		return false, nil
	}
	_, pi, _ := plainVia(via)
	_, bs, be, _, _ := plainParam(via[pi:], "branch")
	branch := s.statelessBranchHop(c.ls, via[pi:][bs:be], ix.Bytes(ix.RequestURI), hop)
	v := appendOurVia(g.ourVia[:0], tp, branch)
	g.ourVia = v
	sp := ixSplice{Via: unsafeString(v), Src: c.src, Cuts: c.cuts}
	w, ok := appendSplicedRequest(c.ls.out[:0], ix, &sp)
	if !ok {
		return false, nil
	}
	c.ls.out = w
	s.stats.stateless.Add(1)
	return true, s.send(c.ls, tp, w, dst)
}

// appendOurVia appends the Via value this proxy puts on a request it sends
// over tp with branch: "SIP/2.0/<proto> <advertised host>[:port];branch=…".
func appendOurVia[B string | []byte](v []byte, tp Transport, branch B) []byte {
	host, port := tp.Advertised()
	v = append(v, "SIP/2.0/"...)
	v = append(v, tp.Protocol()...)
	v = append(v, ' ')
	v = appendURIHost(v, host)
	if port > 0 {
		v = append(v, ':')
		v = strconv.AppendInt(v, int64(port), 10)
	}
	v = append(v, ";branch="...)
	return append(v, branch...)
}

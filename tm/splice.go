package tm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// Relaying a request by splicing its bytes (issue 19). A branch of a
// request that is not materialised (lazy.go), with no Branch route, is the
// request as received with, in order: the new Request-URI in the start
// line, our Via on top, our Record-Route value(s) below it, the received
// top Via as markReceived leaves it, Max-Forwards decremented (70 added at
// the end of the headers when absent) and the body as Content-Length
// bounds it. Everything else keeps the sender's bytes. startBranch's
// clone-and-serialize gives the same message in sipgo's formatting
// (TestSplicedBranchMatchesParsed).

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
	branch := s.newBranchHop(c.ls, hop)
	data := c.raw
	w := make([]byte, 0, len(data)+320+len(ruri.Host)+len(ruri.User))
	w = append(w, ix.Bytes(ix.Method)...)
	w = append(w, ' ')
	if c.ruriOrig {
		w = append(w, ix.Bytes(ix.RequestURI)...)
	} else {
		w = append(w, ruri.String()...)
	}
	w = append(w, " SIP/2.0\r\nVia: SIP/2.0/"...)
	host, port := tp.Advertised()
	w = append(w, tp.Protocol()...)
	w = append(w, ' ')
	w = appendURIHost(w, host)
	if port > 0 {
		w = append(w, ':')
		w = strconv.AppendInt(w, int64(port), 10)
	}
	w = append(w, ";branch="...)
	w = append(w, branch...)
	w = append(w, "\r\n"...)
	if rr, _ := ixRecordRoutable(ix); rr && !s.cfg.NoRecordRoute {
		from, _ := ixFromTag(ix)
		w = c.appendRecordRoutes(w, c.callID, unsafeString(from), dst, tp)
	}
	// The header fields as received, but for the top Via and Max-Forwards.
	last := int(ix.Fields[0].Name.Start)
	mfSeen := false
	for _, f := range ix.Fields {
		switch {
		case f.Kind == sipindex.KindVia && f.Value.Start <= ix.TopVia.Start && ix.TopVia.End <= f.Value.End:
			w = append(w, data[last:ix.TopVia.Start]...)
			w = append(w, via...)
			last = int(ix.TopVia.End)
		case f.Kind == sipindex.KindMaxForwards:
			mfSeen = true
			w = append(w, data[last:f.Value.Start]...)
			w = strconv.AppendInt(w, int64(ix.MaxForwards-1), 10)
			last = int(f.Value.End)
		}
	}
	hdrEnd := int(ix.Body.Start) - 2 // the empty line
	w = append(w, data[last:hdrEnd]...)
	if !mfSeen {
		w = append(w, "Max-Forwards: 70\r\n"...)
	}
	w = append(w, "\r\n"...)
	w = append(w, data[ix.Body.Start:ix.Body.End]...)

	b := &Branch{Index: len(c.branches), c: c}
	c.branches = append(c.branches, b)
	b.tx = s.startClientTxWire(c.ls, w, c.method, branch, dst, tp, b)
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

// appendRecordRoutes appends the Record-Route field(s) recordRoute would
// prepend for a branch leaving over out to dst, for the dialog of callID
// and fromTag: the outbound interface's value on top.
func (c *Context) appendRecordRoutes(w []byte, callID, fromTag string, dst netip.AddrPort, out Transport) []byte {
	in := c.tp
	var inTok, outTok string
	if in != nil && !strings.EqualFold(in.Protocol(), "UDP") && c.src.IsValid() {
		inTok = c.s.flowToken(c.src)
	}
	if !strings.EqualFold(out.Protocol(), "UDP") {
		outTok = c.s.flowToken(dst)
	}
	w = c.appendRR(w, out, outTok, callID, fromTag)
	if in != nil && (!sameInterface(in, out) || inTok != "" || outTok != "") {
		w = c.appendRR(w, in, inTok, callID, fromTag)
	}
	return w
}

// appendRR appends "Record-Route: <…>" naming tp as rrHeader and
// signRecordRoute make it.
func (c *Context) appendRR(w []byte, tp Transport, token, callID, fromTag string) []byte {
	host, port := tp.Advertised()
	w = append(w, "Record-Route: <sip:"...)
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
	return append(w, ">\r\n"...)
}

package asyncsip_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/db"
	_ "github.com/asyncsip/asyncsip/modules/db/sqlite"
)

// The README's first Go block is lcrProxy of example_lcr_test.go, byte for
// byte, so the headline is code that compiles and that the tests below run.
func TestReadmeHeadlineIsTheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	require.True(t, ok, "README.md has a ```go block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok, "the ```go block is closed")

	src, err := os.ReadFile("example_lcr_test.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "example_lcr_test.go", src, 0)
	require.NoError(t, err)
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if d, ok := d.(*ast.FuncDecl); ok && d.Name.Name == "lcrProxy" {
			fn = d
		}
	}
	require.NotNil(t, fn, "example_lcr_test.go declares lcrProxy")
	code := string(src[fset.Position(fn.Pos()).Offset:fset.Position(fn.End()).Offset]) + "\n"
	assert.Equal(t, code, block, "README.md's headline must be lcrProxy of example_lcr_test.go, verbatim")
	assert.Contains(t, string(src), "lcrProxy(ctx, \"udp:127.0.0.1:5060\"", "Example_lcrProxy runs the headline")
}

// The program of the README's "Use it in your project" builds.
func TestReadmeUseItBuilds(t *testing.T) {
	gotool := os.Getenv("GO")
	if gotool == "" {
		gotool = "go"
	}
	if _, err := exec.LookPath(gotool); err != nil {
		t.Skipf("no go command to build the README's program: %v", err)
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## Use it in your project")
	require.True(t, ok, "README.md has a \"Use it in your project\" section")
	_, rest, ok := strings.Cut(section, "```go\n")
	require.True(t, ok, "the section shows a program")
	prog, _, _ := strings.Cut(rest, "```")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gotool, "build", "-o", filepath.Join(dir, "prog"), filepath.Join(dir, "main.go"))
	out, err := cmd.CombinedOutput() // from this module, as a project depending on it would
	require.NoError(t, err, "%s", out)
}

// A full call through the headline proxy: INVITE looked up (longest prefix
// wins) and relayed to the gateway, 200 back with the proxy's Record-Route,
// then ACK and BYE along the Route. The lcr table is dropped once the call
// is answered: ACK and BYE reach the gateway and the BYE gets its 200 only
// because in-dialog requests do not go through the lookup (before the fix
// the BYE got 503 and the ACK was lost).
func TestHeadlineLCRCall(t *testing.T) {
	gw, uac := e2etest.NewUDPPeer(t), e2etest.NewUDPPeer(t)
	dsn := routesDB(t,
		[2]string{"+1", fmt.Sprintf("127.0.0.1:%d", testenv.FreeUDPPort(t))}, // nobody there
		[2]string{"+1555", fmt.Sprintf("127.0.0.1:%d", gw.Port())})
	proxy := startHeadline(t, dsn)

	callID := "headline-call"
	ruri := fmt.Sprintf("sip:+15551234@%s", proxy)
	inv := e2etest.Request("INVITE", ruri, "UDP", uac.Port(), callID, "")
	first := sendUntilAnswered(t, uac, proxy, inv)

	got := readRequest(t, gw, "INVITE")
	assert.True(t, strings.HasPrefix(got, fmt.Sprintf("INVITE sip:+15551234@127.0.0.1:%d ", gw.Port())), got)
	require.NotEmpty(t, e2etest.Headers(got, "Record-Route"), "the proxy record-routes the call")
	gw.SendTo(proxy, answerTo(got, 200, "OK", fmt.Sprintf("Contact: <sip:gw@127.0.0.1:%d>", gw.Port())))

	ok := finalResponse(t, uac, first, "INVITE")
	require.True(t, strings.HasPrefix(ok, "SIP/2.0 200 "), ok)
	rr := e2etest.Headers(ok, "Record-Route")
	require.NotEmpty(t, rr, "the 200 carries the proxy's Record-Route")

	// From here on every lookup fails.
	dropRoutes(t, dsn)

	route := slices.Clone(rr)
	slices.Reverse(route) // RFC 3261 §12.1.2: the UAC's route set
	target := strings.Trim(e2etest.Header(ok, "Contact"), "<>")
	to := e2etest.Header(ok, "To")
	uac.SendTo(proxy, inDialogRequest("ACK", target, route, uac.Port(), callID, to, 1))
	ack := readRequest(t, gw, "ACK")
	assert.True(t, strings.HasPrefix(ack, "ACK "+target+" "), ack)

	uac.SendTo(proxy, inDialogRequest("BYE", target, route, uac.Port(), callID, to, 2))
	bye := readRequest(t, gw, "BYE")
	gw.SendTo(proxy, answerTo(bye, 200, "OK"))
	byeOK := readResponse(t, uac, "BYE")
	assert.True(t, strings.HasPrefix(byeOK, "SIP/2.0 200 "), byeOK)
}

// A number no prefix matches is answered 404, not 503.
func TestHeadlineLCRNoRoute(t *testing.T) {
	uac := e2etest.NewUDPPeer(t)
	dsn := routesDB(t, [2]string{"+1", "127.0.0.1:9"})
	proxy := startHeadline(t, dsn)

	inv := e2etest.Request("INVITE", fmt.Sprintf("sip:+4420123@%s", proxy), "UDP", uac.Port(), "headline-404", "")
	resp := finalResponse(t, uac, sendUntilAnswered(t, uac, proxy, inv), "INVITE")
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 404 No Route"), resp)
	uac.SendTo(proxy, ackFor(inv, resp))
}

// A lookup that fails (here: no lcr table) is answered 503.
func TestHeadlineLCRDatabaseError(t *testing.T) {
	uac := e2etest.NewUDPPeer(t)
	dsn := filepath.Join(t.TempDir(), "empty.db")
	proxy := startHeadline(t, dsn)

	inv := e2etest.Request("INVITE", fmt.Sprintf("sip:+15551234@%s", proxy), "UDP", uac.Port(), "headline-503", "")
	resp := finalResponse(t, uac, sendUntilAnswered(t, uac, proxy, inv), "INVITE")
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 503 Routing Unavailable"), resp)
	uac.SendTo(proxy, ackFor(inv, resp))
}

// startHeadline runs lcrProxy on a free loopback port over the SQLite file
// dsn until the end of the test, and returns its address.
func startHeadline(t *testing.T, dsn string) netip.AddrPort {
	t.Helper()
	port := testenv.FreeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lcrProxy(ctx, fmt.Sprintf("udp:127.0.0.1:%d", port), dsn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "lcrProxy")
		case <-time.After(30 * time.Second):
			t.Error("lcrProxy did not return within 30 s of its context ending")
		}
	})
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// routesDB creates an SQLite file with the headline's lcr table and rows
// {prefix, gw}, and returns its path.
func routesDB(t *testing.T, rows ...[2]string) string {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "routes.db")
	h, err := db.Open(db.DriverSQLite, dsn)
	require.NoError(t, err)
	defer h.Close()
	ctx := context.Background()
	_, err = h.ExecContext(ctx, `CREATE TABLE lcr (prefix TEXT PRIMARY KEY, gw TEXT NOT NULL)`)
	require.NoError(t, err)
	for _, r := range rows {
		_, err = h.ExecContext(ctx, `INSERT INTO lcr VALUES (?, ?)`, r[0], r[1])
		require.NoError(t, err)
	}
	return dsn
}

// dropRoutes removes the lcr table, so that every later lookup fails.
func dropRoutes(t *testing.T, dsn string) {
	t.Helper()
	h, err := db.Open(db.DriverSQLite, dsn)
	require.NoError(t, err)
	defer h.Close()
	_, err = h.ExecContext(context.Background(), `DROP TABLE lcr`)
	require.NoError(t, err)
}

// sendUntilAnswered sends the INVITE raw, retransmitted as a UAC does
// (every 250 ms, for at most 15 s: the proxy may still be starting) until
// a response arrives, and returns it.
func sendUntilAnswered(t *testing.T, p *e2etest.UDPPeer, to netip.AddrPort, raw string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		p.SendTo(to, raw)
		until := time.Now().Add(250 * time.Millisecond)
		for {
			_ = p.Conn().SetReadDeadline(until)
			n, err := p.Conn().Read(buf)
			if err != nil {
				break // timeout, or ICMP refused while the proxy starts
			}
			if msg := string(buf[:n]); strings.HasPrefix(msg, "SIP/2.0 ") {
				return msg
			}
		}
	}
	t.Fatalf("no answer to %s within 15 s", firstLine(raw))
	return ""
}

// finalResponse returns first when it is a final response, else the next
// final response for method that p receives.
func finalResponse(t *testing.T, p *e2etest.UDPPeer, first, method string) string {
	t.Helper()
	if !strings.HasPrefix(first, "SIP/2.0 1") {
		return first
	}
	return readResponse(t, p, method)
}

// readRequest returns the next request of method p receives, skipping
// retransmissions of others (bounded by 10 s).
func readRequest(t *testing.T, p *e2etest.UDPPeer, method string) string {
	t.Helper()
	return readMatching(t, p, func(msg string) bool { return strings.HasPrefix(msg, method+" ") })
}

// readResponse returns the next final response for method p receives.
func readResponse(t *testing.T, p *e2etest.UDPPeer, method string) string {
	t.Helper()
	return readMatching(t, p, func(msg string) bool {
		return strings.HasPrefix(msg, "SIP/2.0 ") && !strings.HasPrefix(msg, "SIP/2.0 1") &&
			strings.HasSuffix(e2etest.Header(msg, "CSeq"), " "+method)
	})
}

func readMatching(t *testing.T, p *e2etest.UDPPeer, match func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 65535)
	for {
		_ = p.Conn().SetReadDeadline(deadline)
		n, err := p.Conn().Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("nothing expected arrived within 10 s")
		}
		require.NoError(t, err)
		if msg := string(buf[:n]); match(msg) {
			return msg
		}
	}
}

// answerTo builds a response to a raw request: its Vias, Record-Routes,
// From, To (tagged if it was not), Call-ID and CSeq, then extra headers.
func answerTo(req string, code int, reason string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, line := range strings.Split(req, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "record-route", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			if !strings.Contains(value, ";tag=") {
				line += ";tag=gw"
			}
			b.WriteString(line + "\r\n")
		}
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// inDialogRequest builds the caller's ACK or BYE in the dialog of
// rawRequest's INVITE (same From and Call-ID), to the callee's Contact
// along route.
func inDialogRequest(method, target string, route []string, port int, callID, to string, cseq int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, target)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s-%s;rport\r\n", port, callID, method)
	for _, r := range route {
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:alice@127.0.0.1>;tag=a-%s\r\n", callID)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", cseq, method)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// ackFor builds the hop-by-hop ACK of a non-2xx final response to the raw
// INVITE inv (RFC 3261 §17.1.1.3): the INVITE's Via and Request-URI, the
// response's To.
func ackFor(inv, resp string) string {
	var b strings.Builder
	for i, line := range strings.Split(strings.SplitN(inv, "\r\n\r\n", 2)[0], "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch {
		case i == 0:
			b.WriteString("ACK " + strings.Fields(line)[1] + " SIP/2.0\r\n")
		case strings.EqualFold(name, "To"):
			b.WriteString("To: " + e2etest.Header(resp, "To") + "\r\n")
		case strings.EqualFold(name, "CSeq"):
			b.WriteString("CSeq: 1 ACK\r\n")
		case strings.EqualFold(name, "Contact"), strings.EqualFold(name, "Content-Length"):
		default:
			b.WriteString(line + "\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

func firstLine(msg string) string {
	l, _, _ := strings.Cut(msg, "\r\n")
	return l
}

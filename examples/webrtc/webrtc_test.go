// Package webrtc_test runs the README of examples/webrtc: the flagship
// proxy with webrtc.json, a real rtpengine, SIPp as the phone and a Go
// WebSocket client as the browser.
package webrtc_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// root is the repository root: the README's commands run from there.
const root = "../.."

var proxyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webrtc-proxy")
	if err != nil {
		panic(err)
	}
	proxyBin = filepath.Join(dir, "proxy")
	if out, err := exec.Command("go", "build", "-o", proxyBin, "../proxy").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the flagship: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// demo is the README's set-up running on free ports.
type demo struct {
	ports map[int]int
	data  string // the README's /tmp/webrtc-demo
	rtp   *testenv.RTPEngineProc
}

// readme returns the README's command lines of program, ports mapped and
// the data directory replaced, in order.
func (d *demo) readme(t *testing.T, program string) []sipp.Command {
	t.Helper()
	var out []sipp.Command
	for _, c := range sipp.ReadmeLines(t, "README.md", program) {
		c = c.MapPorts(d.ports)
		for i, a := range c.Args {
			c.Args[i] = strings.ReplaceAll(a, "/tmp/webrtc-demo", d.data)
		}
		out = append(out, c)
	}
	return out
}

// startDemo runs the README's "Run it" block: rtpengine, the two users and
// the proxy with webrtc.json (its ports mapped as the command lines'),
// or the proxy line that serves, chosen by pick.
func startDemo(t *testing.T, pick func(args []string) bool) *demo {
	t.Helper()
	sipp.Path(t)
	d := &demo{ports: map[int]int{}, data: t.TempDir()}
	for _, p := range []int{5060, 5070, 5090, 2223} {
		d.ports[p] = testenv.FreeUDPPort(t)
	}
	for _, p := range []int{8080, 8443} {
		d.ports[p] = testenv.FreeTCPPort(t)
	}
	rtpLines := d.readme(t, "rtpengine")
	require.Len(t, rtpLines, 1)
	d.rtp = testenv.StartRTPEngineArgs(t, rtpLines[0].Args)

	var serve []string
	for _, c := range d.readme(t, "go") {
		require.Equal(t, []string{"run", "./examples/proxy"}, c.Args[:2], c.String())
		args := c.Args[2:]
		if i := indexOf(args, "user"); i >= 0 {
			out, err := exec.Command(proxyBin, args...).CombinedOutput()
			require.NoError(t, err, "%s: %s", c, out)
			continue
		}
		if pick(args) {
			serve = args
		}
	}
	require.NotNil(t, serve, "the README starts the proxy")
	if i := indexOf(serve, "-config"); i >= 0 {
		serve[i+1] = d.config(t, serve[i+1])
	}
	for _, c := range d.readme(t, "openssl") {
		out, err := exec.Command("openssl", c.Args...).CombinedOutput()
		require.NoError(t, err, "%s: %s", c, out)
	}
	startProxy(t, serve)
	return d
}

func indexOf(args []string, w string) int {
	for i, a := range args {
		if a == w {
			return i
		}
	}
	return -1
}

// config writes webrtc.json with the test's ports and returns its path.
func (d *demo) config(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	require.NoError(t, err)
	s := string(b)
	for from, to := range d.ports {
		s = strings.ReplaceAll(s, ":"+strconv.Itoa(from)+`"`, ":"+strconv.Itoa(to)+`"`)
	}
	out := filepath.Join(d.data, "webrtc.json")
	require.NoError(t, os.WriteFile(out, []byte(s), 0o600))
	return out
}

// startProxy runs the built flagship with args from the repository root,
// waits for its banner and stops it (SIGINT, by PID) at cleanup.
func startProxy(t *testing.T, args []string) {
	t.Helper()
	cmd := exec.Command(proxyBin, args...)
	cmd.Dir = root
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var errs strings.Builder
	cmd.Stderr = &errs
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case banner <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("the proxy did not stop within 10 s of SIGINT")
		}
	})
	select {
	case line := <-banner:
		require.Contains(t, line, "asyncsip proxy listening", line)
	case <-done:
		t.Fatalf("the proxy exited at start: %s", errs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("no banner from the proxy")
	}
}

// serves picks the README's first proxy line (ws:, from webrtc.json).
func serves(args []string) bool { return indexOf(args, "-config") >= 0 && indexOf(args, "-listen") < 0 }

// servesWSS picks the proxy line with the wss: listener.
func servesWSS(args []string) bool {
	return indexOf(args, "-config") >= 0 && indexOf(args, "-listen") >= 0
}

// sipp runs (or starts, for a uas) the README's SIPp line whose scenario
// ends with scenario, tracing its messages to trace.
func (d *demo) sipp(t *testing.T, scenario, trace string) sipp.Command {
	t.Helper()
	for _, c := range d.readme(t, "sipp") {
		if strings.HasSuffix(c.Flag("-sf"), scenario) {
			c.Args = append(c.Args, "-trace_msg", "-message_file", trace)
			return c
		}
	}
	t.Fatalf("no sipp line with %s in the README", scenario)
	return sipp.Command{}
}

// traced returns the first message of a SIPp trace whose start line
// begins with start.
func traced(t *testing.T, trace, start string) string {
	t.Helper()
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	i := strings.Index(text, "\n"+start)
	require.GreaterOrEqual(t, i, 0, "no %q in the trace:\n%s", start, text)
	msg := text[i+1:]
	if j := strings.Index(msg, "\n----"); j >= 0 {
		msg = msg[:j]
	}
	return msg
}

// assertBrowserSDP checks an SDP for a browser: WebRTC's profile, ICE and
// DTLS from rtpengine, no SDES keys.
func assertBrowserSDP(t *testing.T, d *demo, sdp string) {
	t.Helper()
	t.Logf("SDP towards the browser:\n%s", sdp)
	m := regexp.MustCompile(`(?m)^m=audio (\d+) (\S+) `).FindStringSubmatch(sdp)
	require.NotNil(t, m, "no m=audio in:\n%s", sdp)
	assert.Equal(t, "UDP/TLS/RTP/SAVPF", m[2], sdp)
	for _, a := range []string{"a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "a=setup:", "a=rtcp-mux", "a=mid:"} {
		assert.Contains(t, sdp, a, "the browser's SDP")
	}
	assert.NotContains(t, sdp, "a=crypto:", "no SDES towards the browser")
	assert.Regexp(t, `(?m)^a=candidate:\S+ 1 UDP \d+ 127\.0\.0\.1 `+m[1]+` typ host`, sdp, "rtpengine is the candidate")
	assertRTPEnginePort(t, d, m[1])
}

// assertPhoneSDP checks an SDP for a phone: plain RTP/AVP at rtpengine's
// address, no ICE, DTLS or SDES.
func assertPhoneSDP(t *testing.T, d *demo, sdp string) {
	t.Helper()
	t.Logf("SDP towards the phone:\n%s", sdp)
	m := regexp.MustCompile(`(?m)^m=audio (\d+) (\S+) `).FindStringSubmatch(sdp)
	require.NotNil(t, m, "no m=audio in:\n%s", sdp)
	assert.Equal(t, "RTP/AVP", m[2], sdp)
	assert.Regexp(t, `(?m)^c=IN IP4 127\.0\.0\.1\s*$`, sdp)
	for _, a := range []string{"a=fingerprint:", "a=ice-ufrag:", "a=candidate:", "a=setup:", "a=crypto:", "a=rtcp-mux"} {
		assert.NotContains(t, sdp, a, "the phone's SDP")
	}
	assertRTPEnginePort(t, d, m[1])
}

func assertRTPEnginePort(t *testing.T, d *demo, port string) {
	t.Helper()
	p, _ := strconv.Atoi(port)
	assert.True(t, p >= 30000 && p <= 30999, "port %d is rtpengine's (30000-30999)", p)
}

// assertDeleted checks that rtpengine got one offer, one answer and one
// delete for one call, and holds no call.
func assertDeleted(t *testing.T, d *demo) {
	t.Helper()
	offers := d.rtp.Commands("offer")
	require.Len(t, offers, 1)
	assert.Equal(t, offers, d.rtp.Commands("answer"))
	testenv.Eventually(t, 10*time.Second, "the call deleted", func() bool {
		n, err := d.rtp.ActiveCalls()
		return err == nil && n == 0 && len(d.rtp.Commands("delete")) == 1
	})
	assert.Equal(t, offers, d.rtp.Commands("delete"))
}

// bob, in his browser, calls alice, a SIPp phone on UDP.
func TestBrowserCallsPhone(t *testing.T) {
	d := startDemo(t, serves)
	trace := t.TempDir()
	reg := sipp.RunCommand(t, d.sipp(t, "register.xml", filepath.Join(trace, "reg.msg")), root, time.Minute)
	require.Equal(t, 1, reg.Successful, reg.String())
	uas := sipp.StartCommand(t, d.sipp(t, "uas.xml", filepath.Join(trace, "uas.msg")), root, time.Minute)

	bob := dialBrowser(t, fmt.Sprintf("ws://127.0.0.1:%d", d.ports[8080]), "bob", "127.0.0.1")
	r := bob.register("secret")
	require.Equal(t, 200, r.StatusCode, r.String())
	require.Regexp(t, `sip:bob@127\.0\.0\.1:\d+;transport=ws`, r.Contact().Address.String(), "stored at the connection")

	c := bob.invite("secret", "sip:alice@127.0.0.1")
	assertBrowserSDP(t, d, string(c.ok.Body()))
	bob.inDialog(c, "ACK", 2)
	bob.inDialog(c, "BYE", 3)
	assert.Equal(t, 200, bob.final().StatusCode)

	res := uas.Stop()
	require.Equal(t, 1, res.Successful, res.String())
	inv := traced(t, filepath.Join(trace, "uas.msg"), "INVITE ")
	assertPhoneSDP(t, d, inv[strings.Index(inv, "\nv=0")+1:])
	assertDeleted(t, d)
}

// alice, a SIPp phone, calls bob in his browser.
func TestPhoneCallsBrowser(t *testing.T) {
	d := startDemo(t, serves)
	bob := dialBrowser(t, fmt.Sprintf("ws://127.0.0.1:%d", d.ports[8080]), "bob", "127.0.0.1")
	require.Equal(t, 200, bob.register("secret").StatusCode)

	trace := filepath.Join(t.TempDir(), "uac.msg")
	uac := d.sipp(t, "uac.xml", trace)
	done := make(chan sipp.Result, 1)
	go func() { done <- sipp.RunCommand(t, uac, root, time.Minute) }()

	var inv *sip.Request
	for inv == nil {
		if req, ok := bob.next().(*sip.Request); ok && req.Method == sip.INVITE {
			inv = req
		}
	}
	assertBrowserSDP(t, d, string(inv.Body()))
	bob.answer(inv)
	for {
		req, ok := bob.next().(*sip.Request)
		if ok && req.Method == sip.BYE {
			bob.reply(req, 200, "OK")
			break
		}
	}
	select {
	case res := <-done:
		require.Equal(t, 1, res.Successful, res.String())
	case <-time.After(time.Minute):
		t.Fatal("SIPp's call did not end")
	}
	ok := traced(t, trace, "SIP/2.0 200 OK")
	assertPhoneSDP(t, d, ok[strings.Index(ok, "\nv=0")+1:])
	assertDeleted(t, d)
}

// The README's wss: lines: a self-signed certificate, and bob registers
// over TLS.
func TestBrowserOverWSS(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Need(t, "openssl", "install openssl")
	}
	d := startDemo(t, servesWSS)
	bob := dialBrowserTLS(t, fmt.Sprintf("wss://127.0.0.1:%d", d.ports[8443]), "bob", "127.0.0.1",
		&tls.Config{InsecureSkipVerify: true}) // the README's self-signed certificate
	r := bob.register("secret")
	require.Equal(t, 200, r.StatusCode, r.String())
	require.Regexp(t, `sip:bob@127\.0\.0\.1:\d+;transport=ws`, r.Contact().Address.String())
}

// Secure by default, as the flagship: a browser without the right
// password registers nothing and calls nobody, and rtpengine never hears
// of its call.
func TestBrowserWithoutCredentials(t *testing.T) {
	d := startDemo(t, serves)
	mallory := dialBrowser(t, fmt.Sprintf("ws://127.0.0.1:%d", d.ports[8080]), "bob", "127.0.0.1")
	assert.Equal(t, 403, mallory.register("wrong").StatusCode)

	callID, tag, ruri := randHex(8), randHex(4), "sip:alice@127.0.0.1"
	mallory.send(mallory.request("INVITE", ruri, "<"+ruri+">", callID, tag, 1, nil, webrtcSDP("actpass")))
	r := mallory.final()
	require.Equal(t, 407, r.StatusCode, r.String())
	mallory.send(mallory.request("ACK", ruri, r.To().String(), callID, tag, 1, nil, ""))
	mallory.send(mallory.request("INVITE", ruri, "<"+ruri+">", callID, tag, 2,
		[]string{digest(t, r, "bob", "wrong", "INVITE", ruri)}, webrtcSDP("actpass")))
	assert.Equal(t, 403, mallory.final().StatusCode)
	assert.Empty(t, d.rtp.Commands("offer"), "nothing reached rtpengine")
}

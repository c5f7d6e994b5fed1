package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/sipp"
	"github.com/asyncsip/asyncsip/internal/testenv"
)

// rtpengineProc is an rtpengine daemon started from a README line, its
// stderr (the log) captured.
type rtpengineProc struct {
	ng   string // ng control address
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRTPEngineLine runs words (an `rtpengine …` line whose ports the test
// mapped) and waits until it answers an ng ping; it is stopped by PID at
// cleanup. Without the binary the test is skipped (fails under CI).
func startRTPEngineLine(t *testing.T, words []string) *rtpengineProc {
	t.Helper()
	bin := testenv.RTPEngineBinary()
	if bin == "" {
		testenv.Need(t, "rtpengine", "install rtpengine-daemon (apt-get install rtpengine-daemon) or run `make test`")
	}
	p := &rtpengineProc{log: &lockedBuffer{}, done: make(chan struct{})}
	for _, w := range words[1:] {
		if v, ok := strings.CutPrefix(w, "--listen-ng="); ok {
			p.ng = v
		}
	}
	require.NotEmpty(t, p.ng, "the line names --listen-ng: %v", words)
	p.cmd = exec.Command(bin, words[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	ok := testenv.Poll(10*time.Second, func() bool {
		r, err := ngCommand(p.ng, "ping")
		return err == nil && strings.Contains(r, "pong")
	})
	require.True(t, ok, "rtpengine did not answer a ping:\n%s", p.log.String())
	return p
}

// ngCommand sends an ng command without arguments ("ping", "list") and
// returns the bencoded reply, bounded by a second.
func ngCommand(addr, command string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var ck [6]byte
	_, _ = rand.Read(ck[:])
	cookie := hex.EncodeToString(ck[:])
	msg := fmt.Sprintf("%s d7:command%d:%se", cookie, len(command), command)
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	reply, ok := strings.CutPrefix(string(buf[:n]), cookie+" ")
	if !ok {
		return "", fmt.Errorf("reply with another cookie: %q", buf[:n])
	}
	return reply, nil
}

// activeCalls returns the number of calls rtpengine holds ("list").
func (p *rtpengineProc) activeCalls(t *testing.T) int {
	t.Helper()
	r, err := ngCommand(p.ng, "list")
	require.NoError(t, err)
	i := strings.Index(r, "5:callsl")
	require.GreaterOrEqual(t, i, 0, "list reply %q", r)
	n := 0
	for rest := r[i+len("5:callsl"):]; len(rest) > 0 && rest[0] != 'e'; n++ {
		colon := strings.IndexByte(rest, ':')
		require.Greater(t, colon, 0, "list reply %q", r)
		l, err := strconv.Atoi(rest[:colon])
		require.NoError(t, err, "list reply %q", r)
		rest = rest[colon+1+l:]
	}
	return n
}

// commands returns the Call-IDs rtpengine logged a command for.
func (p *rtpengineProc) commands(command string) []string {
	re := regexp.MustCompile(`\[([^\]]+)\]: \[control\] Received command '` + command + `'`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(p.log.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// sdpOf returns the c= address and the first m=audio port of the SDP body
// of the first message in a SIPp message trace whose first line starts
// with startLine.
func sdpOf(t *testing.T, trace, startLine string) (addr string, port int) {
	t.Helper()
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	i := strings.Index(text, "\n"+startLine)
	require.GreaterOrEqual(t, i, 0, "no %q in the trace:\n%s", startLine, text)
	msg := text[i+1:]
	if j := strings.Index(msg, "\n----"); j >= 0 { // SIPp's separator between messages
		msg = msg[:j]
	}
	c := regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`).FindStringSubmatch(msg)
	m := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(msg)
	require.NotNil(t, c, "no c= line in:\n%s", msg)
	require.NotNil(t, m, "no m=audio line in:\n%s", msg)
	port, _ = strconv.Atoi(m[1])
	return c[1], port
}

// readmeMediaLines returns the README's "sh rtpengine" lines, as words.
func readmeMediaLines(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, block := range readmeBlocks(t, "sh rtpengine") {
		for _, line := range block {
			if f := strings.Fields(line); len(f) > 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

// The README's media section, run as written: rtpengine, the proxy with
// -rtpengine, a gateway and a caller whose SDP names 192.168.1.10. The
// gateway is offered rtpengine's address and a port of its range, the
// caller gets rtpengine's answer, and the BYE deletes the session.
func TestReadmeMedia(t *testing.T) {
	sipp.Path(t)
	lines := readmeMediaLines(t)
	require.Len(t, lines, 4, "the media section: rtpengine, the proxy, two SIPp lines")
	data := t.TempDir()
	ports := map[int]int{2223: testenv.FreeUDPPort(t)}
	for _, p := range []int{5060, 5080, 5090} {
		ports[p] = testenv.FreeUDPPort(t)
	}
	mapped := func(words []string) []string {
		c := sipp.Command{Program: words[0], Args: words[1:]}.MapPorts(ports)
		for i, a := range c.Args {
			c.Args[i] = strings.ReplaceAll(a, "/tmp/proxy-demo", data)
		}
		return append([]string{c.Program}, c.Args...)
	}
	// The quick start's users and gateway.
	for _, words := range readmeCommands(t, "go run ./examples/proxy -data /tmp/proxy-demo") {
		if args := mapped(words[2:])[1:]; len(args) > 2 && (args[2] == "user" || args[2] == "gw") {
			cli(t, args...)
		}
	}

	require.Equal(t, "rtpengine", lines[0][0])
	rtp := startRTPEngineLine(t, mapped(lines[0]))
	require.Equal(t, []string{"go", "run", "./examples/proxy"}, lines[1][:3])
	startProxyOn(t, []string{fmt.Sprintf("udp:127.0.0.1:%d", ports[5060])}, mapped(lines[1])[3:]...)

	trace := t.TempDir()
	sippCmd := func(words []string, name string) sipp.Command {
		w := mapped(words)
		require.Equal(t, "sipp", w[0])
		return sipp.Command{Program: "sipp", Source: "README.md", Args: append(w[1:],
			"-trace_msg", "-message_file", filepath.Join(trace, name))}
	}
	uas := sipp.StartCommand(t, sippCmd(lines[2], "uas.msg"), "../..", time.Minute)
	res := sipp.RunCommand(t, sippCmd(lines[3], "uac.msg"), "../..", time.Minute)
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, 1, res.Successful, res.String())
	ures := uas.Stop()
	require.Equal(t, 1, ures.Successful, ures.String())

	addr, port := sdpOf(t, filepath.Join(trace, "uas.msg"), "INVITE ")
	assert.Equal(t, "127.0.0.1", addr, "the gateway is offered rtpengine's address, not 192.168.1.10")
	assert.True(t, port >= 30000 && port <= 30999, "offered port %d is rtpengine's (30000-30999)", port)
	addr, port = sdpOf(t, filepath.Join(trace, "uac.msg"), "SIP/2.0 200 OK")
	assert.Equal(t, "127.0.0.1", addr)
	assert.True(t, port >= 30000 && port <= 30999, "answered port %d is rtpengine's (30000-30999)", port)

	offers := rtp.commands("offer")
	require.Len(t, offers, 1, "one call anchored:\n%s", rtp.log.String())
	assert.Equal(t, offers, rtp.commands("answer"))
	require.True(t, testenv.Poll(10*time.Second, func() bool {
		return len(rtp.commands("delete")) == 1 && rtp.activeCalls(t) == 0
	}), "the BYE deleted the call:\n%s", rtp.log.String())
	assert.Equal(t, offers, rtp.commands("delete"))
}

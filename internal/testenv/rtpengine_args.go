package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartRTPEngineArgs starts rtpengine with args as they are — the words
// after "rtpengine" of a README line whose ports the test mapped — instead
// of StartRTPEngine's own. args must name --listen-ng=IP:PORT. It waits
// until the daemon answers an ng ping, and stops it by PID at cleanup; its
// output goes to the Log file. Without the binary the test is skipped, or
// fails under CI.
func StartRTPEngineArgs(t testing.TB, args []string) *RTPEngineProc {
	t.Helper()
	bin := RTPEngineBinary()
	if bin == "" {
		Need(t, "rtpengine", "install rtpengine-daemon (apt-get install rtpengine-daemon) or run `make test`")
	}
	p := &RTPEngineProc{Log: filepath.Join(t.TempDir(), "rtpengine.log"), exited: make(chan struct{})}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--listen-ng="); ok {
			p.NG = v
		}
	}
	if p.NG == "" {
		t.Fatalf("testenv: rtpengine %v: no --listen-ng=IP:PORT", args)
	}
	p.Addr = "udp:" + p.NG
	logf, err := os.Create(p.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.PID = p.cmd.Process.Pid
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Stop)
	if err := p.waitReady(10 * time.Second); err != nil {
		p.Stop()
		log, _ := os.ReadFile(p.Log)
		t.Fatalf("testenv: rtpengine %v: %v; log:\n%s", args, err, log)
	}
	return p
}

// ActiveCalls returns the number of calls the daemon holds (ng "list").
func (p *RTPEngineProc) ActiveCalls() (int, error) {
	r, err := p.command("list")
	if err != nil {
		return 0, err
	}
	i := strings.Index(r, "5:callsl")
	if i < 0 {
		return 0, fmt.Errorf("testenv: rtpengine list reply %q", r)
	}
	n := 0
	for rest := r[i+len("5:callsl"):]; len(rest) > 0 && rest[0] != 'e'; n++ {
		colon := strings.IndexByte(rest, ':')
		l, err := strconv.Atoi(rest[:max(colon, 0)])
		if colon <= 0 || err != nil || colon+1+l > len(rest) {
			return 0, fmt.Errorf("testenv: rtpengine list reply %q", r)
		}
		rest = rest[colon+1+l:]
	}
	return n, nil
}

// command sends an ng command without arguments and returns the bencoded
// reply, bounded by a second.
func (p *RTPEngineProc) command(name string) (string, error) {
	c, err := net.Dial("udp", p.NG)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var ck [6]byte
	_, _ = rand.Read(ck[:])
	cookie := hex.EncodeToString(ck[:])
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c, "%s d7:command%d:%se", cookie, len(name), name); err != nil {
		return "", err
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	reply, ok := strings.CutPrefix(string(buf[:n]), cookie+" ")
	if !ok {
		return "", fmt.Errorf("testenv: rtpengine reply with another cookie: %q", buf[:n])
	}
	return reply, nil
}

// Commands returns, in order, the Call-IDs of the ng commands named name
// ("offer", "answer", "delete") that the daemon logged (at --log-level=6
// or more).
func (p *RTPEngineProc) Commands(name string) []string {
	b, _ := os.ReadFile(p.Log)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, "]: [control] Received command '"+name+"'")
		if i < 0 {
			continue
		}
		if j := strings.LastIndex(line[:i], "["); j >= 0 {
			out = append(out, line[j+1:i])
		}
	}
	return out
}

package testenv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RTPEngineProc is a private rtpengine daemon started by StartRTPEngine:
// userspace forwarding only (no kernel module), media and control on
// 127.0.0.1, its own pid file and log, stopped by PID when the test ends.
type RTPEngineProc struct {
	// NG is the ng control address, "127.0.0.1:port"; Addr the same with
	// the "udp:" scheme that modules/rtpengine takes.
	NG, Addr string
	// PID is the daemon's process id.
	PID int
	// Log is the path of its log (stderr) file, PortMin..PortMax its media
	// port range.
	Log              string
	PortMin, PortMax int

	cmd    *exec.Cmd
	exited chan struct{}
}

// RTPEngineBinary returns the path of the rtpengine daemon, or "".
func RTPEngineBinary() string {
	if p, err := exec.LookPath("rtpengine"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/rtpengine", "/usr/sbin/rtpengine"} {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// StartRTPEngine starts a private rtpengine on 127.0.0.1 (a free ng port, a
// media port range of its own, no config file, delete-delay 0 so a delete
// frees the call at once) and waits until it answers an ng ping. It is
// stopped (SIGTERM, then SIGKILL) by PID at cleanup. Without the binary the
// test is skipped, or fails under CI.
func StartRTPEngine(t testing.TB) *RTPEngineProc {
	t.Helper()
	bin := RTPEngineBinary()
	if bin == "" {
		Need(t, "rtpengine", "install rtpengine-daemon (apt-get install rtpengine-daemon) or run `make test`")
	}
	var last error
	for range 3 { // the free port may be taken between the probe and the bind
		p, err := startRTPEngine(t, bin)
		if err == nil {
			return p
		}
		last = err
	}
	t.Fatalf("testenv: rtpengine did not start: %v", last)
	return nil
}

func startRTPEngine(t testing.TB, bin string) (*RTPEngineProc, error) {
	dir := t.TempDir()
	port := FreeUDPPort(t)
	// A range of 400 ports in 20000-59999, chosen at random: parallel
	// daemons rarely overlap, and rtpengine skips ports already bound.
	pmin := 20000 + 400*rand.IntN(100)
	p := &RTPEngineProc{
		NG: "127.0.0.1:" + strconv.Itoa(port), Log: filepath.Join(dir, "rtpengine.log"),
		PortMin: pmin, PortMax: pmin + 399, exited: make(chan struct{}),
	}
	p.Addr = "udp:" + p.NG
	logf, err := os.Create(p.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(bin,
		"--config-file=none", "--table=-1", "--interface=127.0.0.1",
		"--listen-ng="+p.NG, "--foreground", "--log-stderr",
		"--pidfile="+filepath.Join(dir, "rtpengine.pid"),
		"--port-min="+strconv.Itoa(p.PortMin), "--port-max="+strconv.Itoa(p.PortMax),
		"--delete-delay=0", "--num-threads=2", "--log-level=6")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.PID = p.cmd.Process.Pid
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Stop)
	if err := p.waitReady(10 * time.Second); err != nil {
		p.Stop()
		log, _ := os.ReadFile(p.Log)
		return nil, fmt.Errorf("%w; log:\n%s", err, log)
	}
	return p, nil
}

// waitReady pings the ng port until the daemon answers.
func (p *RTPEngineProc) waitReady(within time.Duration) error {
	c, err := net.Dial("udp", p.NG)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 256)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("rtpengine exited: %v", p.cmd.ProcessState)
		default:
		}
		_, _ = c.Write([]byte("testenv-ready d7:command4:pinge"))
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && bytes.Contains(buf[:n], []byte("pong")) {
			return nil
		}
	}
	return fmt.Errorf("rtpengine on %s did not answer a ping within %v", p.NG, within)
}

// Exited reports whether the daemon has exited.
func (p *RTPEngineProc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Kill kills the daemon at once (SIGKILL), as a crash would, and waits
// (bounded) until it is gone.
func (p *RTPEngineProc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// Stop stops the daemon by its PID: SIGTERM, then SIGKILL after 5 s.
func (p *RTPEngineProc) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

package testenv

import (
	"os"
	"strconv"
	"testing"
)

// StartRTPEngine's daemon answers pings, and Kill and Stop end exactly
// that process (by PID).
func TestStartRTPEngine(t *testing.T) {
	a, b := StartRTPEngine(t), StartRTPEngine(t)
	if a.NG == b.NG || a.PID == b.PID || a.Exited() || b.Exited() {
		t.Fatalf("two daemons: %+v %+v", a, b)
	}
	a.Kill()
	if !a.Exited() || b.Exited() {
		t.Fatal("Kill did not end exactly its daemon")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(a.PID)); err == nil {
		t.Fatalf("pid %d still exists after Kill", a.PID)
	}
	if err := b.waitReady(5e9); err != nil {
		t.Fatalf("the other daemon stopped answering: %v", err)
	}
	b.Stop()
	if !b.Exited() {
		t.Fatal("Stop did not end the daemon")
	}
}

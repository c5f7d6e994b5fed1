package reactor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Loop.Arm schedules a Timer the caller keeps: the zero Timer is a stopped
// one, arming a pending timer moves it (new deadline and function), a fired
// timer can be armed again, and arming allocates nothing.
func TestTimerArmInPlace(t *testing.T) {
	l, _ := manual(t)
	type holder struct{ tm Timer }
	var h holder
	require.False(t, h.tm.Pending())
	require.False(t, h.tm.Stop(), "the zero Timer is stopped")

	var fired []string
	a := func() { fired = append(fired, "a") }
	b := func() { fired = append(fired, "b") }
	l.Arm(&h.tm, 10*time.Millisecond, a)
	require.True(t, h.tm.Pending())
	l.Arm(&h.tm, 20*time.Millisecond, b) // moved: a never fires
	require.Equal(t, 1, l.Timers())
	l.Advance(15 * time.Millisecond)
	require.Empty(t, fired)
	l.Advance(5 * time.Millisecond)
	require.Equal(t, []string{"b"}, fired)
	require.False(t, h.tm.Pending())

	// Equal deadlines keep arming order across Arm and AfterFunc.
	fired = nil
	var h2 holder
	l.Arm(&h.tm, time.Millisecond, a)
	l.AfterFunc(time.Millisecond, func() { fired = append(fired, "x") })
	l.Arm(&h2.tm, time.Millisecond, b)
	l.Advance(time.Millisecond)
	require.Equal(t, []string{"a", "x", "b"}, fired)

	allocs := testing.AllocsPerRun(100, func() {
		l.Arm(&h.tm, time.Second, a)
		h.tm.Stop()
	})
	require.Zero(t, allocs)
}

package reactor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoopSmoke(t *testing.T) {
	l, err := New(Config{})
	require.NoError(t, err)
	l.Start()
	got := make(chan string, 3)
	require.NoError(t, l.Post(func() {
		l.AfterFunc(5*time.Millisecond, func() { got <- "timer" })
		got <- "task"
	}))
	require.NoError(t, l.PostUrgent(func() { got <- "urgent" }))
	var seen []string
	for len(seen) < 3 {
		select {
		case s := <-got:
			seen = append(seen, s)
		case <-time.After(2 * time.Second):
			t.Fatalf("timeout, saw %v", seen)
		}
	}
	require.Contains(t, seen, "timer")
	require.NoError(t, l.Stop(context.Background()))
	require.ErrorIs(t, l.Post(func() {}), ErrClosed)
}

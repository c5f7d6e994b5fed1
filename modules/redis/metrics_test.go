package redis_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
)

// events is an Observer that keeps what it was told.
type events struct {
	mu       sync.Mutex
	done     map[string][]error
	rejected []error
}

func (e *events) CommandDone(cmd string, latency time.Duration, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if latency <= 0 {
		err = errors.New("non-positive latency")
	}
	e.done[cmd] = append(e.done[cmd], err)
}

func (e *events) Rejected(_ string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejected = append(e.rejected, err)
}

func (e *events) of(cmd string) []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.done[cmd]...)
}

// The Observer hears of every command sent, with its outcome, and of every
// op refused unsent; Stats counts the same.
func TestObserverAndStats(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	ev := &events{done: map[string][]error{}}
	c := open(t, srv.URL(), redis.WithObserver(ev), redis.Timeout(200*time.Millisecond),
		redis.RetryInterval(time.Hour)) // stays down once down
	l := testenv.StartLoop(t)

	must(t, l, c.Set("k", "v", 0))
	must(t, l, c.Int("RPUSH", "l", "x"))
	run(t, l, c.Get("missing")) // ErrNil
	run(t, l, c.Get("l"))       // WRONGTYPE
	run(t, l, c.Do("BLPOP", "never", "1"))
	run(t, l, c.Do("MULTI")) // refused: not sent, not observed

	testenv.Eventually(t, 5*time.Second, "the BLPOP outcome", func() bool { return len(ev.of("BLPOP")) == 1 })
	if errs := ev.of("SET"); len(errs) != 1 || errs[0] != nil {
		t.Fatalf("SET events %v", errs)
	}
	gets := ev.of("GET")
	var re *redis.ReplyError
	if len(gets) != 2 || gets[0] != redis.ErrNil || !errors.As(gets[1], &re) {
		t.Fatalf("GET events %v", gets)
	}
	if errs := ev.of("BLPOP"); !errors.Is(errs[0], async.ErrTimeout) {
		t.Fatalf("BLPOP event %v", errs)
	}
	if len(ev.of("MULTI")) != 0 {
		t.Fatal("a refused command was observed as sent")
	}

	srv.Stop()
	run(t, l, c.Get("k")) // breaks: unavailable
	run(t, l, c.Get("k")) // refused at once
	s := c.Stats()
	if s.Commands != 6 || s.Nil != 1 || s.Errors != 3 || s.Timeouts != 1 || s.Unavailable != 1 ||
		s.Downs != 1 || s.Available || s.InFlight != 0 || s.Latency <= 0 {
		t.Fatalf("stats %+v", s)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.rejected) != 1 || !errors.Is(ev.rejected[0], redis.ErrUnavailable) {
		t.Fatalf("rejections %v", ev.rejected)
	}
}

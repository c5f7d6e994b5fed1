package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/asyncsip/asyncsip/internal/testenv"
	"github.com/asyncsip/asyncsip/modules/redis"
	"github.com/asyncsip/asyncsip/reactor"
)

type received struct {
	m      redis.Message
	onLoop bool // fn ran on the loop the subscription names
}

// Messages of a subscription run their handler on the given loop, in the
// order they were published.
func TestSubscribeDeliversOnLoop(t *testing.T) {
	t.Parallel()
	c := shared(t)
	l := testenv.StartLoop(t)
	ch := key(t, "ch")
	got := make(chan received, 16)
	tid := loopTID(t, l)
	sub, err := c.Subscribe(l, func(m redis.Message) {
		got <- received{m, unix.Gettid() == tid}
	}, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	testenv.Wait(t, 10*time.Second, sub.Ready(), "subscription confirmed")
	for i := range 5 {
		if n := must(t, l, c.Publish(ch, fmt.Sprint(i))); n != 1 {
			t.Fatalf("PUBLISH reached %d subscribers", n)
		}
	}
	for i := range 5 {
		r := testenv.Wait(t, 10*time.Second, got, "message")
		if !r.onLoop || r.m.Channel != ch || r.m.Payload != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
	if s := sub.Stats(); s.Delivered != 5 || s.Subscribes != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// SubscribeGroup spreads channels over the group's loops and keeps each
// channel on one loop; PSubscribe reports the matching pattern.
func TestSubscribeGroupAndPattern(t *testing.T) {
	t.Parallel()
	c := shared(t)
	g, err := reactor.NewGroup(2, reactor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Stop(ctx)
	})
	tids := map[*reactor.Loop]int{g.Loop(0): loopTID(t, g.Loop(0)), g.Loop(1): loopTID(t, g.Loop(1))}
	chans := []string{key(t, "a"), key(t, "b"), key(t, "c"), key(t, "d")}
	type hit struct {
		channel string
		loop    *reactor.Loop
		ok      bool
	}
	hits := make(chan hit, 64)
	sub, err := c.SubscribeGroup(g, func(l *reactor.Loop, m redis.Message) {
		hits <- hit{m.Channel, l, unix.Gettid() == tids[l]}
	}, chans...)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	testenv.Wait(t, 10*time.Second, sub.Ready(), "subscription confirmed")
	l := g.Loop(0)
	for range 3 {
		for _, ch := range chans {
			must(t, l, c.Publish(ch, "x"))
		}
	}
	loopOf := map[string]*reactor.Loop{}
	for range 3 * len(chans) {
		h := testenv.Wait(t, 10*time.Second, hits, "message")
		if !h.ok {
			t.Fatalf("handler for %s did not run on the loop it was given", h.channel)
		}
		if prev, seen := loopOf[h.channel]; seen && prev != h.loop {
			t.Fatalf("channel %s delivered on two loops", h.channel)
		}
		loopOf[h.channel] = h.loop
	}

	pat := make(chan redis.Message, 4)
	psub, err := c.PSubscribe(l, func(m redis.Message) { pat <- m }, key(t, "p.*"))
	if err != nil {
		t.Fatal(err)
	}
	defer psub.Close()
	testenv.Wait(t, 10*time.Second, psub.Ready(), "pattern subscription confirmed")
	must(t, l, c.Publish(key(t, "p.1"), "y"))
	m := testenv.Wait(t, 10*time.Second, pat, "pattern message")
	if m.Pattern != key(t, "p.*") || m.Channel != key(t, "p.1") || m.Payload != "y" {
		t.Fatalf("pattern message %+v", m)
	}
}

// A subscription survives a Redis restart: it is made again by itself and
// receives the messages published after that.
func TestSubscribeSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	c := open(t, srv.URL(), redis.RetryInterval(50*time.Millisecond))
	l := testenv.StartLoop(t)
	got := make(chan string, 16)
	sub, err := c.Subscribe(l, func(m redis.Message) { got <- m.Payload }, "events")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	testenv.Wait(t, 10*time.Second, sub.Ready(), "subscription confirmed")
	srv.Stop()
	srv.Start()
	testenv.Eventually(t, 10*time.Second, "resubscribed", func() bool {
		return sub.Subscribed() && sub.Stats().Subscribes >= 2
	})
	testenv.Eventually(t, 10*time.Second, "a message after the restart", func() bool {
		if _, err := testenv.RedisCommand(srv.Addr(), "PUBLISH", "events", "after"); err != nil {
			return false
		}
		select {
		case p := <-got:
			return p == "after"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
}

// loopTID returns the OS thread of loop l: a loop is locked to its thread,
// so a handler that runs on l sees the same thread id.
func loopTID(t testing.TB, l *reactor.Loop) int {
	var tid int
	testenv.OnLoop(t, l, func() { tid = unix.Gettid() })
	return tid
}

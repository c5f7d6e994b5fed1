package redis

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/asyncsip/asyncsip/reactor"
)

// Message is a pub/sub message.
type Message struct {
	// Channel is the channel it was published on.
	Channel string
	// Pattern is the pattern that matched the channel (PSubscribe only).
	Pattern string
	// Payload is the message.
	Payload string
}

// Subscription is a running SUBSCRIBE or PSUBSCRIBE. Its messages are
// posted to loops, where its handler runs; a subscription costs one
// goroutine (waiting in rueidis's Receive) for its whole life, none per
// message. When the connection breaks, the subscription is made again
// every RetryInterval until Redis answers: messages published meanwhile
// are lost, as pub/sub never keeps them.
type Subscription struct {
	c      *Client
	cmd    string // SUBSCRIBE or PSUBSCRIBE
	names  []string
	post   func(Message) error
	cancel context.CancelFunc
	ctx    context.Context
	done   chan struct{}
	ready  chan struct{}

	subscribed  atomic.Bool
	delivered   atomic.Uint64
	dropped     atomic.Uint64
	subscribes  atomic.Uint64
	confirmed   atomic.Int64 // channels confirmed in the current round
	closeOnce   sync.Once
	readyClosed atomic.Bool
}

// Subscribe subscribes to channels; each message runs fn on loop l, in the
// order Redis sent them.
func (c *Client) Subscribe(l *reactor.Loop, fn func(Message), channels ...string) (*Subscription, error) {
	return c.subscribe("SUBSCRIBE", channels, func(m Message) error {
		return l.Post(func() { fn(m) })
	})
}

// PSubscribe subscribes to channel patterns ("presence.*"); each message
// runs fn on loop l.
func (c *Client) PSubscribe(l *reactor.Loop, fn func(Message), patterns ...string) (*Subscription, error) {
	return c.subscribe("PSUBSCRIBE", patterns, func(m Message) error {
		return l.Post(func() { fn(m) })
	})
}

// SubscribeGroup subscribes to channels and spreads the messages over the
// loops of g by channel: the messages of one channel always run on the same
// loop, in order; fn gets that loop.
func (c *Client) SubscribeGroup(g *reactor.Group, fn func(l *reactor.Loop, m Message), channels ...string) (*Subscription, error) {
	seed := maphash.MakeSeed()
	return c.subscribe("SUBSCRIBE", channels, func(m Message) error {
		l := g.Owner(maphash.String(seed, m.Channel))
		return l.Post(func() { fn(l, m) })
	})
}

func (c *Client) subscribe(cmd string, names []string, post func(Message) error) (*Subscription, error) {
	if len(names) == 0 {
		return nil, ErrCommand
	}
	s := &Subscription{c: c, cmd: cmd, names: append([]string(nil), names...), post: post,
		done: make(chan struct{}), ready: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.cancel()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	go s.run()
	return s, nil
}

// Ready is closed once the subscription was confirmed by Redis for every
// channel the first time. Messages published before are not received.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Subscribed reports whether the subscription is currently confirmed
// (false while it is being made again after a broken connection).
func (s *Subscription) Subscribed() bool { return s.subscribed.Load() }

// SubscriptionStats counts a subscription's messages.
type SubscriptionStats struct {
	Delivered  uint64 // messages posted to a loop
	Dropped    uint64 // messages whose loop had stopped
	Subscribes uint64 // times the subscription was confirmed (1 + resubscriptions)
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	return SubscriptionStats{Delivered: s.delivered.Load(), Dropped: s.dropped.Load(), Subscribes: s.subscribes.Load()}
}

// Close ends the subscription and waits (bounded by the client's Timeout)
// until no message is posted any more. It is safe to call more than once.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		c := s.c
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
		select {
		case <-s.done:
		case <-time.After(c.cfg.Timeout):
		}
	})
}

// run subscribes, receives until the connection breaks, and subscribes
// again after RetryInterval, until Close.
func (s *Subscription) run() {
	defer s.c.wg.Done()
	defer close(s.done)
	hook := func(e rueidis.PubSubSubscription) {
		switch e.Kind {
		case "subscribe", "psubscribe":
			if s.confirmed.Add(1) == int64(len(s.names)) {
				s.subscribed.Store(true)
				s.subscribes.Add(1)
				if s.readyClosed.CompareAndSwap(false, true) {
					close(s.ready)
				}
			}
		}
	}
	ctx := rueidis.WithOnSubscriptionHook(s.ctx, hook)
	for s.ctx.Err() == nil {
		if rc := s.c.rc.Load(); rc != nil && !s.c.down.Load() {
			s.confirmed.Store(0)
			cmd := rc.B().Subscribe().Channel(s.names...).Build()
			if s.cmd == "PSUBSCRIBE" {
				cmd = rc.B().Psubscribe().Pattern(s.names...).Build()
			}
			err := rc.Receive(ctx, cmd, s.deliver)
			s.subscribed.Store(false)
			if s.ctx.Err() != nil {
				return
			}
			if isUnavailable(err) {
				s.c.markDown()
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(s.c.cfg.RetryInterval):
		}
	}
}

func (s *Subscription) deliver(m rueidis.PubSubMessage) {
	if err := s.post(Message{Channel: m.Channel, Pattern: m.Pattern, Payload: m.Message}); err != nil {
		s.dropped.Add(1)
		return
	}
	s.delivered.Add(1)
}

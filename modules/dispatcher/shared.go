package dispatcher

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
	"github.com/asyncsip/asyncsip/reactor"
)

// Destination states shared by several instances (Config.Board).
//
// Every instance probes every target, as without sharing. A state change
// one instance sees is published on the Board as "up|down, when, by whom";
// once per probe Interval each instance reads the states of its targets
// and applies those published later than its own last change of that
// target. So a target one instance finds dead is avoided by all within an
// Interval, and the latest change any instance saw wins. Each value lives
// boardTTL (ten Intervals): a target nobody changed for that long is left
// to each instance's own probes.
//
// When the Board fails (timeout, Redis down), nothing is published or
// applied: each instance goes on with its own probes (fail open to local
// state); the next change after the Board returns is shared again.

// boardKey is the Board key of a target.
func boardKey(uri string) string { return "dispatcher/" + uri }

func (d *Dispatcher) instance() string {
	if d.cfg.Instance != "" {
		return d.cfg.Instance
	}
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}

func (p *Prober) boardTTL() time.Duration { return 10 * p.cfg.Interval }

// publish puts a change on the Board (fire and forget, bounded by the
// probe timeout).
func (p *Prober) publish(l *reactor.Loop, uri string, up bool, at time.Time) {
	b := p.d.cfg.Board
	if b == nil {
		return
	}
	v := fmt.Sprintf("%t %d %s", up, at.UnixNano(), p.d.instance())
	async.Launch(l, b.Put(boardKey(uri), v, p.boardTTL()), func(_ struct{}, err error) {
		if err != nil {
			p.d.count.boardFailed.Add(1)
		}
	}, async.Timeout(p.cfg.Timeout), async.Name("dispatcher.publish"))
}

// fetchShared reads every target's state from the Board and applies the
// changes published after the local ones.
func (p *Prober) fetchShared(l *reactor.Loop) {
	hs := p.d.snap.Load().health
	if len(hs) == 0 {
		return
	}
	keys := make([]string, len(hs))
	for i, h := range hs {
		keys[i] = boardKey(h.uri)
	}
	async.Launch(l, p.d.cfg.Board.Get(keys...), func(vals map[string]string, err error) {
		if err != nil {
			p.d.count.boardFailed.Add(1)
			return
		}
		for _, h := range hs {
			if v, ok := vals[boardKey(h.uri)]; ok {
				p.applyShared(h, v)
			}
		}
	}, async.Timeout(p.cfg.Timeout), async.Name("dispatcher.fetch"))
}

// applyShared applies a published state to h when it is newer than h's
// last change and says something else.
func (p *Prober) applyShared(h *health, v string) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 || h.removed.Load() {
		return
	}
	up, err1 := strconv.ParseBool(f[0])
	ns, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || f[2] == p.d.instance() {
		return
	}
	at := time.Unix(0, ns)
	h.mu.Lock()
	var change *Change
	if up != h.up.Load() && at.After(h.since) {
		change = p.d.setState(h, at, up, "shared by "+f[2])
		h.fails, h.oks = 0, 0
	}
	h.mu.Unlock()
	if change != nil {
		p.d.count.boardApplied.Add(1)
		p.d.changed(*change)
	}
}

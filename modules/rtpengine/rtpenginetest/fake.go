package rtpenginetest

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
	"github.com/asyncsip/asyncsip/siptest"
)

// Command is one command a fake received.
type Command struct {
	// Name is the ng command ("offer", "answer", "delete", "query",
	// "ping"…), Call the call it was about.
	Name string
	Call rtpengine.Call
	// Dict is the whole request dictionary (flags included) as the client
	// encoded it; SDP its "sdp".
	Dict map[string]any
	SDP  []byte
}

// commandOp is what the rtpengine ops expose to fakes.
type commandOp interface {
	Command() string
	Call() rtpengine.Call
	Dict() map[string]any
}

// calls is the state both fakes keep: the live calls and what they saw.
type calls struct {
	mu       sync.Mutex
	addr     string
	nextPort int
	live     map[string]*call
	commands []Command
	refuse   map[string][]string // command → reasons of the next refusals
}

type call struct {
	created time.Time
	tags    map[string]bool
	offers  int
	answers int
}

func newCalls(addr string) *calls {
	return &calls{addr: addr, nextPort: 30000, live: map[string]*call{}, refuse: map[string][]string{}}
}

// handle runs one command: the reply dictionary, as rtpengine would send it.
func (s *calls) handle(cmd Command) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = append(s.commands, cmd)
	if rs := s.refuse[cmd.Name]; len(rs) > 0 {
		s.refuse[cmd.Name] = rs[1:]
		return map[string]any{"result": "error", "error-reason": rs[0]}
	}
	id := cmd.Call.CallID
	c := s.live[id]
	switch cmd.Name {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer", "answer":
		if len(cmd.SDP) == 0 {
			return map[string]any{"result": "error", "error-reason": "No SDP body in message"}
		}
		if c == nil {
			if cmd.Name == "answer" {
				return unknown()
			}
			c = &call{created: time.Now(), tags: map[string]bool{}}
			s.live[id] = c
		}
		if cmd.Name == "offer" {
			c.offers++
		} else {
			c.answers++
		}
		for _, t := range []string{cmd.Call.FromTag, cmd.Call.ToTag} {
			if t != "" {
				c.tags[t] = true
			}
		}
		return map[string]any{"result": "ok", "sdp": string(RewriteSDP(cmd.SDP, s.addr, &s.nextPort))}
	case "delete":
		if c == nil {
			return unknown()
		}
		delete(s.live, id)
		return map[string]any{"result": "ok"}
	case "query":
		if c == nil {
			return unknown()
		}
		tags := map[string]any{}
		for t := range c.tags {
			tags[t] = map[string]any{"tag": t, "medias": []any{}}
		}
		zero := map[string]any{"packets": int64(0), "bytes": int64(0), "errors": int64(0)}
		return map[string]any{"result": "ok", "created": c.created.Unix(), "last signal": time.Now().Unix(),
			"tags": tags, "totals": map[string]any{"RTP": zero, "RTCP": zero}}
	}
	return map[string]any{"result": "error", "error-reason": "Unrecognized command"}
}

func unknown() map[string]any {
	return map[string]any{"result": "error", "error-reason": "Unknown call-id"}
}

func (s *calls) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.commands...)
}

func (s *calls) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

func (s *calls) Has(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[callID] != nil
}

func (s *calls) Refuse(command, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[command] = append(s.refuse[command], reason)
}

// Fake is a siptest.Fake for the ops of an rtpengine.Client: give it to
// siptest.NewHarness with WithFakes. It keeps calls as rtpengine would
// (an answer or delete of an unknown call is refused "Unknown call-id"),
// rewrites SDP to MediaAddr, and answers at once (as the loop runs).
type Fake struct {
	*calls
	fail  map[string][]error
	delay time.Duration
}

// DefaultMediaAddr is the address the fakes put in rewritten SDP.
const DefaultMediaAddr = "203.0.113.1"

// NewFake returns a Fake rewriting SDP to DefaultMediaAddr.
func NewFake() *Fake { return &Fake{calls: newCalls(DefaultMediaAddr), fail: map[string][]error{}} }

// Commands returns the commands received, in order.
func (f *Fake) Commands() []Command { return f.calls.Commands() }

// Live returns the number of calls offered and not deleted.
func (f *Fake) Live() int { return f.calls.Live() }

// Has reports whether the call callID is live.
func (f *Fake) Has(callID string) bool { return f.calls.Has(callID) }

// Refuse makes the next command named command get rtpengine's refusal
// with reason (an *rtpengine.Error). Calls queue.
func (f *Fake) Refuse(command, reason string) { f.calls.Refuse(command, reason) }

// Fail makes the next command named command fail with err (for example an
// error wrapping rtpengine.ErrTimeout). Calls queue.
func (f *Fake) Fail(command string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[command] = append(f.fail[command], err)
}

// SetDelay makes the fake answer d after each command, on the harness
// clock (siptest's Clock.Advance), as a distant rtpengine would.
func (f *Fake) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Answer implements siptest.Fake for ops described "rtpengine.<command>: …".
func (f *Fake) Answer(w *siptest.Await) (siptest.Answer, bool) {
	if !strings.HasPrefix(w.Desc, "rtpengine.") {
		return siptest.Answer{}, false
	}
	op, ok := w.Op().(commandOp)
	if !ok {
		return siptest.Answer{}, false
	}
	dict := op.Dict()
	cmd := Command{Name: op.Command(), Call: op.Call(), Dict: dict}
	if s, ok := dict["sdp"].([]byte); ok {
		cmd.SDP = s
	}
	f.mu.Lock()
	if errs := f.fail[cmd.Name]; len(errs) > 0 {
		f.fail[cmd.Name] = errs[1:]
		f.commands = append(f.commands, cmd)
		f.mu.Unlock()
		return siptest.Answer{Err: errs[0], Delay: f.delay, By: "rtpenginetest.Fake " + cmd.Name}, true
	}
	delay := f.delay
	f.mu.Unlock()
	v, err := typed(cmd.Name, "fake", f.handle(cmd))
	return siptest.Answer{Value: v, Err: err, Delay: delay, By: "rtpenginetest.Fake " + cmd.Name}, true
}

// typed turns a reply dictionary into the value the op's resume takes.
func typed(name, inst string, reply map[string]any) (any, error) {
	if reply["result"] == "error" {
		return nil, &rtpengine.Error{Command: name, Instance: inst, Reason: fmt.Sprint(reply["error-reason"])}
	}
	r := &rtpengine.Response{Result: fmt.Sprint(reply["result"]), Instance: inst, Dict: maps.Clone(reply)}
	if s, ok := reply["sdp"].(string); ok {
		r.SDP = []byte(s)
	}
	switch name {
	case "ping":
		return time.Duration(0), nil
	case "query":
		return rtpengine.ParseQuery(r)
	}
	return r, nil
}

var _ siptest.Fake = (*Fake)(nil)

package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/siptest"
)

// logBuffer is a slog destination the test reads back, line by line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines whose message is msg.
func (b *logBuffer) lines(msg string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, " msg="+msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

func captureLogs(p *Proxy) *logBuffer {
	b := &logBuffer{}
	p.log = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p.ch.Logger = p.log
	return b
}

func TestOneLogLinePerTransaction(t *testing.T) {
	p := newTestProxy(t, Config{Trusted: []string{harnessPeer}})
	logs := captureLogs(p)
	require.NoError(t, p.store.AddGateway(context.Background(), 1, "10.1.0.1:5060", "+1", 0))
	h := newHarness(t, p)
	siptest.AssertReplied(t, registerAs(t, h, "bob", "bobpw", "sip:bob@10.0.0.5:5060", 600), 200)

	res := h.Send(siptest.NewRequest("INVITE", "sip:bob@example.com", siptest.WithCallID("call-ok")))
	res.Branch(0).Respond(200)
	siptest.AssertReplied(t, res, 200)

	res = h.Send(siptest.NewRequest("INVITE", "sip:+15551234@example.com", siptest.WithCallID("call-badgw")))
	res.Branch(0).Respond(503)
	siptest.AssertReplied(t, res, 500)

	lines := logs.lines("transaction")
	require.Len(t, lines, 4, "two REGISTER transactions (401, 200) and two calls: %v", lines)
	ok, bad := lines[2], lines[3]
	for _, want := range []string{"call_id=call-ok", "method=INVITE", "from=sip:alice@", "to=sip:bob@example.com",
		"source=", "code=200", "duration=", `branches="sip:bob@10.0.0.5:5060=200"`} {
		assert.Contains(t, ok, want)
	}
	for _, want := range []string{"call_id=call-badgw", "method=INVITE", "code=500",
		`branches="sip:+15551234@10.1.0.1:5060=503"`} {
		assert.Contains(t, bad, want)
	}
	assert.Contains(t, lines[0], "method=REGISTER")
	assert.Contains(t, lines[0], "code=401")
}

func TestOneLogLinePerRegistrationChange(t *testing.T) {
	p := newTestProxy(t, Config{})
	logs := captureLogs(p)
	h := newHarness(t, p)
	siptest.AssertReplied(t, registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.1:5060", 600), 200)
	siptest.AssertReplied(t, registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.1:5060", 300), 200)
	siptest.AssertReplied(t, registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.1:5060", 0), 200)
	siptest.AssertReplied(t, registerAs(t, h, "alice", "alicepw", "sip:alice@10.0.0.9:5060", 0), 200) // nothing to remove

	lines := logs.lines("registration")
	require.Len(t, lines, 3, "%v", lines)
	for i, want := range [][]string{
		{"event=added", "user=alice", "contact=sip:alice@10.0.0.1:5060", "expires=600", "source="},
		{"event=refreshed", "user=alice", "contact=sip:alice@10.0.0.1:5060", "expires=300"},
		{"event=removed", "user=alice", "contact=sip:alice@10.0.0.1:5060", "expires=0"},
	} {
		for _, w := range want {
			assert.Contains(t, lines[i], w)
		}
	}
}

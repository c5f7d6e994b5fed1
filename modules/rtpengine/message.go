package rtpengine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/async"
)

// Errors of the client. A command that rtpengine refused is an *Error.
var (
	// ErrNoInstances: the Config lists no rtpengine instance.
	ErrNoInstances = errors.New("rtpengine: no instance configured")
	// ErrTimeout is wrapped, together with async.ErrTimeout, by the error
	// of a command no instance answered within Config.Timeout.
	ErrTimeout = errors.New("rtpengine: no answer")
	// ErrBadReply: an instance answered with something that is not an ng
	// reply (bad bencode, not a dictionary, no result).
	ErrBadReply = errors.New("rtpengine: malformed reply")
	// ErrNoSDP: a route helper found no SDP body in the message.
	ErrNoSDP = errors.New("rtpengine: message has no SDP body")
	// ErrClosed: the client was closed, or its loop exited.
	ErrClosed = errors.New("rtpengine: client closed")
	// ErrUnknownCall is wrapped by the *Error rtpengine returns for a
	// command on a call it does not know ("Unknown call-id", "Unknown
	// call-ID").
	ErrUnknownCall = errors.New("rtpengine: unknown call")
)

// Error is rtpengine's refusal of a command: a reply whose result is
// "error". Reason is its error-reason.
type Error struct {
	// Command is the ng command refused ("offer", "answer"…).
	Command string
	// Instance is the address of the instance that refused it.
	Instance string
	// Reason is rtpengine's error-reason.
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("rtpengine: %s refused by %s: %s", e.Command, e.Instance, e.Reason)
}

// Is makes errors.Is(err, ErrUnknownCall) true for rtpengine's "Unknown
// call-id" refusals.
func (e *Error) Is(target error) bool {
	return target == ErrUnknownCall && strings.Contains(strings.ToLower(e.Reason), "unknown call")
}

func timeoutError(cmd string, d time.Duration, tried int) error {
	return fmt.Errorf("%w: %s: %d instance(s) tried in %v: %w", ErrTimeout, cmd, tried, d, async.ErrTimeout)
}

// Response is rtpengine's answer to a command.
type Response struct {
	// Result is the reply's result: "ok", or "pong" for a ping.
	Result string
	// SDP is the rewritten SDP of an offer or answer (nil otherwise).
	SDP []byte
	// Warning is the reply's warning, if any (the command succeeded).
	Warning string
	// Instance is the address of the instance that answered.
	Instance string
	// Latency runs from the first transmission to the instance that
	// answered, to its answer.
	Latency time.Duration
	// Dict is the whole reply dictionary, for keys this package does not
	// type (bencode strings are Go strings, integers int64, lists []any,
	// dictionaries map[string]any).
	Dict map[string]any
}

// parseReply splits "cookie SP bencoded-dict" and decodes the dictionary.
func parseReply(b []byte) (cookie string, dict map[string]any, err error) {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return "", nil, fmt.Errorf("%w: no cookie", ErrBadReply)
	}
	v, err := Decode(b[sp+1:])
	if err != nil {
		return string(b[:sp]), nil, fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	dict, ok := v.(map[string]any)
	if !ok {
		return string(b[:sp]), nil, fmt.Errorf("%w: not a dictionary", ErrBadReply)
	}
	return string(b[:sp]), dict, nil
}

// response types a reply dictionary: an "error" result becomes *Error.
func response(cmd, inst string, dict map[string]any) (*Response, error) {
	r := &Response{Instance: inst, Dict: dict}
	r.Result, _ = dict["result"].(string)
	switch r.Result {
	case "":
		return nil, fmt.Errorf("%w: %s reply without result", ErrBadReply, cmd)
	case "error":
		reason, _ := dict["error-reason"].(string)
		return nil, &Error{Command: cmd, Instance: inst, Reason: reason}
	}
	if s, ok := dict["sdp"].(string); ok {
		r.SDP = []byte(s)
	}
	r.Warning, _ = dict["warning"].(string)
	return r, nil
}

// Call names the call and the dialog a command is about.
type Call struct {
	// CallID is the SIP Call-ID (required but for ping).
	CallID string
	// FromTag is the From tag of the message carrying the SDP: the
	// caller's tag for an offer in an INVITE, and also the caller's tag
	// for the answer in its response (rtpengine keys the call by it).
	FromTag string
	// ToTag is the To tag (answer, and a delete of one branch).
	ToTag string
	// ViaBranch optionally tells forked offers/answers apart.
	ViaBranch string
}

func (c Call) addTo(d map[string]any) {
	if c.CallID != "" {
		d["call-id"] = c.CallID
	}
	if c.FromTag != "" {
		d["from-tag"] = c.FromTag
	}
	if c.ToTag != "" {
		d["to-tag"] = c.ToTag
	}
	if c.ViaBranch != "" {
		d["via-branch"] = c.ViaBranch
	}
}

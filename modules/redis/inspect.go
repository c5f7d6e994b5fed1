package redis

import (
	"fmt"
	"strconv"
)

// This file is the seam for fakes (package redistest): what an op would
// send, and the typed result it would give for a reply, without Redis.

// Command is what an op of this package sends.
type Command struct {
	// Args are the command's words as sent: for a script call, EVALSHA,
	// the script's SHA1, the number of keys, the keys and the arguments.
	Args []string
	// Script is the script a call runs, nil for a plain command.
	Script *Script
	// Keys are a script call's keys (nil for a plain command).
	Keys []string
	// ScriptArgs are a script call's arguments (nil for a plain command).
	ScriptArgs []string
}

// Inspect returns what op (an op made by a Client or a Script) sends, and
// false when op is not one of this package's ops.
func Inspect(op any) (Command, bool) {
	i, ok := op.(inspectable)
	if !ok {
		return Command{}, false
	}
	return i.command(), true
}

// Outcome returns what op (an op made by a Client or a Script) completes
// with when Redis answers r: the typed value of the op's result type, or
// its error (ErrNil for a nil reply to String, Int, ...; ErrType for a
// reply of the wrong type). It is how redistest answers with the real
// result types. ok is false when op is not one of this package's ops.
func Outcome(op any, r Reply) (v any, err error, ok bool) {
	i, isOp := op.(inspectable)
	if !isOp {
		return nil, nil, false
	}
	v, err = i.outcome(r)
	return v, err, true
}

type inspectable interface {
	command() Command
	outcome(r Reply) (any, error)
}

func (o *cmdOp[T]) command() Command {
	if o.script == nil {
		return Command{Args: append([]string(nil), o.args...)}
	}
	n, _ := strconv.Atoi(o.args[0])
	cmd := Command{Script: o.script, Args: append([]string{"EVALSHA", o.script.sha}, o.args...)}
	cmd.Keys = append([]string(nil), o.args[1:1+n]...)
	cmd.ScriptArgs = append([]string(nil), o.args[1+n:]...)
	return cmd
}

func (o *cmdOp[T]) outcome(r Reply) (any, error) {
	if r.Kind == kindError {
		return *new(T), &ReplyError{Msg: r.Str}
	}
	return o.codec.reply(r)
}

// kindError marks a Reply that stands for an error reply (ErrorReply).
const kindError Kind = 255

// ErrorReply returns a Reply that stands for an error reply of Redis with
// message msg ("WRONGTYPE ...", "LIMIT reached"): given to Outcome, the op
// fails with a *ReplyError. Fakes use it.
func ErrorReply(msg string) Reply { return Reply{Kind: kindError, Str: msg} }

// codec converts a reply, from the wire (rueidis) or from a Reply, into an
// op's result type.
type codec[T any] struct {
	msg   func(m *rueidisMessage) (T, error)
	reply func(Reply) (T, error)
}

var (
	replyCodec     = codec[Reply]{toReply, func(r Reply) (Reply, error) { return r, nil }}
	stringCodec    = codec[string]{toString, replyString}
	intCodec       = codec[int64]{toInt, replyInt}
	floatCodec     = codec[float64]{toFloat, replyFloat}
	boolCodec      = codec[bool]{toBool, replyBool}
	stringsCodec   = codec[[]string]{toStrings, replyStrings}
	stringMapCodec = codec[map[string]string]{toStringMap, replyStringMap}
)

func typeError(want string, r Reply) error {
	return fmt.Errorf("%w: %s reply where %s expected", ErrType, r.Kind, want)
}

func replyString(r Reply) (string, error) {
	switch r.Kind {
	case KindNil:
		return "", ErrNil
	case KindString:
		return r.Str, nil
	case KindInt:
		return strconv.FormatInt(r.Int, 10), nil
	case KindFloat:
		return strconv.FormatFloat(r.Float, 'g', -1, 64), nil
	}
	return "", typeError("string", r)
}

func replyInt(r Reply) (int64, error) {
	switch r.Kind {
	case KindNil:
		return 0, ErrNil
	case KindInt:
		return r.Int, nil
	case KindString:
		v, err := strconv.ParseInt(r.Str, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", ErrType, r.Str)
		}
		return v, nil
	}
	return 0, typeError("int", r)
}

func replyFloat(r Reply) (float64, error) {
	switch r.Kind {
	case KindNil:
		return 0, ErrNil
	case KindInt:
		return float64(r.Int), nil
	case KindFloat:
		return r.Float, nil
	case KindString:
		v, err := strconv.ParseFloat(r.Str, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not a number", ErrType, r.Str)
		}
		return v, nil
	}
	return 0, typeError("float", r)
}

func replyBool(r Reply) (bool, error) {
	switch r.Kind {
	case KindNil:
		return false, nil
	case KindBool:
		return r.Bool, nil
	case KindInt:
		return r.Int != 0, nil
	case KindString:
		return r.Str == "OK", nil
	}
	return false, typeError("bool", r)
}

func replyStrings(r Reply) ([]string, error) {
	switch r.Kind {
	case KindNil:
		return nil, ErrNil
	case KindArray:
	default:
		return nil, typeError("array", r)
	}
	return elemStrings(r)
}

func elemStrings(r Reply) ([]string, error) {
	out := make([]string, len(r.Elems))
	for i, e := range r.Elems {
		if e.Kind == KindNil {
			continue
		}
		s, err := replyString(e)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func replyStringMap(r Reply) (map[string]string, error) {
	switch r.Kind {
	case KindNil:
		return nil, ErrNil
	case KindArray, KindMap:
	default:
		return nil, typeError("map", r)
	}
	s, err := elemStrings(r)
	if err != nil {
		return nil, err
	}
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("%w: odd number of elements (%d) for a map", ErrType, len(s))
	}
	m := make(map[string]string, len(s)/2)
	for i := 0; i < len(s); i += 2 {
		m[s[i]] = s[i+1]
	}
	return m, nil
}

package siptest

import (
	"fmt"
	"strings"
	"time"
)

// Fake answers awaits for the test: give fakes to NewHarness with
// WithFakes. Each module that makes ops has its typed fake next to it,
// matching its own op type: modules/db/dbtest (by SQL and arguments),
// modules/rest/resttest (by method and URL), modules/exec/exectest (by
// command). Answers fakes a route's own ops by name.
type Fake interface {
	// Answer returns the answer for w, and false when w is not for this
	// fake (the next fake is asked; with none, the await stays held).
	Answer(w *Await) (Answer, bool)
}

// Answer is how a fake completes an await.
type Answer struct {
	// Value is the result: of the type the resume takes (w.Type), or nil
	// for its zero value.
	Value any
	// Err is the error the resume gets.
	Err error
	// Delay delays the answer on the harness clock; 0 answers as soon as
	// the loop runs (a completion posted to the loop, as a real op's).
	Delay time.Duration
	// Never leaves the await waiting: it times out as the clock advances.
	Never bool
	// By names who answered, in the exchange a failure prints (default:
	// the fake, formatted with %v).
	By string
}

// Answers is a Fake for a route's own ops (async.Blocking, async.OpFunc):
// it answers an await by the name of its op — the await's async.Name, or
// the name given to async.Blocking ("lcr" for async.Blocking(fn,
// async.Name("lcr"))):
//
//	h := siptest.NewHarness(t, route, siptest.WithFakes(siptest.Answers{
//		"lcr": {Value: "sip:+15551234@10.0.0.2"},
//	}))
type Answers map[string]Answer

// Answer implements Fake.
func (a Answers) Answer(w *Await) (Answer, bool) {
	name, ok := w.Name, w.Name != ""
	if _, known := a[name]; !ok || !known {
		_, name, ok = strings.Cut(w.Desc, ": ")
	}
	ans, known := a[name]
	if !ok || !known {
		return Answer{}, false
	}
	if ans.By == "" {
		ans.By = fmt.Sprintf("Answers[%q]", name)
	}
	return ans, true
}

// Package resttest fakes modules/rest in route tests run by siptest: a Fake
// answers the ops of any rest.Client by method and URL, with the real
// result types (rest.Result, or the decoded value of rest.JSON), and no
// request is sent.
//
//	api := resttest.New()
//	api.On("GET", "http://routing.invalid/route?*").JSON(200, Route{Target: "sip:+1555@10.0.0.7"})
//	api.On("POST", "http://billing.invalid/cdr").Status(201, "")
//	h := siptest.NewHarness(t, route, siptest.WithFakes(api))
//
// Rules are tried in the order they were added; the first that matches
// answers. An op no rule matches is held by the harness, as any await
// without a fake: the test completes it, or it times out.
package resttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/asyncsip/asyncsip/internal/faketable"
	"github.com/asyncsip/asyncsip/modules/rest"
	"github.com/asyncsip/asyncsip/siptest"
)

// Fake answers the ops of rest.Clients from a table of rules. It is a
// siptest.Fake.
type Fake struct {
	t *faketable.Table[*http.Request]
}

// New returns a Fake without rules.
func New() *Fake { return &Fake{faketable.New[*http.Request]("resttest.Fake")} }

// On adds a rule for requests of method ("" for any) to url: the whole URL
// as the client sends it (resolved against its BaseURL, query included),
// or, when url ends in "*", every URL that starts with what precedes it.
func (f *Fake) On(method, url string) *Rule {
	return f.OnRequest(strings.TrimSpace(method+" "+url), func(r *http.Request) bool {
		if method != "" && !strings.EqualFold(r.Method, method) {
			return false
		}
		if p, ok := strings.CutSuffix(url, "*"); ok {
			return strings.HasPrefix(r.URL.String(), p)
		}
		return r.URL.String() == url
	})
}

// OnRegexp adds a rule for requests of method ("" for any) whose URL re
// matches.
func (f *Fake) OnRegexp(method string, re *regexp.Regexp) *Rule {
	return f.OnRequest(strings.TrimSpace(method+" "+re.String()), func(r *http.Request) bool {
		return (method == "" || strings.EqualFold(r.Method, method)) && re.MatchString(r.URL.String())
	})
}

// OnRequest adds a rule for the requests match accepts (a header, the
// body…); label names it in the harness's exchanges.
func (f *Fake) OnRequest(label string, match func(*http.Request) bool) *Rule {
	return &Rule{f.t.Add(label, match)}
}

// Answer implements siptest.Fake: it answers the ops of a rest.Client that
// a rule matches.
func (f *Fake) Answer(w *siptest.Await) (siptest.Answer, bool) {
	req, ok := rest.Inspect(w.Op())
	if !ok {
		return siptest.Answer{}, false
	}
	ans, ok := f.t.Answer(req, req.Method+" "+req.URL.String())
	if ok && ans.Err == nil {
		if res, isResult := ans.Value.(rest.Result); isResult {
			ans.Value, ans.Err = rest.Outcome(w.Op(), res)
		}
	}
	return ans, ok
}

// Seen returns the requests the fake answered, as "METHOD URL", in order.
func (f *Fake) Seen() []string { return f.t.Seen() }

// String names the fake in the harness's exchanges.
func (f *Fake) String() string { return f.t.String() }

// Rule is one rule of a Fake: what it matches and how it answers. Its
// methods return the rule, so that it reads as a sentence. A rule that
// answers with a response gives a rest.JSON op the decoded body, or the
// error JSON gives (a *rest.StatusError for a status other than 2xx).
type Rule struct {
	r *faketable.Rule[*http.Request]
}

// Respond answers with res.
func (r *Rule) Respond(res rest.Result) *Rule {
	r.r.Answer(func(*http.Request) (any, error) {
		res := res
		res.Header = res.Header.Clone()
		if res.Header == nil {
			res.Header = http.Header{}
		}
		if res.ContentType != "" && res.Header.Get("Content-Type") == "" {
			res.Header.Set("Content-Type", res.ContentType)
		}
		return res, nil
	})
	return r
}

// Status answers with status code and body, as text/plain.
func (r *Rule) Status(code int, body string) *Rule {
	return r.Respond(rest.Result{Status: code, ContentType: "text/plain; charset=utf-8", Body: []byte(body)})
}

// JSON answers with status code and v encoded as JSON.
func (r *Rule) JSON(code int, v any) *Rule {
	b, err := json.Marshal(v)
	if err != nil {
		return r.Fail(fmt.Errorf("resttest: encoding the answer: %w", err))
	}
	return r.Respond(rest.Result{Status: code, ContentType: "application/json", Body: b})
}

// Fail answers with err (rest.ErrConnRefused, rest.ErrTimeout,
// async.ErrOverloaded…).
func (r *Rule) Fail(err error) *Rule { r.r.Fail(err); return r }

// After delays the answer by d on the harness clock: an await whose
// timeout is shorter times out first.
func (r *Rule) After(d time.Duration) *Rule { r.r.After(d); return r }

// Never never answers: the await times out as the clock advances.
func (r *Rule) Never() *Rule { r.r.Never(); return r }

// Hits returns how many requests the rule answered.
func (r *Rule) Hits() int { return r.r.Hits() }

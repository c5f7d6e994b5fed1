package async

import "time"

// DefaultTimeout bounds every Await and Launch that is not given a Timeout.
// No suspension is ever unbounded.
const DefaultTimeout = 10 * time.Second

// Option configures one Await, Launch or Blocking call. Options are plain
// values (not closures) so that passing them allocates nothing.
type Option struct {
	kind     optionKind
	timeout  time.Duration
	name     string
	pool     *Pool
	observer Observer
}

type optionKind uint8

const (
	optNone optionKind = iota
	optTimeout
	optName
	optPool
	optObserver
)

// Timeout bounds an Await or Launch: when the op has not completed after d,
// it is cancelled and the resume (or report) runs with an error wrapping
// ErrTimeout. A d <= 0 means DefaultTimeout. Blocking ignores it: the await
// that runs the op bounds it.
func Timeout(d time.Duration) Option { return Option{kind: optTimeout, timeout: d} }

// Name names the op, for errors ("db.query after 2s: async: timeout") and
// for the Observer. Use a short, fixed string: it is a metric label.
func Name(name string) Option { return Option{kind: optName, name: name} }

// OnPool makes Blocking run its function on p instead of DefaultPool. A nil
// p means DefaultPool. Await and Launch ignore it.
func OnPool(p *Pool) Option { return Option{kind: optPool, pool: p} }

// Observe sends the events of an Await or Launch to o, overriding the
// observer of the Suspender (see ObservedSuspender). A nil o turns
// observation off.
func Observe(o Observer) Option { return Option{kind: optObserver, observer: o} }

// options is the parsed form of []Option.
type options struct {
	timeout     time.Duration
	name        string
	pool        *Pool
	observer    Observer
	hasObserver bool
}

func parseOptions(opts []Option) options {
	o := options{timeout: DefaultTimeout}
	for i := range opts {
		switch opt := &opts[i]; opt.kind {
		case optTimeout:
			if opt.timeout > 0 {
				o.timeout = opt.timeout
			} else {
				o.timeout = DefaultTimeout
			}
		case optName:
			o.name = opt.name
		case optPool:
			o.pool = opt.pool
		case optObserver:
			o.observer, o.hasObserver = opt.observer, true
		}
	}
	return o
}

// Observer receives the life of every observed Await and Launch, for
// metrics (ops started, latency by name, errors, overloads — an overload is
// a completion whose error wraps ErrOverloaded). Its methods run on the
// loop of the op and must be cheap and non-blocking; async imports no
// metrics library, the observability layer implements this interface.
type Observer interface {
	// OpStarted is called when an op is started.
	OpStarted(name string)
	// OpFinished is called once per started op, when its outcome is
	// known: latency is measured with the loop's clock, err is what the
	// resume or report receives (nil on success), or an error wrapping
	// ErrCancelled when the await was aborted and no resume runs.
	OpFinished(name string, latency time.Duration, err error)
}

// ObservedSuspender is a Suspender that also names the Observer of the
// awaits made on it, so that a host (tm's server) can observe every Await
// without each route passing an Observe option. It is optional.
type ObservedSuspender interface {
	Suspender
	// Observer returns the observer for awaits on this context, or nil.
	Observer() Observer
}

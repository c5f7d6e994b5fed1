package async

import "github.com/asyncsip/asyncsip/reactor"

// Suspender is what Await needs from a processing context. tm.Context
// implements it; siptest and the unit tests of this package use their own.
// async never imports tm: this interface is the whole contract.
type Suspender interface {
	// Loop returns the owner loop of the context. Await is called on it and
	// resumes run on it.
	Loop() *reactor.Loop
	// Suspend marks the context suspended (for a transaction: it absorbs
	// retransmissions, an INVITE has sent 100 Trying) and returns the handle
	// that resumes it. It fails when the context cannot be suspended now,
	// for example because a final response was already sent.
	Suspend() (Resumer, error)
}

// Resumer resumes one suspension. Its methods are called on the owner loop.
type Resumer interface {
	// Resume runs fn as the continuation of the suspended route: the context
	// is live again while fn runs, and the host applies its end-of-route
	// rules (an abandoned transaction gets a final response) after fn
	// returns. Resume reports false, without running fn, when the
	// suspension is no longer live (the transaction ended meanwhile): a
	// generation check makes a late completion harmless. fn runs before
	// Resume returns, and after a Resume that reported true the abort hooks
	// never run.
	Resume(fn func()) bool
	// OnAbort registers fn to run, on the owner loop, if the suspension is
	// aborted because its context ended (transaction bound, shutdown). After
	// an abort, Resume reports false.
	OnAbort(fn func())
}

package main

import (
	"fmt"
	"math"
)

// Step is the outcome of one SIPp run at a fixed call rate.
type Step struct {
	Rate       float64 `json:"rate"`          // calls/s asked of SIPp
	Calls      int     `json:"calls"`         // calls asked
	Successful int     `json:"successful"`    // calls that completed
	Failed     int     `json:"failed"`        // calls SIPp counted as failed
	Retrans    int     `json:"retrans"`       // retransmissions SIPp sent
	Stray      int     `json:"stray"`         // out-of-order messages SIPp ignored (a 180 after the 200)
	Wall       float64 `json:"wall_s"`        // seconds SIPp ran
	Late       bool    `json:"late"`          // SIPp could not send at the asked rate in time
	CPUSeconds float64 `json:"cpu_s"`         // proxy CPU (user+system) during the run
	SIPpCPU    float64 `json:"sipp_cpu"`      // SIPp caller+callee CPU seconds per wall second (1 = its whole CPU)
	P50ms      float64 `json:"p50_ms"`        // INVITE->200 latency, median, ms
	P99ms      float64 `json:"p99_ms"`        // INVITE->200 latency, 99th percentile, ms
	Err        string  `json:"err,omitempty"` // the run itself failed (SIPp crashed, ...)
}

// OK reports whether the step passed: every call completed, none failed,
// and SIPp kept the asked rate.
func (s Step) OK() bool {
	return s.Err == "" && s.Failed == 0 && s.Successful == s.Calls && !s.Late
}

func (s Step) String() string {
	verdict := "ok"
	if !s.OK() {
		verdict = "FAIL"
	}
	msg := fmt.Sprintf("%7.0f cps: %s (%d/%d ok, %d failed, %d retrans, %d stray, %.1fs, SIPp CPU %.0f%%",
		s.Rate, verdict, s.Successful, s.Calls, s.Failed, s.Retrans, s.Stray, s.Wall, 100*s.SIPpCPU)
	if s.Late {
		msg += ", late"
	}
	if s.Err != "" {
		msg += ", " + s.Err
	}
	return msg + ")"
}

// Search bounds the maximum-rate search.
type Search struct {
	Start     float64 // first rate tried
	Floor     float64 // lowest rate tried before giving up
	Ceiling   float64 // highest rate tried
	Precision float64 // stop when (fail-pass)/pass is below it
	MaxSteps  int     // runs at most (confirmation included)
}

// Run finds the highest rate at which run passes: it doubles from Start
// until a step fails (or halves until one passes), bisects between the
// last pass and the first failure, and confirms the result once by running
// it again; a failed confirmation moves the search below it. It returns the
// rate, whether it was confirmed within MaxSteps (if not, the rate is the
// highest pass below every failure, 0 if none), and every step taken.
func (sc Search) Run(run func(rate float64) Step) (best float64, confirmed bool, steps []Step) {
	try := func(r float64) bool {
		s := run(r)
		steps = append(steps, s)
		return s.OK()
	}
	budget := func() bool { return len(steps) < sc.MaxSteps }
	pass, fail := 0.0, math.Inf(1)

	// Bracket: double up from Start, or halve down.
	for r := roundRate(sc.Start); budget(); {
		if try(r) {
			pass = r
			if r >= sc.Ceiling {
				break
			}
			r = roundRate(math.Min(r*2, sc.Ceiling))
			continue
		}
		fail = r
		if pass > 0 {
			break
		}
		if r = roundRate(r / 2); r < sc.Floor || r >= fail {
			return unconfirmed(steps), false, steps
		}
	}
	for pass > 0 && budget() {
		// Bisect.
		for budget() && !math.IsInf(fail, 1) && (fail-pass)/pass > sc.Precision {
			mid := roundRate((pass + fail) / 2)
			if mid <= pass || mid >= fail {
				break
			}
			if try(mid) {
				pass = mid
			} else {
				fail = mid
			}
		}
		if !budget() {
			break
		}
		// Confirm once.
		if try(pass) {
			return pass, true, steps
		}
		// A flaky pass: step down until something passes again.
		fail, pass = pass, 0
		for r := roundRate(fail * (1 - 2*sc.Precision)); budget() && r >= sc.Floor && r < fail; r = roundRate(r * (1 - 2*sc.Precision)) {
			if try(r) {
				pass = r
				break
			}
			fail = r
		}
	}
	return unconfirmed(steps), false, steps
}

// unconfirmed is the fallback when the budget ran out before a
// confirmation: the highest passing rate below every failed one.
func unconfirmed(steps []Step) float64 {
	minFail := math.Inf(1)
	for _, s := range steps {
		if !s.OK() {
			minFail = math.Min(minFail, s.Rate)
		}
	}
	best := 0.0
	for _, s := range steps {
		if s.OK() && s.Rate < minFail {
			best = math.Max(best, s.Rate)
		}
	}
	return best
}

// roundRate rounds to 2 significant digits-ish steps that read well: to 5
// below 100, to 10 below 1000, to 50 above.
func roundRate(r float64) float64 {
	switch {
	case r < 100:
		return math.Max(5, math.Round(r/5)*5)
	case r < 1000:
		return math.Round(r/10) * 10
	default:
		return math.Round(r/50) * 50
	}
}

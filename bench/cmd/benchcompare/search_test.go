package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// capacity returns a fake SIPp run that passes up to limit calls/s, except
// the flaky[r]-th run at rate r (1-based), which fails.
func capacity(limit float64, flaky map[float64]int) func(float64) Step {
	calls := map[float64]int{}
	return func(r float64) Step {
		s := Step{Rate: r, Calls: 100, Successful: 100}
		calls[r]++
		if flaky[r] == calls[r] {
			s.Failed, s.Successful = 1, 99
			return s
		}
		if r > limit {
			s.Failed, s.Successful = 10, 90
		}
		return s
	}
}

func TestSearch(t *testing.T) {
	base := Search{Start: 1000, Floor: 20, Ceiling: 20000, Precision: 0.08, MaxSteps: 14}
	for _, tc := range []struct {
		name          string
		limit         float64
		flaky         map[float64]int
		search        Search
		lo, hi        float64
		wantConfirmed bool
	}{
		{"above start", 5300, nil, base, 4900, 5300, true},
		{"below start", 210, nil, base, 195, 210, true},
		{"at ceiling", 1e9, nil, base, 20000, 20000, true},
		{"nothing passes", 1, nil, base, 0, 0, false},
		{"flaky confirmation steps down", 5300, map[float64]int{5000: 1}, base, 3500, 5300, true},
		{"budget exhausted", 5300, nil, Search{Start: 1000, Floor: 20, Ceiling: 20000, Precision: 0.01, MaxSteps: 5}, 1000, 5300, false},
		{"budget exhausted after a flaky confirmation", 6500, map[float64]int{6000: 2, 3000: 1},
			Search{Start: 1000, Floor: 20, Ceiling: 20000, Precision: 0.25, MaxSteps: 8}, 2000, 2000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flaky := tc.flaky
			if flaky == nil {
				flaky = map[float64]int{}
			}
			best, confirmed, steps := tc.search.Run(capacity(tc.limit, flaky))
			require.GreaterOrEqual(t, best, tc.lo)
			require.LessOrEqual(t, best, tc.hi)
			require.Equal(t, tc.wantConfirmed, confirmed)
			require.LessOrEqual(t, len(steps), tc.search.MaxSteps)
			require.NotEmpty(t, steps)
			if confirmed {
				// The last two passing runs at best: the search and its confirmation.
				n := 0
				for _, s := range steps {
					if s.Rate == best && s.OK() {
						n++
					}
				}
				require.GreaterOrEqual(t, n, 2)
			}
		})
	}
}

func TestStepOK(t *testing.T) {
	ok := Step{Rate: 10, Calls: 10, Successful: 10}
	require.True(t, ok.OK())
	for name, s := range map[string]Step{
		"failed":     {Rate: 10, Calls: 10, Successful: 9, Failed: 1},
		"incomplete": {Rate: 10, Calls: 10, Successful: 9},
		"late":       {Rate: 10, Calls: 10, Successful: 10, Late: true},
		"error":      {Rate: 10, Calls: 10, Successful: 10, Err: "sipp crashed"},
	} {
		require.False(t, s.OK(), name)
		require.Contains(t, s.String(), "FAIL", name)
	}
}

func TestRoundRate(t *testing.T) {
	for in, want := range map[float64]float64{1: 5, 47: 45, 187.5: 190, 1520: 1500, 7777: 7800} {
		require.Equal(t, want, roundRate(in), in)
	}
}

package dialog_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/dialog"
)

// Many goroutines join and leave one limited profile value: the count is
// never above the limit, joins beyond it are refused, and it ends at zero.
func TestMemoryStoreJoinLimitConcurrent(t *testing.T) {
	const workers, rounds, limit = 8, 2000, 5
	s := dialog.NewMemoryStore()
	var refused, over atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				n, ok := s.Join("trunk", "gw1", limit)
				if !ok {
					refused.Add(1)
					continue
				}
				if n > limit {
					over.Add(1)
				}
				if c := s.Count("trunk", "gw1"); c > limit {
					over.Add(1)
				}
				s.Leave("trunk", "gw1")
			}
		})
	}
	wg.Wait()
	assert.Zero(t, over.Load(), "counts above the limit")
	assert.Zero(t, s.Count("trunk", "gw1"))
	assert.Empty(t, s.Values("trunk"))
	t.Logf("%d joins refused at the limit", refused.Load())
}

// Delete is true for exactly one of many concurrent callers: the one that
// releases the record's profile values.
func TestMemoryStoreDeleteOnce(t *testing.T) {
	s := dialog.NewMemoryStore()
	const n = 500
	for i := range n {
		s.Put(dialog.Record{ID: dialog.ID{CallID: fmt.Sprint(i), CallerTag: "a"}})
	}
	require.Equal(t, n, s.Len())
	var wins atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range n {
				if s.Delete(dialog.ID{CallID: fmt.Sprint(i), CallerTag: "a"}) {
					wins.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(n), wins.Load())
	assert.Zero(t, s.Len())
}

func TestMemoryStoreLeaveNeverNegative(t *testing.T) {
	s := dialog.NewMemoryStore()
	assert.Zero(t, s.Leave("p", "v"))
	n, ok := s.Join("p", "v", 0)
	assert.True(t, ok)
	assert.Equal(t, 1, n)
	assert.Zero(t, s.Leave("p", "v"))
	assert.Zero(t, s.Leave("p", "v"))
	assert.Zero(t, s.Count("p", "v"))
}

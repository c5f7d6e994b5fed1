//go:build !race

package tm

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/tm/internal/sipindex"
)

// An in-dialog ACK along our signed Record-Route is loose-routed from the
// index without allocating. (Not under the race detector: its sync.Pool
// drops pooled HMAC states at random.)
func TestIxLooseRouteAllocatesNothing(t *testing.T) {
	s, raw := inDialogACK(t)
	var ix sipindex.Index
	ixParse(t, []byte(raw), &ix)
	var lr ixLoose
	allocs := testing.AllocsPerRun(100, func() {
		if !s.ixLooseRoute(&ix, &lr) || !lr.Signed || !lr.Removed {
			t.Fatal("not read")
		}
	})
	require.Zero(t, allocs)
}

package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/modules/db"
	"github.com/asyncsip/asyncsip/siptest"
)

// The routes run against a real SQLite file; the harness lets the lookup
// run for real and drives everything else.
func TestRoutes(t *testing.T) {
	h0, err := db.Open(db.DriverSQLite, filepath.Join(t.TempDir(), "lcr.db"))
	require.NoError(t, err)
	t.Cleanup(func() { h0.Close() })
	ctx := context.Background()
	_, err = h0.ExecContext(ctx, Schema)
	require.NoError(t, err)
	for _, r := range [][]any{{"+1", "10.0.0.1:5060", 10}, {"+1", "10.0.0.2:5060", 20}, {"+1555", "10.0.0.3:5060", 5}} {
		_, err := h0.ExecContext(ctx, `INSERT INTO routes (prefix, gateway, cost) VALUES (?, ?, ?)`, r...)
		require.NoError(t, err)
	}
	h := siptest.NewHarness(t, Routes(h0, false), siptest.WithRealOps("lcr.lookup"))

	cases := []struct {
		name    string
		number  string
		answers []int
		want    []string
		final   int
	}{
		{"longest prefix", "+15550001", []int{200}, []string{"sip:+15550001@10.0.0.3:5060"}, 200},
		{"cheapest, then next on 503", "+12020001", []int{503, 200}, []string{"sip:+12020001@10.0.0.1:5060", "sip:+12020001@10.0.0.2:5060"}, 200},
		{"busy is final", "+12020002", []int{486}, []string{"sip:+12020002@10.0.0.1:5060"}, 486},
		{"no route", "+4420001", nil, nil, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Send(siptest.NewRequest("INVITE", "sip:"+tc.number+"@example.com"))
			for i, code := range tc.answers {
				require.Greater(t, len(res.Relayed()), i, res.String())
				res.Branch(i).Respond(code)
			}
			var got []string
			for _, r := range res.Relayed() {
				got = append(got, r.Target())
			}
			assert.Equal(t, tc.want, got)
			siptest.AssertReplied(t, res, tc.final)
		})
	}
	siptest.AssertReplied(t, h.Send(siptest.NewRequest("MESSAGE", "sip:+1555@example.com")), 405)
}

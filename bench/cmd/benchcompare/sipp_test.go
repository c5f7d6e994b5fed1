package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadStatFile(t *testing.T) {
	got, err := readStatFile(filepath.Join("testdata", "stat.csv"))
	require.NoError(t, err)
	require.Equal(t, 2000, got["SuccessfulCall(C)"])
	require.Equal(t, 3, got["FailedCall(C)"])
	require.Equal(t, 17, got["Retransmissions(C)"])

	_, err = readStatFile(filepath.Join(t.TempDir(), "missing.csv"))
	require.Error(t, err)
	empty := filepath.Join(t.TempDir(), "empty.csv")
	require.NoError(t, os.WriteFile(empty, []byte("A;B\n"), 0o644))
	_, err = readStatFile(empty)
	require.Error(t, err)
}

func TestReadRTT(t *testing.T) {
	got, err := readRTT(filepath.Join("testdata", "rtt.log"))
	require.NoError(t, err)
	// Three good lines; the malformed and negative ones are skipped.
	require.InDeltaSlice(t, []float64{0.5, 20.25, 1001}, got, 1e-9)
	require.InDelta(t, 20.25, percentile(got, 0.5), 1e-9)
	require.InDelta(t, 1001, percentile(got, 0.99), 1e-9)
	require.InDelta(t, 0.5, percentile(got, 0), 1e-9)
	require.True(t, percentile(nil, 0.5) != percentile(nil, 0.5), "NaN for no data")
}

func TestCountStray(t *testing.T) {
	p := filepath.Join(t.TempDir(), "errors.log")
	require.NoError(t, os.WriteFile(p, []byte("x Continuing call on unexpected message for Call-Id '1'\n"+
		"y Continuing call on unexpected message for Call-Id '2'\nAborting call on unexpected message\n"), 0o644))
	require.Equal(t, 2, countStray(p))
	require.Zero(t, countStray(filepath.Join(t.TempDir(), "none")))
}

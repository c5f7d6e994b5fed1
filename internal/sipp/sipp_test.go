package sipp

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip/internal/testenv"
)

// SIPp UAC straight to a SIPp UAS: the runner itself works.
func TestUACtoUAS(t *testing.T) {
	port := testenv.FreeUDPPort(t)
	uas := Start(t, Config{Scenario: "uas", LocalPort: port, Timeout: 30 * time.Second})
	res := Run(t, Config{Scenario: "uac", Remote: "127.0.0.1:" + itoa(port), Service: "bob",
		Calls: 5, Rate: 50, Timeout: 20 * time.Second})
	require.Equal(t, 0, res.ExitCode, res.String())
	require.Equal(t, 5, res.Successful, res.String())
	require.Zero(t, res.Failed, res.String())
	uas.Stop() // bounded: SIGUSR1, then SIGKILL after 3 s
}

func itoa(i int) string { return strconv.Itoa(i) }

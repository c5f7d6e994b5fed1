package testenv

import (
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	assert.True(t, Poll(time.Second, func() bool { return n.Add(1) >= 3 }))
	assert.EqualValues(t, 3, n.Load())
	start := time.Now()
	assert.False(t, Poll(20*time.Millisecond, func() bool { return false }))
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "the bound is honoured")
}

func TestUDPPortBound(t *testing.T) {
	port := FreeUDPPort(t)
	assert.False(t, UDPPortBound(port))
	c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err)
	defer c.Close()
	assert.True(t, UDPPortBound(port))
}

func TestFDsBackTo(t *testing.T) {
	base := CountFDs()
	FDsBackTo(t, base, time.Second) // nothing opened: passes at once
}

func TestProcessHoldsPort(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	held, ok := ProcessHoldsPort(os.Getpid(), "udp", port)
	if !ok {
		t.Skip("no /proc/net/udp on this system")
	}
	assert.True(t, held, "this process holds it")
	held, ok = ProcessHoldsPort(os.Getppid(), "udp", port)
	assert.True(t, ok)
	assert.False(t, held, "the parent does not")
	held, _ = ProcessHoldsPort(os.Getpid(), "tcp", port)
	assert.False(t, held, "UDP only")
	held, _ = ProcessHoldsPort(os.Getpid(), "udp", FreeUDPPort(t))
	assert.False(t, held)
	held, ok = ProcessHoldsPort(1<<22+7, "udp", port) // no such process
	assert.True(t, ok)
	assert.False(t, held, "a process that is gone holds nothing")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	tport := ln.Addr().(*net.TCPAddr).Port
	held, ok = ProcessHoldsPort(os.Getpid(), "tcp", tport)
	assert.True(t, ok && held, "a listening TCP socket")
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	held, _ = ProcessHoldsPort(os.Getpid(), "tcp", conn.LocalAddr().(*net.TCPAddr).Port)
	assert.False(t, held, "a connected socket does not listen")
}

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
	"github.com/asyncsip/asyncsip/transport"
)

// TestUDPToTLSConversion: an INVITE over UDP to a sips:-free target with
// ;transport=tls opens a verified TLS connection (certificate checked
// against the test CA and the target's IP), carries a TLS Via and two
// Record-Routes; the 200 comes back over UDP; a second request reuses the
// connection.
func TestUDPToTLSConversion(t *testing.T) {
	pki := newPKI(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile, RootCAFile: pki.caFile},
	}, tm.Routes{Request: relayOrReply})
	udpAddr, tlsAddr := srv.Addrs()[0], srv.Addrs()[1]

	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverTLS(t))
	require.NoError(t, err)
	defer ln.Close()
	uasPort := ln.Addr().(*net.TCPAddr).Port
	acc := make(chan net.Conn, 1)
	go func() {
		defer close(acc)
		if c, err := ln.Accept(); err == nil {
			acc <- c
		}
	}()

	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(uasPort) + ";transport=tls"
	uac.SendTo(udpAddr, e2etest.Request("INVITE", ruri, "UDP", uac.Port(), "tls-1", ""))
	var nc net.Conn
	select {
	case nc = <-acc:
	case <-time.After(wait):
		t.Fatal("no TLS connection from the proxy")
	}
	require.NotNil(t, nc)
	defer nc.Close()
	uas := &streamPeer{t: t, nc: nc, br: bufio.NewReader(nc)}
	inv := uas.read(wait)
	require.Contains(t, e2etest.Header(inv, "Via"), "SIP/2.0/TLS 127.0.0.1:"+strconv.Itoa(int(tlsAddr.Port())))
	plain, tokens := withoutFlow(t, e2etest.Headers(inv, "Record-Route"))
	require.Equal(t, 1, tokens, "the callee's connection is named by a flow token")
	require.Equal(t, []string{
		"<sip:127.0.0.1:" + strconv.Itoa(int(tlsAddr.Port())) + ";transport=tls;lr>",
		"<sip:127.0.0.1:" + strconv.Itoa(int(udpAddr.Port())) + ";lr>",
	}, plain)
	uas.send(e2etest.Answer(inv, 200, "OK"))
	resp, _ := uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	uac.SendTo(udpAddr, e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "tls-2", "hi"))
	msg := uas.read(wait)
	require.Equal(t, "tls-2", e2etest.Header(msg, "Call-ID"))
	uas.send(e2etest.Answer(msg, 200, "OK"))
	resp, _ = uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
	require.EqualValues(t, 1, srv.StreamStats().Dialed, "one connection, reused")
}

// TestTLSUntrustedPeer: a TLS target whose certificate the proxy cannot
// verify gets no request; the branch fails at once (not at Timer F) and
// the caller gets a final response.
func TestTLSUntrustedPeer(t *testing.T) {
	pki, other := newPKI(t), newPKI(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile, RootCAFile: pki.caFile},
	}, tm.Routes{Request: relayOrReply})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", other.serverTLS(t))
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tls"
	uac.SendTo(srv.Addrs()[0], e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "tls-bad", "x"))
	start := time.Now()
	resp, _ := uac.Read(5 * time.Second)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 408 "), resp)
	require.Less(t, time.Since(start), 64*50*time.Millisecond, "failed before Timer F")
	require.EqualValues(t, 1, srv.StreamStats().DialFailures)
}

// TestTLSClientCertificate: with ClientCAFile the listener requires a
// client certificate signed by that CA.
func TestTLSClientCertificate(t *testing.T) {
	pki := newPKI(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"tls:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile, ClientCAFile: pki.caFile},
	}, tm.Routes{Request: relayOrReply})
	addr := srv.Addrs()[0]

	p, err := pki.dialTLS(t, addr, true)
	require.NoError(t, err)
	p.send(e2etest.Request("OPTIONS", "sip:127.0.0.1", "TLS", p.port(), "cc-1", ""))
	resp := p.read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)

	// Without a certificate the handshake (TLS 1.3: the first read) fails.
	q, err := pki.dialTLS(t, addr, false)
	if err == nil {
		q.send(e2etest.Request("OPTIONS", "sip:127.0.0.1", "TLS", q.port(), "cc-2", ""))
		_, err = q.tryRead(wait)
	}
	require.Error(t, err)
}

// TestTLSListenerNeedsCertificate: a tls: listener without certificate
// files is a clear Start error.
func TestTLSListenerNeedsCertificate(t *testing.T) {
	srv, err := asyncsip.New(asyncsip.Config{Listen: []string{"tls:127.0.0.1:0"}, Workers: 1})
	require.NoError(t, err)
	err = srv.Start()
	require.ErrorContains(t, err, "CertFile")
	require.NoError(t, srv.Shutdown(t.Context()))
	_, err = asyncsip.New(asyncsip.Config{Listen: []string{"sctp:127.0.0.1:0"}})
	require.ErrorContains(t, err, "not supported")
}

// TestShutdownDuringConnect: a TLS peer that accepts the TCP connection
// but never answers the handshake does not hold Shutdown for DialTimeout.
func TestShutdownDuringConnect(t *testing.T) {
	pki := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		defer close(held)
		if c, err := ln.Accept(); err == nil {
			held <- c // accepted, never answered
		}
	}()
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile, DialTimeout: time.Minute},
	}, tm.Routes{Request: relayOrReply})
	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tls"
	uac.SendTo(srv.Addrs()[0], e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "hang-1", "x"))
	var nc net.Conn
	select {
	case nc = <-held:
	case <-time.After(wait):
		t.Fatal("no connect")
	}
	require.NotNil(t, nc)
	defer nc.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx) // the drain deadline passes: the MESSAGE is in progress
	require.Less(t, time.Since(start), 5*time.Second)
}

// TestMutualTLSOutbound: a TLS peer that requires a client certificate
// accepts the proxy's (Stream.CertFile, signed by the peer's trusted CA).
func TestMutualTLSOutbound(t *testing.T) {
	pki := newPKI(t)
	srv := startStream(t, asyncsip.Config{
		Listen: []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"},
		Stream: transport.StreamConfig{CertFile: pki.certFile, KeyFile: pki.keyFile, RootCAFile: pki.caFile},
	}, tm.Routes{Request: relayOrReply})
	cfg := pki.serverTLS(t)
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pki.pool
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		defer close(acc)
		if c, err := ln.Accept(); err == nil {
			acc <- c
		}
	}()
	uac := e2etest.NewUDPPeer(t)
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tls"
	uac.SendTo(srv.Addrs()[0], e2etest.Request("MESSAGE", ruri, "UDP", uac.Port(), "mtls-1", "x"))
	var nc net.Conn
	select {
	case nc = <-acc:
	case <-time.After(wait):
		t.Fatal("no connection")
	}
	require.NotNil(t, nc)
	defer nc.Close()
	p := &streamPeer{t: t, nc: nc, br: bufio.NewReader(nc)}
	msg := p.read(wait) // the handshake, client certificate included, succeeded
	require.Len(t, nc.(*tls.Conn).ConnectionState().PeerCertificates, 1)
	p.send(e2etest.Answer(msg, 200, "OK"))
	resp, _ := uac.Read(wait)
	require.True(t, strings.HasPrefix(resp, "SIP/2.0 200 "), resp)
}

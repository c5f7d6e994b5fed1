package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asyncsip/asyncsip"
	"github.com/asyncsip/asyncsip/internal/e2e/e2etest"
	"github.com/asyncsip/asyncsip/tm"
)

// startStream starts a server with cfg's listeners and short SIP timers
// (T1 50 ms) unless cfg sets them; Shutdown at the end of the test must
// bring goroutines and descriptors back to where they were.
func startStream(t *testing.T, cfg asyncsip.Config, routes tm.Routes) *asyncsip.Server {
	t.Helper()
	e2etest.NoLeaks(t)
	if cfg.Core.Timers.T1 == 0 {
		cfg.Core.Timers = tm.Timers{T1: 50 * time.Millisecond, T2: 200 * time.Millisecond, T4: 250 * time.Millisecond}
	}
	return e2etest.StartServer(t, cfg, routes)
}

// relayOrReply relays every request to its Request-URI (or Route set);
// OPTIONS addressed to the proxy itself is answered 200.
func relayOrReply(c *tm.Context) {
	if c.Method() == "OPTIONS" && c.Recipient().User == "" {
		_ = c.Reply(200, "OK")
		return
	}
	_ = c.Relay()
}

// streamPeer is a raw SIP endpoint on one stream connection (TCP or TLS).
type streamPeer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialStream(t *testing.T, network string, addr netip.AddrPort) *streamPeer {
	t.Helper()
	nc, err := net.DialTimeout(network, addr.String(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &streamPeer{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func (p *streamPeer) port() int { return p.nc.LocalAddr().(*net.TCPAddr).Port }

func (p *streamPeer) send(raw string) {
	p.t.Helper()
	_ = p.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := io.WriteString(p.nc, raw)
	require.NoError(p.t, err)
}

// read returns the next SIP message, framed by Content-Length.
func (p *streamPeer) read(d time.Duration) string {
	p.t.Helper()
	msg, err := p.tryRead(d)
	require.NoError(p.t, err)
	return msg
}

func (p *streamPeer) tryRead(d time.Duration) (string, error) {
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	var head strings.Builder
	for {
		line, err := p.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if head.Len() == 0 && (line == "\r\n" || line == "\n") {
			continue // keep-alive
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	h := head.String()
	n, _ := strconv.Atoi(e2etest.Header(h, "Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(p.br, body); err != nil {
		return "", err
	}
	return h + string(body), nil
}

// closedWithin reports whether the server closed the connection within d
// (a read ends with EOF or a reset rather than a timeout).
func (p *streamPeer) closedWithin(d time.Duration) bool {
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, p.br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// testPKI is a CA and a certificate for 127.0.0.1 signed by it, written as
// PEM files in a temporary directory.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	clientCert                tls.Certificate // signed by the CA, for client auth
	pool                      *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "asyncsip test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leaf := func(serial int64, usage ...x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	srvDER, srvKey := leaf(2, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	require.NoError(t, err)
	cliDER, cliKey := leaf(3, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		dir: dir, caFile: write("ca.pem", "CERTIFICATE", caDER),
		certFile: write("cert.pem", "CERTIFICATE", srvDER), keyFile: write("key.pem", "EC PRIVATE KEY", srvKeyDER),
		clientCert: tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey},
		pool:       pool,
	}
}

// serverTLS is a tls.Config for a test UAS using the PKI's certificate.
func (p *testPKI) serverTLS(t *testing.T) *tls.Config {
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// dialTLS connects a raw SIP peer over TLS, with an optional client cert.
func (p *testPKI) dialTLS(t *testing.T, addr netip.AddrPort, withCert bool) (*streamPeer, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.clientCert}
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &streamPeer{t: t, nc: nc, br: bufio.NewReader(nc)}, nil
}

// tcpListening reports whether something accepts TCP connections on
// 127.0.0.1:port.
func tcpListening(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

var (
	flowToken   = regexp.MustCompile(`sip:ft-[0-9a-f]+-[0-9a-f]+@`)
	rrSignature = regexp.MustCompile(`;sig=[0-9a-f]{16}`)
)

// withoutFlow removes the flow tokens and the dialog signatures (tm signs
// every Record-Route value it adds) from Record-Route values and reports
// how many tokens there were. It fails the test when a value is not
// signed.
func withoutFlow(t testing.TB, rr []string) ([]string, int) {
	t.Helper()
	out := make([]string, len(rr))
	n := 0
	for i, v := range rr {
		if flowToken.MatchString(v) {
			n++
		}
		if !rrSignature.MatchString(v) {
			t.Errorf("Record-Route %s is not signed", v)
		}
		out[i] = rrSignature.ReplaceAllString(flowToken.ReplaceAllString(v, "sip:"), "")
	}
	return out, n
}

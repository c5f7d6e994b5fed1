package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// tlsConfigs loads the certificate files once.
func (h *Hub) tlsConfigs(server bool) (*tls.Config, error) {
	h.tlsOnce.Do(func() {
		c := h.cfg
		cli := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.RootCAFile != "" {
			pool, err := loadPool(c.RootCAFile)
			if err != nil {
				h.tlsErr = err
				return
			}
			cli.RootCAs = pool
		}
		h.cliTLS = cli
		if c.CertFile == "" && c.KeyFile == "" {
			return
		}
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			h.tlsErr = fmt.Errorf("transport: tls certificate: %w", err)
			return
		}
		cli.Certificates = []tls.Certificate{cert} // for peers that ask for a client certificate
		srv := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if c.ClientCAFile != "" {
			pool, err := loadPool(c.ClientCAFile)
			if err != nil {
				h.tlsErr = err
				return
			}
			srv.ClientCAs = pool
			srv.ClientAuth = tls.RequireAndVerifyClientCert
		}
		h.srvTLS = srv
	})
	if h.tlsErr != nil {
		return nil, h.tlsErr
	}
	if server && h.srvTLS == nil {
		return nil, errors.New("transport: tls listener needs Stream.CertFile and Stream.KeyFile")
	}
	if server {
		return h.srvTLS, nil
	}
	return h.cliTLS, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("transport: tls CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("transport: tls CA file %s: no PEM certificate", file)
	}
	return pool, nil
}

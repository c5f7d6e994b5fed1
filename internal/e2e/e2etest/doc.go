// Package e2etest holds what the black-box suites of internal/e2e (and the
// facade's README tests at the root) share: raw SIP peers over UDP and
// message builders. The suites start real servers and talk to them over
// 127.0.0.1 as any SIP endpoint would.
package e2etest

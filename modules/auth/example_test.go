package auth_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/asyncsip/asyncsip/modules/auth"
)

// A challenge, the client's answer, and the same answer replayed.
func Example() {
	ch := auth.NewChallenger("example.com", []byte("at least 16 bytes of secret, shared by instances"))
	ch.Logger = slog.New(slog.DiscardHandler) // a proxy passes its own logger
	src := netip.MustParseAddr("192.0.2.10")

	// The server challenges (401 WWW-Authenticate) and the client answers.
	offer, _ := auth.ParseChallenge(ch.Challenge(src, false, false)[0].Value())
	cred, _ := offer.Answer("alice", "secret", "REGISTER", "sip:example.com", 1, "0a4f113b")

	// The server verifies the retried request against alice's stored HA1.
	a := auth.Attempt{Credentials: cred, Method: "REGISTER", RequestURI: "sip:example.com", Source: src}
	ha1, _ := auth.HA1(cred.Algorithm, "alice", "example.com", "secret")
	res, err := ch.Verify(a, ha1)
	fmt.Println(res.Action, res.Username, err)

	// Someone who sniffed the header sends it again: nc was used already.
	a.Source = netip.MustParseAddr("198.51.100.66")
	res, err = ch.Verify(a, ha1)
	fmt.Println(res.Action, errors.Is(err, auth.ErrReplay))
	// Output:
	// accept alice <nil>
	// challenge-stale true
}

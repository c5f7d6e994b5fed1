package nat_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/asyncsip/asyncsip/modules/nat"
)

// A REGISTER from a phone behind a NAT: its Contact names its private
// address, the datagram came from the NAT's public side. The registrar
// stores the fixed contact and keeps the NAT binding open with pings.
func Example() {
	raw := "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=456248\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: 843817637684230@10.0.0.5\r\n" +
		"CSeq: 1826 REGISTER\r\n" +
		"Contact: <sip:alice@10.0.0.5:5060;ob>\r\n" +
		"Expires: 3600\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		fmt.Println(err)
		return
	}
	req := msg.(*sip.Request)
	src := netip.MustParseAddrPort("203.0.113.7:40312") // where the datagram came from

	fixed, behind, err := nat.FixContact(req, src)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("behind a NAT:", behind)
	fmt.Println("store:", fixed)

	// Ping the binding every 20 s at the NAT's public side; after 3
	// unanswered pings OnGone removes it. Start(srv.Core(), srv.Group())
	// runs the pings from a timer job spread over the loops.
	p := nat.New(nat.Config{OnGone: func(b nat.Binding) { fmt.Println("unreachable:", b.Key) }})
	if err := p.Add(nat.Binding{Key: "alice " + fixed, Contact: fixed, Addr: src,
		Expires: time.Now().Add(time.Hour)}); err != nil {
		fmt.Println(err)
	}
	fmt.Println("pinged bindings:", p.Stats().Bindings)
	// Output:
	// behind a NAT: true
	// store: sip:alice@203.0.113.7:40312;ob
	// pinged bindings: 1
}

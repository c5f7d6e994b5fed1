package ratelimit

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// scannerAgents are lower-case fragments of the User-Agent values sent by
// SIP scanning and brute-forcing tools (SIPVicious and its forks, sipcli,
// VaxSIP-based scanners, ...). Real phones and PBXes do not send them.
var scannerAgents = [...]string{
	"friendly-scanner", "friendly-request", "sipvicious", "sipcli", "sip-scan",
	"sipscan", "iwar", "sundayddr", "vaxsipuseragent", "vaxipuseragent", "siparmyknife",
}

// IsScanner reports whether req comes from a known SIP scanner, by its
// User-Agent. Drop such requests without an answer: a scanner takes any
// response as proof that something listens.
func IsScanner(req *sip.Request) bool {
	h := req.GetHeader("User-Agent")
	return h != nil && IsScannerAgent(h.Value())
}

// IsScannerAgent reports whether a User-Agent value is a known scanner's
// (case-insensitive; see README.md for the list).
func IsScannerAgent(ua string) bool {
	for _, s := range scannerAgents {
		if containsFold(ua, s) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub,
// ignoring case, without allocating.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

package rtpenginetest

import (
	"bytes"
	"strconv"
)

// RewriteSDP returns sdp with every address of its o= and c= lines
// replaced by addr and every m= port replaced by ports handed out from
// *next (two per media section: RTP and RTCP), as a media relay's rewrite
// looks. Other lines are kept as they are.
func RewriteSDP(sdp []byte, addr string, next *int) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(sdp, []byte("\n")) {
		body := bytes.TrimRight(line, "\r\n")
		eol := line[len(body):]
		switch {
		case bytes.HasPrefix(body, []byte("c=IN ")), bytes.HasPrefix(body, []byte("o=")):
			f := bytes.Fields(body)
			if len(f) >= 3 {
				f[len(f)-1] = []byte(addr)
				f[len(f)-2] = []byte(family(addr))
				body = bytes.Join(f, []byte(" "))
			}
		case bytes.HasPrefix(body, []byte("m=")):
			f := bytes.Fields(body)
			if len(f) >= 2 && !bytes.Equal(f[1], []byte("0")) {
				f[1] = []byte(strconv.Itoa(*next))
				*next += 2
				body = bytes.Join(f, []byte(" "))
			}
		}
		out.Write(body)
		out.Write(eol)
	}
	return out.Bytes()
}

func family(addr string) string {
	if bytes.IndexByte([]byte(addr), ':') >= 0 {
		return "IP6"
	}
	return "IP4"
}

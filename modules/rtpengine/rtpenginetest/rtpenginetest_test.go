package rtpenginetest

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/asyncsip/asyncsip/modules/rtpengine"
)

func TestRewriteSDP(t *testing.T) {
	in := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 5000 RTP/AVP 96\r\n"
	next := 30000
	got := string(RewriteSDP([]byte(in), "203.0.113.1", &next))
	want := "v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 30002 RTP/AVP 96\r\n"
	if got != want || next != 30004 {
		t.Fatalf("RewriteSDP:\n%q\nwant\n%q (next %d)", got, want, next)
	}
}

// The server answers a retransmitted cookie from its cache (the command
// is handled once), keeps calls, and refuses what rtpengine refuses.
func TestServer(t *testing.T) {
	s := NewServer(t)
	c, err := net.Dial("udp", s.Addr[len("udp:"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(cookie string, dict map[string]any) map[string]any {
		t.Helper()
		msg, err := rtpengine.Encode([]byte(cookie+" "), dict)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		sp := bytes.IndexByte(buf[:n], ' ')
		if string(buf[:sp]) != cookie {
			t.Fatalf("cookie %q, want %q", buf[:sp], cookie)
		}
		v, err := rtpengine.Decode(buf[sp+1 : n])
		if err != nil {
			t.Fatal(err)
		}
		return v.(map[string]any)
	}
	offer := map[string]any{"command": "offer", "call-id": "c", "from-tag": "f", "sdp": "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"}
	r1 := ask("k1", offer)
	r2 := ask("k1", offer) // a retransmission
	if r1["result"] != "ok" || r1["sdp"] != r2["sdp"] || len(s.Commands()) != 1 || !s.Has("c") {
		t.Fatalf("offer %v, retransmission %v, %d commands", r1, r2, len(s.Commands()))
	}
	if r := ask("k2", map[string]any{"command": "answer", "call-id": "nope", "from-tag": "f", "to-tag": "t", "sdp": "v=0\r\n"}); r["result"] != "error" {
		t.Fatalf("answer for an unknown call: %v", r)
	}
	if r := ask("k3", map[string]any{"command": "delete", "call-id": "c"}); r["result"] != "ok" || s.Live() != 0 {
		t.Fatalf("delete: %v, %d live", r, s.Live())
	}
}

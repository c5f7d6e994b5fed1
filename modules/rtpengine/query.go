package rtpengine

import (
	"fmt"
	"sort"
	"time"
)

// QueryResult is rtpengine's answer to a query, typed.
type QueryResult struct {
	// Created is when the call was created on the instance, LastSignal
	// when it last saw a command for it.
	Created, LastSignal time.Time
	// Totals are the call's packet counters, summed over its streams.
	RTP, RTCP PacketStats
	// Tags are the call's parties, by SIP tag.
	Tags map[string]TagInfo
	// Response is the raw reply.
	Response *Response
}

// PacketStats are packet counters.
type PacketStats struct {
	Packets, Bytes, Errors int64
}

// TagInfo is one party of a queried call.
type TagInfo struct {
	// Tag is the party's SIP tag, Label its label.
	Tag, Label string
	// Media are its media sections, in SDP order.
	Media []MediaInfo
}

// MediaInfo is one media section of a party.
type MediaInfo struct {
	// Index is the section's position (from 1), Type "audio", "video"…,
	// Protocol "RTP/AVP", "UDP/TLS/RTP/SAVPF"…
	Index          int64
	Type, Protocol string
	// Streams are its RTP and RTCP streams.
	Streams []StreamInfo
}

// StreamInfo is one stream (an RTP or RTCP port) of a media section.
type StreamInfo struct {
	// LocalPort is rtpengine's port; Endpoint is where the party sends
	// from, as rtpengine learned it (empty before media flowed or from
	// SDP when not yet latched).
	LocalPort int64
	Endpoint  string
	// Stats are the packets received on the stream.
	Stats PacketStats
}

// ParseQuery types the reply of a query (Client.Query does it; fakes and
// Do callers may too).
func ParseQuery(r *Response) (*QueryResult, error) {
	d := r.Dict
	q := &QueryResult{Response: r, Tags: map[string]TagInfo{}}
	q.Created = unixTime(d["created"], d["created_us"])
	q.LastSignal = unixTime(d["last signal"], nil)
	if t, ok := d["totals"].(map[string]any); ok {
		q.RTP = packetStats(t["RTP"])
		q.RTCP = packetStats(t["RTCP"])
	}
	tags, _ := d["tags"].(map[string]any)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		td, ok := tags[k].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: query tag %q is not a dictionary", ErrBadReply, k)
		}
		ti := TagInfo{Tag: str(td["tag"]), Label: str(td["label"])}
		medias, _ := td["medias"].([]any)
		for _, m := range medias {
			md, _ := m.(map[string]any)
			mi := MediaInfo{Index: num(md["index"]), Type: str(md["type"]), Protocol: str(md["protocol"])}
			streams, _ := md["streams"].([]any)
			for _, s := range streams {
				sd, _ := s.(map[string]any)
				si := StreamInfo{LocalPort: num(sd["local port"]), Stats: packetStats(sd["stats"])}
				if ep, ok := sd["endpoint"].(map[string]any); ok && str(ep["address"]) != "" {
					si.Endpoint = fmt.Sprintf("%s:%d", str(ep["address"]), num(ep["port"]))
				}
				mi.Streams = append(mi.Streams, si)
			}
			ti.Media = append(ti.Media, mi)
		}
		q.Tags[k] = ti
	}
	return q, nil
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) int64 { n, _ := v.(int64); return n }

func packetStats(v any) PacketStats {
	d, _ := v.(map[string]any)
	return PacketStats{Packets: num(d["packets"]), Bytes: num(d["bytes"]), Errors: num(d["errors"])}
}

func unixTime(sec, usec any) time.Time {
	s, ok := sec.(int64)
	if !ok || s == 0 {
		return time.Time{}
	}
	us, _ := usec.(int64)
	return time.Unix(s, (us%1_000_000)*1000)
}

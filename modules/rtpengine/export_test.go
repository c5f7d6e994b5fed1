package rtpengine

// ParseReply parses one reply datagram as the client does, for the fuzz
// test: the cookie is dropped, an "error" result is an *Error.
func ParseReply(cmd, inst string, b []byte) (*Response, error) {
	_, dict, err := parseReply(b)
	if err != nil {
		return nil, err
	}
	return response(cmd, inst, dict)
}

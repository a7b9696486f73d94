package proxy

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Underscore policies (listen.headers_with_underscores).
const (
	underscoresAllow uint8 = iota
	underscoresDrop
	underscoresReject
)

// screenPolicy is what screen enforces beyond what fasthttp already does.
type screenPolicy struct {
	maxHeaders  int
	underscores uint8
	maxHops     int
	keyHeaders  [][]byte // the routing rules' headers (the first 64), each allowed once
}

// viaToken names this proxy in Via headers; counting it finds loops.
const viaToken = "socialroute"

var (
	chunked   = []byte("chunked")
	hostName  = []byte("Host")
	viaName   = []byte("Via")
	viaTokenB = []byte(viaToken)
	viaValue  = "1.1 " + viaToken
)

// screen reads the raw header block of a request fasthttp accepted and
// refuses what an edge proxy must not pass on, before any routing. fasthttp
// already refuses NUL and control bytes, a space before the colon, duplicate
// or signed Content-Length, and any Transfer-Encoding but chunked (once);
// screen adds:
//   - both Content-Length and Transfer-Encoding (fasthttp lets chunked win; a
//     server behind us might not: request smuggling, RFC 9112 section 6.1);
//   - obs-fold (a line starting with white space, RFC 9112 section 5.2) and
//     bare LF line ends, which parsers disagree on;
//   - header names that are not tokens (fasthttp takes "Bad Header");
//   - more than maxHeaders fields (431);
//   - names with an underscore, when the policy rejects them (dropped ones
//     are listed in sc.names for the caller to delete);
//   - a request whose Via header shows it passed this fleet maxHops times
//     (508: a routing loop);
//   - a Transfer-Encoding other than chunked (fasthttp takes "identity"
//     for none, and reads what follows as the next request);
//   - userinfo in Host ("a@b"), which fasthttp would forward as an
//     Authorization header of its making;
//   - a header of p.keyHeaders (the routing rules') given more than once:
//     the proxy routes by the first, a web tier may read the last, or all
//     joined, and act for another user past that user's fence.
//
// It returns 0 when the request may go on, else the status and a reason.
// One pass over the block, no allocation.
func screen(h *fasthttp.RequestHeader, p screenPolicy, sc *scratch) (int, string) {
	sc.names, sc.buf = sc.names[:0], sc.buf[:0]
	raw := h.RawHeaders()
	var cl, te bool
	fields, hops := 0, 0
	var keys uint64 // bit i: p.keyHeaders[i] seen
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			break // the block ends with its blank line; nothing after
		}
		if i == 0 || raw[i-1] != '\r' {
			return fasthttp.StatusBadRequest, "bare LF in the header block"
		}
		line := raw[:i-1]
		raw = raw[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fasthttp.StatusBadRequest, "folded header line (obs-fold)"
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fasthttp.StatusBadRequest, "header line without a name"
		}
		name := line[:colon]
		underscore := false
		for _, c := range name {
			if !isTokenByte(c) {
				return fasthttp.StatusBadRequest, "header name with a character a token may not have"
			}
			underscore = underscore || c == '_'
		}
		if fields++; fields > p.maxHeaders {
			return fasthttp.StatusRequestHeaderFieldsTooLarge, "too many header fields"
		}
		switch {
		case underscore && p.underscores == underscoresReject:
			return fasthttp.StatusBadRequest, "header name with an underscore"
		case underscore && p.underscores == underscoresDrop:
			start := len(sc.buf)
			sc.buf = append(sc.buf, name...)
			sc.names = append(sc.names, sc.buf[start:])
		case hasName(line, contentLength):
			cl = true
		case hasName(line, transferEncoding):
			te = true
			if !bytes.EqualFold(bytes.TrimSpace(line[colon+1:]), chunked) {
				return fasthttp.StatusBadRequest, "Transfer-Encoding other than chunked"
			}
		case hasName(line, viaName):
			hops += bytes.Count(line[colon+1:], viaTokenB)
		case hasName(line, hostName):
			if bytes.IndexByte(line[colon+1:], '@') >= 0 {
				return fasthttp.StatusBadRequest, "userinfo in Host"
			}
		}
		for i, k := range p.keyHeaders {
			if hasName(line, k) {
				if keys&(1<<i) != 0 {
					return fasthttp.StatusBadRequest, "the routing key's header " + string(k) + " given more than once"
				}
				keys |= 1 << i
			}
		}
	}
	switch {
	case cl && te:
		return fasthttp.StatusBadRequest, "both Transfer-Encoding and Content-Length"
	case hops >= p.maxHops:
		return fasthttp.StatusLoopDetected, "request passed this proxy fleet " + strconv.Itoa(hops) + " times: a routing loop"
	}
	return 0, ""
}

// hasName reports whether header line starts with name and a colon.
func hasName(line, name []byte) bool {
	return len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], name)
}

// isTokenByte reports whether c may appear in a header name (RFC 9110
// section 5.6.2, tchar).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

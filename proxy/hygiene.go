package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (and the
// older ones RFC 2616 section 13.5.1 and common practice add). They describe
// one connection, not the message: a proxy must not forward them. fasthttp
// forwards them as they are, so we strip them both ways.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by old clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// Headers this proxy owns. A client must not be able to set them for the web
// tier: they are removed from every request before the proxy sets its own.
const (
	headerBucket = "X-Socialroute-Bucket"
	headerDC     = "X-Socialroute-Dc"
	headerSpread = "X-Socialroute-Spread"
	headerPrefix = "X-Socialroute-"
	headerXFF    = "X-Forwarded-For"
	headerXFP    = "X-Forwarded-Proto"
)

var (
	connectionHeader = []byte("Connection")
	internalPrefix   = []byte(headerPrefix)
	contentLength    = []byte("Content-Length")
	transferEncoding = []byte("Transfer-Encoding")
)

// scratch holds per-request buffers reused through a sync.Pool, so that
// header surgery does not allocate.
type scratch struct {
	names [][]byte
	buf   []byte
}

// stripRequestHeaders removes hop-by-hop headers, headers the Connection
// header names, and client-supplied X-Socialroute-* headers.
func stripRequestHeaders(h *fasthttp.RequestHeader, s *scratch) {
	s.names, s.buf = connectionTokens(h.Peek("Connection"), s.names[:0], s.buf[:0])
	for _, n := range s.names {
		h.DelBytes(n)
	}
	for _, n := range hopHeaders {
		h.Del(n)
	}
	s.names, s.buf = s.names[:0], s.buf[:0]
	for k := range h.All() {
		if len(k) >= len(internalPrefix) && bytes.EqualFold(k[:len(internalPrefix)], internalPrefix) {
			start := len(s.buf)
			s.buf = append(s.buf, k...)
			s.names = append(s.names, s.buf[start:])
		}
	}
	for _, n := range s.names {
		h.DelBytes(n)
	}
}

// stripResponseHeaders removes hop-by-hop headers and those the Connection
// header names from an upstream response. fasthttp's server writes its own
// framing (Content-Length or chunked) and Connection for the client.
func stripResponseHeaders(h *fasthttp.ResponseHeader, s *scratch) {
	s.names, s.buf = connectionTokens(h.Peek("Connection"), s.names[:0], s.buf[:0])
	for _, n := range s.names {
		h.DelBytes(n)
	}
	for _, n := range hopHeaders {
		if n != "Transfer-Encoding" { // fasthttp re-frames the body itself
			h.Del(n)
		}
	}
}

// connectionTokens appends the comma-separated tokens of a Connection header
// value to names, copying them into buf (the header they come from is about
// to be deleted).
func connectionTokens(v []byte, names [][]byte, buf []byte) ([][]byte, []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || bytes.EqualFold(tok, connectionHeader) {
			continue
		}
		start := len(buf)
		buf = append(buf, tok...)
		names = append(names, buf[start:])
	}
	return names, buf
}

package proxy

import (
	"bytes"
	"iter"

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

// clientClaims are headers in which a request speaks for a proxy before
// this one: who the client is (Forwarded, X-Real-IP) and which host and
// port it asked for (web frameworks build absolute URLs, such as password
// reset links, from X-Forwarded-Host). This proxy is the edge, so a client
// sending them speaks for itself: they are removed, as X-Forwarded-For is
// replaced.
var clientClaims = []string{
	"Forwarded",
	"X-Real-Ip",
	"X-Forwarded-Host",
	"X-Forwarded-Port",
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

// The same names as bytes for SetCanonical: they are in canonical form
// already, and Set would copy and normalize the name on every request.
var (
	keyBucket = []byte(headerBucket)
	keyDC     = []byte(headerDC)
	keySpread = []byte(headerSpread)
	keyXFF    = []byte(headerXFF)
	keyXFP    = []byte(headerXFP)
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
	// key and viewer are copies of the request's routing key and viewer,
	// which outlive the header rewrite that may reuse the bytes they came
	// from.
	key, viewer []byte
	// bucket is the routed bucket's number in decimal, formatted once for
	// the request's header and the response's (buf is reused between).
	bucket []byte
}

// stripRequestHeaders removes hop-by-hop headers, headers the Connection
// header names, clientClaims, and client-supplied X-Socialroute-* headers.
// One pass over the headers finds them all; a request with none pays for
// nothing else (a Del per hop-by-hop name cost a scan of the headers each).
//
// Trailer fields (after a chunked body) go too, first: screened as headers
// they were not, and fasthttp, once the Trailer header is deleted, moves
// them among the headers, where they would reach the web tier past every
// rule above. The proxy holds bodies whole, so it has no chunked trailer
// section to pass them on in anyway. Expect goes as well: the proxy read
// the body already, and the web tier's 100 Continue would be an answer to
// nobody.
func stripRequestHeaders(h *fasthttp.RequestHeader, s *scratch) {
	s.names, s.buf = s.names[:0], s.buf[:0]
	s.names, s.buf = trailerNames(h.Trailers(), s.names, s.buf)
	for k, v := range h.All() {
		if isConnection(k) {
			s.names, s.buf = connectionTokens(v, s.names, s.buf)
		}
		if isHopHeader(k) || isInternal(k) || isOneOf(k, clientClaims) || isExpect(k) {
			s.names, s.buf = appendName(s.names, s.buf, k)
		}
	}
	for _, n := range s.names {
		h.DelBytes(n)
	}
}

// trailerNames appends the names of a message's trailer fields to names,
// copied into buf. Deleting one deletes a header of the same name too,
// which is the safe side: a name that came both ways is ambiguous.
func trailerNames(trailers iter.Seq[[]byte], names [][]byte, buf []byte) ([][]byte, []byte) {
	for t := range trailers {
		names, buf = appendName(names, buf, t)
	}
	return names, buf
}

var expectHeader = []byte("Expect")

func isExpect(k []byte) bool { return len(k) == len(expectHeader) && bytes.EqualFold(k, expectHeader) }

// stripResponseHeaders removes hop-by-hop headers, those the Connection
// header names, and X-Socialroute-* headers from an upstream response: the
// ones the client sees are this proxy's own, set after (or none, with
// response headers off). fasthttp's server writes its own
// framing (Content-Length or chunked) and Connection for the client, so
// Transfer-Encoding stays for it to re-frame the body.
//
// Trailer fields go when the body was read whole with a trailer section
// (withTrailers: chunked, held); a streamed body's trailers stay with its
// carrier (see readResponse). Otherwise the fields a Trailer header names
// came in the header section and are real headers: they stay, and the
// Trailer header goes (hop-by-hop), which keeps fasthttp from turning
// them into a trailer of its own.
func stripResponseHeaders(h *fasthttp.ResponseHeader, s *scratch, withTrailers bool) {
	s.names, s.buf = s.names[:0], s.buf[:0]
	if withTrailers {
		s.names, s.buf = trailerNames(h.Trailers(), s.names, s.buf) // as for requests
	}
	for k, v := range h.All() {
		if isConnection(k) {
			s.names, s.buf = connectionTokens(v, s.names, s.buf)
		}
		if isHopHeader(k) && !bytes.EqualFold(k, transferEncoding) || isInternal(k) {
			s.names, s.buf = appendName(s.names, s.buf, k)
		}
	}
	for _, n := range s.names {
		h.DelBytes(n)
	}
}

func isConnection(k []byte) bool {
	return len(k) == len(connectionHeader) && bytes.EqualFold(k, connectionHeader)
}

// isHopHeader reports whether k is one of hopHeaders, in any case.
func isHopHeader(k []byte) bool { return isOneOf(k, hopHeaders) }

// isInternal reports whether k is an X-Socialroute-* header, in any case.
func isInternal(k []byte) bool {
	return len(k) >= len(internalPrefix) && bytes.EqualFold(k[:len(internalPrefix)], internalPrefix)
}

// isOneOf reports whether k is one of names, in any case. Comparing lengths
// first keeps a miss to a few integer comparisons.
func isOneOf(k []byte, names []string) bool {
	for _, n := range names {
		if len(n) == len(k) && bytes.EqualFold(k, []byte(n)) {
			return true
		}
	}
	return false
}

// appendName appends a copy of name to names, its bytes in buf (the header
// it comes from is about to be deleted).
func appendName(names [][]byte, buf, name []byte) ([][]byte, []byte) {
	start := len(buf)
	buf = append(buf, name...)
	return append(names, buf[start:]), buf
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
		names, buf = appendName(names, buf, tok)
	}
	return names, buf
}

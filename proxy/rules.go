package proxy

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// ruleKind is where a rule finds the routing key.
type ruleKind uint8

const (
	fromHeader ruleKind = iota
	fromCookie
	fromQuery
	fromPath
)

// rule is a compiled configs.Rule.
type rule struct {
	kind   ruleKind
	name   string // header, cookie or query parameter name
	nameB  []byte // name, for comparisons that must not allocate
	prefix []byte // path prefix the rule is limited to; for fromPath, the template before {key}
	desc   string // how explanations and logs name the rule
}

// keyHeaders are the names of the headers rs reads keys from, for screen
// to refuse one given twice (whether or not it gave the key: an empty
// first value and a second one would route by another rule, or none,
// while the web tier reads the second).
func (rs rules) keyHeaders() [][]byte {
	var out [][]byte
	for i := range rs {
		if rs[i].kind == fromHeader && len(out) < 64 { // screen's mask has 64 bits
			out = append(out, rs[i].nameB)
		}
	}
	return out
}

// rules are tried in order; the first that yields a non-empty key wins.
type rules []rule

// compileRules turns the configured rules into their request-path form.
func compileRules(cfg []configs.Rule) (rules, error) {
	out := make(rules, 0, len(cfg))
	for i, r := range cfg {
		var c rule
		switch {
		case r.Header != "":
			c = rule{kind: fromHeader, name: r.Header, desc: "header " + r.Header}
		case r.Cookie != "":
			c = rule{kind: fromCookie, name: r.Cookie, desc: "cookie " + r.Cookie}
		case r.Query != "":
			c = rule{kind: fromQuery, name: r.Query, desc: "query " + r.Query}
		case r.Path != "":
			before, _, ok := strings.Cut(r.Path, "{key}")
			if !ok {
				return nil, fmt.Errorf("proxy: routing.rules[%d].path %q has no {key}", i, r.Path)
			}
			c = rule{kind: fromPath, prefix: []byte(before), desc: "path " + r.Path}
		default:
			return nil, fmt.Errorf("proxy: routing.rules[%d] names no key source", i)
		}
		switch {
		case r.PathPrefix == "":
		case c.kind == fromPath && !strings.HasPrefix(r.Path, r.PathPrefix):
			// configs.Validate refuses this; a config built in code may not.
			return nil, fmt.Errorf("proxy: routing.rules[%d].path_prefix %q does not start path %q", i, r.PathPrefix, r.Path)
		case c.kind == fromPath:
			// The template's own prefix (up to {key}) is the one used.
		default:
			c.prefix = []byte(r.PathPrefix)
			c.desc += " under " + r.PathPrefix
		}
		c.nameB = []byte(c.name)
		out = append(out, c)
	}
	return out, nil
}

// extract returns the routing key of req and the index of the rule that
// found it, or nil and -1. The key aliases req's buffers: it is valid until
// req is modified. It does not allocate.
//
// A rule with a path (or path prefix) matches the normalized path, but the
// web tier gets the path as the client wrote it. If the two can differ in
// which segment is where (see plainPath), a client could route another
// user's request by its own key, so when a rule reads such a path extract
// returns refused = ambiguousPath, and the request must be refused; so
// too, refused = repeatedKey, for a rule whose cookie or query parameter
// comes more than once with different values (the web tier may read
// another of them; a header given twice is screen's to find, in its pass
// over the headers).
func (rs rules) extract(req *fasthttp.Request) (key []byte, ruleIndex int, refused string) {
	var path []byte
	for i := range rs {
		r := &rs[i]
		if len(r.prefix) > 0 {
			if path == nil {
				if !plainPath(req.URI().PathOriginal()) {
					return nil, -1, ambiguousPath
				}
				path = req.URI().Path()
			}
			if !bytes.HasPrefix(path, r.prefix) {
				continue
			}
		}
		switch r.kind {
		case fromHeader:
			key = req.Header.Peek(r.name)
		case fromCookie:
			key = req.Header.Cookie(r.name)
		case fromQuery:
			key = req.URI().QueryArgs().Peek(r.name)
		case fromPath:
			key = path[len(r.prefix):]
			if j := bytes.IndexByte(key, '/'); j >= 0 {
				key = key[:j]
			}
		}
		if r.repeated(req) {
			return nil, -1, repeatedKey
		}
		if len(key) > 0 {
			return key, i, ""
		}
	}
	return nil, -1, ""
}

// repeatedKey is the reason a request whose routing key's cookie or query
// parameter comes more than once is refused.
const repeatedKey = "the routing key given more than once: the web tier might read another of them"

// repeated reports whether r's cookie or query parameter comes more than
// once in req with different values (an empty one included). The same
// value twice is no question: a browser sends two cookies of one name
// set for different paths or domains.
func (r *rule) repeated(req *fasthttp.Request) bool {
	var first []byte
	n := 0
	differs := func(k, v []byte) bool {
		if !bytes.Equal(k, r.nameB) {
			return false
		}
		if n++; n == 1 {
			first = v
			return false
		}
		return !bytes.Equal(v, first)
	}
	switch r.kind {
	case fromCookie:
		for k, v := range req.Header.Cookies() {
			if differs(k, v) {
				return true
			}
		}
	case fromQuery:
		for k, v := range req.URI().QueryArgs().All() {
			if differs(k, v) {
				return true
			}
		}
	}
	return false
}

// ambiguousPath is the reason a request whose path is not plain is refused.
const ambiguousPath = "path with a dot segment, an empty segment, a ';' or an encoded slash, backslash or dot: the web tier might read another routing key from it"

// plainPath reports whether a request path as the client wrote it has one
// reading only: no dot segment ("." or ".."), no empty segment ("//"), no
// backslash, no ';' (path parameters, which some web tiers strip), and no
// percent-encoded '/', '\\' or '.'. fasthttp's normalized
// path removes or decodes each of those, and a web tier may or may not do
// the same (Envoy's path_with_escaped_slashes_action and merge_slashes exist
// for this), so "/users/alice%2F..%2Fbob" could be bob's request to us and
// alice's to the web tier. Other percent-encoding decodes to the same
// segments everywhere and is allowed.
func plainPath(p []byte) bool {
	segStart := 0 // index of the current segment's first byte
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			switch seg := p[segStart:i]; {
			case len(seg) == 0 && i > 0 && i < len(p): // "//"; a leading or trailing slash is fine
				return false
			case len(seg) == 1 && seg[0] == '.', len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
				return false
			}
			segStart = i + 1
			continue
		}
		switch p[i] {
		case '\\', ';': // ';': servlet containers cut path parameters off a segment
			return false
		case '%':
			if i+2 < len(p) {
				switch hi, lo := p[i+1], p[i+2]|0x20; {
				case hi == '2' && (lo == 'f' || lo == 'e'), hi == '5' && lo == 'c':
					return false
				}
			}
		}
	}
	return true
}

// validKey reports whether key is a routing key this proxy accepts: at most
// maxLen bytes of visible ASCII. Anything else is a malformed request, not a
// user to hash: it gets 400 and never reaches an upstream.
func validKey(key []byte, maxLen int) bool {
	if len(key) > maxLen {
		return false
	}
	for _, c := range key {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

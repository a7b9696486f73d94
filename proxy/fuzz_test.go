package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// FuzzExtractKey feeds arbitrary requests through the parser, the screen
// and the routing rules: nothing may panic, a key must be a slice of the
// request it came from, and a key the proxy accepts must be visible ASCII
// within the length limit.
func FuzzExtractKey(f *testing.F) {
	for _, seed := range []string{
		"GET /users/alice/feed HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /accounts/7 HTTP/1.1\r\nHost: x\r\nX-User-ID: 42\r\n\r\n",
		"GET /search?q=a&user_id=bob HTTP/1.1\r\nHost: x\r\nCookie: uid=carol; a=b\r\n\r\n",
		"GET /users/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /users//x HTTP/1.1\r\nHost: x\r\nCookie: uid=\r\n\r\n",
		"POST /feed HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /feed HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\nVia: 1.1 socialroute\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	cfg := testConfig(f, func(c *configs.Config) {
		c.Routing.Rules = []configs.Rule{
			{Path: "/users/{key}"}, {Path: "/accounts/{key}"}, {Header: "X-User-ID"}, {Cookie: "uid"}, {Query: "user_id", PathPrefix: "/search"},
		}
	})
	rs, err := compileRules(cfg.Routing.Rules)
	if err != nil {
		f.Fatal(err)
	}
	p := screenPolicy{maxHeaders: 100, underscores: underscoresDrop, maxHops: 2}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		// With the server's body limit, as the server reads: unbounded, a
		// chunk size of 0xcccccccc0 has fasthttp allocate 55 GB.
		if err := req.ReadLimitBody(bufio.NewReader(bytes.NewReader(raw)), cfg.Listen.MaxRequestBodySize); err != nil {
			return
		}
		var sc scratch
		if code, reason := screen(&req.Header, p, &sc); code != 0 && reason == "" {
			t.Fatalf("refused with %d and no reason", code)
		}
		key, rule, refused := rs.extract(&req)
		if key != nil && rs[rule].kind == fromPath && !plainPath(req.URI().PathOriginal()) {
			t.Fatalf("key %q taken from a path with two readings, %q", key, req.URI().PathOriginal())
		}
		if refused != "" && key != nil {
			t.Fatalf("key %q from a request extract refused (%s)", key, refused)
		}
		if key == nil {
			if rule != -1 {
				t.Fatalf("no key but rule %d", rule)
			}
			return
		}
		if rule < 0 || rule >= len(rs) || len(key) == 0 {
			t.Fatalf("key %q from rule %d", key, rule)
		}
		if validKey(key, 128) {
			for _, c := range key {
				if c <= ' ' || c >= 0x7f {
					t.Fatalf("accepted key %q has byte %#x", key, c)
				}
			}
			if strings.ContainsRune(string(key), '/') && rs[rule].kind == fromPath {
				t.Fatalf("a path key spans segments: %q", key)
			}
		}
	})
}

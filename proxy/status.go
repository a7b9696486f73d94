package proxy

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
)

// statusHTML is the status page: one file of HTML, CSS and JavaScript, no
// build step. It draws GET /admin/datacenters (and /admin/members with
// gossip on) every 2 s. The browser authenticates with HTTP Basic (the
// admin token as password), so the token is in no URL, log or storage.
//
//go:embed status.html
var statusHTML []byte

// statusCSP allows the page's own inline script and style (by hash) and
// requests to this origin, nothing else.
var statusCSP = "default-src 'none'; " +
	"script-src " + inlineHash(statusHTML, "<script>", "</script>") + "; " +
	"style-src " + inlineHash(statusHTML, "<style>", "</style>") + "; " +
	"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHash is the CSP source of the text between open and close in page.
func inlineHash(page []byte, open, close string) string {
	s := string(page)
	i := strings.Index(s, open)
	j := strings.Index(s, close)
	if i < 0 || j < i {
		return "'none'"
	}
	sum := sha256.Sum256([]byte(s[i+len(open) : j]))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// statusPage is GET /status.
func (a *Admin) statusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	w.Write(statusHTML) //nolint:errcheck // the client went away
}

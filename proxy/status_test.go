package proxy

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/health"
)

// chromium finds Debian's chromium (.ci/run installs it), or skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install chromium; .ci/run does): the status page is not tested in a browser")
	return ""
}

// runChromium loads url headless and returns its output: the DOM after
// the page's scripts ran (mode "--dump-dom") or nothing ("--screenshot=").
func runChromium(t *testing.T, bin, mode, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--window-size=1280,900", "--virtual-time-budget=3000",
		mode, url)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", mode, err, stderr.String())
	}
	return stdout.String()
}

// The status page in a real browser, during a failover: us-b is down,
// eu-b drained. The page must show every datacenter under its continent
// with its state, and us-b's buckets gone to the other US datacenters.
func TestStatusPageInHeadlessChromium(t *testing.T) {
	bin := chromium(t)
	f := newAdminFixture(t, nil, AdminOptions{})
	for id := range 300 {
		f.getUser(id) // some load for the "here" column
	}
	f.srv.status.(*health.Static).SetDown(1, true) // us-b
	if w := f.call("POST", "/admin/datacenters/eu-b/drain", "", ""); w.Code != 200 {
		t.Fatalf("drain: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/admin/buckets/3/pin", `{"datacenter": "us-c"}`, ""); w.Code != 200 {
		t.Fatalf("pin: %d %s", w.Code, w.Body)
	}
	srv := httptest.NewServer(f.admin)
	defer srv.Close()
	// The browser authenticates with HTTP Basic, the token as password: in
	// the URL here, in the browser's own prompt for a person.
	u, _ := url.Parse(srv.URL + "/status")
	u.User = url.UserPassword("operator", testToken)

	dom := runChromium(t, bin, "--dump-dom", u.String())
	rows := regexp.MustCompile(`<tr data-datacenter="([^"]+)" data-state="([^"]+)">`).FindAllStringSubmatch(dom, -1)
	states := map[string]string{}
	for _, r := range rows {
		states[r[1]] = r[2]
	}
	want := map[string]string{"us-a": "usable", "us-b": "down", "us-c": "usable", "eu-a": "usable", "eu-b": "drained"}
	for dc, state := range want {
		if states[dc] != state {
			t.Errorf("%s shows %q, want %q", dc, states[dc], state)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("%d datacenter rows, want %d:\n%s", len(rows), len(want), dom)
	}
	us, eu := strings.Index(dom, `<section data-continent="us">`), strings.Index(dom, `<section data-continent="eu">`)
	if us < 0 || eu < us || strings.Index(dom, `data-datacenter="us-c"`) > eu || strings.Index(dom, `data-datacenter="eu-a"`) < eu {
		t.Errorf("datacenters are not grouped by continent:\n%s", dom)
	}
	for _, text := range []string{"test-node", "marked down", "drained by the bucket map", "2 of 3 datacenters usable", "this node"} {
		if !strings.Contains(dom, text) {
			t.Errorf("the page lacks %q", text)
		}
	}
	if strings.Contains(dom, `class="alert-bad">Cannot read`) || strings.Contains(dom, "<p>Loading…</p>") {
		t.Fatalf("the page did not load its data:\n%s", dom)
	}
	// us-b's buckets moved: it serves none, its neighbours more than their
	// first-choice share.
	if !regexp.MustCompile(`data-datacenter="us-b".*?<td class="num">0</td><td class="num"><span class="moved-down">`).MatchString(dom) {
		t.Errorf("us-b does not show its buckets gone")
	}
	if n := strings.Count(dom, `class="moved-up"`); n < 2 {
		t.Errorf("%d datacenters show buckets taken over, want the two other US ones", n)
	}

	png := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, "--screenshot="+png, u.String())
	info, err := os.Stat(png)
	if err != nil || info.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", png, err, sizeOf(info))
	}
	if dir := os.Getenv("SOCIALROUTE_SCREENSHOT_DIR"); dir != "" {
		data, _ := os.ReadFile(png)
		os.WriteFile(filepath.Join(dir, "status.png"), data, 0o644) //nolint:errcheck // a convenience for people
	}
	t.Logf("screenshot: %s (%d bytes)", png, info.Size())
}

func sizeOf(info os.FileInfo) int64 {
	if info == nil {
		return 0
	}
	return info.Size()
}

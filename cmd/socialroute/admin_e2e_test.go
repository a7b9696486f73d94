package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// adminNode is one `socialroute serve` of the admin fleet test.
type adminNode struct {
	fleetNode
	admin string // admin endpoint host:port
}

// writeAdminFleetConfig is the fleet test's config with the admin endpoint
// on, and drains that act at once (drain_ramp 1ns: a ramp of 1ms was long
// enough for a node that had just adopted a drain to report "draining").
func writeAdminFleetConfig(t *testing.T, n *adminNode, dcs map[string]*killableDC, lanSeeds, wanSeeds []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: edge-%s\n  datacenter: %s\nlisten:\n  address: %s\n  shutdown_timeout: 5s\n", n.dc, n.dc, n.listen)
	b.WriteString("upstream:\n  timeout: 2s\n  connect_timeout: 300ms\n  retries: 2\n")
	b.WriteString("buckets: 1024\ncontinents:\n  - name: us\n  - name: eu\ndatacenters:\n")
	for _, d := range fleetTopology {
		fmt.Fprintf(&b, "  - name: %s\n    continent: %s\n    capacity: %d\n    upstreams: [%q]\n", d.name, d.continent, d.capacity, dcs[d.name].addr)
	}
	b.WriteString("routing:\n  drain_ramp: 1ns\n  rules:\n    - path: /users/{key}\n")
	b.WriteString("gossip:\n  label: admin-e2e\n  check_interval: 200ms\n  check_timeout: 150ms\n")
	fmt.Fprintf(&b, "  lan:\n    bind: %s\n    probe_interval: 200ms\n    probe_timeout: 100ms\n    suspicion_mult: 2\n    join: [%s]\n", n.lan, strings.Join(lanSeeds, ", "))
	fmt.Fprintf(&b, "  wan:\n    bind: %s\n    probe_interval: 300ms\n    probe_timeout: 150ms\n    suspicion_mult: 2\n    join: [%s]\n", n.wan, strings.Join(wanSeeds, ", "))
	fmt.Fprintf(&b, "admin:\n  enabled: true\n  address: %s\n", n.admin)
	b.WriteString("log:\n  level: info\n")
	if err := os.WriteFile(n.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// adminCall sends one request to a node's admin endpoint with the token,
// decodes a JSON answer into out (if not nil) and returns the status; any
// error fails the test, so it is for the test's own goroutine.
func adminCall(t *testing.T, n *adminNode, method, path, body string, out any) int {
	t.Helper()
	code, err := adminDo(n, method, path, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// adminClient bounds every admin call, so a wedged node fails a test instead
// of hanging it.
var adminClient = &http.Client{Timeout: 5 * time.Second}

// adminDo is adminCall for any goroutine: it returns the error instead.
func adminDo(n *adminNode, method, path, body string, out any) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+n.admin+path, rd)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s on %s: %v", method, path, n.dc, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s on %s: %v in %s", method, path, n.dc, err, b)
		}
	}
	return resp.StatusCode, nil
}

// layOutAdminFleet starts the fleet's datacenters on dcNet.1-n and lays out
// three gossiping nodes with their admin endpoints on nodeNet.1-3 (us-east,
// us-west, eu-west), writing their configs: us-west joins us-east on both
// pools, eu-west joins it on the WAN. A caller may change a config before
// startAdminFleet.
func layOutAdminFleet(t *testing.T, dcNet, nodeNet string) (east, west, eu *adminNode) {
	t.Helper()
	dcs := map[string]*killableDC{}
	for i, d := range fleetTopology {
		dcs[d.name] = startKillableDC(t, d.name, fmt.Sprintf("%s.%d", dcNet, i+1))
	}
	dir := t.TempDir()
	var nodes []*adminNode
	for i, dc := range []string{"us-east", "us-west", "eu-west"} {
		ip := fmt.Sprintf("%s.%d", nodeNet, i+1)
		n := &adminNode{fleetNode: fleetNode{dc: dc, ip: ip, config: filepath.Join(dir, dc+".yaml")}}
		n.listen = fmt.Sprintf("%s:%d", ip, freePort(t, ip))
		n.lan = fmt.Sprintf("%s:%d", ip, freePort(t, ip))
		n.wan = fmt.Sprintf("%s:%d", ip, freePort(t, ip))
		n.admin = fmt.Sprintf("%s:%d", ip, freePort(t, ip))
		nodes = append(nodes, n)
	}
	east, west, eu = nodes[0], nodes[1], nodes[2]
	writeAdminFleetConfig(t, east, dcs, nil, nil)
	writeAdminFleetConfig(t, west, dcs, []string{east.lan}, []string{east.wan})
	writeAdminFleetConfig(t, eu, dcs, nil, []string{east.wan})
	return east, west, eu
}

// startAdminFleet starts the nodes with the fleet's gossip key and admin
// token.
func startAdminFleet(t *testing.T, nodes ...*adminNode) {
	t.Helper()
	t.Setenv(configs.GossipKeyEnv, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	t.Setenv(configs.AdminTokenEnv, e2eAdminToken)
	for _, n := range nodes {
		n.proc = startProxy(t, n.config, n.listen)
	}
}

// servedBy sends GET /users/<user>/feed through n and returns the
// datacenter that answered.
func servedBy(t *testing.T, n *adminNode, user int) string {
	t.Helper()
	c := &fasthttp.HostClient{Addr: n.listen, ReadTimeout: 5 * time.Second}
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI(fmt.Sprintf("http://%s/users/%d/feed", n.listen, user))
	if err := c.Do(&req, &resp); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("user %d via %s: %v %d %s", user, n.dc, err, resp.StatusCode(), resp.Body())
	}
	return string(resp.Header.Peek("X-Served-By"))
}

// mapOf is what a node's admin endpoint says of one bucket.
func mapOf(t *testing.T, n *adminNode, bucket uint32) proxy.BucketView {
	var b proxy.BucketView
	if code := adminCall(t, n, "GET", fmt.Sprintf("/admin/buckets/%d", bucket), "", &b); code != 200 {
		t.Fatalf("GET bucket on %s: %d", n.dc, code)
	}
	return b
}

// Pins and drains made through one node's admin endpoint change routing on
// that node at once and on the rest of a 3-node fleet (two continents)
// within gossip's time; two nodes changing the same bucket at the same
// time end with the same map everywhere (highest version, then node name).
func TestEndToEndAdminChangesSpreadAcrossTheFleet(t *testing.T) {
	east, west, eu := layOutAdminFleet(t, "127.0.8", "127.0.7")
	all := []*adminNode{east, west, eu}
	startAdminFleet(t, all...)
	for _, n := range all {
		deadline := time.Now().Add(3 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", n.admin, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				if !strings.Contains(n.proc.logs.String(), "admin endpoint") {
					t.Skip("`socialroute serve` does not start the admin endpoint yet: serve.go must call startAdmin (cmd/socialroute/admin.go)")
				}
				t.Fatalf("%s's admin endpoint does not listen on %s: %v", n.dc, n.admin, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Ready once serving and joined: every node sees the other two.
	for _, n := range all {
		waitFor(t, n.dc+" ready with 3 members", func() bool {
			var m struct {
				Members []json.RawMessage `json:"members"`
			}
			var ready struct {
				Ready bool `json:"ready"`
			}
			return adminCall(t, n, "GET", "/readyz", "", &ready) == 200 && ready.Ready &&
				adminCall(t, n, "GET", "/admin/members", "", &m) == 200 && len(m.Members) == 3
		})
	}

	// A US user, its bucket and its datacenter, as the endpoint explains it.
	const user = 42
	var e proxy.Explanation
	if code := adminCall(t, east, "GET", fmt.Sprintf("/admin/route?path=/users/%d/feed", user), "", &e); code != 200 || e.Chosen == "" {
		t.Fatalf("route: %d %+v", code, e)
	}
	if e.Home != "us" {
		t.Skipf("user %d is homed in %s; the test wants a US user", user, e.Home)
	}
	for _, n := range all {
		if got := servedBy(t, n, user); got != e.Chosen {
			t.Fatalf("before any change user %d via %s served by %s, want %s", user, n.dc, got, e.Chosen)
		}
	}

	// 1. Pin the bucket to eu-north through us-west: at once there, then
	// everywhere, at the same map version.
	var pin struct {
		Changed    bool             `json:"changed"`
		MapVersion uint64           `json:"map_version"`
		Bucket     proxy.BucketView `json:"bucket"`
	}
	pinned := time.Now()
	if code := adminCall(t, west, "POST", fmt.Sprintf("/admin/buckets/%d/pin", e.Bucket), `{"datacenter": "eu-north"}`, &pin); code != 200 || !pin.Changed {
		t.Fatalf("pin: %d %+v", code, pin)
	}
	if got := servedBy(t, west, user); got != "eu-north" {
		t.Fatalf("right after the pin, us-west's node sent user %d to %s", user, got)
	}
	for _, n := range all {
		waitFor(t, n.dc+" to follow the pin", func() bool { return servedBy(t, n, user) == "eu-north" })
		if b := mapOf(t, n, e.Bucket); b.Pinned != "eu-north" || b.MapVersion != pin.MapVersion {
			t.Fatalf("%s says bucket %d: %+v, want pinned to eu-north at version %d", n.dc, e.Bucket, b, pin.MapVersion)
		}
	}
	t.Logf("pin through us-west followed by the whole fleet within %v", time.Since(pinned).Round(time.Millisecond))

	// 2. Drain eu-north through eu-west: the pinned bucket falls back to
	// its list (a US datacenter), here at once, everywhere soon.
	var drain struct {
		Changed    bool   `json:"changed"`
		MapVersion uint64 `json:"map_version"`
	}
	if code := adminCall(t, eu, "POST", "/admin/datacenters/eu-north/drain", "", &drain); code != 200 || !drain.Changed || drain.MapVersion <= pin.MapVersion {
		t.Fatalf("drain: %d %+v", code, drain)
	}
	if got := servedBy(t, eu, user); got != e.Chosen {
		t.Fatalf("right after the drain, eu-west's node sent user %d to %s, want %s", user, got, e.Chosen)
	}
	for _, n := range all {
		waitFor(t, n.dc+" to follow the drain", func() bool { return servedBy(t, n, user) == e.Chosen })
		var v proxy.DatacentersView
		adminCall(t, n, "GET", "/admin/datacenters", "", &v)
		if v.MapVersion != drain.MapVersion || v.Datacenters[4].Name != "eu-north" || v.Datacenters[4].State != "drained" {
			t.Fatalf("%s after the drain: version %d, %+v", n.dc, v.MapVersion, v.Datacenters[4])
		}
	}

	// 3. us-east and eu-west pin the same bucket to different datacenters
	// at the same moment. Whatever the timing, the fleet ends on one map:
	// the higher version, or at equal versions the greater node name.
	var wg sync.WaitGroup
	results := map[string]uint64{}
	var mu sync.Mutex
	for n, dc := range map[*adminNode]string{east: "us-central", eu: "us-west"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct {
				MapVersion uint64 `json:"map_version"`
			}
			// Not adminCall: it may not stop the test from this goroutine.
			code, err := adminDo(n, "POST", fmt.Sprintf("/admin/buckets/%d/pin", e.Bucket), fmt.Sprintf(`{"datacenter": %q}`, dc), &r)
			if err != nil || code != 200 {
				t.Errorf("concurrent pin on %s: %d %v", n.dc, code, err)
			}
			mu.Lock()
			results["edge-"+n.dc] = r.MapVersion
			mu.Unlock()
		}()
	}
	wg.Wait()
	winner, want := "edge-us-east", "us-central"
	if v, ev := results["edge-eu-west"], results["edge-us-east"]; v > ev || (v == ev && "edge-eu-west" > "edge-us-east") {
		winner, want = "edge-eu-west", "us-west"
	}
	version := max(results["edge-eu-west"], results["edge-us-east"])
	for _, n := range all {
		waitFor(t, n.dc+" to settle the conflict", func() bool {
			b := mapOf(t, n, e.Bucket)
			return b.Pinned == want && b.MapVersion == version
		})
		var v proxy.DatacentersView
		adminCall(t, n, "GET", "/admin/datacenters", "", &v)
		if v.MapOrigin != winner {
			t.Fatalf("%s holds version %d from %s, want %s's", n.dc, v.MapVersion, v.MapOrigin, winner)
		}
		waitFor(t, n.dc+" to route by the winner", func() bool { return servedBy(t, n, user) == want })
	}
	t.Logf("concurrent pins (versions %v): every node kept %s's, pinned to %s", results, winner, want)

	// 4. Undo through us-east: unpin and undrain; all back to the start.
	if code := adminCall(t, east, "DELETE", fmt.Sprintf("/admin/buckets/%d/pin", e.Bucket), "", nil); code != 200 {
		t.Fatalf("unpin: %d", code)
	}
	if code := adminCall(t, east, "POST", "/admin/datacenters/eu-north/undrain", "", nil); code != 200 {
		t.Fatalf("undrain: %d", code)
	}
	for _, n := range all {
		waitFor(t, n.dc+" back to the start", func() bool {
			b := mapOf(t, n, e.Bucket)
			return b.Pinned == "" && servedBy(t, n, user) == e.Chosen
		})
	}
}

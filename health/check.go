package health

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// failsToMarkDown is how many checks in a row an upstream must fail before
// it counts as unhealthy: one lost SYN is not an outage.
const failsToMarkDown = 2

// checkLoop checks this node's own datacenter's upstreams every
// CheckInterval and gossips how many are healthy. Remote nodes learn the
// datacenter's health from that instead of probing across the ocean.
func (c *Cluster) checkLoop(ctx context.Context) {
	defer c.done.Done()
	ups := c.opts.Upstreams
	if len(ups) == 0 {
		return
	}
	fails := make([]int, len(ups))
	client := &http.Client{Timeout: c.opts.CheckTimeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: c.opts.CheckTLS}}
	tick := time.NewTicker(c.opts.CheckInterval)
	defer tick.Stop()
	for {
		ok := make([]bool, len(ups))
		var wg sync.WaitGroup
		for i, addr := range ups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok[i] = c.check(ctx, client, addr)
			}()
		}
		wg.Wait()
		healthy := 0
		for i := range ups {
			if ok[i] {
				fails[i] = 0
			} else {
				fails[i]++
			}
			if fails[i] < failsToMarkDown {
				healthy++
			}
		}
		c.mu.Lock()
		changed := int(c.state.Healthy) != healthy
		c.state.Healthy = uint16(healthy)
		var err error
		if changed {
			err = c.publishMeta()
		}
		c.mu.Unlock()
		if changed {
			c.log.Info("own datacenter's upstreams checked", "datacenter", c.opts.Datacenter, "healthy", healthy, "of", len(ups))
			c.gossipMeta(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check is one probe of one upstream: a TCP connect (and, with CheckTLS,
// a verified handshake), or an HTTP(S) GET of CheckPath answered with
// 2xx: a web tier that answers 500 to everything is unhealthy, which a
// connect alone cannot see.
func (c *Cluster) check(ctx context.Context, client *http.Client, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CheckTimeout)
	defer cancel()
	if c.opts.CheckPath == "" {
		var conn net.Conn
		var err error
		if c.opts.CheckTLS != nil {
			conn, err = (&tls.Dialer{Config: c.opts.CheckTLS}).DialContext(ctx, "tcp", addr)
		} else {
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	scheme := "http://"
	if c.opts.CheckTLS != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+c.opts.CheckPath, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

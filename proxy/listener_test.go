package proxy

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

func TestListenReusePort(t *testing.T) {
	t.Parallel()
	first, err := Listen(context.Background(), configs.Listen{Address: "127.0.0.1:0", ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	addr := first.Addr().String()
	// Without reuse_port the address is taken: a double start fails.
	if ln, err := Listen(context.Background(), configs.Listen{Address: addr}); err == nil {
		ln.Close()
		t.Fatal("a second plain listener bound an address in use")
	}
	// With it, the upgraded process binds beside the old one.
	second, err := Listen(context.Background(), configs.Listen{Address: addr, ReusePort: true})
	if err != nil {
		t.Fatalf("second reuse_port listener: %v", err)
	}
	second.Close()
}

// The bug this pins down: fasthttp's shutdown closes idle keep-alive
// connections at once, so a request a client writes at that instant gets no
// answer. During the drain a busy connection gets its next answer, with
// Connection: close, and only then ends.
func TestShutdownAnswersBeforeClosingKeepAlive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	send := func() *fasthttp.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET /feed HTTP/1.1\r\nHost: proxy.test\r\nX-User-ID: 5\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		var resp fasthttp.Response
		if err := resp.Read(r); err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return &resp
	}
	if resp := send(); resp.StatusCode() != 200 || resp.ConnectionClose() {
		t.Fatalf("before shutdown: %d close=%v", resp.StatusCode(), resp.ConnectionClose())
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- h.srv.Shutdown(context.Background()) }()
	// The listener closes first.
	deadline := time.Now().Add(2 * time.Second)
	for !h.srv.draining.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := h.ln.Dial(); err == nil {
		// fasthttputil's in-memory listener refuses once closed.
		t.Errorf("the listener still accepts during the drain")
	}
	// The kept-alive connection is answered, and told to close.
	resp := send()
	if resp.StatusCode() != 200 || !resp.ConnectionClose() {
		t.Errorf("during the drain: status %d, Connection: close = %v", resp.StatusCode(), resp.ConnectionClose())
	}
	c.Close()
	if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > drainGrace+3*time.Second { // ends, not waits for some other timeout; generous for a noisy machine
		t.Errorf("Shutdown took %v with no connection left open", d)
	}
}

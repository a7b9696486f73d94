package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
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

// failingListener fails its first Accepts with errs, then accepts from ln.
type failingListener struct {
	net.Listener
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

// exhaustedListener fails every Accept with EMFILE until closed, and
// counts the calls.
type exhaustedListener struct {
	net.Listener
	calls  atomic.Int32
	closed atomic.Bool
}

func (l *exhaustedListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
}

// Close ends a wait for descriptors at once: with the wait grown to
// 640 ms, Accept returns as soon as the listener is closed, not when the
// wait is over.
func TestPatientListenerCloseEndsTheWait(t *testing.T) {
	ln := &exhaustedListener{Listener: fasthttputil.NewInmemoryListener()}
	patient := newPatientListener(ln, slog.New(slog.DiscardHandler))
	returned := make(chan error, 1)
	go func() {
		_, err := patient.Accept()
		returned <- err
	}()
	// The 8th call starts the 640 ms wait (5, 10, ..., 320 ms before it).
	waitUntil(t, "eight accept attempts", func() bool { return ln.calls.Load() >= 8 })
	start := time.Now()
	patient.Close()
	select {
	case err := <-returned:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
		// A behaviour bound, far from both outcomes: about 0, against
		// the rest of a 640 ms wait.
		if d := time.Since(start); d > 300*time.Millisecond {
			t.Fatalf("Accept returned %v after Close", d.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// Out of file descriptors (a burst past the limit), the proxy waits and
// accepts again; it does not stop serving, which would end the process.
// Any other accept error still ends Serve.
func TestServeOutlivesRunningOutOfDescriptors(t *testing.T) {
	h := newHarness(t, nil)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	ln := &failingListener{Listener: fasthttputil.NewInmemoryListener(), errs: []error{emfile, emfile, emfile}}
	patient := newPatientListener(ln, slog.New(slog.DiscardHandler))
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := patient.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := ln.Listener.(*fasthttputil.InmemoryListener).Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case got := <-accepted:
		got.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after three EMFILEs")
	}
	// Serve itself: a listener that is out of descriptors twice, then
	// serves a request.
	inner := fasthttputil.NewInmemoryListener()
	srv, err := New(h.cfg, nil, Options{Logger: slog.New(slog.DiscardHandler), Dial: h.dial})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(&failingListener{Listener: inner, errs: []error{emfile, emfile}}) }()
	// The in-memory Dial waits for an Accept: bounded, so that a Serve
	// that gave up fails the test instead of hanging it.
	client := &fasthttp.HostClient{Addr: "proxy.test", Dial: func(string) (net.Conn, error) {
		dialed := make(chan net.Conn, 1)
		go func() {
			if c, err := inner.Dial(); err == nil {
				dialed <- c
			}
		}()
		select {
		case c := <-dialed:
			return c, nil
		case err := <-served:
			return nil, fmt.Errorf("Serve returned %v", err)
		case <-time.After(5 * time.Second):
			return nil, errors.New("not accepted in 5 s")
		}
	}}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://proxy.test/")
	req.Header.Set("X-User-ID", "42")
	if err := client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("after EMFILE: %v, status %d", err, resp.StatusCode())
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v", err)
	default:
	}
	// Another error is not waited out.
	other := &failingListener{Listener: fasthttputil.NewInmemoryListener(), errs: []error{errors.New("accept: something else")}}
	if _, err := newPatientListener(other, slog.New(slog.DiscardHandler)).Accept(); err == nil {
		t.Fatal("a non-exhaustion error was swallowed")
	}
	_ = srv.Shutdown(context.Background())
}

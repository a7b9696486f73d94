package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// Listen opens the client-facing TCP listener for l. With l.ReusePort it
// sets SO_REUSEPORT, so that during an upgrade the new process binds the
// same address while the old one still serves (the kernel spreads new
// connections over both until the old one closes its socket).
func Listen(ctx context.Context, l configs.Listen) (net.Listener, error) {
	var lc net.ListenConfig
	if l.ReusePort {
		lc.Control = reusePort
	}
	// The error is net's own (it names the address); callers say which
	// listener it was.
	return lc.Listen(ctx, "tcp", l.Address)
}

// wrapListener stacks what the config asks for on a raw listener: each
// socket a turnConn (the cheaper read/write turns), then the
// PROXY protocol (the header precedes the TLS handshake on the
// wire), then listen.max_conns_per_ip (counting the header's client),
// then TLS. fasthttp sees tls.Conns, so ctx.IsTLS() and
// X-Forwarded-Proto follow, and RemoteAddr is the PROXY header's client.
func (s *Server) wrapListener(ln net.Listener) (net.Listener, error) {
	l := s.cur.Load().cfg.Listen
	ln = turnListener{newPatientListener(ln, s.log)}
	if l.ProxyProtocol != nil {
		var err error
		if ln, err = proxyProtocolListener(ln, l.ProxyProtocol); err != nil {
			return nil, err
		}
	}
	if s.clients != nil {
		ln = limitListener{ln, s.clients}
	}
	if s.tlsConf != nil {
		ln = tls.NewListener(ln, s.tlsConf)
	}
	return ln, nil
}

// patientListener waits out the errors of an exhausted machine in Accept
// (no file descriptors, no socket buffers, no memory) instead of returning
// them: fasthttp's Serve retries only timeouts, so one burst past the
// descriptor limit would end Serve, and with it the process and every
// connection it held. HAProxy pauses its listener the same way. The wait
// starts at 5 ms and doubles up to a second (net/http's schedule); the
// connections being served meanwhile close and free what was short. Close
// ends a wait at once: Shutdown must not sit out a second of it.
type patientListener struct {
	net.Listener
	log    *slog.Logger
	once   sync.Once
	closed chan struct{}
}

func newPatientListener(ln net.Listener, log *slog.Logger) *patientListener {
	return &patientListener{Listener: ln, log: log, closed: make(chan struct{})}
}

func (l *patientListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *patientListener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !exhausted(err) {
			return c, err
		}
		if wait == 0 {
			wait = 5 * time.Millisecond
			l.log.Warn("accept: the machine is out of a resource; accepting again when it frees up", "error", err)
		} else {
			wait = min(2*wait, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed // what fasthttp's Serve takes for the end
		}
	}
}

// exhausted reports whether an accept error says the machine ran out of
// something the next connections will give back.
func exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// drainGrace bounds the first phase of a drain, while busy keep-alive
// connections are closed after their next response: a client that sends
// a request at the instant the server closes an idle connection sees it
// fail without an answer, so the server closes idle connections only after
// giving busy ones this long to finish cleanly.
const drainGrace = time.Second

// drainListener is the listener Serve accepts on, so that Shutdown can stop
// accepting before fasthttp's own shutdown. Close is idempotent: fasthttp
// closes it again.
type drainListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *drainListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// AnnounceDrain starts serveRequest's Connection: close answers before
// Shutdown, for listen.drain_delay, while the listener still accepts: a
// client's next request then comes on a new connection, which the load
// balancer sends elsewhere once it has seen /readyz fail.
func (s *Server) AnnounceDrain() { s.draining.Store(true) }

// serveRequest is the fasthttp handler: the request path, and during a
// drain a Connection: close on every response, so that a client's
// keep-alive connection ends after an answer and its next request goes to
// a new connection (to the upgraded process, under listen.reuse_port).
func (s *Server) serveRequest(ctx *fasthttp.RequestCtx) {
	s.handle(ctx)
	if s.draining.Load() {
		ctx.SetConnectionClose()
	}
}

// drain is the first phase of Shutdown: stop accepting (with
// listen.reuse_port, new connections now go to the other process), then
// answer every request with Connection: close until the connections are
// gone, drainGrace has passed, or ctx ends. fasthttp's shutdown then closes
// what is left: connections idle the whole time. served is closed when
// Serve has returned.
func (s *Server) drain(ctx context.Context, ln *drainListener, served <-chan struct{}) {
	s.draining.Store(true)
	if ln == nil {
		return // Serve was never called
	}
	_ = ln.Close()
	deadline := time.Now().Add(drainGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	select {
	case <-served:
	case <-ctx.Done():
		return
	case <-time.After(time.Until(deadline)):
		return
	}
	// Once Serve has returned and before fasthttp's shutdown starts,
	// GetOpenConnectionsCount is one short (it discounts the accept loop
	// that has ended). Should that change, the drain only waits its whole
	// grace: slower, never less safe.
	for s.http.GetOpenConnectionsCount()+1 > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

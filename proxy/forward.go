package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// errUpstreamStatus marks an upstream answer of 502, 503 or 504: the
// datacenter's web tier is unwell. It counts against the upstream's breaker
// and makes an idempotent request retry elsewhere; if no retry is left, the
// upstream's own response goes to the client.
var errUpstreamStatus = errors.New("proxy: upstream answered with a gateway error")

// handle is the request path: check, route, rewrite headers, forward.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	st := s.cur.Load()
	s.stats.Requests.Add(1)
	req := &ctx.Request

	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	// The routing key first. Its table entry is in memory no cache holds
	// (each request names another user), so its loads start now and the
	// checks and header rewrite below run while they arrive. The key and
	// viewer are copied: the rewrite may reuse the bytes they came from.
	key, _, refused := st.rules.extract(req)
	var h uint64
	if key != nil {
		sc.key = append(sc.key[:0], key...)
		key = sc.key
		h = hashing.HashKey(key)
		st.router.prefetchGroup(h)
	}
	var viewer []byte
	if v := req.Header.Peek(st.viewer); len(v) > 0 {
		sc.viewer = append(sc.viewer[:0], v...)
		viewer = sc.viewer
	}
	if code, reason := screen(&req.Header, st.screen, sc); code != 0 {
		ctx.SetConnectionClose() // the connection's framing can no longer be trusted
		s.reject(ctx, code, reason)
		st.metrics.observe(ctx, -1, false, nil)
		return
	}
	for _, n := range sc.names { // underscore headers the policy drops
		req.Header.DelBytes(n)
	}
	switch {
	case refused != "":
		s.reject(ctx, fasthttp.StatusBadRequest, refused)
		st.metrics.observe(ctx, -1, false, nil)
		return
	case req.Header.IsConnect() || req.Header.IsTrace():
		// CONNECT would ask the web tier for a tunnel, TRACE would echo
		// the headers this proxy adds; neither is the web tier's to take.
		s.reject(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(req.Header.Method())+" not forwarded")
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") // after: reject resets the response
		st.metrics.observe(ctx, -1, false, nil)
		return
	case hasUserinfo(req.Header.RequestURI()):
		// fasthttp would turn it into an Authorization header of its own.
		s.reject(ctx, fasthttp.StatusBadRequest, "userinfo in the request URI")
		st.metrics.observe(ctx, -1, false, nil)
		return
	case key != nil && !validKey(key, st.maxKeyLen):
		s.reject(ctx, fasthttp.StatusBadRequest, "malformed routing key")
		st.metrics.observe(ctx, -1, false, nil)
		return
	case key == nil && st.noKeyReject:
		s.reject(ctx, fasthttp.StatusBadRequest, "no routing key")
		st.metrics.observe(ctx, -1, false, nil)
		return
	}
	if key != nil {
		st.router.prefetchSlot(h)
	}
	write := isWrite(&req.Header)

	clientClose := req.Header.ConnectionClose()
	req.Header.ResetConnectionClose() // keep the pooled upstream connection alive
	stripRequestHeaders(&req.Header, sc)
	setForwardedHeaders(ctx, sc)
	req.Header.Add("Via", viaValue)
	if u := req.URI(); !bytes.Equal(u.Scheme(), httpScheme) {
		// An absolute-form https URI would make fasthttp refuse the plain
		// upstream connection; the scheme of the hop to the web tier is
		// ours to choose (X-Forwarded-Proto tells the client's).
		u.SetSchemeBytes(httpScheme)
	}

	var d Decision
	st.router.route(key, h, viewer, &d, true, write)
	if d.Next < 0 {
		if clientClose {
			ctx.SetConnectionClose()
		}
		s.fail(ctx, fasthttp.StatusServiceUnavailable, "no usable datacenter")
		st.metrics.observe(ctx, -1, false, &d)
		return
	}
	if d.Source != SourceNone {
		sc.bucket = strconv.AppendUint(sc.bucket[:0], uint64(d.Bucket), 10)
		req.Header.SetCanonical(keyBucket, sc.bucket)
	}

	dc, err := s.forward(ctx, st, &d)
	resp := &ctx.Response
	answered := err == nil || errors.Is(err, errUpstreamStatus)
	switch {
	case answered:
		if sb, ok := resp.BodyStream().(*streamBody); ok {
			// Each read gets the whole upstream.timeout, not what a late
			// retry had left.
			sb.client, sb.writeTimeout, sb.timeout = ctx.Conn(), s.http.WriteTimeout, st.timeout
		}
		resp.Header.ResetConnectionClose() // the upstream's connection, not the client's
		stripResponseHeaders(&resp.Header, sc, resp.Header.ContentLength() == -1 && !resp.IsBodyStream())
		resp.Header.Add("Via", viaValue)
		if st.respHeaders {
			if d.Source != SourceNone {
				resp.Header.SetCanonical(keyBucket, sc.bucket)
			}
			sc.buf = append(sc.buf[:0], st.pools[dc].name...)
			resp.Header.SetCanonical(keyDC, sc.buf)
			if d.Spread > 1 {
				// "sibling/spread": which of the hot key's buckets served it.
				sc.buf = strconv.AppendInt(sc.buf[:0], int64(d.Sibling), 10)
				sc.buf = append(sc.buf, '/')
				sc.buf = strconv.AppendInt(sc.buf, int64(d.Spread), 10)
				resp.Header.SetCanonical(keySpread, sc.buf)
			}
		}
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		s.fail(ctx, fasthttp.StatusGatewayTimeout, "upstream timed out")
	case errors.Is(err, health.ErrBreakerOpen), errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, errNoUpstream):
		s.fail(ctx, fasthttp.StatusServiceUnavailable, "no upstream available")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.fail(ctx, fasthttp.StatusBadGateway, "upstream response over upstream.max_response_body_size")
	case isOversized(err):
		s.fail(ctx, fasthttp.StatusBadGateway, "upstream response headers over upstream.max_response_header_bytes")
	case errors.Is(err, errUpgrade):
		s.fail(ctx, fasthttp.StatusBadGateway, "upstream switched protocols (101), which this proxy does not relay")
	default:
		s.fail(ctx, fasthttp.StatusBadGateway, "upstream failed")
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
	st.metrics.observe(ctx, dc, answered, &d)
}

var errNoUpstream = errors.New("proxy: no upstream ready")

// Scheme names as bytes: the upstream hop's scheme, and X-Forwarded-Proto's
// values.
var (
	httpScheme  = []byte("http")
	httpsScheme = []byte("https")
)

// forward sends the request along d's plan: to an upstream of the chosen
// datacenter, and, when that fails and the request may be retried, to the
// next usable datacenter on the plan (another failure domain), or, when the
// plan has none, to another upstream of the same one. It returns the index
// of the datacenter that answered.
func (s *Server) forward(ctx *fasthttp.RequestCtx, st *state, d *Decision) (dc int, err error) {
	req, resp := &ctx.Request, &ctx.Response
	retryable := isIdempotent(req)
	// An HTTP/1.0 request may come without Host; fasthttp will not write
	// one without it (before any byte, yet the failure counted against the
	// upstream's breaker: a few opened every breaker). It gets the
	// upstream's address, as fasthttp's own client would give it.
	hostless := len(req.Header.Host()) == 0 && len(req.URI().Host()) == 0
	began := ctx.Time()
	if began.IsZero() { // a ctx no server stamped
		began = time.Now()
	}
	deadline := began.Add(st.reqTimeout)
	var failed uint64 // the datacenter at pos's upstreams that failed this request (pool.pick's skip)
	pos, tries, sent := d.Next, 0, 0
	stayed := 0 // upstreams of the datacenter at pos tried after one that took nothing
	// Each pass either sends (bounded by retries) or moves on along the
	// plan, so the loop ends; the guard is belt and braces.
	limit := len(d.Plan) + st.retries + 2 // grows by each stay below
	tried := dc                           // the datacenter the last attempt went to: its error is the one to answer with
	for guard := 0; pos >= 0 && guard < limit; guard++ {
		dc = int(d.Plan[pos])
		u := st.pools[dc].pick(failed)
		if u == nil {
			pos, stayed, failed = st.router.nextUsable(d, pos+1), 0, 0
			err = errNoUpstream
			continue
		}
		// Each attempt gets the upstream timeout, or what is left of the
		// request's: a datacenter that swallows requests must not cost
		// (retries + 1) timeouts. The first counts from the request's
		// start, which fasthttp's server read already: the proxy spent
		// microseconds of it.
		start, timeout := began, st.timeout
		if tries > 0 {
			start = time.Now()
			if timeout = deadline.Sub(start); timeout <= 0 {
				s.stats.RetriesOutOfTime.Add(1)
				return tried, err // the last attempt's failure, or its 502/503/504
			}
			timeout = min(timeout, st.timeout)
			s.stats.Retries.Add(1)
		}
		tries++
		if hostless {
			req.Header.SetHost(u.addr)
			req.UseHostHeader = true
		}
		tried = dc
		// Cut short means less than half an attempt: a timeout then says
		// little of the upstream. With more, it had time to answer, and
		// its breaker counts the timeout (a datacenter that swallows
		// requests must open it during a failover too).
		short := timeout < st.timeout/2
		err = u.breaker.DoAt(start, func() error { return send(u, req, resp, start, timeout, short, retryable) })
		if err == nil {
			return dc, nil
		}
		s.log.Debug("upstream attempt failed", "upstream", u.addr, "datacenter", u.dc, "error", err)
		notSent := errors.Is(err, health.ErrBreakerOpen) || errors.Is(err, fasthttp.ErrNoFreeConns) || isDialError(err)
		if !notSent {
			sent++
			if !retryable || sent > st.retries || isOversized(err) || errors.Is(err, errUpgrade) {
				return dc, err // (another datacenter would send as large an answer)
			}
			// The web tier answered 502/503/504 itself: alive and
			// shedding load. When a continent runs at its limit, a retry
			// for each would double the load on what is left, so those
			// retries stay within the budget. A datacenter that died
			// (refused, reset, timed out) costs no idempotent request: its
			// retries are never denied.
			if errors.Is(err, errUpstreamStatus) && !s.retries.allow(time.Now().Unix(), st.retryBudget) {
				s.stats.RetriesDenied.Add(1)
				return dc, err
			}
		}
		failed |= st.pools[dc].bit(u)
		busy := errors.Is(err, health.ErrBreakerOpen) || errors.Is(err, fasthttp.ErrNoFreeConns)
		if busy && stayed < len(st.pools[dc].upstreams)-1 && st.pools[dc].pick(failed) != nil {
			// The upstream took nothing and says nothing of its
			// datacenter (its breaker half-open with its probes out, its
			// connections all busy): another of the datacenter is still
			// the bucket's first choice, before the next datacenter,
			// whose share would grow by every such request. (A dial that
			// failed moves on: the datacenter may be gone.)
			stayed++
			limit++
			continue
		}
		stayed = 0
		if next := st.router.nextUsable(d, pos+1); next >= 0 {
			pos, failed = next, 0
		} else if st.pools[dc].pick(failed) == nil {
			return dc, err
		}
	}
	return dc, err
}

// send makes one attempt on upstream u, due timeout after start; short
// says the request's deadline cut timeout below half of upstream.timeout. A
// gateway-error status is returned as errUpstreamStatus with the response
// kept.
func send(u *upstream, req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, short, idempotent bool) error {
	if err := u.do(req, resp, start, timeout, idempotent); err != nil {
		if short && errors.Is(err, fasthttp.ErrTimeout) {
			return errOutOfTime // cut short by the request's deadline
		}
		return err
	}
	switch resp.StatusCode() {
	case fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable, fasthttp.StatusGatewayTimeout:
		return errUpstreamStatus
	case fasthttp.StatusSwitchingProtocols:
		return errUpgrade
	}
	return nil
}

// errOutOfTime is an attempt that timed out on what was left of its
// request's upstream.request_timeout, under half of upstream.timeout: it
// tells little of the upstream, so its breaker does not count it.
var errOutOfTime = fmt.Errorf("proxy: upstream.request_timeout ran out: %w", fasthttp.ErrTimeout)

// errUpgrade is an upstream's 101: the proxy strips Upgrade, so the web
// tier switched on its own, and the connection now speaks something this
// proxy does not relay.
var errUpgrade = errors.New("proxy: upstream switched protocols")

// isOversized reports an upstream answer over the proxy's limits (its body,
// or its headers): not the upstream failing, and not worth a retry (another
// datacenter would send as large an answer).
func isOversized(err error) bool {
	var small *fasthttp.ErrSmallBuffer
	return errors.Is(err, fasthttp.ErrBodyTooLarge) || errors.As(err, &small)
}

// mayContinue is fasthttp's ContinueHandler: a request that says Expect:
// 100-continue is screened before fasthttp tells the client to send its
// body, so one the proxy would refuse gets 417 and sends none (it used to
// get 100, send the body, then the 400).
func (s *Server) mayContinue(h *fasthttp.RequestHeader) bool {
	st := s.cur.Load()
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	if code, reason := screen(h, st.screen, sc); code != 0 {
		s.stats.Rejected.Add(1)
		s.stats.byCode[fasthttp.StatusExpectationFailed].Add(1)
		s.log.Debug("request refused before its body", "status", code, "reason", reason)
		return false
	}
	return true
}

// hasUserinfo reports whether an absolute-form request URI names a user
// ("http://user:pass@host/").
func hasUserinfo(uri []byte) bool {
	i := bytes.Index(uri, schemeSep)
	if i < 0 || bytes.IndexByte(uri[:i], '/') >= 0 {
		return false // origin form, or "://" only in the path
	}
	authority := uri[i+len(schemeSep):]
	if end := bytes.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	return bytes.IndexByte(authority, '@') >= 0
}

var schemeSep = []byte("://")

// isIdempotent reports whether a request may be sent twice: the idempotent
// methods of RFC 9110 section 9.2.2, or any request that carries an
// Idempotency-Key (the client promises the server deduplicates it).
func isIdempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete() || h.IsTrace() ||
		len(h.Peek("Idempotency-Key")) > 0
}

// isDialError reports a failure to connect: the request never left, so it
// may go elsewhere whatever its method.
func isDialError(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// setForwardedHeaders records the client for the web tier. This proxy is the
// edge: whatever X-Forwarded-For a client sent is its own claim, so it is
// replaced, not appended to.
func setForwardedHeaders(ctx *fasthttp.RequestCtx, sc *scratch) {
	h := &ctx.Request.Header
	sc.buf = sc.buf[:0]
	if ip, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		sc.buf = ip.Unmap().AppendTo(sc.buf)
	}
	h.SetCanonical(keyXFF, sc.buf)
	if ctx.IsTLS() {
		h.SetCanonical(keyXFP, httpsScheme)
	} else {
		h.SetCanonical(keyXFP, httpScheme)
	}
}

// handleParseError answers a request fasthttp could not read. It never
// reaches the routing core, let alone an upstream.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	// Timeout() alone, not net.Error: in-memory connections time out
	// with an error that has no Temporary.
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &small):
		s.reject(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request line and headers too large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.reject(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large")
	case errors.As(err, &timeout) && timeout.Timeout():
		s.reject(ctx, fasthttp.StatusRequestTimeout, "request not received in time")
	default:
		s.reject(ctx, fasthttp.StatusBadRequest, "malformed request")
	}
}

// reject answers a malformed request with a 4xx; it never reached an upstream.
func (s *Server) reject(ctx *fasthttp.RequestCtx, code int, reason string) {
	s.stats.Rejected.Add(1)
	s.stats.byCode[code%len(s.stats.byCode)].Add(1)
	s.answer(ctx, code, reason)
}

// fail answers with a 5xx the proxy made itself.
func (s *Server) fail(ctx *fasthttp.RequestCtx, code int, reason string) {
	s.stats.Failed.Add(1)
	s.stats.byCode[code%len(s.stats.byCode)].Add(1)
	s.answer(ctx, code, reason)
}

func (s *Server) answer(ctx *fasthttp.RequestCtx, code int, reason string) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(code)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetBodyString("socialroute: " + reason + "\n")
}

package proxy

import (
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// tlsBackend is a web server on a real loopback socket that speaks only
// TLS, with a certificate from ca for "web.us-a.internal", and, when
// clients is set, demands a client certificate signed by it. opts adjust
// the fasthttp server.
func tlsBackend(t *testing.T, ca *testCA, clients *testCA, opts ...func(*fasthttp.Server)) string {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "web", "web.us-a.internal")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clients != nil {
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		conf.ClientCAs = clients.pool
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Logger: quiet{}, Handler: func(ctx *fasthttp.RequestCtx) {
		st := ctx.TLSConnectionState()
		if st == nil {
			ctx.SetStatusCode(500)
			return
		}
		peer := "none"
		if len(st.PeerCertificates) > 0 {
			peer = st.PeerCertificates[0].Subject.CommonName
		}
		ctx.Response.Header.Set("X-Client-Cert", peer)
		ctx.SetBodyString("ok over tls")
	}}
	for _, o := range opts {
		o(srv)
	}
	go srv.Serve(tls.NewListener(ln, conf)) //nolint:errcheck // ends with Close
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// upstreamTLSProxy runs a proxy whose us-a datacenter is the one TLS
// backend at addr, with tlsConf as its tls section; keyless requests go
// to us-a (the node's datacenter).
func upstreamTLSProxy(t *testing.T, addr string, ut *configs.UpstreamTLS) (*Server, *fasthttp.HostClient, *configs.Config) {
	t.Helper()
	cfg := testConfig(t, func(c *configs.Config) {
		c.Datacenters[0].Upstreams = []string{addr}
		c.Datacenters[0].TLS = ut
	})
	srv, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { ln.Close() })
	return srv, &fasthttp.HostClient{Addr: "proxy.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}, cfg
}

func getKeyless(t *testing.T, c *fasthttp.HostClient) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://proxy.test/home")
	resp := &fasthttp.Response{}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestUpstreamMutualTLS(t *testing.T) {
	t.Parallel()
	serverCA, clientCA := newTestCA(t), newTestCA(t)
	addr := tlsBackend(t, serverCA, clientCA)
	dir := t.TempDir()
	client := clientCA.issueFiles(t, dir, "proxy-client", "socialroute-proxy")
	_, c, _ := upstreamTLSProxy(t, addr, &configs.UpstreamTLS{
		CAFile:     writeFile(t, dir, "ca.pem", serverCA.pem),
		CertFile:   client.CertFile,
		KeyFile:    client.KeyFile,
		ServerName: "web.us-a.internal",
	})
	resp := getKeyless(t, c)
	if resp.StatusCode() != 200 || string(resp.Body()) != "ok over tls" {
		t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	if got := string(resp.Header.Peek("X-Client-Cert")); got != "socialroute-proxy" {
		t.Errorf("upstream saw client certificate %q, want socialroute-proxy", got)
	}
}

// A TLS upstream that closes an idle connection sends close_notify before
// its FIN, so bytes wait on the dead connection: the look before use must
// still see it closed, or a POST drawn onto it fails.
func TestUpstreamTLSIdleCloseCostsNoPOST(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	closed := make(closeWatch, 16)
	addr := tlsBackend(t, ca, nil, func(s *fasthttp.Server) {
		s.IdleTimeout = 20 * time.Millisecond
		s.ConnState = closed.onState
	})
	srv, c, _ := upstreamTLSProxy(t, addr, &configs.UpstreamTLS{
		CAFile:     writeFile(t, t.TempDir(), "ca.pem", ca.pem),
		ServerName: "web.us-a.internal",
	})
	for i := range 3 {
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://proxy.test/upload")
		req.SetBodyString("photo")
		resp := &fasthttp.Response{}
		err := c.DoTimeout(req, resp, 10*time.Second)
		fasthttp.ReleaseRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("POST %d after the upstream closed its idle connection: %d %s", i, resp.StatusCode(), resp.Body())
		}
		closed.wait(t, 2*idlePeekAfter) // the upstream closes its side after 20 ms
	}
	if st := srv.Stats(); st.Failed.Load() != 0 {
		t.Fatalf("%d failures for connections closed while idle", st.Failed.Load())
	}
}

func TestUpstreamTLSRefusesUnknownAuthority(t *testing.T) {
	t.Parallel()
	serverCA, otherCA := newTestCA(t), newTestCA(t)
	addr := tlsBackend(t, serverCA, nil)
	dir := t.TempDir()
	_, c, _ := upstreamTLSProxy(t, addr, &configs.UpstreamTLS{
		CAFile:     writeFile(t, dir, "ca.pem", otherCA.pem),
		ServerName: "web.us-a.internal",
	})
	if resp := getKeyless(t, c); resp.StatusCode() == 200 {
		t.Fatalf("a backend signed by an untrusted CA was used: %s", resp.Body())
	}
}

func TestUpstreamTLSWithoutClientCertificateRefused(t *testing.T) {
	t.Parallel()
	serverCA, clientCA := newTestCA(t), newTestCA(t)
	addr := tlsBackend(t, serverCA, clientCA)
	dir := t.TempDir()
	_, c, _ := upstreamTLSProxy(t, addr, &configs.UpstreamTLS{
		CAFile:     writeFile(t, dir, "ca.pem", serverCA.pem),
		ServerName: "web.us-a.internal",
	})
	if resp := getKeyless(t, c); resp.StatusCode() == 200 {
		t.Fatal("an mTLS backend answered a proxy without a client certificate")
	}
}

// A reload that changes a datacenter's CA file rebuilds its upstream
// clients; one with an unreadable CA fails and changes nothing.
func TestUpstreamTLSReload(t *testing.T) {
	t.Parallel()
	serverCA, otherCA := newTestCA(t), newTestCA(t)
	addr := tlsBackend(t, serverCA, nil)
	dir := t.TempDir()
	caPath := writeFile(t, dir, "ca.pem", otherCA.pem)
	srv, c, cfg := upstreamTLSProxy(t, addr, &configs.UpstreamTLS{CAFile: caPath, ServerName: "web.us-a.internal"})
	if resp := getKeyless(t, c); resp.StatusCode() == 200 {
		t.Fatal("untrusted backend used")
	}
	// The breaker may be open after the failure; a rebuilt upstream
	// starts with a fresh one.
	writeFile(t, dir, "ca.pem", serverCA.pem)
	if err := srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if resp := getKeyless(t, c); resp.StatusCode() != 200 {
		t.Fatalf("after the CA was fixed and reloaded: status %d: %s", resp.StatusCode(), resp.Body())
	}
	bad := *cfg
	bad.Datacenters = append([]configs.Datacenter(nil), cfg.Datacenters...)
	bad.Datacenters[0].TLS = &configs.UpstreamTLS{CAFile: dir + "/missing.pem"}
	if err := srv.Reload(&bad, nil); err == nil {
		t.Fatal("reload with a missing CA file succeeded")
	}
	if resp := getKeyless(t, c); resp.StatusCode() != 200 {
		t.Fatalf("after a failed reload: status %d", resp.StatusCode())
	}
}

package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	pool *x509.CertPool
}

var serials atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serials.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	return ca
}

// issued is a certificate and its key, parsed and in PEM.
type issued struct {
	leaf            *x509.Certificate
	certPEM, keyPEM []byte
	pair            tls.Certificate
}

// issue signs a leaf for the DNS names (server) or the common name
// (client).
func (ca *testCA) issue(t *testing.T, cn string, dns []string, client bool) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	is := &issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if is.pair, err = tls.X509KeyPair(is.certPEM, is.keyPEM); err != nil {
		t.Fatal(err)
	}
	is.leaf, _ = x509.ParseCertificate(der)
	return is
}

// writeAtomically replaces path the way a certificate tool should: a new
// file renamed over the old, so a reader never sees half of it.
func writeAtomically(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsWebServer is one datacenter's web tier for the TLS test: it records
// how each request reached it.
type tlsWebServer struct {
	dc, addr       string
	hits, notHTTPS atomic.Int64
	clientCNs      sync.Map // client certificate common name -> true
}

func startTLSWebServer(t *testing.T, dc, ip string, conf *tls.Config) *tlsWebServer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (this test needs all of 127.0.0.0/8 on loopback): %v", ip, err)
	}
	w := &tlsWebServer{dc: dc, addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			w.hits.Add(1)
			if r.Header.Get("X-Forwarded-Proto") != "https" {
				w.notHTTPS.Add(1)
			}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				w.clientCNs.Store(r.TLS.PeerCertificates[0].Subject.CommonName, true)
			}
			rw.Header().Set("X-Served-By", dc)
			rw.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
			io.WriteString(rw, "hello from "+dc)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	go srv.Serve(ln) //nolint:errcheck // ends at Close
	t.Cleanup(func() { srv.Close() })
	return w
}

// HTTPS at the edge, through the built binary: the certificate each SNI
// name asks for (the default one otherwise), TLS 1.1 refused, requests
// routed to the web tier with X-Forwarded-Proto https, one datacenter
// reached over mutual TLS with its own CA, and certificates replaced on
// SIGHUP for new connections while a connection opened before keeps
// working; a bad certificate at reload keeps the ones in force and the log
// says why.
func TestEndToEndTLS(t *testing.T) {
	edgeCA := newTestCA(t, "socialroute e2e edge CA")
	webCA := newTestCA(t, "us-east web tier CA") // the upstreams' own authority
	defaultV1 := edgeCA.issue(t, "default.e2e.test", []string{"default.e2e.test"}, false)
	shop := edgeCA.issue(t, "shop.e2e.test", []string{"shop.e2e.test", "*.shop.e2e.test"}, false)
	webCert := webCA.issue(t, "web.us-east.internal", []string{"web.us-east.internal"}, false)
	proxyClient := webCA.issue(t, "socialroute-proxy", nil, true)

	// us-east speaks TLS and wants the proxy's client certificate;
	// us-west speaks plain HTTP.
	east := startTLSWebServer(t, "us-east", "127.0.11.1", &tls.Config{
		Certificates: []tls.Certificate{webCert.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    webCA.pool,
		MinVersion:   tls.VersionTLS12,
	})
	west := startTLSWebServer(t, "us-west", "127.0.11.2", nil)

	dir := t.TempDir()
	files := map[string][]byte{
		"default.pem": defaultV1.certPEM, "default.key": defaultV1.keyPEM,
		"shop.pem": shop.certPEM, "shop.key": shop.keyPEM,
		"web-ca.pem": webCA.pem, "proxy-client.pem": proxyClient.certPEM, "proxy-client.key": proxyClient.keyPEM,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ip := "127.0.11.10"
	addr := fmt.Sprintf("%s:%d", ip, freePort(t, ip))
	config := filepath.Join(dir, "proxy.yaml")
	// Relative file names: resolved from the config's folder. The watcher
	// is slowed down so that SIGHUP is what reloads here.
	yaml := fmt.Sprintf(`node:
  name: tls-e2e
  datacenter: us-east
listen:
  address: %s
  shutdown_timeout: 5s
  tls:
    watch_interval: 1h
    certificates:
      - {cert_file: default.pem, key_file: default.key}
      - {cert_file: shop.pem, key_file: shop.key, server_names: ["shop.e2e.test", "*.shop.e2e.test"]}
upstream:
  timeout: 2s
buckets: 1024
continents:
  - name: us
datacenters:
  - name: us-east
    continent: us
    capacity: 100
    upstreams: [%q]
    tls: {ca_file: web-ca.pem, cert_file: proxy-client.pem, key_file: proxy-client.key, server_name: web.us-east.internal}
  - name: us-west
    continent: us
    capacity: 100
    upstreams: [%q]
routing:
  rules:
    - path: /users/{key}
log:
  level: info
`, addr, east.addr, west.addr)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, config, addr)
	waitFor(t, "the proxy to serve", func() bool { return strings.Contains(p.logs.String(), "msg=serving") })

	// handshake connects with sni (none if empty) and returns the
	// certificate served, unverified: the test compares it itself.
	handshake := func(sni string, minV, maxV uint16) (*x509.Certificate, uint16, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			ServerName: sni, InsecureSkipVerify: true, MinVersion: minV, MaxVersion: maxV,
		})
		if err != nil {
			return nil, 0, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return st.PeerCertificates[0], st.Version, nil
	}
	served := func(sni string) *x509.Certificate {
		t.Helper()
		cert, _, err := handshake(sni, 0, 0)
		if err != nil {
			t.Fatalf("handshake with SNI %q: %v", sni, err)
		}
		return cert
	}
	// verified checks the served certificate the way a browser would.
	verified := func(sni string, cert *x509.Certificate) error {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: sni, Roots: edgeCA.pool})
		return err
	}

	// 1. SNI.
	for _, c := range []struct {
		sni  string
		want *issued
	}{
		{"shop.e2e.test", shop}, {"SHOP.e2e.test", shop}, {"www.shop.e2e.test", shop},
		{"default.e2e.test", defaultV1}, {"unknown.e2e.test", defaultV1}, {"", defaultV1},
	} {
		got := served(c.sni)
		if !got.Equal(c.want.leaf) {
			t.Fatalf("SNI %q: served %s (serial %v), want %s (serial %v)", c.sni, got.Subject.CommonName, got.SerialNumber, c.want.leaf.Subject.CommonName, c.want.leaf.SerialNumber)
		}
		if c.want == shop || c.sni == "default.e2e.test" {
			if err := verified(strings.ToLower(c.sni), got); err != nil {
				t.Fatalf("SNI %q: %v", c.sni, err)
			}
		}
	}
	if _, v, _ := handshake("shop.e2e.test", 0, 0); v != tls.VersionTLS13 {
		t.Errorf("a client offering TLS 1.3 negotiated %s", tls.VersionName(v))
	}
	t.Logf("SNI: shop.e2e.test, SHOP.e2e.test, www.shop.e2e.test -> shop certificate; default.e2e.test, unknown.e2e.test, no SNI -> default certificate")

	// 2. Versions: 1.2 accepted, 1.1 and 1.0 refused.
	if _, v, err := handshake("shop.e2e.test", tls.VersionTLS12, tls.VersionTLS12); err != nil || v != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 client: version %s, %v", tls.VersionName(v), err)
	}
	for _, v := range []uint16{tls.VersionTLS11, tls.VersionTLS10} {
		_, _, err := handshake("shop.e2e.test", v, v)
		if err == nil {
			t.Fatalf("a %s handshake succeeded", tls.VersionName(v))
		}
		t.Logf("%s refused: %v", tls.VersionName(v), err)
	}

	// 3. Requests over HTTPS, routed to both datacenters; us-east's over
	// mutual TLS.
	dialProxy := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:     dialProxy,
		TLSClientConfig: &tls.Config{RootCAs: edgeCA.pool},
	}}
	byDC := map[string]int{}
	for user := range 200 {
		resp, err := client.Get(fmt.Sprintf("https://shop.e2e.test/users/%d/feed", user))
		if err != nil {
			t.Fatalf("user %d over HTTPS: %v", user, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("user %d over HTTPS: %d %s", user, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Seen-Proto"); got != "https" {
			t.Fatalf("user %d: the web tier saw X-Forwarded-Proto %q", user, got)
		}
		byDC[resp.Header.Get("X-Served-By")]++
	}
	client.CloseIdleConnections()
	t.Logf("200 users over HTTPS by datacenter: %v (us-east over mutual TLS)", byDC)
	if byDC["us-east"] == 0 || byDC["us-west"] == 0 {
		t.Fatalf("not both datacenters served: %v", byDC)
	}
	if n := east.notHTTPS.Load() + west.notHTTPS.Load(); n != 0 {
		t.Fatalf("%d requests reached the web tier without X-Forwarded-Proto https", n)
	}
	if _, ok := east.clientCNs.Load("socialroute-proxy"); !ok {
		t.Fatal("us-east did not see the proxy's client certificate")
	}
	if east.hits.Load() != int64(byDC["us-east"]) {
		t.Fatalf("us-east's web tier counted %d requests, the clients %d", east.hits.Load(), byDC["us-east"])
	}

	// 3b. Answers on a connection the proxy closes: Connection: close, and
	// HTTP/1.0 without keep-alive (HAProxy's httpchk). The response is
	// written, then tls.Conn.Close sets a write deadline of now; the
	// response must still leave.
	for _, req := range []string{
		"GET /users/7/feed HTTP/1.1\r\nHost: shop.e2e.test\r\nConnection: close\r\n\r\n",
		"GET /users/7/feed HTTP/1.0\r\nHost: shop.e2e.test\r\n\r\n",
	} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "shop.e2e.test", RootCAs: edgeCA.pool})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q over TLS: %v (the proxy closed without its answer)", req, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%q over TLS: status %d", req, resp.StatusCode)
		}
	}

	// 4. A connection opened before the reload, with one request done.
	pre, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: "default.e2e.test", RootCAs: edgeCA.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	preReader := bufio.NewReader(pre)
	getOnPre := func(user int) error {
		pre.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://default.e2e.test/users/%d/feed", user), nil)
		if err := req.Write(pre); err != nil {
			return err
		}
		resp, err := http.ReadResponse(preReader, req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			return fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
		}
		return nil
	}
	if err := getOnPre(1); err != nil {
		t.Fatalf("before the reload, on the open connection: %v", err)
	}

	// 5. Replace the default certificate (a new key too) and SIGHUP.
	defaultV2 := edgeCA.issue(t, "default.e2e.test", []string{"default.e2e.test"}, false)
	reloads := strings.Count(p.logs.String(), "configuration reloaded")
	writeAtomically(t, filepath.Join(dir, "default.key"), defaultV2.keyPEM)
	writeAtomically(t, filepath.Join(dir, "default.pem"), defaultV2.certPEM)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return strings.Count(p.logs.String(), "configuration reloaded") > reloads })
	if got := served("default.e2e.test"); !got.Equal(defaultV2.leaf) {
		t.Fatalf("after the reload, new connections get serial %v, want the new certificate's %v", got.SerialNumber, defaultV2.leaf.SerialNumber)
	} else if err := verified("default.e2e.test", got); err != nil {
		t.Fatal(err)
	}
	if got := served("unknown.e2e.test"); !got.Equal(defaultV2.leaf) {
		t.Fatalf("after the reload, the default certificate is serial %v, want %v", got.SerialNumber, defaultV2.leaf.SerialNumber)
	}
	if got := served("shop.e2e.test"); !got.Equal(shop.leaf) {
		t.Fatal("the reload changed the shop certificate, whose files did not change")
	}
	for user := 2; user < 12; user++ {
		if err := getOnPre(user); err != nil {
			t.Fatalf("after the reload, on the connection opened before: %v", err)
		}
	}
	if got := pre.ConnectionState().PeerCertificates[0]; !got.Equal(defaultV1.leaf) {
		t.Fatal("the open connection's certificate changed")
	}
	t.Logf("SIGHUP: new connections get serial %v (was %v); the connection opened before answered 10 more requests",
		defaultV2.leaf.SerialNumber, defaultV1.leaf.SerialNumber)

	// 6. A bad certificate at reload: a new certificate whose key was not
	// replaced. The reload fails, says why, and the certificates stay.
	defaultV3 := edgeCA.issue(t, "default.e2e.test", []string{"default.e2e.test"}, false)
	failures := strings.Count(p.logs.String(), "reload failed")
	writeAtomically(t, filepath.Join(dir, "default.pem"), defaultV3.certPEM)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", func() bool { return strings.Count(p.logs.String(), "reload failed") > failures })
	var line string
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, "reload failed") {
			line = l
		}
	}
	if !strings.Contains(line, "listen.tls.certificates[0]") || !strings.Contains(line, "private key does not match public key") {
		t.Errorf("the failed reload does not say which certificate and why:\n%s", line)
	}
	t.Logf("bad certificate at reload logged: %s", line)
	if got := served("default.e2e.test"); !got.Equal(defaultV2.leaf) {
		t.Fatalf("after a failed reload, new connections get serial %v, want the one in force, %v", got.SerialNumber, defaultV2.leaf.SerialNumber)
	}
	if err := getOnPre(12); err != nil {
		t.Fatalf("after the failed reload, on the connection opened before: %v", err)
	}
	resp, err := client.Get("https://default.e2e.test/users/7/feed")
	if err != nil {
		t.Fatalf("a new HTTPS request after the failed reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a new HTTPS request after the failed reload: %d", resp.StatusCode)
	}

	pre.Close()
	client.CloseIdleConnections()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitExit(t, "proxy")
}

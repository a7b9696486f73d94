package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// testCA is a certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "socialroute test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// issue makes a leaf certificate with common name cn for names (DNS SANs)
// and returns its PEM chain and key.
func (ca *testCA) issue(t testing.TB, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	return ca.issueUntil(t, time.Now().Add(24*time.Hour), cn, names...)
}

// issueUntil is issue for a certificate valid until notAfter (in the past
// for an expired one).
func (ca *testCA) issueUntil(t testing.TB, notAfter time.Time, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    notAfter.Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// writeFile writes data to dir/name atomically (rename), as certificate
// tooling does, and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// issueFiles issues a certificate and writes it as dir/base.pem and
// dir/base.key.
func (ca *testCA) issueFiles(t testing.TB, dir, base, cn string, names ...string) configs.Certificate {
	c, k := ca.issue(t, cn, names...)
	return configs.Certificate{CertFile: writeFile(t, dir, base+".pem", c), KeyFile: writeFile(t, dir, base+".key", k)}
}

// tlsHarness is the proxy harness with listen.tls on: three certificates,
// the first the default.
type tlsHarness struct {
	*harness
	ca  *testCA
	dir string
}

func newTLSHarness(t *testing.T, mutate func(*configs.Config)) *tlsHarness {
	t.Helper()
	th := &tlsHarness{ca: newTestCA(t), dir: t.TempDir()}
	certs := []configs.Certificate{
		th.ca.issueFiles(t, th.dir, "default", "default", "default.example"),
		th.ca.issueFiles(t, th.dir, "a", "a", "a.example"),
		th.ca.issueFiles(t, th.dir, "b", "b", "*.b.example"),
	}
	th.harness = newHarness(t, func(c *configs.Config) {
		c.Listen.TLS = &configs.ListenTLS{Certificates: certs}
		if mutate != nil {
			mutate(c)
		}
	})
	return th
}

// handshake opens a TLS connection to the proxy with SNI name (none when
// "") and conf's other settings.
func (th *tlsHarness) handshake(name string, conf *tls.Config) (*tls.Conn, error) {
	raw, err := th.ln.DialWithLocalAddr(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40001})
	if err != nil {
		return nil, err
	}
	if conf == nil {
		conf = &tls.Config{}
	}
	conf = conf.Clone()
	conf.RootCAs = th.ca.pool
	conf.ServerName = name
	if name == "" {
		conf.InsecureSkipVerify = true // no name to check against; the test reads the certificate itself
	}
	c := tls.Client(raw, conf)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// servedCN is the common name of the certificate the proxy served.
func servedCN(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }

// roundTrip sends one GET on c and returns the response.
func roundTrip(t testing.TB, c net.Conn, user string) *fasthttp.Response {
	t.Helper()
	req := "GET /feed HTTP/1.1\r\nHost: proxy.test\r\nX-User-ID: " + user + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return &resp
}

func TestTLSPicksCertificateBySNI(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, nil)
	for _, tt := range []struct{ sni, want string }{
		{"a.example", "a"},
		{"A.Example", "a"},           // names are case-insensitive
		{"x.b.example", "b"},         // wildcard
		{"b.example", "default"},     // a wildcard covers one label, not the bare name
		{"y.x.b.example", "default"}, // nor two labels
		{"unknown.example", "default"},
		{"", "default"}, // no SNI at all
	} {
		c, err := th.handshake(tt.sni, &tls.Config{InsecureSkipVerify: tt.want == "default"})
		if err != nil {
			t.Fatalf("SNI %q: %v", tt.sni, err)
		}
		if got := servedCN(c); got != tt.want {
			t.Errorf("SNI %q: served %q, want %q", tt.sni, got, tt.want)
		}
		c.Close()
	}
}

func TestTLSForwardsOverHTTPS(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, nil)
	c, err := th.handshake("a.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3 preferred", tls.VersionName(v))
	}
	resp := roundTrip(t, c, "42")
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	req := th.lastRequest(datacenterOf(resp))
	if got := string(req.Header.Peek("X-Forwarded-Proto")); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
	if got := string(req.Header.Peek("X-Forwarded-For")); got != "192.0.2.7" {
		t.Errorf("X-Forwarded-For = %q, want 192.0.2.7", got)
	}
}

func TestTLSRefusesOldVersions(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, nil)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if c, err := th.handshake("a.example", &tls.Config{MinVersion: v, MaxVersion: v}); err == nil {
			c.Close()
			t.Errorf("%s handshake succeeded, want refused", tls.VersionName(v))
		}
	}
	c, err := th.handshake("a.example", &tls.Config{MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
	c.Close()

	// min_version 1.3 refuses 1.2 too.
	th13 := newTLSHarness(t, func(c *configs.Config) { c.Listen.TLS.MinVersion = configs.TLS13 })
	if c, err := th13.handshake("a.example", &tls.Config{MaxVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Errorf("TLS 1.2 accepted with min_version 1.3")
	}
}

func TestTLSSessionResumption(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, nil)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c, err := th.handshake("a.example", &tls.Config{ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		// TLS 1.3 tickets arrive after the handshake: a round trip reads them.
		roundTrip(t, c, "7")
		if resumed := c.ConnectionState().DidResume; resumed != (i == 1) {
			t.Errorf("connection %d: DidResume = %v", i, resumed)
		}
		c.Close()
	}
}

func TestTLSStaplesOCSP(t *testing.T) {
	t.Parallel()
	staple := []byte("a DER OCSP response, as far as this test cares")
	var ocspPath string
	th := newTLSHarness(t, func(c *configs.Config) {
		ocspPath = writeFile(t, filepath.Dir(c.Listen.TLS.Certificates[1].CertFile), "a.ocsp", staple)
		c.Listen.TLS.Certificates[1].OCSPFile = ocspPath
	})
	c, err := th.handshake("a.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().OCSPResponse; string(got) != string(staple) {
		t.Errorf("stapled %q, want %q", got, staple)
	}
	d, err := th.handshake("unknown.example", &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.ConnectionState().OCSPResponse; got != nil {
		t.Errorf("the default certificate has no OCSP file but stapled %q", got)
	}
}

// A reload swaps certificates for new connections; a connection opened
// before it keeps working on the certificate it negotiated; a bad
// certificate at reload keeps the old ones and says why.
func TestTLSReloadSwapsCertificates(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, nil)
	old, err := th.handshake("a.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if resp := roundTrip(t, old, "1"); resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}

	// Renew a.example's certificate in place and reload.
	th.ca.issueFiles(t, th.dir, "a", "a-renewed", "a.example")
	if err := th.srv.Reload(th.cfg, nil); err != nil {
		t.Fatal(err)
	}
	fresh, err := th.handshake("a.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCN(fresh); got != "a-renewed" {
		t.Errorf("after reload a new connection got %q, want a-renewed", got)
	}
	fresh.Close()
	// The old connection was not touched: it still serves requests.
	if resp := roundTrip(t, old, "2"); resp.StatusCode() != 200 {
		t.Errorf("old connection after reload: status %d", resp.StatusCode())
	}
	if got := servedCN(old); got != "a" {
		t.Errorf("old connection's certificate = %q, want a", got)
	}

	// A broken key: the reload fails, naming the certificate, and the
	// renewed certificate keeps serving.
	writeFile(t, th.dir, "a.key", []byte("-----BEGIN EC PRIVATE KEY-----\nbroken\n-----END EC PRIVATE KEY-----\n"))
	err = th.srv.Reload(th.cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "listen.tls.certificates[1]") {
		t.Fatalf("reload with a broken key: err = %v, want one naming listen.tls.certificates[1]", err)
	}
	// A certificate for another key is refused as well.
	c2, _ := th.ca.issue(t, "mismatch", "a.example")
	writeFile(t, th.dir, "a.pem", c2)
	if err := th.srv.Reload(th.cfg, nil); err == nil {
		t.Fatal("reload with a certificate that does not match its key succeeded")
	}
	again, err := th.handshake("a.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := servedCN(again); got != "a-renewed" {
		t.Errorf("after failed reloads a new connection got %q, want a-renewed (kept)", got)
	}
}

// Files that change on disk are picked up without a SIGHUP.
func TestTLSWatcherReloadsChangedFiles(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, func(c *configs.Config) { c.Listen.TLS.WatchInterval = 10 * time.Millisecond })
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := th.handshake("x.b.example", nil)
			if err != nil {
				t.Fatal(err)
			}
			got := servedCN(c)
			c.Close()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("served %q, want %q", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("b")
	// Key first, then certificate: in between, the pair does not match
	// and the watcher must keep the old one.
	c, k := th.ca.issue(t, "b-renewed", "*.b.example")
	writeFile(t, th.dir, "b.key", k)
	time.Sleep(50 * time.Millisecond)
	waitFor("b")
	writeFile(t, th.dir, "b.pem", c)
	waitFor("b-renewed")
}

// A reload (SIGHUP) that swaps its set in while the watcher loads one
// from the files of the set before wins: the watcher's set, read for the
// config the reload replaced, is dropped, not swapped in over it.
func TestTLSWatcherYieldsToAReloadsSet(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	single := func(c configs.Certificate) *configs.Config {
		return &configs.Config{Listen: configs.Listen{TLS: &configs.ListenTLS{Certificates: []configs.Certificate{c}}}}
	}
	watched := single(ca.issueFiles(t, dir, "a", "a", "a.example"))
	store := &certStore{log: slog.New(slog.DiscardHandler)}
	if err := store.reload(watched); err != nil {
		t.Fatal(err)
	}
	hupSet, err := store.load(single(ca.issueFiles(t, dir, "h", "from-sighup", "a.example")))
	if err != nil {
		t.Fatal(err)
	}
	loaded := make(chan struct{})
	testHookCertsLoaded = func(cs *certStore) {
		if cs == store {
			testHookCertsLoaded = nil
			store.cur.Store(hupSet) // the SIGHUP's, between the watcher's load and its swap
			close(loaded)
		}
	}
	defer func() { testHookCertsLoaded = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { store.watch(ctx, 5*time.Millisecond, func() *configs.Config { return watched }); close(done) }()
	defer func() { cancel(); <-done }()
	ca.issueFiles(t, dir, "a", "a-renewed", "a.example")
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not load the changed files")
	}
	time.Sleep(50 * time.Millisecond) // ten ticks
	if got := store.cur.Load(); got != hupSet {
		t.Fatalf("in force after the watcher's load: %q, want the SIGHUP's set (from-sighup)", servedName(got, "a.example"))
	}
}

// An expired certificate is served, not refused, unless it would replace
// a valid one read from the same file: one late renewal must not take
// every name down at a start, nor hold back every other name's renewal at
// a reload.
func TestExpiredCertificates(t *testing.T) {
	t.Parallel()
	ca, dir := newTestCA(t), t.TempDir()
	cfg := &configs.Config{}
	expired := func(base string) configs.Certificate {
		c, k := ca.issueUntil(t, time.Now().Add(-24*time.Hour), base, base+".example")
		return configs.Certificate{CertFile: writeFile(t, dir, base+".pem", c), KeyFile: writeFile(t, dir, base+".key", k)}
	}
	valid := ca.issueFiles(t, dir, "valid", "valid", "valid.example")
	old := expired("old")

	// At a start: served, logged by field once it is in force (loading
	// alone logs nothing: a reload that fails later never serves it), once
	// however often the watcher looks, and the set says which has expired.
	var logs bytes.Buffer
	store := &certStore{log: slog.New(slog.NewTextHandler(&logs, nil))}
	withOld := &configs.Config{Listen: configs.Listen{TLS: &configs.ListenTLS{Certificates: []configs.Certificate{valid, old}}}}
	if _, err := store.load(withOld); err != nil || logs.Len() != 0 {
		t.Fatalf("loading a set with an expired certificate: %v, logged %q before it was in force", err, logs.String())
	}
	if err := store.reload(withOld); err != nil {
		t.Fatalf("a start with one expired certificate: %v", err)
	}
	store.logExpired()
	start := store.cur.Load()
	if n := strings.Count(logs.String(), "EXPIRED"); n != 1 {
		t.Fatalf("the expired certificate logged %d times, want once:\n%s", n, logs.String())
	}
	if len(start.certs) != 2 || start.certs[0].expired(time.Now()) || !start.certs[1].expired(time.Now()) ||
		start.certs[1].field != "listen.tls.certificates[1]" || servedName(start, "old.example") != "old" {
		t.Fatalf("set %+v", start.certs)
	}
	if l := logs.String(); !strings.Contains(l, "EXPIRED") || !strings.Contains(l, "listen.tls.certificates[1]") || strings.Contains(l, "certificates[0]") {
		t.Fatalf("log of the expired certificate:\n%s", l)
	}

	// One that expires while it is served is logged at the watcher's next
	// look.
	c, k := ca.issueUntil(t, time.Now().Add(1500*time.Millisecond), "soon", "soon.example") // x509 keeps whole seconds: 0.5-1.5 s ahead
	soon := configs.Certificate{CertFile: writeFile(t, dir, "soon.pem", c), KeyFile: writeFile(t, dir, "soon.key", k)}
	var soonLogs bytes.Buffer
	watched := &certStore{log: slog.New(slog.NewTextHandler(&soonLogs, nil))}
	if err := watched.reload(&configs.Config{Listen: configs.Listen{TLS: &configs.ListenTLS{Certificates: []configs.Certificate{soon}}}}); err != nil {
		t.Fatal(err)
	}
	if soonLogs.Len() != 0 {
		t.Fatalf("a valid certificate logged: %s", soonLogs.String())
	}
	time.Sleep(time.Until(watched.cur.Load().certs[0].notAfter) + 10*time.Millisecond)
	watched.logExpired()
	if !strings.Contains(soonLogs.String(), "EXPIRED") {
		t.Fatal("a certificate that expired while served was not logged")
	}

	// At a reload: the same expired file again is no reason to refuse
	// the other names' new certificates.
	renewed := ca.issueFiles(t, dir, "valid", "valid-renewed", "valid.example")
	again, err := loadCertSet(cfg, &configs.ListenTLS{Certificates: []configs.Certificate{renewed, old}}, start)
	if err != nil || servedName(again, "valid.example") != "valid-renewed" {
		t.Fatalf("a reload that renews one and keeps an expired one: %v", err)
	}

	// An expired file written over a valid certificate in force (a
	// renewal tool wrote an old file back) leaves the valid one in force
	// for that entry alone: another entry's new file is still taken, and
	// the warning says which entry, and until when the one kept is valid.
	expired("valid")
	renewedOld := ca.issueFiles(t, dir, "old", "old-renewed", "old.example")
	logs.Reset()
	store.cur.Store(again)
	if err := store.reload(&configs.Config{Listen: configs.Listen{TLS: &configs.ListenTLS{Certificates: []configs.Certificate{renewed, renewedOld}}}}); err != nil {
		t.Fatalf("a reload with an expired certificate over a valid one: %v", err)
	}
	after := store.cur.Load()
	if servedName(after, "valid.example") != "valid-renewed" || after.certs[0].expired(time.Now()) || servedName(after, "old.example") != "old-renewed" {
		t.Fatalf("after the reload valid.example gets %q (expired %v), old.example %q; want the valid one kept and the other renewed",
			servedName(after, "valid.example"), after.certs[0].expired(time.Now()), servedName(after, "old.example"))
	}
	// The file's own expiry is in the past, for the file expiry metric
	// (a restart would serve the file's); the one in force is valid.
	if kept := after.certs[0]; !kept.fileNotAfter.Before(time.Now()) || !kept.notAfter.After(time.Now()) {
		t.Fatalf("kept entry: file expires %v, the one in force %v", kept.fileNotAfter, kept.notAfter)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "listen.tls.certificates[0]") || !strings.Contains(l, "in_force_until=") || strings.Contains(l, "EXPIRED") {
		t.Fatalf("log of the kept certificate:\n%s", l)
	}
}

// servedName is the common name of the certificate set serves for SNI name.
func servedName(set *certSet, name string) string {
	return set.get(&tls.ClientHelloInfo{ServerName: name}).Leaf.Subject.CommonName
}

// A proxy starts with an expired certificate among valid ones, serves the
// valid names, and reports every expiry as a metric.
func TestTLSStartsWithAnExpiredCertificate(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	c, k := ca.issueUntil(t, time.Now().Add(-time.Hour), "late", "late.example")
	late := configs.Certificate{CertFile: writeFile(t, dir, "late.pem", c), KeyFile: writeFile(t, dir, "late.key", k)}
	valid := ca.issueFiles(t, dir, "valid", "valid", "valid.example")
	th := &tlsHarness{ca: ca, dir: dir}
	th.harness = newHarness(t, func(c *configs.Config) {
		c.Listen.TLS = &configs.ListenTLS{Certificates: []configs.Certificate{valid, late}}
	})
	conn, err := th.handshake("valid.example", nil)
	if err != nil {
		t.Fatalf("the valid name: %v", err)
	}
	conn.Close()
	if _, err := th.handshake("late.example", nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("the expired name: %v, want the client to refuse an expired certificate", err)
	}
	got := gathered(t, th.srv, "socialroute_tls_certificate_expiry_timestamp_seconds")
	now := float64(time.Now().Unix())
	if len(got) != 2 || got["listen.tls.certificates[0]"] < now || got["listen.tls.certificates[1]"] > now {
		t.Fatalf("expiry metric %v (now %v)", got, now)
	}
}

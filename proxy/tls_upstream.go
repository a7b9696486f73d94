package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// upstreamTLS is one datacenter's client TLS settings, loaded.
type upstreamTLS struct {
	conf *tls.Config
	// key identifies the settings and the files' contents, so that a
	// reload rebuilds an upstream's client (and its pooled connections)
	// exactly when either changed.
	key string
}

// loadUpstreamTLS reads datacenter i's TLS files; nil when it has no tls
// section.
func loadUpstreamTLS(cfg *configs.Config, i int) (*upstreamTLS, error) {
	t := cfg.Datacenters[i].TLS
	if t == nil {
		return nil, nil
	}
	field := fmt.Sprintf("datacenters[%d].tls", i)
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q\x00", t.CAFile, t.CertFile, t.KeyFile, t.ServerName)
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(cfg.FilePath(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("proxy: %s.ca_file: %w", field, err)
		}
		h.Write(pem)
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxy: %s.ca_file: no PEM certificate in %s", field, cfg.FilePath(t.CAFile))
		}
	}
	if t.CertFile != "" {
		certPEM, err := os.ReadFile(cfg.FilePath(t.CertFile))
		if err != nil {
			return nil, fmt.Errorf("proxy: %s.cert_file: %w", field, err)
		}
		keyPEM, err := os.ReadFile(cfg.FilePath(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("proxy: %s.key_file: %w", field, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("proxy: %s: client certificate: %w", field, err)
		}
		h.Write(certPEM)
		h.Write(keyPEM)
		conf.Certificates = []tls.Certificate{pair}
	}
	return &upstreamTLS{conf: conf, key: hex.EncodeToString(h.Sum(nil))}, nil
}

// UpstreamTLSConfig is datacenter dc's client TLS settings, loaded from
// their files (nil, nil without a tls section): for the health checks of
// the node's own datacenter, which must speak what its upstreams do.
func UpstreamTLSConfig(cfg *configs.Config, dc int) (*tls.Config, error) {
	t, err := loadUpstreamTLS(cfg, dc)
	if t == nil || err != nil {
		return nil, err
	}
	return t.conf.Clone(), nil
}

// tlsDial wraps dial so that every connection to addr is a verified TLS
// client connection, its handshake done within timeout. A failed handshake
// is reported as a dial error: the request never left, so it may go to
// another upstream whatever its method. The HostClient stays plain
// (IsTLS false), so the request path keeps its http scheme and allocates
// nothing more.
func tlsDial(dial fasthttp.DialFunc, conf *tls.Config, addr string, timeout time.Duration) fasthttp.DialFunc {
	conf = conf.Clone()
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		conf.ServerName = host
	}
	return func(a string) (net.Conn, error) {
		raw, err := dial(a)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, conf)
		if timeout > 0 {
			_ = tc.SetDeadline(time.Now().Add(timeout))
		}
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raw.RemoteAddr(), Err: fmt.Errorf("proxy: TLS handshake with %s: %w", a, err)}
		}
		_ = tc.SetDeadline(time.Time{})
		return tc, nil
	}
}

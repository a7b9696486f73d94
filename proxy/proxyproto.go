package proxy

import (
	"fmt"
	"net"

	"github.com/pires/go-proxyproto"
	"github.com/socialroute/socialroute/configs"
)

// proxyProtocolListener wraps ln so that connections from the trusted L4
// balancers must open with a PROXY protocol header (v1 or v2), whose source
// address then becomes the connection's RemoteAddr: fasthttp's
// ctx.RemoteIP(), and so X-Forwarded-For and max_conns_per_ip, see the real
// client. A connection from any other address is not looked at for a
// header at all (SKIP): its bytes go to fasthttp as they are, so a PROXY
// header it sends is a malformed request, 400, and never reaches an
// upstream; one that sends none is served with its own address. A trusted
// balancer that sends no header is refused: the spec forbids guessing.
//
// The header is read on the connection's first read, in the connection's
// goroutine, bounded by p.HeaderTimeout; nothing in the accept loop asks
// for the address (listen.max_conns_per_ip counts on the first read too,
// see clientLimit), so a connection that opens and sends nothing holds up
// no other.
func proxyProtocolListener(ln net.Listener, p *configs.ProxyProtocol) (net.Listener, error) {
	policy, err := proxyproto.PolicyFromRanges(p.Trusted, proxyproto.REQUIRE, proxyproto.SKIP)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen.proxy_protocol.trusted: %w", err)
	}
	return &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: p.HeaderTimeout}, nil
}

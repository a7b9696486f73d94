// Command backend is the benchmark's stand-in web tier when nginx is not
// installed: one fasthttp process that listens on several addresses and
// answers every request with a static "200 ok". Run it with GOMAXPROCS=1
// and pinned (taskset) to the core wrk uses, away from the proxy under test.
//
//	GOMAXPROCS=1 taskset -c 1 go run ./bench/backend -listen 127.0.0.1:18101,127.0.0.1:18102
//
// On SIGTERM or SIGINT it prints how many requests each address answered
// (to stderr), which shows how evenly a proxy spread its users, and exits.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18101,127.0.0.1:18102,127.0.0.1:18103,127.0.0.1:18104",
		"comma-separated `addresses` to answer on")
	flag.Parse()
	addrs := strings.Split(*listen, ",")
	counts := make([]atomic.Uint64, len(addrs))
	body := []byte("ok\n")
	servers := make([]*fasthttp.Server, len(addrs))
	for i, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
			os.Exit(1)
		}
		n := &counts[i]
		servers[i] = &fasthttp.Server{
			Name:                          "backend",
			NoDefaultContentType:          true,
			DisableHeaderNamesNormalizing: true,
			Handler: func(ctx *fasthttp.RequestCtx) {
				n.Add(1)
				ctx.Response.Header.SetContentType("text/plain")
				ctx.Response.SetBodyRaw(body)
			},
		}
		go servers[i].Serve(ln) //nolint:errcheck // ends at exit
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	var total uint64
	for i := range counts {
		total += counts[i].Load()
	}
	for i, a := range addrs {
		c := counts[i].Load()
		share := 0.0
		if total > 0 {
			share = 100 * float64(c) / float64(total)
		}
		fmt.Fprintf(os.Stderr, "backend %s answered %d requests (%.1f%%)\n", a, c, share)
	}
}

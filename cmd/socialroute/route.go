package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

const routeAbout = `
Explain where a request goes, without sending it: the routing key and the
rule that found it, the bucket (social-hash table or xxhash), the home
continent, the ordered datacenter list with each one's state, and the choice.
It runs offline, on the config file alone: every datacenter is up, and
pins, drains and moves made at runtime are not in it. For the running
fleet's answer ask a node: GET /admin/route?user=U&path=P.

The request is built as user U would send it to path P: U is put in every
header and cookie the routing rules read, and the rules run in their order,
so a path rule (e.g. /accounts/{key}) can win over the user's own id.`

func runRoute(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("route", "--config FILE --user U [--path P]", routeAbout, stderr)
	cfgPath := fs.String("config", "", "YAML config `file`")
	user := fs.String("user", "", "the user `id` making the request")
	path := fs.String("path", "/", "request `path` (with an optional ?query)")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "route needs --config FILE")
		fs.Usage()
		return errUsage
	}
	cfg, table, err := loadAll(*cfgPath)
	if err != nil {
		return err
	}
	// Certificates and keys decide no route, and an operator asking where
	// a user goes may not be allowed to read them (0600, the service's).
	cfg.Listen.TLS = nil
	for i := range cfg.Datacenters {
		cfg.Datacenters[i].TLS = nil
	}
	srv, err := proxy.New(cfg, table, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	var req fasthttp.Request
	req.SetRequestURI(*path)
	if *user != "" {
		for _, r := range cfg.Routing.Rules {
			if r.Header != "" {
				req.Header.Set(r.Header, *user)
			}
			if r.Cookie != "" {
				req.Header.SetCookie(r.Cookie, *user)
			}
		}
	}
	e := srv.Explain(&req)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	return e.WriteText(stdout)
}

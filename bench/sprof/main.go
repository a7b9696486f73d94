// Command sprof runs socialroute's proxy exactly as `socialroute serve`
// does (configs.Load, the table it names, proxy.New, Serve) and writes a
// CPU profile of it with runtime/pprof, so that bench/profile.sh can show
// where the request path spends its CPU under wrk's load. The profile
// starts after -warmup and covers -seconds (or until SIGTERM/SIGINT); it
// serves on after the profile until SIGTERM/SIGINT.
//
//	GOMAXPROCS=1 taskset -c 0 go run ./bench/sprof -config bench/socialroute.yaml -cpuprofile cpu.pprof
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/proxy"
)

func main() {
	cfgPath := flag.String("config", "bench/socialroute.yaml", "socialroute config `file`")
	cpuOut := flag.String("cpuprofile", "cpu.pprof", "where to write the CPU profile")
	memOut := flag.String("memprofile", "", "if set, write an allocation profile (alloc_space) here at the end")
	warmup := flag.Duration("warmup", 2*time.Second, "serve this long before profiling starts")
	seconds := flag.Duration("seconds", 10*time.Second, "profile this long, then stop")
	flag.Parse()
	if err := run(*cfgPath, *cpuOut, *memOut, *warmup, *seconds); err != nil {
		fmt.Fprintln(os.Stderr, "sprof:", err)
		os.Exit(1)
	}
}

func run(cfgPath, cpuOut, memOut string, warmup, seconds time.Duration) error {
	if memOut != "" {
		runtime.MemProfileRate = 4 << 10 // before the proxy allocates anything
	}
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		return err
	}
	var table *hashing.Table
	if cfg.Table != "" {
		if table, err = hashing.LoadTable(cfg.TablePath()); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := proxy.New(cfg, table, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(warmup):
	case <-sigs:
		return stop(srv, ln, served)
	case err := <-served:
		return err
	}
	f, err := os.Create(cpuOut)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "sprof: profiling for", seconds)
	signalled := false
	select {
	case <-time.After(seconds):
	case <-sigs:
		signalled = true
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return err
	}
	if memOut != "" {
		mf, err := os.Create(memOut)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("allocs").WriteTo(mf, 0); err != nil {
			return err
		}
		mf.Close()
	}
	st := srv.Stats()
	fmt.Fprintf(os.Stderr, "sprof: requests %d, retries %d, rejected %d, failed %d\n",
		st.Requests.Load(), st.Retries.Load(), st.Rejected.Load(), st.Failed.Load())
	if !signalled {
		// Serve on until told to stop: the load outlasts the profile a
		// little, and a proxy that vanished under it would show up as
		// errors in its result.
		<-sigs
	}
	return stop(srv, ln, served)
}

func stop(srv *proxy.Server, ln net.Listener, served chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	ln.Close()
	<-served
	return err
}

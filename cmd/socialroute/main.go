// Command socialroute is the social-hash edge proxy: one binary with a
// subcommand per job. Run `socialroute help` for the list.
//
// default.pgo beside this file is a CPU profile of the proxy under
// bench/'s load; go build uses it for profile-guided optimization (about
// 4% less CPU per request in bench/run.sh). Refresh it after changes to the
// request path: bash bench/profile.sh --seconds 15 --no-syscalls, then copy
// the cpu.pprof it writes over default.pgo.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version or VCS revision from the build info is used.
var version = ""

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "--config FILE", "run the edge proxy", runServe},
		{"route", "--config FILE --user U [--path P]", "explain where one user's request goes, and why", runRoute},
		{"demo", "[--seconds S]", "run simulated datacenters and a proxy on the built-in two-continent topology", runDemo},
		{"loadtest", "[--target A | --compare] [flags]", "offer load and report latency, errors, locality, spread and cache hits", runLoadtest},
		{"partition", "--graph FILE [--out TABLE]", "compute the social-hash table from a follower graph, with a report", runPartition},
		{"keygen", "", "print a new gossip encryption key", runKeygen},
		{"version", "", "print the version", runVersion},
	}
}

const intro = `socialroute routes each user to a datacenter of the user's home continent.

A request's routing key (user id from a header, cookie, path segment or query
parameter) maps to a social-hash bucket: friends share a bucket, computed
offline from the follower graph; unknown users are hashed with xxhash. Each
bucket has a home continent and an ordered list of that continent's
datacenters (capacity-weighted rendezvous hashing); the request goes to the
first one that can take it, and an idempotent request that fails is retried
on the next.
`

func usage(w io.Writer) {
	fmt.Fprintf(w, "%s\nUsage:\n  socialroute <command> [flags]\n\nCommands:\n", intro)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %-36s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  socialroute demo                                      # see it work, nothing to set up
  socialroute serve --config configs/local.yaml         # run a proxy
  socialroute route --config configs/two-continents.yaml --user 42
  socialroute route --config configs/two-continents.yaml --user 42 --path /accounts/7/media

Run 'socialroute <command> --help' for a command's flags.
`)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code:
// 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 0 {
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "socialroute %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "socialroute: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errUsage marks a command-line mistake already reported by the flag set.
var errUsage = errors.New("usage")

// newFlags makes a command's flag set with a --help that teaches: the
// summary, the synopsis, then the flags.
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: socialroute %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(about))
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, mapping a bad flag to errUsage (the flag set has said
// what is wrong) and --help to flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Print the version of this binary.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "socialroute", buildVersion())
	return nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + info.GoVersion
}

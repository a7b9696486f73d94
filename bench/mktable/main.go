// Command mktable writes a social-hash assignment table for the benchmark:
// users "1".."N" (the ids bench/userid.lua sends as X-User-ID), each in a
// pseudo-random bucket, so that every measured request takes the table
// lookup rather than the xxhash fallback. With -hot-out it also writes a
// hot-account list ("user,followers", what `socialroute partition
// --hot-out` writes): users "1".."H" with 20M/i followers, so the proxy
// loads a static list and spreads those users over several buckets.
//
//	go run ./bench/mktable -users 1000000 -out users.sht -hot 1000 -hot-out hot.csv
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/socialroute/socialroute/hashing"
)

func main() {
	users := flag.Int("users", 1_000_000, "number of users, keys \"1\" to \"N\"")
	nb := flag.Int("buckets", 4096, "bucket count N of the deployment (must match the config's buckets)")
	out := flag.String("out", "users.sht", "output `file`")
	hot := flag.Int("hot", 1000, "hot accounts in the -hot-out list: users \"1\" to \"H\"")
	hotOut := flag.String("hot-out", "", "if set, write the hot-account list to this `file`")
	flag.Parse()
	if *hotOut != "" {
		if err := writeHot(*hot, *hotOut); err != nil {
			fmt.Fprintln(os.Stderr, "mktable:", err)
			os.Exit(1)
		}
	}
	if err := run(*users, uint32(*nb), *out); err != nil {
		fmt.Fprintln(os.Stderr, "mktable:", err)
		os.Exit(1)
	}
}

func run(users int, n uint32, out string) error {
	b, err := hashing.NewTableBuilder(n, users)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same table every run
	var key []byte
	for i := 1; i <= users; i++ {
		key = strconv.AppendInt(key[:0], int64(i), 10)
		if err := b.AddHash(hashing.HashKey(key), rng.Uint32N(n)); err != nil {
			return err
		}
	}
	t, err := b.Build()
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if _, err := t.WriteTo(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeHot writes users 1..n as hot accounts, user i with 20,000,000/i
// followers (a Zipf-like head: user 1 spreads widest).
func writeHot(n int, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "user,followers")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "%d,%d\n", i, 20_000_000/i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

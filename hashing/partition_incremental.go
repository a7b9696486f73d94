package hashing

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
)

// partitionIncremental is Partition with o.Previous: it starts from the
// previous assignment and moves as few of its users as it can, since every
// move is a data migration.
//
//  1. Users of the graph the previous table knows (looked up by the hash of
//     their key) keep their bucket; users it knows that are not in the
//     graph stay in the table with theirs.
//  2. New users are placed breadth-first from the known ones: each goes to
//     the bucket most of its already placed friends are in, if it has
//     room; a new user without placed friends starts at its xxhash
//     fallback bucket, where the proxy serves it today.
//  3. Refinement passes move a known user only for a p-fanout gain above
//     o.MoveThreshold; new users, and known users already moved, move for
//     any gain.
//  4. If a bucket is out of bounds, the cheapest users restore the
//     balance, new and already moved users first.
func partitionIncremental(ctx context.Context, g *Graph, o PartitionOptions, res *Partitioning) error {
	prevHashes, prevBuckets, err := tableEntries(o.Previous)
	if err != nil {
		return err
	}
	n := g.Users()
	hashes := make([]uint64, n)
	parallelFor(n, o.Workers, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			hashes[i] = UserKeyHash(g.ids[i])
		}
	})
	const unknown = noMove
	prev := make([]uint32, n) // previous bucket, or unknown
	st := &IncrementalStats{}
	for i, h := range hashes {
		if b, ok := o.Previous.Lookup(h); ok {
			prev[i] = b
			st.Known++
		} else {
			prev[i] = unknown
		}
	}
	st.New = n - st.Known

	// Previous entries whose users are not in the graph: both lists
	// sorted, one merge.
	sorted := slices.Clone(hashes)
	slices.Sort(sorted)
	extra := make([]int, o.Buckets)
	j := 0
	for i, h := range prevHashes {
		for j < len(sorted) && sorted[j] < h {
			j++
		}
		if j < len(sorted) && sorted[j] == h {
			continue
		}
		res.carriedHashes = append(res.carriedHashes, h)
		res.carriedBuckets = append(res.carriedBuckets, prevBuckets[i])
		extra[prevBuckets[i]]++
	}
	sorted = nil
	st.Carried = len(res.carriedHashes)
	res.minSize, res.maxSize = sizeBounds(n+st.Carried, o.Buckets, o.Imbalance)

	// 1. Known users keep their bucket.
	placed := make([]bool, n)
	for i, b := range prev {
		if b != unknown {
			res.buckets[i] = uint16(b)
			placed[i] = true
		}
	}
	r := newRefiner(g, o, res.buckets, extra, res.minSize, res.maxSize)
	for i, p := range placed {
		if !p {
			r.size[res.buckets[i]]-- // newRefiner counted the zero value
		}
	}

	// 2. New users, breadth-first from the placed ones.
	cnt := make([]int32, o.Buckets)
	var touched []uint16
	place := func(u int) {
		touched = touched[:0]
		see := func(ns []uint32) {
			for _, w := range ns {
				if !placed[w] {
					continue
				}
				b := res.buckets[w]
				if cnt[b] == 0 {
					touched = append(touched, b)
				}
				cnt[b]++
			}
		}
		see(g.Following(u))
		if g.directed {
			see(g.Followers(u))
		}
		best := topTwo(touched, cnt, 0, func(b uint32) bool { return r.size[b] < r.maxSize })
		var b uint32
		switch fb := FallbackBucket(hashes[u], o.Buckets); {
		case len(best) > 0:
			b = best[0]
		case r.size[fb] < r.maxSize:
			b = fb
		default:
			b = uint32(slices.Index(r.size, slices.Min(r.size)))
		}
		res.buckets[u] = uint16(b)
		r.size[b]++
		placed[u] = true
	}
	var queue []uint32
	enqueueNeighbours := func(u int) {
		for _, w := range g.Following(u) {
			if !placed[w] {
				queue = append(queue, w)
			}
		}
		if g.directed {
			for _, w := range g.Followers(u) {
				if !placed[w] {
					queue = append(queue, w)
				}
			}
		}
	}
	// Seed the queue with every new user next to a known one, in order.
	for u := range n {
		if placed[u] {
			continue
		}
		next := false
		for _, w := range g.Following(u) {
			next = next || placed[w]
		}
		for _, w := range g.Followers(u) {
			next = next || placed[w]
		}
		if next {
			queue = append(queue, uint32(u))
		}
	}
	for start := 0; ; {
		for len(queue) > 0 {
			u := int(queue[0])
			queue = queue[1:]
			if placed[u] {
				continue
			}
			place(u)
			enqueueNeighbours(u)
		}
		for start < n && placed[start] {
			start++
		}
		if start == n {
			break
		}
		place(start) // a new user with no placed friend: its fallback
		enqueueNeighbours(start)
	}
	queue = nil
	for u, b := range prev {
		if b == unknown && uint32(res.buckets[u]) != FallbackBucket(hashes[u], o.Buckets) {
			st.NewOffFallback++
		}
	}
	o.progress("place", 1, 1, st.New, fmt.Sprintf("%d new users placed, %d known kept", st.New, st.Known))

	// 3. Refinement with a price on moving a known user.
	atPrev := func(v int) bool { return prev[v] != unknown && uint32(res.buckets[v]) == prev[v] }
	threshold := func(v int) float64 {
		if atPrev(v) {
			return o.MoveThreshold
		}
		return 0
	}
	for pass := range o.RefinePasses {
		moved, err := r.pass(ctx, pass, threshold)
		if err != nil {
			return err
		}
		o.progress("refine", pass+1, o.RefinePasses, moved, "")
		if moved <= g.Users()/refineSettled {
			break
		}
	}

	// 4. Balance, paid for by the users that are cheapest to move.
	before := countMoved(prev, res.buckets)
	if moved := r.rebalance(threshold); moved > 0 {
		o.progress("rebalance", 1, 1, moved, "")
	}
	st.Moved = countMoved(prev, res.buckets)
	st.MovedForBalance = max(0, st.Moved-before)
	for _, n := range r.size {
		if n < r.minSize || n > r.maxSize {
			st.OutOfBounds++
		}
	}
	res.Incremental = st
	return nil
}

// countMoved counts the known users (prev not noMove) whose bucket
// differs from prev.
func countMoved(prev []uint32, buckets []uint16) int {
	moved := 0
	for i, b := range prev {
		if b != noMove && uint32(buckets[i]) != b {
			moved++
		}
	}
	return moved
}

// tableEntries returns every (hash, bucket) entry of t, hashes ascending.
// It decodes t's file form (FORMAT.md), which is the stable contract of a
// table, rather than reaching into its in-memory layout.
func tableEntries(t *Table) (hashes []uint64, buckets []uint16, err error) {
	// The layout of FORMAT.md, version 1, spelled out here so this reader
	// does not depend on how format.go names things.
	const (
		headerSize   = 32 // magic, version, hash id, N, reserved, users
		usersOffset  = 24
		trailerSize  = 8 // checksum
		bytesPerUser = 10
	)
	var buf bytes.Buffer
	buf.Grow(t.Len()*bytesPerUser + headerSize + trailerSize)
	if _, err := t.WriteTo(&buf); err != nil {
		return nil, nil, err
	}
	b := buf.Bytes()
	le := binary.LittleEndian
	if len(b) < headerSize+trailerSize {
		return nil, nil, fmt.Errorf("hashing: previous table: %w", ErrTruncated)
	}
	users := int(le.Uint64(b[usersOffset:]))
	if len(b) != headerSize+users*bytesPerUser+trailerSize {
		return nil, nil, fmt.Errorf("hashing: previous table: %w: %d bytes for %d users", ErrTruncated, len(b), users)
	}
	hashes = make([]uint64, users)
	buckets = make([]uint16, users)
	body := b[headerSize:]
	for i := range hashes {
		hashes[i] = le.Uint64(body[8*i:])
	}
	body = body[8*users:]
	for i := range buckets {
		buckets[i] = le.Uint16(body[2*i:])
	}
	if !slices.IsSortedFunc(hashes, cmp.Compare[uint64]) {
		return nil, nil, fmt.Errorf("hashing: previous table: %w", ErrNotAscending)
	}
	return hashes, buckets, nil
}

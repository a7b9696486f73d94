package hashing

import "fmt"

// Assigner combines a social-hash table and the xxhash fallback for a
// deployment of N buckets: users the table knows go to their assigned
// bucket, everyone else to FallbackBucket(h, N). It is immutable and safe
// for concurrent use; to change the table, build a new Assigner and publish
// it (for example through an atomic.Pointer).
type Assigner struct {
	n     uint32
	table *Table
}

// NewAssigner returns an Assigner for n buckets (1..MaxBuckets). t may be
// nil, in which case every user takes the fallback. A table built for a
// different bucket count is an error: its buckets would not mean the same
// thing as the fallback's.
func NewAssigner(n uint32, t *Table) (*Assigner, error) {
	if err := checkBucketCount(n); err != nil {
		return nil, err
	}
	if t != nil && t.Buckets() != n {
		return nil, fmt.Errorf("hashing: table built for %d buckets, deployment has %d", t.Buckets(), n)
	}
	return &Assigner{n: n, table: t}, nil
}

// Buckets returns the deployment's bucket count N.
func (a *Assigner) Buckets() uint32 { return a.n }

// Table returns the assigner's table, which may be nil.
func (a *Assigner) Table() *Table { return a.table }

// Bucket returns the bucket of the user whose key hashes (HashKey) to h,
// and whether it came from the table (false: the xxhash fallback). It does
// not allocate.
func (a *Assigner) Bucket(h uint64) (bucket uint32, fromTable bool) {
	if b, ok := a.table.Lookup(h); ok {
		return b, true
	}
	return FallbackBucket(h, a.n), false
}

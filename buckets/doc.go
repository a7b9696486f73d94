// Package buckets places social-hash buckets on datacenters: for every bucket
// a home continent and an ordered preference list of datacenters.
//
// This is the fast, online level of Social Hash. The slow level (user ->
// bucket) lives in package hashing; this package never sees a user.
//
// # Preference lists
//
// A bucket's list starts with the datacenters of its home continent, ordered
// by capacity-weighted rendezvous hashing: each datacenter d scores
// capacity(d) / -ln(u(bucket, d)), with u a uniform hash in (0, 1), and the
// list is the datacenters by falling score. The top of that order is
// datacenter d with probability capacity(d) / sum(capacity), and removing a
// datacenter from consideration moves only the buckets it topped; each of
// those falls to the best of the survivors, again in proportion to capacity.
// That is exactly what a continent needs to lose one datacenter and keep
// serving: the 20% headroom each datacenter keeps absorbs its share of the
// lost one's buckets.
//
// After the home continent come the datacenters of the continents it may fail
// over to (Continent.FailoverTo), in that order, each continent's
// datacenters again ordered by rendezvous. A continent with no failover
// keeps its users' data at home: its buckets never leave it.
//
// # Home continents
//
// By default a bucket's home continent is derived from the bucket id, by the
// same weighted rendezvous over continents (weight: total capacity), so each
// continent homes a share of buckets in proportion to its capacity and
// adding a continent moves only the buckets it wins. Overrides.Homes sets it
// per bucket: the offline partitioner and the placement advisor know where a
// bucket's users live.
//
// # Overrides and snapshots
//
// Operators pin a bucket to a datacenter (it goes first on the list) and
// drain datacenters (they stay on lists, so explanations can show them, but
// are skipped). Every change builds a new immutable Snapshot with a higher
// version; Map publishes it through an atomic.Pointer, so the request path
// reads placement without locks or allocation.
package buckets

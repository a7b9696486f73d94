// Package hashing maps a user's routing key to a social-hash bucket.
//
// A key is hashed once with HashKey (xxhash64, seed 0), and that hash is the
// only thing any later decision looks at. The bucket then comes from one of
// two sources. The first is the social-hash Table: an immutable assignment,
// computed offline by a graph partitioner, that puts friends in the same
// bucket; it holds millions of users in about 10 bytes each (plus a fixed
// 256 KiB directory) and answers a Lookup with one random memory access
// after the directory's, without allocating. A large table's slots sit on
// transparent huge pages, and a caller with other work can start both
// accesses early (PrefetchGroup, PrefetchSlot). The second, for users the
// table does not know, is the fallback FallbackBucket(h, N) = h mod N,
// where N is the deployment's fixed bucket count. An Assigner combines the
// two for one deployment; TableBuilder makes a Table.
//
// A table travels as a file (WriteTo, ReadTable, LoadTable), all integers
// little-endian:
//
//	header  32 bytes
//	        magic        8 bytes  "SRTABLE\x00"
//	        version      uint32   1
//	        hash id      uint32   1 = xxhash64 of the key's UTF-8 bytes, seed 0
//	        buckets N    uint32   1..65536
//	        reserved     uint32   0
//	        users        uint64   number of users U (at most MaxUsers)
//	body    U × uint64   key hashes, strictly ascending
//	        U × uint16   buckets, bucket i belongs to hash i, each < N
//	trailer uint64       xxhash64 (seed 0) of header and body
//
// The file is 10·U + 40 bytes. ReadTable verifies every field, the order of
// the hashes, the range of the buckets and the checksum, and rejects
// anything after the trailer. FORMAT.md beside this file is the same
// description for tools outside Go. The file is not the in-memory layout:
// a Table packs each user's hash and bucket into one uint64 (see Table),
// which ReadTable builds and WriteTo takes apart again.
//
// Two more pieces decide a key's bucket, both around the table. Partition
// is the offline partitioner that builds it from a follower graph (the
// Social Hash Partitioner: recursive bisection minimising p-fanout, under a
// balance bound, deterministic for a seed); ReadEdgeList reads the graph.
// Hot keys spread over several buckets: HotList is the static list of hot
// accounts and HeavyHitters the on-line detector; PickSibling chooses which
// of a hot key's buckets one request takes (the siblings themselves come
// from the placement, package buckets).
package hashing

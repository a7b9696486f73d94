// Package proxy is socialroute's edge server: it finds each request's
// routing key, routes it to its bucket's datacenter, and forwards it.
//
// A request goes one way through: ambiguous framing is refused; the routing
// rules (header, cookie, query parameter, path segment, each optionally
// limited to a path prefix) yield a key; the Router maps the key to a bucket
// (social-hash table, else xxhash), the bucket to its plan (package buckets)
// and the plan to the first datacenter that is not drained, is up (package
// health) and has an upstream whose breaker is ready; the request, with
// hop-by-hop and client-supplied internal headers removed, goes to one of
// that datacenter's upstreams over a pooled keep-alive connection (one
// that idled is looked at first, so no request is sent into a connection
// the upstream closed meanwhile). An
// idempotent request that fails (connection error, timeout, 502/503/504) is
// retried on the next usable datacenter of its plan; a request that never
// left (connection refused, breaker open) may go elsewhere whatever its
// method. What the proxy answers itself is a short text/plain 4xx or 5xx.
//
// Configuration and the assignment table are published together as one
// immutable state through an atomic.Pointer: Reload swaps it without
// dropping a request, and the request path takes no lock and, in steady
// state, allocates nothing. Client and upstream sockets are turnConns: a
// write is held back and sent by the next Read, and socket deadlines are
// armed only when they must move earlier. On Linux their reads wait in a
// readyOrder rather than the runtime's poller: it wakes them in the order
// their sockets became readable, first ready first served as in an event
// loop (the runtime serves each batch of ready goroutines last first), and
// it says when a wakeup is pending, so that each message is read with one
// system call, not Go's usual failed read before parking.
// The routing key's table memory is prefetched as soon as the key is
// known, and the request is routed after its headers are rewritten, by
// when that memory has arrived.
package proxy

// Package health answers one question on the request path: may this
// datacenter, or this upstream, take a request now?
//
// Two kinds of signal answer it. Status says whether a datacenter as a whole
// is usable; the routing core asks it for every datacenter it considers, so
// implementations must be safe for concurrent use, never block and never
// allocate. Static is the answer while no fleet-wide view exists: every
// datacenter is up unless marked down. Breaker is the passive signal: one
// gobreaker circuit breaker per upstream, fed by the outcome of forwarded
// requests, with its state mirrored in atomics so that skipping an open
// upstream costs no lock.
package health

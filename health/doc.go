// Package health answers one question on the request path: may this
// datacenter, or this upstream, take a request now? And it keeps the fleet
// of proxy nodes agreeing on the answer, and on the bucket map, by gossip.
//
// On the request path, two kinds of signal answer it. Status says whether a
// datacenter as a whole is usable; the routing core asks it for every
// datacenter it considers, so implementations must be safe for concurrent
// use, never block and never allocate. Static is the answer while no
// fleet-wide view exists: every datacenter is up unless marked down.
// Breaker is the passive signal: one gobreaker circuit breaker per
// upstream, fed by the outcome of forwarded requests, with its state
// mirrored in atomics so that skipping an open upstream costs no lock.
//
// Cluster is the fleet-wide Status. Each node joins two memberlist pools,
// its continent's LAN pool (fast failure detection) and the fleet's WAN
// pool (ocean-crossing round trips), and gossips in its node metadata (Meta)
// its datacenter, whether it is draining, how many of its own datacenter's
// upstreams its active checks find healthy (check.go), the bucket-map
// version it routes by and its hottest keys. The evaluation loop turns the
// members' metadata into one bit per datacenter: down when every node of it
// died or none of its nodes finds an upstream healthy. Alongside, nodes
// send each other, over TCP, the bucket map's overrides (Placement: pins,
// drains, homes, moves; the newest version wins) and their decayed
// per-bucket access counts (AccessReport, read by the placement advisor).
// handover.go lets a node's gossip pass from an old process to a new one
// across a zero-downtime upgrade; FaultTransport cuts links in tests.
package health

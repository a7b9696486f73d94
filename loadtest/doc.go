// Package loadtest offers load to socialroute and simulates the
// datacenters' web tier it routes to, so that the product's main job can
// be run and measured on one machine with nothing installed.
//
// The pieces:
//
//   - The web tier (StartWebTier): one process standing in for every
//     datacenter of a topology, one fasthttp server per upstream address,
//     each datacenter in front of an LRU cache of users' data. A request
//     for /users/U/... reads U's data and that of every account U follows
//     (from the follower graph), /accounts/A/... reads A's; answers say
//     which datacenter served them (X-Served-By) and how many reads hit
//     the cache (X-Cache-Hits, X-Cache-Misses). A datacenter can be
//     crashed, made to answer 503, slowed down and recovered, from Go or
//     over a small HTTP control endpoint (ServeControl).
//   - Workloads (NewWorkload): requests drawn from a follower graph, read
//     from an edge list or generated (GenerateGraph: planted communities,
//     power-law followers): viewers' feeds, profiles of followed accounts,
//     hot accounts, in a configurable mix, from configurable continents.
//     Request i depends only on the seed and i, so two runs send the same
//     requests.
//   - Runs (Run): open loop (a constant arrival rate, latency measured from
//     each request's scheduled send time, so a stall is not hidden) or
//     closed loop (workers waiting for answers), with live progress, and a
//     Report: throughput, HDR latency percentiles, errors by kind, each
//     datacenter's share, locality, spread evenness, cache hit ratio, a
//     timeline; as text, JSON, or a self-contained HTML plot.
//   - Compare: the same requests routed by xxhash and by a social-hash
//     table, the web tier's cache miss rates side by side.
//   - RunDemo: the reference topology with three gossiping proxy nodes in
//     this process, under load, while a datacenter and its proxy node crash
//     and come back; it tells what the fleet does as it happens.
package loadtest

// Package loadtest generates load against socialroute and simulates the
// datacenters' web tier it routes to.
//
// Two halves, each meant to grow on its own:
//
//   - The web tier (WebTier): one process standing in for every datacenter
//     of a topology, one fasthttp server per upstream address. Responses say
//     which datacenter served them (X-Served-By) and are counted per
//     datacenter; a datacenter can be killed (Fail: connections refused) and
//     brought back (Recover: same addresses).
//   - The load side: for now a closed-loop generator (a fixed number of
//     workers, each sending its next request when the last one is answered)
//     that checks every answer against the placement, and RunDemo, which
//     puts a proxy between the two and tells the story of a datacenter
//     failure in three phases. Open-loop rates, latency histograms and
//     social-graph workloads belong here too.
package loadtest

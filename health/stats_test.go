package health

import (
	"testing"
	"time"
)

func TestAccessReportRoundTrips(t *testing.T) {
	r := AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{0: {1, 0}, 4095: {0, 1 << 31}, 65535: {7, 8}}}
	b := encodeReport("edge-eu-1", r)
	node, got, err := decodeReport(b)
	if err != nil || node != "edge-eu-1" || got.Continents != 2 || len(got.ByBucket) != 3 {
		t.Fatalf("%q %+v %v", node, got, err)
	}
	for k, v := range r.ByBucket {
		if got.ByBucket[k][0] != v[0] || got.ByBucket[k][1] != v[1] {
			t.Fatalf("bucket %d: %v, want %v", k, got.ByBucket[k], v)
		}
	}
	for i := range len(b) - 1 {
		if _, _, err := decodeReport(b[:i]); err == nil {
			t.Fatalf("a report cut to %d bytes decoded", i)
		}
	}
	// 4096 buckets with counts in the thousands stay small.
	big := AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{}}
	for b := range uint32(4096) {
		big.ByBucket[b] = []uint32{3000, 3000}
	}
	if n := len(encodeReport("edge-us-east-1", big)); n > 4096*6+32 {
		t.Fatalf("4096 buckets encode to %d bytes", n)
	} else {
		t.Logf("a full report of 4096 buckets x 2 continents: %d bytes", n)
	}
}

func TestMergeReportsSkipsDeadAndStaleNodes(t *testing.T) {
	now := time.Unix(1000, 0)
	reports := map[string]heardReport{
		"us-1": {at: now, r: AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{5: {10, 0}}}},
		"eu-1": {at: now.Add(-time.Second), r: AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{5: {0, 30}, 6: {0, 1}}}},
		"eu-2": {at: now.Add(-time.Hour), r: AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{5: {0, 1000}}}},
		"gone": {at: now, r: AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{5: {1000, 0}}}},
	}
	live := map[string]bool{"us-1": true, "eu-1": true, "eu-2": true}
	m, used := mergeReports(reports, live, now, time.Minute)
	if used != 2 || m.ByBucket[5][0] != 10 || m.ByBucket[5][1] != 30 || m.ByBucket[6][1] != 1 {
		t.Fatalf("merged %d reports: %+v", used, m)
	}
}

// Reports travel over the fleet: each node's FleetAccess sums them all.
func TestAccessReportsMergeOverTheFleet(t *testing.T) {
	east, west, eu := fleet(t)
	east.ShareAccess(AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{9: {40, 0}}})
	west.ShareAccess(AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{9: {20, 0}}})
	eu.ShareAccess(AccessReport{Continents: 2, ByBucket: map[uint32][]uint32{9: {0, 90}, 10: {0, 5}}})
	for _, n := range []*testNode{east, west, eu} {
		took := eventually(t, 5*time.Second, n.name+" merges all three reports", func() bool {
			m, used := n.FleetAccess(time.Minute)
			return used == 3 && m.ByBucket[9][0] == 60 && m.ByBucket[9][1] == 90 && m.ByBucket[10][1] == 5
		})
		t.Logf("%s merged the fleet's reports after %v", n.name, took)
	}
}

#!/usr/bin/env bash
# The partitioner at scale: a generated follower graph (default 1M users,
# 20M edges) partitioned into 64 and 1024 buckets, the social hash against
# plain xxhash, with time and peak memory; then cond-mat-2005 against METIS
# (metis.sh), when gpmetis is installed.
#
#   bench/partition/run.sh                  # from the project root
#   USERS=100000 EDGES=2000000 bench/partition/run.sh   # a quick one
#
# Reports go to $OUT (default /tmp/socialroute-partition-bench): report-K.txt
# and report-K.json per bucket count K, with the tables and hot accounts. The graph is generated once and
# kept there; it is deterministic (--seed), so a rerun measures the same
# graph. Needs Go (or SR=path/to/socialroute); the METIS part needs gpmetis
# (Debian package metis) and skips itself without it.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-/tmp/socialroute-partition-bench}
USERS=${USERS:-1000000}
EDGES=${EDGES:-20000000}
BUCKETS=${BUCKETS:-"64 1024"}
SEED=${SEED:-1}
mkdir -p "$OUT"

# SR names a socialroute binary to use instead of building one.
sr=${SR:-$OUT/socialroute}
[ -n "${SR:-}" ] || go build -o "$sr" ./cmd/socialroute
export SR="$sr"

graph="$OUT/graph-$USERS-$EDGES-$SEED.txt.gz"
if [ ! -s "$graph" ]; then
  "$sr" partition --generate-users "$USERS" --generate-edges "$EDGES" --seed "$SEED" \
    --generate-out "$graph" --generate-only
fi

for k in $BUCKETS; do
  echo "== $USERS users, $EDGES edges, $k buckets"
  "$sr" partition --graph "$graph" --buckets "$k" --seed "$SEED" \
    --out "$OUT/table-$k.sht" --hot-out "$OUT/hot.csv" --json-out "$OUT/report-$k.json" |
    tee "$OUT/report-$k.txt"
done

bench/partition/metis.sh

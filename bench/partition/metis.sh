#!/usr/bin/env bash
# The social hash against METIS on a real community graph: cond-mat-2005
# (co-authorship, 39,577 users with an edge, 175,693 edges) from the shared
# data folder, partitioned by both into the same bucket counts at the same
# balance bound (gpmetis -ufactor=50: largest part at most 5% above the
# average; METIS has no lower bound, the social hash also keeps every bucket
# at least 5% below), reported side by side with xxhash.
#
#   bench/partition/metis.sh          # from the project root
#   PARTS="2 64 1024" bench/partition/metis.sh
#
# Uses gpmetis when it is installed (Debian: apt-get install metis) and
# never installs it; without it, says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-/tmp/socialroute-partition-bench}
PARTS=${PARTS:-"64 1024"}
DATA=${DATA:-../shared/data/cond-mat-2005.edges.gz}
mkdir -p "$OUT"

if ! command -v gpmetis > /dev/null; then
  echo "metis.sh: gpmetis not found (Debian package metis); skipping the METIS comparison"
  exit 0
fi
if [ ! -f "$DATA" ]; then
  echo "metis.sh: $DATA not found (the shared data folder is absent); skipping"
  exit 0
fi
# SR names a socialroute binary to use instead of building one.
sr=${SR:-$OUT/socialroute}
[ -n "${SR:-}" ] || go build -o "$sr" ./cmd/socialroute

# METIS graph format: a "vertices edges" header, then line i (from 1) lists
# the neighbours of vertex i-1, numbered from 1. The data has dense 0-based
# ids, deduplicated, without self-loops; isolated ids get empty lines.
graph="$OUT/$(basename "$DATA" .edges.gz).metis"
zcat "$DATA" | awk -f bench/partition/tometis.awk > "$graph"

for k in $PARTS; do
  echo "== $(basename "$DATA"), $k buckets: social hash, xxhash and METIS"
  gpmetis -ufactor=50 -seed=1 "$graph" "$k" > "$OUT/gpmetis-$k.log"
  grep -E "Edgecut|Partitioning:" "$OUT/gpmetis-$k.log" | sed 's/^/gpmetis: /'
  "$sr" partition --graph "$DATA" --undirected --buckets "$k" --quiet \
    --compare-parts "$graph.part.$k" --compare-name metis --json-out "$OUT/condmat-$k.json" |
    tee "$OUT/condmat-$k.txt"
done

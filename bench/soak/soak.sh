#!/usr/bin/env bash
# bench/soak/soak.sh: run socialroute under steady load for minutes and show
# that goroutines, file descriptors and memory stay flat (no leak).
#
#   bash bench/soak/soak.sh               # 5 minutes, a sample every 10 s
#   bash bench/soak/soak.sh --minutes 30
#
# It builds socialroute and the Go backend of bench/, starts 4 backends on
# 127.0.0.1:18301-18304 and the proxy on 127.0.0.1:18310 (admin endpoint on
# 18311, with a throwaway token), drives it with wrk (64 connections, random
# X-User-ID) for the whole run, and every interval reads the proxy's
# goroutines and heap from /metrics, its open file descriptors from
# /proc/PID/fd and its resident memory from /proc/PID/status (the heap
# right after a forced collection, so it is live data). At the end it
# compares the last third of the samples with the middle third: a leak grows
# from one to the other, a warm steady state does not. It installs nothing:
# it needs go, wrk and curl, and says which is missing. Not part of CI.
set -uo pipefail

minutes=5
interval=10
while [ $# -gt 0 ]; do
	case "$1" in
	--minutes) minutes=$2; shift 2 ;;
	--interval) interval=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
done

SOAK=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$SOAK/../.." && pwd)
for t in go wrk curl; do
	command -v "$t" >/dev/null || { echo "soak.sh: needs $t (Debian: apt-get install $t)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "building socialroute and the backend..."
(cd "$ROOT" && go build -o "$WORK/socialroute" ./cmd/socialroute && go build -o "$WORK/backend" ./bench/backend) || exit 1

"$WORK/backend" -listen 127.0.0.1:18301,127.0.0.1:18302,127.0.0.1:18303,127.0.0.1:18304 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)

token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
echo "$token" >"$WORK/admin.token"
cat >"$WORK/soak.yaml" <<YAML
node: {datacenter: dc1}
listen: {address: 127.0.0.1:18310}
admin: {enabled: true, address: 127.0.0.1:18311, token_file: admin.token}
continents: [{name: soak}]
datacenters:
  - {name: dc1, continent: soak, capacity: 1, upstreams: [127.0.0.1:18301]}
  - {name: dc2, continent: soak, capacity: 1, upstreams: [127.0.0.1:18302]}
  - {name: dc3, continent: soak, capacity: 1, upstreams: [127.0.0.1:18303]}
  - {name: dc4, continent: soak, capacity: 1, upstreams: [127.0.0.1:18304]}
routing: {rules: [{header: X-User-ID}], no_key: reject}
log: {level: warn}
YAML
"$WORK/socialroute" serve --config "$WORK/soak.yaml" >"$WORK/proxy.log" 2>&1 &
proxy=$!
PIDS+=($proxy)
for _ in $(seq 100); do
	curl -sf -o /dev/null -H "X-User-ID: 1" http://127.0.0.1:18310/ && break
	sleep 0.1
done

seconds=$((minutes * 60))
echo "load: wrk, 64 connections, random users, ${minutes} min; a sample every ${interval} s"
timeout $((seconds + 30)) wrk -t1 -c64 -d"${seconds}s" -s "$ROOT/bench/userid.lua" http://127.0.0.1:18310/ >"$WORK/wrk.log" 2>&1 &
PIDS+=($!)

metric() { # name: the value of an unlabelled metric
	curl -sf -H "Authorization: Bearer $token" http://127.0.0.1:18311/metrics | awk -v m="$1" '$1 == m { print $2; exit }'
}

printf '%8s %11s %6s %10s %10s\n' "elapsed" "goroutines" "fds" "rss_MiB" "heap_MiB"
samples=()
for ((t = interval; t <= seconds; t += interval)); do
	sleep "$interval"
	kill -0 "$proxy" 2>/dev/null || { echo "soak.sh: the proxy died; its log:" >&2; cat "$WORK/proxy.log" >&2; exit 1; }
	# A collection first, so the heap figure is live data, not the GC's
	# timing (the heap profile endpoint runs one with gc=1).
	curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:18311/debug/pprof/heap?gc=1"
	g=$(metric go_goroutines)
	heap=$(metric go_memstats_heap_inuse_bytes)
	fds=$(ls /proc/"$proxy"/fd | wc -l)
	rss=$(awk '/^VmRSS/ { print $2 }' /proc/"$proxy"/status)
	row=$(awk -v t="$t" -v g="$g" -v f="$fds" -v r="$rss" -v h="$heap" 'BEGIN { printf "%7ds %11d %6d %10.1f %10.1f", t, g, f, r / 1024, h / 1048576 }')
	echo "$row"
	samples+=("$g $fds $rss $heap")
done

echo
grep -E "Requests/sec|requests in|Socket errors|Non-2xx" "$WORK/wrk.log" || true
n=${#samples[@]}
if [ "$n" -lt 6 ]; then
	echo "soak.sh: too few samples for a verdict (run longer)"
	exit 0
fi
printf '%s\n' "${samples[@]}" | awk -v n="$n" '
	{ g[NR] = $1; f[NR] = $2; r[NR] = $3; h[NR] = $4 }
	function mean(a, lo, hi,   s, i) { s = 0; for (i = lo; i <= hi; i++) s += a[i]; return s / (hi - lo + 1) }
	END {
		a = int(n / 3) + 1; b = int(2 * n / 3); c = b + 1
		split("goroutines fds rss heap", names, " ")
		ok = 1
		for (k = 1; k <= 4; k++) {
			if (k == 1) { m1 = mean(g, a, b); m2 = mean(g, c, n) }
			if (k == 2) { m1 = mean(f, a, b); m2 = mean(f, c, n) }
			if (k == 3) { m1 = mean(r, a, b); m2 = mean(r, c, n) }
			if (k == 4) { m1 = mean(h, a, b); m2 = mean(h, c, n) }
			growth = (m1 > 0) ? (m2 - m1) / m1 : 0
			flat = growth < 0.10
			ok = ok && flat
			printf "%-10s middle third %12.1f  last third %12.1f  growth %+6.1f%%  %s\n", names[k], m1, m2, 100 * growth, flat ? "flat" : "GROWING"
		}
		print ok ? "verdict: flat" : "verdict: something grows; look at /debug/pprof on the admin port during a run"
		exit ok ? 0 : 1
	}'

#!/usr/bin/env bash
# bench/profile.sh: where socialroute's CPU goes under run.sh's load.
#
#  1. CPU and allocation profiles (runtime/pprof) of the proxy, run by the
#     harness bench/sprof exactly as `socialroute serve` runs it (same
#     config, table, GOMAXPROCS=1, pinned), while wrk sends the benchmark's
#     load; printed as the top functions and a summary by component.
#  2. With perf (Debian: linux-perf) and tracepoints readable: system calls
#     and context switches per request for socialroute, HAProxy and nginx
#     under the same load, which is where a Go proxy and an event-loop
#     proxy differ most.
#  3. With bpftrace (Debian: bpftrace) and root: where requests wait, by
#     station (the proxy, wrk, the backends), from bench/waits.bt, for the
#     same targets under the same load. At a saturated closed loop the
#     latency is mostly this queueing, so it shows where a p99 comes from.
#
# It installs nothing; it needs go and wrk, and nginx (or go) for the
# backends. Files go to --out (default bench/results/profile-TIMESTAMP).
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

SECONDS_PROF=10
WARMUP=2
CONNS=64
USERS=1000000
BACKEND=auto
PROXY_CPU=0
LOAD_CPU=1
OUT=""
SYSCALLS=1
WAITS=1
TARGETS=haproxy,nginx,socialroute

usage() {
	cat <<EOF
usage: bash bench/profile.sh [options]

  --seconds S        profile this long (default $SECONDS_PROF)
  --connections N    wrk connections (default $CONNS)
  --targets LIST     proxies for the system-call count and waits (default $TARGETS)
  --no-syscalls      skip the perf system-call count
  --no-waits         skip the bpftrace waits
  --backend KIND     nginx or go (default: nginx when installed)
  --src DIR          profile socialroute as built from this module (default: this checkout)
  --out DIR          where profiles go (default bench/results/profile-TIMESTAMP)
EOF
}
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) SECONDS_PROF=$2; shift ;;
	--connections) CONNS=$2; shift ;;
	--targets) TARGETS=$2; shift ;;
	--no-syscalls) SYSCALLS=0 ;;
	--no-waits) WAITS=0 ;;
	--backend) BACKEND=$2; shift ;;
	--out) OUT=$2; shift ;;
	--src) ROOT=$(cd "$2" && pwd) || exit 2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "profile.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
DURATION=$((SECONDS_PROF + WARMUP + 1))

for tool in go wrk; do
	have "$tool" || { note "missing: $tool (required)"; exit 2; }
done
if [ "$BACKEND" = auto ]; then if have nginx; then BACKEND=nginx; else BACKEND=go; fi; fi
setup_pinning

OUT=${OUT:-$BENCH/results/profile-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/srprof.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/bin"
PIDS=()
trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
check_ports_free || exit 2

build_socialroute || exit 1
if [ "$BACKEND" = go ]; then build_go_backend || exit 1; fi
bench_build sprof || { note "go build ./bench/sprof failed"; exit 1; }
cp "$WORK/bin/sprof" "$OUT/sprof" # pprof needs the binary for symbols

# ---- 1. pprof -------------------------------------------------------------------
note "CPU profile of socialroute: ${SECONDS_PROF}s after ${WARMUP}s warm-up"
start_backends || exit 1
start_proxy socialroute "$WORK/bin/sprof" -config "$SR_CONFIG" -cpuprofile "$OUT/cpu.pprof" \
	-memprofile "$OUT/allocs.pprof" -warmup "${WARMUP}s" -seconds "${SECONDS_PROF}s" || exit 1
sprof_pid=$PROXY_PID
run_wrk "http://127.0.0.1:${PORT[socialroute]}/feed" "$DURATION" "$OUT/wrk-pprof.out"
# sprof serves on after its profile: wait for the profile to be written.
for _ in $(seq 100); do grep -q 'sprof: requests' "$WORK/socialroute/stdout.log" 2>/dev/null && break; sleep 0.1; done
stop_pid "$sprof_pid"
stop_backends
grep -h 'sprof:' "$WORK/socialroute/stdout.log" >&2

{
	echo "== CPU profile: top functions by own time (GOMAXPROCS=1, ${SECONDS_PROF}s)"
	go tool pprof -top -nodecount=30 "$OUT/sprof" "$OUT/cpu.pprof" 2>/dev/null | sed -n '4,40p'
	echo
	echo "== by component (own time)"
	go tool pprof -top -nodefraction=0 -nodecount=100000 "$OUT/sprof" "$OUT/cpu.pprof" 2>/dev/null |
		awk 'NR > 6 && $1 ~ /s$|ms$/ {
			v = $1; if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else sub(/s$/, "", v)
			n = $6
			if (n ~ /linux\.Syscall6|RawSyscall/) c = "kernel (system calls: reads, writes, epoll)"
			else if (n ~ /^github\.com\/socialroute\/socialroute\/hashing/) c = "socialroute: hashing (table lookup)"
			else if (n ~ /^github\.com\/socialroute\/socialroute\//) c = "socialroute: proxy, health, buckets"
			else if (n ~ /gobreaker/) c = "gobreaker"
			else if (n ~ /fasthttp/) c = "fasthttp (parse, serialize, pools)"
			else if (n ~ /^(time\.|runtime\.nanotime|runtime\.walltime)|vdso/) c = "clock reads (time.Now, deadlines)"
			else if (n ~ /^(internal\/poll|net\.|syscall\.|bufio\.)/) c = "net, poll, bufio wrappers"
			else if (n ~ /^runtime\.|^internal\/runtime/) c = "Go runtime (scheduler, netpoll, timers, GC)"
			else c = "other"
			s[c] += v; tot += v
		} END { for (c in s) printf "%6.1f%%  %s\n", 100 * s[c] / tot, c }' | sort -rn
	echo
	echo "== socialroute's own request path (cumulative)"
	go tool pprof -top -cum -nodefraction=0 -nodecount=100000 "$OUT/sprof" "$OUT/cpu.pprof" 2>/dev/null |
		grep -E 'socialroute/(proxy|health|hashing|buckets)\.|gobreaker.*Execute' | head -20
	echo
	echo "== allocations while serving (alloc_space, whole run)"
	go tool pprof -sample_index=alloc_space -top -nodecount=12 "$OUT/sprof" "$OUT/allocs.pprof" 2>/dev/null | sed -n '4,18p'
} | tee "$OUT/pprof-summary.txt"
grep '^WRK_RESULT' "$OUT/wrk-pprof.out" | sed 's/^/load during the profile: /'

# under_load TARGET COMMAND...: start TARGET and the backends, warm up, and
# run COMMAND (in the background; it reads $LOAD_PID, the process to watch)
# while wrk sends ${SECONDS_PROF}s of load, and LOAD_SLACK seconds more for
# a COMMAND that takes time to start watching. Sets LOAD_REQS, the requests
# wrk completed; fails when there were none, TARGET could not start or
# COMMAND failed.
LOAD_SLACK=0
under_load() {
	local t=$1 cmd_pid url f st cmd_rc
	shift
	LOAD_REQS=0
	case "$t" in haproxy | nginx) have "$t" || { note "$t is not installed"; return 1; } ;; esac
	start_backends || return 1
	start_proxy "$t" || { stop_backends; return 1; }
	LOAD_PID=$PROXY_PID
	if [ "$t" = nginx ]; then # watch the worker, not the master
		for f in /proc/[0-9]*/stat; do
			{ read -r st <"$f"; } 2>/dev/null || continue
			[[ "${st##*) }" == ?" $PROXY_PID "* ]] && LOAD_PID=${f//[!0-9]/}
		done
	fi
	url="http://127.0.0.1:${PORT[$t]}/feed"
	run_wrk "$url" "$WARMUP" "$WORK/$t.warm.out"
	"$@" &
	cmd_pid=$!
	PIDS+=("$cmd_pid")
	run_wrk "$url" "$((SECONDS_PROF + LOAD_SLACK))" "$WORK/$t.load.out"
	wait "$cmd_pid"
	cmd_rc=$?
	stop_pid "$PROXY_PID"
	stop_backends
	[ "$cmd_rc" = 0 ] || { note "$t: $1 failed (exit $cmd_rc)"; return 1; }
	LOAD_REQS=$(sed -n 's/^WRK_RESULT requests=\([0-9]*\).*/\1/p' "$WORK/$t.load.out")
	[ -n "$LOAD_REQS" ] && [ "$LOAD_REQS" -gt 0 ]
}
IFS=, read -r -a want <<<"$TARGETS"

# ---- 2. system calls per request -------------------------------------------------
count_syscalls() { perf stat -x, -e "$events" -p "$LOAD_PID" -o "$WORK/$1.perf" -- sleep "$SECONDS_PROF"; }
if [ "$SYSCALLS" = 1 ]; then
	if ! have perf; then
		note "missing: perf (Debian: linux-perf): no system-call count"
	elif ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
		note "perf cannot read the syscall tracepoints here: no system-call count (perf_event_paranoid, or tracefs: mount -t tracefs nodev /sys/kernel/tracing)"
	else
		events="raw_syscalls:sys_enter,context-switches"
		for sc in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait futex nanosleep getsockopt; do
			if perf stat -e "syscalls:sys_enter_$sc" -- true >/dev/null 2>&1; then events+=",syscalls:sys_enter_$sc"; fi
		done
		echo
		echo "== system calls per request (perf stat, ${SECONDS_PROF}s of load, after ${WARMUP}s warm-up)" | tee -a "$OUT/syscalls.txt"
		for t in "${want[@]}"; do
			under_load "$t" count_syscalls "$t" || continue
			awk -F, -v t="$t" -v n="$LOAD_REQS" '
				$1 ~ /^[0-9]+$/ { e = $3; sub(/^(syscalls:sys_enter_|raw_syscalls:sys_enter)/, "", e); if (e == "") e = "all"; v[e] = $1 / n }
				END {
					line = sprintf("%-12s all %.2f", t, v["all"])
					split("read recvfrom readv recvmsg write sendto writev sendmsg epoll_wait epoll_pwait futex nanosleep getsockopt context-switches", ks, " ")
					for (i = 1; i in ks; i++) if ((ks[i] in v) && v[ks[i]] >= 0.005) line = line sprintf("  %s %.2f", ks[i], v[ks[i]])
					print line
				}' "$WORK/$t.perf" | tee -a "$OUT/syscalls.txt"
		done
	fi
fi

# ---- 3. where requests wait ------------------------------------------------------
# bpftrace takes a second or two to attach; its window starts then, so the
# load runs on for LOAD_SLACK seconds to cover all of it.
trace_waits() {
	bpftrace "$BENCH/waits.bt" "$LOAD_PID" "$SECONDS_PROF" >"$WORK/$1.waits" 2>"$WORK/$1.waits.err" ||
		{ grep -v RLIMIT_MEMLOCK "$WORK/$1.waits.err" | head -5 >&2; return 1; }
}
if [ "$WAITS" = 1 ]; then
	if ! have bpftrace; then
		note "missing: bpftrace (Debian: bpftrace): no waits"
	elif ! bpftrace -e 'tracepoint:sock:sk_data_ready { exit(); } interval:ms:100 { exit(); }' >/dev/null 2>&1; then
		note "bpftrace cannot attach the sock tracepoints here: no waits (it needs root, and tracefs: mount -t tracefs nodev /sys/kernel/tracing)"
	else
		echo
		echo "== where requests wait: time from data ready on a socket to its owner's read (bpftrace, us)" | tee -a "$OUT/waits.txt"
		printf '%-12s %-9s %8s %6s %6s %6s %6s\n' target station reads mean p50 p90 p99 | tee -a "$OUT/waits.txt"
		LOAD_SLACK=3
		for t in "${want[@]}"; do
			under_load "$t" trace_waits "$t" || continue
			cp "$WORK/$t.waits" "$OUT/waits-$t.txt"
			# lhist rows are "[lo, hi)  count |@@@|", with 1024 written 1K and
			# the last row "[2K, ...)"; percentiles are the low edge of the
			# bucket they fall in, the mean uses bucket middles.
			awk -v t="$t" '
				function num(x, m) { m = (x ~ /K/) ? 1024 : (x ~ /M/) ? 1048576 : 1; gsub(/[^0-9]/, "", x); return x * m }
				/^@[a-z]+:/ { st = substr($1, 2, length($1) - 2); order[++ns] = st; next }
				st != "" && /^\[/ {
					lo = num($1); hi = ($2 ~ /[0-9]/) ? num($2) : lo
					k = ++nb[st]; blo[st, k] = lo; cnt[st, k] = $3; tot[st] += $3; sum[st] += $3 * (lo + hi) / 2
				}
				END {
					for (i = 1; i <= ns; i++) {
						s = order[i]; if (tot[s] == 0) continue
						split("", p); c = 0
						for (k = 1; k <= nb[s]; k++) {
							c += cnt[s, k]
							if (!(50 in p) && c >= 0.50 * tot[s]) p[50] = blo[s, k]
							if (!(90 in p) && c >= 0.90 * tot[s]) p[90] = blo[s, k]
							if (!(99 in p) && c >= 0.99 * tot[s]) p[99] = blo[s, k]
						}
						printf "%-12s %-9s %8d %6.0f %6d %6d %6d\n", t, s, tot[s], sum[s] / tot[s], p[50], p[90], p[99]
					}
				}' "$WORK/$t.waits" | tee -a "$OUT/waits.txt"
		done
	fi
fi
echo
echo "profiles and summaries: $OUT"
echo "  go tool pprof -http=: $OUT/sprof $OUT/cpu.pprof"

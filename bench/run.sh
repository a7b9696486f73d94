#!/usr/bin/env bash
# bench/run.sh: socialroute against HAProxy and nginx on loopback, same job.
#
# Every target routes requests whose X-User-ID header is a random user id
# by a consistent hash over the same 4 backends (see socialroute.yaml,
# haproxy.cfg, nginx-proxy.conf). Targets, in order:
#   direct       wrk straight at one backend (the floor: no proxy at all)
#   haproxy      balance hdr(X-User-ID), hash-type consistent, nbthread 1
#   nginx        hash $http_x_user_id consistent, worker_processes 1
#   socialroute  social-hash table + rendezvous + breakers, GOMAXPROCS=1
# The proxy under test is pinned to one core (--proxy-cpu, default 0);
# wrk and the backends share the other (--load-cpu, default 1), and so do,
# for the run, kernel threads that stall a core for milliseconds (kdamond;
# their affinity is restored at exit, and the header says what moved).
#
# For each target it reports req/s, p50/p99 latency (wrk), the proxy's CPU
# time per request (utime+stime of its processes from /proc/PID/stat,
# before and after the measured wrk run, over the requests wrk completed),
# the busy time of the proxy's core per request (which holds the softirq
# time of loopback delivery whether or not the kernel charges it to the
# process), wrk's own CPU per request and the ratio proxy/wrk: wrk's cost
# per request is a yardstick that moves with the machine, so the ratio
# compares across machines where microseconds do not.
#
# With --runs N every target is measured N times, interleaved, and the run
# with the median proxy CPU per request is shown (all runs go to the JSON);
# a last line gives socialroute's ratios to HAProxy round by round, the
# steadier comparison on a noisy machine. --baseline DIR adds a target,
# socialroute built from another checkout with the same config, measured in
# the same rounds: the way to see what a change does on a machine whose
# speed drifts between runs.
#
# It installs nothing. It uses what is there and says what is missing:
#   wrk              required (Debian: wrk)
#   go               builds socialroute and its table; the backends without nginx
#   haproxy, nginx   their targets are skipped when absent (Debian: haproxy, nginx)
#   taskset          pinning (util-linux); without it nothing is pinned
# Each wrk run is bounded by -d (and by timeout(1) when present); every
# process it starts is stopped on exit, by its PID.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

DURATION=10
WARMUP=2
RUNS=3
CONNS=64
BACKEND=auto
TARGETS=direct,haproxy,nginx,socialroute
OUT="$BENCH/results"
PROXY_CPU=0
LOAD_CPU=1
USERS=1000000
KEEP=0
SR_CONFIG_SRC=""
NOISE_MAX=10
MAX_TRIES=3
QUIET_WAIT=60
REPORT=""
BASE_ROOT=""
BASE_SKIP=""

usage() {
	cat <<EOF
usage: bash bench/run.sh [--quick] [options]

  --quick              one 3 s run per target (1 s warm-up) instead of
                       $RUNS runs of ${DURATION} s (${WARMUP} s warm-up)
  --duration S         seconds of measured load per run (default $DURATION)
  --warmup S           seconds of unmeasured load before each (default $WARMUP)
  --runs N             measure each target N times, show the median (default $RUNS)
  --connections N      wrk connections, one wrk thread (default $CONNS)
  --targets LIST       comma-separated subset of $TARGETS
  --backend KIND       nginx or go (default: nginx when installed, else go)
  --users N            user ids 1..N, all in the social-hash table (default $USERS)
  --src DIR            build socialroute from this module instead (e.g. a worktree with a fix)
  --baseline DIR       also measure socialroute built from DIR (e.g. a worktree of the commit
                       before a change), in the same rounds, as target "baseline"; the summary
                       gives socialroute's ratios to it as well
  --go CMD             build socialroute with this go command (e.g. a toolchain with a patched
                       runtime: bench/fifo-go.sh makes one); the header names its version
  --sr-config FILE     socialroute config instead of bench/socialroute.yaml
  --proxy-cpu N        core for the proxy under test (default $PROXY_CPU)
  --load-cpu N         core for wrk and the backends (default $LOAD_CPU)
  --out DIR            where the JSON and CSV results go (default bench/results)
  --noise-max PCT      before each run wait (up to --quiet-wait S, default $QUIET_WAIT) until other
                       processes use at most PCT% of a core, and measure a run again when
                       they used more during it (default $NOISE_MAX; up to $MAX_TRIES tries,
                       the quietest is kept)
  --quiet-wait S       see --noise-max
  --keep               keep the work folder (configs, logs, wrk output)
  --report FILE.json   measure nothing: print the table of an earlier run from its JSON
                       and CSV (e.g. after changing how the shown run is picked)
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) DURATION=3 WARMUP=1 RUNS=1 ;;
	--duration) DURATION=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--connections) CONNS=$2; shift ;;
	--targets) TARGETS=$2; shift ;;
	--backend) BACKEND=$2; shift ;;
	--users) USERS=$2; shift ;;
	--src) ROOT=$(cd "$2" && pwd) || exit 2; shift ;;
	--baseline) BASE_ROOT=$(cd "$2" && pwd) || exit 2; shift ;;
	--go) SR_GO=$2; shift ;;
	--sr-config) SR_CONFIG_SRC=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") || exit 2; shift ;;
	--proxy-cpu) PROXY_CPU=$2; shift ;;
	--load-cpu) LOAD_CPU=$2; shift ;;
	--out) OUT=$2; shift ;;
	--noise-max) NOISE_MAX=$2; shift ;;
	--quiet-wait) QUIET_WAIT=$2; shift ;;
	--keep) KEEP=1 ;;
	--report) REPORT=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
for n in "$DURATION" "$WARMUP" "$RUNS" "$CONNS" "$USERS" "$PROXY_CPU" "$LOAD_CPU" "$NOISE_MAX" "$QUIET_WAIT"; do
	case "$n" in '' | *[!0-9]*) echo "run.sh: not a whole number: $n" >&2; exit 2 ;; esac
done
[ "$DURATION" -ge 1 ] && [ "$RUNS" -ge 1 ] || { echo "run.sh: --duration and --runs must be at least 1" >&2; exit 2; }
if [ -n "$BASE_ROOT" ] && [[ ",$TARGETS," != *,baseline,* ]]; then TARGETS+=",baseline"; fi

# Per target and run ("t#r"): figures; per target: a note.
declare -A R_RPS R_P50 R_P99 R_ERR R_PCPU R_PUSR R_PSYS R_CORE R_PUTIL R_WCPU R_RATIO R_BCPU R_NOISE NOTE

if [ -n "$REPORT" ]; then
	PIN_PROXY=()
	# An earlier run: its parameters from the JSON, its figures from the CSV.
	csvf=${REPORT%.json}.csv
	[ -r "$REPORT" ] && [ -r "$csvf" ] || { echo "run.sh: --report needs FILE.json and FILE.csv beside it" >&2; exit 2; }
	jget() { # the first "key": value of the JSON, a string or a number
		sed -n -e "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" -e "t" -e "s/.*\"$1\": \([-0-9.]*\).*/\1/p" "$REPORT" | head -1
	}
	DURATION=$(jget duration_s) WARMUP=$(jget warmup_s) RUNS=$(jget runs) CONNS=$(jget connections)
	BACKEND=$(jget backend) USERS=$(jget users) REPORT_COMMIT=$(jget commit) REPORT_TIME=$(jget time)
	NCPU=$(jget cores) REPORT_PINNING=$(jget pinning)
	REPORT_BASE=$(jget baseline_commit) REPORT_BASE_ROOT=$(jget baseline_dir)
	want=()
	while IFS=, read -r t r _ rps p50 p99 err pc pu ps core util wc ratio bc noise; do
		[ "$t" = target ] && continue
		[[ " ${want[*]} " == *" $t "* ]] || want+=("$t")
		k="$t#$r"
		R_RPS[$k]=$rps R_P50[$k]=$p50 R_P99[$k]=$p99 R_ERR[$k]=$err R_WCPU[$k]=$wc R_BCPU[$k]=$bc R_NOISE[$k]=$noise
		[ -n "$pc" ] && R_PCPU[$k]=$pc R_PUSR[$k]=$pu R_PSYS[$k]=$ps R_PUTIL[$k]=$util R_RATIO[$k]=$ratio
		[ -n "$core" ] && R_CORE[$k]=$core
		if [ "$noise" -gt "$NOISE_MAX" ]; then
			NOTE[$t]="${NOTE[$t]:+${NOTE[$t]}; }run $r: other processes used $noise% of a core"
		fi
	done <"$csvf"
else
# ---- what is installed -------------------------------------------------------
if ! have wrk; then
	note "missing: wrk (the load generator; Debian package 'wrk'). Nothing to measure with; stopping."
	exit 2
fi
missing=()
have go || missing+=("go (builds socialroute and its table: the socialroute target is skipped)")
have haproxy || missing+=("haproxy (Debian package 'haproxy': the haproxy target is skipped)")
have nginx || missing+=("nginx (Debian package 'nginx': the nginx target is skipped)")
have taskset || missing+=("taskset (util-linux: nothing is pinned, so CPU figures are noisier)")
have timeout || missing+=("timeout (coreutils: wrk runs are bounded by their -d alone)")
for m in "${missing[@]}"; do note "missing: $m"; done

if [ "$BACKEND" = auto ]; then
	if have nginx; then BACKEND=nginx; elif have go; then BACKEND=go; else
		note "missing: nginx and go; one of them is needed to run the 4 backends"; exit 2
	fi
fi
case "$BACKEND" in
nginx) have nginx || { note "--backend nginx, but nginx is not installed"; exit 2; } ;;
go) have go || { note "--backend go, but go is not installed"; exit 2; } ;;
*) note "--backend must be nginx or go"; exit 2 ;;
esac

setup_pinning

WORK=$(mktemp -d "${TMPDIR:-/tmp}/srbench.XXXXXX")
chmod 755 "$WORK" # nginx workers drop to an unprivileged user when started as root
mkdir -p "$WORK/bin"
PIDS=()
cleanup() {
	stop_all
	restore_kthreads
	if [ "$KEEP" = 1 ]; then note "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_ports_free || exit 2
keep_kthreads_off_proxy_cpu

SR_SKIP=""
if [[ ",$TARGETS," == *,socialroute,* || ",$TARGETS," == *,baseline,* ]]; then build_socialroute; fi
if [ "$BACKEND" = go ]; then build_go_backend || exit 1; fi

# ---- measuring ------------------------------------------------------------------

FIELDS=(R_RPS R_P50 R_P99 R_ERR R_PCPU R_PUSR R_PSYS R_CORE R_PUTIL R_WCPU R_RATIO R_BCPU R_NOISE)

# wait_quiet: up to QUIET_WAIT seconds for a second in which other
# processes use at most NOISE_MAX% of a core.
wait_quiet() {
	local end=$((SECONDS + QUIET_WAIT)) o0 o1 said=0
	while :; do
		o0=$(others_ticks)
		sleep 1
		o1=$(others_ticks)
		[ $((100 * (o1 - o0) / TCK)) -le "$NOISE_MAX" ] && return 0
		[ "$SECONDS" -ge "$end" ] && return 1
		[ "$said" = 1 ] || note "other processes are busy ($((100 * (o1 - o0) / TCK))% of a core); waiting up to ${QUIET_WAIT}s"
		said=1
	done
}

measure() { # target run: measure_once, again (up to MAX_TRIES) while other processes disturb it
	local t=$1 r=$2 k="$1#$2" try best="" bestnoise="" v again
	declare -A keep
	case "$t" in
	haproxy | nginx) have "$t" || { NOTE[$t]="skipped: $t is not installed"; return; } ;;
	socialroute) [ -z "$SR_SKIP" ] || { NOTE[$t]="skipped: $SR_SKIP"; return; } ;;
	baseline)
		[ -n "$BASE_ROOT" ] || { NOTE[$t]="skipped: no --baseline DIR"; return; }
		[ -z "$SR_SKIP$BASE_SKIP" ] || { NOTE[$t]="skipped: $SR_SKIP$BASE_SKIP"; return; }
		;;
	direct) ;;
	*) NOTE[$t]="skipped: unknown target"; return ;;
	esac
	for ((try = 1; try <= MAX_TRIES; try++)); do
		wait_quiet
		again=""
		[ "$try" -gt 1 ] && again=", try $try"
		note "run $r/$RUNS: $t (${DURATION}s after ${WARMUP}s warm-up$again)"
		measure_once "$t" "$r" || return
		if [ -z "$best" ] || [ "${R_NOISE[$k]}" -lt "$bestnoise" ]; then
			best=$try bestnoise=${R_NOISE[$k]}
			for v in "${FIELDS[@]}"; do
				local -n arr=$v
				keep[$v]=${arr[$k]:-}
				unset -n arr
			done
		fi
		if [ "${R_NOISE[$k]}" -le "$NOISE_MAX" ]; then return; fi
		note "other processes used ${R_NOISE[$k]}% of a core during $t (more than $NOISE_MAX%)"
	done
	for v in "${FIELDS[@]}"; do # the quietest try
		local -n arr=$v
		arr[$k]=${keep[$v]}
		unset -n arr
	done
	NOTE[$t]="${NOTE[$t]:+${NOTE[$t]}; }run $r: other processes used ${bestnoise}% of a core in the quietest of $MAX_TRIES tries"
}

measure_once() { # target run
	local t=$1 r=$2 k="$1#$2" url="http://127.0.0.1:${PORT[$1]}/feed" pid="" status
	start_backends || exit 1
	if [ "$t" != direct ]; then
		if ! start_proxy "$t"; then
			NOTE[$t]="failed: did not start"
			stop_backends
			return 1
		fi
		pid=$PROXY_PID
	fi
	status=$(probe "${PORT[$t]}")
	if [[ "$status" != "HTTP/1."?" 200"* ]]; then
		note "$t answered '$status' to a probe request, not 200; not measured"
		NOTE[$t]="failed: probe answered '$status'"
		stop_pid "$pid"
		stop_backends
		return 1
	fi
	if [ "$WARMUP" -gt 0 ]; then run_wrk "$url" "$WARMUP" "$WORK/$t.warmup.out"; fi

	local pu0=0 ps0=0 pu1=0 ps1=0 bu0 bs0 bu1 bs1 c0 c1 o0 o1 t0 t1 ours
	ours="$BACKEND_PID $pid"
	o0=$(others_ticks $ours)
	[ -n "$pid" ] && read -r pu0 ps0 < <(proc_ticks "$pid")
	read -r bu0 bs0 < <(proc_ticks "$BACKEND_PID")
	c0=$(core_ticks "$PROXY_CPU")
	t0=$(date +%s%N)
	run_wrk "$url" "$DURATION" "$WORK/$t.$r.out"
	t1=$(date +%s%N)
	c1=$(core_ticks "$PROXY_CPU")
	[ -n "$pid" ] && read -r pu1 ps1 < <(proc_ticks "$pid")
	read -r bu1 bs1 < <(proc_ticks "$BACKEND_PID")
	o1=$(others_ticks $ours)
	stop_pid "$pid"
	stop_backends

	local line
	line=$(grep '^WRK_RESULT' "$WORK/$t.$r.out")
	if [ -z "$line" ]; then
		note "wrk printed no result for $t:"
		cat "$WORK/$t.$r.out" >&2
		NOTE[$t]="failed: no wrk result"
		return 1
	fi
	local requests=0 duration_us=1 p50_us=0 p99_us=0 err_connect=0 err_read=0 err_write=0 err_status=0 err_timeout=0 kv
	for kv in ${line#WRK_RESULT }; do
		case "${kv%%=*}" in
		requests | duration_us | p50_us | p99_us | err_connect | err_read | err_write | err_status | err_timeout)
			printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
		esac
	done
	if [ "$requests" -le 0 ]; then NOTE[$t]="failed: wrk completed no request"; return 1; fi
	local wcpu errs=$((err_connect + err_read + err_write + err_status + err_timeout))
	wcpu=$(awk '{print $1 + $2}' "$WORK/$t.$r.out.cpu")
	R_ERR[$k]=$errs
	# f expr: evaluate with awk, over the figures below.
	f() {
		awk -v n="$requests" -v d="$duration_us" -v k="$TCK" -v ns="$((t1 - t0))" -v w="$wcpu" \
			-v pu="$((pu1 - pu0))" -v ps="$((ps1 - ps0))" -v b="$((bu1 - bu0 + bs1 - bs0))" \
			-v c="$((c1 - c0))" -v o="$((o1 - o0))" -v p50="$p50_us" -v p99="$p99_us" "BEGIN{printf $1}"
	}
	R_RPS[$k]=$(f '"%.0f", n / (d / 1e6)')
	R_P50[$k]=$(f '"%.3f", p50 / 1000')
	R_P99[$k]=$(f '"%.3f", p99 / 1000')
	R_WCPU[$k]=$(f '"%.2f", w * 1e6 / n')
	R_BCPU[$k]=$(f '"%.2f", b / k * 1e6 / n')
	# CPU time of other people's processes during the run, in % of one core.
	R_NOISE[$k]=$(f '"%.0f", 100 * o / k / (ns / 1e9)')
	if [ -n "$pid" ]; then
		R_PCPU[$k]=$(f '"%.2f", (pu + ps) / k * 1e6 / n')
		R_PUSR[$k]=$(f '"%.2f", pu / k * 1e6 / n')
		R_PSYS[$k]=$(f '"%.2f", ps / k * 1e6 / n')
		R_PUTIL[$k]=$(f '"%.0f", 100 * (pu + ps) / k / (ns / 1e9)')
		R_RATIO[$k]=$(awk -v p="${R_PCPU[$k]}" -v w="${R_WCPU[$k]}" 'BEGIN{printf "%.2f", p / w}')
		# All busy time of the proxy's core, softirq included whatever the
		# kernel charges to the process; only meaningful when pinned.
		if [ ${#PIN_PROXY[@]} -gt 0 ]; then R_CORE[$k]=$(f '"%.2f", c / k * 1e6 / n'); fi
	fi
	if [ "$errs" -gt 0 ]; then
		NOTE[$t]="${NOTE[$t]:+${NOTE[$t]}; }run $r: wrk errors: connect $err_connect, read $err_read, write $err_write, status $err_status, timeout $err_timeout"
	fi
	return 0
}

IFS=, read -r -a want <<<"$TARGETS"
for ((r = 1; r <= RUNS; r++)); do
	for t in "${want[@]}"; do measure "$t" "$r"; done
done
fi # REPORT

# The shown run of a target: of its quiet runs (other processes at most
# --noise-max), or of all when none was quiet, the one whose proxy CPU per
# request (direct: req/s) is the median (the lower of two).
declare -A PICK
for t in "${want[@]}"; do
	rows="" quiet=""
	for ((r = 1; r <= RUNS; r++)); do
		k="$t#$r"
		[ -n "${R_RPS[$k]:-}" ] || continue
		rows+="${R_PCPU[$k]:-${R_RPS[$k]}} $r"$'\n'
		[ "${R_NOISE[$k]}" -le "$NOISE_MAX" ] && quiet+="${R_PCPU[$k]:-${R_RPS[$k]}} $r"$'\n'
	done
	[ -n "$quiet" ] && rows=$quiet
	[ -n "$rows" ] && PICK[$t]=$(printf '%s' "$rows" | sort -g | awk '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}')
done
spread() { # target: "min-max" of proxy CPU per request over the runs
	local t=$1 r v lo="" hi=""
	for ((r = 1; r <= RUNS; r++)); do
		v=${R_PCPU[$t#$r]:-}
		[ -n "$v" ] || continue
		if [ -z "$lo" ] || awk -v a="$v" -v b="$lo" 'BEGIN{exit !(a < b)}'; then lo=$v; fi
		if [ -z "$hi" ] || awk -v a="$v" -v b="$hi" 'BEGIN{exit !(a > b)}'; then hi=$v; fi
	done
	[ -n "$lo" ] && printf '%s-%s' "$lo" "$hi"
}

# ---- report -------------------------------------------------------------------------
describe_commit() { # dir: its short commit, +dirty when code outside bench/ is changed
	if [ -n "$1" ] && git -C "$1" rev-parse --git-dir >/dev/null 2>&1; then
		local c
		c=$(git -C "$1" rev-parse --short HEAD)
		if [ -n "$(git -C "$1" status --porcelain -- . ':!bench' 2>/dev/null)" ]; then c="$c+dirty"; fi
		printf '%s' "$c"
	else
		printf '(not a git checkout)'
	fi
}
commit=$(describe_commit "$ROOT")
base_commit=""
[ -n "$BASE_ROOT" ] && base_commit=$(describe_commit "$BASE_ROOT")
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null)
v_haproxy=$(have haproxy && haproxy -v 2>/dev/null | awk 'NR==1{print $3}')
v_nginx=$(have nginx && nginx -v 2>&1 | sed 's|.*nginx/||')
v_wrk=$(wrk -v 2>&1 | awk 'NR==1{print $2}')
v_go=$(have "${SR_GO:-go}" && "${SR_GO:-go}" env GOVERSION 2>/dev/null)
[ -n "${SR_GO:-}" ] && v_go+=" (${SR_GO})"
pinning="proxy on core $PROXY_CPU, wrk and backends on core $LOAD_CPU"
[ ${#PIN_PROXY[@]} -eq 0 ] && pinning="none"
[ -n "$KTHREADS_NOTE" ] && pinning="$pinning; kernel threads moved there too: $KTHREADS_NOTE"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if [ -n "$REPORT" ]; then
	now=$REPORT_TIME commit=$REPORT_COMMIT pinning=$REPORT_PINNING base_commit=$REPORT_BASE BASE_ROOT=$REPORT_BASE_ROOT
fi

echo
where=" ($ROOT)"
[ -n "$REPORT" ] && where=""
echo "socialroute bench  $now  commit $commit$where"
echo "  $NCPU cores ($cpu_model), kernel $(uname -r); pinning: $pinning"
echo "  wrk $v_wrk: 1 thread, $CONNS connections, ${DURATION}s per run after ${WARMUP}s warm-up, $RUNS run(s) per target"
echo "  X-User-ID random in 1..$USERS; backends: 4 x $BACKEND static 200"
echo "  haproxy ${v_haproxy:-absent}, nginx ${v_nginx:-absent}, ${v_go:-go absent}"
[ -n "$base_commit" ] && echo "  baseline: socialroute at commit $base_commit ($BASE_ROOT), same config"
echo
fmt='%-12s %7s %7s %7s %5s %10s %11s %12s %9s %6s %8s %7s %9s %7s\n'
# shellcheck disable=SC2059
printf "$fmt" target req/s p50_ms p99_ms errs proxy_us/rq "(usr+sys)" "(runs)" core_us/rq util% wrk_us/rq px/wrk backend_us noise%
for t in "${want[@]}"; do
	r=${PICK[$t]:-}
	if [ -z "$r" ]; then
		printf '%-12s %s\n' "$t" "${NOTE[$t]:-not measured}"
		continue
	fi
	k="$t#$r"
	us="-"
	[ -n "${R_PUSR[$k]:-}" ] && us="${R_PUSR[$k]}+${R_PSYS[$k]}"
	sp=$(spread "$t")
	# shellcheck disable=SC2059
	printf "$fmt" "$t" "${R_RPS[$k]}" "${R_P50[$k]}" "${R_P99[$k]}" "${R_ERR[$k]}" \
		"${R_PCPU[$k]:--}" "$us" "${sp:--}" "${R_CORE[$k]:--}" "${R_PUTIL[$k]:--}" "${R_WCPU[$k]}" \
		"${R_RATIO[$k]:--}" "${R_BCPU[$k]}" "${R_NOISE[$k]}"
done
for t in "${want[@]}"; do
	if [ -n "${PICK[$t]:-}" ] && [ -n "${NOTE[$t]:-}" ]; then echo "note: $t: ${NOTE[$t]}"; fi
done
# compare a b goal: a's ratios to b, the shown runs and round by round.
compare() {
	local a=$1 b=$2 goal=$3 pa=${PICK[$1]:-} pb=${PICK[$2]:-} r x y rounds="" n cpu p99 best
	[ -n "$pa" ] && [ -n "$pb" ] || return 0
	awk -v ac="${R_PCPU[$a#$pa]}" -v bc="${R_PCPU[$b#$pb]}" -v ar="${R_RATIO[$a#$pa]}" \
		-v br="${R_RATIO[$b#$pb]}" -v ap="${R_P99[$a#$pa]}" -v bp="${R_P99[$b#$pb]}" -v t="$a / $b" -v g="$goal" 'BEGIN {
		printf "\n%s: CPU per request x%.2f (proxy/wrk x%.2f), p99 x%.2f%s\n", t, ac / bc, ar / br, ap / bp, g }'
	# The rows above are each target's median run, which may come from
	# different rounds; a round measures every target at one moment of the
	# machine, so its ratios are the steadier comparison.
	for ((r = 1; r <= RUNS; r++)); do
		x=${R_PCPU[$a#$r]:-} y=${R_PCPU[$b#$r]:-}
		[ -n "$x" ] && [ -n "$y" ] || continue
		rounds+="$x ${R_P99[$a#$r]} $y ${R_P99[$b#$r]}"$'\n'
	done
	n=$(printf '%s' "$rounds" | grep -c .)
	[ "$n" -gt 1 ] || return 0
	cpu=$(printf '%s' "$rounds" | awk 'NF {printf "%.4f\n", $1 / $3}' | median_range)
	p99=$(printf '%s' "$rounds" | awk 'NF {printf "%.4f\n", $2 / $4}' | median_range)
	echo "round by round, median (range) of $n: CPU per request $cpu, p99 $p99"
	# A busy host only ever adds time, so each target's best run is the
	# least disturbed measure of what it costs.
	best=$(printf '%s' "$rounds" | awk 'NF {
		if (!sc || $1 < sc) sc = $1; if (!sp || $2 < sp) sp = $2
		if (!hc || $3 < hc) hc = $3; if (!hp || $4 < hp) hp = $4 }
		END { printf "CPU per request x%.2f, p99 x%.2f", sc / hc, sp / hp }')
	echo "best run of each of $n: $best"
}
median_range() {
	sort -g | awk '{v[NR] = $1} END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "x%.2f (%.2f-%.2f)", m, v[1], v[NR] }'
}
compare socialroute haproxy "  (goal: <= 1, <= 1)"
compare socialroute baseline "  (below 1: the change helps)"
cat <<'EOF'

proxy_us/rq  the proxy's own CPU time (user+system, all its threads and processes) per request;
             (runs) its range over the runs; the row shown is the median of the quiet runs
core_us/rq   all busy time of the proxy's core per request, interrupts included (loopback delivery
             runs in softirq on the sending core; some kernels do not charge it to the process)
util%        the proxy's CPU time over wall time (100 = its core is saturated)
px/wrk       proxy_us/rq over wrk_us/rq, wrk's own CPU per request: cancels the machine's speed
noise%       CPU time of other processes on the machine during the run, in % of one core; a run
             above --noise-max is measured again (up to 3 tries, the quietest kept)
EOF

if [ -n "$REPORT" ]; then
	echo
	echo "(the table of $REPORT, shown again)"
	exit 0
fi
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%d-%H%M%S)
json="$OUT/bench-$stamp.json" csv="$OUT/bench-$stamp.csv"
num() { if [ -n "${1:-}" ]; then printf '%s' "$1"; else printf null; fi; }
esc() { local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
{
	echo "target,run,shown,req_per_s,p50_ms,p99_ms,errors,proxy_cpu_us_per_req,proxy_user_us_per_req,proxy_sys_us_per_req,core_busy_us_per_req,proxy_util_pct,wrk_cpu_us_per_req,proxy_to_wrk_ratio,backend_cpu_us_per_req,noise_pct"
	for t in "${want[@]}"; do
		for ((r = 1; r <= RUNS; r++)); do
			k="$t#$r"
			[ -n "${R_RPS[$k]:-}" ] || continue
			shown=0
			[ "${PICK[$t]:-}" = "$r" ] && shown=1
			echo "$t,$r,$shown,${R_RPS[$k]},${R_P50[$k]},${R_P99[$k]},${R_ERR[$k]},${R_PCPU[$k]:-},${R_PUSR[$k]:-},${R_PSYS[$k]:-},${R_CORE[$k]:-},${R_PUTIL[$k]:-},${R_WCPU[$k]},${R_RATIO[$k]:-},${R_BCPU[$k]},${R_NOISE[$k]}"
		done
	done
} >"$csv"
{
	printf '{\n  "time": "%s", "commit": "%s", "cores": %s, "cpu": "%s", "kernel": "%s",\n' \
		"$now" "$commit" "$NCPU" "$(esc "$cpu_model")" "$(uname -r)"
	printf '  "baseline_commit": "%s", "baseline_dir": "%s",\n' "$base_commit" "$(esc "$BASE_ROOT")"
	printf '  "pinning": "%s", "backend": "%s", "connections": %s, "duration_s": %s, "warmup_s": %s, "runs": %s, "users": %s,\n' \
		"$pinning" "$BACKEND" "$CONNS" "$DURATION" "$WARMUP" "$RUNS" "$USERS"
	printf '  "versions": {"wrk": "%s", "haproxy": "%s", "nginx": "%s", "go": "%s"},\n' \
		"$v_wrk" "${v_haproxy:-}" "${v_nginx:-}" "${v_go:-}"
	echo '  "targets": ['
	sep=""
	for t in "${want[@]}"; do
		printf '%s    {"target": "%s", "shown_run": %s, "note": "%s", "runs": [' "$sep" "$t" "$(num "${PICK[$t]:-}")" "$(esc "${NOTE[$t]:-}")"
		rsep=""
		for ((r = 1; r <= RUNS; r++)); do
			k="$t#$r"
			[ -n "${R_RPS[$k]:-}" ] || continue
			printf '%s\n      {"run": %s, "req_per_s": %s, "p50_ms": %s, "p99_ms": %s, "errors": %s, "proxy_cpu_us_per_req": %s, "proxy_user_us_per_req": %s, "proxy_sys_us_per_req": %s, "core_busy_us_per_req": %s, "proxy_util_pct": %s, "wrk_cpu_us_per_req": %s, "proxy_to_wrk_ratio": %s, "backend_cpu_us_per_req": %s, "noise_pct": %s}' \
				"$rsep" "$r" "${R_RPS[$k]}" "${R_P50[$k]}" "${R_P99[$k]}" "${R_ERR[$k]}" "$(num "${R_PCPU[$k]:-}")" \
				"$(num "${R_PUSR[$k]:-}")" "$(num "${R_PSYS[$k]:-}")" "$(num "${R_CORE[$k]:-}")" "$(num "${R_PUTIL[$k]:-}")" \
				"${R_WCPU[$k]}" "$(num "${R_RATIO[$k]:-}")" "${R_BCPU[$k]}" "${R_NOISE[$k]}"
			rsep=","
		done
		printf ']}'
		sep=$',\n'
	done
	printf '\n  ]\n}\n'
} >"$json"
echo
echo "results: $json"
echo "         $csv"

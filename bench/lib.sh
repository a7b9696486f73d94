# bench/lib.sh: shared by run.sh and profile.sh (sourced, not run).
#
# Needs: BENCH (this folder), ROOT (the module to build socialroute from),
# WORK (a scratch folder), PIDS (an array the caller's EXIT trap stops),
# BACKEND (nginx or go), PIN_PROXY and PIN_LOAD (taskset prefixes or empty).

BACKEND_PORTS=(18101 18102 18103 18104)
# baseline is socialroute built from another checkout (run.sh --baseline):
# never running beside socialroute, it takes the same port.
declare -A PORT=([direct]=18101 [haproxy]=18201 [nginx]=18202 [socialroute]=18203 [baseline]=18203)

have() { command -v "$1" >/dev/null 2>&1; }
note() { echo "${0##*/}: $*" >&2; }

stop_pid() { # pid: TERM, wait up to 5 s, then KILL
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

stop_all() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
	local p
	for p in "${BACKEND_PORTS[@]}" "${PORT[haproxy]}" "${PORT[nginx]}" "${PORT[socialroute]}"; do
		if port_open "$p"; then
			note "port 127.0.0.1:$p is already in use; stop what listens there and run again"
			return 1
		fi
	done
}

wait_port() { # port pid: up to 10 s for the port to accept while pid lives
	local i
	for i in $(seq 100); do
		port_open "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# probe port: one GET with an X-User-ID; prints the status line.
probe() {
	local line=""
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET /feed HTTP/1.1\r\nHost: bench\r\nX-User-ID: 42\r\nConnection: close\r\n\r\n' >&3
	IFS= read -r -t 5 line <&3
	exec 3<&-
	printf '%s' "${line%$'\r'}"
}

# proc_ticks pid: "utime stime" of pid and its direct children (nginx's
# workers), in clock ticks, all threads. Whether softirq work done in the
# process's context (loopback delivery of what it sends) is in these
# depends on the kernel's IRQ time accounting; core_ticks counts it anyway.
proc_ticks() {
	local root=$1 u=0 s=0 f st
	for f in /proc/[0-9]*/stat; do
		{ read -r st <"$f"; } 2>/dev/null || continue
		case "$f" in
		"/proc/$root/stat") ;;
		*) [[ "${st##*) }" == ?" $root "* ]] || continue ;;
		esac
		st=${st##*) }
		# shellcheck disable=SC2086
		set -- $st
		u=$((u + ${12})) s=$((s + ${13}))
	done
	echo "$u $s"
}

# core_ticks cpu: busy ticks of one core (user nice system irq softirq steal).
core_ticks() {
	awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# others_ticks pid...: CPU ticks (own and reaped children's) of every user
# process but the given ones, their children and this script: the work of
# other people's processes, which disturbs a measurement. It is read while
# no wrk of ours runs (a finished one is in this script's children's time).
# Kernel threads are left out (ksoftirqd works for the traffic measured here).
others_ticks() {
	local total=0 f st pid ppid skip=" $$ $* "
	for f in /proc/[0-9]*/stat; do
		{ read -r st <"$f"; } 2>/dev/null || continue
		pid=${st%% *}
		st=${st##*) }
		# shellcheck disable=SC2086
		set -- $st
		ppid=$2
		[[ "$skip" == *" $pid "* || "$skip" == *" $ppid "* ]] && continue
		(($7 & 0x00200000)) && continue # PF_KTHREAD
		total=$((total + ${12} + ${13} + ${14} + ${15}))
	done
	echo "$total"
}

# bench_build NAME: builds bench/NAME/main.go into WORK/bin/NAME against
# the module in ROOT (its hashing and proxy packages, so that a table or a
# profile matches the socialroute built from there), through an overlay:
# nothing is written into ROOT.
bench_build() {
	local name=$1
	printf '{"Replace": {"%s": "%s"}}\n' "$ROOT/bench/$name/main.go" "$BENCH/$name/main.go" >"$WORK/overlay-$name.json"
	# sprof stands in for the socialroute binary, so it gets the same
	# profile-guided optimization (cmd/socialroute/default.pgo).
	local pgo=()
	if [ "$name" = sprof ] && [ -f "$ROOT/cmd/socialroute/default.pgo" ]; then pgo=(-pgo "$ROOT/cmd/socialroute/default.pgo"); fi
	(cd "$ROOT" && go build "${pgo[@]}" -overlay "$WORK/overlay-$name.json" -o "$WORK/bin/$name" "./bench/$name")
}

# build_socialroute: the binary, a USERS-user table and a config copy in
# WORK; sets SR_BIN, SR_CONFIG, or SR_SKIP with the reason.
build_socialroute() {
	SR_BIN="" SR_CONFIG="" SR_SKIP=""
	local gocmd=${SR_GO:-go}
	if ! have "$gocmd"; then
		SR_SKIP="$gocmd is not installed"
		return 1
	fi
	note "building socialroute from $ROOT with $gocmd ($("$gocmd" env GOROOT)) and a ${USERS}-user social-hash table"
	if ! (cd "$ROOT" && "$gocmd" build -o "$WORK/bin/socialroute" ./cmd/socialroute) >"$WORK/build.log" 2>&1; then
		SR_SKIP="$gocmd build ./cmd/socialroute failed"
		cat "$WORK/build.log" >&2
		return 1
	fi
	if ! bench_build mktable >>"$WORK/build.log" 2>&1 ||
		! "$WORK/bin/mktable" -users "$USERS" -out "$WORK/users.sht" -hot-out "$WORK/hot.csv" >>"$WORK/build.log" 2>&1; then
		SR_SKIP="building the table failed"
		cat "$WORK/build.log" >&2
		return 1
	fi
	SR_BIN="$WORK/bin/socialroute"
	SR_CONFIG="$WORK/socialroute.yaml"
	if [ -n "${BASE_ROOT:-}" ]; then
		note "building the baseline from $BASE_ROOT with $gocmd"
		if ! (cd "$BASE_ROOT" && "$gocmd" build -o "$WORK/bin/baseline" ./cmd/socialroute) >>"$WORK/build.log" 2>&1; then
			BASE_SKIP="$gocmd build ./cmd/socialroute in $BASE_ROOT failed"
			cat "$WORK/build.log" >&2
		fi
		BASE_BIN="$WORK/bin/baseline"
	fi
	cp "${SR_CONFIG_SRC:-$BENCH/socialroute.yaml}" "$SR_CONFIG"
}

build_go_backend() {
	if ! bench_build backend >"$WORK/backend-build.log" 2>&1; then
		cat "$WORK/backend-build.log" >&2
		note "go build ./bench/backend failed"
		return 1
	fi
}

BACKEND_PID=""
start_backends() {
	local dir="$WORK/backend" p
	rm -rf "$dir"
	mkdir -p "$dir/tmp"
	if [ "$BACKEND" = nginx ]; then
		cp "$BENCH/nginx-backend.conf" "$dir/nginx.conf"
		"${PIN_LOAD[@]}" nginx -p "$dir/" -c nginx.conf -e "$dir/error.log" -g 'daemon off;' \
			>"$dir/stdout.log" 2>&1 &
	else
		local addrs
		addrs=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}")
		GOMAXPROCS=1 "${PIN_LOAD[@]}" "$WORK/bin/backend" -listen "${addrs%,}" >"$dir/stdout.log" 2>&1 &
	fi
	BACKEND_PID=$!
	PIDS+=("$BACKEND_PID")
	for p in "${BACKEND_PORTS[@]}"; do
		if ! wait_port "$p" "$BACKEND_PID"; then
			note "the $BACKEND backends did not start:"
			cat "$dir"/*.log >&2 2>/dev/null
			return 1
		fi
	done
}

stop_backends() {
	stop_pid "$BACKEND_PID"
	if [ "$BACKEND" = go ]; then sed 's/^/    /' "$WORK/backend/stdout.log" >&2; fi
}

PROXY_PID=""
# start_proxy target [command...]: starts the proxy pinned to the proxy core
# (socialroute: GOMAXPROCS=1, and the command given, default `serve`).
start_proxy() {
	local t=$1 dir="$WORK/$1"
	shift
	mkdir -p "$dir/tmp"
	case "$t" in
	haproxy)
		"${PIN_PROXY[@]}" haproxy -db -f "$BENCH/haproxy.cfg" >"$dir/stdout.log" 2>&1 &
		;;
	nginx)
		cp "$BENCH/nginx-proxy.conf" "$dir/nginx.conf"
		"${PIN_PROXY[@]}" nginx -p "$dir/" -c nginx.conf -e "$dir/error.log" -g 'daemon off;' \
			>"$dir/stdout.log" 2>&1 &
		;;
	socialroute | baseline)
		local bin=$SR_BIN
		[ "$t" = baseline ] && bin=$BASE_BIN
		if [ $# -eq 0 ]; then set -- "$bin" serve --config "$SR_CONFIG"; fi
		GOMAXPROCS=1 "${PIN_PROXY[@]}" "$@" >"$dir/stdout.log" 2>&1 &
		;;
	esac
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	if ! wait_port "${PORT[$t]}" "$PROXY_PID"; then
		note "$t did not start:"
		cat "$dir"/*.log >&2 2>/dev/null
		return 1
	fi
}

# run_wrk url seconds outfile: one bounded wrk run on the load core; wrk's
# user and system CPU seconds go to outfile.cpu.
run_wrk() {
	local TIMEFORMAT='%3U %3S'
	{ time BENCH_USERS=$USERS "${BOUND[@]}" "${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"$2s" --timeout 2s \
		-s "$BENCH/userid.lua" "$1" >"$3" 2>&1; } 2>"$3.cpu"
}

# Unbound kernel threads that run in bursts of milliseconds would stall
# whichever proxy is on the core they land on and decide its p99: DAMON's
# kdamond, which VMs with proactive reclaim run, took 3-8 ms at a time on
# the proxy's core here (perf sched). keep_kthreads_off_proxy_cpu moves
# them to the load core for the run, the same for every target, and
# restore_kthreads gives them back their affinity. It needs root (or
# CAP_SYS_NICE); without it nothing moves. KTHREADS_NOTE says what moved.
KTHREADS_MOVED=() KTHREADS_NOTE=""
keep_kthreads_off_proxy_cpu() {
	[ ${#PIN_PROXY[@]} -gt 0 ] || return 0
	local pid aff
	for pid in $(pgrep -x 'kdamond\.[0-9]+' 2>/dev/null); do
		aff=$(taskset -pc "$pid" 2>/dev/null | awk -F': ' '{print $2}')
		[ -n "$aff" ] || continue
		if taskset -pc "$LOAD_CPU" "$pid" >/dev/null 2>&1; then
			KTHREADS_MOVED+=("$pid:$aff")
			KTHREADS_NOTE="${KTHREADS_NOTE:+$KTHREADS_NOTE, }$(cat "/proc/$pid/comm" 2>/dev/null)"
		fi
	done
}
restore_kthreads() {
	local e
	for e in "${KTHREADS_MOVED[@]}"; do taskset -pc "${e#*:}" "${e%%:*}" >/dev/null 2>&1; done
	KTHREADS_MOVED=()
}

# setup_pinning: PIN_PROXY/PIN_LOAD from PROXY_CPU/LOAD_CPU when taskset and
# two cores are there; BOUND: a timeout(1) prefix for wrk.
setup_pinning() {
	NCPU=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
	PIN_PROXY=() PIN_LOAD=()
	if have taskset && [ "$NCPU" -ge 2 ]; then
		PIN_PROXY=(taskset -c "$PROXY_CPU")
		PIN_LOAD=(taskset -c "$LOAD_CPU")
	elif [ "$NCPU" -lt 2 ]; then
		note "only $NCPU core online: nothing is pinned; proxy and load share it"
	fi
	BOUND=()
	if have timeout; then BOUND=(timeout --kill-after=5 "$((DURATION + WARMUP + 30))"); fi
	TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
}

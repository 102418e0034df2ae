#!/usr/bin/env bash
# benches/compare.sh: oxinetd side by side with xinetd, OpenBSD inetd, tcpserver, socat and
# a minimal vfork accept loop (the floor; also run with setsid in the child, as
# floor-setsid), all in the same run, all spawning the same tiny
# static server (benches/oneline.c), driven by our own load generator (benches/loadgen).
#
# usage: benches/compare.sh [--short] [--runs N] [--duration SECS] [--no-install] [--keep]
#                           [--baseline BIN] [--only PHASE,...] [--exec-only]
#   --short       one 1-second run per workload: proves the harness works (CI); writes
#                 benches/results/short.md and leaves latest.md alone
#   --runs N      runs per workload; the table shows the median (default 3)
#   --duration S  seconds per run (default 5); a run with other runs or duration (or
#                 --only) writes benches/results/STAMP-....md, not latest.md
#   --no-install  do not apt-get anything (peers that are missing are skipped)
#   --keep        keep the temporary folder (configs, daemon logs, raw results)
#   --baseline BIN  also run another oxinetd binary (e.g. a build of the commit before a
#                 change) as the peer `oxinetd-base`, beside this tree's, in the exec'd
#                 server workloads: a before/after in one run
#   --only LIST   run only these phases (comma-separated; default all, in this order):
#                   exec      exec'd server at c1/c8/c64 and internal stream echo
#                   udp       internal UDP echo
#                   tftp      in.tftpd as a wait = true dgram service: 2,000 requests/s,
#                             then bursts around its idle timeout (respawns)
#                   size      1,000 services (oxinetd and xinetd) and 10,000 (oxinetd:
#                             benches/size.sh, and exec c8 on one of them)
#                   relays    relays and echo sessions held (benches/relay-memory.sh)
#                   redirect  redirect throughput and short exchanges beside 3 relays
#                 A subset run writes benches/results/STAMP-only-LIST.md, not latest.md.
#                 Under 5 minutes: `--runs 1 --duration 2` (every phase, ~3 minutes)
#   --exec-only   the same as --only exec; with --baseline, the quick before/after
#
# Needs root for the peers (installing them, `user = root`, inetd's echo on port 7).
# The daemons run on CPU 0 and the load generator on CPU 1 (taskset). Every process it
# starts is stopped on exit. Writes benches/results/latest.md and a timestamped copy.
# Ports: BENCH_PORT_BASE (default 23000) .. +200, +1000..+1999 for the 1,000-service configs;
# BENCH_10K_BASE (default 10000) .. +9999 for the 10,000-service ones (below the
# ephemeral range, where tests' free ports come from); relay-memory.sh takes free ports.
# inetd's internal echo must use the official port 7 (127.0.0.1:7 and [::1]:7).
set -uo pipefail

RUNS=3
DURATION=5
INSTALL=1
KEEP=0
SHORT=0
BASELINE=""
ALL_PHASES=exec,udp,tftp,size,relays,redirect
ONLY=""
while [ $# -gt 0 ]; do
	case "$1" in
	--short) SHORT=1 RUNS=1 DURATION=1 ;;
	--runs) RUNS=${2:?--runs needs a number}; shift ;;
	--duration) DURATION=${2:?--duration needs seconds}; shift ;;
	--no-install) INSTALL=0 ;;
	--keep) KEEP=1 ;;
	--baseline) BASELINE=$(realpath "${2:?--baseline needs an oxinetd binary}") || exit 2; shift ;;
	--only) ONLY=${2:?--only needs a list of phases}; shift ;;
	--exec-only) ONLY=exec ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

PHASES=${ONLY:-$ALL_PHASES}
for ph in ${PHASES//,/ }; do
	case ",$ALL_PHASES," in *",$ph,"*) ;; *) echo "compare.sh: unknown phase $ph (phases: $ALL_PHASES)" >&2; exit 2 ;; esac
done
# want PHASE: true if PHASE is to run.
want() { case ",$PHASES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$REPO/benches
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BASE=${BENCH_PORT_BASE:-23000}
TENK_BASE=${BENCH_10K_BASE:-10000}
# 10,000 listening sockets, and relays held up to the limit: the hard limit for all.
ulimit -n "$(ulimit -Hn)"
DCPU=0 # the daemons (and so their children)
LCPU=1 # the load generator
MAXCONNS=2000000
WORK=$(mktemp -d /tmp/oxinetd-bench.XXXXXX)
chmod 755 "$WORK"
RESULTS=$WORK/results.tsv
LOADRES=$WORK/load.tsv
HELD=$WORK/held.tsv
NOTES=$WORK/notes.txt
: >"$RESULTS" >"$LOADRES" >"$HELD" >"$NOTES"
PIDS=()
POLICY_CREATED=0

log() { echo "compare: $*" >&2; }
note() { echo "$*" >>"$NOTES"; log "$*"; }
die() { log "$*"; exit 1; }

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null; done
	[ "$POLICY_CREATED" = 1 ] && rm -f /usr/sbin/policy-rc.d
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_gone PID TENTHS: true once PID has exited (or is a zombie), polling every 0.1 s.
wait_gone() {
	local i state
	for ((i = 0; i < $2; i++)); do
		[ -e "/proc/$1/stat" ] || return 0
		state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
		[ -z "$state" ] || [ "$state" = Z ] && return 0
		sleep 0.1
	done
	return 1
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null
	wait_gone "$1" 50 || kill -KILL "$1" 2>/dev/null
	wait_gone "$1" 20
}

# ---------------------------------------------------------------- peers
XINETD=$(command -v xinetd || echo /usr/sbin/xinetd)
TCPSERVER=$(command -v tcpserver || echo /usr/bin/tcpserver)
SOCAT=$(command -v socat || echo /usr/bin/socat)
PROXYD=/lib/systemd/systemd-socket-proxyd
ACTIVATE=$(command -v systemd-socket-activate || echo /usr/bin/systemd-socket-activate)
INETD=$WORK/inetd-root/usr/sbin/inetd
TFTPD=/usr/sbin/in.tftpd

install_peers() {
	local need=() dl deps d
	[ -x "$XINETD" ] || need+=(xinetd)
	[ -x "$TCPSERVER" ] || need+=(ucspi-tcp)
	[ -x "$SOCAT" ] || need+=(socat)
	[ -x "$PROXYD" ] && [ -x "$ACTIVATE" ] || need+=(systemd)
	[ -x "$TFTPD" ] || need+=(tftpd-hpa)
	[ "$INSTALL" = 1 ] || return 0
	[ "$(id -u)" = 0 ] || { note "not root: installing nothing"; return 0; }
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Installing xinetd must not start a system xinetd.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	dl=$WORK/inetd-deb
	mkdir -p "$dl" && chmod 777 "$dl"
	if [ ${#need[@]} -gt 0 ] || ! (cd "$dl" && apt-get download -q openbsd-inetd >/dev/null 2>&1); then
		log "apt-get update"
		apt-get update -qq >/dev/null || note "apt-get update failed"
	fi
	if [ ${#need[@]} -gt 0 ]; then
		log "apt-get install ${need[*]}"
		apt-get install -y -qq "${need[@]}" >/dev/null || note "apt-get install ${need[*]} failed"
	fi
	ls "$dl"/openbsd-inetd_*.deb >/dev/null 2>&1 || (cd "$dl" && apt-get download -q openbsd-inetd >/dev/null 2>&1)
	if ls "$dl"/openbsd-inetd_*.deb >/dev/null 2>&1; then
		# It conflicts with xinetd as a package: unpack it and install only its libraries.
		dpkg -x "$dl"/openbsd-inetd_*.deb "$WORK/inetd-root"
		deps=$(dpkg-deb -f "$dl"/openbsd-inetd_*.deb Depends | tr ',' '\n' | sed 's/[ (].*//;s/^ *//' |
			grep -v -x -e update-inetd -e tcpd -e '')
		need=()
		for d in $deps; do dpkg -s "$d" >/dev/null 2>&1 || need+=("$d"); done
		[ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null || note "inetd libraries: install failed"
	else
		note "could not download openbsd-inetd: inetd skipped"
	fi
}

build() {
	log "building oxinetd (release)"
	(cd "$REPO" && cargo build --release -q) || die "cargo build --release failed"
	log "building loadgen (release)"
	cargo build --release -q --manifest-path "$BENCH/loadgen/Cargo.toml" --target-dir "$TARGET" ||
		die "loadgen build failed"
	mkdir -p "$WORK/bin"
	# Without libc where it can (see oneline.c: static glibc's start-up is CPUID-bound in a VM).
	if cc -O2 -static -nostdlib -fno-stack-protector -DONELINE_NOLIBC -o "$WORK/bin/oneline" "$BENCH/oneline.c" 2>/dev/null &&
		[ "$("$WORK/bin/oneline")" = hello ]; then
		ONELINE_KIND="static, no libc (2 system calls)"
	else
		cc -O2 -static -o "$WORK/bin/oneline" "$BENCH/oneline.c" || die "cc oneline.c failed"
		ONELINE_KIND="static glibc"
	fi
	cc -O2 -o "$WORK/bin/floor" "$BENCH/floor.c" || die "cc floor.c failed"
	OXINETD=$TARGET/release/oxinetd
	LOADGEN=$TARGET/release/loadgen
	ONELINE=$WORK/bin/oneline
	FLOOR=$WORK/bin/floor
	[ "$("$ONELINE")" = hello ] || die "oneline does not print hello"
}

USERLINE=""
[ "$(id -u)" = 0 ] && USERLINE='user = "root"'

# Ports of one peer: exec'd server at P, internal stream/dgram echo at P+1, tftp at P+2.
port_of() {
	case $1 in
	oxinetd) echo $((BASE + 0)) ;; oxinetd-base) echo $((BASE + 5)) ;; xinetd) echo $((BASE + 10)) ;; inetd) echo $((BASE + 20)) ;;
	tcpserver) echo $((BASE + 30)) ;; socat) echo $((BASE + 40)) ;; floor) echo $((BASE + 50)) ;;
	floor-setsid) echo $((BASE + 55)) ;; floor-epoll) echo $((BASE + 70)) ;; tftpd-alone) echo $((BASE + 60)) ;; eats-first) echo $((BASE + 65)) ;;
	esac
}

# The tftp workload (issue 13, target 6): in.tftpd (tftpd-hpa) serving one file of one
# DATA block from a chroot, as a wait = true dgram service. In inetd mode it takes the
# socket as stdin, forks a child per request and exits after `-t` seconds without one;
# the superserver then watches the socket again and respawns it for the next datagram.
# Phase `tftp`: -t 60 (it stays for the whole phase: what is measured is the datagram
# path while it serves); phase `tftp-respawn`: -t 1 and bursts with gaps around 1 s
# (it exits, and the superserver must start it again with the datagram still queued).
# Every spawn is logged (oxinetd and xinetd: START with a pid; inetd -d: `execv`), which
# is how the report counts them; a handful per run, so the logging costs nothing.
TFTP_FILE=f.txt
tftp_t() { case $1 in tftp) echo 60 ;; tftp-respawn) echo 1 ;; esac; }
tftp_addr() { echo "[::1]:$(($(port_of "$1") + 2))"; }

# Both xinetd and oxinetd log nothing per connection: the comparison is of the spawn path,
# with equal work. (oxinetd's default START and EXIT lines, written to a file once per
# loop turn, cost it 2-4% more CPU per connection, measured apart.)
OXINETD_DEFAULTS='[defaults]
log_on_success = []
log_on_failure = []
'
XINETD_DEFAULTS='defaults
{
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 100000 1
	log_type = FILE /dev/null
	log_on_success =
	log_on_failure =
}'

# conf_oxinetd PHASE FILE [PEER] / conf_xinetd / conf_inetd: each peer's configuration.
conf_oxinetd() {
	local p
	p=$(port_of "${3:-oxinetd}")
	case $1 in
	stream) cat >"$2" <<EOF
$OXINETD_DEFAULTS
[service.oneline]
type = "UNLISTED"
socket_type = "stream"
protocol = "tcp"
wait = false
$USERLINE
server = "$ONELINE"
port = $p
bind = "127.0.0.1"
instances = "UNLIMITED"

[service.echo]
type = "INTERNAL UNLISTED"
socket_type = "stream"
protocol = "tcp"
port = $((p + 1))
bind = "127.0.0.1"
EOF
		;;
	udp) cat >"$2" <<EOF
$OXINETD_DEFAULTS
[service.echo]
type = "INTERNAL UNLISTED"
socket_type = "dgram"
protocol = "udp"
wait = true
port = $((p + 1))
bind = "::1"
EOF
		;;
	tftp*)
		local server="\"$TFTPD\"" args="[\"-s\", \"$TFTPDIR\", \"-u\", \"root\", \"-t\", \"$(tftp_t "$1")\"]"
		# The control: a server that reads (and drops) one datagram before it becomes
		# in.tftpd, as a superserver that ate the pending datagram would: each of its
		# spawns must show as one lost request, or the workload cannot see a loss.
		[ "${3:-}" = eats-first ] && server='"/bin/sh"' &&
			args="[\"-c\", \"dd bs=1024 count=1 of=/dev/null 2>/dev/null; exec $TFTPD -s $TFTPDIR -u root -t $(tftp_t "$1")\"]"
		cat >"$2" <<EOF
$OXINETD_DEFAULTS
[service.tftp]
type = "UNLISTED"
socket_type = "dgram"
protocol = "udp"
wait = true
user = "root"
server = $server
server_args = $args
port = $((p + 2))
bind = "::1"
log_on_success = ["PID"]
EOF
		;;
	esac
}

conf_xinetd() {
	local p
	p=$(port_of xinetd)
	echo "$XINETD_DEFAULTS" >"$2"
	case $1 in
	stream) cat >>"$2" <<EOF
service oneline
{
	type = UNLISTED
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	server = $ONELINE
	port = $p
	bind = 127.0.0.1
}
service echo
{
	type = INTERNAL UNLISTED
	id = echo-stream
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	port = $((p + 1))
	bind = 127.0.0.1
}
EOF
		;;
	udp) cat >>"$2" <<EOF
service echo
{
	type = INTERNAL UNLISTED
	id = echo-dgram
	socket_type = dgram
	protocol = udp
	wait = yes
	user = root
	port = $((p + 1))
	bind = ::1
	flags = IPv6
}
EOF
		;;
	tftp*) cat >>"$2" <<EOF
service tftp
{
	type = UNLISTED
	socket_type = dgram
	protocol = udp
	wait = yes
	user = root
	server = $TFTPD
	server_args = -s $TFTPDIR -u root -t $(tftp_t "$1")
	port = $((p + 2))
	bind = ::1
	flags = IPv6
	log_type = FILE $WORK/xinetd-$1-spawns.log
	log_on_success = PID
}
EOF
		;;
	esac
}

# OpenBSD inetd finds internal services by their official name, so echo is on port 7.
# Its UDP services drop datagrams from 127/8 (anti-reflection), so UDP echo uses ::1
# for every peer.
conf_inetd() {
	case $1 in
	stream) printf '127.0.0.1:%s stream tcp nowait root %s oneline\n127.0.0.1:echo stream tcp nowait root internal\n' \
		"$(port_of inetd)" "$ONELINE" >"$2" ;;
	udp) printf '::1:echo dgram udp6 wait root internal\n' >"$2" ;;
	tftp*) printf '::1:%s dgram udp6 wait root %s in.tftpd -s %s -u root -t %s\n' \
		$(($(port_of inetd) + 2)) "$TFTPD" "$TFTPDIR" "$(tftp_t "$1")" >"$2" ;;
	esac
}

# Addresses the load generator uses for each peer and workload kind.
exec_addr() { echo "127.0.0.1:$(port_of "$1")"; }
echo_addr() { if [ "$1" = inetd ]; then echo 127.0.0.1:7; else echo "127.0.0.1:$(($(port_of "$1") + 1))"; fi; }
udp_addr() { if [ "$1" = inetd ]; then echo "[::1]:7"; else echo "[::1]:$(($(port_of "$1") + 1))"; fi; }

declare -A DPID=()

# Every daemon starts with the environment systemd gives a service (its default PATH),
# not the shell's: oxinetd, xinetd and tcpserver pass their environment on to each
# server, and execve copies it, so a long interactive environment (this benchmark's
# machine had 35 variables, 1.3 KB) would make the figures depend on who ran the script.
# (An array, not a function: the daemon must stay the process whose pid is taken.)
DAEMON_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

# The load generator connects from 127.0.0.1-64, and xinetd looks up the name of every
# peer (even with NOLIBWRAP and nothing logged). 127.0.0.2-64 are in no hosts file, so
# each lookup would go to DNS, which on an offline machine waits 5 s. Every daemon
# therefore runs in a mount namespace of its own whose /etc/hosts (the machine's, plus
# 127.0.0.2-64) names all 64: the lookups are answered from the file, as they would be
# on a host that knows its peers, and no peer is measured against a resolver timeout. (The namespace changes nothing
# else; unshare and sh exec, so the daemon keeps the pid that is measured.)
HOSTS=$WORK/hosts
{
	cat /etc/hosts
	for i in $(seq 2 64); do printf '127.0.0.%s\tloadgen-%s\n' "$i" "$i"; done
} >"$HOSTS"
if unshare -m -- mount --bind "$HOSTS" /etc/hosts 2>/dev/null; then
	DAEMON_ENV+=(unshare -m -- sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$HOSTS")
else
	note "cannot bind-mount a hosts file (not root?): peers that look up 127.0.0.2-64 will wait for DNS"
fi

# start_peer PEER PHASE: starts the daemon on CPU 0, waits until it serves; sets DPID[PEER].
start_peer() {
	local peer=$1 phase=$2 conf=$WORK/$1-$2.conf dlog=$WORK/$1-$2.log p pid ok=1
	p=$(port_of "$peer")
	case $peer in
	oxinetd) conf_oxinetd "$phase" "$conf"; set -- "$OXINETD" -f "$conf" ;;
	oxinetd-base) [ -n "$BASELINE" ] || return 1; conf_oxinetd "$phase" "$conf" "$peer"; set -- "$BASELINE" -f "$conf" ;;
	xinetd) [ -x "$XINETD" ] || return 1; conf_xinetd "$phase" "$conf"; set -- "$XINETD" -dontfork -f "$conf" ;;
	inetd) [ -x "$INETD" ] || return 1; conf_inetd "$phase" "$conf"
		# -d (debug: foreground, a line per spawn) only where spawns are counted.
		case $phase in tftp*) set -- "$INETD" -d -R 100000000 "$conf" ;; *) set -- "$INETD" -i -R 100000000 "$conf" ;; esac ;;
	tcpserver) [ -x "$TCPSERVER" ] || return 1; set -- "$TCPSERVER" -c 1000 -b 128 -H -R -l0 127.0.0.1 "$p" "$ONELINE" ;;
	socat) [ -x "$SOCAT" ] || return 1; set -- "$SOCAT" "TCP-LISTEN:$p,reuseaddr,fork,bind=127.0.0.1,backlog=128" "EXEC:$ONELINE" ;;
	floor) set -- "$FLOOR" "$p" "$ONELINE" ;;
	floor-setsid) set -- "$FLOOR" "$p" "$ONELINE" setsid ;;
	floor-epoll) set -- "$FLOOR" "$p" "$ONELINE" epoll ;;
	# in.tftpd on its own (-L: standalone, foreground; it forks per request the same way):
	# what in.tftpd itself serves on the daemons' CPU, without a superserver.
	eats-first) conf_oxinetd "$phase" "$conf" "$peer"; set -- "$OXINETD" -f "$conf" ;;
	tftpd-alone) [ -x "$TFTPD" ] || return 1; set -- "$TFTPD" -L -a "$(tftp_addr tftpd-alone)" -s "$TFTPDIR" -u root ;;
	esac
	"${DAEMON_ENV[@]}" taskset -c "$DCPU" "$@" >"$dlog" 2>&1 </dev/null &
	pid=$!
	PIDS+=("$pid")
	case $phase in
	stream)
		"$LOADGEN" --mode wait-connect --addr "$(exec_addr "$peer")" --timeout-ms 10000 2>/dev/null || ok=0
		case $peer in oxinetd | xinetd | inetd)
			"$LOADGEN" --mode wait-connect --addr "$(echo_addr "$peer")" --timeout-ms 5000 2>/dev/null || ok=0 ;;
		esac ;;
	udp)
		local up=$((p + 1))
		[ "$peer" = inetd ] && up=7
		"$LOADGEN" --mode wait-listen --proto udp --port-lo $up --port-hi $up --count 1 --timeout-ms 10000 >/dev/null 2>&1 || ok=0 ;;
	tftp*)
		"$LOADGEN" --mode wait-listen --proto udp --port-lo $((p + 2)) --port-hi $((p + 2)) --count 1 --timeout-ms 10000 >/dev/null 2>&1 || ok=0 ;;
	esac
	if [ $ok = 0 ]; then
		note "$peer ($phase): not ready; last log lines: $(tail -n 3 "$dlog" | tr '\n' '|')"
		stop_pid "$pid"
		return 1
	fi
	DPID[$peer]=$pid
}

# "self children" CPU ticks of PID: utime+stime, cutime+cstime.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13, $14 + $15}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
HZ=$(getconf CLK_TCK)

# run_one SECTION PEER RUN MODE ADDR CONCURRENCY: one load run, one line in results.tsv.
run_one() {
	local section=$1 peer=$2 run=$3 mode=$4 addr=$5 conc=$6 pid=${DPID[$2]} b a out ok fails
	b=($(proc_ticks "$pid"))
	# TCP connects come from 127.0.0.1-64 in turn: with one source address the TIME_WAIT
	# connections of a run fill the ephemeral range and each connect searches it, which
	# made the client, not the daemon, the limit of the echo workload (benches/README.md).
	out=$(taskset -c "$LCPU" "$LOADGEN" --mode "$mode" --addr "$addr" --concurrency "$conc" \
		--duration "$DURATION" --max-conns "$MAXCONNS" --sources 64)
	a=($(proc_ticks "$pid"))
	if [ -z "$out" ] || [ ${#a[@]} -lt 2 ] || [ ${#b[@]} -lt 2 ]; then
		note "$peer $section run $run: no result (daemon gone?)"
		return
	fi
	ok=$(kv conns "$out")
	fails=$(grep -o 'fail_[a-z_]*=[0-9]*' <<<"$out" | grep -v -e fail_total -e '=0$' | sed 's/^fail_//' | paste -sd, -)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$peer" "$run" \
		"$(kv cps "$out")" "$(kv p50_us "$out")" "$(kv p99_us "$out")" "${fails:--}" \
		"$(awk -v d=$((a[0] - b[0])) -v n="$ok" -v hz="$HZ" 'BEGIN {printf "%.3f", n ? d / hz / n * 10000 : 0}')" \
		"$(awk -v d=$((a[1] - b[1])) -v n="$ok" -v hz="$HZ" 'BEGIN {printf "%.3f", n ? d / hz / n * 10000 : 0}')" \
		"$(rss_kb "$pid")" "$(kv udp_sent "$out")" "$(kv udp_answered "$out")" "$(kv udp_lost "$out")" "$ok" \
		"$(kv max_us "$out")" "$(kv first_p99_us "$out")" >>"$RESULTS"
	log "$section $peer run $run: $(kv cps "$out") conns/s p50 $(kv p50_us "$out")us p99 $(kv p99_us "$out")us max $(kv max_us "$out")us fails ${fails:-0}"
}

# spawns PEER PHASE: how many times the daemon has started in.tftpd so far ("-" if it
# cannot tell), from the line each spawn logs.
spawns() {
	local f pat
	case $1 in
	oxinetd | eats-first) f=$WORK/$1-$2.log pat="START: tftp" ;;
	xinetd) f=$WORK/xinetd-$2-spawns.log pat="START: tftp" ;;
	inetd) f=$WORK/inetd-$2.log pat="execv $TFTPD" ;;
	*) echo -; return ;;
	esac
	local n
	n=$(grep -c -F "$pat" "$f" 2>/dev/null)
	echo "${n:-0}"
}

# tftp_one SECTION PEER RUN PHASE LOADGEN-ARGS...: one tftp run, one line in results.tsv
# (the columns of run_one, plus the spawns of in.tftpd during the run in column 17).
tftp_one() {
	local section=$1 peer=$2 run=$3 phase=$4 pid=${DPID[$2]} b a out ok fails s0 s1 sp
	shift 4
	b=($(proc_ticks "$pid"))
	s0=$(spawns "$peer" "$phase")
	out=$(taskset -c "$LCPU" "$LOADGEN" --mode tftp --addr "$(tftp_addr "$peer")" --file "$TFTP_FILE" \
		--expect-bytes "$TFTP_BYTES" "$@")
	a=($(proc_ticks "$pid"))
	s1=$(spawns "$peer" "$phase")
	if [ -z "$out" ] || [ ${#a[@]} -lt 2 ] || [ ${#b[@]} -lt 2 ]; then
		note "$peer $section run $run: no result (daemon gone?)"
		return
	fi
	sp=-
	[ "$s0" != - ] && sp=$((s1 - s0))
	ok=$(kv conns "$out")
	fails=$(grep -o 'fail_[a-z_]*=[0-9]*' <<<"$out" | grep -v -e fail_total -e '=0$' | sed 's/^fail_//' | paste -sd, -)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$peer" "$run" \
		"$(kv sent_per_s "$out")" "$(kv p50_us "$out")" "$(kv p99_us "$out")" "${fails:--}" \
		"$(awk -v d=$((a[0] - b[0])) -v n="$ok" -v hz="$HZ" 'BEGIN {printf "%.3f", n ? d / hz / n * 10000 : 0}')" \
		"$(awk -v d=$((a[1] - b[1])) -v n="$ok" -v hz="$HZ" 'BEGIN {printf "%.3f", n ? d / hz / n * 10000 : 0}')" \
		"$(rss_kb "$pid")" "$(kv udp_sent "$out")" "$(kv udp_answered "$out")" "$(kv udp_lost "$out")" "$ok" \
		"$(kv max_us "$out")" - "$sp" >>"$RESULTS"
	log "$section $peer run $run: sent $(kv udp_sent "$out") at $(kv sent_per_s "$out")/s, answered $ok, lost $(kv udp_lost "$out"), p50 $(kv p50_us "$out")us p99 $(kv p99_us "$out")us, bursts $(kv bursts "$out"), spawns $sp"
}

stop_all() {
	local peer
	for peer in "${!DPID[@]}"; do stop_pid "${DPID[$peer]}"; done
	DPID=()
}

# ---------------------------------------------------------------- workloads
EXEC_PEERS="oxinetd${BASELINE:+ oxinetd-base} floor floor-setsid floor-epoll xinetd inetd tcpserver socat"
ECHO_PEERS="oxinetd xinetd inetd"

phase_stream() {
	local peer run c
	for peer in $EXEC_PEERS; do start_peer "$peer" stream; done
	# Peers take turns inside each run so that noise from the rest of the machine
	# spreads over all of them rather than landing on one.
	for ((run = 1; run <= RUNS; run++)); do
		for c in 1 8 64; do
			for peer in $EXEC_PEERS; do
				[ -n "${DPID[$peer]:-}" ] && run_one "exec c$c" "$peer" $run tcp-oneshot "$(exec_addr "$peer")" $c
			done
		done
		for peer in $ECHO_PEERS; do
			[ -n "${DPID[$peer]:-}" ] && run_one "echo tcp c8" "$peer" $run tcp-echo "$(echo_addr "$peer")" 8
		done
	done
	stop_all
}

phase_udp() {
	local peer run
	for peer in $ECHO_PEERS; do start_peer "$peer" udp; done
	for ((run = 1; run <= RUNS; run++)); do
		for peer in $ECHO_PEERS; do
			[ -n "${DPID[$peer]:-}" ] && run_one "echo udp c8" "$peer" $run udp-echo "$(udp_addr "$peer")" 8
		done
	done
	stop_all
}

# in.tftpd as a wait = true dgram service (see tftp_t above). `tftp 2000/s`: read
# requests open-loop at 2,000/s for DURATION s, each from a fresh client port (loadgen
# --mode tftp), beside in.tftpd standalone (tftpd-alone: what in.tftpd alone serves on
# that CPU); `tftp respawn`: with -t 1, bursts of 200 requests at 2,000/s separated by
# gaps of 0.9-1.3 s, so that in.tftpd has left (or is leaving) when most bursts start and
# the superserver must respawn it with the first request of the burst still queued.
# A request without its DATA block within 1 s is lost (the client never retransmits).
TFTP_RATE=2000
phase_tftp() {
	local peer run rdur=10
	[ "$SHORT" = 1 ] && rdur=4
	[ -x "$TFTPD" ] || { note "no $TFTPD (package tftpd-hpa): no tftp workloads"; return; }
	TFTPDIR=$WORK/tftpboot
	mkdir -p "$TFTPDIR" && chmod 755 "$TFTPDIR"
	# One DATA block: less than 512 bytes.
	printf 'oxinetd benchmark: a file of one TFTP data block, served by in.tftpd.\n' >"$TFTPDIR/$TFTP_FILE"
	chmod 644 "$TFTPDIR/$TFTP_FILE"
	TFTP_BYTES=$(stat -c %s "$TFTPDIR/$TFTP_FILE")
	# Unpinned, unlike the other phases: in.tftpd forks a child per request that makes
	# ~150 system calls, and on one CPU it serves ~1,200 requests/s here, on its own as
	# under any superserver. What is measured is the superserver's datagram path, so
	# the daemons, in.tftpd and the load generator all may use both CPUs.
	local dcpu=$DCPU lcpu=$LCPU
	DCPU=0-$(($(nproc) - 1)) LCPU=0-$(($(nproc) - 1))
	for peer in $ECHO_PEERS tftpd-alone; do start_peer "$peer" tftp; done
	for ((run = 1; run <= RUNS; run++)); do
		for peer in $ECHO_PEERS tftpd-alone; do
			[ -n "${DPID[$peer]:-}" ] && tftp_one "tftp 2000/s" "$peer" $run tftp --rate $TFTP_RATE --duration "$DURATION"
		done
	done
	stop_all
	for peer in $ECHO_PEERS eats-first; do start_peer "$peer" tftp-respawn; done
	for ((run = 1; run <= RUNS; run++)); do
		for peer in $ECHO_PEERS eats-first; do
			[ -n "${DPID[$peer]:-}" ] && tftp_one "tftp respawn" "$peer" $run tftp-respawn --rate $TFTP_RATE \
				--duration $rdur --burst 200 --gaps-ms 900-1300
		done
	done
	stop_all
	DCPU=$dcpu LCPU=$lcpu
}

# 1,000 services on BASE+1000..BASE+1999: `oxinetd --check` time, start-to-ready time of
# oxinetd and xinetd (each by its own readiness line), their RSS, and exec'd server
# throughput at concurrency 8 on the first of the 1,000 ports (spawn cost must not grow
# with the daemon's size).
phase_thousand() {
	local lo=$((BASE + 1000)) i t0 t1 out pid peer ms reps=5
	[ "$SHORT" = 1 ] && reps=1
	{
		echo "$OXINETD_DEFAULTS"
		for ((i = 0; i < 1000; i++)); do
			printf '[service.s%d]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\n%s\nserver = "%s"\nport = %d\nbind = "127.0.0.1"\n\n' \
				$i "$USERLINE" "$ONELINE" $((lo + i))
		done
	} >"$WORK/ox1k.toml"
	{
		echo "$XINETD_DEFAULTS"
		for ((i = 0; i < 1000; i++)); do
			printf 'service s%d\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n\tuser = root\n\tserver = %s\n\tport = %d\n\tbind = 127.0.0.1\n}\n' \
				$i "$ONELINE" $((lo + i))
		done
	} >"$WORK/xi1k.conf"

	for ((i = 1; i <= reps; i++)); do
		t0=$(date +%s%N)
		out=$("$OXINETD" --check -f "$WORK/ox1k.toml" 2>&1)
		rc=$?
		t1=$(date +%s%N)
		if [ $rc != 0 ] || ! grep -q "configuration OK: 1000 services" <<<"$out"; then
			note "oxinetd --check on 1,000 services: exit $rc: $(head -n 3 <<<"$out" | tr '\n' '|')"
			break
		fi
		printf 'check_ms\toxinetd\t%s\n' "$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", d / 1e6}')" >>"$LOADRES"
	done

	for peer in oxinetd xinetd; do
		[ $peer = xinetd ] && [ ! -x "$XINETD" ] && continue
		for ((i = 1; i <= reps; i++)); do
			local dlog=$WORK/$peer-1k-$i.log
			if [ $peer = oxinetd ]; then
				out=$("$LOADGEN" --mode start-ready --log "$dlog" --pattern "ready: " --timeout-ms 20000 -- \
					"${DAEMON_ENV[@]}" taskset -c "$DCPU" "$OXINETD" -f "$WORK/ox1k.toml")
			else
				out=$("$LOADGEN" --mode start-ready --log "$dlog" --pattern "Started working" --timeout-ms 20000 -- \
					"${DAEMON_ENV[@]}" taskset -c "$DCPU" "$XINETD" -dontfork -filelog "$dlog" -f "$WORK/xi1k.conf")
			fi
			pid=$(kv pid "$out")
			[ -n "$pid" ] && PIDS+=("$pid")
			ms=$(kv ready_ms "$out")
			if [ -z "$pid" ] || [ "$ms" = timeout ] || [ -z "$ms" ]; then
				note "$peer with 1,000 services: not ready; last log lines: $(tail -n 3 "$dlog" | tr '\n' '|')"
				[ -n "$pid" ] && stop_pid "$pid"
				continue 2
			fi
			n=$("$LOADGEN" --mode wait-listen --port-lo $lo --port-hi $((lo + 999)) --count 1000 --timeout-ms 5000 2>/dev/null) ||
				note "$peer with 1,000 services: only some ports listen after ready ($n)"
			printf 'ready_ms\t%s\t%s\n' $peer "$ms" >>"$LOADRES"
			if [ $i -lt $reps ]; then stop_pid "$pid"; fi
		done
		printf 'rss_kb\t%s\t%s\n' $peer "$(rss_kb "$pid")" >>"$LOADRES"
		DPID[$peer-1k]=$pid
		for ((run = 1; run <= RUNS; run++)); do
			run_one "exec c8, 1,000 services" "$peer-1k" $run tcp-oneshot "127.0.0.1:$lo" 8
		done
		stop_all
	done
}

# 10,000 services (issue 13, target 3): benches/size.sh measures `--check`, start to
# ready, RSS and a one-service reload (its table is parsed by the header's names, so
# columns it gains later do not break this); here, the spawn rate on one of them: the
# exec'd oneline server on TENK_BASE..+9999, exec c8 on the first port, taking turns
# with the 2-service daemon of the exec phase (started again here: the ratio is of two
# figures measured side by side, whatever else the machine is doing).
phase_tenk() {
	local lo=$TENK_BASE n=10000 i out pid ms reps=5 header row
	[ "$SHORT" = 1 ] && reps=1
	out=$(SIZE_BASE=$lo "$BENCH/size.sh" --oxinetd "$OXINETD" --reps $reps $n 2>"$WORK/size.err")
	echo "$out" >"$WORK/size.md"
	header=$(grep -m1 '^| services' <<<"$out")
	row=$(grep -m1 "^| $n |" <<<"$out")
	if [ -z "$row" ]; then
		note "size.sh $n: no result: $(tail -n 3 "$WORK/size.err" | tr '\n' '|')"
	else
		# Figures by column name: check_ms, ready_ms, rss_kb, reload_ms.
		awk -F'|' -v h="$header" -v r="$row" 'BEGIN {
			nh = split(h, H, "|"); split(r, R, "|")
			for (i = 2; i < nh; i++) {
				k = H[i]; v = R[i]; gsub(/^ +| +$/, "", v)
				if (k ~ /RSS/) f = "rss_kb"; else if (k ~ /reload/) f = "reload_ms"
				else if (k ~ /check/) f = "check_ms"; else if (k ~ /ready/) f = "ready_ms"; else continue
				printf "%s\toxinetd-10k\t%s\n", f, v
			}
		}' >>"$LOADRES"
		log "size.sh: $row"
	fi
	{
		echo "$OXINETD_DEFAULTS"
		for ((i = 0; i < n; i++)); do
			printf '[service.s%d]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\n%s\nserver = "%s"\nport = %d\nbind = "127.0.0.1"\n\n' \
				$i "$USERLINE" "$ONELINE" $((lo + i))
		done
	} >"$WORK/ox10k.toml"
	local dlog=$WORK/oxinetd-10k.log
	out=$("$LOADGEN" --mode start-ready --log "$dlog" --pattern "ready: " --timeout-ms 20000 -- \
		"${DAEMON_ENV[@]}" taskset -c "$DCPU" "$OXINETD" -f "$WORK/ox10k.toml")
	pid=$(kv pid "$out")
	[ -n "$pid" ] && PIDS+=("$pid")
	ms=$(kv ready_ms "$out")
	if [ -z "$pid" ] || [ "$ms" = timeout ] || [ -z "$ms" ]; then
		note "oxinetd with 10,000 services: not ready; last log lines: $(tail -n 3 "$dlog" | tr '\n' '|')"
		[ -n "$pid" ] && stop_pid "$pid"
		return
	fi
	"$LOADGEN" --mode wait-listen --port-lo $lo --port-hi $((lo + n - 1)) --count $n --timeout-ms 10000 >/dev/null 2>&1 ||
		note "oxinetd with 10,000 services: not every port listens after ready"
	DPID[oxinetd-10k]=$pid
	start_peer oxinetd stream
	for ((run = 1; run <= RUNS; run++)); do
		[ -n "${DPID[oxinetd]:-}" ] && run_one "exec c8, 10,000 services" oxinetd $run tcp-oneshot "$(exec_addr oxinetd)" 8
		run_one "exec c8, 10,000 services" oxinetd-10k $run tcp-oneshot "127.0.0.1:$lo" 8
	done
	stop_all
}

# Relays and internal echo sessions held (issue 13, target 4): benches/relay-memory.sh
# at 1,000, 5,000 and the most the fd limit allows, daemon on CPU 0 and the rest on
# CPU 1: RSS per held relay or session, and a new connection's latency while they are
# held. Its raw rows go to held.tsv for the report.
phase_relays() {
	local n=3000 out
	[ "$SHORT" = 1 ] && n=500
	out=$("$BENCH/relay-memory.sh" --oxinetd "$OXINETD" --loadgen "$LOADGEN" --exchanges $n --tsv "$HELD" \
		--cpus "$DCPU,$LCPU" 1000 5000 max 2>"$WORK/relay-memory.err")
	echo "$out" >"$WORK/relay-memory.md"
	[ -s "$HELD" ] || note "relay-memory.sh: no result: $(tail -n 3 "$WORK/relay-memory.err" | tr '\n' '|')"
	grep '^|' <<<"$out" | while read -r line; do log "held: $line"; done
}

# redirect relays (issue 13, targets 4-5): oxinetd's `redirect`, systemd-socket-proxyd
# (behind systemd-socket-activate, which execs it in place: the pid stays the one
# measured), socat (a process per connection) and xinetd's `redirect` (a process per
# connection too). Bulk: 1 and 16 streams through each relay to a socat sink, MiB/s and
# the relay's CPU (itself plus its reaped children) per GiB; short exchanges: connect,
# read to EOF at c=8 through each relay from an oxinetd internal daytime, which answers
# and closes (no half-close: systemd-socket-proxyd and xinetd's redirect end both
# directions at the first EOF). The sink and the daytime run on the load generator's CPU.
REDIRECT_PEERS="oxinetd proxyd socat xinetd"
SINK_PORT=$((BASE + 190))
DAYTIME_UPSTREAM=$((BASE + 191))
relay_port() {
	case $1 in
	oxinetd) echo $((BASE + 100)) ;; proxyd) echo $((BASE + 110)) ;; socat) echo $((BASE + 120)) ;; xinetd) echo $((BASE + 130)) ;;
	esac
}

# start_relay PEER TARGET_PORT: PEER relays its port to 127.0.0.1:TARGET_PORT; sets DPID[PEER].
start_relay() {
	local peer=$1 target=$2 p conf=$WORK/relay-$1.conf dlog=$WORK/relay-$1-$2.log pid
	p=$(relay_port "$peer")
	case $peer in
	oxinetd)
		printf '%s\n[service.relay]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\nport = %d\nbind = "127.0.0.1"\nredirect = "127.0.0.1 %d"\n' \
			"$OXINETD_DEFAULTS" "$p" "$target" >"$conf"
		set -- "$OXINETD" -f "$conf" ;;
	proxyd) [ -x "$PROXYD" ] && [ -x "$ACTIVATE" ] || return 1
		set -- "$ACTIVATE" -l "127.0.0.1:$p" "$PROXYD" "127.0.0.1:$target" ;;
	socat) [ -x "$SOCAT" ] || return 1
		set -- "$SOCAT" "TCP-LISTEN:$p,reuseaddr,fork,bind=127.0.0.1,backlog=128" "TCP:127.0.0.1:$target" ;;
	xinetd) [ -x "$XINETD" ] || return 1
		{
			echo "$XINETD_DEFAULTS"
			printf 'service relay\n{\n\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n\tuser = root\n\tport = %d\n\tbind = 127.0.0.1\n\tredirect = 127.0.0.1 %d\n}\n' "$p" "$target"
		} >"$conf"
		set -- "$XINETD" -dontfork -f "$conf" ;;
	esac
	"${DAEMON_ENV[@]}" taskset -c "$DCPU" "$@" >"$dlog" 2>&1 </dev/null &
	pid=$!
	PIDS+=("$pid")
	if ! "$LOADGEN" --mode wait-connect --addr "127.0.0.1:$p" --timeout-ms 10000 2>/dev/null; then
		note "$peer (redirect): not ready; last log lines: $(tail -n 3 "$dlog" | tr '\n' '|')"
		stop_pid "$pid"
		return 1
	fi
	DPID[$peer]=$pid
}

# bulk_one PEER RUN STREAMS MIB: STREAMS streams of MIB MiB each through PEER's relay.
bulk_one() {
	local peer=$1 run=$2 streams=$3 mib=$4 pid=${DPID[$1]} b a out bytes
	b=($(proc_ticks "$pid"))
	out=$(taskset -c "$LCPU" "$LOADGEN" --mode tcp-bulk --addr "127.0.0.1:$(relay_port "$peer")" \
		--concurrency "$streams" --count "$mib")
	a=($(proc_ticks "$pid"))
	bytes=$(kv bytes "$out")
	if [ -z "$out" ] || [ "$(kv fail_total "$out")" != 0 ] || [ ${#a[@]} -lt 2 ]; then
		note "$peer redirect $streams stream(s) run $run: $(kv fail_total "$out") failed streams (daemon gone?)"
		return
	fi
	printf 'redirect_%s_mibs\t%s\t%s\n' "$streams" "$peer" "$(kv mib_per_s "$out")" >>"$LOADRES"
	printf 'redirect_%s_cpu\t%s\t%s\n' "$streams" "$peer" \
		"$(awk -v d=$((a[0] - b[0] + a[1] - b[1])) -v n="$bytes" -v hz="$HZ" 'BEGIN {printf "%.3f", n ? d / hz / (n / 1073741824) : 0}')" >>"$LOADRES"
	log "redirect $streams stream(s) $peer run $run: $(kv mib_per_s "$out") MiB/s"
}

phase_redirect() {
	local peer run pid mib1=1024 mib16=64
	[ "$SHORT" = 1 ] && mib1=64 && mib16=4
	[ -x "$SOCAT" ] || { note "no socat: no redirect workloads (the sink is socat)"; return; }
	taskset -c "$LCPU" "$SOCAT" -u "TCP-LISTEN:$SINK_PORT,reuseaddr,fork,bind=127.0.0.1,backlog=128" OPEN:/dev/null,wronly \
		>"$WORK/sink.log" 2>&1 </dev/null &
	local sink=$!
	PIDS+=("$sink")
	printf '%s\n[service.daytime]\ntype = "INTERNAL UNLISTED"\nsocket_type = "stream"\nport = %d\nbind = "127.0.0.1"\n' \
		"$OXINETD_DEFAULTS" "$DAYTIME_UPSTREAM" >"$WORK/daytime-upstream.toml"
	"${DAEMON_ENV[@]}" taskset -c "$LCPU" "$OXINETD" -f "$WORK/daytime-upstream.toml" >"$WORK/daytime-upstream.log" 2>&1 </dev/null &
	local daytime_up=$!
	PIDS+=("$daytime_up")
	"$LOADGEN" --mode wait-connect --addr "127.0.0.1:$SINK_PORT" --timeout-ms 10000 2>/dev/null || note "redirect sink not ready"
	"$LOADGEN" --mode wait-connect --addr "127.0.0.1:$DAYTIME_UPSTREAM" --timeout-ms 10000 2>/dev/null || note "redirect daytime upstream not ready"

	for peer in $REDIRECT_PEERS; do start_relay "$peer" "$SINK_PORT"; done
	for ((run = 1; run <= RUNS; run++)); do
		for peer in $REDIRECT_PEERS; do
			[ -n "${DPID[$peer]:-}" ] || continue
			bulk_one "$peer" $run 1 $mib1
			bulk_one "$peer" $run 16 $mib16
		done
	done
	stop_all
	for peer in $REDIRECT_PEERS; do start_relay "$peer" "$DAYTIME_UPSTREAM"; done
	for ((run = 1; run <= RUNS; run++)); do
		for peer in $REDIRECT_PEERS; do
			[ -n "${DPID[$peer]:-}" ] && run_one "redirect c8" "$peer" $run tcp-oneshot "127.0.0.1:$(relay_port "$peer")" 8
		done
	done
	stop_all
	stop_pid "$sink"
	stop_pid "$daytime_up"
}

# ---------------------------------------------------------------- main
[ "$(uname -s)" = Linux ] || die "Linux only"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs; daemon and load generator share one"
install_peers
build
log "work folder $WORK; $RUNS run(s) of $DURATION s per workload"
# Other work on the machine moves every figure: the load average goes in the report.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOADS="start $(loadavg)"
T0=$(date +%s)
PHASE_TIMES=""
# timed NAME FUNCTION...: runs the functions, adds `NAME Ns` to the report's header.
timed() {
	local name=$1 t=$(date +%s) f
	shift
	for f in "$@"; do "$f"; done
	PHASE_TIMES="${PHASE_TIMES:+$PHASE_TIMES, }$name $(($(date +%s) - t)) s"
}
if want exec; then
	timed exec phase_stream
	LOADS="$LOADS; after the exec and stream echo runs $(loadavg)"
fi
want udp && timed udp phase_udp
want tftp && timed tftp phase_tftp
want size && timed size phase_thousand phase_tenk
want relays && timed relays phase_relays
want redirect && timed redirect phase_redirect
LOADS="$LOADS; end $(loadavg)"
ELAPSED="$(($(date +%s) - T0)) s: $PHASE_TIMES"
# setsid() puts every server in a new autogroup when autogroups are on and the daemon
# is in the root cpu cgroup; that decides the worst-case latencies (see README).
cpucg=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}cpu\(,[^:]*\)\{0,1\}:\(.*\)/\3/p; s/^0::\(.*\)/\1/p' /proc/self/cgroup | head -n 1)
SCHED="kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo absent), cpu cgroup ${cpucg:-?}"

mkdir -p "$BENCH/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
# A --short run only proves the harness works, and an --only run covers part of the
# workloads: neither replaces the last full table.
# Only a run of every phase with the default runs and duration is the new latest.md.
latest=$BENCH/results/latest.md
SUBSET=0
suffix=""
[ "$PHASES" = "$ALL_PHASES" ] || suffix="-only-${PHASES//,/-}"
[ "$RUNS" = 3 ] && [ "$DURATION" = 5 ] || suffix="$suffix-runs$RUNS-${DURATION}s"
[ -n "$suffix" ] && SUBSET=1 latest=$BENCH/results/$stamp$suffix.md
[ "$SHORT" = 1 ] && latest=$BENCH/results/short.md
machine="$(uname -sr), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
rev=$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)
awk -F'\t' -f "$BENCH/report.awk" -v stamp="$stamp" -v machine="$machine" -v rev="$rev" \
	-v runs="$RUNS" -v duration="$DURATION" -v short="$SHORT" -v base="$BASE" -v oneline="$ONELINE_KIND" \
	-v loads="$LOADS" -v sched="$SCHED" -v phases="$PHASES" -v elapsed="$ELAPSED" -v tenk="$TENK_BASE" \
	-v tftp_rate="$TFTP_RATE" "$RESULTS" "$LOADRES" "$HELD" "$NOTES" >"$latest"
if [ "$SHORT" = 1 ] || [ "$SUBSET" = 1 ]; then
	log "wrote ${latest#"$REPO"/}"
else
	cp "$latest" "$BENCH/results/$stamp.md"
	cp "$RESULTS" "$BENCH/results/$stamp.tsv"
	log "wrote benches/results/latest.md, $stamp.md and $stamp.tsv (raw runs)"
fi
cat "$latest"

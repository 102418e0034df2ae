#!/usr/bin/env bash
# stress/run.sh: what oxinetd survives, proven by running it (issue 12): a soak, a SIGHUP
# storm under load, servers SIGKILLed mid-connection, fd exhaustion, a connect-and-reset
# flood, slowloris on internal echo, and UDP reflection attempts; xinetd beside it where
# the figures compare. Correctness is asserted (nothing lost, nothing left behind, the
# daemon alive); speed is printed, never asserted.
#
# usage: stress/run.sh [--small] [--no-xinetd] [--no-install] [--keep] [--bin OXINETD]
#   --small       the CI size (10,000 connections per soak, 50 SIGHUPs, the rest scaled
#                 down; well under a minute); oxinetd alone, the debug build, and nothing
#                 written into the tree (the table is printed only)
#   --no-xinetd   leave xinetd out (the full run installs it with apt if missing)
#   --xinetd      run xinetd beside oxinetd even with --small
#   --no-install  do not apt-get anything
#   --keep        keep the temporary folder (configs, daemon logs, raw loadgen output)
#   --only LIST   run only these scenarios (comma-separated: soak, storm, killed,
#                 fdlimit, rst, loris, udp); no results file is written
#   --bin FILE    the oxinetd binary to stress (default: this tree's release build, or
#                 debug build with --small; built with cargo if needed)
#
# Needs root (servers run as root, the UDP reflection test binds ports below 1024) and
# Linux. Traffic stays on loopback: ports STRESS_PORT_BASE (default 24000) .. +40.
# Every process it starts is stopped on exit; every loop is bounded in count and time.
# Exit status: 0 when every check passed, 1 when one failed (each is named), 2 on usage.
# A full run writes stress/results/latest.md.
set -uo pipefail

SMALL=0
XINETD_ON=1
INSTALL=1
KEEP=0
BIN=""
ONLY=""
while [ $# -gt 0 ]; do
	case "$1" in
	--small | --ci) SMALL=1 ;;
	--no-xinetd) XINETD_ON=0 ;;
	--xinetd) XINETD_ON=2 ;;
	--no-install) INSTALL=0 ;;
	--keep) KEEP=1 ;;
	--only) ONLY=${2:?--only needs scenario names}; shift ;;
	--bin) BIN=$(realpath "${2:?--bin needs an oxinetd binary}") || exit 2; shift ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "stress: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

# --small leaves xinetd out unless --xinetd asks for it.
[ "$SMALL" = 1 ] && [ "$XINETD_ON" = 1 ] && XINETD_ON=0
[ "$XINETD_ON" = 2 ] && XINETD_ON=1
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
BASE=${STRESS_PORT_BASE:-24000}
WORK=$(mktemp -d /tmp/oxinetd-stress.XXXXXX)
chmod 755 "$WORK"
PIDS=()   # every background process started, stopped on exit
FAILS=()  # failed checks: the exit status is 1 when there is one
NOTES=()  # findings that are not oxinetd's failures (xinetd's, features not available)

# Sizes: the full run, then the CI one.
if [ "$SMALL" = 0 ]; then
	SOAK_CONNS=100000 SOAK_C=200 STORM_HUPS=200 STORM_SECS=10 KILL_TOTAL=1000 KILL_BATCH=100
	FD_CLIENTS=200 RST_CONNS=5000 LORIS_HOLD=1000 LORIS_PROBES=2000 TIMEOUT_MS=20000
else
	SOAK_CONNS=10000 SOAK_C=200 STORM_HUPS=50 STORM_SECS=5 KILL_TOTAL=200 KILL_BATCH=100
	FD_CLIENTS=150 RST_CONNS=1000 LORIS_HOLD=300 LORIS_PROBES=300 TIMEOUT_MS=30000
fi

log() { echo "stress: $*" >&2; }
die() { log "$*"; exit 1; }
note() { NOTES+=("$*"); log "note: $*"; }

# check PEER OK MESSAGE: a correctness check. oxinetd's failures fail the run; xinetd's
# are findings, reported in the notes.
check() {
	[ "$2" = 1 ] && return 0
	if [ "$1" = oxinetd ]; then FAILS+=("$3"); log "FAIL: $3"; else note "xinetd: $3"; fi
}

# ---------------------------------------------------------------- processes
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait_gone "$pid" 50 || kill -KILL "$pid" 2>/dev/null; done
	if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_gone PID TENTHS: true once PID has exited (or is a zombie), polling every 0.1 s.
wait_gone() {
	local i
	for ((i = 0; i < $2; i++)); do
		alive "$1" || return 0
		sleep 0.1
	done
	return 1
}

# alive PID: the process exists and is not a zombie.
alive() {
	local state
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null
	wait_gone "$1" 50 || kill -KILL "$1" 2>/dev/null
	wait_gone "$1" 20
	wait "$1" 2>/dev/null
}

# children PID: one line "pid state" per child of PID (the kernel here may lack
# /proc/PID/task/TID/children, so every process's stat is read).
children() {
	cat /proc/[0-9]*/stat 2>/dev/null |
		sed -n 's/^\([0-9]*\) .*) \([A-Za-z]\) \([0-9]*\) .*/\1 \2 \3/p' |
		awk -v p="$1" '$3 == p {print $1, $2}'
}
count_children() { children "$1" | wc -l; }
# count_zombies PID: zombies PID leaves unreaped. oxinetd reaps a server that logs
# nothing at its exit up to 100 ms late (docs/configuration.md), so a zombie is
# counted only if it is still there after a second.
count_zombies() {
	local i z
	for ((i = 0; i < 10; i++)); do
		z=$(children "$1" | awk '$2 == "Z"' | wc -l)
		[ "$z" = 0 ] && break
		sleep 0.1
	done
	echo "$z"
}

# wait_children PID N SECS: true once PID has at most N children; polls every 0.1 s.
wait_children() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[ "$(count_children "$1")" -le "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# num KEY LINE: the value of KEY as a number, 0 when absent (for arithmetic).
num() { local v; v=$(kv "$1" "$2" | head -n 1); echo "${v:-0}"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build
[ "$(uname -s)" = Linux ] || die "Linux only"
[ "$(id -u)" = 0 ] || die "run as root: servers run as root and the UDP test binds ports below 1024"
# Room for the slowloris connections on both sides; the fd exhaustion test sets its own.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

XINETD=$(command -v xinetd || echo /usr/sbin/xinetd)
if [ "$XINETD_ON" = 1 ] && [ ! -x "$XINETD" ] && [ "$INSTALL" = 1 ]; then
	policy_made=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Installing xinetd must not start a system xinetd.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy_made=1
	fi
	log "apt-get install xinetd"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xinetd >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xinetd >/dev/null 2>&1; }
	[ "$policy_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
if [ "$XINETD_ON" = 1 ] && [ ! -x "$XINETD" ]; then
	note "xinetd is not installed: oxinetd alone"
	XINETD_ON=0
fi

if [ -z "$BIN" ]; then
	if [ "$SMALL" = 1 ]; then
		(cd "$REPO" && cargo build -q) || die "cargo build failed"
		BIN=$TARGET/debug/oxinetd
	else
		log "building oxinetd (release)"
		(cd "$REPO" && cargo build --release -q) || die "cargo build --release failed"
		BIN=$TARGET/release/oxinetd
	fi
fi
[ -x "$BIN" ] || die "no oxinetd binary at $BIN"
log "building loadgen (release)"
cargo build --release -q --manifest-path "$REPO/benches/loadgen/Cargo.toml" --target-dir "$TARGET" ||
	die "loadgen build failed"
LOADGEN=$TARGET/release/loadgen
mkdir -p "$WORK/bin"
# The exec'd server of benches: writes "hello" and exits (libc-free where it can be).
ONELINE=$WORK/bin/oneline
cc -O2 -static -nostdlib -fno-stack-protector -DONELINE_NOLIBC -o "$ONELINE" "$REPO/benches/oneline.c" 2>/dev/null ||
	cc -O2 -o "$ONELINE" "$REPO/benches/oneline.c" || die "cc benches/oneline.c failed"
[ "$("$ONELINE")" = hello ] || die "oneline does not print hello"
CAT=$(command -v cat)

# Daemons start with systemd's default environment, not the shell's.
DAEMON_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
# Connections come from 127.0.0.1-64 (loadgen --sources: a run of 100,000 leaves
# the ephemeral range of one address full of TIME_WAIT). xinetd looks every peer up by
# name, and 127.0.0.2-64 are in no hosts file: it runs in a mount namespace whose
# /etc/hosts names them (as benches/compare.sh does), or with one source address.
HOSTS=$WORK/hosts
{
	cat /etc/hosts
	for i in $(seq 2 64); do printf '127.0.0.%s\tloadgen-%s\n' "$i" "$i"; done
} >"$HOSTS"
XI_ENV=("${DAEMON_ENV[@]}")
XI_SOURCES=64
if unshare -m -- mount --bind "$HOSTS" /etc/hosts 2>/dev/null; then
	XI_ENV+=(unshare -m -- sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$HOSTS")
else
	XI_SOURCES=1
fi

# ---------------------------------------------------------------- configurations
# Per peer, from its base port P: P exec'd oneline, P+1 internal stream echo, P+2 exec'd
# cat (a server that waits for input, to be killed), P+3..P+6 internal UDP echo, daytime,
# time, chargen, P+7 (config A) or P+8 (config B) internal stream daytime: which of the
# two answers says which configuration the daemon runs.
port_of() { case $1 in oxinetd) echo "$BASE" ;; xinetd) echo $((BASE + 20)) ;; esac; }

# invalid A|B|bad FILE: the invalid configuration of the SIGHUP storm is the same file
# for both daemons, one neither can parse (as a wrong or half-written file would be):
# oxinetd keeps the configuration it runs, xinetd drops every service and exits.
invalid() {
	[ "$1" = bad ] && printf 'this is not a configuration\n{\n' >"$2"
	return 0
}

# conf_oxinetd A|B|bad FILE
conf_oxinetd() {
	local p marker
	p=$(port_of oxinetd)
	marker=$((p + 7))
	[ "$1" = B ] && marker=$((p + 8))
	{
		cat <<EOF
# Nothing logged per connection, as in benches/: 100,000 START and EXIT lines would only
# fill the temp folder. The daemon's own lines (reloads, errors) still go to stderr.
[defaults]
log_on_success = []
log_on_failure = []
instances = "UNLIMITED"
bind = "127.0.0.1"

[service.oneline]
type = "UNLISTED"
socket_type = "stream"
wait = false
user = "root"
server = "$ONELINE"
port = $p

[service.cat]
type = "UNLISTED"
socket_type = "stream"
wait = false
user = "root"
server = "$CAT"
port = $((p + 2))

[[service.echo]]
id = "echo-stream"
type = "INTERNAL UNLISTED"
socket_type = "stream"
port = $((p + 1))

[[service.daytime]]
id = "marker"
type = "INTERNAL UNLISTED"
socket_type = "stream"
port = $marker
EOF
		local name off=3
		for name in echo daytime time chargen; do
			printf '\n[[service.%s]]\nid = "%s-dgram"\ntype = "INTERNAL UNLISTED"\nsocket_type = "dgram"\nprotocol = "udp"\nwait = true\nport = %d\n' \
				"$name" "$name" $((p + off))
			off=$((off + 1))
		done
	} >"$2"
	invalid "$1" "$2"
}

conf_xinetd() {
	local p marker
	p=$(port_of xinetd)
	marker=$((p + 7))
	[ "$1" = B ] && marker=$((p + 8))
	{
		cat <<EOF
defaults
{
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 100000 1
	log_type = FILE /dev/null
	log_on_success =
	log_on_failure =
}
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
service cat
{
	type = UNLISTED
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	server = $CAT
	port = $((p + 2))
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
service daytime
{
	type = INTERNAL UNLISTED
	id = marker
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	port = $marker
	bind = 127.0.0.1
}
EOF
		local name off=3
		for name in echo daytime time chargen; do
			printf 'service %s\n{\n\ttype = INTERNAL UNLISTED\n\tid = %s-dgram\n\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes\n\tuser = root\n\tport = %d\n\tbind = 127.0.0.1\n}\n' \
				"$name" "$name" $((p + off))
			off=$((off + 1))
		done
	} >"$2"
	invalid "$1" "$2"
}

declare -A DPID=()

# start_peer PEER [LIMIT_FDS]: starts the daemon with config A, waits until it serves
# (stream echo answers, the UDP ports are bound); sets DPID[PEER]. With LIMIT_FDS the
# daemon runs under that RLIMIT_NOFILE (prlimit).
start_peer() {
	local peer=$1 conf=$WORK/$1.conf dlog=$WORK/$1.log p pid limit=()
	p=$(port_of "$peer")
	[ -n "${2:-}" ] && limit=(prlimit "--nofile=$2:$2" --)
	"conf_$peer" A "$conf"
	if [ "$peer" = oxinetd ]; then
		"${DAEMON_ENV[@]}" "${limit[@]}" "$BIN" -f "$conf" >>"$dlog" 2>&1 </dev/null &
	else
		"${XI_ENV[@]}" "${limit[@]}" "$XINETD" -dontfork -filelog "$dlog" -f "$conf" >>"$dlog" 2>&1 </dev/null &
	fi
	pid=$!
	PIDS+=("$pid")
	# Ready once stream echo answers and the four UDP ports are bound: up to 15 s, less
	# if the daemon exits first.
	local i ready=0
	for ((i = 0; i < 60; i++)); do
		alive "$pid" || break
		if "$LOADGEN" --mode wait-connect --addr "127.0.0.1:$((p + 1))" --timeout-ms 250 2>/dev/null &&
			"$LOADGEN" --mode wait-listen --proto udp --port-lo $((p + 3)) --port-hi $((p + 6)) --count 4 \
				--timeout-ms 250 >/dev/null 2>&1; then
			ready=1
			break
		fi
	done
	if [ $ready = 0 ]; then
		check "$peer" 0 "$peer did not start; last log lines: $(tail -n 3 "$dlog" | tr '\n' '|')"
		stop_pid "$pid"
		return 1
	fi
	DPID[$peer]=$pid
}

stop_peer() {
	[ -n "${DPID[$1]:-}" ] && stop_pid "${DPID[$1]}"
	unset "DPID[$1]"
}

sources_of() { if [ "$1" = xinetd ]; then echo "$XI_SOURCES"; else echo 64; fi; }

# serves PEER: one exec'd and one internal exchange succeed (retried for up to 10 s).
serves() {
	local p i out
	p=$(port_of "$1")
	for ((i = 0; i < 20; i++)); do
		out=$("$LOADGEN" --mode tcp-oneshot --addr "127.0.0.1:$p" --max-conns 1 --duration 5 --timeout-ms 5000 2>/dev/null)
		if [ "$(kv conns "$out")" = 1 ]; then
			out=$("$LOADGEN" --mode tcp-echo --addr "127.0.0.1:$((p + 1))" --max-conns 1 --duration 5 --timeout-ms 5000 2>/dev/null)
			[ "$(kv conns "$out")" = 1 ] && return 0
		fi
		sleep 0.5
	done
	return 1
}

# ---------------------------------------------------------------- the table
ROWS=()        # "scenario|measure", in order
declare -A VAL=() # "scenario|measure|peer" -> value
put() {
	local key="$1|$2"
	[ -n "${VAL[$key|_seen]:-}" ] || { ROWS+=("$key"); VAL[$key|_seen]=1; }
	VAL[$key|$3]=$4
}
# fmt N: N with thousands separators (the C locale has none for printf %'d).
fmt() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }

# ---------------------------------------------------------------- scenarios
# soak PEER: SOAK_CONNS connections at concurrency SOAK_C to the exec'd server, then as
# many to internal echo; nothing lost, RSS and fds flat, no zombie, no child left.
soak() {
	local peer=$1 p pid kind mode port out lost rss0 fds0 rss1 fds1 z conns=$SOAK_CONNS
	p=$(port_of "$peer")
	# xinetd serves internal echo about a tenth as fast: a tenth of the connections keep
	# the full run under five minutes.
	[ "$peer" = xinetd ] && conns=$((SOAK_CONNS / 10))
	start_peer "$peer" || return
	pid=${DPID[$peer]}
	for kind in exec internal; do
		if [ $kind = exec ]; then mode=tcp-oneshot port=$p; else mode=tcp-echo port=$((p + 1)); fi
		rss0=$(rss_kb "$pid") fds0=$(fd_count "$pid")
		out=$("$LOADGEN" --mode $mode --addr "127.0.0.1:$port" --concurrency "$SOAK_C" --max-conns "$conns" \
			--duration 240 --timeout-ms "$TIMEOUT_MS" --sources "$(sources_of "$peer")")
		echo "soak $kind $peer: $out" >>"$WORK/raw.txt"
		lost=$((conns - $(num conns "$out")))
		wait_children "$pid" 0 30
		z=$(count_zombies "$pid")
		rss1=$(rss_kb "$pid") fds1=$(fd_count "$pid")
		put "soak, $kind" "connections lost (c=$SOAK_C)" "$peer" "$lost of $(fmt "$conns")"
		put "soak, $kind" "conns/s" "$peer" "$(fmt "$(kv cps "$out" | cut -d. -f1)")"
		put "soak, $kind" "p99 µs" "$peer" "$(fmt "$(kv p99_us "$out")")"
		put "soak, $kind" "RSS KB before → after" "$peer" "$rss0 → ${rss1:-gone}"
		put "soak, $kind" "fds before → after" "$peer" "$fds0 → ${fds1:-gone}"
		put "soak, $kind" "zombies, children left" "$peer" "$z, $(count_children "$pid")"
		log "soak $kind $peer: lost $lost, $(kv cps "$out") conns/s, RSS $rss0 -> $rss1 KB, fds $fds0 -> $fds1, zombies $z"
		check "$peer" $((lost == 0)) "soak $kind: $lost of $(fmt "$conns") connections lost ($(grep -o 'fail_[a-z_]*=[1-9][0-9]*' <<<"$out" | paste -sd' ' -))"
		alive "$pid"
		check "$peer" $((! $?)) "soak $kind: $peer died"
		check "$peer" $((z == 0)) "soak $kind: $z zombies left"
		check "$peer" $((${fds1:-9999} <= fds0)) "soak $kind: fds grew from $fds0 to ${fds1:-?}"
		# A leak of a few hundred bytes per connection would show as megabytes here.
		check "$peer" $((${rss1:-999999} <= rss0 + 8192)) "soak $kind: RSS grew from $rss0 to ${rss1:-?} KB"
	done
	stop_peer "$peer"
}

# storm PEER: STORM_HUPS SIGHUPs over STORM_SECS seconds, the configuration rotating
# A, B, invalid, while a client loops on the exec'd server (concurrency 8); no connection
# may fail, the daemon must live, and the last valid configuration must be the one served.
storm() {
	local peer=$1 p pid i conf variant last_valid out failed wanted other applied=0 t0 elapsed
	p=$(port_of "$peer")
	start_peer "$peer" || return
	pid=${DPID[$peer]}
	conf=$WORK/$peer.conf
	for variant in A B bad; do "conf_$peer" $variant "$WORK/$peer-$variant.conf"; done
	"$LOADGEN" --mode tcp-oneshot --addr "127.0.0.1:$p" --concurrency 8 --duration $((STORM_SECS + 1)) \
		--timeout-ms "$TIMEOUT_MS" --sources "$(sources_of "$peer")" >"$WORK/storm-$peer.out" 2>&1 &
	local client=$!
	PIDS+=("$client")
	t0=$(now_ms)
	local gap
	gap=$(awk -v s="$STORM_SECS" -v n="$STORM_HUPS" 'BEGIN {printf "%.3f", s / n}')
	local variants=(A B bad) sent=0
	for ((i = 0; i < STORM_HUPS; i++)); do
		variant=${variants[i % 3]}
		# The last SIGHUP carries a valid configuration, so the final state is known.
		[ $((i + 1)) = "$STORM_HUPS" ] && [ "$variant" = bad ] && variant=A
		[ "$variant" != bad ] && last_valid=$variant
		cp "$WORK/$peer-$variant.conf" "$conf.new" && mv -f "$conf.new" "$conf"
		kill -HUP "$pid" 2>/dev/null || break
		sent=$((i + 1))
		sleep "$gap"
	done
	elapsed=$(($(now_ms) - t0))
	wait_gone "$client" $(((STORM_SECS + TIMEOUT_MS / 1000 + 10) * 10)) || kill -KILL "$client" 2>/dev/null
	wait "$client" 2>/dev/null
	out=$(cat "$WORK/storm-$peer.out")
	echo "storm $peer: $out" >>"$WORK/raw.txt"
	failed=$(kv fail_total "$out")
	# The last valid configuration's marker answers and the other's does not (both
	# polled for up to 15 s: the daemon may still be working through the last reload).
	if [ "$last_valid" = A ]; then wanted=$((p + 7)) other=$((p + 8)); else wanted=$((p + 8)) other=$((p + 7)); fi
	if alive "$pid"; then
		for ((i = 0; i < 30; i++)); do
			if "$LOADGEN" --mode wait-connect --addr "127.0.0.1:$wanted" --timeout-ms 200 2>/dev/null &&
				! "$LOADGEN" --mode wait-connect --addr "127.0.0.1:$other" --timeout-ms 200 2>/dev/null; then
				applied=1
				break
			fi
			sleep 0.5
		done
	fi
	local alive_now=0
	alive "$pid" && alive_now=1
	put "SIGHUP storm" "SIGHUPs sent (A, B, invalid in turn)" "$peer" "$sent in $(awk -v m="$elapsed" 'BEGIN {printf "%.1f", m / 1000}') s"
	put "SIGHUP storm" "connections failed / answered" "$peer" "$(fmt "${failed:-?}") / $(fmt "$(kv conns "$out")")"
	put "SIGHUP storm" "daemon alive" "$peer" "$([ $alive_now = 1 ] && echo yes || echo "**no**")"
	put "SIGHUP storm" "final config ($last_valid) applied" "$peer" "$([ $applied = 1 ] && echo yes || echo "**no**")"
	if [ "$peer" = oxinetd ]; then
		put "SIGHUP storm" "reloads done, failed (log)" "$peer" \
			"$(grep -c 'reload: done' "$WORK/$peer.log"), $(grep -c 'reload: failed' "$WORK/$peer.log")"
	fi
	log "storm $peer: $sent SIGHUPs, ${failed:-?} of $(kv conns "$out") connections failed, alive $alive_now, applied $applied"
	check "$peer" $((alive_now == 1)) "SIGHUP storm: $peer died; last log lines: $(tail -n 3 "$WORK/$peer.log" | tr '\n' '|')"
	check "$peer" $((sent == STORM_HUPS)) "SIGHUP storm: only $sent of $STORM_HUPS SIGHUPs could be sent"
	check "$peer" $((${failed:-1} == 0 && $(num conns "$out") > 0)) "SIGHUP storm: $(fmt "${failed:-?}") connections failed ($(grep -o 'fail_[a-z_]*=[1-9][0-9]*' <<<"$out" | paste -sd' ' -))"
	check "$peer" $((applied == 1)) "SIGHUP storm: the final configuration ($last_valid) is not the one served"
	stop_peer "$peer"
}

# killed PEER: KILL_TOTAL exec'd servers (cat, waiting for input) SIGKILLed mid-connection,
# KILL_BATCH at a time; every one reaped, every client sees its connection end, the
# daemon still serving.
killed() {
	local peer=$1 p pid batch n hold i killed=0 closed=0 kids
	p=$(port_of "$peer")
	start_peer "$peer" || return
	pid=${DPID[$peer]}
	for ((batch = 0; batch < KILL_TOTAL / KILL_BATCH; batch++)); do
		hold=$WORK/hold-$peer-$batch.out
		"$LOADGEN" --mode tcp-hold --addr "127.0.0.1:$((p + 2))" --concurrency "$KILL_BATCH" --duration 60 \
			--timeout-ms "$TIMEOUT_MS" --payload "" >"$hold" 2>&1 &
		local client=$!
		PIDS+=("$client")
		# Wait (up to 30 s) until the daemon has one live server per connection.
		for ((i = 0; i < 300; i++)); do
			n=$(children "$pid" | awk '$2 != "Z"' | wc -l)
			[ "$n" -ge "$KILL_BATCH" ] && break
			sleep 0.1
		done
		kids=$(children "$pid" | awk '$2 != "Z" {print $1}')
		[ -n "$kids" ] && kill -KILL $kids 2>/dev/null
		killed=$((killed + $(wc -w <<<"$kids")))
		wait_gone "$client" 300 || kill -KILL "$client" 2>/dev/null
		wait "$client" 2>/dev/null
		closed=$((closed + $(num closed_by_peer "$(tail -n 1 "$hold")")))
	done
	wait_children "$pid" 0 30
	local z left
	z=$(count_zombies "$pid") left=$(count_children "$pid")
	local serving=0
	serves "$peer" && serving=1
	put "killed children" "servers SIGKILLed mid-connection" "$peer" "$(fmt "$killed")"
	put "killed children" "clients whose connection ended" "$peer" "$(fmt "$closed")"
	put "killed children" "zombies, children left" "$peer" "$z, $left"
	put "killed children" "daemon serving" "$peer" "$([ $serving = 1 ] && echo yes || echo "**no**")"
	log "killed $peer: $killed killed, $closed connections ended, $z zombies, $left left, serving $serving"
	check "$peer" $((killed == KILL_TOTAL)) "killed children: only $killed of $KILL_TOTAL servers were there to kill"
	check "$peer" $((closed == killed)) "killed children: $closed of $killed clients saw their connection end"
	check "$peer" $((z == 0 && left == 0)) "killed children: $z zombies and $left children left"
	check "$peer" $serving "killed children: $peer not serving afterwards"
	stop_peer "$peer"
}

# fdlimit PEER: the daemon under RLIMIT_NOFILE 64 with FD_CLIENTS idle clients on internal
# echo and exec'd cat: it survives, and serves again once they leave, its fd count back.
fdlimit() {
	local peer=$1 p pid out fds0 fds1 c0 c1 serving=0 mid_alive=0
	p=$(port_of "$peer")
	start_peer "$peer" 64 || return
	pid=${DPID[$peer]}
	fds0=$(fd_count "$pid")
	: >"$WORK/fd-$peer-echo.out" >"$WORK/fd-$peer-cat.out"
	"$LOADGEN" --mode tcp-hold --addr "127.0.0.1:$((p + 1))" --concurrency $((FD_CLIENTS / 2)) --duration 25 \
		--timeout-ms 3000 --payload x >"$WORK/fd-$peer-echo.out" 2>&1 &
	local h1=$!
	"$LOADGEN" --mode tcp-hold --addr "127.0.0.1:$((p + 2))" --concurrency $((FD_CLIENTS / 2)) --duration 25 \
		--timeout-ms 3000 --payload x >"$WORK/fd-$peer-cat.out" 2>&1 &
	local h2=$!
	PIDS+=("$h1" "$h2")
	# Held until the daemon has run out of fds (polled for up to 20 s): otherwise the
	# scenario would prove nothing.
	local i fds_mid=0 n
	for ((i = 0; i < 200; i++)); do
		n=$(fd_count "$pid")
		[ "${n:-0}" -gt "$fds_mid" ] && fds_mid=$n
		[ "$fds_mid" -ge 63 ] && break
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && mid_alive=1
	# The daemon's CPU over one second while it is out of fds: an accept that fails with
	# EMFILE on a listener left in the poll set would spin here (printed, not asserted).
	c0=$(cpu_ticks "$pid")
	sleep 1
	c1=$(cpu_ticks "$pid")
	# Then the clients leave.
	stop_pid "$h1"
	stop_pid "$h2"
	serves "$peer" && serving=1
	wait_children "$pid" 0 30
	fds1=$(fd_count "$pid")
	local connected=$(($(num connected "$(head -n 1 "$WORK/fd-$peer-echo.out")") + $(num connected "$(head -n 1 "$WORK/fd-$peer-cat.out")")))
	put "fd exhaustion (RLIMIT_NOFILE 64)" "clients (echo + cat), TCP-connected" "$peer" "$FD_CLIENTS, $connected"
	put "fd exhaustion (RLIMIT_NOFILE 64)" "daemon fds before, most while held, after" "$peer" "$fds0, $fds_mid, ${fds1:-gone}"
	put "fd exhaustion (RLIMIT_NOFILE 64)" "daemon CPU over 1 s out of fds" "$peer" "$(awk -v t=$((${c1:-0} - ${c0:-0})) -v hz="$HZ" 'BEGIN {printf "%.0f%%", t / hz * 100}')"
	put "fd exhaustion (RLIMIT_NOFILE 64)" "alive while held, serving after" "$peer" "$([ $mid_alive = 1 ] && echo yes || echo "**no**"), $([ $serving = 1 ] && echo yes || echo "**no**")"
	log "fdlimit $peer: fds $fds0 -> $fds_mid -> $fds1, alive $mid_alive, serving $serving"
	check "$peer" $mid_alive "fd exhaustion: $peer died under RLIMIT_NOFILE 64; last log lines: $(tail -n 3 "$WORK/$peer.log" | tr '\n' '|')"
	[ "$peer" = oxinetd ] && check "$peer" $((fds_mid >= 63)) "fd exhaustion: the daemon never ran out of fds (at most $fds_mid of 64 open): the scenario proved nothing"
	check "$peer" $serving "fd exhaustion: $peer does not serve again once the clients left"
	check "$peer" $((${fds1:-9999} <= fds0)) "fd exhaustion: fds $fds0 before, ${fds1:-?} after the clients left"
	stop_peer "$peer"
}

# rst PEER: RST_CONNS connections to the exec'd server, each reset at once; the time until
# the daemon has handled them all (no child left, a new connection served), bounded.
rst() {
	local peer=$1 p pid t0 t1 out handled=0 bound=90 z
	p=$(port_of "$peer")
	[ "$SMALL" = 1 ] && bound=60
	start_peer "$peer" || return
	pid=${DPID[$peer]}
	t0=$(now_ms)
	out=$("$LOADGEN" --mode tcp-reset --addr "127.0.0.1:$p" --concurrency 8 --max-conns "$RST_CONNS" \
		--duration $bound --timeout-ms "$TIMEOUT_MS")
	echo "rst $peer: $out" >>"$WORK/raw.txt"
	local i
	for ((i = 0; i < bound * 10; i++)); do
		if [ "$(count_children "$pid")" = 0 ] &&
			[ "$(kv conns "$("$LOADGEN" --mode tcp-oneshot --addr "127.0.0.1:$p" --max-conns 1 --duration 2 --timeout-ms 2000 2>/dev/null)")" = 1 ]; then
			handled=1
			break
		fi
		[ $(($(now_ms) - t0)) -gt $((bound * 1000)) ] && break
		sleep 0.1
	done
	t1=$(now_ms)
	z=$(count_zombies "$pid")
	local serving=0
	serves "$peer" && serving=1
	put "RST flood" "connect-and-reset connections" "$peer" "$(fmt "$(kv conns "$out")") of $(fmt "$RST_CONNS")"
	put "RST flood" "time until all handled, s" "$peer" "$([ $handled = 1 ] && awk -v m=$((t1 - t0)) 'BEGIN {printf "%.1f", m / 1000}' || echo "> $bound (gave up)")"
	put "RST flood" "zombies; daemon serving" "$peer" "$z; $([ $serving = 1 ] && echo yes || echo "**no**")"
	log "rst $peer: $(kv conns "$out") reset, handled $handled in $((t1 - t0)) ms, serving $serving"
	check "$peer" $(($(num conns "$out") == RST_CONNS)) "RST flood: only $(kv conns "$out") of $RST_CONNS connections made ($(grep -o 'fail_[a-z_]*=[1-9][0-9]*' <<<"$out" | paste -sd' ' -))"
	check "$peer" $handled "RST flood: not handled within $bound s"
	check "$peer" $((z == 0)) "RST flood: $z zombies"
	check "$peer" $serving "RST flood: $peer not serving afterwards"
	stop_peer "$peer"
}

# loris PEER: LORIS_HOLD idle connections to internal echo (one byte sent, no more), then
# LORIS_PROBES echo exchanges one after another on the same service: every probe answered,
# its p99 printed (and the same probe without the idle connections, to compare).
loris() {
	local peer=$1 p pid base out hold i settled=0
	p=$(port_of "$peer")
	start_peer "$peer" || return
	pid=${DPID[$peer]}
	base=$("$LOADGEN" --mode tcp-echo --addr "127.0.0.1:$((p + 1))" --max-conns "$LORIS_PROBES" --duration 60 --timeout-ms 5000)
	hold=$WORK/loris-$peer.out
	: >"$hold" # exists before the client starts, for the polling below
	"$LOADGEN" --mode tcp-hold --addr "127.0.0.1:$((p + 1))" --concurrency "$LORIS_HOLD" --duration 120 \
		--timeout-ms 10000 --payload x >"$hold" 2>&1 &
	local client=$!
	PIDS+=("$client")
	for ((i = 0; i < 300; i++)); do
		grep -q '^settled' "$hold" && { settled=1; break; }
		sleep 0.1
	done
	out=$("$LOADGEN" --mode tcp-echo --addr "127.0.0.1:$((p + 1))" --max-conns "$LORIS_PROBES" --duration 60 --timeout-ms 5000)
	echo "loris $peer: $(head -n 1 "$hold") probe: $out" >>"$WORK/raw.txt"
	local still
	alive "$pid"
	local alive_now=$((! $?))
	stop_pid "$client"
	still=$(kv connected "$(head -n 1 "$hold")")
	put "slowloris on internal echo" "idle connections held" "$peer" "$(fmt "${still:-0}") of $(fmt "$LORIS_HOLD")"
	put "slowloris on internal echo" "probe p99 µs, idle → under slowloris" "$peer" "$(fmt "$(kv p99_us "$base")") → $(fmt "$(kv p99_us "$out")")"
	put "slowloris on internal echo" "probes failed" "$peer" "$(kv fail_total "$out") of $(fmt "$LORIS_PROBES")"
	log "loris $peer: held ${still:-0}, probe p99 $(kv p99_us "$base") -> $(kv p99_us "$out") us, failed $(kv fail_total "$out")"
	check "$peer" $settled "slowloris: the idle connections never settled"
	check "$peer" $((${still:-0} == LORIS_HOLD)) "slowloris: only ${still:-0} of $LORIS_HOLD idle connections connected"
	check "$peer" $(($(num conns "$out") == LORIS_PROBES)) "slowloris: $(kv fail_total "$out") of $LORIS_PROBES probes failed"
	check "$peer" "$alive_now" "slowloris: $peer died"
	stop_peer "$peer"
}

# udp PEER: one datagram to each internal UDP service (echo, daytime, time, chargen)
# from each privileged source port in LOW_PORTS: no reply may come. From three ephemeral
# ports every service must answer (else the test proves nothing). No broadcast source:
# a socket bound to 127.255.255.255 sends from 127.0.0.1 on loopback (so a reply would go
# elsewhere and "no reply" would prove nothing), and a reply to a broadcast address
# needs SO_BROADCAST, which oxinetd never sets (the kernel refuses it with EACCES);
# internal::may_reply_to is unit-tested for those addresses.
LOW_PORTS=1,7,9,13,17,19,20,21,22,23,25,37,42,53,67,68,69,80,111,123,137,138,161,162,389,500,514,520,1022,1023
udp() {
	local peer=$1 p off out sent=0 answered=0 lowfail=0 ctl_sent=0 ctl_answered=0
	p=$(port_of "$peer")
	start_peer "$peer" || return
	local names=(echo daytime time chargen) each=()
	for off in 3 4 5 6; do
		out=$("$LOADGEN" --mode udp-reflect --addr "127.0.0.1:$((p + off))" --src-ports "$LOW_PORTS" --timeout-ms 500)
		each+=("${names[off - 3]} $(num answered "$out")")
		sent=$((sent + $(num sent "$out"))) answered=$((answered + $(num answered "$out")))
		lowfail=$((lowfail + $(num bind_failed "$out")))
		out=$("$LOADGEN" --mode udp-reflect --addr "127.0.0.1:$((p + off))" --src-ports 0,0,0 --timeout-ms 5000)
		ctl_sent=$((ctl_sent + $(num sent "$out"))) ctl_answered=$((ctl_answered + $(num answered "$out")))
	done
	put "UDP reflection (echo, daytime, time, chargen)" "replies to source ports < 1024" "$peer" "$answered of $sent$( [ "$lowfail" -gt 0 ] && echo " ($lowfail ports in use here)"); $(IFS=,; echo "${each[*]}" | sed 's/,/, /g')"
	put "UDP reflection (echo, daytime, time, chargen)" "control: replies to ephemeral ports" "$peer" "$ctl_answered of $ctl_sent"
	log "udp $peer: low ports $answered of $sent answered, control $ctl_answered of $ctl_sent"
	check "$peer" $((answered == 0)) "UDP reflection: $answered of $sent datagrams from ports below 1024 answered"
	check "$peer" $((sent > 0 && ctl_sent == 12 && ctl_answered == ctl_sent)) "UDP reflection: control: $ctl_answered of $ctl_sent datagrams from ephemeral ports answered (and $sent sent from low ports)"
	stop_peer "$peer"
}

# ---------------------------------------------------------------- main
PEERS=oxinetd
[ "$XINETD_ON" = 1 ] && PEERS="oxinetd xinetd"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Builds and tests of other work on the machine (this run's own builds are done by now).
builds() { cat /proc/[0-9]*/comm 2>/dev/null | grep -c -x -E 'rustc|cargo|cc1|ld|clippy-driver|cargo-fuzz'; }
LOAD_START=$(loadavg)
LOADS="start $LOAD_START"
BUILDS_START=$(builds)
T0=$(now_ms)
log "work folder $WORK; $( [ "$SMALL" = 1 ] && echo small || echo full ) run, peers: $PEERS"
SCENARIOS="soak storm killed fdlimit rst loris udp"
[ -n "$ONLY" ] && SCENARIOS=${ONLY//,/ }
for scenario in $SCENARIOS; do
	case " soak storm killed fdlimit rst loris udp " in *" $scenario "*) ;; *) die "unknown scenario $scenario" ;; esac
	for peer in $PEERS; do
		log "-- $scenario $peer"
		"$scenario" "$peer"
	done
done
LOADS="$LOADS; end $(loadavg)"
BUILDS_END=$(builds)
ELAPSED=$(( ($(now_ms) - T0) / 1000 ))

# Other processes on the machine: anything busy besides what this run started shows in
# the load average, and the busiest commands are named.
others=$(ps -eo pcpu=,comm= --sort=-pcpu 2>/dev/null | awk '$1 >= 20 {print $2 " " $1 "%"}' | head -n 5 | paste -sd, -)

report() {
	local row scenario measure peer
	echo "# oxinetd under faults: stress/run.sh$( [ "$SMALL" = 1 ] && echo ' --small')"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), oxinetd $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)" \
		"($(basename "$(dirname "$BIN")") build)$( [ "$XINETD_ON" = 1 ] && echo ", xinetd $("$XINETD" -version 2>&1 | grep -o '[0-9][0-9.]*' | head -n 1)")."
	echo "Machine: $(uname -sr), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1))."
	if [ "$BUILDS_START" -gt 0 ] || [ "$BUILDS_END" -gt 0 ] || awk -v l="${LOAD_START%% *}" 'BEGIN {exit !(l >= 1)}'; then
		echo "**Other work ran on the machine during this run** (load average ${LOAD_START%% *} before it started;" \
			"$BUILDS_START compiler or cargo processes at the start, $BUILDS_END at the end): every timing below" \
			"is lower than on a quiet machine. No check depends on timing."
	fi
	echo "Load average (1, 5, 15 min): $LOADS${others:+; busiest other processes at the end (share of CPU over their lifetime): $others}. Run time ${ELAPSED} s."
	echo
	echo "Correctness is asserted for oxinetd (the run fails otherwise); speed is printed, not asserted."
	echo "Speed is measured by benches/compare.sh; here the figures move with the machine's other load"
	echo "and, for exec'd servers at concurrency 200, with the scheduler (each server's new session is an"
	echo "autogroup of its own: benches/README.md, \"Scheduler\")."
	echo "xinetd's failures are findings, listed under Notes."
	echo
	printf '| scenario | measure | oxinetd |%s\n' "$( [ "$XINETD_ON" = 1 ] && echo ' xinetd |')"
	printf '|---|---|---:|%s\n' "$( [ "$XINETD_ON" = 1 ] && echo '---:|')"
	for row in "${ROWS[@]}"; do
		scenario=${row%%|*} measure=${row#*|}
		printf '| %s | %s |' "$scenario" "$measure"
		for peer in $PEERS; do printf ' %s |' "${VAL[$row|$peer]:--}"; done
		echo
	done
	echo
	if [ ${#FAILS[@]} -eq 0 ]; then
		echo "Checks: all passed."
	else
		echo "Checks FAILED:"
		printf -- '- %s\n' "${FAILS[@]}"
	fi
	if [ ${#NOTES[@]} -gt 0 ]; then
		echo
		echo "Notes:"
		printf -- '- %s\n' "${NOTES[@]}"
	fi
}
report >"$WORK/report.md"
if [ "$SMALL" = 0 ] && [ -z "$ONLY" ]; then
	mkdir -p "$REPO/stress/results"
	cp "$WORK/report.md" "$REPO/stress/results/latest.md"
	log "wrote stress/results/latest.md"
fi
cat "$WORK/report.md"
if [ ${#FAILS[@]} -gt 0 ]; then
	log "${#FAILS[@]} check(s) failed:"
	printf 'stress: FAIL: %s\n' "${FAILS[@]}" >&2
	exit 1
fi
exit 0

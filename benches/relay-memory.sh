#!/bin/bash
# What connections held at once cost the daemon (issue 13, target 4): idle `redirect`
# relays and internal echo sessions, at several counts up to the most the fd limit
# allows. Not a throughput benchmark: one daemon, Python holders, a minute or so.
#
#   benches/relay-memory.sh [--oxinetd PATH] [--loadgen PATH] [--kinds relay,echo]
#                           [--exchanges N] [--cpus D,L] [--tsv FILE] [COUNT...]
#
#   COUNT         connections held; `max` is the most the hard fd limit allows (the
#                 daemon holds 2 fds per relay, 1 per echo session, plus ~100 of its
#                 own and for the probes). Default: 1000 5000 max
#   --kinds       relay (default both), echo
#   --exchanges N short exchanges timed while the connections are held (default 3000)
#   --cpus D,L    the daemon on CPU D, holders, upstreams and probes on CPU L (default
#                 0,1 with 2 CPUs or more, no pinning otherwise)
#   --tsv FILE    also append one raw line per kind and count to FILE (compare.sh):
#                 kind count rss_before_kib rss_after_kib kib_per p50_us p99_us
#                 exchanges failures daemon_fds
#
# For each kind and COUNT: starts oxinetd (nothing logged per connection); opens COUNT
# connections, moves one short line both ways on every one (so each relay or session
# has carried data, as a real one would before falling idle), waits 0.5 s and reads the
# daemon's VmRSS: (after - before) / COUNT is the cost of one held connection. Then,
# with all of them still held, a new connection's latency over N short exchanges at
# concurrency 1 (`loadgen`, connect to EOF):
#   relay: through a second redirect service of the same daemon to an oxinetd internal
#          daytime on CPU L (connect, read to EOF; the held relays' upstream is the
#          Python holder, too slow to time anything with);
#   echo:  on the same internal echo service (write 5 bytes, shut down, read to EOF).
# Then checks every held connection is still open and still relays or echoes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OXINETD=$TARGET/release/oxinetd
LOADGEN=$TARGET/release/loadgen
KINDS=relay,echo
EXCHANGES=3000
CPUS=""
TSV=""
while [ $# -gt 0 ]; do
	case $1 in
	--oxinetd) OXINETD=$2; shift 2 ;;
	--loadgen) LOADGEN=$2; shift 2 ;;
	--kinds) KINDS=$2; shift 2 ;;
	--exchanges) EXCHANGES=$2; shift 2 ;;
	--cpus) CPUS=$2; shift 2 ;;
	--tsv) TSV=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000 5000 max)
[ -x "$OXINETD" ] || (cd "$ROOT" && cargo build --release --quiet)
[ -x "$LOADGEN" ] || cargo build --release --quiet --manifest-path "$ROOT/benches/loadgen/Cargo.toml" --target-dir "$TARGET"
ulimit -n "$(ulimit -Hn)"
HARD=$(ulimit -Hn)
[ -z "$CPUS" ] && [ "$(nproc)" -ge 2 ] && CPUS=0,1
DPIN=()
LPIN=()
if [ -n "$CPUS" ]; then
	DPIN=(taskset -c "${CPUS%,*}")
	LPIN=(taskset -c "${CPUS#*,}")
fi
# As compare.sh: the environment systemd gives a service, not the shell's.
ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

WORK=$(mktemp -d)
STARTED=()
cleanup() {
	local pid
	for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# The holder, in one of three roles (fds are per process, so the held relays' two ends
# live in two processes: up to ~9,950 each under a 20,000 hard limit):
#   upstream PORT: accept, echo every line back, hold (the relays' upstream);
#   clients PORT COUNT: COUNT connections, one line each way on each, then print
#     `held N` and wait for a line on stdin; then check each one still answers a line,
#     print `alive N` and exit.
cat >"$WORK/holder.py" <<'EOF'
import selectors, socket, sys, time

role = sys.argv[1]
if role == "upstream":
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[2])))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            else:
                try:
                    data = key.fileobj.recv(256)
                except OSError:
                    data = b""
                if data:
                    key.fileobj.send(data)
                else:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()

port, count = int(sys.argv[2]), int(sys.argv[3])

def line_back(sock, line):
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise SystemExit(f"closed early after {len(clients)} connections")
        got += chunk
    if got != line:
        raise SystemExit(f"sent {line!r}, got {got!r}")

clients = []
deadline = time.time() + 120
for i in range(count):
    # From an address the probes (loadgen --sources 64: 127.0.0.1-64) never use: with
    # 19,900 connections held from 127.0.0.1 to the echo port, a probe's connect from
    # there searched the ephemeral ports for ~1.5 ms, a 64th of the probes: their p99.
    # IP_BIND_ADDRESS_NO_PORT (24): the port is chosen at connect for the whole
    # 4-tuple; bound first, 19,900 holders plus the relays' TIME_WAIT ran out of ports.
    c = socket.socket()
    c.setsockopt(socket.SOL_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
    c.bind(("127.0.0.200", 0))
    c.settimeout(10)
    c.connect(("127.0.0.1", port))
    line_back(c, b"ping %d\n" % i)
    clients.append(c)
    if time.time() > deadline:
        raise SystemExit(f"only {i + 1} of {count} connections within 120 s")
print(f"held {len(clients)}", flush=True)
sys.stdin.readline()
alive = 0
for i, c in enumerate(clients):
    try:
        line_back(c, b"again %d\n" % i)
        alive += 1
    except (OSError, SystemExit):
        pass
print(f"alive {alive}", flush=True)
EOF

printf '| kind | held | daemon fds | RSS before KiB | RSS after KiB | KiB per held | new connection p50 µs | p99 µs | exchanges | failures |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
for kind in ${KINDS//,/ }; do
	for count in "${COUNTS[@]}"; do
		if [ "$count" = max ]; then
			case $kind in relay) count=$(((HARD - 100) / 2)) ;; echo) count=$((HARD - 100)) ;; esac
		fi
		front=$(free_port)
		log_off='log_on_success = []
log_on_failure = []'
		case $kind in
		relay)
			back=$(free_port)
			probe=$(free_port)
			day=$(free_port)
			printf '[defaults]\n%s\n[service.daytime]\ntype = "INTERNAL UNLISTED"\nsocket_type = "stream"\nport = %d\nbind = "127.0.0.1"\n' \
				"$log_off" "$day" >"$WORK/day.toml"
			"${ENV[@]}" "${LPIN[@]}" "$OXINETD" -f "$WORK/day.toml" 2>"$WORK/day.log" &
			STARTED+=($!)
			upstream=$!
			"${LPIN[@]}" python3 "$WORK/holder.py" upstream "$back" >"$WORK/upstream.out" &
			STARTED+=($!)
			upholder=$!
			printf '[defaults]\n%s\n[service.relay]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\nbind = "127.0.0.1"\nport = %d\nredirect = "127.0.0.1 %d"\n\n[service.probe]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\nbind = "127.0.0.1"\nport = %d\nredirect = "127.0.0.1 %d"\n' \
				"$log_off" "$front" "$back" "$probe" "$day" >"$WORK/ox.toml"
			mode=tcp-oneshot
			"$LOADGEN" --mode wait-connect --addr "127.0.0.1:$day" --timeout-ms 10000
			"$LOADGEN" --mode wait-connect --addr "127.0.0.1:$back" --timeout-ms 10000
			;;
		echo)
			probe=$front
			printf '[defaults]\n%s\n[service.echo]\ntype = "INTERNAL UNLISTED"\nsocket_type = "stream"\nport = %d\nbind = "127.0.0.1"\n' \
				"$log_off" "$front" >"$WORK/ox.toml"
			mode=tcp-echo
			;;
		*) echo "relay-memory.sh: unknown kind $kind" >&2; exit 2 ;;
		esac
		"${ENV[@]}" "${DPIN[@]}" "$OXINETD" -f "$WORK/ox.toml" 2>"$WORK/ox.log" &
		daemon=$!
		STARTED+=($daemon)
		"$LOADGEN" --mode wait-connect --addr "127.0.0.1:$front" --timeout-ms 10000
		# One exchange on each port first, so that what is first touched by any
		# connection is in `before`.
		"$LOADGEN" --mode $mode --addr "127.0.0.1:$probe" --max-conns 20 --duration 5 >/dev/null
		sleep 0.5
		before=$(rss_kb $daemon)
		coproc HOLDER { "${LPIN[@]}" python3 "$WORK/holder.py" clients "$front" "$count" 2>&1; }
		holder=$HOLDER_PID
		read -r -u "${HOLDER[0]}" got || got=""
		if [ "${got%% *}" != held ]; then
			echo "relay-memory.sh: $kind $count: holder: $got $(cat <&"${HOLDER[0]}" 2>/dev/null)" >&2
			exit 1
		fi
		sleep 0.5
		after=$(rss_kb $daemon)
		fds=$(ls "/proc/$daemon/fd" | wc -l)
		out=$("${LPIN[@]}" "$LOADGEN" --mode $mode --addr "127.0.0.1:$probe" --concurrency 1 \
			--max-conns "$EXCHANGES" --duration 120 --sources 64)
		echo quit >&"${HOLDER[1]}"
		read -r -u "${HOLDER[0]}" alive || alive=""
		wait "$holder" 2>/dev/null || true
		fails=$(grep -o 'fail_[a-z_]*=[0-9]*' <<<"$out" | grep -v -e fail_total -e '=0$' | sed 's/^fail_//' | paste -sd, - || true)
		[ "$alive" = "alive $count" ] || fails="${fails:+$fails,}held_lost=$((count - ${alive#alive }))"
		per=$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN {printf "%.2f", (a - b) / n}')
		printf '| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n' "$kind" "$count" "$fds" "$before" "$after" "$per" \
			"$(kv p50_us "$out")" "$(kv p99_us "$out")" "$(kv conns "$out")" "${fails:-0}"
		[ -z "$TSV" ] || printf '%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n' "$kind" "$count" "$before" "$after" "$per" \
			"$(kv p50_us "$out")" "$(kv p99_us "$out")" "$(kv conns "$out")" "${fails:--}" "$fds" >>"$TSV"
		kill "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
		if [ "$kind" = relay ]; then
			kill "$upstream" "$upholder" 2>/dev/null || true
			wait "$upstream" "$upholder" 2>/dev/null || true
		fi
	done
done

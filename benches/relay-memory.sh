#!/bin/bash
# What an idle `redirect` relay costs the daemon: RSS delta / relays held (issue 13,
# target 4). Not a throughput benchmark: one daemon, one Python holder, a few seconds.
#
#   benches/relay-memory.sh [--oxinetd PATH] [COUNT...]     # default: 1000 5000
#
# For each COUNT: starts oxinetd with one redirect service to an upstream the holder
# runs itself; opens COUNT client connections through the relay, sends one short line
# each way on every one (so each relay has moved data, as a real session would before
# falling idle), then reads the daemon's VmRSS. Prints COUNT, the RSS before and after
# in KiB and the delta per relay in KiB. Then checks a new connection is still relayed.
# The daemon holds 2 fds per relay and the holder 2 per relay too: the soft fd limit is
# raised to the hard one, which bounds COUNT (about hard/2 - 50).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OXINETD=$ROOT/target/release/oxinetd
if [ "${1:-}" = --oxinetd ]; then
	OXINETD=$2
	shift 2
fi
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000 5000)
[ -x "$OXINETD" ] || (cd "$ROOT" && cargo build --release --quiet)
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
DAEMON=
cleanup() {
	[ -z "$DAEMON" ] || kill "$DAEMON" 2>/dev/null || true
	[ -z "$DAEMON" ] || wait "$DAEMON" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

printf '| relays held | RSS before KiB | RSS after KiB | KiB per relay |\n|---:|---:|---:|---:|\n'
for count in "${COUNTS[@]}"; do
	front=$(free_port)
	back=$(free_port)
	cat >"$WORK/ox.toml" <<EOF
[service.relay]
type = "UNLISTED"
socket_type = "stream"
wait = false
bind = "127.0.0.1"
port = $front
redirect = "127.0.0.1 $back"
log_on_success = []
log_on_failure = []
EOF
	"$OXINETD" -f "$WORK/ox.toml" 2>"$WORK/ox.log" &
	DAEMON=$!
	python3 - "$DAEMON" "$front" "$back" "$count" <<'EOF'
import socket, sys, threading, time

daemon, front, back, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def rss():
    with open(f"/proc/{daemon}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

# The upstream: accepts and echoes one line per connection, then holds it.
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", back))
listener.listen(4096)
upstreams = []
def accept():
    while True:
        conn, _ = listener.accept()
        upstreams.append(conn)
threading.Thread(target=accept, daemon=True).start()

def exchange(sock, line):
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise SystemExit("relay closed early")
        got += chunk
    return got

deadline = time.time() + 10
while True:
    try:
        socket.create_connection(("127.0.0.1", front), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            raise SystemExit("oxinetd never listened")
        time.sleep(0.05)
while len(upstreams) < 1:
    time.sleep(0.01)
time.sleep(0.2)
upstreams.clear()
before = rss()

clients = []
for i in range(count):
    c = socket.create_connection(("127.0.0.1", front), timeout=10)
    c.sendall(b"ping %d\n" % i)
    clients.append(c)
deadline = time.time() + 30
while len(upstreams) < count:
    if time.time() > deadline:
        raise SystemExit(f"only {len(upstreams)} of {count} relays reached the upstream")
    time.sleep(0.01)
for u in list(upstreams):
    u.settimeout(10)
    got = b""
    while not got.endswith(b"\n"):
        got += u.recv(64)
    u.sendall(b"pong " + got)
for c in clients:
    got = b""
    while not got.endswith(b"\n"):
        got += c.recv(64)
time.sleep(0.5)
after = rss()

# A new connection is still relayed while the others are held.
c = socket.create_connection(("127.0.0.1", front), timeout=10)
c.sendall(b"last\n")
deadline = time.time() + 10
while len(upstreams) < count + 1:
    if time.time() > deadline:
        raise SystemExit("the last connection never reached the upstream")
    time.sleep(0.01)
u = upstreams[-1]
u.settimeout(10)
u.sendall(u.recv(64))
assert c.recv(64) == b"last\n", "the last relay did not echo"

print(f"| {count} | {before} | {after} | {(after - before) / count:.2f} |")
EOF
	kill "$DAEMON"
	wait "$DAEMON" 2>/dev/null || true
	DAEMON=
done

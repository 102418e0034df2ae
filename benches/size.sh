#!/bin/bash
# What size costs (issue 13, target 3): with N exec'd services loaded, oxinetd's
# `--check` time, start-to-ready time, RSS after ready, and the time a reload that
# changes one service takes (SIGHUP to its `reload: done` line). Small runs, median of
# REPS; not the throughput benchmark (compare.sh measures spawn rate on one of 1,000).
#
#   benches/size.sh [--oxinetd PATH] [--reps R] [--includedir] [N...]   # default: 1000 10000, R 5
#
# --includedir: one file per service in an `includedir` (as distributions ship
# /etc/xinetd.d), the main file holding only [defaults]; the reload rewrites one file.
#
# Services are on 127.0.0.1 ports BASE.. (BASE=12000 unless $SIZE_BASE says: below the
# ephemeral range, where clients' ports would take some of them; N ports
# must be free), running /bin/true as root with nothing logged per connection.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OXINETD=$ROOT/target/release/oxinetd
REPS=5
LAYOUT=file
while [ $# -gt 0 ]; do
	case $1 in
	--oxinetd) OXINETD=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--includedir) LAYOUT=includedir; shift ;;
	*) break ;;
	esac
done
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000 10000)
[ -x "$OXINETD" ] || (cd "$ROOT" && cargo build --release --quiet)
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

printf '| services (%s) | `--check` ms' "$LAYOUT"
printf ' | start to ready ms | RSS after ready KiB | one-service reload ms |\n|---:|---:|---:|---:|---:|\n'
for n in "${COUNTS[@]}"; do
	python3 - "$OXINETD" "$WORK" "$n" "$REPS" "${SIZE_BASE:-12000}" "$LAYOUT" <<'EOF'
import os, signal, subprocess, sys, time

oxinetd, work, n, reps, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
layout = sys.argv[6]
conf = os.path.join(work, "size.toml")
included = os.path.join(work, "size.d")
env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

def service(i, changed):
    args = '["changed"]' if changed else "[]"
    return (
        f'[service.s{i}]\ntype = "UNLISTED"\nsocket_type = "stream"\nwait = false\n'
        f'user = "root"\nserver = "/bin/true"\nserver_args = {args}\n'
        f'port = {base + i}\nbind = "127.0.0.1"\n'
    )

def replace(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)

def write(changed_port_of_first):
    defaults = "[defaults]\nlog_on_success = []\nlog_on_failure = []\n"
    if layout == "includedir":
        if changed_port_of_first:
            replace(os.path.join(included, "s0.toml"), service(0, True))
            return
        os.makedirs(included, exist_ok=True)
        for i in range(n):
            replace(os.path.join(included, f"s{i}.toml"), service(i, False))
        replace(conf, f'includedir = "{included}"\n' + defaults)
        return
    parts = [defaults] + [service(i, i == 0 and changed_port_of_first) for i in range(n)]
    replace(conf, "\n".join(parts))

def median(values):
    values = sorted(values)
    return values[len(values) // 2]

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def wait_line(log, pattern, start, timeout=60):
    """Waits for `pattern` in `log` after offset `start`; returns the new offset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log) as f:
            f.seek(start)
            text = f.read()
        at = text.find(pattern)
        if at >= 0:
            return start + at + len(pattern)
        time.sleep(0.0005)
    raise SystemExit(f"no {pattern!r} in {log} within {timeout} s")

write(False)
check, ready, sizes, reload = [], [], [], []
for _ in range(reps):
    t0 = time.monotonic()
    out = subprocess.run([oxinetd, "--check", "-f", conf], env=env, capture_output=True, text=True)
    check.append((time.monotonic() - t0) * 1000)
    if out.returncode != 0:
        raise SystemExit(f"--check failed: {out.stderr[:500]}")
for _ in range(reps):
    write(False)
    log = os.path.join(work, "ox.log")
    with open(log, "w") as logf:
        t0 = time.monotonic()
        daemon = subprocess.Popen([oxinetd, "-f", conf], env=env, stderr=logf)
    try:
        offset = wait_line(log, "ready: ", 0)
        ready.append((time.monotonic() - t0) * 1000)
        time.sleep(0.2)
        sizes.append(rss(daemon.pid))
        write(True)
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGHUP)
        wait_line(log, "reload: done", offset)
        reload.append((time.monotonic() - t0) * 1000)
    finally:
        daemon.terminate()
        daemon.wait()
print(f"| {n} | {median(check):.1f} | {median(ready):.1f} | {median(sizes)} | {median(reload):.1f} |")
EOF
done

# benches/report.awk: turns compare.sh's raw results into the markdown table.
# Input files, in order: results.tsv (one line per load run), load.tsv (1,000-service
# figures), notes.txt (free text). Variables: stamp machine rev runs duration short base
# oneline loads sched.
# Every figure is the median over runs; failures and UDP counts are summed over runs.
# Plain POSIX awk (mawk): no asort, no gensub.

function median(list,    v, n, i, j, t) {
	n = split(list, v, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++) {
		t = v[i] + 0
		for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]
		v[j + 1] = t
	}
	if (n % 2) return v[(n + 1) / 2] + 0
	return (v[n / 2] + v[n / 2 + 1]) / 2
}
function add(key, val) { if (val != "" && val != "-") L[key] = (key in L) ? L[key] " " val : val }
function med(s, p, f) { return ((s SUBSEP p SUBSEP f) in L) ? median(L[s, p, f]) : "" }
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
function fmt(x, d) { return x == "" ? "-" : sprintf("%." d "f", x) }
function has(s, p) { return ((s SUBSEP p) in SEEN) }
function failstr(s, p,    out, k) {
	out = ""
	for (k in FAILS) {
		split(k, kk, SUBSEP)
		if (kk[1] == s && kk[2] == p) out = out (out == "" ? "" : ", ") kk[3] "=" FAILS[k]
	}
	return out == "" ? "0" : out
}
function verdict(ok) { return ok ? "met" : "**not met**" }

FILENAME == ARGV[1] {
	s = $1; p = $2
	SEEN[s, p] = 1
	add(s SUBSEP p SUBSEP "cps", $4); add(s SUBSEP p SUBSEP "p50", $5); add(s SUBSEP p SUBSEP "p99", $6)
	add(s SUBSEP p SUBSEP "max", $15)
	add(s SUBSEP p SUBSEP "dcpu", $8); add(s SUBSEP p SUBSEP "ccpu", $9); add(s SUBSEP p SUBSEP "rss", $10)
	if ($7 != "-") {
		n = split($7, f, ",")
		for (i = 1; i <= n; i++) { split(f[i], kv, "="); FAILS[s, p, kv[1]] += kv[2] }
	}
	if ($11 != "") { SENT[s, p] += $11; ANS[s, p] += $12; LOST[s, p] += $13 }
	next
}
FILENAME == ARGV[2] { add("load" SUBSEP $2 SUBSEP $1, $3); next }
FILENAME == ARGV[3] { NOTE[++nnotes] = $0; next }

END {
	print "# oxinetd side-by-side benchmark"
	print ""
	print "- run: " stamp " (UTC), oxinetd `" rev "`"
	print "- machine: " machine
	if (loads != "") print "- load average (1, 5, 15 min) during the run: " loads
	if (sched != "") print "- scheduler: " sched
	print "- method: `benches/compare.sh" (short ? " --short" : "") "`: median of " runs " run(s) of " duration " s per workload, peers taking turns within each run; daemons pinned to CPU 0, the load generator (`benches/loadgen`) to CPU 1; every exec'd service runs the same `benches/oneline.c` (" oneline ")."
	print "- `×ox` = the peer's figure / oxinetd's figure in the same run (conns/s: higher is better; latency, CPU and RSS: lower is better). Latency is connect to EOF (max: median over runs of each run's worst). Daemon CPU is utime+stime of the daemon process per 10,000 connections; children CPU is its reaped children's cutime+cstime, apart. RSS is the daemon's VmRSS after the runs."
	if (short) print "- **short mode: one 1-second run per workload, to prove the harness works; the figures are not meaningful.**"
	npeers = split("oxinetd oxinetd-base floor floor-setsid xinetd inetd tcpserver socat proxyd", PEERS, " ")

	nsec = split("exec c1|exec c8|exec c64|echo tcp c8|redirect c8", SECS, "|")
	for (si = 1; si <= nsec; si++) {
		s = SECS[si]
		print ""
		if (s ~ /^exec/) print "## " s ": exec'd one-line server, concurrency " substr(s, 7)
		else if (s ~ /^redirect/) {
			if (!has(s, "oxinetd")) continue
			print "## " s ": short exchanges through each relay (`redirect`; proxyd = systemd-socket-proxyd) from an oxinetd internal daytime (connect, read to EOF), concurrency 8"
		}
		else print "## " s ": internal stream echo (write 5 bytes, shut down, read to EOF), concurrency 8"
		print ""
		print "| peer | conns/s | ×ox | p50 µs | ×ox | p99 µs | ×ox | max µs | daemon CPU s/10k | ×ox | children CPU s/10k | RSS KiB | ×ox | failures |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
		for (pi = 1; pi <= npeers; pi++) {
			p = PEERS[pi]
			if (!has(s, p)) continue
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p,
				fmt(med(s, p, "cps"), 0), ratio(med(s, p, "cps"), med(s, "oxinetd", "cps")),
				fmt(med(s, p, "p50"), 0), ratio(med(s, p, "p50"), med(s, "oxinetd", "p50")),
				fmt(med(s, p, "p99"), 0), ratio(med(s, p, "p99"), med(s, "oxinetd", "p99")),
				fmt(med(s, p, "max"), 0),
				fmt(med(s, p, "dcpu"), 3), ratio(med(s, p, "dcpu"), med(s, "oxinetd", "dcpu")),
				fmt(med(s, p, "ccpu"), 3),
				fmt(med(s, p, "rss"), 0), ratio(med(s, p, "rss"), med(s, "oxinetd", "rss")),
				failstr(s, p)
		}
	}

	s = "echo udp c8"
	print ""
	print "## " s ": internal datagram echo on [::1], 8 requests in flight (a reply later than 50 ms counts as lost)"
	print ""
	print "8 requests in flight from one load-generator thread: each answer sends the next request, so answers/s is 8 / round trip; compare daemon CPU and losses too."
	print ""
	print "| peer | answered/s | ×ox | p50 µs | ×ox | p99 µs | ×ox | sent | answered | lost | lost % | daemon CPU s/10k | ×ox | RSS KiB | failures |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for (pi = 1; pi <= npeers; pi++) {
		p = PEERS[pi]
		if (!has(s, p)) continue
		printf "| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %s | %s | %s | %s | %s |\n", p,
			fmt(med(s, p, "cps"), 0), ratio(med(s, p, "cps"), med(s, "oxinetd", "cps")),
			fmt(med(s, p, "p50"), 0), ratio(med(s, p, "p50"), med(s, "oxinetd", "p50")),
			fmt(med(s, p, "p99"), 0), ratio(med(s, p, "p99"), med(s, "oxinetd", "p99")),
			SENT[s, p], ANS[s, p], LOST[s, p], SENT[s, p] ? sprintf("%.3f", 100 * LOST[s, p] / SENT[s, p]) : "-",
			fmt(med(s, p, "dcpu"), 3), ratio(med(s, p, "dcpu"), med(s, "oxinetd", "dcpu")),
			fmt(med(s, p, "rss"), 0), failstr(s, p)
	}

	if (med("load", "oxinetd", "redirect_1_mibs") != "") {
		print ""
		print "## redirect throughput: 1 and 16 streams through each relay to a socat sink"
		print ""
		print "CPU is the relay's own plus its reaped children's (socat and xinetd fork one per connection), per GiB carried."
		print ""
		print "| peer | 1 stream MiB/s | ×ox | 16 streams MiB/s | ×ox | CPU s/GiB, 1 stream | ×ox | CPU s/GiB, 16 streams | ×ox |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		nr = split("oxinetd proxyd socat xinetd", RPEERS, " ")
		for (pi = 1; pi <= nr; pi++) {
			p = RPEERS[pi]
			if (med("load", p, "redirect_1_mibs") == "") continue
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p,
				fmt(med("load", p, "redirect_1_mibs"), 0), ratio(med("load", p, "redirect_1_mibs"), med("load", "oxinetd", "redirect_1_mibs")),
				fmt(med("load", p, "redirect_16_mibs"), 0), ratio(med("load", p, "redirect_16_mibs"), med("load", "oxinetd", "redirect_16_mibs")),
				fmt(med("load", p, "redirect_1_cpu"), 3), ratio(med("load", p, "redirect_1_cpu"), med("load", "oxinetd", "redirect_1_cpu")),
				fmt(med("load", p, "redirect_16_cpu"), 3), ratio(med("load", p, "redirect_16_cpu"), med("load", "oxinetd", "redirect_16_cpu"))
		}
	}

	s = "exec c8, 1,000 services"
	print ""
	print "## 1,000 services (exec'd server on ports " base + 1000 "-" base + 1999 ")"
	print ""
	print "| figure | oxinetd | xinetd | ×ox |"
	print "|---|---:|---:|---:|"
	printf "| `--check` time, ms | %s | (none) | - |\n", fmt(med("load", "oxinetd", "check_ms"), 1)
	printf "| start to ready, ms (own readiness line) | %s | %s | %s |\n", fmt(med("load", "oxinetd", "ready_ms"), 1),
		fmt(med("load", "xinetd", "ready_ms"), 1), ratio(med("load", "xinetd", "ready_ms"), med("load", "oxinetd", "ready_ms"))
	printf "| RSS after ready, KiB | %s | %s | %s |\n", fmt(med("load", "oxinetd", "rss_kb"), 0),
		fmt(med("load", "xinetd", "rss_kb"), 0), ratio(med("load", "xinetd", "rss_kb"), med("load", "oxinetd", "rss_kb"))
	printf "| exec c8 on one of them, conns/s | %s | %s | %s |\n", fmt(med(s, "oxinetd-1k", "cps"), 0),
		fmt(med(s, "xinetd-1k", "cps"), 0), ratio(med(s, "xinetd-1k", "cps"), med(s, "oxinetd-1k", "cps"))
	printf "| exec c8 on one of them, p99 µs | %s | %s | %s |\n", fmt(med(s, "oxinetd-1k", "p99"), 0),
		fmt(med(s, "xinetd-1k", "p99"), 0), ratio(med(s, "xinetd-1k", "p99"), med(s, "oxinetd-1k", "p99"))
	printf "| exec c8 on one of them, daemon CPU s/10k | %s | %s | %s |\n", fmt(med(s, "oxinetd-1k", "dcpu"), 3),
		fmt(med(s, "xinetd-1k", "dcpu"), 3), ratio(med(s, "xinetd-1k", "dcpu"), med(s, "oxinetd-1k", "dcpu"))
	printf "| exec c8 on one of them, failures | %s | %s | |\n", failstr(s, "oxinetd-1k"), failstr(s, "xinetd-1k")

	print ""
	print "## Targets of issue 4 (this run)"
	print ""
	if (!has("exec c8", "oxinetd")) {
		print "oxinetd did not run: no targets evaluated."
	} else {
		print "| target | figure | verdict |"
		print "|---|---|---|"
		for (ci = 1; ci <= 3; ci++) {
			c = (ci == 1) ? "exec c1" : (ci == 2) ? "exec c8" : "exec c64"
			r = ratio(med(c, "oxinetd", "cps"), med(c, "floor", "cps"))
			if (r != "-") printf "| %s: ≥ 0.9× floor conns/s | %s× | %s |\n", c, r, verdict(r + 0 >= 0.9)
			r = ratio(med(c, "oxinetd", "cps"), med(c, "floor-setsid", "cps"))
			if (r != "-") printf "| %s: (not a target) against the floor with setsid | %s× | - |\n", c, r
		}
		for (ci = 2; ci <= 3; ci++) {
			c = (ci == 2) ? "exec c8" : "exec c64"
			r = ratio(med(c, "oxinetd", "cps"), med(c, "xinetd", "cps"))
			if (r != "-") printf "| %s: ≥ 3× xinetd conns/s | %s× | %s |\n", c, r, verdict(r + 0 >= 3)
			r = ratio(med(c, "oxinetd", "cps"), med(c, "tcpserver", "cps"))
			if (r != "-") printf "| %s: ≥ 1.8× tcpserver conns/s | %s× | %s |\n", c, r, verdict(r + 0 >= 1.8)
		}
		for (ci = 1; ci <= 3; ci++) {
			c = (ci == 1) ? "exec c1" : (ci == 2) ? "exec c8" : "exec c64"
			worse = ""
			for (pi = 2; pi <= npeers; pi++) {
				p = PEERS[pi]
				if (has(c, p) && p !~ /^floor/ && med(c, p, "p99") <= med(c, "oxinetd", "p99")) worse = worse " " p
			}
			printf "| %s: p99 below every peer (floor aside) | oxinetd %s µs%s | %s |\n", c, fmt(med(c, "oxinetd", "p99"), 0),
				worse == "" ? "" : "; lower:" worse, verdict(worse == "")
		}
		r = ratio(med("exec c8", "oxinetd", "dcpu"), med("exec c8", "xinetd", "dcpu"))
		if (r != "-") printf "| exec c8: daemon CPU ≤ 1/3 of xinetd's | %s× xinetd's | %s |\n", r, verdict(r + 0 <= 0.3334)
		r = ratio(med("exec c8", "oxinetd", "rss"), med("exec c8", "xinetd", "rss"))
		if (r != "-") printf "| RSS no larger than xinetd's | %s× xinetd's | %s |\n", r, verdict(r + 0 <= 1)
		r = ratio(med("exec c8, 1,000 services", "oxinetd-1k", "cps"), med("exec c8", "oxinetd", "cps"))
		if (r != "-") printf "| spawn cost flat with 1,000 services loaded | %s× the conns/s of 2 services | %s |\n", r, verdict(r + 0 >= 0.9)
		r = ratio(med("echo tcp c8", "oxinetd", "cps"), med("echo tcp c8", "xinetd", "cps"))
		if (r != "-") printf "| internal stream echo ≥ 5× xinetd | %s× | %s |\n", r, verdict(r + 0 >= 5)
		s = "echo udp c8"
		if (has(s, "oxinetd")) {
			best = ""
			for (pi = 2; pi <= npeers; pi++) {
				p = PEERS[pi]
				if (has(s, p) && med(s, p, "cps") * 1.05 >= med(s, "oxinetd", "cps")) best = best " " p
			}
			printf "| internal UDP echo answers every request | lost %d of %d | %s |\n", LOST[s, "oxinetd"], SENT[s, "oxinetd"], verdict(LOST[s, "oxinetd"] == 0 && SENT[s, "oxinetd"] > 0)
			printf "| internal UDP echo beats every peer (answered/s) | %s/s%s | %s |\n", fmt(med(s, "oxinetd", "cps"), 0),
				best == "" ? "" : "; within 5% or faster:" best, verdict(best == "")
		}
		m = med("load", "oxinetd", "check_ms")
		if (m != "") printf "| `--check` of 1,000 services < 100 ms | %s ms | %s |\n", fmt(m, 1), verdict(m + 0 < 100)
		m = med("load", "oxinetd", "ready_ms")
		if (m != "") printf "| start to ready with 1,000 services < 100 ms | %s ms | %s |\n", fmt(m, 1), verdict(m + 0 < 100)
		for (st = 1; st <= 16; st += 15) {
			m = med("load", "oxinetd", "redirect_" st "_mibs"); o = med("load", "proxyd", "redirect_" st "_mibs")
			if (m != "" && o != "") printf "| redirect, %d stream(s): ≥ systemd-socket-proxyd's MiB/s | %s against %s MiB/s (%s×) | %s |\n", st, fmt(m, 0), fmt(o, 0), ratio(m, o), verdict(m + 0 >= o + 0)
			m = med("load", "oxinetd", "redirect_" st "_cpu"); o = med("load", "proxyd", "redirect_" st "_cpu")
			if (m != "" && o != "") printf "| redirect, %d stream(s): CPU per GiB ≤ systemd-socket-proxyd's | %s against %s s/GiB (%s×) | %s |\n", st, fmt(m, 3), fmt(o, 3), ratio(m, o), verdict(m + 0 <= o + 0)
		}
		r = ratio(med("redirect c8", "oxinetd", "cps"), med("redirect c8", "proxyd", "cps"))
		if (r != "-") printf "| redirect c8 short exchanges: (no target) against systemd-socket-proxyd | %s× its conns/s (%s against %s) | - |\n", r, fmt(med("redirect c8", "oxinetd", "cps"), 0), fmt(med("redirect c8", "proxyd", "cps"), 0)
	}

	if (nnotes) {
		print ""
		print "## Notes from the run"
		print ""
		for (i = 1; i <= nnotes; i++) print "- " NOTE[i]
	}
}

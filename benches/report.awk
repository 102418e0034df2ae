# benches/report.awk: turns compare.sh's raw results into the markdown table.
# Input files, in order: results.tsv (one line per load run; column 17, tftp only, the
# spawns of in.tftpd in the run), load.tsv (`figure peer value`: 1,000 and 10,000
# services, redirect throughput), held.tsv (relay-memory.sh's raw lines: relays and
# echo sessions held), notes.txt (free text). Variables: stamp machine rev runs duration
# short base oneline loads sched phases elapsed tenk tftp_rate.
# Every figure is the median over runs; failures, UDP counts and spawns are summed over
# runs; the worst connection against p99 is the worst run's ratio.
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
	if (NF >= 17 && $17 != "-" && $17 != "") SPAWNS[s, p] += $17
	if ($6 + 0 > 0 && $15 != "" && (!((s, p) in WORSTR) || $15 / $6 > WORSTR[s, p])) WORSTR[s, p] = $15 / $6
	next
}
FILENAME == ARGV[2] { add("load" SUBSEP $2 SUBSEP $1, $3); next }
FILENAME == ARGV[3] {
	# kind count rss_before rss_after kib_per p50 p99 exchanges failures fds
	HK[++nheld] = $1; HN[nheld] = $2; HB[nheld] = $3; HA[nheld] = $4; HPER[nheld] = $5
	HP50[nheld] = $6; HP99[nheld] = $7; HX[nheld] = $8; HF[nheld] = $9; HFD[nheld] = $10
	next
}
FILENAME == ARGV[4] { NOTE[++nnotes] = $0; next }

END {
	print "# oxinetd side-by-side benchmark"
	print ""
	print "- run: " stamp " (UTC), oxinetd `" rev "`"
	print "- machine: " machine
	if (loads != "") print "- load average (1, 5, 15 min) during the run: " loads
	if (sched != "") print "- scheduler: " sched
	print "- method: `benches/compare.sh" (short ? " --short" : "") (phases != "" && phases != "exec,udp,tftp,size,relays,redirect" ? " --only " phases : "") "` (" elapsed "): median of " runs " run(s) of " duration " s per workload, peers taking turns within each run; daemons pinned to CPU 0, the load generator (`benches/loadgen`) to CPU 1; every exec'd service runs the same `benches/oneline.c` (" oneline ")."
	print "- `×ox` = the peer's figure / oxinetd's figure in the same run (conns/s: higher is better; latency, CPU and RSS: lower is better). Latency is connect to EOF (max: median over runs of each run's worst). Daemon CPU is utime+stime of the daemon process per 10,000 connections; children CPU is its reaped children's cutime+cstime, apart. RSS is the daemon's VmRSS after the runs."
	if (short) print "- **short mode: one 1-second run per workload, to prove the harness works; the figures are not meaningful.**"
	npeers = split("oxinetd oxinetd-base floor floor-setsid floor-epoll xinetd inetd tcpserver socat proxyd tftpd-alone eats-first", PEERS, " ")

	nsec = split("exec c1|exec c8|exec c64|echo tcp c8|redirect c8", SECS, "|")
	for (si = 1; si <= nsec; si++) {
		s = SECS[si]
		if (!has(s, "oxinetd")) continue
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
	if (has(s, "oxinetd")) {
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
	}

	tftp_tables()

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
	if (med("load", "oxinetd", "check_ms") != "" || has(s, "oxinetd-1k")) {
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
	}
	size_tables()
	held_tables()

	print ""
	print "## Targets of issue 13 (this run)"
	print ""
	print "Each row: oxinetd's figure, the figure it is held against beside it, and the verdict. Rows marked *issue 4* are the earlier targets still tracked."
	print ""
	print "| target | oxinetd | beside | verdict |"
	print "|---|---|---|---|"
	nv = 0
	# 1. The floor at every concurrency.
	for (ci = 1; ci <= 3; ci++) {
		c = (ci == 1) ? "exec c1" : (ci == 2) ? "exec c8" : "exec c64"
		if (!has(c, "oxinetd") || !has(c, "floor")) continue
		o = med(c, "oxinetd", "cps"); fl = med(c, "floor", "cps"); r = ratio(o, fl)
		row("1. " c ": conns/s ≥ 0.95× the floor's", fmt(o, 0) " (" r "×)", "floor " fmt(fl, 0), r + 0 >= 0.95)
		o = med(c, "oxinetd", "dcpu"); fl = med(c, "floor", "dcpu"); r = ratio(o, fl)
		fe = has(c, "floor-epoll") ? ", floor-epoll " fmt(med(c, "floor-epoll", "dcpu"), 3) " (oxinetd " ratio(o, med(c, "floor-epoll", "dcpu")) "× it)" : ""
		row("1. " c ": daemon CPU per connection ≤ 1.2× the floor's", fmt(o, 3) " s/10k (" r "×)", "floor " fmt(fl, 3) " s/10k" fe, r != "-" && r + 0 <= 1.2)
	}
	# 2. No stalls.
	for (ci = 1; ci <= 3; ci++) {
		c = (ci == 1) ? "exec c1" : (ci == 2) ? "exec c8" : "exec c64"
		if (!has(c, "oxinetd")) continue
		w = ((c, "oxinetd") in WORSTR) ? WORSTR[c, "oxinetd"] : ""
		row("2. " c ": worst connection ≤ 10× its run's p99", (w == "" ? "-" : sprintf("%.1f×", w)) " (max " fmt(med(c, "oxinetd", "max"), 0) " µs, p99 " fmt(med(c, "oxinetd", "p99"), 0) ")",
			"floor " (((c, "floor") in WORSTR) ? sprintf("%.1f×", WORSTR[c, "floor"]) : "-") ", floor-setsid " (((c, "floor-setsid") in WORSTR) ? sprintf("%.1f×", WORSTR[c, "floor-setsid"]) : "-"),
			w != "" && w <= 10)
		if (!has(c, "floor")) continue
		o = med(c, "oxinetd", "p99"); fl = med(c, "floor", "p99"); r = ratio(o, fl)
		row("2. " c ": p99 ≤ 1.2× the floor's", fmt(o, 0) " µs (" r "×)", "floor " fmt(fl, 0) " µs", r != "-" && r + 0 <= 1.2)
	}
	# 3. Size costs nothing.
	o = med("load", "oxinetd", "rss_kb"); x = med("load", "xinetd", "rss_kb")
	if (o != "") row("3. 1,000 services: RSS ≤ xinetd's", fmt(o, 0) " KiB", "xinetd " fmt(x, 0) " KiB", x != "" && o + 0 <= x + 0)
	m = med("load", "oxinetd-10k", "ready_ms")
	if (m != "") row("3. 10,000 services: start to ready < 200 ms", fmt(m, 1) " ms", "1,000: " fmt(med("load", "oxinetd", "ready_ms"), 1) " ms", m + 0 < 200)
	m = med("load", "oxinetd-10k", "check_ms")
	if (m != "") row("3. 10,000 services: `--check` < 150 ms", fmt(m, 1) " ms", "1,000: " fmt(med("load", "oxinetd", "check_ms"), 1) " ms", m + 0 < 150)
	m = med("load", "oxinetd-10k", "rss_kb")
	if (m != "") row("3. 10,000 services: RSS < 25 MB (25,000 KiB)", fmt(m, 0) " KiB", "1,000: " fmt(med("load", "oxinetd", "rss_kb"), 0) " KiB", m + 0 < 25000)
	s = "exec c8, 10,000 services"
	if (has(s, "oxinetd-10k")) {
		o = med(s, "oxinetd-10k", "cps"); fl = med(s, "oxinetd", "cps"); r = ratio(o, fl)
		row("3. 10,000 services: exec c8 on one of them ≥ 0.95× with 2 services", fmt(o, 0) " conns/s (" r "×)", "2 services " fmt(fl, 0), r != "-" && r + 0 >= 0.95)
	}
	m = med("load", "oxinetd-10k", "reload_ms")
	if (m != "") row("3. 10,000 services: a reload that changes one service < 20 ms", fmt(m, 1) " ms", "-", m + 0 < 20)
	# 4. Many connections held at once.
	top_relay = 0; top_echo = 0
	for (i = 1; i <= nheld; i++) {
		if (HK[i] == "relay") {
			row("4. " fmtn(HN[i]) " relays held: ≤ 2 KiB per idle relay", HPER[i] " KiB", "30 KiB before issue 13", HPER[i] + 0 <= 2)
			if (top_relay == 0 || HN[i] + 0 > HN[top_relay] + 0) top_relay = i
		} else if (HK[i] == "echo" && (top_echo == 0 || HN[i] + 0 > HN[top_echo] + 0)) top_echo = i
	}
	if (top_relay) {
		i = top_relay
		row("4. " fmtn(HN[i]) " relays held (≥ 9,000): new connection p99 < 2 ms", HP99[i] " µs (p50 " HP50[i] ", " HX[i] " exchanges, failures " failh(i) ")",
			"-", HN[i] + 0 >= 9000 && HP99[i] + 0 < 2000 && failh(i) == "0")
	}
	if (top_echo) {
		i = top_echo
		row("4. " fmtn(HN[i]) " echo sessions held: KiB each, no regression (≤ 0.16 + 25%)", HPER[i] " KiB", "0.16 KiB at 18,000 (2026-12-07)", HPER[i] + 0 <= 0.2)
		row("4. " fmtn(HN[i]) " echo sessions held: new connection p99, no regression (≤ 0.45 ms + 25%)", HP99[i] " µs (p50 " HP50[i] ", failures " failh(i) ")",
			"450 µs at 18,000 (2026-12-07)", HP99[i] + 0 <= 562 && failh(i) == "0")
	}
	# 5. redirect throughput.
	for (st = 1; st <= 16; st += 15) {
		m = med("load", "oxinetd", "redirect_" st "_mibs"); o = med("load", "proxyd", "redirect_" st "_mibs")
		if (m != "" && o != "") row("5. redirect, " st " stream(s): MiB/s ≥ systemd-socket-proxyd's", fmt(m, 0) " MiB/s (" ratio(m, o) "×)", "proxyd " fmt(o, 0) " MiB/s", m + 0 >= o + 0)
		m = med("load", "oxinetd", "redirect_" st "_cpu"); o = med("load", "proxyd", "redirect_" st "_cpu")
		if (m != "" && o != "") row("5. redirect, " st " stream(s): CPU per GiB ≤ systemd-socket-proxyd's", fmt(m, 3) " s/GiB (" ratio(m, o) "×)", "proxyd " fmt(o, 3) " s/GiB", m + 0 <= o + 0)
	}
	r = ratio(med("redirect c8", "oxinetd", "cps"), med("redirect c8", "proxyd", "cps"))
	if (r != "-") row("5. redirect c8 short exchanges (no target)", fmt(med("redirect c8", "oxinetd", "cps"), 0) " conns/s (" r "×)", "proxyd " fmt(med("redirect c8", "proxyd", "cps"), 0), -1)
	# 6. UDP.
	s = "echo udp c8"
	if (has(s, "oxinetd")) {
		best = ""; bp = ""; lost = ""
		for (pi = 2; pi <= npeers; pi++) {
			p = PEERS[pi]
			if (!has(s, p)) continue
			if (best == "" || med(s, p, "cps") + 0 > best + 0) { best = med(s, p, "cps"); bp = p }
			lost = lost (lost == "" ? "" : ", ") p " " LOST[s, p] " of " SENT[s, p]
		}
		o = med(s, "oxinetd", "cps")
		row("6. UDP echo: answers/s ≥ every peer's", fmt(o, 0) "/s", (bp == "" ? "-" : "best: " bp " " fmt(best, 0) "/s (" ratio(o, best) "×)"), bp != "" && o + 0 >= best + 0)
		row("6. UDP echo: 0 lost", LOST[s, "oxinetd"] " of " SENT[s, "oxinetd"], lost == "" ? "-" : lost, LOST[s, "oxinetd"] == 0 && SENT[s, "oxinetd"] > 0)
	}
	for (ti = 1; ti <= 2; ti++) {
		s = (ti == 1) ? "tftp 2000/s" : "tftp respawn"
		if (!has(s, "oxinetd")) continue
		b = ""
		for (pi = 2; pi <= npeers; pi++) {
			p = PEERS[pi]
			if (has(s, p)) b = b (b == "" ? "" : "; ") p " " tftpfig(s, p)
		}
		rate_ok = (ti == 2) || med(s, "oxinetd", "cps") + 0 >= 0.95 * tftp_rate
		row("6. " (ti == 1 ? "tftp at " fmtn(tftp_rate) " requests/s: 0 lost" : "tftp respawn (-t 1, bursts at " fmtn(tftp_rate) "/s across its exit): 0 lost"),
			tftpfig(s, "oxinetd") (rate_ok ? "" : ", rate not reached"), b == "" ? "-" : b,
			rate_ok && SENT[s, "oxinetd"] > 0 && failstr(s, "oxinetd") == "0")
	}
	s = "tftp respawn"
	if (has(s, "eats-first"))
		row("6. (control, not a target) tftp respawn through a server that drops the first datagram: lost = spawns > 0", "-", tftpfig(s, "eats-first"),
			LOST[s, "eats-first"] > 0 && LOST[s, "eats-first"] == SPAWNS[s, "eats-first"])
	# Issue 4's targets that still matter.
	if (has("exec c8", "oxinetd")) {
		for (ci = 2; ci <= 3; ci++) {
			c = (ci == 2) ? "exec c8" : "exec c64"
			r = ratio(med(c, "oxinetd", "cps"), med(c, "xinetd", "cps"))
			if (r != "-") row("*issue 4*: " c ": ≥ 3× xinetd's conns/s", r "×", "xinetd " fmt(med(c, "xinetd", "cps"), 0), r + 0 >= 3)
			r = ratio(med(c, "oxinetd", "cps"), med(c, "tcpserver", "cps"))
			if (r != "-") row("*issue 4*: " c ": ≥ 1.8× tcpserver's conns/s", r "×", "tcpserver " fmt(med(c, "tcpserver", "cps"), 0), r + 0 >= 1.8)
		}
		for (ci = 1; ci <= 3; ci++) {
			c = (ci == 1) ? "exec c1" : (ci == 2) ? "exec c8" : "exec c64"
			worse = ""
			for (pi = 2; pi <= npeers; pi++) {
				p = PEERS[pi]
				if (has(c, p) && p !~ /^floor/ && p != "oxinetd-base" && med(c, p, "p99") <= med(c, "oxinetd", "p99")) worse = worse " " p
			}
			row("*issue 4*: " c ": p99 below every peer (floor aside)", fmt(med(c, "oxinetd", "p99"), 0) " µs", worse == "" ? "-" : "lower:" worse, worse == "")
		}
		r = ratio(med("exec c8", "oxinetd", "dcpu"), med("exec c8", "xinetd", "dcpu"))
		if (r != "-") row("*issue 4*: exec c8: daemon CPU ≤ 1/3 of xinetd's", fmt(med("exec c8", "oxinetd", "dcpu"), 3) " s/10k (" r "×)", "xinetd " fmt(med("exec c8", "xinetd", "dcpu"), 3), r + 0 <= 0.3334)
		r = ratio(med("echo tcp c8", "oxinetd", "cps"), med("echo tcp c8", "xinetd", "cps"))
		if (r != "-") row("*issue 4*: internal stream echo ≥ 5× xinetd's", fmt(med("echo tcp c8", "oxinetd", "cps"), 0) " (" r "×)", "xinetd " fmt(med("echo tcp c8", "xinetd", "cps"), 0), r + 0 >= 5)
		r = ratio(med("exec c8, 1,000 services", "oxinetd-1k", "cps"), med("exec c8", "oxinetd", "cps"))
		if (r != "-") row("*issue 4*: exec c8 with 1,000 services ≥ 0.9× with 2", fmt(med("exec c8, 1,000 services", "oxinetd-1k", "cps"), 0) " (" r "×)", "2 services " fmt(med("exec c8", "oxinetd", "cps"), 0), r + 0 >= 0.9)
	}
	m = med("load", "oxinetd", "check_ms")
	if (m != "") row("*issue 4*: `--check` of 1,000 services < 100 ms", fmt(m, 1) " ms", "-", m + 0 < 100)
	m = med("load", "oxinetd", "ready_ms")
	if (m != "") row("*issue 4*: start to ready with 1,000 services < 100 ms", fmt(m, 1) " ms", "xinetd " fmt(med("load", "xinetd", "ready_ms"), 1) " ms", m + 0 < 100)
	if (nv == 0) print "| (no phase with a target ran) | - | - | - |"

	if (nnotes) {
		print ""
		print "## Notes from the run"
		print ""
		for (i = 1; i <= nnotes; i++) print "- " NOTE[i]
	}
}

function row(t, o, b, ok) {
	nv++
	printf "| %s | %s | %s | %s |\n", t, o, b, (ok == -1) ? "-" : verdict(ok)
}
# 9950 -> 9,950
function fmtn(n,    s) {
	s = sprintf("%d", n)
	while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
	return s
}
function failh(i) { return (HF[i] == "-" || HF[i] == "") ? "0" : HF[i] }
# "lost L of S (spawns N)" for a tftp section.
function tftpfig(s, p) {
	return "lost " LOST[s, p] " of " SENT[s, p] (((s, p) in SPAWNS) ? ", " SPAWNS[s, p] " spawns" : "")
}

function tftp_tables(    ti, s, pi, p) {
	for (ti = 1; ti <= 2; ti++) {
		s = (ti == 1) ? "tftp 2000/s" : "tftp respawn"
		if (!has(s, "oxinetd") && !has(s, "xinetd") && !has(s, "inetd")) continue
		print ""
		if (ti == 1) {
			print "## " s ": in.tftpd as a `wait = true` dgram service, " tftp_rate " read requests/s"
			print ""
			print "Open loop: each RRQ from a fresh client port, its one DATA block ACKed; no DATA within 1 s = lost (no retransmit). in.tftpd runs with `-t 60`, so it is spawned once and forks a child per request; `tftpd-alone` is in.tftpd standalone (`-L`), no superserver: what in.tftpd itself manages. Unlike the other phases nothing is pinned: in.tftpd's child per request makes ~150 system calls, and on one CPU in.tftpd alone serves ~1,200 requests/s here. Latency is RRQ to DATA. Spawns: how many times the daemon started in.tftpd (its log)."
		} else {
			print "## " s ": in.tftpd with `-t 1`, bursts of 200 requests at " tftp_rate "/s, gaps of 0.9-1.3 s"
			print ""
			print "in.tftpd leaves after 1 s without a request: most bursts start after it left (or as it leaves), and the first request of each must wait in the socket for the daemon to start it again. Spawns should be close to the number of gaps longer than 1 s. `eats-first` is the control: oxinetd running a server that reads and drops one datagram before it becomes in.tftpd, so each of its spawns must show as one lost request (if it shows none, the workload cannot see a loss)."
		}
		print ""
		print "| peer | sent/s | sent | answered | lost | lost % | p50 µs | p99 µs | max µs | spawns | daemon CPU s/10k | failures |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
		for (pi = 1; pi <= npeers; pi++) {
			p = PEERS[pi]
			if (!has(s, p)) continue
			printf "| %s | %s | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", p,
				fmt(med(s, p, "cps"), 0), SENT[s, p], ANS[s, p], LOST[s, p],
				SENT[s, p] ? sprintf("%.3f", 100 * LOST[s, p] / SENT[s, p]) : "-",
				fmt(med(s, p, "p50"), 0), fmt(med(s, p, "p99"), 0), fmt(med(s, p, "max"), 0),
				((s, p) in SPAWNS) ? SPAWNS[s, p] : "-", fmt(med(s, p, "dcpu"), 3), failstr(s, p)
		}
	}
}

function size_tables(    s) {
	s = "exec c8, 10,000 services"
	if (med("load", "oxinetd-10k", "check_ms") == "" && !has(s, "oxinetd-10k")) return
	print ""
	print "## 10,000 services (oxinetd; exec'd server on ports " tenk "-" tenk + 9999 ")"
	print ""
	print "`--check`, start to ready, RSS and the reload are `benches/size.sh` (services running /bin/true; the reload changes one service's `server_args`: SIGHUP to `reload: done`); exec c8 is the oneline server on the first of the 10,000 ports, taking turns with the 2-service daemon of the exec workloads (its figure here is measured beside it, not taken from the exec section)."
	print ""
	print "| figure | oxinetd | target |"
	print "|---|---:|---|"
	printf "| `--check` time, ms | %s | < 150 |\n", fmt(med("load", "oxinetd-10k", "check_ms"), 1)
	printf "| start to ready, ms | %s | < 200 |\n", fmt(med("load", "oxinetd-10k", "ready_ms"), 1)
	printf "| RSS after ready, KiB | %s | < 25,000 |\n", fmt(med("load", "oxinetd-10k", "rss_kb"), 0)
	printf "| one-service reload, ms | %s | < 20 |\n", fmt(med("load", "oxinetd-10k", "reload_ms"), 1)
	printf "| exec c8 on one of them, conns/s | %s | ≥ 0.95× %s (2 services, taking turns with it) |\n", fmt(med(s, "oxinetd-10k", "cps"), 0), fmt(med(s, "oxinetd", "cps"), 0)
	printf "| exec c8 on one of them, p99 µs | %s | |\n", fmt(med(s, "oxinetd-10k", "p99"), 0)
	printf "| exec c8 on one of them, daemon CPU s/10k | %s | |\n", fmt(med(s, "oxinetd-10k", "dcpu"), 3)
	printf "| exec c8 on one of them, failures | %s | |\n", failstr(s, "oxinetd-10k")
}

function held_tables(    i) {
	if (!nheld) return
	print ""
	print "## Connections held at once: idle `redirect` relays and internal echo sessions"
	print ""
	print "`benches/relay-memory.sh`: the daemon (CPU 0) holds N connections, each having moved one line both ways; KiB per held = RSS growth / N. Then, with all still held, a new connection's latency over short exchanges at concurrency 1 (relay: through a second redirect service of the same daemon to an oxinetd daytime; echo: the same echo service); failures include held connections that no longer answered afterwards. The largest N is the most the hard fd limit allows (2 daemon fds per relay, 1 per echo session)."
	print ""
	print "| kind | held | daemon fds | RSS before KiB | RSS after KiB | KiB per held | new conn p50 µs | p99 µs | exchanges | failures |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for (i = 1; i <= nheld; i++)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", HK[i], fmtn(HN[i]), HFD[i], HB[i], HA[i], HPER[i], HP50[i], HP99[i], HX[i], failh(i)
}

#!/bin/sh
# Overhead of the agent on a busy HTTP server: nginx on loopback driven by
# wrk with keep-alive, requests per second without an agent, with the
# bare-probe floor (empty programs on the agent's tracepoints, attached
# the way the agent attaches its own, by bench/bench_floor, and for https
# on its TLS library uprobes, by bpftrace), with that floor again under
# the kernel's run-time statistics (kernel.bpf_stats_enabled, which the
# agent turns on only with capture.kernel_bpf_stats: two clock reads around
# every run of every BPF program), for plaintext with the copy floor (the
# socket calls' programs only find and copy the bytes each call moved and
# read the clock, the agent's way, and keep nothing: what any capture of
# the bytes costs; bench_floor --copy) and with qtap running, alternated in
# one run (so all see the same machine), ROUNDS times each;
# prints the medians, their ratios (with how far the noise alone could
# move them: the rounds resampled), the events the agent lost on the way
# (must be 0), and the agent's own cost per request (its programs' run
# time, from its bpf_program metrics, and its threads' CPU time).
#
#   make bench-overhead          plaintext HTTP/1.1 (from the build
#                                directory, as root)
#   make bench-tls-overhead      the same over TLS (SCHEME=https)
#   ROUNDS=5 DURATION=5 NGINX_WORKERS=auto SCHEME=https SERVER_ONLY=1 bench/overhead.sh
#   NONE_TRACED=1 TLS_ATTACH=process make bench-tls-overhead
#                                the TLS probes per allowed process, with
#                                nginx and wrk both left out by the filters:
#                                they then run their TLS calls without a
#                                probe (the floor still probes every process)
#   KERNEL_STATS=1 make bench-overhead
#                                one more column: qtap with
#                                capture.kernel_bpf_stats (the kernel's run
#                                statistics instead of the programs' own)
#
# Needs nginx, wrk and curl; for https the floor column needs bpftrace
# (left out without it).  Targets: plaintext, qtap keeps at least 90% of the no-agent
# figure; TLS, at least 90% of the floor (the uprobes' own cost, which no
# agent can avoid, is the floor's).
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
# A shared two-CPU machine moves single runs by 10-20%: many short rounds
# give steadier medians than a few long ones.
ROUNDS=${ROUNDS:-9}
DURATION=${DURATION:-2}
CONNECTIONS=${CONNECTIONS:-32}
SCHEME=${SCHEME:-http}
. "$top_srcdir/bench/lib.sh"

start_nginx || { echo "nginx did not start"; exit 1; }
# The agent traces every process, wrk too (twice the traced calls of a
# server host whose clients are elsewhere).  SERVER_ONLY=1 leaves wrk out
# by the filters (its calls still run the programs, which skip them);
# NONE_TRACED=1 leaves both out (an allow-list that names neither): what
# the processes a host's filters leave out pay.
if [ "${NONE_TRACED:-0}" = 1 ]; then
	CLIENT_FILTER='filters = { groups = [ "qpoint" ]; custom = ( { exe = "/no-such-program"; strategy = "suffix"; only = true; } ); };'
elif [ "${SERVER_ONLY:-0}" = 1 ]; then
	CLIENT_FILTER='filters = { groups = [ "qpoint" ]; custom = ( { exe = "/wrk"; strategy = "suffix"; } ); };'
else
	CLIENT_FILTER=
fi
cat >"$TMP/qtap.conf" <<CONF
stacks = { default = { plugins = ( { type = "http_metrics"; } ); }; };
tap = { direction = "all"; ignore_loopback = false; http = { stack = "default"; };
  $CLIENT_FILTER };
CONF
{ cat "$TMP/qtap.conf"; echo 'capture = { kernel_bpf_stats = true; };'; } >"$TMP/qtap_kstats.conf"
KERNEL_STATS=${KERNEL_STATS:-0}
if [ "$SCHEME" = https ]; then
	URL="https://$SERVER_ADDR:$TLS_PORT/small"
else
	URL="http://$SERVER_ADDR:$HTTP_PORT/small"
fi

# The floor: what the agent attaches, with programs that do nothing: its
# tracepoints by bench_floor, its TLS library uprobes (https) by bpftrace.
FLOOR_TP=$top_builddir/bench/bench_floor
FLOOR_UPROBES=
if [ ! -x "$FLOOR_TP" ]; then
	echo "$FLOOR_TP not built: no floor column (make bench/bench_floor)"
	FLOOR_TP=
elif [ "$SCHEME" = https ] && ! command -v bpftrace >/dev/null 2>&1; then
	echo "bpftrace not found: no floor column (apt-get install bpftrace)"
	FLOOR_TP=
elif [ "$SCHEME" = https ]; then
	for lib in /usr/lib/*/libssl.so.3 /usr/lib/*/libgnutls.so.30; do
		[ -e "$lib" ] || continue
		case $lib in
		*libssl*) fns="SSL_read SSL_read_ex SSL_write SSL_write_ex SSL_do_handshake" ;;
		*) fns="gnutls_record_recv gnutls_record_send gnutls_handshake" ;;
		esac
		for fn in $fns; do
			FLOOR_UPROBES="${FLOOR_UPROBES:+$FLOOR_UPROBES, }uprobe:$lib:$fn, uretprobe:$lib:$fn"
		done
	done
fi

# busy: the machine's busy CPU time so far in clock ticks (user, nice,
# system, irq and softirq of /proc/stat; idle, iowait and the time the
# hypervisor took, steal, left out).
busy() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# rps: one wrk run; prints requests/s, the machine's busy CPU time per
# request in microseconds (server, client, agent and kernel together: less
# sensitive than requests/s to CPU time the hypervisor takes away) and the
# requests made.
rps() {
	b0=$(busy)
	wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$URL" 2>/dev/null >"$TMP/wrk.out"
	b1=$(busy)
	awk -v ticks=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" '
		/ requests in / { n = $1 }
		/^Requests\/sec:/ { r = $2 }
		END { if (n > 0) printf "%s %.2f %d\n", r, ticks * 1e6 / hz / n, n }' "$TMP/wrk.out"
}

rps >/dev/null # warm-up
: >"$TMP/base"
: >"$TMP/floor"
: >"$TMP/floor_stats"
: >"$TMP/copy"
: >"$TMP/agent"
: >"$TMP/agent_kstats"
: >"$TMP/cost"
lost_total=0
r=1
while [ $r -le "$ROUNDS" ]; do
	rps >>"$TMP/base"
	f=-
	fs=-
	if [ -n "$FLOOR_TP" ]; then
		floor_start
		bt=
		if [ -n "$FLOOR_UPROBES" ]; then
			bpftrace -e "$FLOOR_UPROBES { }" >"$TMP/bpftrace.out" 2>&1 &
			bt=$!
			wait_line "$TMP/bpftrace.out" '^Attaching'
		fi
		sleep 1
		rps >>"$TMP/floor"
		f=$(tail -n 1 "$TMP/floor" | cut -d' ' -f1)
		stats_on
		rps >>"$TMP/floor_stats"
		stats_off
		fs=$(tail -n 1 "$TMP/floor_stats" | cut -d' ' -f1)
		floor_stop
		if [ -n "$bt" ]; then
			kill -INT "$bt"
			wait "$bt" 2>/dev/null
		fi
	fi
	cf=
	if [ -n "$FLOOR_TP" ] && [ "$SCHEME" = http ]; then
		floor_start --copy
		sleep 1
		rps >>"$TMP/copy"
		floor_stop
		cf=", copy floor $(tail -n 1 "$TMP/copy" | cut -d' ' -f1) req/s"
	fi
	start_agent --config "$TMP/qtap.conf" --tls-attach "${TLS_ATTACH:-library}" ||
		{ echo "agent did not start"; exit 1; }
	c0=$(agent_cost)
	rps >>"$TMP/agent"
	c1=$(agent_cost)
	# per request: the programs' run time and the agent threads' CPU
	# time in microseconds; the programs' ns per run, runs per request
	printf '%s %s\n' "$c0" "$c1" | awk -v reqs="$(tail -n 1 "$TMP/agent" | cut -d' ' -f3)" \
		'{ runs = $4 - $1; secs = $5 - $2
		if (reqs > 0 && runs > 0) printf "%.2f %.2f %.0f %.2f\n", secs * 1e6 / reqs,
			($6 - $3) * 1e6 / reqs, secs * 1e9 / runs, runs / reqs }' >>"$TMP/cost"
	lost=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
	dropped=$(metric_sum /system/metrics 'qtap_system_queue_dropped_total{')
	gaps=$(metric /system/metrics qtap_system_sequence_gaps_total)
	stripped=$(metric /system/metrics qtap_system_payloads_dropped_total)
	lost_total=$((lost_total + ${lost:-0} + ${dropped:-0} + ${gaps:-0} + ${stripped:-0}))
	stop_agent
	ks=
	if [ "$KERNEL_STATS" = 1 ]; then
		start_agent --config "$TMP/qtap_kstats.conf" --tls-attach "${TLS_ATTACH:-library}" ||
			{ echo "agent did not start"; exit 1; }
		rps >>"$TMP/agent_kstats"
		stop_agent
		ks=", qtap with the kernel's statistics $(tail -n 1 "$TMP/agent_kstats" | cut -d' ' -f1) req/s"
	fi
	printf 'round %d: no agent %s req/s, floor %s req/s, floor with statistics %s req/s%s, qtap %s req/s%s (lost %s, dropped %s, gaps %s, payloads dropped %s)\n' \
		"$r" "$(tail -n 1 "$TMP/base" | cut -d' ' -f1)" "$f" "$fs" "$cf" \
		"$(tail -n 1 "$TMP/agent" | cut -d' ' -f1)" "$ks" \
		"${lost:-0}" "${dropped:-0}" "${gaps:-0}" "${stripped:-0}"
	r=$((r + 1))
done
stop_nginx

base=$(median <"$TMP/base")
agent=$(median <"$TMP/agent")
ratio=$(awk -v a="$agent" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
if [ -s "$TMP/floor" ]; then
	floor=$(median <"$TMP/floor")
	fratio=$(awk -v a="$agent" -v b="$floor" 'BEGIN { printf "%.3f", a / b }')
	floor_ratio=$(awk -v a="$floor" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
	floor_stats=$(median <"$TMP/floor_stats")
	fs_ratio=$(awk -v a="$floor_stats" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
	printf 'median of %d (%s): no agent %s req/s, floor %s req/s (%s of no agent), floor with statistics %s req/s (%s of no agent), qtap %s req/s\n' \
		"$ROUNDS" "$SCHEME" "$base" "$floor" "$floor_ratio" "$floor_stats" "$fs_ratio" "$agent"
	printf 'qtap/no agent %s, qtap/floor %s (target >= 0.90 of %s), events lost %d\n' \
		"$ratio" "$fratio" "$([ "$SCHEME" = https ] && echo "the floor" || echo "no agent")" \
		"$lost_total"
	if [ -s "$TMP/copy" ]; then
		copy=$(median <"$TMP/copy")
		printf 'copy floor %s req/s (%s of no agent, %s of the floor), qtap/copy floor %s; busy CPU per request: copy floor %s us\n' \
			"$copy" "$(awk -v a="$copy" -v b="$base" 'BEGIN { printf "%.3f", a / b }')" \
			"$(awk -v a="$copy" -v b="$floor" 'BEGIN { printf "%.3f", a / b }')" \
			"$(awk -v a="$agent" -v b="$copy" 'BEGIN { printf "%.3f", a / b }')" \
			"$(median 2 <"$TMP/copy")"
	fi
else
	printf 'median of %d (%s): no agent %s req/s, qtap %s req/s, ratio %s (target >= 0.90), events lost %d\n' \
		"$ROUNDS" "$SCHEME" "$base" "$agent" "$ratio" "$lost_total"
fi
# The same runs seen two more ways: the median of each round's own ratio
# (a slow drift of the machine cancels out), and the machine's busy CPU
# time per request (the agent's whole cost, its threads' too).
paired=$(paste -d' ' "$TMP/base" "$TMP/agent" | awk '{ print $4 / $1 }' | median)
# The same for the floors: what the attachments cost, what the kernel's
# statistics add to them (capture.kernel_bpf_stats), and what copying the
# calls' bytes adds (the copy floor).
if [ -s "$TMP/floor" ]; then
	printf 'median of the rounds'"'"' own ratios to no agent: floor %.3f, floor with statistics %.3f%s\n' \
		"$(paste -d' ' "$TMP/base" "$TMP/floor" | awk '{ print $4 / $1 }' | median)" \
		"$(paste -d' ' "$TMP/base" "$TMP/floor_stats" | awk '{ print $4 / $1 }' | median)" \
		"$([ -s "$TMP/copy" ] && printf ', copy floor %.3f' \
			"$(paste -d' ' "$TMP/base" "$TMP/copy" | awk '{ print $4 / $1 }' | median)")"
fi
cpu_base=$(median 2 <"$TMP/base")
cpu_agent=$(median 2 <"$TMP/agent")
# The agent's share of the qtap rounds' CPU time per request, steadier than
# any of the above: what its programs took inside the traced calls and what
# its own threads took.
if [ -s "$TMP/cost" ]; then
	printf 'qtap'"'"'s own cost per request (median): programs %s us (%s ns per run, %s runs per request), agent threads %s us\n' \
		"$(median 1 <"$TMP/cost")" "$(median 3 <"$TMP/cost")" "$(median 4 <"$TMP/cost")" \
		"$(median 2 <"$TMP/cost")"
fi
printf 'median of the rounds'"'"' own ratios qtap/no agent %.3f; busy CPU per request: no agent %s us, qtap %s us (no agent/qtap %.3f)\n' \
	"$paired" "$cpu_base" "$cpu_agent" "$(awk -v a="$cpu_agent" -v b="$cpu_base" 'BEGIN { print b / a }')"
# How much of that the noise could be: the rounds resampled (bench/lib.sh).
printf 'resampled 90%% intervals: qtap/no agent %s to %s, busy CPU no agent/qtap %s to %s\n' \
	$(paste -d' ' "$TMP/base" "$TMP/agent" | awk '{ print $1, $4 }' | ratio_interval) \
	$(paste -d' ' "$TMP/base" "$TMP/agent" | awk '{ print $5, $2 }' | ratio_interval)
if [ -s "$TMP/agent_kstats" ]; then
	printf 'qtap with the kernel'"'"'s statistics (capture.kernel_bpf_stats): %s req/s, %.3f of no agent (median of the rounds'"'"' own ratios %.3f), busy CPU per request %s us (no agent/it %.3f)\n' \
		"$(median <"$TMP/agent_kstats")" \
		"$(awk -v a="$(median <"$TMP/agent_kstats")" -v b="$base" 'BEGIN { print a / b }')" \
		"$(paste -d' ' "$TMP/base" "$TMP/agent_kstats" | awk '{ print $4 / $1 }' | median)" \
		"$(median 2 <"$TMP/agent_kstats")" \
		"$(awk -v a="$(median 2 <"$TMP/agent_kstats")" -v b="$cpu_base" 'BEGIN { print b / a }')"
fi

#!/bin/sh
# The agent's cost per traced socket call to the thread that makes it:
# bench/bench_pairs (one thread pinned to one CPU, write()+read()
# pairs of 100 bytes over loopback TCP) without an agent, with the
# bare-probe floor (bench/bench_floor: empty programs on the agent's
# tracepoints), with that floor under the kernel's run-time statistics
# (kernel.bpf_stats_enabled, which the agent turns on with
# capture.kernel_bpf_stats), with the copy floor (bench_floor --copy: the
# calls' bytes found and copied the agent's way and the clock read, nothing
# kept) and with qtap running, alternated ROUNDS times; prints the medians
# of the nanoseconds per pair, what each adds (the statistics and the copy
# over the floor, the others over no agent), the pairs/s each keeps,
# and the agent's programs' nanoseconds per run in its rounds.
#
#   make bench-pairs                (from the build directory, as root)
#   ROUNDS=11 PAIRS=400000 SIZE=1000 bench/pairs.sh
#   EVERY_CPU=1 KERNEL_STATS=1 make bench-pairs
#       EVERY_CPU=1: one such thread on every CPU at once (every CPU busy
#       with traced calls, the agent's threads among them; the figure is
#       the threads' mean); KERNEL_STATS=1: one more column, qtap with
#       capture.kernel_bpf_stats
#
# The pairs run on the last CPU; the agent's threads find the others.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
ROUNDS=${ROUNDS:-7}
PAIRS=${PAIRS:-200000}
SIZE=${SIZE:-100}
. "$top_srcdir/bench/lib.sh"

PAIRS_BIN=$top_builddir/bench/bench_pairs
FLOOR_BIN=$top_builddir/bench/bench_floor
for b in "$PAIRS_BIN" "$FLOOR_BIN"; do
	[ -x "$b" ] || { echo "$b not built (make ${b#"$top_builddir"/})"; exit 1; }
done

cat >"$TMP/qtap.conf" <<CONF
stacks = { default = { plugins = ( { type = "http_metrics"; } ); }; };
tap = { direction = "all"; ignore_loopback = false; http = { stack = "default"; }; };
CONF
{ cat "$TMP/qtap.conf"; echo 'capture = { kernel_bpf_stats = true; };'; } >"$TMP/qtap_kstats.conf"
KERNEL_STATS=${KERNEL_STATS:-0}
EVERY_CPU=${EVERY_CPU:-0}

pairs() {
	if [ "$EVERY_CPU" != 1 ]; then
		"$PAIRS_BIN" -n "$PAIRS" -s "$SIZE" || { echo "bench_pairs failed" >&2; exit 1; }
		return
	fi
	# one per CPU, waited for by pid (the agent is a child too)
	pids=
	c=0
	while [ "$c" -lt "$(nproc)" ]; do
		"$PAIRS_BIN" -n "$PAIRS" -s "$SIZE" -c "$c" >"$TMP/pairs.$c" &
		pids="$pids $!"
		c=$((c + 1))
	done
	for p in $pids; do
		wait "$p" || { echo "bench_pairs failed" >&2; exit 1; }
	done
	cat "$TMP"/pairs.[0-9]* | awk '{ s += $1 } END { printf "%.1f\n", s / NR }'
	rm -f "$TMP"/pairs.[0-9]*
}

pairs >/dev/null # warm-up
for f in none floor stats copy qtap perrun kstats; do : >"$TMP/$f"; done
lost_total=0
r=1
while [ "$r" -le "$ROUNDS" ]; do
	pairs >>"$TMP/none"
	floor_start
	pairs >>"$TMP/floor"
	stats_on
	pairs >>"$TMP/stats"
	stats_off
	floor_stop
	floor_start --copy
	pairs >>"$TMP/copy"
	floor_stop
	start_agent --config "$TMP/qtap.conf" || { echo "agent did not start"; exit 1; }
	c0=$(agent_cost)
	pairs >>"$TMP/qtap"
	c1=$(agent_cost)
	printf '%s %s\n' "$c0" "$c1" | awk '$4 > $1 { printf "%.0f\n", ($5 - $2) * 1e9 / ($4 - $1) }' \
		>>"$TMP/perrun"
	lost=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
	gaps=$(metric /system/metrics qtap_system_sequence_gaps_total)
	lost_total=$((lost_total + ${lost:-0} + ${gaps:-0}))
	stop_agent
	ks=
	if [ "$KERNEL_STATS" = 1 ]; then
		start_agent --config "$TMP/qtap_kstats.conf" || { echo "agent did not start"; exit 1; }
		pairs >>"$TMP/kstats"
		stop_agent
		ks=", qtap with the kernel's statistics $(tail -n 1 "$TMP/kstats")"
	fi
	printf 'round %d: ns per pair: no agent %s, floor %s, floor with statistics %s, copy floor %s, qtap %s%s (lost %s, gaps %s)\n' \
		"$r" "$(tail -n 1 "$TMP/none")" "$(tail -n 1 "$TMP/floor")" \
		"$(tail -n 1 "$TMP/stats")" "$(tail -n 1 "$TMP/copy")" "$(tail -n 1 "$TMP/qtap")" "$ks" \
		"${lost:-0}" "${gaps:-0}"
	r=$((r + 1))
done

none=$(median <"$TMP/none")
floor=$(median <"$TMP/floor")
stats=$(median <"$TMP/stats")
copy=$(median <"$TMP/copy")
qtap=$(median <"$TMP/qtap")
printf 'median of %d, ns per pair of %s bytes: no agent %s, floor %s, floor with statistics %s, copy floor %s, qtap %s\n' \
	"$ROUNDS" "$SIZE" "$none" "$floor" "$stats" "$copy" "$qtap"
awk -v n="$none" -v f="$floor" -v s="$stats" -v c="$copy" -v q="$qtap" 'BEGIN {
	printf "added per pair (two traced calls): floor %+.0f ns, statistics %+.0f ns more, copying the bytes %+.0f ns more, qtap %+.0f ns in all (%+.0f over the copy floor)\n", f - n, s - f, c - f, q - n, q - c
	printf "pairs/s kept of no agent: floor %.3f, floor with statistics %.3f, copy floor %.3f, qtap %.3f\n", n / f, n / s, n / c, n / q }'
printf "qtap's programs: %s ns per run (median of its rounds), events lost or given up as gaps %d\n" \
	"$(median <"$TMP/perrun")" "$lost_total"
if [ -s "$TMP/kstats" ]; then
	k=$(median <"$TMP/kstats")
	# (a round's own difference cancels the machine's drift between rounds)
	d=$(paste -d' ' "$TMP/qtap" "$TMP/kstats" | awk '{ print $2 - $1 }' | median)
	awk -v n="$none" -v q="$qtap" -v k="$k" -v d="$d" 'BEGIN {
		printf "qtap with the kernel'"'"'s statistics (capture.kernel_bpf_stats): %s ns per pair, %+.0f ns over no agent, %+.0f ns over qtap (median of the rounds'"'"' own differences %+.0f); pairs/s kept of no agent %.3f\n", k, k - n, k - q, d, n / k }'
fi

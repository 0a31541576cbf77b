#!/bin/sh
# Overhead of the agent on a busy HTTP server: nginx on loopback driven by
# wrk with keep-alive, requests per second without an agent and with qtap
# running, alternated in one run (so both see the same machine), ROUNDS
# times each; prints the medians and their ratio, and the events the agent
# lost on the way (must be 0).
#
#   make bench-overhead        (from the build directory, as root)
#   ROUNDS=5 DURATION=5 NGINX_WORKERS=auto bench/overhead.sh
#
# Needs nginx, wrk and curl.  Target: qtap keeps at least 90% of the
# no-agent figure.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
. "$top_srcdir/tests/e2e/lib.sh"
require_root

start_nginx || { echo "nginx did not start"; exit 1; }
cat >"$TMP/qtap.conf" <<CONF
stacks = { default = { plugins = ( { type = "http_metrics"; } ); }; };
tap = { direction = "all"; ignore_loopback = false; http = { stack = "default"; }; };
CONF
URL="http://$SERVER_ADDR:$HTTP_PORT/small"

# rps: one wrk run; prints requests/s.
rps() {
	wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$URL" 2>/dev/null |
		awk '/^Requests\/sec:/ { print $2 }'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

rps >/dev/null # warm-up
: >"$TMP/base"
: >"$TMP/agent"
lost_total=0
r=1
while [ $r -le "$ROUNDS" ]; do
	rps >>"$TMP/base"
	start_agent --config "$TMP/qtap.conf" || { echo "agent did not start"; exit 1; }
	rps >>"$TMP/agent"
	lost=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
	dropped=$(metric_sum /system/metrics 'qtap_system_queue_dropped_total{')
	gaps=$(metric /system/metrics qtap_system_sequence_gaps_total)
	lost_total=$((lost_total + ${lost:-0} + ${dropped:-0} + ${gaps:-0}))
	stop_agent
	printf 'round %d: no agent %s req/s, qtap %s req/s (lost %s, dropped %s, gaps %s)\n' \
		"$r" "$(tail -n 1 "$TMP/base")" "$(tail -n 1 "$TMP/agent")" \
		"${lost:-0}" "${dropped:-0}" "${gaps:-0}"
	r=$((r + 1))
done
stop_nginx

base=$(median <"$TMP/base")
agent=$(median <"$TMP/agent")
ratio=$(awk -v a="$agent" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
printf 'median of %d: no agent %s req/s, qtap %s req/s, ratio %s (target >= 0.90), events lost %d\n' \
	"$ROUNDS" "$base" "$agent" "$ratio" "$lost_total"

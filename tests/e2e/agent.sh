#!/bin/sh
# End to end: the real agent with the shipped example configuration, as a
# new user runs it: endpoints, promtool, process tracking through BPF,
# reload on SIGHUP (good and bad files), clean stop.
. "$top_srcdir/tests/e2e/lib.sh"
require_root

start_agent --config "$top_srcdir/etc/qtap.conf" --bpf-trace process,exe=true
ok $? "agent starts with etc/qtap.conf and /readyz answers 200"

code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")
test "$code" = 200; ok $? "/healthz answers 200"

mount | grep -q ' /sys/kernel/tracing type tracefs'; ok $? "tracefs is mounted at /sys/kernel/tracing"

curl -s "$BASE/metrics" >"$TMP/metrics.txt"
curl -s "$BASE/system/metrics" >"$TMP/system.txt"
"$top_srcdir/tests/promcheck.sh" <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1
ok $? "promtool check metrics accepts /metrics"
diag <"$TMP/promtool.out"
"$top_srcdir/tests/promcheck.sh" <"$TMP/system.txt" >"$TMP/promtool.out" 2>&1
ok $? "promtool check metrics accepts /system/metrics"
diag <"$TMP/promtool.out"

# Every family of the table is exposed by one of the endpoints (the example
# configuration has http_metrics, so the HTTP families are there too).
missing=
for f in $("$top_builddir/src/qtap-docgen" families); do
	grep -q "^# TYPE $f " "$TMP/metrics.txt" "$TMP/system.txt" || missing="$missing $f"
done
test -z "$missing"; ok $? "every metric family is exposed${missing:+ (missing:$missing)}"

commit=$("$QTAP" --version | sed -n 's/^qtap .* (commit \(.*\))$/\1/p')
grep -qx "qtap_build_info{version=\"0.1.0\",commit=\"$commit\"} 1" "$TMP/system.txt"
ok $? "qtap_build_info carries version and commit ($commit, as --version says)"

curl -s -H 'Accept: application/openmetrics-text; version=1.0.0' "$BASE/metrics" | tail -n 1 >"$TMP/om_last"
test "$(cat "$TMP/om_last")" = "# EOF"; ok $? "OpenMetrics when the scraper asks for it"

curl -s -H 'Accept-Encoding: gzip' "$BASE/system/metrics" | gzip -dc >"$TMP/gz.txt" 2>/dev/null
grep -q '^qtap_build_info' "$TMP/gz.txt"; ok $? "gzip when accepted"

# Process tracking: 25 short processes are seen exec'ing.
execs() {
	scrape /system/metrics |
		awk '$0 == "scrape-failed" { failed = 1; exit }
			/^qtap_system_events_received_total\{.*type="process_exec"/ { s += $NF }
			END { if (failed) print "scrape-failed"; else printf "%.0f\n", s }'
}
execs0=$(execs)
runs0=$(metric_sum /system/metrics 'qtap_system_bpf_program_runs_total{')
i=0
while [ $i -lt 25 ]; do /bin/true; i=$((i + 1)); done
i=0
until [ "$(execs)" -ge $((execs0 + 25)) ] 2>/dev/null || [ $i -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
execs1=$(execs)
runs1=$(metric_sum /system/metrics 'qtap_system_bpf_program_runs_total{')
test $((execs1 - execs0)) -ge 25; ok $? "25 processes seen exec'ing ($execs0 -> $execs1 process_exec events)"
test "${runs1:-0}" -gt "${runs0:-0}"; ok $? "BPF program run counts grow (${runs0:-none} -> ${runs1:-none})"
traced=$(grep -c 'bpf-trace module=process op=exec .*comm=true exe=\(/usr\)\?/bin/true decision=track' "$TMP/agent.log")
test "$traced" -ge 25; ok $? "--bpf-trace logs the 25 execs of true ($traced lines)"
! grep -q 'bpf-trace .*comm=curl' "$TMP/agent.log"; ok $? "--bpf-trace exe=true leaves curl out"
tracked=$(metric /system/metrics qtap_system_processes_tracked)
test "${tracked:-0}" -gt 0; ok $? "qtap_system_processes_tracked is positive (${tracked:-none})"
lost=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
test "${lost:-0}" -eq 0; ok $? "no events lost"

# Reload: a good file is taken, a bad one refused while the agent serves on.
cp "$top_srcdir/etc/qtap.conf" "$TMP/qtap.conf"
stop_agent
start_agent --config "$TMP/qtap.conf"
ok $? "agent restarts with a copy of the configuration"
sed -i 's/series_limit = [0-9]*/series_limit = 500/' "$TMP/qtap.conf"
grep -q 'series_limit = 500' "$TMP/qtap.conf"; ok $? "the copy now sets series_limit = 500"
hup && test "$(metric /system/metrics 'qtap_system_config_reloads_total{result="success"}')" = 1
ok $? "SIGHUP with a good file reloads (success counted)"
# A start-time setting changed: said at every reload that asks for it,
# not only the first, and not once the file is back to what runs.
warned() {
	grep -c 'capture.\* settings take effect at the next start' "$TMP/agent.log"
}
w0=$(warned)
printf 'capture = { queue_kb = 8192; };\n' >>"$TMP/qtap.conf"
hup && hup
ok $? "two more reloads of a file with a capture.* change"
w1=$(warned)
sed -i '/queue_kb = 8192/d' "$TMP/qtap.conf"
hup; ok $? "one more reload of the file as it runs"
w2=$(warned)
test "$((w1 - w0))" = 2 && test "$w2" = "$w1" &&
	test "$(metric /system/metrics 'qtap_system_config_reloads_total{result="success"}')" = 4
ok $? "a capture.* change is said to wait for a restart at each reload, and no more once undone ($w0 $w1 $w2)"
printf 'tap = { direction = "sideways"; };\n' >"$TMP/qtap.conf"
hup failure && test "$(metric /system/metrics 'qtap_system_config_reloads_total{result="failure"}')" = 1
ok $? "SIGHUP with a bad file is refused (failure counted)"
grep -q 'reload refused.*qtap.conf:1: tap.direction' "$TMP/agent.log"
ok $? "the refusal names file, line and key"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")
test "$code" = 200; ok $? "the agent still serves after a refused reload"

# The BPF programs this agent holds (other tests may load their own).
prog_ids=$(cat /proc/"$AGENT_PID"/fdinfo/* 2>/dev/null | awk '/^prog_id:/ { print $2 }' | sort -u)
test -n "$prog_ids"; ok $? "the agent holds BPF programs ($(echo $prog_ids))"
stop_agent
test "$AGENT_STATUS" = 0; ok $? "SIGTERM stops with status 0 (got $AGENT_STATUS)"
# (the kernel frees a program once its last link is released, which for
# uprobes waits for grace periods in the background: 5 s at most)
i=0
while :; do
	left=
	for id in $prog_ids; do
		bpftool prog show id "$id" >/dev/null 2>&1 && left="$left $id"
	done
	[ -z "$left" ] || [ $i -ge 50 ] && break
	sleep 0.1
	i=$((i + 1))
done
test -z "$left"; ok $? "no BPF programs left behind${left:+ (still loaded:$left)}"

# Run statistics.  The programs count their own runs: with the kernel's
# statistics on as well, from before the agent loads, the two counts are the
# same runs, so the agent's figure lies between two readings of the
# kernel's taken around it.
agent_progs() {
	cat /proc/"$AGENT_PID"/fdinfo/* 2>/dev/null | awk '/^prog_id:/ { print $2 }' | sort -u
}
# kernel_runs NAME: the kernel's run count of the agent's program NAME (0
# while the kernel's statistics are off).
kernel_runs() {
	for id in $(agent_progs); do
		bpftool prog show id "$id" 2>/dev/null
	done | awk -v name="$1" '$4 == name { n = 0
		for (i = 1; i < NF; i++) if ($i == "run_cnt") n = $(i + 1)
		print n; exit }'
}
runs() {
	metric /system/metrics "qtap_system_bpf_program_runs_total{program=\"$1\"}"
}
BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
start_agent --config "$top_srcdir/etc/qtap.conf"
ok $? "agent starts with the kernel's statistics on already"
for p in 1 2 3 4 5; do /bin/true; curl -s -o /dev/null "$BASE/metrics"; done
for prog in sock_send sock_recv sock_state proc_exec proc_exit; do
	k1=$(kernel_runs "$prog")
	m=$(runs "$prog")
	k2=$(kernel_runs "$prog")
	test "${m:-0}" -gt 0 && test "${k1:-0}" -le "${m:-0}" && test "${m:-0}" -le "${k2:-0}"
	ok $? "$prog: runs counted by the program are the kernel's ($k1 <= ${m:-none} <= $k2)"
done
secs=$(metric /system/metrics 'qtap_system_bpf_program_run_seconds_total{program="sock_recv"}')
m=$(runs sock_recv)
awk -v s="${secs:-0}" -v n="${m:-0}" 'BEGIN { ns = s * 1e9 / n; exit !(n > 0 && ns >= 10 && ns <= 100000) }'
ok $? "sock_recv's run time is timed ($secs s over $m runs)"
stop_agent
sysctl -qw kernel.bpf_stats_enabled=0

# By default the agent leaves the kernel's statistics alone; with
# capture.kernel_bpf_stats it turns them on for its life and reports them.
start_agent --config "$top_srcdir/etc/qtap.conf"
for p in 1 2 3; do curl -s -o /dev/null "$BASE/metrics"; done
m=$(runs sock_recv)
k=$(kernel_runs sock_recv)
test "${m:-0}" -gt 0 && test "${k:-1}" = 0
ok $? "by default the kernel does not time the programs (kernel ${k:-none}, agent ${m:-none} runs)"
stop_agent
sed 's/^# capture = {/capture = {/; s/^#   kernel_bpf_stats = false;/  kernel_bpf_stats = true;/; s/^# };/};/' \
	"$top_srcdir/etc/qtap.conf" >"$TMP/kstats.conf"
grep -q '^  kernel_bpf_stats = true;' "$TMP/kstats.conf"
ok $? "the example's capture group, uncommented with kernel_bpf_stats = true"
start_agent --config "$TMP/kstats.conf"
ok $? "agent starts with capture.kernel_bpf_stats = true"
for p in 1 2 3; do curl -s -o /dev/null "$BASE/metrics"; done
k1=$(kernel_runs sock_recv)
m=$(runs sock_recv)
k2=$(kernel_runs sock_recv)
test "${k1:-0}" -gt 0 && test "${k1:-0}" -le "${m:-0}" && test "${m:-0}" -le "${k2:-0}"
ok $? "capture.kernel_bpf_stats: the kernel's run counts, reported ($k1 <= ${m:-none} <= $k2)"
test "$(sysctl -n kernel.bpf_stats_enabled)" = 0
ok $? "kernel.bpf_stats_enabled as the agent found it (it holds the statistics by its own handle)"
stop_agent
sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"

# Process events lost: a burst of processes while the agent is stopped
# fills the process ring (1 MiB, some 1700 events of the burst's 9000) and
# the kernel drops the rest.  Once the agent runs again it compares its
# table with /proc.  Three processes the test holds, each meanwhile:
# GONE, tracked before, ends and is reaped; ZOMBIE, tracked before, ends
# and is not reaped (its parent exec'd a program that never waits); FOUND
# starts.  Their events are lost; the comparison ends the first two and
# finds the third.
start_agent --config "$top_srcdir/etc/qtap.conf" --bpf-trace process
ok $? "agent starts with --bpf-trace process"
sleep 60 &
GONE=$!
sh -c "sleep 5 & echo \$! >'$TMP/zombie'; exec sleep 60" &
ZOMBIE_PARENT=$!
wait_line "$TMP/zombie" . 50
ZOMBIE=$(cat "$TMP/zombie")
wait_line "$TMP/agent.log" "op=exec cpu=[0-9]* pid=$ZOMBIE .*comm=sleep " 50 &&
	wait_line "$TMP/agent.log" "op=exec cpu=[0-9]* pid=$GONE .*comm=sleep " 50
ok $? "GONE ($GONE) and ZOMBIE ($ZOMBIE) are tracked"
kill -STOP "$AGENT_PID"
i=0
while [ $i -lt 3000 ]; do /bin/true; i=$((i + 1)); done
kill "$GONE"
wait "$GONE" 2>/dev/null
sleep 60 &
FOUND=$!
# FOUND's exec done (else it may be seen by its own exec event once the
# agent runs) and ZOMBIE ended
i=0
until readlink "/proc/$FOUND/exe" | grep -q '/sleep$' &&
	awk '{ exit $3 != "Z" }' "/proc/$ZOMBIE/stat" || [ $i -ge 1000 ]; do
	sleep 0.01
	i=$((i + 1))
done
kill -CONT "$AGENT_PID"
wait_line "$TMP/agent.log" 'warn .*process events were lost' 100
ok $? "the loss is logged: $(grep -o 'process events were lost.*' "$TMP/agent.log")"
lost=$(scrape /system/metrics | awk '/^qtap_system_events_lost_total\{.*type="process_/ { s += $NF }
	END { printf "%.0f\n", s }')
test "${lost:-0}" -gt 0; ok $? "the process events lost are counted (${lost:-none})"
grep -q "bpf-trace module=process op=gone pid=$GONE comm=sleep exe=.*/sleep decision=forget" \
	"$TMP/agent.log"
ok $? "GONE, whose exit was lost, is found gone from /proc"
grep -q "bpf-trace module=process op=gone pid=$ZOMBIE comm=sleep exe=.*/sleep decision=forget" \
	"$TMP/agent.log"
ok $? "ZOMBIE, whose exit was lost, is taken as ended"
grep -q "bpf-trace module=process op=found pid=$FOUND ppid=$$ comm=sleep exe=.*/sleep decision=track" \
	"$TMP/agent.log"
ok $? "FOUND, whose fork and exec were lost, is found in /proc"
# The test's children (the burst's among them) tracked when the comparison
# ended that are neither running nor forgotten since (an exit heard, or
# gone from /proc).
sleep 1
left=$(awk -v me="ppid=$$" '/process events were lost/ { done = 1; next }
	!/bpf-trace module=process / { next }
	{ pid = ""
	  for (i = 1; i <= NF; i++) {
		if ($i ~ /^pid=/) pid = substr($i, 5)
		if ($i == me) ours[pid] = 1
	  } }
	!done { last[pid] = /decision=track/ }
	done && /decision=forget/ { delete last[pid] }
	END { for (p in last) if (last[p] && ours[p]) print p }' "$TMP/agent.log")
stale=
for p in $left; do
	kill -0 "$p" 2>/dev/null || stale="$stale $p"
done
test -z "$stale"; ok $? "no process of the burst stays tracked${stale:+ (stale:$stale)}"
kill "$FOUND" "$ZOMBIE_PARENT"
wait "$FOUND" "$ZOMBIE_PARENT" 2>/dev/null
stop_agent
test "$AGENT_STATUS" = 0; ok $? "the agent stops with status 0 after the loss (got $AGENT_STATUS)"

finish

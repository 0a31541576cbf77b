# Shared by the end-to-end tests: TAP output, and starting and stopping a
# real agent.  Sourced, not run.
: "${top_srcdir:?run through make check}" "${top_builddir:?run through make check}"
QTAP=$top_builddir/src/qtap
TMP=$(mktemp -d /tmp/qtap-e2e.XXXXXX)
AGENT_PID=
n_tests=0
n_failed=0

cleanup() {
	if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
		kill -KILL "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# ok CONDITION-STATUS DESCRIPTION: "ok 0 'it works'" after a command, e.g.
#   test "$x" = 3; ok $? "three things"
ok() {
	n_tests=$((n_tests + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n_tests - $2"
	else
		echo "not ok $n_tests - $2"
		n_failed=$((n_failed + 1))
	fi
}

diag() {
	sed 's/^/# /'
}

finish() {
	echo "1..$n_tests"
	[ "$n_failed" -eq 0 ]
}

# End-to-end tests need root for BPF; a test that cannot run fails.
require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		ok 1 "running as root (BPF needs it; this test cannot run otherwise)"
		finish
		exit 1
	fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_agent ARGS...: runs qtap in the background with its log in
# $TMP/agent.log and waits until /readyz answers 200 (at most 20 s).
start_agent() {
	PORT=$(free_port)
	BASE=http://127.0.0.1:$PORT
	"$QTAP" --httpd-listen "127.0.0.1:$PORT" "$@" >"$TMP/agent.out" 2>"$TMP/agent.log" &
	AGENT_PID=$!
	i=0
	while [ $i -lt 200 ]; do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" 2>/dev/null)
		[ "$code" = 200 ] && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	diag <"$TMP/agent.log"
	return 1
}

# stop_agent: SIGTERM, then the exit status in AGENT_STATUS (at most 10 s).
stop_agent() {
	kill -TERM "$AGENT_PID"
	i=0
	while kill -0 "$AGENT_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	wait "$AGENT_PID"
	AGENT_STATUS=$?
	AGENT_PID=
}

# metric ENDPOINT SAMPLE: the value of one sample line ("name{labels}"), or
# nothing when absent.
metric() {
	curl -s "$BASE$1" | awk -v want="$2" 'index($0, want " ") == 1 { print $NF; exit }'
}

# metric_sum ENDPOINT PREFIX: the sum of every sample whose line starts
# with PREFIX (e.g. 'qtap_system_events_received_total{' summed over cpus).
metric_sum() {
	curl -s "$BASE$1" | awk -v want="$2" '
		index($0, want) == 1 { sum += $NF; n++ }
		END { if (n) printf "%.0f\n", sum; else print "" }'
}

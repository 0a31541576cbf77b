#!/bin/sh
# End to end: a connection inside another network namespace (what a
# container has), open before the agent and silent for longer than
# capture.idle_timeout.  Learned on its first data, each side gets the
# direction the listeners of its own namespace give (the server's side
# ingress, the client's egress: the agent's namespace has no listener on
# the port), and a spell of silence neither ends it nor makes it a new
# connection when it speaks again: the kernel's socket diagnostics, asked
# from the agent's namespace, cannot see it, and the kernel's table of
# connections answers for it.
. "$top_srcdir/tests/e2e/lib.sh"
require_root

PY=/usr/bin/python3
conf_only '/python3(\\.[0-9]+)?$'
echo 'capture = { idle_timeout = 1; };' >>"$TMP/qtap.conf"

# A server and a client on 127.0.0.1 of a new network namespace: one
# request and answer per "go" read from stdin ("quit" closes both), each
# answer's line appended to the output file.
cat >"$TMP/pair.py" <<'PYCODE'
import socket, sys
out = open(sys.argv[1], "a")
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
cli = socket.create_connection(("127.0.0.1", port))
conn, _ = srv.accept()
out.write("port %d\n" % port)
out.flush()
for line in sys.stdin:
    if line.strip() == "quit":
        break
    cli.sendall(b"ping")
    got = conn.recv(4)
    conn.sendall(b"pong!")
    back = cli.recv(5)
    out.write("%s %s\n" % (got.decode(), back.decode()))
    out.flush()
cli.close()
conn.close()
srv.close()
PYCODE
mkfifo "$TMP/pair.in"
: >"$TMP/pair.out"

# exchange N: one more request and answer (the N-th), at most 5 s.
exchange() {
	echo go >&7
	j=0
	while [ "$(grep -c '^ping pong!$' "$TMP/pair.out")" -lt "$1" ] && [ $j -lt 50 ]; do
		sleep 0.1
		j=$((j + 1))
	done
	test "$(grep -c '^ping pong!$' "$TMP/pair.out")" = "$1"
}

unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$PY" "$TMP/pair.py" "$TMP/pair.out" \
	<"$TMP/pair.in" &
PAIR_PID=$!
exec 7>"$TMP/pair.in"
wait_line "$TMP/pair.out" '^port '
PAIR_PORT=$(awk '/^port / { print $2; exit }' "$TMP/pair.out")
exchange 1
ok $? "a connection in a new network namespace, before the agent (port ${PAIR_PORT:-none})"

start_agent --config "$TMP/qtap.conf" --log-level debug --log-encoding json
ok $? "agent starts"

EGRESS="direction=\"egress\",remote_addr=\"127.0.0.1\",remote_port=\"$PAIR_PORT\""
INGRESS="direction=\"ingress\",remote_addr=\"127.0.0.1\",remote_port=\"\""
exchange 2
ok $? "it speaks once the agent runs"
# learned on that first data: one connection each way (two workers)
i=0
while { [ "$(metric /metrics "qtap_connection_open_total{$INGRESS}")" != 1 ] ||
	[ "$(metric /metrics "qtap_connection_open_total{$EGRESS}")" != 1 ]; } && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
n=$(metric /metrics "qtap_connection_open_total{$INGRESS}")
test "$n" = 1
ok $? "the server's side is ingress: its namespace listens on the port ($n)"
n=$(metric /metrics "qtap_connection_open_total{$EGRESS}")
test "$n" = 1
ok $? "the client's side is egress ($n)"

# Silent for three idle timeouts (the idle scan runs every second).
sleep 3.5
n=$(metric_sum /metrics 'qtap_connection_close_total{')
test "$n" = 0
ok $? "silence longer than the idle timeout does not end it (${n:-0} closed)"
exchange 3
ok $? "it speaks again"
sleep 1
n=$(metric /metrics "qtap_connection_open_total{$INGRESS}")
m=$(metric /metrics "qtap_connection_open_total{$EGRESS}")
test "$n" = 1 && test "$m" = 1
ok $? "still one connection each way, not learned anew ($n ingress, $m egress)"
n=$(metric /metrics "qtap_connection_bytes_sent_total{$EGRESS}")
m=$(metric /metrics "qtap_connection_bytes_recv_total{$EGRESS}")
test "$n" = 8 && test "$m" = 10
ok $? "the client's bytes since the agent started: 8 sent, 10 received ($n, $m)"

echo quit >&7
exec 7>&-
wait "$PAIR_PID"
i=0
while [ "$(metric_sum /metrics 'qtap_connection_close_total{')" != 2 ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
n=$(metric /metrics "qtap_connection_close_total{$INGRESS}")
m=$(metric /metrics "qtap_connection_close_total{$EGRESS}")
test "$n" = 1 && test "$m" = 1
ok $? "closed once each way ($n ingress, $m egress)"
test "$(metric /metrics "qtap_connection_active_total{$INGRESS}")" = 0 &&
	test "$(metric /metrics "qtap_connection_active_total{$EGRESS}")" = 0
ok $? "active back to 0"
n=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
test "${n:-0}" = 0
ok $? "no events lost (${n:-0})"

stop_agent
test "$AGENT_STATUS" = 0
ok $? "agent stops cleanly"
finish

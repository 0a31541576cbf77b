#!/bin/sh
# End to end: socket capture against real nginx and real clients on
# loopback, with exact figures: connections per side, bytes as the clients
# and the server count them, protocols, TLS handshakes from the wire, the
# filters and direction settings, TCP Fast Open, and no losses.
#
# The agent traces only nginx, curl and python3 (an allow-list), so other
# processes on the host do not move its figures.  Another test's curl or
# python3 would: the end-to-end tests run one after the other, but a
# parallel make check can move the unlabelled protocol counts.  The test
# reads the endpoints with a renamed copy of curl, which that list leaves
# out (the "filtered process" case).  nginx listens on 127.0.0.42 and clients come
# from 127.0.0.43, label values no other test uses.
. "$top_srcdir/tests/e2e/lib.sh"
require_root

PY=/usr/bin/python3
scrape_with_copy

start_nginx
ok $? "nginx serves on $SERVER_ADDR:$HTTP_PORT (http) and :$TLS_PORT (tls)"

# conf DIRECTION IGNORE_LOOPBACK [NAMES]: the agent's configuration file;
# NAMES: more executables to trace ("|name|name").
conf() {
	cat >"$TMP/qtap.conf" <<CONF
stacks = { default = { plugins = ( { type = "http_metrics"; } ); }; };
tap = {
  direction = "$1";
  ignore_loopback = $2;
  http = { stack = "default"; };
  filters = {
    groups = [ "qpoint" ];
    custom = ( { exe = "/(nginx|curl|python3(\\\\.[0-9]+)?${3:-})\$"; strategy = "regex"; only = true; } );
  };
};
CONF
}

# Value or 0.
m() {
	v=$(metric /metrics "$1")
	echo "${v:-0}"
}

EGRESS="direction=\"egress\",remote_addr=\"$SERVER_ADDR\",remote_port=\"$HTTP_PORT\""
INGRESS="direction=\"ingress\",remote_addr=\"$CLIENT_ADDR\",remote_port=\"\""

# reload DIRECTION IGNORE_LOOPBACK [NAMES]: SIGHUP with a new file; waits
# for it.
reload() {
	conf "$1" "$2" "${3:-}"
	hup
}

# settle E I: wait until E egress and I ingress connections of ours have
# been closed (the events flow asynchronously), at most 10 s; then a
# little longer, so that anything more would show too.
settle() {
	i=0
	while [ $i -lt 100 ]; do
		a=$(m "qtap_connection_close_total{$EGRESS}")
		b=$(m "qtap_connection_close_total{$INGRESS}")
		if [ "$a" -ge "$1" ] && [ "$b" -ge "$2" ]; then
			sleep 0.3
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

conf all false
# Without the TLS probes: TLS is seen from the wire only here (tls.sh has
# the plaintext).
start_agent --config "$TMP/qtap.conf" --log-level debug --log-encoding json \
	--bpf-trace syscall,exe=python3 --tls-probes none
ok $? "agent starts"

# --- plain HTTP/1.1: three curl processes, one keep-alive curl with three
# requests, one python3 http.client connection with three requests.
: >"$TMP/curl.w"
for i in 1 2 3; do
	curl -s --interface "$CLIENT_ADDR" -o /dev/null \
		-w '%{size_request} %{size_header} %{size_download}\n' \
		"http://$SERVER_ADDR:$HTTP_PORT/small" >>"$TMP/curl.w"
done
curl -s --interface "$CLIENT_ADDR" -o /dev/null -o /dev/null -o /dev/null \
	-w '%{size_request} %{size_header} %{size_download}\n' \
	"http://$SERVER_ADDR:$HTTP_PORT/small" "http://$SERVER_ADDR:$HTTP_PORT/big" \
	"http://$SERVER_ADDR:$HTTP_PORT/small" >>"$TMP/curl.w"
# python3 counts what its socket moved, and in how many calls that moved
# bytes (each is a data event): the last line, "bytes SENT RECEIVED CALLS".
$PY - "$SERVER_ADDR" "$HTTP_PORT" "$CLIENT_ADDR" >"$TMP/py.out" <<'PYCODE'
import http.client, socket, sys
addr, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Counted(socket.socket):
    sent = recv = calls = 0
    def sendall(self, data, *args):
        # one buffer at a time: one call each at these sizes (checked
        # against the agent's count of data events)
        Counted.sent += len(data)
        Counted.calls += 1
        return super().sendall(data, *args)
    def recv_into(self, buf, *args):
        n = super().recv_into(buf, *args)
        if n:
            Counted.recv += n
            Counted.calls += 1
        return n
s = Counted(socket.AF_INET, socket.SOCK_STREAM)
s.bind((src, 0))
s.connect((addr, port))
c = http.client.HTTPConnection(addr, port)
c.sock = s
for path in ("/small", "/big", "/small"):
    c.request("GET", path)
    r = c.getresponse()
    print(r.status, len(r.read()))
c.close()
print("bytes", Counted.sent, Counted.recv, Counted.calls)
PYCODE
read -r _ py_sent py_recv py_calls <<EOF
$(grep '^bytes ' "$TMP/py.out")
EOF
# The filtered process: its own connections are not seen (nginx's side of
# them is: it comes from 127.0.0.44).
"$SCRAPE" -s --interface 127.0.0.44 -o /dev/null "http://$SERVER_ADDR:$HTTP_PORT/small"

settle 5 5; ok $? "every connection closed"
test "$(m "qtap_connection_active_total{$EGRESS}")" = 0 && test "$(m "qtap_connection_active_total{$INGRESS}")" = 0
ok $? "active back to 0 on both sides"

sent=$(awk '{ s += $1 } END { print s }' "$TMP/curl.w")
recv=$(awk '{ s += $2 + $3 } END { print s }' "$TMP/curl.w")
test "$(grep -c '^200 ' "$TMP/py.out")" = 3; ok $? "python3 made three requests on one connection"

test "$(m "qtap_connection_open_total{$EGRESS}")" = 5
ok $? "egress: 5 connections opened (3 curl, 1 keep-alive curl, 1 python3; the filtered one not seen)"
test "$(m "qtap_connection_close_total{$EGRESS}")" = 5; ok $? "egress: 5 closed"
test "$(m "qtap_connection_open_total{$INGRESS}")" = 5; ok $? "ingress (nginx): 5 connections opened from $CLIENT_ADDR"
test "$(m "qtap_connection_close_total{$INGRESS}")" = 5; ok $? "ingress (nginx): 5 closed"
test "$(m 'qtap_connection_open_total{direction="ingress",remote_addr="127.0.0.44",remote_port=""}')" = 1
ok $? "ingress: nginx's side of the filtered client's connection is seen"

# Byte counts: what the clients report (curl's write-out, python3's own
# count), and the same seen from nginx's side.
e_sent=$(m "qtap_connection_bytes_sent_total{$EGRESS}")
e_recv=$(m "qtap_connection_bytes_recv_total{$EGRESS}")
i_sent=$(m "qtap_connection_bytes_sent_total{$INGRESS}")
i_recv=$(m "qtap_connection_bytes_recv_total{$INGRESS}")
test "$e_sent" = $((sent + py_sent))
ok $? "egress bytes sent = what curl and python3 sent ($e_sent, $sent + $py_sent)"
test "$e_recv" = $((recv + py_recv))
ok $? "egress bytes received = what curl and python3 received ($e_recv, $recv + $py_recv)"
test "$e_sent" = "$i_recv"; ok $? "bytes the clients sent = bytes nginx received ($e_sent, $i_recv)"
test "$e_recv" = "$i_sent"; ok $? "bytes nginx sent = bytes the clients received ($i_sent, $e_recv)"

# Exactness against curl alone: two more curl processes.
b_sent=$e_sent
b_recv=$e_recv
: >"$TMP/curl2.w"
for path in small big; do
	curl -s --interface "$CLIENT_ADDR" -o /dev/null \
		-w '%{size_request} %{size_header} %{size_download}\n' \
		"http://$SERVER_ADDR:$HTTP_PORT/$path" >>"$TMP/curl2.w"
done
settle 7 7
sent2=$(awk '{ s += $1 } END { print s }' "$TMP/curl2.w")
recv2=$(awk '{ s += $2 + $3 } END { print s }' "$TMP/curl2.w")
d_sent=$(($(m "qtap_connection_bytes_sent_total{$EGRESS}") - b_sent))
d_recv=$(($(m "qtap_connection_bytes_recv_total{$EGRESS}") - b_recv))
test "$d_sent" = "$sent2"; ok $? "egress bytes sent = curl's size_request ($d_sent, $sent2)"
test "$d_recv" = "$recv2"; ok $? "egress bytes received = curl's size_header + size_download ($d_recv, $recv2)"

# The connection report of python3's connection (JSON, at debug level).
$PY - "$TMP/agent.log" "$py_sent" "$py_recv" "$py_calls" >"$TMP/report.out" 2>&1 <<'PYCODE'
import json, os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
reports, _ = agentlog.read(sys.argv[1])
sent, recv, calls = (int(a) for a in sys.argv[2:5])
py = [r for r in reports if r["comm"] == "python3" and r["direction"] == "egress"]
assert len(py) == 1, "python3 egress reports: %d" % len(py)
r = py[0]
checks = {
    "l7Protocol": r["l7Protocol"] == "http1",
    "gotProtocolEvent": r["gotProtocolEvent"] is True,
    "gotTLSClientHelloEvent": r["gotTLSClientHelloEvent"] is False,
    "dataEventCount": r["dataEventCount"] == calls,
    "bytesSent": r["bytesSent"] == sent,
    "bytesReceived": r["bytesReceived"] == recv and recv > 2 * 100 + 1048576,
    "exe": r["exe"].startswith("/usr/bin/python3"),
    "cgroupId": r["cgroupId"] > 0,
    "closeReason": r["closeReason"] == "close",
    "destination": r["destination"].startswith("127.0.0.42:"),
    "source": r["source"].startswith("127.0.0.43:"),
}
bad = [k for k, v in checks.items() if not v]
print("report:", json.dumps(r))
assert not bad, "wrong fields: %s" % bad
PYCODE
ok $? "the connection report of python3's connection has its fields right"
diag <"$TMP/report.out"
grep -q 'bpf-trace module=syscall op=connect .*comm=python3' "$TMP/agent.log" &&
	grep -q 'bpf-trace module=syscall op=sendto .*comm=python3.*decision=http1' "$TMP/agent.log"
ok $? "--bpf-trace syscall,exe=python3 logs python3's connect and sends"
! grep -q 'bpf-trace module=syscall .*comm=curl' "$TMP/agent.log"; ok $? "--bpf-trace exe=python3 leaves curl out"

http1=$(m 'qtap_connection_protocol_total{protocol="http1"}')
test "$http1" = 15; ok $? "15 connections spoke http1 (7 egress + 8 ingress; got $http1)"
others="$(m 'qtap_connection_protocol_total{protocol="http2"}') $(m 'qtap_connection_protocol_total{protocol="tls"}') $(m 'qtap_connection_protocol_total{protocol="other"}')"
test "$others" = "0 0 0"; ok $? "none spoke http2, tls or other yet ($others)"

# --- TLS, from the wire: SNI and version of each handshake.
curl -sk --interface "$CLIENT_ADDR" --resolve "test.example:$TLS_PORT:$SERVER_ADDR" \
	--tlsv1.3 -o /dev/null "https://test.example:$TLS_PORT/small"
curl -sk --http1.1 --interface "$CLIENT_ADDR" --resolve "test.example:$TLS_PORT:$SERVER_ADDR" \
	--tlsv1.2 --tls-max 1.2 -o /dev/null "https://test.example:$TLS_PORT/small"
i=0
while [ $i -lt 100 ] && [ "$(m 'qtap_connection_protocol_total{protocol="tls"}')" -lt 4 ]; do
	sleep 0.1
	i=$((i + 1))
done
T_EGRESS="direction=\"egress\",remote_addr=\"$SERVER_ADDR\",remote_port=\"$TLS_PORT\",sni=\"test.example\""
T_INGRESS="direction=\"ingress\",remote_addr=\"$CLIENT_ADDR\",remote_port=\"\",sni=\"test.example\""
test "$(m "qtap_connection_tls_handshake_total{$T_EGRESS,version=\"TLSv1.3\"}")" = 1
ok $? "egress TLSv1.3 handshake with SNI test.example"
test "$(m "qtap_connection_tls_handshake_total{$T_EGRESS,version=\"TLSv1.2\"}")" = 1
ok $? "egress TLSv1.2 handshake with SNI test.example"
test "$(m "qtap_connection_tls_handshake_total{$T_INGRESS,version=\"TLSv1.3\"}")" = 1
ok $? "ingress (nginx) TLSv1.3 handshake"
test "$(m "qtap_connection_tls_handshake_total{$T_INGRESS,version=\"TLSv1.2\"}")" = 1
ok $? "ingress (nginx) TLSv1.2 handshake"
test "$(m 'qtap_connection_protocol_total{protocol="tls"}')" = 4; ok $? "4 connections spoke tls"
probes=$(metric_sum /system/metrics 'qtap_system_tls_attachments{')
runs=$(tls_runs)
test "${probes:-0}" = 0 && test "${runs:-0}" = 0
ok $? "seen from the wire: no TLS library probe attached (${probes:-0}) or run (${runs:-0})"
"$CURL" -s "$BASE/metrics" | grep -E '^qtap_connection_(tls|protocol)' | diag
# Their connection reports: server name and version from the wire, both
# sides.
$PY - "$TMP/agent.log" "$TLS_PORT" >"$TMP/tlsreport.out" 2>&1 <<'PYCODE'
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
reports, _ = agentlog.read(sys.argv[1])
port = ":" + sys.argv[2]
# the server's end is the destination on both sides
tls = [r for r in reports if r["destination"].endswith(port)]
got = sorted((r["direction"], r["sni"], r["tlsVersion"], r["gotTLSClientHelloEvent"], r["l7Protocol"])
             for r in tls)
want = sorted((d, "test.example", v, True, "tls") for d in ("egress", "ingress") for v in ("TLSv1.2", "TLSv1.3"))
print("got", got)
assert got == want, "want %s" % want
PYCODE
ok $? "the 4 TLS connections' reports have server name, version and ClientHello from the wire"
diag <"$TMP/tlsreport.out"

# --- HTTP/2 in the clear (prior knowledge): the client's preface on one
# side, nginx's SETTINGS on the other.
curl -s --http2-prior-knowledge --interface "$CLIENT_ADDR" -o /dev/null -w '%{http_version}\n' \
	"http://$SERVER_ADDR:$H2C_PORT/small" >"$TMP/h2c.out"
test "$(cat "$TMP/h2c.out")" = 2; ok $? "curl spoke HTTP/2 in the clear to nginx"
i=0
while [ $i -lt 100 ] && [ "$(m 'qtap_connection_protocol_total{protocol="http2"}')" -lt 2 ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 0.3
test "$(m 'qtap_connection_protocol_total{protocol="http2"}')" = 2 &&
	test "$(m "qtap_connection_close_total{direction=\"egress\",remote_addr=\"$SERVER_ADDR\",remote_port=\"$H2C_PORT\"}")" = 1 &&
	test "$(m 'qtap_connection_protocol_total{protocol="other"}')" = 0
ok $? "2 connections spoke http2 (curl's and nginx's side of one), none other"

# --- behind a load balancer: curl sends a PROXY protocol header (version
# 1) before its request or its ClientHello, as a balancer in front of
# nginx would; both sides are still HTTP/1.1 and TLS, with the server name.
h1=$(m 'qtap_connection_protocol_total{protocol="http1"}')
tl=$(m 'qtap_connection_protocol_total{protocol="tls"}')
curl -s --haproxy-protocol --interface "$CLIENT_ADDR" -o /dev/null -w '%{http_code}\n' \
	"http://$SERVER_ADDR:$PROXY_PORT/small" >"$TMP/proxy.out"
curl -sk --haproxy-protocol --interface "$CLIENT_ADDR" -o /dev/null -w '%{http_code}\n' \
	--resolve "test.example:$PROXY_TLS_PORT:$SERVER_ADDR" --tlsv1.3 \
	"https://test.example:$PROXY_TLS_PORT/small" >>"$TMP/proxy.out"
test "$(tr '\n' ' ' <"$TMP/proxy.out")" = "200 200 "; ok $? "nginx served both behind the PROXY header"
i=0
while [ $i -lt 100 ] && { [ "$(m 'qtap_connection_protocol_total{protocol="http1"}')" -lt $((h1 + 2)) ] ||
	[ "$(m 'qtap_connection_protocol_total{protocol="tls"}')" -lt $((tl + 2)) ]; }; do
	sleep 0.1
	i=$((i + 1))
done
sleep 0.3
P_EGRESS="direction=\"egress\",remote_addr=\"$SERVER_ADDR\",remote_port=\"$PROXY_TLS_PORT\",sni=\"test.example\""
test "$(m 'qtap_connection_protocol_total{protocol="http1"}')" = $((h1 + 2)) &&
	test "$(m 'qtap_connection_protocol_total{protocol="tls"}')" = $((tl + 2)) &&
	test "$(m 'qtap_connection_protocol_total{protocol="other"}')" = 0 &&
	test "$(m "qtap_connection_tls_handshake_total{$P_EGRESS,version=\"TLSv1.3\"}")" = 1 &&
	test "$(m "qtap_connection_tls_handshake_total{$T_INGRESS,version=\"TLSv1.3\"}")" = 2
ok $? "after the PROXY header: http1 and tls on both sides, none other, both handshakes with SNI"

# --- settings, through SIGHUP: each value of direction, ignore_loopback.
# one_request "E I": one curl connection; prints "EGRESS_DELTA
# INGRESS_DELTA" of the connections opened, once they reached E I (at most
# 10 s), or after 1.5 s when none is expected.
one_request() {
	e0=$(m "qtap_connection_open_total{$EGRESS}")
	i0=$(m "qtap_connection_open_total{$INGRESS}")
	curl -s --interface "$CLIENT_ADDR" -o /dev/null "http://$SERVER_ADDR:$HTTP_PORT/small"
	i=0
	while [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
		got="$(($(m "qtap_connection_open_total{$EGRESS}") - e0)) $(($(m "qtap_connection_open_total{$INGRESS}") - i0))"
		if [ "$1" = "0 0" ]; then
			[ $i -ge 15 ] && break
		elif [ "$got" = "$1" ]; then
			sleep 0.3
			break
		fi
	done
	echo "$(($(m "qtap_connection_open_total{$EGRESS}") - e0)) $(($(m "qtap_connection_open_total{$INGRESS}") - i0))"
}
reload all true; ok $? "reload: ignore_loopback = true"
test "$(one_request "0 0")" = "0 0"; ok $? "ignore_loopback = true: loopback connections not seen"
reload ingress false; ok $? "reload: direction = ingress"
test "$(one_request "0 1")" = "0 1"; ok $? "direction = ingress: only nginx's side"
reload egress false; ok $? "reload: direction = egress"
test "$(one_request "1 0")" = "1 0"; ok $? "direction = egress: only curl's side"
reload egress-internal false; ok $? "reload: direction = egress-internal"
test "$(one_request "1 0")" = "1 0"; ok $? "direction = egress-internal: loopback is internal"
reload egress-external false; ok $? "reload: direction = egress-external"
test "$(one_request "0 0")" = "0 0"; ok $? "direction = egress-external: loopback is not external"
reload all false; ok $? "reload: direction = all"
test "$(one_request "1 1")" = "1 1"; ok $? "direction = all: both sides again"

# --- a connection left out by the filters is looked at again when what
# they rest on changes: its process becomes traced by a reload, or execs
# an image that is traced.  A copy of python3 (not on the list) makes two
# requests on a keep-alive connection; then the change; then two more on
# the same connection, which are seen (its socket calls stop early while
# nothing changes, and must not miss the change).  For the reload, the
# client itself sends the SIGHUP and waits for the agent to count it: no
# process of the test starts in between, whose fork would have the kernel
# look at the connection again anyway.  (Another process on the host may
# fork meanwhile: then this passes even without the agent's own signal of
# the change.  It cannot fail for that.)
PYCLIENT=$TMP/qtap-pyclient
cp "$(readlink -f $PY)" "$PYCLIENT"
cat >"$TMP/client.py" <<'PYCODE'
import os, re, signal, socket, sys, time, urllib.request
REQ = b"GET /small HTTP/1.1\r\nHost: test.example\r\n\r\n"
def get(s):
    s.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, body = buf.split(b"\r\n\r\n", 1)
    n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < n:
        body += s.recv(4096)
mode = sys.argv[1]
if mode == "after":
    s = socket.socket(fileno=int(sys.argv[2]))
else:
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), source_address=("127.0.0.46", 0))
    get(s); get(s)
    if mode == "reload":
        # argv 4, 5: the agent's pid and /system/metrics URL
        def reloads():
            text = urllib.request.urlopen(sys.argv[5]).read().decode()
            m = re.search(r'^qtap_system_config_reloads_total\{result="success"\} (\d+)', text, re.M)
            return int(m.group(1)) if m else 0
        before = reloads()
        print(len(REQ), flush=True)
        sys.stdin.readline()    # the new file is written
        get(s)                  # still left out
        os.kill(int(sys.argv[4]), signal.SIGHUP)
        for i in range(100):
            if reloads() > before:
                break
            time.sleep(0.05)
        else:
            sys.exit("the agent did not reload")
    else:
        os.set_inheritable(s.fileno(), True)
        os.execv(sys.argv[4], [sys.argv[4], sys.argv[0], "after", str(s.fileno())])
get(s); get(s)
s.close()
PYCODE
# sent_delta: egress bytes sent to nginx since e0, once they moved (at most 5 s).
sent_delta() {
	i=0
	while [ $i -lt 50 ]; do
		d=$(($(m "qtap_connection_bytes_sent_total{$EGRESS}") - e0))
		[ "$d" -gt 0 ] && break
		sleep 0.1
		i=$((i + 1))
	done
	sleep 0.3
	echo $(($(m "qtap_connection_bytes_sent_total{$EGRESS}") - e0))
}
req=$($PY -c 'print(len(b"GET /small HTTP/1.1\r\nHost: test.example\r\n\r\n"))')
e0=$(m "qtap_connection_bytes_sent_total{$EGRESS}")
mkfifo "$TMP/go"
"$PYCLIENT" "$TMP/client.py" reload "$SERVER_ADDR" "$HTTP_PORT" "$AGENT_PID" \
	"$BASE/system/metrics" <"$TMP/go" >"$TMP/client.out" &
client=$!
exec 9>"$TMP/go"
wait_line "$TMP/client.out" '^[0-9]'
conf all false "|qtap-pyclient"
echo go >&9
exec 9>&-
wait "$client"; ok $? "the copy made three requests, had the agent reload, and made two more"
test "$(sent_delta)" = $((2 * req)); ok $? \
	"the two requests after the reload are seen, not the three before ($((2 * req)) bytes)"
reload all false; ok $? "reload: the copy left out again"
e0=$(m "qtap_connection_bytes_sent_total{$EGRESS}")
"$PYCLIENT" "$TMP/client.py" exec "$SERVER_ADDR" "$HTTP_PORT" "$(readlink -f $PY)"; ok $? \
	"the copy made two requests, then exec'd python3, which made two more"
test "$(sent_delta)" = $((2 * req)); ok $? \
	"the two requests after the exec are seen, not the two before ($((2 * req)) bytes)"

# --- busy keep-alive connections: wrk (not traced) on 4 connections from
# two threads, nginx's side traced.  nginx and wrk move between the CPUs,
# and a moved thread's last events wait in the old CPU's stage and ring
# for that CPU's reader while the new CPU's go on: each connection's
# events come out of order, thousands a second, and must all be put back
# in order, with no gap.  (Some 25000 events a second per connection: the
# reorder bound holds over 100 ms of a reader's delay.)
data_events() {
	scrape /system/metrics |
		awk '$0 == "scrape-failed" { failed = 1; exit }
			/^qtap_system_events_received_total\{.*type="conn_data"/ { n += $NF }
			END { if (failed) print "scrape-failed"; else printf "%.0f\n", n }'
}
gaps0=$(metric /system/metrics qtap_system_sequence_gaps_total)
data0=$(data_events)
wrk -t2 -c4 -d2s "http://$SERVER_ADDR:$HTTP_PORT/small" >"$TMP/wrk.out" 2>&1
reqs=$(awk '/ requests in / { print $1 }' "$TMP/wrk.out")
test "${reqs:-0}" -gt 1000; ok $? "wrk made ${reqs:-0} requests on 4 keep-alive connections"
sleep 1	# a poll of every reader, and the stages written
data1=$(data_events)
test $((data1 - data0)) -ge $((2 * ${reqs:-0})); ok $? \
	"nginx's side: a data event for each request and each response ($((data1 - data0)) events)"
gaps1=$(metric /system/metrics qtap_system_sequence_gaps_total)
test "$((${gaps1:-0} - ${gaps0:-0}))" = 0; ok $? \
	"their events put back in order with no gap ($((${gaps1:-0} - ${gaps0:-0})) gaps)"

# --- a client that moves to another CPU between its request and a bulk
# response: the request's event waits in the old CPU's stage while 1 MiB
# of the response comes in 16 KiB reads on the new one, past the byte
# budget of the reorder buffer in well under a millisecond.  The reads wait
# without their payload for the request, which tells the protocol: no gap,
# and the bytes exact.  (A pause after each: 1 MiB of 16 KiB copies is
# most of a ring, which a sanitizer build's reader drains slowly.)
cat >"$TMP/move.py" <<'PYCODE'
import os, socket, sys, time
addr, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpus = sorted(os.sched_getaffinity(0))
req = b"GET /big HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n"
sent = recv = 0
for i in range(20):
    s = socket.create_connection((addr, port), source_address=(src, 0))
    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
    s.sendall(req)
    sent += len(req)
    os.sched_setaffinity(0, {cpus[(i + 1) % len(cpus)]})
    while True:
        b = s.recv(16384)
        if not b:
            break
        recv += len(b)
    s.close()
    time.sleep(0.2)
print(sent, recv)
PYCODE
gaps0=$(metric /system/metrics qtap_system_sequence_gaps_total)
strip0=$(metric /system/metrics qtap_system_payloads_dropped_total)
e0=$(m "qtap_connection_bytes_recv_total{$EGRESS}")
c0=$(m "qtap_connection_close_total{$EGRESS}")
ci0=$(m "qtap_connection_close_total{$INGRESS}")
$PY "$TMP/move.py" "$SERVER_ADDR" "$HTTP_PORT" "$CLIENT_ADDR" >"$TMP/move.out"
ok $? "python3 fetched /big 20 times, moving CPU after each request ($(cat "$TMP/move.out"))"
settle $((c0 + 20)) $((ci0 + 20))
read -r _ mrecv <"$TMP/move.out"
d=$(($(m "qtap_connection_bytes_recv_total{$EGRESS}") - e0))
test "$d" = "${mrecv:-x}"; ok $? "egress bytes received = what python3 read ($d, ${mrecv:-})"
gaps1=$(metric /system/metrics qtap_system_sequence_gaps_total)
strip1=$(metric /system/metrics qtap_system_payloads_dropped_total)
test "$((${gaps1:-0} - ${gaps0:-0}))" = 0; ok $? "their events put back in order with no gap\
 ($((${gaps1:-0} - ${gaps0:-0})) gaps; $((${strip1:-0} - ${strip0:-0})) waited without their payload)"

# --- TCP Fast Open: the request rides on the SYN (curl --tcp-fastopen;
# nginx listens with fastopen, which the sysctl turns on for the server
# side).  The first connection fetches the cookie, the next two use it.
tfo_passive() {
	awk '$1 == "TcpExt:" { if (!h) { split($0, k); h = 1 } else
		for (i = 2; i <= NF; i++) if (k[i] == "TCPFastOpenPassive") print $i }' /proc/net/netstat
}
TFO_WAS=$(sysctl -n net.ipv4.tcp_fastopen)
sysctl -qw net.ipv4.tcp_fastopen=3
t0=$(tfo_passive)
o0=$(m "qtap_connection_open_total{$EGRESS}")
oi0=$(m "qtap_connection_open_total{$INGRESS}")
c0=$(m "qtap_connection_close_total{$EGRESS}")
ci0=$(m "qtap_connection_close_total{$INGRESS}")
es0=$(m "qtap_connection_bytes_sent_total{$EGRESS}")
er0=$(m "qtap_connection_bytes_recv_total{$EGRESS}")
is0=$(m "qtap_connection_bytes_sent_total{$INGRESS}")
ir0=$(m "qtap_connection_bytes_recv_total{$INGRESS}")
: >"$TMP/tfo.out"
for j in 1 2 3; do
	curl -s --tcp-fastopen --interface "$CLIENT_ADDR" -o /dev/null \
		-w '%{http_code} %{size_request} %{size_header} %{size_download}\n' \
		"http://$SERVER_ADDR:$HTTP_PORT/small" >>"$TMP/tfo.out"
done
t1=$(tfo_passive)
sysctl -qw net.ipv4.tcp_fastopen="$TFO_WAS"
TFO_WAS=
test "$(grep -c '^200 ' "$TMP/tfo.out")" = 3 && test $((t1 - t0)) -ge 2
ok $? "curl made 3 requests with Fast Open, nginx took $((t1 - t0)) on the SYN"
settle $((c0 + 3)) $((ci0 + 3))
test $(($(m "qtap_connection_open_total{$EGRESS}") - o0)) = 3 &&
	test $(($(m "qtap_connection_open_total{$INGRESS}") - oi0)) = 3 &&
	test $(($(m "qtap_connection_close_total{$EGRESS}") - c0)) = 3 &&
	test $(($(m "qtap_connection_close_total{$INGRESS}") - ci0)) = 3
ok $? "Fast Open: 3 connections opened and closed, egress from curl and ingress at nginx"
tsent=$(awk '{ s += $2 } END { print s }' "$TMP/tfo.out")
trecv=$(awk '{ s += $3 + $4 } END { print s }' "$TMP/tfo.out")
test $(($(m "qtap_connection_bytes_sent_total{$EGRESS}") - es0)) = "$tsent" &&
	test $(($(m "qtap_connection_bytes_recv_total{$INGRESS}") - ir0)) = "$tsent" &&
	test $(($(m "qtap_connection_bytes_recv_total{$EGRESS}") - er0)) = "$trecv" &&
	test $(($(m "qtap_connection_bytes_sent_total{$INGRESS}") - is0)) = "$trecv"
ok $? "Fast Open: bytes on both sides are curl's ($tsent sent, $trecv received)"

# --- the agent itself (filters.groups "qpoint"): with no allow-list, a
# client's connections to the agent are seen from the client's side only,
# until the group is dropped.  The client connects from an address of its
# own (the test's scrapes to the agent come from 127.0.0.1).
SCRAPER=127.0.0.47
AGENT_IN="direction=\"ingress\",remote_addr=\"$SCRAPER\",remote_port=\"\""
AGENT_OUT="direction=\"egress\",remote_addr=\"127.0.0.1\",remote_port=\"$PORT\""
# wait_at_least SERIES N: until the sample SERIES of /metrics reaches N (10
# s at most); false if it did not.
wait_at_least() {
	i=0
	while [ "$(m "$1")" -lt "$2" ]; do
		[ $i -ge 100 ] && return 1
		sleep 0.1
		i=$((i + 1))
	done
}
# groups_conf GROUPS: every process but those of GROUPS, loopback too.
groups_conf() {
	cat >"$TMP/qtap.conf" <<CONF
stacks = { default = { plugins = ( { type = "http_metrics"; } ); }; };
tap = { direction = "all"; ignore_loopback = false; http = { stack = "default"; };
  filters = { groups = [ $1 ]; }; };
CONF
}
# scrapes_seen: three requests to the agent from $SCRAPER; waits until the
# client's side of them closed (the agent's port as the remote one).
scrapes_seen() {
	out0=$(m "qtap_connection_close_total{$AGENT_OUT}")
	for i in 1 2 3; do
		curl -s --interface "$SCRAPER" -o /dev/null "$BASE/healthz"
	done
	wait_at_least "qtap_connection_close_total{$AGENT_OUT}" $((out0 + 3)) || return 1
	sleep 0.3
}
groups_conf '"qpoint"'
hup; ok $? "reload: every process but the agent"
scrapes_seen && test "$(m "qtap_connection_open_total{$AGENT_IN}")" = 0
ok $? "qpoint: curl's 3 connections to the agent seen from curl's side, none from the agent's"
groups_conf ''
hup; ok $? "reload: every process, the agent too"
scrapes_seen
wait_at_least "qtap_connection_close_total{$AGENT_IN}" 3
test "$(m "qtap_connection_open_total{$AGENT_IN}")" = 3 &&
	test "$(m "qtap_connection_close_total{$AGENT_IN}")" = 3
ok $? "without qpoint: the agent's side of the 3 connections seen too"
reload all false; ok $? "reload: back to the test's processes"

# --- nothing lost on the way.
lost=$(metric_sum /system/metrics 'qtap_system_events_lost_total{')
test "${lost:-0}" = 0; ok $? "no events lost in the kernel (${lost:-0})"
dropped=$(metric_sum /system/metrics 'qtap_system_queue_dropped_total{')
test "${dropped:-0}" = 0; ok $? "no events dropped in the queues (${dropped:-0})"
bad=$(metric_sum /system/metrics 'qtap_system_events_dropped_total{')
test "${bad:-0}" = 0; ok $? "no events dropped as invalid or for want of memory (${bad:-0})"
gaps=$(metric /system/metrics qtap_system_sequence_gaps_total)
test "${gaps:-0}" = 0; ok $? "no sequence gaps (${gaps:-0})"
grep 'given up as lost' "$TMP/agent.log" | diag
conn=$(metric_sum /system/metrics 'qtap_system_events_received_total{cpu="')
test "$conn" -gt 0; ok $? "events received ($conn)"

# --- a quiet host: a reader whose rings stayed empty for a second stops
# looking every 25 ms, and the first event after wakes it at once.
# now_ms: the monotonic-enough wall clock in milliseconds.
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}
# One request after 1.3 s of quiet, four times: the slowest to be counted
# (the readers' longest sleep is 1 s, so a missed wakeup shows).
slowest=0
k=0
while [ $k -lt 4 ]; do
	c0=$(m "qtap_connection_close_total{$EGRESS}")
	ci0=$(m "qtap_connection_close_total{$INGRESS}")
	sleep 1.3
	t0=$(now_ms)
	curl -s --interface "$CLIENT_ADDR" -o /dev/null "http://$SERVER_ADDR:$HTTP_PORT/small"
	i=0
	while [ $i -lt 100 ]; do
		[ "$(m "qtap_connection_close_total{$EGRESS}")" -gt "$c0" ] &&
			[ "$(m "qtap_connection_close_total{$INGRESS}")" -gt "$ci0" ] && break
		sleep 0.02
		i=$((i + 1))
	done
	dt=$(($(now_ms) - t0))
	[ "$dt" -gt "$slowest" ] && slowest=$dt
	k=$((k + 1))
done
test "$slowest" -lt 400
ok $? "a request after a quiet spell is counted at once (slowest of 4: $slowest ms)"

# reader_switches: the context switches of the agent's socket readers.
reader_switches() {
	for t in /proc/"$AGENT_PID"/task/*; do
		case $(cat "$t/comm") in
		qtap-sock*) awk '/ctxt_switches/ { s += $2 } END { print s }' "$t/status" ;;
		esac
	done | awk '{ s += $1 } END { print s + 0 }'
}
readers=$(cat /proc/"$AGENT_PID"/task/*/comm | grep -c '^qtap-sock')
# possible_cpus: how many CPUs the kernel may bring up (its per-CPU rings).
possible_cpus() {
	tr ',' '\n' </sys/devices/system/cpu/possible |
		awk -F- '{ n += NF == 2 ? $2 - $1 + 1 : 1 } END { print n }'
}
test "$readers" -eq "$(possible_cpus)"
ok $? "one socket reader per CPU by default ($readers readers, $(possible_cpus) CPUs)"
# Every test connection left out from now on, whatever else runs.
reload all true; ok $? "reload: ignore_loopback = true"
sleep 1.5
s0=$(reader_switches)
sleep 3
s1=$(reader_switches)
test $((s1 - s0)) -le $((readers * 8))
ok $? "idle readers wake about once a second ($((s1 - s0)) wakeups of $readers readers in 3 s)"

stop_agent
test "$AGENT_STATUS" = 0; ok $? "agent stops cleanly"
stop_nginx
finish

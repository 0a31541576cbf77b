#!/bin/sh
# End to end: TLS plaintext through the library probes, against real nginx
# (TLS, HTTP/1.1 and HTTP/2 through its OpenSSL) and real clients from
# 127.0.0.43: curl over HTTP/2 (OpenSSL), wget (GnuTLS), node (OpenSSL
# linked in), python3 requests with a keep-alive session started after the
# agent, and another started before it (found by the start-time scan).  Per client: the connection is
# seen, its plaintext reaches the parser in order (the request line and
# the status line, from --bpf-trace), the connection report names the
# library and the protocol, the bytes are the syscall layer's on both
# sides, and nothing is lost.  Then a client killed in the middle of a
# request leaves nothing behind, TLS inside a CONNECT tunnel is tied to
# its connection, and node's sessions one after another at reused
# addresses are each tied to their own.
. "$top_srcdir/tests/e2e/lib.sh"
require_root

PY=/usr/bin/python3
scrape_with_copy

start_nginx
ok $? "nginx serves TLS on $SERVER_ADDR:$TLS_PORT"

conf_only '/(nginx|curl|wget|node|python3(\\.[0-9]+)?)$'

# A requests session from 127.0.0.43, one GET of /small per line read from
# its fifo ("quit" ends it); it prints each status.  TAG names its output.
cat >"$TMP/session.py" <<'PYCODE'
import sys, requests, urllib3
urllib3.disable_warnings()
server, client, tag = sys.argv[1], sys.argv[2], sys.argv[3]
class Bound(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *a, **kw):
        kw["source_address"] = (client, 0)
        super().init_poolmanager(*a, **kw)
s = requests.Session()
s.mount("https://", Bound())
out = open(sys.argv[4], "a")
for line in sys.stdin:
    if line.strip() == "quit":
        break
    r = s.get("https://%s/small" % server, verify=False)
    out.write("%s %d %d\n" % (tag, r.status_code, len(r.content)))
    out.flush()
PYCODE
mkfifo "$TMP/before.in" "$TMP/after.in"
: >"$TMP/py.out"

# run_session FIFO N: N requests, then waits for their answers (at most 10 s).
run_session() {
	want=$(($(wc -l <"$TMP/py.out") + $2))
	j=0
	while [ $j -lt "$2" ]; do
		echo go >&"$1"
		j=$((j + 1))
	done
	j=0
	while [ "$(wc -l <"$TMP/py.out")" -lt "$want" ] && [ $j -lt 100 ]; do
		sleep 0.1
		j=$((j + 1))
	done
}

# start_session TAG FD: a session reading its fifo $TMP/TAG.in, which the
# test writes on FD; its pid in SESSION_PID.
start_session() {
	$PY "$TMP/session.py" "$SERVER_ADDR:$TLS_PORT" "$CLIENT_ADDR" "$1" "$TMP/py.out" \
		<"$TMP/$1.in" &
	SESSION_PID=$!
	eval "exec $2>\"\$TMP/$1.in\""
}

# The session started before the agent has loaded its TLS library already.
start_session before 7
BEFORE_PID=$SESSION_PID
run_session 7 1
test "$(grep -c '^before 200 100$' "$TMP/py.out")" = 1
ok $? "the session started before the agent works"

start_agent --config "$TMP/qtap.conf" --log-level debug --log-encoding json \
	--bpf-trace openssl,gnutls
ok $? "agent starts"
test "$(metric /system/metrics 'qtap_system_tls_attachments{library="openssl"}')" -ge 1 &&
	test "$(metric /system/metrics 'qtap_system_tls_attachments{library="gnutls"}')" -ge 1
ok $? "OpenSSL and GnuTLS libraries are attached"
test "$(metric_sum /system/metrics 'qtap_system_tls_attach_errors_total{')" = 0
ok $? "no attach errors"

# Clients.
curl -sk --http2 --interface "$CLIENT_ADDR" --resolve "test.example:$TLS_PORT:$SERVER_ADDR" \
	-o /dev/null -w '%{http_version} %{http_code}\n' "https://test.example:$TLS_PORT/small" \
	>"$TMP/curl.out"
test "$(cat "$TMP/curl.out")" = "2 200"; ok $? "curl gets /small over HTTP/2"
wget -q --no-check-certificate --bind-address="$CLIENT_ADDR" -O "$TMP/wget.out" \
	"https://$SERVER_ADDR:$TLS_PORT/small"
test "$(wc -c <"$TMP/wget.out")" = 100; ok $? "wget gets /small"
# node links OpenSSL in and drives it on memory buffers (its socket calls
# are its own, outside SSL_read and SSL_write).
node -e '
const https = require("https");
https.get({ host: process.argv[1], port: +process.argv[2], localAddress: process.argv[3],
	    path: "/small", rejectUnauthorized: false }, (r) => {
	let n = 0;
	r.on("data", (d) => { n += d.length; });
	r.on("end", () => { console.log(r.statusCode + " " + n); });
});' "$SERVER_ADDR" "$TLS_PORT" "$CLIENT_ADDR" >"$TMP/node.out" 2>&1
test "$(cat "$TMP/node.out")" = "200 100"; ok $? "node gets /small"
start_session after 8
AFTER_PID=$SESSION_PID
run_session 8 2
test "$(grep -c '^after 200 100$' "$TMP/py.out")" = 2
ok $? "the session started after the agent makes two requests on one connection"
run_session 7 2
test "$(grep -c '^before 200 100$' "$TMP/py.out")" = 3
ok $? "the session started before the agent makes two more"
echo quit >&7
echo quit >&8
exec 7>&- 8>&-
wait "$BEFORE_PID" "$AFTER_PID"

# Every connection of ours closed on both sides: 5 each way (curl, wget,
# node, two sessions).
EGRESS="direction=\"egress\",remote_addr=\"$SERVER_ADDR\",remote_port=\"$TLS_PORT\""
INGRESS="direction=\"ingress\",remote_addr=\"$CLIENT_ADDR\",remote_port=\"\""
i=0
while [ $i -lt 100 ]; do
	a=$(metric /metrics "qtap_connection_close_total{$EGRESS}")
	b=$(metric /metrics "qtap_connection_close_total{$INGRESS}")
	[ "${a:-0}" -ge 5 ] && [ "${b:-0}" -ge 5 ] && break
	sleep 0.1
	i=$((i + 1))
done
sleep 0.5
# The session started before the agent opened its connection before it
# too: it is learned on its first data, and counted then.
n=$(metric /metrics "qtap_connection_open_total{$EGRESS}")
test "$n" = 5
ok $? "egress: 5 connections opened (curl, wget, node, the later session, the earlier one learned): $n"
n=$(metric /metrics "qtap_connection_close_total{$EGRESS}")
test "$n" = 5
ok $? "egress: 5 closed: $n"
n=$(metric /metrics "qtap_connection_close_total{$INGRESS}")
test "$n" = 5
ok $? "ingress (nginx): 5 closed: $n"
test "$(metric /metrics "qtap_connection_active_total{$EGRESS}")" = 0 &&
	test "$(metric /metrics "qtap_connection_active_total{$INGRESS}")" = 0
ok $? "active back to 0 on both sides"

# The connection reports and the trace lines, per client.
$PY - "$TMP/agent.log" "$TLS_PORT" >"$TMP/report.out" 2>&1 <<'PYCODE'
import os, sys, re
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
log, port = sys.argv[1], sys.argv[2]
reports, trace = agentlog.read(log)
ours = [r for r in reports if r["destination"].endswith(":" + port)]
egress = {r["source"]: r for r in ours if r["direction"] == "egress"}
ingress = {r["source"]: r for r in ours if r["direction"] == "ingress"}
failed = []
def check(what, cond):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failed.append(what)
def lines_of(conn):
    out = []
    for t in trace:
        m = re.search(r'module=(\w+) op=(\w+) .* conn=(\d+) decision=(\w+) line="([^"]*)"', t)
        if m and m.group(3) == conn:
            out.append((m.group(1), m.group(2), m.group(4), m.group(5)))
    return out
want = {"curl": ("openssl", "http2", 1), "wget": ("gnutls", "http1", 1), "python3": ("openssl", "http1", 2),
        "node": ("nodetls", "http1", 1)}
module = {"openssl": "openssl", "gnutls": "gnutls", "nodetls": "openssl"}
seen = {}
for src, r in egress.items():
    c = r["comm"]
    if c not in want:
        continue
    lib, proto, requests = want[c]
    seen[c] = seen.get(c, 0) + 1
    name = "%s %s" % (c, src)
    check(name + ": tlsProbeTypesDetected " + lib, r["tlsProbeTypesDetected"] == [lib])
    check(name + ": l7Protocol " + proto, r["l7Protocol"] == proto)
    check(name + ": plaintext events", r["tlsDataEventCount"] > 0)
    check(name + ": bytes non-zero", r["bytesSent"] > 0 and r["bytesReceived"] > 0)
    peer = ingress.get(src)
    check(name + ": nginx's side seen", peer is not None)
    if peer is None:
        continue
    check(name + ": nginx's side through openssl", peer["tlsProbeTypesDetected"] == ["openssl"])
    check(name + ": nginx's side " + proto, peer["l7Protocol"] == proto)
    check(name + ": bytes sent = nginx's received (%d, %d)" % (r["bytesSent"], peer["bytesReceived"]),
          r["bytesSent"] == peer["bytesReceived"])
    check(name + ": bytes received = nginx's sent (%d, %d)" % (r["bytesReceived"], peer["bytesSent"]),
          r["bytesReceived"] == peer["bytesSent"])
    mine, theirs = lines_of(r["connId"]), lines_of(peer["connId"])
    writes = [l for (m, op, d, l) in mine if op in ("SSL_write", "gnutls_record_send") and l]
    reads = [l for (m, op, d, l) in mine if op in ("SSL_read", "gnutls_record_recv") and l]
    if proto == "http1":
        check(name + ": request lines in order %s" % writes, writes == ["GET /small HTTP/1.1"] * requests)
        check(name + ": status lines %s" % reads, reads == ["HTTP/1.1 200 OK"] * requests)
        sreads = [l for (m, op, d, l) in theirs if op == "SSL_read" and l]
        swrites = [l for (m, op, d, l) in theirs if op == "SSL_write" and l]
        check(name + ": nginx reads the request lines %s" % sreads, sreads == ["GET /small HTTP/1.1"] * requests)
        check(name + ": nginx writes the status lines %s" % swrites, swrites == ["HTTP/1.1 200 OK"] * requests)
    else:
        check(name + ": the HTTP/2 preface first %s" % writes, writes[:1] == ["PRI * HTTP/2.0"])
        sreads = [l for (m, op, d, l) in theirs if op == "SSL_read" and l]
        check(name + ": nginx reads the preface %s" % sreads, sreads[:1] == ["PRI * HTTP/2.0"])
    check(name + ": module " + module[lib] + " traced", all(m == module[lib] for (m, op, d, l) in mine) and mine)
check("clients seen %s" % seen, seen == {"curl": 1, "wget": 1, "python3": 2, "node": 1})
if seen.get("python3") != 2:
    # which way each python3 connection to nginx went, to tell a
    # connection not seen from one seen the wrong way round
    for r in reports:
        if r["comm"] == "python3":
            print("     python3 report: %s %s -> %s, %s, open %s" % (r["direction"], r["source"],
                  r["destination"], r["l7Protocol"], r["openTime"]))
sys.exit(1 if failed else 0)
PYCODE
ok $? "each client's connection: library, protocol, plaintext lines, bytes on both sides"
diag <"$TMP/report.out"

test "$(metric_sum /system/metrics 'qtap_system_events_lost_total{')" = 0 &&
	test "$(metric_sum /system/metrics 'qtap_system_queue_dropped_total{')" = 0 &&
	test "$(metric /system/metrics qtap_system_sequence_gaps_total)" = 0
ok $? "no events lost, dropped or out of sequence"
test "$(metric /system/metrics qtap_system_tls_calls_untied_total)" = 0
ok $? "every TLS call was tied to its connection"
test "$(metric_sum /system/metrics 'qtap_system_events_received_total{cpu="0",type="tls_data"}')" -gt 0 ||
	test "$(metric_sum /system/metrics 'qtap_system_events_received_total{cpu="1",type="tls_data"}')" -gt 0
ok $? "TLS data events are counted as received"

# A TLS exchange between two processes the filters leave out (a renamed
# curl and openssl s_server): the probes run in them (they are set once
# for every process that maps the library) but give nothing.
start_s_server; ok $? "openssl s_server answers on 127.0.0.1:$S_PORT"
tls_events() {
	scrape /system/metrics |
		awk '$0 == "scrape-failed" { failed = 1; exit }
			/^qtap_system_events_received_total\{.*type="tls_data"/ { s += $NF }
			END { if (failed) print "scrape-failed"; else print s + 0 }'
}
before=$(tls_events)
runs_before=$(tls_runs)
"$SCRAPE" -sk -o /dev/null "https://127.0.0.1:$S_PORT/"
s_status=$?
sleep 0.3
after=$(tls_events)
runs_after=$(tls_runs)
kill "$S_PID"
wait "$S_PID" 2>/dev/null
test "$s_status" = 0 && test "$after" = "$before" &&
	! grep -q "127.0.0.1:$S_PORT" "$TMP/agent.log"
ok $? "processes the filters leave out give no TLS event and no report ($before, $after)"
# Attached per library file, the probes still run in them (tlsproc.sh: not
# with --tls-attach process).
test -n "$runs_before" && test "$runs_after" -gt "$runs_before"
ok $? "the probes run in them all the same ($runs_before, $runs_after)"

# A client killed in the middle of a request: half a request line over
# TLS, then SIGKILL.  Its connection and nginx's end, active returns.
$PY - "$SERVER_ADDR" "$TLS_PORT" "$CLIENT_ADDR" "$TMP/half.ready" <<'PYCODE' &
import socket, ssl, sys, time
server, port, client, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((server, port), source_address=(client, 0))
s = ctx.wrap_socket(raw, server_hostname="test.example")
s.write(b"GET /half HTTP/1.1\r\nHost: test.example\r\n")
open(ready, "w").close()
time.sleep(60)
PYCODE
HALF_PID=$!
wait_file "$TMP/half.ready"; ok $? "the client sent half a request"
sleep 0.3
mid=$(metric /metrics "qtap_connection_active_total{$EGRESS}")
test "${mid:-0}" = 1; ok $? "the half-sent request's connection is active ($mid)"
kill -KILL "$HALF_PID"
wait "$HALF_PID" 2>/dev/null
i=0
while [ $i -lt 50 ]; do
	a=$(metric /metrics "qtap_connection_active_total{$EGRESS}")
	b=$(metric /metrics "qtap_connection_active_total{$INGRESS}")
	[ "${a:-0}" = 0 ] && [ "${b:-0}" = 0 ] && break
	sleep 0.1
	i=$((i + 1))
done
test "$a" = 0 && test "$b" = 0
ok $? "killed mid-request: active back to 0 on both sides ($a, $b)"
grep -q 'module=openssl op=SSL_write .*comm=python3.*line=\\"GET /half HTTP/1.1\\"' "$TMP/agent.log"
ok $? "the half request's line was seen before the kill"

# TLS inside a CONNECT tunnel: curl's connection to a proxy starts as
# plaintext HTTP (CONNECT), then carries TLS; its SSL calls are still tied
# to it.  The proxy (python3) relays to nginx whatever CONNECT names.
PROXY_PORT=$(free_port)
$PY - "$CLIENT_ADDR" "$PROXY_PORT" "$SERVER_ADDR" "$TLS_PORT" "$TMP/proxy.ready" <<'PYCODE' &
import socket, sys, threading
addr, port, server, sport, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(1)
ls.settimeout(20)
open(ready, "w").close()
c, _ = ls.accept()
c.settimeout(20)
head = b""
while b"\r\n\r\n" not in head:
    b = c.recv(4096)
    if not b:
        sys.exit(1)
    head += b
u = socket.create_connection((server, sport), timeout=20)
c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
t = threading.Thread(target=pump, args=(u, c))
t.start()
pump(c, u)
t.join()
PYCODE
PROXY_PID=$!
wait_file "$TMP/proxy.ready"; ok $? "the tunnelling proxy listens"
untied_before=$(metric /system/metrics qtap_system_tls_calls_untied_total)
curl -sk --http1.1 --interface "$CLIENT_ADDR" --proxy "http://$CLIENT_ADDR:$PROXY_PORT" \
	-o /dev/null -w '%{http_code}\n' "https://test.example:$TLS_PORT/tunnel" >"$TMP/tunnel.out"
wait "$PROXY_PID" 2>/dev/null
sleep 0.3
untied_after=$(metric /system/metrics qtap_system_tls_calls_untied_total)
test "$(cat "$TMP/tunnel.out")" = 404 &&
	grep -q 'module=openssl op=SSL_write .*comm=curl.*line=\\"GET /tunnel HTTP/1.1\\"' "$TMP/agent.log" &&
	grep -q 'module=openssl op=SSL_read .*comm=curl.*line=\\"HTTP/1.1 404 Not Found\\"' "$TMP/agent.log" &&
	test "$untied_after" = "$untied_before"
ok $? "TLS inside a CONNECT tunnel: curl's request and status lines ($(cat "$TMP/tunnel.out"), untied $untied_before -> $untied_after)"

# One node process, 40 connections one after another: each new session
# gets the address of the one freed before it, and each new socket often
# a destroyed one's, sometimes nginx's side of the next connection.  Each
# session's plaintext is still its own connection's, none is credited to
# another (nginx's) or dropped.
NODE_CONNS=40
untied_before=$(metric /system/metrics qtap_system_tls_calls_untied_total)
node -e '
const https = require("https");
let left = +process.argv[4];
function one() {
	https.get({ host: process.argv[1], port: +process.argv[2], localAddress: process.argv[3],
		    path: "/small", rejectUnauthorized: false, agent: false }, (r) => {
		r.on("data", () => {});
		r.on("end", () => {
			if (r.statusCode != 200) process.exit(1);
			if (--left > 0) setTimeout(one, 10); else console.log(process.pid);
		});
	});
}
one();' "$SERVER_ADDR" "$TLS_PORT" "$CLIENT_ADDR" "$NODE_CONNS" >"$TMP/nodeseq.out" 2>&1
ok $? "node makes $NODE_CONNS requests, each on a new connection"
NODE_PID=$(cat "$TMP/nodeseq.out")
i=0
while [ $i -lt 100 ]; do
	[ "$(grep -c "\"pid\":$NODE_PID," "$TMP/agent.log")" -ge "$NODE_CONNS" ] && break
	sleep 0.1
	i=$((i + 1))
done
sleep 0.3
untied_after=$(metric /system/metrics qtap_system_tls_calls_untied_total)
$PY - "$TMP/agent.log" "$TLS_PORT" "$NODE_PID" "$NODE_CONNS" >"$TMP/nodeseq.report" 2>&1 <<'PYCODE'
import os, sys, re
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
log, port, pid, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
reports, trace = agentlog.read(log)
lines = {}
for t in trace:
    m = re.search(r'module=(\w+) op=(\w+) .* conn=(\d+) decision=(\w+) line="([^"]*)"', t)
    if m and m.group(5):
        lines.setdefault(m.group(3), []).append((m.group(2), m.group(5)))
mine = [r for r in reports if r["pid"] == pid and r["direction"] == "egress"]
peers = {r["source"]: r for r in reports
         if r["direction"] == "ingress" and r["destination"].endswith(":" + port)}
bad = []
for r in mine:
    peer = peers.get(r["source"])
    got = (r["tlsProbeTypesDetected"], r["l7Protocol"], lines.get(r["connId"]),
           peer and peer["tlsProbeTypesDetected"], peer and lines.get(peer["connId"]))
    if got != (["nodetls"], "http1", [("SSL_write", "GET /small HTTP/1.1"), ("SSL_read", "HTTP/1.1 200 OK")],
               ["openssl"], [("SSL_read", "GET /small HTTP/1.1"), ("SSL_write", "HTTP/1.1 200 OK")]):
        bad.append("%s %s" % (r["source"], got))
print("%d of node's connections, %d not as they should be" % (len(mine), len(bad)))
for b in bad:
    print("  " + b)
sys.exit(0 if len(mine) == want and not bad else 1)
PYCODE
ok $? "each session's request and status lines on its own connection, nginx's on nginx's, through their own libraries"
diag <"$TMP/nodeseq.report"
test "$untied_after" = "$untied_before"
ok $? "every one of them tied ($untied_before -> $untied_after)"

stop_agent
test "$AGENT_STATUS" = 0; ok $? "agent stops cleanly"
stop_nginx
finish

#!/bin/sh
# End to end: --tls-attach process.  The TLS probes are attached for each
# process the filters allow (here nginx) and for no other:
# - nginx started before the agent (master and worker) is found by the
#   start-time scan; a second nginx started after it gets its links at its
#   exec and its worker at its fork, and loses them when it exits;
# - each allowed process's TLS plaintext is seen (nginx's side of a curl
#   request, with the request line from its SSL_read), and its calls run
#   the probes;
# - a TLS exchange between two processes the filters leave out (curl and
#   openssl s_server) runs the probes not once: the breakpoints are not in
#   them (tls.sh checks that with the default, per library file, they run);
# - a reload that leaves nginx out takes its links away, and one that lets
#   it in again gives them back: its plaintext is seen again;
# - a client exec'd by the second thread of a process that had links (the
#   links were bound to the leader the exec replaced) gets new ones.
. "$top_srcdir/tests/e2e/lib.sh"
require_root
scrape_with_copy
PY=/usr/bin/python3

# openssl_links: the openssl attachments (per process here).
openssl_links() {
	metric /system/metrics 'qtap_system_tls_attachments{library="openssl"}'
}

# wait_links N: until there are N openssl attachments (10 s at most).
wait_links() {
	i=0
	while [ "$(openssl_links)" != "$1" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	test "$(openssl_links)" = "$1"
}

# get PORT PATH: one HTTP/1.1 request over TLS with curl (left out by the
# filters); prints the status.
get() {
	curl -sk --http1.1 --interface "$CLIENT_ADDR" --resolve "test.example:$1:$SERVER_ADDR" \
		-o /dev/null -w '%{http_code}\n' "https://test.example:$1$2"
}

start_nginx
ok $? "nginx (the one started before the agent) serves TLS on $SERVER_ADDR:$TLS_PORT"
A_PID=$NGINX_PID
A_TLS=$TLS_PORT

conf_only '/nginx$'

start_agent --config "$TMP/qtap.conf" --tls-attach process --log-level debug \
	--log-encoding json --bpf-trace openssl
ok $? "agent starts with --tls-attach process"
# nginx's master and worker, each on every TLS library file the system has.
per_nginx=$(openssl_links)
test "${per_nginx:-0}" -ge 2 && test $((per_nginx % 2)) = 0
ok $? "the running nginx's two processes have links ($per_nginx)"
test "$(metric_sum /system/metrics 'qtap_system_tls_attach_errors_total{')" = 0
ok $? "no attach errors"

runs_before=$(tls_runs)
test "$(get "$A_TLS" /small)" = 200
ok $? "curl gets /small from the first nginx"
sleep 0.3
runs_after=$(tls_runs)
test -n "$runs_before" && test "$runs_after" -gt "$runs_before"
ok $? "nginx's TLS calls run the probes ($runs_before, $runs_after)"

# A second nginx, started after the agent: its own links, its worker's at
# its fork.
TMP_A=$TMP
TMP=$TMP/b
mkdir -p "$TMP"
start_nginx
ok $? "a second nginx starts after the agent"
B_PID=$NGINX_PID
B_TLS=$TLS_PORT
TMP=$TMP_A
NGINX_PID=$A_PID
wait_links $((2 * per_nginx))
ok $? "its master and worker get links too: $(openssl_links)"
test "$(get "$B_TLS" /small)" = 200
ok $? "curl gets /small from the second nginx"

# An exchange between two processes the filters leave out.
start_s_server; ok $? "openssl s_server answers on 127.0.0.1:$S_PORT"
before=$(tls_runs)
j=0
answered=0
while [ $j -lt 5 ]; do
	curl -sfk -o /dev/null "https://127.0.0.1:$S_PORT/" && answered=$((answered + 1))
	j=$((j + 1))
done
after=$(tls_runs)
test "$answered" = 5; ok $? "s_server answered the 5 requests ($answered)"
kill "$S_PID"
wait "$S_PID" 2>/dev/null
test -n "$before" && test "$after" = "$before"
ok $? "5 TLS requests between processes the filters leave out run no probe ($before, $after)"

sleep 0.5
$PY - "$TMP/agent.log" "$A_TLS" "$B_TLS" >"$TMP/report.out" 2>&1 <<'PYCODE'
import os, sys, re
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
log, ports = sys.argv[1], sys.argv[2:]
reports, trace = agentlog.read(log)
failed = []
def check(what, cond):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failed.append(what)
for port in ports:
    ours = [r for r in reports if r["destination"].endswith(":" + port)]
    ingress = [r for r in ours if r["direction"] == "ingress"]
    egress = [r for r in ours if r["direction"] == "egress"]
    check("nginx on %s: one connection, its own side only (%d, %d)" % (port, len(ingress), len(egress)),
          len(ingress) == 1 and not egress)
    if len(ingress) != 1:
        continue
    r = ingress[0]
    check("nginx on %s: tlsProbeTypesDetected openssl" % port, r["tlsProbeTypesDetected"] == ["openssl"])
    check("nginx on %s: l7Protocol http1" % port, r["l7Protocol"] == "http1")
    reads = []
    for t in trace:
        m = re.search(r'module=openssl op=SSL_read .* conn=(\d+) decision=\w+ line="([^"]*)"', t)
        if m and m.group(1) == r["connId"] and m.group(2):
            reads.append(m.group(2))
    check("nginx on %s reads the request line %s" % (port, reads), reads == ["GET /small HTTP/1.1"])
sys.exit(1 if failed else 0)
PYCODE
ok $? "each nginx's side of its request: library, protocol, request line"
diag <"$TMP/report.out"

# The second nginx exits: its links go.
NGINX_PID=$B_PID
stop_nginx
NGINX_PID=$A_PID
wait_links "$per_nginx"
ok $? "the second nginx's links are gone with it: $(openssl_links)"

# A reload that leaves nginx out, then one that lets it in again.
conf_only '/no-such-program$'
hup; ok $? "reload: nginx left out"
wait_links 0
ok $? "a reload that leaves nginx out takes its links: $(openssl_links)"
sleep 1	# the links are closed in the background (the kernel's grace periods)
before=$(tls_runs)
test "$(get "$A_TLS" /small)" = 200
sleep 0.3
after=$(tls_runs)
test -n "$before" && test "$after" = "$before"
ok $? "its TLS calls then run no probe ($before, $after)"
conf_only '/nginx$'
hup; ok $? "reload: nginx let in again"
wait_links "$per_nginx"
ok $? "a reload that lets it in gives them back: $(openssl_links)"
nginx_reads() {
	grep -c 'module=openssl op=SSL_read .*comm=nginx.*line=\\"GET /again HTTP/1.1\\"' "$TMP/agent.log"
}
get "$A_TLS" /again >/dev/null
i=0
while [ "$(nginx_reads)" = 0 ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
test "$(nginx_reads)" = 1
ok $? "its plaintext is seen again (the request line of /again)"

# A process that is let in and has its links, whose second thread then
# execs a client: the links were bound to the leader that exec replaced,
# so they are made again.
conf_only '/(nginx|python3(\\.[0-9]+)?)$'
hup; ok $? "reload: nginx and python3 let in"
$PY - "$SERVER_ADDR" "$A_TLS" <<'PYCODE'
import os, sys, threading, time
client = '''
import socket, ssl, sys, time
time.sleep(0.5)
c = ssl._create_unverified_context()
s = c.wrap_socket(socket.create_connection((sys.argv[1], int(sys.argv[2]))))
s.write(b"GET /by-thread HTTP/1.1\\r\\nHost: test.example\\r\\nConnection: close\\r\\n\\r\\n")
s.read()
'''
time.sleep(0.5)	# its links are in place
t = threading.Thread(target=os.execv, args=(sys.executable, [sys.executable, "-c", client] + sys.argv[1:]))
t.start()
t.join()
PYCODE
wait_line "$TMP/agent.log" \
	'module=openssl op=SSL_write .*comm=python3.*line=\\"GET /by-thread HTTP/1.1\\"' 30
ok $? "a client exec'd by a process's second thread is seen (its request line)"

test "$(metric_sum /system/metrics 'qtap_system_events_lost_total{')" = 0 &&
	test "$(metric /system/metrics qtap_system_tls_calls_untied_total)" = 0
ok $? "no events lost, every TLS call tied"

stop_agent
test "$AGENT_STATUS" = 0; ok $? "agent stops cleanly"
stop_nginx
finish

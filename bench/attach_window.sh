#!/bin/sh
# What --tls-attach process misses: short-lived TLS clients started after
# the agent, each making one request to nginx over TLS (curl, wget, python3
# ssl), RUNS times each, with the TLS probes attached per library file
# (library) and per allowed process (process); prints, per mode and client,
# how many of its connections gave plaintext.  With library every one
# should; with process a client whose first TLS call comes before its
# probes are registered gives none.
#
#   make bench-tls-attach-window     (from the build directory, as root)
#   RUNS=20 bench/attach_window.sh
#
# Needs nginx, curl, wget and python3.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir
RUNS=${RUNS:-10}
PY=/usr/bin/python3
. "$top_srcdir/tests/e2e/lib.sh"
require_root
scrape_with_copy

start_nginx || { echo "nginx did not start"; exit 1; }
conf_only '/(curl|wget|python3(\\.[0-9]+)?)$'

for mode in library process; do
	start_agent --config "$TMP/qtap.conf" --tls-attach "$mode" --log-level debug \
		--log-encoding json || { echo "agent did not start"; exit 1; }
	i=0
	while [ $i -lt "$RUNS" ]; do
		curl -sk --http1.1 --resolve "test.example:$TLS_PORT:$SERVER_ADDR" -o /dev/null \
			"https://test.example:$TLS_PORT/small"
		wget -q --no-check-certificate -O /dev/null "https://$SERVER_ADDR:$TLS_PORT/small"
		$PY -c '
import socket, ssl, sys
c = ssl._create_unverified_context()
s = c.wrap_socket(socket.create_connection((sys.argv[1], int(sys.argv[2]))))
s.write(b"GET /small HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
s.read()' "$SERVER_ADDR" "$TLS_PORT"
		i=$((i + 1))
	done
	sleep 1
	stop_agent
	$PY - "$TMP/agent.log" "$TLS_PORT" "$mode" <<'PYCODE'
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "tests", "e2e"))
import agentlog
log, port, mode = sys.argv[1], sys.argv[2], sys.argv[3]
reports, _ = agentlog.read(log)
seen, plain = {}, {}
for r in reports:
    if r["direction"] != "egress" or not r["destination"].endswith(":" + port):
        continue
    c = r["comm"]
    seen[c] = seen.get(c, 0) + 1
    if r["tlsDataEventCount"] > 0:
        plain[c] = plain.get(c, 0) + 1
for c in sorted(seen):
    print("%-8s %-8s %d connections, %d with plaintext" % (mode, c, seen[c], plain.get(c, 0)))
PYCODE
done
stop_nginx

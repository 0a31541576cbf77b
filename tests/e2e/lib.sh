# Shared by the end-to-end tests: TAP output, and starting and stopping a
# real agent.  Sourced, not run.
: "${top_srcdir:?run through make check}" "${top_builddir:?run through make check}"
export top_srcdir top_builddir
QTAP=$top_builddir/src/qtap
# The client that reads the agent's endpoints (a test may use a copy that
# its filters leave out).
CURL=${CURL:-curl}
TMP=$(mktemp -d /tmp/qtap-e2e.XXXXXX)
AGENT_PID=
n_tests=0
n_failed=0

cleanup() {
	# a test that turned TCP Fast Open on for the server side
	if [ -n "${TFO_WAS:-}" ]; then
		sysctl -qw net.ipv4.tcp_fastopen="$TFO_WAS"
	fi
	# a test that turned the kernel's BPF run statistics on
	if [ -n "${BPF_STATS_WAS:-}" ]; then
		sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
	fi
	if [ -n "${NGINX_PID:-}" ]; then
		# the workers first: they would outlive their master
		pkill -KILL -P "$NGINX_PID" 2>/dev/null
		kill -KILL "$NGINX_PID" 2>/dev/null
		wait "$NGINX_PID" 2>/dev/null
	fi
	if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
		kill -KILL "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null
	fi
	# QTAP_E2E_KEEP=DIR keeps the test's files (the agent's log among
	# them) in DIR/NAME for a look after the run.
	if [ -n "${QTAP_E2E_KEEP:-}" ]; then
		mkdir -p "$QTAP_E2E_KEEP" &&
			rm -rf "$QTAP_E2E_KEEP/${0##*/}" &&
			cp -r "$TMP" "$QTAP_E2E_KEEP/${0##*/}"
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
# Killed by a signal, the shell would skip the EXIT trap and leave the
# agent running, its probes attached for the tests after (SIGPIPE: a
# write to a client's fifo after the client died).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

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

# free_port: a TCP port that nothing holds now, on any address (the
# servers bind 127.0.0.42, the agent 127.0.0.1).
free_port() {
	# never one already handed out in this test: a port given back to the
	# kernel unbound can come round again at once (nginx refused a
	# configuration whose two ports were the same)
	while :; do
		fp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
		grep -qx "$fp_port" "$TMP/ports" 2>/dev/null || break
	done
	echo "$fp_port" >>"$TMP/ports"
	echo "$fp_port"
}

# scrape_with_copy: the endpoints are read with a renamed copy of curl,
# $SCRAPE, which a test's filters can leave out while tracing curl itself.
scrape_with_copy() {
	SCRAPE=$TMP/qtap-scrape
	cp "$(command -v curl)" "$SCRAPE"
	CURL=$SCRAPE
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
		code=$("$CURL" -s -o /dev/null -w '%{http_code}' "$BASE/readyz" 2>/dev/null)
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

# scrape ENDPOINT: the page, or "scrape-failed" and a false status when the
# agent did not answer it with 200: never a page read as empty, whose
# every sample would look absent (0).
scrape() {
	sc_page=$("$CURL" -sf "$BASE$1") || {
		echo scrape-failed
		return 1
	}
	printf '%s\n' "$sc_page"
}

# metric ENDPOINT SAMPLE: the value of one sample line ("name{labels}"), or
# nothing when absent; "scrape-failed" (no number) when the agent did not
# answer.
metric() {
	scrape "$1" | awk -v want="$2" '
		$0 == "scrape-failed" { print; exit }
		index($0, want " ") == 1 { print $NF; exit }'
}

# metric_sum ENDPOINT PREFIX: the sum of every sample whose line starts
# with PREFIX (e.g. 'qtap_system_events_received_total{' summed over cpus);
# "scrape-failed" as metric.
metric_sum() {
	scrape "$1" | awk -v want="$2" '
		$0 == "scrape-failed" { failed = 1; exit }
		index($0, want) == 1 { sum += $NF; n++ }
		END { if (failed) print "scrape-failed"; else if (n) printf "%.0f\n", sum; else print "" }'
}

# hup [RESULT]: SIGHUP to the agent, then waits until it has counted one
# more reload of RESULT ("success" unless told, or "failure"), 5 s at most;
# false if it did not.  (The agent logs what a reload says before it
# counts it.)
hup() {
	hup_result=${1:-success}
	hup_before=$(metric /system/metrics "qtap_system_config_reloads_total{result=\"$hup_result\"}")
	kill -HUP "$AGENT_PID"
	i=0
	while [ $i -lt 50 ]; do
		hup_now=$(metric /system/metrics "qtap_system_config_reloads_total{result=\"$hup_result\"}")
		[ "${hup_now:-0}" -gt "${hup_before:-0}" ] 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# --- nginx on loopback ----------------------------------------------------
# The server listens on 127.0.0.42 and clients connect from 127.0.0.43, so
# the test's connections have label values of their own on a busy host.
SERVER_ADDR=127.0.0.42
CLIENT_ADDR=127.0.0.43

# start_nginx: nginx in the foreground (master + NGINX_WORKERS workers,
# default one; "auto" for one per CPU) with plain
# HTTP/1.1 on $HTTP_PORT, plain HTTP/2 (prior knowledge) on $H2C_PORT,
# TLS (HTTP/1.1 and HTTP/2) on $TLS_PORT for the name test.example, and
# both behind a PROXY protocol header on $PROXY_PORT and $PROXY_TLS_PORT
# (what a load balancer in front sends first), serving
# $TMP/www.  Files: /small (100 bytes), /big
# (1 MiB).
start_nginx() {
	HTTP_PORT=$(free_port)
	TLS_PORT=$(free_port)
	H2C_PORT=$(free_port)
	PROXY_PORT=$(free_port)
	PROXY_TLS_PORT=$(free_port)
	mkdir -p "$TMP/www" "$TMP/nginx"
	head -c 100 /dev/zero | tr '\0' 'a' >"$TMP/www/small"
	head -c 1048576 /dev/urandom >"$TMP/www/big"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test.example \
		-addext subjectAltName=DNS:test.example \
		-keyout "$TMP/nginx/key.pem" -out "$TMP/nginx/cert.pem" >/dev/null 2>&1 || return 1
	cat >"$TMP/nginx/nginx.conf" <<CONF
user root;
worker_processes ${NGINX_WORKERS:-1};
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	default_type application/octet-stream;
	keepalive_requests 1000;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	server {
		# (Fast Open takes effect once net.ipv4.tcp_fastopen has
		# the server bit, 2: sock.sh sets it for its test)
		listen $SERVER_ADDR:$HTTP_PORT fastopen=64;
		listen $SERVER_ADDR:$TLS_PORT ssl http2;
		listen $SERVER_ADDR:$H2C_PORT http2;
		listen $SERVER_ADDR:$PROXY_PORT proxy_protocol;
		listen $SERVER_ADDR:$PROXY_TLS_PORT ssl proxy_protocol;
		server_name test.example;
		ssl_certificate $TMP/nginx/cert.pem;
		ssl_certificate_key $TMP/nginx/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		root $TMP/www;
	}
}
CONF
	nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" >"$TMP/nginx/stdout" 2>&1 &
	NGINX_PID=$!
	i=0
	while [ $i -lt 100 ]; do
		# this nginx, serving the file (not another server on the port)
		kill -0 "$NGINX_PID" 2>/dev/null || break
		curl -sf -o /dev/null "http://$SERVER_ADDR:$HTTP_PORT/small" 2>/dev/null && return 0
		sleep 0.05
		i=$((i + 1))
	done
	diag <"$TMP/nginx/error.log"
	return 1
}

stop_nginx() {
	[ -n "${NGINX_PID:-}" ] || return 0
	kill -QUIT "$NGINX_PID" 2>/dev/null
	wait "$NGINX_PID" 2>/dev/null
	NGINX_PID=
}

# --- TLS helpers ----------------------------------------------------------

# conf_only REGEX: $TMP/qtap.conf traces every direction, loopback too, of
# the executables REGEX matches (an allow-list entry) and of none other.
# REGEX is written into a libconfig string: a backslash is written \\.
conf_only() {
	cat >"$TMP/qtap.conf" <<CONF
tap = {
  direction = "all";
  ignore_loopback = false;
  filters = {
    groups = [ "qpoint" ];
    custom = ( { exe = "$1"; strategy = "regex"; only = true; } );
  };
};
CONF
}

# start_s_server: openssl s_server with nginx's certificate on
# 127.0.0.1:$S_PORT (its pid in S_PID), answering once $SCRAPE can fetch
# from it (5 s at most; false if it did not).
start_s_server() {
	S_PORT=$(free_port)
	openssl s_server -quiet -www -accept "127.0.0.1:$S_PORT" -cert "$TMP/nginx/cert.pem" \
		-key "$TMP/nginx/key.pem" >"$TMP/s_server.out" 2>&1 &
	S_PID=$!
	i=0
	until "$SCRAPE" -sk -o /dev/null "https://127.0.0.1:$S_PORT/" 2>/dev/null; do
		[ $i -ge 50 ] && return 1
		sleep 0.1
		i=$((i + 1))
	done
}

# tls_runs: how many times the TLS entry probe has run (the kernel's count).
tls_runs() {
	metric /system/metrics 'qtap_system_bpf_program_runs_total{program="tls_enter"}'
}

# wait_file FILE: until FILE exists (10 s at most); false if it does not.
wait_file() {
	i=0
	while [ ! -e "$1" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	test -e "$1"
}

# wait_line FILE PATTERN [TENTHS]: until FILE has a line matching PATTERN
# (a grep regex), TENTHS tenths of a second at most (100 unless told);
# grep's status.
wait_line() {
	i=0
	until grep -q "$2" "$1" 2>/dev/null || [ $i -ge "${3:-100}" ]; do
		sleep 0.1
		i=$((i + 1))
	done
	grep -q "$2" "$1" 2>/dev/null
}

/* Every metric family, defined once: the exposition and qtap-metrics(7)
 * are both driven from metric_defs[]. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/roff.h"

/* HTTP durations in microseconds (exposed in ms): 0.1 ms .. 600000 ms. */
static const uint64_t http_duration_us[] = {
	100, 500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
	120000000, 300000000, 600000000,
};

static const uint64_t size_bytes[] = {
	1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 50000000,
};

/* Connection durations in microseconds (exposed in ms): 1 ms .. 30 min. */
static const uint64_t conn_duration_us[] = {
	1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000,
	250000000, 500000000, 1000000000, 1800000000,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define HTTP_LABELS 4, { "method", "host", "status_code", "protocol" }
#define CONN_LABELS 3, { "direction", "remote_addr", "remote_port" }
#define NO_LABELS 0, { NULL }

#define APP METRICS_ENDPOINT_APP
#define SYS METRICS_ENDPOINT_SYSTEM

#define HIST(b, s) N(b), b, s
#define PLAIN(s) 0, NULL, s

const struct metric_def metric_defs[M__COUNT] = {
	[M_HTTP_REQUESTS_TOTAL] = {
		"qtap_http_requests_total", METRIC_COUNTER, APP, METRIC_F_HTTP,
		"Total number of HTTP requests observed.",
		HTTP_LABELS, PLAIN(1) },
	[M_HTTP_REQUESTS_DURATION_MS] = {
		"qtap_http_requests_duration_ms", METRIC_HISTOGRAM, APP, METRIC_F_HTTP,
		"Request duration distribution in milliseconds, from the start of the request to the first byte of the response.",
		HTTP_LABELS, HIST(http_duration_us, 1000) },
	[M_HTTP_REQUESTS_SIZE_BYTES] = {
		"qtap_http_requests_size_bytes", METRIC_HISTOGRAM, APP, METRIC_F_HTTP,
		"Request payload size distribution in bytes (start line or HEADERS plus body, per message).",
		HTTP_LABELS, HIST(size_bytes, 1) },
	[M_HTTP_RESPONSES_TOTAL] = {
		"qtap_http_responses_total", METRIC_COUNTER, APP, METRIC_F_HTTP,
		"Total number of HTTP responses observed.",
		HTTP_LABELS, PLAIN(1) },
	[M_HTTP_RESPONSES_DURATION_MS] = {
		"qtap_http_responses_duration_ms", METRIC_HISTOGRAM, APP, METRIC_F_HTTP,
		"Response duration distribution in milliseconds, from the first byte to the last byte of the response.",
		HTTP_LABELS, HIST(http_duration_us, 1000) },
	[M_HTTP_RESPONSES_SIZE_BYTES] = {
		"qtap_http_responses_size_bytes", METRIC_HISTOGRAM, APP, METRIC_F_HTTP,
		"Response payload size distribution in bytes (status line or HEADERS plus body, per message).",
		HTTP_LABELS, HIST(size_bytes, 1) },
	[M_HTTP_DURATION_MS] = {
		"qtap_http_duration_ms", METRIC_HISTOGRAM, APP, METRIC_F_HTTP,
		"Combined request and response duration distribution in milliseconds, from the start of the request to the last byte of the response, over all traffic.",
		NO_LABELS, HIST(http_duration_us, 1000) },

	[M_CONNECTION_OPEN_TOTAL] = {
		"qtap_connection_open_total", METRIC_COUNTER, APP, 0,
		"Total number of connections opened.",
		CONN_LABELS, PLAIN(1) },
	[M_CONNECTION_CLOSE_TOTAL] = {
		"qtap_connection_close_total", METRIC_COUNTER, APP, 0,
		"Total number of connections closed.",
		CONN_LABELS, PLAIN(1) },
	[M_CONNECTION_ACTIVE_TOTAL] = {
		"qtap_connection_active_total", METRIC_GAUGE, APP, 0,
		"Number of currently active connections.",
		CONN_LABELS, PLAIN(1) },
	[M_CONNECTION_BYTES_SENT_TOTAL] = {
		"qtap_connection_bytes_sent_total", METRIC_COUNTER, APP, 0,
		"Total bytes sent across all connections.",
		CONN_LABELS, PLAIN(1) },
	[M_CONNECTION_BYTES_RECV_TOTAL] = {
		"qtap_connection_bytes_recv_total", METRIC_COUNTER, APP, 0,
		"Total bytes received across all connections.",
		CONN_LABELS, PLAIN(1) },
	[M_CONNECTION_DURATION_MS] = {
		"qtap_connection_duration_ms", METRIC_HISTOGRAM, APP, 0,
		"Connection duration distribution in milliseconds.",
		CONN_LABELS, HIST(conn_duration_us, 1000) },
	[M_CONNECTION_PROTOCOL_TOTAL] = {
		"qtap_connection_protocol_total", METRIC_COUNTER, APP, 0,
		"Total connections by protocol type (http1, http2, tls, other).",
		1, { "protocol" }, PLAIN(1) },
	[M_CONNECTION_TLS_HANDSHAKE_TOTAL] = {
		"qtap_connection_tls_handshake_total", METRIC_COUNTER, APP, 0,
		"Total number of TLS handshakes completed, by SNI and TLS version.",
		5, { "direction", "remote_addr", "remote_port", "sni", "version" }, PLAIN(1) },

	[M_SYSTEM_EVENTS_RECEIVED_TOTAL] = {
		"qtap_system_events_received_total", METRIC_COUNTER, SYS, 0,
		"Events read from the kernel ring buffers, by CPU and event type.",
		2, { "cpu", "type" }, PLAIN(1) },
	[M_SYSTEM_EVENTS_LOST_TOTAL] = {
		"qtap_system_events_lost_total", METRIC_COUNTER, SYS, 0,
		"Events the kernel dropped because its buffer was full, by CPU and event type "
		"(conn_open also counts each call or state change of a connection the kernel's "
		"connection table had no room for: none of its events are written; after "
		"process events are lost, the process table is compared with /proc).",
		2, { "cpu", "type" }, PLAIN(1) },
	[M_SYSTEM_EVENTS_DROPPED_TOTAL] = {
		"qtap_system_events_dropped_total", METRIC_COUNTER, SYS, 0,
		"Events the agent read and could not use, by reason: invalid (not the record "
		"layout of this agent's programs: a mismatched build, logged once) or no_memory "
		"(no memory to track their connection).",
		1, { "reason" }, PLAIN(1) },
	[M_SYSTEM_QUEUE_DEPTH] = {
		"qtap_system_queue_depth", METRIC_GAUGE, SYS, 0,
		"Events waiting in a worker queue.",
		1, { "worker" }, PLAIN(1) },
	[M_SYSTEM_QUEUE_DROPPED_TOTAL] = {
		"qtap_system_queue_dropped_total", METRIC_COUNTER, SYS, 0,
		"Events dropped because a worker queue was full.",
		1, { "worker" }, PLAIN(1) },
	[M_SYSTEM_SEQUENCE_GAPS_TOTAL] = {
		"qtap_system_sequence_gaps_total", METRIC_COUNTER, SYS, 0,
		"Gaps detected in the per-connection event sequence numbers.",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_PAYLOADS_DROPPED_TOTAL] = {
		"qtap_system_payloads_dropped_total", METRIC_COUNTER, SYS, 0,
		"Data events kept without their payload while they waited for their "
		"connection's earlier events and its reorder buffer's bytes were full (byte "
		"counts stay exact; what the payload held is not parsed).",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_PARSE_ERRORS_TOTAL] = {
		"qtap_system_parse_errors_total", METRIC_COUNTER, SYS, 0,
		"Protocol parse errors, by protocol.",
		1, { "protocol" }, PLAIN(1) },
	[M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL] = {
		"qtap_system_bpf_program_runs_total", METRIC_COUNTER, SYS, 0,
		"Times each eBPF program ran (counted by the programs, or the kernel's counts with "
		"capture.kernel_bpf_stats).",
		1, { "program" }, PLAIN(1) },
	[M_SYSTEM_BPF_PROGRAM_RUN_SECONDS_TOTAL] = {
		"qtap_system_bpf_program_run_seconds_total", METRIC_COUNTER, SYS, 0,
		"Time spent running each eBPF program in seconds (one run in 16 timed by the programs "
		"and counted for 16, or the kernel's figures with capture.kernel_bpf_stats).",
		1, { "program" }, PLAIN(1000000000) },
	[M_SYSTEM_BPF_PROGRAM_MISSES_TOTAL] = {
		"qtap_system_bpf_program_misses_total", METRIC_COUNTER, SYS, 0,
		"Runs of each eBPF program the kernel skipped: the program was already running "
		"on that CPU when an interrupt hit the same hook, so that call was not seen "
		"(kernel counts).",
		1, { "program" }, PLAIN(1) },
	[M_SYSTEM_CONNECTIONS_TRACKED] = {
		"qtap_system_connections_tracked", METRIC_GAUGE, SYS, 0,
		"Connections currently tracked by the agent.",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_PROCESSES_TRACKED] = {
		"qtap_system_processes_tracked", METRIC_GAUGE, SYS, 0,
		"Processes currently tracked by the agent.",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_TLS_ATTACHMENTS] = {
		"qtap_system_tls_attachments", METRIC_GAUGE, SYS, 0,
		"TLS library files with probes attached (with --tls-attach process, one per file and process), by library (openssl, gnutls, nodetls).",
		1, { "library" }, PLAIN(1) },
	[M_SYSTEM_TLS_ATTACH_ERRORS_TOTAL] = {
		"qtap_system_tls_attach_errors_total", METRIC_COUNTER, SYS, 0,
		"Failures to attach the probes of a TLS library file, by library.",
		1, { "library" }, PLAIN(1) },
	[M_SYSTEM_TLS_CALLS_UNTIED_TOTAL] = {
		"qtap_system_tls_calls_untied_total", METRIC_COUNTER, SYS, 0,
		"TLS library reads and writes that moved plaintext but could not be tied to a "
		"connection (no socket call inside them, none before on their session); their "
		"plaintext is dropped.",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_SERIES] = {
		"qtap_system_series", METRIC_GAUGE, SYS, 0,
		"Series currently held by the metric store, by family (the overflow series included).",
		1, { "family" }, PLAIN(1) },
	[M_SYSTEM_SERIES_OVERFLOW_TOTAL] = {
		"qtap_system_series_overflow_total", METRIC_COUNTER, SYS, 0,
		"Label sets folded into the __overflow__ series because their family was at its series "
		"limit (each once while no other label set folded since has taken its place among 4096 "
		"kept per family).",
		1, { "family" }, PLAIN(1) },
	[M_SYSTEM_SCRAPE_DURATION_SECONDS] = {
		"qtap_system_scrape_duration_seconds", METRIC_GAUGE, SYS, 0,
		"Time the last rendering of each endpoint took in seconds.",
		1, { "endpoint" }, PLAIN(1000000000) },
	[M_SYSTEM_CONFIG_RELOADS_TOTAL] = {
		"qtap_system_config_reloads_total", METRIC_COUNTER, SYS, 0,
		"Configuration reloads, by result (success or failure).",
		1, { "result" }, PLAIN(1) },
	[M_SYSTEM_JEMALLOC_ALLOCATED_BYTES] = {
		"qtap_system_jemalloc_allocated_bytes", METRIC_GAUGE, SYS, 0,
		"Bytes allocated by the application through jemalloc (0 when built without jemalloc).",
		NO_LABELS, PLAIN(1) },
	[M_SYSTEM_JEMALLOC_RESIDENT_BYTES] = {
		"qtap_system_jemalloc_resident_bytes", METRIC_GAUGE, SYS, 0,
		"Bytes in physically resident pages mapped by jemalloc (0 when built without jemalloc).",
		NO_LABELS, PLAIN(1) },
	[M_BUILD_INFO] = {
		"qtap_build_info", METRIC_GAUGE, SYS, 0,
		"Always 1; the labels give the version and source commit of the running agent.",
		2, { "version", "commit" }, PLAIN(1) },
	[M_PROCESS_CPU_SECONDS_TOTAL] = {
		"process_cpu_seconds_total", METRIC_COUNTER, SYS, 0,
		"Total user and system CPU time spent in seconds.",
		NO_LABELS, PLAIN(1000000) },
	[M_PROCESS_RESIDENT_MEMORY_BYTES] = {
		"process_resident_memory_bytes", METRIC_GAUGE, SYS, 0,
		"Resident memory size in bytes.",
		NO_LABELS, PLAIN(1) },
	[M_PROCESS_VIRTUAL_MEMORY_BYTES] = {
		"process_virtual_memory_bytes", METRIC_GAUGE, SYS, 0,
		"Virtual memory size in bytes.",
		NO_LABELS, PLAIN(1) },
	[M_PROCESS_OPEN_FDS] = {
		"process_open_fds", METRIC_GAUGE, SYS, 0,
		"Number of open file descriptors.",
		NO_LABELS, PLAIN(1) },
	[M_PROCESS_MAX_FDS] = {
		"process_max_fds", METRIC_GAUGE, SYS, 0,
		"Maximum number of open file descriptors.",
		NO_LABELS, PLAIN(1) },
	[M_PROCESS_START_TIME_SECONDS] = {
		"process_start_time_seconds", METRIC_GAUGE, SYS, 0,
		"Start time of the process since the Unix epoch in seconds.",
		NO_LABELS, PLAIN(1000) },
};

int metrics_scale_digits(uint64_t scale)
{
	int n = 0;

	while (scale > 1 && scale % 10 == 0) {
		scale /= 10;
		n++;
	}
	return scale == 1 ? n : -1;
}

static const char *type_name(enum metric_type t)
{
	switch (t) {
	case METRIC_COUNTER:
		return "counter";
	case METRIC_GAUGE:
		return "gauge";
	case METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

/* The exposed unit of a histogram's bounds, from its name. */
static const char *bucket_unit(const char *name)
{
	size_t n = strlen(name);

	if (n > 3 && !strcmp(name + n - 3, "_ms"))
		return " (milliseconds)";
	if (n > 6 && !strcmp(name + n - 6, "_bytes"))
		return " (bytes)";
	if (n > 8 && !strcmp(name + n - 8, "_seconds"))
		return " (seconds)";
	return "";
}

static void write_family(FILE *out, const struct metric_def *d)
{
	char num[32];
	unsigned i;

	fputs(".TP\n.B ", out);
	roff_puts(out, d->name);
	fputs("\n", out);
	fprintf(out, "Type: %s; endpoint %s", type_name(d->type),
		d->endpoint == METRICS_ENDPOINT_APP ? "/metrics" : "/system/metrics");
	if (d->flags & METRIC_F_HTTP)
		fputs("; needs the http_metrics plugin", out);
	fputs(".\n.br\nLabels: ", out);
	if (!d->n_labels)
		fputs("none", out);
	for (i = 0; i < d->n_labels; i++) {
		fputs(i ? ", \\fB" : "\\fB", out);
		roff_puts(out, d->labels[i]);
		fputs("\\fR", out);
	}
	if (d->type == METRIC_HISTOGRAM)
		fputs(", plus \\fBle\\fR on the _bucket series", out);
	fputs(".\n", out);
	if (d->type == METRIC_HISTOGRAM) {
		fprintf(out, ".br\nBuckets%s: ", bucket_unit(d->name));
		for (i = 0; i < d->n_buckets; i++) {
			num[metrics_fmt_fixed(num, d->buckets[i], d->scale, 0)] = '\0';
			fprintf(out, "%s%s", i ? ", " : "", num);
		}
		fputs(", +Inf.\n", out);
	}
	fputs(".br\n", out);
	roff_puts(out, d->help);
	fputs("\n", out);
}

void metrics_defs_write_man(FILE *out)
{
	static const struct {
		enum metric_endpoint ep;
		const char *title;
		const char *text;
	} groups[] = {
		{ METRICS_ENDPOINT_APP, "/metrics",
		  "Application metrics: HTTP traffic (with the http_metrics plugin) and connections." },
		{ METRICS_ENDPOINT_SYSTEM, "/system/metrics",
		  "The health of the agent itself." },
	};
	size_t g, i;

	for (g = 0; g < N(groups); g++) {
		fputs(".SS ", out);
		roff_puts(out, groups[g].title);
		fputs("\n", out);
		roff_puts(out, groups[g].text);
		fputs("\n", out);
		for (i = 0; i < M__COUNT; i++)
			if (metric_defs[i].endpoint == groups[g].ep)
				write_family(out, &metric_defs[i]);
	}
}

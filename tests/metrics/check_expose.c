/* Exposition: exact text for a small store, OpenMetrics, hidden HTTP
 * families, fixed-point values, and promtool on both endpoints. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urcu.h>

#include "commit.h"
#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/buf.h"

#include "../check_run.h"

static const char golden_text[] =
	"# HELP qtap_connection_open_total Total number of connections opened.\n"
	"# TYPE qtap_connection_open_total counter\n"
	"qtap_connection_open_total{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 3\n"
	"# HELP qtap_connection_close_total Total number of connections closed.\n"
	"# TYPE qtap_connection_close_total counter\n"
	"# HELP qtap_connection_active_total Number of currently active connections.\n"
	"# TYPE qtap_connection_active_total gauge\n"
	"qtap_connection_active_total{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} -2\n"
	"qtap_connection_active_total{direction=\"ingress\",remote_addr=\"2001:db8::1\",remote_port=\"8080\"} 1\n"
	"# HELP qtap_connection_bytes_sent_total Total bytes sent across all connections.\n"
	"# TYPE qtap_connection_bytes_sent_total counter\n"
	"# HELP qtap_connection_bytes_recv_total Total bytes received across all connections.\n"
	"# TYPE qtap_connection_bytes_recv_total counter\n"
	"# HELP qtap_connection_duration_ms Connection duration distribution in milliseconds.\n"
	"# TYPE qtap_connection_duration_ms histogram\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1\"} 1\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"2\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"5\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"10\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"25\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"50\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"100\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"250\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"500\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"2500\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"5000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"10000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"25000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"50000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"100000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"250000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"500000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1000000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1800000\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"+Inf\"} 3\n"
	"qtap_connection_duration_ms_sum{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 2500002.5\n"
	"qtap_connection_duration_ms_count{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 3\n"
	"# HELP qtap_connection_protocol_total Total connections by protocol type (http1, http2, tls, other).\n"
	"# TYPE qtap_connection_protocol_total counter\n"
	"qtap_connection_protocol_total{protocol=\"a\\\\b\\\"c\\nd\"} 1\n"
	"# HELP qtap_connection_tls_handshake_total Total number of TLS handshakes completed, by SNI and TLS version.\n"
	"# TYPE qtap_connection_tls_handshake_total counter\n";

static const char golden_openmetrics[] =
	"# HELP qtap_connection_open Total number of connections opened.\n"
	"# TYPE qtap_connection_open counter\n"
	"qtap_connection_open_total{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 3\n"
	"# HELP qtap_connection_close Total number of connections closed.\n"
	"# TYPE qtap_connection_close counter\n"
	"# HELP qtap_connection_active_total Number of currently active connections.\n"
	"# TYPE qtap_connection_active_total gauge\n"
	"qtap_connection_active_total{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} -2\n"
	"qtap_connection_active_total{direction=\"ingress\",remote_addr=\"2001:db8::1\",remote_port=\"8080\"} 1\n"
	"# HELP qtap_connection_bytes_sent Total bytes sent across all connections.\n"
	"# TYPE qtap_connection_bytes_sent counter\n"
	"# HELP qtap_connection_bytes_recv Total bytes received across all connections.\n"
	"# TYPE qtap_connection_bytes_recv counter\n"
	"# HELP qtap_connection_duration_ms Connection duration distribution in milliseconds.\n"
	"# TYPE qtap_connection_duration_ms histogram\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1.0\"} 1\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"2.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"5.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"10.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"25.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"50.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"100.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"250.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"500.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"2500.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"5000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"10000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"25000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"50000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"100000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"250000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"500000.0\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1e+06\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"1.8e+06\"} 2\n"
	"qtap_connection_duration_ms_bucket{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\",le=\"+Inf\"} 3\n"
	"qtap_connection_duration_ms_sum{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 2500002.5\n"
	"qtap_connection_duration_ms_count{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} 3\n"
	"# HELP qtap_connection_protocol Total connections by protocol type (http1, http2, tls, other).\n"
	"# TYPE qtap_connection_protocol counter\n"
	"qtap_connection_protocol_total{protocol=\"a\\\\b\\\"c\\nd\"} 1\n"
	"# HELP qtap_connection_tls_handshake Total number of TLS handshakes completed, by SNI and TLS version.\n"
	"# TYPE qtap_connection_tls_handshake counter\n"
	"# EOF\n";

/* Counters, gauges (one negative), a histogram with values in the first
 * buckets and past the last bound, and a label value to escape. */
static struct metrics_store *small_store(bool http)
{
	struct metrics_opts opts = { .http_enabled = http };
	struct metrics_store *st = metrics_store_new(&opts);
	const char *c1[3] = { "egress", "10.0.0.1", "443" };
	const char *c2[3] = { "ingress", "2001:db8::1", "8080" };
	const char *p[1] = { "a\\b\"c\nd" };
	const char *h[4] = { "GET", "api-1.example.com", "200", "http1" };
	const char *prog = "tcp_sendmsg";

	ck_assert_ptr_nonnull(st);
	metrics_add(st, M_CONNECTION_OPEN_TOTAL, c1, 3);
	metrics_add(st, M_CONNECTION_ACTIVE_TOTAL, c1, -2);
	metrics_add(st, M_CONNECTION_ACTIVE_TOTAL, c2, 1);
	metrics_add(st, M_CONNECTION_DURATION_MS, c1, 1000);
	metrics_add(st, M_CONNECTION_DURATION_MS, c1, 1500);
	metrics_add(st, M_CONNECTION_DURATION_MS, c1, 2500000000LL);
	metrics_add(st, M_CONNECTION_PROTOCOL_TOTAL, p, 1);
	metrics_add(st, M_HTTP_REQUESTS_TOTAL, h, 1);
	metrics_add(st, M_HTTP_DURATION_MS, NULL, 1234567);
	metrics_set(st, M_SYSTEM_BPF_PROGRAM_RUN_SECONDS_TOTAL, &prog, 1234567);
	return st;
}

/* Renders into a NUL-terminated string the caller frees. */
static char *render(struct metrics_store *st, enum metric_endpoint ep, enum metrics_format fmt)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(metrics_render(st, ep, fmt, &b), 0);
	ck_assert_int_eq(buf_append_char(&b, '\0'), 0);
	return b.data;
}

START_TEST(test_golden_text)
{
	struct metrics_store *st = small_store(false);
	char *t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT);

	ck_assert_str_eq(t, golden_text);
	free(t);
	metrics_store_free(&st);
}
END_TEST

START_TEST(test_golden_openmetrics)
{
	struct metrics_store *st = small_store(false);
	char *t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_OPENMETRICS);

	ck_assert_str_eq(t, golden_openmetrics);
	free(t);
	metrics_store_free(&st);
}
END_TEST

START_TEST(test_openmetrics_details)
{
	struct metrics_store *st = small_store(true);
	char *t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_OPENMETRICS);
	char *s = render(st, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_OPENMETRICS);
	size_t n = strlen(t);

	/* canonical le values: Go's shortest %g with .0 added */
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_bucket{le=\"0.1\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_bucket{le=\"1.0\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_bucket{le=\"2500.0\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_bucket{le=\"600000.0\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_requests_size_bytes_bucket") == NULL ?
				 "ok" : NULL);
	ck_assert_ptr_nonnull(strstr(t, "# UNIT qtap_http_requests_size_bytes bytes\n"));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE qtap_http_requests counter\n"));
	ck_assert_ptr_nonnull(strstr(t, "\nqtap_http_requests_total{method=\"GET\","));
	ck_assert_ptr_nonnull(strstr(t, ",le=\"1e+06\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(t, ",le=\"1.8e+06\"} 2\n"));
	ck_assert_str_eq(t + n - 6, "# EOF\n");
	ck_assert_ptr_null(strstr(t, "# EOF\n") == t + n - 6 ? NULL : t);
	ck_assert_ptr_nonnull(strstr(s, "# TYPE qtap_system_bpf_program_run_seconds counter\n"
				       "# UNIT qtap_system_bpf_program_run_seconds seconds\n"
				       "qtap_system_bpf_program_run_seconds_total{program=\"tcp_sendmsg\"} 0.001234567\n"));
	ck_assert_ptr_nonnull(strstr(s, "# UNIT qtap_system_scrape_duration_seconds seconds\n"));
	free(t);
	free(s);
	metrics_store_free(&st);
}
END_TEST

START_TEST(test_http_hidden)
{
	struct metrics_store *st = small_store(false);
	char *t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT);

	ck_assert_ptr_null(strstr(t, "qtap_http_"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_connection_open_total{"));
	free(t);
	metrics_store_set_http_enabled(st, true);
	t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT);
	ck_assert_ptr_nonnull(strstr(t, "# TYPE qtap_http_requests_total counter\n"
				       "qtap_http_requests_total{method=\"GET\",host=\"api-1.example.com\","
				       "status_code=\"200\",protocol=\"http1\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_bucket{le=\"2500\"} 1\n"
				       "qtap_http_duration_ms_bucket{le=\"5000\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_http_duration_ms_sum 1234.567\n"
				       "qtap_http_duration_ms_count 1\n"));
	/* HTTP families come first, in table order */
	ck_assert_ptr_eq(strstr(t, "# HELP qtap_http_requests_total "), t);
	free(t);
	/* the system endpoint never shows application families */
	t = render(st, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_TEXT);
	ck_assert_ptr_null(strstr(t, "qtap_http_"));
	ck_assert_ptr_null(strstr(t, "qtap_connection_"));
	ck_assert_ptr_nonnull(strstr(t, "qtap_system_sequence_gaps_total 0\n"));
	free(t);
	metrics_store_free(&st);
}
END_TEST

START_TEST(test_fixed_point)
{
	static const struct {
		uint64_t v, scale;
		int is_signed;
		const char *want;
	} cases[] = {
		{ 1234567, 1000, 0, "1234.567" },
		{ 1000, 1000, 0, "1" },
		{ 1200, 1000, 0, "1.2" },
		{ 100, 1000, 0, "0.1" },
		{ 0, 1000, 0, "0" },
		{ 5, 1000000000, 0, "0.000000005" },
		{ 1500000000, 1000000000, 0, "1.5" },
		{ 18446744073709551615ull, 1, 0, "18446744073709551615" },
		{ 18446744073709551615ull, 1000000, 0, "18446744073709.551615" },
		{ (uint64_t)-1500, 1000, 1, "-1.5" },
		{ (uint64_t)-7, 1, 1, "-7" },
		{ (uint64_t)INT64_MIN, 1, 1, "-9223372036854775808" },
		{ (uint64_t)INT64_MIN, 1000, 1, "-9223372036854775.808" },
		{ 1700000000123, 1000, 1, "1700000000.123" },
	};
	char out[32];
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = metrics_fmt_fixed(out, cases[i].v, cases[i].scale, cases[i].is_signed);
		out[n] = '\0';
		ck_assert_str_eq(out, cases[i].want);
	}
}
END_TEST

START_TEST(test_definitions)
{
	unsigned i, j;

	for (i = 0; i < M__COUNT; i++) {
		const struct metric_def *d = &metric_defs[i];

		ck_assert_ptr_nonnull(d->name);
		ck_assert_ptr_nonnull(d->help);
		ck_assert_int_ge(metrics_scale_digits(d->scale), 0);
		if (d->type == METRIC_COUNTER)
			ck_assert_str_eq(d->name + strlen(d->name) - 6, "_total");
		ck_assert_int_eq(d->type == METRIC_HISTOGRAM, d->n_buckets > 0);
		for (j = 1; j < d->n_buckets; j++)
			ck_assert_uint_gt(d->buckets[j], d->buckets[j - 1]);
		for (j = 0; j < d->n_labels; j++)
			ck_assert_ptr_nonnull(d->labels[j]);
	}
	/* a few SPEC facts */
	ck_assert_str_eq(metric_defs[M_HTTP_REQUESTS_DURATION_MS].name,
			 "qtap_http_requests_duration_ms");
	ck_assert_str_eq(metric_defs[M_HTTP_REQUESTS_TOTAL].labels[0], "method");
	ck_assert_str_eq(metric_defs[M_HTTP_REQUESTS_TOTAL].labels[3], "protocol");
	ck_assert_uint_eq(metric_defs[M_HTTP_REQUESTS_DURATION_MS].buckets[0], 100);
	ck_assert_uint_eq(metric_defs[M_HTTP_REQUESTS_DURATION_MS].buckets[19], 600000000);
	ck_assert_uint_eq(metric_defs[M_HTTP_RESPONSES_SIZE_BYTES].buckets[19], 50000000);
	ck_assert_uint_eq(metric_defs[M_CONNECTION_DURATION_MS].buckets[19], 1800000000);
	ck_assert_uint_eq(metric_defs[M_CONNECTION_TLS_HANDSHAKE_TOTAL].n_labels, 5);
	ck_assert_uint_eq(metric_defs[M_HTTP_DURATION_MS].n_labels, 0);
}
END_TEST

START_TEST(test_collectors)
{
	struct metrics_store *st = metrics_store_new(NULL);
	struct metric_series *s;
	char *t, *p;

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(metrics_system_collectors_add(st), 0);
	t = render(st, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_TEXT);
	ck_assert_ptr_nonnull(strstr(t, "\nqtap_build_info{version=\"" PACKAGE_VERSION
				       "\",commit=\"" QTAP_COMMIT "\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "\nqtap_system_series{family=\"qtap_http_duration_ms\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "\nqtap_system_series{family=\"qtap_connection_open_total\"} 0\n"));
	p = strstr(t, "\nprocess_max_fds ");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_gt(strtoll(p + 17, NULL, 10), 0);
	p = strstr(t, "\nprocess_open_fds ");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_ge(strtoll(p + 18, NULL, 10), 3);
	p = strstr(t, "\nprocess_resident_memory_bytes ");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_gt(strtoll(p + 31, NULL, 10), 0);
	p = strstr(t, "\nprocess_start_time_seconds ");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_gt(strtoll(p + 28, NULL, 10), 1500000000);
#ifdef QTAP_JEMALLOC
	p = strstr(t, "\nqtap_system_jemalloc_allocated_bytes ");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_gt(strtoll(p + 38, NULL, 10), 0);
#endif
	free(t);
	/* the previous render's duration shows on the next one */
	s = metrics_series_get(st, M_SYSTEM_SCRAPE_DURATION_SECONDS,
			       (const char *const[]){ "system_metrics" });
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(strstr(s->labels, "system_metrics"));
	t = render(st, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_TEXT);
	ck_assert_ptr_null(strstr(t, "{endpoint=\"system_metrics\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(t, "{endpoint=\"metrics\"} 0\n"));
	free(t);
	ck_assert_int_eq(metrics_collector_add(st, METRICS_ENDPOINT_APP, NULL, NULL), -EINVAL);
	metrics_store_free(&st);
}
END_TEST

/* Runs tests/promcheck.sh (promtool check metrics, accepting only the lint
 * remarks about names the product must keep) on text: its exit status, and
 * its output in *out. */
static int promtool_check(const char *text, struct buf *out)
{
	const char *srcdir = getenv("top_srcdir");
	char in_path[] = "/tmp/qtap-check-expose-XXXXXX";
	char cmd[1024];
	FILE *f, *p;
	char line[512];
	int fd, status;

	ck_assert_msg(srcdir && *srcdir, "top_srcdir is not set: run through make check");
	fd = mkstemp(in_path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "'%s/tests/promcheck.sh' < '%s' 2>&1", srcdir, in_path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p))
		buf_append_str(out, line);
	buf_append_char(out, '\0');
	status = pclose(p);
	unlink(in_path);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* A few series in every family. */
static void fill_every_family(struct metrics_store *st)
{
	static const char *const labels[4] = {
		"x", "quote\" back\\ nl\n", "\xc3\xa9t\xe9", "y",
	};
	const char *v[METRIC_MAX_LABELS];
	unsigned i, j, k;

	for (i = 0; i < M__COUNT; i++) {
		for (k = 0; k < 4; k++) {
			for (j = 0; j < metric_defs[i].n_labels; j++)
				v[j] = labels[k];
			metrics_add(st, i, metric_defs[i].n_labels ? v : NULL,
				    metric_defs[i].type == METRIC_GAUGE ? -(int64_t)k : (int64_t)k * 1234567);
		}
	}
}

START_TEST(test_promtool)
{
	struct metrics_opts opts = { .http_enabled = true, .series_limit = 3 };
	struct metrics_store *st = metrics_store_new(&opts);
	struct buf out = BUF_INIT;
	char *t;
	int rc;

	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(metrics_system_collectors_add(st), 0);
	/* limit 3 of 4 label sets: every family with labels gets __overflow__ */
	fill_every_family(st);

	t = render(st, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT);
	ck_assert_ptr_nonnull(strstr(t, "remote_port=\"__overflow__\""));
	ck_assert_ptr_nonnull(strstr(t, "host=\"\xc3\xa9t\xef\xbf\xbd\""));
	rc = promtool_check(t, &out);
	ck_assert_msg(rc == 0, "%s", out.data);
	free(t);

	buf_reset(&out);
	t = render(st, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_TEXT);
	ck_assert_ptr_nonnull(strstr(t, "qtap_system_series_overflow_total{family=\"qtap_connection_open_total\"} 1\n"));
	rc = promtool_check(t, &out);
	ck_assert_msg(rc == 0, "%s", out.data);
	free(t);
	buf_free(&out);
	metrics_store_free(&st);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics_expose");
	TCase *tc = tcase_create("expose");
	int status;

	rcu_register_thread();
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_golden_text);
	tcase_add_test(tc, test_golden_openmetrics);
	tcase_add_test(tc, test_openmetrics_details);
	tcase_add_test(tc, test_http_hidden);
	tcase_add_test(tc, test_fixed_point);
	tcase_add_test(tc, test_definitions);
	tcase_add_test(tc, test_collectors);
	tcase_add_test(tc, test_promtool);
	suite_add_tcase(s, tc);
	status = check_run(s);
	rcu_unregister_thread();
	return status;
}

/* The metrics endpoints over real sockets: a server on 127.0.0.1 port 0 in
 * front of a real store, and a small HTTP/1.1 client written here. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <urcu.h>
#include <zlib.h>

#include "http/http.h"
#include "http/http_int.h"
#include "metrics/metrics.h"
#include "util/buf.h"

#include "../check_run.h"

#define PROM_ACCEPT \
	"application/openmetrics-text;version=1.0.0," \
	"application/openmetrics-text;version=0.0.1;q=0.75," \
	"text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

#define LINE_REQUESTS \
	"qtap_http_requests_total{method=\"GET\",host=\"example.com\"," \
	"status_code=\"200\",protocol=\"http1\"} 3\n"
#define LINE_GAPS "qtap_system_sequence_gaps_total 7\n"

static struct metrics_store *store;
static struct http_server *srv;
static unsigned port;

/* --- a tiny HTTP/1.1 client ------------------------------------------- */

struct reply {
	int status;             /* 0 when no status line came */
	struct buf raw;         /* the whole response, NUL-terminated */
	const char *headers;    /* from the status line to the blank line */
	size_t headers_len;
	const char *body;
	size_t body_len;
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tcp_connect_to(int family, unsigned to_port)
{
	struct sockaddr_storage ss = { 0 };
	struct timeval tv = { .tv_sec = 5 };
	socklen_t len;
	int fd;

	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)to_port);
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)to_port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	return fd;
}

static int tcp_connect(void)
{
	return tcp_connect_to(AF_INET, port);
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return; /* the server may close early (405, 413) */
		p += w;
		n -= (size_t)w;
	}
}

/* Reads until EOF (the requests say Connection: close) and splits. */
static void reply_read(int fd, struct reply *r)
{
	const char *end;

	memset(r, 0, sizeof(*r));
	for (;;) {
		ssize_t n;

		ck_assert_int_eq(buf_grow(&r->raw, 4096), 0);
		n = recv(fd, r->raw.data + r->raw.len, r->raw.cap - r->raw.len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		r->raw.len += (size_t)n;
	}
	ck_assert_int_eq(buf_grow(&r->raw, 1), 0);
	r->raw.data[r->raw.len] = '\0';
	if (sscanf(r->raw.data, "HTTP/1.1 %d ", &r->status) != 1)
		r->status = 0;
	end = strstr(r->raw.data, "\r\n\r\n");
	if (!end)
		return;
	r->headers = r->raw.data;
	r->headers_len = (size_t)(end - r->raw.data) + 2;
	r->body = end + 4;
	r->body_len = r->raw.len - (size_t)(r->body - r->raw.data);
}

static void reply_free(struct reply *r)
{
	buf_free(&r->raw);
}

/* The value of header name (case-insensitive), malloc'd; NULL if absent. */
static char *reply_header(const struct reply *r, const char *name)
{
	const char *p = r->headers, *end = r->headers + r->headers_len;
	size_t n = strlen(name);

	if (!p)
		return NULL;
	p = strstr(p, "\r\n");
	while (p && p + 2 < end) {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol || eol > end)
			break;
		if ((size_t)(eol - line) > n && line[n] == ':' &&
		    !strncasecmp(line, name, n)) {
			const char *v = line + n + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			return strndup(v, (size_t)(eol - v));
		}
		p = eol;
	}
	return NULL;
}

static void ck_header_eq(const struct reply *r, const char *name, const char *want)
{
	char *v = reply_header(r, name);

	ck_assert_msg(v != NULL, "header %s missing in:\n%s", name, r->raw.data);
	ck_assert_str_eq(v, want);
	free(v);
}

static void ck_header_absent(const struct reply *r, const char *name)
{
	char *v = reply_header(r, name);

	ck_assert_msg(v == NULL, "unexpected header %s: %s", name, v);
}

static void http_raw(int family, unsigned to_port, const char *request, struct reply *r)
{
	int fd = tcp_connect_to(family, to_port);

	send_all(fd, request, strlen(request));
	reply_read(fd, r);
	close(fd);
}

/* method path, with extra header lines ("Name: value\r\n"...) or NULL. */
static void http_do(const char *method, const char *path, const char *extra,
		    struct reply *r)
{
	char req[2048];

	snprintf(req, sizeof(req),
		 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
		 method, path, extra ? extra : "");
	http_raw(AF_INET, port, req, r);
}

static bool body_contains(const struct reply *r, const char *s)
{
	return r->body && memmem(r->body, r->body_len, s, strlen(s)) != NULL;
}

static void gunzip(const char *in, size_t len, struct buf *out)
{
	z_stream zs = { 0 };
	int zerr;

	ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	do {
		ck_assert_int_eq(buf_grow(out, 4096), 0);
		zs.next_out = (Bytef *)out->data + out->len;
		zs.avail_out = (uInt)(out->cap - out->len);
		zerr = inflate(&zs, Z_NO_FLUSH);
		ck_assert_msg(zerr == Z_OK || zerr == Z_STREAM_END, "inflate: %d", zerr);
		out->len = out->cap - zs.avail_out;
	} while (zerr != Z_STREAM_END);
	ck_assert_uint_eq(zs.avail_in, 0);
	inflateEnd(&zs);
}

/* --- fixture ---------------------------------------------------------- */

static void server_setup(void)
{
	struct metrics_opts mo = { .http_enabled = true };
	struct http_server_opts ho = { .listen = "127.0.0.1:0" };
	static const char *const req_labels[] = { "GET", "example.com", "200", "http1" };

	rcu_register_thread();
	store = metrics_store_new(&mo);
	ck_assert_ptr_nonnull(store);
	metrics_add(store, M_HTTP_REQUESTS_TOTAL, req_labels, 3);
	metrics_set(store, M_SYSTEM_SEQUENCE_GAPS_TOTAL, NULL, 7);
	srv = http_server_start(&ho, store);
	ck_assert_msg(srv != NULL, "http_server_start: %s", strerror(errno));
	port = http_server_port(srv);
	ck_assert_uint_ne(port, 0);
}

static void server_teardown(void)
{
	http_server_stop(&srv);
	ck_assert_ptr_null(srv);
	metrics_store_free(&store);
	rcu_unregister_thread();
}

/* --- endpoints -------------------------------------------------------- */

START_TEST(test_metrics_text)
{
	struct reply r;
	char *cl;

	http_do("GET", "/metrics", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_header_eq(&r, "Content-Type", HTTP_CONTENT_TYPE_TEXT);
	ck_header_absent(&r, "Content-Encoding");
	ck_assert_msg(body_contains(&r, LINE_REQUESTS), "body:\n%s", r.body);
	ck_assert(!body_contains(&r, "# EOF"));
	ck_assert(!body_contains(&r, "qtap_system_"));
	cl = reply_header(&r, "Content-Length");
	ck_assert_ptr_nonnull(cl);
	ck_assert_uint_eq(strtoul(cl, NULL, 10), r.body_len);
	free(cl);
	reply_free(&r);
}
END_TEST

START_TEST(test_system_metrics_text)
{
	struct reply r;

	http_do("GET", "/system/metrics", "Accept: text/plain\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_header_eq(&r, "Content-Type", HTTP_CONTENT_TYPE_TEXT);
	ck_assert_msg(body_contains(&r, LINE_GAPS), "body:\n%s", r.body);
	ck_assert(!body_contains(&r, "qtap_http_requests_total"));
	reply_free(&r);
}
END_TEST

START_TEST(test_openmetrics)
{
	static const char *const paths[] = { "/metrics", "/system/metrics" };
	static const char *const lines[] = { LINE_REQUESTS, LINE_GAPS };
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct reply r;

		http_do("GET", paths[i], "Accept: " PROM_ACCEPT "\r\n", &r);
		ck_assert_int_eq(r.status, 200);
		ck_header_eq(&r, "Content-Type", HTTP_CONTENT_TYPE_OPENMETRICS);
		ck_assert_msg(body_contains(&r, lines[i]), "body:\n%s", r.body);
		ck_assert_uint_ge(r.body_len, 6);
		ck_assert_msg(!memcmp(r.body + r.body_len - 6, "# EOF\n", 6),
			      "%s: body does not end with # EOF", paths[i]);
		reply_free(&r);
	}
}
END_TEST

START_TEST(test_gzip)
{
	static const char *const accepts[] = { "", "Accept: " PROM_ACCEPT "\r\n" };
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct reply plain, zipped, refused;
		struct buf out = BUF_INIT;
		char hdrs[512];
		char *vary;

		http_do("GET", "/metrics", accepts[i], &plain);
		ck_assert_int_eq(plain.status, 200);
		snprintf(hdrs, sizeof(hdrs), "%sAccept-Encoding: deflate, gzip;q=0.8\r\n",
			 accepts[i]);
		http_do("GET", "/metrics", hdrs, &zipped);
		ck_assert_int_eq(zipped.status, 200);
		ck_header_eq(&zipped, "Content-Encoding", "gzip");
		vary = reply_header(&zipped, "Vary");
		ck_assert_ptr_nonnull(vary);
		ck_assert_ptr_nonnull(strstr(vary, "Accept-Encoding"));
		free(vary);
		ck_assert_uint_ge(zipped.body_len, 2);
		ck_assert_int_eq((unsigned char)zipped.body[0], 0x1f);
		ck_assert_int_eq((unsigned char)zipped.body[1], 0x8b);
		gunzip(zipped.body, zipped.body_len, &out);
		ck_assert_uint_eq(out.len, plain.body_len);
		ck_assert(!memcmp(out.data, plain.body, out.len));

		snprintf(hdrs, sizeof(hdrs), "%sAccept-Encoding: gzip;q=0, *\r\n", accepts[i]);
		http_do("GET", "/metrics", hdrs, &refused);
		ck_assert_int_eq(refused.status, 200);
		ck_header_absent(&refused, "Content-Encoding");
		ck_assert_uint_eq(refused.body_len, plain.body_len);
		ck_assert(!memcmp(refused.body, plain.body, plain.body_len));

		buf_free(&out);
		reply_free(&plain);
		reply_free(&zipped);
		reply_free(&refused);
	}
}
END_TEST

START_TEST(test_head)
{
	static const char *const paths[] = { "/metrics", "/system/metrics", "/healthz" };
	unsigned i;

	for (i = 0; i < 3; i++) {
		struct reply get, head;
		char *cl;

		http_do("GET", paths[i], NULL, &get);
		http_do("HEAD", paths[i], NULL, &head);
		ck_assert_int_eq(head.status, 200);
		ck_assert_ptr_nonnull(head.body);
		ck_assert_uint_eq(head.body_len, 0);
		cl = reply_header(&head, "Content-Length");
		ck_assert_ptr_nonnull(cl);
		/* /system/metrics changes between scrapes (its own duration) */
		if (strcmp(paths[i], "/system/metrics"))
			ck_assert_uint_eq(strtoul(cl, NULL, 10), get.body_len);
		else
			ck_assert_uint_gt(strtoul(cl, NULL, 10), 0);
		free(cl);
		reply_free(&get);
		reply_free(&head);
	}
}
END_TEST

START_TEST(test_not_found)
{
	static const char *const paths[] = {
		"/nope", "/", "/metrics/", "/metricsx", "/system", "/healthz/x",
	};
	unsigned i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct reply r;

		http_do("GET", paths[i], NULL, &r);
		ck_assert_msg(r.status == 404, "%s: %d", paths[i], r.status);
		reply_free(&r);
	}
}
END_TEST

START_TEST(test_method_not_allowed)
{
	static const char *const methods[] = { "POST", "DELETE", "PUT", "OPTIONS" };
	unsigned i;
	struct reply r;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		http_do(methods[i], "/metrics", "Content-Length: 0\r\n", &r);
		ck_assert_msg(r.status == 405, "%s: %d", methods[i], r.status);
		ck_header_eq(&r, "Allow", "GET, HEAD");
		reply_free(&r);
	}
	/* with a body, which is not read */
	http_raw(AF_INET, port, "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		 "Content-Length: 5\r\n\r\nhello", &r);
	ck_assert_int_eq(r.status, 405);
	ck_header_eq(&r, "Allow", "GET, HEAD");
	reply_free(&r);
}
END_TEST

START_TEST(test_body_refused)
{
	struct reply r;

	http_raw(AF_INET, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		 "Content-Length: 5\r\n\r\nhello", &r);
	ck_assert_int_eq(r.status, 413);
	reply_free(&r);
	http_raw(AF_INET, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 413);
	reply_free(&r);
	/* an announced empty body is no body */
	http_do("GET", "/metrics", "Content-Length: 0\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
}
END_TEST

START_TEST(test_healthz)
{
	struct reply r;

	http_do("GET", "/healthz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ok\n");
	reply_free(&r);
}
END_TEST

START_TEST(test_readyz)
{
	struct reply r;

	http_do("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(r.body, "not ready\n");
	reply_free(&r);

	http_server_set_ready(srv, true);
	http_do("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "ready\n");
	reply_free(&r);

	http_server_set_ready(srv, false);
	http_do("GET", "/readyz", NULL, &r);
	ck_assert_int_eq(r.status, 503);
	reply_free(&r);
}
END_TEST

/* Keep-alive: several requests on one connection, the scrape thread stays
 * registered with RCU between them. */
START_TEST(test_keep_alive)
{
	const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	int fd = tcp_connect(), i;
	struct reply r;

	for (i = 0; i < 3; i++)
		send_all(fd, req, strlen(req));
	send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		 strlen("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
	reply_read(fd, &r);
	close(fd);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.raw.data, "\r\n\r\nok\n"));
	{
		const char *p = r.raw.data;
		int n = 0;

		while ((p = strstr(p, LINE_REQUESTS))) {
			n++;
			p++;
		}
		ck_assert_int_eq(n, 3);
	}
	reply_free(&r);
}
END_TEST

/* A render that runs out of memory answers 500, and the next scrape, with
 * memory back, answers 200.  The address-space limit makes the growing
 * exposition buffer fail; sanitizers reserve too much address space for
 * that, so the case is only built without them. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define TEST_RENDER_ENOMEM 1
START_TEST(test_render_enomem)
{
	struct rlimit old, lim;
	unsigned long vsz_pages;
	struct reply r;
	char host[32];
	FILE *f;
	int i;

	/* some 40 MB of exposition text, five times the room left below */
	for (i = 0; i < 8000; i++) {
		const char *labels[] = { "GET", host, "200", "http1" };

		snprintf(host, sizeof(host), "h%d.example.com", i);
		metrics_histogram_observe(metrics_series_get(store, M_HTTP_REQUESTS_DURATION_MS,
							     labels), 1000);
		metrics_histogram_observe(metrics_series_get(store, M_HTTP_RESPONSES_DURATION_MS,
							     labels), 1000);
	}
	f = fopen("/proc/self/statm", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%lu", &vsz_pages), 1);
	fclose(f);
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &old), 0);
	lim = old;
	lim.rlim_cur = vsz_pages * (rlim_t)sysconf(_SC_PAGESIZE) + (8u << 20);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);

	http_do("GET", "/metrics", NULL, &r);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &old), 0);
	ck_assert_msg(r.status == 500, "status %d", r.status);
	reply_free(&r);

	http_do("GET", "/metrics", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(body_contains(&r, "host=\"h7999.example.com\""));
	reply_free(&r);
}
END_TEST
#endif

/* --- hostile clients -------------------------------------------------- */

START_TEST(test_idle_clients)
{
	int idle[6], i;
	struct reply r;
	double t0;

	/* five that say nothing, one stuck in the middle of its headers */
	for (i = 0; i < 6; i++)
		idle[i] = tcp_connect();
	send_all(idle[5], "GET /metrics HTTP/1.1\r\nHo", 25);

	t0 = now_seconds();
	http_do("GET", "/metrics", NULL, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(body_contains(&r, LINE_REQUESTS));
	ck_assert_msg(now_seconds() - t0 < 1.0, "took %.3f s", now_seconds() - t0);
	reply_free(&r);
	for (i = 0; i < 6; i++)
		close(idle[i]);
}
END_TEST

/* Past the per-address limit new connections are turned away, and idle
 * ones are closed after the timeout, which frees room again. */
START_TEST(test_limits_and_timeout)
{
	struct metrics_opts mo = { 0 };
	struct http_server_opts ho = {
		.listen = "127.0.0.1:0", .per_ip_limit = 2, .timeout_seconds = 1,
	};
	struct metrics_store *st;
	struct http_server *s;
	int idle[2], i;
	unsigned p;
	struct reply r;
	char c;
	double t0;

	rcu_register_thread();
	st = metrics_store_new(&mo);
	ck_assert_ptr_nonnull(st);
	s = http_server_start(&ho, st);
	ck_assert_ptr_nonnull(s);
	p = http_server_port(s);

	for (i = 0; i < 2; i++)
		idle[i] = tcp_connect_to(AF_INET, p);
	http_raw(AF_INET, p, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 0);
	reply_free(&r);

	/* the server hangs up on the idle ones within about a second */
	t0 = now_seconds();
	for (i = 0; i < 2; i++) {
		ssize_t n = recv(idle[i], &c, 1, 0);

		ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET),
			      "idle connection %d: recv %zd (%s)", i, n, strerror(errno));
	}
	ck_assert_msg(now_seconds() - t0 < 4.0, "idle close took %.3f s", now_seconds() - t0);
	for (i = 0; i < 2; i++)
		close(idle[i]);

	/* the closes above and the server's accounting can race by a little */
	for (i = 0; i < 50; i++) {
		http_raw(AF_INET, p, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			 &r);
		if (r.status)
			break;
		reply_free(&r);
		usleep(20000);
	}
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);

	http_server_stop(&s);
	metrics_store_free(&st);
	rcu_unregister_thread();
}
END_TEST

/* --- start, stop, listen addresses ------------------------------------ */

START_TEST(test_listen_parse)
{
	static const struct {
		const char *s;
		int family;
		unsigned port;
	} good[] = {
		{ "127.0.0.1:10001", AF_INET, 10001 },
		{ "0.0.0.0:9100", AF_INET, 9100 },
		{ "127.0.0.1:0", AF_INET, 0 },
		{ "10.1.2.3:65535", AF_INET, 65535 },
		{ "[::1]:10001", AF_INET6, 10001 },
		{ "[::]:0", AF_INET6, 0 },
		{ "[2001:db8::7]:80", AF_INET6, 80 },
		{ "[::ffff:127.0.0.1]:80", AF_INET6, 80 },
	};
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", ":10001", "localhost:10001",
		"127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:+80",
		"127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:0x50", "127.0.0.1:000010001",
		"256.0.0.1:80", "1.2.3:80", " 127.0.0.1:80", "::1:10001", "[::1]",
		"[::1]:", "[::1]10001", "[::1:10001", "::1]:10001", "[127.0.0.1]:80",
		"[fe80::1%lo]:80", "[]:80", "[::1]:80:80", "[localhost]:80",
	};
	unsigned i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sockaddr_storage ss;
		unsigned len = 0, got_port;

		ck_assert_msg(http_listen_parse(good[i].s, &ss, &len) == 0, "%s", good[i].s);
		ck_assert_int_eq(ss.ss_family, good[i].family);
		if (good[i].family == AF_INET) {
			ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
			got_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else {
			ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
			got_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
		ck_assert_uint_eq(got_port, good[i].port);
	}
	{
		struct sockaddr_storage ss;
		unsigned len;
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		ck_assert_int_eq(http_listen_parse(HTTP_LISTEN_DEFAULT, &ss, &len), 0);
		ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		unsigned len = 12345;

		memset(&ss, 0xa5, sizeof(ss));
		ck_assert_msg(http_listen_parse(bad[i], &ss, &len) == -EINVAL, "%s", bad[i]);
		ck_assert_uint_eq(len, 12345);
		ck_assert_uint_eq(((unsigned char *)&ss)[0], 0xa5);
	}
	ck_assert_int_eq(http_listen_parse(NULL, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_start_errors)
{
	char listen[64];
	struct http_server_opts ho = { .listen = listen };
	struct http_server *s;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	errno = 0;
	s = http_server_start(&ho, store);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(errno, EADDRINUSE);

	snprintf(listen, sizeof(listen), "localhost:%u", port);
	errno = 0;
	s = http_server_start(&ho, store);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(errno, EINVAL);

	/* the first server is untouched */
	{
		struct reply r;

		http_do("GET", "/healthz", NULL, &r);
		ck_assert_int_eq(r.status, 200);
		reply_free(&r);
	}
	http_server_stop(&s);
	http_server_stop(NULL);
}
END_TEST

START_TEST(test_ipv6)
{
	struct http_server_opts ho = { .listen = "[::1]:0" };
	struct http_server *s;
	struct reply r;

	s = http_server_start(&ho, store);
	ck_assert_msg(s != NULL, "[::1]: %s", strerror(errno));
	http_raw(AF_INET6, http_server_port(s),
		 "GET /metrics HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert(body_contains(&r, LINE_REQUESTS));
	reply_free(&r);
	http_server_stop(&s);
}
END_TEST

/* Servers come and go; each scrape thread leaves the RCU registry when it
 * ends, so grace periods keep completing. */
START_TEST(test_restart)
{
	struct http_server_opts ho = { .listen = "127.0.0.1:0" };
	int i;

	for (i = 0; i < 4; i++) {
		struct http_server *s = http_server_start(&ho, store);
		struct reply r;

		ck_assert_ptr_nonnull(s);
		http_raw(AF_INET, http_server_port(s),
			 "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
		ck_assert_int_eq(r.status, 200);
		reply_free(&r);
		http_server_stop(&s);
		synchronize_rcu();
	}
}
END_TEST

/* --- negotiation ------------------------------------------------------ */

START_TEST(test_negotiate_format)
{
	static const struct {
		const char *accept;
		enum metrics_format want;
	} cases[] = {
		{ NULL, METRICS_FORMAT_TEXT },
		{ "", METRICS_FORMAT_TEXT },
		{ "*/*", METRICS_FORMAT_TEXT },
		{ "text/plain", METRICS_FORMAT_TEXT },
		{ PROM_ACCEPT, METRICS_FORMAT_OPENMETRICS },
		{ "application/openmetrics-text", METRICS_FORMAT_OPENMETRICS },
		{ "Application/OpenMetrics-Text; version=1.0.0", METRICS_FORMAT_OPENMETRICS },
		{ "text/plain, application/openmetrics-text", METRICS_FORMAT_OPENMETRICS },
		{ "application/openmetrics-text;q=0", METRICS_FORMAT_TEXT },
		{ "application/openmetrics-text;q=0.000, */*", METRICS_FORMAT_TEXT },
		{ "application/openmetrics-text;q=0.2,text/plain;q=0.9", METRICS_FORMAT_TEXT },
		{ "text/plain;q=0.3 , application/openmetrics-text ; q=0.5",
		  METRICS_FORMAT_OPENMETRICS },
		{ "application/openmetrics-text;version=\"1.0.0,x\";q=0.4,*/*;q=0.5",
		  METRICS_FORMAT_TEXT },
		{ "application/openmetrics-text;q=bogus", METRICS_FORMAT_TEXT },
		{ "application/openmetrics-textile", METRICS_FORMAT_TEXT },
		{ "application/json", METRICS_FORMAT_TEXT },
	};
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(http_negotiate_format(cases[i].accept) == cases[i].want,
			      "Accept: %s", cases[i].accept ? cases[i].accept : "(none)");
}
END_TEST

START_TEST(test_negotiate_gzip)
{
	static const struct {
		const char *ae;
		bool want;
	} cases[] = {
		{ NULL, false },
		{ "", false },
		{ "identity", false },
		{ "gzip", true },
		{ "GZIP", true },
		{ "x-gzip", true },
		{ "deflate, gzip;q=1.0, br", true },
		{ "gzip;q=0", false },
		{ "gzip; q=0.0", false },
		{ "gzip;q=0.001", true },
		{ "*", true },
		{ "*;q=0", false },
		{ "gzip;q=0, *", false },
		{ "br, *;q=0.1", true },
		{ "gzipper", false },
		{ "gzip;q=2", false },
	};
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(http_negotiate_gzip(cases[i].ae) == cases[i].want,
			      "Accept-Encoding: %s", cases[i].ae ? cases[i].ae : "(none)");
}
END_TEST

START_TEST(test_gzip_compress)
{
	struct buf in = BUF_INIT, z = BUF_INIT, out = BUF_INIT;
	unsigned i;

	/* empty input still makes a valid member */
	ck_assert_int_eq(http_gzip_compress("", 0, &z), 0);
	gunzip(z.data, z.len, &out);
	ck_assert_uint_eq(out.len, 0);
	buf_reset(&z);

	for (i = 0; i < 200000; i++)
		ck_assert_int_eq(buf_printf(&in, "series_%u{le=\"%u\"} %u\n", i % 977, i, i * 7), 0);
	ck_assert_int_eq(buf_append_str(&z, "prefix"), 0);
	ck_assert_int_eq(http_gzip_compress(in.data, in.len, &z), 0);
	ck_assert(!memcmp(z.data, "prefix", 6));
	gunzip(z.data + 6, z.len - 6, &out);
	ck_assert_uint_eq(out.len, in.len);
	ck_assert(!memcmp(out.data, in.data, in.len));
	buf_free(&in);
	buf_free(&z);
	buf_free(&out);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc;

	tc = tcase_create("endpoints");
	tcase_add_checked_fixture(tc, server_setup, server_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_metrics_text);
	tcase_add_test(tc, test_system_metrics_text);
	tcase_add_test(tc, test_openmetrics);
	tcase_add_test(tc, test_gzip);
	tcase_add_test(tc, test_head);
	tcase_add_test(tc, test_not_found);
	tcase_add_test(tc, test_method_not_allowed);
	tcase_add_test(tc, test_body_refused);
	tcase_add_test(tc, test_healthz);
	tcase_add_test(tc, test_readyz);
	tcase_add_test(tc, test_keep_alive);
#ifdef TEST_RENDER_ENOMEM
	tcase_add_test(tc, test_render_enomem);
#endif
	tcase_add_test(tc, test_idle_clients);
	tcase_add_test(tc, test_start_errors);
	tcase_add_test(tc, test_ipv6);
	tcase_add_test(tc, test_restart);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_limits_and_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("negotiation");
	tcase_add_test(tc, test_listen_parse);
	tcase_add_test(tc, test_negotiate_format);
	tcase_add_test(tc, test_negotiate_gzip);
	tcase_add_test(tc, test_gzip_compress);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(http_suite());
}

/* The connection tracker on synthetic kernel events, directly and through a
 * pipeline with two producers and two workers, against a real metric store:
 * exact connection metrics, ordering and gaps, losses made up from CLOSE
 * totals, process exit, idle timeout, pre-existing connections, TLS
 * handshakes from real hello bytes, the connection report, and failing
 * allocations. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <urcu.h>

#include "capture/capture.h"
#include "conf/conf.h"
#include "metrics/metrics-int.h"
#include "metrics/metrics.h"
#include "parse/parse-int.h"
#include "sock.h"
#include "util/log.h"

#include "../check_run.h"
#include "corpus.h"

#define MS 1000000ull
#define T0 (1000ull * 1000 * MS)	/* an arbitrary monotonic start */

static struct metrics_store *store;
static unsigned forgets;
/* The kernel keys the tracker gave back: mk_open() makes KEY(id). */
#define KEY(id) (0xffff000000000000ull | (id))
static uint64_t forgot_key[64], forgot_id[64];

/* ---- metric values ---- */

static uint64_t value(enum metric_id id, const char *a, const char *b, const char *c, unsigned k)
{
	const char *v[3] = { a, b, c };
	uint64_t vals[METRICS_MAX_BUCKETS + 2] = { 0 };
	struct metric_series *s = metrics_series_get(store, id, a ? v : NULL);

	ck_assert_ptr_nonnull(s);
	metrics_series_read(store, s, vals);
	return vals[k];
}

static uint64_t conn_val(enum metric_id id, const char *dir, const char *addr, const char *port)
{
	return value(id, dir, addr, port, 0);
}

/* Observations of a duration histogram, and their sum (µs). */
static uint64_t dur_count(const char *dir, const char *addr, const char *port)
{
	const struct metric_def *d = &metric_defs[M_CONNECTION_DURATION_MS];
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i <= d->n_buckets; i++)
		n += value(M_CONNECTION_DURATION_MS, dir, addr, port, i);
	return n;
}

static uint64_t dur_sum(const char *dir, const char *addr, const char *port)
{
	return value(M_CONNECTION_DURATION_MS, dir, addr, port,
		     metric_defs[M_CONNECTION_DURATION_MS].n_buckets + 1);
}

static uint64_t sys_val(enum metric_id id)
{
	return value(id, NULL, NULL, NULL, 0);
}

static uint64_t proto_val(const char *p)
{
	return value(M_CONNECTION_PROTOCOL_TOTAL, p, NULL, NULL, 0);
}

/* ---- records ---- */

struct rec {
	size_t size;
	union {
		struct qtap_event_header hdr;
		struct qtap_conn_open open;
		struct qtap_conn_data data;
		struct qtap_conn_close close;
		uint8_t bytes[sizeof(struct qtap_conn_data) + 4096];
	} u;
};

static void mk_open(struct rec *r, uint64_t id, uint32_t tgid, uint8_t dir, const char *raddr,
		    uint16_t rport, uint16_t lport, uint64_t ts)
{
	memset(r, 0, sizeof(*r));
	r->size = sizeof(r->u.open);
	r->u.open.hdr.version = QTAP_EVENT_ABI_VERSION;
	r->u.open.hdr.type = QTAP_EVENT_CONN_OPEN;
	r->u.open.hdr.timestamp_ns = ts;
	r->u.open.conn_id = id;
	r->u.open.tgid = tgid;
	r->u.open.pid = tgid;
	r->u.open.fd = (uint32_t)(id % 1000) + 3;
	r->u.open.direction = dir;
	r->u.open.key = KEY(id);
	r->u.open.lport = lport;
	r->u.open.rport = rport;
	if (strchr(raddr, ':')) {
		r->u.open.family = AF_INET6;
		inet_pton(AF_INET6, raddr, r->u.open.raddr);
		inet_pton(AF_INET6, "2001:db8::1", r->u.open.laddr);
	} else {
		r->u.open.family = AF_INET;
		inet_pton(AF_INET, raddr, r->u.open.raddr);
		inet_pton(AF_INET, "192.0.2.1", r->u.open.laddr);
	}
	snprintf(r->u.open.comm, sizeof(r->u.open.comm), "curl");
}

static void mk_data(struct rec *r, uint64_t id, uint64_t seq, uint32_t tgid, uint8_t dir,
		    uint32_t len, const void *payload, uint32_t captured, uint64_t ts)
{
	memset(r, 0, sizeof(r->u.data) + 8);
	r->size = sizeof(r->u.data) + captured;
	r->u.data.hdr.version = QTAP_EVENT_ABI_VERSION;
	r->u.data.hdr.type = QTAP_EVENT_CONN_DATA;
	r->u.data.hdr.timestamp_ns = ts;
	r->u.data.conn_id = id;
	r->u.data.seq = seq;
	r->u.data.tgid = tgid;
	r->u.data.pid = tgid;
	r->u.data.fd = (uint32_t)(id % 1000) + 3;
	r->u.data.dir = dir;
	r->u.data.op = dir == QTAP_DATA_SEND ? QTAP_OP_WRITE : QTAP_OP_READ;
	r->u.data.len = len;
	r->u.data.captured = captured;
	if (captured < len)
		r->u.data.flags = QTAP_DATA_F_TRUNCATED;
	if (captured)
		memcpy(r->u.data.payload, payload, captured);
}

static void mk_close(struct rec *r, uint64_t id, uint64_t seq, uint32_t tgid, uint64_t sent,
		     uint64_t recv, uint64_t ts)
{
	memset(r, 0, sizeof(*r));
	r->size = sizeof(r->u.close);
	r->u.close.hdr.version = QTAP_EVENT_ABI_VERSION;
	r->u.close.hdr.type = QTAP_EVENT_CONN_CLOSE;
	r->u.close.hdr.timestamp_ns = ts;
	r->u.close.conn_id = id;
	r->u.close.seq = seq;
	r->u.close.tgid = tgid;
	r->u.close.pid = tgid;
	r->u.close.fd = (uint32_t)(id % 1000) + 3;
	r->u.close.bytes_sent = sent;
	r->u.close.bytes_recv = recv;
	r->u.close.data_events = seq - 1;
}

static const char http_req[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
static const char http_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/* ---- fixtures ---- */

static int proc_lookup(void *ctx, uint32_t tgid, uint32_t gen, struct capture_proc_info *ret)
{
	(void)ctx;
	(void)gen;
	if (tgid == 4242)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	ret->tgid = tgid;
	snprintf(ret->comm, sizeof(ret->comm), "curl");
	snprintf(ret->exe, sizeof(ret->exe), "/usr/bin/curl");
	return 0;
}

/* Called by the worker threads too: guarded. */
static pthread_mutex_t forget_lock = PTHREAD_MUTEX_INITIALIZER;

/* What the tracker told the kernel side of learned connections. */
static struct {
	uint64_t key, conn_id;
	uint8_t direction;
	bool skip;
} learned[64];
static unsigned n_learned;

static void conn_learned(void *ctx, uint64_t key, uint64_t conn_id, uint8_t direction,
			 bool skip)
{
	(void)ctx;
	pthread_mutex_lock(&forget_lock);
	if (n_learned < 64)
		learned[n_learned] = (typeof(learned[0])){ key, conn_id, direction, skip };
	n_learned++;
	pthread_mutex_unlock(&forget_lock);
}

/* What the kernel says of connections still open: alive_answer, and how
 * often it was asked. */
static bool alive_answer;
static unsigned alive_asked;
/* what it was asked of, by connection: 1 + foreign_netns */
static unsigned alive_netns[128];

static bool conn_alive(void *ctx, const struct pipeline_conn_ref *c)
{
	(void)ctx;
	if (c->conn_id < 128)
		alive_netns[c->conn_id] = 1u + c->foreign_netns;
	alive_asked++;
	return alive_answer;
}

static void conn_forget(void *ctx, uint64_t key, uint64_t conn_id)
{
	(void)ctx;
	pthread_mutex_lock(&forget_lock);
	if (forgets < 64) {
		forgot_key[forgets] = key;
		forgot_id[forgets] = conn_id;
	}
	forgets++;
	pthread_mutex_unlock(&forget_lock);
}

/* pipeline_conn_wanted_fn as the capture answers it: the running
 * configuration's exe filters (its process groups are the capture's own
 * tests' business). */
static bool conn_wanted(void *ctx, uint32_t tgid, const char *exe, const char *comm)
{
	const struct qtap_conf *conf;
	bool keep;

	rcu_read_lock();
	conf = conf_current();
	keep = !conf || !conf_exe_filtered(conf, exe ? exe : "");
	rcu_read_unlock();
	return keep;
}

/* A tracker on the fixtures, with this process table. */
static struct conn_tracker *tracker_on(const char *proc_root, pipeline_proc_lookup_fn lookup,
				       pipeline_proc_settled_fn settled)
{
	struct conn_tracker_opts o = {
		.store = store,
		.idle_timeout_ns = 10000 * MS,
		.proc_lookup = lookup,
		.conn_forget = conn_forget,
		.conn_learned = conn_learned,
		.conn_alive = conn_alive,
		.conn_wanted = conn_wanted,
		.proc_settled = settled,
		.proc_root = proc_root,
	};
	struct conn_tracker *t = conn_tracker_new(&o);

	ck_assert_ptr_nonnull(t);
	return t;
}

static struct conn_tracker *tracker(const char *proc_root)
{
	return tracker_on(proc_root, proc_lookup, NULL);
}

static void feed(struct conn_tracker *t, const struct rec *r, uint64_t now)
{
	ck_assert_int_eq(conn_tracker_event(t, &r->u, r->size, now), 0);
}

/* Feeds an OPEN of tgid 4242 learned on its first data (direction
 * unknown), its local address laddr (NULL: mk_open()'s) in network
 * namespace netns (0: unknown). */
static void feed_learned(struct conn_tracker *t, uint64_t id, uint16_t rport, uint16_t lport,
			 const char *laddr, uint32_t netns)
{
	struct rec r;

	mk_open(&r, id, 4242, QTAP_DIR_UNKNOWN, "10.1.0.9", rport, lport, T0);
	r.u.open.flags = QTAP_CONN_F_PREEXISTING;
	if (laddr)
		inet_pton(AF_INET, laddr, r.u.open.laddr);
	r.u.open.netns = netns;
	feed(t, &r, T0);
}

static void setup(void)
{
	struct metrics_opts mo = { .series_limit = 0 };

	rcu_register_thread();
	store = metrics_store_new(&mo);
	ck_assert_ptr_nonnull(store);
	ck_assert_int_eq(metrics_thread_register(store), 0);
	forgets = 0;
	n_learned = 0;
	alive_answer = false;
	alive_asked = 0;
	memset(alive_netns, 0, sizeof(alive_netns));
	conn_malloc_hook = malloc;
}

static void teardown(void)
{
	metrics_thread_unregister(store);
	metrics_store_free(&store);
	rcu_unregister_thread();
}

/* ---- the tracker ---- */

START_TEST(test_addr_format)
{
	uint8_t a[16];
	char buf[64];

	inet_pton(AF_INET6, "2001:db8:0:0:1:0:0:1", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "2001:db8::1:0:0:1");
	inet_pton(AF_INET6, "2001:db8:0:1:1:1:1:1", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "2001:db8:0:1:1:1:1:1");
	inet_pton(AF_INET6, "::1", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "::1");
	inet_pton(AF_INET6, "::", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "::");
	inet_pton(AF_INET6, "fe80::", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "fe80::");
	inet_pton(AF_INET6, "::ffff:10.1.2.3", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "10.1.2.3");
	inet_pton(AF_INET6, "::102:304", a);
	ck_assert_str_eq(conn_addr_format(AF_INET6, a, buf, sizeof(buf)), "::102:304");
	inet_pton(AF_INET, "192.168.0.254", a);
	ck_assert_str_eq(conn_addr_format(AF_INET, a, buf, sizeof(buf)), "192.168.0.254");
}
END_TEST

START_TEST(test_exact_counts)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r;

	mk_open(&r, 1, 100, QTAP_DIR_EGRESS, "10.0.0.1", 80, 40000, T0);
	feed(t, &r, T0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.0.0.1", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.1", "80"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 1);
	mk_data(&r, 1, 1, 100, QTAP_DATA_SEND, 1000, http_req, sizeof(http_req) - 1, T0 + MS);
	feed(t, &r, T0 + MS);
	mk_data(&r, 1, 2, 100, QTAP_DATA_RECV, 3000, http_resp, sizeof(http_resp) - 1, T0 + 2 * MS);
	feed(t, &r, T0 + 2 * MS);
	mk_close(&r, 1, 3, 100, 1000, 3000, T0 + 5 * MS + 250000);
	feed(t, &r, T0 + 6 * MS);

	/* an ingress one over IPv6: remote_port is empty */
	mk_open(&r, 2, 101, QTAP_DIR_INGRESS, "2001:db8::7", 51234, 443, T0);
	feed(t, &r, T0);
	mk_data(&r, 2, 1, 101, QTAP_DATA_RECV, 10, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 10,
		T0 + MS);
	feed(t, &r, T0 + MS);

	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.0.0.1", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.1", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.1", "80"), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.1", "80"), 1000);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.1", "80"), 3000);
	ck_assert_uint_eq(dur_count("egress", "10.0.0.1", "80"), 1);
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.1", "80"), 5250);
	ck_assert_uint_eq(proto_val("http1"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "ingress", "2001:db8::7", ""), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "ingress", "2001:db8::7", ""), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "ingress", "2001:db8::7", ""), 10);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);

	/* agent stop closes it: undecided (binary), so "other" */
	conn_tracker_free(&t, T0 + 10 * MS);
	ck_assert_ptr_null(t);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "ingress", "2001:db8::7", ""), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "ingress", "2001:db8::7", ""), 0);
	ck_assert_uint_eq(dur_sum("ingress", "2001:db8::7", ""), 10000);
	ck_assert_uint_eq(proto_val("other"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
}
END_TEST

START_TEST(test_reorder)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r[5];

	mk_open(&r[0], 7, 100, QTAP_DIR_EGRESS, "10.0.0.2", 8080, 40000, T0);
	mk_data(&r[1], 7, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	mk_data(&r[2], 7, 2, 100, QTAP_DATA_RECV, 500, http_resp, 20, T0 + 2);
	mk_data(&r[3], 7, 3, 100, QTAP_DATA_SEND, 40, "x", 1, T0 + 3);
	mk_close(&r[4], 7, 4, 100, 77, 500, T0 + 4);
	/* close first, then data 3, 1, OPEN, 2 */
	feed(t, &r[4], T0);
	feed(t, &r[3], T0);
	feed(t, &r[1], T0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.0.0.2", "8080"), 0);
	feed(t, &r[0], T0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.0.0.2", "8080"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.2", "8080"), 37);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.2", "8080"), 0);
	feed(t, &r[2], T0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.2", "8080"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.2", "8080"), 77);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.2", "8080"), 500);
	ck_assert_uint_eq(proto_val("http1"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	/* a straggler after the close is dropped quietly */
	feed(t, &r[3], T0 + 500 * MS);
	conn_tracker_housekeep(t, T0 + 1000 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_free(&t, T0 + 2000 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.2", "8080"), 1);
}
END_TEST

START_TEST(test_gap_and_lost_bytes)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r;

	mk_open(&r, 9, 100, QTAP_DIR_EGRESS, "10.0.0.3", 80, 40000, T0);
	feed(t, &r, T0);
	mk_data(&r, 9, 1, 100, QTAP_DATA_SEND, 100, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0);
	/* seq 2 (a 700-byte read) was lost in the kernel */
	mk_data(&r, 9, 3, 100, QTAP_DATA_SEND, 50, "abc", 3, T0 + 3);
	feed(t, &r, T0 + 10 * MS);
	mk_data(&r, 9, 4, 100, QTAP_DATA_RECV, 60, "def", 3, T0 + 4);
	feed(t, &r, T0 + 20 * MS);
	mk_close(&r, 9, 5, 100, 150, 760, T0 + 50 * MS);
	feed(t, &r, T0 + 30 * MS);
	/* waiting for seq 2 */
	conn_tracker_housekeep(t, T0 + 100 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.3", "80"), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.3", "80"), 100);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_housekeep(t, T0 + 10 * MS + CONN_REORDER_WAIT_NS - 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_housekeep(t, T0 + 10 * MS + CONN_REORDER_WAIT_NS);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.3", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.3", "80"), 150);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.3", "80"), 760);
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.3", "80"), 50000);
	/* the lost event turning up late changes nothing */
	mk_data(&r, 9, 2, 100, QTAP_DATA_RECV, 700, "late", 4, T0 + 2);
	feed(t, &r, T0 + 100 * MS + CONN_REORDER_WAIT_NS);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	conn_tracker_free(&t, T0 + 200 * MS + CONN_REORDER_WAIT_NS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.3", "80"), 760);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 1);
}
END_TEST

START_TEST(test_reorder_buffer_full)
{
	struct conn_tracker *t = tracker(NULL);
	/* Each waits with its 200 bytes (the protocol is not known yet) until
	 * the byte budget is full, then without them: the count is what
	 * fills. */
	const uint64_t n = CONN_REORDER_MAX_EVENTS;
	const uint64_t whole = CONN_REORDER_MAX_BYTES / (sizeof(struct qtap_conn_data) + 200);
	uint8_t pay[200];
	struct rec r;
	uint64_t s;

	memset(pay, 'x', sizeof(pay));
	ck_assert_uint_lt(whole, n);
	mk_open(&r, 11, 100, QTAP_DIR_EGRESS, "10.0.0.4", 80, 40000, T0);
	feed(t, &r, T0);
	/* seq 1 never comes; 2 .. n + 1 fill the buffer */
	for (s = 2; s <= n + 1; s++) {
		mk_data(&r, 11, s, 100, QTAP_DATA_SEND, 200, pay, 200, T0 + s);
		feed(t, &r, T0 + MS);
	}
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	ck_assert_uint_eq(sys_val(M_SYSTEM_PAYLOADS_DROPPED_TOTAL), n - whole);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.4", "80"), 0);
	/* and one more overflows it: seq 1 given up, everything processed */
	mk_data(&r, 11, s, 100, QTAP_DATA_SEND, 200, pay, 200, T0 + s);
	feed(t, &r, T0 + MS);
	s++;
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.4", "80"),
			  200 * (n + 1));
	mk_close(&r, 11, s, 100, 200 * (n + 1) + 10, 0, T0 + s);
	feed(t, &r, T0 + 2 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.4", "80"), 1);
	/* the lost seq 1's bytes come with the close's totals */
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.4", "80"),
			  200 * (n + 1) + 10);
	conn_tracker_free(&t, T0 + 3 * MS);
}
END_TEST

/* A bulk transfer's reads in the reorder buffer: BULK_EVENTS of 16 KiB
 * from seq first on, 4 KiB captured each, 4 times the byte budget.  The
 * budget holds the first ones whole; the rest wait without their payload,
 * and say so.  No gap. */
#define BULK_CAPTURED 4096
#define BULK_EVENTS (4 * CONN_REORDER_MAX_BYTES / BULK_CAPTURED)
static void feed_bulk(struct conn_tracker *t, uint64_t id, uint64_t first)
{
	static uint8_t chunk[BULK_CAPTURED];
	struct rec r;
	uint64_t s;

	memset(chunk, 'x', sizeof(chunk));
	ck_assert_uint_lt(BULK_EVENTS, CONN_REORDER_MAX_EVENTS);
	for (s = first; s < first + BULK_EVENTS; s++) {
		mk_data(&r, id, s, 100, QTAP_DATA_RECV, 16384, chunk, sizeof(chunk), T0 + s);
		feed(t, &r, T0 + MS);
	}
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	ck_assert_uint_eq(sys_val(M_SYSTEM_PAYLOADS_DROPPED_TOTAL),
			  BULK_EVENTS - CONN_REORDER_MAX_BYTES /
					(sizeof(struct qtap_conn_data) + BULK_CAPTURED));
}

/* A bulk response whose request is late (the client's thread moved to
 * another CPU right after sending it): 1 MiB of its events fills the byte
 * budget in well under a millisecond.  They wait without their payload
 * rather than have the request given up, and once it comes the protocol
 * is known from it and every figure is exact. */
START_TEST(test_reorder_bulk_after_gap)
{
	struct conn_tracker *t = tracker(NULL);
	const uint64_t n = BULK_EVENTS;
	struct rec r;

	mk_open(&r, 14, 100, QTAP_DIR_EGRESS, "10.0.0.11", 80, 40000, T0);
	feed(t, &r, T0);
	/* seq 1, the request, is late; 2 .. n + 1 come first */
	feed_bulk(t, 14, 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.11", "80"), 0);
	mk_data(&r, 14, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0 + 2 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.11", "80"), 37);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.11", "80"),
			  16384 * n);
	mk_close(&r, 14, n + 2, 100, 37, 16384 * n, T0 + n + 2);
	feed(t, &r, T0 + 3 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.11", "80"), 1);
	ck_assert_uint_eq(proto_val("http1"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_free(&t, T0 + 4 * MS);
}
END_TEST

/* The count bound: events that wait without a payload (the protocol is
 * known, and not TLS: only their header is of use) fill it before the
 * byte budget. */
START_TEST(test_reorder_count_full)
{
	struct conn_tracker *t = tracker(NULL);
	const uint64_t n = CONN_REORDER_MAX_EVENTS;
	struct rec r;
	uint64_t s;

	ck_assert_uint_le(n * sizeof(struct qtap_conn_data), CONN_REORDER_MAX_BYTES);
	mk_open(&r, 13, 100, QTAP_DIR_EGRESS, "10.0.0.10", 80, 40000, T0);
	feed(t, &r, T0);
	mk_data(&r, 13, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0);
	/* seq 2 never comes; 3 .. n + 2 fill the buffer */
	for (s = 3; s <= n + 2; s++) {
		mk_data(&r, 13, s, 100, QTAP_DATA_SEND, 10, "0123456789", 10, T0 + s);
		feed(t, &r, T0 + MS);
	}
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	mk_data(&r, 13, s, 100, QTAP_DATA_SEND, 10, "0123456789", 10, T0 + s);
	feed(t, &r, T0 + MS);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.10", "80"),
			  37 + 10 * (n + 1));
	conn_tracker_free(&t, T0 + 3 * MS);
}
END_TEST

/* The event a full buffer waits for comes: it is applied with all that
 * waited, not given up with the numbers before them (k = 0).  One that
 * comes before all that wait in a full buffer, with an earlier one still
 * missing: only that earlier one is a gap (k = 1). */
START_TEST(test_reorder_full_late)
{
	const uint64_t n = CONN_REORDER_MAX_EVENTS;
	const char *addr[2] = { "10.0.0.12", "10.0.0.13" };
	struct conn_tracker *t;
	struct rec r;
	uint64_t s, k;

	for (k = 0; k < 2; k++) {
		t = tracker(NULL);
		mk_open(&r, 15 + k, 100, QTAP_DIR_EGRESS, addr[k], 80, 40000, T0);
		feed(t, &r, T0);
		mk_data(&r, 15 + k, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1,
			T0 + 1);
		feed(t, &r, T0);
		/* 2 .. 2 + k late; the n after them fill the buffer */
		for (s = 3 + k; s < 3 + k + n; s++) {
			mk_data(&r, 15 + k, s, 100, QTAP_DATA_SEND, 10, "0123456789", 10, T0 + s);
			feed(t, &r, T0 + MS);
		}
		ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
		ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", addr[k], "80"),
				  37);
		/* the last late one */
		mk_data(&r, 15 + k, 2 + k, 100, QTAP_DATA_SEND, 10, "0123456789", 10, T0 + 2 + k);
		feed(t, &r, T0 + 2 * MS);
		ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), k);
		ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", addr[k], "80"),
				  37 + 10 * (n + 1));
		mk_close(&r, 15 + k, 3 + k + n, 100, 37 + 10 * (n + 1 + k), 0, T0 + n + 4);
		feed(t, &r, T0 + 3 * MS);
		ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", addr[k], "80"), 1);
		ck_assert_uint_eq(conn_tracker_count(t), 0);
		conn_tracker_free(&t, T0 + 4 * MS);
	}
}
END_TEST

/* A thread that moved to another CPU: its last event on the old one comes
 * after 1200 of the new one's (a busy keep-alive connection, 12 ms of a
 * reader's poll); they wait for it, with no gap, and the connection's
 * figures are exact. */
START_TEST(test_reorder_cpu_skew)
{
	struct conn_tracker *t = tracker(NULL);
	const uint64_t n = 1200;
	struct rec r;
	uint64_t s;

	mk_open(&r, 12, 100, QTAP_DIR_EGRESS, "10.0.0.9", 80, 40000, T0);
	feed(t, &r, T0);
	mk_data(&r, 12, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0);
	/* seq 2 is late; 3 .. n + 2 come first */
	for (s = 3; s <= n + 2; s++) {
		mk_data(&r, 12, s, 100, s % 2 ? QTAP_DATA_RECV : QTAP_DATA_SEND, 10, "0123456789",
			10, T0 + s);
		feed(t, &r, T0 + MS);
	}
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.9", "80"), 37);
	mk_data(&r, 12, 2, 100, QTAP_DATA_SEND, 10, "0123456789", 10, T0 + 2);
	feed(t, &r, T0 + 12 * MS);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	/* seq 2 and the n / 2 even ones sent 10 bytes each, the odd received */
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.9", "80"),
			  37 + 10 + 10 * (n / 2));
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.9", "80"),
			  10 * (n / 2));
	/* and the next one in order goes straight through */
	mk_data(&r, 12, n + 3, 100, QTAP_DATA_RECV, 10, "0123456789", 10, T0 + n + 3);
	feed(t, &r, T0 + 13 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.9", "80"),
			  10 * (n / 2 + 1));
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_free(&t, T0 + 20 * MS);
}
END_TEST

START_TEST(test_open_late_and_lost)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r;

	/* data before its OPEN (another CPU's queue): no gap */
	mk_data(&r, 21, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	mk_open(&r, 21, 100, QTAP_DIR_EGRESS, "10.0.0.5", 80, 40000, T0);
	feed(t, &r, T0 + 50 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.5", "80"), 37);
	mk_close(&r, 21, 2, 100, 37, 0, T0 + 60 * MS);
	feed(t, &r, T0 + 60 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.5", "80"), 1);

	/* the OPEN was lost: one gap, tracked without metrics, then gone */
	mk_data(&r, 22, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0 + 100 * MS);
	mk_close(&r, 22, 2, 100, 37, 0, T0 + 2);
	feed(t, &r, T0 + 110 * MS);
	conn_tracker_housekeep(t, T0 + 99 * MS + CONN_REORDER_WAIT_NS);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_housekeep(t, T0 + 101 * MS + CONN_REORDER_WAIT_NS);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 1);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
	ck_assert_uint_eq(proto_val("http1"), 1);
	conn_tracker_free(&t, T0 + 400 * MS);
}
END_TEST

/* A bulk transfer's events before its OPEN (the OPEN in another CPU's
 * queue): past the reorder budget they wait without their payload, and
 * the connection is whole once the OPEN comes. */
START_TEST(test_open_after_bulk)
{
	struct conn_tracker *t = tracker(NULL);
	const uint64_t n = BULK_EVENTS;
	struct rec r;

	feed_bulk(t, 31, 1);
	mk_open(&r, 31, 100, QTAP_DIR_EGRESS, "10.0.0.6", 80, 40000, T0);
	feed(t, &r, T0 + 5 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.0.0.6", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.0.0.6", "80"),
			  16384 * n);
	mk_close(&r, 31, n + 1, 100, 0, 16384 * n, T0 + n + 1);
	feed(t, &r, T0 + 6 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.6", "80"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_free(&t, T0 + 7 * MS);
}
END_TEST

/* The exit of process tgid, heard by the kernel at ts. */
static struct pipeline_exit_event mk_exit(uint32_t tgid, uint64_t ts)
{
	return (struct pipeline_exit_event){
		.version = QTAP_EVENT_ABI_VERSION, .type = PIPELINE_EVENT_EXIT,
		.tgid = tgid, .timestamp_ns = ts,
	};
}

START_TEST(test_process_exit)
{
	struct conn_tracker *t = tracker(NULL);
	struct pipeline_exit_event x = mk_exit(100, T0 + 40 * MS);
	struct rec r;

	mk_open(&r, 31, 100, QTAP_DIR_EGRESS, "10.0.0.6", 80, 40000, T0);
	feed(t, &r, T0);
	mk_open(&r, 32, 100, QTAP_DIR_EGRESS, "10.0.0.6", 80, 40001, T0 + 10 * MS);
	feed(t, &r, T0);
	mk_open(&r, 33, 200, QTAP_DIR_EGRESS, "10.0.0.6", 80, 40002, T0);
	feed(t, &r, T0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.6", "80"), 3);
	ck_assert_int_eq(conn_tracker_event(t, &x, sizeof(x), T0 + 50 * MS), 0);
	/* The socket readers may still hold what the process did before it
	 * exited: nothing is closed yet, and a late data event of 31 and the
	 * close of 32 are taken as they come. */
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.6", "80"), 0);
	mk_data(&r, 31, 1, 100, QTAP_DATA_SEND, 5, "hello", 5, T0 + 30 * MS);
	feed(t, &r, T0 + 60 * MS);
	mk_close(&r, 32, 1, 100, 0, 0, T0 + 35 * MS);
	feed(t, &r, T0 + 60 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.6", "80"), 5);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.6", "80"), 1);
	conn_tracker_housekeep(t, T0 + 50 * MS + CONN_EXIT_GRACE_NS - 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.6", "80"), 1);
	/* the grace is over: 31 is closed by the exit, at the exit's time */
	conn_tracker_housekeep(t, T0 + 50 * MS + CONN_EXIT_GRACE_NS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.6", "80"), 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.6", "80"), 1);
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.6", "80"), 40000 + 25000);
	ck_assert_uint_eq(forgets, 1);
	ck_assert_uint_eq(forgot_key[0], KEY(31));
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	conn_tracker_free(&t, T0 + 100 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.6", "80"), 0);
}
END_TEST

/* Every exit on the host reaches every worker: they are held and applied
 * at the housekeeping, in one pass over the table, however many came
 * (more than fit are applied as they fill).  A connection first heard of
 * after its process's exit, before that pass, is closed with it. */
START_TEST(test_exits_batched)
{
	struct conn_tracker *t = tracker(NULL);
	struct pipeline_exit_event x;
	struct rec r;
	uint32_t tgid;

	for (tgid = 1000; tgid < 1010; tgid++) {
		mk_open(&r, tgid, tgid, QTAP_DIR_EGRESS, "10.0.0.7", 80, (uint16_t)(40000 + tgid),
			T0);
		feed(t, &r, T0);
	}
	/* 5000 exits of other processes, those ten's among them */
	for (tgid = 5000; tgid < 10000; tgid++) {
		x = mk_exit(tgid, T0 + 40 * MS);
		ck_assert_int_eq(conn_tracker_event(t, &x, sizeof(x), T0 + 50 * MS), 0);
		if (tgid % 500 == 0) {
			x = mk_exit(1000 + (tgid - 5000) / 500, T0 + 40 * MS);
			ck_assert_int_eq(conn_tracker_event(t, &x, sizeof(x), T0 + 50 * MS), 0);
		}
	}
	/* a process that exits before its connection's OPEN is processed */
	x = mk_exit(2000, T0 + 40 * MS);
	ck_assert_int_eq(conn_tracker_event(t, &x, sizeof(x), T0 + 50 * MS), 0);
	mk_open(&r, 2000, 2000, QTAP_DIR_EGRESS, "10.0.0.7", 80, 39999, T0 + 30 * MS);
	feed(t, &r, T0 + 60 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.7", "80"), 11);
	conn_tracker_housekeep(t, T0 + 50 * MS + CONN_EXIT_GRACE_NS - 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.7", "80"), 0);
	conn_tracker_housekeep(t, T0 + 50 * MS + CONN_EXIT_GRACE_NS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.7", "80"), 11);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.7", "80"), 0);
	ck_assert_uint_eq(forgets, 11);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	conn_tracker_free(&t, T0 + 100 * MS + CONN_EXIT_GRACE_NS);
}
END_TEST

/* A connection silent for the idle timeout that the kernel still has open
 * (a pool's spare connection) stays, asked again one timeout later; one
 * whose process exited stays while another holds it. */
START_TEST(test_idle_alive)
{
	struct conn_tracker *t = tracker(NULL);
	struct pipeline_exit_event x = mk_exit(100, T0 + 20000 * MS);
	struct rec r;

	mk_open(&r, 42, 100, QTAP_DIR_EGRESS, "10.0.0.9", 80, 40000, T0);
	feed(t, &r, T0);
	alive_answer = true;
	conn_tracker_housekeep(t, T0 + 10500 * MS);
	ck_assert_uint_eq(alive_asked, 1);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	/* asked again only a timeout later */
	conn_tracker_housekeep(t, T0 + 15000 * MS);
	ck_assert_uint_eq(alive_asked, 1);
	/* its process exits; a child holds it */
	ck_assert_int_eq(conn_tracker_event(t, &x, sizeof(x), T0 + 20000 * MS), 0);
	conn_tracker_housekeep(t, T0 + 20000 * MS + CONN_EXIT_GRACE_NS);
	ck_assert_uint_eq(alive_asked, 2);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.9", "80"), 1);
	/* gone: closed as of its last activity, once no CLOSE came */
	alive_answer = false;
	conn_tracker_housekeep(t, T0 + 32000 * MS);
	ck_assert_uint_eq(alive_asked, 3);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	conn_tracker_housekeep(t, T0 + 32000 * MS + CONN_IDLE_GRACE_NS);
	ck_assert_uint_eq(alive_asked, 4);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.9", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.9", "80"), 0);
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.9", "80"), 0);
	ck_assert_uint_eq(forgets, 1);
	/* its own entry in the kernel's table, not whatever has its key now */
	ck_assert_uint_eq(forgot_key[0], KEY(42));
	ck_assert_uint_eq(forgot_id[0], 42);
	conn_tracker_free(&t, T0 + 35000 * MS);
}
END_TEST

/* A connection silent for the idle timeout that the kernel says is gone
 * waits CONN_IDLE_GRACE_NS for its own CLOSE (on its way in a ring or a
 * queue after a close at the end of the silence), then is closed as of its
 * last activity; one whose CLOSE comes in the wait is closed by it. */
START_TEST(test_idle_timeout)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r;

	mk_open(&r, 41, 100, QTAP_DIR_EGRESS, "10.0.0.8", 80, 40000, T0);
	feed(t, &r, T0);
	mk_data(&r, 41, 1, 100, QTAP_DATA_SEND, 5, "hello", 5, T0 + 2000 * MS);
	feed(t, &r, T0 + 2000 * MS);
	mk_open(&r, 43, 100, QTAP_DIR_EGRESS, "10.0.0.8", 81, 40001, T0);
	feed(t, &r, T0);
	mk_data(&r, 43, 1, 100, QTAP_DATA_SEND, 5, "hello", 5, T0 + 2000 * MS);
	feed(t, &r, T0 + 2000 * MS);
	conn_tracker_housekeep(t, T0 + 11000 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 2);
	/* gone to the kernel: both wait */
	conn_tracker_housekeep(t, T0 + 12500 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 2);
	ck_assert_uint_eq(forgets, 0);
	/* 43's CLOSE comes (its peer closed it at 12.4 s, after 7 more bytes) */
	mk_close(&r, 43, 2, 100, 12, 0, T0 + 12400 * MS);
	feed(t, &r, T0 + 13000 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.8", "81"), 12400000);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.0.0.8", "81"), 12);
	conn_tracker_housekeep(t, T0 + 13500 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	ck_assert_uint_eq(forgets, 0);
	conn_tracker_housekeep(t, T0 + 12500 * MS + CONN_IDLE_GRACE_NS);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.0.0.8", "80"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.0.0.8", "80"), 0);
	/* closed as of its last activity */
	ck_assert_uint_eq(dur_sum("egress", "10.0.0.8", "80"), 2000000);
	ck_assert_uint_eq(forgets, 1);
	ck_assert_uint_eq(forgot_key[0], KEY(41));
	conn_tracker_free(&t, T0 + 16000 * MS);
}
END_TEST

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* egress-internal and egress-external for connections learned in the
 * middle (the agent decides them; the programs use the same definition,
 * bpf/sock.h): each range on each side of its edge, v4-mapped too. */
START_TEST(test_egress_internal)
{
	static const struct {
		const char *addr;
		bool internal;
	} peers[] = {
		{ "10.2.3.4", true }, { "172.16.0.1", true }, { "172.31.255.254", true },
		{ "172.32.0.1", false }, { "192.168.1.1", true }, { "192.169.0.1", false },
		{ "169.254.1.1", true }, { "100.64.0.1", true }, { "100.127.255.254", true },
		{ "100.128.0.1", false }, { "127.0.0.1", true }, { "8.8.8.8", false },
		{ "fd00::1", true }, { "fc00::1", true }, { "fe80::1", true }, { "fec0::1", false },
		{ "::1", true }, { "::2", false }, { "2001:db8::9", false },
		{ "::ffff:10.0.0.1", true }, { "::ffff:100.64.0.9", true }, { "::ffff:8.8.8.8", false },
	};
	const size_t n = sizeof(peers) / sizeof(peers[0]);
	char root[] = "/tmp/check_conn.XXXXXX", path[256];
	struct conn_tracker *t;
	struct rec r;
	unsigned pass;
	size_t i;

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/net", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/net/tcp", root);
	write_file(path, "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
			 "retrnsmt   uid  timeout inode\n");
	for (pass = 0; pass < 2; pass++) {
		struct qtap_conf *conf = conf_load_string(
			pass ? "tap = { direction = \"egress-external\"; ignore_loopback = false; };" :
			       "tap = { direction = \"egress-internal\"; ignore_loopback = false; };",
			"test", NULL);

		ck_assert_ptr_nonnull(conf);
		conf_publish(conf);
		n_learned = 0;
		t = tracker(root);
		for (i = 0; i < n; i++) {
			mk_open(&r, 60 + i, 4242, QTAP_DIR_UNKNOWN, peers[i].addr, 443,
				(uint16_t)(46000 + i), T0);
			feed(t, &r, T0);
		}
		ck_assert_uint_eq(n_learned, n);
		for (i = 0; i < n; i++) {
			ck_assert_uint_eq(learned[i].direction, QTAP_DIR_EGRESS);
			ck_assert_msg(learned[i].skip == (pass ? peers[i].internal : !peers[i].internal),
				      "%s: %s", peers[i].addr, learned[i].skip ? "left out" : "kept");
		}
		conn_tracker_free(&t, T0 + MS);
		conf_publish(NULL);
	}
	unlink(path);
	snprintf(path, sizeof(path), "%s/net", root);
	rmdir(path);
	rmdir(root);
}
END_TEST

START_TEST(test_preexisting)
{
	char root[] = "/tmp/check_conn.XXXXXX", path[256];
	struct qtap_conf *conf;
	struct conn_tracker *t;
	struct rec r;
	unsigned i;

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/net", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/net/tcp", root);
	write_file(path,
		   "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
		   "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n"
		   "   1: 0100007F:AFC8 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n"
		   "   2: 070200C0:B000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n");
	snprintf(path, sizeof(path), "%s/net/tcp6", root);
	write_file(path,
		   "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
		   "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n"
		   "   1: 0000000000000000FFFF0000090200C0:B001 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0\n");
	conf = conf_load_string("tap = { direction = \"all\"; ignore_loopback = true; "
				"filters = { custom = ( { exe = \"/usr/bin/curl\"; strategy = \"exact\"; } ); }; };",
				"test", NULL);
	ck_assert_ptr_nonnull(conf);
	conf_publish(conf);

	t = tracker(root);
	/* local port 8080 has a listener (tcp): ingress */
	mk_open(&r, 51, 4242, QTAP_DIR_UNKNOWN, "10.1.0.9", 50000, 8080, T0);
	r.u.open.flags = QTAP_CONN_F_PREEXISTING;
	feed(t, &r, T0);
	/* local port 443 has one (tcp6) */
	mk_open(&r, 52, 4242, QTAP_DIR_UNKNOWN, "2001:db8::9", 50001, 443, T0);
	feed(t, &r, T0);
	/* local port 45000 has none: egress */
	mk_open(&r, 53, 4242, QTAP_DIR_UNKNOWN, "10.1.0.9", 5432, 45000, T0);
	feed(t, &r, T0);
	/* to loopback, ignored by the configuration */
	mk_open(&r, 54, 4242, QTAP_DIR_UNKNOWN, "127.0.0.1", 5432, 45001, T0);
	feed(t, &r, T0);
	/* by an executable the filters exclude */
	mk_open(&r, 55, 100, QTAP_DIR_UNKNOWN, "10.1.0.9", 5432, 45002, T0);
	feed(t, &r, T0);
	mk_data(&r, 55, 1, 100, QTAP_DATA_SEND, 5, "hello", 5, T0 + 1);
	feed(t, &r, T0);
	/* undecided by the kernel (the process was not classified yet) and
	 * excluded by the filters: dropped, the kernel entry kept */
	mk_open(&r, 56, 100, QTAP_DIR_EGRESS, "10.1.0.9", 5432, 45003, T0);
	r.u.open.flags = QTAP_CONN_F_UNDECIDED;
	feed(t, &r, T0);
	mk_data(&r, 56, 1, 100, QTAP_DATA_SEND, 5, "hello", 5, T0 + 1);
	feed(t, &r, T0);
	/* undecided and allowed: counted */
	mk_open(&r, 57, 4242, QTAP_DIR_EGRESS, "10.1.0.9", 5432, 45004, T0);
	r.u.open.flags = QTAP_CONN_F_UNDECIDED;
	feed(t, &r, T0);
	/* Port 45056 has a listener on 192.0.2.7 only: a connection from
	 * 192.0.2.8 at that port (a client that bound its source address) is
	 * egress, one at 192.0.2.7 ingress; port 45057's listener is
	 * ::ffff:192.0.2.9, which takes IPv4 connections to 192.0.2.9. */
	feed_learned(t, 58, 5433, 45056, "192.0.2.8", 0);
	feed_learned(t, 59, 50002, 45056, "192.0.2.7", 0);
	feed_learned(t, 60, 50003, 45057, "192.0.2.9", 0);
	feed_learned(t, 61, 5434, 45057, "192.0.2.10", 0);

	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "ingress", "10.1.0.9", ""), 3);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "5433"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "5434"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "ingress", "2001:db8::9", ""), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "5432"), 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "127.0.0.1", "5432"), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.1.0.9", "5432"), 0);
	/* The kernel side is told each learned one's direction, and which
	 * are left out (it writes their CLOSE): their entries are not dropped
	 * (the next call would learn them again). */
	ck_assert_uint_eq(forgets, 0);
	ck_assert_uint_eq(n_learned, 9);
	for (i = 0; i < 9; i++) {
		static const uint8_t dir[9] = { QTAP_DIR_INGRESS, QTAP_DIR_INGRESS, QTAP_DIR_EGRESS,
						QTAP_DIR_EGRESS, QTAP_DIR_EGRESS, QTAP_DIR_EGRESS,
						QTAP_DIR_INGRESS, QTAP_DIR_INGRESS, QTAP_DIR_EGRESS };
		/* 56 and 57 were not learned: their direction was known */
		uint64_t id = i < 5 ? 51 + i : 53 + i;

		ck_assert_uint_eq(learned[i].key, KEY(id));
		ck_assert_uint_eq(learned[i].conn_id, id);
		ck_assert_uint_eq(learned[i].direction, dir[i]);
		ck_assert_int_eq(learned[i].skip, i >= 3 && i < 5);
	}
	/* A learned one's close takes the kernel side's entries of it back
	 * (the agent's word, written after its socket was gone, would stay);
	 * not a left-out one's, whose socket lives on. */
	mk_close(&r, 58, 1, 4242, 0, 0, T0 + 2);
	feed(t, &r, T0);
	ck_assert_uint_eq(forgets, 1);
	ck_assert_uint_eq(forgot_key[0], KEY(58));
	ck_assert_uint_eq(forgot_id[0], 58);
	mk_close(&r, 54, 1, 4242, 0, 0, T0 + 2);
	r.u.close.flags = QTAP_CLOSE_F_SKIPPED;
	feed(t, &r, T0);
	ck_assert_uint_eq(forgets, 1);
	conn_tracker_free(&t, T0 + MS);
	/* the filtered ones were never counted */
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.1.0.9", "5432"), 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "127.0.0.1", "5432"), 0);
	conf_publish(NULL);

	snprintf(path, sizeof(path), "%s/net/tcp", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/net/tcp6", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/net", root);
	rmdir(path);
	rmdir(root);
}
END_TEST

/* Learned connection at local port lport (tgid 4242, 10.1.0.9:5000 + id),
 * fed at now. */
static void feed_learned_at(struct conn_tracker *t, uint64_t id, uint16_t lport, uint64_t now)
{
	struct rec r;

	mk_open(&r, id, 4242, QTAP_DIR_UNKNOWN, "10.1.0.9", (uint16_t)(5000 + id), lport, now);
	r.u.open.flags = QTAP_CONN_F_PREEXISTING;
	feed(t, &r, now);
}

/* The listeners of a namespace are read once a second at most, however
 * many connections are learned meanwhile (a host with tens of thousands
 * open when the agent starts, each client's at a port of its own): one
 * that appears counts from the next read. */
START_TEST(test_listeners_read_once)
{
	static const char head[] =
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
	static const char l8080[] =
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
	static const char l9090[] =
		"   1: 00000000:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
	char root[] = "/tmp/check_conn.XXXXXX", path[256], text[1024];
	struct conn_tracker *t;
	unsigned i;

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/net", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/net/tcp", root);
	snprintf(text, sizeof(text), "%s%s", head, l8080);
	write_file(path, text);

	t = tracker(root);
	feed_learned_at(t, 81, 8080, T0);		/* ingress */
	feed_learned_at(t, 82, 9090, T0);		/* egress */
	/* a listener on 9090 appears, and the one on 8080 goes: within the
	 * second, the answers are the ones read */
	snprintf(text, sizeof(text), "%s%s", head, l9090);
	write_file(path, text);
	feed_learned_at(t, 83, 9090, T0 + 500 * MS);	/* egress */
	feed_learned_at(t, 84, 8080, T0 + 999 * MS);	/* ingress */
	/* a second later, they are read again */
	feed_learned_at(t, 85, 9090, T0 + 1000 * MS);	/* ingress */
	feed_learned_at(t, 86, 8080, T0 + 1001 * MS);	/* egress */
	/* with no file at all, none listens (read again a second later) */
	unlink(path);
	feed_learned_at(t, 87, 9090, T0 + 2000 * MS);	/* egress */

	ck_assert_uint_eq(n_learned, 7);
	for (i = 0; i < 7; i++) {
		static const uint8_t dir[7] = { QTAP_DIR_INGRESS, QTAP_DIR_EGRESS, QTAP_DIR_EGRESS,
						QTAP_DIR_INGRESS, QTAP_DIR_INGRESS, QTAP_DIR_EGRESS,
						QTAP_DIR_EGRESS };

		ck_assert_uint_eq(learned[i].conn_id, 81 + i);
		ck_assert_uint_eq(learned[i].direction, dir[i]);
	}
	conn_tracker_free(&t, T0 + 3000 * MS);
	snprintf(path, sizeof(path), "%s/net", root);
	rmdir(path);
	rmdir(root);
}
END_TEST

/* Connections learned in the middle in another network namespace than
 * the agent's (a container's): the direction from the listeners their
 * process sees (PROC/TGID/net/tcp), not the agent's; asked whether they
 * are still open, the capture is told their namespace is another (its
 * socket diagnostics cannot see them). */
START_TEST(test_preexisting_netns)
{
	static const char *const dirs[] = { "net", "self", "self/ns", "4242", "4242/net",
					    "4242/ns" };
	static const char *const files[] = { "net/tcp", "self/ns/net", "4242/net/tcp",
					     "4242/ns/net" };
	static const char *const head =
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
	char root[] = "/tmp/check_conn.XXXXXX", path[256], text[512];
	struct qtap_conf *conf;
	struct conn_tracker *t;
	struct stat own, other;
	unsigned i;

	ck_assert_ptr_nonnull(mkdtemp(root));
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
		ck_assert_int_eq(mkdir(path, 0700), 0);
	}
	/* the agent's namespace has no listener; the container's has one on
	 * port 45058 (0xB002), any address */
	snprintf(path, sizeof(path), "%s/net/tcp", root);
	write_file(path, head);
	snprintf(path, sizeof(path), "%s/self/ns/net", root);
	write_file(path, "");
	ck_assert_int_eq(stat(path, &own), 0);
	snprintf(path, sizeof(path), "%s/4242/ns/net", root);
	write_file(path, "");
	ck_assert_int_eq(stat(path, &other), 0);
	snprintf(path, sizeof(path), "%s/4242/net/tcp", root);
	snprintf(text, sizeof(text), "%s%s", head,
		 "   0: 00000000:B002 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n");
	write_file(path, text);
	conf = conf_load_string("tap = { direction = \"all\"; ignore_loopback = false; };", "test",
				NULL);
	ck_assert_ptr_nonnull(conf);
	conf_publish(conf);

	t = tracker(root);
	/* in the container: ingress */
	feed_learned(t, 70, 50010, 45058, NULL, (uint32_t)other.st_ino);
	/* in a namespace its process is no longer in: egress, by default */
	feed_learned(t, 73, 5437, 45058, NULL, (uint32_t)other.st_ino + (uint32_t)own.st_ino);
	/* the same port in the agent's namespace: egress */
	feed_learned(t, 71, 5435, 45058, NULL, (uint32_t)own.st_ino);
	/* namespace unknown: taken as the agent's */
	feed_learned(t, 72, 5436, 45058, NULL, 0);
	ck_assert_uint_eq(n_learned, 4);
	ck_assert_uint_eq(learned[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_eq(learned[1].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(learned[2].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(learned[3].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "ingress", "10.1.0.9", ""), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "5435"), 1);

	/* silent for the idle timeout, and still open */
	alive_answer = true;
	conn_tracker_housekeep(t, T0 + 10500 * MS);
	ck_assert_uint_eq(alive_asked, 4);
	ck_assert_uint_eq(alive_netns[70], 2);
	ck_assert_uint_eq(alive_netns[71], 1);
	ck_assert_uint_eq(alive_netns[72], 1);
	ck_assert_uint_eq(conn_tracker_count(t), 4);
	conn_tracker_free(&t, T0 + 11000 * MS);
	conf_publish(NULL);

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, files[i]);
		unlink(path);
	}
	for (i = sizeof(dirs) / sizeof(dirs[0]); i-- > 0;) {
		snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
		rmdir(path);
	}
	rmdir(root);
}
END_TEST

/* A process table that learns of execs late: tgid 300 runs /bin/sh until
 * its exec of /usr/bin/curl (generation 1) is "applied"; tgid 301 never
 * gets there. */
static const char *late_exe = "/bin/sh";
static uint32_t late_gen;

static int late_lookup(void *ctx, uint32_t tgid, uint32_t gen, struct capture_proc_info *ret)
{
	(void)ctx;
	(void)gen;
	memset(ret, 0, sizeof(*ret));
	ret->tgid = tgid;
	snprintf(ret->comm, sizeof(ret->comm), "sh");
	snprintf(ret->exe, sizeof(ret->exe), "%s", tgid == 300 ? late_exe : "/bin/sh");
	return 0;
}

static bool late_settled(void *ctx, uint32_t tgid, uint32_t gen)
{
	(void)ctx;
	return tgid == 300 && late_gen >= gen;
}

/* Undecided connections of a process that exited before its exec reached
 * the table wait for it (at most PROC_WAIT_NS, 3 s), then are judged by
 * the image it ran: nothing counted before, nothing lost after. */
START_TEST(test_undecided_waits)
{
	struct qtap_conf *conf;
	struct conn_tracker *t;
	struct rec r;
	unsigned id;

	conf = conf_load_string("tap = { direction = \"all\"; ignore_loopback = false; "
				"filters = { custom = ( { exe = \"/usr/bin/curl\"; strategy = \"exact\"; "
				"only = true; } ); }; };", "test", NULL);
	ck_assert_ptr_nonnull(conf);
	conf_publish(conf);
	late_exe = "/bin/sh";
	late_gen = 0;
	t = tracker_on(NULL, late_lookup, late_settled);
	for (id = 60; id <= 61; id++) {
		uint32_t tgid = id == 60 ? 300 : 301;

		mk_open(&r, id, tgid, QTAP_DIR_EGRESS, "10.1.0.9", 443, 45000 + id, T0);
		r.u.open.flags = QTAP_CONN_F_UNDECIDED;
		r.u.open.exec_gen = 1;
		feed(t, &r, T0);
		mk_data(&r, id, 1, tgid, QTAP_DATA_SEND, 38, http_req, 38, T0 + 1);
		feed(t, &r, T0);
		mk_data(&r, id, 2, tgid, QTAP_DATA_RECV, 38, http_resp, 38, T0 + 2);
		feed(t, &r, T0);
		mk_close(&r, id, 3, tgid, 38, 38, T0 + 3);
		feed(t, &r, T0);
	}
	/* held: neither counted nor dropped yet, past the reorder wait too */
	conn_tracker_housekeep(t, T0 + CONN_REORDER_WAIT_NS + 500 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "443"), 0);
	ck_assert_uint_eq(conn_tracker_count(t), 2);
	/* the exec reaches the table: 60 is curl's, counted in full */
	late_exe = "/usr/bin/curl";
	late_gen = 1;
	conn_tracker_housekeep(t, T0 + CONN_REORDER_WAIT_NS + 600 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "443"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.1.0.9", "443"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.1.0.9", "443"), 38);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.1.0.9", "443"), 38);
	ck_assert_uint_eq(proto_val("http1"), 1);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	/* 61 never settles: after 3 s it is judged by what is known (sh) */
	conn_tracker_housekeep(t, T0 + 2900 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 1);
	conn_tracker_housekeep(t, T0 + 3100 * MS);
	ck_assert_uint_eq(conn_tracker_count(t), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.9", "443"), 1);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	/* 62's OPEN comes after as many events as the reorder buffer holds:
	 * with no room to wait, it is judged at once by what is known (curl:
	 * its image of generation 2 has not reached the table),
	 * not given up with the events before it */
	for (id = 1; id <= CONN_REORDER_MAX_EVENTS; id++) {
		mk_data(&r, 62, id, 300, QTAP_DATA_SEND, 1, "x", 1, T0 + 3200 * MS + id);
		feed(t, &r, T0 + 3200 * MS);
	}
	mk_open(&r, 62, 300, QTAP_DIR_EGRESS, "10.1.0.10", 443, 45062, T0 + 3200 * MS);
	r.u.open.flags = QTAP_CONN_F_UNDECIDED;
	r.u.open.exec_gen = 2;
	feed(t, &r, T0 + 3200 * MS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.1.0.10", "443"), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.1.0.10", "443"),
			  CONN_REORDER_MAX_EVENTS);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	conn_tracker_free(&t, T0 + 3300 * MS);
	conf_publish(NULL);
}
END_TEST

/* Copies a handshake file into buf (size bytes at most). */
static size_t read_corpus(const char *name, uint8_t *buf, size_t size)
{
	size_t n;
	uint8_t *data = load_hello(name, &n);

	if (n > size)
		n = size;
	memcpy(buf, data, n);
	free(data);
	return n;
}

/* test_proxy_protocol's connection id from 203.0.113.9 to port 80: its n
 * bytes at buf read by the server in two reads, cut after cut bytes (n:
 * one read). */
static void proxied_reads(struct conn_tracker *t, uint64_t id, const uint8_t *buf, size_t n,
			  size_t cut)
{
	struct rec r;

	mk_open(&r, id, 100, QTAP_DIR_INGRESS, "203.0.113.9", (uint16_t)(40000 + id - 70), 80, T0);
	feed(t, &r, T0);
	mk_data(&r, id, 1, 100, QTAP_DATA_RECV, (uint32_t)cut, buf, (uint32_t)cut, T0 + 1);
	feed(t, &r, T0);
	if (cut == n)
		return;
	mk_data(&r, id, 2, 100, QTAP_DATA_RECV, (uint32_t)(n - cut), buf + cut,
		(uint32_t)(n - cut), T0 + 2);
	feed(t, &r, T0);
}

/* Connections behind a load balancer that speaks the PROXY protocol: the
 * header before the client's first bytes (version 1 or 2, whole or cut
 * over events, alone or with the first bytes after it) is skipped, and
 * the protocol and TLS hello are those that follow it. */
START_TEST(test_proxy_protocol)
{
	static const char v1[] = "PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n";
	static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct conn_tracker *t = tracker(NULL);
	static uint8_t ch[4096], sh[4096], buf[8192];
	size_t ch_len = read_corpus("ch-tls12-sni-http11.bin", ch, sizeof(ch));
	size_t sh_len = read_corpus("sh-tls12-sni-http11.bin", sh, sizeof(sh));
	/* version 2, PROXY over TCP/IPv4: 12 bytes of addresses and ports,
	 * and 28 of TLVs (AWS's: a type, a length, a value) */
	static const uint8_t v2[16] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I',
					'T', '\n', 0x21, 0x11, 0, 40 };
	const size_t v2_len = 16 + 40;
	const char *hs[5] = { "ingress", "203.0.113.9", "", "api.example.org", "TLSv1.2" };
	uint64_t vals[2] = { 0 };
	struct rec r;
	size_t n;

	/* 71: version 1, with the request in the same read */
	n = (size_t)sprintf((char *)buf, "%s%s", v1, get);
	proxied_reads(t, 71, buf, n, n);
	/* 72: version 2, then a ClientHello; the ServerHello back */
	memset(buf, 0x5a, v2_len);
	memcpy(buf, v2, sizeof(v2));
	memcpy(buf + v2_len, ch, ch_len);
	mk_open(&r, 72, 100, QTAP_DIR_INGRESS, "203.0.113.9", 40002, 443, T0);
	feed(t, &r, T0);
	mk_data(&r, 72, 1, 100, QTAP_DATA_RECV, (uint32_t)(v2_len + ch_len), buf,
		(uint32_t)(v2_len + ch_len), T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 72, 2, 100, QTAP_DATA_SEND, (uint32_t)sh_len, sh, (uint32_t)sh_len, T0 + 2);
	feed(t, &r, T0);
	metrics_series_read(store, metrics_series_get(store, M_CONNECTION_TLS_HANDSHAKE_TOTAL, hs),
			    vals);
	ck_assert_uint_eq(vals[0], 1);
	/* 73: version 1 cut inside its line */
	n = (size_t)sprintf((char *)buf, "%s%s", v1, get);
	proxied_reads(t, 73, buf, n, 20);
	/* 74: version 2 whose TLVs run into the next read, the request after;
	 * 77: its signature cut before its length */
	memset(buf, 0x5a, v2_len);
	memcpy(buf, v2, sizeof(v2));
	memcpy(buf + v2_len, get, sizeof(get) - 1);
	n = v2_len + sizeof(get) - 1;
	proxied_reads(t, 74, buf, n, 20);
	proxied_reads(t, 77, buf, n, 10);
	/* 75: the proxy's side, the header alone in its first write */
	mk_open(&r, 75, 100, QTAP_DIR_EGRESS, "10.0.0.1", 80, 40005, T0);
	feed(t, &r, T0);
	mk_data(&r, 75, 1, 100, QTAP_DATA_SEND, sizeof(v1) - 1, v1, sizeof(v1) - 1, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 75, 2, 100, QTAP_DATA_SEND, sizeof(get) - 1, get, sizeof(get) - 1, T0 + 2);
	feed(t, &r, T0);
	/* 76: a request line is no header: HTTP as it is */
	proxied_reads(t, 76, (const uint8_t *)get, sizeof(get) - 1, sizeof(get) - 1);
	/* 78: version 2 whose TLVs come in a read without payload (bytes
	 * counted, none copied) */
	mk_open(&r, 78, 100, QTAP_DIR_INGRESS, "203.0.113.9", 40008, 80, T0);
	feed(t, &r, T0);
	mk_data(&r, 78, 1, 100, QTAP_DATA_RECV, 20, buf, 20, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 78, 2, 100, QTAP_DATA_RECV, (uint32_t)v2_len - 20, NULL, 0, T0 + 2);
	r.u.data.flags = QTAP_DATA_F_NO_PAYLOAD;
	feed(t, &r, T0);
	mk_data(&r, 78, 3, 100, QTAP_DATA_RECV, sizeof(get) - 1, get, sizeof(get) - 1, T0 + 3);
	feed(t, &r, T0);
	/* 79: version 1 in three reads ("PRO", the line's middle and end
	 * with the request's first bytes, the rest) */
	n = (size_t)sprintf((char *)buf, "%s%s", v1, get);
	mk_open(&r, 79, 100, QTAP_DIR_INGRESS, "203.0.113.9", 40009, 80, T0);
	feed(t, &r, T0);
	mk_data(&r, 79, 1, 100, QTAP_DATA_RECV, 3, buf, 3, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 79, 2, 100, QTAP_DATA_RECV, sizeof(v1) + 1 - 3, buf + 3, sizeof(v1) + 1 - 3,
		T0 + 2);
	feed(t, &r, T0);
	mk_data(&r, 79, 3, 100, QTAP_DATA_RECV, (uint32_t)(n - sizeof(v1) - 1),
		buf + sizeof(v1) + 1, (uint32_t)(n - sizeof(v1) - 1), T0 + 3);
	feed(t, &r, T0);
	/* 80: the header's end in bytes not captured: what follows cannot be
	 * found, the direction is given up ("other") */
	mk_open(&r, 80, 100, QTAP_DIR_INGRESS, "203.0.113.9", 40010, 80, T0);
	feed(t, &r, T0);
	mk_data(&r, 80, 1, 100, QTAP_DATA_RECV, (uint32_t)n, buf, 20, T0 + 1);
	feed(t, &r, T0);
	/* 81: version 2 cut inside its TLVs, then its rest with too few of
	 * the request's bytes to tell it (3), then the request's rest: the
	 * header's rest is skipped once */
	memset(buf, 0x5a, v2_len);
	memcpy(buf, v2, sizeof(v2));
	memcpy(buf + v2_len, get, sizeof(get) - 1);
	n = v2_len + sizeof(get) - 1;
	mk_open(&r, 81, 100, QTAP_DIR_INGRESS, "203.0.113.9", 40011, 80, T0);
	feed(t, &r, T0);
	mk_data(&r, 81, 1, 100, QTAP_DATA_RECV, 20, buf, 20, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 81, 2, 100, QTAP_DATA_RECV, (uint32_t)v2_len - 20 + 3, buf + 20,
		(uint32_t)v2_len - 20 + 3, T0 + 2);
	feed(t, &r, T0);
	mk_data(&r, 81, 3, 100, QTAP_DATA_RECV, (uint32_t)(n - v2_len - 3), buf + v2_len + 3,
		(uint32_t)(n - v2_len - 3), T0 + 3);
	feed(t, &r, T0);

	for (n = 71; n <= 81; n++) {
		static const uint64_t seq[11] = { 2, 3, 3, 3, 3, 2, 3, 4, 4, 2, 4 };

		mk_close(&r, n, seq[n - 71], 100, 0, 0, T0 + 10);
		feed(t, &r, T0);
	}
	ck_assert_uint_eq(proto_val("http1"), 9);
	ck_assert_uint_eq(proto_val("tls"), 1);
	ck_assert_uint_eq(proto_val("other"), 1);
	ck_assert_uint_eq(value(M_SYSTEM_PARSE_ERRORS_TOTAL, "tls", NULL, NULL, 0), 0);
	conn_tracker_free(&t, T0 + 20 * MS);
	conf_publish(NULL);
}
END_TEST

START_TEST(test_tls_handshake)
{
	struct conn_tracker *t = tracker(NULL);
	static uint8_t ch[4096], sh[4096];
	size_t ch_len = read_corpus("ch-tls12-sni-http11.bin", ch, sizeof(ch));
	size_t sh_len = read_corpus("sh-tls12-sni-http11.bin", sh, sizeof(sh));
	struct rec r;

	ck_assert_uint_gt(ch_len, 100);
	ck_assert_uint_gt(sh_len, 50);
	mk_open(&r, 61, 100, QTAP_DIR_EGRESS, "10.0.0.9", 443, 40000, T0);
	feed(t, &r, T0);
	/* the ClientHello split over two writes */
	mk_data(&r, 61, 1, 100, QTAP_DATA_SEND, 3, ch, 3, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 61, 2, 100, QTAP_DATA_SEND, (uint32_t)ch_len - 3, ch + 3,
		(uint32_t)ch_len - 3, T0 + 2);
	feed(t, &r, T0);
	mk_data(&r, 61, 3, 100, QTAP_DATA_RECV, (uint32_t)sh_len, sh, (uint32_t)sh_len, T0 + 3);
	feed(t, &r, T0);
	{
		const char *v[5] = { "egress", "10.0.0.9", "443", "api.example.org", "TLSv1.2" };
		uint64_t vals[2] = { 0 };
		struct metric_series *s =
			metrics_series_get(store, M_CONNECTION_TLS_HANDSHAKE_TOTAL, v);

		metrics_series_read(store, s, vals);
		ck_assert_uint_eq(vals[0], 1);
	}
	mk_close(&r, 61, 4, 100, ch_len, sh_len, T0 + 4);
	feed(t, &r, T0);
	ck_assert_uint_eq(proto_val("tls"), 1);
	/* a ClientHello whose middle write lost its payload while it waited
	 * (past the reorder buffer's bytes): a hole, not bytes to misread */
	mk_open(&r, 63, 100, QTAP_DIR_EGRESS, "10.0.0.9", 443, 40002, T0);
	feed(t, &r, T0);
	mk_data(&r, 63, 1, 100, QTAP_DATA_SEND, 50, ch, 50, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 63, 2, 100, QTAP_DATA_SEND, (uint32_t)ch_len - 50, NULL, 0, T0 + 2);
	feed(t, &r, T0);
	/* (a second hello after it: read on from the first's 50 bytes, it
	 * would be garbage) */
	mk_data(&r, 63, 3, 100, QTAP_DATA_SEND, (uint32_t)ch_len, ch, (uint32_t)ch_len, T0 + 3);
	feed(t, &r, T0);
	mk_close(&r, 63, 4, 100, 2 * ch_len, 0, T0 + 4);
	feed(t, &r, T0);
	ck_assert_uint_eq(proto_val("tls"), 2);
	ck_assert_uint_eq(value(M_SYSTEM_PARSE_ERRORS_TOTAL, "tls", NULL, NULL, 0), 0);
	/* a ClientHello whose first record holds 2 bytes of it (a record may
	 * hold any part of a message, RFC 8446 5.1), in one write: TLS, with
	 * its handshake, not a connection of another protocol */
	{
		static uint8_t split[sizeof(ch) + 5];
		const char *v[5] = { "egress", "10.0.0.9", "443", "api.example.org", "TLSv1.2" };
		size_t msg = ch_len - 5;
		uint64_t vals[2] = { 0 };

		memcpy(split, ch, 3);
		split[3] = 0;
		split[4] = 2;
		memcpy(split + 5, ch + 5, 2);
		memcpy(split + 7, ch, 3);
		split[10] = (uint8_t)((msg - 2) >> 8);
		split[11] = (uint8_t)(msg - 2);
		memcpy(split + 12, ch + 7, msg - 2);
		mk_open(&r, 64, 100, QTAP_DIR_EGRESS, "10.0.0.9", 443, 40003, T0);
		feed(t, &r, T0);
		mk_data(&r, 64, 1, 100, QTAP_DATA_SEND, (uint32_t)ch_len + 5, split,
			(uint32_t)ch_len + 5, T0 + 1);
		feed(t, &r, T0);
		mk_data(&r, 64, 2, 100, QTAP_DATA_RECV, (uint32_t)sh_len, sh, (uint32_t)sh_len,
			T0 + 2);
		feed(t, &r, T0);
		mk_close(&r, 64, 3, 100, ch_len + 5, sh_len, T0 + 3);
		feed(t, &r, T0);
		metrics_series_read(store, metrics_series_get(store, M_CONNECTION_TLS_HANDSHAKE_TOTAL,
							     v), vals);
		ck_assert_uint_eq(vals[0], 2);
		ck_assert_uint_eq(proto_val("tls"), 3);
		ck_assert_uint_eq(proto_val("other"), 0);
	}
	/* a ClientHello whose session id length overruns it: one parse error */
	ch[43] = 0xff;
	mk_open(&r, 62, 100, QTAP_DIR_EGRESS, "10.0.0.9", 443, 40001, T0);
	feed(t, &r, T0);
	mk_data(&r, 62, 1, 100, QTAP_DATA_SEND, (uint32_t)ch_len, ch, (uint32_t)ch_len, T0 + 1);
	feed(t, &r, T0);
	ck_assert_uint_eq(value(M_SYSTEM_PARSE_ERRORS_TOTAL, "tls", NULL, NULL, 0), 1);
	conn_tracker_free(&t, T0 + MS);
}
END_TEST

/* Runs fn with stderr going to a file; returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/check_conn_log.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	static char text[65536];
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	dup2(fd, 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, text, sizeof(text) - 1);
	text[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return text;
}

static void report_run(void)
{
	struct conn_tracker *t = tracker(NULL);
	struct rec r;

	mk_open(&r, 71, 100, QTAP_DIR_EGRESS, "2001:db8::5", 8443, 40000, T0);
	feed(t, &r, T0);
	mk_data(&r, 71, 1, 100, QTAP_DATA_SEND, 37, http_req, sizeof(http_req) - 1, T0 + 1);
	feed(t, &r, T0);
	mk_data(&r, 71, 2, 100, QTAP_DATA_RECV, 38, http_resp, sizeof(http_resp) - 1, T0 + 2);
	feed(t, &r, T0);
	mk_close(&r, 71, 3, 100, 37, 38, T0 + 1234567);
	feed(t, &r, T0);
	mk_open(&r, 72, 4242, QTAP_DIR_INGRESS, "10.2.0.1", 50000, 80, T0);
	feed(t, &r, T0);
	/* connected again; and ended by a new socket at its address */
	mk_open(&r, 73, 100, QTAP_DIR_EGRESS, "10.2.0.3", 443, 40001, T0);
	feed(t, &r, T0);
	mk_close(&r, 73, 1, 100, 0, 0, T0 + MS);
	r.u.close.flags = QTAP_CLOSE_F_REPLACED;
	feed(t, &r, T0);
	mk_open(&r, 74, 100, QTAP_DIR_INGRESS, "10.2.0.4", 40002, 80, T0);
	feed(t, &r, T0);
	mk_close(&r, 74, 1, 100, 0, 0, T0 + MS);
	r.u.close.flags = QTAP_CLOSE_F_REUSED;
	feed(t, &r, T0);
	mk_open(&r, 75, 100, QTAP_DIR_INGRESS, "10.2.0.5", 40003, 80, T0);
	feed(t, &r, T0);
	mk_close(&r, 75, 1, 100, 0, 0, T0 + MS);
	r.u.close.flags = QTAP_CLOSE_F_SKIPPED | QTAP_CLOSE_F_FILTERED;
	feed(t, &r, T0);
	conn_tracker_free(&t, T0 + 3 * MS);
}

START_TEST(test_report)
{
	char *text;

	log_setup(LOG_LEVEL_DEBUG, LOG_ENCODING_JSON);
	text = capture_stderr(report_run);
	log_setup(LOG_LEVEL_INFO, LOG_ENCODING_CONSOLE);
	ck_assert_msg(strstr(text, "\"connection closed\""), "%s", text);
	ck_assert_msg(strstr(text, "\"l7Protocol\":\"http1\""), "%s", text);
	ck_assert(strstr(text, "\"tlsProbeTypesDetected\":[]"));
	ck_assert(strstr(text, "\"gotTLSClientHelloEvent\":false"));
	ck_assert(strstr(text, "\"gotProtocolEvent\":true"));
	ck_assert(strstr(text, "\"dataEventCount\":2"));
	ck_assert(strstr(text, "\"bytesSent\":37"));
	ck_assert(strstr(text, "\"bytesReceived\":38"));
	ck_assert(strstr(text, "\"sni\":\"\""));
	ck_assert(strstr(text, "\"direction\":\"egress\""));
	ck_assert(strstr(text, "\"source\":\"[2001:db8::1]:40000\""));
	ck_assert(strstr(text, "\"destination\":\"[2001:db8::5]:8443\""));
	ck_assert(strstr(text, "\"pid\":100"));
	ck_assert(strstr(text, "\"exe\":\"/usr/bin/curl\""));
	ck_assert(strstr(text, "\"comm\":\"curl\""));
	ck_assert(strstr(text, "\"connId\":\"71\""));
	ck_assert(strstr(text, "\"durationMs\":1.234"));
	ck_assert(strstr(text, "\"closeReason\":\"close\""));
	ck_assert(strstr(text, "\"openTime\":\""));
	ck_assert(strstr(text, "Z\",\"closeTime\":\""));
	/* the second: ingress, unknown process (comm stands in), agent stop */
	ck_assert_msg(strstr(text, "\"source\":\"10.2.0.1:50000\",\"destination\":\"192.0.2.1:80\""),
		      "%s", text);
	ck_assert(strstr(text, "\"exe\":\"curl\""));
	ck_assert(strstr(text, "\"l7Protocol\":\"other\""));
	ck_assert(strstr(text, "\"gotProtocolEvent\":false"));
	ck_assert(strstr(text, "\"closeReason\":\"agent_stop\""));
	ck_assert_msg(strstr(text, "\"connId\":\"73\"") &&
		      strstr(strstr(text, "\"connId\":\"73\""), "\"closeReason\":\"reconnected\""),
		      "%s", text);
	ck_assert_msg(strstr(text, "\"connId\":\"74\"") &&
		      strstr(strstr(text, "\"connId\":\"74\""), "\"closeReason\":\"socket_reused\""),
		      "%s", text);
	ck_assert_msg(strstr(text, "\"connId\":\"75\"") &&
		      strstr(strstr(text, "\"connId\":\"75\""), "\"closeReason\":\"filtered\""),
		      "%s", text);
	/* not at info level */
	text = capture_stderr(report_run);
	ck_assert_ptr_null(strstr(text, "connection closed"));
}
END_TEST

static unsigned count_str(const char *text, const char *s)
{
	unsigned n = 0;

	for (text = strstr(text, s); text; text = strstr(text + 1, s))
		n++;
	return n;
}

START_TEST(test_trace_lines)
{
	static const char *const tls_calls[] = {
		"GET /login?token=secret1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/1.1 200 OK\r\n",
		"Authorization: Bearer secret2\r\n\r\n",
		"Set-Cookie: id=secret3\r\n",
		"grant_type=x&client_secret=secret4\r\n",
		"{\"password\": \"secret5\"}\n",
		"POST /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n",
		"PUT secret6 and more\r\n",
	};
	struct capture_trace *trace = NULL;
	size_t i;
	struct conn_tracker_opts o = { .store = store, .proc_lookup = proc_lookup };
	struct conn_tracker *t;
	struct rec r;
	char *text;

	ck_assert_int_eq(capture_trace_parse("syscall,openssl", &trace), 0);
	o.trace = trace;
	t = conn_tracker_new(&o);
	ck_assert_ptr_nonnull(t);
	log_setup(LOG_LEVEL_INFO, LOG_ENCODING_CONSOLE);
	{
		char path[] = "/tmp/check_conn_trace.XXXXXX";
		int fd = mkstemp(path), saved = dup(2);
		static char buf[8192];
		ssize_t n;

		dup2(fd, 2);
		mk_open(&r, 81, 100, QTAP_DIR_EGRESS, "10.0.0.10", 80, 40000, T0);
		feed(t, &r, T0);
		mk_data(&r, 81, 1, 100, QTAP_DATA_SEND, 37, http_req, 20, T0 + 1);
		feed(t, &r, T0);
		mk_close(&r, 81, 2, 100, 37, 0, T0 + 2);
		feed(t, &r, T0);
		/* TLS plaintext: only request and status lines are printed,
		 * a query left out; a call that begins with a header or a
		 * body prints none */
		mk_open(&r, 82, 100, QTAP_DIR_EGRESS, "10.0.0.11", 443, 40000, T0);
		feed(t, &r, T0);
		for (i = 0; i < sizeof(tls_calls) / sizeof(tls_calls[0]); i++) {
			size_t len = strlen(tls_calls[i]);

			mk_data(&r, 82, i + 1, 100, i % 2 ? QTAP_DATA_RECV : QTAP_DATA_SEND,
				(uint32_t)len, tls_calls[i], (uint32_t)len, T0 + 3 + i);
			r.u.data.hdr.type = QTAP_EVENT_TLS_DATA;
			r.u.data.op = i % 2 ? QTAP_OP_SSL_READ : QTAP_OP_SSL_WRITE;
			feed(t, &r, T0);
		}
		dup2(saved, 2);
		close(saved);
		lseek(fd, 0, SEEK_SET);
		n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		close(fd);
		unlink(path);
		text = buf;
	}
	ck_assert_msg(strstr(text, "bpf-trace module=syscall op=connect pid=100"), "%s", text);
	ck_assert_msg(strstr(text, "bpf-trace module=syscall op=write pid=100 tid=100 comm=curl "
				   "fd=84 size=37 captured=20 conn=81 decision=http1"), "%s", text);
	ck_assert(strstr(text, "bpf-trace module=syscall op=close pid=100"));
	ck_assert_msg(strstr(text, "line=\"GET /login?... HTTP/1.1\""), "%s", text);
	ck_assert_msg(strstr(text, "line=\"HTTP/1.1 200 OK\""), "%s", text);
	ck_assert_msg(strstr(text, "line=\"POST /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
		      "%s", text);
	ck_assert_msg(!strstr(text, "secret") && !strstr(text, "Bearer") && !strstr(text, "PUT"),
		      "%s", text);
	ck_assert_uint_eq(count_str(text, "line=\"\""), 5);
	conn_tracker_free(&t, T0 + MS);
	capture_trace_free(&trace);
}
END_TEST

/* ---- failing allocations ---- */

static unsigned alloc_count, alloc_fail_every;

static void *failing_malloc(size_t size)
{
	if (alloc_fail_every && ++alloc_count % alloc_fail_every == 0)
		return NULL;
	return malloc(size);
}

START_TEST(test_alloc_failures)
{
	unsigned every;

	for (every = 1; every <= 7; every++) {
		struct conn_tracker *t = tracker(NULL);
		struct rec r;
		uint64_t id;

		alloc_count = 0;
		alloc_fail_every = every;
		conn_malloc_hook = failing_malloc;
		for (id = 1000; id < 1200; id++) {
			/* out of order, so that events wait and get copied */
			mk_data(&r, id, 2, 100, QTAP_DATA_RECV, 38, http_resp, 38, T0 + 2);
			conn_tracker_event(t, &r.u, r.size, T0);
			mk_data(&r, id, 1, 100, QTAP_DATA_SEND, 37, http_req, 37, T0 + 1);
			conn_tracker_event(t, &r.u, r.size, T0);
			mk_open(&r, id, (uint32_t)(id % 3 ? 100 : 4242), QTAP_DIR_EGRESS,
				"10.3.0.1", 80, 40000, T0);
			conn_tracker_event(t, &r.u, r.size, T0);
			if (id % 5)
				continue;
			mk_close(&r, id, 3, 100, 37, 38, T0 + 3);
			conn_tracker_event(t, &r.u, r.size, T0);
		}
		conn_tracker_housekeep(t, T0 + 500 * MS);
		conn_tracker_free(&t, T0 + 600 * MS);
		conn_malloc_hook = malloc;
		ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
		/* whatever was counted open was counted closed */
		ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.3.0.1", "80"), 0);
		ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.3.0.1", "80"),
				  conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.3.0.1", "80"));
	}
	alloc_fail_every = 0;
}
END_TEST

/* The first event of a connection, early, with no memory to keep it (for
 * the reorder buffer, every = 2, or for its copy, every = 3): counted as
 * dropped, and nothing is left behind that no wait and no idle scan would
 * end.  The connection's later events make it again, and the lost one is
 * a gap. */
START_TEST(test_alloc_first_event)
{
	unsigned every;

	for (every = 2; every <= 3; every++) {
		struct conn_tracker *t = tracker(NULL);
		const char *addr = every == 2 ? "10.3.0.2" : "10.3.0.3";
		uint64_t id = 1300 + every;
		struct rec r;

		alloc_count = 0;
		alloc_fail_every = every;
		conn_malloc_hook = failing_malloc;
		mk_data(&r, id, 2, 100, QTAP_DATA_RECV, 38, http_resp, 38, T0 + 2);
		ck_assert_int_eq(conn_tracker_event(t, &r.u, r.size, T0), -ENOMEM);
		conn_malloc_hook = malloc;
		alloc_fail_every = 0;
		ck_assert_uint_eq(conn_tracker_count(t), 0);
		ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
		mk_data(&r, id, 3, 100, QTAP_DATA_RECV, 10, "0123456789", 10, T0 + 3);
		feed(t, &r, T0 + MS);
		mk_open(&r, id, 100, QTAP_DIR_EGRESS, addr, 80, 40000, T0);
		feed(t, &r, T0 + MS);
		mk_data(&r, id, 1, 100, QTAP_DATA_SEND, 37, http_req, 37, T0 + 1);
		feed(t, &r, T0 + MS);
		ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", addr, "80"), 37);
		conn_tracker_housekeep(t, T0 + MS + CONN_REORDER_WAIT_NS);
		ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), every - 1);
		ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", addr, "80"), 10);
		mk_close(&r, id, 4, 100, 37, 48, T0 + 4);
		feed(t, &r, T0 + 2 * CONN_REORDER_WAIT_NS);
		ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", addr, "80"), 1);
		ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", addr, "80"), 48);
		ck_assert_uint_eq(conn_tracker_count(t), 0);
		conn_tracker_free(&t, T0 + 3 * CONN_REORDER_WAIT_NS);
	}
}
END_TEST

/* ---- through a pipeline: two producers, two workers ---- */

#define PIPE_CONNS 2000

/* Workers compare event times with CLOCK_MONOTONIC (idle timeout). */
static uint64_t pipe_t0;

static uint64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct producer_arg {
	struct pipeline *p;
	unsigned index;
	int failures;
};

/* Each connection: OPEN, 4 data events, CLOSE; producer 0 submits the
 * even sequence numbers and producer 1 the odd ones, so the worker sees
 * them in whatever order the two interleave. */
static void *producer_main(void *arg)
{
	struct producer_arg *a = arg;
	static __thread struct rec r;
	uint64_t id, seq;

	for (id = 1; id <= PIPE_CONNS; id++) {
		for (seq = a->index; seq <= 5; seq += 2) {
			uint64_t ts = pipe_t0 + id * 1000 + seq * 100;

			if (seq == 0)
				mk_open(&r, id, 100 + (uint32_t)(id % 2), QTAP_DIR_EGRESS,
					"10.9.0.1", 443, 40000, ts);
			else if (seq == 5)
				mk_close(&r, id, 5, 100 + (uint32_t)(id % 2), 200, 400, ts);
			else if (seq % 2)
				mk_data(&r, id, seq, 100 + (uint32_t)(id % 2), QTAP_DATA_SEND, 100,
					http_req, sizeof(http_req) - 1, ts);
			else
				mk_data(&r, id, seq, 100 + (uint32_t)(id % 2), QTAP_DATA_RECV, 200,
					http_resp, sizeof(http_resp) - 1, ts);
			if (pipeline_submit(a->p, a->index, &r.u, r.size))
				a->failures++;
		}
		if (id % 64 == 0)
			pipeline_flush(a->p, a->index);
	}
	pipeline_flush(a->p, a->index);
	return NULL;
}

/* The series both workers use, made before they start.  liburcu is not
 * built with ThreadSanitizer, so TSan cannot see a series published by one
 * worker through the store's hash table reach the other (it does, through
 * rcu_assign_pointer/rcu_dereference). */
static void series_precreate(void)
{
	static const char *const protos[] = { "http1", "http2", "tls", "other" };
	static const enum metric_id conn_ids[] = {
		M_CONNECTION_OPEN_TOTAL, M_CONNECTION_CLOSE_TOTAL, M_CONNECTION_ACTIVE_TOTAL,
		M_CONNECTION_BYTES_SENT_TOTAL, M_CONNECTION_BYTES_RECV_TOTAL,
		M_CONNECTION_DURATION_MS,
	};
	unsigned i;

	for (i = 0; i < 4; i++)
		proto_val(protos[i]);
	for (i = 0; i < sizeof(conn_ids) / sizeof(conn_ids[0]); i++)
		value(conn_ids[i], "egress", "10.9.0.1", "443", 0);
	value(M_SYSTEM_PARSE_ERRORS_TOTAL, "tls", NULL, NULL, 0);
	sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL);
	sys_val(M_SYSTEM_CONNECTIONS_TRACKED);
}

static void *malloc_fail(size_t size)
{
	(void)size;
	return NULL;
}

/* The queues' size when none is given: 4 MiB each on a small host, less
 * on a large one, whose queues (readers + 1 per worker) would otherwise
 * take gigabytes; and what a pipeline made without a size uses. */
START_TEST(test_pipeline_queue_size)
{
	struct pipeline_opts po = {
		.n_producers = 3, .n_workers = 2, .store = store, .proc_lookup = proc_lookup,
	};
	struct pipeline *p;
	size_t q;

	ck_assert_uint_eq(pipeline_queue_bytes_auto(3, 2), 4u << 20);	/* 2 CPUs: 6 queues, 24 MiB */
	ck_assert_uint_eq(pipeline_queue_bytes_auto(9, 8), 2u << 20);	/* 8 CPUs: 72 queues, 144 MiB */
	ck_assert_uint_eq(pipeline_queue_bytes_auto(17, 8), 1u << 20);	/* 16 CPUs: 136 MiB */
	ck_assert_uint_eq(pipeline_queue_bytes_auto(65, 8), 256u << 10);	/* 64 CPUs: 130 MiB */
	ck_assert_uint_eq(pipeline_queue_bytes_auto(1025, 64), 256u << 10);	/* the floor */
	p = pipeline_new(&po);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(pipeline_workers(p, &q), 2);
	ck_assert_uint_eq(q, 4u << 20);
	pipeline_free(&p);
	po.queue_bytes = 100000;	/* a power of two above */
	p = pipeline_new(&po);
	ck_assert_ptr_nonnull(p);
	pipeline_workers(p, &q);
	ck_assert_uint_eq(q, 128u << 10);
	pipeline_free(&p);
}
END_TEST

/* Records the tracker cannot use are counted by reason, not dropped
 * silently: an OPEN out of place (invalid), one it has no memory for. */
START_TEST(test_pipeline_rejects)
{
	struct pipeline_opts po = {
		.n_producers = 1, .n_workers = 1, .store = store, .proc_lookup = proc_lookup,
	};
	struct pipeline *p;
	struct rec r;

	p = pipeline_new(&po);
	ck_assert_ptr_nonnull(p);
	mk_open(&r, 7001, 300, QTAP_DIR_EGRESS, "10.9.0.2", 443, 40000, mono_now());
	r.u.open.seq = 3;	/* an OPEN is always 0 */
	ck_assert_int_eq(pipeline_submit(p, 0, &r.u, r.size), 0);
	pipeline_flush(p, 0);
	pipeline_free(&p);
	ck_assert_uint_eq(value(M_SYSTEM_EVENTS_DROPPED_TOTAL, "invalid", NULL, NULL, 0), 1);
	ck_assert_uint_eq(value(M_SYSTEM_EVENTS_DROPPED_TOTAL, "no_memory", NULL, NULL, 0), 0);

	p = pipeline_new(&po);
	ck_assert_ptr_nonnull(p);
	conn_malloc_hook = malloc_fail;	/* the worker's tracker is made */
	mk_open(&r, 7002, 300, QTAP_DIR_EGRESS, "10.9.0.2", 443, 40001, mono_now());
	ck_assert_int_eq(pipeline_submit(p, 0, &r.u, r.size), 0);
	pipeline_flush(p, 0);
	pipeline_free(&p);
	conn_malloc_hook = malloc;
	ck_assert_uint_eq(value(M_SYSTEM_EVENTS_DROPPED_TOTAL, "no_memory", NULL, NULL, 0), 1);
	ck_assert_uint_eq(value(M_SYSTEM_EVENTS_DROPPED_TOTAL, "invalid", NULL, NULL, 0), 1);
	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.9.0.2", "443"), 0);
}
END_TEST

START_TEST(test_pipeline)
{
	struct pipeline_opts po = {
		.n_producers = 2, .n_workers = 2, .queue_bytes = 8u << 20,
		.store = store, .proc_lookup = proc_lookup, .conn_forget = conn_forget,
	};
	struct producer_arg a[2];
	pthread_t th[2];
	struct pipeline *p;
	struct rec r;
	uint64_t t_open;
	unsigned i;

	series_precreate();
	pipe_t0 = mono_now();
	p = pipeline_new(&po);
	ck_assert_ptr_nonnull(p);
	for (i = 0; i < 2; i++) {
		a[i] = (struct producer_arg){ .p = p, .index = i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, producer_main, &a[i]), 0);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(a[0].failures + a[1].failures, 0);
	/* two connections left open, of two processes; one process exits */
	mk_open(&r, 900001, 300, QTAP_DIR_EGRESS, "10.9.0.1", 443, 40000, mono_now());
	ck_assert_int_eq(pipeline_submit(p, 0, &r.u, r.size), 0);
	mk_open(&r, 900002, 301, QTAP_DIR_EGRESS, "10.9.0.1", 443, 40000, mono_now());
	ck_assert_int_eq(pipeline_submit(p, 0, &r.u, r.size), 0);
	/* and one more of the process that exits, 7 ms before it does */
	t_open = mono_now();
	mk_open(&r, 900003, 300, QTAP_DIR_EGRESS, "10.9.0.3", 443, 40000, t_open);
	ck_assert_int_eq(pipeline_submit(p, 0, &r.u, r.size), 0);
	/* through the same queue as the OPENs, so after them */
	ck_assert_int_eq(pipeline_submit_exit(p, 0, 300, t_open + 7 * MS), 0);
	pipeline_flush(p, 0);
	ck_assert_int_eq(pipeline_submit(p, 2, &r.u, r.size), -EINVAL);
	pipeline_free(&p);
	ck_assert_ptr_null(p);
	pipeline_free(NULL);

	ck_assert_uint_eq(conn_val(M_CONNECTION_OPEN_TOTAL, "egress", "10.9.0.1", "443"),
			  PIPE_CONNS + 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_CLOSE_TOTAL, "egress", "10.9.0.1", "443"),
			  PIPE_CONNS + 2);
	ck_assert_uint_eq(conn_val(M_CONNECTION_ACTIVE_TOTAL, "egress", "10.9.0.1", "443"), 0);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_SENT_TOTAL, "egress", "10.9.0.1", "443"),
			  200ull * PIPE_CONNS);
	ck_assert_uint_eq(conn_val(M_CONNECTION_BYTES_RECV_TOTAL, "egress", "10.9.0.1", "443"),
			  400ull * PIPE_CONNS);
	ck_assert_uint_eq(dur_count("egress", "10.9.0.1", "443"), PIPE_CONNS + 2);
	/* closed by the exit at the kernel's time of it */
	ck_assert_uint_eq(dur_count("egress", "10.9.0.3", "443"), 1);
	ck_assert_uint_eq(dur_sum("egress", "10.9.0.3", "443"), 7000);
	ck_assert_uint_eq(proto_val("http1"), PIPE_CONNS);
	ck_assert_uint_eq(proto_val("other"), 3);
	ck_assert_uint_eq(sys_val(M_SYSTEM_SEQUENCE_GAPS_TOTAL), 0);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
	ck_assert_uint_eq(value(M_SYSTEM_QUEUE_DROPPED_TOTAL, "0", NULL, NULL, 0), 0);
	ck_assert_uint_eq(value(M_SYSTEM_QUEUE_DEPTH, "0", NULL, NULL, 0), 0);
	ck_assert_uint_eq(value(M_SYSTEM_QUEUE_DEPTH, "1", NULL, NULL, 0), 0);
	/* the exit's two, by the workers in either order */
	ck_assert_uint_eq(forgets, 2);
	ck_assert_uint_eq(forgot_key[0] + forgot_key[1], KEY(900001) + KEY(900003));
}
END_TEST

START_TEST(test_pipeline_full)
{
	struct pipeline_opts po = {
		.n_producers = 1, .n_workers = 1, .queue_bytes = 4096, .store = store,
	};
	struct pipeline *p = pipeline_new(&po);
	static const uint8_t payload[1000];
	unsigned i, dropped = 0;
	struct rec r;

	ck_assert_ptr_nonnull(p);
	/* no flush: the worker sleeps (or spins) and the queue fills up */
	mk_data(&r, 5, 1, 100, QTAP_DATA_SEND, 1000, payload, 1000, T0);
	for (i = 0; i < 10000000 && dropped < 10; i++)
		if (pipeline_submit(p, 0, &r.u, r.size) == -ENOBUFS)
			dropped++;
	pipeline_free(&p);
	ck_assert_uint_gt(dropped, 0);
	ck_assert_uint_eq(value(M_SYSTEM_QUEUE_DROPPED_TOTAL, "0", NULL, NULL, 0), dropped);
	ck_assert_uint_eq(sys_val(M_SYSTEM_CONNECTIONS_TRACKED), 0);
}
END_TEST

static Suite *conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("tracker");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_addr_format);
	tcase_add_test(tc, test_exact_counts);
	tcase_add_test(tc, test_reorder);
	tcase_add_test(tc, test_gap_and_lost_bytes);
	tcase_add_test(tc, test_reorder_buffer_full);
	tcase_add_test(tc, test_reorder_bulk_after_gap);
	tcase_add_test(tc, test_reorder_count_full);
	tcase_add_test(tc, test_reorder_full_late);
	tcase_add_test(tc, test_reorder_cpu_skew);
	tcase_add_test(tc, test_open_late_and_lost);
	tcase_add_test(tc, test_open_after_bulk);
	tcase_add_test(tc, test_process_exit);
	tcase_add_test(tc, test_exits_batched);
	tcase_add_test(tc, test_idle_timeout);
	tcase_add_test(tc, test_idle_alive);
	tcase_add_test(tc, test_preexisting);
	tcase_add_test(tc, test_listeners_read_once);
	tcase_add_test(tc, test_preexisting_netns);
	tcase_add_test(tc, test_egress_internal);
	tcase_add_test(tc, test_undecided_waits);
	tcase_add_test(tc, test_tls_handshake);
	tcase_add_test(tc, test_proxy_protocol);
	tcase_add_test(tc, test_report);
	tcase_add_test(tc, test_trace_lines);
	tcase_add_test(tc, test_alloc_failures);
	tcase_add_test(tc, test_alloc_first_event);
	suite_add_tcase(s, tc);
	tc = tcase_create("pipeline");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_pipeline);
	tcase_add_test(tc, test_pipeline_rejects);
	tcase_add_test(tc, test_pipeline_queue_size);
	tcase_add_test(tc, test_pipeline_full);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(conn_suite());
}

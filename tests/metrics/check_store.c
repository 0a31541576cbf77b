/* The metric store: concurrent writers and a scraping reader, exact
 * totals, series limits, handles, gauges and histogram buckets. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h>

#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/buf.h"

#include "../check_run.h"

#define ITERS 200000
#define NEW_EVERY 1000
#define NEW_SERIES ((ITERS + NEW_EVERY - 1) / NEW_EVERY)

#ifdef __SANITIZE_THREAD__
#undef ITERS
#define ITERS 20000
#endif

static uint64_t value_of(struct metrics_store *store, struct metric_series *s, unsigned idx)
{
	uint64_t vals[METRICS_MAX_BUCKETS + 2];

	metrics_series_read(store, s, vals);
	return vals[idx];
}

/* ---- several writers and a reader ---- */

struct hammer {
	struct metrics_store *store;
	int registered;
	int index;
	int failed;
};

static int writers_done;

static void *writer_main(void *arg)
{
	struct hammer *h = arg;
	const char *shared[3] = { "egress", "10.0.0.1", "443" };
	const char *mine[3] = { "ingress", "10.1.0.1", NULL };
	const char *extra[3] = { "egress", "10.2.0.1", NULL };
	struct metric_series *c, *own, *g, *hist;
	char port[16], xport[32];
	int i;

	rcu_register_thread();
	if (h->registered && metrics_thread_register(h->store))
		h->failed = 1;
	snprintf(port, sizeof(port), "%d", h->index);
	mine[2] = port;
	c = metrics_series_get(h->store, M_CONNECTION_OPEN_TOTAL, shared);
	own = metrics_series_get(h->store, M_CONNECTION_OPEN_TOTAL, mine);
	g = metrics_series_get(h->store, M_CONNECTION_ACTIVE_TOTAL, shared);
	hist = metrics_series_get(h->store, M_CONNECTION_DURATION_MS, shared);
	if (!c || !own || !g || !hist)
		h->failed = 1;
	for (i = 0; i < ITERS; i++) {
		metrics_counter_add(c, 1);
		metrics_counter_add(own, 2);
		metrics_gauge_add(g, 2);
		metrics_gauge_add(g, -1);
		metrics_histogram_observe(hist, (uint64_t)(i % 5) * 1000);
		if (i % NEW_EVERY == 0) {
			/* new series appear while the reader walks the lists */
			snprintf(xport, sizeof(xport), "%d-%d", h->index, i);
			extra[2] = xport;
			metrics_add(h->store, M_CONNECTION_CLOSE_TOTAL, extra, 1);
			if (metrics_series_get(h->store, M_CONNECTION_OPEN_TOTAL, shared) != c)
				h->failed = 1;
		}
	}
	if (h->registered)
		metrics_thread_unregister(h->store);
	rcu_unregister_thread();
	return NULL;
}

struct reader {
	struct metrics_store *store;
	int renders;
	int failed;
};

/* Renders until the writers are done; the shared counter never goes
 * backwards between two renders. */
static void *reader_main(void *arg)
{
	static const char needle[] =
		"qtap_connection_open_total{direction=\"egress\",remote_addr=\"10.0.0.1\",remote_port=\"443\"} ";
	struct reader *r = arg;
	struct buf b = BUF_INIT;
	unsigned long long last = 0, v;
	const char *p;

	rcu_register_thread();
	while (!__atomic_load_n(&writers_done, __ATOMIC_ACQUIRE) || r->renders < 2) {
		buf_reset(&b);
		if (metrics_render(r->store, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT, &b) ||
		    buf_append_char(&b, '\0')) {
			r->failed = 1;
			break;
		}
		p = strstr(b.data, needle);
		if (p) {
			v = strtoull(p + sizeof(needle) - 1, NULL, 10);
			if (v < last)
				r->failed = 1;
			last = v;
		}
		r->renders++;
	}
	buf_free(&b);
	rcu_unregister_thread();
	return NULL;
}

START_TEST(test_writers_and_reader)
{
	struct metrics_opts opts = { .series_limit = 100000 };
	struct metrics_store *store;
	const char *shared[3] = { "egress", "10.0.0.1", "443" };
	const char *mine[3] = { "ingress", "10.1.0.1", NULL };
	struct hammer h[5];
	struct reader r = { 0 };
	pthread_t tw[5], tr;
	char port[16];
	struct metric_series *s;
	uint64_t total = 5ull * ITERS;
	int i;

	store = metrics_store_new(&opts);
	ck_assert_ptr_nonnull(store);
	writers_done = 0;
	r.store = store;
	ck_assert_int_eq(pthread_create(&tr, NULL, reader_main, &r), 0);
	for (i = 0; i < 5; i++) {
		h[i] = (struct hammer){ store, i < 4, i, 0 };
		ck_assert_int_eq(pthread_create(&tw[i], NULL, writer_main, &h[i]), 0);
	}
	for (i = 0; i < 5; i++) {
		pthread_join(tw[i], NULL);
		ck_assert_int_eq(h[i].failed, 0);
	}
	__atomic_store_n(&writers_done, 1, __ATOMIC_RELEASE);
	pthread_join(tr, NULL);
	ck_assert_int_eq(r.failed, 0);
	ck_assert_int_ge(r.renders, 2);

	s = metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, shared);
	ck_assert_uint_eq(value_of(store, s, 0), total);
	for (i = 0; i < 5; i++) {
		snprintf(port, sizeof(port), "%d", i);
		mine[2] = port;
		s = metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, mine);
		ck_assert_uint_eq(value_of(store, s, 0), 2ull * ITERS);
	}
	s = metrics_series_get(store, M_CONNECTION_ACTIVE_TOTAL, shared);
	ck_assert_uint_eq(value_of(store, s, 0), total);
	s = metrics_series_get(store, M_CONNECTION_DURATION_MS, shared);
	/* i % 5 ms: 0 and 1 ms land in le=1, 2 in le=2, 3 and 4 in le=5 */
	ck_assert_uint_eq(value_of(store, s, 0), total * 2 / 5);
	ck_assert_uint_eq(value_of(store, s, 1), total / 5);
	ck_assert_uint_eq(value_of(store, s, 2), total * 2 / 5);
	ck_assert_uint_eq(value_of(store, s, 20), 0);
	ck_assert_uint_eq(value_of(store, s, 21), total / 5 * (0 + 1 + 2 + 3 + 4) * 1000);
	/* 5 shared-or-own open series, NEW_SERIES close series per writer */
	ck_assert_uint_eq(metrics_family_series_count(store, M_CONNECTION_OPEN_TOTAL), 6);
	ck_assert_uint_eq(metrics_family_series_count(store, M_CONNECTION_CLOSE_TOTAL),
			  5 * NEW_SERIES);
	metrics_store_free(&store);
	ck_assert_ptr_null(store);
}
END_TEST

/* ---- limits, handles ---- */

START_TEST(test_series_limit)
{
	struct metrics_opts opts = { .series_limit = 3 };
	struct metrics_store *store = metrics_store_new(&opts);
	struct metric_series *s[6], *ov;
	const char *v[3] = { "egress", "192.0.2.1", NULL };
	const char *fam = "qtap_connection_open_total";
	char ports[6][8];
	int i;

	ck_assert_ptr_nonnull(store);
	for (i = 0; i < 6; i++) {
		snprintf(ports[i], sizeof(ports[i]), "%d", 1000 + i);
		v[2] = ports[i];
		s[i] = metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v);
		ck_assert_ptr_nonnull(s[i]);
		metrics_counter_add(s[i], 1);
	}
	ck_assert_ptr_ne(s[0], s[1]);
	ck_assert_ptr_ne(s[1], s[2]);
	ck_assert_ptr_ne(s[2], s[3]);
	ck_assert_ptr_eq(s[3], s[4]);
	ck_assert_ptr_eq(s[4], s[5]);
	ov = s[3];
	ck_assert_str_eq(ov->labels, "direction=\"__overflow__\",remote_addr=\"__overflow__\","
				     "remote_port=\"__overflow__\"");
	ck_assert_uint_eq(value_of(store, ov, 0), 3);
	ck_assert_uint_eq(metrics_family_series_count(store, M_CONNECTION_OPEN_TOTAL), 4);
	s[0] = metrics_series_get(store, M_SYSTEM_SERIES_OVERFLOW_TOTAL, &fam);
	ck_assert_uint_eq(value_of(store, s[0], 0), 3);
	/* a label set folded already: the overflow series again, and not
	 * counted again (it counts label sets, not the lookups of one) */
	for (i = 3; i < 6; i++) {
		v[2] = ports[i];
		ck_assert_ptr_eq(metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v), ov);
	}
	ck_assert_uint_eq(value_of(store, s[0], 0), 3);

	/* existing series still resolve to themselves */
	v[2] = ports[1];
	ck_assert_ptr_eq(metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v), s[1]);
	/* asking for the overflow label set gives the overflow series */
	v[0] = v[1] = v[2] = METRIC_OVERFLOW_VALUE;
	ck_assert_ptr_eq(metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v), ov);

	/* raising the limit lets new label sets in again */
	metrics_store_set_series_limit(store, 4);
	v[0] = "egress";
	v[1] = "192.0.2.9";
	v[2] = "1";
	ck_assert_ptr_ne(metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v), ov);
	ck_assert_uint_eq(metrics_family_series_count(store, M_CONNECTION_OPEN_TOTAL), 5);
	v[2] = "2";
	ck_assert_ptr_eq(metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, v), ov);
	/* the limit is per family */
	ck_assert_ptr_ne(metrics_series_get(store, M_CONNECTION_CLOSE_TOTAL, v), NULL);
	ck_assert_uint_eq(metrics_family_series_count(store, M_CONNECTION_CLOSE_TOTAL), 1);
	metrics_store_free(&store);
}
END_TEST

START_TEST(test_same_handle)
{
	struct metrics_store *a = metrics_store_new(NULL), *b = metrics_store_new(NULL);
	const char *v[4] = { "GET", "api.example.com", "200", "http1" };
	const char *w[4] = { "GET", "api.example.com", "200", "http2" };
	char host[32];
	struct metric_series *s;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	s = metrics_series_get(a, M_HTTP_REQUESTS_TOTAL, v);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_eq(metrics_series_get(a, M_HTTP_REQUESTS_TOTAL, v), s);
	/* a copy of the values, not the same pointers */
	strcpy(host, "api.example.com");
	v[1] = host;
	ck_assert_ptr_eq(metrics_series_get(a, M_HTTP_REQUESTS_TOTAL, v), s);
	ck_assert_ptr_ne(metrics_series_get(a, M_HTTP_REQUESTS_TOTAL, w), s);
	ck_assert_ptr_ne(metrics_series_get(a, M_HTTP_RESPONSES_TOTAL, v), s);
	ck_assert_ptr_ne(metrics_series_get(b, M_HTTP_REQUESTS_TOTAL, v), s);
	/* label-less families exist from the start */
	ck_assert_uint_eq(metrics_family_series_count(a, M_HTTP_DURATION_MS), 1);
	ck_assert_ptr_eq(metrics_series_get(a, M_HTTP_DURATION_MS, NULL),
			 a->fam[M_HTTP_DURATION_MS].head);
	errno = 0;
	ck_assert_ptr_null(metrics_series_get(a, M__COUNT, NULL));
	ck_assert_int_eq(errno, EINVAL);
	metrics_store_free(&a);
	metrics_store_free(&b);
	metrics_store_free(&b);
}
END_TEST

/* ---- gauges ---- */

struct gauge_arg {
	struct metrics_store *store;
	struct metric_series *g;
	int registered;
	int64_t step;
};

static void *gauge_main(void *arg)
{
	struct gauge_arg *a = arg;
	int i;

	rcu_register_thread();
	if (a->registered)
		metrics_thread_register(a->store);
	for (i = 0; i < 10000; i++)
		metrics_gauge_add(a->g, a->step);
	if (a->registered)
		metrics_thread_unregister(a->store);
	rcu_unregister_thread();
	return NULL;
}

START_TEST(test_gauge_threads)
{
	struct metrics_store *store = metrics_store_new(NULL);
	const char *v[3] = { "egress", "198.51.100.7", "80" };
	struct gauge_arg a[4];
	pthread_t t[4];
	int i;

	ck_assert_ptr_nonnull(store);
	for (i = 0; i < 4; i++) {
		a[i] = (struct gauge_arg){ store,
			metrics_series_get(store, M_CONNECTION_ACTIVE_TOTAL, v),
			i % 2, i < 2 ? 3 : -5 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, gauge_main, &a[i]), 0);
	}
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq((int64_t)value_of(store, a[0].g, 0), 10000 * (3 + 3 - 5 - 5));
	metrics_gauge_set(metrics_series_get(store, M_SYSTEM_CONNECTIONS_TRACKED, NULL), -7);
	ck_assert_int_eq((int64_t)value_of(store,
			 metrics_series_get(store, M_SYSTEM_CONNECTIONS_TRACKED, NULL), 0), -7);
	metrics_store_free(&store);
}
END_TEST

/* ---- histogram buckets ---- */

START_TEST(test_histogram_bounds)
{
	struct metrics_store *store = metrics_store_new(NULL);
	const struct metric_def *d = &metric_defs[M_CONNECTION_DURATION_MS];
	const char *v[3] = { "egress", "192.0.2.1", "1" };
	struct metric_series *s;
	uint64_t vals[METRICS_MAX_BUCKETS + 2], sum = 0;
	unsigned i;

	ck_assert_ptr_nonnull(store);
	ck_assert_int_eq(metrics_thread_register(store), 0);
	s = metrics_series_get(store, M_CONNECTION_DURATION_MS, v);
	ck_assert_ptr_nonnull(s);
	/* each bound lands in its own bucket (le is inclusive), one more
	 * lands in the next */
	for (i = 0; i < d->n_buckets; i++) {
		metrics_histogram_observe(s, d->buckets[i]);
		metrics_histogram_observe(s, d->buckets[i] + 1);
		sum += 2 * d->buckets[i] + 1;
	}
	metrics_histogram_observe(s, 0);
	metrics_series_read(store, s, vals);
	ck_assert_uint_eq(vals[0], 2);		/* 0 and 1000 */
	for (i = 1; i < d->n_buckets; i++)
		ck_assert_uint_eq(vals[i], 2);	/* bound[i-1]+1 and bound[i] */
	ck_assert_uint_eq(vals[d->n_buckets], 1);	/* last bound + 1: +Inf */
	ck_assert_uint_eq(vals[d->n_buckets + 1], sum);
	metrics_thread_unregister(store);
	/* unregistered: the shared shard, added to the same totals */
	metrics_histogram_observe(s, d->buckets[0]);
	metrics_series_read(store, s, vals);
	ck_assert_uint_eq(vals[0], 3);
	metrics_store_free(&store);
}
END_TEST

/* ---- writer registration ---- */

static void *register_main(void *arg)
{
	struct metrics_store *store = arg;
	intptr_t ret;

	rcu_register_thread();
	ret = metrics_thread_register(store);
	if (!ret)
		metrics_add(store, M_SYSTEM_SEQUENCE_GAPS_TOTAL, NULL, 10);
	/* stays registered: the slot is not given back */
	rcu_unregister_thread();
	return (void *)ret;
}

START_TEST(test_register_limit)
{
	struct metrics_opts opts = { .max_writers = 2 };
	struct metrics_store *store = metrics_store_new(&opts);
	struct metric_series *gaps;
	pthread_t t;
	void *ret;

	ck_assert_ptr_nonnull(store);
	gaps = metrics_series_get(store, M_SYSTEM_SEQUENCE_GAPS_TOTAL, NULL);
	ck_assert_int_eq(metrics_thread_register(store), 0);
	ck_assert_int_eq(metrics_thread_register(store), 0);	/* idempotent */
	metrics_counter_add(gaps, 1);
	pthread_create(&t, NULL, register_main, store);
	pthread_join(t, &ret);
	ck_assert_int_eq((intptr_t)ret, 0);
	pthread_create(&t, NULL, register_main, store);
	pthread_join(t, &ret);
	ck_assert_int_eq((intptr_t)ret, -ENOSPC);
	/* giving our slot back lets another thread take it, counts kept */
	metrics_thread_unregister(store);
	pthread_create(&t, NULL, register_main, store);
	pthread_join(t, &ret);
	ck_assert_int_eq((intptr_t)ret, 0);
	ck_assert_uint_eq(value_of(store, gaps, 0), 21);
	metrics_store_free(&store);
}
END_TEST

START_TEST(test_set)
{
	struct metrics_store *store = metrics_store_new(NULL);
	const char *prog = "tcp_sendmsg";
	struct metric_series *s;

	ck_assert_ptr_nonnull(store);
	metrics_set(store, M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL, &prog, 40);
	metrics_set(store, M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL, &prog, 42);
	s = metrics_series_get(store, M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL, &prog);
	ck_assert_uint_eq(value_of(store, s, 0), 42);
	metrics_add(store, M_SYSTEM_QUEUE_DEPTH, &prog, 5);
	metrics_add(store, M_SYSTEM_QUEUE_DEPTH, &prog, -8);
	s = metrics_series_get(store, M_SYSTEM_QUEUE_DEPTH, &prog);
	ck_assert_int_eq((int64_t)value_of(store, s, 0), -3);
	/* NULL handles (allocation failure upstream) are ignored */
	metrics_counter_add(NULL, 1);
	metrics_histogram_observe(NULL, 1);
	metrics_gauge_set(NULL, 1);
	metrics_store_free(&store);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics_store");
	TCase *tc = tcase_create("store");
	int status;

	rcu_register_thread();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_writers_and_reader);
	tcase_add_test(tc, test_series_limit);
	tcase_add_test(tc, test_same_handle);
	tcase_add_test(tc, test_gauge_threads);
	tcase_add_test(tc, test_histogram_bounds);
	tcase_add_test(tc, test_register_limit);
	tcase_add_test(tc, test_set);
	suite_add_tcase(s, tc);
	status = check_run(s);
	rcu_unregister_thread();
	return status;
}

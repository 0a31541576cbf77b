/* Metric store benchmark: counter updates per second per thread on
 * existing series (1 and 2 writers, a scraper rendering all the while),
 * histogram observations per second, time to serialize 10k and 100k
 * histogram series, and memory per histogram series.  Each figure is the
 * median of RUNS runs, printed with its ratio to the target. */
#include "config.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu.h>

#ifdef QTAP_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/buf.h"

#define RUNS 5
#define HOT_SERIES 1024
#define UPDATES 100000000ull
#define OBSERVES 20000000ull

#define TARGET_UPDATES 20e6
#define TARGET_SERIALIZE_MS 100.0
#define TARGET_BYTES 512.0

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void die(const char *what)
{
	fprintf(stderr, "bench_store: %s failed\n", what);
	exit(1);
}

/* ---- updates with a scraper running ---- */

struct run {
	struct metrics_store *store;
	struct metric_series **series;
	pthread_barrier_t *start;
	double rate;
	int histogram;
};

static int scraping;

static void *scraper_main(void *arg)
{
	struct metrics_store *store = arg;
	struct buf b = BUF_INIT;

	rcu_register_thread();
	while (__atomic_load_n(&scraping, __ATOMIC_ACQUIRE)) {
		buf_reset(&b);
		if (metrics_render(store, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT, &b))
			die("render");
	}
	buf_free(&b);
	rcu_unregister_thread();
	return NULL;
}

static void *writer_main(void *arg)
{
	struct run *r = arg;
	unsigned long long i, n = r->histogram ? OBSERVES : UPDATES;
	double t0;

	rcu_register_thread();
	if (metrics_thread_register(r->store))
		die("metrics_thread_register");
	/* first touch: this thread's value blocks exist before timing */
	for (i = 0; i < HOT_SERIES; i++)
		metrics_counter_add(r->series[i], 1);
	pthread_barrier_wait(r->start);
	t0 = now_s();
	if (r->histogram)
		for (i = 0; i < n; i++)
			metrics_histogram_observe(r->series[i & (HOT_SERIES - 1)],
						  (i * 7919) % 2000000);
	else
		for (i = 0; i < n; i++)
			metrics_counter_add(r->series[i & (HOT_SERIES - 1)], 1);
	r->rate = (double)n / (now_s() - t0);
	metrics_thread_unregister(r->store);
	rcu_unregister_thread();
	return NULL;
}

static void make_labels(unsigned i, char host[64], char status[8], const char **v)
{
	static const char *const methods[] = { "GET", "POST", "PUT", "DELETE" };
	static const char *const codes[] = { "200", "201", "204", "301", "404", "500" };

	snprintf(host, 64, "api-%u.example.com", i / 24);
	snprintf(status, 8, "%s", codes[(i / 4) % 6]);
	v[0] = methods[i % 4];
	v[1] = host;
	v[2] = status;
	v[3] = i % 2 ? "http2" : "http1";
}

/* Median updates/s per writer thread, nthreads writers and one scraper. */
static double bench_updates(int nthreads, int histogram)
{
	double rates[RUNS];
	int run, t;

	for (run = 0; run < RUNS; run++) {
		struct metrics_opts opts = { .http_enabled = true };
		struct metrics_store *store = metrics_store_new(&opts);
		struct metric_series *series[HOT_SERIES];
		struct run r[2];
		pthread_t tw[2], ts;
		pthread_barrier_t start;
		char host[64], status[8];
		const char *v[4];
		double sum = 0;
		unsigned i;

		if (!store)
			die("metrics_store_new");
		for (i = 0; i < HOT_SERIES; i++) {
			make_labels(i, host, status, v);
			series[i] = metrics_series_get(store, histogram ? M_HTTP_REQUESTS_DURATION_MS :
						       M_HTTP_REQUESTS_TOTAL, v);
			if (!series[i])
				die("metrics_series_get");
		}
		pthread_barrier_init(&start, NULL, (unsigned)nthreads);
		__atomic_store_n(&scraping, 1, __ATOMIC_RELEASE);
		pthread_create(&ts, NULL, scraper_main, store);
		for (t = 0; t < nthreads; t++) {
			r[t] = (struct run){ store, series, &start, 0, histogram };
			pthread_create(&tw[t], NULL, writer_main, &r[t]);
		}
		for (t = 0; t < nthreads; t++) {
			pthread_join(tw[t], NULL);
			sum += r[t].rate;
		}
		__atomic_store_n(&scraping, 0, __ATOMIC_RELEASE);
		pthread_join(ts, NULL);
		pthread_barrier_destroy(&start);
		rates[run] = sum / nthreads;
		metrics_store_free(&store);
	}
	return median(rates, RUNS);
}

/* ---- serialization and memory ---- */

static size_t heap_allocated(void)
{
#ifdef QTAP_JEMALLOC
	uint64_t epoch = 1;
	size_t v = 0, len = sizeof(v);

	mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch));
	if (mallctl("stats.allocated", &v, &len, NULL, 0))
		die("mallctl stats.allocated");
	return v;
#else
	return mallinfo2().uordblks;
#endif
}

/* Builds n histogram series with one observation each (one writer), and
 * reports the heap growth and the label text it includes. */
static struct metrics_store *histogram_store(unsigned n, size_t *ret_heap, size_t *ret_labels)
{
	struct metrics_opts opts = { .http_enabled = true, .series_limit = n };
	struct metrics_store *store;
	char host[64], status[8];
	const char *v[4];
	size_t before, labels = 0;
	unsigned i;

	before = heap_allocated();
	store = metrics_store_new(&opts);
	if (!store || metrics_thread_register(store))
		die("store setup");
	for (i = 0; i < n; i++) {
		struct metric_series *s;

		make_labels(i, host, status, v);
		s = metrics_series_get(store, M_HTTP_REQUESTS_DURATION_MS, v);
		if (!s)
			die("metrics_series_get");
		metrics_histogram_observe(s, (uint64_t)i * 37 % 5000000);
		labels += s->labels_len + 1;
	}
	metrics_thread_unregister(store);
	*ret_heap = heap_allocated() - before;
	*ret_labels = labels;
	return store;
}

static void bench_serialize(unsigned n, double *ret_ms, double *ret_cold_ms, size_t *ret_len)
{
	double ms[RUNS], t0, cold;
	struct metrics_store *store;
	struct buf b = BUF_INIT;
	size_t heap, labels;
	int run;

	store = histogram_store(n, &heap, &labels);
	t0 = now_s();
	if (metrics_render(store, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT, &b))
		die("render");
	cold = (now_s() - t0) * 1e3;
	for (run = 0; run < RUNS; run++) {
		buf_reset(&b);
		t0 = now_s();
		if (metrics_render(store, METRICS_ENDPOINT_APP, METRICS_FORMAT_TEXT, &b))
			die("render");
		ms[run] = (now_s() - t0) * 1e3;
	}
	*ret_len = b.len;
	*ret_ms = median(ms, RUNS);
	*ret_cold_ms = cold;
	buf_free(&b);
	metrics_store_free(&store);
}

static void bench_memory(unsigned n, double *ret_total, double *ret_labels)
{
	double total[RUNS], lab[RUNS];
	int run;

	for (run = 0; run < RUNS; run++) {
		size_t heap, labels;
		struct metrics_store *store = histogram_store(n, &heap, &labels);

		total[run] = (double)heap / n;
		lab[run] = (double)labels / n;
		metrics_store_free(&store);
	}
	*ret_total = median(total, RUNS);
	*ret_labels = median(lab, RUNS);
}

int main(void)
{
	double r1, r2, h1, ms10, ms100, cold10, cold100, total, labels;
	size_t len10, len100;

	rcu_register_thread();
	printf("metric store benchmark, median of %d runs\n", RUNS);
	r1 = bench_updates(1, 0);
	printf("counter updates/s/thread, 1 writer + scraper:  %8.1f M  (%.2fx target 20 M)\n",
	       r1 / 1e6, r1 / TARGET_UPDATES);
	r2 = bench_updates(2, 0);
	printf("counter updates/s/thread, 2 writers + scraper: %8.1f M  (%.2fx target 20 M)\n",
	       r2 / 1e6, r2 / TARGET_UPDATES);
	h1 = bench_updates(1, 1);
	printf("histogram observes/s, 1 writer + scraper:      %8.1f M\n", h1 / 1e6);
	bench_serialize(10000, &ms10, &cold10, &len10);
	printf("serialize 10k histogram series:  %7.1f ms  (first render %.1f ms, %zu bytes)\n",
	       ms10, cold10, len10);
	bench_serialize(100000, &ms100, &cold100, &len100);
	printf("serialize 100k histogram series: %7.1f ms  (first render %.1f ms, %zu bytes; "
	       "%.2fx target 100 ms)\n", ms100, cold100, len100, ms100 / TARGET_SERIALIZE_MS);
	bench_memory(100000, &total, &labels);
	printf("bytes per histogram series (100k, 1 writer): %.0f total, %.0f label text, "
	       "%.0f besides labels  (%.2fx target 512)\n",
	       total, labels, total - labels, (total - labels) / TARGET_BYTES);
#ifndef QTAP_JEMALLOC
	printf("(heap measured with mallinfo2: built without jemalloc)\n");
#endif
	rcu_unregister_thread();
	return 0;
}

/* The pipeline without the kernel: two producer threads (standing in for
 * the capture readers) submit synthetic connection events through the
 * SPSC queues to 1 and then 2 parser workers, which run the connection
 * tracker against a real metric store.
 *
 * The mix: 10,000 connections open at once (5,000 per producer), each an
 * OPEN, 20 data events of 200 to 2,000 bytes with their payload (an HTTP/1
 * request and response first, so protocol detection runs) and a CLOSE; a
 * closed connection is replaced by a new one.  Remote addresses spread over
 * 256 peers.  The figure is events processed per second per worker, from
 * the first submit until every worker has drained its queues (pipeline_free
 * returned), the median of 5 runs, and its ratio to the target of
 * 2,000,000 events/s per worker.
 *
 *   bench_pipeline [events-per-producer]   (default 2,000,000) */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <urcu.h>

#include "metrics/metrics-int.h"
#include "metrics/metrics.h"
#include "parse/parse.h"
#include "sock.h"
#include "util/log.h"

#define PRODUCERS 2
#define CONNS_PER_PRODUCER 5000
#define DATA_PER_CONN 20
#define EVENTS_PER_CONN (DATA_PER_CONN + 2)
#define RUNS 5
#define TARGET 2000000.0
#define PAYLOAD_MAX 2000

struct bconn {
	uint64_t id;
	uint64_t seq;
	uint32_t sent, recv;
	uint32_t peer;
};

struct producer {
	struct pipeline *p;
	unsigned index;
	uint64_t events;
	uint64_t retries;
	uint64_t next_id;
	struct bconn conns[CONNS_PER_PRODUCER];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void submit(struct producer *pr, const void *rec, size_t size)
{
	while (pipeline_submit(pr->p, pr->index, rec, size) == -ENOBUFS) {
		/* the queue is full: the worker catches up (not counted as
		 * a loss by the benchmark, but the drop counter sees it) */
		pr->retries++;
		pipeline_flush(pr->p, pr->index);
		sched_yield();
	}
}

static void conn_start(struct producer *pr, struct bconn *c, uint64_t ts)
{
	struct qtap_conn_open o;

	memset(&o, 0, sizeof(o));
	c->id = ((uint64_t)pr->index << 48) | pr->next_id++;
	c->seq = 1;
	c->sent = c->recv = 0;
	c->peer = (uint32_t)(c->id * 2654435761u) & 255;
	o.hdr.version = QTAP_EVENT_ABI_VERSION;
	o.hdr.type = QTAP_EVENT_CONN_OPEN;
	o.hdr.timestamp_ns = ts;
	o.conn_id = c->id;
	o.tgid = 1000 + (uint32_t)(c->id % 50);
	o.pid = o.tgid;
	o.fd = 3 + (uint32_t)(c->id % 1000);
	o.family = AF_INET;
	o.direction = QTAP_DIR_EGRESS;
	o.lport = (uint16_t)(32768 + c->id % 28000);
	o.rport = 443;
	o.laddr[0] = 10, o.laddr[3] = 1;
	o.raddr[0] = 10, o.raddr[1] = 1, o.raddr[2] = 0, o.raddr[3] = (uint8_t)c->peer;
	memcpy(o.comm, "bench", 6);
	submit(pr, &o, sizeof(o));
}

static void *producer_main(void *arg)
{
	static const char req[] = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1500\r\n\r\n";
	struct producer *pr = arg;
	union {
		struct qtap_conn_data d;
		uint8_t bytes[sizeof(struct qtap_conn_data) + PAYLOAD_MAX];
	} u;
	struct qtap_conn_close cl;
	uint64_t n = 0, ts = now_ns();
	unsigned i = 0, k;

	memset(&u, 'x', sizeof(u));
	memset(&cl, 0, sizeof(cl));
	for (k = 0; k < CONNS_PER_PRODUCER; k++) {
		conn_start(pr, &pr->conns[k], ts);
		n++;
	}
	while (n < pr->events) {
		struct bconn *c = &pr->conns[i];
		bool send = c->seq % 2;

		if (++i == CONNS_PER_PRODUCER) {
			i = 0;
			pipeline_flush(pr->p, pr->index);
			ts = now_ns();
		}
		if (c->seq <= DATA_PER_CONN) {
			uint32_t len = 200 + (uint32_t)((c->id * 7919 + c->seq * 104729) % 1801);

			u.d.hdr.version = QTAP_EVENT_ABI_VERSION;
			u.d.hdr.type = QTAP_EVENT_CONN_DATA;
			u.d.hdr.timestamp_ns = ts;
			u.d.conn_id = c->id;
			u.d.seq = c->seq;
			u.d.tgid = 1000 + (uint32_t)(c->id % 50);
			u.d.pid = u.d.tgid;
			u.d.fd = 3 + (uint32_t)(c->id % 1000);
			u.d.dir = send ? QTAP_DATA_SEND : QTAP_DATA_RECV;
			u.d.op = send ? QTAP_OP_WRITE : QTAP_OP_READ;
			u.d.flags = 0;
			u.d.len = len;
			u.d.captured = len;
			if (c->seq <= 2)
				memcpy(u.d.payload, send ? req : resp, send ? sizeof(req) - 1 : sizeof(resp) - 1);
			if (send)
				c->sent += len;
			else
				c->recv += len;
			submit(pr, &u, sizeof(u.d) + len);
			c->seq++;
		} else {
			cl.hdr.version = QTAP_EVENT_ABI_VERSION;
			cl.hdr.type = QTAP_EVENT_CONN_CLOSE;
			cl.hdr.timestamp_ns = ts;
			cl.conn_id = c->id;
			cl.seq = c->seq;
			cl.tgid = 1000 + (uint32_t)(c->id % 50);
			cl.pid = cl.tgid;
			cl.fd = 3 + (uint32_t)(c->id % 1000);
			cl.bytes_sent = c->sent;
			cl.bytes_recv = c->recv;
			cl.data_events = DATA_PER_CONN;
			submit(pr, &cl, sizeof(cl));
			conn_start(pr, c, ts);
			n++;
		}
		n++;
	}
	pipeline_flush(pr->p, pr->index);
	pr->events = n;
	return NULL;
}

/* One run: events processed per second per worker. */
static uint64_t conns_started;

static double run(struct metrics_store *store, unsigned workers, uint64_t events,
		  uint64_t *ret_retries)
{
	struct pipeline_opts po = {
		.n_producers = PRODUCERS,
		.n_workers = workers,
		.queue_bytes = 4u << 20,
		.store = store,
	};
	static struct producer pr[PRODUCERS];
	pthread_t th[PRODUCERS];
	struct pipeline *p = pipeline_new(&po);
	uint64_t t0, total = 0;
	unsigned i;

	if (!p) {
		perror("pipeline_new");
		exit(1);
	}
	t0 = now_ns();
	for (i = 0; i < PRODUCERS; i++) {
		memset(&pr[i], 0, sizeof(pr[i]));
		pr[i].p = p;
		pr[i].index = i;
		pr[i].events = events;
		pr[i].next_id = 1;
		pthread_create(&th[i], NULL, producer_main, &pr[i]);
	}
	for (i = 0; i < PRODUCERS; i++) {
		pthread_join(th[i], NULL);
		total += pr[i].events;
		*ret_retries += pr[i].retries;
		conns_started += pr[i].next_id - 1;
	}
	pipeline_free(&p);
	return (double)total / ((double)(now_ns() - t0) / 1e9) / workers;
}

/* Connections opened and closed so far (every peer), and gaps: what the
 * workers did must match what the producers submitted. */
static void totals(struct metrics_store *store, uint64_t *ret_open, uint64_t *ret_close,
		   uint64_t *ret_gaps)
{
	uint64_t v[METRICS_MAX_BUCKETS + 2];
	unsigned peer;

	*ret_open = *ret_close = 0;
	for (peer = 0; peer < 256; peer++) {
		char addr[32];
		const char *values[3] = { "egress", addr, "443" };

		snprintf(addr, sizeof(addr), "10.1.0.%u", peer);
		metrics_series_read(store, metrics_series_get(store, M_CONNECTION_OPEN_TOTAL, values), v);
		*ret_open += v[0];
		metrics_series_read(store, metrics_series_get(store, M_CONNECTION_CLOSE_TOTAL, values), v);
		*ret_close += v[0];
	}
	metrics_series_read(store, metrics_series_get(store, M_SYSTEM_SEQUENCE_GAPS_TOTAL, NULL), v);
	*ret_gaps = v[0];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct metrics_opts mo = { .series_limit = 0 };
	uint64_t events = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	struct metrics_store *store;
	unsigned workers;

	log_setup(LOG_LEVEL_INFO, LOG_ENCODING_CONSOLE);
	rcu_register_thread();
	store = metrics_store_new(&mo);
	if (!store) {
		perror("metrics_store_new");
		return 1;
	}
	printf("pipeline: %u producers, %u connections open at once, %u events each "
	       "(OPEN, %u data of 200-2000 bytes, CLOSE), %llu events per producer per run\n",
	       PRODUCERS, PRODUCERS * CONNS_PER_PRODUCER, EVENTS_PER_CONN, DATA_PER_CONN,
	       (unsigned long long)events);
	for (workers = 1; workers <= 2; workers++) {
		double r[RUNS];
		uint64_t retries = 0, open, close, gaps;
		unsigned i;

		for (i = 0; i < RUNS; i++)
			r[i] = run(store, workers, events, &retries);
		totals(store, &open, &close, &gaps);
		if (open != conns_started || close != conns_started || gaps) {
			fprintf(stderr, "mismatch: %llu connections started, %llu opened, %llu "
				"closed, %llu gaps\n", (unsigned long long)conns_started,
				(unsigned long long)open, (unsigned long long)close,
				(unsigned long long)gaps);
			return 1;
		}
		qsort(r, RUNS, sizeof(r[0]), cmp_double);
		printf("workers=%u: %.0f events/s per worker (median of %u; min %.0f, max %.0f), "
		       "%.2f x the 2,000,000 target; producer waits on full queues: %llu\n",
		       workers, r[RUNS / 2], RUNS, r[0], r[RUNS - 1], r[RUNS / 2] / TARGET,
		       (unsigned long long)retries);
	}
	metrics_store_free(&store);
	rcu_unregister_thread();
	return 0;
}

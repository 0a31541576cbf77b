/* The pipeline: capture readers (producers) hand kernel events to parser
 * workers through one SPSC queue per (producer, worker) pair; a connection
 * always goes to the same worker, the one of hash(conn_id).
 *
 * A worker drains its queues round-robin in batches.  With nothing to do it
 * spins briefly, then sleeps on a futex: it sets its `sleeping` word, looks
 * at its queues once more, and waits.  A producer's pipeline_flush() wakes
 * a worker only when that word says it sleeps, so a busy pipeline makes no
 * system calls and an idle one uses no CPU.  Housekeeping (reorder
 * timeouts, idle connections, the queue depth gauge) runs every
 * CONN_HOUSEKEEP_NS, which is also the longest sleep. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <urcu.h>

#include "metrics/metrics.h"
#include "parse/parse-int.h"
#include "sock.h"

#define MAX_WORKERS 64
#define DEFAULT_MAX_WORKERS 8
/* Records taken from one queue before moving to the next. */
#define BATCH 64
/* Empty looks at the queues before a worker goes to sleep (a few µs):
 * the readers hand over whole batches, so a longer spin only burns the CPU
 * the traced programs need (2000 rounds cost 3% of a busy 2-CPU host). */
#define SPIN_ROUNDS 200

struct pipeline_worker {
	/* The futex word.  Set to 1 by the worker before it sleeps and back
	 * to 0 when it wakes; producers exchange it to 0 when they wake it. */
	int sleeping __attribute__((aligned(64)));
	struct pipeline *p;
	unsigned index;
	pthread_t thread;
	bool started;
	/* queues[i] is written by producer i, read by this worker. */
	struct spsc **queues;
	/* Looked up by the worker before pipeline_new() returns, read-only
	 * afterwards.  dropped: producers add (their own shard); depth:
	 * the worker sets. */
	struct metric_series *depth, *dropped;
	/* events_dropped{reason}: the tracker could not use them (worker) */
	struct metric_series *invalid, *no_memory;
	int err;	/* start-up result, under p->lock */
	bool ready;	/* under p->lock */
};

/* Written by its producer thread only. */
struct pipeline_producer {
	uint64_t dirty __attribute__((aligned(64)));	/* workers to wake at flush */
};

/* n_*, opts, workers[], producers[]: written by pipeline_new() before the
 * threads start, read-only afterwards.  stop: written by pipeline_free(),
 * read by the workers (atomics). */
struct pipeline {
	struct pipeline_opts opts;
	unsigned n_workers, n_producers;
	size_t queue_bytes;	/* each queue's */
	struct pipeline_worker *workers;
	struct pipeline_producer *producers;
	int stop;
	pthread_mutex_t lock;	/* start-up handshake */
	pthread_cond_t cond;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void futex_wait(int *addr, int val, uint64_t timeout_ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(timeout_ns / 1000000000ull),
		.tv_nsec = (long)(timeout_ns % 1000000000ull),
	};

	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

static void futex_wake(int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void worker_wake(struct pipeline_worker *w)
{
	if (__atomic_exchange_n(&w->sleeping, 0, __ATOMIC_SEQ_CST))
		futex_wake(&w->sleeping);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* One round over the worker's queues: up to BATCH records from each.
 * Returns the number processed. */
static unsigned worker_round(struct pipeline_worker *w, struct conn_tracker *t, uint64_t now)
{
	unsigned i, n = 0, k;
	int err;

	for (i = 0; i < w->p->n_producers; i++) {
		struct spsc *q = w->queues[i];

		for (k = 0; k < BATCH; k++) {
			size_t size;
			void *rec = spsc_peek(q, &size);

			if (!rec)
				break;
			err = conn_tracker_event(t, rec, size, now);
			if (err)
				metrics_counter_add(err == -ENOMEM ? w->no_memory : w->invalid, 1);
			spsc_release(q);
		}
		n += k;
	}
	return n;
}

static bool worker_has_work(struct pipeline_worker *w)
{
	unsigned i;

	for (i = 0; i < w->p->n_producers; i++)
		if (spsc_depth_bytes(w->queues[i]))
			return true;
	return false;
}

static void worker_depth_update(struct pipeline_worker *w)
{
	size_t n = 0;
	unsigned i;

	for (i = 0; i < w->p->n_producers; i++)
		n += spsc_depth_records(w->queues[i]);
	metrics_gauge_set(w->depth, (int64_t)n);
}

static void worker_ready(struct pipeline_worker *w, int err)
{
	pthread_mutex_lock(&w->p->lock);
	w->err = err;
	w->ready = true;
	pthread_cond_broadcast(&w->p->cond);
	pthread_mutex_unlock(&w->p->lock);
}

static void *worker_main(void *arg)
{
	struct pipeline_worker *w = arg;
	struct pipeline *p = w->p;
	struct conn_tracker_opts topts = {
		.store = p->opts.store,
		.worker = w->index,
		.idle_timeout_ns = (uint64_t)p->opts.idle_timeout_s * 1000000000ull,
		.proc_lookup = p->opts.proc_lookup,
		.conn_forget = p->opts.conn_forget,
		.conn_learned = p->opts.conn_learned,
		.conn_alive = p->opts.conn_alive,
		.conn_wanted = p->opts.conn_wanted,
		.proc_settled = p->opts.proc_settled,
		.ctx = p->opts.ctx,
		.trace = p->opts.trace,
	};
	struct conn_tracker *t;
	uint64_t next_hk;
	unsigned idle = 0;
	char label[16];
	const char *values[1] = { label };
	bool registered;

	rcu_register_thread();
	/* Without a shard of its own (too many writers) a worker still
	 * counts, through the shared one. */
	registered = metrics_thread_register(p->opts.store) == 0;
	snprintf(label, sizeof(label), "%u", w->index);
	w->depth = metrics_series_get(p->opts.store, M_SYSTEM_QUEUE_DEPTH, values);
	w->dropped = metrics_series_get(p->opts.store, M_SYSTEM_QUEUE_DROPPED_TOTAL, values);
	w->invalid = metrics_series_get(p->opts.store, M_SYSTEM_EVENTS_DROPPED_TOTAL,
					(const char *const[]){ "invalid" });
	w->no_memory = metrics_series_get(p->opts.store, M_SYSTEM_EVENTS_DROPPED_TOTAL,
					  (const char *const[]){ "no_memory" });
	t = conn_tracker_new(&topts);
	worker_ready(w, t ? 0 : -errno);
	if (!t)
		goto out;

	next_hk = mono_ns() + CONN_HOUSEKEEP_NS;
	for (;;) {
		uint64_t now = mono_ns();
		unsigned n = worker_round(w, t, now);

		if (now >= next_hk) {
			conn_tracker_housekeep(t, now);
			worker_depth_update(w);
			next_hk = now + CONN_HOUSEKEEP_NS;
		}
		if (n)
			continue;
		if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
			/* the producers are gone: one more look, then out */
			if (worker_has_work(w))
				continue;
			break;
		}
		/* A short spin without reading the clock, in case a producer
		 * is in the middle of a batch; then sleep. */
		for (idle = 0; idle < SPIN_ROUNDS && !worker_has_work(w); idle++)
			cpu_relax();
		if (idle < SPIN_ROUNDS)
			continue;
		__atomic_store_n(&w->sleeping, 1, __ATOMIC_SEQ_CST);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (!worker_has_work(w) && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
			futex_wait(&w->sleeping, 1, next_hk > now ? next_hk - now : 1);
		__atomic_store_n(&w->sleeping, 0, __ATOMIC_SEQ_CST);
	}
	conn_tracker_free(&t, mono_ns());
	worker_depth_update(w);
out:
	if (registered)
		metrics_thread_unregister(p->opts.store);
	rcu_unregister_thread();
	return NULL;
}

unsigned pipeline_workers(const struct pipeline *p, size_t *queue_bytes)
{
	*queue_bytes = p->queue_bytes;
	return p->n_workers;
}

size_t pipeline_queue_bytes_auto(unsigned n_producers, unsigned n_workers)
{
	uint64_t n = (uint64_t)n_producers * n_workers;
	size_t q = PIPELINE_QUEUE_BYTES;

	while (q > PIPELINE_QUEUE_BYTES_MIN && q * n > PIPELINE_QUEUES_TOTAL)
		q /= 2;
	return q;
}

static size_t round_pow2(size_t v)
{
	size_t r = 64;

	while (r < v && r < ((size_t)1 << 40))
		r <<= 1;
	return r;
}

struct pipeline *pipeline_new(const struct pipeline_opts *opts)
{
	struct pipeline *p;
	size_t qbytes;
	unsigned i, j;
	int err = 0;

	if (!opts || !opts->n_producers || opts->n_workers > MAX_WORKERS || !opts->store) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->opts = *opts;
	p->n_producers = opts->n_producers;
	p->n_workers = opts->n_workers;
	if (!p->n_workers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		p->n_workers = n < 1 ? 1 : n > DEFAULT_MAX_WORKERS ? DEFAULT_MAX_WORKERS : (unsigned)n;
	}
	qbytes = opts->queue_bytes ? round_pow2(opts->queue_bytes) :
		 pipeline_queue_bytes_auto(p->n_producers, p->n_workers);
	p->queue_bytes = qbytes;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	/* Each zeroed as soon as it is there: pipeline_free() reads it. */
	if (posix_memalign((void **)&p->workers, 64, p->n_workers * sizeof(*p->workers))) {
		p->workers = NULL;
		err = -ENOMEM;
		goto err_free;
	}
	memset(p->workers, 0, p->n_workers * sizeof(*p->workers));
	if (posix_memalign((void **)&p->producers, 64, p->n_producers * sizeof(*p->producers))) {
		p->producers = NULL;
		err = -ENOMEM;
		goto err_free;
	}
	memset(p->producers, 0, p->n_producers * sizeof(*p->producers));
	for (i = 0; i < p->n_workers; i++) {
		struct pipeline_worker *w = &p->workers[i];

		w->p = p;
		w->index = i;
		w->queues = calloc(p->n_producers, sizeof(*w->queues));
		if (!w->queues) {
			err = -ENOMEM;
			goto err_free;
		}
		for (j = 0; j < p->n_producers; j++) {
			w->queues[j] = spsc_new(qbytes);
			if (!w->queues[j]) {
				err = -errno;
				goto err_free;
			}
		}
	}
	for (i = 0; i < p->n_workers; i++) {
		struct pipeline_worker *w = &p->workers[i];

		err = -pthread_create(&w->thread, NULL, worker_main, w);
		if (err)
			goto err_free;
		w->started = true;
		pthread_mutex_lock(&p->lock);
		while (!w->ready)
			pthread_cond_wait(&p->cond, &p->lock);
		err = w->err;
		pthread_mutex_unlock(&p->lock);
		if (err)
			goto err_free;
	}
	return p;

err_free:
	pipeline_free(&p);
	errno = -err;
	return NULL;
}

void pipeline_free(struct pipeline **pp)
{
	struct pipeline *p;
	unsigned i, j;

	if (!pp || !*pp)
		return;
	p = *pp;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	for (i = 0; p->workers && i < p->n_workers; i++) {
		struct pipeline_worker *w = &p->workers[i];

		if (!w->started)
			continue;
		worker_wake(w);
		pthread_join(w->thread, NULL);
	}
	for (i = 0; p->workers && i < p->n_workers; i++) {
		struct pipeline_worker *w = &p->workers[i];

		for (j = 0; w->queues && j < p->n_producers; j++)
			spsc_free(&w->queues[j]);
		free(w->queues);
	}
	free(p->workers);
	free(p->producers);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
	*pp = NULL;
}

static int queue_put(struct pipeline *p, unsigned producer, unsigned worker, const void *rec,
		     size_t size)
{
	struct pipeline_worker *w = &p->workers[worker];
	void *dst = spsc_reserve(w->queues[producer], size);

	if (!dst) {
		metrics_counter_add(w->dropped, 1);
		return -ENOBUFS;
	}
	memcpy(dst, rec, size);
	spsc_commit(w->queues[producer]);
	p->producers[producer].dirty |= 1ull << worker;
	return 0;
}

int pipeline_submit(struct pipeline *p, unsigned producer, const void *event, size_t size)
{
	const struct qtap_event_header *h = event;
	size_t min;
	uint64_t id;

	if (producer >= p->n_producers || size < sizeof(*h))
		return -EINVAL;
	min = qtap_sock_record_min(h->type);
	if (!min)
		return -EINVAL;
	if (size < min)
		return -EINVAL;
	/* conn_id follows the header in every connection record */
	memcpy(&id, (const uint8_t *)event + sizeof(*h), sizeof(id));
	return queue_put(p, producer, (unsigned)(conn_id_hash(id) % p->n_workers), event, size);
}

int pipeline_submit_exit(struct pipeline *p, unsigned producer, uint32_t tgid,
			 uint64_t timestamp_ns)
{
	struct pipeline_exit_event x = {
		.version = QTAP_EVENT_ABI_VERSION,
		.type = PIPELINE_EVENT_EXIT,
		.tgid = tgid,
		.timestamp_ns = timestamp_ns,
	};
	unsigned i;
	int err = 0;

	if (producer >= p->n_producers)
		return -EINVAL;
	for (i = 0; i < p->n_workers; i++)
		if (queue_put(p, producer, i, &x, sizeof(x)))
			err = -ENOBUFS;
	return err;
}

void pipeline_flush(struct pipeline *p, unsigned producer)
{
	uint64_t dirty;

	if (producer >= p->n_producers)
		return;
	dirty = p->producers[producer].dirty;
	p->producers[producer].dirty = 0;
	/* Orders the commits before the look at `sleeping`; the worker
	 * orders its store to `sleeping` before its look at the queues. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	while (dirty) {
		unsigned i = (unsigned)__builtin_ctzll(dirty);

		dirty &= dirty - 1;
		if (__atomic_load_n(&p->workers[i].sleeping, __ATOMIC_SEQ_CST))
			worker_wake(&p->workers[i]);
	}
}

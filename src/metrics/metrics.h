/* Metric store: every family defined once in metric_defs[] (families.c),
 * series found through an RCU hash table, values kept in per-writer shards,
 * exposition in Prometheus text 0.0.4 or OpenMetrics 1.0.
 *
 * Values are integers in the family's storage unit: a family with scale
 * 1000 stores microseconds and is exposed in milliseconds, one with scale
 * 1000000000 stores nanoseconds and is exposed in seconds.  Histogram bucket
 * bounds are in the storage unit too.  This keeps updates to one integer add
 * and the text exact.
 *
 * Threads:
 * - writers (capture readers, parser workers, ...) call
 *   metrics_thread_register() once, then update series without locks or
 *   atomics: each registered thread owns a shard of every series it touches.
 *   Unregistered threads update a shared shard with atomic operations.
 * - any thread may look series up (metrics_series_get); the lookup takes
 *   rcu_read_lock() itself, the calling thread must be RCU-registered.
 * - the scrape thread renders, summing the shards; it never blocks writers.
 * A series handle stays valid until metrics_store_free(). */
#ifndef QTAP_METRICS_METRICS_H
#define QTAP_METRICS_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct buf;

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

enum metric_endpoint { METRICS_ENDPOINT_APP, METRICS_ENDPOINT_SYSTEM };

enum metrics_format { METRICS_FORMAT_TEXT, METRICS_FORMAT_OPENMETRICS };

/* metric_def.flags */
#define METRIC_F_HTTP (1u << 0) /* needs the http_metrics plugin */

#define METRIC_MAX_LABELS 6

struct metric_def {
	const char *name;
	enum metric_type type;
	enum metric_endpoint endpoint;
	unsigned flags;
	const char *help;
	unsigned n_labels;
	const char *labels[METRIC_MAX_LABELS];
	unsigned n_buckets;        /* histograms: finite bounds, +Inf implied */
	const uint64_t *buckets;   /* ascending, storage unit */
	uint64_t scale;            /* storage units per exposed unit, >= 1 */
};

/* The order of metric_defs[]; exposition follows it. */
enum metric_id {
	/* /metrics: HTTP (http_metrics plugin) */
	M_HTTP_REQUESTS_TOTAL,
	M_HTTP_REQUESTS_DURATION_MS,
	M_HTTP_REQUESTS_SIZE_BYTES,
	M_HTTP_RESPONSES_TOTAL,
	M_HTTP_RESPONSES_DURATION_MS,
	M_HTTP_RESPONSES_SIZE_BYTES,
	M_HTTP_DURATION_MS,
	/* /metrics: connections (always) */
	M_CONNECTION_OPEN_TOTAL,
	M_CONNECTION_CLOSE_TOTAL,
	M_CONNECTION_ACTIVE_TOTAL,
	M_CONNECTION_BYTES_SENT_TOTAL,
	M_CONNECTION_BYTES_RECV_TOTAL,
	M_CONNECTION_DURATION_MS,
	M_CONNECTION_PROTOCOL_TOTAL,
	M_CONNECTION_TLS_HANDSHAKE_TOTAL,
	/* /system/metrics */
	M_SYSTEM_EVENTS_RECEIVED_TOTAL,
	M_SYSTEM_EVENTS_LOST_TOTAL,
	M_SYSTEM_EVENTS_DROPPED_TOTAL,
	M_SYSTEM_QUEUE_DEPTH,
	M_SYSTEM_QUEUE_DROPPED_TOTAL,
	M_SYSTEM_SEQUENCE_GAPS_TOTAL,
	M_SYSTEM_PAYLOADS_DROPPED_TOTAL,
	M_SYSTEM_PARSE_ERRORS_TOTAL,
	M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL,
	M_SYSTEM_BPF_PROGRAM_RUN_SECONDS_TOTAL,
	M_SYSTEM_BPF_PROGRAM_MISSES_TOTAL,
	M_SYSTEM_CONNECTIONS_TRACKED,
	M_SYSTEM_PROCESSES_TRACKED,
	M_SYSTEM_TLS_ATTACHMENTS,
	M_SYSTEM_TLS_ATTACH_ERRORS_TOTAL,
	M_SYSTEM_TLS_CALLS_UNTIED_TOTAL,
	M_SYSTEM_SERIES,
	M_SYSTEM_SERIES_OVERFLOW_TOTAL,
	M_SYSTEM_SCRAPE_DURATION_SECONDS,
	M_SYSTEM_CONFIG_RELOADS_TOTAL,
	M_SYSTEM_JEMALLOC_ALLOCATED_BYTES,
	M_SYSTEM_JEMALLOC_RESIDENT_BYTES,
	M_BUILD_INFO,
	M_PROCESS_CPU_SECONDS_TOTAL,
	M_PROCESS_RESIDENT_MEMORY_BYTES,
	M_PROCESS_VIRTUAL_MEMORY_BYTES,
	M_PROCESS_OPEN_FDS,
	M_PROCESS_MAX_FDS,
	M_PROCESS_START_TIME_SECONDS,
	M__COUNT
};

extern const struct metric_def metric_defs[M__COUNT];

/* The label value a series gets when its family is over its series limit. */
#define METRIC_OVERFLOW_VALUE "__overflow__"

struct metrics_opts {
	unsigned series_limit;  /* per family; 0 means the default, 10000 */
	unsigned max_writers;   /* registered threads at most; 0 means 64 */
	bool http_enabled;      /* expose the METRIC_F_HTTP families */
};

struct metrics_store;
struct metric_series;

/* NULL and errno on failure.  Both from an RCU-registered thread (they
 * use the hash table); free when no other thread uses the store. */
struct metrics_store *metrics_store_new(const struct metrics_opts *opts);
void metrics_store_free(struct metrics_store **store);

/* Reload-time settings; any thread.  The series limit applies to the
 * families of /metrics; those of /system/metrics have small fixed label
 * sets and a fixed cap of 4096 series each.  Lowering the limit keeps the
 * series that exist. */
void metrics_store_set_series_limit(struct metrics_store *store, unsigned limit);
void metrics_store_set_http_enabled(struct metrics_store *store, bool enabled);

/* The calling thread becomes a writer with its own shard: 0, or -ENOSPC
 * when max_writers threads are registered (-ENOMEM).  Unregistering keeps
 * what the thread counted, and a later thread may take the shard over.  A
 * thread is the writer of one store at a time. */
int metrics_thread_register(struct metrics_store *store);
void metrics_thread_unregister(struct metrics_store *store);

/* The series of family id with these label values (n_labels of them, in
 * the order of the definition; NULL for a family without labels).  Over the
 * family's limit, the __overflow__ series is returned and counted.  Label
 * values are escaped when stored; bytes that are not UTF-8 become U+FFFD.
 * NULL and errno ENOMEM on allocation failure, EINVAL for a bad id. */
struct metric_series *metrics_series_get(struct metrics_store *store, enum metric_id id,
					 const char *const *values);

/* Updates.  A NULL series (failed lookup) is ignored.  Counters only
 * grow; gauges move both ways.  *_set writes the
 * shared shard and is for values that one thread owns outright (a
 * collector mirroring a kernel counter, a queue depth): never mix set and
 * add on one series. */
void metrics_counter_add(struct metric_series *s, uint64_t v);
void metrics_counter_set(struct metric_series *s, uint64_t v);
void metrics_gauge_add(struct metric_series *s, int64_t v);
void metrics_gauge_set(struct metric_series *s, int64_t v);
void metrics_histogram_observe(struct metric_series *s, uint64_t v);

/* The same, looking the series up each time (for rare updates). */
void metrics_add(struct metrics_store *store, enum metric_id id,
		 const char *const *values, int64_t v);
void metrics_set(struct metrics_store *store, enum metric_id id,
		 const char *const *values, int64_t v);

/* Collectors run on the scrape thread, before the endpoint they belong to is
 * rendered, and refresh values from elsewhere (the kernel, /proc, jemalloc)
 * with *_set.  Register before the HTTP server starts. */
typedef void (*metrics_collector_fn)(struct metrics_store *store, void *ctx);
int metrics_collector_add(struct metrics_store *store, enum metric_endpoint endpoint,
			  metrics_collector_fn fn, void *ctx);

/* Renders every family of the endpoint into out (appending).  0 or -errno. */
int metrics_render(struct metrics_store *store, enum metric_endpoint endpoint,
		   enum metrics_format format, struct buf *out);

/* The built-in collectors of /system/metrics: process_*, jemalloc,
 * qtap_build_info (process.c). */
int metrics_system_collectors_add(struct metrics_store *store);

/* Writes the family reference of qtap-metrics(7), as roff. */
void metrics_defs_write_man(FILE *out);

#endif

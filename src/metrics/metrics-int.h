/* Private to src/metrics: the store's layout, shared by store.c (series,
 * shards), expose.c (rendering) and process.c (built-in collectors). */
#ifndef QTAP_METRICS_METRICS_INT_H
#define QTAP_METRICS_METRICS_INT_H

#include <pthread.h>
#include <stdint.h>

#include <urcu/rculfhash.h>

#include "metrics/metrics.h"

/* Series ids index the writers' two-level tables: a fixed top level of
 * pages, each page METRICS_PAGE_SIZE slots. */
#define METRICS_PAGE_SHIFT 10
#define METRICS_PAGE_SIZE (1u << METRICS_PAGE_SHIFT)
#define METRICS_MAX_PAGES 4096u
/* Ordinary series at most, all families together; overflow series (one
 * per family) come on top. */
#define METRICS_MAX_SERIES (METRICS_MAX_PAGES * METRICS_PAGE_SIZE - M__COUNT)
/* Families of /system/metrics have bounded label sets (cpus, workers,
 * programs, families); they get this cap instead of series_limit. */
#define METRICS_SYSTEM_SERIES_LIMIT 4096u

#define METRICS_DEFAULT_SERIES_LIMIT 10000u
#define METRICS_DEFAULT_MAX_WRITERS 64u
#define METRICS_MAX_COLLECTORS 32u

/* ---- store.c ---- */

/* One label set of one family.  Written once by the creating thread (under
 * store->create_lock) before it is published in the hash table and the
 * family list; afterwards only `shared` changes (set once, from NULL). */
struct metric_series {
	struct cds_lfht_node node;
	struct metric_series *next;	/* family list, creation order */
	uint64_t *shared;		/* shared shard, allocated on first use */
	uint32_t id;			/* dense, indexes the writers' tables */
	uint32_t store_uid;		/* which store the handle belongs to */
	uint16_t family;
	uint16_t n_values;		/* value words: 1, or n_buckets + 2 */
	uint32_t labels_len;
	char labels[];			/* `a="x",b="y"`, escaped, NUL-ended */
};

/* A registered writer's shard.  Written by its owner thread only (values
 * with relaxed load+store, table entries with release stores); read by the
 * scrape thread with acquire loads.  Never freed before the store. */
struct metrics_writer {
	uint64_t **pages[METRICS_MAX_PAGES];	/* page: METRICS_PAGE_SIZE slots */
	char *arena, *arena_end;		/* bump allocator of value blocks */
	void *chunks;				/* arena chunks, for freeing */
	int in_use;				/* owned by a thread (atomic) */
};

/* Exposition fragments of one family in one format, built at store
 * creation by expose.c, read-only afterwards. */
#define METRICS_MAX_BUCKETS 32
struct metrics_expo {
	char head[768];			/* HELP, TYPE (and UNIT) lines */
	char sample[96];		/* counter/gauge name, or name_bucket */
	char sum[96];			/* name_sum */
	char count[96];			/* name_count */
	char le[METRICS_MAX_BUCKETS + 1][32];	/* `,le="X"} `, +Inf last */
	uint16_t head_len;
	uint8_t sample_len, sum_len, count_len;
	uint8_t le_len[METRICS_MAX_BUCKETS + 1];
};

/* Per-family state.  head/tail/n_series: written under create_lock,
 * read by anyone with atomic loads.  Fragments: written at creation,
 * read-only afterwards. */
struct metrics_family {
	const struct metric_def *def;
	struct metric_series *head, *tail;
	struct metric_series *overflow;
	/* Hashes of label sets lately folded into overflow (FOLD_MEMO slots,
	 * hash | 1; 0: empty): written under create_lock, read without it,
	 * so that a folded label set seen again takes no lock and is not
	 * counted again.  NULL until the family first overflows. */
	uint64_t *folded;
	unsigned n_series;		/* including the overflow series */
	unsigned n_ordinary;		/* counted against the limit */
	struct metrics_expo expo[2];	/* per enum metrics_format */
	int digits;			/* log10(def->scale) */
};

struct metrics_collector {
	enum metric_endpoint endpoint;
	metrics_collector_fn fn;
	void *ctx;
};

/* The store.  Families and the hash table: see above.  writers[]:
 * slots filled once (release), read by the scrape thread.  Options:
 * atomics, any thread. */
struct metrics_store {
	uint32_t uid;
	struct cds_lfht *ht;
	pthread_mutex_t create_lock;	/* serializes series creation */
	pthread_mutex_t render_lock;	/* one render (and its collectors) at a time */
	uint32_t next_id;		/* under create_lock */
	unsigned series_limit;		/* atomic */
	int http_enabled;		/* atomic */
	unsigned max_writers;
	unsigned n_writers;		/* slots used (atomic, grows) */
	struct metrics_writer **writers;
	struct metric_series *scrape_duration[2];	/* per endpoint */
	struct metrics_collector collectors[METRICS_MAX_COLLECTORS];
	unsigned n_collectors;
	int64_t start_ms;		/* process start, for process.c */
	struct metrics_family fam[M__COUNT];
};

/* Sums every shard of s into out[s->n_values] (scrape thread). */
void metrics_series_read(struct metrics_store *store, const struct metric_series *s,
			 uint64_t *out);
unsigned metrics_family_series_count(struct metrics_store *store, enum metric_id id);

/* ---- expose.c ---- */
/* 0, or -ENAMETOOLONG / -EINVAL when the definition does not fit. */
int metrics_family_init_expo(struct metrics_family *f);
/* Writes v / scale as an exact decimal (scale a power of ten); returns
 * the length (at most 22 bytes). */
size_t metrics_fmt_fixed(char *p, uint64_t v, uint64_t scale, int is_signed);

/* ---- families.c ---- */
int metrics_scale_digits(uint64_t scale);

#endif

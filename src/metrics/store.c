/* The metric store: series lookup through an RCU hash table, values in
 * per-writer shards (see metrics.h and metrics-int.h for who touches
 * what). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/tsan.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARENA_CHUNK (64u * 1024u)
#define KEY_STACK 512

/* Store ids tell a thread's writer apart from a stale one of a freed store. */
static uint32_t store_uid_next;

/* The calling thread's shard, and the store it belongs to. */
static __thread struct metrics_writer *tls_writer;
static __thread uint32_t tls_uid;

/* ---- label sets ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* Escapes a label value: backslash, double quote and newline; bytes that
 * are not valid UTF-8 become U+FFFD.  At most 3 bytes out per byte in. */
static size_t escape_value(char *out, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n = strlen(v), i = 0, o = 0, k;

	while (i < n) {
		switch (s[i]) {
		case '\\':
			out[o++] = '\\';
			out[o++] = '\\';
			i++;
			continue;
		case '"':
			out[o++] = '\\';
			out[o++] = '"';
			i++;
			continue;
		case '\n':
			out[o++] = '\\';
			out[o++] = 'n';
			i++;
			continue;
		}
		k = utf8_seq(s + i, n - i);
		if (k) {
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	return o;
}

static size_t labels_bound(const struct metric_def *d, const char *const *values)
{
	size_t n = 1;
	unsigned i;

	for (i = 0; i < d->n_labels; i++)
		n += strlen(d->labels[i]) + 4 +
		     3 * (values && values[i] ? strlen(values[i]) : 0);
	return n;
}

/* `a="x",b="y"` into out (labels_bound() bytes); returns the length. */
static size_t labels_render(char *out, const struct metric_def *d, const char *const *values)
{
	size_t o = 0, n;
	unsigned i;

	for (i = 0; i < d->n_labels; i++) {
		if (i)
			out[o++] = ',';
		n = strlen(d->labels[i]);
		memcpy(out + o, d->labels[i], n);
		o += n;
		out[o++] = '=';
		out[o++] = '"';
		o += escape_value(out + o, values && values[i] ? values[i] : "");
		out[o++] = '"';
	}
	out[o] = '\0';
	return o;
}

static uint64_t hash_key(unsigned family, const char *p, size_t n)
{
	const uint64_t m = 0x9e3779b97f4a7c15ull;
	uint64_t h = (family + 1) * m ^ n, w;

	while (n >= 8) {
		memcpy(&w, p, 8);
		h = (h ^ (w * 0xff51afd7ed558ccdull)) * m;
		h ^= h >> 29;
		p += 8;
		n -= 8;
	}
	w = 0;
	memcpy(&w, p, n);
	h = (h ^ (w * 0xc4ceb9fe1a85ec53ull)) * m;
	h ^= h >> 32;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

struct key {
	unsigned family;
	const char *text;
	size_t len;
};

static int key_match(struct cds_lfht_node *node, const void *arg)
{
	const struct metric_series *s = caa_container_of(node, struct metric_series, node);
	const struct key *k = arg;

	return s->family == k->family && s->labels_len == k->len &&
	       !memcmp(s->labels, k->text, k->len);
}

static struct metric_series *ht_lookup(struct metrics_store *store, const struct key *k,
				       uint64_t hash)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	rcu_read_lock();
	cds_lfht_lookup(store->ht, hash, key_match, k, &iter);
	node = cds_lfht_iter_get_node(&iter);
	rcu_read_unlock();
	/* Series live until the store is freed: the pointer outlives the
	 * read-side section. */
	if (!node)
		return NULL;
	tsan_acquire(caa_container_of(node, struct metric_series, node));
	return caa_container_of(node, struct metric_series, node);
}

/* Under create_lock: makes, indexes and lists a series. */
static struct metric_series *series_insert(struct metrics_store *store, const struct key *k,
					   uint64_t hash)
{
	struct metrics_family *f = &store->fam[k->family];
	const struct metric_def *d = f->def;
	struct metric_series *s;

	s = calloc(1, sizeof(*s) + k->len + 1);
	if (!s)
		return NULL;
	cds_lfht_node_init(&s->node);
	s->id = store->next_id++;
	s->store_uid = store->uid;
	s->family = (uint16_t)k->family;
	s->n_values = (uint16_t)(d->type == METRIC_HISTOGRAM ? d->n_buckets + 2 : 1);
	s->labels_len = (uint32_t)k->len;
	memcpy(s->labels, k->text, k->len);

	tsan_release(s);
	rcu_read_lock();
	cds_lfht_add(store->ht, hash, &s->node);
	rcu_read_unlock();
	if (f->tail)
		__atomic_store_n(&f->tail->next, s, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&f->head, s, __ATOMIC_RELEASE);
	f->tail = s;
	__atomic_store_n(&f->n_series, f->n_series + 1, __ATOMIC_RELAXED);
	return s;
}

static struct metric_series *overflow_get(struct metrics_store *store, unsigned family)
{
	struct metrics_family *f = &store->fam[family];
	const char *vals[METRIC_MAX_LABELS];
	char text[METRIC_MAX_LABELS * 64];
	struct key k = { family, text, 0 };
	unsigned i;

	if (f->overflow)
		return f->overflow;
	for (i = 0; i < f->def->n_labels; i++)
		vals[i] = METRIC_OVERFLOW_VALUE;
	k.len = labels_render(text, f->def, vals);
	f->overflow = series_insert(store, &k, hash_key(family, k.text, k.len));
	return f->overflow;
}

static int is_overflow_key(const struct metrics_family *f, const struct key *k)
{
	static const char v[] = "=\"" METRIC_OVERFLOW_VALUE "\"";
	size_t o = 0, n;
	unsigned i;

	for (i = 0; i < f->def->n_labels; i++) {
		if (i && (o >= k->len || k->text[o++] != ','))
			return 0;
		n = strlen(f->def->labels[i]);
		if (k->len - o < n + sizeof(v) - 1 || memcmp(k->text + o, f->def->labels[i], n) ||
		    memcmp(k->text + o + n, v, sizeof(v) - 1))
			return 0;
		o += n + sizeof(v) - 1;
	}
	return f->def->n_labels && o == k->len;
}

/* Slots of a family's memo of folded label sets (a power of two): a label
 * set pushed out by another is folded, and counted, once more. */
#define FOLD_MEMO 4096

/* The family's overflow series if the label set of hash was folded into
 * it lately; NULL if not known to be.  Any thread, no lock. */
static struct metric_series *folded_get(struct metrics_family *f, uint64_t hash)
{
	uint64_t *memo = __atomic_load_n(&f->folded, __ATOMIC_ACQUIRE);

	if (!memo ||
	    __atomic_load_n(&memo[hash & (FOLD_MEMO - 1)], __ATOMIC_ACQUIRE) != (hash | 1))
		return NULL;
	return f->overflow;	/* set before any slot, which the acquire orders */
}

/* Under create_lock: remembers that the label set of hash is folded;
 * false when it was remembered already. */
static bool folded_put(struct metrics_family *f, uint64_t hash)
{
	uint64_t *slot;

	if (!f->folded) {
		uint64_t *memo = calloc(FOLD_MEMO, sizeof(*memo));

		if (!memo)
			return true;	/* counted at every fold, as without */
		__atomic_store_n(&f->folded, memo, __ATOMIC_RELEASE);
	}
	slot = &f->folded[hash & (FOLD_MEMO - 1)];
	if (*slot == (hash | 1))
		return false;
	__atomic_store_n(slot, hash | 1, __ATOMIC_RELEASE);
	return true;
}

static struct metric_series *series_create(struct metrics_store *store, const struct key *k,
					   uint64_t hash)
{
	struct metrics_family *f = &store->fam[k->family];
	struct metric_series *s;
	unsigned limit;
	int overflowed = 0;

	pthread_mutex_lock(&store->create_lock);
	s = ht_lookup(store, k, hash);
	if (s)
		goto out_unlock;
	if (is_overflow_key(f, k)) {
		s = overflow_get(store, k->family);
		goto out_unlock;
	}
	limit = f->def->endpoint == METRICS_ENDPOINT_SYSTEM ?
		METRICS_SYSTEM_SERIES_LIMIT :
		__atomic_load_n(&store->series_limit, __ATOMIC_RELAXED);
	if (f->def->n_labels && (f->n_ordinary >= limit || store->next_id >= METRICS_MAX_SERIES)) {
		s = overflow_get(store, k->family);
		overflowed = s && folded_put(f, hash);
		goto out_unlock;
	}
	s = series_insert(store, k, hash);
	if (s)
		f->n_ordinary++;
out_unlock:
	pthread_mutex_unlock(&store->create_lock);
	if (overflowed && k->family != M_SYSTEM_SERIES_OVERFLOW_TOTAL) {
		const char *fam_name = f->def->name;

		metrics_add(store, M_SYSTEM_SERIES_OVERFLOW_TOTAL, &fam_name, 1);
	}
	if (!s)
		errno = ENOMEM;
	return s;
}

struct metric_series *metrics_series_get(struct metrics_store *store, enum metric_id id,
					 const char *const *values)
{
	char stack[KEY_STACK], *text = stack, *heap = NULL;
	struct metric_series *s;
	struct key k;
	uint64_t hash;
	size_t bound;

	if ((unsigned)id >= M__COUNT) {
		errno = EINVAL;
		return NULL;
	}
	bound = labels_bound(&metric_defs[id], values);
	if (bound > sizeof(stack)) {
		heap = malloc(bound);
		if (!heap) {
			errno = ENOMEM;
			return NULL;
		}
		text = heap;
	}
	k.family = id;
	k.text = text;
	k.len = labels_render(text, &metric_defs[id], values);
	hash = hash_key(id, text, k.len);
	s = ht_lookup(store, &k, hash);
	if (!s)
		s = folded_get(&store->fam[id], hash);
	if (!s)
		s = series_create(store, &k, hash);
	free(heap);
	return s;
}

/* ---- shards ---- */

static uint64_t *arena_alloc(struct metrics_writer *w, size_t bytes)
{
	char *p;

	if ((size_t)(w->arena_end - w->arena) < bytes) {
		void **chunk = calloc(1, ARENA_CHUNK);

		if (!chunk || bytes > ARENA_CHUNK - sizeof(void *)) {
			free(chunk);
			return NULL;
		}
		*chunk = w->chunks;
		w->chunks = chunk;
		w->arena = (char *)chunk + sizeof(void *);
		w->arena_end = (char *)chunk + ARENA_CHUNK;
	}
	p = w->arena;
	w->arena += bytes;
	return (uint64_t *)(void *)p;
}

static uint64_t *writer_block_slow(struct metrics_writer *w, struct metric_series *s)
{
	uint64_t **page = w->pages[s->id >> METRICS_PAGE_SHIFT];
	uint64_t *block;

	if (!page) {
		page = calloc(METRICS_PAGE_SIZE, sizeof(*page));
		if (!page)
			return NULL;
		__atomic_store_n(&w->pages[s->id >> METRICS_PAGE_SHIFT], page, __ATOMIC_RELEASE);
	}
	block = page[s->id & (METRICS_PAGE_SIZE - 1)];
	if (block)
		return block;
	block = arena_alloc(w, s->n_values * sizeof(uint64_t));
	if (!block)
		return NULL;
	__atomic_store_n(&page[s->id & (METRICS_PAGE_SIZE - 1)], block, __ATOMIC_RELEASE);
	return block;
}

/* The calling thread's value block for s, or NULL when it has none (not
 * a writer of this store, or out of memory): then the shared shard. */
static inline uint64_t *writer_block(struct metric_series *s)
{
	struct metrics_writer *w = tls_writer;
	uint64_t **page, *block;

	if (!w || tls_uid != s->store_uid)
		return NULL;
	/* Only this thread stores these pointers: plain reads see its own
	 * writes. */
	page = w->pages[s->id >> METRICS_PAGE_SHIFT];
	if (likely(page)) {
		block = page[s->id & (METRICS_PAGE_SIZE - 1)];
		if (likely(block))
			return block;
	}
	return writer_block_slow(w, s);
}

static uint64_t *shared_block(struct metric_series *s)
{
	uint64_t *p = __atomic_load_n(&s->shared, __ATOMIC_ACQUIRE), *expected = NULL;

	if (likely(p))
		return p;
	p = calloc(s->n_values, sizeof(*p));
	if (!p)
		return NULL;
	if (!__atomic_compare_exchange_n(&s->shared, &expected, p, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		free(p);
		p = expected;
	}
	return p;
}

/* Owner-only word: no read-modify-write instruction needed, the scrape
 * thread only reads. */
static inline void own_add(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static inline void value_add(struct metric_series *s, unsigned idx, uint64_t v)
{
	uint64_t *b = writer_block(s);

	if (likely(b)) {
		own_add(&b[idx], v);
		return;
	}
	b = shared_block(s);
	if (b)
		__atomic_fetch_add(&b[idx], v, __ATOMIC_RELAXED);
}

static void value_set(struct metric_series *s, uint64_t v)
{
	uint64_t *b = shared_block(s);

	if (b)
		__atomic_store_n(&b[0], v, __ATOMIC_RELAXED);
}

void metrics_counter_add(struct metric_series *s, uint64_t v)
{
	if (s)
		value_add(s, 0, v);
}

void metrics_counter_set(struct metric_series *s, uint64_t v)
{
	if (s)
		value_set(s, v);
}

void metrics_gauge_add(struct metric_series *s, int64_t v)
{
	if (s)
		value_add(s, 0, (uint64_t)v);
}

void metrics_gauge_set(struct metric_series *s, int64_t v)
{
	if (s)
		value_set(s, (uint64_t)v);
}

void metrics_histogram_observe(struct metric_series *s, uint64_t v)
{
	const struct metric_def *d;
	unsigned lo = 0, hi, mid;
	uint64_t *b;

	if (!s)
		return;
	d = &metric_defs[s->family];
	/* First bound >= v (le is inclusive); n_buckets means +Inf. */
	hi = d->n_buckets;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (d->buckets[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	b = writer_block(s);
	if (likely(b)) {
		own_add(&b[lo], 1);
		own_add(&b[d->n_buckets + 1], v);
		return;
	}
	b = shared_block(s);
	if (b) {
		__atomic_fetch_add(&b[lo], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&b[d->n_buckets + 1], v, __ATOMIC_RELAXED);
	}
}

void metrics_add(struct metrics_store *store, enum metric_id id, const char *const *values,
		 int64_t v)
{
	struct metric_series *s = metrics_series_get(store, id, values);

	if (!s)
		return;
	switch (metric_defs[id].type) {
	case METRIC_COUNTER:
		if (v > 0)
			metrics_counter_add(s, (uint64_t)v);
		break;
	case METRIC_GAUGE:
		metrics_gauge_add(s, v);
		break;
	case METRIC_HISTOGRAM:
		if (v >= 0)
			metrics_histogram_observe(s, (uint64_t)v);
		break;
	}
}

void metrics_set(struct metrics_store *store, enum metric_id id, const char *const *values,
		 int64_t v)
{
	struct metric_series *s = metrics_series_get(store, id, values);

	if (!s)
		return;
	switch (metric_defs[id].type) {
	case METRIC_COUNTER:
		if (v >= 0)
			metrics_counter_set(s, (uint64_t)v);
		break;
	case METRIC_GAUGE:
		metrics_gauge_set(s, v);
		break;
	case METRIC_HISTOGRAM:
		break;
	}
}

void metrics_series_read(struct metrics_store *store, const struct metric_series *s,
			 uint64_t *out)
{
	unsigned n = s->n_values, nw, i, j;
	const uint64_t *b;

	b = __atomic_load_n(&s->shared, __ATOMIC_ACQUIRE);
	for (j = 0; j < n; j++)
		out[j] = b ? __atomic_load_n(&b[j], __ATOMIC_RELAXED) : 0;
	nw = __atomic_load_n(&store->n_writers, __ATOMIC_ACQUIRE);
	for (i = 0; i < nw; i++) {
		struct metrics_writer *w = __atomic_load_n(&store->writers[i], __ATOMIC_ACQUIRE);
		uint64_t **page;

		if (!w)
			continue;
		page = __atomic_load_n(&w->pages[s->id >> METRICS_PAGE_SHIFT], __ATOMIC_ACQUIRE);
		if (!page)
			continue;
		b = __atomic_load_n(&page[s->id & (METRICS_PAGE_SIZE - 1)], __ATOMIC_ACQUIRE);
		if (!b)
			continue;
		for (j = 0; j < n; j++)
			out[j] += __atomic_load_n(&b[j], __ATOMIC_RELAXED);
	}
}

unsigned metrics_family_series_count(struct metrics_store *store, enum metric_id id)
{
	return __atomic_load_n(&store->fam[id].n_series, __ATOMIC_RELAXED);
}

/* ---- writers ---- */

int metrics_thread_register(struct metrics_store *store)
{
	struct metrics_writer *w;
	unsigned i, nw;
	int zero;

	if (tls_writer && tls_uid == store->uid)
		return 0;
	nw = __atomic_load_n(&store->n_writers, __ATOMIC_ACQUIRE);
	for (i = 0; i < nw; i++) {
		w = __atomic_load_n(&store->writers[i], __ATOMIC_ACQUIRE);
		zero = 0;
		if (w && __atomic_compare_exchange_n(&w->in_use, &zero, 1, 0, __ATOMIC_ACQ_REL,
						     __ATOMIC_RELAXED))
			goto found;
	}
	pthread_mutex_lock(&store->create_lock);
	nw = store->n_writers;
	if (nw >= store->max_writers) {
		pthread_mutex_unlock(&store->create_lock);
		return -ENOSPC;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		pthread_mutex_unlock(&store->create_lock);
		return -ENOMEM;
	}
	w->in_use = 1;
	__atomic_store_n(&store->writers[nw], w, __ATOMIC_RELEASE);
	__atomic_store_n(&store->n_writers, nw + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&store->create_lock);
found:
	tls_writer = w;
	tls_uid = store->uid;
	return 0;
}

void metrics_thread_unregister(struct metrics_store *store)
{
	if (!tls_writer || tls_uid != store->uid)
		return;
	__atomic_store_n(&tls_writer->in_use, 0, __ATOMIC_RELEASE);
	tls_writer = NULL;
	tls_uid = 0;
}

static void writer_free(struct metrics_writer *w)
{
	void **chunk, **next;
	unsigned i;

	if (!w)
		return;
	for (i = 0; i < METRICS_MAX_PAGES; i++)
		free(w->pages[i]);
	for (chunk = w->chunks; chunk; chunk = next) {
		next = *chunk;
		free(chunk);
	}
	free(w);
}

/* ---- store ---- */

void metrics_store_set_series_limit(struct metrics_store *store, unsigned limit)
{
	unsigned i, j;

	pthread_mutex_lock(&store->create_lock);
	__atomic_store_n(&store->series_limit, limit ? limit : METRICS_DEFAULT_SERIES_LIMIT,
			 __ATOMIC_RELAXED);
	/* A label set folded under the old limit may have room now. */
	for (i = 0; i < M__COUNT; i++)
		for (j = 0; store->fam[i].folded && j < FOLD_MEMO; j++)
			__atomic_store_n(&store->fam[i].folded[j], 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&store->create_lock);
}

void metrics_store_set_http_enabled(struct metrics_store *store, bool enabled)
{
	__atomic_store_n(&store->http_enabled, enabled ? 1 : 0, __ATOMIC_RELAXED);
}

int metrics_collector_add(struct metrics_store *store, enum metric_endpoint endpoint,
			  metrics_collector_fn fn, void *ctx)
{
	struct metrics_collector *c;

	if (!fn || (endpoint != METRICS_ENDPOINT_APP && endpoint != METRICS_ENDPOINT_SYSTEM))
		return -EINVAL;
	pthread_mutex_lock(&store->render_lock);
	if (store->n_collectors >= METRICS_MAX_COLLECTORS) {
		pthread_mutex_unlock(&store->render_lock);
		return -ENOSPC;
	}
	c = &store->collectors[store->n_collectors++];
	c->endpoint = endpoint;
	c->fn = fn;
	c->ctx = ctx;
	pthread_mutex_unlock(&store->render_lock);
	return 0;
}

static void store_free_series(struct metrics_store *store)
{
	struct metric_series *s, *next;
	unsigned i;

	for (i = 0; i < M__COUNT; i++) {
		for (s = store->fam[i].head; s; s = next) {
			next = s->next;
			rcu_read_lock();
			cds_lfht_del(store->ht, &s->node);
			rcu_read_unlock();
			free(s->shared);
			free(s);
		}
		store->fam[i].head = store->fam[i].tail = NULL;
		free(store->fam[i].folded);
		store->fam[i].folded = NULL;
	}
}

struct metrics_store *metrics_store_new(const struct metrics_opts *opts)
{
	static const char *const endpoint_names[2] = { "metrics", "system_metrics" };
	struct metrics_store *store;
	unsigned i;
	int err;

	store = calloc(1, sizeof(*store));
	if (!store)
		return NULL;
	store->uid = __atomic_add_fetch(&store_uid_next, 1, __ATOMIC_RELAXED);
	if (!store->uid)
		store->uid = __atomic_add_fetch(&store_uid_next, 1, __ATOMIC_RELAXED);
	store->series_limit = opts && opts->series_limit ? opts->series_limit :
			      METRICS_DEFAULT_SERIES_LIMIT;
	store->max_writers = opts && opts->max_writers ? opts->max_writers :
			     METRICS_DEFAULT_MAX_WRITERS;
	store->http_enabled = opts && opts->http_enabled;
	pthread_mutex_init(&store->create_lock, NULL);
	pthread_mutex_init(&store->render_lock, NULL);

	for (i = 0; i < M__COUNT; i++) {
		struct metrics_family *f = &store->fam[i];

		f->def = &metric_defs[i];
		f->digits = metrics_scale_digits(f->def->scale);
		if (f->digits < 0 || f->def->n_labels > METRIC_MAX_LABELS ||
		    f->def->n_buckets > METRICS_MAX_BUCKETS) {
			err = EINVAL;
			goto err_free_store;
		}
		err = -metrics_family_init_expo(f);
		if (err)
			goto err_free_store;
	}

	store->writers = calloc(store->max_writers, sizeof(*store->writers));
	if (!store->writers) {
		err = ENOMEM;
		goto err_free_store;
	}
	store->ht = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				 NULL);
	if (!store->ht) {
		err = ENOMEM;
		goto err_free_writers;
	}
	/* Families without labels have their one series from the start, so
	 * they show as 0 before anything happens. */
	for (i = 0; i < M__COUNT; i++) {
		if (metric_defs[i].n_labels)
			continue;
		if (!metrics_series_get(store, i, NULL)) {
			err = ENOMEM;
			goto err_free_series;
		}
	}
	for (i = 0; i < 2; i++) {
		store->scrape_duration[i] = metrics_series_get(store, M_SYSTEM_SCRAPE_DURATION_SECONDS,
							       &endpoint_names[i]);
		if (!store->scrape_duration[i]) {
			err = ENOMEM;
			goto err_free_series;
		}
	}
	return store;

err_free_series:
	store_free_series(store);
	cds_lfht_destroy(store->ht, NULL);
err_free_writers:
	free(store->writers);
err_free_store:
	pthread_mutex_destroy(&store->render_lock);
	pthread_mutex_destroy(&store->create_lock);
	free(store);
	errno = err;
	return NULL;
}

void metrics_store_free(struct metrics_store **pstore)
{
	struct metrics_store *store = pstore ? *pstore : NULL;
	unsigned i;

	if (!store)
		return;
	if (tls_writer && tls_uid == store->uid) {
		tls_writer = NULL;
		tls_uid = 0;
	}
	store_free_series(store);
	cds_lfht_destroy(store->ht, NULL);
	for (i = 0; i < store->n_writers; i++)
		writer_free(store->writers[i]);
	free(store->writers);
	pthread_mutex_destroy(&store->render_lock);
	pthread_mutex_destroy(&store->create_lock);
	free(store);
	*pstore = NULL;
}

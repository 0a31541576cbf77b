/* The single-producer single-consumer record queue: see parse-int.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse-int.h"

#define CACHE_LINE 64

/* Record header.  len is the payload size, or SPSC_WRAP: the rest of the
 * ring up to its end is padding and the next record starts at offset 0. */
#define SPSC_WRAP UINT32_MAX
#define HDR_SIZE 8u

struct spsc_hdr {
	uint32_t len;
	uint32_t pad;
};

/* Positions (head, tail) are byte counts since creation, never wrapped;
 * their difference is the fill level and `pos & mask` the ring offset.
 *
 * Producer line: written by the producer.  head is read by the consumer
 * (acquire) and by depth readers; pushed by depth readers.
 * Consumer line: written by the consumer.  tail is read by the producer
 * (acquire) and by depth readers; popped by depth readers.
 * The rest is written at creation only. */
struct spsc {
	struct {
		uint64_t head;		/* committed end */
		uint64_t tail_cache;	/* the producer's copy of tail */
		uint64_t res_pos;	/* reservation: where its header goes */
		uint64_t res_end;	/* reservation: head after commit */
		uint32_t res_len;
		uint64_t pushed;	/* records committed */
	} __attribute__((aligned(CACHE_LINE))) p;
	struct {
		uint64_t tail;		/* released end */
		uint64_t head_cache;	/* the consumer's copy of head */
		uint64_t peek_end;	/* tail after releasing the peeked record */
		uint64_t popped;	/* records released */
	} __attribute__((aligned(CACHE_LINE))) c;
	struct {
		uint8_t *ring;
		uint64_t cap;
		uint64_t mask;
	} __attribute__((aligned(CACHE_LINE))) r;
};

static inline uint64_t align8(uint64_t v)
{
	return (v + 7) & ~(uint64_t)7;
}

struct spsc *spsc_new(size_t capacity)
{
	struct spsc *q;

	if (capacity < 64 || (capacity & (capacity - 1)) || capacity > (1ull << 40)) {
		errno = EINVAL;
		return NULL;
	}
	if (posix_memalign((void **)&q, CACHE_LINE, sizeof(*q))) {
		errno = ENOMEM;
		return NULL;
	}
	memset(q, 0, sizeof(*q));
	if (posix_memalign((void **)&q->r.ring, CACHE_LINE, capacity)) {
		free(q);
		errno = ENOMEM;
		return NULL;
	}
	q->r.cap = capacity;
	q->r.mask = capacity - 1;
	return q;
}

void spsc_free(struct spsc **q)
{
	if (!q || !*q)
		return;
	free((*q)->r.ring);
	free(*q);
	*q = NULL;
}

size_t spsc_max_record(const struct spsc *q)
{
	/* A record may need a wrap marker in front of it: at most half the
	 * ring, so that one always fits in an empty queue. */
	return q->r.cap / 2 - HDR_SIZE;
}

void *spsc_reserve(struct spsc *q, size_t size)
{
	uint64_t pos = q->p.head;
	uint64_t need, to_end, total, start;

	if (size > spsc_max_record(q))
		return NULL;
	need = HDR_SIZE + align8(size);
	to_end = q->r.cap - (pos & q->r.mask);
	total = to_end < need ? to_end + need : need;
	if (q->r.cap - (pos - q->p.tail_cache) < total) {
		q->p.tail_cache = __atomic_load_n(&q->c.tail, __ATOMIC_ACQUIRE);
		if (q->r.cap - (pos - q->p.tail_cache) < total)
			return NULL;
	}
	start = pos;
	if (to_end < need) {
		struct spsc_hdr *w = (struct spsc_hdr *)(q->r.ring + (pos & q->r.mask));

		w->len = SPSC_WRAP;
		start = pos + to_end;
	}
	q->p.res_pos = start;
	q->p.res_end = pos + total;
	q->p.res_len = (uint32_t)size;
	return q->r.ring + (start & q->r.mask) + HDR_SIZE;
}

void spsc_commit(struct spsc *q)
{
	struct spsc_hdr *h = (struct spsc_hdr *)(q->r.ring + (q->p.res_pos & q->r.mask));

	h->len = q->p.res_len;
	__atomic_store_n(&q->p.pushed, q->p.pushed + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&q->p.head, q->p.res_end, __ATOMIC_RELEASE);
}

void *spsc_peek(struct spsc *q, size_t *ret_size)
{
	uint64_t pos = q->c.tail;
	struct spsc_hdr *h;

	if (pos == q->c.head_cache) {
		q->c.head_cache = __atomic_load_n(&q->p.head, __ATOMIC_ACQUIRE);
		if (pos == q->c.head_cache)
			return NULL;
	}
	h = (struct spsc_hdr *)(q->r.ring + (pos & q->r.mask));
	if (h->len == SPSC_WRAP) {
		/* The producer committed the marker and the record after it
		 * together: the record is there. */
		pos += q->r.cap - (pos & q->r.mask);
		h = (struct spsc_hdr *)q->r.ring;
	}
	q->c.peek_end = pos + HDR_SIZE + align8(h->len);
	*ret_size = h->len;
	return (uint8_t *)h + HDR_SIZE;
}

void spsc_release(struct spsc *q)
{
	__atomic_store_n(&q->c.popped, q->c.popped + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&q->c.tail, q->c.peek_end, __ATOMIC_RELEASE);
}

size_t spsc_depth_bytes(const struct spsc *q)
{
	uint64_t tail = __atomic_load_n(&q->c.tail, __ATOMIC_ACQUIRE);
	uint64_t head = __atomic_load_n(&q->p.head, __ATOMIC_ACQUIRE);

	return head > tail ? (size_t)(head - tail) : 0;
}

size_t spsc_depth_records(const struct spsc *q)
{
	uint64_t popped = __atomic_load_n(&q->c.popped, __ATOMIC_ACQUIRE);
	uint64_t pushed = __atomic_load_n(&q->p.pushed, __ATOMIC_ACQUIRE);

	return pushed > popped ? (size_t)(pushed - popped) : 0;
}

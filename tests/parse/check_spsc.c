/* The SPSC record queue: wrap-around with varied sizes, a full queue, and
 * two threads moving ten million checksummed records. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "parse/parse-int.h"

#include "../check_run.h"

#define RECORDS 10000000u
#ifdef __SANITIZE_THREAD__
#undef RECORDS
#define RECORDS 1000000u
#endif

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7);
}

static int check_fill(const uint8_t *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != (uint8_t)(seed * 31 + i * 7))
			return 0;
	return 1;
}

START_TEST(test_bad_capacity)
{
	ck_assert_ptr_null(spsc_new(1000));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(spsc_new(32));
	spsc_free(NULL);
}
END_TEST

START_TEST(test_wrap_varied)
{
	struct spsc *q = spsc_new(1024);
	uint32_t pushed = 0, popped = 0, round;

	ck_assert_ptr_nonnull(q);
	ck_assert_uint_eq(spsc_max_record(q), 504);
	/* Keep 1 to 4 records in flight with sizes 0..300 so that every
	 * offset of the ring is a wrap point at some time. */
	for (round = 0; round < 20000; round++) {
		unsigned want = 1 + round % 4;

		while (pushed - popped < want) {
			size_t size = (pushed * 37u) % 301;
			uint8_t *p = spsc_reserve(q, size);

			if (!p)
				break;
			ck_assert_uint_eq((uintptr_t)p % 8, 0);
			fill(p, size, pushed);
			spsc_commit(q);
			pushed++;
		}
		ck_assert_uint_eq(spsc_depth_records(q), pushed - popped);
		ck_assert_uint_gt(spsc_depth_bytes(q), 0);
		while (popped < pushed) {
			size_t size = 1;
			uint8_t *p = spsc_peek(q, &size);

			ck_assert_ptr_nonnull(p);
			ck_assert_uint_eq(size, (popped * 37u) % 301);
			ck_assert(check_fill(p, size, popped));
			spsc_release(q);
			popped++;
			if (round % 3)
				break;	/* leave some behind */
		}
	}
	while (popped < pushed) {
		size_t size;

		ck_assert_ptr_nonnull(spsc_peek(q, &size));
		spsc_release(q);
		popped++;
	}
	ck_assert_ptr_null(spsc_peek(q, &(size_t){ 0 }));
	ck_assert_uint_eq(spsc_depth_records(q), 0);
	ck_assert_uint_eq(spsc_depth_bytes(q), 0);
	spsc_free(&q);
	ck_assert_ptr_null(q);
}
END_TEST

START_TEST(test_full)
{
	struct spsc *q = spsc_new(4096);
	unsigned n = 0;
	size_t size;
	uint8_t *p;

	ck_assert_ptr_nonnull(q);
	ck_assert_ptr_null(spsc_reserve(q, spsc_max_record(q) + 1));
	/* 100 bytes pad to 104, plus the 8-byte header: 112 per record */
	while ((p = spsc_reserve(q, 100))) {
		fill(p, 100, n);
		spsc_commit(q);
		n++;
	}
	ck_assert_uint_eq(n, 4096 / 112);
	ck_assert_uint_eq(spsc_depth_records(q), n);
	ck_assert_uint_eq(spsc_depth_bytes(q), n * 112);
	/* a failed reservation publishes nothing */
	ck_assert_ptr_null(spsc_reserve(q, 100));
	ck_assert_uint_eq(spsc_depth_records(q), n);
	ck_assert_uint_eq(spsc_depth_bytes(q), n * 112);
	p = spsc_peek(q, &size);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_fill(p, size, 0));
	spsc_release(q);
	/* 64 bytes before the end of the ring and 112 at its start: a
	 * 100-byte record takes both, a wrap marker and the record */
	p = spsc_reserve(q, 100);
	ck_assert_ptr_nonnull(p);
	fill(p, 100, n);
	spsc_commit(q);
	ck_assert_uint_eq(spsc_depth_bytes(q), 4096);
	ck_assert_ptr_null(spsc_reserve(q, 0));
	for (n = 1; (p = spsc_peek(q, &size)); n++) {
		ck_assert_uint_eq(size, 100);
		ck_assert(check_fill(p, size, n));
		spsc_release(q);
	}
	ck_assert_uint_eq(n, 4096 / 112 + 1);
	ck_assert_uint_eq(spsc_depth_bytes(q), 0);
	spsc_free(&q);
}
END_TEST

/* ---- two threads ---- */

struct stream {
	struct spsc *q;
	unsigned failures;
	uint64_t sum;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	return x ^ (x >> 29);
}

static void *producer_main(void *arg)
{
	struct stream *s = arg;
	uint32_t i;

	for (i = 0; i < RECORDS; i++) {
		size_t size = 16 + mix(i) % 200;
		uint64_t *p;

		while (!(p = spsc_reserve(s->q, size)))
			;	/* full: the consumer catches up */
		p[0] = i;
		fill((uint8_t *)(p + 2), size - 16, i);
		p[1] = mix(i) ^ size;
		spsc_commit(s->q);
	}
	return NULL;
}

static void *consumer_main(void *arg)
{
	struct stream *s = arg;
	uint32_t i;

	for (i = 0; i < RECORDS; i++) {
		const uint64_t *p;
		size_t size;

		while (!(p = spsc_peek(s->q, &size)))
			;
		if (p[0] != i || size != 16 + mix(i) % 200 || p[1] != (mix(i) ^ size) ||
		    !check_fill((const uint8_t *)(p + 2), size - 16, i))
			s->failures++;
		s->sum += p[1];
		spsc_release(s->q);
	}
	return NULL;
}

START_TEST(test_two_threads)
{
	struct stream s = { .q = spsc_new(1 << 16) };
	pthread_t prod, cons;
	uint64_t want = 0;
	uint32_t i;

	ck_assert_ptr_nonnull(s.q);
	ck_assert_int_eq(pthread_create(&cons, NULL, consumer_main, &s), 0);
	ck_assert_int_eq(pthread_create(&prod, NULL, producer_main, &s), 0);
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);
	for (i = 0; i < RECORDS; i++)
		want += mix(i) ^ (16 + mix(i) % 200);
	ck_assert_uint_eq(s.failures, 0);
	ck_assert_uint_eq(s.sum, want);
	ck_assert_uint_eq(spsc_depth_records(s.q), 0);
	spsc_free(&s.q);
}
END_TEST

static Suite *spsc_suite(void)
{
	Suite *s = suite_create("spsc");
	TCase *tc = tcase_create("queue");

	tcase_add_test(tc, test_bad_capacity);
	tcase_add_test(tc, test_wrap_varied);
	tcase_add_test(tc, test_full);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_two_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(spsc_suite());
}

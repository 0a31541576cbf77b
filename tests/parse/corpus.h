/* For the parse suites: the real handshake files of tests/parse/corpus/hello
 * (found through top_srcdir). */
#ifndef QTAP_TESTS_PARSE_CORPUS_H
#define QTAP_TESTS_PARSE_CORPUS_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The whole file, malloc'd (the caller frees it); its length in *ret_len. */
static inline uint8_t *load_hello(const char *name, size_t *ret_len)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	uint8_t *data;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/parse/corpus/hello/%s", top ? top : ".", name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s (is top_srcdir set?)", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	ck_assert(size > 0);
	rewind(f);
	data = malloc((size_t)size);
	ck_assert_ptr_nonnull(data);
	ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*ret_len = (size_t)size;
	return data;
}

#endif

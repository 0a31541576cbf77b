/* Check suite "detect": protocol detection from the first bytes of a
 * direction, on every prefix of each sample (so a decision never needs
 * bytes beyond the buffer and never comes too early). */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse.h"

#include "../check_run.h"
#include "corpus.h"

/* Detection on a copy of exactly len bytes, so that ASan sees any
 * overread. */
static enum l7_protocol detect(const void *data, size_t len)
{
	enum l7_protocol p;
	uint8_t *copy = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, data, len);
	p = detect_protocol(copy, len);
	free(copy);
	return p;
}

/* Every prefix shorter than `decided` is L7_UNKNOWN, every longer one up
 * to len is `want`. */
static void check_prefixes(const void *data, size_t len, size_t decided, enum l7_protocol want)
{
	size_t n;

	for (n = 0; n <= len; n++) {
		enum l7_protocol p = detect(data, n);

		if (n < decided)
			ck_assert_msg(p == L7_UNKNOWN, "%.*s: %zu bytes gave %d", (int)len,
				      (const char *)data, n, p);
		else
			ck_assert_msg(p == want, "%.*s: %zu bytes gave %d, want %d", (int)len,
				      (const char *)data, n, p, want);
	}
}

struct sample {
	const char *text;
	size_t decided;		/* bytes needed */
	enum l7_protocol want;
};

static const struct sample samples[] = {
	{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 5, L7_HTTP1 },
	{ "HEAD /x HTTP/1.0\r\n\r\n", 6, L7_HTTP1 },
	{ "POST /api HTTP/1.1\r\n", 6, L7_HTTP1 },
	{ "PUT /k HTTP/1.1\r\n", 5, L7_HTTP1 },
	{ "DELETE /k HTTP/1.1\r\n", 8, L7_HTTP1 },
	{ "CONNECT example.com:443 HTTP/1.1\r\n", 9, L7_HTTP1 },
	{ "OPTIONS * HTTP/1.1\r\n", 9, L7_HTTP1 },
	{ "TRACE / HTTP/1.1\r\n", 7, L7_HTTP1 },
	{ "PATCH /k HTTP/1.1\r\n", 7, L7_HTTP1 },
	{ "GET http://example.com/ HTTP/1.1\r\n", 5, L7_HTTP1 },
	/* other methods need the version */
	{ "PROPFIND /dav/ HTTP/1.1\r\n", 23, L7_HTTP1 },
	{ "M-SEARCH * HTTP/1.1\r\n", 19, L7_HTTP1 },
	{ "PURGE /cache/x HTTP/1.0\r\n", 23, L7_HTTP1 },
	{ "PRI * HTTP/1.1\r\n", 14, L7_HTTP1 },
	/* responses */
	{ "HTTP/1.1 200 OK\r\n", 12, L7_HTTP1 },
	{ "HTTP/1.0 404 Not Found\r\n", 12, L7_HTTP1 },
	{ "HTTP/1.1 204\r\n", 12, L7_HTTP1 },
	/* the HTTP/2 client preface, and a frame after it */
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", 24, L7_HTTP2 },
	/* not HTTP, decided on the first impossible byte */
	{ "EHLO mail.example.com\r\n", 22, L7_OTHER },
	{ "USER anonymous\r\n", 15, L7_OTHER },
	{ "SSH-2.0-OpenSSH_9.2\r\n", 5, L7_OTHER },
	{ "get / http/1.1\r\n", 1, L7_OTHER },
	{ "GET\t/ HTTP/1.1\r\n", 4, L7_OTHER },
	{ "GET  / HTTP/1.1\r\n", 5, L7_OTHER },
	{ "HTTP/2 200\r\n", 6, L7_OTHER },
	{ "HTTP/1.1 2x0 OK\r\n", 11, L7_OTHER },
	{ "HTTP/1.2 200 OK\r\n", 8, L7_OTHER },
	{ "PRI * HTTP/3.0\r\n\r\n", 12, L7_OTHER },
	{ "*1\r\n$4\r\nPING\r\n", 1, L7_OTHER },
	{ "{\"jsonrpc\":\"2.0\"}", 1, L7_OTHER },
	{ "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n", 25, L7_OTHER },
};

START_TEST(test_samples)
{
	const struct sample *s = &samples[_i];

	check_prefixes(s->text, strlen(s->text), s->decided, s->want);
}
END_TEST

START_TEST(test_h2_server_settings)
{
	static const uint8_t settings[] = {
		0x00, 0x00, 0x12, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x03, 0x00, 0x00, 0x00, 0x64, 0x00, 0x04, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0xff, 0xff, 0xff,
	};
	static const uint8_t empty[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	uint8_t bad[sizeof(settings)];

	check_prefixes(settings, sizeof(settings), 9, L7_HTTP2);
	check_prefixes(empty, sizeof(empty), 9, L7_HTTP2);
	/* SETTINGS ACK, a stream id, a length not a multiple of 6 */
	memcpy(bad, settings, sizeof(bad));
	bad[4] = 1;
	check_prefixes(bad, sizeof(bad), 5, L7_OTHER);
	memcpy(bad, settings, sizeof(bad));
	bad[8] = 1;
	check_prefixes(bad, sizeof(bad), 9, L7_OTHER);
	memcpy(bad, settings, sizeof(bad));
	bad[2] = 0x13;
	check_prefixes(bad, sizeof(bad), 3, L7_OTHER);
}
END_TEST

static const char *const tls_files[] = {
	"ch-tls13-sni-h2.bin", "ch-tls12-nosni.bin", "sh-tls13-nosni.bin",
	"sh-tls12-sni-http11.bin", "sh-hrr.bin",
};

START_TEST(test_tls)
{
	uint8_t *data;
	size_t len;

	data = load_hello(tls_files[_i], &len);
	check_prefixes(data, len, 6, L7_TLS);
	free(data);
}
END_TEST

/* A hello whose first record holds 1 to 3 bytes of it (RFC 8446 5.1: a
 * message over several records): TLS at its sixth byte, the message's
 * type. */
START_TEST(test_tls_split_hello)
{
	uint8_t rec[] = { 0x16, 0x03, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x16, 0x03, 0x01 };
	uint8_t n;

	for (n = 1; n <= 3; n++) {
		rec[4] = n;
		check_prefixes(rec, sizeof(rec), 6, L7_TLS);
	}
}
END_TEST

START_TEST(test_tls_not)
{
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
	static const uint8_t finished[] = { 0x16, 0x03, 0x03, 0x00, 0x05, 0x14, 0, 0, 1, 0 };
	static const uint8_t v4[] = { 0x16, 0x04, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0 };
	static const uint8_t minor5[] = { 0x16, 0x03, 0x05, 0x00, 0x05, 0x01, 0, 0, 1, 0 };
	static const uint8_t huge[] = { 0x16, 0x03, 0x01, 0x50, 0x00, 0x01, 0, 0, 1, 0 };
	static const uint8_t empty[] = { 0x16, 0x03, 0x01, 0x00, 0x00, 0x01, 0, 0 };

	check_prefixes(alert, sizeof(alert), 1, L7_OTHER);
	check_prefixes(finished, sizeof(finished), 6, L7_OTHER);
	check_prefixes(v4, sizeof(v4), 2, L7_OTHER);
	check_prefixes(minor5, sizeof(minor5), 3, L7_OTHER);
	check_prefixes(huge, sizeof(huge), 5, L7_OTHER);
	check_prefixes(empty, sizeof(empty), 5, L7_OTHER);
}
END_TEST

/* Binary junk: never crashes, never reads past the end, and a decision
 * once taken holds for the longer prefixes. */
START_TEST(test_junk)
{
	static const uint8_t zeros[64];
	uint8_t buf[64];
	unsigned seed = 12345, round, i;

	check_prefixes(zeros, sizeof(zeros), 4, L7_OTHER);
	for (round = 0; round < 2000; round++) {
		enum l7_protocol decided = L7_UNKNOWN, p;

		for (i = 0; i < sizeof(buf); i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (uint8_t)(seed >> 16);
		}
		for (i = 0; i <= sizeof(buf); i++) {
			p = detect(buf, i);
			ck_assert(p <= L7_OTHER);
			if (decided != L7_UNKNOWN)
				ck_assert_int_eq(p, decided);
			decided = p;
		}
		/* random bytes are none of the protocols */
		ck_assert_int_eq(decided, L7_OTHER);
	}
}
END_TEST

/* The PROXY protocol header on a copy of exactly len bytes. */
static long proxy(const void *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	long h;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, data, len);
	h = detect_proxy_header(copy, len);
	free(copy);
	return h;
}

/* Its length once the bytes that give it are there (every shorter prefix
 * needs more), or 0 for what is none. */
START_TEST(test_proxy_header)
{
	static const char v1[] = "PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\nGET / HTTP/1.1\r\n";
	static const uint8_t v2[] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T',
				      '\n', 0x21, 0x11, 0x01, 0x02, 0x16, 0x03 };
	const size_t v1_len = sizeof("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n") - 1;
	uint8_t longest[200], bad[sizeof(v2)];
	size_t n;

	for (n = 0; n <= sizeof(v1) - 1; n++)
		ck_assert_int_eq(proxy(v1, n), n < v1_len ? -1 : (long)v1_len);
	for (n = 0; n <= sizeof(v2); n++)
		ck_assert_int_eq(proxy(v2, n), n < 16 ? -1 : 16 + 0x102);
	/* not one */
	ck_assert_int_eq(proxy("GET / HTTP/1.1\r\n", 16), 0);
	ck_assert_int_eq(proxy("PROPFIND / HTTP/1.1\r\n", 21), 0);
	ck_assert_int_eq(proxy("PRI * HTTP/2.0\r\n", 16), 0);
	ck_assert_int_eq(proxy("\r\n\r\n\r\n", 6), 0);
	memcpy(bad, v2, sizeof(v2));
	bad[12] = 0x11;		/* version 1 in the binary header */
	ck_assert_int_eq(proxy(bad, sizeof(bad)), 0);
	/* a version 1 line is 107 bytes at most */
	memset(longest, 'x', sizeof(longest));
	memcpy(longest, "PROXY ", 6);
	ck_assert_int_eq(proxy(longest, 106), -1);
	ck_assert_int_eq(proxy(longest, 107), 0);
	memcpy(longest + 105, "\r\n", 2);
	ck_assert_int_eq(proxy(longest, 107), 107);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(l7_protocol_name(L7_HTTP1), "http1");
	ck_assert_str_eq(l7_protocol_name(L7_HTTP2), "http2");
	ck_assert_str_eq(l7_protocol_name(L7_TLS), "tls");
	ck_assert_str_eq(l7_protocol_name(L7_OTHER), "other");
	ck_assert_str_eq(l7_protocol_name(L7_UNKNOWN), "other");
}
END_TEST

static Suite *detect_suite(void)
{
	Suite *s = suite_create("detect");
	TCase *tc = tcase_create("detect");

	tcase_add_loop_test(tc, test_samples, 0, sizeof(samples) / sizeof(samples[0]));
	tcase_add_test(tc, test_h2_server_settings);
	tcase_add_loop_test(tc, test_tls, 0, sizeof(tls_files) / sizeof(tls_files[0]));
	tcase_add_test(tc, test_tls_not);
	tcase_add_test(tc, test_tls_split_hello);
	tcase_add_test(tc, test_junk);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_proxy_header);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(detect_suite());
}

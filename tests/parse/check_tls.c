/* Check suite "tls": ClientHello and ServerHello reassembly and parsing,
 * on real handshakes (tests/parse/corpus/hello, made by gen-hellos.py)
 * and on hellos built here for the cases OpenSSL does not produce. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse.h"

#include "../check_run.h"
#include "corpus.h"

struct hello_file {
	const char *name;
	bool from_client;
	const char *sni;		/* client */
	unsigned n_offered;		/* client */
	uint16_t offered0;		/* client */
	uint16_t version;		/* server */
	const char *alpn;		/* server */
};

/* A TLS 1.3 server names the protocol in its EncryptedExtensions, so
 * only TLS 1.2 shows ALPN on the wire. */
static const struct hello_file hello_files[] = {
	{ "ch-tls13-sni-h2.bin", true, "www.example.com", 2, 0x0304, 0, NULL },
	{ "ch-tls13-nosni.bin", true, "", 2, 0x0304, 0, NULL },
	{ "ch-tls12-sni-http11.bin", true, "api.example.org", 1, 0x0303, 0, NULL },
	{ "ch-tls12-nosni.bin", true, "", 1, 0x0303, 0, NULL },
	{ "ch-hrr.bin", true, "retry.example.net", 2, 0x0304, 0, NULL },
	{ "sh-tls13-sni-h2.bin", false, NULL, 0, 0, 0x0304, "" },
	{ "sh-tls13-nosni.bin", false, NULL, 0, 0, 0x0304, "" },
	{ "sh-tls12-sni-http11.bin", false, NULL, 0, 0, 0x0303, "http/1.1" },
	{ "sh-tls12-nosni.bin", false, NULL, 0, 0, 0x0303, "" },
	{ "sh-hrr.bin", false, NULL, 0, 0, 0x0304, "" },
};

#define N_FILES (sizeof(hello_files) / sizeof(hello_files[0]))

/* Feeds a copy of exactly len bytes, so that ASan sees any overread. */
static enum tls_feed_result feed(struct tls_stream *s, const uint8_t *data, size_t len,
				 bool from_client, struct tls_hello_info *info)
{
	enum tls_feed_result r;
	uint8_t *copy = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, data, len);
	r = tls_stream_feed(s, copy, len, from_client, info);
	free(copy);
	return r;
}

static void check_info(const struct hello_file *f, const struct tls_hello_info *info)
{
	if (f->from_client) {
		ck_assert(info->client_hello);
		ck_assert(!info->server_hello);
		ck_assert_str_eq(info->sni, f->sni);
		ck_assert_uint_eq(info->n_offered, f->n_offered);
		ck_assert_uint_eq(info->offered[0], f->offered0);
		if (f->n_offered == 2)
			ck_assert_uint_eq(info->offered[1], 0x0303);
		ck_assert_uint_eq(info->version, 0);
	} else {
		ck_assert(info->server_hello);
		ck_assert(!info->client_hello);
		ck_assert_uint_eq(info->version, f->version);
		ck_assert_str_eq(info->alpn, f->alpn);
		ck_assert_str_eq(info->sni, "");
		ck_assert_uint_eq(info->n_offered, 0);
	}
}

/* The whole first flight in one feed. */
START_TEST(test_file_whole)
{
	const struct hello_file *f = &hello_files[_i];
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	uint8_t *data;
	size_t len;

	data = load_hello(f->name, &len);
	ck_assert_int_eq(feed(&s, data, len, f->from_client, &info), TLS_FEED_DONE);
	check_info(f, &info);
	ck_assert(s.done);
	ck_assert_ptr_null(s.buf);
	/* done: further bytes are not looked at */
	ck_assert_int_eq(feed(&s, (const uint8_t *)"junk", 4, f->from_client, &info),
			 TLS_FEED_DONE);
	check_info(f, &info);
	tls_stream_release(&s);
	ck_assert(!s.done);
	free(data);
}
END_TEST

/* One byte per feed: MORE until the byte that completes the hello. */
START_TEST(test_file_bytewise)
{
	const struct hello_file *f = &hello_files[_i];
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	enum tls_feed_result r = TLS_FEED_MORE;
	size_t len, i;
	uint8_t *data;

	data = load_hello(f->name, &len);
	for (i = 0; i < len; i++) {
		r = feed(&s, data + i, 1, f->from_client, &info);
		if (r != TLS_FEED_MORE)
			break;
		ck_assert(!info.client_hello && !info.server_hello);
		ck_assert(s.len <= s.cap && s.cap <= 16384);
	}
	ck_assert_int_eq(r, TLS_FEED_DONE);
	check_info(f, &info);
	ck_assert_ptr_null(s.buf);
	if (strcmp(f->name, "sh-hrr.bin")) {
		/* the first record ends exactly with the hello */
		ck_assert_uint_eq(i + 1, 5 + ((size_t)data[3] << 8 | data[4]));
	}
	tls_stream_release(&s);
	free(data);
}
END_TEST

/* Two feeds, cut at every point. */
START_TEST(test_file_split)
{
	const struct hello_file *f = &hello_files[_i];
	size_t len, cut;
	uint8_t *data;

	data = load_hello(f->name, &len);
	for (cut = 0; cut <= len; cut++) {
		struct tls_stream s = { 0 };
		struct tls_hello_info info = { 0 };
		enum tls_feed_result r;

		r = feed(&s, data, cut, f->from_client, &info);
		if (r == TLS_FEED_MORE)
			r = feed(&s, data + cut, len - cut, f->from_client, &info);
		ck_assert_msg(r == TLS_FEED_DONE, "cut at %zu", cut);
		check_info(f, &info);
		ck_assert_ptr_null(s.buf);
		tls_stream_release(&s);
	}
	free(data);
}
END_TEST

/* Every proper prefix of the hello: never DONE, nothing parsed. */
START_TEST(test_file_truncated)
{
	const struct hello_file *f = &hello_files[_i];
	size_t len, end, cut;
	uint8_t *data;

	data = load_hello(f->name, &len);
	end = 5 + ((size_t)data[3] << 8 | data[4]);
	if (!strcmp(f->name, "sh-hrr.bin")) {
		/* HelloRetryRequest, ChangeCipherSpec, then the ServerHello */
		end += 6;
		end += 5 + ((size_t)data[end + 3] << 8 | data[end + 4]);
	}
	for (cut = 0; cut < end && cut < len; cut++) {
		struct tls_stream s = { 0 };
		struct tls_hello_info info = { 0 };

		ck_assert_int_eq(feed(&s, data, cut, f->from_client, &info), TLS_FEED_MORE);
		ck_assert(!info.client_hello && !info.server_hello);
		tls_stream_release(&s);
		ck_assert_ptr_null(s.buf);
	}
	free(data);
}
END_TEST

/* A hello from the wrong side is malformed. */
START_TEST(test_file_wrong_direction)
{
	const struct hello_file *f = &hello_files[_i];
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	uint8_t *data;
	size_t len;

	data = load_hello(f->name, &len);
	ck_assert_int_eq(feed(&s, data, len, !f->from_client, &info), TLS_FEED_ERROR);
	ck_assert(!info.client_hello && !info.server_hello);
	ck_assert(s.done);
	ck_assert_ptr_null(s.buf);
	/* an abandoned stream stays abandoned */
	ck_assert_int_eq(feed(&s, data, len, !f->from_client, &info), TLS_FEED_ERROR);
	free(data);
}
END_TEST

/* --- hellos built here ---------------------------------------------------- */

struct msg {
	uint8_t b[20000];
	size_t len;
};

static void put8(struct msg *m, unsigned v)
{
	ck_assert(m->len < sizeof(m->b));
	m->b[m->len++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void put_bytes(struct msg *m, const void *p, size_t n)
{
	ck_assert(m->len + n <= sizeof(m->b));
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

/* Writes the 16-bit length of everything since `at`, 2 bytes before it. */
static void fix16(struct msg *m, size_t at)
{
	m->b[at - 2] = (uint8_t)((m->len - at) >> 8);
	m->b[at - 1] = (uint8_t)(m->len - at);
}

/* A ClientHello handshake message: SNI when sni, supported_versions when
 * n_versions, a padding extension of pad bytes. */
/* Set: build_client_hello() adds GREASE the way browsers send it (RFC
 * 8701): a GREASE cipher suite first, an empty GREASE extension before the
 * server name and one with a byte of data last. */
static bool hello_grease;

static void build_client_hello(struct msg *m, const char *sni, const uint16_t *versions,
			       unsigned n_versions, size_t pad)
{
	size_t body, exts, ext, list;
	unsigned i;

	m->len = 0;
	put8(m, 1);
	put8(m, 0);
	put16(m, 0);
	body = m->len;
	put16(m, 0x0303);
	for (i = 0; i < 32; i++)
		put8(m, i);
	put8(m, 0);			/* session id */
	put16(m, hello_grease ? 6 : 4);	/* cipher suites */
	if (hello_grease)
		put16(m, 0x2a2a);
	put16(m, 0x1301);
	put16(m, 0xc02f);
	put8(m, 1);			/* compression */
	put8(m, 0);
	put16(m, 0);
	exts = m->len;
	if (hello_grease) {
		put16(m, 0x0a0a);
		put16(m, 0);
	}
	if (sni) {
		put16(m, 0);
		put16(m, 0);
		ext = m->len;
		put16(m, 0);
		list = m->len;
		put8(m, 0);
		put16(m, (unsigned)strlen(sni));
		put_bytes(m, sni, strlen(sni));
		fix16(m, list);
		fix16(m, ext);
	}
	if (n_versions) {
		put16(m, 43);
		put16(m, 1 + 2 * n_versions);
		put8(m, 2 * n_versions);
		for (i = 0; i < n_versions; i++)
			put16(m, versions[i]);
	}
	if (hello_grease) {
		put16(m, 0x4a4a);
		put16(m, 1);
		put8(m, 0);
	}
	if (pad) {
		put16(m, 21);
		put16(m, (unsigned)pad);
		for (i = 0; i < pad; i++)
			put8(m, 0);
	}
	fix16(m, exts);
	m->b[body - 3] = (uint8_t)((m->len - body) >> 16);
	m->b[body - 2] = (uint8_t)((m->len - body) >> 8);
	m->b[body - 1] = (uint8_t)(m->len - body);
}

/* Frames a handshake message into records; cuts are the payload offsets
 * at which a new record starts (ascending, within the message). */
static void frame(struct msg *out, const struct msg *hs, const size_t *cuts, unsigned n_cuts)
{
	size_t start = 0, end;
	unsigned i;

	out->len = 0;
	for (i = 0; i <= n_cuts; i++) {
		end = i < n_cuts ? cuts[i] : hs->len;
		put8(out, 0x16);
		put16(out, 0x0301);
		put16(out, (unsigned)(end - start));
		put_bytes(out, hs->b + start, end - start);
		start = end;
	}
}

static enum tls_feed_result feed_client(const struct msg *m, struct tls_hello_info *info)
{
	struct tls_stream s = { 0 };
	enum tls_feed_result r;

	r = feed(&s, m->b, m->len, true, info);
	ck_assert(r != TLS_FEED_MORE || s.buf != NULL || m->len == 0);
	tls_stream_release(&s);
	return r;
}

START_TEST(test_two_records)
{
	static const uint16_t versions[] = { 0x0304, 0x0303 };
	static struct msg hs, rec;
	struct tls_hello_info info;
	size_t cut;

	build_client_hello(&hs, "Two.Records.Example", versions, 2, 0);
	for (cut = 1; cut < hs.len; cut++) {
		memset(&info, 0, sizeof(info));
		frame(&rec, &hs, &cut, 1);
		ck_assert_msg(feed_client(&rec, &info) == TLS_FEED_DONE, "cut %zu", cut);
		ck_assert_str_eq(info.sni, "two.records.example");
		ck_assert_uint_eq(info.n_offered, 2);
	}
}
END_TEST

/* A record per byte, the worst a sender can do, fed a byte at a time. */
START_TEST(test_tiny_records)
{
	static struct msg hs, rec;
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	enum tls_feed_result r = TLS_FEED_MORE;
	size_t cuts[400], i;

	build_client_hello(&hs, "tiny.example", NULL, 0, 0);
	ck_assert(hs.len <= 400);
	for (i = 0; i + 1 < hs.len; i++)
		cuts[i] = i + 1;
	frame(&rec, &hs, cuts, (unsigned)(hs.len - 1));
	for (i = 0; i < rec.len && r == TLS_FEED_MORE; i++)
		r = feed(&s, rec.b + i, 1, true, &info);
	ck_assert_int_eq(r, TLS_FEED_DONE);
	ck_assert_uint_eq(i, rec.len);
	ck_assert_str_eq(info.sni, "tiny.example");
	ck_assert_uint_eq(info.n_offered, 1);
	ck_assert_uint_eq(info.offered[0], 0x0303);
	tls_stream_release(&s);
}
END_TEST

START_TEST(test_grease)
{
	static const uint16_t versions[] = { 0x3a3a, 0x0304, 0xfafa, 0x0303, 0x0a0a };
	static const uint16_t only_grease[] = { 0x1a1a };
	static struct msg hs, rec;
	struct tls_hello_info info = { 0 };

	build_client_hello(&hs, "grease.example", versions, 5, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_uint_eq(info.n_offered, 2);
	ck_assert_uint_eq(info.offered[0], 0x0304);
	ck_assert_uint_eq(info.offered[1], 0x0303);

	/* nothing but GREASE: the legacy version */
	memset(&info, 0, sizeof(info));
	build_client_hello(&hs, NULL, only_grease, 1, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_uint_eq(info.n_offered, 1);
	ck_assert_uint_eq(info.offered[0], 0x0303);

	/* a GREASE cipher suite and GREASE extensions, empty before the
	 * server name and with data after it, as browsers send them */
	memset(&info, 0, sizeof(info));
	hello_grease = true;
	build_client_hello(&hs, "grease.example", versions, 5, 0);
	hello_grease = false;
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_str_eq(info.sni, "grease.example");
	ck_assert_uint_eq(info.n_offered, 2);
	ck_assert_uint_eq(info.offered[0], 0x0304);
	ck_assert_uint_eq(info.offered[1], 0x0303);
}
END_TEST

START_TEST(test_many_versions)
{
	uint16_t versions[40];
	static struct msg hs, rec;
	struct tls_hello_info info = { 0 };
	unsigned i;

	for (i = 0; i < 40; i++)
		versions[i] = (uint16_t)(0x7f00 + i);
	build_client_hello(&hs, NULL, versions, 40, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_uint_eq(info.n_offered, TLS_VERSIONS_MAX);
	ck_assert_uint_eq(info.offered[TLS_VERSIONS_MAX - 1], 0x7f00 + TLS_VERSIONS_MAX - 1);
}
END_TEST

START_TEST(test_sni_long_and_unprintable)
{
	static const char *const bad[] = { "a\"b.example", "x{y}.example", "host:443",
					   "/etc/passwd", "a b", "q@example.com" };
	static struct msg hs, rec;
	struct tls_hello_info info = { 0 };
	char name[400];
	size_t i;

	memset(name, 'A', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	build_client_hello(&hs, name, NULL, 0, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_uint_eq(strlen(info.sni), TLS_SNI_MAX - 1);
	ck_assert_int_eq(info.sni[0], 'a');

	memset(&info, 0, sizeof(info));
	build_client_hello(&hs, "bad\x01name.example", NULL, 0, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_str_eq(info.sni, "");

	/* printable, but not a host name's: no SNI either */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&info, 0, sizeof(info));
		build_client_hello(&hs, bad[i], NULL, 0, 0);
		frame(&rec, &hs, NULL, 0);
		ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
		ck_assert_str_eq(info.sni, "");
	}
	memset(&info, 0, sizeof(info));
	build_client_hello(&hs, "Under_Score-1.xn--bcher-kva.Example", NULL, 0, 0);
	frame(&rec, &hs, NULL, 0);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_str_eq(info.sni, "under_score-1.xn--bcher-kva.example");
}
END_TEST

/* A large hello over several records is accepted up to 16 KiB. */
START_TEST(test_large_hello)
{
	static struct msg hs, rec;
	struct tls_hello_info info = { 0 };
	size_t cuts[2] = { 3, 8000 };

	build_client_hello(&hs, "big.example", NULL, 0, 16384 - 4 - 100);
	ck_assert_uint_le(hs.len, 16384);
	frame(&rec, &hs, cuts, 2);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_DONE);
	ck_assert_str_eq(info.sni, "big.example");

	memset(&info, 0, sizeof(info));
	build_client_hello(&hs, "big.example", NULL, 0, 16384);
	cuts[1] = 16000;
	frame(&rec, &hs, cuts, 2);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	ck_assert(!info.client_hello);
	/* the same hello in one record (of a length the record layer lets
	 * through) gets the same answer whole as in parts */
	frame(&rec, &hs, NULL, 0);
	ck_assert_uint_le(rec.len - 5, 16384 + 256);
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	ck_assert(!info.client_hello);
}
END_TEST

/* Lengths that do not add up, at every level. */
START_TEST(test_garbage_lengths)
{
	static struct msg hs, rec;
	struct tls_hello_info info = { 0 };
	size_t i;

	build_client_hello(&hs, "len.example", NULL, 0, 0);
	frame(&rec, &hs, NULL, 0);

	/* record length 0, and past the largest record */
	rec.b[3] = 0;
	rec.b[4] = 0;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	rec.b[3] = 0xff;
	rec.b[4] = 0xff;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	/* a handshake message of 16 MiB */
	frame(&rec, &hs, NULL, 0);
	rec.b[6] = 0xff;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	/* a handshake message longer than the record, nothing follows */
	frame(&rec, &hs, NULL, 0);
	rec.b[8]++;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_MORE);
	/* session id longer than 32 */
	frame(&rec, &hs, NULL, 0);
	rec.b[5 + 4 + 2 + 32] = 33;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	/* a record version that is not 3.x */
	frame(&rec, &hs, NULL, 0);
	rec.b[1] = 2;
	ck_assert_int_eq(feed_client(&rec, &info), TLS_FEED_ERROR);
	ck_assert(!info.client_hello);

	/* every byte of the body set to 0xff, then to 0: no crash, and a
	 * parse, when there is one, is of a well-formed result */
	for (i = 5 + 4; i < rec.len; i++) {
		uint8_t *p = &rec.b[i], saved = *p;
		unsigned v;

		for (v = 0; v < 2; v++) {
			*p = v ? 0xff : 0;
			memset(&info, 0, sizeof(info));
			if (feed_client(&rec, &info) == TLS_FEED_DONE) {
				ck_assert(info.client_hello);
				ck_assert_uint_le(strlen(info.sni), TLS_SNI_MAX - 1);
				ck_assert_uint_ge(info.n_offered, 1);
			}
		}
		*p = saved;
	}
}
END_TEST

START_TEST(test_hrr_then_server_hello)
{
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	size_t len, hrr_end;
	uint8_t *data;

	data = load_hello("sh-hrr.bin", &len);
	hrr_end = 5 + ((size_t)data[3] << 8 | data[4]);
	/* the HelloRetryRequest alone: not the ServerHello */
	ck_assert_int_eq(feed(&s, data, hrr_end, false, &info), TLS_FEED_MORE);
	ck_assert(!info.server_hello);
	ck_assert_uint_eq(info.version, 0);
	/* the ChangeCipherSpec after it is skipped, the ServerHello parsed */
	ck_assert_int_eq(feed(&s, data + hrr_end, 6, false, &info), TLS_FEED_MORE);
	ck_assert_int_eq(feed(&s, data + hrr_end + 6, len - hrr_end - 6, false, &info),
			 TLS_FEED_DONE);
	ck_assert(info.server_hello);
	ck_assert_uint_eq(info.version, 0x0304);
	ck_assert_str_eq(info.alpn, "");
	tls_stream_release(&s);

	/* a second HelloRetryRequest is a protocol error */
	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(feed(&s, data, hrr_end, false, &info), TLS_FEED_MORE);
	ck_assert_int_eq(feed(&s, data, hrr_end, false, &info), TLS_FEED_ERROR);
	ck_assert_ptr_null(s.buf);
	tls_stream_release(&s);

	/* a ChangeCipherSpec before any HelloRetryRequest is not a hello */
	memset(&info, 0, sizeof(info));
	ck_assert_int_eq(feed(&s, data + hrr_end, 6, false, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	free(data);
}
END_TEST

START_TEST(test_not_tls)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
	static const uint8_t appdata[] = { 0x17, 0x03, 0x03, 0x00, 0x01, 0x00 };
	static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x00, 0x02 };
	static const uint8_t v4[] = { 0x16, 0x04 };
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };

	ck_assert_int_eq(feed(&s, (const uint8_t *)http, strlen(http), true, &info),
			 TLS_FEED_ERROR);
	ck_assert(s.done);
	ck_assert_ptr_null(s.buf);
	ck_assert_int_eq(feed(&s, alert, sizeof(alert), true, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	ck_assert_int_eq(feed(&s, alert, sizeof(alert), false, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	ck_assert_int_eq(feed(&s, appdata, sizeof(appdata), true, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	ck_assert_int_eq(feed(&s, sslv2, sizeof(sslv2), true, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	ck_assert_int_eq(feed(&s, v4, 1, true, &info), TLS_FEED_MORE);
	ck_assert_int_eq(feed(&s, v4 + 1, 1, true, &info), TLS_FEED_ERROR);
	tls_stream_release(&s);
	/* the first handshake message must be the hello */
	{
		static const uint8_t finished[] = { 0x16, 0x03, 0x03, 0x00, 0x05,
						    0x14, 0x00, 0x00, 0x01, 0x00 };

		ck_assert_int_eq(feed(&s, finished, sizeof(finished), false, &info),
				 TLS_FEED_ERROR);
		tls_stream_release(&s);
		ck_assert_int_eq(feed(&s, finished, 5, false, &info), TLS_FEED_MORE);
		ck_assert_int_eq(feed(&s, finished + 5, 5, false, &info), TLS_FEED_ERROR);
		tls_stream_release(&s);
	}
	ck_assert(!info.client_hello && !info.server_hello);
	/* an empty feed decides nothing */
	ck_assert_int_eq(tls_stream_feed(&s, NULL, 0, true, &info), TLS_FEED_MORE);
	ck_assert_ptr_null(s.buf);
}
END_TEST

/* Output is untouched until a hello parses; each direction writes its own
 * fields only. */
START_TEST(test_info_untouched)
{
	static struct msg hs, rec;
	struct tls_stream c = { 0 }, sv = { 0 };
	struct tls_hello_info info, before;
	uint8_t *data;
	size_t len;

	memset(&info, 0x5a, sizeof(info));
	info.sni[TLS_SNI_MAX - 1] = '\0';
	info.alpn[TLS_ALPN_MAX - 1] = '\0';
	info.client_hello = false;
	info.server_hello = false;
	before = info;
	build_client_hello(&hs, "x.example", NULL, 0, 0);
	frame(&rec, &hs, NULL, 0);
	rec.b[5 + 4 + 2 + 32] = 40;
	ck_assert_int_eq(feed(&c, rec.b, rec.len, true, &info), TLS_FEED_ERROR);
	ck_assert_int_eq(memcmp(&info, &before, sizeof(info)), 0);

	data = load_hello("sh-tls13-sni-h2.bin", &len);
	ck_assert_int_eq(feed(&sv, data, len, false, &info), TLS_FEED_DONE);
	ck_assert_uint_eq(info.version, 0x0304);
	ck_assert_int_eq(memcmp(info.sni, before.sni, sizeof(info.sni)), 0);
	ck_assert_uint_eq(info.n_offered, before.n_offered);
	free(data);
	tls_stream_release(&c);
	tls_stream_release(&sv);
}
END_TEST

/* Release in the middle of a hello frees the buffer; the stream starts
 * over. */
START_TEST(test_release_midway)
{
	struct tls_stream s = { 0 };
	struct tls_hello_info info = { 0 };
	uint8_t *data;
	size_t len;

	data = load_hello("ch-tls13-sni-h2.bin", &len);
	ck_assert_int_eq(feed(&s, data, 100, true, &info), TLS_FEED_MORE);
	ck_assert_ptr_nonnull(s.buf);
	tls_stream_release(&s);
	ck_assert_ptr_null(s.buf);
	ck_assert_uint_eq(s.len, 0);
	ck_assert(!s.done);
	ck_assert_int_eq(feed(&s, data, len, true, &info), TLS_FEED_DONE);
	ck_assert_str_eq(info.sni, "www.example.com");
	tls_stream_release(&s);
	tls_stream_release(&s);
	free(data);
}
END_TEST

START_TEST(test_version_name)
{
	ck_assert_str_eq(tls_version_name(0x0300), "SSLv3");
	ck_assert_str_eq(tls_version_name(0x0301), "TLSv1.0");
	ck_assert_str_eq(tls_version_name(0x0302), "TLSv1.1");
	ck_assert_str_eq(tls_version_name(0x0303), "TLSv1.2");
	ck_assert_str_eq(tls_version_name(0x0304), "TLSv1.3");
	ck_assert_str_eq(tls_version_name(0), "unknown");
	ck_assert_str_eq(tls_version_name(0x7f1c), "unknown");
	ck_assert_str_eq(tls_version_name(0x0a0a), "unknown");
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("files");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_file_whole, 0, N_FILES);
	tcase_add_loop_test(tc, test_file_bytewise, 0, N_FILES);
	tcase_add_loop_test(tc, test_file_split, 0, N_FILES);
	tcase_add_loop_test(tc, test_file_truncated, 0, N_FILES);
	tcase_add_loop_test(tc, test_file_wrong_direction, 0, N_FILES);
	suite_add_tcase(s, tc);

	tc = tcase_create("built");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_two_records);
	tcase_add_test(tc, test_tiny_records);
	tcase_add_test(tc, test_grease);
	tcase_add_test(tc, test_many_versions);
	tcase_add_test(tc, test_sni_long_and_unprintable);
	tcase_add_test(tc, test_large_hello);
	tcase_add_test(tc, test_garbage_lengths);
	tcase_add_test(tc, test_hrr_then_server_hello);
	tcase_add_test(tc, test_not_tls);
	tcase_add_test(tc, test_info_untouched);
	tcase_add_test(tc, test_release_midway);
	tcase_add_test(tc, test_version_name);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(tls_suite());
}

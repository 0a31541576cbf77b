/* Protocol detection from the first bytes of one direction of a
 * connection.  Every rule is a prefix test: while the bytes seen so far
 * could still begin a known protocol the answer is L7_UNKNOWN, and the
 * first byte that rules out every protocol gives L7_OTHER.
 *
 * Pure functions, any thread. */
#include "config.h"

#include <string.h>

#include "parse/parse.h"

/* Methods recognised from "METHOD SP" alone. */
static const char *const detect_methods[] = {
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
};

/* Any other method (WebDAV, PURGE, ...) needs the whole request line up to
 * " HTTP/1.x"; a longer token is not a method. */
#define DETECT_METHOD_MAX 24

static const char detect_h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum detect_match {
	DETECT_NO,
	DETECT_SHORT,	/* the bytes so far agree, more are needed */
	DETECT_YES,
};

const char *l7_protocol_name(enum l7_protocol p)
{
	switch (p) {
	case L7_HTTP1:
		return "http1";
	case L7_HTTP2:
		return "http2";
	case L7_TLS:
		return "tls";
	default:
		return "other";
	}
}

/* data begins with the n bytes of lit. */
static enum detect_match detect_literal(const uint8_t *data, size_t len, const char *lit, size_t n)
{
	if (memcmp(data, lit, len < n ? len : n))
		return DETECT_NO;
	return len < n ? DETECT_SHORT : DETECT_YES;
}

static bool detect_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* A method token as methods are written: upper case, '-' and '_'. */
static bool detect_is_method_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/* The first byte of a request-target: origin-form "/...", "*" of OPTIONS,
 * absolute-form "http://..." or authority-form "host:port" of CONNECT. */
static bool detect_is_target_start(uint8_t c)
{
	return c == '/' || c == '*' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       detect_is_digit(c) || c == '[';
}

/* "HTTP/1.0 " or "HTTP/1.1 " and a three-digit status code. */
static enum detect_match detect_status_line(const uint8_t *data, size_t len)
{
	enum detect_match m;
	size_t i;

	m = detect_literal(data, len, "HTTP/1.", 7);
	if (m != DETECT_YES)
		return m;
	if (len > 7 && data[7] != '0' && data[7] != '1')
		return DETECT_NO;
	if (len > 8 && data[8] != ' ')
		return DETECT_NO;
	for (i = 9; i < 12 && i < len; i++)
		if (!detect_is_digit(data[i]))
			return DETECT_NO;
	return len < 12 ? DETECT_SHORT : DETECT_YES;
}

/* METHOD SP request-target SP "HTTP/1." DIGIT */
static enum detect_match detect_request_line(const uint8_t *data, size_t len)
{
	static const char version[] = " HTTP/1.";
	enum detect_match m;
	size_t i, n, v;

	for (i = 0; i < len && detect_is_method_char(data[i]); i++)
		if (i == DETECT_METHOD_MAX)
			return DETECT_NO;
	if (i == len)
		return DETECT_SHORT;
	if (i == 0 || data[i] != ' ')
		return DETECT_NO;
	n = i;
	for (i = 0; i < sizeof(detect_methods) / sizeof(detect_methods[0]); i++) {
		if (strlen(detect_methods[i]) != n || memcmp(data, detect_methods[i], n))
			continue;
		if (len == n + 1)
			return DETECT_SHORT;
		return detect_is_target_start(data[n + 1]) ? DETECT_YES : DETECT_NO;
	}
	/* another method: the request-target, then the version */
	i = n + 1;
	if (i == len)
		return DETECT_SHORT;
	if (!detect_is_target_start(data[i]))
		return DETECT_NO;
	while (i < len && data[i] > 0x20 && data[i] < 0x7f)
		i++;
	if (i == len)
		return DETECT_SHORT;
	v = sizeof(version) - 1;
	m = detect_literal(data + i, len - i, version, v);
	if (m != DETECT_YES)
		return m;
	if (i + v == len)
		return DETECT_SHORT;
	return detect_is_digit(data[i + v]) ? DETECT_YES : DETECT_NO;
}

/* A handshake record (type 22, version 3.0 to 3.4, a plausible length)
 * whose first message is a ClientHello or a ServerHello.  A record may
 * hold as little as one byte of a message (RFC 8446 5.1: a hello split
 * over records, which tls.c puts back together): its first is the type. */
static enum detect_match detect_tls(const uint8_t *data, size_t len)
{
	unsigned rec_len;

	if (data[0] != 0x16)
		return DETECT_NO;
	if (len > 1 && data[1] != 3)
		return DETECT_NO;
	if (len > 2 && data[2] > 4)
		return DETECT_NO;
	if (len < 5)
		return DETECT_SHORT;
	rec_len = (unsigned)data[3] << 8 | data[4];
	if (rec_len < 1 || rec_len > 16384 + 256)
		return DETECT_NO;
	if (len < 6)
		return DETECT_SHORT;
	return data[5] == 1 || data[5] == 2 ? DETECT_YES : DETECT_NO;
}

/* The server's connection preface (RFC 9113 3.4) is a SETTINGS frame:
 * length a multiple of 6, type 4, no flags, stream 0. */
static enum detect_match detect_h2_settings(const uint8_t *data, size_t len)
{
	static const uint8_t tail[6] = { 0x04, 0, 0, 0, 0, 0 };
	uint32_t flen;
	size_t i;

	for (i = 3; i < 9 && i < len; i++)
		if (data[i] != tail[i - 3])
			return DETECT_NO;
	if (len < 3)
		return data[0] == 0 ? DETECT_SHORT : DETECT_NO;
	flen = (uint32_t)data[0] << 16 | (uint32_t)data[1] << 8 | data[2];
	if (flen % 6 || flen > 16384)
		return DETECT_NO;
	return len < 9 ? DETECT_SHORT : DETECT_YES;
}

/* PROXY protocol: version 1 is a text line, version 2 a binary header
 * after a 12-byte signature. */
#define PROXY_V1_MAX 107
static const char proxy_v1[] = "PROXY ";
static const uint8_t proxy_v2[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n',
				      'Q', 'U', 'I', 'T', '\n' };

long detect_proxy_header(const uint8_t *data, size_t len)
{
	enum detect_match m;
	size_t i;

	if (!len)
		return -1;
	if (data[0] == 'P') {
		m = detect_literal(data, len, proxy_v1, sizeof(proxy_v1) - 1);
		if (m != DETECT_YES)
			return m == DETECT_SHORT ? -1 : 0;
		for (i = sizeof(proxy_v1) - 1; i + 1 < len && i + 1 < PROXY_V1_MAX; i++)
			if (data[i] == '\r' && data[i + 1] == '\n')
				return (long)i + 2;
		return len < PROXY_V1_MAX ? -1 : 0;	/* no line end in 107 bytes: not one */
	}
	m = detect_literal(data, len, (const char *)proxy_v2, sizeof(proxy_v2));
	if (m == DETECT_NO)
		return 0;
	if (len < 16)
		return -1;
	/* the version in the high nibble; the length of what follows, big
	 * endian */
	if ((data[12] >> 4) != 2)
		return 0;
	return 16 + ((long)data[14] << 8 | data[15]);
}

enum l7_protocol detect_protocol(const uint8_t *data, size_t len)
{
	enum detect_match h1, h2;

	if (!len)
		return L7_UNKNOWN;
	switch (detect_tls(data, len)) {
	case DETECT_YES:
		return L7_TLS;
	case DETECT_SHORT:
		return L7_UNKNOWN;
	default:
		break;
	}
	/* "PRI" is a method token too: the preface first */
	h2 = detect_literal(data, len, detect_h2_preface, sizeof(detect_h2_preface) - 1);
	if (h2 == DETECT_NO)
		h2 = detect_h2_settings(data, len);
	if (h2 == DETECT_YES)
		return L7_HTTP2;
	h1 = detect_status_line(data, len);
	if (h1 == DETECT_NO)
		h1 = detect_request_line(data, len);
	if (h1 == DETECT_YES)
		return L7_HTTP1;
	if (h1 == DETECT_SHORT || h2 == DETECT_SHORT)
		return L7_UNKNOWN;
	return L7_OTHER;
}

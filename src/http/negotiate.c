/* Content negotiation for the metrics endpoints (RFC 9110 §12.5): which
 * exposition format and whether to gzip, from Accept and Accept-Encoding;
 * and the gzip encoder itself. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "http/http_int.h"
#include "util/buf.h"

#define Q_MAX 1000 /* qvalues are kept in thousandths */

/* One element of a comma-separated header list: its leading token (a media
 * range or a content coding) and its q parameter in thousandths (Q_MAX when
 * absent, -1 when malformed). */
struct list_elem {
	const char *tok;
	size_t tok_len;
	int q;
};

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_tchar(char c)
{
	return c && c != ',' && c != ';' && c != '=' && c != '"' && !is_ows(c);
}

static const char *skip_ows(const char *p)
{
	while (is_ows(*p))
		p++;
	return p;
}

/* RFC 9110 qvalue: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]. */
static int qvalue_parse(const char *s, size_t n)
{
	int q, scale = 100;
	size_t i;

	if (n == 0 || (s[0] != '0' && s[0] != '1'))
		return -1;
	q = (s[0] - '0') * Q_MAX;
	if (n == 1)
		return q;
	if (s[1] != '.' || n > 5)
		return -1;
	for (i = 2; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		q += (s[i] - '0') * scale;
		scale /= 10;
	}
	return q > Q_MAX ? -1 : q;
}

/* Parses the list element at *pp into e and moves *pp past it and its
 * comma.  Returns false at the end of the list.  Empty elements ("a,,b")
 * come back with tok_len 0. */
static bool list_next(const char **pp, struct list_elem *e)
{
	const char *p = skip_ows(*pp);

	if (!*p)
		return false;
	e->tok = p;
	while (*p && *p != ',' && *p != ';' && !is_ows(*p))
		p++;
	e->tok_len = (size_t)(p - e->tok);
	e->q = Q_MAX;

	while (*p && *p != ',') {
		const char *name, *val;
		size_t name_len, val_len = 0;

		p = skip_ows(p);
		if (*p != ';') {
			/* junk after the token: skip to the next element */
			if (*p && *p != ',')
				p++;
			continue;
		}
		p = skip_ows(p + 1);
		name = p;
		while (is_tchar(*p))
			p++;
		name_len = (size_t)(p - name);
		p = skip_ows(p);
		if (*p != '=')
			continue;
		p = skip_ows(p + 1);
		val = p;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p == '"')
				p++;
			val_len = (size_t)(p - val);
		} else {
			while (is_tchar(*p))
				p++;
			val_len = (size_t)(p - val);
		}
		if (name_len == 1 && (name[0] == 'q' || name[0] == 'Q'))
			e->q = qvalue_parse(val, val_len);
	}
	if (*p == ',')
		p++;
	*pp = p;
	return true;
}

static bool tok_is(const struct list_elem *e, const char *s)
{
	size_t n = strlen(s);

	return e->tok_len == n && strncasecmp(e->tok, s, n) == 0;
}

static void q_max(int *best, int q)
{
	if (q > *best)
		*best = q;
}

enum metrics_format http_negotiate_format(const char *accept)
{
	struct list_elem e;
	int q_om = -1, q_text = -1;

	if (!accept)
		return METRICS_FORMAT_TEXT;
	while (list_next(&accept, &e)) {
		if (tok_is(&e, "application/openmetrics-text"))
			q_max(&q_om, e.q);
		else if (tok_is(&e, "text/plain") || tok_is(&e, "text/*") ||
			 tok_is(&e, "*/*"))
			q_max(&q_text, e.q);
	}
	if (q_om > 0 && q_om >= q_text)
		return METRICS_FORMAT_OPENMETRICS;
	return METRICS_FORMAT_TEXT;
}

bool http_negotiate_gzip(const char *accept_encoding)
{
	struct list_elem e;
	int q_gzip = -1, q_any = -1;

	if (!accept_encoding)
		return false;
	while (list_next(&accept_encoding, &e)) {
		if (tok_is(&e, "gzip") || tok_is(&e, "x-gzip"))
			q_max(&q_gzip, e.q);
		else if (tok_is(&e, "*"))
			q_max(&q_any, e.q);
	}
	if (q_gzip >= 0)
		return q_gzip > 0;
	return q_any > 0;
}

int http_gzip_compress(const void *in, size_t len, struct buf *out)
{
	z_stream zs = { 0 };
	size_t old_len = out->len;
	int zerr, err;

	/* Level 1: the scrape thread's time matters more than bytes, and the
	 * exposition text is repetitive enough to shrink well anyway. */
	zerr = deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
			    Z_DEFAULT_STRATEGY);
	if (zerr != Z_OK)
		return zerr == Z_MEM_ERROR ? -ENOMEM : -EIO;

	err = buf_grow(out, len < UINT_MAX ? deflateBound(&zs, (uLong)len) : len);
	if (err)
		goto out_end;
	/* zlib counts in uInt: feed and drain at most UINT_MAX at a time. */
	zs.next_in = (Bytef *)(uintptr_t)in;
	do {
		size_t room;
		uInt avail;

		if (!zs.avail_in && len) {
			zs.avail_in = len > UINT_MAX ? UINT_MAX : (uInt)len;
			len -= zs.avail_in;
		}
		if (out->cap - out->len < 64) {
			err = buf_grow(out, out->cap - old_len);
			if (err)
				goto out_end;
		}
		room = out->cap - out->len;
		avail = room > UINT_MAX ? UINT_MAX : (uInt)room;
		zs.next_out = (Bytef *)out->data + out->len;
		zs.avail_out = avail;
		zerr = deflate(&zs, len ? Z_NO_FLUSH : Z_FINISH);
		out->len += avail - zs.avail_out;
		if (zerr != Z_OK && zerr != Z_STREAM_END && zerr != Z_BUF_ERROR) {
			err = -EIO;
			goto out_end;
		}
	} while (zerr != Z_STREAM_END);
out_end:
	deflateEnd(&zs);
	if (err)
		out->len = old_len;
	return err;
}

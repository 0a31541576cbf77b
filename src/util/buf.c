#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/buf.h"

int buf_grow(struct buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 256;
	char *p;

	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	while (cap - b->len < extra)
		cap *= 2;
	if (cap == b->cap)
		return 0;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(b->data ? b->data + b->len : NULL, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= b->cap - b->len) {
		int err = buf_grow(b, (size_t)n + 1);

		if (err)
			return err;
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		if (n < 0)
			return -EINVAL;
	}
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int err;

	va_start(ap, fmt);
	err = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

size_t fmt_u64(char *p, unsigned long long v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

int buf_append_u64(struct buf *b, unsigned long long v)
{
	if (b->cap - b->len < 20) {
		int err = buf_grow(b, 20);

		if (err)
			return err;
	}
	b->len += fmt_u64(b->data + b->len, v);
	return 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *buf_steal(struct buf *b, size_t *ret_len)
{
	char *p = b->data;

	if (ret_len)
		*ret_len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

/* The code point of the well-formed UTF-8 sequence at p (shortest form,
 * no surrogate, at most U+10FFFF), its length in *len; -1 when p does not
 * start one.  A NUL ends the string: it is never a continuation byte. */
static long utf8_decode(const unsigned char *p, size_t *len)
{
	unsigned n, i;
	long cp;

	if (*p >= 0xc2 && *p <= 0xdf) {
		n = 1;
		cp = *p & 0x1f;
	} else if (*p >= 0xe0 && *p <= 0xef) {
		n = 2;
		cp = *p & 0x0f;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 3;
		cp = *p & 0x07;
	} else {
		return -1;
	}
	for (i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*len = n + 1;
	return cp;
}

static int append_u_escape(struct buf *b, unsigned cp)
{
	static const char hex[] = "0123456789abcdef";
	char e[6] = { '\\', 'u', hex[cp >> 12 & 15], hex[cp >> 8 & 15], hex[cp >> 4 & 15],
		      hex[cp & 15] };

	return buf_append(b, e, sizeof(e));
}

int buf_append_json_str(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int err = buf_append_char(b, '"');
	size_t len;
	long cp;

	for (; !err && *p; p++) {
		switch (*p) {
		case '"':
			err = buf_append(b, "\\\"", 2);
			break;
		case '\\':
			err = buf_append(b, "\\\\", 2);
			break;
		case '\n':
			err = buf_append(b, "\\n", 2);
			break;
		case '\t':
			err = buf_append(b, "\\t", 2);
			break;
		case '\r':
			err = buf_append(b, "\\r", 2);
			break;
		default:
			if (*p >= 0x20 && *p < 0x7f) {
				err = buf_append_char(b, (char)*p);
			} else if (*p < 0x80) {
				err = append_u_escape(b, *p);
			} else if ((cp = utf8_decode(p, &len)) < 0) {
				err = append_u_escape(b, 0xfffd);
			} else if (cp < 0x10000) {
				err = append_u_escape(b, (unsigned)cp);
				p += len - 1;
			} else {
				cp -= 0x10000;
				err = append_u_escape(b, 0xd800 + (unsigned)(cp >> 10));
				err = err ? err : append_u_escape(b, 0xdc00 + (unsigned)(cp & 0x3ff));
				p += len - 1;
			}
		}
	}
	return err ? err : buf_append_char(b, '"');
}

/* Growable byte buffer: used by the exposition code, the HTTP server and
 * the record writers.  Not thread-safe: a buffer belongs to one thread. */
#ifndef QTAP_UTIL_BUF_H
#define QTAP_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

/* All return 0 or -ENOMEM; on failure the buffer keeps its old content. */
int buf_grow(struct buf *b, size_t extra);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Appends the decimal form of v. */
int buf_append_u64(struct buf *b, unsigned long long v);
void buf_reset(struct buf *b);
/* Frees the storage; the buffer can be reused afterwards. */
void buf_free(struct buf *b);
/* Hands the storage to the caller (who frees it) and empties the buffer. */
char *buf_steal(struct buf *b, size_t *ret_len);

static inline int buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n) {
		int err = buf_grow(b, n);

		if (err)
			return err;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static inline int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

static inline int buf_append_char(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

/* Appends s as a JSON string literal in ASCII, quotes included: what is
 * not printable ASCII is escaped as \uXXXX (UTF-8 decoded, a surrogate
 * pair past U+FFFF; a byte that is not part of well-formed UTF-8 as
 * U+FFFD). */
int buf_append_json_str(struct buf *b, const char *s);

/* Writes the decimal digits of v at p (room for 20 bytes); returns the count. */
size_t fmt_u64(char *p, unsigned long long v);

#endif

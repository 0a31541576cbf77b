/* Private to src/http: content negotiation and compression, used by the
 * scrape thread (server.c) and by the unit tests.  All functions are pure
 * or work on caller-owned buffers, so any thread may call them. */
#ifndef QTAP_HTTP_HTTP_INT_H
#define QTAP_HTTP_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics/metrics.h"

struct buf;

#define HTTP_CONTENT_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define HTTP_CONTENT_TYPE_OPENMETRICS \
	"application/openmetrics-text; version=1.0.0; charset=utf-8"

/* negotiate.c */

/* The exposition format for an Accept header (NULL when absent):
 * OpenMetrics when application/openmetrics-text is acceptable (q > 0) and
 * preferred at least as much as text/plain, the text format otherwise. */
enum metrics_format http_negotiate_format(const char *accept);

/* Whether an Accept-Encoding header (NULL when absent) accepts gzip: an
 * explicit gzip or x-gzip entry decides, "*" otherwise; q=0 refuses. */
bool http_negotiate_gzip(const char *accept_encoding);

/* Appends in[0..len) to out as a gzip member (RFC 1952).  0, -ENOMEM, or
 * -EIO when zlib fails; on failure out keeps its old length. */
int http_gzip_compress(const void *in, size_t len, struct buf *out);

#endif

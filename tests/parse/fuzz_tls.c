/* Fuzz target: the TLS hello reassembler and parser.  The first input
 * byte chooses the direction (bit 0: from the client) and how the rest is
 * cut into feeds (the other bits seed the piece sizes; 0 feeds it whole).
 * Checks the invariants a caller relies on: a decided stream holds no
 * buffer and keeps its answer, the buffer stays within its bound, parsed
 * strings are terminated and counts within their arrays. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_info(const struct tls_hello_info *info)
{
	if (!memchr(info->sni, '\0', sizeof(info->sni)) ||
	    !memchr(info->alpn, '\0', sizeof(info->alpn)) ||
	    info->n_offered > TLS_VERSIONS_MAX)
		abort();
	if (info->client_hello && info->n_offered == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_stream s = { 0 };
	struct tls_hello_info info;
	enum tls_feed_result res = TLS_FEED_MORE, r;
	unsigned seed, max_piece;
	bool from_client;
	size_t off, n;
	uint8_t *piece;

	if (size < 1)
		return 0;
	from_client = data[0] & 1;
	max_piece = data[0] >> 1;
	seed = data[0] * 2654435761u;
	data++;
	size--;
	memset(&info, 0, sizeof(info));
	for (off = 0; off < size; off += n) {
		n = size - off;
		if (max_piece) {
			seed = seed * 1103515245u + 12345u;
			if (n > 1 + (seed >> 16) % max_piece)
				n = 1 + (seed >> 16) % max_piece;
		}
		/* each piece in a buffer of its own size: overreads are caught */
		piece = malloc(n);
		if (!piece)
			break;
		memcpy(piece, data + off, n);
		r = tls_stream_feed(&s, piece, n, from_client, &info);
		free(piece);
		if (res != TLS_FEED_MORE && r != res)
			abort();	/* a decided stream changed its mind */
		res = r;
		switch (res) {
		case TLS_FEED_MORE:
			if (s.done || s.len > s.cap || s.cap > 16384)
				abort();
			break;
		case TLS_FEED_DONE:
			if (!s.done || s.buf || (from_client ? !info.client_hello :
						 !info.server_hello))
				abort();
			break;
		case TLS_FEED_ERROR:
			if (!s.done || s.buf)
				abort();
			break;
		default:
			abort();
		}
		fuzz_check_info(&info);
	}
	tls_stream_release(&s);
	if (s.buf || s.len || s.cap || s.done)
		abort();
	return 0;
}

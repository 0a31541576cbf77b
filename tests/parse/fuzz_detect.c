/* Fuzz target: protocol detection over every prefix of the input.  The
 * answer for a prefix must be a valid value, and once a prefix is decided
 * (anything but L7_UNKNOWN) every longer prefix gets the same answer; so
 * for the PROXY protocol header's length, once known. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum l7_protocol decided = L7_UNKNOWN, p;
	long header = -1, h;
	size_t n, max = size < 512 ? size : 512;
	uint8_t *copy;

	for (n = 0; n <= max; n++) {
		/* exactly n bytes, so that a read past the end is caught */
		copy = malloc(n ? n : 1);
		if (!copy)
			return 0;
		memcpy(copy, data, n);
		p = detect_protocol(copy, n);
		h = detect_proxy_header(copy, n);
		free(copy);
		if (h < -1 || (h > 0 && h < 8) || (header >= 0 && h != header))
			abort();
		header = h;
		if (p != L7_UNKNOWN && p != L7_HTTP1 && p != L7_HTTP2 && p != L7_TLS &&
		    p != L7_OTHER)
			abort();
		if (!l7_protocol_name(p)[0])
			abort();
		if (decided != L7_UNKNOWN && p != decided)
			abort();
		if (p != L7_UNKNOWN)
			decided = p;
	}
	return 0;
}

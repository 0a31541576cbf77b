/* TLS ClientHello and ServerHello from the wire.
 *
 * A hello is one handshake message (type, 24-bit length, body) carried by
 * one or more handshake records (type 22, version, 16-bit length), and
 * the records may arrive split over any number of data events.  The usual
 * case, a whole hello in the first record of the first event, is parsed
 * where it lies.  Otherwise the stream keeps a buffer that starts with the
 * record reassembly state (struct tls_reasm) followed by the handshake
 * bytes collected so far, record headers stripped; it grows up to the
 * largest hello accepted and is freed as soon as the hello is parsed or
 * the stream is given up.
 *
 * Called by one parser worker per connection; no shared state. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "parse/parse.h"

#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX (16384 + 256)	/* TLSCiphertext bound, lenient */
#define TLS_HS_HEADER 4
#define TLS_HELLO_MAX 16384		/* a hello with its handshake header */
#define TLS_BUF_FIRST 512		/* first allocation, before the length is known */

#define TLS_CT_CHANGE_CIPHER_SPEC 20
#define TLS_CT_HANDSHAKE 22
#define TLS_HT_CLIENT_HELLO 1
#define TLS_HT_SERVER_HELLO 2

#define TLS_EXT_SERVER_NAME 0
#define TLS_EXT_ALPN 16
#define TLS_EXT_SUPPORTED_VERSIONS 43

/* RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest. */
static const uint8_t tls_hrr_random[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02,
	0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
	0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/* At the start of tls_stream.buf; the handshake bytes follow it and
 * tls_stream.len and .cap count those bytes only. */
struct tls_reasm {
	uint8_t hdr[TLS_RECORD_HEADER];	/* record header being read */
	uint8_t hdr_len;		/* its bytes so far */
	uint8_t rec_type;		/* of the current record */
	bool after_hrr;			/* a HelloRetryRequest was seen */
	uint16_t rec_left;		/* payload bytes left in the current record */
};

/* A bounds-checked cursor over one hello. */
struct tls_reader {
	const uint8_t *p;
	size_t left;
};

static bool rd_u8(struct tls_reader *r, unsigned *v)
{
	if (r->left < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->left--;
	return true;
}

static bool rd_u16(struct tls_reader *r, unsigned *v)
{
	if (r->left < 2)
		return false;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->left -= 2;
	return true;
}

static bool rd_bytes(struct tls_reader *r, size_t n, const uint8_t **ret)
{
	if (r->left < n)
		return false;
	if (ret)
		*ret = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

/* A vector with a length prefix of `width` bytes (1 or 2), as a reader of
 * its own. */
static bool rd_vector(struct tls_reader *r, int width, struct tls_reader *ret)
{
	unsigned n;

	if (!(width == 1 ? rd_u8(r, &n) : rd_u16(r, &n)))
		return false;
	if (!rd_bytes(r, n, &ret->p))
		return false;
	ret->left = n;
	return true;
}

/* RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa. */
static bool tls_is_grease(unsigned v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* Copies a name that becomes a label value: printable ASCII only (host:
 * a host name's letters, digits, '-', '.' and '_' only), lower case,
 * truncated to size - 1.  False (dst untouched) for anything else. */
static bool tls_copy_name(char *dst, size_t size, const uint8_t *src, size_t n, bool host)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (src[i] < 0x21 || src[i] > 0x7e)
			return false;
		if (host && !(src[i] >= 'a' && src[i] <= 'z') && !(src[i] >= 'A' && src[i] <= 'Z') &&
		    !(src[i] >= '0' && src[i] <= '9') && src[i] != '-' && src[i] != '.' &&
		    src[i] != '_')
			return false;
	}
	if (n > size - 1)
		n = size - 1;
	for (i = 0; i < n; i++)
		dst[i] = src[i] >= 'A' && src[i] <= 'Z' ? (char)(src[i] - 'A' + 'a') : (char)src[i];
	dst[n] = '\0';
	return true;
}

/* server_name (RFC 6066 3): the first host_name entry. */
static bool tls_parse_sni(struct tls_reader ext, struct tls_hello_info *out)
{
	struct tls_reader list, name;
	unsigned type;

	if (!rd_vector(&ext, 2, &list) || ext.left)
		return false;
	while (list.left) {
		if (!rd_u8(&list, &type) || !rd_vector(&list, 2, &name))
			return false;
		if (type == 0 && !out->sni[0])
			/* a name with other bytes than a host name's is no
			 * label: no SNI (a client's junk, or an attacker's) */
			tls_copy_name(out->sni, sizeof(out->sni), name.p, name.left, true);
	}
	return true;
}

static bool tls_parse_client_versions(struct tls_reader ext, struct tls_hello_info *out)
{
	struct tls_reader list;
	unsigned v;

	if (!rd_vector(&ext, 1, &list) || ext.left || list.left < 2 || list.left % 2)
		return false;
	out->n_offered = 0;
	while (rd_u16(&list, &v))
		if (!tls_is_grease(v) && out->n_offered < TLS_VERSIONS_MAX)
			out->offered[out->n_offered++] = (uint16_t)v;
	return true;
}

/* ALPN in a ServerHello (RFC 7301 3.1): exactly one protocol name. */
static bool tls_parse_server_alpn(struct tls_reader ext, struct tls_hello_info *out)
{
	struct tls_reader list, name;

	if (!rd_vector(&ext, 2, &list) || ext.left)
		return false;
	if (!rd_vector(&list, 1, &name) || list.left || !name.left)
		return false;
	tls_copy_name(out->alpn, sizeof(out->alpn), name.p, name.left, false);
	return true;
}

/* Walks the extensions block of either hello (absent in old hellos). */
static bool tls_parse_extensions(struct tls_reader *r, bool client, struct tls_hello_info *out)
{
	struct tls_reader exts, ext;
	unsigned type;

	if (!r->left)
		return true;
	if (!rd_vector(r, 2, &exts) || r->left)
		return false;
	while (exts.left) {
		if (!rd_u16(&exts, &type) || !rd_vector(&exts, 2, &ext))
			return false;
		switch (type) {
		case TLS_EXT_SERVER_NAME:
			/* a server echoes an empty server_name */
			if (client && !tls_parse_sni(ext, out))
				return false;
			break;
		case TLS_EXT_SUPPORTED_VERSIONS:
			if (client) {
				if (!tls_parse_client_versions(ext, out))
					return false;
			} else {
				unsigned v;

				if (!rd_u16(&ext, &v) || ext.left)
					return false;
				out->version = (uint16_t)v;
			}
			break;
		case TLS_EXT_ALPN:
			/* the client's offer is not reported */
			if (!client && !tls_parse_server_alpn(ext, out))
				return false;
			break;
		default:
			break;
		}
	}
	return true;
}

static bool tls_parse_client_hello(const uint8_t *body, size_t len, struct tls_hello_info *out)
{
	struct tls_reader r = { body, len }, v;
	unsigned legacy;

	if (!rd_u16(&r, &legacy) || !rd_bytes(&r, 32, NULL))
		return false;
	if (!rd_vector(&r, 1, &v) || v.left > 32)		/* session id */
		return false;
	if (!rd_vector(&r, 2, &v) || v.left < 2 || v.left % 2)	/* cipher suites */
		return false;
	if (!rd_vector(&r, 1, &v) || v.left < 1)		/* compression */
		return false;
	out->offered[0] = (uint16_t)legacy;
	out->n_offered = 1;
	if (!tls_parse_extensions(&r, true, out))
		return false;
	if (out->n_offered == 0) {	/* nothing but GREASE */
		out->offered[0] = (uint16_t)legacy;
		out->n_offered = 1;
	}
	return true;
}

/* 1 for a ServerHello, 0 for a HelloRetryRequest, -1 when malformed. */
static int tls_parse_server_hello(const uint8_t *body, size_t len, struct tls_hello_info *out)
{
	struct tls_reader r = { body, len }, v;
	const uint8_t *random;
	unsigned legacy;

	if (!rd_u16(&r, &legacy) || !rd_bytes(&r, 32, &random))
		return -1;
	if (!rd_vector(&r, 1, &v) || v.left > 32)	/* session id echo */
		return -1;
	if (!rd_bytes(&r, 2 + 1, NULL))			/* suite, compression */
		return -1;
	out->version = (uint16_t)legacy;
	if (!tls_parse_extensions(&r, false, out))
		return -1;
	return memcmp(random, tls_hrr_random, sizeof(tls_hrr_random)) ? 1 : 0;
}

static uint32_t tls_hs_length(const uint8_t *h)
{
	return (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* One complete handshake message (header included).  TLS_FEED_MORE for
 * a HelloRetryRequest, whose real ServerHello is still to come. */
static enum tls_feed_result tls_handle_message(const uint8_t *msg, size_t len, bool from_client,
					       struct tls_hello_info *info)
{
	struct tls_hello_info h;
	int rc;

	memset(&h, 0, sizeof(h));
	if (from_client) {
		if (msg[0] != TLS_HT_CLIENT_HELLO ||
		    !tls_parse_client_hello(msg + TLS_HS_HEADER, len - TLS_HS_HEADER, &h))
			return TLS_FEED_ERROR;
		memcpy(info->sni, h.sni, sizeof(info->sni));
		memcpy(info->offered, h.offered, sizeof(info->offered));
		info->n_offered = h.n_offered;
		info->client_hello = true;
		return TLS_FEED_DONE;
	}
	if (msg[0] != TLS_HT_SERVER_HELLO)
		return TLS_FEED_ERROR;
	rc = tls_parse_server_hello(msg + TLS_HS_HEADER, len - TLS_HS_HEADER, &h);
	if (rc < 0)
		return TLS_FEED_ERROR;
	if (rc == 0)
		return TLS_FEED_MORE;
	info->version = h.version;
	memcpy(info->alpn, h.alpn, sizeof(info->alpn));
	info->server_hello = true;
	return TLS_FEED_DONE;
}

/* The first n bytes of a record header are acceptable: a handshake
 * record, or after a HelloRetryRequest the one-byte ChangeCipherSpec of
 * middlebox compatibility mode (RFC 8446 D.4). */
static bool tls_record_ok(const uint8_t *h, size_t n, bool after_hrr)
{
	unsigned len;

	if (n > 0 && h[0] != TLS_CT_HANDSHAKE &&
	    !(h[0] == TLS_CT_CHANGE_CIPHER_SPEC && after_hrr))
		return false;
	if ((n > 1 && h[1] != 3) || (n > 2 && h[2] > 4))
		return false;
	if (n < TLS_RECORD_HEADER)
		return true;
	len = (unsigned)h[3] << 8 | h[4];
	if (h[0] == TLS_CT_HANDSHAKE)
		return len >= 1 && len <= TLS_RECORD_MAX;
	return len == 1;
}

/* The whole hello in the first record of the first feed: parsed in place,
 * nothing allocated.  TLS_FEED_MORE when that is not the case. */
static enum tls_feed_result tls_feed_direct(const uint8_t *data, size_t len, bool from_client,
					    struct tls_hello_info *info)
{
	size_t rec_len, msg_len;

	if (len < TLS_RECORD_HEADER + TLS_HS_HEADER ||
	    !tls_record_ok(data, TLS_RECORD_HEADER, false))
		return TLS_FEED_MORE;
	rec_len = (size_t)data[3] << 8 | data[4];
	msg_len = TLS_HS_HEADER + tls_hs_length(data + TLS_RECORD_HEADER);
	if (msg_len > rec_len || len < TLS_RECORD_HEADER + msg_len)
		return TLS_FEED_MORE;
	if (msg_len > TLS_HELLO_MAX)
		return TLS_FEED_ERROR;	/* as when fed in parts (tls_feed_buffered()) */
	switch (tls_handle_message(data + TLS_RECORD_HEADER, msg_len, from_client, info)) {
	case TLS_FEED_DONE:
		return TLS_FEED_DONE;
	case TLS_FEED_ERROR:
		return TLS_FEED_ERROR;
	default:
		/* a HelloRetryRequest: the general path parses it again */
		return TLS_FEED_MORE;
	}
}

static int tls_reserve(struct tls_stream *s, size_t need)
{
	size_t cap = s->cap ? s->cap : TLS_BUF_FIRST;
	uint8_t *buf;

	if (need <= s->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > TLS_HELLO_MAX)
		cap = TLS_HELLO_MAX;
	buf = realloc(s->buf, sizeof(struct tls_reasm) + cap);
	if (!buf)
		return -ENOMEM;
	if (!s->buf)
		memset(buf, 0, sizeof(struct tls_reasm));
	s->buf = buf;
	s->cap = cap;
	return 0;
}

/* Handshake bytes wanted before the next decision: the rest of the
 * message header, else the rest of the message. */
static size_t tls_wanted(const struct tls_stream *s, const uint8_t *hs)
{
	if (s->len < TLS_HS_HEADER)
		return TLS_HS_HEADER - s->len;
	return TLS_HS_HEADER + tls_hs_length(hs) - s->len;
}

static enum tls_feed_result tls_feed_buffered(struct tls_stream *s, const uint8_t *data,
					      size_t len, bool from_client,
					      struct tls_hello_info *info)
{
	enum tls_feed_result res;
	struct tls_reasm *st;
	size_t n, msg_len;
	uint8_t *hs;

	if (tls_reserve(s, TLS_HS_HEADER) < 0)
		return TLS_FEED_ERROR;
	st = (struct tls_reasm *)s->buf;
	while (len) {
		if (st->hdr_len < TLS_RECORD_HEADER) {
			n = TLS_RECORD_HEADER - st->hdr_len;
			n = n < len ? n : len;
			memcpy(st->hdr + st->hdr_len, data, n);
			st->hdr_len += (uint8_t)n;
			data += n;
			len -= n;
			if (!tls_record_ok(st->hdr, st->hdr_len, st->after_hrr))
				return TLS_FEED_ERROR;
			if (st->hdr_len < TLS_RECORD_HEADER)
				break;
			st->rec_type = st->hdr[0];
			st->rec_left = (uint16_t)(st->hdr[3] << 8 | st->hdr[4]);
			continue;
		}
		n = st->rec_left < len ? st->rec_left : len;
		if (st->rec_type == TLS_CT_HANDSHAKE) {
			hs = s->buf + sizeof(*st);
			if (n > tls_wanted(s, hs))
				n = tls_wanted(s, hs);
			memcpy(hs + s->len, data, n);
			s->len += n;
		}
		data += n;
		len -= n;
		st->rec_left -= (uint16_t)n;
		if (!st->rec_left)
			st->hdr_len = 0;
		if (st->rec_type != TLS_CT_HANDSHAKE || !s->len)
			continue;
		hs = s->buf + sizeof(*st);
		if (hs[0] != (from_client ? TLS_HT_CLIENT_HELLO : TLS_HT_SERVER_HELLO))
			return TLS_FEED_ERROR;
		if (s->len < TLS_HS_HEADER)
			continue;
		msg_len = TLS_HS_HEADER + tls_hs_length(hs);
		if (msg_len > TLS_HELLO_MAX)
			return TLS_FEED_ERROR;
		if (s->len < msg_len) {
			if (tls_reserve(s, msg_len) < 0)
				return TLS_FEED_ERROR;
			st = (struct tls_reasm *)s->buf;
			continue;
		}
		res = tls_handle_message(hs, msg_len, from_client, info);
		if (res != TLS_FEED_MORE)
			return res;
		/* a HelloRetryRequest, at most one: the ServerHello follows */
		if (st->after_hrr)
			return TLS_FEED_ERROR;
		st->after_hrr = true;
		s->len = 0;
	}
	return TLS_FEED_MORE;
}

enum tls_feed_result tls_stream_feed(struct tls_stream *s, const uint8_t *data, size_t len,
				     bool from_client, struct tls_hello_info *info)
{
	enum tls_feed_result res;

	if (s->done) {
		bool parsed = from_client ? info->client_hello : info->server_hello;

		return parsed ? TLS_FEED_DONE : TLS_FEED_ERROR;
	}
	if (!len)
		return TLS_FEED_MORE;
	res = TLS_FEED_MORE;
	if (!s->buf) {
		/* not TLS at all: decided without allocating */
		if (!tls_record_ok(data, len, false))
			res = TLS_FEED_ERROR;
		else
			res = tls_feed_direct(data, len, from_client, info);
	}
	if (res == TLS_FEED_MORE)
		res = tls_feed_buffered(s, data, len, from_client, info);
	if (res != TLS_FEED_MORE) {
		tls_stream_release(s);
		s->done = true;
	}
	return res;
}

void tls_stream_release(struct tls_stream *s)
{
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

const char *tls_version_name(uint16_t version)
{
	switch (version) {
	case 0x0300:
		return "SSLv3";
	case 0x0301:
		return "TLSv1.0";
	case 0x0302:
		return "TLSv1.1";
	case 0x0303:
		return "TLSv1.2";
	case 0x0304:
		return "TLSv1.3";
	default:
		return "unknown";
	}
}

/* The connection tracker of one parser worker: see parse-int.h.
 *
 * Everything here runs on the worker thread that owns the tracker; nothing
 * is shared but the metric store (each worker writes its own shard) and the
 * running configuration (read under rcu_read_lock()).
 *
 * Metric semantics (the end-to-end tests assert them exactly):
 * - open_total and active_total +1 when the OPEN is processed;
 * - bytes_sent/bytes_recv_total += the syscall's byte count (len, not the
 *   captured length) at each data event, and at CLOSE whatever the kernel
 *   counted beyond what reached us (lost data events), so the totals are
 *   exact even after losses;
 * - close_total +1, active_total -1, one duration observation (µs) when a
 *   connection ends (CLOSE, process exit, idle timeout, agent stop);
 * - protocol_total{protocol} +1 once per connection, when it ends, so that
 *   connections still undecided then count as "other" and the protocol
 *   counts add up to close_total;
 * - tls_handshake_total +1 when the ServerHello is parsed.
 * remote_port is the peer's port for egress and "" for ingress: an ingress
 * peer's port is the client's ephemeral port, which would make every
 * connection its own series.
 *
 * A connection whose OPEN never arrived (lost) is tracked from its first
 * event, for ordering and for the report, but has no address and no
 * direction: it updates no connection family. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <urcu.h>

#include "capture/capture.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "parse/parse-int.h"
#include "sock.h"
#include "util/buf.h"
#include "util/log.h"

void *(*conn_malloc_hook)(size_t size) = malloc;

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define DEFAULT_IDLE_NS (300ull * NS_PER_S)
/* First bytes of a direction kept while the protocol is undecided: more
 * than a PROXY protocol version 1 line (107). */
#define DETECT_PREFIX 128
/* Closed conn_ids remembered, so that stragglers are dropped quietly. */
#define RECENT_SIZE 4096
/* Network namespaces whose listeners are held at once, and for how long
 * (port_listening()). */
#define LISTEN_SETS 16
#define LISTEN_TTL_NS NS_PER_S
/* Listeners held per namespace at most. */
#define LISTEN_MAX 65536
/* Peer label sets cached (series handles of one direction/address/port). */
#define PEER_BUCKETS 4096
#define PEER_MAX 16384
#define IDLE_SCAN_NS NS_PER_S
/* The longest an undecided connection waits for its process's exec to
 * reach the process table (where an exited process stays 5 s). */
#define PROC_WAIT_NS (3ull * NS_PER_S)

#define INITIAL_BUCKETS 1024
/* Process exits held for the next housekeeping (exits_apply()). */
#define EXITS_MAX 4096

enum close_reason {
	CLOSE_NORMAL,
	CLOSE_PROCESS_EXIT,
	CLOSE_IDLE,
	CLOSE_RECONNECTED,
	CLOSE_SOCKET_REUSED,
	CLOSE_FILTERED,
	CLOSE_AGENT_STOP,
};

static const char *const close_reason_names[] = {
	[CLOSE_NORMAL] = "close",
	[CLOSE_PROCESS_EXIT] = "process_exit",
	[CLOSE_IDLE] = "idle_timeout",
	[CLOSE_RECONNECTED] = "reconnected",
	[CLOSE_SOCKET_REUSED] = "socket_reused",
	[CLOSE_FILTERED] = "filtered",
	[CLOSE_AGENT_STOP] = "agent_stop",
};

/* The series of one label set (direction, remote_addr, remote_port). */
struct conn_series {
	struct metric_series *open, *close, *active, *sent, *recv, *duration;
};

/* Room for pending events a connection keeps once they are all applied. */
#define PEND_KEEP 64

/* An early event waiting for the ones before it. */
struct pending {
	uint64_t seq;
	uint64_t arrival_ns;
	uint32_t size;
	void *rec;		/* a copy, from conn_malloc_hook */
};

/* Protocol detection while undecided: the first bytes of each direction
 * (QTAP_DATA_SEND, QTAP_DATA_RECV). */
struct conn_detect {
	uint8_t buf[2][DETECT_PREFIX];
	uint8_t len[2];
	bool broken[2];		/* a hole in the bytes: give the direction up */
	/* A PROXY protocol header before the direction's first bytes (a load
	 * balancer's): looked for, and its bytes still to come after the
	 * events seen. */
	bool proxy_looked[2];
	uint32_t proxy_skip[2];
};

/* TLS hellos, for connections detected as TLS.  s[0] the client's
 * direction, s[1] the server's. */
struct conn_tls {
	struct tls_stream s[2];
	bool done[2];
	struct tls_hello_info info;
};

struct conn {
	struct conn *hnext;		/* hash chain */
	struct conn *wprev, *wnext;	/* waiting list (n_pend > 0) */
	uint64_t conn_id;
	uint64_t next_seq;		/* the next event to process */
	uint64_t open_ns, last_ns;	/* CLOCK_MONOTONIC */
	uint64_t bytes_sent, bytes_recv, data_events;
	uint64_t wait_since;		/* earliest arrival among pending */
	uint64_t exit_at;		/* when its process's exit was heard (now_ns),
					 * 0 while it runs */
	uint64_t exit_ts;		/* that exit's kernel timestamp */
	uint64_t alive_ns;		/* when the kernel last said it is open
					 * (now_ns), 0: never asked */
	uint64_t gone_ns;		/* when it first said it is gone after
					 * a silence (now_ns); stale once older
					 * than last_ns or alive_ns */
	uint32_t tgid, pid, fd;
	uint64_t key;			/* the kernel's key (OPEN), 0 if unknown */
	/* An OPEN the kernel could not decide waits (first in pend, the
	 * events after it behind) until its process's image can be known. */
	uint64_t await_since;
	uint32_t await_tgid, await_gen;
	bool awaiting;
	bool learned_told;		/* the kernel side was told its direction */
	uint16_t family, lport, rport;
	uint32_t netns;			/* its socket's network namespace; 0: unknown */
	uint32_t ifindex;		/* the interface its socket is bound to; 0: none */
	uint8_t direction;		/* QTAP_DIR_* */
	bool known;			/* metadata set (OPEN, or first event) */
	bool counted;			/* updates the connection families */
	bool ignored;			/* filtered: events are dropped */
	bool traced;			/* --bpf-trace wants it */
	bool got_protocol;
	enum l7_protocol proto;
	/* TLS plaintext from the library probes: which libraries (TLS_LIB_*
	 * bits), how many events, and the protocol it speaks (L7_UNKNOWN
	 * until decided), which stands for the connection's. */
	uint8_t tls_libs;
	enum l7_protocol plain_proto;
	uint64_t tls_events;
	uint8_t laddr[16], raddr[16];
	char comm[QTAP_COMM_LEN];
	char *exe;			/* NULL: unknown, comm stands in */
	uint64_t cgroup_id;		/* 0: unknown */
	char container_id[CAPTURE_CONTAINER_ID_LEN]; /* "" when none */
	struct conn_series m;
	struct pending *pend;		/* sorted by seq */
	unsigned n_pend, cap_pend;
	size_t pend_bytes;
	struct conn_detect *det;
	struct conn_tls *tls;
};

struct peer {
	struct peer *next;
	uint8_t direction;
	uint16_t family, port;
	uint8_t addr[16];
	struct conn_series m;
};

/* A LISTEN socket: its local address (alen bytes) and port. */
struct listener {
	uint8_t addr[16];
	uint16_t port;
	uint8_t alen;
};

/* The listeners of a network namespace at a moment, by port. */
struct listen_set {
	uint64_t when;		/* read at; 0: empty */
	uint32_t netns;		/* 0: the agent's own */
	size_t n, cap;
	struct listener *v;
};

struct conn_tracker {
	struct conn_tracker_opts o;
	char proc_root[256];
	uint32_t netns;			/* the agent's network namespace; 0: unknown */
	struct conn **buckets;
	unsigned bits;			/* n_buckets = 1 << bits */
	size_t count;
	struct conn *waiting;		/* conns with pending events */
	uint64_t recent[RECENT_SIZE];	/* closed conn_id + 1; 0: empty */
	struct listen_set listen[LISTEN_SETS];
	struct peer *peers[PEER_BUCKETS];
	unsigned n_peers;
	struct metric_series *gaps, *payloads_dropped, *tls_errors, *tracked;
	struct metric_series *proto[L7_OTHER + 1];
	int64_t wall_offset_ns;		/* CLOCK_REALTIME - CLOCK_MONOTONIC */
	uint64_t last_idle_scan;
	bool exiting;			/* some connection has exit_at set */
	/* Process exits heard since the last housekeeping (exit_tgid()). */
	struct exit_note {
		uint32_t tgid;
		uint64_t ts, at;	/* the kernel's timestamp; when heard */
	} exits[EXITS_MAX];
	unsigned n_exits;
	struct buf report;
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void refresh_wall_offset(struct conn_tracker *t)
{
	t->wall_offset_ns = (int64_t)(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC));
}

static bool is_v4_mapped(const uint8_t *a)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return !memcmp(a, prefix, sizeof(prefix));
}

char *conn_addr_format(int family, const uint8_t *addr, char *buf, size_t size)
{
	uint16_t w[8];
	int best = -1, best_len = 0, i;
	size_t n = 0;

	if (family == AF_INET6 && is_v4_mapped(addr))
		return conn_addr_format(AF_INET, addr + 12, buf, size);
	if (family != AF_INET6) {
		snprintf(buf, size, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
		return buf;
	}
	/* RFC 5952: lower-case hex without leading zeros, the longest run
	 * (the first of equal ones) of two or more zero fields as "::". */
	for (i = 0; i < 8; i++)
		w[i] = (uint16_t)(addr[2 * i] << 8 | addr[2 * i + 1]);
	for (i = 0; i < 8;) {
		int j = i;

		while (j < 8 && !w[j])
			j++;
		if (j - i > best_len && j - i >= 2) {
			best = i;
			best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
	buf[0] = '\0';
	for (i = 0; i < 8 && n < size; i++) {
		if (i == best) {
			n += snprintf(buf + n, size - n, "::");
			i += best_len - 1;
			continue;
		}
		n += snprintf(buf + n, size - n, "%s%x",
			      (i && i != best + best_len) ? ":" : "", w[i]);
	}
	return buf;
}

static bool addr_is_loopback(int family, const uint8_t *a)
{
	if (family == AF_INET6 && is_v4_mapped(a))
		a += 12, family = AF_INET;
	return qtap_addr_loopback(family == AF_INET, a);
}

/* What egress-internal means (bpf/sock.h). */
static bool addr_is_internal(int family, const uint8_t *a)
{
	if (family == AF_INET6 && is_v4_mapped(a))
		a += 12, family = AF_INET;
	return qtap_addr_internal(family == AF_INET, a);
}

/* "addr:port", IPv6 as "[addr]:port". */
static void endpoint_format(int family, const uint8_t *addr, uint16_t port, char *buf,
			    size_t size)
{
	char a[64];

	conn_addr_format(family, addr, a, sizeof(a));
	if (strchr(a, ':'))
		snprintf(buf, size, "[%s]:%u", a, port);
	else
		snprintf(buf, size, "%s:%u", a, port);
}

static void rfc3339_format(uint64_t wall_ns, char *buf, size_t size)
{
	time_t sec = (time_t)(wall_ns / NS_PER_S);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03uZ", (unsigned)(wall_ns % NS_PER_S / NS_PER_MS));
}

static const char *const op_names[] = {
	[QTAP_OP_READ] = "read",	[QTAP_OP_WRITE] = "write",
	[QTAP_OP_READV] = "readv",	[QTAP_OP_WRITEV] = "writev",
	[QTAP_OP_SENDTO] = "sendto",	[QTAP_OP_RECVFROM] = "recvfrom",
	[QTAP_OP_SENDMSG] = "sendmsg",	[QTAP_OP_RECVMSG] = "recvmsg",
	[QTAP_OP_SENDFILE] = "sendfile",	[QTAP_OP_OTHER] = "other",
	[QTAP_OP_SSL_READ] = "SSL_read",	[QTAP_OP_SSL_WRITE] = "SSL_write",
	[QTAP_OP_GNUTLS_RECV] = "gnutls_record_recv",
	[QTAP_OP_GNUTLS_SEND] = "gnutls_record_send",
};

/* TLS libraries whose probes gave a connection plaintext (conn.tls_libs) */
#define TLS_LIB_OPENSSL (1u << 0)
#define TLS_LIB_GNUTLS (1u << 1)
#define TLS_LIB_NODETLS (1u << 2)	/* OpenSSL linked into the executable */

static const char *op_name(unsigned op)
{
	if (op < sizeof(op_names) / sizeof(op_names[0]) && op_names[op])
		return op_names[op];
	return "unknown";
}

static const char *direction_name(const struct conn *c)
{
	return c->direction == QTAP_DIR_INGRESS ? "ingress" : "egress";
}

static const char *decision_name(const struct conn *c)
{
	return c->proto == L7_UNKNOWN ? "undecided" : l7_protocol_name(c->proto);
}

static const char *conn_exe(const struct conn *c)
{
	return c->exe ? c->exe : c->comm;
}

/* ---- the table -------------------------------------------------------- */

static size_t bucket_of(const struct conn_tracker *t, uint64_t id)
{
	return (size_t)(conn_id_hash(id) >> (64 - t->bits));
}

static struct conn *table_find(const struct conn_tracker *t, uint64_t id)
{
	struct conn *c;

	for (c = t->buckets[bucket_of(t, id)]; c; c = c->hnext)
		if (c->conn_id == id)
			return c;
	return NULL;
}

/* Doubles the table when it is full; on allocation failure the chains
 * just get longer. */
static void table_grow(struct conn_tracker *t)
{
	unsigned bits = t->bits + 1;
	size_t n = (size_t)1 << bits, old_n = (size_t)1 << t->bits, i;
	struct conn **b = conn_malloc_hook(n * sizeof(*b));

	if (!b)
		return;
	memset(b, 0, n * sizeof(*b));
	for (i = 0; i < old_n; i++) {
		struct conn *c = t->buckets[i], *next;

		for (; c; c = next) {
			size_t k = (size_t)(conn_id_hash(c->conn_id) >> (64 - bits));

			next = c->hnext;
			c->hnext = b[k];
			b[k] = c;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->bits = bits;
}

static struct conn *conn_create(struct conn_tracker *t, uint64_t id)
{
	struct conn *c;
	size_t k;

	if (t->count >= ((size_t)1 << t->bits) && t->bits < 28)
		table_grow(t);
	c = conn_malloc_hook(sizeof(*c));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->conn_id = id;
	k = bucket_of(t, id);
	c->hnext = t->buckets[k];
	t->buckets[k] = c;
	t->count++;
	metrics_gauge_add(t->tracked, 1);
	return c;
}

static void waiting_add(struct conn_tracker *t, struct conn *c)
{
	c->wprev = NULL;
	c->wnext = t->waiting;
	if (t->waiting)
		t->waiting->wprev = c;
	t->waiting = c;
}

static void waiting_del(struct conn_tracker *t, struct conn *c)
{
	if (c->wprev)
		c->wprev->wnext = c->wnext;
	else
		t->waiting = c->wnext;
	if (c->wnext)
		c->wnext->wprev = c->wprev;
	c->wprev = c->wnext = NULL;
}

static void recent_put(struct conn_tracker *t, uint64_t id)
{
	t->recent[conn_id_hash(id) & (RECENT_SIZE - 1)] = id + 1;
}

static bool recent_has(const struct conn_tracker *t, uint64_t id)
{
	return t->recent[conn_id_hash(id) & (RECENT_SIZE - 1)] == id + 1;
}

/* Frees c; remember: its later events are stragglers, dropped. */
static void conn_free(struct conn_tracker *t, struct conn *c, bool remember)
{
	struct conn **pp = &t->buckets[bucket_of(t, c->conn_id)];
	unsigned i;

	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	if (c->n_pend)
		waiting_del(t, c);
	for (i = 0; i < c->n_pend; i++)
		free(c->pend[i].rec);
	free(c->pend);
	free(c->det);
	if (c->tls) {
		tls_stream_release(&c->tls->s[0]);
		tls_stream_release(&c->tls->s[1]);
		free(c->tls);
	}
	free(c->exe);
	if (remember)
		recent_put(t, c->conn_id);
	t->count--;
	metrics_gauge_add(t->tracked, -1);
	free(c);
}

static void conn_destroy(struct conn_tracker *t, struct conn *c)
{
	conn_free(t, c, true);
}

/* ---- metrics ---------------------------------------------------------- */

static unsigned peer_hash(uint8_t direction, uint16_t family, const uint8_t *addr,
			  uint16_t port)
{
	uint64_t a, b;

	memcpy(&a, addr, 8);
	memcpy(&b, addr + 8, 8);
	return (unsigned)(conn_id_hash(a ^ conn_id_hash(b ^ ((uint64_t)direction << 32 |
							   (uint64_t)family << 16 | port))) &
			  (PEER_BUCKETS - 1));
}

static void peers_clear(struct conn_tracker *t)
{
	unsigned i;

	for (i = 0; i < PEER_BUCKETS; i++) {
		struct peer *p = t->peers[i], *next;

		for (; p; p = next) {
			next = p->next;
			free(p);
		}
		t->peers[i] = NULL;
	}
	t->n_peers = 0;
}

/* The series of c's label set, through the peer cache. */
/* The connection labels (direction, remote_addr, remote_port) into
 * values[0..2], formatted into addr and port_s.  remote_port is empty for
 * ingress: the peer's port is the client's ephemeral one, which would make
 * every connection a series of its own. */
static void conn_label_values(const struct conn *c, char *addr, size_t addr_len,
			      char *port_s, size_t port_len, const char **values)
{
	conn_addr_format(c->family, c->raddr, addr, addr_len);
	if (c->direction == QTAP_DIR_INGRESS)
		port_s[0] = '\0';
	else
		snprintf(port_s, port_len, "%u", c->rport);
	values[0] = direction_name(c);
	values[1] = addr;
	values[2] = port_s;
}

static void conn_series_get(struct conn_tracker *t, struct conn *c)
{
	uint16_t port = c->direction == QTAP_DIR_INGRESS ? 0 : c->rport;
	unsigned h = peer_hash(c->direction, c->family, c->raddr, port);
	char addr[64], port_s[8];
	const char *values[3];
	struct peer *p;

	for (p = t->peers[h]; p; p = p->next)
		if (p->direction == c->direction && p->family == c->family &&
		    p->port == port && !memcmp(p->addr, c->raddr, 16)) {
			c->m = p->m;
			return;
		}
	conn_label_values(c, addr, sizeof(addr), port_s, sizeof(port_s), values);
	c->m.open = metrics_series_get(t->o.store, M_CONNECTION_OPEN_TOTAL, values);
	c->m.close = metrics_series_get(t->o.store, M_CONNECTION_CLOSE_TOTAL, values);
	c->m.active = metrics_series_get(t->o.store, M_CONNECTION_ACTIVE_TOTAL, values);
	c->m.sent = metrics_series_get(t->o.store, M_CONNECTION_BYTES_SENT_TOTAL, values);
	c->m.recv = metrics_series_get(t->o.store, M_CONNECTION_BYTES_RECV_TOTAL, values);
	c->m.duration = metrics_series_get(t->o.store, M_CONNECTION_DURATION_MS, values);
	if (!c->m.open || !c->m.close || !c->m.active || !c->m.sent || !c->m.recv ||
	    !c->m.duration)
		return;	/* not cached: the next connection tries again */
	if (t->n_peers >= PEER_MAX)
		peers_clear(t);
	p = conn_malloc_hook(sizeof(*p));
	if (!p)
		return;
	memset(p, 0, sizeof(*p));
	p->direction = c->direction;
	p->family = c->family;
	p->port = port;
	memcpy(p->addr, c->raddr, 16);
	p->m = c->m;
	p->next = t->peers[h];
	t->peers[h] = p;
	t->n_peers++;
}

/* ---- pre-existing connections ----------------------------------------- */

/* The network namespace of process pid ("self": the agent) under
 * proc_root: its inode number, 0 if unknown. */
static uint32_t proc_netns(const char *proc_root, const char *pid)
{
	char path[400];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/%s/ns/net", proc_root, pid) >= (int)sizeof(path))
		return 0;
	return stat(path, &st) ? 0 : (uint32_t)st.st_ino;
}

/* Whether c's socket is in another network namespace than the agent's (a
 * container's); false when either is unknown. */
static bool conn_netns_foreign(const struct conn_tracker *t, const struct conn *c)
{
	return c->netns && t->netns && c->netns != t->netns;
}

/* The directory under proc_root whose net/tcp lists the listeners of c's
 * network namespace, into dir: proc_root itself for the agent's (or an
 * unknown one); else the process's, or the thread's that made the call
 * (a thread can have moved into another namespace, setns(2), without its
 * process), whichever is in c's namespace now.  false: neither is (the
 * process is gone, or has moved on). */
static bool netns_dir(struct conn_tracker *t, const struct conn *c, char *dir, size_t size)
{
	char sub[64];

	if (!conn_netns_foreign(t, c)) {
		snprintf(dir, size, "%s", t->proc_root);
		return true;
	}
	snprintf(sub, sizeof(sub), "%" PRIu32, c->tgid);
	if (proc_netns(t->proc_root, sub) == c->netns)
		return snprintf(dir, size, "%s/%s", t->proc_root, sub) < (int)size;
	snprintf(sub, sizeof(sub), "%" PRIu32 "/task/%" PRIu32, c->tgid, c->pid);
	if (proc_netns(t->proc_root, sub) == c->netns)
		return snprintf(dir, size, "%s/%s", t->proc_root, sub) < (int)size;
	return false;
}

/* The address of a /proc/net/tcp or tcp6 line's local_address (8 or 32
 * hex digits: the address's 32-bit words as the kernel holds them, each
 * printed as a number of this host's order) into addr; its length in
 * bytes, 0 if malformed. */
static size_t proc_net_addr(const char *hex, uint8_t addr[16])
{
	size_t n = strlen(hex), i;

	if (n != 8 && n != 32)
		return 0;
	for (i = 0; i < n / 8; i++) {
		char word[9];
		uint32_t v;

		memcpy(word, hex + 8 * i, 8);
		word[8] = '\0';
		v = (uint32_t)strtoul(word, NULL, 16);
		memcpy(addr + 4 * i, &v, 4);
	}
	return n / 2;
}

/* Whether a listener at (lfamily's laddr) accepts connections to the local
 * address (family, addr): the same address, the wildcard of its family,
 * or for IPv4 the IPv6 wildcard (a dual-stack listener) or the address
 * mapped into IPv6. */
static bool listener_takes(size_t llen, const uint8_t *laddr, int family, const uint8_t *addr)
{
	static const uint8_t zero[16], mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (!memcmp(laddr, zero, llen))
		return llen == 16 || family == AF_INET;
	if (family == AF_INET)
		return llen == 4 ? !memcmp(laddr, addr, 4) :
		       !memcmp(laddr, mapped, 12) && !memcmp(laddr + 12, addr, 4);
	return llen == 16 && !memcmp(laddr, addr, 16);
}

/* By port only: sorts a namespace's listeners, and finds one at a port. */
static int listener_cmp(const void *a, const void *b)
{
	const struct listener *x = a, *y = b;

	return (x->port > y->port) - (x->port < y->port);
}

/* Reads the LISTEN sockets of dir's net/tcp and net/tcp6 into ls, sorted
 * by port (up to LISTEN_MAX; fewer when memory runs out). */
static void listen_read(struct listen_set *ls, const char *dir)
{
	static const char *const files[] = { "net/tcp", "net/tcp6" };
	unsigned i;

	ls->n = 0;
	for (i = 0; i < 2; i++) {
		char path[400], line[512];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f) && ls->n < LISTEN_MAX) {
			struct listener l = { 0 };
			unsigned lport, st;
			char hex[40];

			if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x",
				   hex, &lport, &st) != 3 || st != 0x0a)
				continue;
			l.alen = (uint8_t)proc_net_addr(hex, l.addr);
			l.port = (uint16_t)lport;
			if (!l.alen)
				continue;
			if (ls->n == ls->cap) {
				size_t cap = ls->cap ? 2 * ls->cap : 64;
				struct listener *v = realloc(ls->v, cap * sizeof(*v));

				if (!v)
					break;
				ls->v = v;
				ls->cap = cap;
			}
			ls->v[ls->n++] = l;
		}
		fclose(f);
	}
	if (ls->n)
		qsort(ls->v, ls->n, sizeof(*ls->v), listener_cmp);
}

/* Whether a LISTEN socket takes connections to c's local address and port,
 * from net/tcp and net/tcp6 of c's network namespace (the agent's own, or
 * as its process sees it: a container's): the direction of a connection
 * learned in the middle.  The address matters as well as the port: a
 * client that binds its source address before connecting (a proxy's
 * source address, curl --interface) can be given a port that a listener
 * holds on another address.  A namespace's listeners are read once per
 * LISTEN_TTL_NS at most, whatever the number of connections learned
 * meanwhile: on a host that has tens of thousands of connections when the
 * agent starts, each file is as long as that, and a client's local port is
 * a new one each time. */
static bool port_listening(struct conn_tracker *t, const struct conn *c, uint64_t now)
{
	uint32_t ns = conn_netns_foreign(t, c) ? c->netns : 0;
	struct listen_set *ls = NULL, *oldest = &t->listen[0];
	const struct listener key = { .port = c->lport }, *l;
	unsigned i;

	for (i = 0; i < LISTEN_SETS && !ls; i++) {
		if (t->listen[i].when && t->listen[i].netns == ns)
			ls = &t->listen[i];
		else if (t->listen[i].when < oldest->when)
			oldest = &t->listen[i];
	}
	if (!ls || now - ls->when >= LISTEN_TTL_NS) {
		char dir[352];

		if (!netns_dir(t, c, dir, sizeof(dir)))
			return false;	/* its namespace cannot be read: not kept */
		if (!ls)
			ls = oldest;
		listen_read(ls, dir);
		ls->netns = ns;
		ls->when = now ? now : 1;
	}
	l = ls->n ? bsearch(&key, ls->v, ls->n, sizeof(*l), listener_cmp) : NULL;
	if (!l)
		return false;
	while (l > ls->v && l[-1].port == c->lport)
		l--;	/* the first at that port */
	for (; l < ls->v + ls->n && l->port == c->lport; l++)
		if (listener_takes(l->alen, l->addr, c->family, c->laddr))
			return true;
	return false;
}

/* The process filters, for a connection the kernel could not decide. */
static bool conn_wanted(struct conn_tracker *t, const struct conn *c)
{
	return !t->o.conn_wanted || t->o.conn_wanted(t->o.ctx, c->tgid, c->exe, c->comm);
}

/* Direction and configuration filters of a connection learned on its
 * first data (the kernel filters the ones it sees open).  true: keep. */
static bool preexisting_resolve(struct conn_tracker *t, struct conn *c, uint64_t now)
{
	const struct qtap_conf *conf;
	bool keep = true;

	c->direction = port_listening(t, c, now) ? QTAP_DIR_INGRESS : QTAP_DIR_EGRESS;
	rcu_read_lock();
	conf = conf_current();
	if (conf) {
		bool internal = addr_is_internal(c->family, c->raddr);

		switch (conf->tap.direction) {
		case CONF_DIRECTION_ALL:
			break;
		case CONF_DIRECTION_INGRESS:
			keep = c->direction == QTAP_DIR_INGRESS;
			break;
		case CONF_DIRECTION_EGRESS:
			keep = c->direction == QTAP_DIR_EGRESS;
			break;
		case CONF_DIRECTION_EGRESS_INTERNAL:
			keep = c->direction == QTAP_DIR_EGRESS && internal;
			break;
		case CONF_DIRECTION_EGRESS_EXTERNAL:
			keep = c->direction == QTAP_DIR_EGRESS && !internal;
			break;
		}
		if (keep && conf->tap.ignore_loopback && addr_is_loopback(c->family, c->raddr))
			keep = false;
	}
	rcu_read_unlock();
	return keep && conn_wanted(t, c);
}

/* ---- the events ------------------------------------------------------- */

/* gen: the exec generation whose image names the process (0: the one the
 * process table has). */
static void conn_set_process(struct conn_tracker *t, struct conn *c, uint32_t tgid,
			     uint32_t pid, uint32_t fd, const char *comm, uint32_t gen)
{
	struct capture_proc_info *info;
	size_t n;

	c->known = true;
	c->tgid = tgid;
	c->pid = pid;
	c->fd = fd;
	/* a kernel comm may fill all QTAP_COMM_LEN bytes; "" is one */
	n = strnlen(comm, QTAP_COMM_LEN - 1);
	memcpy(c->comm, comm, n);
	c->comm[n] = '\0';
	if (!t->o.proc_lookup)
		goto out;
	/* struct capture_proc_info carries a PATH_MAX exe: not on the stack
	 * of a worker that may run deep, and rarely enough to allocate. */
	info = conn_malloc_hook(sizeof(*info));
	if (!info)
		goto out;
	if (t->o.proc_lookup(t->o.ctx, tgid, gen, info))
		goto done;
	if (!c->comm[0])	/* an event without one: the table's */
		snprintf(c->comm, sizeof(c->comm), "%s", info->comm);
	if (info->exe[0]) {
		n = strnlen(info->exe, sizeof(info->exe) - 1);
		c->cgroup_id = info->cgroup_id;
		memcpy(c->container_id, info->container_id, sizeof(c->container_id));
		c->container_id[sizeof(c->container_id) - 1] = '\0';

		c->exe = conn_malloc_hook(n + 1);
		if (c->exe) {
			memcpy(c->exe, info->exe, n);
			c->exe[n] = '\0';
		}
	}
done:
	free(info);
out:
	c->traced = capture_trace_wants(t->o.trace, CAPTURE_TRACE_SYSCALL, c->comm, conn_exe(c));
}

/* Drops the connection from the kernel's table: its next call there makes
 * it a new connection, learned. */
static void conn_forget_kernel(struct conn_tracker *t, struct conn *c)
{
	if (t->o.conn_forget && c->key)
		t->o.conn_forget(t->o.ctx, c->key, c->conn_id);
}

/* Whether the kernel still has the connection open (asked at most once per
 * idle timeout): it is silent, or another process holds it. */
static bool conn_alive(struct conn_tracker *t, struct conn *c, uint64_t now)
{
	struct pipeline_conn_ref ref = {
		.key = c->key, .conn_id = c->conn_id,
		.foreign_netns = conn_netns_foreign(t, c), .ifindex = c->ifindex, .family = c->family,
		.laddr = c->laddr, .raddr = c->raddr, .lport = c->lport, .rport = c->rport,
	};

	if (!t->o.conn_alive || !c->known || !c->lport || !c->rport ||
	    !t->o.conn_alive(t->o.ctx, &ref))
		return false;
	c->alive_ns = now ? now : 1;
	return true;
}

/* Tells the kernel side the direction found for a connection it learned in
 * the middle, and whether it is left out (then its programs write a CLOSE
 * and nothing more of it: deleting its entry instead would have the next
 * call learn it again, an OPEN per call). */
static void conn_learned_kernel(struct conn_tracker *t, struct conn *c, bool skip)
{
	if (t->o.conn_learned && c->key)
		t->o.conn_learned(t->o.ctx, c->key, c->conn_id, c->direction, skip);
}

static void on_open(struct conn_tracker *t, struct conn *c, const struct qtap_conn_open *o,
		    uint64_t now)
{
	const char *op;

	conn_set_process(t, c, o->tgid, o->pid, o->fd, o->comm,
			 (o->flags & QTAP_CONN_F_UNDECIDED) ? o->exec_gen : 0);
	c->key = o->key;
	c->netns = o->netns;
	c->ifindex = o->bound_dev_if;
	c->family = o->family == AF_INET6 ? AF_INET6 : AF_INET;
	c->lport = o->lport;
	c->rport = o->rport;
	memcpy(c->laddr, o->laddr, 16);
	memcpy(c->raddr, o->raddr, 16);
	if (c->family == AF_INET) {
		memset(c->laddr + 4, 0, 12);
		memset(c->raddr + 4, 0, 12);
	}
	c->open_ns = o->hdr.timestamp_ns;
	c->last_ns = o->hdr.timestamp_ns;
	c->direction = o->direction;
	op = o->direction == QTAP_DIR_INGRESS ? "accept" : "connect";
	if (o->direction != QTAP_DIR_EGRESS && o->direction != QTAP_DIR_INGRESS) {
		bool keep = preexisting_resolve(t, c, now);

		op = "learned";
		conn_learned_kernel(t, c, !keep);
		c->learned_told = true;
		if (!keep) {
			/* its events dropped until its CLOSE */
			c->ignored = true;
			return;
		}
	} else if (o->flags & QTAP_CONN_F_PREEXISTING) {
		op = "learned";
	}
	if ((o->flags & QTAP_CONN_F_UNDECIDED) && !conn_wanted(t, c)) {
		/* A filtered process caught before the agent classified it:
		 * its events are dropped until the close.  The kernel entry
		 * stays, or the next call would learn the connection again. */
		c->ignored = true;
		return;
	}
	c->counted = true;
	conn_series_get(t, c);
	metrics_counter_add(c->m.open, 1);
	metrics_gauge_add(c->m.active, 1);
	if (c->traced) {
		char l[80], r[80];

		endpoint_format(c->family, c->laddr, c->lport, l, sizeof(l));
		endpoint_format(c->family, c->raddr, c->rport, r, sizeof(r));
		log_info("bpf-trace module=syscall op=%s pid=%u tid=%u comm=%s fd=%u conn=%" PRIu64
			 " direction=%s local=%s remote=%s decision=%s", op, c->tgid, c->pid, c->comm,
			 c->fd, c->conn_id, direction_name(c), l, r, decision_name(c));
	}
}

static void tls_feed(struct conn_tracker *t, struct conn *c, bool from_client,
		     const uint8_t *data, size_t len)
{
	struct conn_tls *tls = c->tls;
	unsigned k = from_client ? 0 : 1;
	enum tls_feed_result r;

	if (!tls || tls->done[k] || !len)
		return;
	r = tls_stream_feed(&tls->s[k], data, len, from_client, &tls->info);
	if (r == TLS_FEED_MORE)
		return;
	tls->done[k] = true;
	tls_stream_release(&tls->s[k]);
	if (r == TLS_FEED_ERROR) {
		metrics_counter_add(t->tls_errors, 1);
		return;
	}
	if (!from_client && tls->info.server_hello && c->counted) {
		char addr[64], port_s[8];
		const char *values[5];

		conn_label_values(c, addr, sizeof(addr), port_s, sizeof(port_s), values);
		values[3] = tls->info.sni;
		values[4] = tls_version_name(tls->info.version);
		metrics_add(t->o.store, M_CONNECTION_TLS_HANDSHAKE_TOTAL, values, 1);
	}
}

/* The connection's detection state, made on first use: NULL when there is
 * no memory. */
static struct conn_detect *conn_detect_get(struct conn *c)
{
	if (!c->det) {
		c->det = conn_malloc_hook(sizeof(*c->det));
		if (c->det)
			memset(c->det, 0, sizeof(*c->det));
	}
	return c->det;
}

/* Drops k bytes of the event (len bytes moved, *captured of them at
 * *data) that belong to a PROXY protocol header: false when none of its
 * bytes after the header are left to look at (a header's end in bytes not
 * captured makes the direction a hole). */
static bool proxy_drop(struct conn_detect *d, unsigned dir, const uint8_t **data,
		       size_t *captured, size_t *len, size_t k)
{
	if (k >= *len) {
		d->proxy_skip[dir] = (uint32_t)(k - *len);
		return false;
	}
	d->proxy_skip[dir] = 0;	/* the header ends in this event */
	if (k > *captured) {
		d->broken[dir] = true;
		return false;
	}
	*data += k;
	*captured -= k;
	*len -= k;
	return *captured > 0;
}

/* Protocol detection and TLS hellos from one event: len bytes moved in
 * direction dir, the first captured of them at data (fewer: a hole after
 * them). */
static void on_payload(struct conn_tracker *t, struct conn *c, unsigned dir,
		       const uint8_t *data, size_t captured, size_t len)
{
	bool from_client = (dir == QTAP_DATA_SEND) == (c->direction != QTAP_DIR_INGRESS);
	struct conn_detect *d = c->det;

	if (c->proto == L7_UNKNOWN) {
		uint8_t tmp[DETECT_PREFIX];
		size_t have = d ? d->len[dir] : 0, n;
		enum l7_protocol p;
		bool looked;
		long h;

		if (d && d->broken[dir])
			return;
		/* the rest of a header begun in an earlier event */
		if (d && d->proxy_skip[dir] &&
		    !proxy_drop(d, dir, &data, &captured, &len, d->proxy_skip[dir]))
			return;
		n = captured < DETECT_PREFIX - have ? captured : DETECT_PREFIX - have;
		if (have)
			memcpy(tmp, d->buf[dir], have);
		memcpy(tmp + have, data, n);
		/* A PROXY protocol header first?  Its bytes are kept until it
		 * can be told; it ends past those kept, in this event or a
		 * later one. */
		looked = d && d->proxy_looked[dir];
		h = looked ? 0 : detect_proxy_header(tmp, have + n);
		if (h < 0 && have + n < DETECT_PREFIX && captured == len) {
			p = L7_UNKNOWN;
		} else {
			looked = true;
			if (h > 0) {
				if (!(d = conn_detect_get(c)))
					return;	/* undecided: "other" at close */
				d->proxy_looked[dir] = true;
				d->len[dir] = 0;
				if (!proxy_drop(d, dir, &data, &captured, &len,
						(size_t)h > have ? (size_t)h - have : 0))
					return;
				have = 0;
				n = captured < DETECT_PREFIX ? captured : DETECT_PREFIX;
				memcpy(tmp, data, n);
			}
			p = detect_protocol(tmp, have + n);
		}
		if (p == L7_UNKNOWN && have + n < DETECT_PREFIX && captured == len) {
			if (!(d = conn_detect_get(c)))
				return;	/* undecided: "other" at close */
			d->proxy_looked[dir] = looked;
			memcpy(d->buf[dir] + have, data, n);
			d->len[dir] = (uint8_t)(have + n);
			return;
		}
		if (p == L7_UNKNOWN) {
			/* DETECT_PREFIX bytes without a decision, or a hole
			 * before it */
			if (d)
				d->broken[dir] = true;
			return;
		}
		c->proto = p;
		c->got_protocol = true;
		if (p == L7_TLS) {
			c->tls = conn_malloc_hook(sizeof(*c->tls));
			if (c->tls) {
				unsigned other = dir ^ 1;

				memset(c->tls, 0, sizeof(*c->tls));
				/* the bytes kept before this event come first */
				if (have)
					tls_feed(t, c, from_client, d->buf[dir], have);
				if (d && d->len[other] && !d->broken[other])
					tls_feed(t, c, !from_client, d->buf[other], d->len[other]);
			}
		}
		free(c->det);
		c->det = NULL;
	}
	if (c->tls) {
		unsigned k = from_client ? 0 : 1;

		tls_feed(t, c, from_client, data, captured);
		if (captured < len && !c->tls->done[k]) {
			/* bytes missing after these: the stream cannot go on */
			c->tls->done[k] = true;
			tls_stream_release(&c->tls->s[k]);
		}
	}
}

/* Brings the byte counts up to the kernel's totals for the connection:
 * the bytes of data events lost on the way, and of socket calls that wrote
 * no event (ciphertext under the TLS probes). */
static void conn_bytes_sync(struct conn *c, uint64_t sent, uint64_t recv)
{
	if (sent > c->bytes_sent) {
		if (c->counted)
			metrics_counter_add(c->m.sent, sent - c->bytes_sent);
		c->bytes_sent = sent;
	}
	if (recv > c->bytes_recv) {
		if (c->counted)
			metrics_counter_add(c->m.recv, recv - c->bytes_recv);
		c->bytes_recv = recv;
	}
}

/* What every data event (socket or TLS) does to its connection: the last
 * activity and the byte totals.  The payload bytes the record holds. */
static size_t data_common(struct conn *c, const struct qtap_conn_data *d, size_t size)
{
	if (d->hdr.timestamp_ns > c->last_ns)
		c->last_ns = d->hdr.timestamp_ns;
	conn_bytes_sync(c, d->bytes_sent, d->bytes_recv);
	return d->captured < size - sizeof(*d) ? d->captured : size - sizeof(*d);
}

/* Whether a socket data event's payload is still read: protocol
 * detection, or the TLS hellos. */
static bool payload_wanted(const struct conn *c)
{
	return c->proto == L7_UNKNOWN || (c->tls && !(c->tls->done[0] && c->tls->done[1]));
}

static void on_data(struct conn_tracker *t, struct conn *c, const struct qtap_conn_data *d,
		    size_t size)
{
	size_t captured;

	if (c->ignored)
		return;
	captured = data_common(c, d, size);
	c->data_events++;
	if (d->dir == QTAP_DATA_SEND) {
		c->bytes_sent += d->len;
		if (c->counted)
			metrics_counter_add(c->m.sent, d->len);
	} else {
		c->bytes_recv += d->len;
		if (c->counted)
			metrics_counter_add(c->m.recv, d->len);
	}
	/* (Bytes moved but none captured, without the kernel's NO_PAYLOAD:
	 * a payload dropped while the event waited, a hole.  With it, none
	 * are looked at, but those of a PROXY header being skipped.) */
	if (d->len && payload_wanted(c) &&
	    (!(d->flags & QTAP_DATA_F_NO_PAYLOAD) ||
	     (c->det && c->det->proxy_skip[d->dir == QTAP_DATA_RECV])))
		on_payload(t, c, d->dir == QTAP_DATA_RECV, d->payload, captured, d->len);
	if (c->traced)
		log_info("bpf-trace module=syscall op=%s pid=%u tid=%u comm=%s fd=%u size=%u "
			 "captured=%zu conn=%" PRIu64 " decision=%s", op_name(d->op), c->tgid,
			 d->pid, c->comm, d->fd, d->len, captured, c->conn_id, decision_name(c));
}

/* Whether s is an HTTP/1 request line (METHOD SP target SP HTTP/1.x, or
 * HTTP/2's preface "PRI * HTTP/2.0") or status line (HTTP/1.x SP 3DIGIT
 * ...); cut: s is the start of a longer one, and a request line's target
 * must begin with '/'. */
static bool start_line(const char *s, bool cut)
{
	size_t m = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
	const char *v = strrchr(s, ' ');

	if (!strncmp(s, "HTTP/1.", 7))
		return (s[7] == '0' || s[7] == '1') && s[8] == ' ' &&
		       isdigit((unsigned char)s[9]) && isdigit((unsigned char)s[10]) &&
		       isdigit((unsigned char)s[11]) && (s[12] == ' ' || !s[12]);
	if (!m || s[m] != ' ')
		return false;
	if (cut)
		return s[m + 1] == '/';
	return v > s + m && (!strcmp(v + 1, "HTTP/1.1") || !strcmp(v + 1, "HTTP/1.0") ||
			     !strcmp(v + 1, "HTTP/2.0"));
}

/* The first line of an HTTP/1 message at data (request or status line),
 * for the trace: printable ASCII up to CR or LF, with a request target's
 * query left out (it may carry secrets).  "" when there is none: any
 * other line (a header a call began with, a body) may be a secret. */
static void first_line(const uint8_t *data, size_t len, char *out, size_t size)
{
	size_t i, o = 0;
	bool query = false;

	for (i = 0; i < len && o + 1 < size; i++) {
		uint8_t ch = data[i];

		if (ch == '\r' || ch == '\n')
			break;
		if (ch < 0x20 || ch > 0x7e) {
			o = 0;	/* not text */
			break;
		}
		if (ch == '?' && !query) {
			query = true;
			if (o + 4 < size) {
				memcpy(out + o, "?...", 4);
				o += 4;
			}
			continue;
		}
		if (query && ch != ' ')
			continue;
		query = false;
		out[o++] = (char)ch;
	}
	if (i == len && i)	/* no line end in what was captured */
		o = 0;
	out[o] = '\0';
	if (!start_line(out, i < len && o + 1 >= size))
		out[0] = '\0';
}

/* Plaintext of a TLS library call on the connection: the protocol it
 * speaks is decided from it (the wire only says "tls"). */
static void on_tls_data(struct conn_tracker *t, struct conn *c, const struct qtap_conn_data *d,
			size_t size)
{
	bool gnutls = d->op == QTAP_OP_GNUTLS_RECV || d->op == QTAP_OP_GNUTLS_SEND;
	size_t captured;
	char line[128];

	if (c->ignored)
		return;
	captured = data_common(c, d, size);
	c->tls_events++;
	c->tls_libs |= gnutls ? TLS_LIB_GNUTLS :
		       (d->flags & QTAP_DATA_F_LINKED) ? TLS_LIB_NODETLS : TLS_LIB_OPENSSL;
	if (captured && (c->plain_proto == L7_UNKNOWN || c->plain_proto == L7_OTHER)) {
		enum l7_protocol p = detect_protocol(d->payload, captured);

		/* A message that is not the connection's first may not tell
		 * (a body): the first that does decides. */
		if (p == L7_HTTP1 || p == L7_HTTP2)
			c->plain_proto = p;
		else if (p == L7_OTHER && c->plain_proto == L7_UNKNOWN)
			c->plain_proto = L7_OTHER;
	}
	if (capture_trace_wants(t->o.trace, gnutls ? CAPTURE_TRACE_GNUTLS : CAPTURE_TRACE_OPENSSL,
				c->comm, conn_exe(c))) {
		first_line(d->payload, captured, line, sizeof(line));
		log_info("bpf-trace module=%s op=%s pid=%u tid=%u comm=%s fd=%u size=%u "
			 "captured=%zu conn=%" PRIu64 " decision=%s line=\"%s\"",
			 gnutls ? "gnutls" : "openssl", op_name(d->op), c->tgid, d->pid, c->comm,
			 d->fd, d->len, captured, c->conn_id,
			 c->plain_proto == L7_UNKNOWN ? "undecided" : l7_protocol_name(c->plain_proto),
			 line);
	}
}

/* The protocol the connection is counted and reported as: its plaintext's
 * when the TLS probes gave one. */
static enum l7_protocol conn_protocol(const struct conn *c)
{
	if (c->plain_proto == L7_HTTP1 || c->plain_proto == L7_HTTP2)
		return c->plain_proto;
	return c->proto == L7_UNKNOWN ? L7_OTHER : c->proto;
}

/* The JSON list items of TLS_LIB_* bits: "\"openssl\",\"gnutls\"". */
static const char *tls_libs_json(unsigned libs, char *out, size_t size)
{
	static const char *const names[] = { "openssl", "gnutls", "nodetls" };
	size_t o = 0;
	unsigned i;

	out[0] = '\0';
	for (i = 0; i < 3; i++)
		if (libs & (1u << i))
			o += (size_t)snprintf(out + o, size - o, "%s\"%s\"", o ? "," : "",
					      names[i]);
	return out;
}

static void report_write(struct conn_tracker *t, struct conn *c, enum close_reason why,
			 uint64_t close_ns)
{
	struct buf *b = &t->report;
	char src[80], dst[80], open_s[40], close_s[40], libs[64];
	uint64_t dur_us = close_ns > c->open_ns ? (close_ns - c->open_ns) / 1000 : 0;
	const struct tls_hello_info *tls = c->tls ? &c->tls->info : NULL;
	int err = 0;

	if (c->direction == QTAP_DIR_INGRESS) {
		endpoint_format(c->family, c->raddr, c->rport, src, sizeof(src));
		endpoint_format(c->family, c->laddr, c->lport, dst, sizeof(dst));
	} else {
		endpoint_format(c->family, c->laddr, c->lport, src, sizeof(src));
		endpoint_format(c->family, c->raddr, c->rport, dst, sizeof(dst));
	}
	rfc3339_format(c->open_ns + (uint64_t)t->wall_offset_ns, open_s, sizeof(open_s));
	rfc3339_format(close_ns + (uint64_t)t->wall_offset_ns, close_s, sizeof(close_s));
	buf_reset(b);
	err |= buf_printf(b, "{\"connId\":\"%" PRIu64 "\",\"l7Protocol\":\"%s\","
			  "\"tlsProbeTypesDetected\":[%s],\"gotTLSClientHelloEvent\":%s,"
			  "\"gotProtocolEvent\":%s,\"dataEventCount\":%" PRIu64 ","
			  "\"tlsDataEventCount\":%" PRIu64 ","
			  "\"bytesSent\":%" PRIu64 ",\"bytesReceived\":%" PRIu64 ",\"sni\":",
			  c->conn_id, l7_protocol_name(conn_protocol(c)),
			  tls_libs_json(c->tls_libs, libs, sizeof(libs)),
			  tls && tls->client_hello ? "true" : "false",
			  c->got_protocol ? "true" : "false", c->data_events, c->tls_events,
			  c->bytes_sent, c->bytes_recv);
	err |= buf_append_json_str(b, tls ? tls->sni : "");
	err |= buf_printf(b, ",\"tlsVersion\":\"%s\",\"direction\":\"%s\",\"source\":\"%s\","
			  "\"destination\":\"%s\",\"pid\":%u,\"tid\":%u,\"fd\":%u,\"exe\":",
			  tls && tls->version ? tls_version_name(tls->version) : "",
			  c->known && c->family ? direction_name(c) : "", c->family ? src : "",
			  c->family ? dst : "", c->tgid, c->pid, c->fd);
	err |= buf_append_json_str(b, conn_exe(c));
	err |= buf_append_str(b, ",\"comm\":");
	err |= buf_append_json_str(b, c->comm);
	err |= buf_printf(b, ",\"cgroupId\":%" PRIu64 ",\"containerId\":", c->cgroup_id);
	err |= buf_append_json_str(b, c->container_id);
	err |= buf_printf(b, ",\"openTime\":\"%s\",\"closeTime\":\"%s\",\"durationMs\":%" PRIu64
			  ".%03u,\"closeReason\":\"%s\"}", open_s, close_s, dur_us / 1000,
			  (unsigned)(dur_us % 1000), close_reason_names[why]);
	if (!err)
		log_write_json(LOG_LEVEL_DEBUG, "connection closed", b->data);
}

/* The end of a connection: metrics, report, trace line, and it is gone. */
static void conn_finish(struct conn_tracker *t, struct conn *c, enum close_reason why,
			uint64_t close_ns)
{
	if (close_ns < c->open_ns)
		close_ns = c->open_ns;
	if (c->counted) {
		metrics_counter_add(c->m.close, 1);
		metrics_gauge_add(c->m.active, -1);
		metrics_histogram_observe(c->m.duration, (close_ns - c->open_ns) / 1000);
		metrics_counter_add(t->proto[conn_protocol(c)], 1);
	}
	if (c->known && !c->ignored) {
		if (c->proto == L7_UNKNOWN)
			c->proto = L7_OTHER;
		if (log_get_level() <= LOG_LEVEL_DEBUG)
			report_write(t, c, why, close_ns);
		if (c->traced)
			log_info("bpf-trace module=syscall op=close pid=%u comm=%s fd=%u conn=%" PRIu64
				 " reason=%s sent=%" PRIu64 " recv=%" PRIu64 " decision=%s", c->tgid,
				 c->comm, c->fd, c->conn_id, close_reason_names[why], c->bytes_sent,
				 c->bytes_recv, decision_name(c));
	}
	conn_destroy(t, c);
}

static void on_close(struct conn_tracker *t, struct conn *c, const struct qtap_conn_close *e)
{
	enum close_reason why = CLOSE_NORMAL;

	if (e->flags & QTAP_CLOSE_F_REPLACED)
		why = CLOSE_RECONNECTED;
	else if (e->flags & QTAP_CLOSE_F_REUSED)
		why = CLOSE_SOCKET_REUSED;
	else if (e->flags & QTAP_CLOSE_F_FILTERED)
		why = CLOSE_FILTERED;
	if (!c->ignored)
		conn_bytes_sync(c, e->bytes_sent, e->bytes_recv);
	/* The kernel side's entries of a learned connection that ended (its
	 * word on it written after its socket was destroyed would stay for
	 * good); not one left out, whose socket lives on SKIPPED. */
	if (c->learned_told && !(e->flags & QTAP_CLOSE_F_SKIPPED))
		conn_forget_kernel(t, c);
	conn_finish(t, c, why, e->hdr.timestamp_ns);
}

/* A connection first seen through an event other than its OPEN (lost):
 * what the event tells about it. */
static void conn_learn(struct conn_tracker *t, struct conn *c, const void *rec)
{
	const struct qtap_event_header *h = rec;

	if (h->type == QTAP_EVENT_CONN_DATA || h->type == QTAP_EVENT_TLS_DATA) {
		const struct qtap_conn_data *d = rec;

		conn_set_process(t, c, d->tgid, d->pid, d->fd, "", 0);
	} else {
		const struct qtap_conn_close *e = rec;

		conn_set_process(t, c, e->tgid, e->pid, e->fd, "", 0);
	}
	c->open_ns = h->timestamp_ns;
	c->last_ns = h->timestamp_ns;
}

/* Processes the event the connection expects.  false: the connection is
 * gone (closed). */
static bool conn_apply(struct conn_tracker *t, struct conn *c, const void *rec, size_t size,
		       uint64_t now)
{
	const struct qtap_event_header *h = rec;

	c->next_seq++;
	if (h->type != QTAP_EVENT_CONN_OPEN && !c->known)
		conn_learn(t, c, rec);
	switch (h->type) {
	case QTAP_EVENT_CONN_OPEN:
		if (c->known)	/* an OPEN after what stood in for it */
			return true;
		on_open(t, c, rec, now);
		return true;
	case QTAP_EVENT_CONN_DATA:
		on_data(t, c, rec, size);
		return true;
	case QTAP_EVENT_TLS_DATA:
		on_tls_data(t, c, rec, size);
		return true;
	default:
		on_close(t, c, rec);
		return false;
	}
}

static void pend_recompute_wait(struct conn *c)
{
	unsigned i;

	c->wait_since = UINT64_MAX;
	for (i = 0; i < c->n_pend; i++)
		if (c->pend[i].arrival_ns < c->wait_since)
			c->wait_since = c->pend[i].arrival_ns;
}

/* Processes the pending events that are next in order.  false: gone. */
static bool conn_drain(struct conn_tracker *t, struct conn *c, uint64_t now)
{
	unsigned done = 0, i;
	bool alive = true;

	if (c->awaiting)
		return true;
	while (done < c->n_pend && c->pend[done].seq <= c->next_seq) {
		struct pending *p = &c->pend[done++];

		if (p->seq == c->next_seq) {
			alive = conn_apply(t, c, p->rec, p->size, now);
			if (!alive)
				break;
		}
	}
	if (!alive)
		return false;	/* conn_destroy freed the rest */
	if (!done)
		return true;
	for (i = 0; i < done; i++) {
		c->pend_bytes -= c->pend[i].size;
		free(c->pend[i].rec);
	}
	memmove(c->pend, c->pend + done, (c->n_pend - done) * sizeof(*c->pend));
	c->n_pend -= done;
	if (c->n_pend) {
		pend_recompute_wait(c);
		return true;
	}
	waiting_del(t, c);
	if (c->cap_pend > PEND_KEEP) {
		/* a long wait is over: its room goes back */
		free(c->pend);
		c->pend = NULL;
		c->cap_pend = 0;
	}
	return true;
}

/* Gives up waiting for the events numbered before seq, with some pending:
 * each missing number is one gap. */
static void conn_give_up(struct conn_tracker *t, struct conn *c, uint64_t seq, uint64_t now)
{
	if (seq <= c->next_seq)
		return;
	metrics_counter_add(t->gaps, seq - c->next_seq);
	log_debug("connection %" PRIu64 ": events %" PRIu64 "..%" PRIu64
		  " given up as lost (%u waiting, the first for %" PRIu64 " ms)",
		  c->conn_id, c->next_seq, seq - 1, c->n_pend,
		  now > c->pend[0].arrival_ns ? (now - c->pend[0].arrival_ns) / 1000000 : 0);
	c->next_seq = seq;
}

/* Gives up waiting for the events before the first pending one.  false:
 * the connection is gone. */
static bool conn_skip(struct conn_tracker *t, struct conn *c, uint64_t now)
{
	c->awaiting = false;	/* decided with what is known now */
	conn_give_up(t, c, c->pend[0].seq, now);
	return conn_drain(t, c, now);
}

/* Processes everything pending, gaps and all.  false: gone. */
static bool conn_flush(struct conn_tracker *t, struct conn *c, uint64_t now)
{
	while (c->n_pend)
		if (!conn_skip(t, c, now))
			return false;
	return true;
}

/* An event that could not be kept (no memory): a gap later.  A held OPEN
 * that was it leaves nothing to wait for (and the connection off the
 * waiting list, where only a wait would end).  A connection with nothing
 * known or kept is freed, not remembered: its later events make it again,
 * and it is not left where neither a wait nor the idle scan would end it.
 * -ENOMEM. */
static int pend_lost(struct conn_tracker *t, struct conn *c)
{
	if (!c->n_pend) {
		c->awaiting = false;
		if (!c->known)
			conn_free(t, c, false);
	}
	return -ENOMEM;
}

/* Keeps a copy of an early event.  The buffer is bounded: when full, the
 * oldest gap is given up first.  0 (the event applied, kept or given up,
 * the connection maybe gone), or -ENOMEM: the event could not be kept. */
static int conn_defer(struct conn_tracker *t, struct conn *c, const void *rec, size_t size,
		      uint64_t seq, uint64_t now)
{
	const struct qtap_event_header *h = rec;
	bool data = h->type == QTAP_EVENT_CONN_DATA || h->type == QTAP_EVENT_TLS_DATA;
	/* Past the byte budget, headers: room for the count of them (see
	 * CONN_REORDER_MAX_EVENTS). */
	const size_t max_bytes = CONN_REORDER_MAX_BYTES +
				 CONN_REORDER_MAX_EVENTS * sizeof(struct qtap_conn_data);
	size_t keep = size;
	bool stripped = false;	/* a payload still of use dropped */
	bool full;
	struct pending *p;
	unsigned i;

	/* Once the payload is of no use any more, the header is enough. */
	if (h->type == QTAP_EVENT_CONN_DATA && c->known && (c->ignored || !payload_wanted(c)))
		keep = sizeof(struct qtap_conn_data);
	/* Past the byte budget, the header alone: the events before are most
	 * likely on their way in another CPU's ring, and what detection
	 * reads is the first bytes, which are kept. */
	if (data && c->pend_bytes + keep > CONN_REORDER_MAX_BYTES) {
		stripped = keep > sizeof(struct qtap_conn_data);
		keep = sizeof(struct qtap_conn_data);
	}
	full = c->n_pend >= CONN_REORDER_MAX_EVENTS || c->pend_bytes + keep > max_bytes;
	/* In hand and before all that wait (the one they wait for, or one
	 * after it with the buffer full): applied, with the numbers before it
	 * given up, not it with them.  An OPEN in hand that would wait for its
	 * process's image finds no room to wait with the buffer full: it is
	 * judged by what is known now. */
	if (c->n_pend && (!c->awaiting || full) && seq >= c->next_seq && seq < c->pend[0].seq &&
	    (seq == c->next_seq || full)) {
		c->awaiting = false;
		conn_give_up(t, c, seq, now);
		if (conn_apply(t, c, rec, size, now))
			conn_drain(t, c, now);
		return 0;
	}
	while (c->n_pend &&
	       (c->n_pend >= CONN_REORDER_MAX_EVENTS || c->pend_bytes + keep > max_bytes)) {
		if (!conn_skip(t, c, now))
			return 0;
	}
	if (seq < c->next_seq)
		return 0;	/* skipped over meanwhile: too late */
	if (seq == c->next_seq && !c->awaiting) {
		if (conn_apply(t, c, rec, size, now))
			conn_drain(t, c, now);
		return 0;
	}
	/* Mostly after all the others (the CPU the thread moved to goes on
	 * while the one it left waits for its reader); else in between. */
	if (c->n_pend && seq <= c->pend[c->n_pend - 1].seq)
		for (i = 0; i < c->n_pend; i++)
			if (c->pend[i].seq == seq)
				return 0;	/* a duplicate */
	if (c->n_pend == c->cap_pend) {
		unsigned cap = c->cap_pend ? c->cap_pend * 2 : 4;
		struct pending *np = conn_malloc_hook(cap * sizeof(*np));

		if (!np)
			return pend_lost(t, c);
		if (c->n_pend)
			memcpy(np, c->pend, c->n_pend * sizeof(*np));
		free(c->pend);
		c->pend = np;
		c->cap_pend = cap;
	}
	p = c->pend + c->n_pend;
	p->rec = conn_malloc_hook(keep);
	if (!p->rec)
		return pend_lost(t, c);
	memcpy(p->rec, rec, keep);
	if (keep < size)
		((struct qtap_conn_data *)p->rec)->captured = 0;
	if (stripped)
		metrics_counter_add(t->payloads_dropped, 1);
	p->size = (uint32_t)keep;
	p->seq = seq;
	p->arrival_ns = now;
	/* keep them sorted by seq */
	for (i = c->n_pend; i > 0 && c->pend[i - 1].seq > seq; i--) {
		struct pending tmp = c->pend[i];

		c->pend[i] = c->pend[i - 1];
		c->pend[i - 1] = tmp;
	}
	if (!c->n_pend) {
		waiting_add(t, c);
		c->wait_since = now;
	} else if (now < c->wait_since) {
		c->wait_since = now;
	}
	c->n_pend++;
	c->pend_bytes += keep;
	return 0;
}

/* By process: finds one of a process's exits. */
static int exit_tgid_cmp(const void *a, const void *b)
{
	const struct exit_note *x = a, *y = b;

	return (x->tgid > y->tgid) - (x->tgid < y->tgid);
}

/* By process, then in the order heard: sorts the exits held. */
static int exit_note_cmp(const void *a, const void *b)
{
	const struct exit_note *x = a, *y = b;
	int d = exit_tgid_cmp(a, b);

	return d ? d : (x->at > y->at) - (x->at < y->at);
}

/* The exits held, applied: the connections of those processes are marked,
 * in one pass over the table.  A connection is marked with its process's
 * first exit heard, and so is one first heard of after that exit (its
 * events were still on their way, behind the exit). */
static void exits_apply(struct conn_tracker *t)
{
	size_t i;

	if (!t->n_exits)
		return;
	qsort(t->exits, t->n_exits, sizeof(t->exits[0]), exit_note_cmp);
	for (i = 0; i < ((size_t)1 << t->bits); i++) {
		struct conn *c;

		for (c = t->buckets[i]; c; c = c->hnext) {
			struct exit_note key = { 0 };
			const struct exit_note *x;

			if (c->exit_at)
				continue;
			if (c->known)
				key.tgid = c->tgid;
			else if (c->n_pend)	/* not learned yet: its first event's */
				key.tgid = ((const struct qtap_conn_data *)c->pend[0].rec)->tgid;
			else
				continue;
			x = bsearch(&key, t->exits, t->n_exits, sizeof(*x), exit_tgid_cmp);
			if (!x)
				continue;
			while (x > t->exits && x[-1].tgid == key.tgid)
				x--;	/* the first heard */
			c->exit_at = x->at;
			c->exit_ts = x->ts;
			t->exiting = true;
		}
	}
	t->n_exits = 0;
}

/* A process exited: the kernel closes its sockets without a close(2), so
 * its connections are closed here.  Not at once: the exit comes through
 * the process reader, which can be ahead of the socket readers still
 * holding the connection's last data and its close.  The connections are
 * marked at the next housekeeping, all exits heard meanwhile in one pass
 * over the table (every exit on the host comes to every worker: one pass
 * each would cost each worker its whole table, hundreds of times a second
 * on a busy host), and closed by the housekeeping once
 * CONN_EXIT_GRACE_NS passed without their own close coming in. */
static void exit_tgid(struct conn_tracker *t, uint32_t tgid, uint64_t ts, uint64_t now)
{
	if (t->n_exits == EXITS_MAX)
		exits_apply(t);
	t->exits[t->n_exits++] = (struct exit_note){ .tgid = tgid, .ts = ts, .at = now ? now : 1 };
}

/* Closes the connections whose process exited CONN_EXIT_GRACE_NS ago. */
static void exit_reap(struct conn_tracker *t, uint64_t now)
{
	bool more = false;
	size_t i;

	for (i = 0; i < ((size_t)1 << t->bits); i++) {
		struct conn *c = t->buckets[i], *next;

		for (; c; c = next) {
			next = c->hnext;
			if (!c->exit_at)
				continue;
			if (c->exit_at + CONN_EXIT_GRACE_NS > now) {
				more = true;
				continue;
			}
			/* what waits to be processed happened before the exit */
			if (!conn_flush(t, c, now))
				continue;
			if (conn_alive(t, c, now)) {
				/* another process holds it (a child it forked):
				 * it ends with its CLOSE, or idle */
				c->exit_at = 0;
				continue;
			}
			if (!c->ignored)
				conn_forget_kernel(t, c);
			if (c->ignored)
				conn_destroy(t, c);
			else
				conn_finish(t, c, CLOSE_PROCESS_EXIT,
					    c->exit_ts > c->last_ns ? c->exit_ts : c->last_ns);
		}
	}
	t->exiting = more;
}

/* An OPEN the kernel could not decide (its process was not classified
 * yet) is decided by the filters from the process's image.  When that
 * image cannot be known yet (the process exited before its exec reached
 * the process table), the OPEN and what follows wait for it. */
static void open_await(struct conn_tracker *t, struct conn *c, const struct qtap_conn_open *o,
		       uint64_t now)
{
	if (!(o->flags & QTAP_CONN_F_UNDECIDED) || !t->o.proc_settled ||
	    t->o.proc_settled(t->o.ctx, o->tgid, o->exec_gen))
		return;
	c->awaiting = true;
	c->await_since = now;
	c->await_tgid = o->tgid;
	c->await_gen = o->exec_gen;
}

static size_t record_min_size(unsigned type)
{
	if (type == PIPELINE_EVENT_EXIT)
		return sizeof(struct pipeline_exit_event);
	return qtap_sock_record_min(type) ? qtap_sock_record_min(type) : SIZE_MAX;
}

int conn_tracker_event(struct conn_tracker *t, const void *rec, size_t size, uint64_t now_ns)
{
	const struct qtap_event_header *h = rec;
	uint64_t id, seq;
	struct conn *c;

	if (size < sizeof(*h) || size < record_min_size(h->type))
		return -EINVAL;
	if (h->type == PIPELINE_EVENT_EXIT) {
		const struct pipeline_exit_event *x = rec;

		exit_tgid(t, x->tgid, x->timestamp_ns, now_ns);
		return 0;
	}
	/* conn_id and seq sit at the same place in the three records */
	id = ((const struct qtap_conn_open *)rec)->conn_id;
	seq = ((const struct qtap_conn_open *)rec)->seq;
	if (h->type == QTAP_EVENT_CONN_OPEN && seq != 0)
		return -EINVAL;
	if ((h->type == QTAP_EVENT_CONN_DATA || h->type == QTAP_EVENT_TLS_DATA) &&
	    ((const struct qtap_conn_data *)rec)->dir > QTAP_DATA_RECV)
		return -EINVAL;
	c = table_find(t, id);
	if (!c) {
		/* a straggler of a connection already closed */
		if (recent_has(t, id))
			return 0;
		c = conn_create(t, id);
		if (!c)
			return -ENOMEM;
	}
	if (seq < c->next_seq)
		return 0;	/* given up as a gap already */
	if (h->type == QTAP_EVENT_CONN_OPEN && !c->known && !c->awaiting)
		open_await(t, c, rec, now_ns);
	if (seq == c->next_seq && !c->n_pend && !c->awaiting) {
		conn_apply(t, c, rec, size, now_ns);
		return 0;
	}
	return conn_defer(t, c, rec, size, seq, now_ns);
}

void conn_tracker_housekeep(struct conn_tracker *t, uint64_t now_ns)
{
	struct conn *c, *next;

	refresh_wall_offset(t);
	exits_apply(t);
	if (t->exiting)
		exit_reap(t, now_ns);
	for (c = t->waiting; c; c = next) {
		bool alive = true;

		next = c->wnext;
		if (c->awaiting) {
			if (c->await_since + PROC_WAIT_NS > now_ns &&
			    !t->o.proc_settled(t->o.ctx, c->await_tgid, c->await_gen))
				continue;
			c->awaiting = false;
			alive = conn_drain(t, c, now_ns);
		}
		while (alive && c->n_pend && c->wait_since + CONN_REORDER_WAIT_NS <= now_ns)
			alive = conn_skip(t, c, now_ns);
	}
	if (now_ns - t->last_idle_scan >= IDLE_SCAN_NS) {
		size_t i;

		t->last_idle_scan = now_ns;
		for (i = 0; i < ((size_t)1 << t->bits); i++) {
			for (c = t->buckets[i]; c; c = next) {
				next = c->hnext;
				if (!c->known || c->n_pend || c->last_ns + t->o.idle_timeout_ns > now_ns ||
				    c->alive_ns + t->o.idle_timeout_ns > now_ns)
					continue;
				/* silent, not gone (a pool's spare connection) */
				if (conn_alive(t, c, now_ns))
					continue;
				/* gone: its CLOSE may be on the way still */
				if (c->gone_ns <= c->last_ns || c->gone_ns <= c->alive_ns) {
					c->gone_ns = now_ns;
					continue;
				}
				if (c->gone_ns + CONN_IDLE_GRACE_NS > now_ns)
					continue;
				conn_forget_kernel(t, c);
				if (c->ignored)
					conn_destroy(t, c);
				else
					conn_finish(t, c, CLOSE_IDLE, c->last_ns);
			}
		}
	}
}

size_t conn_tracker_count(const struct conn_tracker *t)
{
	return t->count;
}

struct conn_tracker *conn_tracker_new(const struct conn_tracker_opts *opts)
{
	static const char *const tls_label[1] = { "tls" };
	struct conn_tracker *t;
	int p;

	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->o = *opts;
	if (!t->o.idle_timeout_ns)
		t->o.idle_timeout_ns = DEFAULT_IDLE_NS;
	snprintf(t->proc_root, sizeof(t->proc_root), "%s",
		 opts->proc_root ? opts->proc_root : "/proc");
	t->o.proc_root = t->proc_root;
	t->netns = proc_netns(t->proc_root, "self");
	t->bits = 10;
	t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	/* Failed lookups leave NULL handles, which updates ignore. */
	t->gaps = metrics_series_get(t->o.store, M_SYSTEM_SEQUENCE_GAPS_TOTAL, NULL);
	t->payloads_dropped = metrics_series_get(t->o.store, M_SYSTEM_PAYLOADS_DROPPED_TOTAL,
						 NULL);
	t->tls_errors = metrics_series_get(t->o.store, M_SYSTEM_PARSE_ERRORS_TOTAL, tls_label);
	t->tracked = metrics_series_get(t->o.store, M_SYSTEM_CONNECTIONS_TRACKED, NULL);
	for (p = L7_HTTP1; p <= L7_OTHER; p++) {
		const char *v[1] = { l7_protocol_name((enum l7_protocol)p) };

		t->proto[p] = metrics_series_get(t->o.store, M_CONNECTION_PROTOCOL_TOTAL, v);
	}
	t->proto[L7_UNKNOWN] = t->proto[L7_OTHER];
	refresh_wall_offset(t);
	return t;
}

void conn_tracker_free(struct conn_tracker **tp, uint64_t now_ns)
{
	struct conn_tracker *t;
	size_t i;

	if (!tp || !*tp)
		return;
	t = *tp;
	/* Connections whose process exited are closed by that exit, however
	 * little of the grace has passed. */
	exits_apply(t);
	if (t->exiting)
		exit_reap(t, UINT64_MAX - CONN_EXIT_GRACE_NS);
	for (i = 0; i < ((size_t)1 << t->bits); i++) {
		struct conn *c;

		while ((c = t->buckets[i])) {
			if (!conn_flush(t, c, now_ns))
				continue;
			if (c->ignored || !c->known)
				conn_destroy(t, c);
			else
				conn_finish(t, c, CLOSE_AGENT_STOP, now_ns);
		}
	}
	peers_clear(t);
	for (i = 0; i < LISTEN_SETS; i++)
		free(t->listen[i].v);
	buf_free(&t->report);
	free(t->buckets);
	free(t);
	*tp = NULL;
}

/* Parsing: the pipeline from the capture readers to the parser workers,
 * the connection tracker each worker runs, and the protocol parsers.
 *
 * Threads:
 * - producers: the per-CPU capture readers (and the process-event reader)
 *   each own one producer index and call pipeline_submit() with it; never
 *   two threads with one index.
 * - workers: started by pipeline_new(), one connection tracker each; a
 *   connection always goes to the same worker (hash of its conn_id), which
 *   restores kernel order with the sequence numbers.  Workers are metric
 *   writers and RCU-registered.
 * - the main thread creates and frees the pipeline. */
#ifndef QTAP_PARSE_PARSE_H
#define QTAP_PARSE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics_store;
struct capture_proc_info;
struct capture_trace;

/* --- detect.c: which protocol a connection speaks ----------------------- */

enum l7_protocol {
	L7_UNKNOWN,	/* not decided yet (too few bytes) */
	L7_HTTP1,
	L7_HTTP2,
	L7_TLS,
	L7_OTHER,
};

/* "http1", "http2", "tls", "other" ("other" for L7_UNKNOWN too): the
 * protocol label values. */
const char *l7_protocol_name(enum l7_protocol p);

/* Decides from the first bytes of a connection in one direction (client
 * to server or server to client): an HTTP/1 request line or status line,
 * the HTTP/2 connection preface, a TLS handshake record.  L7_UNKNOWN when
 * more bytes are needed to tell; L7_OTHER when it cannot be any of them. */
enum l7_protocol detect_protocol(const uint8_t *data, size_t len);

/* The PROXY protocol header (versions 1 and 2) a load balancer or proxy
 * puts before a client's first bytes, at data: its length (the version 1
 * line through its CRLF, 107 bytes at most; version 2's 16 bytes and the
 * addresses and TLVs they announce, which may run past len); 0 when data
 * does not start one; -1 when more bytes are needed to tell. */
long detect_proxy_header(const uint8_t *data, size_t len);

/* --- tls.c: ClientHello and ServerHello from the wire ---------------------- */

#define TLS_SNI_MAX 256
#define TLS_VERSIONS_MAX 16
#define TLS_ALPN_MAX 32

struct tls_hello_info {
	bool client_hello;		/* a ClientHello was parsed */
	bool server_hello;		/* a ServerHello was parsed */
	char sni[TLS_SNI_MAX];		/* server_name, "" when none */
	uint16_t offered[TLS_VERSIONS_MAX]; /* supported_versions, GREASE removed,
					     * else the legacy version */
	unsigned n_offered;
	uint16_t version;		/* negotiated: ServerHello supported_versions,
					 * else its legacy version; 0 before */
	char alpn[TLS_ALPN_MAX];	/* protocol the server selected, "" when none */
};

/* Reassembles the handshake records of one direction across data events
 * (a record or a hello split over several reads) and parses the hello it
 * carries.  Embedded in a connection; zero-initialised is ready.  The
 * reassembly buffer is allocated on the first partial record and freed as
 * soon as the hello is parsed (or the stream is given up), so a connection
 * past its handshake costs nothing here. */
struct tls_stream {
	uint8_t *buf;
	size_t len;
	size_t cap;
	bool done;	/* hello parsed, or not TLS: further bytes are ignored */
};

enum tls_feed_result {
	TLS_FEED_MORE,		/* keep feeding */
	TLS_FEED_DONE,		/* the hello was parsed into info */
	TLS_FEED_ERROR,		/* malformed or not a handshake: stop */
};

/* Feeds bytes of the client's (from_client) or the server's direction. */
enum tls_feed_result tls_stream_feed(struct tls_stream *s, const uint8_t *data, size_t len,
				     bool from_client, struct tls_hello_info *info);
/* Frees the reassembly buffer; the stream is zeroed. */
void tls_stream_release(struct tls_stream *s);
/* "TLSv1.0" ... "TLSv1.3", "SSLv3", or "unknown". */
const char *tls_version_name(uint16_t version);

/* --- pipeline.c: readers -> SPSC queues -> workers ------------------------- */

struct pipeline;

/* Looks up a process (exe, comm) for the tracker, as it ran in its exec
 * generation gen or a later one (0: as the process table has it); any
 * RCU-registered thread.  0, or -ENOENT. */
typedef int (*pipeline_proc_lookup_fn)(void *ctx, uint32_t tgid, uint32_t gen,
				       struct capture_proc_info *ret);
/* A connection the tracker asks the capture about: its kernel entry (key
 * and conn_id, from its OPEN; key 0: unknown), whether its socket is in
 * another network namespace than the agent's (a container's), the
 * interface it is bound to (0: none), and its endpoints (family AF_INET
 * or AF_INET6; addresses 4 or 16 bytes, ports in host order). */
struct pipeline_conn_ref {
	uint64_t key, conn_id;
	bool foreign_netns;
	uint32_t ifindex;
	int family;
	const uint8_t *laddr, *raddr;
	uint16_t lport, rport;
};
/* Tells the capture that the tracker forgot a connection the kernel may
 * still hold (process exited, idle timeout), so its kernel entry can be
 * dropped: only while it is still that connection's (key and conn_id,
 * from its OPEN).  Worker threads. */
typedef void (*pipeline_conn_forget_fn)(void *ctx, uint64_t key, uint64_t conn_id);
/* Tells the capture what the tracker found of a connection learned in the
 * middle (its OPEN had QTAP_DIR_UNKNOWN): its direction, and whether the
 * filters leave it out (skip), for its kernel entry (key and conn_id, from
 * its OPEN).  Worker threads. */
typedef void (*pipeline_conn_learned_fn)(void *ctx, uint64_t key, uint64_t conn_id,
					 uint8_t direction, bool skip);
/* Whether the kernel still has the connection open: one silent for the
 * idle timeout, or whose process exited, is kept while it does (it is
 * idle, or another process holds it), and closed once it does not.  false
 * when it cannot tell.  Worker threads. */
typedef bool (*pipeline_conn_alive_fn)(void *ctx, const struct pipeline_conn_ref *c);
/* Whether connections of this process are traced, for the connections the
 * kernel could not decide (the process was not classified yet, or the
 * connection was open before the agent).  exe is NULL when the process
 * table does not know it yet.  Worker threads, inside no RCU read-side
 * section. */
typedef bool (*pipeline_conn_wanted_fn)(void *ctx, uint32_t tgid, const char *exe,
					const char *comm);
/* Whether the image a process ran in its exec generation gen can be known
 * now (see struct qtap_conn_open.exec_gen): a connection the kernel could
 * not decide waits for it, so that a process that exits before its exec
 * reaches the process table is still judged by the right image.  Worker
 * threads. */
typedef bool (*pipeline_proc_settled_fn)(void *ctx, uint32_t tgid, uint32_t gen);

struct pipeline_opts {
	unsigned n_producers;		/* capture readers, >= 1 */
	unsigned n_workers;		/* 0: one per CPU, at most 8 */
	size_t queue_bytes;		/* per producer-worker queue; 0:
					 * pipeline_queue_bytes_auto() */
	unsigned idle_timeout_s;	/* connections silent this long are
					 * reaped; 0: 300 */
	struct metrics_store *store;
	pipeline_proc_lookup_fn proc_lookup;
	pipeline_conn_forget_fn conn_forget;
	pipeline_conn_learned_fn conn_learned;	/* NULL: not told */
	pipeline_conn_alive_fn conn_alive;	/* NULL: never asked (gone) */
	pipeline_conn_wanted_fn conn_wanted;	/* NULL: every connection is */
	pipeline_proc_settled_fn proc_settled;	/* NULL: always */
	void *ctx;			/* for the callbacks */
	const struct capture_trace *trace; /* --bpf-trace, or NULL */
};

/* The size of each queue when none is given: PIPELINE_QUEUE_BYTES, halved
 * while the n_producers * n_workers queues together would take more than
 * PIPELINE_QUEUES_TOTAL, down to PIPELINE_QUEUE_BYTES_MIN.  A queue's pages
 * are all resident once that many bytes have gone through it, and a large
 * host has hundreds of queues. */
#define PIPELINE_QUEUE_BYTES (4u << 20)
#define PIPELINE_QUEUES_TOTAL (256u << 20)
#define PIPELINE_QUEUE_BYTES_MIN (256u << 10)
size_t pipeline_queue_bytes_auto(unsigned n_producers, unsigned n_workers);

/* Starts the workers.  NULL and errno. */
struct pipeline *pipeline_new(const struct pipeline_opts *opts);
/* How many workers run, and (*queue_bytes) the size of each queue. */
unsigned pipeline_workers(const struct pipeline *p, size_t *queue_bytes);
/* Stops after the workers processed everything queued; reports the
 * connections still open.  Accepts NULL and clears *p. */
void pipeline_free(struct pipeline **p);

/* Queues a copy of one kernel event (a struct qtap_conn_* record) for the
 * worker of its connection.  Producer thread `producer` only.  0, or
 * -ENOBUFS when that worker's queue is full: the event is dropped and
 * counted (qtap_system_queue_dropped_total{worker}), and the worker sees
 * the sequence gap. */
int pipeline_submit(struct pipeline *p, unsigned producer, const void *event, size_t size);
/* A process exited (at timestamp_ns, the kernel's CLOCK_MONOTONIC): every
 * worker closes the connections of tgid. */
int pipeline_submit_exit(struct pipeline *p, unsigned producer, uint32_t tgid,
			 uint64_t timestamp_ns);
/* Wakes the workers that have new events from this producer; call after a
 * batch (one ring buffer drain), not per event. */
void pipeline_flush(struct pipeline *p, unsigned producer);

#endif

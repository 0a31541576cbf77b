/* Private header of src/parse/, one section per file. */
#ifndef QTAP_PARSE_PARSE_INT_H
#define QTAP_PARSE_PARSE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parse/parse.h"

/* --- spsc.c ------------------------------------------------------------
 * A lock-free single-producer single-consumer queue of variable-size
 * records in a byte ring of fixed capacity (a power of two).  Each record
 * is an 8-byte header (its length) followed by the payload, padded to 8
 * bytes; a record that does not fit before the end of the ring is preceded
 * by a wrap marker and starts again at offset 0, so every record is
 * contiguous.
 *
 * Threads: exactly one producer (spsc_reserve, spsc_commit) and one
 * consumer (spsc_peek, spsc_release); spsc_depth_* from either (from a
 * third thread they may count records that moved while they read).  The
 * producer publishes head with a release store that the consumer reads
 * with an acquire load, and the other way round for tail; each side keeps
 * a cached copy of the other's index and reloads it only when the cached
 * one says full (producer) or empty (consumer). */
struct spsc;

/* capacity: bytes, a power of two >= 64.  NULL and errno. */
struct spsc *spsc_new(size_t capacity);
/* No concurrent user.  Accepts NULL and clears *q. */
void spsc_free(struct spsc **q);

/* The largest payload one record may carry in a queue of this capacity. */
size_t spsc_max_record(const struct spsc *q);

/* Producer: room for size bytes, 8-byte aligned, or NULL when the queue
 * is full (or size > spsc_max_record()).  Nothing is visible to the
 * consumer before spsc_commit(); a reservation not committed is dropped by
 * the next spsc_reserve(). */
void *spsc_reserve(struct spsc *q, size_t size);
/* Publishes the record reserved last. */
void spsc_commit(struct spsc *q);

/* Consumer: the oldest record and its size, or NULL when empty.  The
 * record stays valid until spsc_release(). */
void *spsc_peek(struct spsc *q, size_t *ret_size);
/* Drops the record spsc_peek() returned. */
void spsc_release(struct spsc *q);

/* Bytes (headers and padding included) and records in the queue; any
 * thread, a snapshot. */
size_t spsc_depth_bytes(const struct spsc *q);
size_t spsc_depth_records(const struct spsc *q);

/* --- conn.c ------------------------------------------------------------
 * The connection tracker: one per parser worker, touched by that worker's
 * thread only (no locks).  It restores the kernel order of each
 * connection's events with their sequence numbers, keeps the connection
 * metrics and writes the connection report.
 *
 * Time: every entry point takes now_ns, CLOCK_MONOTONIC in nanoseconds,
 * the clock the kernel stamps events with (bpf_ktime_get_ns). */

/* Internal record of the pipeline: a process exited (hdr.type). */
#define PIPELINE_EVENT_EXIT 0xfff0

struct pipeline_exit_event {
	uint16_t version;
	uint16_t type;		/* PIPELINE_EVENT_EXIT */
	uint32_t tgid;
	uint64_t timestamp_ns;	/* CLOCK_MONOTONIC */
};

/* Reorder bounds of one connection, and how long a missing event is
 * waited for before it is counted as a gap.  A thread that moves to
 * another CPU leaves its last events in the old CPU's stage and ring,
 * which another reader takes at its own poll, up to about 25 ms later
 * (more when a loaded host leaves that reader unscheduled), while the new
 * CPU's go on: one keep-alive connection on loopback moves some 50000
 * requests a second, 2500 events in 25 ms; a bulk transfer moves 256 KiB
 * in well under 1 ms.  So the count allows 3072, and the bytes 256 KiB: a
 * data event waits with its payload only while the payload is of use (the
 * protocol not known yet, or TLS hellos still to read), and past the byte
 * budget without it, with room for 3072 headers besides; the wait bounds
 * the rest.  A reader that had just gone to sleep on an idle CPU can hold
 * an event up to 1 s (SOCK_SLEEP_MS in capture/sock.c): the wait is twice
 * that.  A real loss is rare and is also seen in the kernel's own count,
 * so waiting long costs little, while giving up the first events of a
 * connection (its OPEN, the request that tells its protocol) would lose
 * what it is. */
#define CONN_REORDER_MAX_EVENTS 3072
#define CONN_REORDER_MAX_BYTES (256u << 10)
#define CONN_REORDER_WAIT_NS (2000ull * 1000 * 1000)
/* How long the connections of an exited process wait for their own close,
 * which the socket readers may still hold (as long as an event waits for
 * the reorder: the same readers). */
#define CONN_EXIT_GRACE_NS CONN_REORDER_WAIT_NS
/* How long a connection silent for the idle timeout, which the kernel says
 * is gone, waits for its own CLOSE before it is closed as idle: a close at
 * the end of a long silence (a peer's or a pool's own idle timeout, often
 * the same 300 s) leaves its CLOSE and last events in a ring or a queue
 * for a while, as long as an event waits for the reorder. */
#define CONN_IDLE_GRACE_NS CONN_REORDER_WAIT_NS

struct conn_tracker_opts {
	struct metrics_store *store;
	unsigned worker;		/* index, for nothing but logs */
	uint64_t idle_timeout_ns;	/* 0: 300 s */
	pipeline_proc_lookup_fn proc_lookup;
	pipeline_conn_forget_fn conn_forget;
	pipeline_conn_learned_fn conn_learned;
	pipeline_conn_alive_fn conn_alive;
	pipeline_conn_wanted_fn conn_wanted;
	pipeline_proc_settled_fn proc_settled;
	void *ctx;
	const struct capture_trace *trace;
	/* Where /proc/net/tcp{,6} are looked for (tests); NULL: "/proc". */
	const char *proc_root;
};

struct conn_tracker;

/* The calling thread must be RCU-registered (series lookups) and should
 * be a metrics writer.  NULL and errno. */
struct conn_tracker *conn_tracker_new(const struct conn_tracker_opts *opts);
/* Closes and reports every connection still open (closeReason
 * "agent_stop"), after processing whatever waits in the reorder buffers,
 * then frees.  Accepts NULL and clears *t. */
void conn_tracker_free(struct conn_tracker **t, uint64_t now_ns);

/* One record: a struct qtap_conn_open / qtap_conn_data (+ payload) /
 * qtap_conn_close, or a struct pipeline_exit_event.  The record is only
 * read during the call (copied when it has to wait).  0, or -EINVAL for a
 * malformed record. */
int conn_tracker_event(struct conn_tracker *t, const void *rec, size_t size, uint64_t now_ns);
/* Timeouts: missing events waited for long enough become gaps, idle
 * connections are reaped.  Call every ~100 ms (CONN_HOUSEKEEP_NS). */
#define CONN_HOUSEKEEP_NS (100ull * 1000 * 1000)
void conn_tracker_housekeep(struct conn_tracker *t, uint64_t now_ns);
/* Connections in the table (waiting ones included). */
size_t conn_tracker_count(const struct conn_tracker *t);

/* Formats an address (4 or 16 bytes by family) the way labels and reports
 * show it: dotted IPv4, RFC 5952 IPv6, v4-mapped IPv6 as IPv4.  buf of at
 * least 46 bytes; returns buf. */
char *conn_addr_format(int family, const uint8_t *addr, char *buf, size_t size);

/* The 64-bit mix (murmur3's finalizer) that spreads conn_ids over the
 * workers (low bits) and over a worker's table (high bits). */
static inline uint64_t conn_id_hash(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* Hot-path allocations go through these (tests make them fail). */
extern void *(*conn_malloc_hook)(size_t size);

#endif

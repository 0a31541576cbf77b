/* TCP connections at the system call layer: bpf/sock.bpf.c emits these
 * events into one ring buffer per CPU; src/capture/ reads them and the
 * parser workers (src/parse/) rebuild each connection.  See event.h for
 * the ABI rules.
 *
 * A connection is one TCP socket (struct sock), whichever fds and
 * processes use it.  Every event of a connection carries its conn_id
 * (unique on the host for the agent's life) and a sequence number: OPEN is
 * 0, and each later event of the connection takes the next number, in the
 * order the kernel saw them, whichever CPU they ran on.  A number taken by
 * an event that could not be written (ring full) is never reused: the
 * worker sees the gap. */
#ifndef QTAP_BPF_SOCK_H
#define QTAP_BPF_SOCK_H

#include "event.h"

/* Payload bytes copied into one data event at most (a power of two). */
#define QTAP_DATA_MAX 16384
/* On a connection that starts with a TLS record, payload is copied for
 * this many bytes per direction (the handshake: ClientHello, ServerHello),
 * then only byte counts: the plaintext comes from the TLS library probes. */
#define QTAP_TLS_HELLO_BYTES 8192
/* Default size of each per-CPU ring buffer (set before load). */
#define QTAP_SOCK_RINGBUF_BYTES (4u << 20)
/* Connections tracked by the kernel side at once (set before load). */
#define QTAP_SOCK_MAX_CONNS 65536

/* qtap_conn_open.direction */
#define QTAP_DIR_UNKNOWN 0	/* open before the agent: decided in user space */
#define QTAP_DIR_EGRESS 1	/* this process connected */
#define QTAP_DIR_INGRESS 2	/* this process accepted */

/* qtap_conn_open.flags */
#define QTAP_CONN_F_PREEXISTING (1u << 0)	/* learned on its first data */
/* The process had no tgid_filter entry for the image it runs (it was just
 * forked or exec'd and the agent has not classified it): the connection is
 * traced and user space decides, so that nothing of an allowed process is
 * missed. */
#define QTAP_CONN_F_UNDECIDED (1u << 1)

/* qtap_conn_data.dir */
#define QTAP_DATA_SEND 0
#define QTAP_DATA_RECV 1

/* qtap_conn_data.op: the system call */
#define QTAP_OP_READ 1
#define QTAP_OP_WRITE 2
#define QTAP_OP_READV 3
#define QTAP_OP_WRITEV 4
#define QTAP_OP_SENDTO 5
#define QTAP_OP_RECVFROM 6
#define QTAP_OP_SENDMSG 7
#define QTAP_OP_RECVMSG 8
#define QTAP_OP_SENDFILE 9
/* Another path into the socket (recvmmsg, io_uring, a splice into it, the
 * kernel): byte counts only.  (A splice out of a TCP socket makes no
 * socket call: not seen.) */
#define QTAP_OP_OTHER 10

/* qtap_conn_data.op of a QTAP_EVENT_TLS_DATA: the library function whose
 * plaintext the event carries (the _ex variants report as the plain ones). */
#define QTAP_OP_SSL_READ 16
#define QTAP_OP_SSL_WRITE 17
#define QTAP_OP_GNUTLS_RECV 18
#define QTAP_OP_GNUTLS_SEND 19

/* The attach cookie of the TLS library entry probe (tls_enter: one program
 * for every function, attached with uprobe_multi links, one cookie per
 * function): bits 0-7 the QTAP_OP_SSL_* or QTAP_OP_GNUTLS_* of the call, or
 * QTAP_TLS_OP_TIE for a handshake (it moves no plaintext, but its socket
 * calls tie the session to its connection before the first read, which
 * the library may serve from what it buffered during the handshake);
 * QTAP_TLS_COOKIE_EX: the count comes back through the size_t * of the 4th
 * argument (SSL_read_ex, SSL_write_ex); QTAP_TLS_COOKIE_LINKED: the
 * library is linked into an executable (node). */
#define QTAP_TLS_OP_TIE 0xff
#define QTAP_TLS_COOKIE_OP 0xffu
#define QTAP_TLS_COOKIE_EX (1u << 8)
#define QTAP_TLS_COOKIE_LINKED (1u << 9)

/* fd of an event whose call did not name one (QTAP_OP_OTHER) */
#define QTAP_FD_UNKNOWN 0xffffffffu

/* qtap_conn_data.flags */
#define QTAP_DATA_F_TRUNCATED (1u << 0)	/* captured < len: cap reached */
#define QTAP_DATA_F_NO_PAYLOAD (1u << 1)	/* payload not copied any more */
/* TLS data: the library is linked into the executable (node), not a
 * shared library. */
#define QTAP_DATA_F_LINKED (1u << 2)

/* qtap_conn_close.flags */
/* The socket was connected again (connect() after a disconnect): the
 * connection ends, and the next one on the socket is a new connection. */
#define QTAP_CLOSE_F_REPLACED (1u << 0)
/* A new socket took the socket's address before its end was seen (the
 * kernel skipped the program that sees it): the connection ends there. */
#define QTAP_CLOSE_F_REUSED (1u << 1)
/* The programs write nothing more of the connection, whose socket may
 * live on: the filters leave it out.  One learned in the middle
 * (QTAP_DIR_UNKNOWN) that the agent found left out (struct qtap_learned),
 * or, with QTAP_CLOSE_F_FILTERED, one whose own process the filters now
 * leave out (a reload's new filters, an exec into a left-out program). */
#define QTAP_CLOSE_F_SKIPPED (1u << 2)
#define QTAP_CLOSE_F_FILTERED (1u << 3)

/* struct conn_state.state */
#define CONN_PENDING 0	/* not reported yet: its process or its handshake to come */
#define CONN_OPEN 1	/* OPEN written: its calls are events */
#define CONN_SKIPPED 2	/* the filters left it out */
#define CONN_CLOSED 3	/* CLOSE written (its last fd closed): the kernel still ends it */
#define CONN_RENEWING 4	/* SKIPPED, made a new connection by one thread (then PENDING) */

/* One TCP socket the kernel side knows, keyed by its struct sock: the
 * value of the conns map, whose conn_id and state the agent reads to tell
 * whether a connection it has not heard from is still open.  Written
 * by the threads calling on it and by the softirq that moves its state:
 * the counters with atomic adds, the state with compare-and-swap (the one
 * that moves it out of PENDING writes the OPEN), the classification with
 * plain stores (a lost race copies a few bytes more or less, never out of
 * bounds). */
struct conn_state {
	__u64 conn_id;
	__u64 seq;		/* next sequence number */
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u64 open_ns;		/* when it was established (or learned) */
	__u64 tls_ctx;		/* the SSL * or session tied to it; 0: none yet */
	__u64 state;		/* CONN_* (64 bits for compare-and-swap) */
	/* SKIPPED: the filter_gen counter << 32 | the tgid it was last found
	 * left out for, in one word (written whole, read whole); OPEN: the
	 * same for the process it was last found traced for; 0: none. */
	__u64 verdict;
	__u32 action;		/* SKIPPED: the tgid_filter value it was decided under */
	__u32 tgid;		/* its process; 0 until known */
	__u32 pid;
	__u32 fd;
	__u32 tls_copied[2];	/* TLS: payload bytes copied per direction */
	__u8 direction;		/* QTAP_DIR_* */
	__u8 flags;		/* QTAP_CONN_F_* of its OPEN */
	__u8 class;		/* CLASS_* */
	__u8 seen[2];		/* a data event went out in this direction */
	__u8 unknown_events;
	__u8 tls_probed;	/* a TLS library call used it */
	__u8 proxy_header;	/* its first bytes were a PROXY protocol header */
	__u8 pad[4];
	char comm[QTAP_COMM_LEN];
};

/* The agent's word on a connection whose OPEN had QTAP_DIR_UNKNOWN (open
 * before the agent): the direction it found from the host's listening
 * ports, and whether the filters leave the connection out.  Written to the
 * learned map under the OPEN's key; the connection's next call takes it,
 * if conn_id is still the connection's there. */
struct qtap_learned {
	__u64 conn_id;
	__u8 direction;		/* QTAP_DIR_EGRESS or QTAP_DIR_INGRESS */
	__u8 skip;		/* left out: SKIPPED from then on, after a
				 * CLOSE with QTAP_CLOSE_F_SKIPPED */
	__u8 pad[6];
};

/* Whether a peer address is loopback (127.0.0.0/8, ::1), and whether it
 * is internal, what tap.direction egress-internal keeps and egress-external
 * leaves out: loopback, private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
 * fc00::/7), link-local (169.254.0.0/16, fe80::/10) or shared
 * (100.64.0.0/10, carrier-grade NAT).  a: 4 bytes when v4, else 16 (a
 * v4-mapped one given as its IPv4 address).  One definition for the
 * programs and the agent, which decides for connections the programs could
 * not. */
static inline __attribute__((always_inline)) int qtap_addr_loopback(int v4, const __u8 *a)
{
	int i;

	if (v4)
		return a[0] == 127;
	for (i = 0; i < 15; i++)
		if (a[i])
			return 0;
	return a[15] == 1;
}

static inline __attribute__((always_inline)) int qtap_addr_internal(int v4, const __u8 *a)
{
	if (qtap_addr_loopback(v4, a))
		return 1;
	if (v4)
		return a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
		       (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
		       (a[0] == 100 && (a[1] & 0xc0) == 64);
	return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* Address of either family: IPv4 in the first 4 bytes (network order),
 * IPv6 in all 16.  v4-mapped IPv6 addresses are reported as IPv4. */
/* OPEN: written when the connection is first known with its process: at
 * the end of the handshake for a connect() (the process that called it),
 * at the first call of a process on an accepted socket (that process), or
 * at the first call on a socket older than the agent (PREEXISTING).  Its
 * timestamp is the end of the handshake when the kernel saw it. */
struct qtap_conn_open {
	struct qtap_event_header hdr;
	__u64 conn_id;
	__u64 seq;		/* 0 */
	__u32 tgid;
	__u32 pid;		/* thread */
	__u32 fd;
	__u16 family;		/* AF_INET or AF_INET6 */
	__u8 direction;		/* QTAP_DIR_* */
	__u8 flags;		/* QTAP_CONN_F_* */
	__u16 lport;		/* host order */
	__u16 rport;
	/* The process's exec generation when the connection was decided:
	 * with QTAP_CONN_F_UNDECIDED, the agent decides it from the image of
	 * that generation, once its process table has the exec or /proc
	 * still names it (at most 3 s later). */
	__u32 exec_gen;
	/* The socket's network namespace: its inode number, as
	 * /proc/PID/ns/net shows it. */
	__u32 netns;
	/* The interface the socket is bound to (SO_BINDTODEVICE, a VRF, an
	 * IPv6 link-local peer's scope); 0: none. */
	__u32 bound_dev_if;
	/* The kernel's key of the connection (opaque): the agent gives it
	 * back to drop the connection from the kernel's table, and looks its
	 * entry up there (struct conn_state). */
	__u64 key;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[QTAP_COMM_LEN];
};

/* Followed by captured bytes of payload (the first bytes the call moved).
 * QTAP_EVENT_CONN_DATA: a system call on the socket (ciphertext on a TLS
 * connection); QTAP_EVENT_TLS_DATA: a TLS library call on the connection,
 * with its plaintext (op QTAP_OP_SSL_* or QTAP_OP_GNUTLS_*), numbered in
 * the same sequence: the socket calls a TLS read or write made come before
 * it. */
struct qtap_conn_data {
	struct qtap_event_header hdr;
	__u64 conn_id;
	__u64 seq;
	__u32 tgid;
	__u32 pid;
	__u32 fd;
	__u8 dir;		/* QTAP_DATA_SEND or QTAP_DATA_RECV */
	__u8 op;		/* QTAP_OP_* */
	__u16 flags;		/* QTAP_DATA_F_* */
	__u32 len;		/* bytes the call moved (its return value) */
	__u32 captured;		/* payload bytes that follow, <= QTAP_DATA_MAX */
	/* The connection's byte totals at the socket layer when the event was
	 * written (before a CONN_DATA's own len).  On a TLS connection whose
	 * plaintext the probes give, socket calls that carry no payload any
	 * more write no event: their bytes show in the next event's totals. */
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u8 payload[];
};

/* CLOSE: when the kernel destroys the socket (every fd closed and TCP
 * done with it), or when the socket is connected again.  tgid, pid and fd
 * are the connection's (its OPEN's), not the closing context's. */
struct qtap_conn_close {
	struct qtap_event_header hdr;
	__u64 conn_id;
	__u64 seq;
	__u32 tgid;
	__u32 pid;
	__u32 fd;
	__u32 flags;		/* QTAP_CLOSE_F_* */
	/* Totals the kernel counted, whatever reached user space: the
	 * worker makes up the difference of lost data events with them. */
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u64 data_events;	/* data events numbered (written or lost) */
};

/* Small data events are gathered per CPU in its stage (the stage array
 * map, one struct qtap_stage per CPU, which the agent maps read-only) and
 * written to the ring together, as one QTAP_EVENT_BATCH record, once the
 * stage holds QTAP_STAGE_FLUSH_BYTES or its first event is
 * QTAP_STAGE_MAX_NS old when the next one comes; the agent has a quiet
 * CPU's stage written (the sock_flush program, run on that CPU) once its
 * first event is that old. */
#define QTAP_STAGE_FLUSH_BYTES 4096
#define QTAP_STAGE_BYTES 8192
#define QTAP_STAGE_MAX_NS (2ull * 1000 * 1000)
/* Events in a batch start at offsets that are multiples of this. */
#define QTAP_BATCH_ALIGN 8

/* A QTAP_EVENT_BATCH record: events records (CONN_DATA), bytes in all,
 * follow it. */
struct qtap_batch {
	struct qtap_event_header hdr;
	__u32 events;
	__u32 bytes;
};

/* A multiple of 64 bytes: each CPU's counts sit on lines of their own. */
struct qtap_stage {
	__u64 busy;		/* a program of this CPU is writing it */
	__u32 events;		/* events gathered */
	__u32 used;		/* their bytes, after the batch header */
	__u64 first_ns;		/* when the first was gathered (CLOCK_MONOTONIC) */
	/* Set by the CPU's reader before it sleeps without its timed polls
	 * (its rings and stages empty for a while); the next event of the
	 * CPU is written to the ring at once with a wakeup, and clears it. */
	__u32 reader_asleep;
	__u8 pad2[36];
	__u8 buf[QTAP_STAGE_BYTES];	/* struct qtap_batch, then the events */
};

/* The smallest size of a record of this type; 0 for a type not here.
 * The readers and the workers check every record against it. */
static inline __u32 qtap_sock_record_min(__u32 type)
{
	switch (type) {
	case QTAP_EVENT_CONN_OPEN:
		return sizeof(struct qtap_conn_open);
	case QTAP_EVENT_CONN_DATA:
	case QTAP_EVENT_TLS_DATA:
		return sizeof(struct qtap_conn_data);
	case QTAP_EVENT_CONN_CLOSE:
		return sizeof(struct qtap_conn_close);
	}
	return 0;
}

/* The kernel-side configuration (array map sock_config, key 0), written by
 * the agent at start and on reload. */
#define QTAP_CFG_DIR_ALL 0
#define QTAP_CFG_DIR_INGRESS 1
#define QTAP_CFG_DIR_EGRESS 2
#define QTAP_CFG_DIR_EGRESS_INTERNAL 3
#define QTAP_CFG_DIR_EGRESS_EXTERNAL 4

struct qtap_sock_config {
	__u32 direction;	/* QTAP_CFG_DIR_* */
	__u32 ignore_loopback;	/* 1: connections to 127/8 and ::1 are ignored */
	__u32 include_dns;	/* 0: connections to or from port 53 are ignored */
	__u32 pad;
};

/* Values of the tgid_filter hash map (tgid -> action), written by the
 * agent from the process table and the configuration's filters: every
 * process it has classified has one (allow-list or not), so a missing
 * entry means "not classified yet" (see QTAP_CONN_F_UNDECIDED). */
#define QTAP_TGID_IGNORE 1
#define QTAP_TGID_ALLOW 2

/* A tgid_filter entry holds for the image the process ran when it was
 * decided: gen is the process's exec generation then (the exec_gen map,
 * which the kernel bumps at every exec).  An entry whose gen is not the
 * current one is stale, i.e. undecided, so a decision that races with an
 * exec can never apply to the new image.  At fork the kernel copies the
 * parent's valid entry to the child itself. */
struct qtap_tgid_filter {
	__u32 action;		/* QTAP_TGID_* */
	__u32 gen;
};

#endif

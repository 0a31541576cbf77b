// SPDX-License-Identifier: GPL-2.0
/* TCP connections at the system call layer, seen from the socket layer so
 * that nothing but socket calls pays for them: no syscall tracepoint is
 * attached (one alone puts every system call of every process on the slow
 * path), and a read() of a file or a pipe runs none of this.
 *
 * - sock:sock_send_length and sock:sock_recv_length fire at the end of
 *   every sendmsg/recvmsg of a socket, in the calling thread, inside its
 *   system call: read, write, readv, writev, sendto, recvfrom, sendmsg,
 *   recvmsg and sendfile all come through them.  They give the socket and
 *   the byte count; the call, its fd and its buffer are the system call's
 *   arguments (the task's saved user registers).  Each becomes a struct
 *   qtap_conn_data with the first bytes the call moved.
 * - sock:inet_sock_set_state marks where a connection comes from: SYN_SENT
 *   is a connect() (in the caller's context: its process is recorded), and
 *   SYN_RECV after LISTEN a socket made for accept() (in softirq: its
 *   process is the first that calls on it).  Both begin a new connection
 *   on the socket: an entry still open at its address is ended there.
 * - The connection ends when its last fd is closed: the owner's FIN
 *   (ESTABLISHED or CLOSE_WAIT to FIN_WAIT1 or LAST_ACK outside shutdown()).
 *   tcp:tcp_destroy_sock ends the rest (a reset, an abort) and forgets it.
 *
 * Connections are kept in the conns hash map keyed by the struct sock.  One
 * first seen on data (open before the agent) is learned then, with an OPEN
 * of unknown direction.  Filters (sock_config, tgid_filter) are applied
 * when the connection is reported; a connection they leave out stays in
 * the map as SKIPPED, so its later calls cost one lookup and a look at the
 * filter_gen counter (exec_gen.bpf.h), and is decided again if the
 * process's filter entry changes.  A traced one is looked at again the
 * same way (open_wanted()): one whose process the filters come to leave
 * out becomes SKIPPED.
 *
 * Events go into one BPF ring buffer per CPU (events, an array of maps
 * filled by the agent before attach); a reader is woken only by the write
 * that takes its ring to wakeup_bytes, and by a few more while it has not
 * run (see src/capture/sock.c for the measurements), or by the first event
 * after it went to sleep on a quiet host.  A
 * socket call's data event with under QTAP_DATA_SMALL bytes of payload
 * (most: a request, a response head, none) is built in its CPU's stage
 * and reaches the ring with the others gathered there, in one record
 * (stage_emit(), QTAP_STAGE_FLUSH_BYTES in sock.h); emit() writes the
 * stage out before any other event of the CPU.  When the stage is in use
 * by the program this one interrupted, the event is built in the ring
 * itself, in a record of one of two fixed small sizes (small_emit()).
 * Larger ones, and TLS data events, are built in a per-CPU scratch slot
 * and written with bpf_ringbuf_output() at their exact size (header + captured
 * bytes): bpf_ringbuf_reserve() needs a constant size, and reserving the
 * 16 KiB maximum for every event would fill the ring with unused space. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "sock.h"
#include "exec_gen.bpf.h"
#include "sockcall.bpf.h"
#include "progstat.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2
#define MSG_TRUNC 0x20
#define MSG_ERRQUEUE 0x2000
#define EEXIST 17
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10

/* Payloads under this size (a power of two) are gathered in the CPU's
 * stage (stage_emit(), or small_emit() into the ring when it is in use);
 * larger ones go through the scratch slot. */
#define QTAP_DATA_SMALL 512
/* Events of a connection whose first bytes were too few to classify
 * before it is taken as "other". */
#define SOCK_UNKNOWN_EVENTS_MAX 4

/* Payload classes (struct conn_state.class). */
#define CLASS_UNKNOWN 0
#define CLASS_HTTP 1
#define CLASS_TLS 2
#define CLASS_OTHER 3
/* HTTP that may carry TLS after its head: CONNECT (a proxy tunnel). */
#define CLASS_TUNNEL 4
/* classify()'s word for a PROXY protocol header: CLASS_UNKNOWN, with
 * conn_state.proxy_header set (never a connection's class) */
#define CLASS_PROXY 5

/* A data event being built: struct qtap_conn_data, then the payload.
 * Twice the cap so that the verifier can see every copy stays inside.
 * busy: a program of this CPU is building one (a TLS return probe can be
 * preempted in the middle, by a thread whose socket call or TLS return
 * then runs on the CPU: see busy_take()). */
struct sock_scratch {
	__u64 busy;
	__u8 data[sizeof(struct qtap_conn_data) + 2 * QTAP_DATA_MAX];
};

/* The per-CPU ring buffers, created and inserted by the agent before
 * attach (max_entries: possible CPUs, set before load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_RINGBUF);
		__uint(max_entries, QTAP_SOCK_RINGBUF_BYTES);
	});
} events SEC(".maps");

/* Set by the agent before load: the write that takes a ring to this many
 * unread bytes wakes its reader; below it the reader finds the records on
 * its next timed poll.  A wakeup per record would cost more than the rest
 * of the program. */
const volatile __u64 wakeup_bytes = 0;
/* While the reader has not run, a ring wakes it again every
 * wakeup_bytes / WAKE_STEPS bytes past wakeup_bytes (wake_flags()). */
#define WAKE_STEPS 16

/* Ring buffer write failures, per CPU and type of the event lost (the
 * key), and connections the conns map had no room for (as CONN_OPEN);
 * read by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QTAP_EVENT_TYPES);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

/* Connection ids: cpu << 48 | a per-CPU counter (65536 CPUs, 2^48 connections
 * each). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_ids SEC(".maps");

/* TCP sockets established while the agent runs (and older ones on their
 * first call), until the kernel destroys them; the agent deletes those it
 * forgot (idle).  max_entries set before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QTAP_SOCK_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* The agent's word on connections learned in the middle (struct
 * qtap_learned), by the key of their OPEN, until their next call takes it,
 * the socket ends or the agent forgets the connection.  Allocated as used:
 * 1 MB of locked memory for its buckets, where a preallocated one took 5.8
 * MB for what is mostly empty.  When full the agent's word is not written,
 * and the connection keeps its events, which the agent drops.  max_entries
 * set before load, like conns. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, QTAP_SOCK_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct qtap_learned);
} learned SEC(".maps");

/* One slot per CPU (max_entries set before load to the possible CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_scratch);
} scratch SEC(".maps");

/* One stage per CPU (max_entries set before load to the possible CPUs),
 * indexed by CPU; mappable, so that the agent sees which wait. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qtap_stage);
} stage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qtap_sock_config);
} sock_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QTAP_PROCS_MAX);
	__type(key, __u32);
	__type(value, struct qtap_tgid_filter);
} tgid_filter SEC(".maps");

/* A TLS library read or write in progress on a thread, from the function's
 * entry to its return (op 0: none).  The socket call it makes meanwhile
 * (the nested-syscall method) writes key: that call's connection. */
struct tls_call {
	__u64 ctx;		/* SSL * or gnutls_session_t */
	__u64 buf;
	__u64 outlen;		/* SSL_read_ex/SSL_write_ex: size_t * of the count */
	__u64 key;		/* conns key of the nested socket call; 0: none */
	__u64 sp;		/* the stack pointer at its entry */
	__u8 op;		/* QTAP_OP_SSL_*, QTAP_OP_GNUTLS_* or QTAP_TLS_OP_TIE; 0: none */
	__u8 dir;		/* QTAP_DATA_* */
	__u16 depth;		/* probed library calls inside this one */
	__u8 linked;		/* the library is linked into the executable */
	__u8 pad[3];
	/* The thread's last socket read that moved bytes, outside any TLS
	 * call: a library on memory buffers (node) reads the socket itself
	 * and then hands the bytes to SSL_read, which makes no socket call. */
	__u64 last_recv_key;
	__u64 last_recv_ns;
	__u64 last_return_ns;	/* when the thread's last TLS call returned */
};

/* How recent that last read must be to stand for a TLS read's socket. */
#define TLS_LAST_RECV_NS (10ull * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_call);
} tls_inflight SEC(".maps");

/* (tgid, SSL * or session) -> the connection its socket calls used,
 * learned from the nested socket calls: a TLS read served from the
 * library's buffer makes none. */
struct tls_ctx_key {
	__u64 tgid;
	__u64 ctx;
};

/* The conns key and the conn_id of that connection: a freed session's
 * address comes back for the next one, and a destroyed socket's for
 * another connection, maybe another process's.  An entry holds only while
 * the connection at key is still the one it was learned on. */
struct tls_ctx_conn {
	__u64 key;
	__u64 conn_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, QTAP_SOCK_MAX_CONNS);
	__type(key, struct tls_ctx_key);
	__type(value, struct tls_ctx_conn);
} tls_ctxs SEC(".maps");

/* TLS library calls that moved data but could not be tied to a connection
 * (no socket call inside, none before on the same SSL *), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tls_untied SEC(".maps");

/* Set by the agent once a TLS probe is attached: until then socket calls
 * do not look for a TLS call in progress. */
__u32 tls_probes_on = 0;

/* ---- output ------------------------------------------------------------ */

/* n events of type lost. */
static __always_inline void count_lost_n(__u16 type, __u32 n)
{
	__u32 key = type;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &key);

	/* A per-CPU slot, but a program that interrupts this one (softirq)
	 * can add to it in the middle of a plain += and be lost. */
	if (lost)
		__sync_fetch_and_add(lost, n);
}

static __always_inline void count_lost(__u16 type)
{
	count_lost_n(type, 1);
}

static __always_inline void header_fill(struct qtap_event_header *hdr, __u16 type)
{
	hdr->version = QTAP_EVENT_ABI_VERSION;
	hdr->type = type;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->timestamp_ns = bpf_ktime_get_ns();
}

/* The flags of a write of size bytes to rb, the ring of the CPU whose stage
 * is sg (or NULL); reserved: its record is reserved already (counted in
 * the ring's unread bytes).  The reader is woken when the write takes the
 * unread bytes up to wakeup_bytes, and again at every WAKE_STEPS-th of that
 * they grow by while it has not run: not at every write, as each wakeup
 * interrupts this CPU (a self-IPI, an exit to the hypervisor in a virtual
 * machine), and the writes go on while a woken reader waits for a CPU.
 * Or it is woken at once when it sleeps without its timed polls (the mark
 * is cleared: once woken it polls again). */
static __always_inline __u64 wake_flags(void *rb, struct qtap_stage *sg, __u64 size,
					bool reserved)
{
	__u64 rec = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7ull, before, after;

	if (sg && sg->reader_asleep) {
		sg->reader_asleep = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	before = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
	if (reserved)
		before = before > rec ? before - rec : 0;
	after = before + rec;
	/* wakeup_bytes / WAKE_STEPS is a power of two and wakeup_bytes a
	 * multiple of it: the write passes one of its multiples exactly when
	 * the bits above it change. */
	return after >= wakeup_bytes && (before ^ after) >= wakeup_bytes / WAKE_STEPS ?
	       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* A per-CPU slot (the stage, the scratch slot) taken for a write: false
 * when a program of this CPU holds it, which this one interrupted (an
 * interrupt) or which was preempted (a TLS probe) for this one's thread. */
static __always_inline bool busy_take(__u64 *busy)
{
	return !__sync_lock_test_and_set(busy, 1);
}

/* Lets other programs of this CPU use the slot again: a plain store after
 * every write to it (whatever took it over meanwhile ran on the same CPU,
 * and programs do not migrate). */
static __always_inline void busy_release(__u64 *busy)
{
	asm volatile("" ::: "memory");
	*(volatile __u64 *)busy = 0;
}

/* Writes the events gathered in sg, the stage of cpu, to its ring as one
 * QTAP_EVENT_BATCH record, and empties it.  The caller holds sg->busy. */
static __always_inline void stage_flush(struct qtap_stage *sg, __u32 cpu)
{
	struct qtap_batch *b = (struct qtap_batch *)sg->buf;
	void *rb = bpf_map_lookup_elem(&events, &cpu);
	__u32 size = sg->used + sizeof(*b);

	if (!sg->events)
		return;
	header_fill(&b->hdr, QTAP_EVENT_BATCH);
	b->events = sg->events;
	b->bytes = sg->used;
	/* size <= sizeof(struct qtap_batch) + QTAP_STAGE_FLUSH_BYTES + the
	 * largest event, under QTAP_STAGE_BYTES (a power of two): the mask
	 * changes nothing but shows the verifier the write stays inside. */
	barrier_var(size);
	size &= QTAP_STAGE_BYTES - 1;
	if (!rb || bpf_ringbuf_output(rb, sg->buf, size, wake_flags(rb, sg, size, false)))
		count_lost_n(QTAP_EVENT_CONN_DATA, sg->events);	/* all a stage holds */
	sg->used = 0;
	sg->events = 0;
}

/* Writes cpu's stage out, unless it is empty or held by a program this
 * one interrupted or preempted; the stage (NULL: none). */
static __always_inline struct qtap_stage *stage_write_out(__u32 cpu)
{
	struct qtap_stage *sg = bpf_map_lookup_elem(&stage, &cpu);

	if (sg && sg->events && busy_take(&sg->busy)) {
		stage_flush(sg, cpu);
		busy_release(&sg->busy);
	}
	return sg;
}

/* Writes an event to its CPU's ring, after the events gathered in the
 * CPU's stage: a CPU's events reach the agent in the order they were
 * written. */
static __always_inline void emit(void *data, __u64 size)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *rb = bpf_map_lookup_elem(&events, &cpu);
	struct qtap_stage *sg = stage_write_out(cpu);

	if (!rb || bpf_ringbuf_output(rb, data, size, wake_flags(rb, sg, size, false)))
		count_lost(((struct qtap_event_header *)data)->type);
}

/* ---- sockets ----------------------------------------------------------- */

/* A TCP socket of IPv4 or IPv6. */
static __always_inline bool sock_is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	return (family == AF_INET || family == AF_INET6) &&
	       BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline bool v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* Family, addresses and ports of sk into ev. */
static __always_inline void sock_addrs(struct sock *sk, struct qtap_conn_open *ev)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(ev->laddr, 0, sizeof(ev->laddr));
	__builtin_memset(ev->raddr, 0, sizeof(ev->raddr));
	/* An aborted socket has given back its port by the time it is
	 * decided (tcp_set_state(TCP_CLOSE)): the source port it kept. */
	ev->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!ev->lport)
		ev->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	ev->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&ev->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&ev->raddr, sk, __sk_common.skc_v6_daddr);
		if (v4_mapped(ev->raddr) && v4_mapped(ev->laddr)) {
			family = AF_INET;
			__builtin_memcpy(ev->laddr, ev->laddr + 12, 4);
			__builtin_memcpy(ev->raddr, ev->raddr + 12, 4);
			__builtin_memset(ev->laddr + 4, 0, 12);
			__builtin_memset(ev->raddr + 4, 0, 12);
		}
	} else {
		BPF_CORE_READ_INTO((__u32 *)ev->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)ev->raddr, sk, __sk_common.skc_daddr);
	}
	ev->family = family;
}

/* The peer's address (sock_addrs() made v4-mapped ones IPv4). */
static __always_inline bool addr_loopback(const struct qtap_conn_open *ev)
{
	return qtap_addr_loopback(ev->family == AF_INET, ev->raddr);
}

static __always_inline bool addr_internal(const struct qtap_conn_open *ev)
{
	return qtap_addr_internal(ev->family == AF_INET, ev->raddr);
}

static __always_inline __u32 tgid_gen(__u32 tgid)
{
	__u32 *gen = bpf_map_lookup_elem(&exec_gen, &tgid);

	return gen ? *gen : 0;
}

/* The process's filter entry if it holds for the image of exec generation
 * gen, else 0 (undecided). */
static __always_inline __u32 tgid_action_at(__u32 tgid, __u32 gen)
{
	struct qtap_tgid_filter *f = bpf_map_lookup_elem(&tgid_filter, &tgid);

	if (!f || f->gen != gen)
		return 0;
	return f->action;
}

/* The same for the image the process runs now. */
static __always_inline __u32 tgid_action(__u32 tgid)
{
	return tgid_action_at(tgid, tgid_gen(tgid));
}

/* A new process runs its parent's image: it inherits the parent's valid
 * decision at once, before the agent hears of the fork. */
static __always_inline int sock_fork_run(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	struct qtap_tgid_filter f = { 0 };
	__u32 ptgid, ctgid, zero = 0;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;	/* a thread */
	ptgid = BPF_CORE_READ(parent, tgid);
	ctgid = BPF_CORE_READ(child, tgid);
	f.action = tgid_action(ptgid);
	bpf_map_update_elem(&exec_gen, &ctgid, &zero, BPF_ANY);
	if (f.action)
		bpf_map_update_elem(&tgid_filter, &ctgid, &f, BPF_ANY);
	else
		bpf_map_delete_elem(&tgid_filter, &ctgid);
	/* (a verdict for a recycled tgid must not outlive the new process) */
	filter_gen_bump();
	return 0;
}

/* Whether a new connection described by ev is traced; *ret_action gets
 * the process's filter entry. */
static __always_inline bool conn_wanted(const struct qtap_conn_open *ev, __u32 *ret_action)
{
	struct qtap_sock_config *cfg;
	__u32 key = 0, action;

	/* the generation the OPEN carries: one reading for both */
	action = *ret_action = tgid_action_at(ev->tgid, ev->exec_gen);
	cfg = bpf_map_lookup_elem(&sock_config, &key);
	if (!cfg)
		return false;
	if (action == QTAP_TGID_IGNORE)
		return false;
	if (cfg->ignore_loopback && addr_loopback(ev))
		return false;
	if (!cfg->include_dns && (ev->lport == 53 || ev->rport == 53))
		return false;
	switch (cfg->direction) {
	case QTAP_CFG_DIR_INGRESS:
		return ev->direction != QTAP_DIR_EGRESS;
	case QTAP_CFG_DIR_EGRESS:
		return ev->direction != QTAP_DIR_INGRESS;
	case QTAP_CFG_DIR_EGRESS_INTERNAL:
		return ev->direction != QTAP_DIR_INGRESS && addr_internal(ev);
	case QTAP_CFG_DIR_EGRESS_EXTERNAL:
		return ev->direction != QTAP_DIR_INGRESS && !addr_internal(ev);
	}
	return true;
}

/* ---- connections ------------------------------------------------------- */

static __always_inline void conn_close(struct conn_state *st, __u32 flags)
{
	struct qtap_conn_close ev;
	__u64 seq = __sync_fetch_and_add(&st->seq, 1);

	header_fill(&ev.hdr, QTAP_EVENT_CONN_CLOSE);
	ev.conn_id = st->conn_id;
	ev.seq = seq;
	ev.tgid = st->tgid;
	ev.pid = st->pid;
	ev.fd = st->fd;
	ev.flags = flags;
	ev.bytes_sent = st->bytes_sent;
	ev.bytes_recv = st->bytes_recv;
	ev.data_events = seq - 1;	/* OPEN is 0, the rest were data */
	emit(&ev, sizeof(ev));
}

static __always_inline __u64 conn_id_next(void)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&conn_ids, &key);

	if (!n)
		return 0;
	/* Atomic on the per-CPU slot: a connection created in a softirq
	 * (an accept's handshake) can interrupt one created by a connect()
	 * between a plain read and write, and the two would get one id. */
	return (__u64)bpf_get_smp_processor_id() << 48 | (__sync_fetch_and_add(n, 1) + 1);
}

/* Records the current thread as the connection's process. */
static __always_inline void conn_set_process(struct conn_state *st, __u32 fd)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	st->pid = (__u32)pid_tgid;
	st->fd = fd;
	bpf_get_current_comm(&st->comm, sizeof(st->comm));
	st->tgid = pid_tgid >> 32;
}

/* A new entry for sk.  An entry already there that is still open is
 * closed first with the close flags replace (QTAP_CLOSE_F_REPLACED: the
 * socket connected again; QTAP_CLOSE_F_REUSED: a new socket at the
 * address of one whose end was missed), or kept when replace is 0.  One
 * left CLOSED is always replaced: it is an earlier socket's at this
 * address whose sock_destroy run the kernel skipped (see
 * qtap_system_bpf_program_misses_total), and kept it would hide the new
 * connection.  NULL when an entry is kept (also one another CPU made
 * meanwhile: the caller may look it up), or the map is full (counted). */
static __always_inline struct conn_state *conn_create(__u64 key, __u8 direction, __u8 flags,
						      __u32 replace)
{
	struct conn_state init = {}, *st;
	long err;

	st = bpf_map_lookup_elem(&conns, &key);
	if (st) {
		if (!replace && st->state != CONN_CLOSED)
			return NULL;
		if (__sync_val_compare_and_swap(&st->state, CONN_OPEN, CONN_CLOSED) == CONN_OPEN)
			conn_close(st, replace);
	}
	init.conn_id = conn_id_next();
	init.seq = 1;
	init.open_ns = bpf_ktime_get_ns();
	init.fd = QTAP_FD_UNKNOWN;
	init.direction = direction;
	init.flags = flags;
	/* None there a moment ago: made only if still none, not over one
	 * that another thread's first call on the socket has just made. */
	err = bpf_map_update_elem(&conns, &key, &init, st ? BPF_ANY : BPF_NOEXIST);
	if (err == -EEXIST)
		return NULL;
	if (err) {
		count_lost(QTAP_EVENT_CONN_OPEN);	/* no room: none of its events */
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &key);
}

/* Decides a PENDING connection whose process is known: OPEN written (it is
 * traced) or SKIPPED.  The state it ends in (another CPU may have decided
 * it first). */
static __always_inline __u32 conn_decide(__u64 key, struct sock *sk, struct conn_state *st)
{
	struct qtap_conn_open ev;
	__u32 action, to, gen = filter_gen_read();

	ev.hdr.version = QTAP_EVENT_ABI_VERSION;
	ev.hdr.type = QTAP_EVENT_CONN_OPEN;
	ev.hdr.cpu = bpf_get_smp_processor_id();
	ev.hdr.timestamp_ns = st->open_ns;
	ev.conn_id = st->conn_id;
	ev.seq = 0;
	ev.tgid = st->tgid;
	ev.pid = st->pid;
	ev.fd = st->fd;
	ev.direction = st->direction;
	ev.flags = st->flags;
	ev.exec_gen = tgid_gen(ev.tgid);
	ev.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	ev.bound_dev_if = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	ev.key = key;
	sock_addrs(sk, &ev);
	__builtin_memcpy(ev.comm, st->comm, sizeof(ev.comm));
	to = conn_wanted(&ev, &action) ? CONN_OPEN : CONN_SKIPPED;
	if (to == CONN_OPEN && action != QTAP_TGID_ALLOW)
		ev.flags |= QTAP_CONN_F_UNDECIDED;
	st->action = action;
	st->verdict = (__u64)gen << 32 | ev.tgid;
	if (__sync_val_compare_and_swap(&st->state, CONN_PENDING, to) != CONN_PENDING)
		return st->state;
	if (to == CONN_OPEN)
		emit(&ev, sizeof(ev));
	return to;
}

/* Whether the call of process tgid on the OPEN connection st is traced:
 * false when the filters now leave that process out (a reload's new
 * filters, an exec into a left-out program that kept the socket, a socket
 * handed to one, a process classified since the connection was decided
 * without it).  The connection's own process left out: from this call on
 * st is SKIPPED, its CLOSE written (marked filtered), and it is decided
 * again when a process the filters allow uses it.  Another process left
 * out, sharing the socket: its calls alone are left out, the connection
 * goes on.  On x86 the entries are looked at only when the filter_gen
 * counter or the process changed since the connection was last found
 * traced for it (elsewhere on every call: see CONN_SKIPPED in sock_call()
 * for the order of the loads). */
static __always_inline bool open_wanted(struct conn_state *st, __u32 tgid)
{
	__u32 gen = filter_gen_read();
	__u64 verdict = (__u64)gen << 32 | tgid;

#ifdef __TARGET_ARCH_x86
	if (st->verdict == verdict)
		return true;
#endif
	if (tgid_action(tgid) != QTAP_TGID_IGNORE) {
		if (st->verdict != verdict)
			st->verdict = verdict;
		return true;
	}
	if (tgid != st->tgid)
		return false;
	/* RENEWING while its CLOSE is written: the calls of other CPUs
	 * meanwhile are left out, and none renews it under this one. */
	if (__sync_val_compare_and_swap(&st->state, CONN_OPEN, CONN_RENEWING) != CONN_OPEN)
		return false;
	conn_close(st, QTAP_CLOSE_F_SKIPPED | QTAP_CLOSE_F_FILTERED);
	st->action = QTAP_TGID_IGNORE;
	st->verdict = verdict;
	__sync_lock_test_and_set(&st->state, CONN_SKIPPED);
	return false;
}

/* An OPEN connection learned in the middle, whose direction the programs
 * cannot tell (whether its local port listens is the agent's to find):
 * takes the agent's word on it, once there is one.  true: the filters
 * leave it out, and from this call on it is SKIPPED, its CLOSE written (a
 * connection entry kept with its events dropped by the agent would cost
 * every call; one deleted would be learned again at the next). */
static __always_inline bool learned_take(__u64 key, struct conn_state *st)
{
	struct qtap_learned *v = bpf_map_lookup_elem(&learned, &key);
	bool skip = false;

	if (!v)
		return false;
	/* another connection's, at a freed socket's address: dropped */
	if (v->conn_id == st->conn_id) {
		st->direction = v->direction;
		/* its action stays the one it was decided under */
		if (v->skip &&
		    __sync_val_compare_and_swap(&st->state, CONN_OPEN, CONN_SKIPPED) == CONN_OPEN) {
			conn_close(st, QTAP_CLOSE_F_SKIPPED);
			skip = true;
		}
	}
	bpf_map_delete_elem(&learned, &key);
	return skip;
}

/* ---- payload ----------------------------------------------------------- */

static __always_inline bool prefix(const __u8 *p, const char *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (p[i] != (__u8)s[i])
			return false;
	return true;
}

/* Whether n bytes at p start a TLS handshake record. */
static __always_inline bool tls_record(const __u8 *p, __u32 n)
{
	return n >= 2 && p[0] == 0x16 && p[1] == 0x03;
}

/* Whether they start a ClientHello or a ServerHello: a handshake record
 * of a known version whose first message is one. */
static __always_inline bool tls_hello(const __u8 *p, __u32 n)
{
	return n >= 6 && tls_record(p, n) && p[2] <= 0x04 && (p[5] == 1 || p[5] == 2);
}

/* Whether n bytes at p start a request line of a method not known by
 * name (WebDAV's PROPFIND, PURGE, ...): a token of upper case, '-' and
 * '_' (24 at most, as src/parse/detect.c), a space, and a request-target
 * of origin form ("/...") or "*". */
#define METHOD_MAX 24
static __always_inline bool method_line(const __u8 *p, __u32 n)
{
	int i;

	for (i = 0; i <= METHOD_MAX; i++) {
		__u8 c;

		if (i + 1 >= n)
			return false;	/* not all there: not a request line */
		c = p[i];
		if (c == ' ')
			return i > 0 && (p[i + 1] == '/' || p[i + 1] == '*');
		if (!((c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
			return false;
	}
	return false;
}

/* The class of a connection from its first n captured bytes. */
static __always_inline __u8 classify(const __u8 *p, __u32 n)
{
	if (tls_record(p, n))
		return CLASS_TLS;
	if (n < 8)
		return CLASS_UNKNOWN;
	switch (p[0]) {
	case 'G':
		if (prefix(p, "GET ", 4))
			return CLASS_HTTP;
		break;
	case 'P':
		if (prefix(p, "POST ", 5) || prefix(p, "PUT ", 4) || prefix(p, "PATCH ", 6) ||
		    prefix(p, "PRI * HT", 8))
			return CLASS_HTTP;
		if (prefix(p, "PROXY ", 6))
			return CLASS_PROXY;	/* version 1's line */
		break;
	case '\r':
		if (prefix(p, "\r\n\r\n\0\r\nQ", 8))
			return CLASS_PROXY;	/* version 2's signature */
		break;
	case 'H':
		if (prefix(p, "HTTP/", 5) || prefix(p, "HEAD ", 5))
			return CLASS_HTTP;
		break;
	case 'D':
		if (prefix(p, "DELETE ", 7))
			return CLASS_HTTP;
		break;
	case 'O':
		if (prefix(p, "OPTIONS ", 8))
			return CLASS_HTTP;
		break;
	case 'C':
		if (prefix(p, "CONNECT ", 8))
			return CLASS_TUNNEL;
		break;
	case 'T':
		if (prefix(p, "TRACE ", 6))
			return CLASS_HTTP;
		break;
	}
	/* The methods above are known by name; a request line of another
	 * method is HTTP too, and its connection's bytes stay copied. */
	return method_line(p, n) ? CLASS_HTTP : CLASS_OTHER;
}

/* Fills a data event of st built in the scratch slot (n payload bytes
 * already copied after it) and writes it: a socket call's or a TLS call's
 * (type), with the next sequence number and the connection's totals. */
static __always_inline void data_fill(struct qtap_conn_data *ev, struct conn_state *st,
				      struct task_struct *task, __u16 type, __u32 cpu,
				      __u8 dir, __u8 op, __u32 fd, __u16 flags, __u32 len,
				      __u32 n)
{
	ev->hdr.version = QTAP_EVENT_ABI_VERSION;
	ev->hdr.type = type;
	ev->hdr.cpu = cpu;
	ev->hdr.timestamp_ns = bpf_ktime_get_ns();
	ev->conn_id = st->conn_id;
	/* The totals before the number: they then hold no bytes of a call
	 * numbered after this one (a call adds its own after its event is
	 * written).  Read after, they could hold those of another thread's
	 * call on the socket, numbered next and finished on another CPU
	 * meanwhile, which the agent would count twice: once with these
	 * totals, again with that event's own bytes.  (The atomic add orders
	 * the reads before it.) */
	ev->bytes_sent = st->bytes_sent;
	ev->bytes_recv = st->bytes_recv;
	ev->seq = __sync_fetch_and_add(&st->seq, 1);
	ev->tgid = task->tgid;
	ev->pid = task->pid;
	ev->fd = fd;
	ev->dir = dir;
	ev->op = op;
	ev->flags = flags | (!n ? QTAP_DATA_F_NO_PAYLOAD : n < len ? QTAP_DATA_F_TRUNCATED : 0);
	ev->len = len;
	ev->captured = n;
}

static __always_inline void data_emit(struct qtap_conn_data *ev, struct conn_state *st,
				      struct task_struct *task, __u16 type, __u32 cpu,
				      __u8 dir, __u8 op, __u32 fd, __u16 flags, __u32 len,
				      __u32 n)
{
	data_fill(ev, st, task, type, cpu, dir, op, fd, flags, len, n);
	barrier_var(n);
	if (n > QTAP_DATA_MAX)
		n = 0;
	emit(ev, sizeof(*ev) + n);
}

/* The payload classification of st from the first n bytes a call moved;
 * the bytes to send (a TLS connection's are capped). */
static __always_inline __u32 class_update(struct conn_state *st, const __u8 *payload, __u32 n,
					  __u8 dir)
{
	if (st->class == CLASS_UNKNOWN && n) {
		__u8 class = classify(payload, n);

		/* A PROXY protocol header before the client's bytes (a load
		 * balancer's): the connection is told by the events after
		 * it, the bytes after it in this one copied meanwhile (the
		 * agent skips it); the next event of none of the classes may
		 * be the header's rest, read apart. */
		if (class == CLASS_PROXY) {
			st->proxy_header = 1;
			class = CLASS_UNKNOWN;
		} else if (class == CLASS_OTHER && st->proxy_header) {
			st->proxy_header = 0;
			class = CLASS_UNKNOWN;
		}
		st->class = class;
		if (st->class == CLASS_UNKNOWN &&
		    ++st->unknown_events >= SOCK_UNKNOWN_EVENTS_MAX)
			st->class = CLASS_OTHER;
		if (st->class == CLASS_TLS && n > QTAP_TLS_HELLO_BYTES)
			n = QTAP_TLS_HELLO_BYTES;
	}
	/* TLS after an HTTP head: an upgrade (RFC 2817), or a tunnel first
	 * seen at its response.  Its TLS calls are looked for from now on,
	 * and its bytes still copied: a body's bytes can look like a record. */
	if (st->class == CLASS_HTTP && tls_record(payload, n)) {
		st->class = CLASS_TUNNEL;
	} else if (st->class == CLASS_TUNNEL && tls_hello(payload, n)) {
		/* A tunnel's TLS begins (a hello, not just a record's first
		 * bytes): TLS from here, its hellos copied and no more of its
		 * ciphertext. */
		st->class = CLASS_TLS;
		if (n > QTAP_TLS_HELLO_BYTES)
			n = QTAP_TLS_HELLO_BYTES;
	}
	if (st->class == CLASS_TLS)
		st->tls_copied[dir] += n;
	st->seen[dir] = 1;
	return n;
}

/* Builds the data event of a socket call whose payload is under
 * QTAP_DATA_SMALL in ev: copies the payload, updates the connection's
 * class, fills the header.  ev has room for QTAP_DATA_SMALL bytes of
 * payload with one_buf (the call's one buffer, or none), twice that
 * without (an iovec array: see copy_iov()).  The payload bytes copied. */
static __always_inline __u32 small_fill(struct qtap_conn_data *ev, struct conn_state *st,
					struct task_struct *task, __u32 cpu, __u8 dir,
					const struct sock_call *call, bool one_buf, __u32 len,
					__u32 limit)
{
	__u32 n = limit;

	if (one_buf) {
		/* limit < QTAP_DATA_SMALL: the mask changes nothing but shows
		 * the verifier the copy stays inside. */
		barrier_var(n);
		n &= QTAP_DATA_SMALL - 1;
		if (n && bpf_probe_read_user(ev->payload, n, (void *)call->ptr))
			n = 0;
	} else {
		n = copy_payload(ev->payload, call, limit, QTAP_DATA_SMALL);
	}
	n = class_update(st, ev->payload, n, dir);
	data_fill(ev, st, task, QTAP_EVENT_CONN_DATA, cpu, dir, call->op, call->fd, 0, len, n);
	return n;
}

/* A socket call whose payload is under QTAP_DATA_SMALL: the event is built
 * in the ring itself (a record of a fixed size, the reader takes what it
 * holds), the payload copied there once.  From one buffer the record holds
 * QTAP_DATA_SMALL bytes; from an iovec array twice that, which copy_iov()
 * needs to show the verifier its copies stay inside. */
static __always_inline void small_emit(struct conn_state *st, struct task_struct *task,
				       __u32 cpu, __u8 dir, const struct sock_call *call,
				       __u32 len, __u32 limit)
{
	void *rb = bpf_map_lookup_elem(&events, &cpu);
	struct qtap_conn_data *ev = NULL;
	bool one_buf = call->kind == ARGS_BUF || !limit;
	__u64 size = sizeof(*ev) + (one_buf ? QTAP_DATA_SMALL : 2 * QTAP_DATA_SMALL);

	/* bpf_ringbuf_reserve() needs a constant size: one call each */
	if (rb)
		ev = one_buf ?
			bpf_ringbuf_reserve(rb, sizeof(*ev) + QTAP_DATA_SMALL, 0) :
			bpf_ringbuf_reserve(rb, sizeof(*ev) + 2 * QTAP_DATA_SMALL, 0);
	if (!ev) {
		/* the number is taken all the same: the worker sees the gap */
		__sync_fetch_and_add(&st->seq, 1);
		count_lost(QTAP_EVENT_CONN_DATA);
		return;
	}
	small_fill(ev, st, task, cpu, dir, call, one_buf, len, limit);
	bpf_ringbuf_submit(ev, wake_flags(rb, bpf_map_lookup_elem(&stage, &cpu), size, true));
}

/* A socket call's data event with a payload under QTAP_DATA_SMALL,
 * gathered in its CPU's stage (see QTAP_STAGE_FLUSH_BYTES in sock.h): a
 * reserve and a commit in the ring for each event cost more than the rest
 * of the event (src/capture/sock.c has the figures).  false: the stage is
 * in use by a program this one interrupted or preempted on this CPU, and
 * the caller writes the event to the ring itself. */
static __always_inline bool stage_emit(struct conn_state *st, struct task_struct *task,
				       __u32 cpu, __u8 dir, const struct sock_call *call,
				       __u32 len, __u32 limit)
{
	struct qtap_stage *sg = bpf_map_lookup_elem(&stage, &cpu);
	struct qtap_conn_data *ev;
	__u32 used, n;

	if (!sg || !busy_take(&sg->busy))
		return false;
	/* used < QTAP_STAGE_FLUSH_BYTES (a power of two) always: the mask
	 * changes nothing but shows the verifier the event fits. */
	used = sg->used;
	barrier_var(used);
	used &= QTAP_STAGE_FLUSH_BYTES - 1;
	ev = (struct qtap_conn_data *)(sg->buf + sizeof(struct qtap_batch) + used);
	n = small_fill(ev, st, task, cpu, dir, call, call->kind == ARGS_BUF || !limit, len,
		       limit);
	if (!sg->events)
		sg->first_ns = ev->hdr.timestamp_ns;
	used += (sizeof(*ev) + n + QTAP_BATCH_ALIGN - 1) & ~(QTAP_BATCH_ALIGN - 1);
	sg->used = used;
	sg->events++;
	if (used >= QTAP_STAGE_FLUSH_BYTES ||
	    ev->hdr.timestamp_ns - sg->first_ns >= QTAP_STAGE_MAX_NS || sg->reader_asleep)
		stage_flush(sg, cpu);
	busy_release(&sg->busy);
	return true;
}

/* ---- the tracepoints ----------------------------------------------------- */

/* sock_send_length and sock_recv_length (sk, ret, flags): one socket call
 * of the current thread, which moved ret bytes. */
static __always_inline int sock_call(struct bpf_raw_tracepoint_args *ctx, __u8 dir)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int ret = (int)ctx->args[1];
	struct task_struct *task;
	struct sock_scratch *s;
	struct qtap_conn_data *ev;
	struct conn_state *st;
	struct sock_call call;
	__u64 key = (__u64)sk;
	__u32 cpu, len, limit, gen = 0, n = 0;
	__u64 state;
	int flags = dir == QTAP_DATA_RECV ? (int)ctx->args[2] : 0;

	/* MSG_PEEK: the bytes stay queued, counted when read; MSG_ERRQUEUE:
	 * the socket's error queue (send timestamps, with the bytes sent
	 * looped back), none of the stream's. */
	if (flags & (MSG_PEEK | MSG_ERRQUEUE))
		return 0;
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		/* Not a TCP socket, or one older than the agent: learned on
		 * its first data. */
		if (ret <= 0 || !sock_is_tcp(sk))
			return 0;
		st = conn_create(key, QTAP_DIR_UNKNOWN, QTAP_CONN_F_PREEXISTING, 0);
		/* (another thread's call on it made it first) */
		if (!st)
			st = bpf_map_lookup_elem(&conns, &key);
		if (!st)
			return 0;
	}
	task = bpf_get_current_task_btf();
	/* Plaintext HTTP carries no TLS library's calls: a CONNECT tunnel
	 * (CLASS_TUNNEL) may, after its head; so may a connection not
	 * classified yet, or one learned in the middle of TLS (OTHER). */
	if (tls_probes_on && st->class != CLASS_HTTP) {
		struct tls_call *tc = bpf_task_storage_get(&tls_inflight, task, 0, 0);

		if (tc && tc->op) {
			tc->key = key;	/* inside a TLS read or write */
			if (!st->tls_probed)
				st->tls_probed = 1;
		} else if (tc && dir == QTAP_DATA_RECV && ret > 0) {
			tc->last_recv_key = key;
			tc->last_recv_ns = bpf_ktime_get_ns();
		}
	}
	state = st->state;
	if (state == CONN_OPEN && st->direction == QTAP_DIR_UNKNOWN && learned_take(key, st))
		return 0;
	if (ret <= 0 && state == CONN_OPEN)
		return 0;	/* nothing moved (EAGAIN, EOF) */
	if (state == CONN_OPEN && !open_wanted(st, task->tgid))
		return 0;
	if (state == CONN_CLOSED || state == CONN_RENEWING)
		return 0;
	if (state == CONN_SKIPPED) {
		/* Left out, and nothing the decision rests on has changed
		 * since it was last found to hold for this process.  (The
		 * counter must be read before the entries it vouches for: x86
		 * keeps loads in order; elsewhere, without a load-acquire in
		 * the BPF that clang 14 writes, the entries are looked at on
		 * every call, as they were before the counter.) */
		gen = filter_gen_read();
#ifdef __TARGET_ARCH_x86
		if (st->verdict == ((__u64)gen << 32 | task->tgid))
			return 0;
#endif
	}
	if (ret <= 0 && state == CONN_PENDING && st->direction == QTAP_DIR_EGRESS) {
		/* A connect() in progress, or failed (EAGAIN, ECONNREFUSED):
		 * no connection yet, perhaps never one.  Decided once it is
		 * established (inet_sock_set_state), or by a call that moves
		 * bytes (TCP Fast Open). */
		int sk_state = BPF_CORE_READ(sk, __sk_common.skc_state);

		if (sk_state == TCP_SYN_SENT || sk_state == TCP_CLOSE)
			return 0;
	}
	call_decode(task, sk, &call);
	if (state != CONN_OPEN) {
		/* A kernel thread is nobody's process. */
		if (call.op == QTAP_OP_OTHER && (task->flags & PF_KTHREAD))
			return 0;
		if (state == CONN_SKIPPED) {
			if (st->action == tgid_action(task->tgid)) {
				st->verdict = (__u64)gen << 32 | task->tgid;
				return 0;
			}
			/* The process's entry changed: decided again, as a
			 * new connection to the agent, seen from the middle like
			 * one older than the agent (one it was told of before it
			 * was left out has had its CLOSE, with its totals).  The
			 * calls of other threads meanwhile are left out, and
			 * they see it PENDING only once it is whole. */
			if (__sync_val_compare_and_swap(&st->state, CONN_SKIPPED,
							CONN_RENEWING) != CONN_SKIPPED)
				return 0;
			conn_set_process(st, call.fd);
			st->conn_id = conn_id_next();
			st->seq = 1;
			st->bytes_sent = 0;
			st->bytes_recv = 0;
			st->open_ns = bpf_ktime_get_ns();
			st->flags |= QTAP_CONN_F_PREEXISTING;
			__sync_lock_test_and_set(&st->state, CONN_PENDING);
		} else if (!st->tgid) {
			conn_set_process(st, call.fd);
		}
		if (conn_decide(key, sk, st) != CONN_OPEN)
			return 0;
	}
	if (ret <= 0)
		return 0;
	len = ret;

	switch (st->class) {
	case CLASS_HTTP:
	case CLASS_TUNNEL:
	case CLASS_UNKNOWN:
		limit = QTAP_DATA_MAX;
		break;
	case CLASS_TLS:
		limit = st->tls_copied[dir] < QTAP_TLS_HELLO_BYTES ?
			QTAP_TLS_HELLO_BYTES - st->tls_copied[dir] : 0;
		break;
	default:
		limit = st->seen[dir] ? 0 : QTAP_DATA_MAX;
		break;
	}
	/* MSG_TRUNC: bytes read and dropped, the buffer not written */
	if (call.kind == ARGS_NONE || (flags & MSG_TRUNC))
		limit = 0;
	if (limit > len)
		limit = len;
	if (!limit && st->tls_probed) {
		/* Ciphertext whose plaintext the library probes give: its
		 * bytes ride on the next TLS data event (and the CLOSE). */
		if (dir == QTAP_DATA_SEND)
			__sync_fetch_and_add(&st->bytes_sent, len);
		else
			__sync_fetch_and_add(&st->bytes_recv, len);
		return 0;
	}

	cpu = bpf_get_smp_processor_id();
	if (limit >= QTAP_DATA_SMALL) {
		s = bpf_map_lookup_elem(&scratch, &cpu);
		if (s && busy_take(&s->busy)) {
			ev = (struct qtap_conn_data *)s->data;
			n = copy_payload(ev->payload, &call, limit, QTAP_DATA_MAX);
			n = class_update(st, ev->payload, n, dir);
			data_emit(ev, st, task, QTAP_EVENT_CONN_DATA, cpu, dir, call.op, call.fd, 0,
				  len, n);
			busy_release(&s->busy);
			goto count;
		}
		/* The slot is held by a TLS return preempted on this CPU:
		 * the event goes the small way, its payload cut short. */
		limit = QTAP_DATA_SMALL - 1;
	}
	if (!stage_emit(st, task, cpu, dir, &call, len, limit))
		small_emit(st, task, cpu, dir, &call, len, limit);
count:
	if (dir == QTAP_DATA_SEND)
		__sync_fetch_and_add(&st->bytes_sent, len);
	else
		__sync_fetch_and_add(&st->bytes_recv, len);
	return 0;
}

/* Not attached: the agent runs it on a CPU (BPF_PROG_TEST_RUN) whose stage
 * has held events for QTAP_STAGE_MAX_NS with no later event to write them,
 * and on every CPU when it stops. */
SEC("raw_tp")
int sock_flush(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_FLUSH, false, stage_write_out(bpf_get_smp_processor_id()));
	return 0;
}

SEC("raw_tp/sock_send_length")
int sock_send(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_SEND, false, sock_call(ctx, QTAP_DATA_SEND));
	return 0;
}

SEC("raw_tp/sock_recv_length")
int sock_recv(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_RECV, false, sock_call(ctx, QTAP_DATA_RECV));
	return 0;
}

/* What sk has shut (sk_shutdown: RCV_SHUTDOWN 1, SEND_SHUTDOWN 2). */
#define SHUTDOWN_MASK 3
static __always_inline __u32 sock_shut(struct sock *sk)
{
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown);
}

/* The owner of sk ends it, in the owner's thread: its last fd closed, or a
 * shutdown, or an abort.  A connection accepted and ended before any call
 * moved a byte (an accept-and-close server, a health check's connection)
 * gets that thread's process, and is reported like any other.  Then, but
 * for a shutdown, which leaves it open the other way, its CLOSE: at the
 * close, not when TCP is done with it (the peer may take its time).  A
 * shutdown is told by its system call, or, made another way (io_uring, a
 * 32-bit process), by what the socket has shut: a close shuts both ways. */
static __always_inline void conn_owner_end(__u64 key, struct sock *sk)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	struct task_struct *task;
	struct pt_regs *regs;

	if (!st)
		return;
	task = bpf_get_current_task_btf();
	regs = call_regs(task);
	if (st->state == CONN_PENDING && !(task->flags & PF_KTHREAD)) {
		if (!st->tgid)
			conn_set_process(st, regs && (REGS_NR(regs) == NR_CLOSE ||
						      REGS_NR(regs) == NR_SHUTDOWN) ?
						 (__u32)REGS_ARG1(regs) : QTAP_FD_UNKNOWN);
		conn_decide(key, sk, st);
	}
	if (st->state != CONN_OPEN || (regs && REGS_NR(regs) == NR_SHUTDOWN) ||
	    sock_shut(sk) != SHUTDOWN_MASK)
		return;
	if (__sync_val_compare_and_swap(&st->state, CONN_OPEN, CONN_CLOSED) == CONN_OPEN)
		conn_close(st, 0);
}

/* inet_sock_set_state (sk, oldstate, newstate). */
static __always_inline int sock_state_run(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int oldstate = ctx->args[1], newstate = ctx->args[2];
	struct conn_state *st;
	struct sock_call call;
	__u64 key = (__u64)sk;

	switch (newstate) {
	case TCP_SYN_SENT:
		/* connect(), in the caller: the connection is its process's,
		 * reported once the handshake is done (its local port is
		 * chosen after this). */
		if (!sock_is_tcp(sk))
			return 0;
		st = conn_create(key, QTAP_DIR_EGRESS, 0, QTAP_CLOSE_F_REPLACED);
		if (st) {
			call_decode(bpf_get_current_task_btf(), sk, &call);
			conn_set_process(st, call.fd);
		}
		return 0;
	case TCP_ESTABLISHED:
		if (!sock_is_tcp(sk))
			return 0;
		if (oldstate == TCP_SYN_SENT) {
			st = bpf_map_lookup_elem(&conns, &key);
			if (!st)	/* connect() called before the agent started */
				st = conn_create(key, QTAP_DIR_EGRESS, 0, 0);
			if (st && st->state == CONN_PENDING && st->tgid) {
				st->open_ns = bpf_ktime_get_ns();
				conn_decide(key, sk, st);
			}
		} else if (oldstate == TCP_SYN_RECV) {
			/* Accepted: its entry was made at SYN_RECV, unless
			 * that was before the agent attached. */
			conn_create(key, QTAP_DIR_INGRESS, 0, 0);
		}
		return 0;
	case TCP_SYN_RECV:
		/* A socket for accept() just made from its listener, in
		 * softirq (with TCP Fast Open at the SYN: its first calls may
		 * come before ESTABLISHED); its process is the first to call
		 * on it.  An entry still open at its address is of a socket
		 * whose end was missed (its sock_destroy run skipped), whose
		 * memory this one reuses: that connection ends here. */
		if (oldstate != TCP_LISTEN || !sock_is_tcp(sk))
			return 0;
		conn_create(key, QTAP_DIR_INGRESS, 0, QTAP_CLOSE_F_REUSED);
		return 0;
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
		/* Only the socket's owner sends a FIN: its last fd closed
		 * (close, dup2, exit) or shutdown(). */
		if (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT)
			conn_owner_end(key, sk);
		return 0;
	case TCP_CLOSE:
		/* An abort: by its owner (close() with bytes unread, or with
		 * SO_LINGER at 0; connect(AF_UNSPEC)), which holds the
		 * socket's lock, or by the peer's reset or a timeout, in
		 * softirq with no owner, or in the thread holding the lock as
		 * it releases it, which is then calling on the socket. */
		if ((oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT) &&
		    BPF_CORE_READ(sk, sk_lock.owned))
			conn_owner_end(key, sk);
		return 0;
	}
	return 0;
}

/* tcp_destroy_sock (sk): the end of the socket. */
static __always_inline int sock_destroy_run(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = ctx->args[0];
	struct conn_state *st;

	st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 0;
	if (__sync_val_compare_and_swap(&st->state, CONN_OPEN, CONN_CLOSED) == CONN_OPEN)
		conn_close(st, 0);
	if (st->direction == QTAP_DIR_UNKNOWN)
		bpf_map_delete_elem(&learned, &key);	/* the agent's word, not taken */
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* ---- TLS libraries ------------------------------------------------------ */

/* Entry of a library read or write (SSL_read, SSL_read_ex, SSL_write,
 * SSL_write_ex, gnutls_record_recv, gnutls_record_send) or handshake
 * (SSL_do_handshake, gnutls_handshake): which one, its cookie says
 * (QTAP_TLS_COOKIE_*).  Arguments: the SSL * or session, the buffer, its
 * size, and for the _ex functions where the count comes back. */
static __always_inline int tls_enter_run(struct pt_regs *ctx, void *ctx_ptr, void *buf,
					 void *count)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 sp = PT_REGS_SP(ctx);
	__u8 op = cookie & QTAP_TLS_COOKIE_OP;
	struct tls_call *tc;

	tc = bpf_task_storage_get(&tls_inflight, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!tc)
		return 0;
	/* One library call inside another (deeper in the stack): the outer
	 * one is what the caller asked for.  One not deeper than the call
	 * still open means that call's return was never seen (its probe
	 * detached meanwhile): this is a new call. */
	if (tc->op && sp < tc->sp) {
		tc->depth++;
		return 0;
	}
	tc->sp = sp;
	tc->depth = 0;
	tc->ctx = (__u64)ctx_ptr;
	tc->buf = op == QTAP_TLS_OP_TIE ? 0 : (__u64)buf;
	tc->outlen = cookie & QTAP_TLS_COOKIE_EX ? (__u64)count : 0;
	tc->key = 0;
	tc->dir = op == QTAP_OP_SSL_READ || op == QTAP_OP_GNUTLS_RECV ? QTAP_DATA_RECV :
		  op == QTAP_TLS_OP_TIE ? 0 : QTAP_DATA_SEND;
	tc->linked = !!(cookie & QTAP_TLS_COOKIE_LINKED);
	tc->op = op;
	return 0;
}

/* The return of any of them: the plaintext it moved, as a TLS data event
 * of the connection its socket calls used. */
static __always_inline int tls_return_run(struct pt_regs *ctx, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct tls_ctx_key ck = {};
	struct tls_ctx_conn *kp, tied;
	struct qtap_conn_data *ev;
	struct sock_scratch *s;
	struct conn_state *st;
	struct sock_call call;
	struct tls_call *tc, c;
	__u64 len = 0, now;
	__u32 cpu, zero = 0, n = 0, limit;

	tc = bpf_task_storage_get(&tls_inflight, task, 0, 0);
	if (!tc || !tc->op)
		return 0;
	if (tc->depth) {
		tc->depth--;	/* an inner call's return */
		return 0;
	}
	c = *tc;
	tc->op = 0;
	now = bpf_ktime_get_ns();
	if (c.outlen) {
		if ((int)ret == 1 && bpf_probe_read_user(&len, sizeof(len), (void *)c.outlen))
			len = 0;
	} else if (c.op == QTAP_OP_SSL_READ || c.op == QTAP_OP_SSL_WRITE) {
		len = (int)ret > 0 ? (int)ret : 0;
	} else {
		len = ret > 0 ? ret : 0;
	}
	ck.tgid = task->tgid;
	ck.ctx = c.ctx;
	kp = bpf_map_lookup_elem(&tls_ctxs, &ck);
	st = NULL;
	if (c.key) {
		st = bpf_map_lookup_elem(&conns, &c.key);
	} else if (kp) {
		/* The session's connection, unless it is gone: then this
		 * is a new session at a freed one's address, and the socket
		 * address may be another connection's by now. */
		st = bpf_map_lookup_elem(&conns, &kp->key);
		if (st && st->conn_id == kp->conn_id)
			c.key = kp->key;
		else
			st = NULL;
	}
	if (!c.key && tc->last_recv_key && tc->last_recv_ns > tc->last_return_ns &&
	    now - tc->last_recv_ns < TLS_LAST_RECV_NS) {
		/* No socket call inside, and none before on the session: a
		 * library on memory buffers, fed from the socket the thread
		 * read just before, with no TLS call between (node reads
		 * the ServerHello, then SSL_write finishes the handshake and
		 * writes).  That socket's connection, if it is TLS and no
		 * other session has it. */
		struct conn_state *last = bpf_map_lookup_elem(&conns, &tc->last_recv_key);

		if (last && last->class == CLASS_TLS && last->tgid == ck.tgid &&
		    (!last->tls_ctx || last->tls_ctx == c.ctx)) {
			c.key = tc->last_recv_key;
			st = last;
			if (!st->tls_probed)
				st->tls_probed = 1;
		}
	}
	tc->last_return_ns = now;
	if (st && (!kp || kp->key != c.key || kp->conn_id != st->conn_id)) {
		tied.key = c.key;
		tied.conn_id = st->conn_id;
		bpf_map_update_elem(&tls_ctxs, &ck, &tied, BPF_ANY);
	}
	if (!len || c.op == QTAP_TLS_OP_TIE)
		return 0;
	if (!st) {
		__u64 *untied = bpf_map_lookup_elem(&tls_untied, &zero);

		if (untied)
			__sync_fetch_and_add(untied, 1);	/* see count_lost_n() */
		return 0;
	}
	if (st->state != CONN_OPEN || !open_wanted(st, ck.tgid))
		return 0;	/* left out by the filters, or over */
	if (st->tls_ctx != c.ctx)
		st->tls_ctx = c.ctx;
	if (len > 0xffffffffull)
		len = 0xffffffffull;

	cpu = bpf_get_smp_processor_id();
	s = bpf_map_lookup_elem(&scratch, &cpu);
	if (!s || !busy_take(&s->busy)) {
		/* Held by another TLS return preempted on this CPU: the
		 * number is taken all the same (a gap), and counted. */
		__sync_fetch_and_add(&st->seq, 1);
		count_lost(QTAP_EVENT_TLS_DATA);
		return 0;
	}
	ev = (struct qtap_conn_data *)s->data;
	limit = len < QTAP_DATA_MAX ? len : QTAP_DATA_MAX;
	call.ptr = c.buf;
	call.kind = ARGS_BUF;
	n = copy_payload(ev->payload, &call, limit, QTAP_DATA_MAX);
	data_emit(ev, st, task, QTAP_EVENT_TLS_DATA, cpu, c.dir & 1, c.op, st->fd,
		  c.linked ? QTAP_DATA_F_LINKED : 0, len, n);
	busy_release(&s->busy);
	return 0;
}

/* The programs defined above as NAME_run: each run counted and sampled
 * (progstat.bpf.h). */
SEC("raw_tp/sched_process_fork")
int sock_fork(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_FORK, false, sock_fork_run(ctx));
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_STATE, false, sock_state_run(ctx));
	return 0;
}

SEC("raw_tp/tcp_destroy_sock")
int sock_destroy(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_SOCK_DESTROY, false, sock_destroy_run(ctx));
	return 0;
}

SEC("uprobe")
int tls_enter(struct pt_regs *ctx)
{
	PROG_TIMED(QTAP_PS_TLS_ENTER, true,
		   tls_enter_run(ctx, (void *)PT_REGS_PARM1(ctx), (void *)PT_REGS_PARM2(ctx),
				 (void *)PT_REGS_PARM4(ctx)));
	return 0;
}

SEC("uretprobe")
int tls_return(struct pt_regs *ctx)
{
	PROG_TIMED(QTAP_PS_TLS_RETURN, true, tls_return_run(ctx, PT_REGS_RC(ctx)));
	return 0;
}

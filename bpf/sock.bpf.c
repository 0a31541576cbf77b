// SPDX-License-Identifier: GPL-2.0
/* TCP connections at the system call layer: the syscalls tracepoints of
 * connect, accept, accept4, close and the data calls (read, write, readv,
 * writev, sendto, recvfrom, sendmsg, recvmsg; sendfile64 for byte counts).
 *
 * sys_enter of a data call finds the socket behind the fd (the task's fd
 * table; the socket walk is skipped when the fd still points to the file
 * of a known connection) and stashes the arguments in the thread's task
 * storage; sys_exit turns a successful call into a struct qtap_conn_data
 * with the first bytes it moved.  Connections are kept in the conns hash map keyed by (tgid, fd);
 * one seen first on data (open before the agent) is learned then, with an
 * OPEN of unknown direction.  Filters (sock_config, tgid_filter) are
 * applied once, when a connection is created; connections they leave out
 * are remembered in the skipped LRU map so later calls cost two lookups,
 * and decided again if the process's filter entry changes.
 *
 * Events go into one BPF ring buffer per CPU (events, an array of maps
 * filled by the agent before attach); a reader is woken only once its ring
 * holds wakeup_bytes (see src/capture/sock.c for the measurements).  Data events are built in a per-CPU
 * scratch slot and written with bpf_ringbuf_output() at their exact size
 * (header + captured bytes): bpf_ringbuf_reserve() needs a constant size,
 * and reserving the 16 KiB maximum for every event would fill the ring
 * with unused space, since most events carry a short request or none. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sock.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

/* iovecs looked at for payload (readv, writev, sendmsg, recvmsg). */
#define SOCK_IOV_MAX 8
/* Events of a connection whose first bytes were too few to classify
 * before it is taken as "other". */
#define SOCK_UNKNOWN_EVENTS_MAX 4
/* Processes with a filter entry; sockets remembered as left out. */
#define SOCK_TGID_FILTER_MAX 65536
#define SOCK_SKIPPED_MAX 16384

/* Payload classes (struct conn_state.class). */
#define CLASS_UNKNOWN 0
#define CLASS_HTTP 1
#define CLASS_TLS 2
#define CLASS_OTHER 3

/* How the stashed pointer describes the data (struct sock_args.kind). */
#define ARGS_BUF 0	/* a buffer */
#define ARGS_IOV 1	/* an iovec array */
#define ARGS_MSG 2	/* a struct user_msghdr */
#define ARGS_NONE 3	/* byte counts only */

struct conn_key {
	__u32 tgid;
	__u32 fd;
};

/* One traced connection.  Fields written by any thread of the process
 * (several may use one socket): the counters with atomic adds, the
 * classification with plain stores (a lost race copies a few bytes more or
 * less, never out of bounds). */
struct conn_state {
	__u64 conn_id;
	__u64 sk;		/* the struct sock the fd pointed to */
	__u64 file;		/* and its struct file: the fast check */
	__u64 seq;		/* next sequence number */
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u32 tls_copied[2];	/* TLS: payload bytes copied per direction */
	__u8 class;		/* CLASS_* */
	__u8 seen[2];		/* a data event went out in this direction */
	__u8 unknown_events;
};

/* A socket the filters left out, under the process's filter entry then:
 * decided again when the fd points to another file or the entry changed
 * (a process marked just after its exec, a reload), with the direction it
 * was created with. */
struct skip_state {
	__u64 file;
	__u32 action;		/* tgid_filter value then, 0 for none */
	__u8 direction;		/* QTAP_DIR_* */
	__u8 pad[3];
};

/* A socket call between sys_enter and sys_exit, in the thread's task
 * storage (no hashing, nothing to delete: op 0 means none pending). */
struct sock_args {
	__u64 ptr;		/* buffer, iovec array or msghdr */
	__u64 iovcnt;
	__u64 sk;
	__u64 file;
	__u32 fd;
	__u8 op;		/* QTAP_OP_*, or SOCK_OP_CONNECT; 0: none */
	__u8 kind;		/* ARGS_* */
	__u8 dir;		/* QTAP_DATA_* */
};

#define SOCK_OP_CONNECT 0xff

/* A data event being built: struct qtap_conn_data, then the payload.
 * Twice the cap so that the verifier can see every copy stays inside. */
struct sock_scratch {
	__u8 data[sizeof(struct qtap_conn_data) + 2 * QTAP_DATA_MAX];
};

struct msghdr64 {
	__u64 name;
	__u32 namelen;
	__u32 pad;
	__u64 iov;
	__u64 iovlen;
};

struct iovec64 {
	__u64 base;
	__u64 len;
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

/* Set by the agent before load: a ring holding this many bytes wakes its
 * reader; below it the reader finds the records on its next timed poll.
 * A wakeup per record would cost more than the rest of the program. */
const volatile __u64 wakeup_bytes = 0;

/* Ring buffer write failures, per CPU (key 0); read by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

/* Connection ids: cpu << 56 | a per-CPU counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_ids SEC(".maps");

/* Traced connections; entries of connections the agent forgot (process
 * exit, idle) are deleted by it.  max_entries set before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QTAP_SOCK_MAX_CONNS);
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* Sockets the filters left out; an evicted entry is just decided again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_SKIPPED_MAX);
	__type(key, struct conn_key);
	__type(value, struct skip_state);
} skipped SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_args);
} inflight SEC(".maps");

/* One slot per CPU (max_entries set before load to the possible CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qtap_sock_config);
} sock_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_TGID_FILTER_MAX);
	__type(key, __u32);
	__type(value, struct qtap_tgid_filter);
} tgid_filter SEC(".maps");

/* tgid -> exec generation (see struct qtap_tgid_filter); absent is 0.
 * Written here at exec and fork, deleted by the agent at exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_TGID_FILTER_MAX);
	__type(key, __u32);
	__type(value, __u32);
} exec_gen SEC(".maps");

/* ---- output ------------------------------------------------------------ */

static __always_inline void count_lost(void)
{
	__u32 key = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &key);

	if (lost)
		*lost += 1;	/* per-CPU slot: no other writer */
}

static __always_inline void emit(void *data, __u64 size)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *rb = bpf_map_lookup_elem(&events, &cpu);

	if (!rb) {
		count_lost();
		return;
	}
	if (bpf_ringbuf_output(rb, data, size,
			       bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
			       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP))
		count_lost();
}

static __always_inline void header_fill(struct qtap_event_header *hdr, __u16 type)
{
	hdr->version = QTAP_EVENT_ABI_VERSION;
	hdr->type = type;
	hdr->cpu = bpf_get_smp_processor_id();
	hdr->timestamp_ns = bpf_ktime_get_ns();
}

/* ---- sockets ----------------------------------------------------------- */

/* The struct file behind fd in the current task, or NULL.  Direct loads
 * through the task's BTF pointers, one probe read for the fd array slot. */
static __always_inline struct file *fd_file(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file *file;

	if (fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
		return NULL;
	return file;
}

/* The TCP (IPv4 or IPv6) sock of file, or NULL. */
static __always_inline struct sock *file_tcp_sock(struct file *file)
{
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
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
	ev->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
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

static __always_inline bool addr_loopback(const struct qtap_conn_open *ev)
{
	const __u8 *a = ev->raddr;
	int i;

	if (ev->family == AF_INET)
		return a[0] == 127;
	for (i = 0; i < 15; i++)
		if (a[i])
			return false;
	return a[15] == 1;
}

/* RFC 1918, loopback, link-local, CGNAT (100.64/10); ULA fc00::/7, ::1,
 * fe80::/10. */
static __always_inline bool addr_internal(const struct qtap_conn_open *ev)
{
	const __u8 *a = ev->raddr;

	if (addr_loopback(ev))
		return true;
	if (ev->family == AF_INET)
		return a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
		       (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
		       (a[0] == 100 && (a[1] & 0xc0) == 64);
	return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

static __always_inline __u32 tgid_gen(__u32 tgid)
{
	__u32 *gen = bpf_map_lookup_elem(&exec_gen, &tgid);

	return gen ? *gen : 0;
}

/* The process's filter entry if it holds for the image it runs, else 0
 * (undecided). */
static __always_inline __u32 tgid_action(__u32 tgid)
{
	struct qtap_tgid_filter *f = bpf_map_lookup_elem(&tgid_filter, &tgid);

	if (!f || f->gen != tgid_gen(tgid))
		return 0;
	return f->action;
}

/* A new image: every decision taken for the old one is stale. */
SEC("tracepoint/sched/sched_process_exec")
int sock_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, gen = tgid_gen(tgid) + 1;

	bpf_map_update_elem(&exec_gen, &tgid, &gen, BPF_ANY);
	return 0;
}

/* A new process runs its parent's image: it inherits the parent's valid
 * decision at once, before the agent hears of the fork. */
SEC("raw_tp/sched_process_fork")
int sock_fork(struct bpf_raw_tracepoint_args *ctx)
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
	return 0;
}

/* Whether a new connection described by ev is traced; *ret_action gets
 * the process's filter entry. */
static __always_inline bool conn_wanted(const struct qtap_conn_open *ev, __u32 *ret_action)
{
	struct qtap_sock_config *cfg;
	__u32 key = 0, action;

	action = *ret_action = tgid_action(ev->tgid);
	cfg = bpf_map_lookup_elem(&sock_config, &key);
	if (!cfg)
		return false;
	if (action == QTAP_TGID_IGNORE)
		return false;
	if (cfg->ignore_loopback && addr_loopback(ev))
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

static __always_inline void conn_close(struct conn_key *key, struct conn_state *st,
				       __u64 pid_tgid, __u32 flags)
{
	struct qtap_conn_close ev;
	__u64 seq = __sync_fetch_and_add(&st->seq, 1);

	header_fill(&ev.hdr, QTAP_EVENT_CONN_CLOSE);
	ev.conn_id = st->conn_id;
	ev.seq = seq;
	ev.tgid = key->tgid;
	ev.pid = (__u32)pid_tgid;
	ev.fd = key->fd;
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
	*n += 1;	/* per-CPU slot: no other writer */
	return (__u64)bpf_get_smp_processor_id() << 56 | *n;
}

/* The connection of key whose fd points to file (socket sk), created
 * (OPEN emitted) when new; a connection of key on another file is closed
 * as replaced first.  NULL when the filters leave it out or a map is
 * full. */
static __always_inline struct conn_state *conn_get(struct conn_key *key, struct file *file,
						   struct sock *sk, __u8 direction, __u8 flags,
						   __u64 pid_tgid, bool is_new)
{
	struct conn_state *st, init = {};
	struct qtap_conn_open ev;
	struct skip_state *skip;
	__u32 action;

	st = bpf_map_lookup_elem(&conns, key);
	if (st) {
		if (st->file == (__u64)file && !is_new)
			return st;
		conn_close(key, st, pid_tgid, QTAP_CLOSE_F_REPLACED);
		bpf_map_delete_elem(&conns, key);
	} else if (!is_new) {
		skip = bpf_map_lookup_elem(&skipped, key);
		if (skip && skip->file == (__u64)file) {
			if (skip->action == tgid_action(key->tgid))
				return NULL;
			/* Decided again: it keeps the direction it was
			 * created with. */
			direction = skip->direction;
		}
	}

	header_fill(&ev.hdr, QTAP_EVENT_CONN_OPEN);
	ev.seq = 0;
	ev.tgid = key->tgid;
	ev.pid = (__u32)pid_tgid;
	ev.fd = key->fd;
	ev.direction = direction;
	ev.flags = flags;
	ev.pad = 0;
	sock_addrs(sk, &ev);
	bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
	if (!conn_wanted(&ev, &action)) {
		struct skip_state v = {
			.file = (__u64)file, .action = action, .direction = direction,
		};

		bpf_map_update_elem(&skipped, key, &v, BPF_ANY);
		return NULL;
	}
	if (is_new)
		bpf_map_delete_elem(&skipped, key);
	if (action != QTAP_TGID_ALLOW)
		ev.flags |= QTAP_CONN_F_UNDECIDED;

	init.conn_id = conn_id_next();
	init.sk = (__u64)sk;
	init.file = (__u64)file;
	init.seq = 1;
	if (bpf_map_update_elem(&conns, key, &init, BPF_NOEXIST))
		/* Another thread created it meanwhile (or the map is full). */
		return bpf_map_lookup_elem(&conns, key);
	ev.conn_id = init.conn_id;
	emit(&ev, sizeof(ev));
	return bpf_map_lookup_elem(&conns, key);
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

/* The class of a connection from its first n captured bytes. */
static __always_inline __u8 classify(const __u8 *p, __u32 n)
{
	if (n >= 2 && p[0] == 0x16 && p[1] == 0x03)
		return CLASS_TLS;
	if (n < 8)
		return CLASS_UNKNOWN;
	switch (p[0]) {
	case 'G':
		return prefix(p, "GET ", 4) ? CLASS_HTTP : CLASS_OTHER;
	case 'P':
		return prefix(p, "POST ", 5) || prefix(p, "PUT ", 4) ||
		       prefix(p, "PATCH ", 6) || prefix(p, "PRI * HT", 8) ?
		       CLASS_HTTP : CLASS_OTHER;
	case 'H':
		return prefix(p, "HTTP/", 5) || prefix(p, "HEAD ", 5) ? CLASS_HTTP : CLASS_OTHER;
	case 'D':
		return prefix(p, "DELETE ", 7) ? CLASS_HTTP : CLASS_OTHER;
	case 'O':
		return prefix(p, "OPTIONS ", 8) ? CLASS_HTTP : CLASS_OTHER;
	case 'C':
		return prefix(p, "CONNECT ", 8) ? CLASS_HTTP : CLASS_OTHER;
	case 'T':
		return prefix(p, "TRACE ", 6) ? CLASS_HTTP : CLASS_OTHER;
	}
	return CLASS_OTHER;
}

/* Copies up to limit (<= QTAP_DATA_MAX) bytes from the iovec array iov of
 * cnt entries into buf; the bytes copied. */
static __always_inline __u32 copy_iov(__u8 *buf, __u64 iov, __u64 cnt, __u32 limit)
{
	struct iovec64 v;
	__u64 off = 0, n;
	int i;

	/* 64-bit arithmetic throughout: the verifier must see the bounds on
	 * the very registers passed to the helper. */
	for (i = 0; i < SOCK_IOV_MAX; i++) {
		if (i >= cnt || off >= limit)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v))))
			break;
		n = v.len;
		if (n > limit - off)
			n = limit - off;
		barrier_var(off);
		if (off >= QTAP_DATA_MAX)
			break;
		barrier_var(n);
		if (n > QTAP_DATA_MAX)
			break;
		if (n && bpf_probe_read_user(buf + off, n, (void *)v.base))
			break;
		off += n;
	}
	return off;
}

/* Copies the first limit (<= QTAP_DATA_MAX) bytes the call moved. */
static __always_inline __u32 copy_payload(__u8 *buf, struct sock_args *a, __u32 limit)
{
	struct msghdr64 msg;
	__u64 n;

	switch (a->kind) {
	case ARGS_BUF:
		/* limit <= QTAP_DATA_MAX: the mask changes nothing but shows
		 * the verifier the copy stays inside the scratch slot. */
		n = limit;
		barrier_var(n);
		n &= 2 * QTAP_DATA_MAX - 1;
		if (bpf_probe_read_user(buf, n, (void *)a->ptr))
			return 0;
		return n;
	case ARGS_IOV:
		return copy_iov(buf, a->ptr, a->iovcnt, limit);
	case ARGS_MSG:
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->ptr))
			return 0;
		return copy_iov(buf, msg.iov, msg.iovlen, limit);
	}
	return 0;
}

/* ---- the tracepoints ----------------------------------------------------- */

/* The socket (TCP) behind fd, with its file: from the connection when
 * the fd still points to the same file, else by walking the file.  NULL
 * for anything else, and for a socket the filters left out. */
static __always_inline struct sock *enter_sock(struct task_struct *task, __u32 fd,
					       struct file **ret_file)
{
	struct conn_key key = { .tgid = task->tgid, .fd = fd };
	struct skip_state *skip;
	struct conn_state *st;
	struct file *file;

	file = fd_file(task, fd);
	if (!file)
		return NULL;
	*ret_file = file;
	st = bpf_map_lookup_elem(&conns, &key);
	if (st) {
		if (st->file == (__u64)file)
			return (struct sock *)st->sk;
	} else {
		skip = bpf_map_lookup_elem(&skipped, &key);
		if (skip && skip->file == (__u64)file && skip->action == tgid_action(key.tgid))
			return NULL;
	}
	return file_tcp_sock(file);
}

/* Forgets a stashed call (normally there is none). */
static __always_inline int call_clear(void)
{
	struct sock_args *a;

	a = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (a)
		a->op = 0;
	return 0;
}

/* Stashes a socket call's arguments in the thread's storage. */
static __always_inline int call_enter(__u32 fd, __u64 ptr, __u64 iovcnt, __u8 op, __u8 kind,
				      __u8 dir)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = NULL;
	struct sock_args *a;
	struct sock *sk;

	sk = enter_sock(task, fd, &file);
	if (!sk)
		return call_clear();
	a = bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!a)
		return 0;
	a->ptr = ptr;
	a->iovcnt = iovcnt;
	a->sk = (__u64)sk;
	a->file = (__u64)file;
	a->fd = fd;
	a->op = op;
	a->kind = kind;
	a->dir = dir;
	return 0;
}

/* Takes the stashed call of op: false when none. */
static __always_inline bool call_take(__u8 op, struct sock_args *ret)
{
	struct sock_args *a;

	a = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!a || !a->op || (op == SOCK_OP_CONNECT) != (a->op == SOCK_OP_CONNECT))
		return false;
	*ret = *a;
	a->op = 0;
	return true;
}

static __always_inline int data_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sock_scratch *s;
	struct qtap_conn_data *ev;
	struct conn_state *st;
	struct conn_key key;
	struct sock_args a;
	__u32 cpu, len, limit, n = 0;
	__u8 dir;

	if (!call_take(0, &a) || ret <= 0)
		return 0;
	dir = a.dir & 1;
	len = ret > 0xffffffffl ? 0xffffffffu : (__u32)ret;

	key.tgid = pid_tgid >> 32;
	key.fd = a.fd;
	st = conn_get(&key, (struct file *)a.file, (struct sock *)a.sk, QTAP_DIR_UNKNOWN,
		      QTAP_CONN_F_PREEXISTING, pid_tgid, false);
	if (!st)
		return 0;

	switch (st->class) {
	case CLASS_HTTP:
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
	if (a.kind == ARGS_NONE)
		limit = 0;
	if (limit > len)
		limit = len;

	cpu = bpf_get_smp_processor_id();
	s = bpf_map_lookup_elem(&scratch, &cpu);
	if (!s) {
		/* No room to build it: the number is taken all the same. */
		__sync_fetch_and_add(&st->seq, 1);
		count_lost();
		goto count;
	}
	ev = (struct qtap_conn_data *)s->data;
	if (limit)
		n = copy_payload(ev->payload, &a, limit);
	if (st->class == CLASS_UNKNOWN && n) {
		st->class = classify(ev->payload, n);
		if (st->class == CLASS_UNKNOWN &&
		    ++st->unknown_events >= SOCK_UNKNOWN_EVENTS_MAX)
			st->class = CLASS_OTHER;
		if (st->class == CLASS_TLS && n > QTAP_TLS_HELLO_BYTES)
			n = QTAP_TLS_HELLO_BYTES;
	}
	if (st->class == CLASS_TLS)
		st->tls_copied[dir] += n;
	st->seen[dir] = 1;

	header_fill(&ev->hdr, QTAP_EVENT_CONN_DATA);
	ev->conn_id = st->conn_id;
	ev->seq = __sync_fetch_and_add(&st->seq, 1);
	ev->tgid = key.tgid;
	ev->pid = (__u32)pid_tgid;
	ev->fd = key.fd;
	ev->dir = dir;
	ev->op = a.op;
	ev->flags = !n ? QTAP_DATA_F_NO_PAYLOAD : n < len ? QTAP_DATA_F_TRUNCATED : 0;
	ev->len = len;
	ev->captured = n;
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
	barrier_var(n);
	if (n > QTAP_DATA_MAX)
		n = 0;
	emit(ev, sizeof(*ev) + n);
count:
	if (dir == QTAP_DATA_SEND)
		__sync_fetch_and_add(&st->bytes_sent, len);
	else
		__sync_fetch_and_add(&st->bytes_recv, len);
	return 0;
}

#define ENTER(call) SEC("tracepoint/syscalls/sys_enter_" #call) \
	int sock_enter_##call(struct trace_event_raw_sys_enter *ctx)
#define EXIT(call) SEC("tracepoint/syscalls/sys_exit_" #call) \
	int sock_exit_##call(struct trace_event_raw_sys_exit *ctx)

ENTER(read)
{
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_READ, ARGS_BUF, QTAP_DATA_RECV);
}

ENTER(write)
{
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_WRITE, ARGS_BUF, QTAP_DATA_SEND);
}

/* recvfrom(fd, buf, len, flags, ...): a MSG_PEEK read leaves the bytes
 * queued; they are counted when read for real. */
ENTER(recvfrom)
{
	if (ctx->args[3] & MSG_PEEK)
		return call_clear();
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_RECVFROM, ARGS_BUF,
			  QTAP_DATA_RECV);
}

ENTER(sendto)
{
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_SENDTO, ARGS_BUF,
			  QTAP_DATA_SEND);
}

ENTER(readv)
{
	return call_enter(ctx->args[0], ctx->args[1], ctx->args[2], QTAP_OP_READV, ARGS_IOV,
			  QTAP_DATA_RECV);
}

ENTER(writev)
{
	return call_enter(ctx->args[0], ctx->args[1], ctx->args[2], QTAP_OP_WRITEV, ARGS_IOV,
			  QTAP_DATA_SEND);
}

ENTER(recvmsg)
{
	if (ctx->args[2] & MSG_PEEK)
		return call_clear();
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_RECVMSG, ARGS_MSG,
			  QTAP_DATA_RECV);
}

ENTER(sendmsg)
{
	return call_enter(ctx->args[0], ctx->args[1], 0, QTAP_OP_SENDMSG, ARGS_MSG,
			  QTAP_DATA_SEND);
}

/* sendfile64(out_fd, in_fd, offset, count): bytes sent on out_fd. */
ENTER(sendfile64)
{
	return call_enter(ctx->args[0], 0, 0, QTAP_OP_SENDFILE, ARGS_NONE, QTAP_DATA_SEND);
}

EXIT(read) { return data_exit(ctx->ret); }
EXIT(write) { return data_exit(ctx->ret); }
EXIT(recvfrom) { return data_exit(ctx->ret); }
EXIT(sendto) { return data_exit(ctx->ret); }
EXIT(readv) { return data_exit(ctx->ret); }
EXIT(writev) { return data_exit(ctx->ret); }
EXIT(recvmsg) { return data_exit(ctx->ret); }
EXIT(sendmsg) { return data_exit(ctx->ret); }
EXIT(sendfile64) { return data_exit(ctx->ret); }

ENTER(connect)
{
	return call_enter(ctx->args[0], 0, 0, SOCK_OP_CONNECT, ARGS_NONE, 0);
}

EXIT(connect)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct conn_key key;
	struct sock_args a;

	if (!call_take(SOCK_OP_CONNECT, &a))
		return 0;
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	key.tgid = pid_tgid >> 32;
	key.fd = a.fd;
	conn_get(&key, (struct file *)a.file, (struct sock *)a.sk, QTAP_DIR_EGRESS, 0,
		 pid_tgid, true);
	return 0;
}

static __always_inline int accept_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct file *file;
	struct conn_key key;
	struct sock *sk;

	if (ret < 0)
		return 0;
	file = fd_file(bpf_get_current_task_btf(), ret);
	sk = file_tcp_sock(file);
	if (!sk)
		return 0;
	key.tgid = pid_tgid >> 32;
	key.fd = ret;
	conn_get(&key, file, sk, QTAP_DIR_INGRESS, 0, pid_tgid, true);
	return 0;
}

EXIT(accept) { return accept_exit(ctx->ret); }
EXIT(accept4) { return accept_exit(ctx->ret); }

ENTER(close)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct conn_state *st;
	struct conn_key key;

	key.tgid = pid_tgid >> 32;
	key.fd = ctx->args[0];
	st = bpf_map_lookup_elem(&conns, &key);
	if (st) {
		conn_close(&key, st, pid_tgid, 0);
		bpf_map_delete_elem(&conns, &key);
	} else if (bpf_map_lookup_elem(&skipped, &key)) {
		bpf_map_delete_elem(&skipped, &key);
	}
	return 0;
}

/* A socket call's system call and the bytes it moved, read from the
 * calling thread's saved user registers and its memory: which call it is
 * (call_decode()) and a copy of its first bytes (copy_payload()).  Shared
 * by sock.bpf.c and bench/bench_floor's copy floor (floor.bpf.c), which
 * does this much and nothing else.  Included by the .bpf.c files only. */
#ifndef QTAP_BPF_SOCKCALL_BPF_H
#define QTAP_BPF_SOCKCALL_BPF_H

#include <bpf/bpf_core_read.h>

#include "sock.h"

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/* The system calls whose arguments are read, and where the saved user
 * registers keep the number and the first three arguments. */
#if defined(__TARGET_ARCH_x86)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDFILE 40
#define NR_CONNECT 42
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define NR_SHUTDOWN 48
#define NR_CLOSE 3
#define REGS_NR(r) ((r)->orig_ax)
#define REGS_ARG1(r) ((r)->di)
#define REGS_ARG2(r) ((r)->si)
#define REGS_ARG3(r) ((r)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDFILE 71
#define NR_CONNECT 203
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define NR_SHUTDOWN 210
#define NR_CLOSE 57
#define REGS_NR(r) ((r)->syscallno)
#define REGS_ARG1(r) ((r)->orig_x0)
#define REGS_ARG2(r) ((r)->regs[1])
#define REGS_ARG3(r) ((r)->regs[2])
#else
#error "the system call numbers of this architecture are not known"
#endif

/* iovecs looked at for payload (readv, writev, sendmsg, recvmsg). */
#define SOCK_IOV_MAX 8

/* How the call describes the data (struct sock_call.kind). */
#define ARGS_BUF 0	/* a buffer */
#define ARGS_IOV 1	/* an iovec array */
#define ARGS_MSG 2	/* a struct user_msghdr */
#define ARGS_NONE 3	/* byte counts only */

/* The system call behind a socket call, from the saved user registers. */
struct sock_call {
	__u64 ptr;		/* buffer, iovec array or msghdr */
	__u64 iovcnt;
	__u32 fd;
	__u8 op;		/* QTAP_OP_* */
	__u8 kind;		/* ARGS_* */
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

/* The saved user registers of a thread in a system call; NULL for a
 * kernel thread or an io_uring worker, which have none. */
static __always_inline struct pt_regs *call_regs(struct task_struct *task)
{
	if (task->flags & (PF_KTHREAD | PF_IO_WORKER))
		return NULL;
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

/* Whether descriptor fd of task is the socket sk's file. */
static __always_inline bool fd_is_sock(struct task_struct *task, __u32 fd, struct sock *sk)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return false;
	return f && BPF_CORE_READ(sk, sk_socket, file) == f;
}

/* The system call of the current thread, in which sk moves data or
 * connects: which one, its fd and where its data is.  A thread that has
 * used io_uring may run an io_uring request's socket call as task work on
 * its way out of whatever system call it is in (a read of a pipe, a write
 * to a log): that call is sk's only if its fd is sk's (else one of
 * QTAP_OP_OTHER's other paths).  Other threads make socket calls from
 * their own system calls only. */
static __always_inline void call_decode(struct task_struct *task, struct sock *sk,
					struct sock_call *c)
{
	struct pt_regs *regs = call_regs(task);

	c->op = QTAP_OP_OTHER;
	c->kind = ARGS_NONE;
	c->fd = QTAP_FD_UNKNOWN;
	c->ptr = 0;
	c->iovcnt = 0;
	if (!regs)
		return;
	switch (REGS_NR(regs)) {
	case NR_READ:
		c->op = QTAP_OP_READ;
		break;
	case NR_WRITE:
		c->op = QTAP_OP_WRITE;
		break;
	case NR_RECVFROM:
		c->op = QTAP_OP_RECVFROM;
		break;
	case NR_SENDTO:
		c->op = QTAP_OP_SENDTO;
		break;
	case NR_READV:
		c->op = QTAP_OP_READV;
		break;
	case NR_WRITEV:
		c->op = QTAP_OP_WRITEV;
		break;
	case NR_RECVMSG:
		c->op = QTAP_OP_RECVMSG;
		break;
	case NR_SENDMSG:
		c->op = QTAP_OP_SENDMSG;
		break;
	case NR_SENDFILE:
		c->op = QTAP_OP_SENDFILE;
		break;
	case NR_CONNECT:
		break;
	default:
		return;
	}
	c->kind = c->op == QTAP_OP_READV || c->op == QTAP_OP_WRITEV ? ARGS_IOV :
		  c->op == QTAP_OP_RECVMSG || c->op == QTAP_OP_SENDMSG ? ARGS_MSG :
		  c->op == QTAP_OP_SENDFILE || c->op == QTAP_OP_OTHER ? ARGS_NONE : ARGS_BUF;
	c->fd = REGS_ARG1(regs);
	c->ptr = REGS_ARG2(regs);
	c->iovcnt = REGS_ARG3(regs);
	/* (a plain load of a field of the task: no helper call) */
	if (bpf_core_field_exists(task->io_uring) && task->io_uring &&
	    !fd_is_sock(task, c->fd, sk)) {
		c->op = QTAP_OP_OTHER;
		c->kind = ARGS_NONE;
		c->fd = QTAP_FD_UNKNOWN;
		c->ptr = 0;
		c->iovcnt = 0;
	}
}

/* Copies up to limit (<= max) bytes from the iovec array iov of cnt entries
 * into buf, which holds 2 * max bytes (max, a constant power of two, bounds
 * where a copy may start and how long it may be); the bytes copied. */
static __always_inline __u32 copy_iov(__u8 *buf, __u64 iov, __u64 cnt, __u32 limit, __u32 max)
{
	struct iovec64 v[SOCK_IOV_MAX] = {};
	__u64 off = 0, n, k;
	int i;

	/* The array in one read (the system call read it all already). */
	k = cnt < SOCK_IOV_MAX ? cnt : SOCK_IOV_MAX;
	barrier_var(k);
	if (!k || k > SOCK_IOV_MAX ||
	    bpf_probe_read_user(v, k * sizeof(v[0]), (void *)iov))
		return 0;
	/* 64-bit arithmetic throughout: the verifier must see the bounds on
	 * the very registers passed to the helper. */
	for (i = 0; i < SOCK_IOV_MAX; i++) {
		if (i >= k || off >= limit)
			break;
		n = v[i].len;
		if (n > limit - off)
			n = limit - off;
		barrier_var(off);
		if (off >= max)
			break;
		barrier_var(n);
		if (n > max)
			break;
		if (n && bpf_probe_read_user(buf + off, n, (void *)v[i].base))
			break;
		off += n;
	}
	return off;
}

/* Copies the first limit (<= max) bytes the call moved into buf, which
 * holds 2 * max bytes (see copy_iov()). */
static __always_inline __u32 copy_payload(__u8 *buf, const struct sock_call *a, __u32 limit,
					  __u32 max)
{
	struct msghdr64 msg;
	__u64 n;

	switch (a->kind) {
	case ARGS_BUF:
		/* limit <= max: the mask changes nothing but shows the
		 * verifier the copy stays inside buf. */
		n = limit;
		barrier_var(n);
		n &= 2 * max - 1;
		if (bpf_probe_read_user(buf, n, (void *)a->ptr))
			return 0;
		return n;
	case ARGS_IOV:
		return copy_iov(buf, a->ptr, a->iovcnt, limit, max);
	case ARGS_MSG:
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a->ptr))
			return 0;
		return copy_iov(buf, msg.iov, msg.iovlen, limit, max);
	}
	return 0;
}

#endif

// SPDX-License-Identifier: GPL-2.0
/* The bare-probe floor of bench/overhead.sh: programs that do nothing, on
 * every tracepoint the agent's programs use, attached the same way (raw
 * tracepoints for the socket and fork ones, tracepoints for exec and
 * exit; fork twice, as proc.bpf.c and sock.bpf.c each have one).  What
 * the kernel charges for the attachments alone. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* FLOOR(section, name): a program there that does nothing. */
#define FLOOR(sec, name)			\
	SEC(sec) int name(void *ctx)		\
	{					\
		return 0;			\
	}

FLOOR("raw_tp/sock_send_length", floor_send)
FLOOR("raw_tp/sock_recv_length", floor_recv)
FLOOR("raw_tp/inet_sock_set_state", floor_state)
FLOOR("raw_tp/tcp_destroy_sock", floor_destroy)
FLOOR("raw_tp/sched_process_fork", floor_fork_proc)
FLOOR("raw_tp/sched_process_fork", floor_fork_sock)
FLOOR("tracepoint/sched/sched_process_exec", floor_exec)
FLOOR("tracepoint/sched/sched_process_exit", floor_exit)

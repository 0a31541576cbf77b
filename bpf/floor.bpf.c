// SPDX-License-Identifier: GPL-2.0
/* The bare-probe floor of bench/overhead.sh: programs that do nothing, on
 * every tracepoint the agent's programs use, attached the same way (raw
 * tracepoints for the socket and fork ones, tracepoints for exec and
 * exit; fork twice, as proc.bpf.c and sock.bpf.c each have one).  What
 * the kernel charges for the attachments alone. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/sock_send_length")
int floor_send(void *ctx)
{
	return 0;
}

SEC("raw_tp/sock_recv_length")
int floor_recv(void *ctx)
{
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int floor_state(void *ctx)
{
	return 0;
}

SEC("raw_tp/tcp_destroy_sock")
int floor_destroy(void *ctx)
{
	return 0;
}

SEC("raw_tp/sched_process_fork")
int floor_fork_proc(void *ctx)
{
	return 0;
}

SEC("raw_tp/sched_process_fork")
int floor_fork_sock(void *ctx)
{
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int floor_exec(void *ctx)
{
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int floor_exit(void *ctx)
{
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/* The floors of bench/overhead.sh and bench/pairs.sh, on every tracepoint
 * the agent's programs use, attached the same way (raw tracepoints for the
 * socket and fork ones, tracepoints for exec and exit; fork twice, as
 * proc.bpf.c and sock.bpf.c each have one):
 *
 * - the bare-probe floor: programs that do nothing, what the kernel
 *   charges for the attachments alone;
 * - the copy floor (bench_floor --copy): on the socket calls, the least a
 *   capture of their bytes must do, done the agent's way (sockcall.bpf.h):
 *   find the call's buffers, copy the first bytes it moved (under
 *   COPY_BYTES, what the agent copies of a request or a response head)
 *   and read the clock.  Nothing is kept or delivered.
 *
 * bench_floor loads one of floor_send/floor_recv and copy_send/copy_recv. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "sockcall.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* A power of two: the agent's QTAP_DATA_SMALL. */
#define COPY_BYTES 512

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

/* Where the copy floor copies to: per CPU, the timestamp then the bytes
 * (twice COPY_BYTES, as copy_payload() needs). */
struct copy_slot {
	__u64 timestamp_ns;
	__u8 payload[2 * COPY_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct copy_slot);
} copy_slots SEC(".maps");

/* sock_send_length and sock_recv_length (sk, ret, flags). */
static __always_inline int copy_run(struct bpf_raw_tracepoint_args *ctx)
{
	int ret = (int)ctx->args[1];
	struct copy_slot *slot;
	struct sock_call call;
	__u32 zero = 0;

	slot = bpf_map_lookup_elem(&copy_slots, &zero);
	if (!slot || ret <= 0)
		return 0;
	call_decode(bpf_get_current_task_btf(), (struct sock *)ctx->args[0], &call);
	copy_payload(slot->payload, &call, ret < COPY_BYTES ? ret : COPY_BYTES - 1, COPY_BYTES);
	slot->timestamp_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("raw_tp/sock_send_length")
int copy_send(struct bpf_raw_tracepoint_args *ctx)
{
	return copy_run(ctx);
}

SEC("raw_tp/sock_recv_length")
int copy_recv(struct bpf_raw_tracepoint_args *ctx)
{
	return copy_run(ctx);
}

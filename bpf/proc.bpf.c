// SPDX-License-Identifier: GPL-2.0
/* Process life: the sched_process_fork (raw), sched_process_exec and
 * sched_process_exit tracepoints, one struct qtap_proc_event per new
 * process, per exec and per process exit, into the
 * proc_events ring buffer that src/capture/capture.c drains. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "proc.h"
#include "exec_gen.bpf.h"
#include "progstat.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent before load: its own tgid, whose events are never
 * reported (the "qpoint" group); 0 reports every process. */
const volatile __u32 qtap_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, QTAP_PROC_RINGBUF_BYTES);
} proc_events SEC(".maps");

/* Ring buffer reserve failures, per CPU and type of the event lost (the
 * key).  Written here, read by the agent's /system/metrics collector. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QTAP_EVENT_TYPES);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

/* Kernels since 6.16 say in the exit tracepoint whether the whole thread
 * group is dead; the field is probed with CO-RE. */
struct trace_event_raw_sched_process_exit___qtap {
	bool group_dead;
} __attribute__((preserve_access_index));

/* A record about task's process, or NULL (counted) when the buffer is full. */
static __always_inline struct qtap_proc_event *proc_event_reserve(__u16 type,
								 struct task_struct *task)
{
	struct qtap_proc_event *ev;

	ev = bpf_ringbuf_reserve(&proc_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 key = type;
		__u64 *lost = bpf_map_lookup_elem(&events_lost, &key);

		/* per-CPU, but an interrupting program may add too */
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return NULL;
	}
	ev->hdr.version = QTAP_EVENT_ABI_VERSION;
	ev->hdr.type = type;
	ev->hdr.cpu = bpf_get_smp_processor_id();
	ev->hdr.timestamp_ns = bpf_ktime_get_ns();
	ev->tgid = BPF_CORE_READ(task, tgid);
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->start_time_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	ev->exit_code = 0;
	ev->filename_len = 0;
	ev->filename_truncated = 0;
	ev->exec_gen = 0;
	ev->flags = 0;
	ev->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	ev->filename[0] = '\0';
	BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
	return ev;
}

/* Raw: the tracepoint's arguments are the parent and child tasks, which
 * tell a new process from a new thread. */
static __always_inline int proc_fork_run(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	struct qtap_proc_event *ev;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;	/* a thread */
	ev = proc_event_reserve(QTAP_EVENT_PROCESS_FORK, child);
	if (ev)
		bpf_ringbuf_submit(ev, 0);
	return 0;
}

static __always_inline int proc_exec_run(struct trace_event_raw_sched_process_exec *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 loc = ctx->__data_loc_filename;
	struct qtap_proc_event *ev;
	__u32 gen = 1, *old;
	long n;

	if (tgid == qtap_tgid)
		return 0;
	old = bpf_map_lookup_elem(&exec_gen, &tgid);
	if (old)
		gen = *old + 1;
	bpf_map_update_elem(&exec_gen, &tgid, &gen, BPF_ANY);
	filter_gen_bump();
	ev = proc_event_reserve(QTAP_EVENT_PROCESS_EXEC,
				(struct task_struct *)bpf_get_current_task());
	if (!ev)
		return 0;
	ev->exec_gen = gen;
	if (ctx->old_pid != ctx->pid)
		ev->flags |= QTAP_PROC_F_EXEC_BY_THREAD;
	/* __data_loc: offset in the low 16 bits, length (NUL included) in
	 * the high 16 bits. */
	n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename),
				      (void *)ctx + (loc & 0xffff));
	if (n > 0) {
		ev->filename_len = n - 1;
		ev->filename_truncated = (loc >> 16) > sizeof(ev->filename);
	} else {
		ev->filename[0] = '\0';
	}
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

static __always_inline int proc_exit_run(void *ctx)
{
	struct trace_event_raw_sched_process_exit___qtap *args = ctx;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct qtap_proc_event *ev;

	if (tgid == qtap_tgid)
		return 0;
	/* Once per process: when the last thread goes where the kernel says
	 * so, else when the thread-group leader exits. */
	if (bpf_core_field_exists(args->group_dead)) {
		if (!args->group_dead)
			return 0;
	} else if ((__u32)pid_tgid != tgid) {
		return 0;
	}
	ev = proc_event_reserve(QTAP_EVENT_PROCESS_EXIT, task);
	if (!ev)
		return 0;
	ev->exit_code = BPF_CORE_READ(task, exit_code);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

/* The programs: each run counted and sampled (progstat.bpf.h). */
SEC("raw_tp/sched_process_fork")
int proc_fork(struct bpf_raw_tracepoint_args *ctx)
{
	PROG_TIMED(QTAP_PS_PROC_FORK, false, proc_fork_run(ctx));
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int proc_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	PROG_TIMED(QTAP_PS_PROC_EXEC, false, proc_exec_run(ctx));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int proc_exit(void *ctx)
{
	PROG_TIMED(QTAP_PS_PROC_EXIT, false, proc_exit_run(ctx));
	return 0;
}

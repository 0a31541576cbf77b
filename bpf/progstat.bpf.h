/* The prog_stats map and the timing of a program's run (progstat.h).
 * Included by the .bpf.c files only.
 *
 * PROG_TIMED(slot, atomic, body) runs body, counting the run in slot and
 * timing it when it is one to sample.  The tracepoint programs update their
 * slot with plain adds: the kernel never runs one program twice at once on a
 * CPU (a nested run is skipped and counted as a miss), and they run with
 * preemption off.  The uprobe programs can be preempted in the middle by
 * another thread calling the same function on the CPU: atomic adds. */
#ifndef QTAP_BPF_PROGSTAT_BPF_H
#define QTAP_BPF_PROGSTAT_BPF_H

#include "progstat.h"

/* Cleared by the agent before load when the kernel's statistics are used
 * instead (capture.kernel_bpf_stats): the timing is then left out whole. */
const volatile __u32 prog_stats_on = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QTAP_PS_SLOTS_MAX);
	__type(key, __u32);
	__type(value, struct qtap_prog_stat);
} prog_stats SEC(".maps");

/* The start of a run: its slot's counters (NULL when not counting), and in
 * *t0 the clock when this run is timed, else 0. */
static __always_inline struct qtap_prog_stat *prog_run_begin(__u32 slot, bool atomic, __u64 *t0)
{
	struct qtap_prog_stat *ps;
	__u64 n;

	*t0 = 0;
	if (!prog_stats_on)
		return NULL;
	ps = bpf_map_lookup_elem(&prog_stats, &slot);
	if (!ps)
		return NULL;
	n = atomic ? __sync_fetch_and_add(&ps->runs, 1) : ps->runs++;
	if (!(n & (QTAP_PROG_SAMPLE - 1)))
		*t0 = bpf_ktime_get_ns();
	return ps;
}

static __always_inline void prog_run_end(struct qtap_prog_stat *ps, bool atomic, __u64 t0)
{
	if (!ps || !t0)
		return;
	if (atomic)
		__sync_fetch_and_add(&ps->sampled_ns, bpf_ktime_get_ns() - t0);
	else
		ps->sampled_ns += bpf_ktime_get_ns() - t0;
}

#define PROG_TIMED(slot, atomic, body)						\
	do {									\
		__u64 t0_;							\
		struct qtap_prog_stat *ps_ = prog_run_begin(slot, atomic, &t0_);\
		body;								\
		prog_run_end(ps_, atomic, t0_);					\
	} while (0)

#endif

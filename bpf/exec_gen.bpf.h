/* The exec_gen and filter_gen maps, in both BPF objects (the agent points
 * sock.bpf.c's at proc.bpf.c's, which needs the two definitions to agree).
 * Included by the .bpf.c files only.
 *
 * exec_gen: tgid -> exec generation, absent is 0 (see struct
 * qtap_tgid_filter in sock.h).  proc.bpf.c bumps it at every exec but the
 * agent's own, before the event is written (so that a full ring cannot
 * make a generation go unnoticed); sock.bpf.c resets it to 0 at fork and
 * decides under it; the agent deletes it at exit.
 *
 * filter_gen: one counter, bumped after every change to exec_gen or
 * tgid_filter (an exec, a fork, the agent's writes, through its mmap).  A
 * connection left out by the filters remembers the counter and the
 * process it was last found left out for (conn_state.verdict): while
 * neither has changed, its socket calls stop at that, without looking the
 * process's entry up again. */
#ifndef QTAP_BPF_EXEC_GEN_H
#define QTAP_BPF_EXEC_GEN_H

#include "event.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QTAP_PROCS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} exec_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} filter_gen SEC(".maps");

/* The filter_gen counter now (read before the entries it vouches for). */
static __always_inline __u32 filter_gen_read(void)
{
	__u32 zero = 0, *g = bpf_map_lookup_elem(&filter_gen, &zero);

	return g ? *(volatile __u32 *)g : 0;
}

static __always_inline void filter_gen_bump(void)
{
	__u32 zero = 0, *g = bpf_map_lookup_elem(&filter_gen, &zero);

	if (g)
		__sync_fetch_and_add(g, 1);
}

#endif

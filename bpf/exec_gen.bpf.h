/* The exec_gen map, in both BPF objects (the agent points sock.bpf.c's at
 * proc.bpf.c's, which needs the two definitions to agree): tgid -> exec
 * generation, absent is 0 (see struct qtap_tgid_filter in sock.h).
 * proc.bpf.c bumps it at every exec but the agent's own, before the event
 * is written (so that a full ring cannot make a generation go unnoticed);
 * sock.bpf.c resets it to 0 at fork and decides under it; the agent
 * deletes it at exit.  Included by the .bpf.c files only. */
#ifndef QTAP_BPF_EXEC_GEN_H
#define QTAP_BPF_EXEC_GEN_H

#include "event.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QTAP_PROCS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} exec_gen SEC(".maps");

#endif

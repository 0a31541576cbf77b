/* The event ABI shared by the BPF programs (bpf/NAME.bpf.c) and the agent
 * (src/capture/).  Plain __u32/__u64 fields only, naturally aligned, so
 * that both compilers lay the structs out the same way.
 *
 * Every record in a ring buffer starts with struct qtap_event_header.  The
 * agent rejects records whose version is not QTAP_EVENT_ABI_VERSION: bump it
 * whenever a struct below or in a header that includes this one changes. */
#ifndef QTAP_BPF_EVENT_H
#define QTAP_BPF_EVENT_H

/* The BPF side gets the __u* types from vmlinux.h. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define QTAP_EVENT_ABI_VERSION 7

/* qtap_event_header.type: one number space for every program. */
#define QTAP_EVENT_PROCESS_EXEC 1
#define QTAP_EVENT_PROCESS_EXIT 2
#define QTAP_EVENT_PROCESS_FORK 3
#define QTAP_EVENT_CONN_OPEN 10	/* sock.h */
#define QTAP_EVENT_CONN_DATA 11
#define QTAP_EVENT_CONN_CLOSE 12
#define QTAP_EVENT_TLS_DATA 13	/* sock.h: plaintext of a TLS library call */
#define QTAP_EVENT_BATCH 14	/* sock.h: CONN_DATA events of one CPU together */
/* Every type is below this: the events_lost maps have a slot per type. */
#define QTAP_EVENT_TYPES 16

#define QTAP_COMM_LEN 16

/* Processes the per-process maps hold (exec generations, filter entries). */
#define QTAP_PROCS_MAX 65536

struct qtap_event_header {
	__u16 version;		/* QTAP_EVENT_ABI_VERSION */
	__u16 type;		/* QTAP_EVENT_* */
	__u32 cpu;		/* CPU the program ran on */
	__u64 timestamp_ns;	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

#endif

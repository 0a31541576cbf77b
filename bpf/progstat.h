/* Run counts and run time of the agent's programs, kept by the programs
 * themselves (the kernel's own statistics, kernel.bpf_stats_enabled, are a
 * host-wide switch that times every BPF program of every tool; see
 * capture.kernel_bpf_stats in qtap.conf(5)).  Shared by the BPF objects and
 * the agent (src/capture/capture.c).
 *
 * Each object has a per-CPU prog_stats array, one slot per program.  Every
 * run is counted; one run in QTAP_PROG_SAMPLE of each program on each CPU
 * is timed, and its time counts for QTAP_PROG_SAMPLE runs: two clock reads
 * on every run would cost more than some of the programs themselves. */
#ifndef QTAP_BPF_PROGSTAT_H
#define QTAP_BPF_PROGSTAT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* A power of two. */
#define QTAP_PROG_SAMPLE 16

struct qtap_prog_stat {
	__u64 runs;
	__u64 sampled_ns;	/* run time of the timed runs */
};

/* proc.bpf.c's slots */
#define QTAP_PS_PROC_FORK 0
#define QTAP_PS_PROC_EXEC 1
#define QTAP_PS_PROC_EXIT 2
#define QTAP_PS_PROC_SLOTS 3

/* sock.bpf.c's slots */
#define QTAP_PS_SOCK_FORK 0
#define QTAP_PS_SOCK_FLUSH 1
#define QTAP_PS_SOCK_SEND 2
#define QTAP_PS_SOCK_RECV 3
#define QTAP_PS_SOCK_STATE 4
#define QTAP_PS_SOCK_DESTROY 5
#define QTAP_PS_TLS_ENTER 6
#define QTAP_PS_TLS_RETURN 7
#define QTAP_PS_SOCK_SLOTS 8

/* The most slots of any object (the maps' size). */
#define QTAP_PS_SLOTS_MAX 8

_Static_assert(QTAP_PS_PROC_SLOTS <= QTAP_PS_SLOTS_MAX && QTAP_PS_SOCK_SLOTS <= QTAP_PS_SLOTS_MAX,
	       "a program's slot past the end of prog_stats would go uncounted");

#endif

/* Process life events: bpf/proc.bpf.c emits them, src/capture/ keeps the
 * process table from them.  See event.h for the ABI rules. */
#ifndef QTAP_BPF_PROC_H
#define QTAP_BPF_PROC_H

#include "event.h"

/* Bytes of the exec'd file name kept, NUL included; longer names are
 * truncated (filename_truncated is set). */
#define QTAP_PROC_FILENAME_LEN 512

/* Type QTAP_EVENT_PROCESS_{EXEC,EXIT,FORK}; tgid, ppid, start_time_ns and
 * comm always describe the process the event is about.
 * - fork: a new process (not a thread) was created; it runs the parent's
 *   exe.  filename is empty, exit_code 0.
 * - exec: after a successful execve(); comm is the new one, filename the
 *   path as given to execve() (possibly relative), exit_code 0.
 * - exit: once per process, when its last thread exits; filename is empty,
 *   exit_code is the wait(2) status. */
struct qtap_proc_event {
	struct qtap_event_header hdr;
	__u32 tgid;
	__u32 ppid;		/* tgid of the real parent */
	__u64 start_time_ns;	/* process start, ns since boot (CLOCK_BOOTTIME) */
	__u32 exit_code;
	__u16 filename_len;	/* bytes in filename, NUL excluded */
	__u16 filename_truncated;
	/* EXEC: the process's exec generation this exec began (the exec_gen
	 * map; see struct qtap_tgid_filter in sock.h); 0 otherwise. */
	__u32 exec_gen;
	__u32 flags;		/* QTAP_PROC_F_* */
	/* The process's cgroup (v2) when the event was written: the id of
	 * its directory in the unified hierarchy (its inode number). */
	__u64 cgroup_id;
	char comm[QTAP_COMM_LEN];
	char filename[QTAP_PROC_FILENAME_LEN];
};

/* qtap_proc_event.flags.  EXEC_BY_THREAD: a thread other than the
 * process's first one called execve(); it took over the process's pid, and
 * its old leader is gone. */
#define QTAP_PROC_F_EXEC_BY_THREAD 1u

/* Size of the ring buffer proc.bpf.c writes into; a power of two multiple
 * of the page size, set before load. */
#define QTAP_PROC_RINGBUF_BYTES (1u << 20)

#endif

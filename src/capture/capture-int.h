/* Private header of src/capture/, one section per file. */
#ifndef QTAP_CAPTURE_CAPTURE_INT_H
#define QTAP_CAPTURE_CAPTURE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "capture/capture.h"

/* --- proc_table.c ------------------------------------------------------
 * The process table: tgid -> exe, comm, ppid, start time, in a liburcu
 * lock-free hash table (cds_lfht).  Entries are immutable once published;
 * an exec replaces the entry (cds_lfht_add_replace) and the old one is
 * freed after a grace period (call_rcu).
 *
 * Threads: one writer at a time (the capture reader thread: put, remove,
 * clear); any number of readers (lookup, count), e.g. parser workers.
 * Writer and readers must be RCU-registered (rcu_register_thread()).
 * Lookups cost one hash probe and a copy, without locks, so they may run
 * per connection. */
struct proc_table;

/* NULL and errno on failure. */
struct proc_table *proc_table_new(void);
/* Destroys an empty table (clear it first from an RCU-registered thread)
 * and waits for the pending frees.  No concurrent user.  Accepts NULL. */
void proc_table_free(struct proc_table **t);
/* Inserts or replaces the entry of info->tgid: 0 or -ENOMEM.  Writer. */
int proc_table_put(struct proc_table *t, const struct capture_proc_info *info);
/* 0, or -ENOENT when tgid is not in the table.  Writer. */
int proc_table_remove(struct proc_table *t, uint32_t tgid);
/* Removes every entry.  Writer. */
void proc_table_clear(struct proc_table *t);
/* Copies the entry of tgid into *ret: 0, or -ENOENT (ret untouched). */
int proc_table_lookup(struct proc_table *t, uint32_t tgid, struct capture_proc_info *ret);
/* Entries in the table; any thread. */
size_t proc_table_count(struct proc_table *t);

/* --- procfs.c ----------------------------------------------------------
 * Seeding the process table from /proc.  No logging: the caller decides. */

/* What capture needs from /proc/PID/stat. */
struct proc_stat {
	uint32_t pid;
	uint32_t ppid;
	char state;		/* R, S, D, Z, X, ... */
	unsigned long flags;	/* PF_* */
	uint64_t start_ticks;	/* since boot, in clock ticks */
	char comm[CAPTURE_COMM_LEN];
};

/* Parses the text of /proc/PID/stat (NUL-terminated): 0 or -EINVAL. */
int procfs_stat_parse(const char *text, struct proc_stat *ret);
/* Puts every user-space process found under proc_root (normally "/proc")
 * into t, skipping kernel threads, zombies and processes that vanish
 * during the scan, and skip_tgid (0: none).  Writer thread of t.
 * 0 or -errno when proc_root cannot be read; *ret_count gets the number
 * of processes put. */
int procfs_scan(const char *proc_root, struct proc_table *t, uint32_t skip_tgid,
		size_t *ret_count);

#endif

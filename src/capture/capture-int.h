/* Private header of src/capture/, one section per file. */
#ifndef QTAP_CAPTURE_CAPTURE_INT_H
#define QTAP_CAPTURE_CAPTURE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/capture.h"

struct qtap_conf;
struct capture_trace;
struct metric_series;
struct metrics_store;
struct pipeline;
struct pipeline_conn_ref;
struct proc_bpf;
struct sock_bpf;
struct ring_buffer;
struct tls_probes;

/* --- capture.c -----------------------------------------------------------
 * The capture: both skeletons (proc and sock), the process-event reader,
 * the socket readers (sock.c), the pipeline they feed and the filters
 * (filter.c). */

/* CLOCK_MONOTONIC in nanoseconds (the kernel's bpf_ktime_get_ns()). */
uint64_t capture_mono_ns(void);

/* Kinds of socket events counted in events_received_total{cpu,type} and
 * events_lost_total{cpu,type}: their QTAP_EVENT_* types in order from
 * QTAP_EVENT_CONN_OPEN, their names. */
enum { SOCK_KIND_OPEN, SOCK_KIND_DATA, SOCK_KIND_CLOSE, SOCK_KIND_TLS_DATA, SOCK_KIND__COUNT };
extern const char *const sock_kind_names[SOCK_KIND__COUNT];

/* One socket reader thread: drains the rings of the CPUs c with
 * c % n_readers == index, and is pipeline producer `index`. */
struct sock_reader {
	struct capture *cap;
	unsigned index;
	pthread_t thread;
	bool started;
	struct ring_buffer *rb;
	int epoll_fd;			/* its rings (rb's epoll) and sock_wake_fd */
	/* Reader thread only. */
	struct metric_series **received;	/* [ncpus][SOCK_KIND__COUNT] */
	struct metric_series *invalid;		/* events_dropped{reason="invalid"} */
	bool bad_event_logged;
	bool flush_err_logged;
};

struct capture {
	/* Written by capture_start() before the readers start, read-only
	 * afterwards by every thread. */
	struct capture_opts opts;
	struct capture_trace *trace;	/* --bpf-trace, or NULL */
	struct metrics_store *store;
	struct proc_bpf *skel;
	struct sock_bpf *sock;
	struct ring_buffer *rb;		/* process events */
	struct proc_table *procs;
	struct pipeline *pipeline;
	uint32_t self_tgid;
	int ncpus;
	unsigned nprogs;		/* both skeletons */
	int stats_fd;
	bool kernel_stats;		/* capture.kernel_bpf_stats, at start */
	int *ring_fds;			/* [ncpus] per-CPU socket rings */
	size_t ring_bytes;
	/* The sock program's stage map, mapped: [ncpus].  The agent writes
	 * only reader_asleep there, each CPU's by its reader. */
	struct qtap_stage *stages;
	size_t stages_len;
	/* The filter_gen counter (bpf/exec_gen.bpf.h), mapped: bumped by
	 * filter_write() and filter_proc_forget(). */
	uint32_t *filter_gen;
	struct sock_reader *readers;	/* [n_readers] */
	unsigned n_readers;
	unsigned proc_producer;		/* the process reader's producer index */
	pthread_t reader;
	bool reader_started;

	/* Start handshake and the stop sequence: the process reader writes
	 * ready, ready_err and drained under lock; capture_start() and
	 * capture_free() wait for them and write pipeline_gone. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool ready;
	int ready_err;
	bool drained;
	bool pipeline_gone;

	/* Filters: conf is read and replaced by the process reader only
	 * (it is the one writer of tgid_filter); capture_reconfigure() hands
	 * a new one over through conf_next under lock and waits for
	 * conf_done to reach its conf_seq. */
	const struct qtap_conf *conf;
	const struct qtap_conf *conf_next;
	unsigned long conf_seq;
	unsigned long conf_done;

	/* Written by capture_stop(), read by the readers. */
	atomic_bool stop;
	atomic_bool sock_stop;
	int sock_wake_fd;		/* eventfd, written with sock_stop */

	/* Process reader thread only. */
	struct metric_series **received;	/* [ncpus][KIND__COUNT] */
	struct metric_series *tracked;
	struct metric_series *invalid;		/* events_dropped{reason="invalid"} */
	struct capture_proc_info scratch;	/* the entry being put */
	struct capture_proc_info parent;	/* a forking parent's entry */
	bool bad_event_logged;
	bool put_failed_logged;
	bool filter_failed_logged;
	struct capture_proc_info filter_scratch; /* filter_proc_apply(), proc_allowed() */
	/* Exited processes waiting out proc_linger_ms before they leave the
	 * process table, oldest first (the process reader only). */
	struct proc_exit {
		uint32_t tgid;
		uint64_t start_time_ns;
		uint64_t due_ns;	/* CLOCK_MONOTONIC */
	} *exits;
	size_t exits_head, exits_len, exits_cap;
	/* Lost process events: the count the table was last compared with
	 * /proc at, when the count is next read, and the buffer it is read
	 * into ([ncpus]). */
	uint64_t lost_reconciled;
	uint64_t reconcile_next_ns;
	uint64_t *reader_lost_values;
	bool reconcile_logged;
	bool reconcile_failed_logged;
	/* The TLS library probes (tls.c), NULL when none are asked for. */
	struct tls_probes *tls;
	/* The cgroup2 mount, found at start; "" when there is none. */
	char cgroup2_root[256];

	/* Scrape thread only (capture_collect). */
	struct metric_series **prog_runs;	/* [nprogs] */
	struct metric_series **prog_ns;		/* [nprogs] */
	struct metric_series **prog_misses;	/* [nprogs] */
	struct qtap_prog_stat *prog_stat_values;	/* [ncpus]: one slot, read */
	struct metric_series **lost;		/* [ncpus][process and socket kinds] */
	uint64_t *lost_values;			/* [ncpus]: one slot, read */
	struct metric_series *tls_untied;
};

/* --- sock.c --------------------------------------------------------------
 * The socket side: per-CPU rings and the reader threads.  Main thread
 * (setup, start, stop) unless said otherwise. */

/* Between open and load: checks the kernel has what the socket programs
 * need (kernel_features_read()), sizes the sock skeleton's maps from the
 * capture's tuning and creates the per-CPU ring buffers.  0 or -errno
 * (logged). */
int sock_bpf_prepare(struct capture *cap);

/* What the running kernel has for the socket programs, from its BTF. */
struct kernel_features {
	bool sock_length_tps;	/* tracepoints sock_send_length, sock_recv_length (6.3) */
	bool sendpage;		/* proto_ops.sendpage: sendfile(2) does not go through
				 * sendmsg, nor its tracepoint (before 6.5) */
	bool uprobe_multi;	/* uprobe_multi links (6.6) */
};
struct btf;
void kernel_features_read(const struct btf *btf, struct kernel_features *f);

/* After load, before attach: puts the rings into the events map and maps
 * the stages. */
int sock_rings_insert(struct capture *cap);
/* Closes the rings and unmaps the stages (after the skeleton is
 * destroyed or never loaded). */
void sock_rings_free(struct capture *cap);
/* Starts cap->n_readers reader threads: 0 or -errno (logged). */
int sock_readers_start(struct capture *cap);
/* Stops them after they drained their rings (programs detached). */
void sock_readers_stop(struct capture *cap);
/* pipeline_conn_forget_fn: drops a connection from the kernel's conns map (and the
 * agent's word on it from the learned map), if its entry is still its own. */
void sock_conn_forget(void *ctx, uint64_t key, uint64_t conn_id);
/* pipeline_conn_learned_fn: the agent's word on a learned connection, for
 * the programs (the learned map). */
void sock_conn_learned(void *ctx, uint64_t key, uint64_t conn_id, uint8_t direction, bool skip);
/* pipeline_conn_alive_fn: asks the conns map, then (for a socket in the
 * agent's network namespace) the kernel's socket diagnostics.  ctx NULL:
 * the diagnostics only. */
bool sock_conn_alive(void *ctx, const struct pipeline_conn_ref *c);

/* --- tls.c ---------------------------------------------------------------
 * The TLS library uprobes: found at start and at every exec, attached once
 * per library file, detached when no process maps it.  Process reader
 * thread (tls_probes_stop() once it stopped). */

/* BPF_TRACE_UPROBE_MULTI (kernel 6.6), which this libbpf's headers
 * predate: the attach type of the TLS library probes. */
#define CAPTURE_ATTACH_UPROBE_MULTI 48

/* Attaches the system's libraries and those the processes in the table
 * map (opts.tls_probes; nothing when 0).  0 or -ENOMEM (logged); a file
 * that cannot be attached is counted and logged, not an error. */
int tls_probes_start(struct capture *cap);
/* A process ran exec: its new image now, its libraries a little later
 * (per process: its links given or taken by the filters' decision, which
 * must be written first; by_thread: a thread other than the first one
 * exec'd, and links made before are bound to the old leader). */
void tls_proc_exec(struct capture *cap, uint32_t tgid, bool by_thread);
/* A new process (per process: its links, by its decision). */
void tls_proc_fork(struct capture *cap, uint32_t tgid);
/* A process exited: its own links, and files no process maps any more,
 * are detached. */
void tls_proc_exit(struct capture *cap, uint32_t tgid);
/* The filters changed (per process: every process's links follow). */
void tls_probes_resync(struct capture *cap);
/* Runs the scans that are due (the process reader's loop). */
void tls_rescans_run(struct capture *cap);
/* Detaches everything and frees. */
void tls_probes_stop(struct capture *cap);

/* --- filter.c ------------------------------------------------------------
 * Which processes and connections are traced: tap.direction,
 * tap.ignore_loopback, filters.groups and filters.custom turned into the
 * sock_config and tgid_filter maps.  Decisions are pure functions of the
 * configuration and the process; the maps are written by the process
 * reader thread (tgid_filter) and the main thread (sock_config). */

/* The tgid_filter value for a process: QTAP_TGID_IGNORE, QTAP_TGID_ALLOW,
 * or 0 (no entry).  conf NULL means the defaults (groups = qpoint). */
/* pipeline_conn_wanted_fn (ctx: the capture): the same decision, for a
 * connection the kernel marked undecided, with the running configuration
 * and the image the process runs now (/proc/PID/exe; exe when the process
 * is gone).  Worker threads. */
bool filter_conn_wanted(void *ctx, uint32_t tgid, const char *exe, const char *comm);
unsigned filter_decide(const struct qtap_conf *conf, uint32_t self_tgid,
		       const struct capture_proc_info *info);
/* The exe (or, without one, the comm) belongs to a group: the
 * CONF_GROUP_* bit, 0 for none.  CONF_GROUP_QPOINT is never returned (it
 * is decided by tgid). */
unsigned filter_group_of(const char *exe, const char *comm);
/* Maps the filter_gen counter (after load) / unmaps it.  Main thread. */
int filter_gen_map(struct capture *cap);
void filter_gen_unmap(struct capture *cap);
/* Writes sock_config from conf (NULL: defaults).  Any thread. */
int filter_config_write(struct capture *cap, const struct qtap_conf *conf);
/* The process's exec generation as the kernel has it now (0: none yet, or
 * the process is gone).  Any thread. */
uint32_t filter_exec_gen(struct capture *cap, uint32_t tgid);
/* Writes or deletes the tgid_filter entry of one process from cap->conf,
 * for gen: the process's exec generation, read (filter_exec_gen()) before
 * anything of its image was.  Process reader thread. */
int filter_proc_apply(struct capture *cap, const struct capture_proc_info *info, uint32_t gen);
/* Deletes the entry of an exited process.  Process reader thread. */
void filter_proc_forget(struct capture *cap, uint32_t tgid);
/* Recomputes every entry from the process table and cap->conf, removing
 * stale ones.  Process reader thread.  0 or -errno (first failure). */
int filter_apply_all(struct capture *cap);

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
/* The same, only if the entry is still the process that started at
 * start_time_ns (the pid may have been reused since).  Writer. */
int proc_table_remove_if(struct proc_table *t, uint32_t tgid, uint64_t start_time_ns);
/* Removes every entry.  Writer. */
void proc_table_clear(struct proc_table *t);
/* Copies the entry of tgid into *ret: 0, or -ENOENT (ret untouched). */
int proc_table_lookup(struct proc_table *t, uint32_t tgid, struct capture_proc_info *ret);
/* The exec generation of tgid's entry into *ret: 0, or -ENOENT. */
int proc_table_exec_gen(struct proc_table *t, uint32_t tgid, uint32_t *ret);
/* Whether tgid's entry is the process started at start_time_ns. */
bool proc_table_holds(struct proc_table *t, uint32_t tgid, uint64_t start_time_ns);
/* Entries in the table; any thread. */
size_t proc_table_count(struct proc_table *t);
/* Calls fn for every entry (a copy in *scratch) until fn returns non-zero,
 * which is returned; 0 after the last entry.  Any RCU-registered thread;
 * entries added or removed meanwhile may or may not be seen. */
int proc_table_foreach(struct proc_table *t, struct capture_proc_info *scratch,
		       int (*fn)(const struct capture_proc_info *info, void *ctx), void *ctx);

/* --- procfs.c ----------------------------------------------------------
 * Seeding the process table from /proc.  No logging: the caller decides. */

/* What capture needs from /proc/PID/stat. */
struct proc_stat {
	uint32_t pid;
	uint32_t ppid;
	char state;		/* R, S, D, Z, X, ... */
	unsigned long flags;	/* PF_* */
	unsigned long num_threads;
	uint64_t start_ticks;	/* since boot, in clock ticks */
	char comm[CAPTURE_COMM_LEN];
};

/* The container id in a cgroup path: the last run of exactly 64 lower-case
 * hex digits between non-hex characters ("/docker/<id>",
 * ".../docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>",
 * "libpod-<id>", kubepods pod paths).  0, or -ENOENT (out untouched). */
int procfs_container_id(const char *path, char *out, size_t n);
/* Where the unified (v2) cgroup hierarchy is mounted, from a mountinfo
 * file ("/proc/self/mountinfo"): /sys/fs/cgroup, or /sys/fs/cgroup/unified
 * on hybrid hosts.  0, -ENOENT when none is mounted, or -errno. */
int procfs_cgroup2_root(const char *mountinfo, char *out, size_t n);
/* Fills info->cgroup_id (the inode of cgroup2_root/PATH for the unified
 * "0::PATH" line, which is what bpf_get_current_cgroup_id() returns) and
 * info->container_id (from any hierarchy's path) from
 * proc_root/PID/cgroup; 0 and "" when the process is gone or they are
 * unknown.  cgroup2_root may be NULL (no id). */
void procfs_cgroup_fill(const char *proc_root, const char *cgroup2_root,
			struct capture_proc_info *info);

/* The path /proc/TGID/exe names, NUL-terminated in buf (size bytes), as
 * the file was called (procfs_path_len()): true; false, buf untouched,
 * when the process is gone or has no image. */
bool procfs_exe(uint32_t tgid, char *buf, size_t size);
/* The length of a path the kernel gave for an open or running file (of n
 * bytes) without the " (deleted)" it adds once the file is unlinked (a
 * binary upgraded while it runs): n when it has none. */
size_t procfs_path_len(const char *path, size_t n);
/* A process's start time (ns since boot) as /proc/PID/stat gives it, to
 * the clock tick: the kernel's events give it to the ns, and the table
 * compares the two (an entry from the /proc scan, an exit event). */
uint64_t procfs_start_time(uint64_t boottime_ns);
/* Parses the text of /proc/PID/stat (NUL-terminated): 0 or -EINVAL. */
int procfs_stat_parse(const char *text, struct proc_stat *ret);
/* Calls fn with every user-space process found under proc_root (normally
 * "/proc"), its entry as the table would hold it (cgroup filled), skipping
 * kernel threads, zombies and processes that vanish during the scan, and
 * skip_tgid (0: none).  0, fn's first non-zero return (which ends the
 * scan), or -errno when proc_root cannot be read. */
int procfs_foreach(const char *proc_root, const char *cgroup2_root, uint32_t skip_tgid,
		   int (*fn)(const struct capture_proc_info *info, void *ctx), void *ctx);
/* Puts every process procfs_foreach() finds into t.  Writer thread of t.
 * 0 or -errno (*ret_count untouched) when proc_root cannot be read or an
 * entry cannot be put; *ret_count gets the number of processes put. */
int procfs_scan(const char *proc_root, const char *cgroup2_root, struct proc_table *t,
		uint32_t skip_tgid, size_t *ret_count);
/* Whether process tgid, started at start_time_ns (to the clock tick, as
 * the table holds it), is known to have ended: its directory under
 * proc_root is gone or holds a later process that took its pid, or it
 * is a zombie, exited and not reaped yet (not one whose first thread
 * ended while others run).  false too when its stat cannot be read for
 * another reason (the agent out of files): it is kept until asked again. */
bool procfs_gone(const char *proc_root, uint32_t tgid, uint64_t start_time_ns);

#endif

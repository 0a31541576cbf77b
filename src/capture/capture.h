/* Capture: loads the BPF programs (skeleton lifecycle in one place),
 * attaches them, and runs the threads that drain the kernel buffers.
 *
 * Threads: capture_start()/capture_stop() run on the main thread; the reader
 * threads they start are metric writers; the BPF statistics collector runs
 * on the scrape thread.  capture_proc_lookup() may run on any RCU-registered
 * thread (parser workers). */
#ifndef QTAP_CAPTURE_CAPTURE_H
#define QTAP_CAPTURE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct metrics_store;
struct capture;
struct qtap_conf;
struct qtap_proc_event;

#define CAPTURE_COMM_LEN 16
#define CAPTURE_EXE_LEN 4096
#define CAPTURE_CONTAINER_ID_LEN 65

/* A process table entry, as copied out by capture_proc_lookup(). */
struct capture_proc_info {
	uint32_t tgid;
	uint32_t ppid;
	uint64_t start_time_ns;		/* ns since boot, to the clock tick */
	char comm[CAPTURE_COMM_LEN];
	/* /proc/PID/exe when it could be read; else the path given to
	 * execve() (a process that exited at once), or for a fork the
	 * parent's exe; "" when none of them is known. */
	char exe[CAPTURE_EXE_LEN];
	/* The process's cgroup (v2): its id (the inode of its directory, as
	 * bpf_get_current_cgroup_id() gives it) and the container id its
	 * path carries (64 hex digits: docker, containerd, CRI-O, podman,
	 * kubepods); 0 and "" when unknown or none. */
	uint64_t cgroup_id;
	char container_id[CAPTURE_CONTAINER_ID_LEN];
	/* The exec generation (the kernel's count of the process's execs
	 * since its fork, or since the agent started for an older process)
	 * of the exec that put this entry in the table: an exec event's, 0 for
	 * a fork or a process found by the /proc scan.  exe is that exec's
	 * image. */
	uint32_t exec_gen;
};

/* Called on the reader thread for each process event (fork, exec, exit),
 * after the process table applied it (--bpf-trace, tests).  Must not
 * block. */
typedef void (*capture_proc_event_fn)(const struct qtap_proc_event *ev, void *ctx);
/* Called on a socket reader thread for every socket event (a struct
 * qtap_conn_open, qtap_conn_data with its payload, or qtap_conn_close,
 * size bytes, checked against the ABI) before it goes to the pipeline
 * (tests).  Several readers may call it at once.  Must not block. */
typedef void (*capture_sock_event_fn)(const void *ev, size_t size, void *ctx);

struct capture_opts {
	/* Mount tracefs at /sys/kernel/tracing when it is not mounted. */
	bool mount_tracefs;
	/* --bpf-trace filter, or NULL. */
	const char *bpf_trace;
	/* The process treated as the agent itself (filters.groups "qpoint"):
	 * the kernel never reports it.  0 means this process. */
	pid_t self_tgid;
	/* Optional; see capture_proc_event_fn. */
	capture_proc_event_fn proc_event_fn;
	void *proc_event_ctx;
	/* The configuration: tap.direction, tap.ignore_loopback, the filters
	 * and the capture.* tuning (readers, workers, ring_buffer_kb,
	 * queue_kb, idle_timeout).  NULL means the defaults (everything
	 * traced but the agent itself).  It must stay valid until
	 * capture_reconfigure() replaced it or capture_stop() returned. */
	const struct qtap_conf *conf;
	/* Optional; see capture_sock_event_fn. */
	capture_sock_event_fn sock_event_fn;
	void *sock_event_ctx;
	/* Connections the kernel tracks at once; 0: QTAP_SOCK_MAX_CONNS. */
	unsigned max_conns;
	/* How long an exited process stays in the process table, for its
	 * connections' events still on their way to the workers; 0: 5000. */
	unsigned proc_linger_ms;
	/* The TLS libraries whose read and write functions get uprobes
	 * (CAPTURE_TLS_* bits); 0: none. */
	unsigned tls_probes;
	/* How they are attached: CAPTURE_TLS_ATTACH_LIBRARY (once per
	 * library file, for every process) or CAPTURE_TLS_ATTACH_PROCESS
	 * (for each process the filters allow). */
	unsigned tls_attach;
};

#define CAPTURE_TLS_ATTACH_LIBRARY 0
#define CAPTURE_TLS_ATTACH_PROCESS 1

#define CAPTURE_TLS_OPENSSL (1u << 0)	/* OpenSSL and BoringSSL libraries */
#define CAPTURE_TLS_GNUTLS (1u << 1)
#define CAPTURE_TLS_NODETLS (1u << 2)	/* OpenSSL exported by an executable */

/* Mounts tracefs if needed, enables the kernel's BPF run statistics for the
 * agent's life when capture.kernel_bpf_stats asks for them,
 * loads and attaches the programs, seeds the process table from /proc,
 * starts the readers and registers the /system/metrics collector.  NULL and
 * errno on failure, after logging why (this is the caller that decides, so
 * it logs).  The calling thread need not be RCU-registered. */
struct capture *capture_start(const struct capture_opts *opts, struct metrics_store *store);
/* Detaches everything, stops the readers after draining what was queued,
 * frees everything.  Accepts NULL and clears *cap.  The store keeps the
 * collector capture_start() registered: call this only once nothing
 * scrapes the store any more (after the HTTP server stopped). */
void capture_stop(struct capture **cap);

/* Applies a new configuration's tap.direction, tap.ignore_loopback and
 * filters (the capture.* tuning is start-time only): rewrites the kernel's
 * sock_config and recomputes every process's filter entry.  A connection
 * keeps the decision taken when it was first seen (traced or left out)
 * until it closes.  Main thread; returns once the readers use
 * conf, so the previous one may be freed afterwards: call it before
 * conf_publish(conf).  0 or -errno (logged). */
int capture_reconfigure(struct capture *cap, const struct qtap_conf *conf);

/* Mounts tracefs at path when nothing is mounted there; 0 or -errno.
 * Idempotent. */
int capture_tracefs_mount(const char *path);

/* Copies the process table entry of tgid into *ret: 0, or -ENOENT when the
 * process is unknown (ret untouched).  Any RCU-registered thread, without
 * locks: cheap enough for once per connection. */
int capture_proc_lookup(struct capture *cap, uint32_t tgid, struct capture_proc_info *ret);
/* Processes in the table; any thread. */
size_t capture_proc_count(struct capture *cap);

/* --bpf-trace filters (trace.c).  Parsed once at start; read-only after. */
#define CAPTURE_TRACE_PROCESS (1u << 0)
#define CAPTURE_TRACE_SYSCALL (1u << 1)
#define CAPTURE_TRACE_OPENSSL (1u << 2)
#define CAPTURE_TRACE_GNUTLS (1u << 3)
#define CAPTURE_TRACE_ALL 0xfu

struct capture_trace;

/* Parses FILTER ("process,exe=curl"); with ret NULL only checks it.  0,
 * -EINVAL or -ENOMEM. */
int capture_trace_parse(const char *filter, struct capture_trace **ret);
void capture_trace_free(struct capture_trace **trace);
/* Whether an event of module (one CAPTURE_TRACE_* bit) by a process with
 * this comm and exe is to be logged; false for a NULL trace. */
bool capture_trace_wants(const struct capture_trace *trace, unsigned module,
			 const char *comm, const char *exe);

#endif

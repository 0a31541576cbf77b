/* Capture: the BPF skeletons' lifecycle (process and socket programs), the
 * reader thread that drains the process events, the process table they
 * maintain, the pipeline the socket readers (sock.c) feed, and the
 * /system/metrics collector for the kernel-side counters. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <urcu.h>

#include "proc.h"
#include "proc.skel.h"
#include "progstat.h"
#include "sock.h"
#include "sock.skel.h"

#include "capture/capture-int.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "parse/parse.h"
#include "util/log.h"

#define TRACEFS_PATH "/sys/kernel/tracing"
/* The reader wakes at least this often to see a stop request. */
#define READER_POLL_MS 100

/* Event kinds counted in qtap_system_events_received_total{cpu,type} and
 * events_lost_total{cpu,type}, and their QTAP_EVENT_* types. */
enum { KIND_FORK, KIND_EXEC, KIND_EXIT, KIND__COUNT };
static const char *const kind_names[KIND__COUNT] = {
	"process_fork", "process_exec", "process_exit"
};
static const __u32 kind_types[KIND__COUNT] = {
	QTAP_EVENT_PROCESS_FORK, QTAP_EVENT_PROCESS_EXEC, QTAP_EVENT_PROCESS_EXIT
};
/* Every kind of either program, in events_lost_total: the process kinds,
 * then the socket kinds. */
#define LOST_KINDS (KIND__COUNT + SOCK_KIND__COUNT)

/* libbpf's messages, a line of the log each: a program the verifier
 * rejects comes with its whole log, whose last lines say why. */
__attribute__((format(printf, 2, 0)))
static int capture_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char *msg, *line, *next;

	if (level != LIBBPF_WARN && log_get_level() > LOG_LEVEL_DEBUG)
		return 0;
	if (vasprintf(&msg, fmt, ap) < 0)
		return 0;
	for (line = msg; *line; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = '\0';
		if (!*line)
			continue;
		/* libbpf's messages start with "libbpf: " already. */
		if (level == LIBBPF_WARN)
			log_warn("%s", line);
		else
			log_debug("%s", line);
	}
	free(msg);
	return 0;
}

/* ---- events (reader thread) ----------------------------------------
 * fork and exec put the process in the table, exit takes it out. */

/* The cgroup2 mount for the process table's cgroup ids, or NULL. */
static const char *cgroup2_root(const struct capture *cap)
{
	return cap->cgroup2_root[0] ? cap->cgroup2_root : NULL;
}

/* The exe of ev's process: /proc/PID/exe while the process lives (the
 * resolved path, as the /proc scan sees it) and, for an exec, has not
 * exec'd again since (gen, the kernel's generation now, is the event's);
 * else, for an exec, the name given to execve(); for a fork, the parent's.
 * "" when none is known. */
static void proc_event_exe(struct capture *cap, const struct qtap_proc_event *ev, uint32_t gen,
			   char *exe, size_t size)
{
	size_t len;

	if ((ev->hdr.type != QTAP_EVENT_PROCESS_EXEC || gen == ev->exec_gen) &&
	    procfs_exe(ev->tgid, exe, size))
		return;
	exe[0] = '\0';
	if (ev->hdr.type == QTAP_EVENT_PROCESS_FORK) {
		if (proc_table_lookup(cap->procs, ev->ppid, &cap->parent) == 0)
			snprintf(exe, size, "%s", cap->parent.exe);
		return;
	}
	len = ev->filename_len;
	if (len > sizeof(ev->filename) - 1)
		len = sizeof(ev->filename) - 1;
	if (len > size - 1)
		len = size - 1;
	memcpy(exe, ev->filename, len);
	exe[len] = '\0';
}

/* One --bpf-trace line: what the kernel reported and what the table did. */
static void proc_event_trace(const struct qtap_proc_event *ev, unsigned kind,
			     const struct capture_proc_info *info)
{
	if (kind == KIND_EXIT)
		log_info("bpf-trace module=process op=exit cpu=%u pid=%u comm=%s exe=%s "
			 "status=%u decision=forget", ev->hdr.cpu, ev->tgid, info->comm,
			 info->exe, ev->exit_code);
	else
		log_info("bpf-trace module=process op=%s cpu=%u pid=%u ppid=%u comm=%s "
			 "exe=%s decision=track", kind == KIND_FORK ? "fork" : "exec",
			 ev->hdr.cpu, ev->tgid, ev->ppid, info->comm, info->exe);
}

#define PROC_LINGER_MS_DEFAULT 5000

uint64_t capture_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Processes in the table that still run (the exited ones linger).  (An
 * exit heard twice, the comparison's and its own event's, lingers twice
 * for a moment: never below 0.) */
static size_t procs_running(const struct capture *cap)
{
	size_t n = proc_table_count(cap->procs), exited = cap->exits_len - cap->exits_head;

	return n > exited ? n - exited : 0;
}

/* An exited process leaves the table proc_linger_ms later: the events of
 * its connections may still be in the socket rings and queues, and the
 * workers name the process from the table.  When the list cannot grow,
 * at once.  One the table does not hold (its fork lost) has nothing to
 * wait for, and is not counted as lingering. */
static void proc_exit_defer(struct capture *cap, uint32_t tgid, uint64_t start_time_ns)
{
	unsigned linger = cap->opts.proc_linger_ms ? cap->opts.proc_linger_ms :
		PROC_LINGER_MS_DEFAULT;

	if (!proc_table_holds(cap->procs, tgid, start_time_ns))
		return;

	if (cap->exits_len == cap->exits_cap) {
		size_t n = cap->exits_cap ? cap->exits_cap * 2 : 64;
		struct proc_exit *p;

		if (cap->exits_head) {	/* reuse the reaped front first */
			memmove(cap->exits, cap->exits + cap->exits_head,
				(cap->exits_len - cap->exits_head) * sizeof(*cap->exits));
			cap->exits_len -= cap->exits_head;
			cap->exits_head = 0;
		}
		if (cap->exits_len == cap->exits_cap) {
			p = realloc(cap->exits, n * sizeof(*p));
			if (!p) {
				proc_table_remove_if(cap->procs, tgid, start_time_ns);
				return;
			}
			cap->exits = p;
			cap->exits_cap = n;
		}
	}
	cap->exits[cap->exits_len++] = (struct proc_exit){
		.tgid = tgid,
		.start_time_ns = start_time_ns,
		.due_ns = capture_mono_ns() + (uint64_t)linger * 1000000u,
	};
}

/* Takes the exited processes whose linger is over out of the table. */
static void proc_exits_reap(struct capture *cap)
{
	uint64_t now = capture_mono_ns();

	while (cap->exits_head < cap->exits_len && cap->exits[cap->exits_head].due_ns <= now) {
		const struct proc_exit *x = &cap->exits[cap->exits_head++];

		proc_table_remove_if(cap->procs, x->tgid, x->start_time_ns);
	}
	if (cap->exits_head == cap->exits_len)
		cap->exits_head = cap->exits_len = 0;
}

/* Whether /proc/PID/exe names the image of exec generation gen (0:
 * whichever the process runs): the process runs, and has not exec'd since.
 * When it does, the path is copied into exe (CAPTURE_EXE_LEN bytes) unless
 * exe is NULL; exe is left as it was otherwise. */
static bool proc_exe_of_gen(struct capture *cap, uint32_t tgid, uint32_t gen, char *exe)
{
	/* Per thread (the workers, the process reader): an exe path is too
	 * large for a worker's stack. */
	static __thread char buf[CAPTURE_EXE_LEN];

	if (!procfs_exe(tgid, buf, sizeof(buf)) || (gen && filter_exec_gen(cap, tgid) != gen))
		return false;
	if (exe)
		memcpy(exe, buf, strlen(buf) + 1);
	return true;
}

/* What a process's exit does, from its exit event or found by
 * procs_reconcile(): it lingers in the table (see proc_exit_defer()), its
 * filter entry and TLS probes go, and the workers close its connections
 * (at ts, its exit's kernel timestamp; 0, unknown: at their last
 * activity). */
static void proc_exit_apply(struct capture *cap, uint32_t tgid, uint64_t start_time_ns,
			    uint64_t ts)
{
	proc_exit_defer(cap, tgid, start_time_ns);
	filter_proc_forget(cap, tgid);
	tls_proc_exit(cap, tgid);
	pipeline_submit_exit(cap->pipeline, cap->proc_producer, tgid, ts);
}

/* What a fork or exec does to the table and the filters, from its event
 * or found by procs_reconcile(): info (a process's entry, its image and
 * cgroup filled) put, and its filter entry written for exec generation
 * gen. */
static void proc_put_apply(struct capture *cap, const struct capture_proc_info *info,
			   uint32_t gen)
{
	int err = proc_table_put(cap->procs, info);

	if (err && !cap->put_failed_logged) {
		log_warn("process table: adding pid %u failed: %s", info->tgid,
			 strerror(-err));
		cap->put_failed_logged = true;
	}
	err = filter_proc_apply(cap, info, gen);
	if (err && !cap->filter_failed_logged) {
		log_warn("writing the filter entry of pid %u failed: %s", info->tgid,
			 strerror(-err));
		cap->filter_failed_logged = true;
	}
}

static void proc_event_apply(struct capture *cap, const struct qtap_proc_event *ev)
{
	struct capture_proc_info *info = &cap->scratch;
	unsigned kind;
	uint32_t gen;

	if (ev->hdr.type == QTAP_EVENT_PROCESS_EXIT) {
		kind = KIND_EXIT;
		if (cap->trace && proc_table_lookup(cap->procs, ev->tgid, info)) {
			/* unknown process: trace with what the event says */
			memcpy(info->comm, ev->comm, sizeof(info->comm));
			info->comm[sizeof(info->comm) - 1] = '\0';
			info->exe[0] = '\0';
		}
		proc_exit_apply(cap, ev->tgid, procfs_start_time(ev->start_time_ns),
				ev->hdr.timestamp_ns);
	} else {
		kind = ev->hdr.type == QTAP_EVENT_PROCESS_FORK ? KIND_FORK : KIND_EXEC;
		/* before the image: see filter_proc_apply() */
		gen = filter_exec_gen(cap, ev->tgid);
		proc_event_exe(cap, ev, gen, info->exe, sizeof(info->exe));
		info->tgid = ev->tgid;
		info->ppid = ev->ppid;
		info->start_time_ns = procfs_start_time(ev->start_time_ns);
		info->exec_gen = kind == KIND_EXEC ? ev->exec_gen : 0;
		memcpy(info->comm, ev->comm, sizeof(info->comm));
		info->comm[sizeof(info->comm) - 1] = '\0';
		procfs_cgroup_fill("/proc", cgroup2_root(cap), info);
		/* Gone already (a short-lived process, a reader behind): the
		 * cgroup the kernel saw at the event.  Not on a host without
		 * cgroup v2, where that is the root of a hierarchy nobody
		 * mounted (1 for every process): 0, unknown. */
		if (!info->cgroup_id && cgroup2_root(cap))
			info->cgroup_id = ev->cgroup_id;
		proc_put_apply(cap, info, gen);
		if (kind == KIND_EXEC)
			tls_proc_exec(cap, ev->tgid,
				      ev->flags & QTAP_PROC_F_EXEC_BY_THREAD);
		else
			tls_proc_fork(cap, ev->tgid);
	}
	if (ev->hdr.cpu < (unsigned)cap->ncpus)
		metrics_counter_add(cap->received[ev->hdr.cpu * KIND__COUNT + kind], 1);
	metrics_gauge_set(cap->tracked, (int64_t)procs_running(cap));
	if (capture_trace_wants(cap->trace, CAPTURE_TRACE_PROCESS, info->comm, info->exe))
		proc_event_trace(ev, kind, info);
	if (cap->opts.proc_event_fn)
		cap->opts.proc_event_fn(ev, cap->opts.proc_event_ctx);
}

/* ring_buffer_sample_fn: one record of proc_events. */
static int capture_handle_event(void *ctx, void *data, size_t size)
{
	const struct qtap_event_header *hdr = data;
	struct capture *cap = ctx;

	if (size < sizeof(*hdr) || hdr->version != QTAP_EVENT_ABI_VERSION ||
	    hdr->type < QTAP_EVENT_PROCESS_EXEC || hdr->type > QTAP_EVENT_PROCESS_FORK ||
	    size < sizeof(struct qtap_proc_event)) {
		metrics_counter_add(cap->invalid, 1);
		if (!cap->bad_event_logged) {
			log_error("dropping kernel events that do not match this agent "
				  "(size %zu, ABI version %u, type %u; expected version %u)",
				  size, size >= sizeof(*hdr) ? hdr->version : 0,
				  size >= sizeof(*hdr) ? hdr->type : 0, QTAP_EVENT_ABI_VERSION);
			cap->bad_event_logged = true;
		}
		return 0;
	}
	proc_event_apply(cap, data);
	return 0;
}

/* ---- lost process events ------------------------------------------ */

/* A burst of forks while the reader is behind fills the process ring and
 * the kernel drops events (counted in events_lost_total).  A lost exit
 * leaves its process in the table, its filter entry in the kernel and its
 * connections open; a lost fork or exec leaves a process out or with its
 * old image.  So once events are lost, the reader compares the table with
 * /proc and does what the lost events would have done. */

/* How often the count of lost events is read (three map lookups): the
 * reader's loop turns at every batch of events, hundreds of times a
 * second on a busy host.  So at most one comparison a second too. */
#define RECONCILE_EVERY_NS 1000000000ull

/* Process events the kernel dropped so far, all CPUs and kinds; false
 * when the map cannot be read. */
static bool proc_events_lost(struct capture *cap, uint64_t *ret)
{
	uint64_t sum = 0;
	int k, c;

	for (k = 0; k < KIND__COUNT; k++) {
		__u32 key = kind_types[k];

		if (bpf_map__lookup_elem(cap->skel->maps.events_lost, &key, sizeof(key),
					 cap->reader_lost_values, sizeof(__u64) * cap->ncpus, 0))
			return false;
		for (c = 0; c < cap->ncpus; c++)
			sum += cap->reader_lost_values[c];
	}
	*ret = sum;
	return true;
}

/* A process of the table: the exits heard and lingering, and those the
 * comparison may end. */
struct proc_key {
	uint32_t tgid;
	uint64_t start_time_ns;
};

struct reconcile {
	struct capture *cap;
	struct proc_key *lingering;	/* sorted */
	size_t n_lingering;
	struct proc_key *entries;	/* the others, to look up in /proc */
	size_t n_entries, cap_entries;
	size_t gone, found;
};

static int proc_key_cmp(const void *a, const void *b)
{
	const struct proc_key *x = a, *y = b;

	if (x->tgid != y->tgid)
		return x->tgid < y->tgid ? -1 : 1;
	return (x->start_time_ns > y->start_time_ns) - (x->start_time_ns < y->start_time_ns);
}

/* proc_table_foreach(): the entries whose exit was not heard, to be
 * looked up in /proc after the walk (out of the table's read lock). */
static int reconcile_note_one(const struct capture_proc_info *info, void *ctx)
{
	struct reconcile *r = ctx;
	struct proc_key k = { .tgid = info->tgid, .start_time_ns = info->start_time_ns };

	if (bsearch(&k, r->lingering, r->n_lingering, sizeof(k), proc_key_cmp))
		return 0;
	if (r->n_entries == r->cap_entries) {
		size_t n = r->cap_entries ? r->cap_entries * 2 : 256;
		struct proc_key *p = realloc(r->entries, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->entries = p;
		r->cap_entries = n;
	}
	r->entries[r->n_entries++] = k;
	return 0;
}

/* An entry whose process has ended (see procfs_gone()) is ended as at
 * its exit. */
static void reconcile_gone_one(struct reconcile *r, const struct proc_key *k)
{
	struct capture *cap = r->cap;
	struct capture_proc_info *e = &cap->scratch;

	if (!procfs_gone("/proc", k->tgid, k->start_time_ns))
		return;
	if (cap->trace && !proc_table_lookup(cap->procs, k->tgid, e) &&
	    capture_trace_wants(cap->trace, CAPTURE_TRACE_PROCESS, e->comm, e->exe))
		log_info("bpf-trace module=process op=gone pid=%u comm=%s exe=%s decision=forget",
			 k->tgid, e->comm, e->exe);
	proc_exit_apply(cap, k->tgid, k->start_time_ns, 0);
	r->gone++;
}

/* procfs_foreach(): a process the table lacks, or holds of another start
 * (its pid reused) or of another image (an exec lost), is put as its fork
 * or exec would have put it, with the image /proc names for the exec
 * generation the kernel holds now (the process exec'd again meanwhile, or
 * is gone: its own events tell), and its TLS libraries looked at as after
 * an exec. */
static int reconcile_found_one(const struct capture_proc_info *info, void *ctx)
{
	struct reconcile *r = ctx;
	struct capture *cap = r->cap;
	struct capture_proc_info *e = &cap->scratch;
	uint32_t gen;

	if (!proc_table_lookup(cap->procs, info->tgid, e) &&
	    e->start_time_ns == info->start_time_ns && !strcmp(e->exe, info->exe))
		return 0;
	gen = filter_exec_gen(cap, info->tgid);
	*e = *info;
	if (!proc_exe_of_gen(cap, info->tgid, gen, e->exe))
		return 0;
	e->exec_gen = gen;
	proc_put_apply(cap, e, gen);
	tls_proc_exec(cap, info->tgid, false);
	r->found++;
	if (capture_trace_wants(cap->trace, CAPTURE_TRACE_PROCESS, e->comm, e->exe))
		log_info("bpf-trace module=process op=found pid=%u ppid=%u comm=%s exe=%s "
			 "decision=track", e->tgid, e->ppid, e->comm, e->exe);
	return 0;
}

/* The table made to agree with /proc (see above): the reader, with the
 * ring drained, so that no event older than the comparison is applied
 * after it.  0 or -errno (-ENOMEM, /proc unreadable). */
static int procs_reconcile(struct capture *cap, uint64_t lost)
{
	struct reconcile r = { .cap = cap };
	size_t i, n = cap->exits_len - cap->exits_head;
	int err = 0;

	if (n) {
		r.lingering = malloc(n * sizeof(*r.lingering));
		if (!r.lingering)
			return -ENOMEM;
		for (i = 0; i < n; i++)
			r.lingering[i] = (struct proc_key){
				.tgid = cap->exits[cap->exits_head + i].tgid,
				.start_time_ns = cap->exits[cap->exits_head + i].start_time_ns,
			};
		qsort(r.lingering, n, sizeof(*r.lingering), proc_key_cmp);
		r.n_lingering = n;
	}
	err = proc_table_foreach(cap->procs, &cap->parent, reconcile_note_one, &r);
	/* gone first: a pid now another process's is forgotten, then put */
	for (i = 0; !err && i < r.n_entries; i++)
		reconcile_gone_one(&r, &r.entries[i]);
	if (!err)
		err = procfs_foreach("/proc", cgroup2_root(cap), cap->self_tgid,
				     reconcile_found_one, &r);
	pipeline_flush(cap->pipeline, cap->proc_producer);
	metrics_gauge_set(cap->tracked, (int64_t)procs_running(cap));
	free(r.lingering);
	free(r.entries);
	if (err) {
		if (!cap->reconcile_failed_logged)
			log_warn("process events were lost (%" PRIu64 " so far); comparing the "
				 "process table with /proc failed: %s (tried again in a second)",
				 lost, strerror(-err));
		cap->reconcile_failed_logged = true;
		return err;
	}
	if (!cap->reconcile_logged)
		log_warn("process events were lost (%" PRIu64 " so far: a burst of processes "
			 "outran the agent); the process table was compared with /proc: %zu "
			 "gone, %zu found or changed", lost, r.gone, r.found);
	else
		log_debug("process events were lost (%" PRIu64 " so far); the process table "
			  "was compared with /proc: %zu gone, %zu found or changed",
			  lost, r.gone, r.found);
	cap->reconcile_logged = true;
	return 0;
}

/* In the reader's loop, once in RECONCILE_EVERY_NS: after new losses
 * (or a failed comparison), drain the ring and compare. */
static void procs_check_lost(struct capture *cap)
{
	uint64_t now = capture_mono_ns(), lost;

	if (now < cap->reconcile_next_ns)
		return;
	cap->reconcile_next_ns = now + RECONCILE_EVERY_NS;
	if (!proc_events_lost(cap, &lost) || lost == cap->lost_reconciled)
		return;
	ring_buffer__consume(cap->rb);
	if (!procs_reconcile(cap, lost))
		cap->lost_reconciled = lost;
}

/* Every series the reader writes, looked up once: 0 or -ENOMEM. */
static int reader_series_init(struct capture *cap)
{
	char cpu[16];
	int i, k;

	for (i = 0; i < cap->ncpus; i++) {
		snprintf(cpu, sizeof(cpu), "%d", i);
		for (k = 0; k < KIND__COUNT; k++) {
			const char *values[] = { cpu, kind_names[k] };
			struct metric_series *s;

			s = metrics_series_get(cap->store, M_SYSTEM_EVENTS_RECEIVED_TOTAL, values);
			if (!s)
				return -ENOMEM;
			cap->received[i * KIND__COUNT + k] = s;
		}
	}
	cap->tracked = metrics_series_get(cap->store, M_SYSTEM_PROCESSES_TRACKED, NULL);
	cap->invalid = metrics_series_get(cap->store, M_SYSTEM_EVENTS_DROPPED_TOTAL,
					  (const char *const[]){ "invalid" });
	return cap->tracked && cap->invalid ? 0 : -ENOMEM;
}

static void reader_set_ready(struct capture *cap, int err)
{
	pthread_mutex_lock(&cap->lock);
	cap->ready = true;
	cap->ready_err = err;
	pthread_cond_broadcast(&cap->cond);
	pthread_mutex_unlock(&cap->lock);
}

/* A configuration capture_reconfigure() handed over: apply it. */
static void reader_reconfigure(struct capture *cap)
{
	const struct qtap_conf *next;
	unsigned long seq;

	pthread_mutex_lock(&cap->lock);
	next = cap->conf_next;
	seq = cap->conf_seq;
	pthread_mutex_unlock(&cap->lock);
	if (seq == cap->conf_done)
		return;
	cap->conf = next;
	cap->filter_failed_logged = false;
	filter_apply_all(cap);
	tls_probes_resync(cap);
	pthread_mutex_lock(&cap->lock);
	cap->conf_done = seq;
	pthread_cond_broadcast(&cap->cond);
	pthread_mutex_unlock(&cap->lock);
}

/* The reader: seeds the process table from /proc after the programs are
 * attached (so no process falls between the scan and the events; events,
 * applied after the scan, win), then applies events until stopped, and
 * drains what is left.  The only writer of the process table. */
static void *capture_reader_main(void *arg)
{
	struct capture *cap = arg;
	size_t seeded = 0;
	int err, n;

	rcu_register_thread();
	/* -ENOSPC: the store's writer slots are full; updates then go to the
	 * shared shard, which is correct, only slower. */
	metrics_thread_register(cap->store);

	err = reader_series_init(cap);
	if (!err)
		err = procfs_scan("/proc", cgroup2_root(cap), cap->procs, cap->self_tgid, &seeded);
	if (!err) {
		metrics_gauge_set(cap->tracked, proc_table_count(cap->procs));
		filter_apply_all(cap);
	}
	if (!err)
		err = tls_probes_start(cap);
	reader_set_ready(cap, err);
	if (err)
		goto out;
	log_debug("process table seeded with %zu processes from /proc", seeded);

	while (!atomic_load_explicit(&cap->stop, memory_order_acquire)) {
		n = ring_buffer__poll(cap->rb, READER_POLL_MS);
		if (n < 0 && n != -EINTR) {
			log_error("reading process events failed: %s", strerror(-n));
			break;
		}
		if (n > 0)
			pipeline_flush(cap->pipeline, cap->proc_producer);
		if (cap->exits_len) {
			proc_exits_reap(cap);
			metrics_gauge_set(cap->tracked, (int64_t)procs_running(cap));
		}
		procs_check_lost(cap);
		reader_reconfigure(cap);
		tls_rescans_run(cap);
	}
	tls_probes_stop(cap);
	/* The programs are detached by now: take what they left. */
	ring_buffer__consume(cap->rb);
	pipeline_flush(cap->pipeline, cap->proc_producer);
out:
	/* The workers look processes up until the pipeline is gone. */
	pthread_mutex_lock(&cap->lock);
	cap->drained = true;
	pthread_cond_broadcast(&cap->cond);
	while (!cap->pipeline_gone)
		pthread_cond_wait(&cap->cond, &cap->lock);
	pthread_mutex_unlock(&cap->lock);
	proc_table_clear(cap->procs);
	free(cap->exits);
	cap->exits = NULL;
	cap->exits_head = cap->exits_len = cap->exits_cap = 0;
	if (cap->tracked)
		metrics_gauge_set(cap->tracked, 0);
	metrics_thread_unregister(cap->store);
	rcu_unregister_thread();
	return NULL;
}

static int capture_reader_start(struct capture *cap)
{
	int err;

	err = pthread_create(&cap->reader, NULL, capture_reader_main, cap);
	if (err) {
		log_error("starting the capture reader thread failed: %s", strerror(err));
		return -err;
	}
	cap->reader_started = true;
	pthread_setname_np(cap->reader, "qtap-proc");

	pthread_mutex_lock(&cap->lock);
	while (!cap->ready)
		pthread_cond_wait(&cap->cond, &cap->lock);
	err = cap->ready_err;
	pthread_mutex_unlock(&cap->lock);
	if (err)
		log_error("seeding the process table from /proc failed: %s", strerror(-err));
	return err;
}

/* Stops the producers, then the pipeline, then the process reader, which
 * empties the process table the workers used until then.  The process
 * reader hands on its last events first: it detaches the TLS probes, which
 * are its own, so the socket readers' last drain after it has every event
 * the programs wrote (the socket programs are detached by then). */
static void capture_readers_stop(struct capture *cap)
{
	if (cap->reader_started) {
		atomic_store_explicit(&cap->stop, true, memory_order_release);
		pthread_mutex_lock(&cap->lock);
		while (!cap->drained)
			pthread_cond_wait(&cap->cond, &cap->lock);
		pthread_mutex_unlock(&cap->lock);
	}
	sock_readers_stop(cap);
	pipeline_free(&cap->pipeline);
	if (cap->reader_started) {
		pthread_mutex_lock(&cap->lock);
		cap->pipeline_gone = true;
		pthread_cond_broadcast(&cap->cond);
		pthread_mutex_unlock(&cap->lock);
		pthread_join(cap->reader, NULL);
		cap->reader_started = false;
	}
}

/* ---- /system/metrics collector (scrape thread) ---------------------- */

/* Each program's slot in its object's prog_stats map (progstat.h). */
static const char *const proc_prog_slots[QTAP_PS_PROC_SLOTS] = {
	[QTAP_PS_PROC_FORK] = "proc_fork",
	[QTAP_PS_PROC_EXEC] = "proc_exec",
	[QTAP_PS_PROC_EXIT] = "proc_exit",
};

static const char *const sock_prog_slots[QTAP_PS_SOCK_SLOTS] = {
	[QTAP_PS_SOCK_FORK] = "sock_fork",
	[QTAP_PS_SOCK_FLUSH] = "sock_flush",
	[QTAP_PS_SOCK_SEND] = "sock_send",
	[QTAP_PS_SOCK_RECV] = "sock_recv",
	[QTAP_PS_SOCK_STATE] = "sock_state",
	[QTAP_PS_SOCK_DESTROY] = "sock_destroy",
	[QTAP_PS_TLS_ENTER] = "tls_enter",
	[QTAP_PS_TLS_RETURN] = "tls_return",
};

/* The slot of the program called name in slots (n of them), or -1. */
static int prog_slot(const char *const *slots, unsigned n, const char *name)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (slots[i] && !strcmp(slots[i], name))
			return (int)i;
	return -1;
}

/* Every program of obj has a slot in slots (a program added without one
 * would go uncounted). */
static int prog_slots_check(struct bpf_object *obj, const char *const *slots, unsigned n)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, obj) {
		if (prog_slot(slots, n, bpf_program__name(prog)) < 0) {
			log_error("BPF program %s has no run statistics slot (bpf/progstat.h)",
				  bpf_program__name(prog));
			return -EINVAL;
		}
	}
	return 0;
}

/* Run count, run time and skipped runs of every program of obj, from series
 * index *i on: from the programs' own prog_stats map (slots name their
 * slots), or the kernel's statistics with capture.kernel_bpf_stats.  The
 * skipped runs are always the kernel's. */
static void collect_programs(struct capture *cap, struct metrics_store *store,
			     struct bpf_object *obj, const struct bpf_map *stats,
			     const char *const *slots, unsigned nslots, unsigned *i)
{
	struct bpf_program *prog;

	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		uint64_t runs, ns;
		int slot;

		if (*i == cap->nprogs)
			break;
		if (!cap->prog_runs[*i] || !cap->prog_ns[*i] || !cap->prog_misses[*i]) {
			const char *values[] = { bpf_program__name(prog) };

			cap->prog_runs[*i] = metrics_series_get(store,
					M_SYSTEM_BPF_PROGRAM_RUNS_TOTAL, values);
			cap->prog_ns[*i] = metrics_series_get(store,
					M_SYSTEM_BPF_PROGRAM_RUN_SECONDS_TOTAL, values);
			cap->prog_misses[*i] = metrics_series_get(store,
					M_SYSTEM_BPF_PROGRAM_MISSES_TOTAL, values);
		}
		memset(&info, 0, sizeof(info));
		if (!cap->prog_runs[*i] || !cap->prog_ns[*i] || !cap->prog_misses[*i] ||
		    bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len)) {
			(*i)++;
			continue;
		}
		runs = info.run_cnt;
		ns = info.run_time_ns;
		slot = prog_slot(slots, nslots, bpf_program__name(prog));
		if (!cap->kernel_stats && slot >= 0) {
			__u32 key = (__u32)slot;
			int c;

			runs = ns = 0;
			if (!bpf_map__lookup_elem(stats, &key, sizeof(key), cap->prog_stat_values,
						  sizeof(*cap->prog_stat_values) * cap->ncpus, 0)) {
				for (c = 0; c < cap->ncpus; c++) {
					runs += cap->prog_stat_values[c].runs;
					ns += cap->prog_stat_values[c].sampled_ns;
				}
				ns *= QTAP_PROG_SAMPLE;
			}
		}
		metrics_counter_set(cap->prog_runs[*i], runs);
		/* The family's scale is 1e9: nanoseconds are stored. */
		metrics_counter_set(cap->prog_ns[*i], ns);
		metrics_counter_set(cap->prog_misses[*i], info.recursion_misses);
		(*i)++;
	}
}

static void capture_collect(struct metrics_store *store, void *ctx)
{
	struct capture *cap = ctx;
	unsigned i = 0;
	__u32 key = 0;
	int c, k;

	collect_programs(cap, store, cap->skel->obj, cap->skel->maps.prog_stats, proc_prog_slots,
			 QTAP_PS_PROC_SLOTS, &i);
	collect_programs(cap, store, cap->sock->obj, cap->sock->maps.prog_stats, sock_prog_slots,
			 QTAP_PS_SOCK_SLOTS, &i);

	/* Losses of both programs' buffers, per CPU and kind: each program's
	 * map has a slot per event type. */
	for (k = 0; k < LOST_KINDS; k++) {
		bool sock = k >= KIND__COUNT;
		const char *name = sock ? sock_kind_names[k - KIND__COUNT] : kind_names[k];

		key = sock ? QTAP_EVENT_CONN_OPEN + (__u32)(k - KIND__COUNT) : kind_types[k];
		if (bpf_map__lookup_elem(sock ? cap->sock->maps.events_lost :
						cap->skel->maps.events_lost,
					 &key, sizeof(key), cap->lost_values,
					 sizeof(__u64) * cap->ncpus, 0))
			continue;
		for (c = 0; c < cap->ncpus; c++) {
			struct metric_series **s = &cap->lost[c * LOST_KINDS + k];

			if (!*s) {
				char cpu[16];
				const char *values[] = { cpu, name };

				snprintf(cpu, sizeof(cpu), "%d", c);
				*s = metrics_series_get(store, M_SYSTEM_EVENTS_LOST_TOTAL, values);
				if (!*s)
					continue;
			}
			metrics_counter_set(*s, cap->lost_values[c]);
		}
	}

	/* TLS calls the kernel could not tie to a connection, all CPUs. */
	if (!cap->tls_untied)
		cap->tls_untied = metrics_series_get(store, M_SYSTEM_TLS_CALLS_UNTIED_TOTAL, NULL);
	key = 0;
	if (cap->tls_untied &&
	    !bpf_map__lookup_elem(cap->sock->maps.tls_untied, &key, sizeof(key),
				  cap->lost_values, sizeof(__u64) * cap->ncpus, 0)) {
		uint64_t sum = 0;

		for (c = 0; c < cap->ncpus; c++)
			sum += cap->lost_values[c];
		metrics_counter_set(cap->tls_untied, sum);
	}
}

/* ---- start and stop ------------------------------------------------- */

/* Both skeletons' whole lifecycle, in one place: open, set rodata and map
 * sizes, load, then what must exist before the programs run (the per-CPU
 * rings, the kernel configuration and the agent's own filter entry), then
 * attach.  Feature fallbacks are settled before load: the exit program
 * probes the kernel's group_dead field with CO-RE. */
static int capture_bpf_load(struct capture *cap)
{
	struct bpf_program *prog;
	struct capture_proc_info self = { .tgid = cap->self_tgid };
	int err;

	cap->skel = proc_bpf__open();
	if (!cap->skel) {
		err = -errno;
		log_error("opening the BPF object failed: %s", strerror(-err));
		return err;
	}
	cap->sock = sock_bpf__open();
	if (!cap->sock) {
		err = -errno;
		log_error("opening the socket BPF object failed: %s", strerror(-err));
		return err;
	}
	cap->skel->rodata->qtap_tgid = cap->self_tgid;
	cap->skel->rodata->prog_stats_on = !cap->kernel_stats;
	cap->sock->rodata->prog_stats_on = !cap->kernel_stats;
	err = prog_slots_check(cap->skel->obj, proc_prog_slots, QTAP_PS_PROC_SLOTS);
	if (!err)
		err = prog_slots_check(cap->sock->obj, sock_prog_slots, QTAP_PS_SOCK_SLOTS);
	if (err)
		return err;
	err = sock_bpf_prepare(cap);
	if (err)
		return err;

	err = proc_bpf__load(cap->skel);
	/* One exec_gen map and one filter_gen counter for both: proc.bpf.c
	 * bumps them and writes exec_gen in its exec events, sock.bpf.c
	 * decides under them. */
	if (!err)
		err = bpf_map__reuse_fd(cap->sock->maps.exec_gen,
					bpf_map__fd(cap->skel->maps.exec_gen));
	if (!err)
		err = bpf_map__reuse_fd(cap->sock->maps.filter_gen,
					bpf_map__fd(cap->skel->maps.filter_gen));
	if (!err)
		err = sock_bpf__load(cap->sock);
	if (err) {
		log_error("loading BPF programs failed: %s%s", strerror(-err),
			  err == -EPERM ? " (run as root or with CAP_BPF+CAP_PERFMON)" : "");
		return err;
	}

	err = sock_rings_insert(cap);
	if (!err)
		err = filter_gen_map(cap);
	if (err)
		return err;
	err = filter_config_write(cap, cap->conf);
	if (err)
		return err;
	{
		/* Before attach, so the agent's own calls are decided from the
		 * first one; its exec generation is 0 (no exec seen). */
		struct qtap_tgid_filter value = {
			.action = filter_decide(cap->conf, cap->self_tgid, &self),
		};
		__u32 key = cap->self_tgid;

		err = bpf_map__update_elem(cap->sock->maps.tgid_filter, &key, sizeof(key),
					   &value, sizeof(value), BPF_ANY);
		if (err) {
			log_error("writing the agent's own filter entry failed: %s",
				  strerror(-err));
			return err;
		}
	}

	err = proc_bpf__attach(cap->skel);
	if (err) {
		log_error("attaching BPF programs to the sched tracepoints failed: %s%s",
			  strerror(-err),
			  err == -ENOENT ? " (is tracefs mounted at " TRACEFS_PATH "?)" : "");
		return err;
	}
	err = sock_bpf__attach(cap->sock);
	if (err) {
		log_error("attaching BPF programs to the socket tracepoints failed: %s%s",
			  strerror(-err),
			  err == -ENOENT ? " (is tracefs mounted at " TRACEFS_PATH "?)" : "");
		return err;
	}
	bpf_object__for_each_program(prog, cap->skel->obj)
		cap->nprogs++;
	bpf_object__for_each_program(prog, cap->sock->obj)
		cap->nprogs++;
	return 0;
}

/* pipeline_proc_lookup_fn: the process table, else /proc itself: the
 * process's fork or exec event may still be on its way to the table when
 * its first connection reaches a worker (the table may then hold the image
 * it ran before).  An entry older than gen is the answer only when /proc
 * has none. */
static int capture_pipeline_lookup(void *ctx, uint32_t tgid, uint32_t gen,
				   struct capture_proc_info *ret)
{
	struct capture *cap = ctx;
	uint64_t cgroup_id;
	char path[40];
	FILE *f;
	int found;

	found = capture_proc_lookup(cap, tgid, ret);
	if (!found && ret->exec_gen >= gen)
		return 0;
	/* the older entry's cgroup, should the process exit meanwhile */
	cgroup_id = found ? 0 : ret->cgroup_id;
	if (!proc_exe_of_gen(cap, tgid, gen, ret->exe))
		return found;
	ret->tgid = tgid;
	ret->ppid = 0;
	ret->start_time_ns = 0;
	ret->exec_gen = gen;
	ret->comm[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%u/comm", tgid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(ret->comm, sizeof(ret->comm), f))
			ret->comm[strcspn(ret->comm, "\n")] = '\0';
		fclose(f);
	}
	procfs_cgroup_fill("/proc", cgroup2_root(cap), ret);
	if (!ret->cgroup_id)
		ret->cgroup_id = cgroup_id;
	return 0;
}

/* pipeline_proc_settled_fn: whether the process's image of exec generation
 * gen can be known now: the table holds its exec (or a later one), or the
 * process still runs that image and /proc names it. */
static bool capture_pipeline_settled(void *ctx, uint32_t tgid, uint32_t gen)
{
	struct capture *cap = ctx;
	uint32_t have;

	if (!proc_table_exec_gen(cap->procs, tgid, &have) && have >= gen)
		return true;
	return proc_exe_of_gen(cap, tgid, gen, NULL);
}

/* The pipeline: one producer per socket reader, and the process reader. */
static int capture_pipeline_new(struct capture *cap)
{
	const struct qtap_conf *conf = cap->opts.conf;
	struct pipeline_opts popts = {
		.n_producers = cap->n_readers + 1,
		.n_workers = conf ? conf->capture.workers : 0,
		/* 0: sized by the pipeline, for its number of queues */
		.queue_bytes = !conf || !conf->capture.queue_kb ? 0 :
			       (size_t)(conf->capture.queue_kb < 64 ? 64 : conf->capture.queue_kb) *
			       1024,
		.idle_timeout_s = conf ? conf->capture.idle_timeout : 0,
		.store = cap->store,
		.proc_lookup = capture_pipeline_lookup,
		.proc_settled = capture_pipeline_settled,
		.conn_forget = sock_conn_forget,
		.conn_learned = sock_conn_learned,
		.conn_alive = sock_conn_alive,
		.conn_wanted = filter_conn_wanted,
		.ctx = cap,
		.trace = cap->trace,
	};

	cap->proc_producer = cap->n_readers;
	cap->pipeline = pipeline_new(&popts);
	if (!cap->pipeline) {
		int err = -errno;

		log_error("starting the parser workers failed: %s", strerror(-err));
		return err;
	}
	return 0;
}

/* Frees a capture in any state capture_start() can leave it in. */
static void capture_free(struct capture *cap)
{
	if (cap->skel)
		proc_bpf__detach(cap->skel);
	if (cap->sock)
		sock_bpf__detach(cap->sock);
	capture_readers_stop(cap);
	ring_buffer__free(cap->rb);
	sock_rings_free(cap);
	filter_gen_unmap(cap);
	sock_bpf__destroy(cap->sock);
	proc_bpf__destroy(cap->skel);
	proc_table_free(&cap->procs);
	/* Closing the last run-statistics fd restores the kernel's previous
	 * kernel.bpf_stats_enabled state. */
	if (cap->stats_fd >= 0)
		close(cap->stats_fd);
	free(cap->received);
	free(cap->prog_runs);
	free(cap->prog_ns);
	free(cap->prog_misses);
	free(cap->prog_stat_values);
	free(cap->lost);
	free(cap->lost_values);
	free(cap->reader_lost_values);
	capture_trace_free(&cap->trace);
	pthread_cond_destroy(&cap->cond);
	pthread_mutex_destroy(&cap->lock);
	free(cap);
}

struct capture *capture_start(const struct capture_opts *opts, struct metrics_store *store)
{
	struct capture *cap;
	int err;

	libbpf_set_print(capture_libbpf_print);

	cap = calloc(1, sizeof(*cap));
	if (!cap) {
		log_error("starting capture failed: %s", strerror(ENOMEM));
		errno = ENOMEM;
		return NULL;
	}
	cap->opts = *opts;
	cap->conf = opts->conf;
	cap->store = store;
	cap->self_tgid = opts->self_tgid > 0 ? (uint32_t)opts->self_tgid : (uint32_t)getpid();
	cap->stats_fd = -1;
	if (procfs_cgroup2_root("/proc/self/mountinfo", cap->cgroup2_root,
				sizeof(cap->cgroup2_root)))
		cap->cgroup2_root[0] = '\0';	/* no cgroup ids, containers still */
	pthread_mutex_init(&cap->lock, NULL);
	pthread_cond_init(&cap->cond, NULL);
	atomic_init(&cap->stop, false);
	atomic_init(&cap->sock_stop, false);
	cap->sock_wake_fd = -1;

	if (opts->bpf_trace) {
		err = capture_trace_parse(opts->bpf_trace, &cap->trace);
		if (err) {
			log_error("--bpf-trace \"%s\": %s", opts->bpf_trace, strerror(-err));
			goto out_free;
		}
	}

	if (opts->mount_tracefs) {
		err = capture_tracefs_mount(TRACEFS_PATH);
		if (err) {
			log_error("mounting tracefs at %s failed: %s", TRACEFS_PATH, strerror(-err));
			goto out_free;
		}
	}

	cap->ncpus = libbpf_num_possible_cpus();
	if (cap->ncpus <= 0) {
		err = cap->ncpus ? cap->ncpus : -EINVAL;
		log_error("counting the possible CPUs failed: %s", strerror(-err));
		goto out_free;
	}
	cap->procs = proc_table_new();
	cap->received = calloc((size_t)cap->ncpus * KIND__COUNT, sizeof(*cap->received));
	cap->lost = calloc((size_t)cap->ncpus * LOST_KINDS, sizeof(*cap->lost));
	cap->lost_values = calloc(cap->ncpus, sizeof(*cap->lost_values));
	cap->reader_lost_values = calloc(cap->ncpus, sizeof(*cap->reader_lost_values));
	if (!cap->procs || !cap->received || !cap->lost || !cap->lost_values ||
	    !cap->reader_lost_values) {
		err = -ENOMEM;
		log_error("starting capture failed: %s", strerror(-err));
		goto out_free;
	}

	/* Per-program run counts and run time: the programs keep their own
	 * (bpf/progstat.h), unless the kernel's are asked for: those
	 * (kernel.bpf_stats_enabled) are kept while this fd is open.  When
	 * the kernel refuses, the programs' own are used. */
	cap->kernel_stats = opts->conf && opts->conf->capture.kernel_bpf_stats;
	if (cap->kernel_stats) {
		cap->stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (cap->stats_fd < 0) {
			log_warn("enabling the kernel's BPF run statistics failed: %s; "
				 "the programs keep their own instead",
				 strerror(-cap->stats_fd));
			cap->kernel_stats = false;
		}
	}

	err = capture_bpf_load(cap);
	if (err)
		goto out_free;
	cap->prog_runs = calloc(cap->nprogs, sizeof(*cap->prog_runs));
	cap->prog_ns = calloc(cap->nprogs, sizeof(*cap->prog_ns));
	cap->prog_misses = calloc(cap->nprogs, sizeof(*cap->prog_misses));
	cap->prog_stat_values = calloc((size_t)cap->ncpus, sizeof(*cap->prog_stat_values));
	if (!cap->prog_runs || !cap->prog_ns || !cap->prog_misses || !cap->prog_stat_values) {
		err = -ENOMEM;
		log_error("starting capture failed: %s", strerror(-err));
		goto out_free;
	}

	cap->rb = ring_buffer__new(bpf_map__fd(cap->skel->maps.proc_events),
				   capture_handle_event, cap, NULL);
	if (!cap->rb) {
		err = -errno;
		log_error("opening the process event ring buffer failed: %s", strerror(-err));
		goto out_free;
	}

	cap->n_readers = opts->conf && opts->conf->capture.readers ?
			 opts->conf->capture.readers : (unsigned)cap->ncpus;
	if (cap->n_readers > (unsigned)cap->ncpus)
		cap->n_readers = cap->ncpus;
	err = capture_pipeline_new(cap);
	if (err)
		goto out_free;
	/* The socket programs are attached: their rings are drained from now,
	 * not only once the process reader has scanned /proc and attached the
	 * TLS probes (seconds on a host with many processes, while every
	 * process is still traced). */
	err = sock_readers_start(cap);
	if (err)
		goto out_free;
	err = capture_reader_start(cap);
	if (err)
		goto out_free;

	/* Last: nothing may fail once the store refers to cap. */
	err = metrics_collector_add(store, METRICS_ENDPOINT_SYSTEM, capture_collect, cap);
	if (err) {
		log_error("registering the BPF statistics collector failed: %s", strerror(-err));
		goto out_free;
	}
	{
		size_t qbytes;
		unsigned workers = pipeline_workers(cap->pipeline, &qbytes);

		log_info("capture started: %u BPF programs, %u socket readers, "
			 "%u parser workers (%u queues of %zu KiB), %zu processes tracked",
			 cap->nprogs, cap->n_readers, workers, (cap->n_readers + 1) * workers,
			 qbytes >> 10, proc_table_count(cap->procs));
	}
	return cap;

out_free:
	capture_free(cap);
	errno = -err;
	return NULL;
}

void capture_stop(struct capture **capp)
{
	struct capture *cap = *capp;

	if (!cap)
		return;
	capture_free(cap);
	*capp = NULL;
}

int capture_proc_lookup(struct capture *cap, uint32_t tgid, struct capture_proc_info *ret)
{
	return proc_table_lookup(cap->procs, tgid, ret);
}

size_t capture_proc_count(struct capture *cap)
{
	return proc_table_count(cap->procs);
}

/* The process reader has stopped (an error it logged): what it applies
 * cannot change any more. */
static bool reader_gone(struct capture *cap)
{
	bool gone;

	pthread_mutex_lock(&cap->lock);
	gone = cap->drained;
	pthread_mutex_unlock(&cap->lock);
	if (gone)
		log_error("the process reader has stopped (see the error before): a new "
			  "configuration cannot be applied; restart the agent");
	return gone;
}

int capture_reconfigure(struct capture *cap, const struct qtap_conf *conf)
{
	unsigned long seq;
	bool done;
	int err;

	if (reader_gone(cap))
		return -EIO;
	err = filter_config_write(cap, conf);
	if (err)
		return err;
	/* The process reader applies it between two polls. */
	pthread_mutex_lock(&cap->lock);
	cap->conf_next = conf;
	seq = ++cap->conf_seq;
	while (cap->conf_done != seq && !cap->drained)
		pthread_cond_wait(&cap->cond, &cap->lock);
	done = cap->conf_done == seq;
	pthread_mutex_unlock(&cap->lock);
	/* (stopped meanwhile: the kernel's settings are the new ones, the
	 * process filters the old) */
	return done || !reader_gone(cap) ? 0 : -EIO;
}

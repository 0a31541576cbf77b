/* Check suite "capture": the process programs on the real kernel, the
 * process table, the /proc parser and tracefs mounting. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <urcu.h>

#include "proc.h"

#include "capture/capture-int.h"
#include "capture/capture.h"
#include "metrics/metrics.h"
#include "util/buf.h"

#include "../check_metrics.h"
#include "../check_run.h"

#define N_TRUE 20
#define MAX_EVENTS 4096

/* ---- helpers -------------------------------------------------------- */

/* Process events as the reader thread hands them over.  Written by the
 * reader thread (record_event), read by the test thread; under lock. */
struct recorder {
	pthread_mutex_t lock;
	unsigned n;
	unsigned dropped;
	struct {
		uint32_t tgid;
		uint32_t ppid;
		uint16_t type;
		uint32_t exit_code;
		uint64_t cgroup_id;
		char filename[64];
		char comm[QTAP_COMM_LEN];
	} ev[MAX_EVENTS];
};

static struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void record_event(const struct qtap_proc_event *ev, void *ctx)
{
	struct recorder *r = ctx;

	pthread_mutex_lock(&r->lock);
	if (r->n < MAX_EVENTS) {
		r->ev[r->n].tgid = ev->tgid;
		r->ev[r->n].ppid = ev->ppid;
		r->ev[r->n].type = ev->hdr.type;
		r->ev[r->n].exit_code = ev->exit_code;
		r->ev[r->n].cgroup_id = ev->cgroup_id;
		snprintf(r->ev[r->n].filename, sizeof(r->ev[r->n].filename), "%.*s",
			 (int)ev->filename_len, ev->filename);
		memcpy(r->ev[r->n].comm, ev->comm, sizeof(r->ev[r->n].comm));
		r->ev[r->n].comm[QTAP_COMM_LEN - 1] = '\0';
		r->n++;
	} else {
		r->dropped++;
	}
	pthread_mutex_unlock(&r->lock);
}

/* Events of tgid of the given type; with filename non-NULL, only those
 * whose filename matches. */
static unsigned count_events(uint32_t tgid, uint16_t type, const char *filename)
{
	unsigned i, n = 0;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n; i++) {
		if (rec.ev[i].tgid != tgid || rec.ev[i].type != type)
			continue;
		if (filename && strcmp(rec.ev[i].filename, filename))
			continue;
		n++;
	}
	pthread_mutex_unlock(&rec.lock);
	return n;
}

/* The cgroup id the first event of tgid of the given type carried; 0:
 * none seen. */
static uint64_t event_cgroup(uint32_t tgid, uint16_t type)
{
	uint64_t id = 0;
	unsigned i;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n && !id; i++)
		if (rec.ev[i].tgid == tgid && rec.ev[i].type == type)
			id = rec.ev[i].cgroup_id;
	pthread_mutex_unlock(&rec.lock);
	return id;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits up to timeout_ms for an event of tgid of type; true when seen. */
static bool wait_event(uint32_t tgid, uint16_t type, long timeout_ms)
{
	long waited;

	for (waited = 0; waited <= timeout_ms; waited += 10) {
		if (count_events(tgid, type, NULL))
			return true;
		sleep_ms(10);
	}
	return false;
}

static pid_t spawn(const char *path, const char *arg)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(path, path, arg, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child %d ended with status %#x", (int)pid, status);
}

/* Whether pid left the process table within 2 s (an exited process
 * lingers there for proc_linger_ms). */
static bool gone(struct capture *cap, pid_t pid)
{
	struct capture_proc_info info;
	int waited;

	for (waited = 0; waited < 2000; waited += 10) {
		if (capture_proc_lookup(cap, (uint32_t)pid, &info) == -ENOENT)
			return true;
		usleep(10000);
	}
	return false;
}

static struct capture *start(struct metrics_store *store, pid_t self)
{
	struct capture_opts opts = {
		.mount_tracefs = true,
		.self_tgid = self,
		.proc_event_fn = record_event,
		.proc_event_ctx = &rec,
		/* exited processes leave the table after 50 ms */
		.proc_linger_ms = 50,
	};
	struct capture *cap;

	cap = capture_start(&opts, store);
	ck_assert_msg(cap, "capture_start failed: %s (this suite needs root and a kernel "
		      "that loads BPF tracepoint programs)", strerror(errno));
	return cap;
}

static struct metrics_store *store_new(void)
{
	struct metrics_opts mopts = { 0 };
	struct metrics_store *store = metrics_store_new(&mopts);

	ck_assert_msg(store, "metrics_store_new: %s", strerror(errno));
	return store;
}

/* The ids of the BPF programs this process holds through its fds (the
 * programs themselves and the links or perf events they are attached by),
 * and the number of such BPF fds. */
static unsigned own_bpf_fds(uint32_t *ids, unsigned max_ids, unsigned *ret_nids)
{
	char path[300], target[128], text[512];
	unsigned nfds = 0, nids = 0;
	struct dirent *de;
	DIR *dir;

	dir = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir))) {
		ssize_t n;
		char *p;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, "anon_inode:bpf", 14) &&
		    strcmp(target, "anon_inode:[perf_event]"))
			continue;
		nfds++;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", de->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
		if (n <= 0)
			continue;
		text[n] = '\0';
		p = strstr(text, "prog_id:");
		if (p && nids < max_ids)
			ids[nids++] = strtoul(p + 8, NULL, 10);
	}
	closedir(dir);
	*ret_nids = nids;
	return nfds;
}

static bool prog_exists(uint32_t id)
{
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- the programs on the real kernel ------------------------------- */

START_TEST(test_exec_exit_exact)
{
	struct metrics_store *store;
	struct capture_proc_info info;
	struct capture *cap;
	pid_t pids[N_TRUE], sleeper, forked, twice, early, self = getpid();
	int hold[2];
	char self_exe[PATH_MAX];
	uint32_t ids[64];
	unsigned nids, nfds, ns, i;
	ssize_t n;
	double v;

	/* A process older than the capture, found by the /proc scan (its
	 * start time to the clock tick), which exits without an exec. */
	ck_assert_int_eq(pipe(hold), 0);
	early = fork();
	ck_assert_int_ge(early, 0);
	if (early == 0) {
		char c;

		close(hold[1]);
		_exit(read(hold[0], &c, 1) < 0);
	}
	close(hold[0]);
	rcu_register_thread();
	store = store_new();
	cap = start(store, 0);
	ck_assert_int_eq(capture_proc_lookup(cap, early, &info), 0);
	close(hold[1]);
	reap(early);
	ck_assert_msg(wait_event(early, QTAP_EVENT_PROCESS_EXIT, 2000),
		      "no exit event for pid %d", (int)early);
	/* Gone once its linger is over, like the others. */
	ck_assert(gone(cap, early));
	nfds = own_bpf_fds(ids, 64, &nids);
	ck_assert_uint_gt(nfds, 0);
	ck_assert_uint_ge(nids, 2);

	/* The /proc scan does not put the agent itself in the table. */
	ck_assert_int_eq(capture_proc_lookup(cap, self, &info), -ENOENT);
	ck_assert_uint_gt(capture_proc_count(cap), 0);

	for (i = 0; i < N_TRUE; i++) {
		pids[i] = spawn("/bin/true", NULL);
		reap(pids[i]);
	}

	/* A forked child that does not exec runs the parent's exe. */
	forked = fork();
	ck_assert_int_ge(forked, 0);
	if (forked == 0) {
		sleep_ms(200);
		_exit(0);
	}
	ck_assert_msg(wait_event(forked, QTAP_EVENT_PROCESS_FORK, 2000),
		      "no fork event for pid %d", (int)forked);
	ck_assert_int_eq(capture_proc_lookup(cap, forked, &info), 0);
	ck_assert_uint_eq(info.ppid, self);
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	ck_assert_int_gt(n, 0);
	self_exe[n] = '\0';
	ck_assert_str_eq(info.exe, self_exe);
	ck_assert_uint_eq(info.exec_gen, 0);
	reap(forked);
	ck_assert_msg(wait_event(forked, QTAP_EVENT_PROCESS_EXIT, 2000),
		      "no exit event for pid %d", (int)forked);
	/* Gone once its linger is over. */
	ck_assert(gone(cap, forked));
	ck_assert_uint_eq(count_events(forked, QTAP_EVENT_PROCESS_FORK, NULL), 1);
	ck_assert_uint_eq(count_events(forked, QTAP_EVENT_PROCESS_EXEC, NULL), 0);

	sleeper = spawn("/bin/sleep", "0.2");
	ck_assert_msg(wait_event(sleeper, QTAP_EVENT_PROCESS_EXEC, 2000),
		      "no exec event for /bin/sleep (pid %d)", (int)sleeper);
	ck_assert_int_eq(capture_proc_lookup(cap, sleeper, &info), 0);
	ck_assert_uint_eq(info.tgid, sleeper);
	ck_assert_uint_eq(info.ppid, self);
	ck_assert_str_eq(info.comm, "sleep");
	ck_assert_msg(strlen(info.exe) >= 6 && !strcmp(info.exe + strlen(info.exe) - 6, "/sleep"),
		      "exe of the sleeper: %s", info.exe);
	ck_assert_uint_gt(info.start_time_ns, 0);
	/* its first exec since the fork (the kernel's count, carried by the
	 * exec event) */
	ck_assert_uint_eq(info.exec_gen, 1);
	v = check_metrics_sum(store, "qtap_system_processes_tracked", NULL, &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= 1, "processes_tracked %g while the sleeper runs", v);
	reap(sleeper);

	/* A shell that execs its command: the second exec is generation 2. */
	twice = fork();
	ck_assert_int_ge(twice, 0);
	if (twice == 0) {
		execl("/bin/sh", "sh", "-c", "exec /bin/sleep 0.2", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		if (!capture_proc_lookup(cap, twice, &info) && info.exec_gen == 2)
			break;
		sleep_ms(10);
	}
	ck_assert_msg(i < 200, "pid %d: exec generation %u, exe %s", (int)twice, info.exec_gen,
		      info.exe);
	ck_assert_msg(strlen(info.exe) >= 6 && !strcmp(info.exe + strlen(info.exe) - 6, "/sleep"),
		      "exe after the second exec: %s", info.exe);
	reap(twice);

	for (i = 0; i < N_TRUE; i++)
		ck_assert_msg(wait_event(pids[i], QTAP_EVENT_PROCESS_EXIT, 2000),
			      "no exit event for /bin/true (pid %d)", (int)pids[i]);
	/* The kernel names their cgroup in their events (ours: they are our
	 * children), which the table takes when they are gone from /proc. */
	{
		struct capture_proc_info me = { .tgid = self };
		char cg2[256];

		ck_assert_int_eq(procfs_cgroup2_root("/proc/self/mountinfo", cg2, sizeof(cg2)), 0);
		procfs_cgroup_fill("/proc", cg2, &me);
		ck_assert_uint_gt(me.cgroup_id, 0);
		for (i = 0; i < N_TRUE; i++)
			ck_assert_uint_eq(event_cgroup(pids[i], QTAP_EVENT_PROCESS_EXEC), me.cgroup_id);
		ck_assert_uint_eq(event_cgroup(forked, QTAP_EVENT_PROCESS_FORK), me.cgroup_id);
	}
	ck_assert_msg(wait_event(sleeper, QTAP_EVENT_PROCESS_EXIT, 2000),
		      "no exit event for /bin/sleep (pid %d)", (int)sleeper);
	/* Back down: the exit took the sleeper out of the table. */
	ck_assert(gone(cap, sleeper));

	/* Exactly one fork, one exec and one exit per child, with its file
	 * name. */
	for (i = 0; i < N_TRUE; i++) {
		ck_assert_uint_eq(count_events(pids[i], QTAP_EVENT_PROCESS_FORK, NULL), 1);
		ck_assert_uint_eq(count_events(pids[i], QTAP_EVENT_PROCESS_EXEC, "/bin/true"), 1);
		ck_assert_uint_eq(count_events(pids[i], QTAP_EVENT_PROCESS_EXEC, NULL), 1);
		ck_assert_uint_eq(count_events(pids[i], QTAP_EVENT_PROCESS_EXIT, NULL), 1);
		ck_assert(gone(cap, pids[i]));
	}
	ck_assert_uint_eq(count_events(sleeper, QTAP_EVENT_PROCESS_FORK, NULL), 1);
	ck_assert_uint_eq(count_events(sleeper, QTAP_EVENT_PROCESS_EXEC, "/bin/sleep"), 1);
	ck_assert_uint_eq(count_events(sleeper, QTAP_EVENT_PROCESS_EXIT, NULL), 1);
	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n; i++) {
		ck_assert_uint_ne(rec.ev[i].tgid, self);
		if (rec.ev[i].tgid == (uint32_t)sleeper && rec.ev[i].type == QTAP_EVENT_PROCESS_EXEC)
			ck_assert_str_eq(rec.ev[i].comm, "sleep");
		if (rec.ev[i].tgid == (uint32_t)pids[0] && rec.ev[i].type == QTAP_EVENT_PROCESS_EXEC)
			ck_assert_uint_eq(rec.ev[i].ppid, self);
		if (rec.ev[i].tgid == (uint32_t)pids[0] && rec.ev[i].type == QTAP_EVENT_PROCESS_EXIT)
			ck_assert_uint_eq(rec.ev[i].exit_code, 0);
	}
	ck_assert_uint_eq(rec.dropped, 0);
	pthread_mutex_unlock(&rec.lock);

	/* The counters, through the /system/metrics collector. */
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"process_exec\"", &ns);
	ck_assert_uint_eq(ns, (unsigned)libbpf_num_possible_cpus());
	ck_assert_msg(v >= N_TRUE + 1, "process_exec events received: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"process_exit\"", NULL);
	ck_assert_msg(v >= N_TRUE + 2, "process_exit events received: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"process_fork\"", NULL);
	ck_assert_msg(v >= N_TRUE + 2, "process_fork events received: %g", v);
	/* Losses: a series per CPU and kind, of both programs. */
	v = check_metrics_sum(store, "qtap_system_events_lost_total", NULL, &ns);
	ck_assert_uint_eq(ns, 7 * (unsigned)libbpf_num_possible_cpus());
	ck_assert_msg(v == 0, "events lost: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_lost_total", "type=\"process_exit\"", &ns);
	ck_assert_uint_eq(ns, (unsigned)libbpf_num_possible_cpus());
	v = check_metrics_sum(store, "qtap_system_events_lost_total", "type=\"conn_data\"", &ns);
	ck_assert_uint_eq(ns, (unsigned)libbpf_num_possible_cpus());
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"proc_exec\"", &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= N_TRUE + 1, "proc_exec runs: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"proc_exit\"", &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= N_TRUE + 2, "proc_exit runs: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"proc_fork\"", &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= N_TRUE + 2, "proc_fork runs: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_run_seconds_total", "program=\"proc_exec\"",
		       NULL);
	ck_assert_msg(v > 0, "proc_exec run time: %g s", v);

	/* Stopping leaves nothing attached: the programs this process held
	 * are gone from the kernel (attachments hold references). */
	capture_stop(&cap);
	ck_assert_ptr_null(cap);
	for (i = 0; i < nids; i++) {
		int waited;

		for (waited = 0; waited < 1000 && prog_exists(ids[i]); waited += 10)
			sleep_ms(10);
		ck_assert_msg(!prog_exists(ids[i]), "BPF program %u still loaded", ids[i]);
	}
	nfds = own_bpf_fds(ids, 64, &nids);
	ck_assert_uint_eq(nfds, 0);
	capture_stop(&cap);	/* NULL is fine */

	metrics_store_free(&store);
	rcu_unregister_thread();
}
END_TEST

static void *idle_thread(void *arg)
{
	sleep_ms(10);
	return arg;
}

/* The agent's own process (here a stand-in child) is filtered in the
 * kernel and left out of the /proc scan. */
START_TEST(test_self_filtered)
{
	struct metrics_store *store;
	struct capture_proc_info info;
	struct capture *cap;
	pid_t agent, other;
	pthread_t thread;
	int pipefd[2];
	char c = 'x';

	rcu_register_thread();
	store = store_new();
	ck_assert_int_eq(pipe(pipefd), 0);
	agent = fork();
	ck_assert_int_ge(agent, 0);
	if (agent == 0) {
		close(pipefd[1]);
		if (read(pipefd[0], &c, 1) != 1)
			_exit(126);
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	close(pipefd[0]);

	cap = start(store, agent);
	ck_assert_int_eq(capture_proc_lookup(cap, agent, &info), -ENOENT);
	/* This process is an ordinary one now: scanned, with its exe. */
	ck_assert_int_eq(capture_proc_lookup(cap, getpid(), &info), 0);
	ck_assert_uint_eq(info.tgid, getpid());
	ck_assert_uint_eq(info.ppid, getppid());

	/* A thread is not a process: no fork event for this process (the
	 * capture reader is a thread of it too). */
	ck_assert_int_eq(pthread_create(&thread, NULL, idle_thread, NULL), 0);
	ck_assert_int_eq(pthread_join(thread, NULL), 0);

	ck_assert_int_eq(write(pipefd[1], &c, 1), 1);
	close(pipefd[1]);
	reap(agent);
	other = spawn("/bin/true", NULL);
	reap(other);
	ck_assert_msg(wait_event(other, QTAP_EVENT_PROCESS_EXIT, 2000),
		      "no exit event for the control child %d", (int)other);
	ck_assert_uint_eq(count_events(other, QTAP_EVENT_PROCESS_EXEC, "/bin/true"), 1);
	/* The filtered child exited before the control child was forked. */
	ck_assert_uint_eq(count_events(agent, QTAP_EVENT_PROCESS_EXEC, NULL), 0);
	ck_assert_uint_eq(count_events(agent, QTAP_EVENT_PROCESS_EXIT, NULL), 0);
	ck_assert_uint_eq(count_events(getpid(), QTAP_EVENT_PROCESS_FORK, NULL), 0);
	ck_assert_uint_eq(count_events(getpid(), QTAP_EVENT_PROCESS_EXIT, NULL), 0);

	capture_stop(&cap);
	metrics_store_free(&store);
	rcu_unregister_thread();
}
END_TEST

/* ---- tracefs -------------------------------------------------------- */

static unsigned tracefs_mounts_at(const char *dir)
{
	char line[4096], mnt[PATH_MAX], fstype[64];
	unsigned n = 0;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep, " - %63s", fstype) != 1)
			continue;
		if (!strcmp(mnt, dir) && !strcmp(fstype, "tracefs"))
			n++;
	}
	fclose(f);
	return n;
}

START_TEST(test_tracefs_mount_idempotent)
{
	char dir[] = "/tmp/qtap-tracefs-XXXXXX";
	struct statfs sfs;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_uint_eq(tracefs_mounts_at(dir), 0);
	ck_assert_int_eq(capture_tracefs_mount(dir), 0);
	ck_assert_uint_eq(tracefs_mounts_at(dir), 1);
	ck_assert_int_eq(capture_tracefs_mount(dir), 0);
	ck_assert_uint_eq(tracefs_mounts_at(dir), 1);
	ck_assert_int_eq(statfs(dir, &sfs), 0);
	ck_assert_uint_eq((unsigned long)sfs.f_type, TRACEFS_MAGIC);
	ck_assert_int_eq(umount2(dir, MNT_DETACH), 0);
	ck_assert_int_eq(rmdir(dir), 0);

	ck_assert_int_eq(capture_tracefs_mount("/nonexistent/qtap/tracing"), -ENOENT);
	ck_assert_int_eq(capture_tracefs_mount("/sys/kernel/tracing"), 0);
	ck_assert_int_eq(capture_tracefs_mount("/sys/kernel/tracing"), 0);
	ck_assert_int_eq(statfs("/sys/kernel/tracing", &sfs), 0);
	ck_assert_uint_eq((unsigned long)sfs.f_type, TRACEFS_MAGIC);
}
END_TEST

/* ---- /proc parser and process table --------------------------------- */

/* The image /proc/PID/exe names: this process's; none for a pid that
 * does not run (the buffer left as it was). */
START_TEST(test_exe)
{
	char want[CAPTURE_EXE_LEN], got[CAPTURE_EXE_LEN];
	ssize_t n = readlink("/proc/self/exe", want, sizeof(want) - 1);

	ck_assert_int_gt(n, 0);
	want[n] = '\0';
	ck_assert(procfs_exe((uint32_t)getpid(), got, sizeof(got)));
	ck_assert_str_eq(got, want);
	strcpy(got, "untouched");
	ck_assert(!procfs_exe(0x7ffffff0u, got, sizeof(got)));
	ck_assert_str_eq(got, "untouched");
	/* a binary replaced while it runs: the name it was run by, without
	 * the " (deleted)" the kernel adds */
	ck_assert_uint_eq(procfs_path_len("/usr/bin/x (deleted)", 20), 10);
	ck_assert_uint_eq(procfs_path_len("/usr/bin/x", 10), 10);
	ck_assert_uint_eq(procfs_path_len(" (deleted)", 10), 10);
}
END_TEST

/* A process whose executable was unlinked while it runs (an upgrade) is
 * known by the path it was run by, which filters match. */
START_TEST(test_exe_deleted)
{
	char dir[] = "/tmp/qtap-exe-XXXXXX", path[64], got[CAPTURE_EXE_LEN];
	int in, out, hold[2];
	pid_t pid;
	ssize_t n;
	char buf[65536];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cat", dir);
	in = open("/bin/cat", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(in, 0);
	out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	ck_assert_int_eq(pipe(hold), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(hold[0], 0);
		close(hold[1]);
		execl(path, "cat", (char *)NULL);
		_exit(127);
	}
	close(hold[0]);
	/* running the copy, then the copy gone */
	for (n = 0; n < 200; n++) {
		if (procfs_exe((uint32_t)pid, got, sizeof(got)) && !strcmp(got, path))
			break;
		usleep(10000);
	}
	ck_assert_str_eq(got, path);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert(procfs_exe((uint32_t)pid, got, sizeof(got)));
	ck_assert_str_eq(got, path);
	close(hold[1]);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	rmdir(dir);
}
END_TEST

/* Container ids in the cgroup paths of the common runtimes, and a cgroup
 * read from a fake /proc and cgroup tree. */
START_TEST(test_cgroup)
{
	static const char id[] =
		"4f0a3c7e9b1d2e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b";
	char root[] = "/tmp/check_capture.XXXXXX", path[512], out[65];
	struct capture_proc_info info;
	struct stat st;
	FILE *f;

	ck_assert_int_eq(procfs_container_id("/system.slice/docker-4f0a3c7e9b1d2e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b.scope", out, sizeof(out)), 0);
	ck_assert_str_eq(out, id);
	ck_assert_int_eq(procfs_container_id("/docker/4f0a3c7e9b1d2e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b", out, sizeof(out)), 0);
	ck_assert_str_eq(out, id);
	ck_assert_int_eq(procfs_container_id("/kubepods.slice/kubepods-pod1234.slice/cri-containerd-4f0a3c7e9b1d2e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b.scope", out, sizeof(out)), 0);
	ck_assert_str_eq(out, id);
	strcpy(out, "untouched");
	ck_assert_int_eq(procfs_container_id("/user.slice/user-0.slice/session-1.scope", out, sizeof(out)), -ENOENT);
	/* 65 hex digits is not an id */
	ck_assert_int_eq(procfs_container_id("/x/4f0a3c7e9b1d2e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b0", out, sizeof(out)), -ENOENT);
	ck_assert_str_eq(out, "untouched");

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/4242", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cg", root);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cg/docker-%s.scope", root, id);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/4242/cgroup", root);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "0::/docker-%s.scope\n", id);
	fclose(f);
	memset(&info, 0, sizeof(info));
	info.tgid = 4242;
	snprintf(path, sizeof(path), "%s/cg", root);
	procfs_cgroup_fill(root, path, &info);
	ck_assert_uint_eq(info.cgroup_id, st.st_ino);
	ck_assert_str_eq(info.container_id, id);
	/* a process that is gone: nothing */
	info.tgid = 4243;
	procfs_cgroup_fill(root, path, &info);
	ck_assert_uint_eq(info.cgroup_id, 0);
	ck_assert_str_eq(info.container_id, "");
	/* this process, for real: the id BPF gives its cgroup */
	{
		char cg2[256], self_path[1400], line[1024];
		struct stat cst;
		FILE *sf;

		ck_assert_int_eq(procfs_cgroup2_root("/proc/self/mountinfo", cg2, sizeof(cg2)), 0);
		sf = fopen("/proc/self/cgroup", "r");
		ck_assert_ptr_nonnull(sf);
		self_path[0] = '\0';
		while (fgets(line, sizeof(line), sf))
			if (!strncmp(line, "0::", 3)) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(self_path, sizeof(self_path), "%s%s", cg2, line + 3);
			}
		fclose(sf);
		ck_assert_int_eq(stat(self_path, &cst), 0);
		info.tgid = (uint32_t)getpid();
		procfs_cgroup_fill("/proc", cg2, &info);
		ck_assert_uint_eq(info.cgroup_id, cst.st_ino);
	}
	/* mountinfo of a hybrid host: the cgroup2 line wins */
	snprintf(path, sizeof(path), "%s/mountinfo", root);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("25 22 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
	      "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n"
	      "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", f);
	fclose(f);
	ck_assert_int_eq(procfs_cgroup2_root(path, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "/sys/fs/cgroup/unified");
	unlink(path);
	/* a container id in a v1 controller's line, none in the unified one */
	snprintf(path, sizeof(path), "%s/4242/cgroup", root);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "4:memory:/docker/%s\n0::/\n", id);
	fclose(f);
	info.tgid = 4242;
	procfs_cgroup_fill(root, NULL, &info);
	ck_assert_str_eq(info.container_id, id);
	ck_assert_uint_eq(info.cgroup_id, 0);

	snprintf(path, sizeof(path), "%s/4242/cgroup", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/4242", root);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/cg/docker-%s.scope", root, id);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/cg", root);
	rmdir(path);
	rmdir(root);
}
END_TEST

START_TEST(test_stat_parse)
{
	struct proc_stat st;
	const char *plain =
		"4242 (nginx) S 1 4242 4242 0 -1 4194560 1480 0 0 0 3 1 0 0 20 0 1 0 "
		"123456 11853824 1436 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0\n";
	const char *odd =
		"17 (a) b (c)) Z 16 17 17 34816 17 4194304 0 0 0 0 0 0 0 0 20 -5 1 0 99 0 0\n";
	const char *kthread =
		"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0\n";

	ck_assert_int_eq(procfs_stat_parse(plain, &st), 0);
	ck_assert_uint_eq(st.pid, 4242);
	ck_assert_uint_eq(st.ppid, 1);
	ck_assert_int_eq(st.state, 'S');
	ck_assert_str_eq(st.comm, "nginx");
	ck_assert_uint_eq(st.flags, 4194560);
	ck_assert_uint_eq(st.start_ticks, 123456);

	ck_assert_int_eq(procfs_stat_parse(odd, &st), 0);
	ck_assert_str_eq(st.comm, "a) b (c)");
	ck_assert_int_eq(st.state, 'Z');
	ck_assert_uint_eq(st.ppid, 16);
	ck_assert_uint_eq(st.start_ticks, 99);

	ck_assert_int_eq(procfs_stat_parse(kthread, &st), 0);
	ck_assert_uint_ne(st.flags & 0x00200000, 0);

	ck_assert_int_eq(procfs_stat_parse("", &st), -EINVAL);
	ck_assert_int_eq(procfs_stat_parse("12 nginx S 1", &st), -EINVAL);
	ck_assert_int_eq(procfs_stat_parse("12 (nginx) S 1 2 3", &st), -EINVAL);
	ck_assert_int_eq(procfs_stat_parse("12 (nginx) S 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 "
					   "16 17 18 19", &st), -EINVAL);
	ck_assert_int_eq(procfs_stat_parse("x (nginx) S 1", &st), -EINVAL);
}
END_TEST

static void put_file(const char *root, const char *pid, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, pid);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", root, pid, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void put_exe(const char *root, const char *pid, const char *target)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s/exe", root, pid);
	ck_assert_int_eq(symlink(target, path), 0);
}

#define STAT_TAIL " 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"

/* procfs_foreach() callbacks: count each process; count and stop. */
static int count_one(const struct capture_proc_info *info, void *ctx)
{
	(void)info;
	(*(size_t *)ctx)++;
	return 0;
}

static int stop_at_first(const struct capture_proc_info *info, void *ctx)
{
	count_one(info, ctx);
	return -EINTR;
}

START_TEST(test_scan_fake_proc)
{
	char root[] = "/tmp/qtap-proc-XXXXXX", cmd[PATH_MAX + 16];
	struct capture_proc_info info;
	struct proc_table *t;
	size_t count = 99;
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t tick;

	rcu_register_thread();
	ck_assert_ptr_nonnull(mkdtemp(root));
	put_file(root, "100", "stat", "100 (my server) S 1 100 100 0 -1 4194560" STAT_TAIL);
	put_exe(root, "100", "/usr/bin/my-server");
	put_file(root, "101", "stat", "101 (dead) Z 100 101 101 0 -1 4194560" STAT_TAIL);
	put_exe(root, "101", "/usr/bin/dead");
	put_file(root, "102", "stat", "102 (kworker/0:1) I 2 0 0 0 -1 69238880" STAT_TAIL);
	put_exe(root, "102", "/kthread/has/no/exe");
	put_file(root, "103", "stat", "103 (gone) S 1 103 103 0 -1 4194560" STAT_TAIL);
	put_file(root, "104", "stat", "104 (qtap) S 1 104 104 0 -1 4194560" STAT_TAIL);
	put_exe(root, "104", "/usr/sbin/qtap");
	put_file(root, "105", "stat", "garbage\n");
	put_exe(root, "105", "/usr/bin/garbage");
	put_file(root, "self", "stat", "1 (init) S 0 1 1 0 -1 4194560" STAT_TAIL);
	put_exe(root, "self", "/sbin/init");

	t = proc_table_new();
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(procfs_scan(root, NULL, t, 104, &count), 0);
	ck_assert_uint_eq(count, 1);
	ck_assert_uint_eq(proc_table_count(t), 1);
	ck_assert_int_eq(proc_table_lookup(t, 100, &info), 0);
	ck_assert_uint_eq(info.tgid, 100);
	ck_assert_uint_eq(info.ppid, 1);
	ck_assert_str_eq(info.comm, "my server");
	ck_assert_str_eq(info.exe, "/usr/bin/my-server");
	ck_assert_uint_eq(info.start_time_ns, 500ull * (1000000000ull / hz));
	ck_assert_int_eq(proc_table_lookup(t, 101, &info), -ENOENT);
	ck_assert_int_eq(proc_table_lookup(t, 104, &info), -ENOENT);

	ck_assert_int_eq(procfs_scan("/nonexistent/proc", NULL, t, 0, &count), -ENOENT);
	ck_assert_uint_eq(count, 1);	/* untouched on failure */

	/* The walk behind the scan: the same processes, and the callback's
	 * first non-zero return ends it. */
	count = 0;
	ck_assert_int_eq(procfs_foreach(root, NULL, 0, count_one, &count), 0);
	ck_assert_uint_eq(count, 2);	/* 100 and 104 */
	count = 0;
	ck_assert_int_eq(procfs_foreach(root, NULL, 0, stop_at_first, &count), -EINTR);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(procfs_foreach("/nonexistent/proc", NULL, 0, count_one, &count),
			 -ENOENT);

	/* Ended: a pid whose directory is gone or holds a later process
	 * (another start), a zombie; not a running process, nor a zombie
	 * leader whose threads run, nor one whose stat makes no sense (asked
	 * again later). */
	put_file(root, "107", "stat", "107 (leader) Z 1 107 107 0 -1 4194560"
		 " 0 0 0 0 0 0 0 0 20 0 3 0 500 0 0\n");
	tick = 1000000000ull / hz;
	ck_assert(!procfs_gone(root, 100, 500 * tick));
	ck_assert(procfs_gone(root, 100, 499 * tick));
	ck_assert(procfs_gone(root, 101, 500 * tick));
	ck_assert(!procfs_gone(root, 107, 500 * tick));
	ck_assert(procfs_gone(root, 106, 500 * tick));
	ck_assert(!procfs_gone(root, 105, 500 * tick));
	ck_assert(procfs_gone("/nonexistent/proc", 100, 500 * tick));

	proc_table_clear(t);
	ck_assert_uint_eq(proc_table_count(t), 0);
	proc_table_free(&t);
	ck_assert_ptr_null(t);
	proc_table_free(&t);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
	rcu_unregister_thread();
}
END_TEST

START_TEST(test_table_put_replace_remove)
{
	struct capture_proc_info in, out;
	struct proc_table *t;
	uint32_t tgid;

	rcu_register_thread();
	t = proc_table_new();
	ck_assert_ptr_nonnull(t);
	memset(&in, 0, sizeof(in));
	for (tgid = 1; tgid <= 3000; tgid++) {
		in.tgid = tgid;
		in.ppid = tgid - 1;
		in.start_time_ns = tgid * 1000ull;
		snprintf(in.comm, sizeof(in.comm), "p%u", tgid);
		snprintf(in.exe, sizeof(in.exe), "/usr/bin/p%u", tgid);
		ck_assert_int_eq(proc_table_put(t, &in), 0);
	}
	ck_assert_uint_eq(proc_table_count(t), 3000);

	/* An exec replaces the entry in place. */
	in.tgid = 1234;
	snprintf(in.comm, sizeof(in.comm), "bash");
	snprintf(in.exe, sizeof(in.exe), "/usr/bin/bash");
	ck_assert_int_eq(proc_table_put(t, &in), 0);
	ck_assert_uint_eq(proc_table_count(t), 3000);
	ck_assert_int_eq(proc_table_lookup(t, 1234, &out), 0);
	ck_assert_str_eq(out.exe, "/usr/bin/bash");
	ck_assert_str_eq(out.comm, "bash");
	ck_assert_int_eq(proc_table_lookup(t, 2999, &out), 0);
	ck_assert_str_eq(out.exe, "/usr/bin/p2999");
	ck_assert_uint_eq(out.ppid, 2998);
	ck_assert_uint_eq(out.start_time_ns, 2999000);

	/* Held: by pid and start (a later process of the pid is another). */
	ck_assert(proc_table_holds(t, 2999, 2999000));
	ck_assert(!proc_table_holds(t, 2999, 2999001));
	ck_assert(!proc_table_holds(t, 5000, 5000000));

	ck_assert_int_eq(proc_table_remove(t, 1234), 0);
	ck_assert_int_eq(proc_table_remove(t, 1234), -ENOENT);
	ck_assert_int_eq(proc_table_lookup(t, 1234, &out), -ENOENT);
	ck_assert_int_eq(proc_table_lookup(t, 5000, &out), -ENOENT);
	ck_assert_uint_eq(proc_table_count(t), 2999);

	proc_table_clear(t);
	ck_assert_uint_eq(proc_table_count(t), 0);
	ck_assert_int_eq(proc_table_lookup(t, 1, &out), -ENOENT);
	proc_table_free(&t);
	rcu_unregister_thread();
}
END_TEST

static Suite *capture_suite(void)
{
	Suite *s = suite_create("capture");
	TCase *tc;

	tc = tcase_create("bpf");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_exec_exit_exact);
	tcase_add_test(tc, test_self_filtered);
	suite_add_tcase(s, tc);

	tc = tcase_create("tracefs");
	tcase_add_test(tc, test_tracefs_mount_idempotent);
	suite_add_tcase(s, tc);

	tc = tcase_create("proc");
	tcase_add_test(tc, test_stat_parse);
	tcase_add_test(tc, test_exe);
	tcase_add_test(tc, test_exe_deleted);
	tcase_add_test(tc, test_cgroup);
	tcase_add_test(tc, test_scan_fake_proc);
	tcase_add_test(tc, test_table_put_replace_remove);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(capture_suite());
}

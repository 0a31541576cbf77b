/* The TLS library probes: which library files get uprobes on their read and
 * write functions (bpf/sock.bpf.c, "TLS libraries"), found as processes come
 * and go, attached once per file (device and inode) for every process, and
 * detached when no process maps the file any more.
 *
 * Where they are found:
 * - at start, every library in the system's library directories
 *   (libssl.so.*, libgnutls.so.*) and node: a uprobe is set on the file's
 *   inode, so a process that maps it later is covered from its first call,
 *   with no race against the agent noticing it.  These stay attached;
 * - at start, the files every running process maps (tlslib_scan_maps());
 * - at every exec, the new image at once (an executable that exports the
 *   functions, such as node), and again after EXEC_RESCAN_MS (the
 *   libraries the dynamic loader maps after the exec).
 *
 * With --tls-attach process (CAPTURE_TLS_ATTACH_PROCESS) nothing is attached
 * for every process: each process the filters allow gets its own links, on
 * every TLS library file known (the system's, and those processes were
 * seen to map: a link on a file the process maps later takes effect when
 * it maps it), when it is found at start, at its exec, at its fork (its
 * parent's decision) and when a reload allows it; they are detached when
 * it exits or the filters leave it out.  A process the filters leave out
 * then runs its TLS calls without a breakpoint.  The cost: a process that
 * makes TLS calls within a few milliseconds of its exec (before its links
 * are in place) is not seen; qtap.conf(5) and qtap(8) say so.
 *
 * Links are uprobe_multi links, two per file (entries and returns), one
 * cookie per function (QTAP_TLS_COOKIE_*).  Closing one waits for the
 * kernel's grace periods (about 40 ms here); closes from several threads
 * share them, so links are closed by TLS_CLOSERS threads of their own.
 *
 * Threads: the process reader only (the registry is not thread-safe);
 * tls_probes_stop() runs after it stopped; the closer threads only close
 * the link fds handed to them. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sock.h"
#include "sock.skel.h"

#include "capture/capture-int.h"
#include "capture/tlslib.h"
#include "metrics/metrics.h"
#include "util/log.h"

/* After an exec, the maps are read again this late (the loader has mapped
 * the libraries by then). */
#define EXEC_RESCAN_MS 50

/* Threads closing detached links. */
#define TLS_CLOSERS 4

/* uprobe_multi links (CAPTURE_ATTACH_UPROBE_MULTI): the flag of a return
 * probe, and BPF_LINK_CREATE's attribute for them. */
#define TLS_UPROBE_MULTI_RETURN 1u	/* BPF_F_UPROBE_MULTI_RETURN */

struct tls_link_create {
	uint32_t prog_fd;
	uint32_t target_fd;
	uint32_t attach_type;
	uint32_t flags;
	uint64_t path;
	uint64_t offsets;
	uint64_t ref_ctr_offsets;
	uint64_t cookies;
	uint32_t cnt;
	uint32_t multi_flags;
	uint32_t pid;
	uint32_t pad;
};

/* The system's own copies, attached at start; and the executables known
 * to link OpenSSL in and export it (node), so that one started later is
 * covered from its first call too. */
static const char *const system_libraries[] = {
	"/usr/lib/*/libssl.so.*", "/usr/lib/*/libgnutls.so.*",
	"/lib/*/libssl.so.*", "/lib/*/libgnutls.so.*",
	"/usr/lib64/libssl.so.*", "/usr/lib64/libgnutls.so.*",
	"/usr/local/lib/libssl.so.*", "/usr/local/lib/libgnutls.so.*",
	"/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node",
};

/* What a file is probed as: the library label of its metrics. */
enum tls_kind { KIND_OPENSSL, KIND_GNUTLS, KIND_NODETLS, KIND__COUNT };

static const char *const kind_names[KIND__COUNT] = { "openssl", "gnutls", "nodetls" };

/* The functions probed: tls_enter at the entry, with the cookie that says
 * which (QTAP_TLS_COOKIE_*), and tls_return at the return. */
struct tls_hook {
	enum tlslib_fn fn;
	unsigned kind;		/* TLSLIB_* */
	uint64_t cookie;
};

static const struct tls_hook hooks[] = {
	{ TLSLIB_SSL_READ, TLSLIB_OPENSSL, QTAP_OP_SSL_READ },
	{ TLSLIB_SSL_READ_EX, TLSLIB_OPENSSL, QTAP_OP_SSL_READ | QTAP_TLS_COOKIE_EX },
	{ TLSLIB_SSL_WRITE, TLSLIB_OPENSSL, QTAP_OP_SSL_WRITE },
	{ TLSLIB_SSL_WRITE_EX, TLSLIB_OPENSSL, QTAP_OP_SSL_WRITE | QTAP_TLS_COOKIE_EX },
	{ TLSLIB_GNUTLS_RECORD_RECV, TLSLIB_GNUTLS, QTAP_OP_GNUTLS_RECV },
	{ TLSLIB_GNUTLS_RECORD_SEND, TLSLIB_GNUTLS, QTAP_OP_GNUTLS_SEND },
	{ TLSLIB_SSL_DO_HANDSHAKE, TLSLIB_OPENSSL, QTAP_TLS_OP_TIE },
	{ TLSLIB_GNUTLS_HANDSHAKE, TLSLIB_GNUTLS, QTAP_TLS_OP_TIE },
};

#define HOOKS (sizeof(hooks) / sizeof(hooks[0]))

/* The links of one library file: for every process, or for one. */
struct tls_attachment {
	dev_t dev;
	ino_t ino;
	uint32_t pid;			/* 0: every process */
	enum tls_kind kind;
	bool pinned;			/* a system library: kept */
	int fd[2];			/* entries, returns; -1: none */
};

struct tls_rescan {
	uint32_t tgid;
	uint64_t due_ns;
};

/* A file known to be a TLS library, with the path to attach it by (the
 * system's, in process mode). */
struct tls_known {
	struct tlslib_file file;
	char *path;
};

/* Link fds waiting for a closer thread, oldest first (fds[head..n)):
 * an entry link is handed over before its return link. */
struct tls_closer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int *fds;
	size_t head, n, cap;
	bool stop;
	pthread_t threads[TLS_CLOSERS];
	unsigned n_threads;
};

struct tls_probes {
	struct tlslib_registry *reg;
	bool per_process;		/* --tls-attach process */
	struct tls_attachment *att;
	size_t n_att, cap_att;
	struct tls_known *sys;		/* per_process: the system's libraries */
	size_t n_sys;
	struct tls_rescan *rescans;
	size_t n_rescans, cap_rescans;
	struct tls_closer closer;
	unsigned warned;		/* per process: kinds whose failure was logged */
	struct metric_series *attached[KIND__COUNT];	/* qtap_system_tls_attachments */
	struct metric_series *errors[KIND__COUNT];	/* ..._attach_errors_total */
	size_t count[KIND__COUNT];
};

/* Which kind the file is probed as, or -1 when
 * --tls-probes leaves it out: GnuTLS; OpenSSL in a shared library; OpenSSL
 * exported by an executable (nodetls). */
static int kind_of(const struct capture *cap, const struct tlslib_file *f, const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (f->kinds & TLSLIB_GNUTLS)
		return cap->opts.tls_probes & CAPTURE_TLS_GNUTLS ? KIND_GNUTLS : -1;
	if (strstr(base, ".so"))
		return cap->opts.tls_probes & CAPTURE_TLS_OPENSSL ? KIND_OPENSSL : -1;
	return cap->opts.tls_probes & CAPTURE_TLS_NODETLS ? KIND_NODETLS : -1;
}

static struct tls_attachment *attachment_find(struct tls_probes *tp, dev_t dev, ino_t ino,
					      uint32_t pid)
{
	size_t i;

	for (i = 0; i < tp->n_att; i++)
		if (tp->att[i].dev == dev && tp->att[i].ino == ino && tp->att[i].pid == pid)
			return &tp->att[i];
	return NULL;
}

/* ---- closing links ---------------------------------------------------- */

static void *closer_main(void *arg)
{
	struct tls_closer *c = arg;
	int fd;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->head == c->n && !c->stop)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->head == c->n)
			break;	/* stopping, and nothing left */
		fd = c->fds[c->head++];
		if (c->head == c->n)
			c->head = c->n = 0;
		pthread_mutex_unlock(&c->lock);
		close(fd);	/* waits for the kernel's grace periods */
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void closer_start(struct tls_closer *c)
{
	unsigned i;

	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	for (i = 0; i < TLS_CLOSERS; i++) {
		if (pthread_create(&c->threads[c->n_threads], NULL, closer_main, c))
			break;	/* fewer threads, or none: links close inline */
		c->n_threads++;
	}
}

/* Hands fd to the closer threads (or closes it here without them). */
static void closer_put(struct tls_closer *c, int fd)
{
	if (fd < 0)
		return;
	if (!c->n_threads) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (c->n == c->cap && c->head) {
		memmove(c->fds, c->fds + c->head, (c->n - c->head) * sizeof(*c->fds));
		c->n -= c->head;
		c->head = 0;
	}
	if (c->n == c->cap) {
		size_t n = c->cap ? c->cap * 2 : 64;
		int *p = realloc(c->fds, n * sizeof(*p));

		if (p) {
			c->fds = p;
			c->cap = n;
		}
	}
	if (c->n < c->cap) {
		c->fds[c->n++] = fd;
		pthread_cond_signal(&c->cond);
		fd = -1;
	}
	pthread_mutex_unlock(&c->lock);
	if (fd >= 0)
		close(fd);	/* no room: here, then */
}

/* Closes what is queued and stops the threads. */
static void closer_stop(struct tls_closer *c)
{
	unsigned i;

	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->n_threads; i++)
		pthread_join(c->threads[i], NULL);
	free(c->fds);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	memset(c, 0, sizeof(*c));
}

/* ---- attaching -------------------------------------------------------- */

static void attachment_detach(struct tls_probes *tp, struct tls_attachment *a)
{
	closer_put(&tp->closer, a->fd[0]);
	closer_put(&tp->closer, a->fd[1]);
	a->fd[0] = a->fd[1] = -1;
}

static void gauges_update(struct tls_probes *tp)
{
	unsigned k;

	for (k = 0; k < KIND__COUNT; k++)
		if (tp->attached[k])
			metrics_gauge_set(tp->attached[k], (int64_t)tp->count[k]);
}

/* One uprobe_multi link of prog on path's offsets for pid (0: every
 * process); its fd, or -errno. */
static int link_create(int prog_fd, const char *path, const uint64_t *offsets,
		       const uint64_t *cookies, unsigned cnt, bool ret, uint32_t pid)
{
	struct tls_link_create attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = (uint32_t)prog_fd;
	attr.attach_type = CAPTURE_ATTACH_UPROBE_MULTI;
	attr.path = (uint64_t)(uintptr_t)path;
	attr.offsets = (uint64_t)(uintptr_t)offsets;
	attr.cookies = (uint64_t)(uintptr_t)cookies;
	attr.cnt = cnt;
	attr.multi_flags = ret ? TLS_UPROBE_MULTI_RETURN : 0;
	attr.pid = pid;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : (int)fd;
}

/* Sets the probes of one file for pid (0: every process): 0, or -errno
 * (counted and logged). */
static int file_attach(struct capture *cap, const struct tlslib_file *f, const char *path,
		       bool pinned, uint32_t pid)
{
	struct tls_probes *tp = cap->tls;
	struct tls_attachment a = {
		.dev = f->dev, .ino = f->ino, .pid = pid, .pinned = pinned, .fd = { -1, -1 },
	};
	uint64_t offsets[HOOKS], cookies[HOOKS];
	char fd_path[32] = "";
	struct stat st;
	unsigned i, n = 0;
	int kind = kind_of(cap, f, path), err = 0, file_fd = -1;

	if (kind < 0 || attachment_find(tp, f->dev, f->ino, pid))
		return 0;
	a.kind = (enum tls_kind)kind;
	for (i = 0; i < HOOKS; i++) {
		if (!(f->kinds & hooks[i].kind) || !f->offset[hooks[i].fn])
			continue;
		offsets[n] = f->offset[hooks[i].fn];
		/* The programs tell a library linked into an executable by
		 * the cookie. */
		cookies[n++] = hooks[i].cookie | (kind == KIND_NODETLS ? QTAP_TLS_COOKIE_LINKED : 0);
	}
	if (!n)
		err = -ENOENT;
	/* The file the offsets were read from, and no other (a package
	 * upgrade puts a new file at the same path): the links name it by an
	 * fd of ours. */
	if (!err) {
		/* found, not opened: nothing but a regular file is touched */
		file_fd = tlslib_file_open(path, O_PATH);
		if (file_fd < 0)
			err = -errno;
		else if (fstat(file_fd, &st))
			err = -errno;
		else if (st.st_dev != f->dev || st.st_ino != f->ino)
			err = -ESTALE;
		else
			snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", file_fd);
	}
	/* The returns first: an entry whose return has no probe would leave
	 * its thread's call open (tls_enter heals that, at a cost). */
	if (!err) {
		a.fd[1] = link_create(bpf_program__fd(cap->sock->progs.tls_return), fd_path,
				      offsets, NULL, n, true, pid);
		err = a.fd[1] < 0 ? a.fd[1] : 0;
	}
	if (!err) {
		a.fd[0] = link_create(bpf_program__fd(cap->sock->progs.tls_enter), fd_path,
				      offsets, cookies, n, false, pid);
		err = a.fd[0] < 0 ? a.fd[0] : 0;
	}
	if (file_fd >= 0)
		close(file_fd);
	if (!err && tp->n_att == tp->cap_att) {
		size_t cnt = tp->cap_att ? tp->cap_att * 2 : 8;
		struct tls_attachment *p = realloc(tp->att, cnt * sizeof(*p));

		if (p) {
			tp->att = p;
			tp->cap_att = cnt;
		} else {
			err = -ENOMEM;
		}
	}
	if (err) {
		attachment_detach(tp, &a);
		if (pid && err == -ESRCH)
			return err;	/* the process is gone already */
		if (tp->errors[a.kind])
			metrics_counter_add(tp->errors[a.kind], 1);
		/* Per process, one warning per library kind: the same cause
		 * would otherwise repeat at every fork and exec. */
		if (!pid || !(tp->warned & (1u << a.kind)))
			log_warn("attaching the %s probes to %s%s failed: %s%s", kind_names[a.kind],
				 path, pid ? " for a process" : "", strerror(-err),
				 pid ? " (further failures of the kind are counted only)" : "");
		else
			log_debug("attaching the %s probes to %s for pid %u failed: %s",
				  kind_names[a.kind], path, pid, strerror(-err));
		if (pid)
			tp->warned |= 1u << a.kind;
		return err;
	}
	tp->att[tp->n_att++] = a;
	tp->count[a.kind]++;
	gauges_update(tp);
	/* The socket programs look for TLS calls in progress from now on. */
	__atomic_store_n(&cap->sock->bss->tls_probes_on, 1, __ATOMIC_RELAXED);
	if (pid)
		log_debug("TLS probes (%s) attached to %s for pid %u", kind_names[a.kind], path, pid);
	else
		log_info("TLS probes (%s) attached to %s", kind_names[a.kind], path);
	return 0;
}

/* Detaches attachment i (the last one takes its place). */
static void attachment_remove(struct tls_probes *tp, size_t i)
{
	struct tls_attachment *a = &tp->att[i];

	attachment_detach(tp, a);
	tp->count[a->kind]--;
	*a = tp->att[--tp->n_att];
	gauges_update(tp);
}

/* ---- per process (--tls-attach process) ------------------------------- */

struct proc_attach {
	struct capture *cap;
	uint32_t pid;
	struct stat exe;	/* the process's executable; st_ino 0: unknown */
};

/* tlslib_file_fn: attaches one known file for a process.  An executable
 * that links the library in is attached for its own processes only. */
static int known_attach(const struct tlslib_file *f, const char *path, void *arg)
{
	struct proc_attach *pa = arg;
	const char *inner;
	char own[4096];

	if (kind_of(pa->cap, f, path) == KIND_NODETLS &&
	    (f->dev != pa->exe.st_dev || f->ino != pa->exe.st_ino))
		return 0;
	/* A file reached through another process's root (a container's):
	 * through this one's, which maps it or will (that other process may
	 * be gone).  file_attach() checks it is the same file. */
	if (!strncmp(path, "/proc/", 6) && (inner = strstr(path + 6, "/root/"))) {
		snprintf(own, sizeof(own), "/proc/%u/root%s", pa->pid, inner + 5);
		path = own;
	}
	return file_attach(pa->cap, f, path, false, pa->pid) == -ESRCH ? -ESRCH : 0;
}

/* The pids that have links, once each (per process); *ret malloc()ed. */
static size_t attached_pids(const struct tls_probes *tp, uint32_t **ret)
{
	uint32_t *pids = malloc((tp->n_att ? tp->n_att : 1) * sizeof(*pids));
	size_t i, j, n = 0;

	*ret = pids;
	if (!pids)
		return 0;
	for (i = 0; i < tp->n_att; i++) {
		if (!tp->att[i].pid)
			continue;
		for (j = 0; j < n && pids[j] != tp->att[i].pid; j++)
			;
		if (j == n)
			pids[n++] = tp->att[i].pid;
	}
	return n;
}

static void proc_detach(struct tls_probes *tp, uint32_t pid)
{
	size_t i = tp->n_att;

	while (i--)
		if (tp->att[i].pid == pid)
			attachment_remove(tp, i);
}

/* Whether the filters allow the process: its kernel filter entry, else
 * (the map was full) the filters asked again. */
static bool proc_allowed(struct capture *cap, uint32_t tgid)
{
	struct capture_proc_info *info = &cap->filter_scratch;
	struct qtap_tgid_filter value;
	__u32 key = tgid;

	if (tgid == cap->self_tgid)
		return false;
	if (!bpf_map__lookup_elem(cap->sock->maps.tgid_filter, &key, sizeof(key), &value,
				  sizeof(value), 0))
		return value.action == QTAP_TGID_ALLOW;
	if (capture_proc_lookup(cap, tgid, info))
		return false;
	return filter_decide(cap->conf, cap->self_tgid, info) == QTAP_TGID_ALLOW;
}

/* Gives the process links on every known file when the filters allow it,
 * and takes them away when they do not. */
static void proc_sync(struct capture *cap, uint32_t tgid)
{
	struct tls_probes *tp = cap->tls;
	struct proc_attach pa = { .cap = cap, .pid = tgid };
	char exe[32];
	size_t i;

	if (!tp || !tp->per_process)
		return;
	if (!proc_allowed(cap, tgid)) {
		proc_detach(tp, tgid);
		return;
	}
	snprintf(exe, sizeof(exe), "/proc/%u/exe", tgid);
	if (stat(exe, &pa.exe))
		memset(&pa.exe, 0, sizeof(pa.exe));
	for (i = 0; i < tp->n_sys; i++) {
		struct tls_known *k = &tp->sys[i];
		struct stat st;

		/* Replaced since it was read (a package upgrade): read again. */
		if (!stat(k->path, &st) && (st.st_dev != k->file.dev || st.st_ino != k->file.ino))
			tlslib_inspect(k->path, &k->file);
		if (known_attach(&k->file, k->path, &pa) == -ESRCH)
			return;
	}
	tlslib_registry_foreach(tp->reg, known_attach, &pa);
}

/* tlslib_file_fn: a library file a process maps, new to the registry. */
static int file_new(const struct tlslib_file *f, const char *path, void *arg)
{
	struct capture *cap = arg;

	if (!cap->tls->per_process) {
		file_attach(cap, f, path, false, 0);
	} else {
		/* Every process with links gets it too (one may dlopen it
		 * later); the process that maps it, from proc_sync(). */
		struct proc_attach pa = { .cap = cap };
		uint32_t *pids;
		size_t i, n = attached_pids(cap->tls, &pids);

		for (i = 0; i < n; i++) {
			pa.pid = pids[i];
			known_attach(f, path, &pa);
		}
		free(pids);
	}
	/* recorded even when it failed: the next process that maps it does
	 * not retry in a loop; the failure is counted */
	return 0;
}

/* tlslib_file_fn: a library file no process maps any more. */
static int file_gone(const struct tlslib_file *f, const char *path, void *arg)
{
	struct capture *cap = arg;
	struct tls_probes *tp = cap->tls;
	struct tls_attachment *a = attachment_find(tp, f->dev, f->ino, 0);

	(void)path;
	if (a && !a->pinned)
		attachment_remove(tp, (size_t)(a - tp->att));
	return 0;
}

/* The system's libraries: attached for every process now, or (per
 * process) kept to be attached for each allowed process. */
static void system_libraries_attach(struct capture *cap)
{
	struct tls_probes *tp = cap->tls;
	struct tlslib_file f;
	glob_t g;
	size_t i, j;

	for (i = 0; i < sizeof(system_libraries) / sizeof(system_libraries[0]); i++) {
		if (glob(system_libraries[i], 0, NULL, &g))
			continue;
		for (j = 0; j < g.gl_pathc; j++) {
			if (tlslib_inspect(g.gl_pathv[j], &f))
				continue;
			if (!tp->per_process) {
				file_attach(cap, &f, g.gl_pathv[j], true, 0);
			} else {
				struct tls_known *p = realloc(tp->sys, (tp->n_sys + 1) * sizeof(*p));
				char *path = strdup(g.gl_pathv[j]);

				if (p)
					tp->sys = p;
				if (!p || !path) {
					free(path);
					continue;
				}
				tp->sys[tp->n_sys++] = (struct tls_known){ .file = f, .path = path };
			}
		}
		globfree(&g);
	}
}

static int proc_add(const struct capture_proc_info *info, void *ctx)
{
	struct capture *cap = ctx;

	if (info->tgid != cap->self_tgid)
		tlslib_registry_add_pid(cap->tls->reg, (pid_t)info->tgid, file_new, cap);
	return 0;
}

struct tgid_list {
	uint32_t *v;
	size_t n, cap;
};

static int tgid_collect(const struct capture_proc_info *info, void *ctx)
{
	struct tgid_list *l = ctx;

	if (l->n == l->cap) {
		size_t n = l->cap ? l->cap * 2 : 256;
		uint32_t *p = realloc(l->v, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = n;
	}
	l->v[l->n++] = info->tgid;
	return 0;
}

/* Whether the process exited (its table entry lingers). */
static bool proc_exited(const struct capture *cap, uint32_t tgid)
{
	size_t i;

	for (i = cap->exits_head; i < cap->exits_len; i++)
		if (cap->exits[i].tgid == tgid)
			return true;
	return false;
}

/* proc_sync() for every process of the table that still runs: their pids
 * first, the links after (the table's walk holds an RCU read lock). */
static void procs_sync(struct capture *cap)
{
	struct capture_proc_info *scratch = malloc(sizeof(*scratch));
	struct tgid_list l = { 0 };
	size_t i;

	if (scratch)
		proc_table_foreach(cap->procs, scratch, tgid_collect, &l);
	free(scratch);
	for (i = 0; i < l.n; i++)
		if (!proc_exited(cap, l.v[i]))
			proc_sync(cap, l.v[i]);
	free(l.v);
}

int tls_probes_start(struct capture *cap)
{
	struct capture_proc_info *scratch;
	struct tls_probes *tp;
	unsigned k;

	if (!(cap->opts.tls_probes & (CAPTURE_TLS_OPENSSL | CAPTURE_TLS_GNUTLS |
				      CAPTURE_TLS_NODETLS)))
		return 0;
	tp = calloc(1, sizeof(*tp));
	scratch = malloc(sizeof(*scratch));
	if (!tp || !scratch)
		goto nomem;
	tp->reg = tlslib_registry_new();
	if (!tp->reg)
		goto nomem;
	tp->per_process = cap->opts.tls_attach == CAPTURE_TLS_ATTACH_PROCESS;
	for (k = 0; k < KIND__COUNT; k++) {
		const char *values[] = { kind_names[k] };

		tp->attached[k] = metrics_series_get(cap->store, M_SYSTEM_TLS_ATTACHMENTS, values);
		tp->errors[k] = metrics_series_get(cap->store, M_SYSTEM_TLS_ATTACH_ERRORS_TOTAL,
						   values);
	}
	closer_start(&tp->closer);
	cap->tls = tp;
	gauges_update(tp);
	system_libraries_attach(cap);
	/* Every file first: a process is given all of them at once. */
	proc_table_foreach(cap->procs, scratch, proc_add, cap);
	free(scratch);
	if (tp->per_process)
		procs_sync(cap);
	log_debug("TLS probes: %zu attachments (%s), %lu files read", tp->n_att,
		  tp->per_process ? "per process" : "per library file",
		  tlslib_registry_inspections(tp->reg));
	return 0;
nomem:
	if (tp)
		tlslib_registry_free(&tp->reg);
	free(tp);
	free(scratch);
	cap->tls = NULL;
	log_error("starting the TLS probes failed: %s", strerror(ENOMEM));
	return -ENOMEM;
}

void tls_proc_exec(struct capture *cap, uint32_t tgid, bool by_thread)
{
	struct tls_probes *tp = cap->tls;

	if (!tp || tgid == cap->self_tgid)
		return;
	/* A link is bound to the task its pid named when it was made: the
	 * leader a thread's exec replaced runs nothing any more. */
	if (by_thread && tp->per_process)
		proc_detach(tp, tgid);
	/* Per process, the new image is judged first, before its maps are
	 * read (a link on a library it has not mapped yet takes effect when
	 * it maps it), and again for the files its maps show that were not
	 * known. */
	proc_sync(cap, tgid);
	if (tlslib_registry_add_pid(tp->reg, (pid_t)tgid, file_new, cap) > 0)
		proc_sync(cap, tgid);
	if (tp->n_rescans == tp->cap_rescans) {
		size_t n = tp->cap_rescans ? tp->cap_rescans * 2 : 16;
		struct tls_rescan *p = realloc(tp->rescans, n * sizeof(*p));

		if (!p)
			return;	/* its libraries are found by the next exec or not at all */
		tp->rescans = p;
		tp->cap_rescans = n;
	}
	tp->rescans[tp->n_rescans++] = (struct tls_rescan){
		.tgid = tgid, .due_ns = capture_mono_ns() + EXEC_RESCAN_MS * 1000000ull,
	};
}

void tls_proc_fork(struct capture *cap, uint32_t tgid)
{
	/* Links are per process: the breakpoints it inherits with its
	 * parent's memory do not run the programs of its parent's links.
	 * Any links of its pid are an older process's (its exit event
	 * lost). */
	if (!cap->tls || !cap->tls->per_process || tgid == cap->self_tgid)
		return;
	proc_detach(cap->tls, tgid);
	proc_sync(cap, tgid);
}

void tls_proc_exit(struct capture *cap, uint32_t tgid)
{
	struct tls_probes *tp = cap->tls;

	if (!tp)
		return;
	if (tp->per_process)
		proc_detach(tp, tgid);
	tlslib_registry_remove_pid(tp->reg, (pid_t)tgid, file_gone, cap);
}

void tls_probes_resync(struct capture *cap)
{
	if (cap->tls && cap->tls->per_process)
		procs_sync(cap);
}

void tls_rescans_run(struct capture *cap)
{
	struct tls_probes *tp = cap->tls;
	uint64_t now;
	size_t i, kept = 0;

	if (!tp || !tp->n_rescans)
		return;
	now = capture_mono_ns();
	for (i = 0; i < tp->n_rescans; i++) {
		if (tp->rescans[i].due_ns > now) {
			tp->rescans[kept++] = tp->rescans[i];
			continue;
		}
		/* -ESRCH: gone already (its exit removes it) */
		if (tlslib_registry_add_pid(tp->reg, (pid_t)tp->rescans[i].tgid, file_new,
					    cap) > 0)
			proc_sync(cap, tp->rescans[i].tgid);	/* files new to it */
	}
	tp->n_rescans = kept;
}

void tls_probes_stop(struct capture *cap)
{
	struct tls_probes *tp = cap->tls;
	size_t i;

	if (!tp)
		return;
	for (i = 0; i < tp->n_att; i++)
		attachment_detach(tp, &tp->att[i]);
	closer_stop(&tp->closer);	/* every link closed */
	memset(tp->count, 0, sizeof(tp->count));
	gauges_update(tp);
	free(tp->att);
	for (i = 0; i < tp->n_sys; i++)
		free(tp->sys[i].path);
	free(tp->sys);
	free(tp->rescans);
	tlslib_registry_free(&tp->reg);
	free(tp);
	cap->tls = NULL;
}

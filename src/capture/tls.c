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
 * Threads: the process reader only (the registry is not thread-safe);
 * tls_probes_stop() runs after it stopped. */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "sock.skel.h"

#include "capture/capture-int.h"
#include "capture/tlslib.h"
#include "metrics/metrics.h"
#include "util/log.h"

/* After an exec, the maps are read again this late (the loader has mapped
 * the libraries by then). */
#define EXEC_RESCAN_MS 50

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

/* The entry program of each function; every one also gets tls_return. */
struct tls_hook {
	enum tlslib_fn fn;
	unsigned kind;		/* TLSLIB_* */
};

static const struct tls_hook hooks[] = {
	{ TLSLIB_SSL_READ, TLSLIB_OPENSSL },
	{ TLSLIB_SSL_READ_EX, TLSLIB_OPENSSL },
	{ TLSLIB_SSL_WRITE, TLSLIB_OPENSSL },
	{ TLSLIB_SSL_WRITE_EX, TLSLIB_OPENSSL },
	{ TLSLIB_GNUTLS_RECORD_RECV, TLSLIB_GNUTLS },
	{ TLSLIB_GNUTLS_RECORD_SEND, TLSLIB_GNUTLS },
	{ TLSLIB_SSL_DO_HANDSHAKE, TLSLIB_OPENSSL },
	{ TLSLIB_GNUTLS_HANDSHAKE, TLSLIB_GNUTLS },
};

#define HOOKS (sizeof(hooks) / sizeof(hooks[0]))

/* One library file with probes. */
struct tls_attachment {
	dev_t dev;
	ino_t ino;
	enum tls_kind kind;
	bool pinned;			/* a system library: kept */
	struct bpf_link *links[2 * HOOKS];
	unsigned n_links;
};

struct tls_rescan {
	uint32_t tgid;
	uint64_t due_ns;
};

struct tls_probes {
	struct tlslib_registry *reg;
	struct tls_attachment *att;
	size_t n_att, cap_att;
	struct tls_rescan *rescans;
	size_t n_rescans, cap_rescans;
	struct metric_series *attached[KIND__COUNT];	/* qtap_system_tls_attachments */
	struct metric_series *errors[KIND__COUNT];	/* ..._attach_errors_total */
	size_t count[KIND__COUNT];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct bpf_program *hook_program(struct sock_bpf *skel, enum tlslib_fn fn)
{
	switch (fn) {
	case TLSLIB_SSL_READ:
		return skel->progs.tls_ssl_read;
	case TLSLIB_SSL_READ_EX:
		return skel->progs.tls_ssl_read_ex;
	case TLSLIB_SSL_WRITE:
		return skel->progs.tls_ssl_write;
	case TLSLIB_SSL_WRITE_EX:
		return skel->progs.tls_ssl_write_ex;
	case TLSLIB_GNUTLS_RECORD_RECV:
		return skel->progs.tls_gnutls_recv;
	case TLSLIB_GNUTLS_RECORD_SEND:
		return skel->progs.tls_gnutls_send;
	case TLSLIB_SSL_DO_HANDSHAKE:
	case TLSLIB_GNUTLS_HANDSHAKE:
		return skel->progs.tls_handshake;
	default:
		return NULL;
	}
}

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

static struct tls_attachment *attachment_find(struct tls_probes *tp, dev_t dev, ino_t ino)
{
	size_t i;

	for (i = 0; i < tp->n_att; i++)
		if (tp->att[i].dev == dev && tp->att[i].ino == ino)
			return &tp->att[i];
	return NULL;
}

static void attachment_detach(struct tls_attachment *a)
{
	unsigned i;

	for (i = 0; i < a->n_links; i++)
		bpf_link__destroy(a->links[i]);
	a->n_links = 0;
}

static void gauges_update(struct tls_probes *tp)
{
	unsigned k;

	for (k = 0; k < KIND__COUNT; k++)
		if (tp->attached[k])
			metrics_gauge_set(tp->attached[k], (int64_t)tp->count[k]);
}

/* Sets the probes of one file: 0, or -errno (counted and logged). */
static int file_attach(struct capture *cap, const struct tlslib_file *f, const char *path,
		       bool pinned)
{
	struct tls_probes *tp = cap->tls;
	struct tls_attachment a = { .dev = f->dev, .ino = f->ino, .pinned = pinned };
	unsigned i;
	int kind = kind_of(cap, f, path), err = 0;
	/* The programs tell a library linked into an executable by the
	 * cookie (bpf/sock.bpf.c TLS_COOKIE_LINKED). */
	LIBBPF_OPTS(bpf_uprobe_opts, entry, .bpf_cookie = kind == KIND_NODETLS);
	LIBBPF_OPTS(bpf_uprobe_opts, ret, .retprobe = true, .bpf_cookie = kind == KIND_NODETLS);

	if (kind < 0 || attachment_find(tp, f->dev, f->ino))
		return 0;
	a.kind = (enum tls_kind)kind;
	for (i = 0; i < HOOKS && !err; i++) {
		struct bpf_link *l;

		if (!(f->kinds & hooks[i].kind) || !f->offset[hooks[i].fn])
			continue;
		l = bpf_program__attach_uprobe_opts(hook_program(cap->sock, hooks[i].fn), -1,
						    path, f->offset[hooks[i].fn], &entry);
		if (!l) {
			err = -errno;
			break;
		}
		a.links[a.n_links++] = l;
		l = bpf_program__attach_uprobe_opts(cap->sock->progs.tls_return, -1, path,
						    f->offset[hooks[i].fn], &ret);
		if (!l) {
			err = -errno;
			break;
		}
		a.links[a.n_links++] = l;
	}
	if (!err && !a.n_links)
		err = -ENOENT;
	if (!err && tp->n_att == tp->cap_att) {
		size_t n = tp->cap_att ? tp->cap_att * 2 : 8;
		struct tls_attachment *p = realloc(tp->att, n * sizeof(*p));

		if (p) {
			tp->att = p;
			tp->cap_att = n;
		} else {
			err = -ENOMEM;
		}
	}
	if (err) {
		attachment_detach(&a);
		if (tp->errors[a.kind])
			metrics_counter_add(tp->errors[a.kind], 1);
		log_warn("attaching the %s probes to %s failed: %s", kind_names[a.kind], path,
			 strerror(-err));
		return err;
	}
	tp->att[tp->n_att++] = a;
	tp->count[a.kind]++;
	gauges_update(tp);
	/* The socket programs look for TLS calls in progress from now on. */
	__atomic_store_n(&cap->sock->bss->tls_probes_on, 1, __ATOMIC_RELAXED);
	log_info("TLS probes (%s) attached to %s", kind_names[a.kind], path);
	return 0;
}

/* tlslib_file_fn: a library file a process maps, new to the registry. */
static int file_new(const struct tlslib_file *f, const char *path, void *arg)
{
	file_attach(arg, f, path, false);
	/* recorded even when it failed: the next process that maps it does
	 * not retry in a loop; the failure is counted */
	return 0;
}

/* tlslib_file_fn: a library file no process maps any more. */
static int file_gone(const struct tlslib_file *f, const char *path, void *arg)
{
	struct capture *cap = arg;
	struct tls_probes *tp = cap->tls;
	struct tls_attachment *a = attachment_find(tp, f->dev, f->ino);

	(void)path;
	if (!a || a->pinned)
		return 0;
	attachment_detach(a);
	tp->count[a->kind]--;
	*a = tp->att[--tp->n_att];
	gauges_update(tp);
	return 0;
}

static void system_libraries_attach(struct capture *cap)
{
	struct tlslib_file f;
	glob_t g;
	size_t i, j;

	for (i = 0; i < sizeof(system_libraries) / sizeof(system_libraries[0]); i++) {
		if (glob(system_libraries[i], 0, NULL, &g))
			continue;
		for (j = 0; j < g.gl_pathc; j++)
			if (!tlslib_inspect(g.gl_pathv[j], &f))
				file_attach(cap, &f, g.gl_pathv[j], true);
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
	for (k = 0; k < KIND__COUNT; k++) {
		const char *values[] = { kind_names[k] };

		tp->attached[k] = metrics_series_get(cap->store, M_SYSTEM_TLS_ATTACHMENTS, values);
		tp->errors[k] = metrics_series_get(cap->store, M_SYSTEM_TLS_ATTACH_ERRORS_TOTAL,
						   values);
	}
	cap->tls = tp;
	gauges_update(tp);
	system_libraries_attach(cap);
	proc_table_foreach(cap->procs, scratch, proc_add, cap);
	free(scratch);
	log_debug("TLS probes: %zu library files attached (%lu files read)", tp->n_att,
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

void tls_proc_exec(struct capture *cap, uint32_t tgid)
{
	struct tls_probes *tp = cap->tls;

	if (!tp || tgid == cap->self_tgid)
		return;
	tlslib_registry_add_pid(tp->reg, (pid_t)tgid, file_new, cap);
	if (tp->n_rescans == tp->cap_rescans) {
		size_t n = tp->cap_rescans ? tp->cap_rescans * 2 : 16;
		struct tls_rescan *p = realloc(tp->rescans, n * sizeof(*p));

		if (!p)
			return;	/* its libraries are found by the next exec or not at all */
		tp->rescans = p;
		tp->cap_rescans = n;
	}
	tp->rescans[tp->n_rescans++] = (struct tls_rescan){
		.tgid = tgid, .due_ns = mono_ns() + EXEC_RESCAN_MS * 1000000ull,
	};
}

void tls_proc_exit(struct capture *cap, uint32_t tgid)
{
	if (cap->tls)
		tlslib_registry_remove_pid(cap->tls->reg, (pid_t)tgid, file_gone, cap);
}

void tls_rescans_run(struct capture *cap)
{
	struct tls_probes *tp = cap->tls;
	uint64_t now;
	size_t i, kept = 0;

	if (!tp || !tp->n_rescans)
		return;
	now = mono_ns();
	for (i = 0; i < tp->n_rescans; i++) {
		if (tp->rescans[i].due_ns > now) {
			tp->rescans[kept++] = tp->rescans[i];
			continue;
		}
		/* -ESRCH: gone already (its exit removes it) */
		tlslib_registry_add_pid(tp->reg, (pid_t)tp->rescans[i].tgid, file_new, cap);
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
		attachment_detach(&tp->att[i]);
	memset(tp->count, 0, sizeof(tp->count));
	gauges_update(tp);
	free(tp->att);
	free(tp->rescans);
	tlslib_registry_free(&tp->reg);
	free(tp);
	cap->tls = NULL;
}

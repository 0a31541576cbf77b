/* Filters: the configuration's tap.direction, tap.ignore_loopback,
 * filters.groups and filters.custom turned into the kernel's sock_config
 * (one entry) and tgid_filter (tgid -> QTAP_TGID_IGNORE or ALLOW) maps,
 * which bpf/sock.bpf.c checks when it creates a connection.  See the
 * filter.c section of capture-int.h for the threads. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <urcu.h>

#include "sock.h"
#include "sock.skel.h"

#include "capture/capture-int.h"
#include "conf/conf.h"
#include "util/log.h"

/* Whether name is one of a group's members (conf_group_members()). */
static bool name_in(const char *name, const char *const *list)
{
	size_t len;

	for (; list && *list; list++) {
		len = strlen(*list);
		if ((*list)[len - 1] == '*') {
			if (!strncmp(name, *list, len - 1))
				return true;
		} else if (!strcmp(name, *list)) {
			return true;
		}
	}
	return false;
}

unsigned filter_group_of(const char *exe, const char *comm)
{
	const char *name = exe && *exe ? exe : comm;
	const char *slash;

	if (!name || !*name)
		return 0;
	slash = strrchr(name, '/');
	if (slash)
		name = slash + 1;
	if (name_in(name, conf_group_members(CONF_GROUP_KUBERNETES)))
		return CONF_GROUP_KUBERNETES;
	if (name_in(name, conf_group_members(CONF_GROUP_CONTAINER_RUNTIMES)))
		return CONF_GROUP_CONTAINER_RUNTIMES;
	return 0;
}

unsigned filter_decide(const struct qtap_conf *conf, uint32_t self_tgid,
		       const struct capture_proc_info *info)
{
	unsigned groups = conf ? conf->tap.filter_groups : CONF_GROUP_QPOINT;

	/* Always an explicit answer: a process without an entry is one not
	 * classified yet, whose connections the kernel marks undecided. */
	if ((groups & CONF_GROUP_QPOINT) && info->tgid == self_tgid)
		return QTAP_TGID_IGNORE;
	if (groups & filter_group_of(info->exe, info->comm))
		return QTAP_TGID_IGNORE;
	if (conf && conf_exe_filtered(conf, info->exe))
		return QTAP_TGID_IGNORE;
	return QTAP_TGID_ALLOW;
}

bool filter_conn_wanted(void *ctx, uint32_t tgid, const char *exe, const char *comm)
{
	/* Per worker thread: an exe path is too large for a worker's stack. */
	static __thread struct capture_proc_info info;
	struct capture *cap = ctx;
	unsigned action;

	memset(&info, 0, offsetof(struct capture_proc_info, exe));
	info.tgid = tgid;
	snprintf(info.comm, sizeof(info.comm), "%s", comm ? comm : "");
	/* The image the process runs now: the process table may still hold
	 * the one it forked from, its exec not yet processed. */
	if (!procfs_exe(tgid, info.exe, sizeof(info.exe)))
		snprintf(info.exe, sizeof(info.exe), "%s", exe ? exe : "");
	rcu_read_lock();
	action = filter_decide(conf_current(), cap->self_tgid, &info);
	rcu_read_unlock();
	return action != QTAP_TGID_IGNORE;
}

int filter_config_write(struct capture *cap, const struct qtap_conf *conf)
{
	struct qtap_sock_config cfg = { 0 };
	__u32 key = 0;
	int err;

	if (conf) {
		switch (conf->tap.direction) {
		case CONF_DIRECTION_ALL:
			cfg.direction = QTAP_CFG_DIR_ALL;
			break;
		case CONF_DIRECTION_INGRESS:
			cfg.direction = QTAP_CFG_DIR_INGRESS;
			break;
		case CONF_DIRECTION_EGRESS:
			cfg.direction = QTAP_CFG_DIR_EGRESS;
			break;
		case CONF_DIRECTION_EGRESS_INTERNAL:
			cfg.direction = QTAP_CFG_DIR_EGRESS_INTERNAL;
			break;
		case CONF_DIRECTION_EGRESS_EXTERNAL:
			cfg.direction = QTAP_CFG_DIR_EGRESS_EXTERNAL;
			break;
		}
		cfg.ignore_loopback = conf->tap.ignore_loopback;
		cfg.include_dns = conf->tap.audit_include_dns;
	}
	err = bpf_map__update_elem(cap->sock->maps.sock_config, &key, sizeof(key), &cfg,
				   sizeof(cfg), BPF_ANY);
	if (err)
		log_error("writing the kernel's capture configuration failed: %s", strerror(-err));
	return err;
}

int filter_gen_map(struct capture *cap)
{
	/* An array map's values start at offset 0 of its mapping. */
	void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(cap->sock->maps.filter_gen), 0);

	if (p == MAP_FAILED) {
		int err = -errno;

		log_error("mapping the filter generation counter failed: %s", strerror(-err));
		return err;
	}
	cap->filter_gen = p;
	return 0;
}

void filter_gen_unmap(struct capture *cap)
{
	if (cap->filter_gen)
		munmap(cap->filter_gen, (size_t)sysconf(_SC_PAGESIZE));
	cap->filter_gen = NULL;
}

/* After a change to tgid_filter or exec_gen: the kernel's remembered
 * verdicts on left-out connections are looked at again (exec_gen.bpf.h). */
static void filter_gen_bump(struct capture *cap)
{
	if (cap->filter_gen)
		__atomic_fetch_add(cap->filter_gen, 1, __ATOMIC_SEQ_CST);
}

static int filter_write(struct capture *cap, uint32_t tgid, unsigned action, uint32_t gen)
{
	struct qtap_tgid_filter value = { .action = action, .gen = gen };
	__u32 key = tgid;
	int err;

	if (action)
		err = bpf_map__update_elem(cap->sock->maps.tgid_filter, &key, sizeof(key),
					   &value, sizeof(value), BPF_ANY);
	else
		err = bpf_map__delete_elem(cap->sock->maps.tgid_filter, &key, sizeof(key), 0);
	filter_gen_bump(cap);
	return err == -ENOENT && !action ? 0 : err;
}

uint32_t filter_exec_gen(struct capture *cap, uint32_t tgid)
{
	__u32 key = tgid, gen = 0;

	if (bpf_map__lookup_elem(cap->sock->maps.exec_gen, &key, sizeof(key), &gen,
				 sizeof(gen), 0))
		return 0;
	return gen;
}

int filter_proc_apply(struct capture *cap, const struct capture_proc_info *info, uint32_t gen)
{
	/* The generation first, the image after: should the process exec
	 * in between, the entry is written for a generation that is already
	 * past, and the kernel takes it as undecided. */
	struct capture_proc_info *now = &cap->filter_scratch;

	/* the image /proc names now, else the one info has */
	*now = *info;
	procfs_exe(info->tgid, now->exe, sizeof(now->exe));
	return filter_write(cap, info->tgid, filter_decide(cap->conf, cap->self_tgid, now), gen);
}

void filter_proc_forget(struct capture *cap, uint32_t tgid)
{
	__u32 key = tgid;

	if (tgid == cap->self_tgid)
		return;
	filter_write(cap, tgid, 0, 0);
	bpf_map__delete_elem(cap->sock->maps.exec_gen, &key, sizeof(key), 0);
	filter_gen_bump(cap);
}

static int apply_one(const struct capture_proc_info *info, void *ctx)
{
	struct capture *cap = ctx;
	int err = filter_proc_apply(cap, info, filter_exec_gen(cap, info->tgid));

	/* Keep going: one full map must not leave the rest undecided. */
	if (err && !cap->filter_failed_logged) {
		log_warn("writing the filter entry of pid %u failed: %s", info->tgid,
			 strerror(-err));
		cap->filter_failed_logged = true;
	}
	return 0;
}

int filter_apply_all(struct capture *cap)
{
	struct capture_proc_info *self = &cap->parent;
	__u32 key, next, *prev = NULL;
	int fd = bpf_map__fd(cap->sock->maps.tgid_filter);
	int err;

	/* The agent is left out of the process table: decided here (its
	 * image, filter_proc_apply() reads from /proc). */
	memset(self, 0, sizeof(*self));
	self->tgid = cap->self_tgid;
	err = filter_proc_apply(cap, self, filter_exec_gen(cap, self->tgid));
	proc_table_foreach(cap->procs, &cap->scratch, apply_one, cap);

	/* Entries of processes no longer in the table. */
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		if (next != cap->self_tgid &&
		    proc_table_lookup(cap->procs, next, &cap->scratch) == -ENOENT &&
		    !bpf_map_delete_elem(fd, &next))
			continue;	/* next is gone: start over from prev */
		key = next;
		prev = &key;
	}
	filter_gen_bump(cap);
	return err;
}

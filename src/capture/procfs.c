/* Seeding the process table from /proc: see capture-int.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/capture-int.h"

#define PF_KTHREAD 0x00200000	/* include/linux/sched.h */

size_t procfs_path_len(const char *path, size_t n)
{
	static const char deleted[] = " (deleted)";
	const size_t k = sizeof(deleted) - 1;

	return n > k && !memcmp(path + n - k, deleted, k) ? n - k : n;
}

bool procfs_exe(uint32_t tgid, char *buf, size_t size)
{
	char path[32];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/exe", tgid);
	n = readlink(path, buf, size - 1);
	if (n <= 0)
		return false;
	buf[procfs_path_len(buf, (size_t)n)] = '\0';
	return true;
}

/* Field 2 is "(comm)", which may hold spaces and parentheses: it ends at
 * the last ')'.  Fields 3 on are numbers separated by one space. */
int procfs_stat_parse(const char *text, struct proc_stat *ret)
{
	const char *open, *close, *p;
	unsigned long long v[20];
	struct proc_stat st;
	size_t len;
	char *end;
	int field;

	memset(&st, 0, sizeof(st));
	errno = 0;
	st.pid = strtoul(text, &end, 10);
	if (errno || end == text || *end != ' ')
		return -EINVAL;
	open = strchr(text, '(');
	close = strrchr(text, ')');
	if (!open || !close || close < open || open != end + 1)
		return -EINVAL;
	len = close - open - 1;
	if (len >= sizeof(st.comm))
		len = sizeof(st.comm) - 1;
	memcpy(st.comm, open + 1, len);
	st.comm[len] = '\0';

	p = close + 1;
	if (p[0] != ' ' || !p[1] || p[2] != ' ')
		return -EINVAL;
	st.state = p[1];
	p += 3;
	/* v[0] is field 4 (ppid) ... v[18] is field 22 (starttime). */
	for (field = 0; field < 19; field++) {
		const char *start = p;

		errno = 0;
		if (*p == '-')	/* tty_nr, tpgid, priority, nice can be < 0 */
			v[field] = (unsigned long long)strtoll(p, &end, 10);
		else
			v[field] = strtoull(p, &end, 10);
		if (errno || end == start || (*end != ' ' && *end != '\n' && *end))
			return -EINVAL;
		if (field < 18 && *end != ' ')
			return -EINVAL;
		p = end + (*end == ' ');
	}
	st.ppid = v[0];
	st.flags = v[5];
	st.num_threads = v[16];
	st.start_ticks = v[18];
	*ret = st;
	return 0;
}

static int read_text(int dirfd, const char *name, char *buf, size_t size)
{
	ssize_t n;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[n] = '\0';
	return 0;
}

/* The length of a clock tick (/proc/PID/stat's unit), in ns. */
static uint64_t ns_per_tick(void)
{
	long hz = sysconf(_SC_CLK_TCK);

	return hz > 0 ? 1000000000ull / (uint64_t)hz : 10000000ull;
}

uint64_t procfs_start_time(uint64_t boottime_ns)
{
	uint64_t tick = ns_per_tick();

	return boottime_ns / tick * tick;
}

/* 0 and *info filled, or -errno when the process is gone or is not a
 * user-space process we track (-ESRCH). */
static int scan_one(int procfd, const char *pid, uint64_t tick,
		    struct capture_proc_info *info)
{
	char text[1024];
	struct proc_stat st;
	ssize_t n;
	int dirfd, err;

	dirfd = openat(procfd, pid, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	err = read_text(dirfd, "stat", text, sizeof(text));
	if (err)
		goto out_close;
	err = procfs_stat_parse(text, &st);
	if (err)
		goto out_close;
	if (st.state == 'Z' || st.state == 'X' || (st.flags & PF_KTHREAD)) {
		err = -ESRCH;
		goto out_close;
	}
	n = readlinkat(dirfd, "exe", info->exe, sizeof(info->exe) - 1);
	if (n < 0) {
		err = -errno;
		goto out_close;
	}
	info->exe[procfs_path_len(info->exe, (size_t)n)] = '\0';
	info->tgid = st.pid;
	info->ppid = st.ppid;
	info->start_time_ns = st.start_ticks * tick;
	info->exec_gen = 0;
	memcpy(info->comm, st.comm, sizeof(info->comm));
out_close:
	close(dirfd);
	return err;
}

int procfs_container_id(const char *path, char *out, size_t n)
{
	const char *p = path, *found = NULL;

	while (*p) {
		size_t run = strspn(p, "0123456789abcdef");

		if (run == 64)
			found = p;
		p += run ? run : 1;
	}
	if (!found || n < 65)
		return -ENOENT;
	memcpy(out, found, 64);
	out[64] = '\0';
	return 0;
}

int procfs_cgroup2_root(const char *mountinfo, char *out, size_t n)
{
	char line[4096];
	int err = -ENOENT;
	FILE *f = fopen(mountinfo, "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - TYPE ... */
		char *sep = strstr(line, " - "), *mnt;
		int field;

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
			continue;
		mnt = line;
		for (field = 0; field < 4 && mnt; field++) {
			mnt = strchr(mnt, ' ');
			if (mnt)
				mnt++;
		}
		if (!mnt || !strchr(mnt, ' ') || (size_t)(strchr(mnt, ' ') - mnt) >= n)
			continue;
		*strchr(mnt, ' ') = '\0';
		snprintf(out, n, "%s", mnt);
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

void procfs_cgroup_fill(const char *proc_root, const char *cgroup2_root,
			struct capture_proc_info *info)
{
	char path[64], line[4096];
	struct stat st;
	FILE *f;

	info->cgroup_id = 0;
	info->container_id[0] = '\0';
	snprintf(path, sizeof(path), "%s/%u/cgroup", proc_root, info->tgid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char full[4200], *cg = strchr(line, ':');

		line[strcspn(line, "\n")] = '\0';
		if (!cg || !(cg = strchr(cg + 1, ':')))
			continue;
		cg++;
		/* Any hierarchy may carry the runtime's path (cgroup v1 hosts
		 * keep it in the controllers'); the unified one gives the id. */
		if (!info->container_id[0])
			procfs_container_id(cg, info->container_id, sizeof(info->container_id));
		if (strncmp(line, "0::", 3) || !cgroup2_root)
			continue;
		snprintf(full, sizeof(full), "%s%s", cgroup2_root, cg);
		if (!stat(full, &st))
			info->cgroup_id = st.st_ino;
	}
	fclose(f);
}

int procfs_foreach(const char *proc_root, const char *cgroup2_root, uint32_t skip_tgid,
		   int (*fn)(const struct capture_proc_info *info, void *ctx), void *ctx)
{
	struct capture_proc_info *info;
	uint64_t tick = ns_per_tick();
	struct dirent *de;
	DIR *dir;
	int err = 0;

	info = malloc(sizeof(*info));
	if (!info)
		return -ENOMEM;
	dir = opendir(proc_root);
	if (!dir) {
		err = -errno;
		goto out_free;
	}
	while ((de = readdir(dir))) {
		char *end;
		unsigned long pid;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid = strtoul(de->d_name, &end, 10);
		if (*end || pid > UINT32_MAX || pid == skip_tgid)
			continue;
		if (scan_one(dirfd(dir), de->d_name, tick, info))
			continue;	/* gone, kernel thread or zombie */
		procfs_cgroup_fill(proc_root, cgroup2_root, info);
		err = fn(info, ctx);
		if (err)
			break;
	}
	closedir(dir);
out_free:
	free(info);
	return err;
}

struct scan_put {
	struct proc_table *t;
	size_t count;
};

static int scan_put_one(const struct capture_proc_info *info, void *ctx)
{
	struct scan_put *sp = ctx;
	int err = proc_table_put(sp->t, info);

	if (!err)
		sp->count++;
	return err;
}

int procfs_scan(const char *proc_root, const char *cgroup2_root, struct proc_table *t,
		uint32_t skip_tgid, size_t *ret_count)
{
	struct scan_put sp = { .t = t };
	int err = procfs_foreach(proc_root, cgroup2_root, skip_tgid, scan_put_one, &sp);

	if (!err)
		*ret_count = sp.count;
	return err;
}

bool procfs_gone(const char *proc_root, uint32_t tgid, uint64_t start_time_ns)
{
	char path[64], text[1024];
	struct proc_stat st;
	int dirfd, err;

	snprintf(path, sizeof(path), "%s/%u", proc_root, tgid);
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return errno == ENOENT || errno == ESRCH;
	err = read_text(dirfd, "stat", text, sizeof(text));
	close(dirfd);
	if (err)
		return err == -ENOENT || err == -ESRCH;
	if (procfs_stat_parse(text, &st) || st.pid != tgid)
		return false;
	if (st.start_ticks * ns_per_tick() != start_time_ns)
		return true;	/* its pid is a later process's */
	return (st.state == 'Z' || st.state == 'X') && st.num_threads <= 1;
}

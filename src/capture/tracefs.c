/* tracefs: the tracepoint programs are attached through
 * /sys/kernel/tracing/events/.../id, so it must be mounted. */
#include "config.h"

#include <errno.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#include "capture/capture.h"

int capture_tracefs_mount(const char *path)
{
	struct statfs sfs;

	if (statfs(path, &sfs))
		return -errno;
	if (sfs.f_type == TRACEFS_MAGIC)
		return 0;
	if (mount("tracefs", path, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -errno;
	return 0;
}

/* Capture: loads the BPF programs (skeleton lifecycle in one place),
 * attaches them, and runs the threads that drain the kernel buffers.
 *
 * Threads: capture_start()/capture_stop() run on the main thread; the reader
 * threads they start are metric writers; the BPF statistics collector runs
 * on the scrape thread. */
#ifndef QTAP_CAPTURE_CAPTURE_H
#define QTAP_CAPTURE_CAPTURE_H

#include <stdbool.h>

struct metrics_store;
struct capture;

struct capture_opts {
	/* Mount tracefs at /sys/kernel/tracing when it is not mounted. */
	bool mount_tracefs;
	/* --bpf-trace filter, or NULL. */
	const char *bpf_trace;
};

/* Mounts tracefs if needed, enables BPF run statistics for the agent's life,
 * loads and attaches the programs, starts the readers and registers the
 * /system/metrics collector.  NULL and errno on failure, after logging why
 * (this is the caller that decides, so it logs). */
struct capture *capture_start(const struct capture_opts *opts, struct metrics_store *store);
/* Detaches everything, stops the readers after draining what was queued. */
void capture_stop(struct capture **cap);

/* Mounts tracefs at path when nothing is mounted there; 0 or -errno. */
int capture_tracefs_mount(const char *path);

#endif

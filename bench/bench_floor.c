/* The bare-probe floor for bench/overhead.sh: loads bpf/floor.bpf.c (empty
 * programs on the agent's tracepoints, attached the way the agent attaches
 * its own), prints "attached" and holds them until SIGINT or SIGTERM.
 * Root. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "floor.skel.h"

int main(void)
{
	struct floor_bpf *skel;
	sigset_t set;
	int err, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	skel = floor_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "bench_floor: loading the programs failed: %s\n",
			strerror(errno));
		return 1;
	}
	err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "bench_floor: attaching the programs failed: %s\n",
			strerror(-err));
		floor_bpf__destroy(skel);
		return 1;
	}
	printf("attached\n");
	fflush(stdout);
	sigwait(&set, &sig);
	floor_bpf__destroy(skel);
	return 0;
}

/* The floors for bench/overhead.sh and bench/pairs.sh: loads
 * bpf/floor.bpf.c (programs on the agent's tracepoints, attached the way
 * the agent attaches its own), prints "attached" and holds them until
 * SIGINT or SIGTERM.  Root.
 *
 *   bench_floor          the bare-probe floor: programs that do nothing
 *   bench_floor --copy   the copy floor: the socket calls' programs find
 *                        and copy the bytes each call moved and read the
 *                        clock, as the agent's do, and keep nothing */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "floor.skel.h"

int main(int argc, char **argv)
{
	struct floor_bpf *skel;
	bool copy = false;
	sigset_t set;
	int err, sig;

	if (argc == 2 && !strcmp(argv[1], "--copy")) {
		copy = true;
	} else if (argc != 1) {
		fprintf(stderr, "usage: bench_floor [--copy]\n");
		return 2;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	skel = floor_bpf__open();
	if (!skel) {
		fprintf(stderr, "bench_floor: opening the programs failed: %s\n",
			strerror(errno));
		return 1;
	}
	/* one program on each socket tracepoint: the bare one or the copy */
	bpf_program__set_autoload(copy ? skel->progs.floor_send : skel->progs.copy_send, false);
	bpf_program__set_autoload(copy ? skel->progs.floor_recv : skel->progs.copy_recv, false);
	err = floor_bpf__load(skel);
	if (err) {
		fprintf(stderr, "bench_floor: loading the programs failed: %s\n",
			strerror(-err));
		floor_bpf__destroy(skel);
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

/* Socket calls one at a time, for bench/pairs.sh: one thread pinned to one
 * CPU writes SIZE bytes into a loopback TCP connection and reads them back
 * at the other end, PAIRS times, and prints the nanoseconds per pair (one
 * traced send and one traced receive), with no second process, no server
 * and no scheduling between the two ends: what a traced call costs the
 * thread that makes it, when the agent's threads have the other CPUs.
 *
 *   bench_pairs [-n PAIRS] [-s SIZE] [-c CPU]
 *
 * Defaults: 200000 pairs of 100 bytes on the last CPU. */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define WARMUP_PAIRS 2000
#define SIZE_MAX_BYTES 65536

static int fail(const char *what)
{
	fprintf(stderr, "bench_pairs: %s: %s\n", what, strerror(errno));
	return 1;
}

static long parse(const char *s, long lo, long hi, const char *name)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "bench_pairs: %s must be a number from %ld to %ld\n", name, lo,
			hi);
		exit(2);
	}
	return v;
}

/* One pair: size bytes written at w, all read back at r. */
static int pair(int w, int r, const char *out, char *in, size_t size)
{
	size_t got = 0;
	ssize_t n;

	if (write(w, out, size) != (ssize_t)size)
		return -1;
	while (got < size) {
		n = read(r, in + got, size - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t addrlen = sizeof(addr);
	long pairs = 200000, size = 100, cpu = sysconf(_SC_NPROCESSORS_ONLN) - 1, i;
	struct timespec t0, t1;
	char *out, *in;
	cpu_set_t set;
	int opt, l, c, s, one = 1;

	while ((opt = getopt(argc, argv, "n:s:c:")) != -1) {
		switch (opt) {
		case 'n':
			pairs = parse(optarg, 1, 100000000, "-n PAIRS");
			break;
		case 's':
			size = parse(optarg, 1, SIZE_MAX_BYTES, "-s SIZE");
			break;
		case 'c':
			cpu = parse(optarg, 0, CPU_SETSIZE - 1, "-c CPU");
			break;
		default:
			fprintf(stderr, "usage: bench_pairs [-n PAIRS] [-s SIZE] [-c CPU]\n");
			return 2;
		}
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return fail("pinning to the CPU");
	out = malloc((size_t)size);
	in = malloc((size_t)size);
	if (!out || !in)
		return fail("allocating the buffers");
	/* An HTTP request line, so that the agent sees a request. */
	for (i = 0; i < size; i++)
		out[i] = "GET / HTTP/1.1\r\n"[i % 16];

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&addr, &addrlen))
		return fail("listening on loopback");
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)))
		return fail("connecting");
	s = accept(l, NULL, NULL);
	if (s < 0)
		return fail("accepting");
	if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return fail("setting TCP_NODELAY");

	for (i = 0; i < WARMUP_PAIRS; i++)
		if (pair(c, s, out, in, (size_t)size))
			return fail("a warm-up pair");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < pairs; i++)
		if (pair(c, s, out, in, (size_t)size))
			return fail("a pair");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.1f\n", ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
			  (double)(t1.tv_nsec - t0.tv_nsec)) / (double)pairs);
	close(s);
	close(c);
	close(l);
	free(out);
	free(in);
	return 0;
}

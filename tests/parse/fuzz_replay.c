/* main() of the fuzz targets when they are not built with libFuzzer:
 * replays every file of a corpus directory through
 * LLVMFuzzerTestOneInput() and prints one TAP line per file.  A file that
 * crashes the target ends the program, which the TAP driver reports.
 *
 *   fuzz_tls [DIR]   DIR defaults to $top_srcdir/tests/parse/corpus/fuzz_tls,
 *                    the last part named after the program. */
#include "config.h"

#ifndef QTAP_LIBFUZZER

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_read(const char *path, uint8_t **ret, size_t *ret_len)
{
	uint8_t *buf = NULL, *nb;
	size_t len = 0, cap = 0, n;
	FILE *f;

	f = fopen(path, "rb");
	if (!f)
		return -errno;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	/* exactly len bytes, so that a read past the end is caught */
	nb = malloc(len ? len : 1);
	if (!nb) {
		free(buf);
		return -ENOMEM;
	}
	memcpy(nb, buf, len);
	free(buf);
	*ret = nb;
	*ret_len = len;
	return 0;
}

static int replay_filter(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

int main(int argc, char **argv)
{
	struct dirent **names;
	const char *prog, *top;
	char dir[4096], path[4096 + 256];
	int i, n, failed = 0;

	prog = strrchr(argv[0], '/');
	prog = prog ? prog + 1 : argv[0];
	if (argc > 1) {
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	} else {
		top = getenv("top_srcdir");
		snprintf(dir, sizeof(dir), "%s/tests/parse/corpus/%s", top ? top : ".", prog);
	}
	n = scandir(dir, &names, replay_filter, alphasort);
	if (n < 0) {
		printf("1..0 # SKIP\nBail out! %s: %s\n", dir, strerror(errno));
		return EXIT_FAILURE;
	}
	printf("1..%d\n", n);
	for (i = 0; i < n; i++) {
		uint8_t *data = NULL;
		size_t len = 0;
		int rc;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		rc = replay_read(path, &data, &len);
		if (rc < 0) {
			printf("not ok %d - %s: %s\n", i + 1, names[i]->d_name, strerror(-rc));
			failed++;
		} else {
			fflush(stdout);
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %d - %s (%zu bytes)\n", i + 1, names[i]->d_name, len);
			free(data);
		}
		free(names[i]);
	}
	free(names);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif

/* For the Check suites: sums of rendered /system/metrics samples. */
#ifndef QTAP_TESTS_CHECK_METRICS_H
#define QTAP_TESTS_CHECK_METRICS_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "util/buf.h"

/* Renders /system/metrics and adds up the samples of family whose label
 * part contains label (NULL: any); *ret_n gets the number of samples. */
static inline double check_metrics_sum(struct metrics_store *store, const char *family,
				       const char *label, unsigned *ret_n)
{
	struct buf out = BUF_INIT;
	double sum = 0;
	unsigned n = 0;
	size_t flen = strlen(family);
	char *line, *save = NULL;

	ck_assert_int_eq(metrics_render(store, METRICS_ENDPOINT_SYSTEM, METRICS_FORMAT_TEXT,
					&out), 0);
	ck_assert_int_eq(buf_append_char(&out, '\0'), 0);
	for (line = strtok_r(out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *value;

		if (strncmp(line, family, flen) || (line[flen] != '{' && line[flen] != ' '))
			continue;
		value = strrchr(line, ' ');
		if (label && (!strstr(line, label) || strstr(line, label) > value))
			continue;
		sum += strtod(value + 1, NULL);
		n++;
	}
	buf_free(&out);
	if (ret_n)
		*ret_n = n;
	return sum;
}

#endif

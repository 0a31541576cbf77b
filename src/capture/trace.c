/* --bpf-trace: which traced events are logged, one line each.
 *
 * FILTER is a comma-separated list of modules (all, process, syscall,
 * openssl, gnutls) and exe=NAME terms; an event is logged when its module
 * is listed and, if any exe= term is given, its executable's path or comm
 * contains one of the NAMEs.  A filter with only exe= terms means all
 * modules. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"

#define TRACE_MAX_EXES 16

/* Immutable once parsed; read by the reader threads. */
struct capture_trace {
	unsigned modules; /* CAPTURE_TRACE_* bits */
	unsigned n_exes;
	char *exes[TRACE_MAX_EXES];
};

static const struct {
	const char *name;
	unsigned bits;
} trace_modules[] = {
	{ "all", CAPTURE_TRACE_ALL },
	{ "process", CAPTURE_TRACE_PROCESS },
	{ "syscall", CAPTURE_TRACE_SYSCALL },
	{ "openssl", CAPTURE_TRACE_OPENSSL },
	{ "gnutls", CAPTURE_TRACE_GNUTLS },
};

void capture_trace_free(struct capture_trace **tp)
{
	struct capture_trace *t = *tp;
	unsigned i;

	if (!t)
		return;
	for (i = 0; i < t->n_exes; i++)
		free(t->exes[i]);
	free(t);
	*tp = NULL;
}

int capture_trace_parse(const char *filter, struct capture_trace **ret)
{
	struct capture_trace *t;
	const char *p = filter;
	int err = -EINVAL;

	if (!filter || !*filter)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	while (*p) {
		size_t n = strcspn(p, ","), i;

		if (n > 4 && !strncmp(p, "exe=", 4)) {
			if (t->n_exes == TRACE_MAX_EXES)
				goto err_free;
			t->exes[t->n_exes] = strndup(p + 4, n - 4);
			if (!t->exes[t->n_exes]) {
				err = -ENOMEM;
				goto err_free;
			}
			t->n_exes++;
		} else {
			for (i = 0; i < sizeof(trace_modules) / sizeof(trace_modules[0]); i++)
				if (strlen(trace_modules[i].name) == n &&
				    !strncmp(p, trace_modules[i].name, n))
					break;
			if (i == sizeof(trace_modules) / sizeof(trace_modules[0]))
				goto err_free;
			t->modules |= trace_modules[i].bits;
		}
		p += n;
		if (*p == ',' && *++p == '\0')
			goto err_free;
	}
	if (!t->modules)
		t->modules = CAPTURE_TRACE_ALL;
	if (ret)
		*ret = t;
	else
		capture_trace_free(&t);
	return 0;

err_free:
	capture_trace_free(&t);
	return err;
}

bool capture_trace_wants(const struct capture_trace *t, unsigned module, const char *comm,
			 const char *exe)
{
	unsigned i;

	if (!t || !(t->modules & module))
		return false;
	if (!t->n_exes)
		return true;
	for (i = 0; i < t->n_exes; i++)
		if ((exe && strstr(exe, t->exes[i])) || (comm && strstr(comm, t->exes[i])))
			return true;
	return false;
}

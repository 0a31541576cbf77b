/* Built-in collectors of /system/metrics: the process_* families,
 * jemalloc statistics, qtap_build_info and the store's own series
 * counts.  They run on the scrape thread (see metrics_collector_add). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef QTAP_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "commit.h"
#include "metrics/metrics.h"
#include "metrics/metrics-int.h"

/* Start time in ms since the epoch, from /proc/self/stat and /proc/stat;
 * 0 if unknown. */
static int64_t process_start_ms(void)
{
	char line[1024], *p;
	unsigned long long start_ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;
	int field;

	f = fopen("/proc/self/stat", "r");
	if (!f)
		return 0;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	if (!p)
		return 0;
	/* comm may hold spaces: fields count from the last ')' (field 2). */
	p = strrchr(line, ')');
	if (!p)
		return 0;
	for (field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return 0;
	start_ticks = strtoull(p + 1, NULL, 10);

	f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (!btime || hz <= 0)
		return 0;
	return (int64_t)(btime * 1000 + start_ticks * 1000 / (unsigned long long)hz);
}

static void collect_memory(struct metrics_store *store)
{
	unsigned long long size, resident;
	long page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/statm", "r");
	int n;

	if (!f)
		return;
	n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	if (n != 2 || page <= 0)
		return;
	metrics_set(store, M_PROCESS_VIRTUAL_MEMORY_BYTES, NULL, (int64_t)(size * (unsigned long long)page));
	metrics_set(store, M_PROCESS_RESIDENT_MEMORY_BYTES, NULL,
		    (int64_t)(resident * (unsigned long long)page));
}

static void collect_fds(struct metrics_store *store)
{
	struct dirent *de;
	struct rlimit rl;
	int64_t n = 0;
	DIR *dir;

	dir = opendir("/proc/self/fd");
	if (dir) {
		while ((de = readdir(dir)))
			if (de->d_name[0] != '.')
				n++;
		closedir(dir);
		/* not counting the descriptor of the listing itself */
		metrics_set(store, M_PROCESS_OPEN_FDS, NULL, n - 1);
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl))
		metrics_set(store, M_PROCESS_MAX_FDS, NULL,
			    rl.rlim_cur == RLIM_INFINITY ? INT64_MAX : (int64_t)rl.rlim_cur);
}

static void collect_jemalloc(struct metrics_store *store)
{
#ifdef QTAP_JEMALLOC
	uint64_t epoch = 1;
	size_t allocated, resident, len = sizeof(size_t);

	mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch));
	if (!mallctl("stats.allocated", &allocated, &len, NULL, 0))
		metrics_set(store, M_SYSTEM_JEMALLOC_ALLOCATED_BYTES, NULL, (int64_t)allocated);
	len = sizeof(size_t);
	if (!mallctl("stats.resident", &resident, &len, NULL, 0))
		metrics_set(store, M_SYSTEM_JEMALLOC_RESIDENT_BYTES, NULL, (int64_t)resident);
#else
	(void)store;
#endif
}

static void collect_process(struct metrics_store *store, void *ctx)
{
	const int64_t *start_ms = ctx;
	struct rusage ru;
	unsigned i;

	if (!getrusage(RUSAGE_SELF, &ru))
		metrics_set(store, M_PROCESS_CPU_SECONDS_TOTAL, NULL,
			    (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
			    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	collect_memory(store);
	collect_fds(store);
	if (*start_ms)
		metrics_set(store, M_PROCESS_START_TIME_SECONDS, NULL, *start_ms);
	collect_jemalloc(store);
	for (i = 0; i < M__COUNT; i++) {
		const char *name = metric_defs[i].name;

		/* look the series up first: its creation counts too */
		struct metric_series *s = metrics_series_get(store, M_SYSTEM_SERIES, &name);

		metrics_gauge_set(s, metrics_family_series_count(store, i));
	}
}

int metrics_system_collectors_add(struct metrics_store *store)
{
	const char *build[2] = { PACKAGE_VERSION, QTAP_COMMIT };
	struct metric_series *s;

	s = metrics_series_get(store, M_BUILD_INFO, build);
	if (!s)
		return -errno;
	metrics_gauge_set(s, 1);
	store->start_ms = process_start_ms();
	return metrics_collector_add(store, METRICS_ENDPOINT_SYSTEM, collect_process,
				     &store->start_ms);
}

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"

/* Written once at start-up (and on reload, by the main thread); read by all. */
static enum log_level cur_level = LOG_LEVEL_INFO;
static enum log_encoding cur_encoding = LOG_ENCODING_CONSOLE;

static const char *const level_names[] = { "debug", "info", "warn", "error" };
static const char *const encoding_names[] = { "console", "json" };

void log_setup(enum log_level level, enum log_encoding encoding)
{
	__atomic_store_n(&cur_level, level, __ATOMIC_RELAXED);
	__atomic_store_n(&cur_encoding, encoding, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	return __atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

static int parse_name(const char *s, const char *const *names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -EINVAL;
}

int log_level_parse(const char *s, enum log_level *ret)
{
	int i = parse_name(s, level_names, 4);

	if (i < 0)
		return i;
	*ret = (enum log_level)i;
	return 0;
}

int log_encoding_parse(const char *s, enum log_encoding *ret)
{
	int i = parse_name(s, encoding_names, 2);

	if (i < 0)
		return i;
	*ret = (enum log_encoding)i;
	return 0;
}

static void format_time(char *out, size_t n)
{
	struct timeval tv;
	struct tm tm;
	size_t len;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + len, n - len, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* One writer at a time: a line longer than a pipe's atomic write
 * (PIPE_BUF) can take several write(2) calls, which another thread's line
 * must not come between. */
static pthread_mutex_t emit_lock = PTHREAD_MUTEX_INITIALIZER;

static void emit(struct buf *b)
{
	const char *p = b->data;
	size_t left = b->len;

	pthread_mutex_lock(&emit_lock);
	while (left) {
		ssize_t n = write(STDERR_FILENO, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= (size_t)n;
	}
	pthread_mutex_unlock(&emit_lock);
}

/* msg on one console line: a control byte (a newline in a process's
 * name or path, which anyone can choose) would start a line of its own
 * that reads like the agent's; written as \n, \r, \t or \xNN. */
static int append_console(struct buf *b, const char *msg)
{
	const unsigned char *p;
	int err = 0;

	for (p = (const unsigned char *)msg; *p && !err; p++) {
		if (*p >= 0x20 && *p != 0x7f)
			err = buf_append_char(b, (char)*p);
		else if (*p == '\n')
			err = buf_append_str(b, "\\n");
		else if (*p == '\r')
			err = buf_append_str(b, "\\r");
		else if (*p == '\t')
			err = buf_append_str(b, "\\t");
		else
			err = buf_printf(b, "\\x%02x", *p);
	}
	return err;
}

static void log_line(enum log_level level, const char *msg, const char *json)
{
	char ts[40];
	struct buf b = BUF_INIT;
	int err;

	format_time(ts, sizeof(ts));
	if (__atomic_load_n(&cur_encoding, __ATOMIC_RELAXED) == LOG_ENCODING_JSON) {
		err = buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
				 level_names[level]);
		err = err ? err : buf_append_json_str(&b, msg);
		if (!err && json)
			err = buf_printf(&b, ",\"record\":%s", json);
		err = err ? err : buf_append_str(&b, "}\n");
	} else {
		err = buf_printf(&b, "%s %-5s ", ts, level_names[level]);
		err = err ? err : append_console(&b, msg);
		err = err ? err : buf_printf(&b, "%s%s\n", json ? " " : "", json ? json : "");
	}
	if (!err)
		emit(&b);
	buf_free(&b);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (level < log_get_level())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(level, msg, NULL);
}

void log_write_json(enum log_level level, const char *msg, const char *json)
{
	if (level < log_get_level())
		return;
	log_line(level, msg, json);
}

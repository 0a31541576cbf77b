/* Logging on stderr, in console or JSON encoding.  Any thread may log; a
 * line is written whole before another (one write(2), or several under a
 * lock when the file takes it in parts), so lines never interleave. */
#ifndef QTAP_UTIL_LOG_H
#define QTAP_UTIL_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
enum log_encoding { LOG_ENCODING_CONSOLE, LOG_ENCODING_JSON };

void log_setup(enum log_level level, enum log_encoding encoding);
enum log_level log_get_level(void);
/* Parse "debug|info|warn|error" / "json|console"; 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *ret);
int log_encoding_parse(const char *s, enum log_encoding *ret);

void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Writes a ready-made JSON object (a record such as a connection report)
 * as one line: embedded in the log envelope with the JSON encoding, after
 * the console prefix otherwise. */
void log_write_json(enum log_level level, const char *msg, const char *json);

#define log_debug(...) \
	do { \
		if (log_get_level() <= LOG_LEVEL_DEBUG) \
			log_write(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif

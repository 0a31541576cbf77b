/* Private to src/conf: the schema table shared by the parser (conf.c) and
 * the documentation writers (schema.c).  The table is constant data,
 * read by any thread. */
#ifndef QTAP_CONF_CONF_INT_H
#define QTAP_CONF_CONF_INT_H

#include <libconfig.h>
#include <stdbool.h>

#include "conf/conf.h"

/* --- schema.c ----------------------------------------------------------- */

enum conf_key_type {
	CONF_KEY_GROUP,   /* { ... } with the members the schema names */
	CONF_KEY_MAP,     /* { ... } whose members are named by the user */
	CONF_KEY_LIST,    /* ( { ... }, { ... } ) */
	CONF_KEY_STRING,
	CONF_KEY_BOOL,
	CONF_KEY_INT,
	CONF_KEY_STRINGS, /* [ "a", "b" ] */
};

/* One allowed value of a string key and the enum it stands for. */
struct conf_value {
	const char *name;
	int value;
};

/* One key of the schema.  path: dotted, "*" for a member of a map,
 * "[]" for the elements of a list ("stacks.*.plugins.[].type"). */
struct conf_key {
	const char *path;
	enum conf_key_type type;
	bool required;
	const char *def;                 /* default as written in a file, or NULL */
	const struct conf_value *values; /* NULL-terminated, or NULL: any string */
	long long min, max;              /* CONF_KEY_INT */
	const char *doc;
};

/* Indexes into conf_schema[]; the parser names keys by these. */
enum conf_key_id {
	K_STACKS,
	K_STACK,
	K_PLUGINS,
	K_PLUGIN,
	K_PLUGIN_TYPE,
	K_PLUGIN_CONFIG,
	K_PLUGIN_LEVEL,
	K_PLUGIN_FORMAT,
	K_PLUGIN_SHOW_SECRETS,
	K_SERVICES,
	K_EVENT_STORES,
	K_EVENT_STORE,
	K_EVENT_STORE_TYPE,
	K_OBJECT_STORES,
	K_OBJECT_STORE,
	K_OBJECT_STORE_TYPE,
	K_TAP,
	K_TAP_DIRECTION,
	K_TAP_IGNORE_LOOPBACK,
	K_TAP_AUDIT_INCLUDE_DNS,
	K_TAP_HTTP,
	K_TAP_HTTP_STACK,
	K_FILTERS,
	K_FILTER_GROUPS,
	K_FILTER_CUSTOM,
	K_FILTER,
	K_FILTER_EXE,
	K_FILTER_STRATEGY,
	K_FILTER_ONLY,
	K_ENDPOINTS,
	K_ENDPOINT,
	K_ENDPOINT_DOMAIN,
	K_ENDPOINT_HTTP,
	K_ENDPOINT_HTTP_STACK,
	K_METRICS,
	K_METRICS_SERIES_LIMIT,
	K_CAPTURE,
	K_CAPTURE_READERS,
	K_CAPTURE_WORKERS,
	K_CAPTURE_RING_KB,
	K_CAPTURE_QUEUE_KB,
	K_CAPTURE_IDLE_TIMEOUT,
	K_CAPTURE_KERNEL_BPF_STATS,
	CONF_KEY_COUNT
};

extern const struct conf_key conf_schema[CONF_KEY_COUNT];

/* The schema entry for a path pattern, or NULL. */
const struct conf_key *conf_schema_find(const char *pattern);
/* The member name a key has in its group: the last path component. */
const char *conf_key_name(const struct conf_key *k);
/* The value entry named s, or NULL. */
const struct conf_value *conf_key_value(const struct conf_key *k, const char *s);

/* --- conf.c -------------------------------------------------------------- */

/* The text libconfig reads: a file with its @include lines replaced by the
 * files they name, and where each of its lines was written (conf.c). */
struct conf_src;

/* The file and the line in it where line (1-based) of src's text was
 * written, and that line's text (up to its '\n'; text may be NULL): false
 * when there is no such line. */
bool conf_src_where(const struct conf_src *src, int line, const char **file, int *file_line,
		    const char **text);

/* Load state: the name of the file or string loaded, and for a file what
 * libconfig read from it (NULL for a string). */
struct conf_ctx {
	const char *name;
	const struct conf_src *src;
	struct conf_error *err;
};

/* Fills ctx->err for setting s (at member, a name under s, when not NULL)
 * and returns -EINVAL. */
int conf_fail(struct conf_ctx *ctx, const config_setting_t *s,
	      const char *member, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Checks the whole tree under root against the schema: unknown keys,
 * types, allowed values, ranges and required members.  0 or -EINVAL. */
int conf_schema_check(struct conf_ctx *ctx, const config_setting_t *root);

#endif

/* Configuration: a libconfig file parsed, through one schema table, into
 * the typed structures below.
 *
 * Threads: the main thread loads files and publishes the running
 * configuration with conf_publish() (an RCU pointer swap); every other
 * thread reads it with conf_current() inside rcu_read_lock().  A published
 * configuration is immutable. */
#ifndef QTAP_CONF_CONF_H
#define QTAP_CONF_CONF_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit status for a configuration error (sysexits EX_CONFIG). */
#define QTAP_EXIT_CONFIG 78

enum conf_direction {
	CONF_DIRECTION_ALL,
	CONF_DIRECTION_INGRESS,
	CONF_DIRECTION_EGRESS,
	CONF_DIRECTION_EGRESS_INTERNAL,
	CONF_DIRECTION_EGRESS_EXTERNAL,
};

enum conf_plugin_type { CONF_PLUGIN_HTTP_CAPTURE, CONF_PLUGIN_HTTP_METRICS };

enum conf_capture_level {
	CONF_LEVEL_NONE,
	CONF_LEVEL_SUMMARY,
	CONF_LEVEL_HEADERS, /* alias "details" */
	CONF_LEVEL_FULL,
};

enum conf_capture_format { CONF_FORMAT_JSON, CONF_FORMAT_TEXT };

enum conf_store_type { CONF_STORE_STDOUT, CONF_STORE_DISABLED };

enum conf_strategy {
	CONF_STRATEGY_EXACT,
	CONF_STRATEGY_PREFIX,
	CONF_STRATEGY_SUFFIX,
	CONF_STRATEGY_CONTAINS,
	CONF_STRATEGY_REGEX,
};

/* Bits of conf.tap.filter_groups. */
#define CONF_GROUP_QPOINT (1u << 0)            /* the agent itself */
#define CONF_GROUP_KUBERNETES (1u << 1)
#define CONF_GROUP_CONTAINER_RUNTIMES (1u << 2)

struct conf_plugin {
	enum conf_plugin_type type;
	/* http_capture only */
	enum conf_capture_level level;
	enum conf_capture_format format;
	/* http_capture: header values such as Authorization and Cookie are
	 * redacted unless this is set (config.show_secrets). */
	bool show_secrets;
};

struct conf_stack {
	char *name;
	struct conf_plugin *plugins;
	size_t n_plugins;
	/* Derived: the stack has an http_metrics plugin; its http_capture
	 * plugin or NULL. */
	bool http_metrics;
	const struct conf_plugin *capture;
};

struct conf_filter {
	char *exe;
	enum conf_strategy strategy;
	/* true: an allow-list entry (when any filter has only = true, only
	 * matching executables are traced); false: matching ones are ignored. */
	bool only;
	bool has_regex;
	regex_t regex; /* strategy regex, compiled at load */
};

struct conf_endpoint {
	char *domain;
	const struct conf_stack *stack; /* points into conf.stacks */
};

struct qtap_conf {
	char *path;

	struct conf_stack *stacks;
	size_t n_stacks;

	/* A file without the key gets one stdout store; "()" gets none. */
	enum conf_store_type *event_stores;
	size_t n_event_stores;
	enum conf_store_type *object_stores;
	size_t n_object_stores;

	struct {
		enum conf_direction direction;
		bool ignore_loopback;
		bool audit_include_dns;
		const struct conf_stack *http_stack; /* NULL: no HTTP stack */
		unsigned filter_groups;              /* CONF_GROUP_* bits; default qpoint */
		struct conf_filter *filters;
		size_t n_filters;
		struct conf_endpoint *endpoints;
		size_t n_endpoints;
	} tap;

	struct {
		/* Label sets per family before new ones fold into __overflow__. */
		unsigned series_limit;
	} metrics;

	/* Start-time only: a reload keeps the running values. */
	struct conf_capture {
		unsigned readers;	/* 0: one per CPU */
		unsigned workers;	/* 0: one per CPU, at most 8 */
		unsigned ring_buffer_kb;
		unsigned queue_kb;
		unsigned idle_timeout;	/* seconds */
		bool kernel_bpf_stats;	/* run statistics from the kernel */
	} capture;
};

/* Where and why a file was refused.  line is 0 when the file could not be
 * read at all; key is the dotted path ("tap.direction",
 * "stacks.default.plugins.[1].type") or empty. */
struct conf_error {
	char file[256];
	int line;
	char key[256];
	char msg[512];
};

/* Formats err as "FILE:LINE: KEY: MSG" into out. */
void conf_error_format(const struct conf_error *err, char *out, size_t n);

/* Parses and checks a file.  Returns NULL and sets errno (EINVAL for a bad
 * file, ENOENT/EACCES/EISDIR/... when it cannot be read, ENOMEM) with *err
 * filled (err may be NULL).  Defaults come from the schema table in
 * schema.c, whose key reference is qtap.conf(5). */
struct qtap_conf *conf_load(const char *path, struct conf_error *err);
/* The same for a string (tests, --validate of stdin); name labels errors. */
struct qtap_conf *conf_load_string(const char *text, const char *name,
				   struct conf_error *err);
/* The built-in defaults, as if loading an empty file. */
struct qtap_conf *conf_new_default(void);
void conf_free(struct qtap_conf **conf);

/* The stack an HTTP transaction to host goes through: the first endpoint
 * whose domain matches, else tap.http_stack; NULL when none. */
const struct conf_stack *conf_stack_for_host(const struct qtap_conf *conf,
					     const char *host);
/* Whether exe is excluded by tap.filters.custom (groups are handled by the
 * capture code, which knows which processes they cover). */
bool conf_exe_filtered(const struct qtap_conf *conf, const char *exe);

/* The running configuration.  conf_current() must be called inside
 * rcu_read_lock(); conf_publish() swaps new in, waits for readers, frees the
 * old one and takes ownership of new. */
const struct qtap_conf *conf_current(void);
void conf_publish(struct qtap_conf *conf);

/* Writes the key reference of qtap.conf(5), as roff, from the schema table. */
void conf_schema_write_man(FILE *out);
/* The executables of a group (CONF_GROUP_*), NULL-terminated; NULL for one
 * that is not a list of names (qpoint). */
const char *const *conf_group_members(unsigned group);
/* Writes one line per schema key path ("tap.direction"), for the sync test. */
void conf_schema_write_keys(FILE *out);

#endif

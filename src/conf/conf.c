/* Loading a configuration file into struct qtap_conf, matching hosts and
 * executables against it, and publishing the running one under RCU. */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <urcu.h>

#include "conf/conf-int.h"
#include "util/buf.h"

/* --- errors --------------------------------------------------------------- */

void conf_error_format(const struct conf_error *err, char *out, size_t n)
{
	char line[16] = "";

	if (err->line > 0)
		snprintf(line, sizeof(line), ":%d", err->line);
	snprintf(out, n, "%s%s: %s%s%s", err->file, line, err->key,
		 err->key[0] ? ": " : "", err->msg);
}

/* Writes the dotted path of s ("tap.filters.custom.[1].exe") into out. */
static void setting_path(const config_setting_t *s, char *out, size_t n)
{
	const config_setting_t *parent = config_setting_parent(s);
	char here[128];
	size_t len;

	if (!parent) {
		out[0] = '\0';
		return;
	}
	setting_path(parent, out, n);
	if (config_setting_is_group(parent))
		snprintf(here, sizeof(here), "%s", config_setting_name(s));
	else
		snprintf(here, sizeof(here), "[%d]", config_setting_index(s));
	len = strlen(out);
	if (len < n)
		snprintf(out + len, n - len, "%s%s", len ? "." : "", here);
}

static void error_set(struct conf_error *err, const char *file, int line,
		      const char *key, const char *fmt, va_list ap)
{
	snprintf(err->file, sizeof(err->file), "%s", file);
	err->line = line;
	snprintf(err->key, sizeof(err->key), "%s", key);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

static void error_printf(struct conf_error *err, const char *file, int line,
			 const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void error_printf(struct conf_error *err, const char *file, int line,
			 const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_set(err, file, line, key, fmt, ap);
	va_end(ap);
}

int conf_fail(struct conf_ctx *ctx, const config_setting_t *s,
	      const char *member, const char *fmt, ...)
{
	const char *file = ctx->name;
	int line = config_setting_source_line(s);
	char key[256];
	va_list ap;

	setting_path(s, key, sizeof(key));
	if (member) {
		size_t len = strlen(key);

		snprintf(key + len, sizeof(key) - len, "%s%s", len ? "." : "", member);
	}
	if (ctx->src)
		conf_src_where(ctx->src, line, &file, &line, NULL);
	va_start(ap, fmt);
	error_set(ctx->err, file, line, key, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* --- typed access with the schema's defaults ------------------------------ */

/* The member of group (which may be NULL: absent) that key k names. */
static const config_setting_t *member(const config_setting_t *group,
				      enum conf_key_id k)
{
	return group ? config_setting_get_member(group, conf_key_name(&conf_schema[k]))
		     : NULL;
}

/* The values below were checked by conf_schema_check(); the defaults are
 * the table's, written as in a file. */
static bool get_bool(const config_setting_t *group, enum conf_key_id k)
{
	const config_setting_t *s = member(group, k);

	return s ? config_setting_get_bool(s) : !strcmp(conf_schema[k].def, "true");
}

static long long get_int(const config_setting_t *group, enum conf_key_id k)
{
	const config_setting_t *s = member(group, k);

	return s ? config_setting_get_int64(s) : strtoll(conf_schema[k].def, NULL, 10);
}

static const char *get_string(const config_setting_t *group, enum conf_key_id k)
{
	const config_setting_t *s = member(group, k);

	return s ? config_setting_get_string(s) : conf_schema[k].def;
}

static int get_enum(const config_setting_t *group, enum conf_key_id k)
{
	const struct conf_value *v = conf_key_value(&conf_schema[k], get_string(group, k));

	return v ? v->value : 0;
}

/* --- building the structures ---------------------------------------------- */

static int oom(struct conf_ctx *ctx)
{
	error_printf(ctx->err, ctx->name, 0, "", "out of memory");
	return -ENOMEM;
}

static const struct conf_stack *stack_find(const struct qtap_conf *conf,
					   const char *name)
{
	for (size_t i = 0; i < conf->n_stacks; i++)
		if (!strcmp(conf->stacks[i].name, name))
			return &conf->stacks[i];
	return NULL;
}

/* Resolves the stack named by member k of group; *ret stays NULL when the
 * member is absent. */
static int stack_ref(struct conf_ctx *ctx, const struct qtap_conf *conf,
		     const config_setting_t *group, enum conf_key_id k,
		     const struct conf_stack **ret)
{
	const config_setting_t *s = member(group, k);
	const char *name;

	if (!s)
		return 0;
	name = config_setting_get_string(s);
	*ret = stack_find(conf, name);
	if (!*ret)
		return conf_fail(ctx, s, NULL, "stack \"%s\" is not defined under stacks",
				 name);
	return 0;
}

static int build_plugin(struct conf_ctx *ctx, struct conf_stack *stack,
			const config_setting_t *ps, struct conf_plugin *p)
{
	const config_setting_t *cfg = member(ps, K_PLUGIN_CONFIG);

	p->type = get_enum(ps, K_PLUGIN_TYPE);
	for (size_t i = 0; i < stack->n_plugins; i++)
		if (stack->plugins[i].type == p->type)
			return conf_fail(ctx, ps, "type",
					 "duplicate plugin type \"%s\" in stack \"%s\"",
					 get_string(ps, K_PLUGIN_TYPE), stack->name);
	if (p->type != CONF_PLUGIN_HTTP_CAPTURE && cfg && config_setting_length(cfg))
		return conf_fail(ctx, config_setting_get_elem(cfg, 0), NULL,
				 "plugin type \"%s\" takes no settings",
				 get_string(ps, K_PLUGIN_TYPE));
	p->level = get_enum(cfg, K_PLUGIN_LEVEL);
	p->format = get_enum(cfg, K_PLUGIN_FORMAT);
	p->show_secrets = get_bool(cfg, K_PLUGIN_SHOW_SECRETS);
	return 0;
}

static int build_stacks(struct conf_ctx *ctx, struct qtap_conf *conf,
			const config_setting_t *root)
{
	const config_setting_t *stacks = member(root, K_STACKS);
	int n = stacks ? config_setting_length(stacks) : 0;

	if (n == 0)
		return 0;
	conf->stacks = calloc((size_t)n, sizeof(*conf->stacks));
	if (!conf->stacks)
		return oom(ctx);
	for (int i = 0; i < n; i++) {
		const config_setting_t *ss = config_setting_get_elem(stacks, (unsigned)i);
		const config_setting_t *plugins = member(ss, K_PLUGINS);
		int np = plugins ? config_setting_length(plugins) : 0;
		struct conf_stack *stack = &conf->stacks[i];

		conf->n_stacks++;
		stack->name = strdup(config_setting_name(ss));
		if (!stack->name)
			return oom(ctx);
		if (np == 0)
			continue;
		stack->plugins = calloc((size_t)np, sizeof(*stack->plugins));
		if (!stack->plugins)
			return oom(ctx);
		for (int j = 0; j < np; j++) {
			struct conf_plugin *p = &stack->plugins[j];
			int err = build_plugin(ctx, stack,
					       config_setting_get_elem(plugins, (unsigned)j), p);

			if (err)
				return err;
			stack->n_plugins++;
			if (p->type == CONF_PLUGIN_HTTP_METRICS)
				stack->http_metrics = true;
			else
				stack->capture = p;
		}
	}
	return 0;
}

/* A store list: absent means one stdout store, () means none. */
static int build_stores(struct conf_ctx *ctx, const config_setting_t *services,
			enum conf_key_id list_key, enum conf_key_id type_key,
			enum conf_store_type **ret, size_t *ret_n)
{
	const config_setting_t *list = member(services, list_key);
	int n = list ? config_setting_length(list) : 1;

	if (n == 0)
		return 0;
	*ret = calloc((size_t)n, sizeof(**ret));
	if (!*ret)
		return oom(ctx);
	if (!list) {
		(*ret)[0] = CONF_STORE_STDOUT;
		*ret_n = 1;
		return 0;
	}
	for (int i = 0; i < n; i++)
		(*ret)[i] = get_enum(config_setting_get_elem(list, (unsigned)i), type_key);
	*ret_n = (size_t)n;
	return 0;
}

static int build_groups(const config_setting_t *filters, unsigned *ret)
{
	const config_setting_t *s = member(filters, K_FILTER_GROUPS);
	const struct conf_key *k = &conf_schema[K_FILTER_GROUPS];
	unsigned bits = 0;

	if (!s) {
		/* The default, "[ \"qpoint\" ]": the agent itself. */
		*ret = CONF_GROUP_QPOINT;
		return 0;
	}
	for (int i = 0; i < config_setting_length(s); i++) {
		const struct conf_value *v =
			conf_key_value(k, config_setting_get_string_elem(s, (unsigned)i));

		if (v)
			bits |= (unsigned)v->value;
	}
	*ret = bits;
	return 0;
}

static int build_filters(struct conf_ctx *ctx, struct qtap_conf *conf,
			 const config_setting_t *filters)
{
	const config_setting_t *custom = member(filters, K_FILTER_CUSTOM);
	int n = custom ? config_setting_length(custom) : 0;

	if (n == 0)
		return 0;
	conf->tap.filters = calloc((size_t)n, sizeof(*conf->tap.filters));
	if (!conf->tap.filters)
		return oom(ctx);
	for (int i = 0; i < n; i++) {
		const config_setting_t *fs = config_setting_get_elem(custom, (unsigned)i);
		struct conf_filter *f = &conf->tap.filters[i];
		int rc;

		conf->tap.n_filters++;
		f->exe = strdup(get_string(fs, K_FILTER_EXE));
		if (!f->exe)
			return oom(ctx);
		if (!f->exe[0])
			return conf_fail(ctx, member(fs, K_FILTER_EXE), NULL,
					 "empty executable");
		f->strategy = get_enum(fs, K_FILTER_STRATEGY);
		f->only = get_bool(fs, K_FILTER_ONLY);
		if (f->strategy != CONF_STRATEGY_REGEX)
			continue;
		rc = regcomp(&f->regex, f->exe, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			char msg[256];

			regerror(rc, &f->regex, msg, sizeof(msg));
			if (rc == REG_ESPACE)
				return oom(ctx);
			return conf_fail(ctx, member(fs, K_FILTER_EXE), NULL,
					 "bad regular expression \"%s\": %s", f->exe, msg);
		}
		f->has_regex = true;
	}
	return 0;
}

/* A domain is a host name or "*." followed by one. */
static bool domain_valid(const char *d)
{
	if (d[0] == '*') {
		if (d[1] != '.')
			return false;
		d += 2;
	}
	return d[0] && d[0] != '.' && !strchr(d, '*') && !strpbrk(d, " \t/:");
}

static int build_endpoints(struct conf_ctx *ctx, struct qtap_conf *conf,
			   const config_setting_t *tap)
{
	const config_setting_t *list = member(tap, K_ENDPOINTS);
	int n = list ? config_setting_length(list) : 0;

	if (n == 0)
		return 0;
	conf->tap.endpoints = calloc((size_t)n, sizeof(*conf->tap.endpoints));
	if (!conf->tap.endpoints)
		return oom(ctx);
	for (int i = 0; i < n; i++) {
		const config_setting_t *es = config_setting_get_elem(list, (unsigned)i);
		struct conf_endpoint *e = &conf->tap.endpoints[i];
		int err;

		conf->tap.n_endpoints++;
		e->domain = strdup(get_string(es, K_ENDPOINT_DOMAIN));
		if (!e->domain)
			return oom(ctx);
		if (!domain_valid(e->domain))
			return conf_fail(ctx, member(es, K_ENDPOINT_DOMAIN), NULL,
					 "invalid domain \"%s\" (expected a host name "
					 "or *.host.name)", e->domain);
		err = stack_ref(ctx, conf, member(es, K_ENDPOINT_HTTP),
				K_ENDPOINT_HTTP_STACK, &e->stack);
		if (err)
			return err;
	}
	return 0;
}

static int build(struct conf_ctx *ctx, struct qtap_conf *conf,
		 const config_setting_t *root)
{
	const config_setting_t *tap = member(root, K_TAP);
	const config_setting_t *filters = member(tap, K_FILTERS);
	const config_setting_t *services = member(root, K_SERVICES);
	const config_setting_t *capture;
	int err;

	err = build_stacks(ctx, conf, root);
	if (err)
		return err;
	err = build_stores(ctx, services, K_EVENT_STORES, K_EVENT_STORE_TYPE,
			   &conf->event_stores, &conf->n_event_stores);
	if (err)
		return err;
	err = build_stores(ctx, services, K_OBJECT_STORES, K_OBJECT_STORE_TYPE,
			   &conf->object_stores, &conf->n_object_stores);
	if (err)
		return err;

	conf->tap.direction = get_enum(tap, K_TAP_DIRECTION);
	conf->tap.ignore_loopback = get_bool(tap, K_TAP_IGNORE_LOOPBACK);
	conf->tap.audit_include_dns = get_bool(tap, K_TAP_AUDIT_INCLUDE_DNS);
	err = stack_ref(ctx, conf, member(tap, K_TAP_HTTP), K_TAP_HTTP_STACK,
			&conf->tap.http_stack);
	if (err)
		return err;
	err = build_groups(filters, &conf->tap.filter_groups);
	if (err)
		return err;
	err = build_filters(ctx, conf, filters);
	if (err)
		return err;
	err = build_endpoints(ctx, conf, tap);
	if (err)
		return err;

	conf->metrics.series_limit =
		(unsigned)get_int(member(root, K_METRICS), K_METRICS_SERIES_LIMIT);

	capture = member(root, K_CAPTURE);
	conf->capture.readers = (unsigned)get_int(capture, K_CAPTURE_READERS);
	conf->capture.workers = (unsigned)get_int(capture, K_CAPTURE_WORKERS);
	conf->capture.ring_buffer_kb = (unsigned)get_int(capture, K_CAPTURE_RING_KB);
	conf->capture.queue_kb = (unsigned)get_int(capture, K_CAPTURE_QUEUE_KB);
	conf->capture.idle_timeout = (unsigned)get_int(capture, K_CAPTURE_IDLE_TIMEOUT);
	conf->capture.kernel_bpf_stats = get_bool(capture, K_CAPTURE_KERNEL_BPF_STATS);
	return 0;
}

/* --- loading -------------------------------------------------------------- */

/* Parses the text already read into cfg; name labels errors. */
static struct qtap_conf *conf_from_config(config_t *cfg, const char *name,
					  const struct conf_src *src, struct conf_error *err)
{
	struct conf_ctx ctx = { .name = name, .src = src, .err = err };
	struct qtap_conf *conf;
	int rc;

	rc = conf_schema_check(&ctx, config_root_setting(cfg));
	if (rc)
		goto err_out;
	conf = calloc(1, sizeof(*conf));
	if (!conf) {
		rc = oom(&ctx);
		goto err_out;
	}
	conf->path = strdup(name);
	if (!conf->path) {
		rc = oom(&ctx);
		goto err_free_conf;
	}
	rc = build(&ctx, conf, config_root_setting(cfg));
	if (rc)
		goto err_free_conf;
	return conf;

err_free_conf:
	conf_free(&conf);
err_out:
	errno = -rc;
	return NULL;
}

static void syntax_error(config_t *cfg, const char *name, const struct conf_src *src,
			 struct conf_error *err)
{
	const char *file = name;
	int line = config_error_line(cfg);

	if (src)
		conf_src_where(src, line, &file, &line, NULL);
	error_printf(err, file, line, "", "%s", config_error_text(cfg));
}

/* --- @include ------------------------------------------------------------- */

/* How deep includes may nest: deeper is taken for a loop. */
#define CONF_INCLUDE_DEPTH 10
/* How large a configuration may be, its includes read in: a file, or
 * files that include others many times over, past this are refused rather
 * than read into memory. */
#define CONF_SOURCE_MAX (16u << 20)
/* How many files a configuration may include in all (an empty file
 * included over and over adds no bytes, and each costs an open). */
#define CONF_INCLUDE_MAX 1024

struct conf_src_line {
	size_t file;		/* index in files */
	int line;		/* in that file */
	size_t off;		/* where it starts in text */
};

struct conf_src {
	struct buf text;	/* NUL-terminated once read */
	struct conf_src_line *lines;
	size_t n_lines, cap_lines;
	char **files;
	size_t n_files;
};

bool conf_src_where(const struct conf_src *src, int line, const char **file, int *file_line,
		    const char **text)
{
	const struct conf_src_line *l;

	if (line < 1 || !src->n_lines)
		return false;
	if ((size_t)line > src->n_lines) {
		/* past the end (a group left open): after the last line */
		l = &src->lines[src->n_lines - 1];
		*file = src->files[l->file];
		*file_line = l->line + (int)((size_t)line - src->n_lines);
		if (text)
			*text = "";
		return true;
	}
	l = &src->lines[line - 1];
	*file = src->files[l->file];
	*file_line = l->line;
	if (text)
		*text = src->text.data + l->off;
	return true;
}

static void src_free(struct conf_src *src)
{
	size_t i;

	for (i = 0; i < src->n_files; i++)
		free(src->files[i]);
	free(src->files);
	free(src->lines);
	buf_free(&src->text);
}

static int src_add_line(struct conf_src *src, size_t file, int line, const char *p, size_t len)
{
	if (src->n_lines == src->cap_lines) {
		size_t cap = src->cap_lines ? 2 * src->cap_lines : 64;
		struct conf_src_line *l = realloc(src->lines, cap * sizeof(*l));

		if (!l)
			return -ENOMEM;
		src->lines = l;
		src->cap_lines = cap;
	}
	src->lines[src->n_lines++] = (struct conf_src_line){ file, line, src->text.len };
	if (buf_append(&src->text, p, len) || buf_append_char(&src->text, '\n'))
		return -ENOMEM;
	return 0;
}

/* The file an @include line at p names, resolved against the folder of
 * path, the including file (an absolute name as it is), in out: 0, or
 * -EINVAL when the line is not `@include "NAME"` and a comment. */
static int include_name(const char *path, const char *p, char *out, size_t n)
{
	const char *name, *end, *slash;

	p += strlen("@include");
	p += strspn(p, " \t");
	if (*p != '"')
		return -EINVAL;
	name = p + 1;
	end = strchr(name, '"');
	if (!end || end == name)
		return -EINVAL;
	p = end + 1 + strspn(end + 1, " \t\r\n");
	if (*p && *p != '#' && strncmp(p, "//", 2))
		return -EINVAL;
	slash = strrchr(path, '/');
	if (name[0] == '/' || !slash)
		snprintf(out, n, "%.*s", (int)(end - name), name);
	else
		snprintf(out, n, "%.*s/%.*s", (int)(slash - path), path, (int)(end - name), name);
	return 0;
}

/* Opens path, a configuration file or one it includes: NULL, with err
 * filled and errno set, when it cannot be opened, or is a folder, a device
 * or a socket (a pipe is read), or larger than CONF_SOURCE_MAX. */
static FILE *src_open(const char *path, const char *from, int from_line,
		      struct conf_error *err)
{
	FILE *f = fopen(path, "r");
	const char *file = from ? from : path, *why;
	char what[4200] = "", big[40];
	struct stat st;
	int e;

	if (from)
		snprintf(what, sizeof(what), " include file %s", path);
	if (!f) {
		e = errno;
		error_printf(err, file, from_line, "", "cannot open%s: %s", what, strerror(e));
		errno = e;
		return NULL;
	}
	if (fstat(fileno(f), &st))
		return f;	/* (read as it comes) */
	if (S_ISDIR(st.st_mode)) {
		e = EISDIR;
		why = strerror(e);
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode)) {
		e = EINVAL;
		why = "not a regular file";
	} else if (S_ISREG(st.st_mode) && st.st_size > (off_t)CONF_SOURCE_MAX) {
		e = EFBIG;
		snprintf(big, sizeof(big), "larger than %u MiB", CONF_SOURCE_MAX >> 20);
		why = big;
	} else {
		return f;
	}
	fclose(f);
	error_printf(err, file, from_line, "", "cannot open%s: %s", what, why);
	errno = e;
	return NULL;
}

/* One line of f, with its line end, into *line (of *cap bytes, grown as
 * needed) while it is at most max bytes: its length, -1 at the end of the
 * file (or on an error: ferror()), -2 when it is longer (a pipe that never
 * ends a line is not read into memory). */
static ssize_t src_getline(char **line, size_t *cap, FILE *f, size_t max)
{
	size_t len = 0;
	int ch;

	while ((ch = getc(f)) != EOF) {
		if (len + 2 > *cap) {
			size_t ncap = *cap ? 2 * *cap : 256;
			char *p;

			if (len + 1 > max)
				return -2;
			p = realloc(*line, ncap);
			if (!p)
				return -ENOMEM;
			*line = p;
			*cap = ncap;
		}
		(*line)[len++] = (char)ch;
		if (ch == '\n')
			break;
	}
	if (!len)
		return -1;
	(*line)[len] = '\0';
	return (ssize_t)len;
}

/* A configuration past CONF_SOURCE_MAX, found at line n of path: -EFBIG,
 * err filled. */
static int src_too_large(struct conf_error *err, const char *path, int n)
{
	error_printf(err, path, n, "", "configuration larger than %u MiB with its includes",
		     CONF_SOURCE_MAX >> 20);
	return -EFBIG;
}

/* Where a line leaves the scanner of libconfig: in its code, inside a
 * slash-star comment, or inside a string (either may span lines). */
enum src_state { SRC_CODE, SRC_COMMENT, SRC_STRING };

/* The state after the len bytes at p, st the state before them. */
static enum src_state src_scan(const char *p, size_t len, enum src_state st)
{
	const char *end = p + len;

	while (p < end) {
		switch (st) {
		case SRC_COMMENT:
			if (p + 1 < end && p[0] == '*' && p[1] == '/') {
				st = SRC_CODE;
				p++;
			}
			break;
		case SRC_STRING:
			if (*p == '\\')
				p++;	/* (an escaped character) */
			else if (*p == '"')
				st = SRC_CODE;
			break;
		case SRC_CODE:
			if (*p == '#' || (p + 1 < end && p[0] == '/' && p[1] == '/'))
				return st;	/* the rest of the line */
			if (p + 1 < end && p[0] == '/' && p[1] == '*') {
				st = SRC_COMMENT;
				p++;
			} else if (*p == '"') {
				st = SRC_STRING;
			}
			break;
		}
		p++;
	}
	return st;
}

/* Appends the lines of f, the file path, to src, each @include line (one
 * that starts in libconfig's code, not in a comment or a string) replaced
 * by the file it names (depth: how many includes led here); *state: where
 * libconfig's scanner is, before and after (a comment or a string left
 * open in a file goes on in the text after it).  0, or -errno with err
 * filled. */
static int src_read(struct conf_src *src, const char *path, FILE *f, int depth,
		    enum src_state *state, struct conf_error *err)
{
	char *line = NULL, inc[4096];
	size_t cap = 0, file;
	ssize_t len;
	int n = 0, rc = 0;
	char **files = realloc(src->files, (src->n_files + 1) * sizeof(*files));

	if (!files)
		return -ENOMEM;
	src->files = files;
	src->files[src->n_files] = strdup(path);
	if (!src->files[src->n_files])
		return -ENOMEM;
	file = src->n_files++;
	while (!rc && (len = src_getline(&line, &cap, f, CONF_SOURCE_MAX)) >= 0) {
		const char *p = line + strspn(line, " \t");
		FILE *g;

		n++;
		if (memchr(line, '\0', (size_t)len)) {
			/* libconfig would stop reading there, silently */
			error_printf(err, path, n, "", "a NUL byte in the file");
			rc = -EINVAL;
			break;
		}
		if (*state != SRC_CODE || strncmp(p, "@include", strlen("@include"))) {
			if (src->text.len + (size_t)len > CONF_SOURCE_MAX) {
				rc = src_too_large(err, path, n);
				break;
			}
			len -= len && line[len - 1] == '\n';
			*state = src_scan(line, (size_t)len, *state);
			rc = src_add_line(src, file, n, line, (size_t)len);
			if (rc)
				error_printf(err, path, n, "", "out of memory");
			continue;
		}
		if (include_name(path, p, inc, sizeof(inc))) {
			error_printf(err, path, n, "", "expected @include \"FILE\"");
			rc = -EINVAL;
		} else if (depth >= CONF_INCLUDE_DEPTH) {
			error_printf(err, path, n, "",
				     "@include nested more than %d deep (a file that includes itself?)",
				     CONF_INCLUDE_DEPTH);
			rc = -EINVAL;
		} else if (src->n_files > CONF_INCLUDE_MAX) {
			error_printf(err, path, n, "", "more than %d files included",
				     CONF_INCLUDE_MAX);
			rc = -EINVAL;
		} else if (!(g = src_open(inc, path, n, err))) {
			rc = -errno;
		} else {
			rc = src_read(src, inc, g, depth + 1, state, err);
			fclose(g);
		}
	}
	if (!rc && len == -2) {
		rc = src_too_large(err, path, n + 1);
	} else if (!rc && len < -2) {
		error_printf(err, path, n + 1, "", "out of memory");
		rc = (int)len;
	} else if (!rc && ferror(f)) {
		rc = -EIO;
		error_printf(err, path, 0, "", "cannot read: %s", strerror(errno ? errno : EIO));
	}
	free(line);
	return rc;
}

struct qtap_conf *conf_load(const char *path, struct conf_error *err)
{
	struct conf_src src = { BUF_INIT, NULL, 0, 0, NULL, 0 };
	struct qtap_conf *conf = NULL;
	enum src_state state = SRC_CODE;
	struct conf_error local;
	config_t cfg;
	FILE *f;
	int e = EINVAL, rc;

	if (!err)
		err = &local;
	memset(err, 0, sizeof(*err));
	/* (A folder opens, and would read as an empty, valid file.) */
	f = src_open(path, NULL, 0, err);
	if (!f) {
		e = errno;
		goto out;
	}
	/* Includes are read here, not by libconfig, whose folder for them
	 * (1.5) is one for all, put before absolute names too: a relative
	 * name is taken from the including file's folder. */
	rc = src_read(&src, path, f, 0, &state, err);
	if (!rc && buf_append_char(&src.text, '\0')) {
		rc = -ENOMEM;
		error_printf(err, path, 0, "", "out of memory");
	}
	if (rc) {
		e = -rc;
		goto out_close;
	}
	config_init(&cfg);
	if (config_read_string(&cfg, src.text.data) != CONFIG_TRUE) {
		e = EINVAL;
		syntax_error(&cfg, path, &src, err);
		goto out_destroy;
	}
	conf = conf_from_config(&cfg, path, &src, err);
	e = errno;

out_destroy:
	config_destroy(&cfg);
out_close:
	src_free(&src);
	fclose(f);
out:
	if (!conf)
		errno = e;
	return conf;
}

struct qtap_conf *conf_load_string(const char *text, const char *name,
				   struct conf_error *err)
{
	struct qtap_conf *conf = NULL;
	struct conf_error local;
	config_t cfg;
	int e = EINVAL;

	if (!err)
		err = &local;
	memset(err, 0, sizeof(*err));
	config_init(&cfg);
	if (config_read_string(&cfg, text) != CONFIG_TRUE) {
		syntax_error(&cfg, name, NULL, err);
		goto out_destroy;
	}
	conf = conf_from_config(&cfg, name, NULL, err);
	e = errno;

out_destroy:
	config_destroy(&cfg);
	if (!conf)
		errno = e;
	return conf;
}

struct qtap_conf *conf_new_default(void)
{
	return conf_load_string("", "(defaults)", NULL);
}

void conf_free(struct qtap_conf **pconf)
{
	struct qtap_conf *conf = pconf ? *pconf : NULL;

	if (!conf)
		return;
	for (size_t i = 0; i < conf->n_stacks; i++) {
		free(conf->stacks[i].name);
		free(conf->stacks[i].plugins);
	}
	free(conf->stacks);
	free(conf->event_stores);
	free(conf->object_stores);
	for (size_t i = 0; i < conf->tap.n_filters; i++) {
		if (conf->tap.filters[i].has_regex)
			regfree(&conf->tap.filters[i].regex);
		free(conf->tap.filters[i].exe);
	}
	free(conf->tap.filters);
	for (size_t i = 0; i < conf->tap.n_endpoints; i++)
		free(conf->tap.endpoints[i].domain);
	free(conf->tap.endpoints);
	free(conf->path);
	free(conf);
	*pconf = NULL;
}

/* --- matching ------------------------------------------------------------- */

/* Whether host (len bytes, no port) matches domain. */
static bool domain_match(const char *domain, const char *host, size_t len)
{
	size_t dlen = strlen(domain);

	/* a final dot (a fully qualified name) as the host's is dropped */
	if (dlen > 1 && domain[dlen - 1] == '.')
		dlen--;
	if (domain[0] == '*') {
		/* "*.example.com": some non-empty label(s), then ".example.com". */
		dlen--;
		return len > dlen && !strncasecmp(host + len - dlen, domain + 1, dlen);
	}
	return len == dlen && !strncasecmp(host, domain, len);
}

const struct conf_stack *conf_stack_for_host(const struct qtap_conf *conf,
					     const char *host)
{
	size_t len;

	if (!host)
		return conf->tap.http_stack;
	/* Drop a port ("host:8080", "[::1]:8080") and a final dot. */
	len = strlen(host);
	if (host[0] == '[') {
		const char *end = strchr(host, ']');

		if (end) {
			host++;
			len = (size_t)(end - host);
		}
	} else {
		const char *colon = strchr(host, ':');

		if (colon && !strchr(colon + 1, ':'))
			len = (size_t)(colon - host);
	}
	if (len > 1 && host[len - 1] == '.')
		len--;
	for (size_t i = 0; i < conf->tap.n_endpoints; i++)
		if (domain_match(conf->tap.endpoints[i].domain, host, len))
			return conf->tap.endpoints[i].stack;
	return conf->tap.http_stack;
}

static bool filter_match(const struct conf_filter *f, const char *exe)
{
	size_t elen, flen;

	switch (f->strategy) {
	case CONF_STRATEGY_EXACT:
		return !strcmp(exe, f->exe);
	case CONF_STRATEGY_PREFIX:
		return !strncmp(exe, f->exe, strlen(f->exe));
	case CONF_STRATEGY_SUFFIX:
		elen = strlen(exe);
		flen = strlen(f->exe);
		return elen >= flen && !strcmp(exe + elen - flen, f->exe);
	case CONF_STRATEGY_CONTAINS:
		return strstr(exe, f->exe) != NULL;
	case CONF_STRATEGY_REGEX:
		return f->has_regex && regexec(&f->regex, exe, 0, NULL, 0) == 0;
	}
	return false;
}

bool conf_exe_filtered(const struct qtap_conf *conf, const char *exe)
{
	bool have_only = false, allowed = false;

	if (!exe)
		exe = "";
	for (size_t i = 0; i < conf->tap.n_filters; i++) {
		const struct conf_filter *f = &conf->tap.filters[i];
		bool match = filter_match(f, exe);

		if (!f->only && match)
			return true;
		if (f->only) {
			have_only = true;
			allowed = allowed || match;
		}
	}
	return have_only && !allowed;
}

/* --- the running configuration -------------------------------------------- */

/* Written by the main thread only (conf_publish: at start, on SIGHUP, at
 * shutdown); read by every thread with conf_current() inside
 * rcu_read_lock().  What it points to is never modified once published. */
static struct qtap_conf *conf_running;

/* Published with a release exchange and read with an acquire load (the
 * compiler's atomic builtins rather than rcu_xchg_pointer() and
 * rcu_dereference(): the same ordering, and ThreadSanitizer sees it). */
const struct qtap_conf *conf_current(void)
{
	return __atomic_load_n(&conf_running, __ATOMIC_ACQUIRE);
}

void conf_publish(struct qtap_conf *conf)
{
	struct qtap_conf *old = __atomic_exchange_n(&conf_running, conf, __ATOMIC_ACQ_REL);

	if (old == conf)
		return;
	synchronize_rcu();
	conf_free(&old);
}

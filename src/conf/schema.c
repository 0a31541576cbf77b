/* The configuration schema: every key qtap.conf accepts, defined once.
 * The parser checks files against this table, the parser's defaults come
 * from it, and qtap.conf(5) lists it (conf_schema_write_man). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf-int.h"
#include "util/roff.h"

#define NO_RANGE 0, 0

static const struct conf_value plugin_types[] = {
	{ "http_capture", CONF_PLUGIN_HTTP_CAPTURE },
	{ "http_metrics", CONF_PLUGIN_HTTP_METRICS },
	{ NULL, 0 },
};

static const struct conf_value levels[] = {
	{ "none", CONF_LEVEL_NONE },
	{ "summary", CONF_LEVEL_SUMMARY },
	{ "headers", CONF_LEVEL_HEADERS },
	{ "details", CONF_LEVEL_HEADERS },
	{ "full", CONF_LEVEL_FULL },
	{ NULL, 0 },
};

static const struct conf_value formats[] = {
	{ "json", CONF_FORMAT_JSON },
	{ "text", CONF_FORMAT_TEXT },
	{ NULL, 0 },
};

static const struct conf_value store_types[] = {
	{ "stdout", CONF_STORE_STDOUT },
	{ "disabled", CONF_STORE_DISABLED },
	{ NULL, 0 },
};

static const struct conf_value directions[] = {
	{ "all", CONF_DIRECTION_ALL },
	{ "ingress", CONF_DIRECTION_INGRESS },
	{ "egress", CONF_DIRECTION_EGRESS },
	{ "egress-internal", CONF_DIRECTION_EGRESS_INTERNAL },
	{ "egress-external", CONF_DIRECTION_EGRESS_EXTERNAL },
	{ NULL, 0 },
};

static const struct conf_value groups[] = {
	{ "qpoint", CONF_GROUP_QPOINT },
	{ "kubernetes", CONF_GROUP_KUBERNETES },
	{ "container-runtimes", CONF_GROUP_CONTAINER_RUNTIMES },
	{ NULL, 0 },
};

/* The executables of the groups but qpoint (the agent itself), matched on
 * the basename of the executable, or of comm when its path is unknown:
 * exact names, or prefixes when they end with '*'.  filter.c matches
 * them, qtap.conf(5) lists them (conf_group_members()). */
static const char *const kubernetes_members[] = {
	"kubelet", "kube-proxy", "kube-apiserver", "kube-controller-manager",
	"kube-scheduler", "kubectl", "etcd", "k3s", "k3s-server", "k3s-agent", "k0s",
	"coredns", "flanneld", "calico-node", "cilium-agent", NULL,
};
static const char *const runtime_members[] = {
	"containerd", "containerd-shim*", "dockerd", "docker-proxy", "runc", "crun",
	"crio", "conmon", "podman", NULL,
};

const char *const *conf_group_members(unsigned group)
{
	switch (group) {
	case CONF_GROUP_KUBERNETES:
		return kubernetes_members;
	case CONF_GROUP_CONTAINER_RUNTIMES:
		return runtime_members;
	}
	return NULL;
}

static const struct conf_value strategies[] = {
	{ "exact", CONF_STRATEGY_EXACT },
	{ "prefix", CONF_STRATEGY_PREFIX },
	{ "suffix", CONF_STRATEGY_SUFFIX },
	{ "contains", CONF_STRATEGY_CONTAINS },
	{ "regex", CONF_STRATEGY_REGEX },
	{ NULL, 0 },
};

const struct conf_key conf_schema[CONF_KEY_COUNT] = {
	[K_STACKS] = { "stacks", CONF_KEY_MAP, false, NULL, NULL, NO_RANGE,
		"The processing stacks, each a group named by its key "
		"(stacks.default, stacks.api, ...).  A stack says what happens "
		"to the HTTP transactions routed to it.  No stack is defined "
		"by default." },
	[K_STACK] = { "stacks.*", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"One stack; its name is what tap.http.stack and "
		"tap.endpoints.[].http.stack refer to." },
	[K_PLUGINS] = { "stacks.*.plugins", CONF_KEY_LIST, false, "()", NULL, NO_RANGE,
		"The plugins of the stack, each at most once." },
	[K_PLUGIN] = { "stacks.*.plugins.[]", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"One plugin." },
	[K_PLUGIN_TYPE] = { "stacks.*.plugins.[].type", CONF_KEY_STRING, true, NULL,
		plugin_types, NO_RANGE,
		"http_capture writes a record of each HTTP transaction to the "
		"event stores; http_metrics feeds the qtap_http_* families of "
		"/metrics (without it only connection metrics are exported)." },
	[K_PLUGIN_CONFIG] = { "stacks.*.plugins.[].config", CONF_KEY_GROUP, false, NULL,
		NULL, NO_RANGE,
		"Settings of an http_capture plugin; http_metrics takes none." },
	[K_PLUGIN_LEVEL] = { "stacks.*.plugins.[].config.level", CONF_KEY_STRING, false,
		"summary", levels, NO_RANGE,
		"What a transaction record holds: none (no record), summary "
		"(metadata, no headers, no bodies), headers or its alias details "
		"(headers, no bodies), full (headers and bodies, bounded by "
		"--http-buffer-size)." },
	[K_PLUGIN_FORMAT] = { "stacks.*.plugins.[].config.format", CONF_KEY_STRING, false,
		"json", formats, NO_RANGE,
		"Record encoding: json (one object per line) or text." },
	[K_PLUGIN_SHOW_SECRETS] = { "stacks.*.plugins.[].config.show_secrets",
		CONF_KEY_BOOL, false, "false", NULL, NO_RANGE,
		"Write the values of headers that carry credentials "
		"(Authorization, Proxy-Authorization, Cookie, Set-Cookie and the "
		"like) as they are; by default they are redacted." },
	[K_SERVICES] = { "services", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"Where records go." },
	[K_EVENT_STORES] = { "services.event_stores", CONF_KEY_LIST, false,
		"( { type = \"stdout\"; } )", NULL, NO_RANGE,
		"Stores for transaction records (connection reports go to the log, "
		"at debug level).  An empty list () drops them." },
	[K_EVENT_STORE] = { "services.event_stores.[]", CONF_KEY_GROUP, false, NULL,
		NULL, NO_RANGE, "One event store." },
	[K_EVENT_STORE_TYPE] = { "services.event_stores.[].type", CONF_KEY_STRING, true,
		NULL, store_types, NO_RANGE,
		"stdout writes one record per line on standard output; disabled "
		"writes nothing." },
	[K_OBJECT_STORES] = { "services.object_stores", CONF_KEY_LIST, false,
		"( { type = \"stdout\"; } )", NULL, NO_RANGE,
		"Stores for captured bodies and other large objects.  An empty "
		"list () drops them." },
	[K_OBJECT_STORE] = { "services.object_stores.[]", CONF_KEY_GROUP, false, NULL,
		NULL, NO_RANGE, "One object store." },
	[K_OBJECT_STORE_TYPE] = { "services.object_stores.[].type", CONF_KEY_STRING, true,
		NULL, store_types, NO_RANGE,
		"stdout writes objects on standard output; disabled writes "
		"nothing." },
	[K_TAP] = { "tap", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"What traffic is captured and which stack handles it." },
	[K_TAP_DIRECTION] = { "tap.direction", CONF_KEY_STRING, false, "all",
		directions, NO_RANGE,
		"Connections to capture: all, ingress (accepted by a local "
		"process), egress (opened by a local process), egress-internal "
		"(egress to private, loopback, link-local and shared addresses: "
		"10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.0/8, 169.254.0.0/16, "
		"100.64.0.0/10, fc00::/7, ::1, fe80::/10) or egress-external (egress to "
		"any other address)." },
	[K_TAP_IGNORE_LOOPBACK] = { "tap.ignore_loopback", CONF_KEY_BOOL, false, "true",
		NULL, NO_RANGE,
		"Leave connections over the loopback interface (127.0.0.0/8, "
		"::1) alone." },
	[K_TAP_AUDIT_INCLUDE_DNS] = { "tap.audit_include_dns", CONF_KEY_BOOL, false,
		"false", NULL, NO_RANGE,
		"Capture TCP connections to or from port 53 (DNS over TCP): they are "
		"left out of connection reports and connection metrics unless this "
		"is true (DNS over UDP is never seen)." },
	[K_TAP_HTTP] = { "tap.http", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"HTTP processing for traffic no endpoint matches." },
	[K_TAP_HTTP_STACK] = { "tap.http.stack", CONF_KEY_STRING, false, NULL, NULL,
		NO_RANGE,
		"Name of the stack (under stacks) that handles HTTP "
		"transactions; it must be defined.  Without it, HTTP is "
		"processed only for the domains of tap.endpoints." },
	[K_FILTERS] = { "tap.filters", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"Processes whose traffic is ignored." },
	[K_FILTER_GROUPS] = { "tap.filters.groups", CONF_KEY_STRINGS, false,
		"[ \"qpoint\" ]", groups, NO_RANGE,
		"Predefined sets of processes to ignore: qpoint (the agent "
		"itself), kubernetes (kubelet and the control plane), "
		"container-runtimes (the container engines and their shims).  An "
		"empty array [] ignores none.  The other groups' executables, "
		"matched on the basename of the executable (of the command name "
		"when its path is unknown), a name ending in * as a prefix:" },
	[K_FILTER_CUSTOM] = { "tap.filters.custom", CONF_KEY_LIST, false, "()", NULL,
		NO_RANGE,
		"Executables matched by path (the one the process runs, as "
		"/proc/PID/exe names it, without the \" (deleted)\" added once the "
		"file is replaced while it runs).  An entry without only ignores the "
		"executables it matches; when any entry has only = true, the "
		"executables that match no such entry are ignored as well." },
	[K_FILTER] = { "tap.filters.custom.[]", CONF_KEY_GROUP, false, NULL, NULL,
		NO_RANGE, "One custom filter." },
	[K_FILTER_EXE] = { "tap.filters.custom.[].exe", CONF_KEY_STRING, true, NULL,
		NULL, NO_RANGE,
		"The executable's path (as in /proc/PID/exe), or the pattern "
		"the strategy matches it against." },
	[K_FILTER_STRATEGY] = { "tap.filters.custom.[].strategy", CONF_KEY_STRING, false,
		"exact", strategies, NO_RANGE,
		"How exe is compared: exact, prefix, suffix, contains, or regex "
		"(a POSIX extended regular expression, unanchored unless it "
		"says ^ or $)." },
	[K_FILTER_ONLY] = { "tap.filters.custom.[].only", CONF_KEY_BOOL, false, "false",
		NULL, NO_RANGE,
		"Make the entry an allow-list entry: only matching executables "
		"are traced." },
	[K_ENDPOINTS] = { "tap.endpoints", CONF_KEY_LIST, false, "()", NULL, NO_RANGE,
		"Per-domain stacks; the first entry whose domain matches the "
		"transaction's host wins over tap.http.stack." },
	[K_ENDPOINT] = { "tap.endpoints.[]", CONF_KEY_GROUP, false, NULL, NULL,
		NO_RANGE, "One endpoint." },
	[K_ENDPOINT_DOMAIN] = { "tap.endpoints.[].domain", CONF_KEY_STRING, true, NULL,
		NULL, NO_RANGE,
		"Host name, compared without regard to case; *.example.com "
		"matches every name under example.com (but not example.com "
		"itself)." },
	[K_ENDPOINT_HTTP] = { "tap.endpoints.[].http", CONF_KEY_GROUP, true, NULL, NULL,
		NO_RANGE, "HTTP processing for this domain." },
	[K_ENDPOINT_HTTP_STACK] = { "tap.endpoints.[].http.stack", CONF_KEY_STRING, true,
		NULL, NULL, NO_RANGE,
		"Name of the stack that handles this domain; it must be "
		"defined." },
	[K_METRICS] = { "metrics", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"The metric store." },
	[K_METRICS_SERIES_LIMIT] = { "metrics.series_limit", CONF_KEY_INT, false,
		"10000", NULL, 1, 10000000,
		"Label sets per metric family; past it, new label sets are "
		"counted in one series whose label values are __overflow__ "
		"(see qtap_system_series_overflow_total).  The store holds about "
		"4.19 million series at most, all families together: past that, "
		"new label sets are folded the same way." },
	[K_CAPTURE] = { "capture", CONF_KEY_GROUP, false, NULL, NULL, NO_RANGE,
		"How kernel events reach the parsers.  Read at start only: a "
		"reload keeps the running values and logs that a restart is "
		"needed for a change to take effect." },
	[K_CAPTURE_READERS] = { "capture.readers", CONF_KEY_INT, false, "0", NULL, 0, 1024,
		"Reader threads draining the per-CPU ring buffers.  0 means one "
		"per CPU; fewer (on large hosts) makes each reader drain several "
		"CPUs' buffers." },
	[K_CAPTURE_WORKERS] = { "capture.workers", CONF_KEY_INT, false, "0", NULL, 0, 64,
		"Parser workers.  Each connection is always parsed by the same "
		"worker.  0 means one per CPU, at most 8." },
	[K_CAPTURE_RING_KB] = { "capture.ring_buffer_kb", CONF_KEY_INT, false, "4096", NULL,
		64, 1048576,
		"Size of each per-CPU kernel ring buffer in KiB, rounded up to a "
		"power of two.  Events that find it full are counted in "
		"qtap_system_events_lost_total." },
	[K_CAPTURE_QUEUE_KB] = { "capture.queue_kb", CONF_KEY_INT, false, "0", NULL,
		0, 1048576,
		"Size of each reader-to-worker queue in KiB, rounded up to a power "
		"of two (64 at least).  There are (readers + 1) x workers of them, "
		"and each is all resident once that much has gone through it.  0 "
		"sizes them for the host: 4096 each, halved while all of them "
		"would take more than 256 MiB, down to 256 (a 64-CPU host's 520 "
		"queues get 256 KiB each).  Events that find a queue full are "
		"counted in qtap_system_queue_dropped_total." },
	[K_CAPTURE_IDLE_TIMEOUT] = { "capture.idle_timeout", CONF_KEY_INT, false, "300", NULL,
		1, 86400,
		"Seconds without activity after which a connection whose close "
		"was not seen is reported closed, once the kernel has no such "
		"connection open any more and its own close has not come 2 s "
		"later (one still open is only silent: it is looked at again "
		"this much later)." },
	[K_CAPTURE_KERNEL_BPF_STATS] = { "capture.kernel_bpf_stats", CONF_KEY_BOOL, false,
		"false", NULL, NO_RANGE,
		"Take the run counts and run time of qtap_system_bpf_program_* from "
		"the kernel's own run statistics (what kernel.bpf_stats_enabled turns "
		"on), which the agent then holds on while it runs and releases when "
		"it exits; the sysctl itself is left as it is.  They are the whole "
		"host's: they time every run of every BPF program of every tool, "
		"with two clock reads each.  Off, the agent's programs count every "
		"run themselves and time one run in 16 (its time counting for "
		"16).  When the kernel refuses its statistics, the agent says so "
		"and its programs count as when off." },
};

const struct conf_key *conf_schema_find(const char *pattern)
{
	for (size_t i = 0; i < CONF_KEY_COUNT; i++)
		if (!strcmp(conf_schema[i].path, pattern))
			return &conf_schema[i];
	return NULL;
}

const char *conf_key_name(const struct conf_key *k)
{
	const char *dot = strrchr(k->path, '.');

	return dot ? dot + 1 : k->path;
}

const struct conf_value *conf_key_value(const struct conf_key *k, const char *s)
{
	if (!k->values)
		return NULL;
	for (const struct conf_value *v = k->values; v->name; v++)
		if (!strcmp(v->name, s))
			return v;
	return NULL;
}

/* --- checking a file against the table -------------------------------- */

static const char *type_name(enum conf_key_type t)
{
	switch (t) {
	case CONF_KEY_GROUP:
	case CONF_KEY_MAP:
		return "group";
	case CONF_KEY_LIST:
		return "list";
	case CONF_KEY_STRING:
		return "string";
	case CONF_KEY_BOOL:
		return "boolean";
	case CONF_KEY_INT:
		return "integer";
	case CONF_KEY_STRINGS:
		return "array of strings";
	}
	return "?";
}

static const char *setting_type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

static const char *article(enum conf_key_type t)
{
	return t == CONF_KEY_INT || t == CONF_KEY_STRINGS ? "an" : "a";
}

static int wrong_type(struct conf_ctx *ctx, const config_setting_t *s,
		      const struct conf_key *k)
{
	return conf_fail(ctx, s, NULL, "wrong type: expected %s %s, found %s",
			 article(k->type), type_name(k->type), setting_type_name(s));
}

static int bad_value(struct conf_ctx *ctx, const config_setting_t *s,
		     const struct conf_key *k, const char *v)
{
	char list[256];
	size_t len = 0;

	list[0] = '\0';
	for (const struct conf_value *cv = k->values; cv->name; cv++) {
		int n = snprintf(list + len, sizeof(list) - len, "%s%s",
				 len ? ", " : "", cv->name);

		if (n < 0 || (size_t)n >= sizeof(list) - len)
			break;
		len += (size_t)n;
	}
	return conf_fail(ctx, s, NULL, "invalid value \"%s\" (expected one of: %s)",
			 v, list);
}

static int check_string(struct conf_ctx *ctx, const config_setting_t *s,
			const struct conf_key *k)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return wrong_type(ctx, s, k);
	v = config_setting_get_string(s);
	if (k->values && !conf_key_value(k, v))
		return bad_value(ctx, s, k, v);
	return 0;
}

static int check_strings(struct conf_ctx *ctx, const config_setting_t *s,
			 const struct conf_key *k)
{
	int type = config_setting_type(s);
	int n = config_setting_length(s);

	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
		return wrong_type(ctx, s, k);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return conf_fail(ctx, e, NULL,
					 "wrong type: expected a string, found %s",
					 setting_type_name(e));
		v = config_setting_get_string(e);
		if (k->values && !conf_key_value(k, v))
			return bad_value(ctx, e, k, v);
	}
	return 0;
}

static int check_setting(struct conf_ctx *ctx, const config_setting_t *s,
			 const char *pattern);

/* Checks the members of group s (pattern names s in the schema; "" for the
 * root), then that its required members are there. */
static int check_members(struct conf_ctx *ctx, const config_setting_t *s,
			 const char *pattern, bool map)
{
	int n = config_setting_length(s);
	size_t plen = strlen(pattern);
	char child[256];
	int err;

	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		const char *name = map ? "*" : config_setting_name(m);

		snprintf(child, sizeof(child), "%s%s%s", pattern, plen ? "." : "", name);
		err = check_setting(ctx, m, child);
		if (err)
			return err;
	}
	for (size_t i = 0; i < CONF_KEY_COUNT; i++) {
		const struct conf_key *k = &conf_schema[i];
		const char *name = conf_key_name(k);

		if (!k->required || (size_t)(name - k->path) != plen + (plen ? 1 : 0) ||
		    strncmp(k->path, pattern, plen))
			continue;
		if (!config_setting_get_member(s, name))
			return conf_fail(ctx, s, name, "missing required key (%s)",
					 type_name(k->type));
	}
	return 0;
}

/* p past blanks, line ends and comments (#, //, slash-star). */
static const char *skip_blank(const char *p)
{
	for (;;) {
		p += strspn(p, " \t\r\n");
		if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");

			p = end ? end + 2 : p + strlen(p);
		} else {
			return p;
		}
	}
}

/* The integer written for s, whose value libconfig read as v, when it was
 * read from a file: its name is on the line libconfig gives, then "=" or
 * ":" and the number (decimal, or hex after 0x), with blanks, line ends or
 * comments between, and the number's low 32 bits are v's: true and *ret.
 * libconfig reads an integer past 32 bits without an L suffix as its low
 * 32 bits (4294977296 as 10000), and says nothing. */
static bool int_as_written(const struct conf_ctx *ctx, const config_setting_t *s,
			   long long v, long long *ret)
{
	const char *name = config_setting_name(s), *file, *text, *p, *q;
	int line = config_setting_source_line(s);
	size_t len, line_len;
	char *end;

	if (!name || !ctx->src || !conf_src_where(ctx->src, line, &file, &line, &text))
		return false;	/* a list's element, or not from a file */
	line_len = strcspn(text, "\n");
	len = strlen(name);
	for (p = text; (p = memmem(p, line_len - (size_t)(p - text), name, len)); p++) {
		if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '-'))
			continue;
		q = skip_blank(p + len);
		if (*q != '=' && *q != ':')
			continue;
		q = skip_blank(q + 1);
		errno = 0;
		*ret = strtoll(q, &end, q[0] == '0' && (q[1] == 'x' || q[1] == 'X') ? 16 : 10);
		/* (a name and number in a comment before it do not match) */
		if (end == q || (errno != ERANGE && (uint32_t)*ret != (uint32_t)v))
			continue;
		if (errno == ERANGE)
			*ret = *ret < 0 ? LLONG_MIN : LLONG_MAX;
		return true;
	}
	return false;
}

static int check_setting(struct conf_ctx *ctx, const config_setting_t *s,
			 const char *pattern)
{
	const struct conf_key *k = conf_schema_find(pattern);
	int type = config_setting_type(s);
	char child[256];
	int err;

	if (!k)
		return conf_fail(ctx, s, NULL, "unknown key");

	switch (k->type) {
	case CONF_KEY_GROUP:
	case CONF_KEY_MAP:
		if (type != CONFIG_TYPE_GROUP)
			return wrong_type(ctx, s, k);
		return check_members(ctx, s, pattern, k->type == CONF_KEY_MAP);
	case CONF_KEY_LIST:
		/* An empty [] reads as well as an empty (). */
		if (type != CONFIG_TYPE_LIST &&
		    !(type == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0))
			return wrong_type(ctx, s, k);
		snprintf(child, sizeof(child), "%s.[]", pattern);
		for (int i = 0; i < config_setting_length(s); i++) {
			err = check_setting(ctx, config_setting_get_elem(s, (unsigned)i),
					    child);
			if (err)
				return err;
		}
		return 0;
	case CONF_KEY_STRING:
		return check_string(ctx, s, k);
	case CONF_KEY_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			return wrong_type(ctx, s, k);
		return 0;
	case CONF_KEY_INT: {
		long long v, w;

		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			return wrong_type(ctx, s, k);
		v = config_setting_get_int64(s);
		/* past 32 bits without an L, what was written wrapped */
		if (type == CONFIG_TYPE_INT && int_as_written(ctx, s, v, &w) && w != v)
			v = w;
		if (v < k->min || v > k->max)
			return conf_fail(ctx, s, NULL,
					 "value %lld out of range (expected %lld to %lld)",
					 v, k->min, k->max);
		return 0;
	}
	case CONF_KEY_STRINGS:
		return check_strings(ctx, s, k);
	}
	return conf_fail(ctx, s, NULL, "unknown key");
}

int conf_schema_check(struct conf_ctx *ctx, const config_setting_t *root)
{
	return check_members(ctx, root, "", false);
}

/* --- documentation -------------------------------------------------------- */

void conf_schema_write_man(FILE *out)
{
	for (size_t i = 0; i < CONF_KEY_COUNT; i++) {
		const struct conf_key *k = &conf_schema[i];

		fputs(".TP\n.B ", out);
		roff_puts(out, k->path);
		fputs("\n", out);
		fprintf(out, "(%s", type_name(k->type));
		if (k->required)
			fputs(", required", out);
		if (k->def) {
			fputs(", default \\fB", out);
			roff_puts(out, k->def);
			fputs("\\fR", out);
		}
		if (k->values) {
			fputs("; one of: ", out);
			for (const struct conf_value *v = k->values; v->name; v++) {
				if (v != k->values)
					fputs(", ", out);
				fputs("\\fB", out);
				roff_puts(out, v->name);
				fputs("\\fR", out);
			}
		}
		if (k->type == CONF_KEY_INT)
			fprintf(out, "; from %lld to %lld", k->min, k->max);
		fputs(")\n.br\n", out);
		roff_puts(out, k->doc);
		fputs("\n", out);
		for (const struct conf_value *v = k->values; v && v->name; v++) {
			const char *const *m = k->values == groups ?
						conf_group_members((unsigned)v->value) : NULL;

			if (!m)
				continue;
			fputs(".RS\n.TP\n.B ", out);
			roff_puts(out, v->name);
			fputs("\n", out);
			for (; *m; m++) {
				roff_puts(out, *m);
				fputs(m[1] ? ", " : "\n", out);
			}
			fputs(".RE\n", out);
		}
	}
}

void conf_schema_write_keys(FILE *out)
{
	for (size_t i = 0; i < CONF_KEY_COUNT; i++)
		fprintf(out, "%s\n", conf_schema[i].path);
}

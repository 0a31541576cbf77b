/* Check suite "conf": loading files, every kind of error with its line and
 * key path, matching, the RCU-published running configuration, and the
 * schema's key list against what the parser accepts. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <urcu.h>

#include "conf/conf.h"

#include "../check_run.h"

/* A file under the source tree (the test may run from a build dir). */
static char *srcpath(const char *rel)
{
	const char *top = getenv("top_srcdir");
	char *p;

	if (!top)
		top = ".";
	ck_assert_int_ge(asprintf(&p, "%s/%s", top, rel), 0);
	return p;
}

static struct qtap_conf *load_data(const char *rel, struct conf_error *err)
{
	char *path = srcpath(rel);
	struct qtap_conf *conf = conf_load(path, err);

	free(path);
	return conf;
}

static struct qtap_conf *load_ok(const char *text)
{
	struct conf_error err;
	struct qtap_conf *conf = conf_load_string(text, "test.conf", &err);
	char msg[1100];

	if (!conf) {
		conf_error_format(&err, msg, sizeof(msg));
		ck_abort_msg("refused: %s", msg);
	}
	return conf;
}

/* Loads text, which must be refused at line with key, and msg a part of
 * the message. */
#define expect_error(text, eline, ekey, emsg)                                     \
	do {                                                                      \
		struct conf_error err_;                                           \
		struct qtap_conf *c_ = conf_load_string(text, "test.conf", &err_); \
		ck_assert_ptr_null(c_);                                           \
		ck_assert_int_eq(errno, EINVAL);                                  \
		ck_assert_str_eq(err_.file, "test.conf");                         \
		ck_assert_int_eq(err_.line, eline);                               \
		ck_assert_str_eq(err_.key, ekey);                                 \
		ck_assert_msg(strstr(err_.msg, emsg), "message \"%s\" lacks \"%s\"", \
			      err_.msg, emsg);                                    \
	} while (0)

/* --- valid files ---------------------------------------------------------- */

START_TEST(test_shipped_example)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("etc/qtap.conf", &err);
	const struct conf_stack *s;

	ck_assert_msg(conf, "etc/qtap.conf refused: line %d %s: %s", err.line,
		      err.key, err.msg);
	ck_assert_uint_eq(conf->n_stacks, 1);
	s = &conf->stacks[0];
	ck_assert_str_eq(s->name, "default");
	ck_assert_uint_eq(s->n_plugins, 2);
	ck_assert(s->http_metrics);
	ck_assert_ptr_nonnull(s->capture);
	ck_assert_int_eq(s->capture->type, CONF_PLUGIN_HTTP_CAPTURE);
	ck_assert_int_eq(s->capture->level, CONF_LEVEL_SUMMARY);
	ck_assert_int_eq(s->capture->format, CONF_FORMAT_JSON);
	ck_assert(!s->capture->show_secrets);
	ck_assert_uint_eq(conf->n_event_stores, 1);
	ck_assert_int_eq(conf->event_stores[0], CONF_STORE_STDOUT);
	ck_assert_uint_eq(conf->n_object_stores, 1);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_ALL);
	ck_assert(!conf->tap.ignore_loopback);
	ck_assert(!conf->tap.audit_include_dns);
	ck_assert_ptr_eq(conf->tap.http_stack, s);
	ck_assert_uint_eq(conf->tap.filter_groups, CONF_GROUP_QPOINT);
	ck_assert_uint_eq(conf->tap.n_filters, 0);
	ck_assert_uint_eq(conf->tap.n_endpoints, 0);
	ck_assert_uint_eq(conf->metrics.series_limit, 10000);
	ck_assert_uint_eq(conf->capture.readers, 0);
	ck_assert_uint_eq(conf->capture.workers, 0);
	ck_assert_uint_eq(conf->capture.ring_buffer_kb, 4096);
	ck_assert_uint_eq(conf->capture.queue_kb, 0);
	ck_assert_uint_eq(conf->capture.idle_timeout, 300);
	ck_assert(!conf->capture.kernel_bpf_stats);
	ck_assert(strstr(conf->path, "etc/qtap.conf"));
	conf_free(&conf);
	ck_assert_ptr_null(conf);
}
END_TEST

/* The commented-out examples of etc/qtap.conf are valid once uncommented. */
START_TEST(test_shipped_example_uncommented)
{
	char *path = srcpath("etc/qtap.conf");
	FILE *in = fopen(path, "r");
	static const char *const code[] = { "custom = (", "endpoints = (", "  { ", ");" };
	char line[512], *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct qtap_conf *conf;
	int uncommented = 0;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	while (fgets(line, sizeof(line), in)) {
		char *p = line + strspn(line, " ");

		if (p[0] == '#' && p[1] == ' ')
			for (size_t i = 0; i < sizeof(code) / sizeof(code[0]); i++)
				if (!strncmp(p + 2, code[i], strlen(code[i]))) {
					memmove(p, p + 2, strlen(p + 2) + 1);
					uncommented++;
					break;
				}
		fputs(line, out);
	}
	fclose(in);
	fclose(out);
	ck_assert_int_ge(uncommented, 6);
	conf = load_ok(text);
	ck_assert_uint_eq(conf->tap.n_filters, 1);
	ck_assert_uint_eq(conf->tap.n_endpoints, 1);
	ck_assert(conf_exe_filtered(conf, "/usr/bin/ssh"));
	ck_assert_ptr_eq(conf_stack_for_host(conf, "api.example.com"), &conf->stacks[0]);
	conf_free(&conf);
	free(text);
	free(path);
}
END_TEST

START_TEST(test_spec_example)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/spec-example.conf", &err);

	ck_assert_msg(conf, "refused: line %d %s: %s", err.line, err.key, err.msg);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_EGRESS);
	ck_assert(conf->tap.ignore_loopback);
	ck_assert_uint_eq(conf->tap.n_filters, 1);
	ck_assert_str_eq(conf->tap.filters[0].exe, "/usr/bin/ssh");
	ck_assert_int_eq(conf->tap.filters[0].strategy, CONF_STRATEGY_EXACT);
	ck_assert(!conf->tap.filters[0].only);
	ck_assert_uint_eq(conf->tap.n_endpoints, 1);
	ck_assert_str_eq(conf->tap.endpoints[0].domain, "api.example.com");
	ck_assert_ptr_eq(conf->tap.endpoints[0].stack, &conf->stacks[0]);
	conf_free(&conf);
}
END_TEST

static void assert_defaults(const struct qtap_conf *conf)
{
	ck_assert_uint_eq(conf->n_stacks, 0);
	ck_assert_uint_eq(conf->n_event_stores, 1);
	ck_assert_int_eq(conf->event_stores[0], CONF_STORE_STDOUT);
	ck_assert_uint_eq(conf->n_object_stores, 1);
	ck_assert_int_eq(conf->object_stores[0], CONF_STORE_STDOUT);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_ALL);
	ck_assert(conf->tap.ignore_loopback);
	ck_assert(!conf->tap.audit_include_dns);
	ck_assert_ptr_null(conf->tap.http_stack);
	ck_assert_uint_eq(conf->tap.filter_groups, CONF_GROUP_QPOINT);
	ck_assert_uint_eq(conf->tap.n_filters, 0);
	ck_assert_uint_eq(conf->tap.n_endpoints, 0);
	ck_assert_uint_eq(conf->metrics.series_limit, 10000);
}

START_TEST(test_empty_file_is_defaults)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/empty.conf", &err);
	struct qtap_conf *def = conf_new_default();

	ck_assert_ptr_nonnull(conf);
	ck_assert_ptr_nonnull(def);
	assert_defaults(conf);
	assert_defaults(def);
	ck_assert_ptr_null(conf_stack_for_host(def, "example.com"));
	ck_assert(!conf_exe_filtered(def, "/usr/bin/curl"));
	conf_free(&conf);
	conf_free(&def);
	conf_free(&def); /* NULL is accepted */
}
END_TEST

START_TEST(test_every_key)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/every-key.conf", &err);
	const struct conf_stack *capture, *monly;

	ck_assert_msg(conf, "refused: line %d %s: %s", err.line, err.key, err.msg);
	ck_assert_uint_eq(conf->n_stacks, 2);
	capture = &conf->stacks[0];
	monly = &conf->stacks[1];
	ck_assert_str_eq(capture->name, "capture");
	ck_assert_str_eq(monly->name, "metrics_only");
	ck_assert_int_eq(capture->capture->level, CONF_LEVEL_HEADERS); /* details */
	ck_assert_int_eq(capture->capture->format, CONF_FORMAT_TEXT);
	ck_assert(capture->capture->show_secrets);
	ck_assert(capture->http_metrics);
	ck_assert(monly->http_metrics);
	ck_assert_uint_eq(conf->capture.readers, 2);
	ck_assert_uint_eq(conf->capture.workers, 3);
	ck_assert_uint_eq(conf->capture.ring_buffer_kb, 8192);
	ck_assert_uint_eq(conf->capture.queue_kb, 2048);
	ck_assert_uint_eq(conf->capture.idle_timeout, 60);
	ck_assert(conf->capture.kernel_bpf_stats);
	ck_assert_ptr_null(monly->capture);
	ck_assert_uint_eq(conf->n_event_stores, 2);
	ck_assert_int_eq(conf->event_stores[1], CONF_STORE_DISABLED);
	ck_assert_uint_eq(conf->n_object_stores, 1);
	ck_assert_int_eq(conf->object_stores[0], CONF_STORE_DISABLED);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_EGRESS_EXTERNAL);
	ck_assert(!conf->tap.ignore_loopback);
	ck_assert(conf->tap.audit_include_dns);
	ck_assert_ptr_eq(conf->tap.http_stack, monly);
	ck_assert_uint_eq(conf->tap.filter_groups,
			  CONF_GROUP_QPOINT | CONF_GROUP_KUBERNETES |
			  CONF_GROUP_CONTAINER_RUNTIMES);
	ck_assert_uint_eq(conf->tap.n_filters, 6);
	ck_assert_int_eq(conf->tap.filters[4].strategy, CONF_STRATEGY_REGEX);
	ck_assert(conf->tap.filters[4].has_regex);
	ck_assert(conf->tap.filters[4].only);
	ck_assert_int_eq(conf->tap.filters[5].strategy, CONF_STRATEGY_EXACT);
	ck_assert_uint_eq(conf->tap.n_endpoints, 2);
	ck_assert_ptr_eq(conf->tap.endpoints[0].stack, capture);
	ck_assert_uint_eq(conf->metrics.series_limit, 250000);
	conf_free(&conf);
}
END_TEST

START_TEST(test_inline_values)
{
	struct qtap_conf *conf;

	conf = load_ok("metrics = { series_limit = 10000000; };\n"
		       "tap = { direction = \"ingress\"; filters = { groups = []; "
		       "custom = []; }; endpoints = (); };\n"
		       "services = { event_stores = (); object_stores = (); };\n"
		       "stacks = { s = { plugins = ( { type = \"http_capture\"; "
		       "config = { level = \"full\"; }; } ); }; empty = { }; };\n");
	ck_assert_uint_eq(conf->metrics.series_limit, 10000000);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_INGRESS);
	ck_assert_uint_eq(conf->tap.filter_groups, 0);
	ck_assert_uint_eq(conf->n_event_stores, 0);
	ck_assert_uint_eq(conf->n_object_stores, 0);
	ck_assert_uint_eq(conf->n_stacks, 2);
	ck_assert_int_eq(conf->stacks[0].capture->level, CONF_LEVEL_FULL);
	ck_assert_int_eq(conf->stacks[0].capture->format, CONF_FORMAT_JSON);
	ck_assert(!conf->stacks[0].http_metrics);
	ck_assert_uint_eq(conf->stacks[1].n_plugins, 0);
	conf_free(&conf);

	/* 64-bit integer syntax is an integer too. */
	conf = load_ok("metrics = { series_limit = 5000L; };");
	ck_assert_uint_eq(conf->metrics.series_limit, 5000);
	conf_free(&conf);

	conf = load_ok("metrics = { series_limit = 1; };");
	ck_assert_uint_eq(conf->metrics.series_limit, 1);
	conf_free(&conf);
}
END_TEST

/* --- errors --------------------------------------------------------------- */

START_TEST(test_error_unknown_keys)
{
	expect_error("# comment\nfoo = 1;\n", 2, "foo", "unknown key");
	expect_error("tap = {\n  direction = \"all\";\n  http = {\n    stak = \"x\";\n"
		     "  };\n};\n", 4, "tap.http.stak", "unknown key");
	expect_error("stacks = {\n  default = {\n    plugin = ();\n  };\n};\n", 3,
		     "stacks.default.plugin", "unknown key");
	expect_error("stacks = { a = { plugins = (\n { type = \"http_metrics\"; },\n"
		     " { type = \"http_capture\"; config = {\n levle = \"full\"; }; }\n"
		     "); }; };\n",
		     4, "stacks.a.plugins.[1].config.levle", "unknown key");
	expect_error("tap = { filters = { custom = (\n { exe = \"/a\"; },\n"
		     " { exe = \"/b\"; strategy = \"exact\"; olny = true; }\n); }; };\n",
		     3, "tap.filters.custom.[1].olny", "unknown key");
}
END_TEST

START_TEST(test_error_wrong_types)
{
	expect_error("tap = {\n  ignore_loopback = \"yes\";\n};\n", 2,
		     "tap.ignore_loopback",
		     "wrong type: expected a boolean, found a string");
	expect_error("metrics = {\n  series_limit = 1.5;\n};\n", 2,
		     "metrics.series_limit",
		     "wrong type: expected an integer, found a float");
	expect_error("tap = \"all\";\n", 1, "tap",
		     "wrong type: expected a group, found a string");
	expect_error("stacks = { a = { plugins = { type = \"http_metrics\"; }; }; };\n",
		     1, "stacks.a.plugins", "expected a list, found a group");
	expect_error("tap = { direction = 1; };", 1, "tap.direction",
		     "expected a string, found an integer");
	expect_error("tap = { filters = { groups = \"qpoint\"; }; };", 1,
		     "tap.filters.groups", "expected an array of strings");
	expect_error("tap = { filters = { custom = ( \"/usr/bin/ssh\" ); }; };", 1,
		     "tap.filters.custom.[0]", "expected a group, found a string");
	expect_error("tap = {\n  filters = {\n    groups = [ 1, 2 ];\n  };\n};", 3,
		     "tap.filters.groups.[0]", "expected a string, found an integer");
}
END_TEST

/* An integer past 32 bits without an L suffix, which libconfig wraps,
 * decimal or hex: refused with the value as written. */
START_TEST(test_error_int_wrap)
{
	static const struct {
		const char *file, *key, *value, *range;
		int line;
	} cases[] = {
		{ "tests/conf/data/bad-int-wrap.conf", "metrics.series_limit", "4294977296",
		  "1 to 10000000", 5 },
		{ "tests/conf/data/bad-int-hex.conf", "capture.readers", "4294967296",
		  "0 to 1024", 2 },
	};
	struct conf_error err;
	char msg[1100], want[1100];
	unsigned i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qtap_conf *conf = load_data(cases[i].file, &err);
		char *path = srcpath(cases[i].file);

		ck_assert_ptr_null(conf);
		ck_assert_int_eq(errno, EINVAL);
		conf_error_format(&err, msg, sizeof(msg));
		snprintf(want, sizeof(want), "%s:%d: %s: value %s out of range (expected %s)", path,
			 cases[i].line, cases[i].key, cases[i].value, cases[i].range);
		ck_assert_str_eq(msg, want);
		free(path);
	}
}
END_TEST

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* The same with the number on a line after its name, or comments between:
 * the number as written is found all the same; a name and number in a
 * comment before the setting are not taken for it. */
START_TEST(test_error_int_wrap_layout)
{
	static const struct {
		const char *text, *key, *value;
		int line;
	} cases[] = {
		{ "metrics = { series_limit =\n    4294977296; };\n", "metrics.series_limit",
		  "4294977296", 1 },
		{ "metrics = { series_limit\n=\n4294977296; };\n", "metrics.series_limit",
		  "4294977296", 1 },
		{ "capture = { readers = /* x */ 0x100000000; };\n", "capture.readers",
		  "4294967296", 1 },
		{ "capture = {\n  readers # c\n  = // d\n  0x100000000; };\n",
		  "capture.readers", "4294967296", 2 },
		{ "# x\n/* series_limit = 5 */ metrics = { series_limit = -4294977296; };\n",
		  "metrics.series_limit", "-4294977296", 2 },
	};
	char dir[] = "/tmp/check_conf_int.XXXXXX", path[512], want[1100], msg[1100];
	struct conf_error err;
	unsigned i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qtap.conf", dir);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(dir, "qtap.conf", cases[i].text);
		ck_assert_ptr_null(conf_load(path, &err));
		ck_assert_int_eq(errno, EINVAL);
		conf_error_format(&err, msg, sizeof(msg));
		snprintf(want, sizeof(want), "%s:%d: %s: value %s out of range", path,
			 cases[i].line, cases[i].key, cases[i].value);
		ck_assert_msg(!strncmp(msg, want, strlen(want)), "case %u: %s", i, msg);
	}
	/* a value in range, written the same ways, is taken */
	write_file(dir, "qtap.conf", "metrics = { series_limit = /* 4294977296 */\n 77; };\n");
	{
		struct qtap_conf *conf = conf_load(path, &err);

		ck_assert_ptr_nonnull(conf);
		ck_assert_uint_eq(conf->metrics.series_limit, 77);
		conf_free(&conf);
	}
	snprintf(msg, sizeof(msg), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(msg), 0);
}
END_TEST

START_TEST(test_error_bad_enum_file)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/bad-direction.conf", &err);
	char *path = srcpath("tests/conf/data/bad-direction.conf");
	char msg[1100], want[1100];

	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_str_eq(err.file, path);
	ck_assert_int_eq(err.line, 11);
	ck_assert_str_eq(err.key, "tap.direction");
	conf_error_format(&err, msg, sizeof(msg));
	snprintf(want, sizeof(want),
		 "%s:11: tap.direction: invalid value \"sideways\" (expected one of: "
		 "all, ingress, egress, egress-internal, egress-external)", path);
	ck_assert_str_eq(msg, want);
	free(path);
}
END_TEST

START_TEST(test_error_bad_values)
{
	expect_error("stacks = {\n  default = {\n    plugins = (\n"
		     "      { type = \"http_metrics\"; },\n"
		     "      { type = \"http_magic\"; }\n    );\n  };\n};\n",
		     5, "stacks.default.plugins.[1].type",
		     "invalid value \"http_magic\" (expected one of: http_capture, "
		     "http_metrics)");
	expect_error("stacks = { d = { plugins = ( { type = \"http_capture\";\n"
		     "config = { level = \"everything\"; }; } ); }; };", 2,
		     "stacks.d.plugins.[0].config.level",
		     "expected one of: none, summary, headers, details, full");
	expect_error("services = {\n  event_stores = ( { type = \"s3\"; } );\n};", 2,
		     "services.event_stores.[0].type",
		     "invalid value \"s3\" (expected one of: stdout, disabled)");
	expect_error("services = {\n  object_stores = ( { type = \"stdout\"; },\n"
		     "{ type = \"kafka\"; } );\n};", 3,
		     "services.object_stores.[1].type", "invalid value \"kafka\"");
	expect_error("tap = { filters = {\n groups = [ \"qpoint\", \"docker\" ];\n}; };",
		     2, "tap.filters.groups.[1]",
		     "invalid value \"docker\" (expected one of: qpoint, kubernetes, "
		     "container-runtimes)");
	expect_error("tap = { filters = { custom = (\n"
		     "{ exe = \"/a\"; strategy = \"glob\"; } ); }; };", 2,
		     "tap.filters.custom.[0].strategy", "invalid value \"glob\"");
	expect_error("tap = { filters = { custom = (\n{ exe = \"\"; } ); }; };", 2,
		     "tap.filters.custom.[0].exe", "empty executable");
	expect_error("stacks = { d = { }; };\ntap = { endpoints = (\n"
		     "{ domain = \"api.*.com\"; http = { stack = \"d\"; }; } ); };", 3,
		     "tap.endpoints.[0].domain", "invalid domain \"api.*.com\"");
}
END_TEST

START_TEST(test_error_out_of_range)
{
	expect_error("metrics = {\n\n  series_limit = 0;\n};\n", 3,
		     "metrics.series_limit",
		     "value 0 out of range (expected 1 to 10000000)");
	expect_error("metrics = { series_limit = 10000001; };", 1,
		     "metrics.series_limit", "value 10000001 out of range");
	expect_error("metrics = { series_limit = -5; };", 1,
		     "metrics.series_limit", "value -5 out of range");
	expect_error("metrics = { series_limit = 9000000000L; };", 1,
		     "metrics.series_limit", "value 9000000000 out of range");
}
END_TEST

START_TEST(test_error_stacks)
{
	expect_error("stacks = { default = { }; };\n\ntap = {\n"
		     "  http = { stack = \"defualt\"; };\n};\n", 4, "tap.http.stack",
		     "stack \"defualt\" is not defined");
	expect_error("tap = {\n  http = { stack = \"default\"; };\n};\n", 2,
		     "tap.http.stack", "stack \"default\" is not defined");
	expect_error("stacks = { a = { }; };\ntap = { endpoints = (\n"
		     "  { domain = \"a.example.com\"; http = { stack = \"a\"; }; },\n"
		     "  { domain = \"b.example.com\"; http = { stack = \"b\"; }; }\n"
		     "); };\n", 4, "tap.endpoints.[1].http.stack",
		     "stack \"b\" is not defined");
	expect_error("stacks = {\n  s = {\n    plugins = (\n"
		     "      { type = \"http_metrics\"; },\n"
		     "      { type = \"http_capture\"; },\n"
		     "      { type = \"http_metrics\"; }\n    );\n  };\n};\n", 6,
		     "stacks.s.plugins.[2].type",
		     "duplicate plugin type \"http_metrics\" in stack \"s\"");
	expect_error("stacks = { s = { plugins = (\n{ type = \"http_metrics\";\n"
		     "  config = {\n    level = \"full\"; }; } ); }; };\n", 4,
		     "stacks.s.plugins.[0].config.level",
		     "plugin type \"http_metrics\" takes no settings");
}
END_TEST

START_TEST(test_error_required)
{
	expect_error("tap = { filters = { custom = (\n  { exe = \"/bin/a\"; },\n"
		     "  { strategy = \"prefix\"; }\n); }; };\n", 3,
		     "tap.filters.custom.[1].exe", "missing required key");
	expect_error("stacks = { s = { plugins = (\n  { config = { }; }\n); }; };", 2,
		     "stacks.s.plugins.[0].type", "missing required key");
	expect_error("stacks = { s = { }; };\ntap = { endpoints = (\n"
		     "  { domain = \"x.org\"; }\n); };", 3, "tap.endpoints.[0].http",
		     "missing required key");
	expect_error("stacks = { s = { }; };\ntap = { endpoints = (\n"
		     "  { http = { stack = \"s\"; }; }\n); };", 3,
		     "tap.endpoints.[0].domain", "missing required key");
}
END_TEST

START_TEST(test_error_bad_regex)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/bad-regex.conf", &err);

	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(err.line, 5);
	ck_assert_str_eq(err.key, "tap.filters.custom.[1].exe");
	ck_assert_msg(strstr(err.msg, "bad regular expression \"/usr/bin/(java\": "),
		      "%s", err.msg);
	/* The regerror() text follows. */
	ck_assert_int_gt(strlen(err.msg),
			 strlen("bad regular expression \"/usr/bin/(java\": "));
}
END_TEST

START_TEST(test_error_syntax)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/bad-syntax.conf", &err);
	char *path = srcpath("tests/conf/data/bad-syntax.conf");

	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_str_eq(err.file, path);
	/* An unquoted string on line 3. */
	ck_assert_int_eq(err.line, 3);
	ck_assert_str_eq(err.key, "");
	ck_assert_str_eq(err.msg, "syntax error");
	free(path);

	conf = conf_load_string("a = 1;\nb = {\n", "inline.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_str_eq(err.file, "inline.conf");
	ck_assert_int_eq(err.line, 3); /* end of input inside the group */

	/* Duplicate names are refused by the parser itself. */
	conf = conf_load_string("tap = {\n direction = \"all\";\n direction = \"egress\";\n};",
				"dup.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(err.line, 3);
	ck_assert_str_eq(err.msg, "duplicate setting name");
}
END_TEST

/* An error in an @include'd file names that file, found beside the
 * including one. */
START_TEST(test_error_in_include)
{
	struct conf_error err;
	struct qtap_conf *conf = load_data("tests/conf/data/include.conf", &err);
	char *path = srcpath("tests/conf/data/include-tap.conf");

	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_str_eq(err.file, path);
	ck_assert_int_eq(err.line, 4);
	ck_assert_str_eq(err.key, "tap.direction");
	ck_assert_msg(strstr(err.msg, "invalid value \"inbound\""), "%s", err.msg);
	free(path);
}
END_TEST

/* @include: a relative name from the including file's folder (also in a
 * subfolder, with a file of the same name beside the main one), an
 * absolute name as it is; a missing file and a loop are errors at the
 * including line. */
START_TEST(test_include_paths)
{
	char dir[] = "/tmp/check_conf_inc.XXXXXX", path[512], text[1024], msg[1100];
	struct conf_error err;
	struct qtap_conf *conf;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/conf.d", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(text, sizeof(text),
		 "# main\n@include \"conf.d/tap.conf\"\n@include \"%s/conf.d/metrics.conf\"  # abs\n",
		 dir);
	write_file(dir, "qtap.conf", text);
	write_file(dir, "conf.d/tap.conf", "@include \"dir.conf\"\n");
	write_file(dir, "conf.d/dir.conf", "tap = { direction = \"egress\"; };\n");
	write_file(dir, "dir.conf", "tap = { direction = \"ingress\"; };\n");
	write_file(dir, "conf.d/metrics.conf", "metrics = { series_limit = 77; };\n");
	snprintf(path, sizeof(path), "%s/qtap.conf", dir);
	conf = conf_load(path, &err);
	conf_error_format(&err, msg, sizeof(msg));
	ck_assert_msg(conf != NULL, "%s", msg);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_EGRESS);
	ck_assert_uint_eq(conf->metrics.series_limit, 77);
	conf_free(&conf);

	/* an error in the nested file is named by it, at its line */
	write_file(dir, "conf.d/dir.conf", "\ntap = { direction = \"up\"; };\n");
	ck_assert_ptr_null(conf_load(path, &err));
	snprintf(text, sizeof(text), "%s/conf.d/dir.conf", dir);
	ck_assert_str_eq(err.file, text);
	ck_assert_int_eq(err.line, 2);
	ck_assert_str_eq(err.key, "tap.direction");

	write_file(dir, "conf.d/tap.conf", "# x\n@include \"gone.conf\"\n");
	ck_assert_ptr_null(conf_load(path, &err));
	conf_error_format(&err, msg, sizeof(msg));
	snprintf(text, sizeof(text),
		 "%s/conf.d/tap.conf:2: cannot open include file %s/conf.d/gone.conf: "
		 "No such file or directory", dir, dir);
	ck_assert_str_eq(msg, text);

	write_file(dir, "conf.d/tap.conf", "@include \"tap.conf\"\n");
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(err.msg, "nested more than 10 deep"), "%s", err.msg);

	snprintf(text, sizeof(text), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(text), 0);
}
END_TEST

/* What libconfig itself reads past: an @include line inside a comment or
 * a string is left to it (not read); a NUL byte, after which libconfig
 * would silently read nothing more, is refused; so are a device and a
 * configuration that, its includes read in, passes 16 MiB. */
START_TEST(test_source_hostile)
{
	static const char nul[] = "\0tap = { direction = \"sideways\"; };\n";
	char dir[] = "/tmp/check_conf_src.XXXXXX", path[512], text[1024], msg[1100];
	struct conf_error err;
	struct qtap_conf *conf;
	FILE *f;
	int i;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/qtap.conf", dir);
	write_file(dir, "qtap.conf", "/*\n@include \"gone.conf\"\n*/\n"
		   "metrics = { series_limit = 77; }; /* a\n b */ tap = { direction =\n"
		   "\"egress\"; }; # /*\n"
		   "stacks = { s = { plugins = ( { type = \"http_capture\"; config = {\n"
		   "  level = \"full\"; }; } ); }; }; // \"\n"
		   "@include \"inc.conf\"\n");
	write_file(dir, "inc.conf", "capture = { workers = 3; };\n");
	conf = conf_load(path, &err);
	conf_error_format(&err, msg, sizeof(msg));
	ck_assert_msg(conf != NULL, "%s", msg);
	ck_assert_uint_eq(conf->metrics.series_limit, 77);
	ck_assert_int_eq(conf->tap.direction, CONF_DIRECTION_EGRESS);
	ck_assert_uint_eq(conf->capture.workers, 3);
	conf_free(&conf);
	/* an @include line inside a string spanning lines is the string's */
	write_file(dir, "qtap.conf", "stacks = { s = { plugins = ( { type = \"http_capture\"; "
		   "config = { level = \"full\n@include \\\"gone.conf\"; }; } ); }; };\n");
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_msg(strstr(err.msg, "invalid value"), "%s", err.msg);
	/* (after a comment that ends, includes are read again) */
	write_file(dir, "qtap.conf", "/* x */\n@include \"gone.conf\"\n");
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_msg(strstr(err.msg, "cannot open include file"), "%s", err.msg);

	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("metrics = { series_limit = 77; };\n", f);
	fwrite(nul, 1, sizeof(nul) - 1, f);
	fclose(f);
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_int_eq(errno, EINVAL);
	conf_error_format(&err, msg, sizeof(msg));
	snprintf(text, sizeof(text), "%s:2: a NUL byte in the file", path);
	ck_assert_str_eq(msg, text);

	ck_assert_ptr_null(conf_load("/dev/zero", &err));
	ck_assert_int_eq(errno, EINVAL);
	conf_error_format(&err, msg, sizeof(msg));
	ck_assert_str_eq(msg, "/dev/zero: cannot open: not a regular file");
	write_file(dir, "qtap.conf", "# x\n@include \"/dev/zero\"\n");
	ck_assert_ptr_null(conf_load(path, &err));
	conf_error_format(&err, msg, sizeof(msg));
	snprintf(text, sizeof(text), "%s:2: cannot open include file /dev/zero: not a regular file",
		 path);
	ck_assert_str_eq(msg, text);

	/* a file of 1 MiB of comments, included 17 times */
	snprintf(text, sizeof(text), "%s/big.conf", dir);
	f = fopen(text, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < 16384; i++)
		fprintf(f, "#%062d\n", 0);
	fclose(f);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < 17; i++)
		fputs("@include \"big.conf\"\n", f);
	fclose(f);
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_int_eq(errno, EFBIG);
	ck_assert_msg(strstr(err.msg, "configuration larger than 16 MiB with its includes"), "%s",
		      err.msg);
	snprintf(text, sizeof(text), "%s/big.conf", dir);
	ck_assert_str_eq(err.file, text);

	/* empty files included over and over: counted, not only their bytes */
	write_file(dir, "leaf.conf", "");
	text[0] = '\0';
	for (i = 0; i < 40; i++)
		strcat(text, "@include \"leaf.conf\"\n");
	write_file(dir, "mid.conf", text);
	text[0] = '\0';
	for (i = 0; i < 40; i++)
		strcat(text, "@include \"mid.conf\"\n");
	write_file(dir, "qtap.conf", text);
	ck_assert_ptr_null(conf_load(path, &err));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(err.msg, "more than 1024 files included"), "%s", err.msg);

	/* a comment left open at the end of an included file goes on after
	 * it: an @include line there is the comment's */
	write_file(dir, "open.conf", "metrics = { series_limit = 77; };\n/* begun here\n");
	write_file(dir, "qtap.conf", "@include \"open.conf\"\n@include \"gone.conf\"\n*/\n");
	conf = conf_load(path, &err);
	conf_error_format(&err, msg, sizeof(msg));
	ck_assert_msg(conf != NULL, "%s", msg);
	ck_assert_uint_eq(conf->metrics.series_limit, 77);
	conf_free(&conf);

	/* a pipe that never ends its line is not read into memory */
	snprintf(text, sizeof(text), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(text, 0600), 0);
	{
		pid_t child = fork();
		int status;

		ck_assert_int_ge(child, 0);
		if (child == 0) {
			static char chunk[65536];
			FILE *w = fopen(text, "w");

			memset(chunk, 'a', sizeof(chunk));
			for (i = 0; w && i < 17 * 16 + 1; i++)
				if (fwrite(chunk, 1, sizeof(chunk), w) != sizeof(chunk))
					break;
			_exit(0);
		}
		ck_assert_ptr_null(conf_load(text, &err));
		ck_assert_int_eq(errno, EFBIG);
		ck_assert_msg(strstr(err.msg, "larger than 16 MiB"), "%s", err.msg);
		ck_assert_int_eq(waitpid(child, &status, 0), child);
	}

	snprintf(msg, sizeof(msg), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(msg), 0);
}
END_TEST

START_TEST(test_error_missing_file)
{
	struct conf_error err;
	struct qtap_conf *conf = conf_load("/nonexistent/qtap.conf", &err);
	char msg[1100];

	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(err.file, "/nonexistent/qtap.conf");
	ck_assert_int_eq(err.line, 0);
	ck_assert_str_eq(err.key, "");
	conf_error_format(&err, msg, sizeof(msg));
	ck_assert_str_eq(msg, "/nonexistent/qtap.conf: cannot open: No such file or directory");

	/* A folder is not an empty file. */
	conf = conf_load("/", &err);
	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, EISDIR);
	ck_assert_int_eq(err.line, 0);

	conf = conf_load("/nonexistent/qtap.conf", NULL);
	ck_assert_ptr_null(conf);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* --- matching ------------------------------------------------------------- */

START_TEST(test_stack_for_host)
{
	struct qtap_conf *conf = load_ok(
		"stacks = { a = { }; b = { }; c = { }; };\n"
		"tap = { http = { stack = \"c\"; }; endpoints = (\n"
		"  { domain = \"API.example.com\"; http = { stack = \"a\"; }; },\n"
		"  { domain = \"*.example.com\"; http = { stack = \"b\"; }; }\n"
		"); };\n");
	const struct conf_stack *a = &conf->stacks[0], *b = &conf->stacks[1],
				*c = &conf->stacks[2];

	ck_assert_ptr_eq(conf_stack_for_host(conf, "api.example.com"), a);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "Api.Example.COM"), a);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "api.example.com:8443"), a);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "api.example.com."), a);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "www.example.com"), b);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "a.b.EXAMPLE.com"), b);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "example.com"), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "badexample.com"), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "api.example.com.evil.net"), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "10.0.0.1"), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "[::1]:80"), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, ""), c);
	ck_assert_ptr_eq(conf_stack_for_host(conf, NULL), c);
	conf_free(&conf);

	/* Without tap.http.stack only endpoints get a stack. */
	conf = load_ok("stacks = { a = { }; };\ntap = { endpoints = (\n"
		       "  { domain = \"x.org\"; http = { stack = \"a\"; }; }\n); };\n");
	ck_assert_ptr_eq(conf_stack_for_host(conf, "x.org"), &conf->stacks[0]);
	ck_assert_ptr_null(conf_stack_for_host(conf, "y.org"));
	conf_free(&conf);

	/* A domain written fully qualified (a final dot) matches as the
	 * host does, with or without one. */
	conf = load_ok("stacks = { a = { }; b = { }; };\ntap = { endpoints = (\n"
		       "  { domain = \"x.org.\"; http = { stack = \"a\"; }; },\n"
		       "  { domain = \"*.y.org.\"; http = { stack = \"b\"; }; }\n); };\n");
	ck_assert_ptr_eq(conf_stack_for_host(conf, "x.org"), &conf->stacks[0]);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "X.org."), &conf->stacks[0]);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "w.y.org"), &conf->stacks[1]);
	ck_assert_ptr_eq(conf_stack_for_host(conf, "w.y.org.:443"), &conf->stacks[1]);
	ck_assert_ptr_null(conf_stack_for_host(conf, "y.org"));
	ck_assert_ptr_null(conf_stack_for_host(conf, "x.org.x"));
	conf_free(&conf);
}
END_TEST

START_TEST(test_exe_filtered_exclude)
{
	struct qtap_conf *conf = load_ok(
		"tap = { filters = { custom = (\n"
		"  { exe = \"/usr/bin/ssh\"; },\n"
		"  { exe = \"/usr/lib/jvm/\"; strategy = \"prefix\"; },\n"
		"  { exe = \"/chrome\"; strategy = \"suffix\"; },\n"
		"  { exe = \"python\"; strategy = \"contains\"; },\n"
		"  { exe = \"^/opt/[a-z]+/bin/node$\"; strategy = \"regex\"; }\n"
		"); }; };\n");

	ck_assert(conf_exe_filtered(conf, "/usr/bin/ssh"));
	ck_assert(!conf_exe_filtered(conf, "/usr/bin/ssh-agent"));
	ck_assert(!conf_exe_filtered(conf, "/usr/bin/sshd"));
	ck_assert(conf_exe_filtered(conf, "/usr/lib/jvm/java-17/bin/java"));
	ck_assert(!conf_exe_filtered(conf, "/usr/lib/jv"));
	ck_assert(conf_exe_filtered(conf, "/opt/google/chrome/chrome"));
	ck_assert(!conf_exe_filtered(conf, "/opt/google/chrome/chrome-sandbox"));
	ck_assert(conf_exe_filtered(conf, "/usr/bin/python3.11"));
	ck_assert(conf_exe_filtered(conf, "/opt/app/bin/node"));
	ck_assert(!conf_exe_filtered(conf, "/opt/app2/bin/node"));
	ck_assert(!conf_exe_filtered(conf, "/opt/app/bin/nodejs"));
	ck_assert(!conf_exe_filtered(conf, "/usr/bin/curl"));
	ck_assert(!conf_exe_filtered(conf, NULL));
	conf_free(&conf);
}
END_TEST

START_TEST(test_exe_filtered_only)
{
	struct qtap_conf *conf = load_ok(
		"tap = { filters = { custom = (\n"
		"  { exe = \"/usr/bin/\"; strategy = \"prefix\"; only = true; },\n"
		"  { exe = \"nginx\"; strategy = \"contains\"; only = true; },\n"
		"  { exe = \"/usr/bin/ssh\"; only = false; }\n"
		"); }; };\n");

	/* Allowed by an only entry. */
	ck_assert(!conf_exe_filtered(conf, "/usr/bin/curl"));
	ck_assert(!conf_exe_filtered(conf, "/usr/sbin/nginx"));
	/* Matches no only entry. */
	ck_assert(conf_exe_filtered(conf, "/usr/sbin/sshd"));
	ck_assert(conf_exe_filtered(conf, "/opt/app"));
	ck_assert(conf_exe_filtered(conf, NULL));
	/* Allowed, but an exclude entry matches. */
	ck_assert(conf_exe_filtered(conf, "/usr/bin/ssh"));
	conf_free(&conf);
}
END_TEST

/* --- the running configuration under RCU --------------------------------- */

static volatile int readers_stop;

static void *reader(void *arg)
{
	unsigned long *reads = arg;

	rcu_register_thread();
	while (!__atomic_load_n(&readers_stop, __ATOMIC_ACQUIRE)) {
		const struct qtap_conf *c;

		rcu_read_lock();
		c = conf_current();
		if (c) {
			/* Touch memory a premature free would poison. */
			ck_assert_uint_ge(c->metrics.series_limit, 1000);
			ck_assert_uint_le(c->metrics.series_limit, 1019);
			ck_assert_uint_eq(c->n_stacks, 1);
			ck_assert_str_eq(c->stacks[0].name, "s");
			(*reads)++;
		}
		rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}

static struct qtap_conf *numbered_conf(unsigned n)
{
	char text[128];

	snprintf(text, sizeof(text),
		 "stacks = { s = { }; }; metrics = { series_limit = %u; };", 1000 + n);
	return load_ok(text);
}

START_TEST(test_publish_current)
{
	pthread_t th[2];
	unsigned long reads[2] = { 0, 0 };
	struct qtap_conf *a;

	rcu_register_thread();
	rcu_read_lock();
	ck_assert_ptr_null(conf_current());
	rcu_read_unlock();

	a = numbered_conf(0);
	conf_publish(a);
	rcu_read_lock();
	ck_assert_ptr_eq(conf_current(), a);
	rcu_read_unlock();
	/* Publishing the same one again keeps it. */
	conf_publish(a);
	rcu_read_lock();
	ck_assert_uint_eq(conf_current()->metrics.series_limit, 1000);
	rcu_read_unlock();

	__atomic_store_n(&readers_stop, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, reader, &reads[i]), 0);
	for (unsigned n = 1; n < 20; n++)
		conf_publish(numbered_conf(n));
	__atomic_store_n(&readers_stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);

	rcu_read_lock();
	ck_assert_uint_eq(conf_current()->metrics.series_limit, 1019);
	rcu_read_unlock();

	conf_publish(NULL);
	rcu_read_lock();
	ck_assert_ptr_null(conf_current());
	rcu_read_unlock();
	rcu_unregister_thread();
}
END_TEST

/* --- the schema's key list against what the parser accepts ---------------- */

/* Adds the schema pattern of every setting under s to list (a buffer of
 * lines, each "\npattern\n"-delimited). */
static void collect_patterns(const config_setting_t *s, const char *pattern,
			     bool map, char **list, size_t *len)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		char child[256], needle[260];

		if (config_setting_is_group(s))
			snprintf(child, sizeof(child), "%s%s%s", pattern,
				 pattern[0] ? "." : "", map ? "*" : config_setting_name(m));
		else if (config_setting_is_list(s))
			snprintf(child, sizeof(child), "%s.[]", pattern);
		else
			continue; /* the elements of a string array */
		snprintf(needle, sizeof(needle), "\n%s\n", child);
		if (!strstr(*list, needle)) {
			*list = realloc(*list, *len + strlen(child) + 2);
			ck_assert_ptr_nonnull(*list);
			strcpy(*list + *len, child);
			strcat(*list + *len, "\n");
			*len += strlen(child) + 1;
		}
		if (config_setting_is_aggregate(m))
			collect_patterns(m, child, !strcmp(child, "stacks"), list, len);
	}
}

/* Whether line is one of the lines of text. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

START_TEST(test_schema_keys_match_parser)
{
	char *path = srcpath("tests/conf/data/every-key.conf");
	char *keys = NULL, *seen = strdup("\n");
	size_t keys_len = 0, seen_len = 1;
	struct conf_error err;
	struct qtap_conf *conf;
	FILE *out;
	config_t cfg;

	/* The file the walk covers is one the parser accepts. */
	conf = conf_load(path, &err);
	ck_assert_msg(conf, "%s", err.msg);
	conf_free(&conf);

	out = open_memstream(&keys, &keys_len);
	ck_assert_ptr_nonnull(out);
	conf_schema_write_keys(out);
	fclose(out);

	config_init(&cfg);
	ck_assert_int_eq(config_read_file(&cfg, path), CONFIG_TRUE);
	collect_patterns(config_root_setting(&cfg), "", false, &seen, &seen_len);
	config_destroy(&cfg);

	/* Every path the parser accepted is in the key list, and every listed
	 * key is used by the file. */
	for (char *p = seen + 1, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
		*nl = '\0';
		ck_assert_msg(has_line(keys, p), "accepted key %s not listed", p);
		*nl = '\n';
	}
	for (char *p = keys, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
		*nl = '\0';
		ck_assert_msg(has_line(seen, p), "listed key %s not in every-key.conf", p);
		*nl = '\n';
	}
	free(seen);
	free(keys);
	free(path);
}
END_TEST

START_TEST(test_schema_man)
{
	char *man = NULL, *keys = NULL, *line, *save = NULL;
	size_t man_len = 0, keys_len = 0;
	FILE *out;

	out = open_memstream(&man, &man_len);
	conf_schema_write_man(out);
	fclose(out);
	out = open_memstream(&keys, &keys_len);
	conf_schema_write_keys(out);
	fclose(out);

	for (line = strtok_r(keys, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char entry[300], *p;
		size_t o = 0;

		/* roff writes '-' as "\-". */
		o += (size_t)snprintf(entry, sizeof(entry), ".TP\n.B ");
		for (p = line; *p && o + 3 < sizeof(entry); p++) {
			if (*p == '-')
				entry[o++] = '\\';
			entry[o++] = *p;
		}
		entry[o++] = '\n';
		entry[o] = '\0';
		ck_assert_msg(strstr(man, entry), "no .TP entry for %s", line);
	}
	ck_assert(strstr(man, "(string, default \\fBall\\fR; one of: \\fBall\\fR, "
			      "\\fBingress\\fR, \\fBegress\\fR"));
	ck_assert(strstr(man, "(integer, default \\fB10000\\fR; from 1 to 10000000)"));
	ck_assert(strstr(man, "(string, required; one of: \\fBhttp_capture\\fR"));
	/* the groups' executables, from the table filter.c matches */
	ck_assert(strstr(man, ".RS\n.TP\n.B kubernetes\nkubelet, kube\\-proxy, "));
	ck_assert(strstr(man, ".B container\\-runtimes\ncontainerd, containerd\\-shim*, "));
	ck_assert_str_eq(conf_group_members(CONF_GROUP_CONTAINER_RUNTIMES)[1], "containerd-shim*");
	ck_assert_ptr_null(conf_group_members(CONF_GROUP_QPOINT));
	/* No line may start a roff request by accident. */
	for (line = strtok_r(man, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		ck_assert_msg(line[0] != '\'' &&
			      (line[0] != '.' || !strncmp(line, ".TP", 3) ||
			       !strncmp(line, ".B ", 3) || !strncmp(line, ".br", 3) ||
			       !strcmp(line, ".RS") || !strcmp(line, ".RE")),
			      "stray request: %s", line);
	free(man);
	free(keys);
}
END_TEST

START_TEST(test_error_format)
{
	struct conf_error err = { .file = "a.conf", .line = 3, .key = "tap.x",
				  .msg = "unknown key" };
	char out[1100];

	conf_error_format(&err, out, sizeof(out));
	ck_assert_str_eq(out, "a.conf:3: tap.x: unknown key");
	err.key[0] = '\0';
	conf_error_format(&err, out, sizeof(out));
	ck_assert_str_eq(out, "a.conf:3: unknown key");
}
END_TEST

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

#define ADD(name)                               \
	tc = tcase_create(#name);               \
	tcase_add_test(tc, name);               \
	suite_add_tcase(s, tc)

	ADD(test_shipped_example);
	ADD(test_shipped_example_uncommented);
	ADD(test_spec_example);
	ADD(test_empty_file_is_defaults);
	ADD(test_every_key);
	ADD(test_inline_values);
	ADD(test_error_unknown_keys);
	ADD(test_error_wrong_types);
	ADD(test_error_bad_enum_file);
	ADD(test_error_int_wrap);
	ADD(test_error_int_wrap_layout);
	ADD(test_error_bad_values);
	ADD(test_error_out_of_range);
	ADD(test_error_stacks);
	ADD(test_error_required);
	ADD(test_error_bad_regex);
	ADD(test_error_syntax);
	ADD(test_error_in_include);
	ADD(test_include_paths);
	ADD(test_source_hostile);
	ADD(test_error_missing_file);
	ADD(test_error_format);
	ADD(test_stack_for_host);
	ADD(test_exe_filtered_exclude);
	ADD(test_exe_filtered_only);
	ADD(test_publish_current);
	ADD(test_schema_keys_match_parser);
	ADD(test_schema_man);
#undef ADD
	return s;
}

int main(void)
{
	return check_run(conf_suite());
}

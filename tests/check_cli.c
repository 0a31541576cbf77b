/* Check suite "cli": option parsing, sizes, TLS probe lists, and that the
 * help and man text come from the one table. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#include "check_run.h"

static int parse(struct cli_args *a, char *err, size_t n, ...)
{
	char *argv[24];
	va_list ap;
	int argc = 0;

	argv[argc++] = (char *)"qtap";
	va_start(ap, n);
	while (argc < 23 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	return cli_parse(argc, argv, a, err, n);
}

START_TEST(test_defaults)
{
	struct cli_args a;
	char err[256];

	ck_assert_int_eq(parse(&a, err, sizeof(err), NULL), 0);
	ck_assert_str_eq(a.config_path, QTAP_CONF_DEFAULT);
	ck_assert(!a.config_given);
	ck_assert_str_eq(a.httpd_listen, "127.0.0.1:10001");
	ck_assert_int_eq(a.log_level, LOG_LEVEL_INFO);
	ck_assert_int_eq(a.log_encoding, LOG_ENCODING_CONSOLE);
	ck_assert_uint_eq(a.tls_probes, CLI_TLS_OPENSSL | CLI_TLS_GNUTLS | CLI_TLS_NODETLS);
	ck_assert(!a.tls_attach_process);
	ck_assert_uint_eq(a.http_buffer_size, 1024 * 1024);
	ck_assert_ptr_null(a.bpf_trace);
	ck_assert_ptr_null(a.validate_path);
}
END_TEST

START_TEST(test_all_options)
{
	struct cli_args a;
	char err[256];

	ck_assert_int_eq(parse(&a, err, sizeof(err), "-c", "/tmp/x.conf", "--httpd-listen",
			       "[::1]:9100", "--log-level", "debug", "--log-encoding", "json",
			       "--tls-probes", "gnutls,gotls", "--tls-attach", "process",
			       "--bpf-trace", "process,exe=curl", "--http-buffer-size", "64k",
			       NULL), 0);
	ck_assert_str_eq(a.config_path, "/tmp/x.conf");
	ck_assert(a.config_given);
	ck_assert_str_eq(a.httpd_listen, "[::1]:9100");
	ck_assert_int_eq(a.log_level, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(a.log_encoding, LOG_ENCODING_JSON);
	ck_assert_uint_eq(a.tls_probes, CLI_TLS_GNUTLS | CLI_TLS_GOTLS);
	ck_assert(a.tls_attach_process);
	ck_assert_str_eq(a.bpf_trace, "process,exe=curl");
	ck_assert_uint_eq(a.http_buffer_size, 65536);
}
END_TEST

START_TEST(test_errors)
{
	struct cli_args a;
	char err[256];

	ck_assert_int_eq(parse(&a, err, sizeof(err), "--log-level", "loud", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--log-level"));
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--httpd-listen", "localhost:80", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--httpd-listen"));
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--tls-probes", "openssl,", NULL), -EINVAL);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--tls-probes", "rustls", NULL), -EINVAL);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--tls-attach", "thread", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--tls-attach"));
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--tls-attach", "library", NULL), 0);
	ck_assert(!a.tls_attach_process);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--bpf-trace", "bogus", NULL), -EINVAL);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--http-buffer-size", "12", NULL), -EINVAL);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--http-buffer-size", "2g", NULL), -EINVAL);
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--nope", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "--nope"));
	/* a short one inside a cluster: its letter, not the word before */
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--log-level", "info", "-xV", NULL), -EINVAL);
	ck_assert_str_eq(err, "unknown option -x");
	ck_assert_int_eq(parse(&a, err, sizeof(err), "-Vx", NULL), -EINVAL);
	ck_assert_str_eq(err, "unknown option -x");
	/* a long one given an argument it does not take: named whole */
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--help=x", NULL), -EINVAL);
	ck_assert_str_eq(err, "option --help takes no argument");
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--version=1", NULL), -EINVAL);
	ck_assert_str_eq(err, "option --version takes no argument");
	ck_assert_int_eq(parse(&a, err, sizeof(err), "--config", NULL), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "needs an argument"));
	ck_assert_int_eq(parse(&a, err, sizeof(err), "stray", NULL), -EINVAL);
}
END_TEST

START_TEST(test_sizes)
{
	size_t v = 7;

	ck_assert_int_eq(cli_size_parse("1024", &v), 0);
	ck_assert_uint_eq(v, 1024);
	ck_assert_int_eq(cli_size_parse("2K", &v), 0);
	ck_assert_uint_eq(v, 2048);
	ck_assert_int_eq(cli_size_parse("3MiB", &v), 0);
	ck_assert_uint_eq(v, 3u << 20);
	ck_assert_int_eq(cli_size_parse("1g", &v), 0);
	ck_assert_uint_eq(v, 1u << 30);
	ck_assert_int_eq(cli_size_parse("-1", &v), -EINVAL);
	ck_assert_int_eq(cli_size_parse("1x", &v), -EINVAL);
	ck_assert_int_eq(cli_size_parse("", &v), -EINVAL);
	ck_assert_int_eq(cli_size_parse("99999999999999999999", &v), -ERANGE);
	ck_assert_uint_eq(v, 1u << 30); /* untouched on failure */
}
END_TEST

START_TEST(test_tls_probes)
{
	unsigned bits = 99;

	ck_assert_int_eq(cli_tls_probes_parse("none", &bits), 0);
	ck_assert_uint_eq(bits, 0);
	ck_assert_int_eq(cli_tls_probes_parse("openssl,gnutls,nodetls,gotls", &bits), 0);
	ck_assert_uint_eq(bits, 15);
	ck_assert_int_eq(cli_tls_probes_parse("", &bits), -EINVAL);
	ck_assert_int_eq(cli_tls_probes_parse("openssl,,gnutls", &bits), -EINVAL);
}
END_TEST

/* --help and the man page list every option of the table. */
START_TEST(test_help_and_man_from_table)
{
	char *help = NULL, *man = NULL;
	size_t hn = 0, mn = 0, i;
	FILE *h = open_memstream(&help, &hn), *m = open_memstream(&man, &mn);

	cli_write_help(h);
	cli_write_man(m);
	fclose(h);
	fclose(m);
	for (i = 0; i < cli_n_options; i++) {
		char want[64];
		const char *p;
		size_t j = 0;

		snprintf(want, sizeof(want), "--%s", cli_options[i].long_name);
		ck_assert_msg(strstr(help, want), "%s missing from --help", want);
		/* the man page escapes every '-' */
		j = (size_t)snprintf(want, sizeof(want), "\\fB\\-\\-");
		for (p = cli_options[i].long_name; *p && j < sizeof(want) - 3; p++) {
			if (*p == '-')
				want[j++] = '\\';
			want[j++] = *p;
		}
		want[j] = '\0';
		ck_assert_msg(strstr(man, want), "%s missing from the man text", want);
	}
	free(help);
	free(man);
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_all_options);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_tls_probes);
	tcase_add_test(tc, test_help_and_man_from_table);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(cli_suite());
}

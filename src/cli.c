#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "capture/capture.h"
#include "http/http.h"
#include "util/roff.h"

enum {
	OPT_CONFIG = 'c',
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
	OPT_HTTPD_LISTEN = 256,
	OPT_LOG_LEVEL,
	OPT_LOG_ENCODING,
	OPT_TLS_PROBES,
	OPT_TLS_ATTACH,
	OPT_BPF_TRACE,
	OPT_HTTP_BUFFER_SIZE,
	OPT_VALIDATE,
};

/* The order of this table is the order of --help and qtap(8). */
const struct cli_option cli_options[] = {
	{ "config", 'c', "FILE", "configuration file (default " QTAP_CONF_DEFAULT ")",
	  "Read the configuration from FILE instead of " QTAP_CONF_DEFAULT ". "
	  "When the default file does not exist, qtap runs with the built-in "
	  "defaults and says so; a file named with --config must exist." },
	{ "httpd-listen", 0, "ADDR:PORT", "metrics endpoints address (default " HTTP_LISTEN_DEFAULT ")",
	  "Serve /metrics, /system/metrics, /healthz and /readyz on this numeric "
	  "address and port, e.g. 127.0.0.1:10001 or [::1]:10001. The endpoints "
	  "have no authentication: keep them on loopback or behind a firewall." },
	{ "log-level", 0, "LEVEL", "debug, info, warn or error (default info)",
	  "Lowest level logged on standard error: debug, info, warn or error. "
	  "Connection reports are written at debug level." },
	{ "log-encoding", 0, "ENC", "json or console (default console)",
	  "console writes one human-readable line per event; json writes one "
	  "JSON object per line with ts, level and msg fields." },
	{ "tls-probes", 0, "LIST", "TLS libraries to probe: openssl,gnutls,nodetls,gotls or none",
	  "Comma-separated TLS library kinds whose read and write functions are "
	  "probed for plaintext: openssl (OpenSSL 1.1, 3.x and BoringSSL-style "
	  "exports), gnutls, nodetls (OpenSSL linked into an executable such as "
	  "node), gotls (Go crypto/tls, not available yet: a warning), or none. "
	  "The default is openssl,gnutls,nodetls." },
	{ "tls-attach", 0, "MODE", "library or process (default library)",
	  "How the TLS probes are attached. library: once per library file, for "
	  "every process, so that a process is seen from its first TLS call "
	  "whenever it starts; a process the filters leave out still takes each "
	  "probe's breakpoint (a few microseconds per TLS call) but gives nothing. "
	  "process: for each process the filters allow, when it is found at "
	  "start, execs, forks or a reload allows it, and detached when it exits; "
	  "a process the filters leave out runs its TLS calls at full speed. "
	  "A process attached this way is seen from a few milliseconds after its "
	  "exec: TLS calls it makes before then (a short-lived client's) are not "
	  "seen. Use process on hosts whose traced processes are long-running "
	  "services and whose other processes make many TLS calls." },
	{ "bpf-trace", 0, "FILTER", "log one line per traced kernel event matching FILTER",
	  "Log one line per traced event at info level: pid, comm, operation, "
	  "fd, size (bytes moved, or for a close those sent and received) and the "
	  "decision taken (for a process, track or forget; for a connection, its "
	  "protocol, undecided until its first bytes). After process events were "
	  "lost, the processes found in /proc or gone from it are lines of "
	  "operation found or gone. FILTER is a comma-separated "
	  "list of modules (process, syscall, openssl, gnutls, or all) and "
	  "optional exe=NAME terms (at most 16) that keep only events of "
	  "executables whose name or path contains NAME. "
	  "The openssl and gnutls lines give each TLS read or write with its fd, "
	  "connection, protocol decision and the first line of its plaintext when "
	  "it is an HTTP/1 request or status line (a query string shows as ?...) "
	  "or HTTP/2's preface; any other line is left out (it may be a secret). "
	  "For troubleshooting only: it costs a log line per event." },
	{ "http-buffer-size", 0, "SIZE", "bytes of HTTP body kept per message (default 1m)",
	  "Bytes of each HTTP message body kept for records at capture level full; "
	  "longer bodies are truncated and marked so. SIZE takes an optional k, m "
	  "or g suffix (powers of 1024); from 1k to 1g. Default 1m. Checked, and "
	  "not used yet: this version does not parse HTTP." },
	{ "validate", 0, "FILE", "check a configuration file and exit",
	  "Parse and check FILE, print what is wrong with it (file, line, key) "
	  "and exit with status 0 when it is valid or 78 when it is not. Nothing "
	  "is started. Suitable for ExecStartPre= and for checking a file before "
	  "sending SIGHUP." },
	{ "version", 'V', NULL, "print the version and exit",
	  "Print the version and source commit and exit." },
	{ "help", 'h', NULL, "print this help and exit",
	  "Print a summary of the options and exit." },
};
const size_t cli_n_options = sizeof(cli_options) / sizeof(cli_options[0]);

static const int opt_codes[] = {
	OPT_CONFIG, OPT_HTTPD_LISTEN, OPT_LOG_LEVEL, OPT_LOG_ENCODING, OPT_TLS_PROBES,
	OPT_TLS_ATTACH, OPT_BPF_TRACE, OPT_HTTP_BUFFER_SIZE, OPT_VALIDATE, OPT_VERSION, OPT_HELP,
};
_Static_assert(sizeof(opt_codes) / sizeof(opt_codes[0]) ==
		       sizeof(cli_options) / sizeof(cli_options[0]),
	       "every option has a code");

int cli_size_parse(const char *s, size_t *ret)
{
	unsigned long long v, mult = 1;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k':
		mult = 1ULL << 10;
		break;
	case 'm':
		mult = 1ULL << 20;
		break;
	case 'g':
		mult = 1ULL << 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && strcasecmp(end + 1, "ib") && strcasecmp(end + 1, "b"))
		return -EINVAL;
	if (v > SIZE_MAX / mult)
		return -ERANGE;
	*ret = (size_t)(v * mult);
	return 0;
}

int cli_tls_probes_parse(const char *s, unsigned *ret)
{
	static const struct {
		const char *name;
		unsigned bit;
	} kinds[] = {
		{ "openssl", CLI_TLS_OPENSSL },
		{ "gnutls", CLI_TLS_GNUTLS },
		{ "nodetls", CLI_TLS_NODETLS },
		{ "gotls", CLI_TLS_GOTLS },
	};
	unsigned bits = 0;
	const char *p = s;

	if (!strcmp(s, "none")) {
		*ret = 0;
		return 0;
	}
	while (*p) {
		size_t n = strcspn(p, ","), i;

		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
			if (strlen(kinds[i].name) == n && !strncmp(p, kinds[i].name, n))
				break;
		if (i == sizeof(kinds) / sizeof(kinds[0]))
			return -EINVAL;
		bits |= kinds[i].bit;
		p += n;
		if (*p == ',' && *++p == '\0')
			return -EINVAL;
	}
	if (!bits)
		return -EINVAL;
	*ret = bits;
	return 0;
}

static void fill_longopts(struct option *lo)
{
	size_t i;

	for (i = 0; i < cli_n_options; i++) {
		lo[i].name = cli_options[i].long_name;
		lo[i].has_arg = cli_options[i].arg ? required_argument : no_argument;
		lo[i].flag = NULL;
		lo[i].val = opt_codes[i];
	}
	memset(&lo[i], 0, sizeof(lo[i]));
}

int cli_parse(int argc, char **argv, struct cli_args *ret, char *err, size_t errlen)
{
	struct option lo[sizeof(opt_codes) / sizeof(opt_codes[0]) + 1];
	struct cli_args a = {
		.config_path = QTAP_CONF_DEFAULT,
		.httpd_listen = HTTP_LISTEN_DEFAULT,
		.log_level = LOG_LEVEL_INFO,
		.log_encoding = LOG_ENCODING_CONSOLE,
		.tls_probes = CLI_TLS_DEFAULT,
		.http_buffer_size = CLI_HTTP_BUFFER_DEFAULT,
	};
	int c;

	fill_longopts(lo);
	/* 0: getopt starts afresh, also after a call left inside a cluster */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:hV", lo, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG:
			a.config_path = optarg;
			a.config_given = true;
			break;
		case OPT_HTTPD_LISTEN: {
			struct sockaddr_storage ss;
			unsigned len;

			if (http_listen_parse(optarg, &ss, &len)) {
				snprintf(err, errlen, "--httpd-listen: \"%s\" is not ADDR:PORT with a numeric address", optarg);
				return -EINVAL;
			}
			a.httpd_listen = optarg;
			break;
		}
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &a.log_level)) {
				snprintf(err, errlen, "--log-level: \"%s\" is not one of debug, info, warn, error", optarg);
				return -EINVAL;
			}
			break;
		case OPT_LOG_ENCODING:
			if (log_encoding_parse(optarg, &a.log_encoding)) {
				snprintf(err, errlen, "--log-encoding: \"%s\" is not json or console", optarg);
				return -EINVAL;
			}
			break;
		case OPT_TLS_PROBES:
			if (cli_tls_probes_parse(optarg, &a.tls_probes)) {
				snprintf(err, errlen, "--tls-probes: \"%s\" is not a list of openssl, gnutls, nodetls, gotls, or none", optarg);
				return -EINVAL;
			}
			break;
		case OPT_TLS_ATTACH:
			if (!strcmp(optarg, "library")) {
				a.tls_attach_process = false;
			} else if (!strcmp(optarg, "process")) {
				a.tls_attach_process = true;
			} else {
				snprintf(err, errlen, "--tls-attach: \"%s\" is not library or process", optarg);
				return -EINVAL;
			}
			break;
		case OPT_BPF_TRACE:
			if (capture_trace_parse(optarg, NULL)) {
				snprintf(err, errlen, "--bpf-trace: \"%s\" is not a list of modules (all, process, syscall, openssl, gnutls) and at most 16 exe=NAME terms", optarg);
				return -EINVAL;
			}
			a.bpf_trace = optarg;
			break;
		case OPT_HTTP_BUFFER_SIZE:
			if (cli_size_parse(optarg, &a.http_buffer_size) ||
			    a.http_buffer_size < CLI_HTTP_BUFFER_MIN ||
			    a.http_buffer_size > CLI_HTTP_BUFFER_MAX) {
				snprintf(err, errlen, "--http-buffer-size: \"%s\" is not a size from 1k to 1g", optarg);
				return -EINVAL;
			}
			break;
		case OPT_VALIDATE:
			a.validate_path = optarg;
			break;
		case OPT_VERSION:
			a.version = true;
			break;
		case OPT_HELP:
			a.help = true;
			break;
		case ':':
			snprintf(err, errlen, "option %s needs an argument", argv[optind - 1]);
			return -EINVAL;
		default:
			/* a known one: a long one given an argument it does
			 * not take (--help=x) */
			for (size_t i = 0; optopt && i < cli_n_options; i++) {
				if (opt_codes[i] == optopt) {
					snprintf(err, errlen, "option --%s takes no argument",
						 cli_options[i].long_name);
					return -EINVAL;
				}
			}
			/* a short one may sit inside a cluster (-xV), where
			 * optind has not moved past it: its letter; a long
			 * one, the word */
			if (optopt)
				snprintf(err, errlen, "unknown option -%c", optopt);
			else
				snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind]);
		return -EINVAL;
	}
	*ret = a;
	return 0;
}

void cli_write_usage(FILE *out)
{
	fputs("Usage: qtap [OPTION]...\n", out);
}

void cli_write_help(FILE *out)
{
	size_t i;

	cli_write_usage(out);
	fputs("See the HTTP traffic of every process through eBPF and serve it as\n"
	      "Prometheus metrics, transaction records and connection reports.\n\n",
	      out);
	for (i = 0; i < cli_n_options; i++) {
		const struct cli_option *o = &cli_options[i];
		char left[64];

		snprintf(left, sizeof(left), "%c%c%c --%s%s%s", o->short_name ? '-' : ' ',
			 o->short_name ? o->short_name : ' ', o->short_name ? ',' : ' ',
			 o->long_name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(out, "  %-30s %s\n", left, o->help);
	}
	fputs("\nSignals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop.\n"
	      "Exit status: 0 stopped cleanly, 1 could not start, 64 usage error,\n"
	      "78 configuration error.  See qtap(8), qtap.conf(5), qtap-metrics(7).\n",
	      out);
}

void cli_write_man(FILE *out)
{
	size_t i;

	for (i = 0; i < cli_n_options; i++) {
		const struct cli_option *o = &cli_options[i];

		fputs(".TP\n", out);
		if (o->short_name)
			fprintf(out, "\\fB\\-%c\\fR, ", o->short_name);
		fputs("\\fB\\-\\-", out);
		roff_puts(out, o->long_name);
		fputs("\\fR", out);
		if (o->arg)
			fprintf(out, " \\fI%s\\fR", o->arg);
		fputc('\n', out);
		roff_puts(out, o->doc);
		fputc('\n', out);
	}
}

/* The command line: one table of options drives getopt_long, --help and
 * the OPTIONS section of qtap(8). */
#ifndef QTAP_CLI_H
#define QTAP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util/log.h"

/* Exit statuses (sysexits). */
#define QTAP_EXIT_USAGE 64
#define QTAP_EXIT_FAILURE 1

/* --tls-probes bits */
#define CLI_TLS_OPENSSL (1u << 0)
#define CLI_TLS_GNUTLS (1u << 1)
#define CLI_TLS_NODETLS (1u << 2)
#define CLI_TLS_GOTLS (1u << 3)
#define CLI_TLS_DEFAULT (CLI_TLS_OPENSSL | CLI_TLS_GNUTLS | CLI_TLS_NODETLS)

#define CLI_HTTP_BUFFER_DEFAULT (1024 * 1024)
#define CLI_HTTP_BUFFER_MIN 1024
#define CLI_HTTP_BUFFER_MAX (1024 * 1024 * 1024)

struct cli_option {
	const char *long_name;
	char short_name;   /* 0: none */
	const char *arg;   /* argument name; NULL: takes none */
	const char *help;  /* one line for --help */
	const char *doc;   /* the paragraph of qtap(8) (roff-safe text) */
};

extern const struct cli_option cli_options[];
extern const size_t cli_n_options;

struct cli_args {
	const char *config_path;
	bool config_given;
	const char *httpd_listen;
	enum log_level log_level;
	enum log_encoding log_encoding;
	unsigned tls_probes;       /* CLI_TLS_* bits */
	bool tls_attach_process;   /* --tls-attach process */
	const char *bpf_trace;     /* NULL: off */
	size_t http_buffer_size;
	const char *validate_path; /* --validate: check this file and exit */
	bool version;
	bool help;
};

/* Parses argv into *ret (defaults filled in first).  0, or -EINVAL with a
 * message in err. */
int cli_parse(int argc, char **argv, struct cli_args *ret, char *err, size_t errlen);

/* "64k", "1m", "1048576" → bytes; 0 or -EINVAL (-ERANGE past SIZE_MAX). */
int cli_size_parse(const char *s, size_t *ret);
/* "openssl,gnutls" / "none" → CLI_TLS_* bits; 0 or -EINVAL. */
int cli_tls_probes_parse(const char *s, unsigned *ret);

void cli_write_usage(FILE *out);
void cli_write_help(FILE *out);
/* The OPTIONS section body of qtap(8), as roff. */
void cli_write_man(FILE *out);

#endif

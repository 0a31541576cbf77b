/* Writes the generated parts of the documentation from the tables that
 * drive the program itself, so that the two cannot drift apart:
 *
 *   qtap-docgen man TEMPLATE   copy TEMPLATE to stdout, replacing the lines
 *                              @CLI_OPTIONS@, @CONF_KEYS@ and
 *                              @METRIC_FAMILIES@ with the references
 *   qtap-docgen options|keys|families
 *                              one name per line (for the sync test) */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "conf/conf.h"
#include "metrics/metrics.h"

static int expand(const char *path)
{
	char line[4096];
	FILE *in = fopen(path, "r");

	if (!in) {
		perror(path);
		return 1;
	}
	while (fgets(line, sizeof(line), in)) {
		if (!strcmp(line, "@CLI_OPTIONS@\n"))
			cli_write_man(stdout);
		else if (!strcmp(line, "@CONF_KEYS@\n"))
			conf_schema_write_man(stdout);
		else if (!strcmp(line, "@METRIC_FAMILIES@\n"))
			metrics_defs_write_man(stdout);
		else
			fputs(line, stdout);
	}
	fclose(in);
	return ferror(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc == 3 && !strcmp(argv[1], "man"))
		return expand(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "options")) {
		for (i = 0; i < cli_n_options; i++)
			printf("--%s\n", cli_options[i].long_name);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "keys")) {
		conf_schema_write_keys(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "families")) {
		for (i = 0; i < M__COUNT; i++)
			printf("%s\n", metric_defs[i].name);
		return 0;
	}
	fputs("usage: qtap-docgen man TEMPLATE | options | keys | families\n", stderr);
	return 64;
}

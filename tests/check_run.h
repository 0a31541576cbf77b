/* The main() of every Check suite: run it, exit 0 only when every case
 * passed.  Output goes where CK_TAP_LOG_FILE_NAME and CK_VERBOSITY say
 * (TAP on stdout under make check). */
#ifndef QTAP_TESTS_CHECK_RUN_H
#define QTAP_TESTS_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif

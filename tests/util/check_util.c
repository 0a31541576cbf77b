/* Check suite "util": the growable buffer, JSON escaping, log option
 * parsing and the service manager notification. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/notify.h"

#include "../check_run.h"

START_TEST(test_buf_append_grows)
{
	struct buf b = BUF_INIT;
	int i;

	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(buf_append_str(&b, "0123456789"), 0);
	ck_assert_uint_eq(b.len, 10000);
	ck_assert(b.cap >= b.len);
	ck_assert_int_eq(memcmp(b.data + 9990, "0123456789", 10), 0);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_buf_printf_long)
{
	struct buf b = BUF_INIT;
	char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(buf_printf(&b, "[%s]%d", big, 42), 0);
	ck_assert_uint_eq(b.len, 4999 + 4);
	ck_assert_int_eq(b.data[0], '[');
	ck_assert_int_eq(memcmp(b.data + 5000, "]42", 3), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_u64)
{
	struct buf b = BUF_INIT;

	buf_append_u64(&b, 0);
	buf_append_char(&b, ' ');
	buf_append_u64(&b, 18446744073709551615ULL);
	buf_append_char(&b, ' ');
	buf_append_u64(&b, 1000);
	ck_assert_uint_eq(b.len, strlen("0 18446744073709551615 1000"));
	ck_assert_int_eq(memcmp(b.data, "0 18446744073709551615 1000", b.len), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_steal)
{
	struct buf b = BUF_INIT;
	size_t n;
	char *p;

	buf_append_str(&b, "abc");
	p = buf_steal(&b, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(memcmp(p, "abc", 3), 0);
	ck_assert_ptr_null(b.data);
	free(p);
}
END_TEST

START_TEST(test_json_escape)
{
	struct buf b = BUF_INIT;

	ck_assert_int_eq(buf_append_json_str(&b, "a\"b\\c\nd\te\x01\xc3\xa9"), 0);
	buf_append_char(&b, '\0');
	ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u00e9\"");
	buf_reset(&b);
	/* three and four bytes, DEL; then not UTF-8: a lone continuation, a
	 * truncated sequence, an overlong form, a surrogate, past U+10FFFF */
	ck_assert_int_eq(buf_append_json_str(&b, "\xe2\x82\xac\xf0\x9f\x98\x80\x7f|\x80|\xe2\x82|"
					     "\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80"), 0);
	buf_append_char(&b, '\0');
	ck_assert_str_eq(b.data, "\"\\u20ac\\ud83d\\ude00\\u007f|\\ufffd|\\ufffd\\ufffd|"
				 "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
				 "\\ufffd\\ufffd\\ufffd\\ufffd\"");
	buf_free(&b);
}
END_TEST

START_TEST(test_log_parse)
{
	enum log_level l;
	enum log_encoding e;

	ck_assert_int_eq(log_level_parse("debug", &l), 0);
	ck_assert_int_eq(l, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_level_parse("error", &l), 0);
	ck_assert_int_eq(l, LOG_LEVEL_ERROR);
	ck_assert_int_eq(log_level_parse("verbose", &l), -EINVAL);
	ck_assert_int_eq(l, LOG_LEVEL_ERROR); /* untouched on failure */
	ck_assert_int_eq(log_encoding_parse("json", &e), 0);
	ck_assert_int_eq(e, LOG_ENCODING_JSON);
	ck_assert_int_eq(log_encoding_parse("xml", &e), -EINVAL);
}
END_TEST

/* A console line stays one line whatever the message holds (a process's
 * name or path is anyone's to choose): control bytes are escaped. */
START_TEST(test_log_console_one_line)
{
	char path[] = "/tmp/check_util_log.XXXXXX", buf[512];
	int fd = mkstemp(path), saved = dup(2);
	const char *nl;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	log_setup(LOG_LEVEL_INFO, LOG_ENCODING_CONSOLE);
	dup2(fd, 2);
	log_info("comm=%s exe=%s", "x\n2026-01-01T00:00:00.000Z info  forged", "/tmp/a\tb\x01\x7f");
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	nl = strchr(buf, '\n');
	ck_assert_ptr_nonnull(nl);
	ck_assert_msg(!nl[1], "more than one line: %s", buf);
	ck_assert_msg(strstr(buf, "comm=x\\n2026-01-01T00:00:00.000Z info  forged "
				  "exe=/tmp/a\\tb\\x01\\x7f\n"), "%s", buf);
}
END_TEST

START_TEST(test_notify)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[] = "/tmp/qtap-notify-XXXXXX", msg[64];
	ssize_t n;
	int fd;

	ck_assert_ptr_nonnull(mkdtemp(path));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(notify_send("READY=1"), 0); /* no manager: nothing */
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	ck_assert_int_eq(notify_send("READY=1"), 0);
	n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT);
	ck_assert_int_eq(n, 7);
	ck_assert_int_eq(memcmp(msg, "READY=1", 7), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_eq(notify_send("READY=1"), -EINVAL);
	unsetenv("NOTIFY_SOCKET");

	close(fd);
	unlink(sa.sun_path);
	rmdir(path);
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_buf_append_grows);
	tcase_add_test(tc, test_buf_printf_long);
	tcase_add_test(tc, test_buf_u64);
	tcase_add_test(tc, test_buf_steal);
	tcase_add_test(tc, test_json_escape);
	tcase_add_test(tc, test_log_parse);
	tcase_add_test(tc, test_log_console_one_line);
	tcase_add_test(tc, test_notify);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(util_suite());
}

/* Check suite "tlslib": the TLS library finder against the real files of
 * this host (libssl.so.3, libgnutls.so.30, node, libc), damaged copies and
 * a hand-made ELF file; /proc/PID/maps of child processes (python3 with
 * its ssl module, one in a mount namespace of its own); the registry. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture/tlslib.h"

#include "../check_run.h"

/* ---- helpers -------------------------------------------------------- */

static const char *const lib_dirs[] = {
	"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64",
	"/usr/lib", "/lib",
};

/* The path of a library of this host, without symbolic links (as
 * /proc/PID/maps shows it; out holds PATH_MAX); fails the test when it is
 * not in any of lib_dirs. */
static void lib_find(const char *name, char *out)
{
	char path[PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(lib_dirs) / sizeof(lib_dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", lib_dirs[i], name);
		if (!stat(path, &st) && S_ISREG(st.st_mode)) {
			ck_assert_ptr_nonnull(realpath(path, out));
			return;
		}
	}
	ck_abort_msg("%s not found in /usr/lib/x86_64-linux-gnu, /lib/x86_64-linux-gnu, "
		     "/usr/lib64, /lib64, /usr/lib or /lib: this suite needs it installed", name);
}

static void file_stat(const char *path, struct stat *st)
{
	ck_assert_msg(!stat(path, st), "stat %s: %s", path, strerror(errno));
}

/* Writes n bytes of data to path (mode 0644). */
static void file_put(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	ck_assert_msg(fd >= 0, "create %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	ck_assert_int_eq(close(fd), 0);
}

/* The whole file, malloc()ed; its size in *ret_n. */
static unsigned char *file_get(const char *path, size_t *ret_n)
{
	unsigned char *data;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	data = malloc(st.st_size ? st.st_size : 1);
	ck_assert_ptr_nonnull(data);
	ck_assert_int_eq(pread(fd, data, st.st_size, 0), st.st_size);
	close(fd);
	*ret_n = st.st_size;
	return data;
}

static void file_copy(const char *from, const char *to, size_t max)
{
	unsigned char *data;
	size_t n;

	data = file_get(from, &n);
	file_put(to, data, n < max ? n : max);
	free(data);
}

static void dir_remove(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* An ELF64 reader written for the test alone, without libelf, over the
 * whole file in data: the file offset of the defined function name
 * (exactly that name, or name@...) through its executable PT_LOAD
 * segment; 0 when there is none.  The symbol's value goes to *ret_value. */
static uint64_t raw_fn_offset(const unsigned char *data, size_t n, const char *name,
			      uint64_t *ret_value)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)data;
	const uint32_t types[2] = { SHT_DYNSYM, SHT_SYMTAB };
	size_t len = strlen(name), i, j, k;
	uint64_t value = 0, off = 0;
	const Elf64_Shdr *sh;
	const Elf64_Phdr *ph;

	ck_assert_uint_ge(n, sizeof(*eh));
	ck_assert(!memcmp(eh->e_ident, ELFMAG, SELFMAG) && eh->e_ident[EI_CLASS] == ELFCLASS64);
	ck_assert_uint_le(eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(*sh), n);
	ck_assert_uint_le(eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(*ph), n);
	sh = (const Elf64_Shdr *)(data + eh->e_shoff);
	ph = (const Elf64_Phdr *)(data + eh->e_phoff);
	for (k = 0; k < 2 && !value; k++) {
		for (i = 0; i < eh->e_shnum && !value; i++) {
			const Elf64_Sym *sym = (const Elf64_Sym *)(data + sh[i].sh_offset);
			const Elf64_Shdr *str;

			if (sh[i].sh_type != types[k])
				continue;
			ck_assert_uint_lt(sh[i].sh_link, eh->e_shnum);
			str = &sh[sh[i].sh_link];
			ck_assert_uint_le(sh[i].sh_offset + sh[i].sh_size, n);
			ck_assert_uint_le(str->sh_offset + str->sh_size, n);
			for (j = 1; j < sh[i].sh_size / sizeof(*sym); j++) {
				const char *s = (const char *)data + str->sh_offset + sym[j].st_name;

				if (ELF64_ST_TYPE(sym[j].st_info) != STT_FUNC ||
				    sym[j].st_shndx == SHN_UNDEF || !sym[j].st_value)
					continue;
				ck_assert_uint_lt(sym[j].st_name, str->sh_size);
				if (strncmp(s, name, len) || (s[len] && s[len] != '@'))
					continue;
				value = sym[j].st_value;
				break;
			}
		}
	}
	for (i = 0; value && i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) &&
		    value >= ph[i].p_vaddr && value < ph[i].p_vaddr + ph[i].p_filesz) {
			off = value - ph[i].p_vaddr + ph[i].p_offset;
			break;
		}
	}
	*ret_value = value;
	return off;
}

/* Every function of file against the test's own reading of path.  The
 * value of SSL_read goes to *ret_ssl_read. */
static void offsets_check(const char *path, const struct tlslib_file *file,
			  uint64_t *ret_ssl_read)
{
	unsigned char *data;
	size_t n;
	int fn;

	data = file_get(path, &n);
	for (fn = 0; fn < TLSLIB_FN__COUNT; fn++) {
		uint64_t value, off = raw_fn_offset(data, n, tlslib_fn_name(fn), &value);

		ck_assert_msg(file->offset[fn] == off, "%s: %s at %#llx, expected %#llx", path,
			      tlslib_fn_name(fn), (unsigned long long)file->offset[fn],
			      (unsigned long long)off);
		if (fn == TLSLIB_SSL_READ && ret_ssl_read)
			*ret_ssl_read = value;
	}
	free(data);
}

/* The bytes at offset in path are those of the function the dynamic
 * linker resolves for name in the loaded library (handle). */
static void bytes_check(const char *path, void *handle, const char *name, uint64_t offset)
{
	unsigned char want[32], got[32];
	void *addr;
	int fd;

	addr = dlsym(handle, name);
	ck_assert_msg(addr, "dlsym %s: %s", name, dlerror());
	memcpy(want, addr, sizeof(want));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, got, sizeof(got), (off_t)offset), sizeof(got));
	close(fd);
	ck_assert_msg(!memcmp(want, got, sizeof(want)),
		      "%s: the bytes at %#llx are not those of %s", path,
		      (unsigned long long)offset, name);
}

/* A child process that runs until its stdin closes, started once it said
 * "ready" on its stdout. */
struct child {
	pid_t pid;
	int in;
};

typedef void (*child_setup_fn)(void *arg);

static void child_start(struct child *c, char *const argv[], child_setup_fn setup, void *arg)
{
	int to[2], from[2];
	char buf[16];
	struct pollfd pfd;
	size_t got = 0;

	ck_assert_int_eq(pipe2(to, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(from, O_CLOEXEC), 0);
	c->pid = fork();
	ck_assert_int_ge(c->pid, 0);
	if (c->pid == 0) {
		if (dup2(to[0], 0) < 0 || dup2(from[1], 1) < 0)
			_exit(126);
		if (setup)
			setup(arg);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	c->in = to[1];
	pfd.fd = from[0];
	pfd.events = POLLIN;
	while (got < 6) {
		ssize_t n;

		ck_assert_msg(poll(&pfd, 1, 20000) == 1, "%s did not start in 20 s", argv[0]);
		n = read(from[0], buf + got, sizeof(buf) - 1 - got);
		ck_assert_msg(n > 0, "%s exited before it was ready", argv[0]);
		got += n;
	}
	buf[got] = '\0';
	ck_assert_str_eq(buf, "ready\n");
	close(from[0]);
}

static void child_stop(struct child *c)
{
	int status;

	close(c->in);
	kill(c->pid, SIGKILL);
	ck_assert_int_eq(waitpid(c->pid, &status, 0), c->pid);
}

/* execvp() takes char *const argv[]: writable strings. */
static char arg_python[] = "python3", arg_c[] = "-c";

static char python_ssl[] = "import ssl, sys; print('ready', flush=True); sys.stdin.read()";

/* python3 with its ssl module loaded (so libssl.so.3 mapped). */
static void child_start_ssl(struct child *c)
{
	char *argv[] = { arg_python, arg_c, python_ssl, NULL };

	child_start(c, argv, NULL, NULL);
}

/* python3 -c python_mmap FILE...: maps the files executable, then deletes
 * those named "gone.so". */
static char python_mmap[] =
	"import mmap, os, sys\n"
	"m = []\n"
	"for p in sys.argv[1:]:\n"
	"    with open(p, 'rb') as f:\n"
	"        m.append(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ | mmap.PROT_EXEC))\n"
	"    if p.endswith('/gone.so'):\n"
	"        os.unlink(p)\n"
	"print('ready', flush=True)\n"
	"sys.stdin.read()\n";

/* ---- ELF files ------------------------------------------------------ */

START_TEST(test_fn_names)
{
	ck_assert_str_eq(tlslib_fn_name(TLSLIB_SSL_READ), "SSL_read");
	ck_assert_str_eq(tlslib_fn_name(TLSLIB_GNUTLS_TRANSPORT_GET_INT), "gnutls_transport_get_int");
	ck_assert_ptr_null(tlslib_fn_name(TLSLIB_FN__COUNT));
	ck_assert_ptr_null(tlslib_fn_name((enum tlslib_fn)-1));
}
END_TEST

START_TEST(test_libssl)
{
	char path[PATH_MAX];
	struct tlslib_file file;
	struct stat st;
	void *handle;
	int fn;

	lib_find("libssl.so.3", path);
	ck_assert_int_eq(tlslib_inspect(path, &file), 0);
	ck_assert_uint_eq(file.kinds, TLSLIB_OPENSSL);
	for (fn = TLSLIB_SSL_READ; fn <= TLSLIB_SSL_DO_HANDSHAKE; fn++)
		ck_assert_msg(file.offset[fn], "%s not found", tlslib_fn_name(fn));
	for (fn = TLSLIB_GNUTLS_RECORD_SEND; fn < TLSLIB_FN__COUNT; fn++)
		ck_assert_uint_eq(file.offset[fn], 0);
	file_stat(path, &st);
	ck_assert_uint_eq(file.dev, st.st_dev);
	ck_assert_uint_eq(file.ino, st.st_ino);
	offsets_check(path, &file, NULL);

	/* What the dynamic linker maps at each function is what the file
	 * holds at its offset. */
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(handle, "dlopen %s: %s", path, dlerror());
	for (fn = TLSLIB_SSL_READ; fn <= TLSLIB_SSL_DO_HANDSHAKE; fn++)
		bytes_check(path, handle, tlslib_fn_name(fn), file.offset[fn]);
	dlclose(handle);
}
END_TEST

START_TEST(test_libgnutls)
{
	char path[PATH_MAX];
	struct tlslib_file file;
	int fn;

	lib_find("libgnutls.so.30", path);
	ck_assert_int_eq(tlslib_inspect(path, &file), 0);
	ck_assert_uint_eq(file.kinds, TLSLIB_GNUTLS);
	for (fn = TLSLIB_GNUTLS_RECORD_SEND; fn < TLSLIB_FN__COUNT; fn++)
		ck_assert_msg(file.offset[fn], "%s not found", tlslib_fn_name(fn));
	for (fn = TLSLIB_SSL_READ; fn <= TLSLIB_SSL_DO_HANDSHAKE; fn++)
		ck_assert_uint_eq(file.offset[fn], 0);
	offsets_check(path, &file, NULL);
}
END_TEST

/* node links OpenSSL in and exports it; it is an ET_EXEC whose code is
 * not at file offset == address, so the offsets go through PT_LOAD. */
START_TEST(test_node)
{
	const char *path = "/usr/bin/node";
	struct tlslib_file file;
	uint64_t value;
	struct stat st;
	int fn;

	ck_assert_msg(!stat(path, &st), "%s: %s (this suite needs nodejs installed)", path,
		      strerror(errno));
	ck_assert_int_eq(tlslib_inspect(path, &file), 0);
	ck_assert_uint_eq(file.kinds, TLSLIB_OPENSSL);
	for (fn = TLSLIB_SSL_READ; fn <= TLSLIB_SSL_DO_HANDSHAKE; fn++)
		ck_assert_msg(file.offset[fn], "%s not found in node", tlslib_fn_name(fn));
	offsets_check(path, &file, &value);
	ck_assert_msg(value != file.offset[TLSLIB_SSL_READ],
		      "node's SSL_read at %#llx = its file offset: no translation tested",
		      (unsigned long long)value);
}
END_TEST

START_TEST(test_not_tls)
{
	char path[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX";
	struct tlslib_file file, before;

	memset(&before, 0xa5, sizeof(before));
	file = before;
	lib_find("libc.so.6", path);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOENT);
	lib_find("libcrypto.so.3", path);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOENT);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/text", dir);
	file_put(path, "#!/bin/sh\necho this is no ELF file\n", 35);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	snprintf(path, sizeof(path), "%s/empty", dir);
	file_put(path, "", 0);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);	/* does not block */
	ck_assert_int_eq(tlslib_inspect(dir, &file), -ENOEXEC);
	snprintf(path, sizeof(path), "%s/missing", dir);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOENT);
	ck_assert(!memcmp(&file, &before, sizeof(file)));	/* untouched */
	dir_remove(dir);
}
END_TEST

START_TEST(test_truncated)
{
	char lib[PATH_MAX], path[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX";
	struct tlslib_file file, before;
	struct stat st;

	memset(&before, 0xa5, sizeof(before));
	file = before;
	lib_find("libssl.so.3", lib);
	file_stat(lib, &st);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/libssl-4k.so", dir);
	file_copy(lib, path, 4096);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	snprintf(path, sizeof(path), "%s/libssl-half.so", dir);
	file_copy(lib, path, st.st_size / 2);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	snprintf(path, sizeof(path), "%s/libssl-64.so", dir);
	file_copy(lib, path, 64);	/* the ELF header alone */
	ck_assert_int_lt(tlslib_inspect(path, &file), 0);
	snprintf(path, sizeof(path), "%s/libssl-10.so", dir);
	file_copy(lib, path, 10);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	ck_assert(!memcmp(&file, &before, sizeof(file)));
	dir_remove(dir);
}
END_TEST

/* Files an unprivileged user can put where a library was: a FIFO (or a
 * link to one), which must not be opened (that would block for good), and
 * files whose headers would make libelf take gigabytes: a sparse file of
 * 2 GiB, and libssl announcing 2^22 sections through extended numbering
 * or 2^22 program headers.  Each is refused at once, without the memory. */
START_TEST(test_hostile_files)
{
	char lib[PATH_MAX], path[PATH_MAX], link_path[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX";
	struct tlslib_file file;
	struct rusage ru0, ru1;
	unsigned char *data;
	Elf64_Ehdr *eh;
	Elf64_Shdr *sh0;
	size_t n;
	int fd, round;

	alarm(20);	/* a test that blocks fails */
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/libssl.so.3", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	errno = 0;
	ck_assert_int_eq(tlslib_file_open(path, O_RDONLY), -1);
	ck_assert_int_eq(errno, ENOEXEC);
	ck_assert_int_eq(tlslib_file_open(path, O_PATH), -1);
	snprintf(link_path, sizeof(link_path), "%s/libcrypto.so.3", dir);
	ck_assert_int_eq(symlink(path, link_path), 0);
	ck_assert_int_eq(tlslib_inspect(link_path, &file), -ENOEXEC);
	unlink(link_path);
	unlink(path);

	lib_find("libssl.so.3", lib);
	data = file_get(lib, &n);
	eh = (Elf64_Ehdr *)data;
	ck_assert_uint_eq(data[EI_CLASS], ELFCLASS64);
	ck_assert_uint_gt(eh->e_shoff, 0);
	getrusage(RUSAGE_SELF, &ru0);
	for (round = 0; round < 2; round++) {
		unsigned char *copy = malloc(n);

		ck_assert_ptr_nonnull(copy);
		memcpy(copy, data, n);
		eh = (Elf64_Ehdr *)copy;
		sh0 = (Elf64_Shdr *)(copy + eh->e_shoff);
		if (round == 0) {
			eh->e_shnum = 0;
			sh0->sh_size = 1u << 22;
		} else {
			eh->e_phnum = PN_XNUM;
			sh0->sh_info = 1u << 22;
		}
		file_put(path, copy, n);
		free(copy);
		ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	}
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, data, 4096, 0), 4096);
	ck_assert_int_eq(ftruncate(fd, 2ll << 30), 0);
	close(fd);
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	getrusage(RUSAGE_SELF, &ru1);
	ck_assert_msg(ru1.ru_maxrss - ru0.ru_maxrss < 64 * 1024, "peak memory grew by %ld KiB",
		      ru1.ru_maxrss - ru0.ru_maxrss);
	free(data);
	dir_remove(dir);
	alarm(0);
}
END_TEST

/* Copies of libssl with random bytes overwritten, in its headers and
 * anywhere: inspect never crashes, and what it finds is in the file. */
START_TEST(test_corrupted)
{
	char lib[PATH_MAX], path[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX";
	unsigned char *orig, *data;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned found = 0, round;
	size_t n;

	lib_find("libssl.so.3", lib);
	orig = file_get(lib, &n);
	data = malloc(n);
	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/libssl.so", dir);
	for (round = 0; round < 300; round++) {
		struct tlslib_file file;
		unsigned i, fn;
		int err;

		memcpy(data, orig, n);
		for (i = 0; i < 1 + round % 16; i++) {
			size_t at;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* The ELF and program headers, the section headers
			 * at the end, or anywhere. */
			switch (x % 3) {
			case 0:
				at = (x >> 8) % 512;
				break;
			case 1:
				at = n - 1 - (x >> 8) % 4096;
				break;
			default:
				at = (x >> 8) % n;
				break;
			}
			data[at] = (unsigned char)(x >> 40);
		}
		file_put(path, data, n);
		err = tlslib_inspect(path, &file);
		ck_assert_msg(err == 0 || err == -ENOENT || err == -ENOEXEC,
			      "round %u: %d", round, err);
		if (err)
			continue;
		found++;
		for (fn = 0; fn < TLSLIB_FN__COUNT; fn++)
			ck_assert_uint_lt(file.offset[fn], n);
	}
	/* Most damage misses what inspect reads. */
	ck_assert_uint_gt(found, 0);
	free(data);
	free(orig);
	dir_remove(dir);
}
END_TEST

/* A hand-made ET_DYN with only a .symtab, whose names carry versions. */
struct mini_elf {
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	unsigned char pad[0x800 - sizeof(Elf64_Ehdr) - sizeof(Elf64_Phdr)];
	unsigned char text[0x400];	/* at 0x800, mapped at 0x400800 */
	Elf64_Sym sym[8];
	char str[256];
	Elf64_Shdr sh[4];
};

static void mini_elf_build(struct mini_elf *m, uint32_t phflags)
{
	static const struct {
		const char *name;
		unsigned char info;
		uint16_t shndx;
		uint64_t value;
	} syms[] = {
		{ "SSL_read@@OPENSSL_3.0.0", ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), 1, 0x400810 },
		{ "SSL_write@OPENSSL_1.1.0", ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), 1, 0x400900 },
		{ "SSL_write@@OPENSSL_3.0.0", ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), 1, 0x400a00 },
		{ "SSL_get_fd", ELF64_ST_INFO(STB_WEAK, STT_FUNC), 1, 0x900000 },
		{ "SSL_set_fd", ELF64_ST_INFO(STB_LOCAL, STT_FUNC), 1, 0x400b00 },
		{ "gnutls_record_send", ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT), 1, 0x400c00 },
		{ "gnutls_record_recv", ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), SHN_UNDEF, 0 },
	};
	size_t i, at = 1;

	memset(m, 0, sizeof(*m));
	memcpy(m->eh.e_ident, ELFMAG, SELFMAG);
	m->eh.e_ident[EI_CLASS] = ELFCLASS64;
	m->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	m->eh.e_ident[EI_VERSION] = EV_CURRENT;
	m->eh.e_type = ET_DYN;
	m->eh.e_machine = EM_X86_64;
	m->eh.e_version = EV_CURRENT;
	m->eh.e_phoff = offsetof(struct mini_elf, ph);
	m->eh.e_shoff = offsetof(struct mini_elf, sh);
	m->eh.e_ehsize = sizeof(m->eh);
	m->eh.e_phentsize = sizeof(m->ph);
	m->eh.e_phnum = 1;
	m->eh.e_shentsize = sizeof(m->sh[0]);
	m->eh.e_shnum = 4;

	m->ph.p_type = PT_LOAD;
	m->ph.p_flags = phflags;
	m->ph.p_offset = 0;
	m->ph.p_vaddr = m->ph.p_paddr = 0x400000;
	m->ph.p_filesz = m->ph.p_memsz = offsetof(struct mini_elf, sym);
	m->ph.p_align = 0x1000;

	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		m->sym[i + 1].st_name = at;
		m->sym[i + 1].st_info = syms[i].info;
		m->sym[i + 1].st_shndx = syms[i].shndx;
		m->sym[i + 1].st_value = syms[i].value;
		strcpy(m->str + at, syms[i].name);
		at += strlen(syms[i].name) + 1;
	}
	ck_assert_uint_le(at, sizeof(m->str));

	m->sh[1].sh_type = SHT_PROGBITS;
	m->sh[1].sh_flags = SHF_ALLOC | SHF_EXECINSTR;
	m->sh[1].sh_addr = 0x400800;
	m->sh[1].sh_offset = offsetof(struct mini_elf, text);
	m->sh[1].sh_size = sizeof(m->text);
	m->sh[2].sh_type = SHT_SYMTAB;
	m->sh[2].sh_offset = offsetof(struct mini_elf, sym);
	m->sh[2].sh_size = sizeof(m->sym);
	m->sh[2].sh_link = 3;
	m->sh[2].sh_info = 1;
	m->sh[2].sh_entsize = sizeof(m->sym[0]);
	m->sh[2].sh_addralign = 8;
	m->sh[3].sh_type = SHT_STRTAB;
	m->sh[3].sh_offset = offsetof(struct mini_elf, str);
	m->sh[3].sh_size = sizeof(m->str);
	m->sh[3].sh_addralign = 1;
}

START_TEST(test_versioned_symtab)
{
	char path[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX";
	struct tlslib_file file;
	struct mini_elf *m = malloc(sizeof(*m));

	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mini.so", dir);
	mini_elf_build(m, PF_R | PF_X);
	file_put(path, m, sizeof(*m));
	ck_assert_int_eq(tlslib_inspect(path, &file), 0);
	ck_assert_uint_eq(file.kinds, TLSLIB_OPENSSL);
	/* The version goes, the address becomes a file offset. */
	ck_assert_uint_eq(file.offset[TLSLIB_SSL_READ], 0x810);
	/* The default version, not the hidden one before it. */
	ck_assert_uint_eq(file.offset[TLSLIB_SSL_WRITE], 0xa00);
	/* Outside every segment; local; an object; undefined. */
	ck_assert_uint_eq(file.offset[TLSLIB_SSL_GET_FD], 0);
	ck_assert_uint_eq(file.offset[TLSLIB_SSL_SET_FD], 0);
	ck_assert_uint_eq(file.offset[TLSLIB_GNUTLS_RECORD_SEND], 0);
	ck_assert_uint_eq(file.offset[TLSLIB_GNUTLS_RECORD_RECV], 0);

	/* Code in no executable segment cannot be probed. */
	mini_elf_build(m, PF_R);
	file_put(path, m, sizeof(*m));
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOENT);

	/* A segment that claims more than the file holds. */
	mini_elf_build(m, PF_R | PF_X);
	m->ph.p_offset = 0x7fffffffffffff00ull;
	file_put(path, m, sizeof(*m));
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOENT);

	/* A string table beyond the end of the file. */
	mini_elf_build(m, PF_R | PF_X);
	m->sh[3].sh_offset = 0xfffffffffffff000ull;
	file_put(path, m, sizeof(*m));
	ck_assert_int_lt(tlslib_inspect(path, &file), 0);

	/* A relocatable object is not what a process maps. */
	mini_elf_build(m, PF_R | PF_X);
	m->eh.e_type = ET_REL;
	file_put(path, m, sizeof(*m));
	ck_assert_int_eq(tlslib_inspect(path, &file), -ENOEXEC);
	free(m);
	dir_remove(dir);
}
END_TEST

/* ---- /proc/PID/maps ------------------------------------------------- */

#define MAX_SEEN 256

struct scan_log {
	unsigned n;
	struct {
		char path[PATH_MAX];
		dev_t dev;
		ino_t ino;
	} f[MAX_SEEN];
};

static int scan_record(const char *path, const struct stat *st, void *arg)
{
	struct scan_log *log = arg;

	ck_assert_uint_lt(log->n, MAX_SEEN);
	snprintf(log->f[log->n].path, sizeof(log->f[0].path), "%s", path);
	log->f[log->n].dev = st->st_dev;
	log->f[log->n].ino = st->st_ino;
	log->n++;
	return 0;
}

/* How many reported files are at the path (under /proc/PID/root) of the
 * file real, and are real by dev and inode. */
static unsigned scan_count(const struct scan_log *log, pid_t pid, const char *real)
{
	char want[PATH_MAX + 32];
	struct stat st;
	unsigned i, n = 0;

	file_stat(real, &st);
	snprintf(want, sizeof(want), "/proc/%d/root%s", (int)pid, real);
	for (i = 0; i < log->n; i++) {
		if (log->f[i].dev != st.st_dev || log->f[i].ino != st.st_ino)
			continue;
		ck_assert_str_eq(log->f[i].path, want);
		n++;
	}
	return n;
}

static int scan_stop(const char *path, const struct stat *st, void *arg)
{
	(*(unsigned *)arg)++;
	return 7;
}

START_TEST(test_scan_maps)
{
	char libssl[PATH_MAX], libc[PATH_MAX], prefix[64];
	struct scan_log *log = calloc(1, sizeof(*log));
	struct child c;
	unsigned i, j, calls = 0;

	ck_assert_ptr_nonnull(log);
	lib_find("libssl.so.3", libssl);
	lib_find("libc.so.6", libc);
	child_start_ssl(&c);
	ck_assert_int_eq(tlslib_scan_maps(c.pid, scan_record, log), 0);
	ck_assert_uint_eq(scan_count(log, c.pid, libssl), 1);
	ck_assert_uint_eq(scan_count(log, c.pid, libc), 1);
	snprintf(prefix, sizeof(prefix), "/proc/%d/root/", (int)c.pid);
	for (i = 0; i < log->n; i++) {
		ck_assert_msg(!strncmp(log->f[i].path, prefix, strlen(prefix)), "%s",
			      log->f[i].path);
		ck_assert_ptr_null(strchr(log->f[i].path, '['));
		ck_assert_ptr_null(strstr(log->f[i].path, "(deleted)"));
		for (j = 0; j < i; j++)
			ck_assert(log->f[i].dev != log->f[j].dev || log->f[i].ino != log->f[j].ino);
	}

	/* The callback stops the scan. */
	ck_assert_int_eq(tlslib_scan_maps(c.pid, scan_stop, &calls), 7);
	ck_assert_uint_eq(calls, 1);

	child_stop(&c);
	/* Reaped: its pid is gone (until reused, which takes a while). */
	ck_assert_int_eq(tlslib_scan_maps(c.pid, scan_record, log), -ESRCH);
	free(log);
}
END_TEST

/* Paths with spaces; deleted files left out even when they are TLS
 * libraries. */
START_TEST(test_scan_odd_paths)
{
	char libssl[PATH_MAX], dir[PATH_MAX], spaced[PATH_MAX + 32], gone[PATH_MAX + 32];
	char decoy[PATH_MAX + 48];
	struct scan_log *log = calloc(1, sizeof(*log));
	struct tlslib_registry *r;
	struct child c;
	struct stat st;
	unsigned i;
	char *argv[] = { arg_python, arg_c, python_mmap, spaced, gone, NULL };

	ck_assert_ptr_nonnull(log);
	lib_find("libssl.so.3", libssl);
	/* In the build tree rather than /tmp, which may be noexec. */
	ck_assert_ptr_nonnull(getcwd(dir, sizeof(dir) - 32));
	strcat(dir, "/tlslib-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(spaced, sizeof(spaced), "%s/a lib (with spaces).so", dir);
	snprintf(gone, sizeof(gone), "%s/gone.so", dir);
	file_copy(libssl, spaced, SIZE_MAX);
	file_copy(libssl, gone, SIZE_MAX);
	child_start(&c, argv, NULL, NULL);
	ck_assert_int_eq(stat(gone, &st), -1);	/* deleted by the child */
	/* A file named as maps names the deleted one is not it. */
	snprintf(decoy, sizeof(decoy), "%s (deleted)", gone);
	file_copy(libssl, decoy, SIZE_MAX);

	ck_assert_int_eq(tlslib_scan_maps(c.pid, scan_record, log), 0);
	ck_assert_uint_eq(scan_count(log, c.pid, spaced), 1);
	for (i = 0; i < log->n; i++)
		ck_assert_ptr_null(strstr(log->f[i].path, "gone.so"));

	/* Seen from our own mount namespace, the registry keeps the plain
	 * path. */
	r = tlslib_registry_new();
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, NULL, NULL), 1);
	ck_assert_uint_eq(tlslib_registry_count(r), 1);
	file_stat(spaced, &st);
	ck_assert_uint_eq(tlslib_registry_count_pids(r, st.st_dev, st.st_ino), 1);
	tlslib_registry_free(&r);

	child_stop(&c);
	dir_remove(dir);
	free(log);
}
END_TEST

/* ---- the registry --------------------------------------------------- */

#define MAX_CALLS 16

struct calls {
	unsigned n;
	int ret;	/* what the callback returns */
	struct {
		struct tlslib_file file;
		char path[PATH_MAX];
	} c[MAX_CALLS];
};

static int call_record(const struct tlslib_file *file, const char *path, void *arg)
{
	struct calls *calls = arg;

	ck_assert_uint_lt(calls->n, MAX_CALLS);
	calls->c[calls->n].file = *file;
	snprintf(calls->c[calls->n].path, sizeof(calls->c[0].path), "%s", path);
	calls->n++;
	return calls->ret;
}

START_TEST(test_registry)
{
	char libssl[PATH_MAX];
	struct calls *news = calloc(1, sizeof(*news)), *gones = calloc(1, sizeof(*gones));
	struct calls *walk = calloc(1, sizeof(*walk));
	struct tlslib_registry *r;
	unsigned long inspected;
	struct child a, b;
	struct stat st;

	ck_assert(news && gones && walk);
	lib_find("libssl.so.3", libssl);
	file_stat(libssl, &st);
	r = tlslib_registry_new();
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(tlslib_registry_inspections(r), 0);
	child_start_ssl(&a);
	child_start_ssl(&b);

	/* A new file is announced once, with a path that opens it. */
	ck_assert_int_eq(tlslib_registry_add_pid(r, a.pid, call_record, news), 1);
	ck_assert_uint_eq(news->n, 1);
	ck_assert_uint_eq(news->c[0].file.kinds, TLSLIB_OPENSSL);
	ck_assert_uint_eq(news->c[0].file.dev, st.st_dev);
	ck_assert_uint_eq(news->c[0].file.ino, st.st_ino);
	ck_assert_str_eq(news->c[0].path, libssl);
	ck_assert_uint_ne(news->c[0].file.offset[TLSLIB_SSL_READ], 0);
	inspected = tlslib_registry_inspections(r);
	ck_assert_uint_gt(inspected, 1);	/* python, libc, ... */

	/* Known files and the files that are no TLS library are not read
	 * again, for the same pid or another running the same files. */
	ck_assert_int_eq(tlslib_registry_add_pid(r, a.pid, call_record, news), 1);
	ck_assert_int_eq(tlslib_registry_add_pid(r, b.pid, call_record, news), 1);
	ck_assert_uint_eq(news->n, 1);
	ck_assert_uint_eq(tlslib_registry_inspections(r), inspected);
	ck_assert_uint_eq(tlslib_registry_count(r), 1);
	ck_assert_uint_eq(tlslib_registry_count_pids(r, st.st_dev, st.st_ino), 2);

	ck_assert_int_eq(tlslib_registry_foreach(r, call_record, walk), 0);
	ck_assert_uint_eq(walk->n, 1);
	ck_assert_uint_eq(walk->c[0].file.ino, st.st_ino);
	walk->ret = 3;
	ck_assert_int_eq(tlslib_registry_foreach(r, call_record, walk), 3);

	/* The file goes with the last process that uses it. */
	tlslib_registry_remove_pid(r, a.pid, call_record, gones);
	ck_assert_uint_eq(gones->n, 0);
	ck_assert_uint_eq(tlslib_registry_count_pids(r, st.st_dev, st.st_ino), 1);
	tlslib_registry_remove_pid(r, a.pid, call_record, gones);	/* again: nothing */
	ck_assert_uint_eq(gones->n, 0);
	tlslib_registry_remove_pid(r, b.pid, call_record, gones);
	ck_assert_uint_eq(gones->n, 1);
	ck_assert_uint_eq(gones->c[0].file.ino, st.st_ino);
	ck_assert_str_eq(gones->c[0].path, libssl);
	ck_assert_uint_eq(tlslib_registry_count(r), 0);
	ck_assert_uint_eq(tlslib_registry_count_pids(r, st.st_dev, st.st_ino), 0);

	/* Back again: read again (it left), announced again. */
	ck_assert_int_eq(tlslib_registry_add_pid(r, b.pid, call_record, news), 1);
	ck_assert_uint_eq(news->n, 2);
	ck_assert_uint_eq(tlslib_registry_inspections(r), inspected + 1);

	child_stop(&a);
	ck_assert_int_eq(tlslib_registry_add_pid(r, a.pid, call_record, news), -ESRCH);
	child_stop(&b);
	tlslib_registry_free(&r);
	ck_assert_ptr_null(r);
	tlslib_registry_free(&r);
	tlslib_registry_free(NULL);
	free(walk);
	free(gones);
	free(news);
}
END_TEST

/* A file the caller could not attach is not recorded: the next add
 * offers it again. */
START_TEST(test_registry_new_fails)
{
	struct calls *news = calloc(1, sizeof(*news));
	struct tlslib_registry *r;
	struct child c;

	ck_assert_ptr_nonnull(news);
	r = tlslib_registry_new();
	ck_assert_ptr_nonnull(r);
	child_start_ssl(&c);
	news->ret = -EPERM;
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, call_record, news), -EPERM);
	ck_assert_uint_eq(news->n, 1);
	ck_assert_uint_eq(tlslib_registry_count(r), 0);
	news->ret = 0;
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, call_record, news), 1);
	ck_assert_uint_eq(news->n, 2);
	ck_assert_uint_eq(tlslib_registry_count(r), 1);
	child_stop(&c);
	tlslib_registry_free(&r);
	free(news);
}
END_TEST

/* A process that maps many files that are no TLS library: the negative
 * cache grows and still knows them all. */
#define MANY_FILES 300

START_TEST(test_registry_many_files)
{
	char dir[PATH_MAX], *argv[MANY_FILES + 4];
	struct tlslib_registry *r;
	struct mini_elf *m = malloc(sizeof(*m));
	unsigned long inspected;
	struct child c;
	unsigned i;

	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(getcwd(dir, sizeof(dir) - 32));
	strcat(dir, "/tlslib-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	mini_elf_build(m, PF_R);	/* no executable segment: no kind */
	argv[0] = arg_python;
	argv[1] = arg_c;
	argv[2] = python_mmap;
	for (i = 0; i < MANY_FILES; i++) {
		ck_assert_int_gt(asprintf(&argv[3 + i], "%s/%u.so", dir, i), 0);
		file_put(argv[3 + i], m, sizeof(*m));
	}
	argv[3 + MANY_FILES] = NULL;
	child_start(&c, argv, NULL, NULL);

	r = tlslib_registry_new();
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, NULL, NULL), 0);
	inspected = tlslib_registry_inspections(r);
	ck_assert_uint_ge(inspected, MANY_FILES);
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, NULL, NULL), 0);
	ck_assert_uint_eq(tlslib_registry_inspections(r), inspected);
	ck_assert_uint_eq(tlslib_registry_count(r), 0);
	tlslib_registry_free(&r);

	child_stop(&c);
	for (i = 0; i < MANY_FILES; i++)
		free(argv[3 + i]);
	free(m);
	dir_remove(dir);
}
END_TEST

struct ns_setup {
	const char *dir;
	const char *lib;
	const char *copy;
};

/* In the child: a mount namespace of its own, with a tmpfs on dir that
 * holds a copy of libssl no one else can see. */
static void ns_setup(void *arg)
{
	const struct ns_setup *s = arg;
	char buf[65536];
	int in, out;
	ssize_t n;

	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", s->dir, "tmpfs", 0, NULL))
		_exit(125);
	in = open(s->lib, O_RDONLY);
	out = open(s->copy, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0)
		_exit(124);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			_exit(124);
	if (n < 0 || close(out))
		_exit(124);
	close(in);
}

/* A process in another mount namespace (a container): its library is
 * found, inspected and offered through /proc/PID/root. */
START_TEST(test_registry_mount_ns)
{
	char libssl[PATH_MAX], dir[] = "/tmp/qtap-tlslib-XXXXXX", copy[64], want[128];
	struct calls *news = calloc(1, sizeof(*news)), *gones = calloc(1, sizeof(*gones));
	struct tlslib_registry *r;
	struct ns_setup s;
	struct child c;
	struct stat st;
	int fd;
	char *argv[] = { arg_python, arg_c, python_mmap, copy, NULL };

	ck_assert(news && gones);
	lib_find("libssl.so.3", libssl);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(copy, sizeof(copy), "%s/libssl-ns.so", dir);
	s.dir = dir;
	s.lib = libssl;
	s.copy = copy;
	child_start(&c, argv, ns_setup, &s);
	ck_assert_int_eq(stat(copy, &st), -1);	/* not in our namespace */

	r = tlslib_registry_new();
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(tlslib_registry_add_pid(r, c.pid, call_record, news), 1);
	ck_assert_uint_eq(news->n, 1);
	snprintf(want, sizeof(want), "/proc/%d/root%s", (int)c.pid, copy);
	ck_assert_str_eq(news->c[0].path, want);
	ck_assert_uint_eq(news->c[0].file.kinds, TLSLIB_OPENSSL);
	fd = open(news->c[0].path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", news->c[0].path, strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	close(fd);
	ck_assert_uint_eq(news->c[0].file.dev, st.st_dev);
	ck_assert_uint_eq(news->c[0].file.ino, st.st_ino);

	tlslib_registry_remove_pid(r, c.pid, call_record, gones);
	ck_assert_uint_eq(gones->n, 1);
	child_stop(&c);
	tlslib_registry_free(&r);
	ck_assert_int_eq(rmdir(dir), 0);
	free(gones);
	free(news);
}
END_TEST

static Suite *tlslib_suite(void)
{
	Suite *s = suite_create("tlslib");
	TCase *tc;

	tc = tcase_create("elf");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_fn_names);
	tcase_add_test(tc, test_libssl);
	tcase_add_test(tc, test_libgnutls);
	tcase_add_test(tc, test_node);
	tcase_add_test(tc, test_not_tls);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_hostile_files);
	tcase_add_test(tc, test_corrupted);
	tcase_add_test(tc, test_versioned_symtab);
	suite_add_tcase(s, tc);

	tc = tcase_create("maps");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_scan_maps);
	tcase_add_test(tc, test_scan_odd_paths);
	suite_add_tcase(s, tc);

	tc = tcase_create("registry");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_registry);
	tcase_add_test(tc, test_registry_new_fails);
	tcase_add_test(tc, test_registry_many_files);
	tcase_add_test(tc, test_registry_mount_ns);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(tlslib_suite());
}

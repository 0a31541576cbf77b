/* TLS libraries to attach uprobes to: see tlslib.h.
 *
 * The ELF files come from any process on the host, so they are read as
 * hostile input: libelf bounds-checks the headers, sections, symbols and
 * strings it hands out, and every file offset computed here is checked
 * against the file's size. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "capture/capture-int.h"
#include "capture/tlslib.h"

/* .gnu.version entries: the bit that marks a non-default version. */
#define VERSYM_HIDDEN 0x8000

static const char *const fn_names[TLSLIB_FN__COUNT] = {
	[TLSLIB_SSL_READ] = "SSL_read",
	[TLSLIB_SSL_READ_EX] = "SSL_read_ex",
	[TLSLIB_SSL_WRITE] = "SSL_write",
	[TLSLIB_SSL_WRITE_EX] = "SSL_write_ex",
	[TLSLIB_SSL_GET_FD] = "SSL_get_fd",
	[TLSLIB_SSL_SET_FD] = "SSL_set_fd",
	[TLSLIB_GNUTLS_RECORD_SEND] = "gnutls_record_send",
	[TLSLIB_GNUTLS_RECORD_RECV] = "gnutls_record_recv",
	[TLSLIB_GNUTLS_TRANSPORT_GET_INT] = "gnutls_transport_get_int",
	[TLSLIB_SSL_DO_HANDSHAKE] = "SSL_do_handshake",
	[TLSLIB_GNUTLS_HANDSHAKE] = "gnutls_handshake",
};

const char *tlslib_fn_name(enum tlslib_fn fn)
{
	if ((unsigned int)fn >= TLSLIB_FN__COUNT)
		return NULL;
	return fn_names[fn];
}

/* ---- ELF symbols ------------------------------------------------------- */

/* The symbol values one symbol table gives; 0 when absent. */
struct found {
	GElf_Addr value[TLSLIB_FN__COUNT];
	bool hidden[TLSLIB_FN__COUNT];
};

/* The enum tlslib_fn that name is, up to a version suffix, or -1;
 * *ret_hidden says whether the suffix names a hidden version
 * ("SSL_read@@OPENSSL_3.0.0" is the default, "SSL_read@OPENSSL_1.1.0" a
 * hidden one). */
static int fn_match(const char *name, bool *ret_hidden)
{
	size_t len;
	int i;

	if (name[0] != 'S' && name[0] != 'g')	/* most symbols stop here */
		return -1;
	len = strcspn(name, "@");
	for (i = 0; i < TLSLIB_FN__COUNT; i++) {
		if (strlen(fn_names[i]) != len || memcmp(name, fn_names[i], len))
			continue;
		*ret_hidden = name[len] == '@' && name[len + 1] != '@';
		return i;
	}
	return -1;
}

/* Fills f from the symbol table scn; versym is .gnu.version for .dynsym,
 * or NULL.  0, or -ENOEXEC when the table cannot be read. */
static int symbols_scan(Elf *elf, Elf_Scn *scn, Elf_Scn *versym, struct found *f)
{
	Elf_Data *data, *ver = NULL;
	GElf_Shdr shdr;
	size_t i, n, entsize;

	if (!gelf_getshdr(scn, &shdr))
		return -ENOEXEC;
	data = elf_getdata(scn, NULL);
	entsize = gelf_fsize(elf, ELF_T_SYM, 1, EV_CURRENT);
	if (!data || data->d_type != ELF_T_SYM || !entsize)
		return -ENOEXEC;
	if (versym) {
		ver = elf_getdata(versym, NULL);
		if (ver && ver->d_type != ELF_T_HALF)
			ver = NULL;	/* no versions rather than wrong ones */
	}
	n = data->d_size / entsize;
	if (n > INT_MAX)
		n = INT_MAX;
	for (i = 1; i < n; i++) {	/* entry 0 is the null symbol */
		GElf_Versym vs;
		const char *name;
		GElf_Sym sym;
		bool hidden;
		int fn, bind;

		if (!gelf_getsym(data, (int)i, &sym))
			return -ENOEXEC;
		bind = GELF_ST_BIND(sym.st_info);
		if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
		    !sym.st_value || (bind != STB_GLOBAL && bind != STB_WEAK))
			continue;
		name = elf_strptr(elf, shdr.sh_link, sym.st_name);
		if (!name)
			continue;
		fn = fn_match(name, &hidden);
		if (fn < 0)
			continue;
		if (ver && gelf_getversym(ver, (int)i, &vs) && (vs & VERSYM_HIDDEN))
			hidden = true;
		/* The first default version wins; a hidden one only fills in. */
		if (f->value[fn] && (hidden || !f->hidden[fn]))
			continue;
		f->value[fn] = sym.st_value;
		f->hidden[fn] = hidden;
	}
	return 0;
}

/* The file offset of the code at vaddr: through the executable PT_LOAD
 * segment that holds it, within the file's size; 0 when there is none. */
static uint64_t vaddr_to_offset(Elf *elf, size_t phnum, GElf_Addr vaddr, uint64_t file_size)
{
	size_t i;

	if (phnum > INT_MAX)
		phnum = INT_MAX;
	for (i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		uint64_t off;

		if (!gelf_getphdr(elf, (int)i, &ph))
			return 0;
		if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
			continue;
		if (vaddr < ph.p_vaddr || vaddr - ph.p_vaddr >= ph.p_filesz)
			continue;
		off = ph.p_offset + (vaddr - ph.p_vaddr);
		if (off < ph.p_offset || off >= file_size)
			return 0;
		return off;
	}
	return 0;
}

/* Whether the section and program header tables the ELF header announces
 * are within the file.  libelf takes tables beyond the end for none at
 * all, which would make a truncated file one without symbols rather than
 * a broken one.  (PN_XNUM: the count is elsewhere; libelf checks it.) */
static bool headers_fit(const GElf_Ehdr *eh, uint64_t size)
{
	uint64_t n;

	if (eh->e_phnum && eh->e_phnum != PN_XNUM &&
	    (!eh->e_phentsize || eh->e_phoff >= size ||
	     (size - eh->e_phoff) / eh->e_phentsize < eh->e_phnum))
		return false;
	n = eh->e_shnum ? eh->e_shnum : 1;	/* 0: the count is in entry 0 */
	if (eh->e_shoff && (!eh->e_shentsize || eh->e_shoff >= size ||
			    (size - eh->e_shoff) / eh->e_shentsize < n))
		return false;
	return true;
}

/* What any TLS library stays under, checked before libelf reads a file:
 * its size (a sparse file's size costs nothing), its count of section or
 * program headers (libelf allocates and walks an entry for each one the
 * header announces, up to 2^32 with extended numbering), and the size of
 * a symbol table (read whole). */
#define TLSLIB_FILE_MAX (1ull << 30)
#define TLSLIB_HEADERS_MAX 65536
#define TLSLIB_SYMTAB_MAX (128ull << 20)

/* The section and program header counts fd's ELF header announces (with
 * extended numbering, from section 0) within TLSLIB_HEADERS_MAX: true,
 * also for what is no ELF of this machine's byte order at all (libelf
 * says so then). */
static bool header_counts_fit(int fd)
{
	union {
		unsigned char id[EI_NIDENT];
		Elf64_Ehdr e64;
		Elf32_Ehdr e32;
	} eh;
	union {
		Elf64_Shdr s64;
		Elf32_Shdr s32;
	} sh;
	uint64_t shoff, shnum, phnum;
	bool is64;
	ssize_t n;

	n = pread(fd, &eh, sizeof(eh), 0);
	is64 = n >= (ssize_t)sizeof(eh.id) && eh.id[EI_CLASS] == ELFCLASS64;
	if (n < (ssize_t)(is64 ? sizeof(eh.e64) : sizeof(eh.e32)) ||
	    memcmp(eh.id, ELFMAG, SELFMAG) ||
	    (!is64 && eh.id[EI_CLASS] != ELFCLASS32) ||
	    eh.id[EI_DATA] != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB))
		return true;
	shoff = is64 ? eh.e64.e_shoff : eh.e32.e_shoff;
	shnum = is64 ? eh.e64.e_shnum : eh.e32.e_shnum;
	phnum = is64 ? eh.e64.e_phnum : eh.e32.e_phnum;
	if (shoff && (!shnum || phnum == PN_XNUM)) {
		/* extended numbering: the counts are in section 0 (a file too
		 * short to hold it, libelf refuses) */
		n = is64 ? sizeof(sh.s64) : sizeof(sh.s32);
		if (pread(fd, &sh, (size_t)n, (off_t)shoff) != n)
			return true;
		if (!shnum)
			shnum = is64 ? sh.s64.sh_size : sh.s32.sh_size;
		if (phnum == PN_XNUM)
			phnum = is64 ? sh.s64.sh_info : sh.s32.sh_info;
	}
	return shnum <= TLSLIB_HEADERS_MAX && phnum <= TLSLIB_HEADERS_MAX;
}

/* tlslib_inspect() on an open file; st is its fstat(). */
static int inspect_fd(int fd, const struct stat *st, struct tlslib_file *ret)
{
	Elf_Scn *scn = NULL, *dynsym = NULL, *symtab = NULL, *versym = NULL;
	struct found from_dyn, from_tab;
	struct tlslib_file file;
	GElf_Ehdr ehdr;
	size_t phnum;
	Elf *elf;
	int err = 0, i;

	if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size > TLSLIB_FILE_MAX ||
	    !header_counts_fit(fd))
		return -ENOEXEC;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOEXEC;
	/* ELF_C_READ rather than a mapping: a file truncated while we read
	 * it gives read errors, not SIGBUS. */
	elf = elf_begin(fd, ELF_C_READ, NULL);
	if (!elf)
		return -ENOEXEC;	/* libelf does not say why */
	if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &ehdr) ||
	    (ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN) ||
	    !headers_fit(&ehdr, (uint64_t)st->st_size) || elf_getphdrnum(elf, &phnum)) {
		err = -ENOEXEC;
		goto out_end;
	}
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;

		if (!gelf_getshdr(scn, &shdr) ||
		    ((shdr.sh_type == SHT_DYNSYM || shdr.sh_type == SHT_SYMTAB ||
		      shdr.sh_type == SHT_GNU_versym) && shdr.sh_size > TLSLIB_SYMTAB_MAX)) {
			err = -ENOEXEC;
			goto out_end;
		}
		if (shdr.sh_type == SHT_DYNSYM && !dynsym)
			dynsym = scn;
		else if (shdr.sh_type == SHT_SYMTAB && !symtab)
			symtab = scn;
		else if (shdr.sh_type == SHT_GNU_versym && !versym)
			versym = scn;
	}

	memset(&from_dyn, 0, sizeof(from_dyn));
	memset(&from_tab, 0, sizeof(from_tab));
	if (dynsym) {
		err = symbols_scan(elf, dynsym, versym, &from_dyn);
		if (err)
			goto out_end;
	}
	/* .symtab only when the exports make no kind (a binary that does
	 * not export its copy): a library of one kind always lacks the
	 * other's names, and node's .symtab alone takes tens of ms to read. */
	if (!(from_dyn.value[TLSLIB_SSL_READ] && from_dyn.value[TLSLIB_SSL_WRITE]) &&
	    !(from_dyn.value[TLSLIB_GNUTLS_RECORD_SEND] &&
	      from_dyn.value[TLSLIB_GNUTLS_RECORD_RECV]) && symtab) {
		err = symbols_scan(elf, symtab, NULL, &from_tab);
		if (err)
			goto out_end;
	}

	memset(&file, 0, sizeof(file));
	for (i = 0; i < TLSLIB_FN__COUNT; i++) {
		GElf_Addr v = from_dyn.value[i] ? from_dyn.value[i] : from_tab.value[i];

		if (v)
			file.offset[i] = vaddr_to_offset(elf, phnum, v, (uint64_t)st->st_size);
	}
	if (file.offset[TLSLIB_SSL_READ] && file.offset[TLSLIB_SSL_WRITE])
		file.kinds |= TLSLIB_OPENSSL;
	if (file.offset[TLSLIB_GNUTLS_RECORD_SEND] && file.offset[TLSLIB_GNUTLS_RECORD_RECV])
		file.kinds |= TLSLIB_GNUTLS;
	if (!file.kinds) {
		err = -ENOENT;
		goto out_end;
	}
	file.dev = st->st_dev;
	file.ino = st->st_ino;
	*ret = file;
out_end:
	elf_end(elf);
	return err;
}

/* O_NONBLOCK: a FIFO at path must not hang us (it is refused after
 * fstat()); it does nothing to regular files. */
/* Opens path for reading if it is a regular file (else -1, errno ENOEXEC):
 * looked at first without opening it (O_PATH), so that whatever a link
 * swapped in since the scan leads to (a FIFO, a device, maybe outside a
 * container's root) is never opened, then that same inode reopened
 * through our fd, not the path. */
int tlslib_file_open(const char *path, int flags)
{
	char fdp[32];
	struct stat st;
	int pfd, fd, e;

	pfd = open(path, O_PATH | O_CLOEXEC);
	if (pfd < 0)
		return -1;
	e = fstat(pfd, &st) ? errno : S_ISREG(st.st_mode) ? 0 : ENOEXEC;
	if (e) {
		close(pfd);
		errno = e;
		return -1;
	}
	if (flags & O_PATH)
		return pfd;
	snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", pfd);
	fd = open(fdp, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	e = errno;
	close(pfd);
	errno = e;
	return fd;
}

static int file_open(const char *path)
{
	return tlslib_file_open(path, O_RDONLY);
}

int tlslib_inspect(const char *path, struct tlslib_file *ret)
{
	struct stat st;
	int fd, err;

	fd = file_open(path);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		err = -errno;
	else
		err = inspect_fd(fd, &st, ret);
	close(fd);
	return err;
}

/* ---- /proc/PID/maps ---------------------------------------------------- */

/* The files a scan reported, by maps' numbers (to skip the stat() of a
 * file's second executable segment) and by stat()'s (identity). */
struct seen {
	unsigned long long maps_dev, maps_ino;
	dev_t dev;
	ino_t ino;
};

/* The path of an executable file mapping in one maps line (its '\n'
 * replaced), with the device and inode maps prints; NULL for any other
 * line.  "START-END PERMS OFFSET MAJ:MIN INODE   PATH" */
static char *maps_line_path(char *line, unsigned long long *ret_dev,
			    unsigned long long *ret_ino)
{
	unsigned long long start, end, offset, ino;
	unsigned int major, minor;
	char perms[5], *path;
	size_t len;
	int pos = -1;

	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms,
		   &offset, &major, &minor, &ino, &pos) != 7 || pos < 0)
		return NULL;
	if (strlen(perms) != 4 || perms[2] != 'x' || !ino)
		return NULL;
	path = line + pos;
	path[strcspn(path, "\n")] = '\0';
	len = strlen(path);
	if (path[0] != '/')		/* anonymous, [vdso], [vsyscall] */
		return NULL;
	if (procfs_path_len(path, len) != len)
		return NULL;		/* also memfd: and SysV shm */
	*ret_dev = ((unsigned long long)major << 32) | minor;
	*ret_ino = ino;
	return path;
}

/* stat() of the maps path path, under the process's root rootfd (full is
 * the same through /proc), refusing symbolic links: maps shows paths
 * without any, so one on the way is a change made since, maybe to lead us
 * out of a container's root.  0 or -errno. */
static int root_stat(int rootfd, const char *path, const char *full, struct stat *st)
{
#ifdef SYS_openat2
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
	};
	int fd, err = 0;

	fd = syscall(SYS_openat2, rootfd, path + 1, &how, sizeof(how));
	if (fd >= 0) {
		if (fstat(fd, st))
			err = -errno;
		close(fd);
		return err;
	}
	if (errno != ENOSYS)
		return -errno;
#endif
	/* Before Linux 5.6: the last component only. */
	if (lstat(full, st))
		return -errno;
	return S_ISLNK(st->st_mode) ? -ELOOP : 0;
}

int tlslib_scan_maps(pid_t pid, tlslib_map_fn fn, void *arg)
{
	char proc[64], *line = NULL, *full = NULL;
	size_t line_cap = 0, full_cap = 0, nseen = 0, seen_cap = 0, i;
	struct seen *seen = NULL;
	int rootfd, err = 0;
	ssize_t n;
	FILE *f;

	snprintf(proc, sizeof(proc), "/proc/%d/root", (int)pid);
	rootfd = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	snprintf(proc, sizeof(proc), "/proc/%d/maps", (int)pid);
	f = fopen(proc, "re");
	if (!f) {
		err = errno == ENOENT ? -ESRCH : -errno;
		goto out_close_root;
	}
	for (;;) {
		unsigned long long maps_dev, maps_ino;
		struct stat st;
		char *path;
		size_t need;

		errno = 0;
		n = getline(&line, &line_cap, f);
		if (n < 0) {
			if (ferror(f))
				err = errno ? -errno : -EIO;
			break;
		}
		path = maps_line_path(line, &maps_dev, &maps_ino);
		if (!path)
			continue;
		for (i = 0; i < nseen; i++)
			if (seen[i].maps_dev == maps_dev && seen[i].maps_ino == maps_ino)
				break;
		if (i < nseen)
			continue;

		need = strlen(path) + 32;
		if (need > full_cap) {
			char *p = realloc(full, need);

			if (!p) {
				err = -ENOMEM;
				break;
			}
			full = p;
			full_cap = need;
		}
		snprintf(full, full_cap, "/proc/%d/root%s", (int)pid, path);
		if (root_stat(rootfd, path, full, &st) || !S_ISREG(st.st_mode))
			continue;	/* exiting, changed, or beyond its root */

		if (nseen == seen_cap) {
			size_t cap = seen_cap ? 2 * seen_cap : 32;
			struct seen *p = realloc(seen, cap * sizeof(*p));

			if (!p) {
				err = -ENOMEM;
				break;
			}
			seen = p;
			seen_cap = cap;
		}
		seen[nseen].maps_dev = maps_dev;
		seen[nseen].maps_ino = maps_ino;
		seen[nseen].dev = st.st_dev;
		seen[nseen].ino = st.st_ino;
		for (i = 0; i < nseen; i++)
			if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino)
				break;
		nseen++;
		if (i < nseen - 1)
			continue;	/* the same file under another name */
		err = fn(full, &st, arg);
		if (err)
			break;
	}
	fclose(f);
	free(seen);
	free(full);
	free(line);
out_close_root:
	close(rootfd);
	return err;
}

/* ---- the registry ------------------------------------------------------ */

/* Beyond this many files the negative cache starts over (its table has
 * twice as many slots). */
#define NEG_MAX 4096

/* A known TLS library file and the processes that map it. */
struct reg_file {
	struct tlslib_file file;
	char *path;
	pid_t *pids;		/* sorted */
	size_t npids, pids_cap;
};

/* A file that is no TLS library.  Its ctime tells it from a later file
 * that reuses the inode number. */
struct neg_entry {
	dev_t dev;
	ino_t ino;
	struct timespec ctime;
	bool used;
};

/* Owned by one thread (see tlslib.h): nothing here is locked. */
struct tlslib_registry {
	struct reg_file **files;
	size_t nfiles, files_cap;
	struct neg_entry *neg;	/* open addressing, neg_cap slots (a power of 2) */
	size_t neg_len, neg_cap;
	unsigned long inspections;
};

struct tlslib_registry *tlslib_registry_new(void)
{
	struct tlslib_registry *r = calloc(1, sizeof(*r));

	if (!r)
		errno = ENOMEM;
	return r;
}

static void reg_file_free(struct reg_file *rf)
{
	if (!rf)
		return;
	free(rf->pids);
	free(rf->path);
	free(rf);
}

void tlslib_registry_free(struct tlslib_registry **rp)
{
	struct tlslib_registry *r;
	size_t i;

	if (!rp || !*rp)
		return;
	r = *rp;
	for (i = 0; i < r->nfiles; i++)
		reg_file_free(r->files[i]);
	free(r->files);
	free(r->neg);
	free(r);
	*rp = NULL;
}

static struct reg_file *file_find(const struct tlslib_registry *r, dev_t dev, ino_t ino)
{
	size_t i;

	for (i = 0; i < r->nfiles; i++)
		if (r->files[i]->file.dev == dev && r->files[i]->file.ino == ino)
			return r->files[i];
	return NULL;
}

/* Where pid is in rf->pids, or where it would go; *ret_found says which. */
static size_t pids_search(const struct reg_file *rf, pid_t pid, bool *ret_found)
{
	size_t lo = 0, hi = rf->npids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rf->pids[mid] < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = lo < rf->npids && rf->pids[lo] == pid;
	return lo;
}

static int pids_add(struct reg_file *rf, pid_t pid)
{
	bool found;
	size_t at = pids_search(rf, pid, &found);

	if (found)
		return 0;
	if (rf->npids == rf->pids_cap) {
		size_t cap = rf->pids_cap ? 2 * rf->pids_cap : 4;
		pid_t *p = realloc(rf->pids, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		rf->pids = p;
		rf->pids_cap = cap;
	}
	memmove(rf->pids + at + 1, rf->pids + at, (rf->npids - at) * sizeof(*rf->pids));
	rf->pids[at] = pid;
	rf->npids++;
	return 0;
}

/* true when pid was there. */
static bool pids_remove(struct reg_file *rf, pid_t pid)
{
	bool found;
	size_t at = pids_search(rf, pid, &found);

	if (!found)
		return false;
	memmove(rf->pids + at, rf->pids + at + 1, (rf->npids - at - 1) * sizeof(*rf->pids));
	rf->npids--;
	return true;
}

static size_t neg_slot(const struct tlslib_registry *r, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 40) ^ ((uint64_t)dev >> 24)) *
		     0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (r->neg_cap - 1);
}

/* The slot of (dev, ino), or the empty slot where it would go; NULL when
 * the cache has no table yet. */
static struct neg_entry *neg_find(const struct tlslib_registry *r, dev_t dev, ino_t ino)
{
	size_t i;

	if (!r->neg_cap)
		return NULL;
	for (i = neg_slot(r, dev, ino);; i = (i + 1) & (r->neg_cap - 1)) {
		struct neg_entry *e = &r->neg[i];

		if (!e->used || (e->dev == dev && e->ino == ino))
			return e;
	}
}

static bool neg_hit(const struct tlslib_registry *r, const struct stat *st)
{
	struct neg_entry *e = neg_find(r, st->st_dev, st->st_ino);

	return e && e->used && e->ctime.tv_sec == st->st_ctim.tv_sec &&
	       e->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Doubles the table, or empties it once it holds NEG_MAX files.  0 or
 * -ENOMEM. */
static int neg_grow(struct tlslib_registry *r)
{
	size_t cap = r->neg_cap ? 2 * r->neg_cap : 64, i;
	struct neg_entry *old = r->neg, *table;

	if (r->neg_cap >= 2 * NEG_MAX) {
		memset(r->neg, 0, r->neg_cap * sizeof(*r->neg));
		r->neg_len = 0;
		return 0;
	}
	table = calloc(cap, sizeof(*table));
	if (!table)
		return -ENOMEM;
	r->neg = table;
	r->neg_cap = cap;
	r->neg_len = 0;
	for (i = 0; old && i < cap / 2; i++) {
		if (old[i].used) {
			*neg_find(r, old[i].dev, old[i].ino) = old[i];
			r->neg_len++;
		}
	}
	free(old);
	return 0;
}

/* Best effort: a file left out is only read again. */
static void neg_add(struct tlslib_registry *r, const struct stat *st)
{
	struct neg_entry *e = neg_find(r, st->st_dev, st->st_ino);

	if (!e || (!e->used && 2 * (r->neg_len + 1) > r->neg_cap)) {
		if (neg_grow(r))
			return;
		e = neg_find(r, st->st_dev, st->st_ino);
	}
	if (!e->used)
		r->neg_len++;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->ctime = st->st_ctim;
	e->used = true;
}

/* The path to keep for a file found at full ("/proc/PID/root" + inner):
 * inner itself when it is the same file in our mount namespace, since it
 * outlives the process. */
static char *path_choose(const char *full, pid_t pid, const struct tlslib_file *file)
{
	char prefix[48];
	const char *inner = full;
	struct stat st;
	int len;

	len = snprintf(prefix, sizeof(prefix), "/proc/%d/root", (int)pid);
	if (len > 0 && !strncmp(full, prefix, (size_t)len) && full[len] == '/' &&
	    !stat(full + len, &st) && st.st_dev == file->dev && st.st_ino == file->ino)
		inner = full + len;
	return strdup(inner);
}

struct add_ctx {
	struct tlslib_registry *r;
	pid_t pid;
	tlslib_file_fn new_fn;
	void *arg;
	int count;
	int err;	/* the first error new_fn returned */
};

/* tlslib_map_fn of tlslib_registry_add_pid(): stops the scan only on
 * -ENOMEM; a file that cannot be read is no TLS library to us. */
static int add_file(const char *path, const struct stat *st, void *arg)
{
	struct add_ctx *c = arg;
	struct tlslib_registry *r = c->r;
	struct tlslib_file file;
	struct reg_file *rf;
	struct stat fst;
	int fd, err;

	rf = file_find(r, st->st_dev, st->st_ino);
	if (rf)
		goto out_use;
	if (neg_hit(r, st))
		return 0;

	/* Opened here rather than by tlslib_inspect(), to tell "gone" (the
	 * process exited since the scan: not cached) from "no TLS". */
	fd = file_open(path);
	if (fd < 0)
		return 0;
	if (fstat(fd, &fst) || fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
		close(fd);	/* replaced since the scan: the next one sees it */
		return 0;
	}
	r->inspections++;
	err = inspect_fd(fd, &fst, &file);
	close(fd);
	if (err == -ENOENT || err == -ENOEXEC) {
		neg_add(r, &fst);
		return 0;
	}
	if (err)
		return err == -ENOMEM ? err : 0;

	/* Room first, so that a file new_fn attached is always recorded. */
	if (r->nfiles == r->files_cap) {
		size_t cap = r->files_cap ? 2 * r->files_cap : 8;
		struct reg_file **p = realloc(r->files, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->files = p;
		r->files_cap = cap;
	}
	rf = calloc(1, sizeof(*rf));
	if (!rf)
		return -ENOMEM;
	rf->file = file;
	rf->path = path_choose(path, c->pid, &file);
	if (!rf->path || pids_add(rf, c->pid)) {
		reg_file_free(rf);
		return -ENOMEM;
	}
	if (c->new_fn) {
		err = c->new_fn(&rf->file, rf->path, c->arg);
		if (err) {
			reg_file_free(rf);
			if (!c->err)
				c->err = err < 0 ? err : -EINVAL;
			return 0;
		}
	}
	r->files[r->nfiles++] = rf;
	c->count++;
	return 0;

out_use:
	err = pids_add(rf, c->pid);
	if (err)
		return err;
	c->count++;
	return 0;
}

int tlslib_registry_add_pid(struct tlslib_registry *r, pid_t pid,
			    tlslib_file_fn new_fn, void *arg)
{
	struct add_ctx c = { .r = r, .pid = pid, .new_fn = new_fn, .arg = arg };
	int err;

	err = tlslib_scan_maps(pid, add_file, &c);
	if (err)
		return err;
	return c.err ? c.err : c.count;
}

void tlslib_registry_remove_pid(struct tlslib_registry *r, pid_t pid,
				tlslib_file_fn gone_fn, void *arg)
{
	size_t i = 0;

	while (i < r->nfiles) {
		struct reg_file *rf = r->files[i];

		if (!pids_remove(rf, pid) || rf->npids) {
			i++;
			continue;
		}
		if (gone_fn)
			gone_fn(&rf->file, rf->path, arg);
		reg_file_free(rf);
		r->files[i] = r->files[--r->nfiles];
	}
}

int tlslib_registry_foreach(const struct tlslib_registry *r, tlslib_file_fn fn, void *arg)
{
	size_t i;
	int err;

	for (i = 0; i < r->nfiles; i++) {
		err = fn(&r->files[i]->file, r->files[i]->path, arg);
		if (err)
			return err;
	}
	return 0;
}

size_t tlslib_registry_count(const struct tlslib_registry *r)
{
	return r->nfiles;
}

size_t tlslib_registry_count_pids(const struct tlslib_registry *r, dev_t dev, ino_t ino)
{
	const struct reg_file *rf = file_find(r, dev, ino);

	return rf ? rf->npids : 0;
}

unsigned long tlslib_registry_inspections(const struct tlslib_registry *r)
{
	return r->inspections;
}

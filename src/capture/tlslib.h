/* TLS libraries to attach uprobes to: which files a process maps, which of
 * them are OpenSSL/BoringSSL or GnuTLS (their exported functions and the
 * file offsets uprobes take), and a registry of the libraries in use so
 * that each file is inspected and attached once however many processes
 * map it.
 *
 * Nothing here logs or attaches anything: the caller does both, from the
 * callbacks.  Threads: tlslib_inspect() and tlslib_scan_maps() are
 * reentrant; a tlslib_registry is not thread-safe and belongs to one
 * thread (the capture thread that follows process events). */
#ifndef QTAP_CAPTURE_TLSLIB_H
#define QTAP_CAPTURE_TLSLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The functions looked for, indexes of tlslib_file.offset[]. */
enum tlslib_fn {
	TLSLIB_SSL_READ,		/* OpenSSL and BoringSSL */
	TLSLIB_SSL_READ_EX,
	TLSLIB_SSL_WRITE,
	TLSLIB_SSL_WRITE_EX,
	TLSLIB_SSL_GET_FD,
	TLSLIB_SSL_SET_FD,
	TLSLIB_SSL_DO_HANDSHAKE,	/* ties an SSL * to its socket */
	TLSLIB_GNUTLS_RECORD_SEND,	/* GnuTLS */
	TLSLIB_GNUTLS_RECORD_RECV,
	TLSLIB_GNUTLS_TRANSPORT_GET_INT,
	TLSLIB_GNUTLS_HANDSHAKE,	/* ties a session to its socket */
	TLSLIB_FN__COUNT
};

/* tlslib_file.kinds bits. */
#define TLSLIB_OPENSSL	(1u << 0)	/* SSL_read and SSL_write */
#define TLSLIB_GNUTLS	(1u << 1)	/* gnutls_record_send and _recv */

/* What one ELF file offers. */
struct tlslib_file {
	unsigned int kinds;		/* TLSLIB_OPENSSL | TLSLIB_GNUTLS */
	/* The file offset of each function (what a uprobe takes), 0 when
	 * the file does not define it (no function starts at offset 0:
	 * the ELF header is there). */
	uint64_t offset[TLSLIB_FN__COUNT];
	/* The file as fstat() saw it when it was inspected. */
	dev_t dev;
	ino_t ino;
};

/* The symbol name of fn ("SSL_read"), NULL when fn is out of range. */
const char *tlslib_fn_name(enum tlslib_fn fn);

/* Reads the ELF file at path: its defined functions among enum tlslib_fn,
 * looked up in .dynsym and then .symtab, by their base name (a versioned
 * "SSL_read@@OPENSSL_3.0.0" is SSL_read; the default version wins over a
 * hidden one).  0 and *ret filled when the file is of at least one kind;
 * -ENOENT when it is of none (also when open() says so); -ENOEXEC when it
 * is not a regular file, not an executable or shared object, or its ELF
 * structures are broken or truncated; other -errno from open() and
 * reading.  *ret is untouched on failure. */
int tlslib_inspect(const char *path, struct tlslib_file *ret);

/* Called by tlslib_scan_maps() for each file: path opens it through the
 * process's own root (and mount namespace), "/proc/PID/root/usr/lib/...";
 * st is stat() of that path, whose st_dev and st_ino say which file it
 * is.  Returning non-zero stops the scan, which returns that value. */
typedef int (*tlslib_map_fn)(const char *path, const struct stat *st, void *arg);

/* Calls fn once per distinct file (by the st_dev and st_ino that stat()
 * gives for its path, not by the device and inode /proc/PID/maps prints)
 * that process pid maps executable.  Skips anonymous and special mappings
 * ("[vdso]"), deleted files ("... (deleted)"), and paths that do not lead
 * to a regular file under the process's root without symbolic links (maps
 * shows none: the path changed since, or the process is exiting).
 * 0, what fn returned when it stopped the scan, -ESRCH when pid is gone,
 * or -errno. */
int tlslib_scan_maps(pid_t pid, tlslib_map_fn fn, void *arg);

/* --- the registry ------------------------------------------------------- */

/* The TLS library files processes map, keyed by (st_dev, st_ino), each
 * with the set of processes that map it; and a cache of the files found
 * to be no TLS library, so the libc every process maps is read once. */
struct tlslib_registry;

/* A registry's callbacks.  path opens file: through the root of the
 * process that mapped it (valid while that process lives, which it does
 * when new_fn is called) or, when the same file is at the same path in
 * our own mount namespace, that plain path. */
typedef int (*tlslib_file_fn)(const struct tlslib_file *file, const char *path, void *arg);

/* NULL and errno set (ENOMEM) on failure. */
struct tlslib_registry *tlslib_registry_new(void);
/* Forgets everything without calling back; NULL and *rp NULL are fine.
 * *rp is NULL afterwards. */
void tlslib_registry_free(struct tlslib_registry **rp);

/* Scans pid's maps and records that pid uses each TLS library file it
 * maps.  new_fn (may be NULL) is called once for each file the registry
 * did not know, before the file is recorded: that is where the caller
 * attaches; if it returns an error the file is not recorded (a later
 * add_pid calls new_fn again) and the scan goes on.  Adding a pid again
 * (after a dlopen) records the files it maps now; files it stopped
 * mapping stay until tlslib_registry_remove_pid().
 * The number of TLS library files pid maps; or the first error new_fn
 * returned, -ESRCH when pid is gone, -ENOMEM, other -errno.  The files
 * recorded before a failure stay recorded. */
int tlslib_registry_add_pid(struct tlslib_registry *r, pid_t pid,
			    tlslib_file_fn new_fn, void *arg);

/* Forgets pid.  gone_fn (may be NULL; its return value is ignored) is
 * called for each file that no process uses any more, just before the
 * registry drops it: that is where the caller detaches. */
void tlslib_registry_remove_pid(struct tlslib_registry *r, pid_t pid,
				tlslib_file_fn gone_fn, void *arg);

/* Calls fn for each known TLS library file; a non-zero return stops the
 * walk and is returned.  fn must not add or remove pids. */
int tlslib_registry_foreach(const struct tlslib_registry *r, tlslib_file_fn fn, void *arg);

/* The number of known TLS library files. */
size_t tlslib_registry_count(const struct tlslib_registry *r);
/* The number of processes that use the file (dev, ino), 0 when unknown. */
size_t tlslib_registry_count_pids(const struct tlslib_registry *r, dev_t dev, ino_t ino);
/* The number of ELF files the registry has read since it was made (the
 * negative cache keeps this from growing with the processes). */
unsigned long tlslib_registry_inspections(const struct tlslib_registry *r);

/* Opens path with flags (O_RDONLY, or O_PATH: not opened, only found)
 * only if it is a regular file, never opening anything else a link may
 * lead to meanwhile: the fd, or -1 with errno (ENOEXEC: not a regular
 * file). */
int tlslib_file_open(const char *path, int flags);

#endif

/* liburcu's hash tables publish a node with rcu_assign_pointer() and find
 * it with rcu_dereference(): ordered on every CPU, but inside liburcu,
 * which ThreadSanitizer does not see.  Code that publishes an object
 * through them states that order to TSan with these; they cost nothing in
 * other builds. */
#ifndef QTAP_UTIL_TSAN_H
#define QTAP_UTIL_TSAN_H

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
/* Before the object is added to the table. */
#define tsan_release(p) __tsan_release((void *)(p))
/* After the object was found in the table, before it is read. */
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#else
#define tsan_release(p) ((void)(p))
#define tsan_acquire(p) ((void)(p))
#endif

#endif

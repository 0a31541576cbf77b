/* The process table: see the proc_table.c section of capture-int.h. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#include "capture/capture-int.h"
#include "util/tsan.h"

struct proc_entry {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	uint32_t tgid;
	uint32_t ppid;
	uint64_t start_time_ns;
	char comm[CAPTURE_COMM_LEN];
	uint64_t cgroup_id;
	char container_id[CAPTURE_CONTAINER_ID_LEN];
	uint32_t exec_gen;
	char exe[];		/* NUL-terminated, allocated to size */
};

/* Copies a published entry out (an RCU read-side section is held). */
static void entry_copy_out(const struct proc_entry *e, struct capture_proc_info *ret)
{
	tsan_acquire(e);
	ret->tgid = e->tgid;
	ret->ppid = e->ppid;
	ret->start_time_ns = e->start_time_ns;
	memcpy(ret->comm, e->comm, sizeof(ret->comm));
	ret->cgroup_id = e->cgroup_id;
	memcpy(ret->container_id, e->container_id, sizeof(ret->container_id));
	ret->exec_gen = e->exec_gen;
	memcpy(ret->exe, e->exe, strlen(e->exe) + 1);
}

/* ht: written by the one writer thread, read by RCU-registered readers.
 * count: written by the writer only (so its own plain reads are exact),
 * read by any thread with atomic loads. */
struct proc_table {
	struct cds_lfht *ht;
	unsigned long count;
};

static unsigned long tgid_hash(uint32_t tgid)
{
	/* Fibonacci hashing: pids are dense, spread them over the bits. */
	return (unsigned long)((uint64_t)tgid * 0x9e3779b97f4a7c15ull >> 16);
}

static int entry_match(struct cds_lfht_node *node, const void *key)
{
	const struct proc_entry *e = caa_container_of(node, struct proc_entry, node);

	return e->tgid == *(const uint32_t *)key;
}

static void entry_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct proc_entry, rcu));
}

struct proc_table *proc_table_new(void)
{
	struct proc_table *t;

	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ht = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
			     NULL);
	if (!t->ht) {
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	return t;
}

void proc_table_free(struct proc_table **tp)
{
	struct proc_table *t = *tp;

	if (!t)
		return;
	/* Empty by contract; since liburcu 0.10 destroying needs no RCU
	 * registration.  rcu_barrier() runs the frees call_rcu() queued. */
	cds_lfht_destroy(t->ht, NULL);
	rcu_barrier();
	free(t);
	*tp = NULL;
}

int proc_table_put(struct proc_table *t, const struct capture_proc_info *info)
{
	size_t exe_len = strnlen(info->exe, sizeof(info->exe) - 1);
	struct cds_lfht_node *old;
	struct proc_entry *e;

	e = malloc(sizeof(*e) + exe_len + 1);
	if (!e)
		return -ENOMEM;
	cds_lfht_node_init(&e->node);
	e->tgid = info->tgid;
	e->ppid = info->ppid;
	e->start_time_ns = info->start_time_ns;
	memcpy(e->comm, info->comm, sizeof(e->comm));
	e->comm[sizeof(e->comm) - 1] = '\0';
	e->cgroup_id = info->cgroup_id;
	memcpy(e->container_id, info->container_id, sizeof(e->container_id));
	e->container_id[sizeof(e->container_id) - 1] = '\0';
	e->exec_gen = info->exec_gen;
	memcpy(e->exe, info->exe, exe_len);
	e->exe[exe_len] = '\0';

	rcu_read_lock();
	tsan_release(e);
	old = cds_lfht_add_replace(t->ht, tgid_hash(e->tgid), entry_match, &e->tgid,
				   &e->node);
	rcu_read_unlock();
	if (old)
		call_rcu(&caa_container_of(old, struct proc_entry, node)->rcu,
			 entry_free_rcu);
	else
		__atomic_store_n(&t->count, t->count + 1, __ATOMIC_RELAXED);
	return 0;
}

static int table_remove(struct proc_table *t, uint32_t tgid, bool check_start,
			uint64_t start_time_ns)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	int err = -ENOENT;

	rcu_read_lock();
	cds_lfht_lookup(t->ht, tgid_hash(tgid), entry_match, &tgid, &iter);
	node = cds_lfht_iter_get_node(&iter);
	if (node && check_start &&
	    caa_container_of(node, struct proc_entry, node)->start_time_ns != start_time_ns)
		node = NULL;
	if (node && !cds_lfht_del(t->ht, node)) {
		call_rcu(&caa_container_of(node, struct proc_entry, node)->rcu,
			 entry_free_rcu);
		__atomic_store_n(&t->count, t->count - 1, __ATOMIC_RELAXED);
		err = 0;
	}
	rcu_read_unlock();
	return err;
}

int proc_table_remove(struct proc_table *t, uint32_t tgid)
{
	return table_remove(t, tgid, false, 0);
}

int proc_table_remove_if(struct proc_table *t, uint32_t tgid, uint64_t start_time_ns)
{
	return table_remove(t, tgid, true, start_time_ns);
}

void proc_table_clear(struct proc_table *t)
{
	struct cds_lfht_iter iter;
	struct proc_entry *e;

	rcu_read_lock();
	cds_lfht_for_each_entry(t->ht, &iter, e, node) {
		if (!cds_lfht_del(t->ht, &e->node))
			call_rcu(&e->rcu, entry_free_rcu);
	}
	rcu_read_unlock();
	__atomic_store_n(&t->count, 0, __ATOMIC_RELAXED);
}

/* The entry of tgid, or NULL; inside an RCU read-side section. */
static const struct proc_entry *entry_find(struct proc_table *t, uint32_t tgid)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(t->ht, tgid_hash(tgid), entry_match, &tgid, &iter);
	node = cds_lfht_iter_get_node(&iter);
	return node ? caa_container_of(node, struct proc_entry, node) : NULL;
}

int proc_table_lookup(struct proc_table *t, uint32_t tgid, struct capture_proc_info *ret)
{
	const struct proc_entry *e;
	int err = -ENOENT;

	rcu_read_lock();
	e = entry_find(t, tgid);
	if (e) {
		entry_copy_out(e, ret);
		err = 0;
	}
	rcu_read_unlock();
	return err;
}

int proc_table_exec_gen(struct proc_table *t, uint32_t tgid, uint32_t *ret)
{
	const struct proc_entry *e;
	int err = -ENOENT;

	rcu_read_lock();
	e = entry_find(t, tgid);
	if (e) {
		tsan_acquire(e);
		*ret = e->exec_gen;
		err = 0;
	}
	rcu_read_unlock();
	return err;
}

bool proc_table_holds(struct proc_table *t, uint32_t tgid, uint64_t start_time_ns)
{
	const struct proc_entry *e;
	bool held;

	rcu_read_lock();
	e = entry_find(t, tgid);
	held = e && e->start_time_ns == start_time_ns;
	rcu_read_unlock();
	return held;
}

size_t proc_table_count(struct proc_table *t)
{
	return __atomic_load_n(&t->count, __ATOMIC_RELAXED);
}

int proc_table_foreach(struct proc_table *t, struct capture_proc_info *scratch,
		       int (*fn)(const struct capture_proc_info *info, void *ctx), void *ctx)
{
	struct cds_lfht_iter iter;
	struct proc_entry *e;
	int ret = 0;

	rcu_read_lock();
	cds_lfht_for_each_entry(t->ht, &iter, e, node) {
		entry_copy_out(e, scratch);
		ret = fn(scratch, ctx);
		if (ret)
			break;
	}
	rcu_read_unlock();
	return ret;
}

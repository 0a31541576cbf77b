/* The socket side of the capture: one BPF ring buffer per CPU, inserted
 * into the sock program's events array of maps, and the reader threads that
 * drain them into the pipeline.
 *
 * Per-CPU ring buffers rather than a perf buffer, by measurement (2 CPUs,
 * kernel 6.18, one reader thread draining both CPUs, a loop of 100-byte
 * write()+read() pairs over loopback TCP, 300000 pairs, two runs each):
 *
 *                                   us per pair   sys_exit_write program
 *   no probes                          7.2-8.3          -
 *   ring, wakeup per record           25.1-31.9         -
 *   perf, wakeup per record (libbpf
 *     default wakeup_events = 1)      39.2-44.9      13.4-14.2 us
 *   perf, 1 MiB wakeup watermark      10.9-11.2       870-890 ns
 *   ring, 1 MiB wakeup mark           10.8-11.5       670-700 ns
 *
 * Both lose nothing at these rates (about 180000 events/s through the one
 * reader, which was not saturated).  With wakeups batched the two cost the
 * same end to end; the ring's program is 200 ns cheaper per event
 * (bpf_ringbuf_output() against bpf_perf_event_output()), its records are
 * exact-size without the perf sample header and padding, a full ring is
 * seen by the program itself, which counts it per CPU (events_lost), and
 * libbpf's ring_buffer manager lets a reader own any share of the CPUs'
 * rings (perf_buffer__new() opens every CPU in one object).  Waking the
 * reader for every record is what costs: hence the wakeup mark below and
 * the timed polls.
 *
 * Small data events are gathered per CPU in a stage and reach the ring in
 * batches of about 4 KiB (see QTAP_STAGE_FLUSH_BYTES in sock.h), by
 * measurement too: a ring record of its own for each event cost about
 * 200 ns in the program beyond the event itself (the reserve and commit,
 * and the first writes to ring lines no longer in this CPU's cache: a
 * second record reserved in the same program cost as much as the first),
 * where the stage stays in the CPU's cache.  nginx on
 * loopback driven by wrk (-t2 -c32, 3 s, the agent before and after the
 * change alternating, 5 rounds each, medians; 2 CPUs, kernel 6.18):
 *
 *                         sock_send   sock_recv   programs     agent threads
 *                         ns/run      ns/run      us/request   us/request
 *   a record per event       710         610        2.65          1.00
 *   batches from stages      564         448        2.03          0.67
 *
 * (The readers gain too: far fewer ring records to walk.)  A stage
 * holds its events until the next event of its CPU that does not go
 * through it, until 4 KiB have gathered, or until the first is
 * QTAP_STAGE_MAX_NS old at the next one; a reader has a quiet CPU's stage
 * written by running sock_flush on that CPU (sock_stages_flush()). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <urcu.h>

#include "sock.h"
#include "sock.skel.h"

#include "capture/capture-int.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "parse/parse.h"
#include "util/log.h"

/* The programs wake a reader only when its ring reaches a quarter of its
 * size (a wakeup per record cost more than the probes themselves), and
 * again for every sixteenth of that quarter the ring grows by while the
 * reader has not run yet: a wakeup at every write past the mark sent 2.3
 * IRQ work interrupts (one per wakeup) per 1000 requests, these send 1.0
 * (nginx on loopback driven by wrk, -t2 -c32, 15 rounds of 2 s, medians;
 * 2 CPUs, kernel 6.18).  Below the mark, the reader takes the records when
 * it wakes on its own, this often.  So events wait at most this long in a
 * quiet ring.  Each look wakes the reader and then the workers it hands
 * events to, and on a busy host every wakeup takes a CPU from the traced
 * programs.  nginx on loopback driven by
 * wrk (-t2 -c32, 2 s; builds alternated in one run, medians; 2 CPUs,
 * kernel 6.18), the CPU time of the agent's threads per request (from
 * /proc/PID/task/N/schedstat), in microseconds:
 *
 *   look every        10 ms    25 ms    50 ms
 *   15 rounds         0.520    0.463
 *   11 rounds         0.571    0.439    0.497
 *
 * In the second run each round's threads cost less than at 10 ms, by 0.11
 * us for 25 ms and 0.16 for 50 (medians of the rounds' own differences).
 * Longer looks gain little more, and a quiet ring's events wait longer. */
#define SOCK_POLL_MS 25
/* A reader that found nothing in its rings and stages for this long (a
 * second of empty looks) stops its timed looks: it marks its CPUs' stages
 * (reader_asleep), and the first event of one of them is written to the
 * ring at once with a wakeup.  A reader per CPU polling 100 times a second
 * on an idle host cost each about 0.4% of a CPU (2 CPUs, kernel 6.18).
 * It still wakes this often: an event whose program read the mark just
 * before the reader set it waits at most this long (the workers wait
 * twice as long for a missing event, CONN_REORDER_WAIT_NS). */
#define SOCK_IDLE_MS 1000
#define SOCK_SLEEP_MS 1000

const char *const sock_kind_names[SOCK_KIND__COUNT] = {
	"conn_open", "conn_data", "conn_close", "tls_data"
};

/* The ring size for ring_buffer_kb: a power of two, at least a page. */
static size_t ring_bytes_for(unsigned kb)
{
	size_t want = kb ? (size_t)kb * 1024 : QTAP_SOCK_RINGBUF_BYTES;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t n = page;

	while (n < want)
		n <<= 1;
	return n;
}

/* Creates one ring per CPU. */
static int sock_rings_create(struct capture *cap)
{
	char name[16];
	int c, err;

	cap->ring_fds = malloc(sizeof(*cap->ring_fds) * cap->ncpus);
	if (!cap->ring_fds) {
		log_error("creating the socket ring buffers failed: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (c = 0; c < cap->ncpus; c++)
		cap->ring_fds[c] = -1;
	for (c = 0; c < cap->ncpus; c++) {
		snprintf(name, sizeof(name), "qtap_sock_%d", c % 100000);
		cap->ring_fds[c] = bpf_map_create(BPF_MAP_TYPE_RINGBUF, name, 0, 0,
						  cap->ring_bytes, NULL);
		if (cap->ring_fds[c] < 0) {
			err = -errno;
			log_error("creating the ring buffer of CPU %d (%zu bytes) failed: %s", c,
				  cap->ring_bytes, strerror(-err));
			return err;
		}
	}
	return 0;
}

/* Whether the type name of kind (a struct or an enum) in btf has a member
 * (a field, a value) called member. */
static bool btf_has_member(const struct btf *btf, const char *name, int kind, const char *member)
{
	int id = btf__find_by_name_kind(btf, name, kind);
	const struct btf_type *t = id > 0 ? btf__type_by_id(btf, id) : NULL;
	unsigned i;

	for (i = 0; t && i < btf_vlen(t); i++) {
		__u32 off = kind == BTF_KIND_ENUM ? btf_enum(t)[i].name_off :
						    btf_members(t)[i].name_off;

		if (!strcmp(btf__name_by_offset(btf, off), member))
			return true;
	}
	return false;
}

void kernel_features_read(const struct btf *btf, struct kernel_features *f)
{
	/* A tracepoint's BTF is the typedef btf_trace_NAME. */
	f->sock_length_tps =
		btf__find_by_name_kind(btf, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) > 0 &&
		btf__find_by_name_kind(btf, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
	f->sendpage = btf_has_member(btf, "proto_ops", BTF_KIND_STRUCT, "sendpage");
	f->uprobe_multi = btf_has_member(btf, "bpf_attach_type", BTF_KIND_ENUM,
					 "BPF_TRACE_UPROBE_MULTI");
}

/* What the running kernel has: 0, or a negative errno (said) when it
 * cannot run the socket programs. */
static int kernel_features_check(struct kernel_features *f)
{
	struct btf *btf = btf__load_vmlinux_btf();
	int err;

	if (!btf) {
		err = -errno;
		log_error("reading the kernel's BTF (/sys/kernel/btf/vmlinux) failed: %s",
			  strerror(-err));
		return err;
	}
	kernel_features_read(btf, f);
	btf__free(btf);
	if (!f->sock_length_tps) {
		log_error("this kernel has no sock_send_length and sock_recv_length tracepoints "
			  "(Linux 6.3 added them): qtap needs Linux 6.5 or later");
		return -EOPNOTSUPP;
	}
	if (f->sendpage)
		log_warn("on this kernel (before Linux 6.5) sendfile(2) to a socket bypasses the "
			 "socket tracepoints: the bytes it sends are not counted");
	return 0;
}

int sock_bpf_prepare(struct capture *cap)
{
	const struct qtap_conf *conf = cap->opts.conf;
	struct sock_bpf *skel = cap->sock;
	unsigned max_conns = cap->opts.max_conns ? cap->opts.max_conns : QTAP_SOCK_MAX_CONNS;
	struct kernel_features kf;
	int err;

	err = kernel_features_check(&kf);
	if (err)
		return err;
	cap->ring_bytes = ring_bytes_for(conf ? conf->capture.ring_buffer_kb : 0);
	err = bpf_map__set_max_entries(skel->maps.events, cap->ncpus);
	if (!err)
		err = bpf_map__set_max_entries(skel->maps.scratch, cap->ncpus);
	if (!err)
		err = bpf_map__set_max_entries(skel->maps.stage, cap->ncpus);
	if (!err)
		err = bpf_map__set_max_entries(skel->maps.conns, max_conns);
	if (!err)
		err = bpf_map__set_max_entries(skel->maps.learned, max_conns);
	skel->rodata->wakeup_bytes = cap->ring_bytes / 4;
	/* The TLS library probes are uprobe_multi links (see tls.c); not
	 * loaded at all without --tls-probes, or on a kernel without them. */
	if (!err && cap->opts.tls_probes && !kf.uprobe_multi) {
		log_warn("TLS library probes need uprobe_multi links (Linux 6.6 or later), which "
			 "this kernel lacks: TLS is seen from the wire only");
		cap->opts.tls_probes = 0;
	}
	if (!err && cap->opts.tls_probes) {
		err = bpf_program__set_expected_attach_type(skel->progs.tls_enter,
							    CAPTURE_ATTACH_UPROBE_MULTI);
		if (!err)
			err = bpf_program__set_expected_attach_type(skel->progs.tls_return,
								    CAPTURE_ATTACH_UPROBE_MULTI);
	} else if (!err) {
		bpf_program__set_autoload(skel->progs.tls_enter, false);
		bpf_program__set_autoload(skel->progs.tls_return, false);
	}
	if (err) {
		log_error("sizing the socket BPF maps failed: %s", strerror(-err));
		return err;
	}
	err = sock_rings_create(cap);
	if (err)
		return err;
	/* The first ring is the inner map's template (libbpf 1.1 cannot
	 * resize the template it would make from the declaration). */
	err = bpf_map__set_inner_map_fd(skel->maps.events, cap->ring_fds[0]);
	if (err)
		log_error("setting the ring buffer template failed: %s", strerror(-err));
	return err;
}

int sock_rings_insert(struct capture *cap)
{
	int outer = bpf_map__fd(cap->sock->maps.events);
	void *stages;
	size_t len;
	int c, err;

	for (c = 0; c < cap->ncpus; c++) {
		__u32 key = c;

		if (bpf_map_update_elem(outer, &key, &cap->ring_fds[c], BPF_ANY)) {
			err = -errno;
			log_error("inserting the ring buffer of CPU %d failed: %s", c,
				  strerror(-err));
			return err;
		}
	}
	/* An array map's values start at offset 0 of its mapping. */
	len = (size_t)cap->ncpus * sizeof(struct qtap_stage);
	stages = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
		      bpf_map__fd(cap->sock->maps.stage), 0);
	if (stages == MAP_FAILED) {
		err = -errno;
		log_error("mapping the socket event stages failed: %s", strerror(-err));
		return err;
	}
	cap->stages = stages;
	cap->stages_len = len;
	return 0;
}

void sock_rings_free(struct capture *cap)
{
	int c;

	if (cap->stages) {
		munmap(cap->stages, cap->stages_len);
		cap->stages = NULL;
	}
	if (!cap->ring_fds)
		return;
	for (c = 0; c < cap->ncpus; c++)
		if (cap->ring_fds[c] >= 0)
			close(cap->ring_fds[c]);
	free(cap->ring_fds);
	cap->ring_fds = NULL;
}

/* The state (CONN_*) of connection conn_id's entry at key in the kernel's
 * table; -1 when there is none there, or another connection's (its socket
 * was freed, its end unheard, and its memory went to a new one). */
static int sock_conn_state(struct capture *cap, uint64_t key, uint64_t conn_id)
{
	struct conn_state st;

	if (bpf_map__lookup_elem(cap->sock->maps.conns, &key, sizeof(key), &st, sizeof(st), 0) ||
	    st.conn_id != conn_id)
		return -1;
	return (int)st.state;
}

void sock_conn_forget(void *ctx, uint64_t key, uint64_t conn_id)
{
	struct capture *cap = ctx;
	struct qtap_learned v;

	/* Another connection's entries stay: dropped, its next call would
	 * make it a new connection.  (One made between the look and the
	 * delete is dropped all the same: a window of microseconds after
	 * the end of a connection the agent heard nothing of for minutes.) */
	if (sock_conn_state(cap, key, conn_id) >= 0)
		bpf_map__delete_elem(cap->sock->maps.conns, &key, sizeof(key), 0);
	/* the agent's word on it, if the programs never took it */
	if (!bpf_map__lookup_elem(cap->sock->maps.learned, &key, sizeof(key), &v, sizeof(v), 0) &&
	    v.conn_id == conn_id)
		bpf_map__delete_elem(cap->sock->maps.learned, &key, sizeof(key), 0);
}

/* The state of the TCP socket with exactly these endpoints (ports in host
 * order), bound to interface ifindex (0: none; one bound to an interface
 * is found only under it), from the kernel's socket diagnostics: TCP_*
 * (1..), 0 when there is none, -1 when it cannot tell; *owned: a process
 * still holds it (an inode; a socket closed while TCP finishes with it has
 * none).  A lookup by endpoints may also find a listener on the local
 * port: only a socket with the remote port counts. */
static int tcp_diag_state(int family, const uint8_t *laddr, uint16_t lport,
			  const uint8_t *raddr, uint16_t rport, uint32_t ifindex, bool *owned)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	union {
		struct nlmsghdr nlh;
		char buf[4096];
	} reply;
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	size_t alen = family == AF_INET ? 4 : 16;
	const struct nlmsghdr *h;
	int fd, state = -1;
	ssize_t n;

	*owned = false;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_family = (uint8_t)family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_sport = htons(lport);
	msg.req.id.idiag_dport = htons(rport);
	memcpy(msg.req.id.idiag_src, laddr, alen);
	memcpy(msg.req.id.idiag_dst, raddr, alen);
	msg.req.id.idiag_if = ifindex;
	msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -1;
	if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl)) !=
	    (ssize_t)sizeof(msg))
		goto out;
	n = recv(fd, &reply, sizeof(reply), 0);
	if (n < 0)
		goto out;
	for (h = &reply.nlh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error == -ENOENT)
				state = 0;
			break;
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			state = m->id.idiag_dport == htons(rport) ? m->idiag_state : 0;
			*owned = state && m->idiag_inode;
			break;
		}
	}
out:
	close(fd);
	return state;
}

bool sock_conn_alive(void *ctx, const struct pipeline_conn_ref *c)
{
	uint8_t l6[16] = { [10] = 0xff, [11] = 0xff }, r6[16] = { [10] = 0xff, [11] = 0xff };
	struct capture *cap = ctx;
	bool owned;
	int state;

	/* The kernel's table first: a connection whose end the programs saw
	 * (its CLOSE lost on the way) is no longer open there, nor one whose
	 * socket was freed since.  Its entry goes when the socket is
	 * destroyed. */
	if (cap && c->key && sock_conn_state(cap, c->key, c->conn_id) != CONN_OPEN)
		return false;
	/* The socket diagnostics answer for the agent's network namespace
	 * only: another's sockets (a container's) are not found there, and
	 * the table's word stands.  In the agent's, they also find a socket
	 * whose end a skipped program run left unseen gone. */
	if (cap && c->key && c->foreign_netns)
		return true;
	state = tcp_diag_state(c->family, c->laddr, c->lport, c->raddr, c->rport, c->ifindex,
			       &owned);
	if (state == 0 && c->family == AF_INET) {
		/* an IPv6 socket's, reported as IPv4 (v4-mapped addresses) */
		memcpy(l6 + 12, c->laddr, 4);
		memcpy(r6 + 12, c->raddr, 4);
		state = tcp_diag_state(AF_INET6, l6, c->lport, r6, c->rport, c->ifindex, &owned);
	}
	/* The diagnostics cannot tell (no socket to ask them with: the agent
	 * at its file limit): the table's word stands, and it is asked again
	 * a timeout later. */
	if (state < 0)
		return cap && c->key;
	/* Open both ways, or the peer's half closed; or this side's, by a
	 * shutdown(): its process still holds it and reads (a close sends a
	 * FIN too, but leaves the socket to TCP, without an owner). */
	switch (state) {
	case TCP_ESTABLISHED:
	case TCP_CLOSE_WAIT:
	case TCP_SYN_SENT:
	case TCP_SYN_RECV:
		return true;
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSING:
		return owned;
	default:
		return false;
	}
}

void sock_conn_learned(void *ctx, uint64_t key, uint64_t conn_id, uint8_t direction, bool skip)
{
	struct capture *cap = ctx;
	struct qtap_learned v = { .conn_id = conn_id, .direction = direction, .skip = skip };

	/* Not written (no memory): the connection keeps its events, which
	 * the tracker drops when it is left out. */
	bpf_map__update_elem(cap->sock->maps.learned, &key, sizeof(key), &v, sizeof(v), BPF_ANY);
}

/* ---- reader threads -------------------------------------------------- */

static void bad_event(struct sock_reader *r, const void *data, size_t size)
{
	const struct qtap_event_header *hdr = data;

	metrics_counter_add(r->invalid, 1);
	if (r->bad_event_logged)
		return;
	log_error("dropping socket events that do not match this agent "
		  "(size %zu, ABI version %u, type %u; expected version %u)",
		  size, size >= sizeof(*hdr) ? hdr->version : 0,
		  size >= sizeof(*hdr) ? hdr->type : 0, QTAP_EVENT_ABI_VERSION);
	r->bad_event_logged = true;
}

/* One socket event at data, in the size bytes there (a record, or the rest
 * of a batch): its size, or 0 when it is not an event of this agent's. */
static size_t sock_event(struct sock_reader *r, const void *data, size_t size)
{
	const struct qtap_event_header *hdr = data;
	struct capture *cap = r->cap;
	size_t min = size >= sizeof(*hdr) ? qtap_sock_record_min(hdr->type) : 0;

	if (!min || hdr->version != QTAP_EVENT_ABI_VERSION || size < min ||
	    ((hdr->type == QTAP_EVENT_CONN_DATA || hdr->type == QTAP_EVENT_TLS_DATA) &&
	     size - min < ((const struct qtap_conn_data *)data)->captured)) {
		bad_event(r, data, size);
		return 0;
	}
	/* A small data record is written at its full size: what it holds. */
	if (hdr->type == QTAP_EVENT_CONN_DATA || hdr->type == QTAP_EVENT_TLS_DATA)
		size = min + ((const struct qtap_conn_data *)data)->captured;
	else
		size = min;
	if (hdr->cpu < (unsigned)cap->ncpus)
		metrics_counter_add(r->received[hdr->cpu * SOCK_KIND__COUNT +
						 hdr->type - QTAP_EVENT_CONN_OPEN], 1);
	if (cap->opts.sock_event_fn)
		cap->opts.sock_event_fn(data, size, cap->opts.sock_event_ctx);
	/* -ENOBUFS is counted by the pipeline, and the worker sees the gap. */
	pipeline_submit(cap->pipeline, r->index, data, size);
	return size;
}

/* ring_buffer_sample_fn: one socket event, or a batch of them (struct
 * qtap_batch: data events each at a multiple of QTAP_BATCH_ALIGN). */
static int sock_handle_record(void *ctx, void *data, size_t size)
{
	const struct qtap_batch *b = data;
	struct sock_reader *r = ctx;
	size_t off, n;
	uint32_t i;

	if (size < sizeof(b->hdr) || b->hdr.type != QTAP_EVENT_BATCH) {
		sock_event(r, data, size);
		return 0;
	}
	if (b->hdr.version != QTAP_EVENT_ABI_VERSION || size < sizeof(*b) ||
	    size - sizeof(*b) < b->bytes) {
		bad_event(r, data, size);
		return 0;
	}
	size = sizeof(*b) + b->bytes;
	off = sizeof(*b);
	for (i = 0; i < b->events && off < size; i++) {
		n = sock_event(r, (const uint8_t *)data + off, size - off);
		if (!n)
			break;
		off += (n + QTAP_BATCH_ALIGN - 1) & ~(size_t)(QTAP_BATCH_ALIGN - 1);
	}
	return 0;
}

/* Has the stages of the reader's CPUs written to their rings (the
 * sock_flush program, run on each such CPU): those that have held an
 * event for at least age_ns. */
static void sock_stages_flush(struct sock_reader *r, uint64_t age_ns)
{
	struct capture *cap = r->cap;
	int fd = bpf_program__fd(cap->sock->progs.sock_flush);
	uint64_t now = capture_mono_ns();
	int c, err;

	for (c = r->index; c < cap->ncpus; c += cap->n_readers) {
		const struct qtap_stage *sg = &cap->stages[c];
		LIBBPF_OPTS(bpf_test_run_opts, opts, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = c);

		/* Written by the kernel: read once each. */
		if (!__atomic_load_n(&sg->events, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&sg->first_ns, __ATOMIC_RELAXED) + age_ns > now)
			continue;
		err = bpf_prog_test_run_opts(fd, &opts);
		if (err && !r->flush_err_logged) {
			log_error("writing the socket events gathered on CPU %d failed: %s", c,
				  strerror(errno));
			r->flush_err_logged = true;
		}
	}
}

static int reader_series_init(struct sock_reader *r)
{
	struct capture *cap = r->cap;
	char cpu[16];
	int i, k;

	r->received = calloc((size_t)cap->ncpus * SOCK_KIND__COUNT, sizeof(*r->received));
	if (!r->received)
		return -ENOMEM;
	r->invalid = metrics_series_get(cap->store, M_SYSTEM_EVENTS_DROPPED_TOTAL,
					(const char *const[]){ "invalid" });
	if (!r->invalid)
		return -ENOMEM;
	for (i = 0; i < cap->ncpus; i++) {
		snprintf(cpu, sizeof(cpu), "%d", i);
		for (k = 0; k < SOCK_KIND__COUNT; k++) {
			const char *values[] = { cpu, sock_kind_names[k] };

			r->received[i * SOCK_KIND__COUNT + k] =
				metrics_series_get(cap->store, M_SYSTEM_EVENTS_RECEIVED_TOTAL,
						   values);
			if (!r->received[i * SOCK_KIND__COUNT + k])
				return -ENOMEM;
		}
	}
	return 0;
}

/* Takes what the reader's rings hold, and the stages that have held an
 * event for age_ns; the events handed on, or a negative errno. */
static int sock_reader_drain(struct sock_reader *r, uint64_t age_ns)
{
	int n;

	/* Stages no later event will write, then rings below the wakeup
	 * mark (they did not wake epoll). */
	sock_stages_flush(r, age_ns);
	n = ring_buffer__consume(r->rb);
	if (n > 0)
		pipeline_flush(r->cap->pipeline, r->index);
	return n;
}

/* Marks (asleep) or unmarks the stages of the reader's CPUs. */
static void sock_reader_mark(struct sock_reader *r, bool asleep)
{
	struct capture *cap = r->cap;
	int c;

	for (c = r->index; c < cap->ncpus; c += cap->n_readers)
		__atomic_store_n(&cap->stages[c].reader_asleep, asleep, __ATOMIC_RELAXED);
	/* The mark before the look at the stages in sock_reader_sleep(),
	 * as the programs gather an event before they read it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Marks the reader's stages to go to sleep: true when they and its rings
 * are still empty, else unmarks them (what was there has been taken). */
static bool sock_reader_sleep(struct sock_reader *r)
{
	struct capture *cap = r->cap;
	int c;

	sock_reader_mark(r, true);
	for (c = r->index; c < cap->ncpus; c += cap->n_readers)
		if (__atomic_load_n(&cap->stages[c].events, __ATOMIC_RELAXED))
			break;
	if (c >= cap->ncpus && sock_reader_drain(r, QTAP_STAGE_MAX_NS) == 0)
		return true;
	sock_reader_mark(r, false);
	return false;
}

static void *sock_reader_main(void *arg)
{
	struct sock_reader *r = arg;
	struct capture *cap = r->cap;
	struct epoll_event ev[2];
	int n, idle = 0;
	bool asleep;

	rcu_register_thread();
	metrics_thread_register(cap->store);
	while (!atomic_load_explicit(&cap->sock_stop, memory_order_acquire)) {
		asleep = idle >= SOCK_IDLE_MS / SOCK_POLL_MS && sock_reader_sleep(r);
		n = epoll_wait(r->epoll_fd, ev, 2, asleep ? SOCK_SLEEP_MS : SOCK_POLL_MS);
		if (n < 0 && errno != EINTR) {
			log_error("waiting for socket events failed: %s", strerror(errno));
			break;
		}
		if (asleep)
			sock_reader_mark(r, false);
		n = sock_reader_drain(r, QTAP_STAGE_MAX_NS);
		if (n < 0) {
			log_error("reading socket events failed: %s", strerror(-n));
			break;
		}
		idle = n ? 0 : idle + 1;
	}
	/* The programs are detached by now: take what they left. */
	sock_reader_drain(r, 0);
	metrics_thread_unregister(cap->store);
	rcu_unregister_thread();
	return NULL;
}

/* The reader's epoll set: its rings (libbpf's epoll set, readable when one
 * of them is) and the stop eventfd. */
static int sock_reader_epoll(struct sock_reader *r)
{
	struct epoll_event ev = { .events = EPOLLIN };

	r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epoll_fd < 0)
		return -errno;
	if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, ring_buffer__epoll_fd(r->rb), &ev) ||
	    epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, r->cap->sock_wake_fd, &ev))
		return -errno;
	return 0;
}

int sock_readers_start(struct capture *cap)
{
	unsigned i;
	int c, err;

	cap->sock_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cap->sock_wake_fd < 0) {
		err = -errno;
		log_error("starting the socket readers failed: %s", strerror(-err));
		return err;
	}
	cap->readers = calloc(cap->n_readers, sizeof(*cap->readers));
	if (!cap->readers) {
		log_error("starting the socket readers failed: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (i = 0; i < cap->n_readers; i++)
		cap->readers[i].epoll_fd = -1;
	for (i = 0; i < cap->n_readers; i++) {
		struct sock_reader *r = &cap->readers[i];

		r->cap = cap;
		r->index = i;
		err = reader_series_init(r);
		if (err) {
			log_error("starting the socket readers failed: %s", strerror(-err));
			return err;
		}
		for (c = i; c < cap->ncpus; c += cap->n_readers) {
			if (!r->rb) {
				r->rb = ring_buffer__new(cap->ring_fds[c], sock_handle_record, r,
							 NULL);
				err = r->rb ? 0 : -errno;
			} else {
				err = ring_buffer__add(r->rb, cap->ring_fds[c], sock_handle_record,
						       r);
			}
			if (err) {
				log_error("opening the ring buffer of CPU %d failed: %s", c,
					  strerror(-err));
				return err;
			}
		}
		err = sock_reader_epoll(r);
		if (err) {
			log_error("starting the socket readers failed: %s", strerror(-err));
			return err;
		}
	}
	for (i = 0; i < cap->n_readers; i++) {
		struct sock_reader *r = &cap->readers[i];
		char name[16];

		err = pthread_create(&r->thread, NULL, sock_reader_main, r);
		if (err) {
			log_error("starting a socket reader thread failed: %s", strerror(err));
			return -err;
		}
		r->started = true;
		snprintf(name, sizeof(name), "qtap-sock%u", i % 1000000);
		pthread_setname_np(r->thread, name);
	}
	return 0;
}

void sock_readers_stop(struct capture *cap)
{
	uint64_t one = 1;
	unsigned i;

	if (cap->readers) {
		atomic_store_explicit(&cap->sock_stop, true, memory_order_release);
		/* Wakes the readers out of their sleep. */
		if (write(cap->sock_wake_fd, &one, sizeof(one)) < 0)
			log_error("waking the socket readers failed: %s", strerror(errno));
		for (i = 0; i < cap->n_readers; i++) {
			struct sock_reader *r = &cap->readers[i];

			if (r->started)
				pthread_join(r->thread, NULL);
			if (r->epoll_fd >= 0)
				close(r->epoll_fd);
			ring_buffer__free(r->rb);
			free(r->received);
		}
		free(cap->readers);
		cap->readers = NULL;
	}
	if (cap->sock_wake_fd >= 0) {
		close(cap->sock_wake_fd);
		cap->sock_wake_fd = -1;
	}
}

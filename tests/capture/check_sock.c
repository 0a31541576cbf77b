/* Check suite "sock": the socket programs on the real kernel (run as root:
 * a machine that cannot load them fails), driven by TCP servers and clients
 * inside the test on 127.0.0.1 and [::1], through the capture's readers
 * (sock_event_fn) and the real pipeline; and the filter decisions. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <linux/net_tstamp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <urcu.h>

#include "proc.h"
#include "sock.h"
#include "sock.skel.h"

#include "capture/capture-int.h"
#include "capture/capture.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "parse/parse.h"
#include "util/buf.h"

#include "../check_metrics.h"
#include "../check_run.h"

#define PAYLOAD_KEEP 64

/* ---- recording ------------------------------------------------------ */

/* One socket event as the readers handed it over. */
struct rec_event {
	uint16_t type;
	uint64_t conn_id;
	uint64_t seq;
	uint32_t tgid;
	uint32_t fd;
	/* open */
	uint16_t family;
	uint8_t direction;
	uint8_t oflags;
	uint16_t lport, rport;
	uint8_t laddr[16], raddr[16];
	uint64_t key;		/* the kernel's struct sock */
	uint32_t netns, bound_dev_if;
	/* data */
	uint8_t dir, op;
	uint16_t dflags;
	uint32_t len, captured;
	uint8_t payload[PAYLOAD_KEEP];
	/* close */
	uint32_t cflags;
	uint64_t bytes_sent, bytes_recv, data_events;
};

/* Written by the reader threads (record_sock), read by the test thread;
 * under lock. */
struct recorder {
	pthread_mutex_t lock;
	struct rec_event *ev;
	size_t n, cap;
	unsigned bad;
	unsigned exec_seen[64];	/* tgids of exec events */
	unsigned n_exec;
};

static struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* While set, the reader that hands over an event waits (a full ring);
 * stalled says a reader is waiting there. */
static pthread_mutex_t stall_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stall_cond = PTHREAD_COND_INITIALIZER;
static bool stall, stalled;

static void stall_set(bool on)
{
	pthread_mutex_lock(&stall_lock);
	stall = on;
	pthread_cond_broadcast(&stall_cond);
	pthread_mutex_unlock(&stall_lock);
}

static void record_sock(const void *data, size_t size, void *ctx)
{
	const struct qtap_event_header *hdr = data;
	struct recorder *r = ctx;
	struct rec_event e;

	pthread_mutex_lock(&stall_lock);
	while (stall) {
		stalled = true;
		pthread_cond_wait(&stall_cond, &stall_lock);
	}
	stalled = false;
	pthread_mutex_unlock(&stall_lock);
	memset(&e, 0, sizeof(e));
	e.type = hdr->type;
	if (hdr->type == QTAP_EVENT_CONN_OPEN) {
		const struct qtap_conn_open *o = data;

		e.conn_id = o->conn_id;
		e.seq = o->seq;
		e.tgid = o->tgid;
		e.fd = o->fd;
		e.family = o->family;
		e.direction = o->direction;
		e.oflags = o->flags;
		e.lport = o->lport;
		e.rport = o->rport;
		memcpy(e.laddr, o->laddr, 16);
		memcpy(e.raddr, o->raddr, 16);
		e.key = o->key;
		e.netns = o->netns;
		e.bound_dev_if = o->bound_dev_if;
	} else if (hdr->type == QTAP_EVENT_CONN_DATA) {
		const struct qtap_conn_data *d = data;

		e.conn_id = d->conn_id;
		e.seq = d->seq;
		e.tgid = d->tgid;
		e.fd = d->fd;
		e.dir = d->dir;
		e.op = d->op;
		e.dflags = d->flags;
		e.len = d->len;
		e.captured = d->captured;
		/* The reader checked it: count it as bad here if not. */
		if (sizeof(*d) + d->captured > size)
			e.type = 0;
		memcpy(e.payload, d->payload, d->captured < PAYLOAD_KEEP ? d->captured : PAYLOAD_KEEP);
	} else if (hdr->type == QTAP_EVENT_CONN_CLOSE) {
		const struct qtap_conn_close *c = data;

		e.conn_id = c->conn_id;
		e.seq = c->seq;
		e.tgid = c->tgid;
		e.fd = c->fd;
		e.cflags = c->flags;
		e.bytes_sent = c->bytes_sent;
		e.bytes_recv = c->bytes_recv;
		e.data_events = c->data_events;
	}
	pthread_mutex_lock(&r->lock);
	if (!e.type)
		r->bad++;
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1024;
		struct rec_event *nev = realloc(r->ev, ncap * sizeof(*nev));

		if (!nev) {
			r->bad++;
			pthread_mutex_unlock(&r->lock);
			return;
		}
		r->ev = nev;
		r->cap = ncap;
	}
	r->ev[r->n++] = e;
	pthread_mutex_unlock(&r->lock);
}

static void record_proc(const struct qtap_proc_event *ev, void *ctx)
{
	struct recorder *r = ctx;

	pthread_mutex_lock(&r->lock);
	if (ev->hdr.type == QTAP_EVENT_PROCESS_EXEC && r->n_exec < 64)
		r->exec_seen[r->n_exec++] = ev->tgid;
	pthread_mutex_unlock(&r->lock);
}

static void rec_reset(void)
{
	pthread_mutex_lock(&rec.lock);
	rec.n = 0;
	rec.bad = 0;
	rec.n_exec = 0;
	pthread_mutex_unlock(&rec.lock);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The events of connection id, copied into out (sorted by seq); the
 * count. */
static size_t id_events(uint64_t id, struct rec_event *out, size_t max)
{
	size_t i, j, n = 0;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n; i++)
		if (rec.ev[i].conn_id == id && n < max)
			out[n++] = rec.ev[i];
	pthread_mutex_unlock(&rec.lock);
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && out[j - 1].seq > out[j].seq; j--) {
			struct rec_event t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

/* The id of the first connection (tgid, fd) whose OPEN has these ports
 * (0: any) and whose id is not skip; 0 when none. */
static uint64_t conn_find(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			  uint64_t skip)
{
	uint64_t id = 0;
	size_t i;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n && !id; i++) {
		const struct rec_event *e = &rec.ev[i];

		if (e->type == QTAP_EVENT_CONN_OPEN && e->tgid == tgid && e->fd == fd &&
		    (!lport || e->lport == lport) && (!rport || e->rport == rport) &&
		    e->conn_id != skip)
			id = e->conn_id;
	}
	pthread_mutex_unlock(&rec.lock);
	return id;
}

/* The events of the connection (tgid, fd) whose OPEN has these ports
 * (0: any), copied into out (sorted by seq) from the OPEN on; the
 * count, 0 when no such OPEN. */
static size_t conn_events(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			  struct rec_event *out, size_t max)
{
	uint64_t id = conn_find(tgid, fd, lport, rport, 0);

	return id ? id_events(id, out, max) : 0;
}

/* Events of any kind by tgid, or touching one of the ports (lport or
 * rport of an OPEN). */
static size_t count_tgid(uint32_t tgid)
{
	size_t i, n = 0;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n; i++)
		n += rec.ev[i].tgid == tgid;
	pthread_mutex_unlock(&rec.lock);
	return n;
}

static size_t count_port(uint16_t port)
{
	size_t i, n = 0;

	pthread_mutex_lock(&rec.lock);
	for (i = 0; i < rec.n; i++)
		n += rec.ev[i].type == QTAP_EVENT_CONN_OPEN &&
		     (rec.ev[i].lport == port || rec.ev[i].rport == port);
	pthread_mutex_unlock(&rec.lock);
	return n;
}

/* Waits until events of the connection arrived (3 s at most); its events
 * so far in out, their count. */
static size_t wait_events(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			  struct rec_event *out, size_t max)
{
	size_t n = 0;
	int waited;

	for (waited = 0; waited < 3000 && !(n = conn_events(tgid, fd, lport, rport, out, max));
	     waited += 10)
		sleep_ms(10);
	return n;
}

/* The id of the first connection (tgid, fd) with these ports other than
 * skip, once one came (at most 3 s); 0 when none. */
static uint64_t wait_find(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			  uint64_t skip)
{
	uint64_t id = 0;
	int waited;

	for (waited = 0; waited < 3000 && !(id = conn_find(tgid, fd, lport, rport, skip));
	     waited += 10)
		sleep_ms(10);
	return id;
}

/* Waits until the CLOSE of connection id arrived, and with whole every
 * event numbered before it too (events of one connection come through
 * several CPUs' rings, in any order); its events in out. */
static size_t wait_id_close(uint64_t id, struct rec_event *out, size_t max, bool whole)
{
	size_t n = 0;
	int waited;

	for (waited = 0; waited < 3000; waited += 10) {
		n = id_events(id, out, max);
		if (n && out[n - 1].type == QTAP_EVENT_CONN_CLOSE &&
		    (!whole || out[n - 1].seq + 1 == n))
			return n;
		sleep_ms(10);
	}
	return n;
}

/* The same for the first connection (tgid, fd) with these ports. */
static size_t wait_close_of(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			    struct rec_event *out, size_t max, bool whole)
{
	uint64_t id = wait_find(tgid, fd, lport, rport, 0);

	return id ? wait_id_close(id, out, max, whole) : 0;
}

/* Until every event of the connection arrived. */
static size_t wait_closed(uint32_t tgid, uint32_t fd, uint16_t lport, uint16_t rport,
			  struct rec_event *out, size_t max)
{
	return wait_close_of(tgid, fd, lport, rport, out, max, true);
}

/* Before asserting that something did not come: long enough for every
 * reader to have drained its rings (they look every 25 ms). */
static void settle(void)
{
	sleep_ms(200);
}

/* ---- capture -------------------------------------------------------- */

static struct metrics_store *store;
static struct qtap_conf *conf;

static struct qtap_conf *conf_of(const char *text)
{
	struct conf_error err;
	struct qtap_conf *c = conf_load_string(text, "test", &err);
	char msg[1200];

	if (!c)
		conf_error_format(&err, msg, sizeof(msg));
	ck_assert_msg(c, "configuration: %s", c ? "" : msg);
	return c;
}

#define CONF_ALL "tap = { direction = \"all\"; ignore_loopback = false; " \
	"filters = { groups = []; }; };"

/* In text, a configuration with a filter naming this test's executable:
 * only (an allow-list) or left out, loopback traced, tap more settings of
 * tap, then extra. */
static void conf_exe(char *text, size_t size, bool only, const char *tap, const char *extra)
{
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	ck_assert_int_gt(len, 0);
	exe[len] = '\0';
	snprintf(text, size, "tap = { ignore_loopback = false; %s filters = { groups = []; "
		 "custom = ( { exe = \"%s\"; strategy = \"exact\"; only = %s; } ); }; };\n%s",
		 tap, exe, only ? "true" : "false", extra);
}

/* One that traces this test's executable only: what other processes do on
 * the host (other tests run beside this one) writes nothing. */
static void conf_self(char *text, size_t size, const char *extra)
{
	conf_exe(text, size, true, "", extra);
}

/* Starts the capture with the configuration text and room for max_conns
 * connections in the kernel's table (0: the agent's own figure). */
static struct capture *start_conns(const char *text, unsigned max_conns)
{
	struct capture_opts opts = {
		.mount_tracefs = true,
		.max_conns = max_conns,
		.proc_event_fn = record_proc,
		.proc_event_ctx = &rec,
		.sock_event_fn = record_sock,
		.sock_event_ctx = &rec,
	};
	struct metrics_opts mopts = { 0 };
	struct capture *cap;

	rcu_register_thread();
	rec_reset();
	store = metrics_store_new(&mopts);
	ck_assert_ptr_nonnull(store);
	conf = conf_of(text);
	opts.conf = conf;
	/* what the agent's threads read as the running configuration, as
	 * the agent publishes it (freed by the next conf_publish()) */
	conf_publish(conf);
	cap = capture_start(&opts, store);
	ck_assert_msg(cap, "capture_start failed: %s (this suite needs root and a kernel "
		      "that loads BPF tracepoint programs)", strerror(errno));
	return cap;
}

static struct capture *start_text(const char *text)
{
	return start_conns(text, 0);
}

static void finish(struct capture **cap)
{
	capture_stop(cap);
	metrics_store_free(&store);
	conf_publish(NULL);
	conf = NULL;
	rcu_unregister_thread();
}

/* ---- sockets -------------------------------------------------------- */

struct endpoint {
	int family;
	uint16_t port;
	uint8_t addr[16];	/* as the events report it */
};

static int tcp_listen(int family, struct endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	memset(ep, 0, sizeof(*ep));
	ep->family = family;
	fd = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		len = sizeof(*in6);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (family == AF_INET) {
		ep->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		memcpy(ep->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else {
		ep->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		memcpy(ep->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	}
	return fd;
}

static int tcp_connect(const struct endpoint *srv, uint16_t *ret_lport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	memset(&ss, 0, sizeof(ss));
	fd = socket(srv->family, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	if (srv->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(srv->port);
		memcpy(&in->sin_addr, srv->addr, 4);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(srv->port);
		memcpy(&in6->sin6_addr, srv->addr, 16);
		len = sizeof(*in6);
	}
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
	len = sizeof(ss);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	*ret_lport = srv->family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) :
					     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* A connected pair: client (connect) and server (accept) fds. */
struct pair {
	struct endpoint srv;
	int lfd, cfd, sfd;
	uint16_t cport;
};

static void pair_open(int family, struct pair *p)
{
	p->lfd = tcp_listen(family, &p->srv);
	p->cfd = tcp_connect(&p->srv, &p->cport);
	p->sfd = accept(p->lfd, NULL, NULL);
	ck_assert_int_ge(p->sfd, 0);
}

/* Reads n bytes; the read() calls it took. */
static unsigned read_exact(int fd, void *buf, size_t n)
{
	unsigned calls = 0;
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = read(fd, (char *)buf + got, n - got);
		ck_assert_int_gt(r, 0);
		got += r;
		calls++;
	}
	return calls;
}

/* What a side of a connection moved, as the test counts it. */
struct side {
	uint64_t sent, recv;
	unsigned calls;		/* data calls that moved bytes */
};

/* ---- the exchange ---------------------------------------------------- */

static const char request[] = "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
static const char response[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/* Moves data both ways with every call the programs trace; counts what
 * each side sent and received. */
static void exchange(struct pair *p, struct side *client, struct side *server)
{
	char buf[4096], a[300], b[200];
	struct iovec iov[3];
	struct msghdr msg;
	ssize_t n;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	/* write / read */
	ck_assert_int_eq(write(p->cfd, request, strlen(request)), (ssize_t)strlen(request));
	client->sent += strlen(request), client->calls++;
	server->calls += read_exact(p->sfd, buf, strlen(request));
	server->recv += strlen(request);
	ck_assert(!memcmp(buf, request, strlen(request)));
	/* send / recv (sendto / recvfrom) */
	ck_assert_int_eq(send(p->sfd, response, strlen(response), 0), (ssize_t)strlen(response));
	server->sent += strlen(response), server->calls++;
	n = recv(p->cfd, buf, strlen(response), MSG_WAITALL);
	ck_assert_int_eq(n, (ssize_t)strlen(response));
	client->recv += n, client->calls++;
	/* sendmsg / recvmsg */
	iov[0] = (struct iovec){ a, sizeof(a) };
	iov[1] = (struct iovec){ b, sizeof(b) };
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	ck_assert_int_eq(sendmsg(p->cfd, &msg, 0), 500);
	client->sent += 500, client->calls++;
	iov[0] = (struct iovec){ buf, 100 };
	iov[1] = (struct iovec){ buf + 100, 400 };
	msg.msg_iovlen = 2;
	n = recvmsg(p->sfd, &msg, MSG_WAITALL);
	ck_assert_int_eq(n, 500);
	server->recv += n, server->calls++;
	ck_assert(!memcmp(buf, a, 300) && !memcmp(buf + 300, b, 200));
	/* writev / readv */
	iov[0] = (struct iovec){ b, 10 };
	iov[1] = (struct iovec){ a, 0 };
	iov[2] = (struct iovec){ a, 90 };
	ck_assert_int_eq(writev(p->sfd, iov, 3), 100);
	server->sent += 100, server->calls++;
	iov[0] = (struct iovec){ buf, 60 };
	iov[1] = (struct iovec){ buf + 60, 40 };
	n = 0;
	while (n < 100) {
		ssize_t r = readv(p->cfd, iov, 2);

		ck_assert_int_gt(r, 0);
		n += r;
		client->calls++;
		iov[0] = (struct iovec){ buf + n, 100 - n };
		iov[1] = (struct iovec){ buf, 0 };
	}
	client->recv += n;
}

/* pair_open(), one exchange, everything closed. */
static void pair_run(int family, struct pair *p, struct side *client, struct side *server)
{
	pair_open(family, p);
	exchange(p, client, server);
	close(p->cfd);
	close(p->sfd);
	close(p->lfd);
}

static bool addr_eq(const uint8_t *got, const struct endpoint *ep)
{
	return !memcmp(got, ep->addr, ep->family == AF_INET ? 4 : 16);
}

/* Checks one side's events: one OPEN with these ports and direction,
 * contiguous sequence numbers, exact byte totals in data and CLOSE. */
static void check_side(const struct rec_event *ev, size_t n, uint8_t direction,
		       const struct endpoint *srv, uint16_t lport, uint16_t rport,
		       const struct side *want, uint8_t open_flags)
{
	uint64_t sent = 0, recv = 0;
	size_t i, opens = 0, closes = 0;

	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(ev[0].type, QTAP_EVENT_CONN_OPEN);
	ck_assert_uint_eq(ev[0].direction, direction);
	ck_assert_uint_eq(ev[0].oflags, open_flags);
	ck_assert_uint_eq(ev[0].family, srv->family);
	ck_assert_uint_eq(ev[0].lport, lport);
	ck_assert_uint_eq(ev[0].rport, rport);
	ck_assert(addr_eq(ev[0].laddr, srv));
	ck_assert(addr_eq(ev[0].raddr, srv));
	for (i = 0; i < n; i++) {
		ck_assert_uint_eq(ev[i].seq, i);
		opens += ev[i].type == QTAP_EVENT_CONN_OPEN;
		closes += ev[i].type == QTAP_EVENT_CONN_CLOSE;
		if (ev[i].type != QTAP_EVENT_CONN_DATA)
			continue;
		ck_assert_uint_le(ev[i].captured, ev[i].len);
		if (ev[i].dir == QTAP_DATA_SEND)
			sent += ev[i].len;
		else
			recv += ev[i].len;
	}
	ck_assert_uint_eq(opens, 1);
	ck_assert_uint_eq(closes, 1);
	ck_assert_uint_eq(ev[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(sent, want->sent);
	ck_assert_uint_eq(recv, want->recv);
	ck_assert_uint_eq(ev[n - 1].bytes_sent, want->sent);
	ck_assert_uint_eq(ev[n - 1].bytes_recv, want->recv);
	ck_assert_uint_eq(ev[n - 1].data_events, n - 2);
	if (want->calls)
		ck_assert_uint_eq(n - 2, want->calls);
}

#define MAXEV 4096
static struct rec_event evs[MAXEV];

/* Closes the pair's sockets and waits for every event of the client's
 * connection, into evs; how many. */
static size_t pair_close_wait(struct pair *p)
{
	close(p->cfd);
	close(p->sfd);
	close(p->lfd);
	return wait_closed(getpid(), p->cfd, p->cport, p->srv.port, evs, MAXEV);
}

/* The bytes the n events in evs sent after the first data event (evs[1]),
 * and how many of them were copied. */
static void sent_after_first(size_t n, uint64_t *sent, uint64_t *captured)
{
	size_t i;

	*sent = *captured = 0;
	for (i = 2; i + 1 < n; i++) {
		if (evs[i].dir != QTAP_DATA_SEND)
			continue;
		*sent += evs[i].len;
		*captured += evs[i].captured;
	}
}

static void run_exchange(int family)
{
	struct side client = { 0 }, server = { 0 };
	struct capture *cap;
	struct pair p;
	uint32_t self = getpid();
	size_t n;

	cap = start_text(CONF_ALL);
	pair_open(family, &p);
	exchange(&p, &client, &server);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);

	/* The client: egress, from its ephemeral port to the server's. */
	n = wait_closed(self, p.cfd, p.cport, p.srv.port, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_EGRESS, &p.srv, p.cport, p.srv.port, &client, 0);
	/* Its first data event carries the request, written with write(). */
	ck_assert_uint_eq(evs[1].op, QTAP_OP_WRITE);
	ck_assert_uint_eq(evs[1].dir, QTAP_DATA_SEND);
	ck_assert_uint_eq(evs[1].len, strlen(request));
	ck_assert_uint_eq(evs[1].captured, strlen(request));
	ck_assert_uint_eq(evs[1].dflags, 0);
	ck_assert(!memcmp(evs[1].payload, request, PAYLOAD_KEEP < strlen(request) ?
			  PAYLOAD_KEEP : strlen(request)));
	ck_assert_uint_eq(evs[2].op, QTAP_OP_RECVFROM);
	ck_assert_uint_eq(evs[3].op, QTAP_OP_SENDMSG);
	ck_assert_uint_eq(evs[3].captured, 500);
	ck_assert(!memcmp(evs[3].payload, "aaaa", 4));
	ck_assert_uint_eq(evs[4].op, QTAP_OP_READV);

	/* The server: ingress, on the accepted fd. */
	n = wait_closed(self, p.sfd, p.srv.port, p.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_INGRESS, &p.srv, p.srv.port, p.cport, &server, 0);
	ck_assert_uint_eq(evs[1].op, QTAP_OP_READ);
	ck_assert_uint_eq(evs[1].dir, QTAP_DATA_RECV);
	ck_assert(!memcmp(evs[1].payload, request, 32));
	ck_assert_uint_eq(evs[2].op, QTAP_OP_SENDTO);
	ck_assert_uint_eq(evs[2].captured, strlen(response));
	ck_assert(!memcmp(evs[2].payload, response, 32));
	ck_assert_uint_eq(evs[3].op, QTAP_OP_RECVMSG);
	ck_assert_uint_eq(evs[3].captured, 500);
	ck_assert(!memcmp(evs[3].payload, "aaaa", 4));
	ck_assert_uint_eq(evs[4].op, QTAP_OP_WRITEV);
	ck_assert_uint_eq(evs[4].captured, 100);
	ck_assert(!memcmp(evs[4].payload, "bbbbbbbbbbaaaa", 14));
	/* The listening socket is no connection. */
	ck_assert_uint_eq(conn_events(self, p.lfd, 0, 0, evs, MAXEV), 0);
	ck_assert_uint_eq(rec.bad, 0);
	finish(&cap);
}

/* Hands the capture a new configuration, which then replaces conf. */
static void reconfigure(struct capture *cap, struct qtap_conf *next)
{
	ck_assert_int_eq(capture_reconfigure(cap, next), 0);
	conf_publish(next);
	conf = next;
}

START_TEST(test_exchange_ipv4)
{
	run_exchange(AF_INET);
}
END_TEST

START_TEST(test_exchange_ipv6)
{
	run_exchange(AF_INET6);
}
END_TEST

/* Counters and one reader for both CPUs' rings. */
START_TEST(test_metrics_one_reader)
{
	struct side client = { 0 }, server = { 0 };
	struct capture *cap;
	struct pair p;
	unsigned ns, ns2, i;
	double v;
	size_t n;

	cap = start_text("tap = { filters = { groups = []; }; direction = \"all\"; "
			 "ignore_loopback = false; };\n"
			 "capture = { readers = 1; };");
	for (i = 0; i < 5; i++) {
		pair_open(AF_INET, &p);
		exchange(&p, &client, &server);
		close(p.cfd);
		close(p.sfd);
		close(p.lfd);
		n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
		ck_assert_uint_ge(n, 2);
		ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	}
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"conn_open\"", &ns);
	ck_assert_uint_eq(ns, (unsigned)libbpf_num_possible_cpus());
	ck_assert_msg(v >= 10, "conn_open events received: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"conn_close\"", NULL);
	ck_assert_msg(v >= 10, "conn_close events received: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_received_total", "type=\"conn_data\"", NULL);
	ck_assert_msg(v >= client.calls + server.calls, "conn_data received: %g", v);
	v = check_metrics_sum(store, "qtap_system_events_lost_total", NULL, &ns);
	ck_assert_uint_eq(ns, 7 * (unsigned)libbpf_num_possible_cpus());
	ck_assert_msg(v == 0, "events lost: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"sock_recv\"", &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= 5, "sock_recv runs: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"sock_state\"", &ns);
	ck_assert_uint_eq(ns, 1);
	ck_assert_msg(v >= 10, "sock_state runs: %g", v);
	v = check_metrics_sum(store, "qtap_system_bpf_program_runs_total", "program=\"proc_exec\"", &ns);
	ck_assert_uint_eq(ns, 1);
	/* the runs the kernel skipped: a series for every program */
	check_metrics_sum(store, "qtap_system_bpf_program_runs_total", NULL, &ns);
	check_metrics_sum(store, "qtap_system_bpf_program_misses_total", NULL, &ns2);
	ck_assert_uint_gt(ns, 5);
	ck_assert_uint_eq(ns2, ns);
	check_metrics_sum(store, "qtap_system_bpf_program_misses_total", "program=\"sock_send\"", &ns);
	ck_assert_uint_eq(ns, 1);
	finish(&cap);
}
END_TEST

START_TEST(test_ignore_loopback)
{
	struct side client = { 0 }, server = { 0 };
	struct qtap_conf *next;
	struct capture *cap;
	struct pair p, q;
	size_t n, n2;

	cap = start_text("tap = { ignore_loopback = true; filters = { groups = []; }; };");
	pair_run(AF_INET, &p, &client, &server);
	pair_open(AF_INET6, &q);
	exchange(&q, &client, &server);
	close(q.cfd);
	close(q.sfd);
	close(q.lfd);

	/* Then loopback again, through a reload: now it is seen. */
	next = conf_of(CONF_ALL);
	reconfigure(cap, next);
	pair_run(AF_INET, &p, &client, &server);
	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	settle();
	ck_assert_uint_eq(count_port(q.srv.port), 0);
	ck_assert_uint_eq(count_port(q.cport), 0);
	n2 = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_ge(n2, 2);
	/* Everything recorded belongs to the last pair. */
	ck_assert_uint_eq(count_tgid(getpid()), n + n2);
	finish(&cap);
}
END_TEST

START_TEST(test_direction_egress)
{
	struct side client = { 0 }, server = { 0 };
	struct capture *cap;
	struct pair p;
	size_t n;

	cap = start_text("tap = { direction = \"egress\"; ignore_loopback = false; "
			 "filters = { groups = []; }; };");
	pair_run(AF_INET6, &p, &client, &server);
	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_EGRESS, &p.srv, p.cport, p.srv.port, &client, 0);
	settle();
	ck_assert_uint_eq(conn_events(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV), 0);
	ck_assert_uint_eq(count_tgid(getpid()), n);
	finish(&cap);
}
END_TEST

/* egress-external leaves loopback out, egress-internal keeps it. */
START_TEST(test_direction_internal_external)
{
	struct side client = { 0 }, server = { 0 };
	struct capture *cap;
	struct qtap_conf *next;
	struct pair p;
	size_t n;

	cap = start_text("tap = { direction = \"egress-external\"; "
			 "ignore_loopback = false; filters = { groups = []; }; };");
	pair_run(AF_INET, &p, &client, &server);
	next = conf_of("tap = { direction = \"egress-internal\"; "
		       "ignore_loopback = false; filters = { groups = []; }; };");
	reconfigure(cap, next);
	settle();
	ck_assert_uint_eq(count_tgid(getpid()), 0);
	pair_run(AF_INET, &p, &client, &server);
	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(count_tgid(getpid()), n);
	finish(&cap);
}
END_TEST

/* Runs bash -c cmd in a child held on its standard input until the capture
 * has seen its exec (the filter entry is written before the exec event is
 * handed over), then let go on; the child. */
static pid_t bash_after_exec(const char *cmd)
{
	char full[256];
	int in[2], waited;
	bool seen = false;
	pid_t child;
	size_t i;

	snprintf(full, sizeof(full), "read x; %s", cmd);
	ck_assert_int_eq(pipe(in), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		dup2(in[0], 0);
		close(in[1]);
		execl("/bin/bash", "bash", "-c", full, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	for (waited = 0; waited < 3000 && !seen; waited += 10) {
		pthread_mutex_lock(&rec.lock);
		for (i = 0; i < rec.n_exec; i++)
			seen = seen || rec.exec_seen[i] == (unsigned)child;
		pthread_mutex_unlock(&rec.lock);
		if (!seen)
			sleep_ms(10);
	}
	ck_assert_msg(seen, "no exec event for the child");
	ck_assert_int_eq(write(in[1], "\n", 1), 1);
	close(in[1]);
	return child;
}

/* A process the custom filters ignore (bash, after its exec) is not seen;
 * the server side in this process is. */
START_TEST(test_tgid_ignored)
{
	struct capture *cap;
	struct endpoint srv;
	char cmd[256], buf[16];
	int lfd, sfd, status;
	pid_t child;
	size_t n;

	cap = start_text("tap = { ignore_loopback = false; filters = { groups = []; "
			 "custom = ( { exe = \"/bash\"; "
			 "strategy = \"suffix\"; } ); }; };");
	lfd = tcp_listen(AF_INET, &srv);
	snprintf(cmd, sizeof(cmd), "exec 3<>/dev/tcp/127.0.0.1/%u; printf hello >&3", srv.port);
	child = bash_after_exec(cmd);
	sfd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(sfd, 0);
	read_exact(sfd, buf, 5);
	ck_assert(!memcmp(buf, "hello", 5));
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sfd);
	close(lfd);
	n = wait_closed(getpid(), sfd, srv.port, 0, evs, MAXEV);
	ck_assert_uint_ge(n, 3);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_eq(evs[n - 1].bytes_recv, 5);
	settle();
	ck_assert_uint_eq(count_tgid(child), 0);
	finish(&cap);
}
END_TEST

/* A connection opened before the capture is learned on its first data. */
START_TEST(test_preexisting)
{
	struct side client = { 0 }, server = { 0 };
	struct capture *cap;
	struct pair p;
	size_t n;

	pair_open(AF_INET6, &p);
	cap = start_text(CONF_ALL);
	exchange(&p, &client, &server);
	n = pair_close_wait(&p);
	check_side(evs, n, QTAP_DIR_UNKNOWN, &p.srv, p.cport, p.srv.port, &client,
		   QTAP_CONN_F_PREEXISTING);
	ck_assert_uint_eq(evs[1].len, strlen(request));
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_UNKNOWN, &p.srv, p.srv.port, p.cport, &server,
		   QTAP_CONN_F_PREEXISTING);
	finish(&cap);
}
END_TEST

/* One opened before the capture, on a side the direction filter leaves
 * out: learned on its first data like any other, then left out once the
 * agent has found its direction (a CLOSE marked skipped, and nothing
 * after), not learned again at every call.  Once its process's filter
 * entry changes (left out by name, then on an allow-list, every
 * direction), its next call makes it a new connection, whose totals start
 * there; the side kept is whole until its process is left out by name
 * (its CLOSE marked filtered), and made new too on the allow-list. */
START_TEST(test_preexisting_filtered)
{
	struct side client = { 0 }, server = { 0 }, again = { 0 }, left = { 0 };
	struct side server_again = { 0 };
	char text[4608];
	struct capture *cap;
	struct pair p;
	uint64_t id, id2;
	size_t n;
	int round;

	pair_open(AF_INET, &p);
	cap = start_text("tap = { direction = \"ingress\"; ignore_loopback = false; "
			 "filters = { groups = []; }; };");
	for (round = 0; round < 4; round++) {
		exchange(&p, &client, &server);
		settle();
	}
	conf_exe(text, sizeof(text), false, "direction = \"ingress\";", "");
	reconfigure(cap, conf_of(text));
	settle();
	exchange(&p, &client, &left);
	conf_self(text, sizeof(text), "");
	reconfigure(cap, conf_of(text));
	settle();
	exchange(&p, &again, &server_again);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	/* the server's side: traced until the process was left out, and
	 * again once it was allowed again, seen from the middle */
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_UNKNOWN, &p.srv, p.srv.port, p.cport, &server,
		   QTAP_CONN_F_PREEXISTING);
	ck_assert_uint_eq(evs[n - 1].cflags, QTAP_CLOSE_F_SKIPPED | QTAP_CLOSE_F_FILTERED);
	id = wait_find(getpid(), p.sfd, p.srv.port, p.cport, evs[0].conn_id);
	ck_assert_uint_ne(id, 0);
	n = wait_id_close(id, evs, MAXEV, true);
	check_side(evs, n, QTAP_DIR_INGRESS, &p.srv, p.srv.port, p.cport, &server_again,
		   QTAP_CONN_F_PREEXISTING);
	ck_assert_uint_eq(evs[n - 1].cflags, 0);
	settle();
	/* two OPENs on each side (the server's have the client's port too):
	 * the client's made new by each change */
	ck_assert_uint_eq(count_port(p.cport), 4);
	id = conn_find(getpid(), p.cfd, p.cport, p.srv.port, 0);
	n = id_events(id, evs, MAXEV);
	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(evs[0].type, QTAP_EVENT_CONN_OPEN);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(evs[n - 1].cflags, QTAP_CLOSE_F_SKIPPED);
	ck_assert_uint_eq(evs[n - 1].seq + 1, n);
	ck_assert_uint_eq(evs[n - 1].data_events, n - 2);
	/* left out within the first round: its calls of the later ones
	 * wrote nothing */
	ck_assert_uint_le(n - 2, client.calls / 4);
	/* and made new by the change: only what came after it */
	id2 = conn_find(getpid(), p.cfd, p.cport, p.srv.port, id);
	ck_assert_uint_ne(id2, 0);
	n = id_events(id2, evs, MAXEV);
	ck_assert_uint_eq(n, again.calls + 2);
	ck_assert_uint_eq(evs[0].type, QTAP_EVENT_CONN_OPEN);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(evs[0].oflags & QTAP_CONN_F_PREEXISTING, QTAP_CONN_F_PREEXISTING);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(evs[n - 1].cflags, 0);
	ck_assert_uint_eq(evs[n - 1].bytes_sent, again.sent);
	ck_assert_uint_eq(evs[n - 1].bytes_recv, again.recv);
	ck_assert_uint_eq(evs[n - 1].data_events, again.calls);
	finish(&cap);
}
END_TEST

/* A CONNECT tunnel: its head is copied whole, then the TLS it carries only
 * up to the hellos' budget, not its ciphertext on and on (k = 0).  The
 * same bytes as an HTTP upload's body (k = 1) are copied whole: a body can
 * look like TLS. */
START_TEST(test_tunnel_cap)
{
	static const char *const head[2] = {
		"CONNECT example.test:443 HTTP/1.1\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 16600\r\n\r\n",
	};
	static const char connect_resp[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	static uint8_t hello[600], record[4000];
	struct capture *cap;
	struct pair p;
	char buf[4096];
	size_t n, i;
	int k;

	memset(hello, 'h', sizeof(hello));
	memcpy(hello, "\x16\x03\x01\x02\x53\x01", 6);	/* a ClientHello's record */
	memset(record, 'c', sizeof(record));
	memcpy(record, "\x17\x03\x03\x0f\x9b", 5);	/* application data */
	cap = start_text(CONF_ALL);
	for (k = 0; k < 2; k++) {
		uint64_t captured, sent;

		pair_open(AF_INET, &p);
		ck_assert_int_eq(write(p.cfd, head[k], strlen(head[k])), (ssize_t)strlen(head[k]));
		read_exact(p.sfd, buf, strlen(head[k]));
		if (!k) {
			ck_assert_int_eq(write(p.sfd, connect_resp, strlen(connect_resp)),
					 (ssize_t)strlen(connect_resp));
			read_exact(p.cfd, buf, strlen(connect_resp));
		}
		ck_assert_int_eq(write(p.cfd, hello, sizeof(hello)), (ssize_t)sizeof(hello));
		read_exact(p.sfd, buf, sizeof(hello));
		for (i = 0; i < 4; i++) {
			ck_assert_int_eq(write(p.cfd, record, sizeof(record)),
					 (ssize_t)sizeof(record));
			read_exact(p.sfd, buf, sizeof(record));
		}
		n = pair_close_wait(&p);
		ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
		ck_assert_uint_eq(evs[n - 1].bytes_sent,
				  strlen(head[k]) + sizeof(hello) + 4 * sizeof(record));
		ck_assert_uint_eq(evs[1].dir, QTAP_DATA_SEND);
		ck_assert_uint_eq(evs[1].captured, strlen(head[k]));
		sent_after_first(n, &sent, &captured);
		ck_assert_uint_eq(sent, sizeof(hello) + 4 * sizeof(record));
		ck_assert_msg(captured == (k ? sent : QTAP_TLS_HELLO_BYTES),
			      "%s: %" PRIu64 " of %" PRIu64 " bytes copied", k ? "upload" : "tunnel",
			      captured, sent);
	}
	finish(&cap);
}
END_TEST

/* A request of a method not known by name (WebDAV's PROPFIND, a cache's
 * PURGE) is HTTP to the programs: its connection's later calls are copied
 * whole, as any HTTP connection's.  A line that is no request (an SMTP
 * client's greeting) is another protocol: copied at its first call only. */
START_TEST(test_method_line)
{
	static const char *const head[3] = {
		"PROPFIND /dav/ HTTP/1.1\r\nHost: example.test\r\nDepth: 1\r\n\r\n",
		"PURGE /cached/page HTTP/1.1\r\nHost: example.test\r\n\r\n",
		"EHLO client.example.test\r\n",
	};
	static uint8_t body[3000];
	struct capture *cap;
	struct pair p;
	char buf[4096];
	size_t n, i;
	int k;

	memset(body, 'b', sizeof(body));
	cap = start_text(CONF_ALL);
	for (k = 0; k < 3; k++) {
		uint64_t captured, sent;

		pair_open(AF_INET, &p);
		ck_assert_int_eq(write(p.cfd, head[k], strlen(head[k])), (ssize_t)strlen(head[k]));
		read_exact(p.sfd, buf, strlen(head[k]));
		for (i = 0; i < 3; i++) {
			ck_assert_int_eq(write(p.cfd, body, sizeof(body)), (ssize_t)sizeof(body));
			read_exact(p.sfd, buf, sizeof(body));
		}
		n = pair_close_wait(&p);
		ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
		ck_assert_uint_eq(evs[1].dir, QTAP_DATA_SEND);
		ck_assert_uint_eq(evs[1].captured, strlen(head[k]));
		sent_after_first(n, &sent, &captured);
		ck_assert_uint_eq(sent, 3 * sizeof(body));
		ck_assert_msg(captured == (k < 2 ? sent : 0), "%.5s: %" PRIu64 " of %" PRIu64
			      " bytes copied", head[k], captured, sent);
	}
	finish(&cap);
}
END_TEST

/* An accepted connection ended by its server before any call on it moved
 * a byte is reported from the server's side too, with the closing call's
 * fd: a close (a FIN, mode 0), a close with the request unread (a reset,
 * 1), a close with SO_LINGER at 0 (a reset, 2). */
START_TEST(test_accept_close)
{
	static const char *const how[] = { "close", "close unread", "linger 0" };
	struct capture *cap;
	struct pair p;
	int mode;
	char c;
	size_t n;

	cap = start_text(CONF_ALL);
	for (mode = 0; mode < 3; mode++) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		struct pollfd pfd;

		pair_open(AF_INET, &p);
		if (mode == 1) {
			ck_assert_int_eq(write(p.cfd, "hello", 5), 5);
			pfd = (struct pollfd){ .fd = p.sfd, .events = POLLIN };
			ck_assert_int_eq(poll(&pfd, 1, 3000), 1);
		} else if (mode == 2) {
			ck_assert_int_eq(setsockopt(p.sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
					 0);
		}
		close(p.sfd);
		ck_assert_int_le(read(p.cfd, &c, 1), 0);
		close(p.cfd);
		close(p.lfd);
		n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
		ck_assert_msg(n == 2, "%s: %zu events from the server's side", how[mode], n);
		ck_assert_uint_eq(evs[0].type, QTAP_EVENT_CONN_OPEN);
		ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
		ck_assert_uint_eq(evs[0].oflags, 0);
		ck_assert_uint_eq(evs[0].fd, (uint32_t)p.sfd);
		ck_assert_uint_eq(evs[1].type, QTAP_EVENT_CONN_CLOSE);
		ck_assert_uint_eq(evs[1].cflags, 0);
		ck_assert_uint_eq(evs[1].bytes_sent, 0);
		ck_assert_uint_eq(evs[1].bytes_recv, 0);
		ck_assert_uint_eq(evs[1].data_events, 0);
		n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
		ck_assert_msg(n == (mode == 1 ? 3u : 2u), "%s: %zu events from the client's side",
			      how[mode], n);
		ck_assert_uint_eq(evs[0].direction, QTAP_DIR_EGRESS);
		ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
		ck_assert_uint_eq(evs[n - 1].data_events, mode == 1 ? 1 : 0);
		ck_assert_uint_eq(evs[n - 1].bytes_sent, mode == 1 ? 5 : 0);
	}
	finish(&cap);
}
END_TEST

/* A listener on port 53 of a loopback address of its own. */
static int dns_listen(struct endpoint *ep)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(53) };
	int fd, one = 1;

	memset(ep, 0, sizeof(*ep));
	ep->family = AF_INET;
	ep->port = 53;
	inet_pton(AF_INET, "127.0.0.77", &in.sin_addr);
	memcpy(ep->addr, &in.sin_addr, 4);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_msg(bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0, "bind 127.0.0.77:53: %s",
		      strerror(errno));
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

/* One query's worth of bytes each way over port 53; the client's port,
 * its fd in *ret_cfd (closed). */
static uint16_t dns_exchange(int lfd, const struct endpoint *ep, int *ret_cfd)
{
	uint16_t cport;
	int cfd = tcp_connect(ep, &cport), sfd = accept(lfd, NULL, NULL);
	char buf[32];

	ck_assert_int_ge(sfd, 0);
	ck_assert_int_eq(write(cfd, "\0\x1c" "query", 7), 7);
	read_exact(sfd, buf, 7);
	ck_assert_int_eq(write(sfd, "\0\x1c" "answer", 8), 8);
	read_exact(cfd, buf, 8);
	close(cfd);
	close(sfd);
	*ret_cfd = cfd;
	return cport;
}

/* tap.audit_include_dns: connections to or from port 53 are left out
 * unless it is true (a reload turns it on). */
START_TEST(test_dns_port)
{
	struct capture *cap;
	struct endpoint ep;
	uint16_t cport;
	size_t n;
	int lfd, cfd;

	cap = start_text(CONF_ALL);
	lfd = dns_listen(&ep);
	dns_exchange(lfd, &ep, &cfd);
	settle();
	ck_assert_uint_eq(count_port(53), 0);
	reconfigure(cap, conf_of("tap = { direction = \"all\"; ignore_loopback = false; "
				 "audit_include_dns = true; filters = { groups = []; }; };"));
	cport = dns_exchange(lfd, &ep, &cfd);
	close(lfd);
	n = wait_closed(getpid(), cfd, cport, 53, evs, MAXEV);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(evs[3].bytes_sent, 7);
	ck_assert_uint_eq(evs[3].bytes_recv, 8);
	settle();
	ck_assert_uint_eq(count_port(53), 2);
	finish(&cap);
}
END_TEST

/* A dual-stack listener (IPv6, the wildcard address) and a connection to
 * it from IPv4: the accepted socket is IPv6 with v4-mapped addresses.
 * p->srv is the IPv4 endpoint (127.0.0.1). */
static void dual_stack_open(struct pair *p)
{
	struct sockaddr_in6 any = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	socklen_t len = sizeof(any);
	int off = 0;

	p->lfd = socket(AF_INET6, SOCK_STREAM, 0);
	ck_assert_int_ge(p->lfd, 0);
	ck_assert_int_eq(setsockopt(p->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
	ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&any, sizeof(any)), 0);
	ck_assert_int_eq(listen(p->lfd, 4), 0);
	ck_assert_int_eq(getsockname(p->lfd, (struct sockaddr *)&any, &len), 0);
	memset(&p->srv, 0, sizeof(p->srv));
	p->srv.family = AF_INET;
	p->srv.port = ntohs(any.sin6_port);
	inet_pton(AF_INET, "127.0.0.1", p->srv.addr);
	p->cfd = tcp_connect(&p->srv, &p->cport);
	p->sfd = accept(p->lfd, NULL, NULL);
	ck_assert_int_ge(p->sfd, 0);
}

/* sock_conn_alive() of these endpoints, with the socket diagnostics
 * alone (no capture: no table to ask). */
static bool diag_alive(int family, const uint8_t *laddr, uint16_t lport, const uint8_t *raddr,
		       uint16_t rport)
{
	struct pipeline_conn_ref ref = {
		.family = family, .laddr = laddr, .raddr = raddr, .lport = lport, .rport = rport,
	};

	return sock_conn_alive(NULL, &ref);
}

/* The kernel's word on whether a connection is still open, which keeps a
 * silent one from being closed by the idle timeout: each side of an open
 * connection (IPv4, IPv6, and an IPv6 socket's v4-mapped one, which the
 * events report as IPv4); not a listener on the local port; not once
 * closed. */
START_TEST(test_conn_alive)
{
	struct pair p;
	int family;
	char eof;

	for (family = AF_INET; family; family = family == AF_INET ? AF_INET6 : 0) {
		pair_open(family, &p);
		ck_assert(diag_alive(family, p.srv.addr, p.cport, p.srv.addr, p.srv.port));
		ck_assert(diag_alive(family, p.srv.addr, p.srv.port, p.srv.addr, p.cport));
		ck_assert(!diag_alive(family, p.srv.addr, p.srv.port, p.srv.addr,
				      (uint16_t)(p.cport + 1)));
		/* The client shuts its side (FIN_WAIT2 once the server has
		 * read the end): it still reads, the connection is open. */
		ck_assert_int_eq(shutdown(p.cfd, SHUT_WR), 0);
		ck_assert_int_eq(read(p.sfd, &eof, 1), 0);
		ck_assert(diag_alive(family, p.srv.addr, p.cport, p.srv.addr, p.srv.port));
		ck_assert(diag_alive(family, p.srv.addr, p.srv.port, p.srv.addr, p.cport));
		/* closed: still FIN_WAIT2, TCP's alone */
		close(p.cfd);
		ck_assert(!diag_alive(family, p.srv.addr, p.cport, p.srv.addr, p.srv.port));
		close(p.sfd);
		close(p.lfd);
		ck_assert(!diag_alive(family, p.srv.addr, p.cport, p.srv.addr, p.srv.port));
		ck_assert(!diag_alive(family, p.srv.addr, p.srv.port, p.srv.addr, p.cport));
	}
	/* reported as IPv4, found as the IPv6 socket it is */
	dual_stack_open(&p);
	ck_assert(diag_alive(AF_INET, p.srv.addr, p.srv.port, p.srv.addr, p.cport));
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	ck_assert(!diag_alive(AF_INET, p.srv.addr, p.srv.port, p.srv.addr, p.cport));
}
END_TEST

/* With the capture running, the conns map answers first: a connection is
 * open while its own entry there is (not another connection's at the same
 * key), whatever the diagnostics say of a socket in another network
 * namespace, which they cannot see; forgetting it drops only its own
 * entry.  Its OPEN names the namespace of its socket. */
START_TEST(test_conn_alive_table)
{
	struct pipeline_conn_ref ref;
	struct capture *cap;
	struct stat ns;
	struct pair p;
	char buf[8];

	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	ck_assert_int_eq(write(p.cfd, "ping", 4), 4);
	read_exact(p.sfd, buf, 4);
	ck_assert_uint_ge(wait_events(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV), 1);
	ck_assert_int_eq(stat("/proc/self/ns/net", &ns), 0);
	ck_assert_uint_eq(evs[0].netns, (uint32_t)ns.st_ino);
	ref = (struct pipeline_conn_ref){
		.key = evs[0].key, .conn_id = evs[0].conn_id, .family = AF_INET,
		.laddr = p.srv.addr, .raddr = p.srv.addr, .lport = p.cport, .rport = p.srv.port,
	};
	ck_assert(sock_conn_alive(cap, &ref));
	/* another connection's entry at the key: this one is gone */
	ref.conn_id++;
	ck_assert(!sock_conn_alive(cap, &ref));
	sock_conn_forget(cap, ref.key, ref.conn_id);
	ref.conn_id--;
	ck_assert(sock_conn_alive(cap, &ref));
	/* endpoints the diagnostics do not find: in the agent's namespace,
	 * gone (an end a skipped program run left unseen); in another, the
	 * table's word stands */
	ref.rport++;
	ck_assert(!sock_conn_alive(cap, &ref));
	ref.foreign_netns = true;
	ck_assert(sock_conn_alive(cap, &ref));
	ref.foreign_netns = false;
	ref.rport--;
	/* the diagnostics cannot be asked (the agent at its file limit): the
	 * table's word stands */
	{
		struct rlimit was, lim;
		int fd = dup(0);

		ck_assert_int_ge(fd, 0);
		close(fd);
		ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
		lim = was;
		lim.rlim_cur = (rlim_t)fd;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
		ck_assert(sock_conn_alive(cap, &ref));
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
	}
	/* forgotten: no entry, not open to the agent */
	sock_conn_forget(cap, ref.key, ref.conn_id);
	ck_assert(!sock_conn_alive(cap, &ref));
	ref.foreign_netns = true;
	ck_assert(!sock_conn_alive(cap, &ref));
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	finish(&cap);
}
END_TEST

/* A socket bound to an interface (SO_BINDTODEVICE, a VRF, an IPv6
 * link-local peer's scope) is found by the socket diagnostics only under
 * that interface, which its OPEN names: without it, a silent one would be
 * taken for gone. */
START_TEST(test_conn_alive_bound)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct pipeline_conn_ref ref;
	struct capture *cap;
	struct endpoint srv;
	int lfd, cfd, sfd;
	uint16_t cport;
	char buf[8];

	cap = start_text(CONF_ALL);
	lfd = tcp_listen(AF_INET, &srv);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(cfd, 0);
	ck_assert_int_eq(setsockopt(cfd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3), 0);
	sa.sin_port = htons(srv.port);
	memcpy(&sa.sin_addr, srv.addr, 4);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(cfd, (struct sockaddr *)&sa, &len), 0);
	cport = ntohs(sa.sin_port);
	sfd = accept(lfd, NULL, NULL);
	ck_assert_int_ge(sfd, 0);
	ck_assert_int_eq(write(cfd, "ping", 4), 4);
	read_exact(sfd, buf, 4);
	ck_assert_uint_ge(wait_events(getpid(), cfd, cport, srv.port, evs, MAXEV), 1);
	ck_assert_uint_eq(evs[0].bound_dev_if, if_nametoindex("lo"));
	ref = (struct pipeline_conn_ref){
		.key = evs[0].key, .conn_id = evs[0].conn_id, .ifindex = evs[0].bound_dev_if,
		.family = AF_INET, .laddr = srv.addr, .raddr = srv.addr, .lport = cport,
		.rport = srv.port,
	};
	ck_assert(sock_conn_alive(cap, &ref));
	ref.ifindex = 0;
	ck_assert(!sock_conn_alive(cap, &ref));
	close(cfd);
	close(sfd);
	close(lfd);
	finish(&cap);
}
END_TEST

/* A dual-stack listener's connection from IPv4: the accepted IPv6 socket
 * has v4-mapped addresses, which its events report as IPv4. */
START_TEST(test_v4_mapped)
{
	struct capture *cap;
	struct pair p;
	char buf[8];
	size_t n;

	cap = start_text(CONF_ALL);
	dual_stack_open(&p);
	ck_assert_int_eq(write(p.cfd, "ping", 4), 4);
	read_exact(p.sfd, buf, 4);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_eq(evs[0].family, AF_INET);
	ck_assert(addr_eq(evs[0].laddr, &p.srv));
	ck_assert(addr_eq(evs[0].raddr, &p.srv));
	ck_assert_uint_eq(evs[2].bytes_recv, 4);
	finish(&cap);
}
END_TEST

/* Unix sockets are not TCP: their calls write nothing. */
START_TEST(test_unix_ignored)
{
	struct capture *cap;
	char buf[8];
	int sv[2];

	cap = start_text(CONF_ALL);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(write(sv[0], "GET / HT", 8), 8);
	read_exact(sv[1], buf, 8);
	ck_assert_int_eq(send(sv[1], "HTTP/1.1", 8, 0), 8);
	ck_assert_int_eq(recv(sv[0], buf, 8, MSG_WAITALL), 8);
	close(sv[0]);
	close(sv[1]);
	settle();
	ck_assert_uint_eq(count_tgid(getpid()), 0);
	finish(&cap);
}
END_TEST

/* A non-blocking connect() that fails, or is still in progress, is no
 * connection, whatever calls its process makes on the socket meanwhile
 * (they fail: EAGAIN, ECONNREFUSED). */
START_TEST(test_connect_unfinished)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct endpoint refused, full;
	struct capture *cap;
	char text[8192], buf[8];
	int lfd, queued, fd, i;
	uint16_t qport, lport;

	conf_self(text, sizeof(text), "");
	cap = start_text(text);
	/* Refused: no listener at the port (any more). */
	close(tcp_listen(AF_INET, &refused));
	/* In progress: a listener whose accept queue is full drops the SYN
	 * (retried after a second; the socket is closed before). */
	lfd = tcp_listen(AF_INET, &full);
	ck_assert_int_eq(listen(lfd, 0), 0);
	queued = tcp_connect(&full, &qport);
	for (i = 0; i < 2; i++) {
		const struct endpoint *srv = i ? &full : &refused;
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(srv->port) };
		int r;

		memcpy(&in.sin_addr, srv->addr, 4);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ck_assert_int_ge(fd, 0);
		r = connect(fd, (struct sockaddr *)&in, sizeof(in));
		ck_assert_msg(r < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED),
			      "connect: %d %s", r, strerror(errno));
		ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
		lport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		ck_assert_int_lt(send(fd, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL), 0);
		ck_assert_int_le(recv(fd, buf, sizeof(buf), 0), 0);
		ck_assert_int_le(read(fd, buf, sizeof(buf)), 0);
		close(fd);
		settle();
		ck_assert_msg(!count_port(srv->port) || i,
			      "a refused connect() was reported as a connection");
		if (i)
			ck_assert_msg(!count_port(lport),
				      "a connect() in progress was reported as a connection");
	}
	/* The one queued is one, from its client's side (never accepted). */
	ck_assert_uint_eq(count_port(full.port), 1);
	ck_assert_uint_eq(count_port(qport), 1);
	close(queued);
	close(lfd);
	finish(&cap);
}
END_TEST

/* close() then a new socket on the same fd number: CLOSE then a new OPEN.
 * dup2() of another socket over a traced fd closes the first connection;
 * the second, now behind two fds, is one connection (a connection is a
 * socket), closed with the last of them. */
START_TEST(test_fd_reuse)
{
	struct capture *cap;
	struct endpoint srv;
	uint16_t port1, port2, port3;
	int lfd, c1, c2, c3, s1, s2, s3;
	uint64_t id1, id2;
	char buf[16];
	size_t n;

	cap = start_text(CONF_ALL);
	lfd = tcp_listen(AF_INET, &srv);
	c1 = tcp_connect(&srv, &port1);
	s1 = accept(lfd, NULL, NULL);
	ck_assert_int_eq(write(c1, "one", 3), 3);
	read_exact(s1, buf, 3);
	close(c1);
	c2 = tcp_connect(&srv, &port2);
	ck_assert_int_eq(c2, c1);
	s2 = accept(lfd, NULL, NULL);
	ck_assert_int_eq(write(c2, "two!", 4), 4);
	read_exact(s2, buf, 4);

	n = wait_closed(getpid(), c1, port1, srv.port, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[2].cflags, 0);
	ck_assert_uint_eq(evs[2].bytes_sent, 3);
	id1 = evs[0].conn_id;

	/* dup2 a third connection over c2: the second ends there. */
	c3 = tcp_connect(&srv, &port3);
	s3 = accept(lfd, NULL, NULL);
	ck_assert_int_eq(dup2(c3, c2), c2);
	n = wait_closed(getpid(), c2, port2, srv.port, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	id2 = evs[0].conn_id;
	ck_assert_uint_ne(id1, id2);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(evs[1].len, 4);
	ck_assert_uint_eq(evs[2].cflags, 0);
	ck_assert_uint_eq(evs[2].bytes_sent, 4);
	/* Through either fd, the third connection's: opened by connect() on
	 * c3, still open after c2 is closed, closed with c3. */
	ck_assert_int_eq(write(c2, "three", 5), 5);
	read_exact(s3, buf, 5);
	ck_assert_int_eq(write(c3, "four", 4), 4);
	read_exact(s3, buf, 4);
	close(c2);
	settle();
	n = conn_events(getpid(), c3, port3, srv.port, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[1].fd, (uint32_t)c2);
	ck_assert_uint_eq(evs[2].fd, (uint32_t)c3);
	close(c3);
	n = wait_closed(getpid(), c3, port3, srv.port, evs, MAXEV);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_EGRESS);
	ck_assert_uint_eq(evs[0].oflags, 0);
	ck_assert_uint_eq(evs[3].cflags, 0);
	ck_assert_uint_eq(evs[3].bytes_sent, 9);
	close(s1);
	close(s2);
	close(s3);
	close(lfd);
	finish(&cap);
}
END_TEST

/* An io_uring instance of one entry, by its system calls. */
struct uring {
	int fd;
	struct io_uring_params prm;
	struct io_uring_sqe *sqes;
	uint8_t *sq, *cq;
	size_t sq_size, cq_size;
};

static void uring_open(struct uring *u)
{
	memset(u, 0, sizeof(*u));
	u->fd = (int)syscall(__NR_io_uring_setup, 1, &u->prm);
	ck_assert_msg(u->fd >= 0, "io_uring_setup: %s", strerror(errno));
	u->sq_size = u->prm.sq_off.array + u->prm.sq_entries * sizeof(unsigned);
	u->cq_size = u->prm.cq_off.cqes + u->prm.cq_entries * sizeof(struct io_uring_cqe);
	u->sq = mmap(NULL, u->sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
		     IORING_OFF_SQ_RING);
	ck_assert_ptr_ne(u->sq, MAP_FAILED);
	u->cq = mmap(NULL, u->cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
		     IORING_OFF_CQ_RING);
	ck_assert_ptr_ne(u->cq, MAP_FAILED);
	u->sqes = mmap(NULL, u->prm.sq_entries * sizeof(*u->sqes), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
	ck_assert_ptr_ne(u->sqes, MAP_FAILED);
}

/* Waits for the next completion: its result. */
static int uring_result(struct uring *u)
{
	unsigned head;
	int res;

	ck_assert_int_ge(syscall(__NR_io_uring_enter, u->fd, 0, 1, IORING_ENTER_GETEVENTS,
				 NULL, 0), 0);
	head = __atomic_load_n((unsigned *)(u->cq + u->prm.cq_off.head), __ATOMIC_ACQUIRE);
	ck_assert_uint_ne(head, __atomic_load_n((unsigned *)(u->cq + u->prm.cq_off.tail),
						__ATOMIC_ACQUIRE));
	res = ((struct io_uring_cqe *)(u->cq + u->prm.cq_off.cqes))[
		head & *(unsigned *)(u->cq + u->prm.cq_off.ring_mask)].res;
	__atomic_store_n((unsigned *)(u->cq + u->prm.cq_off.head), head + 1, __ATOMIC_RELEASE);
	return res;
}

/* Submits sqe, and waits for its completion when wait: its result, or 0
 * (not waited for: uring_result()). */
static int uring_submit(struct uring *u, const struct io_uring_sqe *sqe, bool wait)
{
	unsigned tail = *(unsigned *)(u->sq + u->prm.sq_off.tail);

	u->sqes[0] = *sqe;
	((unsigned *)(u->sq + u->prm.sq_off.array))[tail &
						     *(unsigned *)(u->sq + u->prm.sq_off.ring_mask)] = 0;
	__atomic_store_n((unsigned *)(u->sq + u->prm.sq_off.tail), tail + 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(syscall(__NR_io_uring_enter, u->fd, 1, 0, 0, NULL, 0), 1);
	return wait ? uring_result(u) : 0;
}

static void uring_close(struct uring *u)
{
	munmap(u->sqes, u->prm.sq_entries * sizeof(*u->sqes));
	munmap(u->cq, u->cq_size);
	munmap(u->sq, u->sq_size);
	close(u->fd);
}

/* shutdown(fd, how) made through io_uring, not by the shutdown system
 * call: its result. */
static int uring_shutdown(int fd, int how)
{
	struct io_uring_sqe sqe = { .opcode = IORING_OP_SHUTDOWN, .fd = fd, .len = (unsigned)how };
	struct uring u;
	int res;

	uring_open(&u);
	res = uring_submit(&u, &sqe, true);
	uring_close(&u);
	return res;
}

/* The writes of test_uring_task_work's other thread: the request to the
 * socket, then a byte to the pipe its reader waits on. */
struct later_writes {
	int sock, pipe;
};

static void *later_writes_main(void *arg)
{
	const struct later_writes *w = arg;

	sleep_ms(200);
	ck_assert_int_eq(write(w->sock, request, strlen(request)), (ssize_t)strlen(request));
	sleep_ms(200);
	ck_assert_int_eq(write(w->pipe, "x", 1), 1);
	return NULL;
}

/* An io_uring recv that waited for its data completes as task work, run
 * where the thread next leaves the kernel: here inside a read() of a pipe
 * (which the work interrupts, and which then goes on).  Its socket call is
 * not that read: bytes counted, nothing copied from the read's buffer. */
START_TEST(test_uring_task_work)
{
	static char rbuf[256], pbuf[256];
	struct io_uring_sqe sqe = { .opcode = IORING_OP_RECV };
	struct later_writes w;
	struct capture *cap;
	pthread_t thread;
	struct uring u;
	struct pair p;
	int pfd[2];
	size_t n;

	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	ck_assert_int_eq(pipe(pfd), 0);
	uring_open(&u);
	sqe.fd = p.sfd;
	sqe.addr = (uintptr_t)rbuf;
	sqe.len = sizeof(rbuf);
	uring_submit(&u, &sqe, false);		/* no data yet: it waits */
	w = (struct later_writes){ p.cfd, pfd[1] };
	ck_assert_int_eq(pthread_create(&thread, NULL, later_writes_main, &w), 0);
	memset(pbuf, 'Q', sizeof(pbuf));
	ck_assert_int_eq(read(pfd[0], pbuf, sizeof(pbuf)), 1);
	pthread_join(thread, NULL);
	ck_assert_int_eq(uring_result(&u), (int)strlen(request));
	ck_assert(!memcmp(rbuf, request, strlen(request)));
	uring_close(&u);
	close(pfd[0]);
	close(pfd[1]);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);

	/* found by its ports: no call of the server's named its fd */
	n = wait_closed(getpid(), QTAP_FD_UNKNOWN, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[1].dir, QTAP_DATA_RECV);
	ck_assert_uint_eq(evs[1].len, strlen(request));
	ck_assert_msg(evs[1].op == QTAP_OP_OTHER, "the recv taken as op %u", evs[1].op);
	ck_assert_uint_eq(evs[1].captured, 0);	/* none of the read's buffer */
	ck_assert_uint_eq(evs[2].bytes_recv, strlen(request));
	finish(&cap);
}
END_TEST

/* A connection ends at its last close, even while the peer keeps its side
 * open; a shutdown leaves it open for the other way, whether made by the
 * shutdown system call (k = 0) or through io_uring (k = 1). */
START_TEST(test_close_shutdown)
{
	struct capture *cap;
	struct pair p;
	char buf[8];
	size_t n;
	int k;

	cap = start_text(CONF_ALL);
	for (k = 0; k < 2; k++) {
		pair_open(AF_INET, &p);
		ck_assert_int_eq(write(p.cfd, "ping", 4), 4);
		read_exact(p.sfd, buf, 4);
		/* The server shuts its sending side and reads on. */
		if (k)
			ck_assert_int_eq(uring_shutdown(p.sfd, SHUT_WR), 0);
		else
			ck_assert_int_eq(shutdown(p.sfd, SHUT_WR), 0);
		ck_assert_int_eq(read(p.cfd, buf, sizeof(buf)), 0);
		ck_assert_int_eq(write(p.cfd, "more", 4), 4);
		read_exact(p.sfd, buf, 4);
		/* The client closes; the server keeps its socket. */
		close(p.cfd);
		n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
		ck_assert_uint_eq(n, 4);
		ck_assert_uint_eq(evs[3].type, QTAP_EVENT_CONN_CLOSE);
		ck_assert_uint_eq(evs[3].bytes_sent, 8);
		ck_assert_uint_eq(evs[3].bytes_recv, 0);
		settle();
		n = conn_events(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
		ck_assert_msg(n == 3, "%s: %zu events of the server's side before its close",
			      k ? "io_uring" : "shutdown()", n);
		ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
		ck_assert_uint_eq(evs[2].type, QTAP_EVENT_CONN_DATA);
		close(p.sfd);
		n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
		ck_assert_uint_eq(n, 4);
		ck_assert_uint_eq(evs[3].bytes_recv, 8);
		close(p.lfd);
	}
	finish(&cap);
}
END_TEST

struct drain_arg {
	int fd;
	size_t want;
	size_t got;
};

static void *drain_main(void *arg)
{
	struct drain_arg *d = arg;
	static char buf[65536];
	ssize_t n;

	while (d->got < d->want) {
		n = read(d->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		d->got += n;
	}
	return NULL;
}

/* One 1 MiB write: one data event with the full length and at most
 * QTAP_DATA_MAX bytes of payload; the receiver's reads add up. */
START_TEST(test_large_write)
{
	static char big[1 << 20];
	struct drain_arg d;
	struct capture *cap;
	pthread_t thread;
	struct pair p;
	uint64_t recv = 0;
	size_t n, i;

	memset(big, 'x', sizeof(big));
	memcpy(big, "POST /upload HTTP/1.1\r\n", 23);
	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	d = (struct drain_arg){ p.sfd, sizeof(big), 0 };
	ck_assert_int_eq(pthread_create(&thread, NULL, drain_main, &d), 0);
	ck_assert_int_eq(write(p.cfd, big, sizeof(big)), (ssize_t)sizeof(big));
	pthread_join(thread, NULL);
	ck_assert_uint_eq(d.got, sizeof(big));
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);

	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[1].len, sizeof(big));
	ck_assert_uint_eq(evs[1].captured, QTAP_DATA_MAX);
	ck_assert_uint_eq(evs[1].dflags, QTAP_DATA_F_TRUNCATED);
	ck_assert(!memcmp(evs[1].payload, big, PAYLOAD_KEEP));
	ck_assert_uint_eq(evs[2].bytes_sent, sizeof(big));

	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_ge(n, 3);
	for (i = 1; i + 1 < n; i++) {
		ck_assert_uint_eq(evs[i].seq, i);
		ck_assert_uint_le(evs[i].captured, QTAP_DATA_MAX);
		recv += evs[i].len;
	}
	ck_assert_uint_eq(recv, sizeof(big));
	ck_assert_uint_eq(evs[n - 1].bytes_recv, sizeof(big));
	ck_assert_uint_eq(evs[n - 1].data_events, n - 2);
	finish(&cap);
}
END_TEST

/* Events gathered in the CPUs' stages (sock.h): how many the stages hold
 * now. */
static unsigned staged(const struct capture *cap)
{
	unsigned n = 0;
	int c;

	for (c = 0; c < cap->ncpus; c++)
		n += __atomic_load_n(&cap->stages[c].events, __ATOMIC_RELAXED);
	return n;
}

/* Small writes are gathered in their CPU's stage; a large one between
 * them is written after them; and the last ones, with nothing after them
 * on their CPU, are written by the agent (sock_flush) within the stage's
 * time: all in order, each once, nothing lost. */
START_TEST(test_stage_order)
{
	static char big[65536];
	char msg[100];
	struct capture *cap;
	struct drain_arg d;
	pthread_t thread;
	struct pair p;
	size_t n = 0, i, want = 1 + 41 + 1;	/* OPEN, data, CLOSE */
	unsigned seen_staged = 0;
	int waited;

	memset(msg, 'm', sizeof(msg));
	memcpy(msg, "POST /m HTTP/1.1\r\n", 18);
	memset(big, 'b', sizeof(big));
	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	d = (struct drain_arg){ p.sfd, 40 * sizeof(msg) + sizeof(big), 0 };
	ck_assert_int_eq(pthread_create(&thread, NULL, drain_main, &d), 0);
	for (i = 0; i < 20; i++) {
		ck_assert_int_eq(write(p.cfd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
		seen_staged += staged(cap) > 0;
	}
	ck_assert_int_eq(write(p.cfd, big, sizeof(big)), (ssize_t)sizeof(big));
	for (i = 0; i < 20; i++)
		ck_assert_int_eq(write(p.cfd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	pthread_join(thread, NULL);
	ck_assert_uint_eq(d.got, 40 * sizeof(msg) + sizeof(big));
	ck_assert_msg(seen_staged, "no small event was ever seen gathered in a stage");

	/* No close yet: only the agent's flush writes the last ones. */
	for (waited = 0; waited < 1000; waited += 10) {
		n = conn_events(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
		if (n == want - 1)
			break;
		sleep_ms(10);
	}
	ck_assert_msg(n == want - 1, "%zu of %zu events within %d ms, before the close", n,
		      want - 1, waited);
	n = pair_close_wait(&p);
	ck_assert_uint_eq(n, want);
	for (i = 1; i + 1 < n; i++) {
		ck_assert_uint_eq(evs[i].type, QTAP_EVENT_CONN_DATA);
		ck_assert_uint_eq(evs[i].seq, i);
		ck_assert_uint_eq(evs[i].len, i == 21 ? sizeof(big) : sizeof(msg));
		ck_assert_uint_eq(evs[i].captured, i == 21 ? QTAP_DATA_MAX : sizeof(msg));
		ck_assert(!memcmp(evs[i].payload, i == 21 ? big : msg, PAYLOAD_KEEP));
	}
	ck_assert_uint_eq(evs[n - 1].data_events, 41);
	ck_assert_uint_eq(evs[n - 1].bytes_sent, 40 * sizeof(msg) + sizeof(big));
	ck_assert_double_eq(check_metrics_sum(store, "qtap_system_events_lost_total", NULL,
					      NULL), 0);
	finish(&cap);
}
END_TEST

/* A kernel connection table with no room: the sockets left out are
 * counted as lost conn_open events (no other kind; at each state change
 * or call that found no room), and no event of theirs reaches the
 * agent. */
START_TEST(test_conns_full)
{
	enum { PAIRS = 6, ROOM = 4 };
	struct pair p[PAIRS];
	struct capture *cap;
	unsigned i, opens = 0;
	char text[8192], c;
	double lost;

	conf_self(text, sizeof(text), "");
	cap = start_conns(text, ROOM);
	for (i = 0; i < PAIRS; i++) {
		pair_open(AF_INET, &p[i]);
		ck_assert_int_eq(write(p[i].cfd, "x", 1), 1);
		ck_assert_int_eq(read(p[i].sfd, &c, 1), 1);
	}
	/* Every socket took a slot or was counted when its state changed:
	 * with room for ROOM, at least 2 * PAIRS - ROOM were counted. */
	lost = check_metrics_sum(store, "qtap_system_events_lost_total", NULL, NULL);
	ck_assert_double_eq(check_metrics_sum(store, "qtap_system_events_lost_total",
					      "type=\"conn_open\"", NULL), lost);
	ck_assert_msg(lost >= 2 * PAIRS - ROOM, "conn_open lost %g, want at least %d", lost,
		      2 * PAIRS - ROOM);
	sleep_ms(1500);		/* what the readers had, they have handed on */
	for (i = 0; i < PAIRS; i++)
		opens += count_port(p[i].srv.port);
	ck_assert_msg(opens <= ROOM, "%u connections opened with room for %d", opens, ROOM);
	for (i = 0; i < PAIRS; i++) {
		close(p[i].cfd);
		close(p[i].sfd);
		close(p[i].lfd);
	}
	finish(&cap);
}
END_TEST

/* Classes: a TLS record gets QTAP_TLS_HELLO_BYTES per direction, then
 * counts only; anything else gets its first event per direction. */
START_TEST(test_payload_classes)
{
	static char tls[6000], other[3000], buf[8192];
	struct capture *cap;
	struct pair p, q;
	uint64_t captured = 0;
	size_t n, i;

	memset(tls, 0x42, sizeof(tls));
	tls[0] = 0x16, tls[1] = 0x03, tls[2] = 0x01;
	memset(other, 'z', sizeof(other));
	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	for (i = 0; i < 3; i++) {	/* 18000 bytes from the client */
		ck_assert_int_eq(write(p.cfd, tls, sizeof(tls)), (ssize_t)sizeof(tls));
		read_exact(p.sfd, buf, sizeof(tls));
	}
	ck_assert_int_eq(write(p.sfd, "\x16\x03\x03hello", 8), 8);
	read_exact(p.cfd, buf, 8);
	n = pair_close_wait(&p);
	ck_assert_uint_eq(n, 6);
	for (i = 1; i <= 3; i++) {
		ck_assert_uint_eq(evs[i].len, sizeof(tls));
		captured += evs[i].captured;
	}
	ck_assert_uint_eq(evs[1].captured, sizeof(tls));
	ck_assert_uint_eq(evs[2].captured, QTAP_TLS_HELLO_BYTES - sizeof(tls));
	ck_assert_uint_eq(evs[2].dflags, QTAP_DATA_F_TRUNCATED);
	ck_assert_uint_eq(evs[3].captured, 0);
	ck_assert_uint_eq(evs[3].dflags, QTAP_DATA_F_NO_PAYLOAD);
	ck_assert_uint_eq(captured, QTAP_TLS_HELLO_BYTES);
	ck_assert_uint_eq(evs[4].dir, QTAP_DATA_RECV);
	ck_assert_uint_eq(evs[4].captured, 8);	/* the other direction's own budget */

	pair_open(AF_INET, &q);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(write(q.cfd, other, sizeof(other)), (ssize_t)sizeof(other));
		read_exact(q.sfd, buf, sizeof(other));
	}
	n = pair_close_wait(&q);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(evs[1].captured, sizeof(other));
	ck_assert(!memcmp(evs[1].payload, "zzzz", 4));
	ck_assert_uint_eq(evs[2].captured, 0);
	ck_assert_uint_eq(evs[2].dflags, QTAP_DATA_F_NO_PAYLOAD);
	ck_assert_uint_eq(evs[3].captured, 0);
	ck_assert_uint_eq(evs[4].bytes_sent, 3 * sizeof(other));
	finish(&cap);
}
END_TEST

/* sendfile() counts bytes without payload; MSG_PEEK reads count nothing;
 * accept4() opens the ingress side. */
START_TEST(test_sendfile_peek_accept4)
{
	char path[] = "/tmp/qtap-sendfile-XXXXXX", buf[10000];
	struct capture *cap;
	struct endpoint srv;
	uint16_t cport;
	off_t off = 0;
	int lfd, cfd, sfd, file;
	size_t n;

	memset(buf, 'f', sizeof(buf));
	file = mkstemp(path);
	ck_assert_int_ge(file, 0);
	unlink(path);
	ck_assert_int_eq(write(file, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	cap = start_text(CONF_ALL);
	lfd = tcp_listen(AF_INET, &srv);
	cfd = tcp_connect(&srv, &cport);
	sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(sfd, 0);
	ck_assert_int_eq(sendfile(sfd, file, &off, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(recv(cfd, buf, 10, MSG_PEEK | MSG_WAITALL), 10);
	read_exact(cfd, buf, sizeof(buf));
	close(cfd);
	close(sfd);
	close(lfd);
	close(file);

	n = wait_closed(getpid(), sfd, srv.port, cport, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_eq(evs[1].op, QTAP_OP_SENDFILE);
	ck_assert_uint_eq(evs[1].len, sizeof(buf));
	ck_assert_uint_eq(evs[1].captured, 0);
	ck_assert_uint_eq(evs[1].dflags, QTAP_DATA_F_NO_PAYLOAD);
	ck_assert_uint_eq(evs[2].bytes_sent, sizeof(buf));
	n = wait_closed(getpid(), cfd, cport, srv.port, evs, MAXEV);
	ck_assert_uint_ge(n, 3);
	ck_assert_uint_eq(evs[1].op, QTAP_OP_READ);
	ck_assert_uint_eq(evs[n - 1].bytes_recv, sizeof(buf));
	finish(&cap);
}
END_TEST

/* A connection that starts with a PROXY protocol header (a load balancer
 * in front): the kernel leaves it unclassified, copying, until the events
 * after it tell (here the response: HTTP), so a later request's bytes are
 * copied as HTTP's are, on both sides.  Version 1, version 2, and version
 * 2 read apart (its 16 bytes, its addresses, then the request), as some
 * servers read it. */
START_TEST(test_proxy_header_class)
{
	static const char v1[] = "PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n";
	static const uint8_t v2[28] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I',
					'T', '\n', 0x21, 0x11, 0, 12, 203, 0, 113, 7, 10, 0, 0, 1,
					0xc7, 0x38, 0, 80 };
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	static char first[512], second[1000], buf[1000];
	struct capture *cap;
	struct pair p;
	size_t n, len;
	int k, side;

	memset(second, 'b', sizeof(second));
	memcpy(second, "GET /b HTTP/1.1\r\nX-Pad: ", 25);
	cap = start_text(CONF_ALL);
	for (k = 0; k < 3; k++) {
		pair_open(AF_INET, &p);
		len = k ? sizeof(v2) : sizeof(v1) - 1;
		memcpy(first, k ? (const void *)v2 : (const void *)v1, len);
		len += (size_t)sprintf(first + len, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
		ck_assert_int_eq(write(p.cfd, first, len), (ssize_t)len);
		if (k == 2) {
			read_exact(p.sfd, buf, 16);
			read_exact(p.sfd, buf, 12);
			read_exact(p.sfd, buf, len - 28);
		} else {
			read_exact(p.sfd, buf, len);
		}
		ck_assert_int_eq(write(p.sfd, resp, sizeof(resp) - 1), (ssize_t)sizeof(resp) - 1);
		read_exact(p.cfd, buf, sizeof(resp) - 1);
		ck_assert_int_eq(write(p.cfd, second, sizeof(second)), (ssize_t)sizeof(second));
		read_exact(p.sfd, buf, sizeof(second));
		for (side = 0; side < 2; side++) {
			/* the client's events, then the server's: the second
			 * request copied whole */
			n = side ? wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV) :
				   pair_close_wait(&p);
			ck_assert_uint_ge(n, 5);
			ck_assert_uint_eq(evs[n - 2].len, sizeof(second));
			ck_assert_msg(evs[n - 2].captured == sizeof(second),
				      "case %d, %s: %u of %zu copied", k, side ? "server" : "client",
				      evs[n - 2].captured, sizeof(second));
			ck_assert(!memcmp(evs[n - 2].payload, second, PAYLOAD_KEEP));
		}
	}
	finish(&cap);
}
END_TEST

/* recv() with MSG_TRUNC moves bytes without copying them (the buffer's
 * old bytes are no payload), and a read of the socket's error queue
 * (MSG_ERRQUEUE: here the sent bytes, looped back with their send
 * timestamp) moves none of the stream's. */
START_TEST(test_recv_trunc_errqueue)
{
	static const char req[] = "GET /trunc HTTP/1.1\r\nHost: x\r\n\r\n";
	int ts = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
	const size_t len = sizeof(req) - 1;
	char buf[256], ctl[512];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct capture *cap;
	struct pair p;
	ssize_t looped = -1;
	int waited;
	size_t n;

	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	ck_assert_int_eq(setsockopt(p.cfd, SOL_SOCKET, SO_TIMESTAMPING, &ts, sizeof(ts)), 0);
	ck_assert_int_eq(write(p.cfd, req, len), (ssize_t)len);
	memset(buf, 'Z', sizeof(buf));
	ck_assert_int_eq(recv(p.sfd, buf, len, MSG_TRUNC | MSG_WAITALL), (ssize_t)len);
	for (waited = 0; waited < 1000 && looped <= 0; waited += 10) {
		mh.msg_control = ctl;
		mh.msg_controllen = sizeof(ctl);
		looped = recvmsg(p.cfd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
		if (looped <= 0)
			sleep_ms(10);
	}
	ck_assert_msg(looped > 0, "nothing on the error queue: %s", strerror(errno));

	n = pair_close_wait(&p);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[1].dir, QTAP_DATA_SEND);
	ck_assert_uint_eq(evs[2].bytes_sent, len);
	ck_assert_uint_eq(evs[2].bytes_recv, 0);
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[1].dir, QTAP_DATA_RECV);
	ck_assert_uint_eq(evs[1].len, len);
	ck_assert_uint_eq(evs[1].captured, 0);
	ck_assert_uint_eq(evs[1].dflags, QTAP_DATA_F_NO_PAYLOAD);
	ck_assert_uint_eq(evs[2].bytes_recv, len);
	finish(&cap);
}
END_TEST

/* A socket made for accept() at the address of one whose end was missed
 * (the kernel skipped its sock_destroy run, so its entry is still open):
 * that connection ends there (QTAP_CLOSE_F_REUSED, with its totals), and
 * the socket's next call is a new accepted connection's.  The new socket
 * is played by running sock_state on the open socket's address, as the
 * kernel does when it makes one from a listener (LISTEN to SYN_RECV). */
START_TEST(test_reused_address)
{
	uint64_t args[3], id1, id2;
	struct capture *cap;
	struct pair p;
	char buf[8];
	size_t n;

	cap = start_text(CONF_ALL);
	pair_open(AF_INET, &p);
	ck_assert_int_eq(write(p.cfd, "one", 3), 3);
	read_exact(p.sfd, buf, 3);
	settle();
	n = conn_events(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_ne(evs[0].key, 0);
	id1 = evs[0].conn_id;

	args[0] = evs[0].key;
	args[1] = 10;	/* TCP_LISTEN */
	args[2] = 3;	/* TCP_SYN_RECV */
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args, .ctx_size_in = sizeof(args));
	ck_assert_int_eq(bpf_prog_test_run_opts(bpf_program__fd(cap->sock->progs.sock_state),
						&opts), 0);
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[2].conn_id, id1);
	ck_assert_uint_eq(evs[2].cflags, QTAP_CLOSE_F_REUSED);
	ck_assert_uint_eq(evs[2].bytes_recv, 3);
	ck_assert_uint_eq(evs[2].data_events, 1);

	/* The socket's next call: a new connection, accepted by this
	 * process, closed with its last fd. */
	ck_assert_int_eq(write(p.sfd, "two!", 4), 4);
	read_exact(p.cfd, buf, 4);
	close(p.sfd);
	close(p.cfd);
	close(p.lfd);
	settle();
	id2 = conn_find(getpid(), p.sfd, p.srv.port, p.cport, id1);
	ck_assert_uint_ne(id2, 0);
	n = id_events(id2, evs, MAXEV);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(evs[0].type, QTAP_EVENT_CONN_OPEN);
	ck_assert_uint_eq(evs[0].direction, QTAP_DIR_INGRESS);
	ck_assert_uint_eq(evs[0].oflags, 0);
	ck_assert_uint_eq(evs[1].len, 4);
	ck_assert_uint_eq(evs[2].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(evs[2].cflags, 0);
	ck_assert_uint_eq(evs[2].bytes_sent, 4);
	ck_assert_uint_eq(evs[2].bytes_recv, 0);
	finish(&cap);
}
END_TEST

/* A full ring: the events that did not fit are counted per CPU, their
 * sequence numbers are missing, and the CLOSE still has the totals.  Only
 * this test's executable is traced, but a process the agent has not
 * classified yet is traced until it is (a test starting clients beside
 * this one in a parallel make check), and its events may be lost in the
 * held rings too: the count is at least the numbers missing on the two
 * sides. */
START_TEST(test_ring_full)
{
	static char msg[1000];
	char text[4608];
	struct capture *cap;
	struct drain_arg d;
	pthread_t thread;
	struct pair p;
	uint64_t seen = 0, recv_seen = 0, recv_events, prev = 0;
	size_t n = 0, i;
	double lost;

	memset(msg, 'm', sizeof(msg));
	memcpy(msg, "PUT /x HTTP/1.1\r\n", 17);
	conf_self(text, sizeof(text), "capture = { readers = 1; ring_buffer_kb = 64; };");
	cap = start_text(text);
	pair_open(AF_INET, &p);
	wait_events(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	d = (struct drain_arg){ p.sfd, 500 * sizeof(msg), 0 };
	ck_assert_int_eq(pthread_create(&thread, NULL, drain_main, &d), 0);
	/* The reader stops at the first event, so the 64 KiB rings fill. */
	stall_set(true);
	for (i = 0; i < 500; i++)
		ck_assert_int_eq(write(p.cfd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	pthread_join(thread, NULL);
	ck_assert_uint_eq(d.got, 500 * sizeof(msg));
	stall_set(false);
	/* The reader empties the rings on its next poll: the CLOSE must not
	 * find them full too. */
	settle();
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);

	n = wait_close_of(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV, false);
	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(evs[n - 1].bytes_recv, 500 * sizeof(msg));
	recv_events = evs[n - 1].data_events;
	for (i = 1; i + 1 < n; i++) {
		ck_assert_uint_eq(evs[i].dir, QTAP_DATA_RECV);
		recv_seen++;
	}
	n = wait_close_of(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV, false);
	ck_assert_uint_ge(n, 2);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);
	ck_assert_uint_eq(evs[n - 1].data_events, 500);
	ck_assert_uint_eq(evs[n - 1].seq, 501);
	ck_assert_uint_eq(evs[n - 1].bytes_sent, 500 * sizeof(msg));
	for (i = 1; i + 1 < n; i++) {
		ck_assert_uint_gt(evs[i].seq, prev);	/* each number once */
		ck_assert_uint_eq(evs[i].len, sizeof(msg));
		prev = evs[i].seq;
		seen++;
	}
	ck_assert_msg(seen < 500, "all %u data events fit in the rings", (unsigned)seen);
	/* All data events: the OPEN came before and the CLOSE found room. */
	lost = check_metrics_sum(store, "qtap_system_events_lost_total", NULL, NULL);
	ck_assert_double_eq(check_metrics_sum(store, "qtap_system_events_lost_total",
					      "type=\"conn_data\"", NULL), lost);
	ck_assert_msg(lost >= (double)(500 - seen + recv_events - recv_seen),
		      "events lost %g, missing here %u sent and %u received", lost,
		      (unsigned)(500 - seen), (unsigned)(recv_events - recv_seen));
	finish(&cap);
}
END_TEST

static bool reader_stalled(void)
{
	bool on;

	pthread_mutex_lock(&stall_lock);
	on = stalled;
	pthread_mutex_unlock(&stall_lock);
	return on;
}

/* A position of a ring's (ring_pos(fd, 0): what its reader took,
 * ring_pos(fd, 1): what was written to it), from the first two pages of
 * its mapping. */
static uint64_t ring_pos(int fd, int which)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, which * page);
	uint64_t pos;

	ck_assert_ptr_ne(p, MAP_FAILED);
	pos = __atomic_load_n((uint64_t *)p, __ATOMIC_ACQUIRE);
	munmap(p, (size_t)page);
	return pos;
}

/* A ring whose reader does not run wakes it when it reaches a quarter of
 * its size, then once for every sixteenth of that it grows by: not at
 * every write, each of which would interrupt the writing CPU.  One CPU's
 * ring of 1 MiB (woken at 256 KiB, then every 16 KiB) takes 400 writes of
 * 1000 bytes and their reader's reads.  Each wakeup is seen on the ring's
 * fd in an epoll set of the test's own (edge-triggered: one report for
 * the wakeups since the last look). */
START_TEST(test_wakeups)
{
	const uint64_t mark = 256 << 10, step = 16 << 10;
	static char msg[1000];
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	uint64_t taken, before, after;
	unsigned wakeups = 0, i;
	cpu_set_t one, was;
	struct capture *cap;
	struct drain_arg d;
	pthread_t thread;
	struct pair p;
	int cpu, fd, ep, waited;
	char text[8192];

	memset(msg, 'm', sizeof(msg));
	memcpy(msg, "PUT /x HTTP/1.1\r\n", 17);
	/* The reader is held: only this test's events may go to the rings. */
	conf_self(text, sizeof(text), "capture = { readers = 1; ring_buffer_kb = 1024; };");
	cap = start_text(text);
	/* This thread and its drain thread write into one CPU's ring. */
	ck_assert_int_eq(sched_getaffinity(0, sizeof(was), &was), 0);
	cpu = sched_getcpu();
	ck_assert_int_ge(cpu, 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	fd = cap->ring_fds[cpu];
	pair_open(AF_INET, &p);
	/* The reader stops at its next event and leaves the rings alone. */
	stall_set(true);
	ck_assert_int_eq(write(p.cfd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	for (waited = 0; waited < 3000 && !reader_stalled(); waited += 10)
		sleep_ms(10);
	ck_assert_msg(reader_stalled(), "the reader took no event within %d ms", waited);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ck_assert_int_ge(ep, 0);
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	epoll_wait(ep, &ev, 1, 0);	/* the ring's present state */
	taken = ring_pos(fd, 0);
	before = ring_pos(fd, 1) - taken;
	d = (struct drain_arg){ p.sfd, 401 * sizeof(msg), 0 };
	ck_assert_int_eq(pthread_create(&thread, NULL, drain_main, &d), 0);
	for (i = 0; i < 400; i++) {
		ck_assert_int_eq(write(p.cfd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
		wakeups += epoll_wait(ep, &ev, 1, 0) == 1;
	}
	pthread_join(thread, NULL);
	ck_assert_uint_eq(d.got, 401 * sizeof(msg));
	wakeups += epoll_wait(ep, &ev, 1, 0) == 1;
	ck_assert_uint_eq(ring_pos(fd, 0), taken);	/* the reader took nothing */
	after = ring_pos(fd, 1) - taken;
	ck_assert_int_eq(sched_setaffinity(0, sizeof(was), &was), 0);
	stall_set(false);
	close(ep);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	ck_assert_msg(before < mark && after >= mark + 8 * step,
		      "the ring went from %" PRIu64 " to %" PRIu64 " bytes", before, after);
	/* the mark, each step past it, and one more look's worth */
	ck_assert_msg(wakeups >= 1 && wakeups <= 2 + (after - mark) / step,
		      "%u wakeups as the ring went from %" PRIu64 " to %" PRIu64 " bytes",
		      wakeups, before, after);
	ck_assert_uint_eq(wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV), 403);
	ck_assert_double_eq(check_metrics_sum(store, "qtap_system_events_lost_total", NULL,
					      NULL), 0);
	finish(&cap);
}
END_TEST

/* What the kernel has, read from its BTF: here BTF made up with or
 * without each thing looked for. */
START_TEST(test_kernel_features)
{
	struct kernel_features f;
	struct btf *vmlinux;
	int has;

	for (has = 0; has < 2; has++) {
		struct btf *b = btf__new_empty();
		int id;

		ck_assert_ptr_nonnull(b);
		id = btf__add_int(b, "int", 4, BTF_INT_SIGNED);
		ck_assert_int_gt(id, 0);
		ck_assert_int_gt(btf__add_typedef(b, "btf_trace_sock_send_length", id), 0);
		if (has)
			ck_assert_int_gt(btf__add_typedef(b, "btf_trace_sock_recv_length", id), 0);
		/* a struct and an enum of that name either way */
		ck_assert_int_gt(btf__add_struct(b, "proto_ops", 16), 0);
		ck_assert_int_eq(btf__add_field(b, "sendmsg", id, 0, 0), 0);
		if (has)
			ck_assert_int_eq(btf__add_field(b, "sendpage", id, 32, 0), 0);
		ck_assert_int_gt(btf__add_enum(b, "bpf_attach_type", 4), 0);
		ck_assert_int_eq(btf__add_enum_value(b, "BPF_TRACE_KPROBE_MULTI", 42), 0);
		if (has)
			ck_assert_int_eq(btf__add_enum_value(b, "BPF_TRACE_UPROBE_MULTI", 48), 0);
		f = (struct kernel_features){ !has, !has, !has };
		kernel_features_read(b, &f);
		ck_assert_int_eq(f.sock_length_tps, has);
		ck_assert_int_eq(f.sendpage, has);
		ck_assert_int_eq(f.uprobe_multi, has);
		btf__free(b);
	}
	/* this machine's kernel, which the agent's tests run on */
	vmlinux = btf__load_vmlinux_btf();
	ck_assert_ptr_nonnull(vmlinux);
	kernel_features_read(vmlinux, &f);
	ck_assert(f.sock_length_tps);
	btf__free(vmlinux);
}
END_TEST

/* ---- filter decisions ------------------------------------------------- */

static unsigned decide(const struct qtap_conf *c, uint32_t tgid, const char *exe,
		       const char *comm)
{
	struct capture_proc_info info;

	memset(&info, 0, sizeof(info));
	info.tgid = tgid;
	snprintf(info.exe, sizeof(info.exe), "%s", exe);
	snprintf(info.comm, sizeof(info.comm), "%s", comm);
	return filter_decide(c, 100, &info);
}

START_TEST(test_filter_decide)
{
	struct qtap_conf *c;

	ck_assert_uint_eq(filter_group_of("/usr/bin/kubelet", "kubelet"), CONF_GROUP_KUBERNETES);
	ck_assert_uint_eq(filter_group_of("/usr/local/bin/kube-proxy", ""), CONF_GROUP_KUBERNETES);
	ck_assert_uint_eq(filter_group_of("/usr/bin/containerd-shim-runc-v2", ""),
			  CONF_GROUP_CONTAINER_RUNTIMES);
	ck_assert_uint_eq(filter_group_of("", "conmon"), CONF_GROUP_CONTAINER_RUNTIMES);
	ck_assert_uint_eq(filter_group_of("/usr/sbin/nginx", "nginx"), 0);
	ck_assert_uint_eq(filter_group_of("/usr/bin/runcx", "runcx"), 0);

	/* Every decision is explicit (no entry means "not classified yet").
	 * Defaults: only the agent is left out. */
	ck_assert_uint_eq(decide(NULL, 100, "/usr/sbin/qtap", "qtap"), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(NULL, 101, "/usr/bin/curl", "curl"), QTAP_TGID_ALLOW);

	c = conf_of("tap = { filters = { groups = [ \"qpoint\", \"container-runtimes\" ]; "
		    "custom = ( { exe = \"/usr/bin/ssh\"; strategy = \"exact\"; } ); }; };");
	ck_assert_uint_eq(decide(c, 100, "", ""), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/dockerd", "dockerd"), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/kubelet", "kubelet"), QTAP_TGID_ALLOW);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/ssh", "ssh"), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/curl", "curl"), QTAP_TGID_ALLOW);
	conf_free(&c);

	/* Allow-list mode. */
	c = conf_of("tap = { filters = { groups = [ \"kubernetes\" ]; custom = ( "
		    "{ exe = \"/usr/bin/curl\"; strategy = \"exact\"; only = true; }, "
		    "{ exe = \"kube\"; strategy = \"contains\"; only = true; } ); }; };");
	ck_assert_uint_eq(decide(c, 100, "/usr/sbin/qtap", "qtap"), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/curl", "curl"), QTAP_TGID_ALLOW);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/wget", "wget"), QTAP_TGID_IGNORE);
	ck_assert_uint_eq(decide(c, 7, "/usr/bin/kubelet", "kubelet"), QTAP_TGID_IGNORE);
	conf_free(&c);
}
END_TEST

/* Allow-list mode in the kernel: this process is not on the list, so its
 * connections are not traced; after a reload that lists it, they are, new
 * ones and those it had left out. */
START_TEST(test_allow_list)
{
	struct side client = { 0 }, server = { 0 }, rclient, rserver;
	char text[8192];
	struct qtap_conf *next;
	struct capture *cap;
	struct pair p, r;
	size_t n;

	cap = start_text("tap = { ignore_loopback = false; filters = { groups = []; "
			 "custom = ( { exe = \"/nonexistent\"; "
			 "strategy = \"exact\"; only = true; } ); }; };");
	pair_run(AF_INET, &p, &client, &server);
	/* Left out now; seen once the process is on the list. */
	pair_open(AF_INET, &r);
	exchange(&r, &client, &server);
	conf_self(text, sizeof(text), "");
	next = conf_of(text);
	reconfigure(cap, next);
	settle();
	ck_assert_uint_eq(count_tgid(getpid()), 0);
	pair_run(AF_INET, &p, &client, &server);
	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	ck_assert_uint_ge(n, 3);
	ck_assert_uint_eq(evs[n - 1].type, QTAP_EVENT_CONN_CLOSE);

	/* The earlier connection: learned on its next data, with the
	 * direction it was opened with, and only the later bytes. */
	memset(&rclient, 0, sizeof(rclient));
	memset(&rserver, 0, sizeof(rserver));
	exchange(&r, &rclient, &rserver);
	n = pair_close_wait(&r);
	check_side(evs, n, QTAP_DIR_EGRESS, &r.srv, r.cport, r.srv.port, &rclient,
		   QTAP_CONN_F_PREEXISTING);
	n = wait_closed(getpid(), r.sfd, r.srv.port, r.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_INGRESS, &r.srv, r.srv.port, r.cport, &rserver,
		   QTAP_CONN_F_PREEXISTING);
	finish(&cap);
}
END_TEST

/* A connection traced while its process was allowed, after a reload that
 * leaves the process out: the process's next call on each side writes the
 * side's CLOSE (left out by the filters) with its totals so far, and
 * nothing more of it is written; after a reload that allows the process
 * again, both sides are reported again, seen from the middle, with the
 * bytes from then on. */
START_TEST(test_filtered_after_open)
{
	struct side client = { 0 }, server = { 0 }, left_c = { 0 }, left_s = { 0 };
	struct side again_c = { 0 }, again_s = { 0 };
	uint64_t cid, sid;
	char text[8192];
	struct capture *cap;
	struct pair p;
	size_t n;

	conf_self(text, sizeof(text), "");
	cap = start_text(text);
	pair_open(AF_INET, &p);
	exchange(&p, &client, &server);
	settle();
	conf_exe(text, sizeof(text), false, "", "");
	reconfigure(cap, conf_of(text));
	exchange(&p, &left_c, &left_s);
	n = wait_closed(getpid(), p.cfd, p.cport, p.srv.port, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_EGRESS, &p.srv, p.cport, p.srv.port, &client, 0);
	ck_assert_uint_eq(evs[n - 1].cflags, QTAP_CLOSE_F_SKIPPED | QTAP_CLOSE_F_FILTERED);
	cid = evs[0].conn_id;
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_INGRESS, &p.srv, p.srv.port, p.cport, &server, 0);
	ck_assert_uint_eq(evs[n - 1].cflags, QTAP_CLOSE_F_SKIPPED | QTAP_CLOSE_F_FILTERED);
	sid = evs[0].conn_id;
	settle();
	ck_assert_uint_eq(conn_find(getpid(), p.cfd, p.cport, p.srv.port, cid), 0);
	ck_assert_uint_eq(conn_find(getpid(), p.sfd, p.srv.port, p.cport, sid), 0);

	conf_self(text, sizeof(text), "");
	reconfigure(cap, conf_of(text));
	exchange(&p, &again_c, &again_s);
	close(p.cfd);
	close(p.sfd);
	close(p.lfd);
	cid = wait_find(getpid(), p.cfd, p.cport, p.srv.port, cid);
	ck_assert_uint_ne(cid, 0);
	n = wait_id_close(cid, evs, MAXEV, true);
	check_side(evs, n, QTAP_DIR_EGRESS, &p.srv, p.cport, p.srv.port, &again_c,
		   QTAP_CONN_F_PREEXISTING);
	sid = wait_find(getpid(), p.sfd, p.srv.port, p.cport, sid);
	ck_assert_uint_ne(sid, 0);
	n = wait_id_close(sid, evs, MAXEV, true);
	check_side(evs, n, QTAP_DIR_INGRESS, &p.srv, p.srv.port, p.cport, &again_s,
		   QTAP_CONN_F_PREEXISTING);
	finish(&cap);
}
END_TEST

/* A traced connection whose socket a left-out program shares (a child
 * that kept it across its exec): the child's calls are left out alone,
 * its bytes in no event and no total; the connection goes on, traced, and
 * ends with its own close. */
START_TEST(test_filtered_sharer)
{
	struct side client = { 0 }, server = { 0 };
	char buf[16], cmd[64];
	struct capture *cap;
	struct pair p;
	pid_t child;
	int status;
	size_t n;

	cap = start_text("tap = { ignore_loopback = false; filters = { groups = []; "
			 "custom = ( { exe = \"/bash\"; strategy = \"suffix\"; } ); }; };");
	pair_open(AF_INET, &p);
	exchange(&p, &client, &server);
	snprintf(cmd, sizeof(cmd), "printf hello >&%d", p.cfd);
	child = bash_after_exec(cmd);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	server.calls += read_exact(p.sfd, buf, 5);
	ck_assert(!memcmp(buf, "hello", 5));
	server.recv += 5;
	exchange(&p, &client, &server);
	n = pair_close_wait(&p);
	check_side(evs, n, QTAP_DIR_EGRESS, &p.srv, p.cport, p.srv.port, &client, 0);
	ck_assert_uint_eq(evs[n - 1].cflags, 0);
	n = wait_closed(getpid(), p.sfd, p.srv.port, p.cport, evs, MAXEV);
	check_side(evs, n, QTAP_DIR_INGRESS, &p.srv, p.srv.port, p.cport, &server, 0);
	settle();
	ck_assert_uint_eq(count_tgid(child), 0);
	finish(&cap);
}
END_TEST

static Suite *sock_suite(void)
{
	Suite *s = suite_create("sock");
	TCase *tc;

	tc = tcase_create("bpf");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_exchange_ipv4);
	tcase_add_test(tc, test_exchange_ipv6);
	tcase_add_test(tc, test_metrics_one_reader);
	tcase_add_test(tc, test_ignore_loopback);
	tcase_add_test(tc, test_direction_egress);
	tcase_add_test(tc, test_direction_internal_external);
	tcase_add_test(tc, test_tgid_ignored);
	tcase_add_test(tc, test_preexisting);
	tcase_add_test(tc, test_preexisting_filtered);
	tcase_add_test(tc, test_accept_close);
	tcase_add_test(tc, test_tunnel_cap);
	tcase_add_test(tc, test_method_line);
	tcase_add_test(tc, test_dns_port);
	tcase_add_test(tc, test_conn_alive);
	tcase_add_test(tc, test_conn_alive_table);
	tcase_add_test(tc, test_conn_alive_bound);
	tcase_add_test(tc, test_v4_mapped);
	tcase_add_test(tc, test_unix_ignored);
	tcase_add_test(tc, test_fd_reuse);
	tcase_add_test(tc, test_close_shutdown);
	tcase_add_test(tc, test_large_write);
	tcase_add_test(tc, test_stage_order);
	tcase_add_test(tc, test_payload_classes);
	tcase_add_test(tc, test_allow_list);
	tcase_add_test(tc, test_filtered_after_open);
	tcase_add_test(tc, test_filtered_sharer);
	tcase_add_test(tc, test_sendfile_peek_accept4);
	tcase_add_test(tc, test_reused_address);
	tcase_add_test(tc, test_ring_full);
	tcase_add_test(tc, test_conns_full);
	tcase_add_test(tc, test_connect_unfinished);
	tcase_add_test(tc, test_recv_trunc_errqueue);
	tcase_add_test(tc, test_uring_task_work);
	tcase_add_test(tc, test_proxy_header_class);
	tcase_add_test(tc, test_wakeups);
	suite_add_tcase(s, tc);

	tc = tcase_create("filter");
	tcase_add_test(tc, test_filter_decide);
	tcase_add_test(tc, test_kernel_features);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(sock_suite());
}

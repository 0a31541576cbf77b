/* The metrics endpoints on libmicrohttpd's internal epoll thread (the
 * scrape thread): /metrics, /system/metrics, /healthz, /readyz.
 *
 * Nothing here needs a request body, so none is accepted (413) and none is
 * read; a request costs one render at most. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <urcu.h>

#include "http/http.h"
#include "http/http_int.h"
#include "metrics/metrics.h"
#include "util/buf.h"

#define HTTP_CONNECTION_LIMIT_DEFAULT 32
#define HTTP_PER_IP_LIMIT_DEFAULT 8
#define HTTP_TIMEOUT_DEFAULT 10
/* Per-connection pool for the request line, headers and MHD's own write
 * buffer; response bodies live outside it.  libmicrohttpd refuses requests
 * whose headers do not fit. */
#define HTTP_CONNECTION_MEMORY_LIMIT (32 * 1024)

#define CONTENT_TYPE_PLAIN "text/plain; charset=utf-8"

/* Response bodies kept for reuse.  A large exposition costs more in page
 * faults on a fresh buffer than in rendering: reusing the memory of the
 * previous scrape keeps a scrape of 100k histogram series within ~100 ms
 * (bench/bench_store).  Two: one for the text, one for its gzip form. */
#define HTTP_BODY_POOL 2

struct http_server;

/* A rendered body handed to libmicrohttpd; back in the pool (or freed)
 * when the response is destroyed. */
struct http_body {
	struct http_server *srv;
	struct buf buf;
};

/* Written by the main thread: all fields at start and stop, ready by
 * http_server_set_ready() at any time.  Read by the scrape thread (the
 * access handler): store and ready.  The store is not owned.  The body
 * pool belongs to the scrape thread (libmicrohttpd destroys responses on
 * it), and to the main thread once that thread is joined. */
struct http_server {
	struct MHD_Daemon *daemon;
	struct metrics_store *store;
	atomic_bool ready;
	unsigned port;
	struct http_body *pool[HTTP_BODY_POOL];
	unsigned n_pool;
};

static struct http_body *body_get(struct http_server *srv)
{
	struct http_body *b;

	if (srv->n_pool)
		return srv->pool[--srv->n_pool];
	b = calloc(1, sizeof(*b));
	if (b)
		b->srv = srv;
	return b;
}

static void body_put(struct http_body *b)
{
	struct http_server *srv;

	if (!b)
		return;
	srv = b->srv;
	if (srv->n_pool < HTTP_BODY_POOL) {
		buf_reset(&b->buf);
		srv->pool[srv->n_pool++] = b;
		return;
	}
	buf_free(&b->buf);
	free(b);
}

/* MHD_ContentReaderFreeCallback of a metrics response. */
static void body_release(void *cls)
{
	body_put(cls);
}

enum route_kind { ROUTE_METRICS, ROUTE_SYSTEM_METRICS, ROUTE_HEALTHZ, ROUTE_READYZ };

static const struct route {
	const char *path;
	enum route_kind kind;
} routes[] = {
	{ "/metrics", ROUTE_METRICS },
	{ "/system/metrics", ROUTE_SYSTEM_METRICS },
	{ "/healthz", ROUTE_HEALTHZ },
	{ "/readyz", ROUTE_READYZ },
};

/* RCU registration of the scrape thread.
 *
 * With MHD_USE_INTERNAL_POLLING_THREAD and no thread pool, libmicrohttpd
 * 0.9.75 runs every callback of a daemon on its one polling thread, but it
 * offers no hook for that thread's start or end: MHD_OPTION_NOTIFY_CONNECTION
 * and MHD_OPTION_NOTIFY_COMPLETED report connections and requests, and a
 * daemon stopped while no connection is open calls neither before its thread
 * exits.  Registering and unregistering around every request would work but
 * takes the RCU registry lock twice per scrape.
 *
 * So the thread registers on its first request (scrape_rcu_registered says
 * it did) and stores a value under a pthread key whose destructor
 * unregisters it.  POSIX runs key destructors in the exiting thread after
 * its start routine returns, and pthread_join() -- which MHD_stop_daemon()
 * calls -- returns only after that: the thread leaves the RCU registry
 * exactly once, before http_server_stop() returns.  Thread-local storage
 * (liburcu's reader state included) is still valid while destructors run;
 * urcu-bp relies on the same mechanism. */
static __thread bool scrape_rcu_registered;
static pthread_key_t scrape_rcu_key;
static pthread_once_t scrape_rcu_once = PTHREAD_ONCE_INIT;
static int scrape_rcu_key_err;

static void scrape_rcu_unregister(void *unused)
{
	if (scrape_rcu_registered) {
		rcu_unregister_thread();
		scrape_rcu_registered = false;
	}
}

static void scrape_rcu_key_create(void)
{
	scrape_rcu_key_err = pthread_key_create(&scrape_rcu_key, scrape_rcu_unregister);
}

/* 0, or -errno when the unregistration cannot be arranged (then the thread
 * stays unregistered and the caller must not read the store). */
static int scrape_rcu_register(void)
{
	int err;

	if (scrape_rcu_registered)
		return 0;
	pthread_once(&scrape_rcu_once, scrape_rcu_key_create);
	if (scrape_rcu_key_err)
		return -scrape_rcu_key_err;
	/* any non-NULL value: the destructor runs only for those */
	err = pthread_setspecific(scrape_rcu_key, &scrape_rcu_registered);
	if (err)
		return -err;
	rcu_register_thread();
	scrape_rcu_registered = true;
	return 0;
}

static enum MHD_Result reply_static(struct MHD_Connection *conn, unsigned status,
				    const char *body, const char *hdr,
				    const char *hdr_value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret = MHD_NO;

	resp = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
					       MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				    CONTENT_TYPE_PLAIN) != MHD_YES)
		goto out_destroy;
	if (hdr && MHD_add_response_header(resp, hdr, hdr_value) != MHD_YES)
		goto out_destroy;
	ret = MHD_queue_response(conn, status, resp);
out_destroy:
	MHD_destroy_response(resp);
	return ret;
}

static const char *request_header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static bool request_has_body(struct MHD_Connection *conn)
{
	const char *cl = request_header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);

	if (request_header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING))
		return true;
	return cl && strspn(cl, "0") != strlen(cl);
}

static enum MHD_Result reply_metrics(struct http_server *srv, struct MHD_Connection *conn,
				     enum metric_endpoint endpoint)
{
	struct http_body *text = NULL, *gz = NULL, *body;
	enum metrics_format format;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	bool gzip;

	format = http_negotiate_format(request_header(conn, MHD_HTTP_HEADER_ACCEPT));
	gzip = http_negotiate_gzip(request_header(conn, MHD_HTTP_HEADER_ACCEPT_ENCODING));

	if (scrape_rcu_register())
		goto err_render;
	text = body_get(srv);
	if (!text || metrics_render(srv->store, endpoint, format, &text->buf))
		goto err_render;
	body = text;
	if (gzip) {
		gz = body_get(srv);
		if (!gz || http_gzip_compress(text->buf.data, text->buf.len, &gz->buf))
			goto err_render;
		body_put(text);
		text = NULL;
		body = gz;
	}

	/* From here on the response owns body and gives it back to the pool. */
	resp = MHD_create_response_from_buffer_with_free_callback_cls(
		body->buf.len, body->buf.data, body_release, body);
	if (!resp)
		goto err_render;
	text = gz = NULL;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				    format == METRICS_FORMAT_OPENMETRICS ?
				    HTTP_CONTENT_TYPE_OPENMETRICS :
				    HTTP_CONTENT_TYPE_TEXT) != MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY,
				    "Accept, Accept-Encoding") != MHD_YES ||
	    (gzip && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
					     "gzip") != MHD_YES)) {
		MHD_destroy_response(resp);
		return reply_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    "cannot render the metrics\n", NULL, NULL);
	}
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;

err_render:
	/* Out of memory, most likely: free what we hold first (not into the
	 * pool) so that the static 500 reply has a chance. */
	if (text)
		buf_free(&text->buf);
	if (gz)
		buf_free(&gz->buf);
	body_put(text);
	body_put(gz);
	return reply_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
			    "cannot render the metrics\n", NULL, NULL);
}

/* MHD_AccessHandlerCallback, on the scrape thread.
 *
 * libmicrohttpd calls it once when the headers are in, then again after
 * the body (none here).  A response queued on the first call makes
 * libmicrohttpd discard the rest of the request and close the connection:
 * that is what refusals want (the body is never read), while answers are
 * queued on the second call so the connection can be kept alive. */
static enum MHD_Result server_answer(void *cls, struct MHD_Connection *conn,
				     const char *url, const char *method,
				     const char *version, const char *upload_data,
				     size_t *upload_data_size, void **req_cls)
{
	struct http_server *srv = cls;
	const struct route *route = NULL;
	size_t i;

	if (!*req_cls) {
		if (strcmp(method, MHD_HTTP_METHOD_GET) &&
		    strcmp(method, MHD_HTTP_METHOD_HEAD))
			return reply_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					    "method not allowed\n",
					    MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		if (request_has_body(conn))
			return reply_static(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					    "request bodies are not accepted\n",
					    NULL, NULL);
		*req_cls = srv;
		return MHD_YES;
	}
	if (*upload_data_size) {
		/* Not reached: requests announcing a body are refused
		 * above.  Should one still come, drop it. */
		*upload_data_size = 0;
		return MHD_YES;
	}

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!strcmp(url, routes[i].path)) {
			route = &routes[i];
			break;
		}
	}
	if (!route)
		return reply_static(conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL, NULL);

	switch (route->kind) {
	case ROUTE_METRICS:
		return reply_metrics(srv, conn, METRICS_ENDPOINT_APP);
	case ROUTE_SYSTEM_METRICS:
		return reply_metrics(srv, conn, METRICS_ENDPOINT_SYSTEM);
	case ROUTE_HEALTHZ:
		return reply_static(conn, MHD_HTTP_OK, "ok\n", NULL, NULL);
	case ROUTE_READYZ:
		if (atomic_load(&srv->ready))
			return reply_static(conn, MHD_HTTP_OK, "ready\n", NULL, NULL);
		return reply_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n",
				    NULL, NULL);
	}
	return MHD_NO;
}

static int port_parse(const char *s, unsigned *ret_port)
{
	unsigned port = 0;
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 5 || s[n])
		return -EINVAL;
	while (*s)
		port = port * 10 + (unsigned)(*s++ - '0');
	if (port > 65535)
		return -EINVAL;
	*ret_port = port;
	return 0;
}

int http_listen_parse(const char *listen, struct sockaddr_storage *ret_addr,
		      unsigned *ret_len)
{
	struct sockaddr_storage ss = { 0 };
	char host[INET6_ADDRSTRLEN];
	const char *host_start, *host_end, *port_str;
	unsigned port, len;
	size_t host_len;
	int family;

	if (!listen)
		return -EINVAL;
	if (listen[0] == '[') {
		family = AF_INET6;
		host_start = listen + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		port_str = host_end + 2;
	} else {
		family = AF_INET;
		host_start = listen;
		host_end = strrchr(listen, ':');
		if (!host_end)
			return -EINVAL;
		port_str = host_end + 1;
	}
	host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	if (port_parse(port_str, &port))
		return -EINVAL;

	if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	}
	*ret_addr = ss;
	*ret_len = len;
	return 0;
}

struct http_server *http_server_start(const struct http_server_opts *opts,
				      struct metrics_store *store)
{
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage addr;
	struct http_server *srv;
	unsigned flags, addr_len, conn_limit, per_ip_limit, timeout;
	int err;

	if (!opts || !store) {
		errno = EINVAL;
		return NULL;
	}
	err = http_listen_parse(opts->listen ? opts->listen : HTTP_LISTEN_DEFAULT,
				&addr, &addr_len);
	if (err)
		goto err_out;

	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		err = -ENOMEM;
		goto err_out;
	}
	srv->store = store;
	atomic_init(&srv->ready, false);

	conn_limit = opts->connection_limit ? opts->connection_limit :
		HTTP_CONNECTION_LIMIT_DEFAULT;
	per_ip_limit = opts->per_ip_limit ? opts->per_ip_limit : HTTP_PER_IP_LIMIT_DEFAULT;
	timeout = opts->timeout_seconds ? opts->timeout_seconds : HTTP_TIMEOUT_DEFAULT;

	/* One epoll thread serves every connection: a slow or idle client
	 * costs a file descriptor and a memory pool, never a thread.  The
	 * limits and the idle timeout bound how many such clients there can
	 * be and for how long.  MHD_USE_ITC wakes the thread at stop.  No
	 * MHD_USE_ERROR_LOG: failures come back to the caller as errno. */
	flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, server_answer, srv,
				       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
				       MHD_OPTION_CONNECTION_LIMIT, conn_limit,
				       MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip_limit,
				       MHD_OPTION_CONNECTION_TIMEOUT, timeout,
				       MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				       (size_t)HTTP_CONNECTION_MEMORY_LIMIT,
				       MHD_OPTION_LISTEN_BACKLOG_SIZE, conn_limit,
				       MHD_OPTION_END);
	if (!srv->daemon) {
		/* libmicrohttpd leaves the failing call's errno in place
		 * (bind's EADDRINUSE or EACCES, for instance). */
		err = errno ? -errno : -EIO;
		goto err_free;
	}

	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port) {
		err = -EIO;
		goto err_stop;
	}
	srv->port = info->port;
	return srv;

err_stop:
	MHD_stop_daemon(srv->daemon);
err_free:
	free(srv);
err_out:
	errno = -err;
	return NULL;
}

void http_server_stop(struct http_server **p)
{
	struct http_server *srv = p ? *p : NULL;

	if (!srv)
		return;
	/* Joins the scrape thread, which unregisters from RCU on its way out. */
	MHD_stop_daemon(srv->daemon);
	/* Every response, and so every body, is back in the pool or freed. */
	while (srv->n_pool) {
		struct http_body *b = srv->pool[--srv->n_pool];

		buf_free(&b->buf);
		free(b);
	}
	free(srv);
	*p = NULL;
}

void http_server_set_ready(struct http_server *srv, bool ready)
{
	atomic_store(&srv->ready, ready);
}

unsigned http_server_port(const struct http_server *srv)
{
	return srv->port;
}

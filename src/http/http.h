/* The metrics endpoints: /metrics, /system/metrics, /healthz, /readyz, on
 * libmicrohttpd's own polling thread (the scrape thread).
 *
 * Threads: started and stopped by the main thread; the scrape thread reads
 * the metric store (under rcu_read_lock, registered with RCU on first use)
 * and the ready flag. */
#ifndef QTAP_HTTP_HTTP_H
#define QTAP_HTTP_HTTP_H

#include <stdbool.h>
#include <sys/socket.h>

struct metrics_store;
struct http_server;

#define HTTP_LISTEN_DEFAULT "127.0.0.1:10001"

struct http_server_opts {
	const char *listen;            /* "ADDR:PORT" or "[V6ADDR]:PORT" */
	unsigned connection_limit;     /* 0: default 32 */
	unsigned per_ip_limit;         /* 0: default 8 */
	unsigned timeout_seconds;      /* idle connection timeout; 0: default 10 */
};

/* Parses "ADDR:PORT" / "[ADDR]:PORT" (numeric addresses only); 0 or -EINVAL. */
int http_listen_parse(const char *listen, struct sockaddr_storage *ret_addr,
		      unsigned *ret_len);

/* Binds and starts serving.  NULL and errno (EADDRINUSE, EACCES, EINVAL...)
 * on failure. */
struct http_server *http_server_start(const struct http_server_opts *opts,
				      struct metrics_store *store);
void http_server_stop(struct http_server **srv);

/* /readyz answers 200 once the agent says it is ready (capture attached),
 * 503 before. */
void http_server_set_ready(struct http_server *srv, bool ready);

/* The port actually bound (for a listen address with port 0). */
unsigned http_server_port(const struct http_server *srv);

#endif

/* qtap: start-up, signals, reload and shutdown.
 *
 * The main thread owns the lifecycle: it loads and publishes the
 * configuration, creates the metric store, starts the endpoints and the
 * capture, then waits for signals.  All other threads are started with the
 * handled signals blocked, so they are delivered here only. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <urcu.h>

#include "capture/capture.h"
#include "cli.h"
#include "commit.h"
#include "conf/conf.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "util/log.h"
#include "util/notify.h"

static void print_conf_error(const struct conf_error *err)
{
	char msg[1200];

	conf_error_format(err, msg, sizeof(msg));
	fprintf(stderr, "qtap: %s\n", msg);
}

/* HTTP families are exposed when a stack that HTTP traffic can go through
 * has the http_metrics plugin. */
static bool conf_http_metrics(const struct qtap_conf *conf)
{
	size_t i;

	if (conf->tap.http_stack && conf->tap.http_stack->http_metrics)
		return true;
	for (i = 0; i < conf->tap.n_endpoints; i++)
		if (conf->tap.endpoints[i].stack && conf->tap.endpoints[i].stack->http_metrics)
			return true;
	return false;
}

static int validate(const char *path)
{
	struct conf_error err;
	struct qtap_conf *conf = conf_load(path, &err);

	if (!conf) {
		print_conf_error(&err);
		return QTAP_EXIT_CONFIG;
	}
	printf("%s: valid\n", path);
	conf_free(&conf);
	return 0;
}

/* The configuration at start: a missing default file means built-in
 * defaults; a missing file named on the command line is an error. */
static struct qtap_conf *load_initial(const struct cli_args *args)
{
	struct conf_error err;
	struct qtap_conf *conf;

	if (!args->config_given && access(args->config_path, F_OK) && errno == ENOENT) {
		log_warn("%s does not exist: running with the built-in defaults "
			 "(no HTTP metrics; see qtap.conf(5))", args->config_path);
		return conf_new_default();
	}
	conf = conf_load(args->config_path, &err);
	if (!conf) {
		int saved = errno;
		char msg[1200];

		conf_error_format(&err, msg, sizeof(msg));
		log_error("configuration error: %s", msg);
		errno = saved;
	}
	return conf;
}

static void apply_conf(struct metrics_store *store, const struct qtap_conf *conf)
{
	metrics_store_set_series_limit(store, conf->metrics.series_limit);
	metrics_store_set_http_enabled(store, conf_http_metrics(conf));
}

/* The capture.* settings the agent started with, which run until it
 * stops (copied whole: the configurations are zeroed, padding too). */
static struct conf_capture running_capture;

/* Start-time settings that a reload cannot change: say so rather than
 * pretend, at every reload whose file differs from what runs. */
static void warn_start_only(const struct qtap_conf *conf)
{
	if (memcmp(&running_capture, &conf->capture, sizeof(conf->capture)))
		log_warn("capture.* settings take effect at the next start; "
			 "the running values stay");
}

static void reload(const struct cli_args *args, struct metrics_store *store,
		   struct capture *cap)
{
	static const char *const ok[] = { "success" }, *const failed[] = { "failure" };
	struct conf_error err;
	struct qtap_conf *conf;
	int rc;

	notify_send("RELOADING=1");
	conf = conf_load(args->config_path, &err);
	if (!conf) {
		char msg[1200];

		conf_error_format(&err, msg, sizeof(msg));
		log_error("reload refused, keeping the running configuration: %s", msg);
		metrics_add(store, M_SYSTEM_CONFIG_RELOADS_TOTAL, failed, 1);
		goto out;
	}
	warn_start_only(conf);
	/* The capture switches first: once it returns, nothing uses the
	 * running configuration but RCU readers, which conf_publish() waits
	 * for before freeing it. */
	rc = capture_reconfigure(cap, conf);
	if (rc) {
		log_error("reload refused, keeping the running configuration: "
			  "applying it to the capture failed: %s", strerror(-rc));
		conf_free(&conf);
		metrics_add(store, M_SYSTEM_CONFIG_RELOADS_TOTAL, failed, 1);
		goto out;
	}
	apply_conf(store, conf);
	conf_publish(conf);
	log_info("configuration reloaded from %s", args->config_path);
	metrics_add(store, M_SYSTEM_CONFIG_RELOADS_TOTAL, ok, 1);
out:
	notify_send("READY=1");
}

/* The soft limit on open files up to the hard one: BPF links are files
 * (two per TLS library file, and per process with --tls-attach process),
 * and the usual soft limit of 1024 is no measure of a host's processes. */
static void nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_warn("raising the open files limit to %llu failed: %s",
			 (unsigned long long)rl.rlim_max, strerror(errno));
}

static int run(const struct cli_args *args)
{
	struct metrics_opts mopts = { 0 };
	struct http_server_opts hopts = { .listen = args->httpd_listen };
	struct capture_opts copts = { .mount_tracefs = true, .bpf_trace = args->bpf_trace };
	struct metrics_store *store = NULL;
	struct http_server *srv = NULL;
	struct capture *cap = NULL;
	struct qtap_conf *conf;
	sigset_t sigs;
	int status = QTAP_EXIT_FAILURE, sig;

	/* Block the signals we wait for first of all: before any thread
	 * exists, so that every thread inherits the mask and only
	 * sigwaitinfo() sees them, and before a reload or a stop sent while
	 * the agent starts could end it by the default action. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	conf = load_initial(args);
	if (!conf)
		return errno == ENOMEM ? QTAP_EXIT_FAILURE : QTAP_EXIT_CONFIG;
	memcpy(&running_capture, &conf->capture, sizeof(running_capture));
	nofile_raise();
	mopts.series_limit = conf->metrics.series_limit;
	mopts.http_enabled = conf_http_metrics(conf);
	/* Published, so freed by the next conf_publish(), which a reload calls
	 * only after capture_reconfigure() moved the capture off it. */
	copts.conf = conf;
	copts.tls_probes = (args->tls_probes & CLI_TLS_OPENSSL ? CAPTURE_TLS_OPENSSL : 0) |
			   (args->tls_probes & CLI_TLS_GNUTLS ? CAPTURE_TLS_GNUTLS : 0) |
			   (args->tls_probes & CLI_TLS_NODETLS ? CAPTURE_TLS_NODETLS : 0);
	copts.tls_attach = args->tls_attach_process ? CAPTURE_TLS_ATTACH_PROCESS :
						      CAPTURE_TLS_ATTACH_LIBRARY;
	if (args->tls_probes & CLI_TLS_GOTLS)
		log_warn("--tls-probes: gotls (Go crypto/tls) is not available in this version; "
			 "Go programs' TLS is seen as ciphertext only");
	conf_publish(conf);

	store = metrics_store_new(&mopts);
	if (!store) {
		log_error("creating the metric store failed: %s", strerror(errno));
		goto out;
	}
	if (metrics_system_collectors_add(store)) {
		log_error("registering the system collectors failed");
		goto out_store;
	}

	srv = http_server_start(&hopts, store);
	if (!srv) {
		log_error("serving metrics on %s failed: %s", args->httpd_listen, strerror(errno));
		goto out_store;
	}
	log_info("serving /metrics and /system/metrics on %s", args->httpd_listen);

	cap = capture_start(&copts, store);
	if (!cap)
		goto out_http; /* capture_start logged why */

	http_server_set_ready(srv, true);
	notify_send("READY=1");
	log_info("qtap %s ready", PACKAGE_VERSION);

	for (;;) {
		siginfo_t si;

		sig = sigwaitinfo(&sigs, &si);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			log_error("waiting for signals failed: %s", strerror(errno));
			break;
		}
		if (sig == SIGHUP) {
			reload(args, store, cap);
			continue;
		}
		log_info("%s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
		status = 0;
		break;
	}
	notify_send("STOPPING=1");
	/* Endpoints first: a scrape runs the capture's collector. */
	http_server_stop(&srv);
	capture_stop(&cap);
out_http:
	http_server_stop(&srv);
out_store:
	metrics_store_free(&store);
out:
	conf_publish(NULL);
	return status;
}

int main(int argc, char **argv)
{
	struct cli_args args;
	char err[512];
	int status;

	if (cli_parse(argc, argv, &args, err, sizeof(err))) {
		fprintf(stderr, "qtap: %s\n", err);
		cli_write_usage(stderr);
		fputs("Try 'qtap --help' for more information.\n", stderr);
		return QTAP_EXIT_USAGE;
	}
	if (args.help) {
		cli_write_help(stdout);
		return 0;
	}
	if (args.version) {
		printf("qtap %s (commit %s)\n", PACKAGE_VERSION, QTAP_COMMIT);
		return 0;
	}
	if (args.validate_path)
		return validate(args.validate_path);

	log_setup(args.log_level, args.log_encoding);
	rcu_register_thread();
	status = run(&args);
	rcu_unregister_thread();
	return status;
}

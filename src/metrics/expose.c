/* Exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0, written
 * from per-family fragments built once at store creation, so rendering a
 * series is memcpy and integer formatting. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "metrics/metrics.h"
#include "metrics/metrics-int.h"
#include "util/buf.h"

static const uint64_t pow10_tab[] = {
	1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
	100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
	10000000000000ull, 100000000000000ull, 1000000000000000ull,
	10000000000000000ull, 100000000000000000ull, 1000000000000000000ull,
};

/* v / 10^digits as an exact decimal, trailing zeros of the fraction
 * trimmed; at most 22 bytes. */
static size_t fmt_fixed(char *p, uint64_t v, int digits, int is_signed)
{
	uint64_t scale, frac;
	size_t n = 0;
	int i;

	if (is_signed && (int64_t)v < 0) {
		p[n++] = '-';
		v = 0 - v;
	}
	if (!digits)
		return n + fmt_u64(p + n, v);
	scale = pow10_tab[digits];
	n += fmt_u64(p + n, v / scale);
	frac = v % scale;
	if (!frac)
		return n;
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	p[n++] = '.';
	for (i = digits - 1; i >= 0; i--) {
		p[n + (size_t)i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	return n + (size_t)digits;
}

size_t metrics_fmt_fixed(char *p, uint64_t v, uint64_t scale, int is_signed)
{
	int digits = metrics_scale_digits(scale);

	return fmt_fixed(p, v, digits < 0 ? 0 : digits, is_signed);
}

/* OpenMetrics canonical form of v / 10^digits: Go's shortest %g, with
 * ".0" added when there is neither a point nor an exponent (1 -> "1.0",
 * 0.1 -> "0.1", 1000000 -> "1e+06"). */
static size_t fmt_canonical(char *p, uint64_t v, int digits)
{
	char d[24];
	size_t nd = 0, n = 0, i;
	int dp, exp;

	if (!v) {
		memcpy(p, "0.0", 3);
		return 3;
	}
	nd = fmt_u64(d, v);
	dp = (int)nd - digits;		/* digits before the decimal point */
	while (nd > 1 && d[nd - 1] == '0')
		nd--;
	exp = dp - 1;
	if (exp < -4 || exp >= 6) {
		p[n++] = d[0];
		if (nd > 1) {
			p[n++] = '.';
			memcpy(p + n, d + 1, nd - 1);
			n += nd - 1;
		}
		p[n++] = 'e';
		p[n++] = exp < 0 ? '-' : '+';
		if (exp < 0)
			exp = -exp;
		if (exp < 10)
			p[n++] = '0';
		n += fmt_u64(p + n, (unsigned)exp);
		return n;
	}
	if (dp <= 0) {
		p[n++] = '0';
		p[n++] = '.';
		for (i = 0; i < (size_t)-dp; i++)
			p[n++] = '0';
		memcpy(p + n, d, nd);
		return n + nd;
	}
	if ((size_t)dp >= nd) {
		memcpy(p + n, d, nd);
		n += nd;
		for (i = nd; i < (size_t)dp; i++)
			p[n++] = '0';
		memcpy(p + n, ".0", 2);
		return n + 2;
	}
	memcpy(p + n, d, (size_t)dp);
	n += (size_t)dp;
	p[n++] = '.';
	memcpy(p + n, d + dp, nd - (size_t)dp);
	return n + nd - (size_t)dp;
}

/* ---- fragments ---- */

struct sink {
	char *p;
	size_t len, cap;
	int overflow;
};

static void sink_put(struct sink *s, const char *t, size_t n)
{
	if (s->cap - s->len < n) {
		s->overflow = 1;
		return;
	}
	memcpy(s->p + s->len, t, n);
	s->len += n;
}

static void sink_str(struct sink *s, const char *t)
{
	sink_put(s, t, strlen(t));
}

/* HELP text: backslash and newline escaped; in OpenMetrics double quotes
 * too. */
static void sink_help(struct sink *s, const char *t, int om)
{
	for (; *t; t++) {
		if (*t == '\\')
			sink_put(s, "\\\\", 2);
		else if (*t == '\n')
			sink_put(s, "\\n", 2);
		else if (*t == '"' && om)
			sink_put(s, "\\\"", 2);
		else
			sink_put(s, t, 1);
	}
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static const char *const type_names[] = {
	[METRIC_COUNTER] = "counter",
	[METRIC_GAUGE] = "gauge",
	[METRIC_HISTOGRAM] = "histogram",
};

static int build_expo(struct metrics_family *f, int om)
{
	const struct metric_def *d = f->def;
	struct metrics_expo *e = &f->expo[om];
	char family[96], num[32];
	size_t flen = strlen(d->name), n;
	const char *unit = NULL;
	struct sink s;
	unsigned i;

	/* OpenMetrics names a counter family without its _total. */
	if (flen >= sizeof(family) - 8)
		return -ENAMETOOLONG;
	memcpy(family, d->name, flen + 1);
	if (om && d->type == METRIC_COUNTER && ends_with(family, "_total"))
		family[flen - 6] = '\0';
	if (om && ends_with(family, "_seconds"))
		unit = "seconds";
	else if (om && ends_with(family, "_bytes"))
		unit = "bytes";

	s = (struct sink){ e->head, 0, sizeof(e->head), 0 };
	sink_str(&s, "# HELP ");
	sink_str(&s, family);
	sink_str(&s, " ");
	sink_help(&s, d->help, om);
	sink_str(&s, "\n# TYPE ");
	sink_str(&s, family);
	sink_str(&s, " ");
	sink_str(&s, type_names[d->type]);
	sink_str(&s, "\n");
	if (unit) {
		sink_str(&s, "# UNIT ");
		sink_str(&s, family);
		sink_str(&s, " ");
		sink_str(&s, unit);
		sink_str(&s, "\n");
	}
	if (s.overflow)
		return -ENAMETOOLONG;
	e->head_len = (uint16_t)s.len;

	if (d->type != METRIC_HISTOGRAM) {
		/* counter without _total gets it in OpenMetrics */
		n = (size_t)snprintf(e->sample, sizeof(e->sample), "%s%s", d->name,
				     om && d->type == METRIC_COUNTER &&
				     !ends_with(d->name, "_total") ? "_total" : "");
		if (n >= sizeof(e->sample))
			return -ENAMETOOLONG;
		e->sample_len = (uint8_t)n;
		return 0;
	}
	n = (size_t)snprintf(e->sample, sizeof(e->sample), "%s_bucket", d->name);
	e->sample_len = (uint8_t)n;
	n = (size_t)snprintf(e->sum, sizeof(e->sum), "%s_sum", d->name);
	e->sum_len = (uint8_t)n;
	n = (size_t)snprintf(e->count, sizeof(e->count), "%s_count", d->name);
	e->count_len = (uint8_t)n;
	if (e->count_len >= sizeof(e->count) - 1)
		return -ENAMETOOLONG;
	for (i = 0; i <= d->n_buckets; i++) {
		s = (struct sink){ e->le[i], 0, sizeof(e->le[i]), 0 };
		sink_str(&s, ",le=\"");
		if (i == d->n_buckets) {
			sink_str(&s, "+Inf");
		} else {
			if (i && d->buckets[i] <= d->buckets[i - 1])
				return -EINVAL;
			n = om ? fmt_canonical(num, d->buckets[i], f->digits) :
				 fmt_fixed(num, d->buckets[i], f->digits, 0);
			sink_put(&s, num, n);
		}
		sink_str(&s, "\"} ");
		if (s.overflow)
			return -ENAMETOOLONG;
		e->le_len[i] = (uint8_t)s.len;
	}
	return 0;
}

int metrics_family_init_expo(struct metrics_family *f)
{
	int err = build_expo(f, 0);

	return err ? err : build_expo(f, 1);
}

/* ---- rendering ---- */

static inline char *put(char *p, const void *t, size_t n)
{
	memcpy(p, t, n);
	return p + n;
}

/* name{labels} or name, then a space. */
static inline char *put_name(char *p, const char *name, size_t nlen,
			     const struct metric_series *s)
{
	p = put(p, name, nlen);
	if (s->labels_len) {
		*p++ = '{';
		p = put(p, s->labels, s->labels_len);
		*p++ = '}';
	}
	*p++ = ' ';
	return p;
}

/* Upper bound of the text of one series. */
static size_t series_bound(const struct metrics_family *f, int om, size_t labels_len)
{
	const struct metrics_expo *e = &f->expo[om];
	const struct metric_def *d = f->def;

	if (d->type != METRIC_HISTOGRAM)
		return e->sample_len + labels_len + 4 + 24;
	return (d->n_buckets + 1) * (e->sample_len + labels_len + 2 + sizeof(e->le[0]) + 21) +
	       2 * (e->count_len + labels_len + 4 + 24);
}

static int render_family(struct metrics_store *store, struct metrics_family *f, int om,
			 struct buf *out)
{
	const struct metric_def *d = f->def;
	const struct metrics_expo *e = &f->expo[om];
	uint64_t vals[METRICS_MAX_BUCKETS + 2], cum;
	const struct metric_series *s;
	size_t need;
	unsigned i;
	char *p;
	int err;

	err = buf_append(out, e->head, e->head_len);
	if (err)
		return err;
	for (s = __atomic_load_n(&f->head, __ATOMIC_ACQUIRE); s;
	     s = __atomic_load_n(&s->next, __ATOMIC_ACQUIRE)) {
		need = series_bound(f, om, s->labels_len);
		if (out->cap - out->len < need) {
			err = buf_grow(out, need);
			if (err)
				return err;
		}
		metrics_series_read(store, s, vals);
		p = out->data + out->len;
		if (d->type != METRIC_HISTOGRAM) {
			p = put_name(p, e->sample, e->sample_len, s);
			p += fmt_fixed(p, vals[0], f->digits, d->type == METRIC_GAUGE);
			*p++ = '\n';
			out->len = (size_t)(p - out->data);
			continue;
		}
		cum = 0;
		for (i = 0; i <= d->n_buckets; i++) {
			cum += vals[i];
			p = put(p, e->sample, e->sample_len);
			*p++ = '{';
			if (s->labels_len) {
				p = put(p, s->labels, s->labels_len);
				p = put(p, e->le[i], e->le_len[i]);
			} else {
				p = put(p, e->le[i] + 1, e->le_len[i] - 1u);
			}
			p += fmt_u64(p, cum);
			*p++ = '\n';
		}
		p = put_name(p, e->sum, e->sum_len, s);
		p += fmt_fixed(p, vals[d->n_buckets + 1], f->digits, 0);
		*p++ = '\n';
		p = put_name(p, e->count, e->count_len, s);
		p += fmt_u64(p, cum);
		*p++ = '\n';
		out->len = (size_t)(p - out->data);
	}
	return 0;
}

static int family_shown(struct metrics_store *store, const struct metric_def *d,
			enum metric_endpoint endpoint)
{
	if (d->endpoint != endpoint)
		return 0;
	return !(d->flags & METRIC_F_HTTP) || __atomic_load_n(&store->http_enabled, __ATOMIC_RELAXED);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int metrics_render(struct metrics_store *store, enum metric_endpoint endpoint,
		   enum metrics_format format, struct buf *out)
{
	int om = format == METRICS_FORMAT_OPENMETRICS;
	size_t start = out->len, total = 64;
	uint64_t t0;
	unsigned i;
	int err = 0;

	if ((endpoint != METRICS_ENDPOINT_APP && endpoint != METRICS_ENDPOINT_SYSTEM) ||
	    (format != METRICS_FORMAT_TEXT && format != METRICS_FORMAT_OPENMETRICS))
		return -EINVAL;
	pthread_mutex_lock(&store->render_lock);
	t0 = now_ns();
	for (i = 0; i < store->n_collectors; i++)
		if (store->collectors[i].endpoint == endpoint)
			store->collectors[i].fn(store, store->collectors[i].ctx);

	/* One allocation up front, from the series counts and an average
	 * label length. */
	for (i = 0; i < M__COUNT; i++) {
		struct metrics_family *f = &store->fam[i];
		const struct metric_series *h = __atomic_load_n(&f->head, __ATOMIC_ACQUIRE);

		if (!family_shown(store, f->def, endpoint))
			continue;
		total += f->expo[om].head_len;
		if (h)
			total += metrics_family_series_count(store, i) *
				 series_bound(f, om, h->labels_len + 16);
	}
	err = buf_grow(out, total);
	if (err)
		goto out_unlock;

	for (i = 0; i < M__COUNT && !err; i++)
		if (family_shown(store, &metric_defs[i], endpoint))
			err = render_family(store, &store->fam[i], om, out);
	if (!err && om)
		err = buf_append_str(out, "# EOF\n");
	if (err)
		out->len = start;
	metrics_gauge_set(store->scrape_duration[endpoint], (int64_t)(now_ns() - t0));
out_unlock:
	pthread_mutex_unlock(&store->render_lock);
	return err;
}

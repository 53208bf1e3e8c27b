/* Prometheus metrics (cx/metrics.h).
 *
 * Finding a series without locks. Each metric keeps its series in an open-addressing hash table
 * of atomic pointers that only ever gains entries, kept at most half full. Readers load the
 * current table (acquire), probe from the hash of the label values and compare the values;
 * a NULL slot ends the probe. A new series is created under the metric's mutex: the writer
 * probes again, creates the series, fills it, then publishes it with a release store, so a
 * reader that sees the pointer sees a complete series. To grow, the writer builds a table
 * twice the size, fills it and publishes it; the old table stays allocated (on a retired list
 * freed with the metric) because readers may still be probing it. A reader that probes an old
 * table and misses goes to the slow path, which looks again under the mutex in the current
 * table, so a series is never created twice. The retired tables together are smaller than the
 * current one.
 *
 * Values are atomics: a counter is one fetch-add; a histogram is a fetch-add on its bucket
 * plus a compare-and-swap loop adding to the sum (a double kept as its bits). Buckets are
 * stored non-cumulative and summed when rendering, which also gives _count, so a scrape never
 * shows _count different from the +Inf bucket.
 *
 * Overflow. Once a metric holds max_series series (n_series only grows, so an atomic read
 * suffices), a new label set goes straight to the overflow series (values "_overflow"),
 * without locking, and counts one in metrics_series_dropped_total{metric}. The overflow series
 * is allocated at registration so the hot path never fails for lack of memory: a series that
 * cannot be allocated is also counted in the overflow series.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/metrics.h"

enum { KIND_COUNTER, KIND_HISTOGRAM, KIND_GAUGE };

#define TABLE_MIN_SLOTS 16
#define DROPPED_NAME "metrics_series_dropped_total"

typedef struct series_s {
    uint64_t hash;
    const char **values;        /* n_labels strings then NULL, stored after the struct */
    _Atomic uint64_t value;     /* counter; gauge: the bits of a double */
    _Atomic uint64_t sum_bits;  /* histogram: the sum, as the bits of a double */
    _Atomic uint64_t buckets[]; /* histogram: n_buckets + 1 (+Inf last), not cumulative */
} series_t;

typedef struct table_s {
    size_t mask;
    struct table_s *retired; /* the table this one replaced */
    _Atomic(series_t *) slots[];
} table_t;

typedef struct metric_s {
    cx_metrics_t *reg;
    int kind;
    char *name;
    char *help;
    size_t n_labels;
    char *labels[CX_METRICS_MAX_LABELS];
    size_t n_buckets;
    double buckets[CX_METRICS_MAX_BUCKETS];
    _Atomic(table_t *) table;
    atomic_size_t n_series; /* written under mu; read anywhere */
    pthread_mutex_t mu;
    int mu_ready;
    series_t **all; /* every series in the table, under mu */
    size_t cap_all;
    series_t *overflow; /* NULL for a metric without labels */
    atomic_int overflow_used;
} metric_t;

/* The handle types are the metric itself; distinct names keep counters and histograms apart
 * at compile time. */
struct cx_counter_s {
    metric_t m;
};
struct cx_histogram_s {
    metric_t m;
};
struct cx_gauge_s {
    metric_t m;
};

struct cx_metrics_s {
    cx_allocator_t alloc;
    size_t max_series;
    pthread_mutex_t mu;
    metric_t **metrics; /* sorted by name, under mu */
    size_t n_metrics, cap_metrics;
    metric_t *dropped;
};

static const double DEFAULT_BUCKETS[] = CX_METRICS_MS_BUCKETS;

/* ---- Memory ------------------------------------------------------------------------------- */

static void *xalloc(const cx_metrics_t *reg, size_t n)
{
    return reg->alloc.alloc(reg->alloc.ud, n);
}

static void xfree(const cx_metrics_t *reg, void *p)
{
    if (p != NULL)
        reg->alloc.free(reg->alloc.ud, p);
}

static char *xstrdup(const cx_metrics_t *reg, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xalloc(reg, n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ---- Series ------------------------------------------------------------------------------- */

static const char *value_at(const char *const *values, size_t i)
{
    return values != NULL && values[i] != NULL ? values[i] : "";
}

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)value_at(values, i); *p; p++)
            h = (h ^ *p) * UINT64_C(1099511628211);
        /* 0xff never occurs in UTF-8: ("a","bc") and ("ab","c") hash apart. */
        h = (h ^ 0xff) * UINT64_C(1099511628211);
    }
    /* FNV's low bits are weak for short keys; the table indexes with them. */
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

static int values_eq(const series_t *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->values[i], value_at(values, i)) != 0)
            return 0;
    }
    return 1;
}

static series_t *series_new(const metric_t *m, const char *const *values, uint64_t hash)
{
    size_t nb = m->kind == KIND_HISTOGRAM ? m->n_buckets + 1 : 0;
    size_t head = sizeof(series_t) + nb * sizeof(_Atomic uint64_t);
    size_t ptrs = (m->n_labels + 1) * sizeof(const char *);
    size_t text = 0;
    for (size_t i = 0; i < m->n_labels; i++)
        text += strlen(value_at(values, i)) + 1;
    series_t *s = xalloc(m->reg, head + ptrs + text);
    if (s == NULL)
        return NULL;
    s->hash = hash;
    s->values = (const char **)((char *)s + head);
    char *p = (char *)s + head + ptrs;
    for (size_t i = 0; i < m->n_labels; i++) {
        size_t len = strlen(value_at(values, i)) + 1;
        memcpy(p, value_at(values, i), len);
        s->values[i] = p;
        p += len;
    }
    s->values[m->n_labels] = NULL;
    atomic_init(&s->value, 0);
    atomic_init(&s->sum_bits, 0); /* the bits of +0.0 */
    for (size_t i = 0; i < nb; i++)
        atomic_init(&s->buckets[i], 0);
    return s;
}

static table_t *table_new(const cx_metrics_t *reg, size_t slots)
{
    table_t *t = xalloc(reg, sizeof(table_t) + slots * sizeof(_Atomic(series_t *)));
    if (t == NULL)
        return NULL;
    t->mask = slots - 1;
    t->retired = NULL;
    for (size_t i = 0; i < slots; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

static series_t *table_find(table_t *t, uint64_t hash, const char *const *values, size_t n)
{
    for (size_t i = (size_t)hash & t->mask;; i = (i + 1) & t->mask) {
        series_t *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (s == NULL)
            return NULL;
        if (s->hash == hash && values_eq(s, values, n))
            return s;
    }
}

/* Under mu; the table has a free slot (it is kept at most half full). */
static void table_insert(table_t *t, series_t *s)
{
    size_t i = (size_t)s->hash & t->mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
        i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slots[i], s, memory_order_release);
}

static int is_overflow_values(const metric_t *m, const char *const *values)
{
    for (size_t i = 0; i < m->n_labels; i++) {
        if (strcmp(value_at(values, i), CX_METRICS_OVERFLOW) != 0)
            return 0;
    }
    return m->n_labels > 0;
}

static void counter_add(metric_t *m, const char *const *values, uint64_t delta);

/* The overflow series, counting one dropped series for m. */
static series_t *overflow_of(metric_t *m)
{
    atomic_store_explicit(&m->overflow_used, 1, memory_order_relaxed);
    metric_t *dropped = m->reg->dropped;
    if (dropped != NULL && m != dropped)
        counter_add(dropped, (const char *const *)&m->name, 1);
    return m->overflow;
}

/* Under mu: room for one more series in the table and the list. */
static int make_room(metric_t *m)
{
    cx_metrics_t *reg = m->reg;
    size_t n = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    if (n == m->cap_all) {
        size_t cap = m->cap_all ? m->cap_all * 2 : 16;
        series_t **all = xalloc(reg, cap * sizeof *all);
        if (all == NULL)
            return CX_ENOMEM;
        if (n)
            memcpy(all, m->all, n * sizeof *all);
        xfree(reg, m->all);
        m->all = all;
        m->cap_all = cap;
    }
    table_t *t = atomic_load_explicit(&m->table, memory_order_relaxed);
    if ((n + 1) * 2 > t->mask + 1) {
        table_t *bigger = table_new(reg, (t->mask + 1) * 2);
        if (bigger == NULL)
            return CX_ENOMEM;
        for (size_t i = 0; i < n; i++)
            table_insert(bigger, m->all[i]);
        bigger->retired = t;
        atomic_store_explicit(&m->table, bigger, memory_order_release);
    }
    return 0;
}

/* The series of these values: found without locks, or created under mu. NULL only when create
 * is 0 and the series does not exist. */
static series_t *series_of(metric_t *m, const char *const *values, int create)
{
    size_t n = m->n_labels;
    uint64_t hash = hash_values(values, n);
    series_t *s =
        table_find(atomic_load_explicit(&m->table, memory_order_acquire), hash, values, n);
    if (s != NULL)
        return s;

    if (is_overflow_values(m, values)) {
        if (create)
            atomic_store_explicit(&m->overflow_used, 1, memory_order_relaxed);
        else if (!atomic_load_explicit(&m->overflow_used, memory_order_relaxed))
            return NULL;
        return m->overflow;
    }
    if (create && atomic_load_explicit(&m->n_series, memory_order_relaxed) >= m->reg->max_series)
        return overflow_of(m);

    pthread_mutex_lock(&m->mu);
    table_t *t = atomic_load_explicit(&m->table, memory_order_relaxed);
    s = table_find(t, hash, values, n);
    if (s != NULL || !create) {
        pthread_mutex_unlock(&m->mu);
        return s;
    }
    size_t count = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    if (count >= m->reg->max_series || make_room(m) != 0 ||
        (s = series_new(m, values, hash)) == NULL) {
        pthread_mutex_unlock(&m->mu);
        return overflow_of(m);
    }
    table_insert(atomic_load_explicit(&m->table, memory_order_relaxed), s);
    m->all[count] = s;
    atomic_store_explicit(&m->n_series, count + 1, memory_order_relaxed);
    pthread_mutex_unlock(&m->mu);
    return s;
}

static void counter_add(metric_t *m, const char *const *values, uint64_t delta)
{
    series_t *s = series_of(m, values, 1);
    if (s != NULL)
        atomic_fetch_add_explicit(&s->value, delta, memory_order_relaxed);
}

void cx_counter_inc(cx_counter_t *c, const char *const *values, uint64_t delta)
{
    if (c == NULL || (values == NULL && c->m.n_labels > 0))
        return;
    counter_add(&c->m, values, delta);
}

/* Adds value to a histogram series' sum (a double kept as bits: a CAS loop). */
static void add_to_sum(series_t *s, double value)
{
    uint64_t old = atomic_load_explicit(&s->sum_bits, memory_order_relaxed), upd;
    do {
        double sum;
        memcpy(&sum, &old, sizeof sum);
        sum += value;
        memcpy(&upd, &sum, sizeof upd);
    } while (!atomic_compare_exchange_weak_explicit(&s->sum_bits, &old, upd, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void cx_histogram_observe(cx_histogram_t *h, const char *const *values, double value)
{
    if (h == NULL || isnan(value) || (values == NULL && h->m.n_labels > 0))
        return;
    metric_t *m = &h->m;
    series_t *s = series_of(m, values, 1);
    if (s == NULL)
        return;
    size_t b = 0;
    while (b < m->n_buckets && value > m->buckets[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    add_to_sum(s, value);
}

void cx_histogram_observe_many(cx_histogram_t *h, const char *const *values, const double *v,
                               size_t n)
{
    if (h == NULL || v == NULL || n == 0 || (values == NULL && h->m.n_labels > 0))
        return;
    metric_t *m = &h->m;
    series_t *s = series_of(m, values, 1);
    if (s == NULL)
        return;
    uint64_t counts[CX_METRICS_MAX_BUCKETS + 1] = {0};
    double total = 0;
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]))
            continue;
        size_t b = 0;
        while (b < m->n_buckets && v[i] > m->buckets[b])
            b++;
        counts[b]++;
        total += v[i];
        seen++;
    }
    if (seen == 0)
        return;
    for (size_t b = 0; b <= m->n_buckets; b++)
        if (counts[b])
            atomic_fetch_add_explicit(&s->buckets[b], counts[b], memory_order_relaxed);
    add_to_sum(s, total);
}

uint64_t cx_counter_value(cx_counter_t *c, const char *const *values)
{
    if (c == NULL || (values == NULL && c->m.n_labels > 0))
        return 0;
    series_t *s = series_of(&c->m, values, 0);
    return s ? atomic_load_explicit(&s->value, memory_order_relaxed) : 0;
}

static double sum_of(series_t *s)
{
    uint64_t bits = atomic_load_explicit(&s->sum_bits, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

uint64_t cx_histogram_count(cx_histogram_t *h, const char *const *values, double *sum)
{
    if (sum != NULL)
        *sum = 0;
    if (h == NULL || (values == NULL && h->m.n_labels > 0))
        return 0;
    series_t *s = series_of(&h->m, values, 0);
    if (s == NULL)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i <= h->m.n_buckets; i++)
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    if (sum != NULL)
        *sum = sum_of(s);
    return n;
}

/* ---- Registration ------------------------------------------------------------------------- */

static int valid_name(const char *s, int metric)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (metric && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return metric || strncmp(s, "__", 2) != 0;
}

static void metric_free(cx_metrics_t *reg, metric_t *m)
{
    if (m == NULL)
        return;
    size_t n = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        xfree(reg, m->all[i]);
    xfree(reg, m->all);
    xfree(reg, m->overflow);
    table_t *t = atomic_load_explicit(&m->table, memory_order_relaxed);
    while (t != NULL) {
        table_t *older = t->retired;
        xfree(reg, t);
        t = older;
    }
    for (size_t i = 0; i < m->n_labels; i++)
        xfree(reg, m->labels[i]);
    xfree(reg, m->name);
    xfree(reg, m->help);
    if (m->mu_ready)
        pthread_mutex_destroy(&m->mu);
    xfree(reg, m);
}

static int same_shape(const metric_t *m, int kind, const char *const *labels, size_t n_labels,
                      const double *buckets, size_t n_buckets)
{
    if (m->kind != kind || m->n_labels != n_labels)
        return 0;
    for (size_t i = 0; i < n_labels; i++) {
        if (strcmp(m->labels[i], labels[i]) != 0)
            return 0;
    }
    if (kind == KIND_HISTOGRAM) {
        if (m->n_buckets != n_buckets)
            return 0;
        for (size_t i = 0; i < n_buckets; i++) {
            if (m->buckets[i] != buckets[i])
                return 0;
        }
    }
    return 1;
}

static metric_t *metric_new(cx_metrics_t *reg, int kind, const char *name, const char *help,
                            const char *const *labels, size_t n_labels, const double *buckets,
                            size_t n_buckets)
{
    metric_t *m = xalloc(reg, sizeof *m);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->reg = reg;
    m->kind = kind;
    m->n_buckets = n_buckets;
    if (n_buckets)
        memcpy(m->buckets, buckets, n_buckets * sizeof *buckets);
    atomic_init(&m->table, NULL);
    atomic_init(&m->n_series, 0);
    atomic_init(&m->overflow_used, 0);
    m->name = xstrdup(reg, name);
    m->help = xstrdup(reg, help ? help : "");
    if (m->name == NULL || m->help == NULL)
        goto fail;
    for (; m->n_labels < n_labels; m->n_labels++) {
        m->labels[m->n_labels] = xstrdup(reg, labels[m->n_labels]);
        if (m->labels[m->n_labels] == NULL)
            goto fail;
    }
    table_t *t = table_new(reg, TABLE_MIN_SLOTS);
    if (t == NULL)
        goto fail;
    atomic_init(&m->table, t);
    if (pthread_mutex_init(&m->mu, NULL) != 0)
        goto fail;
    m->mu_ready = 1;
    if (n_labels > 0) {
        const char *ov[CX_METRICS_MAX_LABELS];
        for (size_t i = 0; i < n_labels; i++)
            ov[i] = CX_METRICS_OVERFLOW;
        m->overflow = series_new(m, ov, hash_values(ov, n_labels));
        if (m->overflow == NULL)
            goto fail;
    } else {
        /* The one series of a metric without labels exists (at 0) from the start. */
        if (make_room(m) != 0)
            goto fail;
        series_t *s = series_new(m, NULL, hash_values(NULL, 0));
        if (s == NULL)
            goto fail;
        table_insert(t, s);
        m->all[0] = s;
        atomic_store_explicit(&m->n_series, 1, memory_order_relaxed);
    }
    return m;
fail:
    metric_free(reg, m);
    return NULL;
}

/* Registers (or finds) a metric; *out on success. Returns 0, CX_EINVAL, CX_ENOMEM. */
static int metric_register(cx_metrics_t *reg, int kind, const char *name, const char *help,
                           const char *const *labels, const double *buckets, size_t n_buckets,
                           metric_t **out)
{
    *out = NULL;
    if (reg == NULL || !valid_name(name, 1))
        return CX_EINVAL;
    size_t n_labels = 0;
    for (; labels != NULL && labels[n_labels] != NULL; n_labels++) {
        if (n_labels >= CX_METRICS_MAX_LABELS || !valid_name(labels[n_labels], 0))
            return CX_EINVAL;
        if (kind == KIND_HISTOGRAM && strcmp(labels[n_labels], "le") == 0)
            return CX_EINVAL;
        for (size_t j = 0; j < n_labels; j++) {
            if (strcmp(labels[j], labels[n_labels]) == 0)
                return CX_EINVAL;
        }
    }
    if (kind == KIND_HISTOGRAM) {
        if (buckets == NULL || n_buckets == 0) {
            buckets = DEFAULT_BUCKETS;
            n_buckets = sizeof DEFAULT_BUCKETS / sizeof DEFAULT_BUCKETS[0];
        }
        if (n_buckets > CX_METRICS_MAX_BUCKETS)
            return CX_EINVAL;
        for (size_t i = 0; i < n_buckets; i++) {
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return CX_EINVAL;
        }
    } else {
        n_buckets = 0;
    }

    int rc = 0;
    pthread_mutex_lock(&reg->mu);
    size_t pos = 0;
    while (pos < reg->n_metrics && strcmp(reg->metrics[pos]->name, name) < 0)
        pos++;
    if (pos < reg->n_metrics && strcmp(reg->metrics[pos]->name, name) == 0) {
        if (same_shape(reg->metrics[pos], kind, labels, n_labels, buckets, n_buckets))
            *out = reg->metrics[pos];
        else
            rc = CX_EINVAL;
        goto done;
    }
    if (reg->n_metrics == reg->cap_metrics) {
        size_t cap = reg->cap_metrics ? reg->cap_metrics * 2 : 16;
        metric_t **grown = xalloc(reg, cap * sizeof *grown);
        if (grown == NULL) {
            rc = CX_ENOMEM;
            goto done;
        }
        if (reg->n_metrics)
            memcpy(grown, reg->metrics, reg->n_metrics * sizeof *grown);
        xfree(reg, reg->metrics);
        reg->metrics = grown;
        reg->cap_metrics = cap;
    }
    metric_t *m = metric_new(reg, kind, name, help, labels, n_labels, buckets, n_buckets);
    if (m == NULL) {
        rc = CX_ENOMEM;
        goto done;
    }
    memmove(reg->metrics + pos + 1, reg->metrics + pos,
            (reg->n_metrics - pos) * sizeof *reg->metrics);
    reg->metrics[pos] = m;
    reg->n_metrics++;
    *out = m;
done:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

cx_counter_t *cx_metrics_counter(cx_metrics_t *reg, const char *name, const char *help,
                                 const char *const *labels)
{
    metric_t *m;
    metric_register(reg, KIND_COUNTER, name, help, labels, NULL, 0, &m);
    return (cx_counter_t *)m;
}

cx_histogram_t *cx_metrics_histogram(cx_metrics_t *reg, const char *name, const char *help,
                                     const char *const *labels, const double *buckets,
                                     size_t n_buckets)
{
    metric_t *m;
    metric_register(reg, KIND_HISTOGRAM, name, help, labels, buckets, n_buckets, &m);
    return (cx_histogram_t *)m;
}

cx_gauge_t *cx_metrics_gauge(cx_metrics_t *reg, const char *name, const char *help,
                             const char *const *labels)
{
    metric_t *m;
    metric_register(reg, KIND_GAUGE, name, help, labels, NULL, 0, &m);
    return (cx_gauge_t *)m;
}

void cx_gauge_set(cx_gauge_t *g, const char *const *values, double value)
{
    if (g == NULL || isnan(value) || (values == NULL && g->m.n_labels > 0))
        return;
    series_t *s = series_of(&g->m, values, 1);
    if (s == NULL)
        return;
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    atomic_store_explicit(&s->value, bits, memory_order_relaxed);
}

double cx_gauge_value(cx_gauge_t *g, const char *const *values)
{
    if (g == NULL || (values == NULL && g->m.n_labels > 0))
        return 0;
    series_t *s = series_of(&g->m, values, 0);
    if (s == NULL)
        return 0;
    uint64_t bits = atomic_load_explicit(&s->value, memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

int cx_metrics_new(const cx_metrics_config_t *cfg, cx_metrics_t **out)
{
    if (out == NULL)
        return CX_EINVAL;
    *out = NULL;
    cx_allocator_t alloc = *cx_allocator_default();
    if (cfg != NULL && cfg->allocator != NULL) {
        if (cfg->allocator->alloc == NULL || cfg->allocator->free == NULL)
            return CX_EINVAL;
        alloc = *cfg->allocator;
    }
    cx_metrics_t *reg = alloc.alloc(alloc.ud, sizeof *reg);
    if (reg == NULL)
        return CX_ENOMEM;
    memset(reg, 0, sizeof *reg);
    reg->alloc = alloc;
    reg->max_series = cfg && cfg->max_series ? cfg->max_series : CX_METRICS_MAX_SERIES;
    if (pthread_mutex_init(&reg->mu, NULL) != 0) {
        alloc.free(alloc.ud, reg);
        return CX_ENOMEM;
    }
    metric_t *dropped;
    int rc = metric_register(reg, KIND_COUNTER, DROPPED_NAME,
                             "Increments that went to a metric's _overflow series because it "
                             "had reached its series limit.",
                             (const char *const[]){"metric", NULL}, NULL, 0, &dropped);
    if (rc != 0) {
        cx_metrics_free(reg);
        return rc;
    }
    reg->dropped = dropped;
    *out = reg;
    return 0;
}

void cx_metrics_free(cx_metrics_t *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->n_metrics; i++)
        metric_free(reg, reg->metrics[i]);
    xfree(reg, reg->metrics);
    pthread_mutex_destroy(&reg->mu);
    cx_allocator_t alloc = reg->alloc;
    alloc.free(alloc.ud, reg);
}

int cx_metrics_register_standard(cx_metrics_t *reg, cx_metrics_std_t *std)
{
    if (reg == NULL || std == NULL)
        return CX_EINVAL;
    static const char *const CONN[] = {"connector", NULL};
    static const char *const CONN_STATUS[] = {"connector", "status", NULL};
    static const char *const CONN_CAP[] = {"connector", "capability", NULL};
    static const char *const CONN_CAP_STATUS[] = {"connector", "capability", "status", NULL};
    static const char *const CONN_CAP_CODE[] = {"connector", "capability", "error_code", NULL};
    static const struct {
        int kind;
        const char *name;
        const char *help;
        const char *const *labels;
        size_t offset;
    } STD[] = {
        {KIND_COUNTER, "webhook_requests_total", "Inbound webhook requests by HTTP status.",
         CONN_STATUS, offsetof(cx_metrics_std_t, webhook_requests_total)},
        {KIND_HISTOGRAM, "webhook_latency_ms", "Inbound webhook request latency in milliseconds.",
         CONN, offsetof(cx_metrics_std_t, webhook_latency_ms)},
        {KIND_COUNTER, "events_processed_total", "Events processed by their handler.", CONN_CAP,
         offsetof(cx_metrics_std_t, events_processed_total)},
        {KIND_COUNTER, "events_deduped_total", "Events skipped as duplicates.", CONN_CAP,
         offsetof(cx_metrics_std_t, events_deduped_total)},
        {KIND_COUNTER, "events_failed_total", "Events that failed, by error code.", CONN_CAP_CODE,
         offsetof(cx_metrics_std_t, events_failed_total)},
        {KIND_HISTOGRAM, "handler_latency_ms", "Handler latency in milliseconds.", CONN_CAP,
         offsetof(cx_metrics_std_t, handler_latency_ms)},
        {KIND_COUNTER, "outbound_requests_total", "Outbound provider requests by HTTP status.",
         CONN_CAP_STATUS, offsetof(cx_metrics_std_t, outbound_requests_total)},
        {KIND_COUNTER, "outbound_failures_total", "Outbound provider requests that failed.",
         CONN_CAP_CODE, offsetof(cx_metrics_std_t, outbound_failures_total)},
        {KIND_HISTOGRAM, "outbound_latency_ms",
         "Outbound provider request latency in "
         "milliseconds.",
         CONN_CAP, offsetof(cx_metrics_std_t, outbound_latency_ms)},
    };
    cx_metrics_std_t out;
    memset(&out, 0, sizeof out);
    for (size_t i = 0; i < sizeof STD / sizeof STD[0]; i++) {
        metric_t *m;
        int rc =
            metric_register(reg, STD[i].kind, STD[i].name, STD[i].help, STD[i].labels, NULL, 0, &m);
        if (rc != 0)
            return rc;
        /* Both handle types are pointers to the metric. */
        if (STD[i].kind == KIND_COUNTER) {
            cx_counter_t *c = (cx_counter_t *)m;
            memcpy((char *)&out + STD[i].offset, &c, sizeof c);
        } else {
            cx_histogram_t *h = (cx_histogram_t *)m;
            memcpy((char *)&out + STD[i].offset, &h, sizeof h);
        }
    }
    *std = out;
    return 0;
}

/* ---- Rendering ---------------------------------------------------------------------------- */

static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c == 0xE0) {
        len = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        len = 3;
    } else if (c == 0xED) {
        len = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        len = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        len = 4;
    } else if (c == 0xF4) {
        len = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    /* The NUL terminator fails the continuation tests, so this never reads past it. */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

/* Escapes \ and newline (HELP), and " too (label values); invalid UTF-8 becomes U+FFFD. */
static void put_escaped(cx_buf_t *out, const char *s, int quote)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        size_t run = 0;
        while (u[run] >= 0x20 && u[run] < 0x80 && u[run] != '\\' && !(quote && u[run] == '"'))
            run++;
        if (run) {
            cx_buf_append(out, u, run);
            u += run;
            continue;
        }
        if (*u == '\\') {
            cx_buf_append(out, "\\\\", 2);
            u++;
        } else if (*u == '\n') {
            cx_buf_append(out, "\\n", 2);
            u++;
        } else if (*u == '"') {
            cx_buf_append(out, "\\\"", 2);
            u++;
        } else {
            size_t len = utf8_seq(u);
            if (len == 0) {
                cx_buf_append(out, "\xEF\xBF\xBD", 3);
                len = 1;
            } else {
                cx_buf_append(out, u, len);
            }
            u += len;
        }
    }
}

/* Shortest text that reads back as v: 0.5, 2.5, 10000, 0.1; NaN, +Inf, -Inf. */
static void format_double(double v, char out[40])
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, 40, "%.0f", v == 0 ? 0.0 : v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void put_labels(cx_buf_t *out, const metric_t *m, const series_t *s, const char *le)
{
    if (m->n_labels == 0 && le == NULL)
        return;
    cx_buf_putc(out, '{');
    for (size_t i = 0; i < m->n_labels; i++) {
        cx_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
        put_escaped(out, s->values[i], 1);
        cx_buf_putc(out, '"');
    }
    if (le != NULL)
        cx_buf_printf(out, "%sle=\"%s\"", m->n_labels ? "," : "", le);
    cx_buf_putc(out, '}');
}

static int series_cmp(const void *a, const void *b)
{
    const series_t *x = *(const series_t *const *)a, *y = *(const series_t *const *)b;
    for (size_t i = 0; x->values[i] != NULL; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static int render_metric(metric_t *m, cx_buf_t *out)
{
    cx_metrics_t *reg = m->reg;
    pthread_mutex_lock(&m->mu);
    size_t n = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    int with_overflow =
        atomic_load_explicit(&m->overflow_used, memory_order_relaxed) && m->overflow != NULL;
    series_t **list = xalloc(reg, (n + 1) * sizeof *list);
    if (list == NULL) {
        pthread_mutex_unlock(&m->mu);
        return CX_ENOMEM;
    }
    if (n)
        memcpy(list, m->all, n * sizeof *list);
    pthread_mutex_unlock(&m->mu);
    if (with_overflow)
        list[n++] = m->overflow;
    qsort(list, n, sizeof *list, series_cmp);

    cx_buf_printf(out, "# HELP %s ", m->name);
    put_escaped(out, m->help, 0);
    cx_buf_printf(out, "\n# TYPE %s %s\n", m->name,
                  m->kind == KIND_COUNTER ? "counter"
                  : m->kind == KIND_GAUGE ? "gauge"
                                          : "histogram");
    for (size_t i = 0; i < n; i++) {
        series_t *s = list[i];
        if (m->kind == KIND_GAUGE) {
            uint64_t bits = atomic_load_explicit(&s->value, memory_order_relaxed);
            double v;
            memcpy(&v, &bits, sizeof v);
            char num[40];
            format_double(v, num);
            cx_buf_puts(out, m->name);
            put_labels(out, m, s, NULL);
            cx_buf_printf(out, " %s\n", num);
            continue;
        }
        if (m->kind == KIND_COUNTER) {
            cx_buf_puts(out, m->name);
            put_labels(out, m, s, NULL);
            cx_buf_printf(out, " %" PRIu64 "\n",
                          atomic_load_explicit(&s->value, memory_order_relaxed));
            continue;
        }
        uint64_t cum = 0;
        char le[40];
        for (size_t b = 0; b <= m->n_buckets; b++) {
            cum += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
            if (b < m->n_buckets)
                format_double(m->buckets[b], le);
            else
                strcpy(le, "+Inf");
            cx_buf_printf(out, "%s_bucket", m->name);
            put_labels(out, m, s, le);
            cx_buf_printf(out, " %" PRIu64 "\n", cum);
        }
        char sum[40];
        format_double(sum_of(s), sum);
        cx_buf_printf(out, "%s_sum", m->name);
        put_labels(out, m, s, NULL);
        cx_buf_printf(out, " %s\n%s_count", sum, m->name);
        put_labels(out, m, s, NULL);
        cx_buf_printf(out, " %" PRIu64 "\n", cum);
    }
    xfree(reg, list);
    return 0;
}

int cx_metrics_render(cx_metrics_t *reg, cx_buf_t *out)
{
    if (reg == NULL || out == NULL)
        return CX_EINVAL;
    int rc = 0;
    /* Registration waits for the scrape; increments do not. */
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->n_metrics && rc == 0; i++)
        rc = render_metric(reg->metrics[i], out);
    pthread_mutex_unlock(&reg->mu);
    return rc ? rc : cx_buf_error(out);
}

/* Prometheus metrics: counters and histograms with labels, rendered in the text exposition
 * format 0.0.4.
 *
 * A registry holds metrics; each metric declares its label names when it is registered and
 * returns a handle; the hot path increments through the handle with the label values:
 *
 *     cx_counter_t *c = cx_metrics_counter(reg, "webhook_requests_total", "Requests.",
 *                                          (const char *[]){"connector", "status", NULL});
 *     cx_counter_inc(c, (const char *[]){"whatsapp", "200"}, 1);
 *
 * Hot path. A series (one set of label values) is found by hashing its values in an
 * insert-only open-addressing table read without locks; its value is an atomic add. Only the
 * first increment of a new series takes the metric's mutex (to create it). Series are never
 * removed, so the handles and series stay valid until cx_metrics_free().
 *
 * Bounded cardinality. A metric keeps at most max_series series (default
 * CX_METRICS_MAX_SERIES). Past it, an increment with new label values goes to the overflow
 * series, whose every label value is "_overflow", and counts 1 in
 * metrics_series_dropped_total{metric="<name>"}; existing series keep counting normally. Label
 * values should come from bounded sets (connector ids, capabilities, cx_err_name() codes, HTTP
 * statuses), never from payloads or tenant ids.
 *
 * Standard metrics the runtime registers (cx_metrics_register_standard):
 *
 *   webhook_requests_total{connector,status}                  counter
 *   webhook_latency_ms{connector}                             histogram
 *   events_processed_total{connector,capability}              counter
 *   events_deduped_total{connector,capability}                counter
 *   events_failed_total{connector,capability,error_code}      counter
 *   handler_latency_ms{connector,capability}                  histogram
 *   outbound_requests_total{connector,capability,status}      counter
 *   outbound_failures_total{connector,capability,error_code}  counter
 *   outbound_latency_ms{connector,capability}                 histogram
 *   metrics_series_dropped_total{metric}                      counter (every registry)
 *
 * Histograms are in milliseconds with the buckets CX_METRICS_MS_BUCKETS unless given others.
 *
 * Thread safety: everything is thread-safe, except cx_metrics_free(), which must not race with
 * any other call on the registry or its handles.
 */
#ifndef CX_METRICS_H
#define CX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cx/arena.h"
#include "cx/buf.h"
#include "cx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Content-Type of cx_metrics_render()'s output. */
#define CX_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Default series per metric. */
#define CX_METRICS_MAX_SERIES 10000
/* Label names per metric. */
#define CX_METRICS_MAX_LABELS 8
/* Buckets per histogram (+Inf not counted). */
#define CX_METRICS_MAX_BUCKETS 32
/* The default histogram buckets, in milliseconds. */
#define CX_METRICS_MS_BUCKETS                                                                      \
    {                                                                                              \
        0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000                         \
    }
/* The label value of the overflow series. */
#define CX_METRICS_OVERFLOW "_overflow"

typedef struct cx_metrics_s cx_metrics_t;
typedef struct cx_counter_s cx_counter_t;
typedef struct cx_histogram_s cx_histogram_t;

typedef struct cx_metrics_config_s {
    size_t max_series;               /* series per metric; 0 = CX_METRICS_MAX_SERIES */
    const cx_allocator_t *allocator; /* NULL = malloc/free; copied, its ud borrowed */
} cx_metrics_config_t;

/* Creates a registry (with metrics_series_dropped_total registered). cfg may be NULL. *out is
 * owned by the caller; release it with cx_metrics_free(). Returns 0, CX_EINVAL, CX_ENOMEM.
 *
 *     cx_metrics_t *reg; if (cx_metrics_new(NULL, &reg) != 0) ...;
 *     ... cx_metrics_free(reg);
 */
CX_API int cx_metrics_new(const cx_metrics_config_t *cfg, cx_metrics_t **out);
/* Frees the registry, its metrics and their series; every handle becomes invalid. reg may be
 * NULL. Not thread-safe: no other call may be in flight. */
CX_API void cx_metrics_free(cx_metrics_t *reg);

/* Registers a counter. name matches [a-zA-Z_:][a-zA-Z0-9_:]* (conventionally ending in
 * _total); help is any text; labels is a NULL-terminated array of at most
 * CX_METRICS_MAX_LABELS names matching [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__"), or NULL
 * for none. Everything is copied. Registering the same name again with the same type and labels
 * returns the same handle. Returns the handle (owned by the registry), or NULL for an invalid
 * name or label, a name already registered differently, or no memory. Thread-safe.
 *
 *     cx_counter_t *c = cx_metrics_counter(reg, "jobs_total", "Jobs run.",
 *                                          (const char *[]){"queue", NULL});
 */
CX_API cx_counter_t *cx_metrics_counter(cx_metrics_t *reg, const char *name, const char *help,
                                        const char *const *labels);

/* Registers a histogram: like cx_metrics_counter, with buckets, the strictly increasing finite
 * upper bounds (at most CX_METRICS_MAX_BUCKETS; +Inf is implicit), or NULL / n_buckets 0 for
 * CX_METRICS_MS_BUCKETS. "le" is not allowed as a label name. Thread-safe.
 *
 *     cx_histogram_t *h = cx_metrics_histogram(reg, "job_latency_ms", "Job latency.",
 *                                              (const char *[]){"queue", NULL}, NULL, 0);
 */
CX_API cx_histogram_t *cx_metrics_histogram(cx_metrics_t *reg, const char *name, const char *help,
                                            const char *const *labels, const double *buckets,
                                            size_t n_buckets);

/* A gauge: a value that goes up and down (queue depth, age of the oldest item). */
typedef struct cx_gauge_s cx_gauge_t;

/* Registers a gauge, like cx_metrics_counter (same name and label rules). Returns the handle
 * (owned by the registry) or NULL. Thread-safe.
 *
 *     cx_gauge_t *g = cx_metrics_gauge(reg, "queue_depth", "Items in the queue.", NULL);
 */
CX_API cx_gauge_t *cx_metrics_gauge(cx_metrics_t *reg, const char *name, const char *help,
                                    const char *const *labels);
/* Sets the series with these label values (as cx_counter_inc) to value; NaN is ignored; a
 * NULL gauge is a no-op. Thread-safe, lock-free for existing series.
 *
 *     cx_gauge_set(g, NULL, 42);
 */
CX_API void cx_gauge_set(cx_gauge_t *g, const char *const *values, double value);
/* The current value of a gauge series (0 when it does not exist; never creates it). */
CX_API double cx_gauge_value(cx_gauge_t *g, const char *const *values);

/* Adds delta to the series with these label values: values holds exactly as many strings as
 * the counter has labels (a NULL string counts as ""), and may be NULL for a counter without
 * labels. The values are copied when a series is created. A NULL counter is a no-op, so an
 * unregistered metric never crashes the pipeline. Thread-safe, lock-free for existing series.
 *
 *     cx_counter_inc(std.events_processed_total, (const char *[]){"whatsapp", "messaging"}, 1);
 */
CX_API void cx_counter_inc(cx_counter_t *c, const char *const *values, uint64_t delta);

/* Records one observation (in the histogram's unit, milliseconds for the standard ones) in the
 * series with these label values (as cx_counter_inc). NaN is ignored. Thread-safe, lock-free for
 * existing series.
 *
 *     cx_histogram_observe(std.handler_latency_ms, (const char *[]){"whatsapp", "messaging"},
 *                          elapsed_ms);
 */
CX_API void cx_histogram_observe(cx_histogram_t *h, const char *const *values, double value);
/* n observations of one series at once: the same result as n cx_histogram_observe calls, with
 * one series lookup and one atomic add per bucket touched (for hot paths that observe many
 * values together, such as the handler latencies of a batch). NaN values are skipped. */
CX_API void cx_histogram_observe_many(cx_histogram_t *h, const char *const *values,
                                      const double *v, size_t n);

/* The current value of a counter series (0 when the series does not exist; never creates it).
 * For tests and diagnostics. Thread-safe.
 *
 *     uint64_t n = cx_counter_value(c, (const char *[]){"whatsapp", "200"});
 */
CX_API uint64_t cx_counter_value(cx_counter_t *c, const char *const *values);
/* The observation count and sum of a histogram series (0 and 0 when it does not exist). sum may
 * be NULL. Thread-safe. */
CX_API uint64_t cx_histogram_count(cx_histogram_t *h, const char *const *values, double *sum);

/* Appends every metric to out in the Prometheus text format 0.0.4 (CX_METRICS_CONTENT_TYPE):
 * metrics sorted by name, each with # HELP and # TYPE, its series sorted by label values
 * (byte order, label by label); histograms as cumulative _bucket{le="..."} lines ending with
 * le="+Inf", then _sum and _count. Label values are escaped (\\, \", \n) and invalid UTF-8
 * becomes U+FFFD. Values are read without stopping writers, so a scrape during increments sees
 * each series at some recent value (a histogram's _count always equals its +Inf bucket).
 * out is caller-owned. Returns 0, CX_EINVAL, CX_ENOMEM, or the buffer's error (CX_ENOSPC).
 * Thread-safe.
 *
 *     cx_buf_t b; cx_buf_init(&b, 16 << 20);
 *     if (cx_metrics_render(reg, &b) == 0) serve(b.data, b.len); cx_buf_free(&b);
 */
CX_API int cx_metrics_render(cx_metrics_t *reg, cx_buf_t *out);

/* Handles of the standard metrics (see the header comment). Owned by the registry. */
typedef struct cx_metrics_std_s {
    cx_counter_t *webhook_requests_total;  /* {connector,status} */
    cx_histogram_t *webhook_latency_ms;    /* {connector} */
    cx_counter_t *events_processed_total;  /* {connector,capability} */
    cx_counter_t *events_deduped_total;    /* {connector,capability} */
    cx_counter_t *events_failed_total;     /* {connector,capability,error_code} */
    cx_histogram_t *handler_latency_ms;    /* {connector,capability} */
    cx_counter_t *outbound_requests_total; /* {connector,capability,status} */
    cx_counter_t *outbound_failures_total; /* {connector,capability,error_code} */
    cx_histogram_t *outbound_latency_ms;   /* {connector,capability} */
} cx_metrics_std_t;

/* Registers the standard metrics and fills *std with their handles. Idempotent: a second call
 * returns the same handles. Returns 0, CX_EINVAL (NULL argument, or a name already registered
 * with another shape), CX_ENOMEM. Thread-safe.
 *
 *     cx_metrics_std_t std; if (cx_metrics_register_standard(reg, &std) != 0) ...;
 *     cx_counter_inc(std.webhook_requests_total, (const char *[]){"whatsapp", "200"}, 1);
 */
CX_API int cx_metrics_register_standard(cx_metrics_t *reg, cx_metrics_std_t *std);

#ifdef __cplusplus
}
#endif

#endif /* CX_METRICS_H */

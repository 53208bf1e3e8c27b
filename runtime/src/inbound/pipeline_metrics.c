/* The pipeline's metrics, by handle (registered once in cx_runtime_create). */
#include <string.h>

#include "inbound/runtime_internal.h"

void cx__count_request(cx_runtime_t *rt, const char *connector, int status, double ms)
{
    /* The status label, as "%d" would write it, without printf (every request). */
    char code[12], *p = code + sizeof code;
    unsigned v = status < 0 ? 0u - (unsigned)status : (unsigned)status;
    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (status < 0)
        *--p = '-';
    cx_counter_inc(rt->std.webhook_requests_total, (const char *[]){connector, p}, 1);
    cx_histogram_observe(rt->std.webhook_latency_ms, (const char *[]){connector}, ms);
}

void cx__count_items(cx_runtime_t *rt, const char *connector, const char *capability,
                     const char *outcome, const char *error_code, uint64_t n)
{
    const char *cap = capability ? capability : "unknown";
    if (strcmp(outcome, "processed") == 0)
        cx_counter_inc(rt->std.events_processed_total, (const char *[]){connector, cap}, n);
    else if (strcmp(outcome, "deduped") == 0)
        cx_counter_inc(rt->std.events_deduped_total, (const char *[]){connector, cap}, n);
    else
        cx_counter_inc(rt->std.events_failed_total,
                       (const char *[]){connector, cap, error_code ? error_code : "UNKNOWN"}, n);
}

void cx__count_item(cx_runtime_t *rt, const char *connector, const char *capability,
                    const char *outcome, const char *error_code)
{
    cx__count_items(rt, connector, capability, outcome, error_code, 1);
}

void cx__observe_handler(cx_runtime_t *rt, const char *connector, const char *capability,
                         double ms)
{
    cx_histogram_observe(rt->std.handler_latency_ms,
                         (const char *[]){connector, capability ? capability : "unknown"}, ms);
}

void cx__observe_handlers(cx_runtime_t *rt, const char *connector, const char *capability,
                          const double *ms, size_t n)
{
    cx_histogram_observe_many(rt->std.handler_latency_ms,
                              (const char *[]){connector, capability ? capability : "unknown"}, ms,
                              n);
}

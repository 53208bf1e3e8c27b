/* The pipeline's metrics, by handle (registered once in cx_runtime_create). */
#include <stdio.h>
#include <string.h>

#include "inbound/runtime_internal.h"

void cx__count_request(cx_runtime_t *rt, const char *connector, int status, double ms)
{
    /* The status label without printf (every request): three digits, "xxx" for a
     * status outside 100-999 (only a connector's handshake could set one). */
    char code[4] = "000";
    if (status >= 100 && status <= 999) {
        code[0] = (char)('0' + status / 100);
        code[1] = (char)('0' + status / 10 % 10);
        code[2] = (char)('0' + status % 10);
    } else {
        memcpy(code, "xxx", 4);
    }
    cx_counter_inc(rt->std.webhook_requests_total, (const char *[]){connector, code}, 1);
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

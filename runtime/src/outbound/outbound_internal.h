/* Outbound protection shared inside libcx (protection.c, used by command.c): the circuit
 * breaker per (connector, account). */
#ifndef CX_OUTBOUND_INTERNAL_H
#define CX_OUTBOUND_INTERNAL_H

#include <stdint.h>

#include "cx/outbound.h"

typedef struct cx__breaker_s cx__breaker_t;

/* What a finished send tells the breaker. */
typedef enum {
    CX__BR_SUCCESS = 0, /* the provider answered and took it (2xx) or judged it (other 4xx) */
    CX__BR_TRIP = 1,    /* 429 or 401/403: the provider wants us to stop */
    CX__BR_NEUTRAL = 2  /* no verdict (5xx, timeout, in doubt, not sent) */
} cx__br_outcome_t;

/* threshold consecutive trips open the breaker for open_ms (doubling per failed probe up to
 * open_max_ms); a probe lost for probe_timeout_ms is handed to the next caller. Returns 0 or
 * CX_ENOMEM. */
int cx__breaker_new(uint32_t threshold, uint32_t open_ms, uint32_t open_max_ms,
                    uint32_t probe_timeout_ms, cx__breaker_t **out);
void cx__breaker_free(cx__breaker_t *b);

/* May a request go now? 0 yes (*probe = 1 when it is the half-open probe, which must be
 * reported with cx__breaker_record), CX_ECIRCUIT_OPEN no (*retry_after_ms set), CX_ENOMEM.
 * now_ms: a monotonic clock. Thread-safe. */
int cx__breaker_allow(cx__breaker_t *b, const char *connector, const char *account, int64_t now_ms,
                      int *probe, uint32_t *retry_after_ms);
/* Records a send's outcome (probe as returned by allow; retry_after_ms from a 429, 0 none). */
void cx__breaker_record(cx__breaker_t *b, const char *connector, const char *account,
                        cx__br_outcome_t outcome, int probe, uint32_t retry_after_ms,
                        int64_t now_ms);
cx_breaker_state_t cx__breaker_state(cx__breaker_t *b, const char *connector, const char *account,
                                     int64_t now_ms);

/* A monotonic clock in ms. */
int64_t cx__mono_ms(void);

#endif /* CX_OUTBOUND_INTERNAL_H */

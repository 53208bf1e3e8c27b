/* Private: what the routes of `cx serve` share (routes.c) with its lifecycle (serve.c). */
#ifndef CX_CLI_SERVE_H
#define CX_CLI_SERVE_H

#include <stddef.h>

#include "cx/runtime.h"
#include "gateway.h"

typedef struct cx_serve_app_s {
    cx_runtime_t *rt;      /* hosts every exposed connector */
    cx_metrics_t *metrics; /* the runtime's registry, rendered by /metrics */
    cx_gw_t *gw;           /* set once the gateway runs (its draining state) */
    struct cx_serve_outbound_s *outbound; /* /commands and /oauth (serve_outbound.h) */
} cx_serve_app_t;

/* The route table of `cx serve` (routes.c); handlers take a cx_serve_app_t. */
extern const cx_gw_route_t cx_serve_routes[];
extern const size_t cx_serve_n_routes;

#endif

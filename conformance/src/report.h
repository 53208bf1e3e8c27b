/* Private: building a report while a suite runs (report.c). */
#ifndef CX_CONFORMANCE_REPORT_H
#define CX_CONFORMANCE_REPORT_H

#include "internal.h"

cx_conf_report_t *cx_conf__report_new(const cx_connector_t *c, const char *source,
                                      const cx_conf_suite_t *s, const cx_conf_options_t *o);
/* Adds a check's outcome; text and expected (the expected-failure reason, or NULL) are
 * copied. */
void cx_conf__report_add(cx_conf_report_t *rep, const cx_conf_check_t *check, int status,
                         int skip_kind, const char *text, double ms, const char *expected);

#endif

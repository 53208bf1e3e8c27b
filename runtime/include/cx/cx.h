/* connectors: the umbrella header of libcx. */
#ifndef CX_CX_H
#define CX_CX_H

#include "cx/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Export macro: libcx builds with -fvisibility=hidden; public symbols carry CX_API. */
#if defined(__GNUC__)
#define CX_API __attribute__((visibility("default")))
#else
#define CX_API
#endif

/* The runtime's SemVer version ("0.1.0"), the same as CX_VERSION_STRING at build time. */
CX_API const char *cx_version_string(void);

/* The runtime's version as major * 10000 + minor * 100 + patch. */
CX_API int cx_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* CX_CX_H */

#include "cx/cx.h"

const char *cx_version_string(void) { return CX_VERSION_STRING; }

int cx_version_number(void) { return CX_VERSION_NUMBER; }

/* The test connector as a loadable connector: libcx_test_connector.so exports the entry symbol
 * (CX_CONNECTOR_ENTRY_SYMBOL) that `cx serve --connector-lib`, `cx parse --connector-lib` and
 * the conformance runner dlopen(). */
#include "cx/connector.h"
#include "test_connector.h"

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
const cx_connector_t *
cx_connector_entry(void);

const cx_connector_t *cx_connector_entry(void)
{
    return cx_test_connector();
}

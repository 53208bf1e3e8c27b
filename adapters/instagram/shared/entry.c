/* libcx_instagram.so: the Instagram connector as a loadable object (`cx serve --connector-lib`,
 * `cx-conformance --connector-lib`), for hosts that do not have it built in. It exports only
 * CX_CONNECTOR_ENTRY_SYMBOL; libcx and the adapters are linked in statically and kept private
 * (docs/cx.md, "Connectors: built in and loadable"). */
#include "cx/connector.h"
#include "instagram/instagram.h"

__attribute__((visibility("default"))) const cx_connector_t *cx_connector_entry(void);

const cx_connector_t *cx_connector_entry(void)
{
    return cx_instagram_connector();
}

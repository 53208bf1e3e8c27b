/* The built-in connectors: every adapter compiled into cx-conformance, with the fixture
 * directory CI runs it against (tests/conformance/test_builtin.py runs them all, so a
 * registered adapter must pass).
 *
 * An in-tree adapter (adapters/<id>/, in the cx_adapters library linked into cx-conformance)
 * registers with two lines, which `create-connector --in-tree` writes at the markers:
 *
 *     const cx_connector_t *cx_whatsapp_connector(void);
 *     {"whatsapp", cx_whatsapp_connector, "fixtures/whatsapp"},
 */
#include "builtin.h"

#include "test_connector.h"

#include "instagram/instagram.h"
#include "messenger/messenger.h"
#include "whatsapp/whatsapp.h"

/* create-connector: adapter declarations (keep this line) */

static const cx_conf_builtin_t BUILTINS[] = {
    /* The reference connector of the SDK's own tests (tests/support/test_connector.c). */
    {"test", cx_test_connector, "tests/conformance/fixtures/test"},
    {"whatsapp", cx_whatsapp_connector, "fixtures/whatsapp"},
    {"instagram", cx_instagram_connector, "fixtures/instagram"},
    {"messenger", cx_messenger_connector, "fixtures/messenger"},
    /* create-connector: built-in adapters (keep this line) */
};

const cx_conf_builtin_t *cx_conf_builtins(size_t *n)
{
    *n = sizeof BUILTINS / sizeof BUILTINS[0];
    return BUILTINS;
}

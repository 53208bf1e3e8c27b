/* A small connector that drives the pipeline in tests and benchmarks (real adapters live in
 * adapters/). Its provider format:
 *
 *   POST /webhook/test   X-Test-Signature: sha256=<hex HMAC-SHA256 of the body under test/secret>
 *   {"account": "acc-1", "items": [{"id": "m1", "from": "+14155550123", "text": "hi"}, ...]}
 *
 * Each item becomes a cx.messaging.v1.DirectMessage on channel "test". An item that is not an
 * object with a string "id" fails alone (malformed); an item with "text" longer than the schema
 * allows fails validation alone. A body that is not such a JSON object (or has a key twice in
 * one object) is a 400. The body is read with libcx's arena JSON reader (cx/json_reader.h).
 * GET /webhook/test?challenge=X answers X (a handshake, like Meta's).
 */
#ifndef CX_TEST_CONNECTOR_H
#define CX_TEST_CONNECTOR_H

#include "cx/connector.h"

const cx_connector_t *cx_test_connector(void);

/* Signs body with key into out ("sha256=<hex>"). */
void cx_test_sign(const char *key, const char *body, size_t len, char out[80]);

#endif

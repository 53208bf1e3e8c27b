/* Re-signing captured requests (resign.h). */
#define _POSIX_C_SOURCE 200809L
#include "resign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "cx/signature.h"

static const cx_resign_rule_t RULES[] = {
    /* Meta (WhatsApp Cloud API, Messenger, Instagram): X-Hub-Signature-256: sha256=<hex>. */
    {"X-Hub-Signature-256", "app_secret", "sha256=", CX_RESIGN_HEX},
    /* The test connector (tests/support/test_connector.c). */
    {"X-Test-Signature", "secret", "sha256=", CX_RESIGN_HEX},
};

const cx_resign_rule_t *cx_resign_rule(const char *header)
{
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++)
        if (strcasecmp(RULES[i].header, header) == 0)
            return &RULES[i];
    return NULL;
}

int cx_resign(const cx_resign_rule_t *rule, const char *secrets_dir, const char *connector,
              const char *body, size_t len, char *out, size_t cap, char *why, size_t why_cap)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/%s", secrets_dir, connector, rule->secret);
    char *key = NULL;
    size_t klen = 0;
    if (cx_cli_read_file(path, 64u << 10, &key, &klen) != 0) {
        snprintf(why, why_cap, "cannot re-sign %s: %s: %s", rule->header, path,
                 errno ? strerror(errno) : "too large");
        return -1;
    }
    if (klen && key[klen - 1] == '\n')
        klen--;
    if (klen && key[klen - 1] == '\r')
        klen--;
    int rc = -1;
    switch (rule->scheme) {
    case CX_RESIGN_HEX:
        rc = cx_signature_sign_hex((const unsigned char *)key, klen, body, len, rule->prefix, out,
                                   cap) == 0
                 ? 0
                 : -1;
        break;
    }
    memset(key, 0, klen);
    free(key);
    if (rc != 0)
        snprintf(why, why_cap, "cannot re-sign %s", rule->header);
    return rc;
}

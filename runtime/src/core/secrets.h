/* Private: secrets from files, the mount a secret manager provides.
 *
 * One file per secret: <dir>/<connector>/<name>, per provider account
 * <dir>/<connector>/accounts/<account_id>/<name> (overriding the connector-level one), and the
 * previous value beside it as <name>.previous during rotation. A trailing newline is not part
 * of the value. Values are cached after the first read (a webhook must not cost file system
 * calls); cx__secrets_reload() drops the cache so the next reads see rotated files (SIGHUP).
 * Values never reach logs or error text.
 */
#ifndef CX_CORE_SECRETS_H
#define CX_CORE_SECRETS_H

#include "cx/connector.h"

typedef struct cx_secrets_s cx_secrets_t;

/* dir may be NULL: every lookup is then CX_ENOTFOUND. */
int cx__secrets_open(const char *dir, cx_secrets_t **out);
void cx__secrets_close(cx_secrets_t *s);
/* Copies the secret into out. account may be NULL. 0 or CX_ENOTFOUND. Thread-safe. */
int cx__secrets_get(cx_secrets_t *s, const char *connector, const char *account,
                    const char *name, cx_secret_value_t *out);
/* Drops every cached value; the next reads go to the files. Thread-safe. */
void cx__secrets_reload(cx_secrets_t *s);

#endif /* CX_CORE_SECRETS_H */

/* The connectors `cx` hosts: the built-in table and shared objects loaded with dlopen(). */
#define _POSIX_C_SOURCE 200809L
#include "connectors.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "instagram/instagram.h"
#include "messenger/messenger.h"
#include "whatsapp/whatsapp.h"

/* Adapters compiled into cx (the cx_adapters library, adapters/CMakeLists.txt) add their entry
 * function here, one line each (adapters/<x>/ export `const cx_connector_t
 * *cx_<x>_connector(void)`). More come from --connector-lib / connectors_lib. */
typedef const cx_connector_t *(*entry_fn)(void);
static const entry_fn BUILTIN[] = {
    cx_whatsapp_connector,
    cx_instagram_connector,
    cx_messenger_connector,
    NULL /* sentinel */
};

void cx_connectors_builtin(cx_connector_set_t *set)
{
    for (size_t i = 0; BUILTIN[i] != NULL && set->n < CX_CLI_MAX_CONNECTORS; i++) {
        const cx_connector_t *c = BUILTIN[i]();
        if (c && c->manifest && cx_connectors_find(set, c->manifest->id) == NULL)
            set->items[set->n++] = c;
    }
}

int cx_connectors_select(cx_connector_set_t *set, const char *list, char *why, size_t cap)
{
    const cx_connector_t *keep[CX_CLI_MAX_CONNECTORS];
    size_t n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char id[128];
        if (len == 0 || len >= sizeof id) {
            snprintf(why, cap, "connector list '%s' has an empty or too long id", list);
            return -1;
        }
        memcpy(id, p, len);
        id[len] = '\0';
        const cx_connector_t *c = cx_connectors_find(set, id);
        if (c == NULL) {
            snprintf(why, cap, "no connector '%s' (built in or loaded with --connector-lib)", id);
            return -1;
        }
        if (n < CX_CLI_MAX_CONNECTORS)
            keep[n++] = c;
        p += len;
        if (*p == ',')
            p++;
    }
    memcpy(set->items, keep, n * sizeof keep[0]);
    set->n = n;
    return 0;
}

const cx_connector_t *cx_connectors_find(const cx_connector_set_t *set, const char *id)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->manifest && set->items[i]->manifest->id &&
            strcmp(set->items[i]->manifest->id, id) == 0)
            return set->items[i];
    return NULL;
}

int cx_connectors_load(cx_connector_set_t *set, const char *path, char *why, size_t cap)
{
    if (set->n == CX_CLI_MAX_CONNECTORS || set->n_handles == CX_CLI_MAX_CONNECTORS) {
        snprintf(why, cap, "too many connectors (at most %d)", CX_CLI_MAX_CONNECTORS);
        return -1;
    }
    /* A bare file name would make dlopen() search the library path: require a path. */
    char rel[4096];
    if (strchr(path, '/') == NULL) {
        snprintf(rel, sizeof rel, "./%s", path);
        path = rel;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        snprintf(why, cap, "cannot load connector library %s: %s", path, e ? e : "dlopen failed");
        return -1;
    }
    /* POSIX: dlsym returns a data pointer; converting it to a function pointer is the
     * documented way to call what it finds. */
    void *sym = dlsym(h, CX_CONNECTOR_ENTRY_SYMBOL);
    if (sym == NULL) {
        snprintf(why, cap, "%s does not export %s()", path, CX_CONNECTOR_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const cx_connector_t *c = entry();
    if (c != NULL && (c->abi_version != CX_CONNECTOR_ABI || c->struct_size != sizeof *c)) {
        snprintf(why, cap,
                 "%s: built against connector ABI %u (struct size %u); this cx has ABI %d", path,
                 (unsigned)c->abi_version, (unsigned)c->struct_size, CX_CONNECTOR_ABI);
        dlclose(h);
        return -1;
    }
    if (c == NULL || c->manifest == NULL || c->manifest->id == NULL) {
        snprintf(why, cap, "%s: %s() returned no connector", path, CX_CONNECTOR_ENTRY_SYMBOL);
        dlclose(h);
        return -1;
    }
    if (cx_connectors_find(set, c->manifest->id)) {
        snprintf(why, cap, "%s: connector '%s' is already loaded", path, c->manifest->id);
        dlclose(h);
        return -1;
    }
    set->handles[set->n_handles++] = h;
    set->items[set->n++] = c;
    return 0;
}

void cx_connectors_free(cx_connector_set_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n_handles; i++)
        dlclose(set->handles[i]);
    set->n_handles = 0;
    set->n = 0;
}

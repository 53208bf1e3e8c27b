/* `cx validate TYPE FILE|-`: canonical JSON checked against the schema.
 *
 * The JSON is decoded strictly (proto3 JSON mapping, unknown fields rejected) and then every
 * rule of the type is checked; each problem is one line on stdout, `path: rule: message`,
 * where a decoding problem has the rule `json.<error>` (json.unknown_field, json.type, ...).
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cx/arena.h"
#include "cx/schema.h"

#define SUB "validate"
#define MAX_JSON_INPUT (16u << 20)
#define MAX_VIOLATIONS 1000

static const char *root_path(const char *p)
{
    return p && p[0] ? p : "(root)";
}

static int list_types(void)
{
    size_t n = 0;
    const cx_msg_meta_t *const *all = cx_schema_all(&n);
    for (size_t i = 0; i < n; i++)
        printf("%-48s %s\n", all[i]->full_name, all[i]->event_type ? all[i]->event_type : "");
    return CX_EXIT_OK;
}

int cx_cmd_validate(int argc, char **argv)
{
    const char *type = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help(SUB);
            return CX_EXIT_OK;
        }
        if (strcmp(argv[i], "--list") == 0)
            return list_types();
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cx_cli_bad_arg(SUB, argv[i]);
        if (type == NULL)
            type = argv[i];
        else if (file == NULL)
            file = argv[i];
        else
            return cx_cli_bad_arg(SUB, argv[i]);
    }
    if (type == NULL || file == NULL) {
        cx_cli_error(SUB, "usage: cx validate TYPE FILE|- (see cx validate --help)");
        return CX_EXIT_USAGE;
    }
    const cx_msg_meta_t *meta = cx_schema_find(type);
    if (meta == NULL) {
        cx_cli_error(SUB, "unknown type '%s' (cx validate --list shows every type)", type);
        return CX_EXIT_USAGE;
    }
    char *json = NULL;
    size_t len = 0;
    int rc = cx_cli_read_file(file, MAX_JSON_INPUT, &json, &len);
    if (rc == -2) {
        cx_cli_error(SUB, "%s: larger than %u bytes", file, MAX_JSON_INPUT);
        return CX_EXIT_INVALID;
    }
    if (rc != 0) {
        cx_cli_error(SUB, "%s: %s", strcmp(file, "-") ? file : "stdin", strerror(errno));
        return CX_EXIT_INVALID;
    }
    int exit_code = CX_EXIT_INTERNAL;
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 256u << 20);
    cx_violation_t *items = calloc(MAX_VIOLATIONS, sizeof *items);
    if (items == NULL)
        goto done;
    ProtobufCMessage *msg = NULL;
    cx_error_t err;
    cx_error_clear(&err);
    rc = cx_from_json(meta, json, len, &arena, NULL, &msg, &err);
    if (rc == CX_ENOMEM) {
        cx_cli_error(SUB, "out of memory");
        goto done;
    }
    if (rc != 0) {
        /* "CX_EUNKNOWN_FIELD" -> "json.unknown_field" */
        const char *name = cx_err_name(rc);
        char rule[64] = "json.";
        size_t o = 5;
        for (const char *p = strncmp(name, "CX_E", 4) == 0 ? name + 4 : name;
             *p && o + 1 < sizeof rule; p++)
            rule[o++] = (char)tolower((unsigned char)*p);
        rule[o] = '\0';
        if (strcmp(rule, "json.json") == 0) /* CX_EJSON: the text is not JSON at all */
            snprintf(rule, sizeof rule, "json.syntax");
        printf("%s: %s: %s\n", root_path(err.path), rule,
               err.message[0] ? err.message : cx_strerror(rc));
        exit_code = CX_EXIT_INVALID;
        goto done;
    }
    cx_violations_t v = {items, MAX_VIOLATIONS, 0};
    if (cx_validate(meta, msg, &v) != 0) {
        size_t shown = v.count < v.cap ? v.count : v.cap;
        for (size_t i = 0; i < shown; i++)
            printf("%s: %s: %s\n", root_path(items[i].path), items[i].rule, items[i].message);
        if (v.count > shown)
            printf("... %zu more violations\n", v.count - shown);
        exit_code = CX_EXIT_INVALID;
        goto done;
    }
    fprintf(stderr, "cx validate: %s: valid %s\n", strcmp(file, "-") ? file : "stdin",
            meta->full_name);
    exit_code = CX_EXIT_OK;
done:
    fflush(stdout);
    free(items);
    cx_arena_release(&arena);
    free(json);
    return exit_code;
}

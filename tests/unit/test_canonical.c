/* Contract test over fixtures/canonical/: every golden canonical JSON (one per event and
 * command type) decodes, validates, and re-encodes to the same bytes, so a schema change that
 * would break consumers fails here; and its dedupe key matches fixtures/canonical/dedupe-keys.txt
 * (golden keys: identical across runs and processes) and holds no PII value of the message.
 *
 * CX_UPDATE_GOLDEN=1 rewrites dedupe-keys.txt (review the diff).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cx/schema.h"
#include "schema/access.h"

static const unsigned char KEY[] = "golden-dedupe-key-pseudonym-secret";
static const cx_keyring_t KEYRING = {KEY, sizeof KEY - 1};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = '\0';
    *len = got;
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Fails when any non-empty string of a PII-classed field appears in key. */
static void assert_no_pii(const cx_msg_meta_t *meta, const ProtobufCMessage *m, const char *key)
{
    for (unsigned i = 0; i < meta->desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &meta->desc->fields[i];
        const cx_field_meta_t *fm = &meta->fields[i];
        if (!cx__field_is_set(m, fd))
            continue;
        size_t n = cx__is_repeated(fd) ? cx__repeated_count(m, fd) : 1;
        for (size_t k = 0; k < n; k++) {
            const void *p = cx__is_repeated(fd) ? cx__repeated_at(m, fd, k) : cx__field_ptr(m, fd);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE && fm->msg) {
                const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
                if (sub)
                    assert_no_pii(fm->msg, sub, key);
            } else if (fd->type == PROTOBUF_C_TYPE_STRING && fm->pii != CX_PII_NONE) {
                const char *s = *(const char *const *)p;
                if (s && strlen(s) >= 4 && strstr(key, s)) {
                    fprintf(stderr, "%s: PII field %s appears in key %s\n", meta->full_name,
                            fd->name, key);
                    fail();
                }
            }
        }
    }
}

static void test_canonical_fixtures_round_trip_byte_for_byte(void **state)
{
    (void)state;
    const char *src = getenv("CX_SOURCE_DIR");
    assert_non_null(src);
    char dir[1024], path[2048];
    snprintf(dir, sizeof dir, "%s/fixtures/canonical", src);
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, by_name);
    assert_true(n > 0);
    snprintf(path, sizeof path, "%s/dedupe-keys.txt", dir);
    size_t glen = 0;
    char *golden = slurp(path, &glen);
    int update = getenv("CX_UPDATE_GOLDEN") != NULL;
    FILE *out = update ? fopen(path, "w") : NULL;
    int fixtures = 0, events = 0;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        size_t nl = strlen(name);
        if (nl < 6 || strcmp(name + nl - 5, ".json") != 0) {
            free(ents[i]);
            continue;
        }
        char type[256];
        snprintf(type, sizeof type, "%.*s", (int)(nl - 5), name);
        const cx_msg_meta_t *meta = cx_schema_find(type);
        if (meta == NULL) {
            fprintf(stderr, "fixture %s names no registered type\n", name);
            fail();
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        size_t len;
        char *json = slurp(path, &len);
        assert_non_null(json);
        while (len && json[len - 1] == '\n')
            json[--len] = '\0';
        cx_arena_t arena;
        cx_arena_init(&arena, NULL, 1u << 20);
        ProtobufCMessage *msg = NULL;
        cx_error_t err;
        cx_error_clear(&err);
        if (cx_from_json(meta, json, len, &arena, NULL, &msg, &err) != 0) {
            fprintf(stderr, "%s: %s at %s\n", name, err.message, err.path);
            fail();
        }
        cx_violation_t vs[8];
        cx_violations_t v = {vs, 8, 0};
        if (cx_validate(meta, msg, &v) != 0) {
            fprintf(stderr, "%s: %s %s\n", name, vs[0].path, vs[0].rule);
            fail();
        }
        cx_buf_t b;
        cx_buf_init(&b, 1u << 20);
        assert_int_equal(cx_to_json(meta, msg, &b), 0);
        if (b.len != len || memcmp(b.data, json, len) != 0) {
            fprintf(stderr, "%s: re-encoding differs from the golden bytes\n", name);
            fail();
        }
        if (meta->key) {
            char kmem[1024];
            cx_buf_t kb;
            cx_buf_init_fixed(&kb, kmem, sizeof kmem);
            assert_int_equal(cx_dedupe_key(meta, msg, &KEYRING, &kb, &err), 0);
            assert_true(kb.len > 0);
            assert_no_pii(meta, msg, kb.data);
            char line[1400];
            snprintf(line, sizeof line, "%s %s\n", type, kb.data);
            if (out)
                fputs(line, out);
            else if (golden == NULL || strstr(golden, line) == NULL) {
                fprintf(stderr, "%s: key %s is not the golden one (CX_UPDATE_GOLDEN=1 to rewrite)\n",
                        type, kb.data);
                fail();
            }
            events++;
        }
        cx_buf_free(&b);
        cx_arena_release(&arena);
        free(json);
        free(ents[i]);
        fixtures++;
    }
    free(ents);
    free(golden);
    if (out)
        fclose(out);
    printf("canonical: %d fixtures round-tripped, %d golden dedupe keys\n", fixtures, events);
    assert_true(fixtures >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_fixtures_round_trip_byte_for_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

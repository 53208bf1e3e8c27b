/* cx_json_tool: our proto3 JSON codec on stdin/stdout, for the differential test against
 * python3-protobuf's json_format (tests/schema/test_json_differential.py) and for debugging.
 *
 * Input, either
 *   - one request per line: `TYPE JSON` (decode, then encode again), or `TYPE @BASE64` where
 *     BASE64 is the protobuf binary encoding (unpack with protobuf-c, then encode: this checks
 *     the writer alone); or
 *   - a first line holding only TYPE, and the rest of stdin one JSON document.
 * TYPE is a full name (cx.messaging.v1.DirectMessage) or an event type.
 *
 * Output, one line per request: `ok JSON`, or `error CX_NAME PATH<TAB>MESSAGE`.
 * Options: --lenient, --mask, --pseudonymize (redacted output; the key is fixed); --list prints
 * every registered full name and exits.
 *
 *     printf 'cx.common.v1.KeyValue {"key":"a"}\n' | cx_json_tool
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx/schema.h"

typedef struct {
    int lenient;
    int redact; /* 0 or a cx_redact_mode_t */
} tool_opts_t;

static const unsigned char TOOL_KEY[] = "cx-json-tool-pseudonym-key";

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (grown == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes base64 in place; returns the length or -1. */
static long b64_decode_inplace(char *s, size_t n)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            s[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    return (long)o;
}

static void print_error(int rc, const cx_error_t *err)
{
    printf("error %s %s\t%s\n", cx_err_name(rc), err->code ? err->path : "",
           err->code ? err->message : cx_strerror(rc));
}

static int encode(const tool_opts_t *o, const cx_msg_meta_t *meta, const ProtobufCMessage *m,
                  cx_buf_t *out)
{
    static const cx_keyring_t keyring = {TOOL_KEY, sizeof TOOL_KEY - 1};
    if (o->redact)
        return cx_to_json_redacted(meta, m, (cx_redact_mode_t)o->redact, &keyring, out);
    return cx_to_json(meta, m, out);
}

static void handle(const tool_opts_t *o, const char *type, char *payload, size_t len)
{
    const cx_msg_meta_t *meta = cx_schema_find(type);
    if (meta == NULL) {
        printf("error CX_ENOTFOUND \tunknown message type\n");
        return;
    }
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, (size_t)256 << 20);
    cx_buf_t out;
    cx_buf_init(&out, (size_t)256 << 20);
    cx_error_t err;
    cx_error_clear(&err);
    ProtobufCMessage *m = NULL;
    int rc;
    if (len > 0 && payload[0] == '@') {
        long n = b64_decode_inplace(payload + 1, len - 1);
        ProtobufCAllocator pa = cx_arena_protobuf_allocator(&arena);
        m = n < 0 ? NULL
                  : protobuf_c_message_unpack(meta->desc, &pa, (size_t)n,
                                              (const uint8_t *)payload + 1);
        rc = m ? 0 : CX_EINVAL;
    } else {
        cx_json_options_t jo = {o->lenient, 0, 0};
        rc = cx_from_json(meta, payload, len, &arena, &jo, &m, &err);
    }
    if (rc == 0)
        rc = encode(o, meta, m, &out);
    if (rc == 0)
        printf("ok %.*s\n", (int)out.len, out.data);
    else
        print_error(rc, &err);
    cx_buf_free(&out);
    cx_arena_release(&arena);
}

int main(int argc, char **argv)
{
    tool_opts_t o = {0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lenient") == 0) {
            o.lenient = 1;
        } else if (strcmp(argv[i], "--mask") == 0) {
            o.redact = CX_REDACT_MASK;
        } else if (strcmp(argv[i], "--pseudonymize") == 0) {
            o.redact = CX_REDACT_PSEUDONYMIZE;
        } else if (strcmp(argv[i], "--list") == 0) {
            size_t n;
            const cx_msg_meta_t *const *all = cx_schema_all(&n);
            for (size_t k = 0; k < n; k++)
                printf("%s\n", all[k]->full_name);
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--lenient] [--mask|--pseudonymize] < requests | --list\n",
                    argv[0]);
            return 2;
        }
    }
    size_t len;
    char *in = read_all(stdin, &len);
    if (in == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    char *first_nl = memchr(in, '\n', len);
    char *first_sp = memchr(in, ' ', first_nl ? (size_t)(first_nl - in) : len);
    if (first_nl != NULL && first_sp == NULL) {
        /* TYPE on its own line, then one document. */
        *first_nl = '\0';
        char *doc = first_nl + 1;
        handle(&o, in, doc, len - (size_t)(doc - in));
    } else {
        char *p = in, *end = in + len;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            char *line_end = nl ? nl : end;
            *line_end = '\0';
            char *sp = strchr(p, ' ');
            if (sp != NULL) {
                *sp = '\0';
                handle(&o, p, sp + 1, (size_t)(line_end - sp - 1));
            } else if (line_end > p) {
                printf("error CX_EINVAL \texpected `TYPE JSON`\n");
            }
            p = line_end + 1;
        }
    }
    fflush(stdout);
    free(in);
    return 0;
}

/* Messenger outbound, the connector's `send`:
 *
 *   outbound_messages  cx.messaging.v1.SendMessageCommand -> the Send API
 *                      (`POST /<version>/<page_id>/messages`, messenger_send.c), the intent
 *                      key in `metadata`; result cx.messaging.v1.SendMessageResult.
 *   leads              cx.messaging.v1.Lead (as a webhook delivered it: ids only) ->
 *                      `GET /<version>/<leadgen_id>?fields=created_time,ad_id,form_id,field_data`
 *                      with the Page's access token; result: a copy of the Lead with
 *                      field_data (and the ids and time Graph returns when the webhook lacked
 *                      them). A `leads` handler calls it to read the answers; the webhook itself
 *                      never waits on Graph.
 */
#include <stdio.h>
#include <string.h>

#include "messenger/messenger_internal.h"
#include "messenger/messenger_send.h"

/* Answers kept per lead and values per answer (the schema's limits). */
#define MAX_FIELDS 100
#define MAX_VALUES 20

static cx_http_client_t *CLIENT;

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Graph's lead `created_time` ("2024-11-29T09:14:50+0000") in Unix seconds; -1 if unreadable. */
static int64_t graph_time(const char *s)
{
    int y, mo, d, h, mi, se, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || y < 1970)
        return -1;
    int off = 0;
    const char *z = s + n;
    if ((z[0] == '+' || z[0] == '-') && strlen(z) >= 5) {
        int oh = (z[1] - '0') * 10 + (z[2] - '0');
        const char *m = z[3] == ':' ? z + 4 : z + 3;
        int om = (m[0] - '0') * 10 + (m[1] - '0');
        off = (oh * 60 + om) * 60 * (z[0] == '-' ? -1 : 1);
    }
    /* Days from the civil date (Howard Hinnant's algorithm). */
    int yy = y - (mo <= 2);
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60 + se - off;
}

static int fetch_lead(const cx_ctx_t *ctx, const ProtobufCMessage *command,
                      ProtobufCMessage **result, cx_error_t *err)
{
    if (!cx__msgr_is(command, &cx_messaging_lead_meta))
        return cx_error_set(err, CX_EINVAL, NULL, "leads takes the Lead of a leadgen webhook");
    const cx_messaging_lead_t *in = (const void *)command;
    const char *page = in->channel ? in->channel->account_id : NULL;
    if (!nonempty(in->leadgen_id) || strspn(in->leadgen_id, "0123456789") != strlen(in->leadgen_id))
        return cx_error_set(err, CX_EVALIDATION, "leadgen_id", "leadgen_id must be digits");
    if (!nonempty(page))
        return cx_error_set(err, CX_EVALIDATION, "channel.account_id",
                            "channel.account_id must be the Page id");
    cx_arena_t *a = ctx->arena;
    char path[256];
    snprintf(path, sizeof path, "%s?fields=created_time,ad_id,form_id,field_data", in->leadgen_id);
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    cx_error_t cerr;
    cx_error_clear(&cerr);
    int rc = cx__msgr_graph_call(ctx, &CLIENT, "GET", page, path, NULL, "leads", &rs, &cerr);
    if (rc != 0) {
        if (rc == CX_ECONFIG || rc == CX_EINVAL || rc == CX_ENOMEM)
            rc = cx_error_set(err, rc, cerr.path[0] ? cerr.path : NULL, "%s", cerr.message);
        else
            rc = cx__meta_graph_failure(a, rc, &rs, NULL, err);
        cx_http_response_free(&rs);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(rs.body.data, rs.body.len, 0, &jerr);
    cx_http_response_free(&rs);
    if (!json_is_object(root)) {
        json_decref(root);
        return cx_error_set(err, CX_EPROVIDER, NULL, "graph api lead is not a JSON object");
    }
    cx_messaging_lead_t *out = cx_arena_alloc(a, sizeof *out);
    if (out == NULL)
        goto nomem;
    *out = *in; /* shallow: the webhook's strings live as long as the caller's message */
    out->n_field_data = 0;
    out->field_data = NULL;
    int nomem = 0;
    const char *s;
    if (!nonempty(out->form_id) && (s = cx__meta_str(a, root, "form_id", &nomem)) != NULL)
        out->form_id = (char *)s;
    if (!nonempty(out->ad_id) && (s = cx__meta_str(a, root, "ad_id", &nomem)) != NULL)
        out->ad_id = (char *)s;
    if (out->created_at == NULL) {
        int64_t t = graph_time(json_string_value(json_object_get(root, "created_time")));
        if (t >= 0 && (out->created_at = cx__meta_timestamp(a, t, 0)) == NULL)
            goto nomem;
    }
    json_t *fd = json_object_get(root, "field_data");
    if (json_is_array(fd) && json_array_size(fd) > 0) {
        size_t n = json_array_size(fd) < MAX_FIELDS ? json_array_size(fd) : MAX_FIELDS;
        out->field_data = cx_arena_alloc(a, n * sizeof *out->field_data);
        if (out->field_data == NULL)
            goto nomem;
        for (size_t i = 0; i < n; i++) {
            json_t *f = json_array_get(fd, i);
            const char *name = cx__meta_str(a, f, "name", &nomem);
            if (!nonempty(name))
                continue;
            cx_messaging_lead_field_t *lf = cx_arena_alloc(a, sizeof *lf);
            if (lf == NULL)
                goto nomem;
            cx_messaging_lead_field_init(lf);
            lf->name = (char *)name;
            json_t *vals = json_object_get(f, "values");
            size_t nv = json_is_array(vals) ? json_array_size(vals) : 0;
            nv = nv < MAX_VALUES ? nv : MAX_VALUES;
            if (nv) {
                lf->values = cx_arena_alloc(a, nv * sizeof *lf->values);
                if (lf->values == NULL)
                    goto nomem;
            }
            for (size_t k = 0; k < nv; k++) {
                json_t *v = json_array_get(vals, k);
                if (!json_is_string(v))
                    continue;
                char *c = cx_arena_strndup(a, json_string_value(v), json_string_length(v));
                if (c == NULL)
                    goto nomem;
                lf->values[lf->n_values++] = c;
            }
            out->field_data[out->n_field_data++] = lf;
        }
    }
    if (nomem)
        goto nomem;
    json_decref(root);
    if (result)
        *result = &out->base;
    return 0;
nomem:
    json_decref(root);
    return cx_error_set(err, CX_ENOMEM, NULL, "request arena exhausted");
}

int cx__messenger_send(const cx_connector_t *c, const cx_ctx_t *ctx, const char *capability,
                       const ProtobufCMessage *command, ProtobufCMessage **result, cx_error_t *err)
{
    (void)c;
    if (result)
        *result = NULL;
    if (capability != NULL && strcmp(capability, "outbound_messages") == 0)
        return cx__msgr_send(ctx, &CLIENT, CX_MSGR_MESSENGER, command, result, err);
    if (capability != NULL && strcmp(capability, "leads") == 0)
        return fetch_lead(ctx, command, result, err);
    return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL,
                        "messenger sends outbound_messages and fetches leads only");
}

/* Shared code of the Meta adapters (meta.h): signatures, the handshake, the batch walk,
 * canonical building blocks, reactions and Graph API errors. */
#include "meta.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cx/signature.h"

const cx_secret_decl_t cx__meta_secrets[CX_META_N_SECRETS] = {
    {CX_META_SECRET_APP_SECRET, 1, 0,
     "App secret of the Meta app (App settings > Basic): HMAC key of X-Hub-Signature-256"},
    {CX_META_SECRET_VERIFY_TOKEN, 1, 0,
     "The Verify token typed in the app's Webhooks settings, checked on the GET handshake"},
    {CX_META_SECRET_ACCESS_TOKEN, 0, 1,
     "Per account: the system-user or Page access token for Graph API calls (outbound)"},
    {CX_META_SETTING_BASE_URL, 0, 0,
     "Setting, not a secret: the Graph API base URL (default https://graph.facebook.com)"},
    {CX_META_SETTING_VERSION, 0, 0,
     "Setting, not a secret: the Graph API version of outbound calls (default v21.0)"},
};

/* ---- verify and handshake ---------------------------------------------------------------- */

int cx__meta_verify(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                    cx_error_t *err)
{
    (void)c;
    cx_secret_value_t s;
    if (cx_ctx_secret(ctx, NULL, CX_META_SECRET_APP_SECRET, &s) != 0 || s.current_len == 0)
        return cx_error_set(err, CX_ECONFIG, NULL, "secret %s/%s is not configured", ctx->connector,
                            CX_META_SECRET_APP_SECRET);
    cx_secret_pair_t pair = {s.current, s.current_len, s.previous_len ? s.previous : NULL,
                             s.previous_len};
    return cx_signature_verify_hex(&pair, req->body, req->body_len,
                                   cx_request_header(req, CX_META_SIGNATURE_HEADER),
                                   CX_META_SIGNATURE_PREFIX, err);
}

/* Constant time in the length of the expected value. */
static int token_equal(const unsigned char *want, size_t want_len, const char *got)
{
    size_t got_len = strlen(got);
    unsigned diff = (unsigned)(want_len != got_len);
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned)(want[i] ^ (unsigned char)(i < got_len ? got[i] : 0));
    return diff == 0;
}

int cx__meta_handshake(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                       cx_response_t *resp, cx_error_t *err)
{
    (void)c;
    (void)err;
    char mode[32], token[1100], challenge[CX_META_MAX_CHALLENGE + 1];
    const char *m = cx_request_query(req, "hub.mode", mode, sizeof mode);
    const char *t = cx_request_query(req, "hub.verify_token", token, sizeof token);
    const char *ch = cx_request_query(req, "hub.challenge", challenge, sizeof challenge);
    resp->content_type = "text/plain";
    if (m == NULL || t == NULL || ch == NULL) {
        resp->status = 400;
        return 0;
    }
    if (strcmp(m, "subscribe") != 0) {
        resp->status = 403;
        return 0;
    }
    cx_secret_value_t s;
    if (cx_ctx_secret(ctx, NULL, CX_META_SECRET_VERIFY_TOKEN, &s) != 0 || s.current_len == 0) {
        resp->status = 403;
        return 0;
    }
    int ok = token_equal(s.current, s.current_len, t);
    if (s.previous_len)
        ok |= token_equal(s.previous, s.previous_len, t);
    if (!ok) {
        resp->status = 403;
        return 0;
    }
    resp->status = 200;
    cx_buf_puts(resp->body, ch);
    return 0;
}

/* ---- the batch walk ---------------------------------------------------------------------- */

int cx__meta_load(const cx_request_t *req, json_t **root, cx_error_t *err)
{
    json_error_t jerr;
    *root = NULL;
    json_t *r =
        req->body_len ? json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (r == NULL || !json_is_object(r)) {
        json_decref(r);
        return cx_error_set(err, CX_EMALFORMED, NULL, "body is not a JSON object");
    }
    *root = r;
    return 0;
}

static int walk_array(cx_meta_walk_t *w, const cx_meta_entry_t *e, const char *name, int standby)
{
    json_t *arr = json_object_get(e->json, name);
    if (arr == NULL || json_is_null(arr) || w->on_messaging == NULL)
        return 0;
    if (!json_is_array(arr))
        return cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                   standby ? "entry.standby is not an array"
                                           : "entry.messaging is not an array");
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        int rc;
        if (!json_is_object(ev))
            rc =
                cx_parse_emit_error(w->out, NULL, CX_EMALFORMED, "messaging item is not an object");
        else
            rc = w->on_messaging(w, e, ev, standby);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cx__meta_walk(json_t *root, const char *expect_object, cx_meta_walk_t *w, cx_error_t *err)
{
    if (expect_object != NULL) {
        const char *obj = json_string_value(json_object_get(root, "object"));
        if (obj == NULL || strcmp(obj, expect_object) != 0)
            return cx_error_set(err, CX_EMALFORMED, "object", "object is not %s", expect_object);
    }
    json_t *entries = json_object_get(root, "entry");
    if (!json_is_array(entries))
        return cx_error_set(err, CX_EMALFORMED, "entry", "entry is not an array");
    size_t i;
    json_t *ej;
    json_array_foreach(entries, i, ej)
    {
        int rc = 0;
        if (!json_is_object(ej)) {
            rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED, "entry is not an object");
            if (rc != 0)
                goto fatal;
            continue;
        }
        cx_meta_entry_t e = {ej, "", 0, i};
        json_t *id = json_object_get(ej, "id");
        char idbuf[32];
        if (json_is_string(id)) {
            e.id = json_string_value(id);
        } else if (json_is_integer(id)) {
            snprintf(idbuf, sizeof idbuf, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
            e.id = idbuf;
        }
        int32_t ns;
        if (cx__meta_time(json_object_get(ej, "time"), &e.time, &ns) != 0)
            e.time = 0;
        json_t *changes = json_object_get(ej, "changes");
        if (changes != NULL && !json_is_null(changes) && w->on_change != NULL) {
            if (!json_is_array(changes)) {
                rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                         "entry.changes is not an array");
            } else {
                size_t k;
                json_t *ch;
                json_array_foreach(changes, k, ch)
                {
                    const char *field = json_string_value(json_object_get(ch, "field"));
                    if (!json_is_object(ch) || field == NULL)
                        rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                                 "change without a string field");
                    else
                        rc = w->on_change(w, &e, field, json_object_get(ch, "value"));
                    if (rc != 0)
                        break;
                }
            }
            if (rc != 0)
                goto fatal;
        }
        if ((rc = walk_array(w, &e, "messaging", 0)) != 0 ||
            (rc = walk_array(w, &e, "standby", 1)) != 0)
            goto fatal;
        continue;
    fatal:
        return cx_error_set(err, rc, NULL, rc == CX_ENOSPC ? "request arena exhausted" : NULL);
    }
    return 0;
}

/* ---- JSON to canonical values ------------------------------------------------------------ */

const char *cx__meta_str(cx_arena_t *a, const json_t *obj, const char *key, int *nomem)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return NULL;
    const char *s;
    size_t len;
    char num[32];
    if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
    } else if (json_is_integer(v)) {
        len = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
    } else {
        return NULL;
    }
    char *copy = cx_arena_strndup(a, s, len);
    if (copy == NULL && nomem)
        *nomem = 1;
    return copy;
}

const char *cx__meta_str0(cx_arena_t *a, const json_t *obj, const char *key, int *nomem)
{
    const char *s = cx__meta_str(a, obj, key, nomem);
    return s ? s : "";
}

int cx__meta_time(const json_t *v, int64_t *seconds, int32_t *nanos)
{
    int64_t t = 0;
    if (json_is_integer(v)) {
        t = (int64_t)json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > 18)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -1;
            t = t * 10 + (s[i] - '0');
        }
    } else {
        return -1;
    }
    if (t < 0)
        return -1;
    /* Messenger and Instagram send milliseconds, WhatsApp and entry.time seconds. 10^11 s is
     * the year 5138; 10^11 ms is 1973: the two ranges do not overlap for real events. */
    if (t >= 100000000000LL) {
        *seconds = t / 1000;
        *nanos = (int32_t)(t % 1000) * 1000000;
    } else {
        *seconds = t;
        *nanos = 0;
    }
    /* Timestamps end at 9999-12-31 */
    if (*seconds > 253402300799LL)
        return -1;
    return 0;
}

Google__Protobuf__Timestamp *cx__meta_timestamp(cx_arena_t *a, int64_t seconds, int32_t nanos)
{
    Google__Protobuf__Timestamp *ts = cx_arena_alloc(a, sizeof *ts);
    if (ts == NULL)
        return NULL;
    google__protobuf__timestamp__init(ts);
    ts->seconds = seconds;
    ts->nanos = nanos;
    return ts;
}

Cx__Common__V1__ChannelRef *cx__meta_channel(cx_arena_t *a, const char *channel,
                                             const char *account_id,
                                             const char *business_account_id,
                                             const char *display_phone_number)
{
    Cx__Common__V1__ChannelRef *c = cx_arena_alloc(a, sizeof *c);
    if (c == NULL)
        return NULL;
    cx__common__v1__channel_ref__init(c);
    c->channel = (char *)channel;
    c->account_id = (char *)(account_id ? account_id : "");
    if (business_account_id)
        c->business_account_id = (char *)business_account_id;
    if (display_phone_number)
        c->display_phone_number = (char *)display_phone_number;
    return c;
}

Cx__Common__V1__ActorRef *cx__meta_actor(cx_arena_t *a, const char *id,
                                         Cx__Common__V1__ActorKind kind, const char *display_name)
{
    Cx__Common__V1__ActorRef *r = cx_arena_alloc(a, sizeof *r);
    if (r == NULL)
        return NULL;
    cx__common__v1__actor_ref__init(r);
    r->id = (char *)(id ? id : "");
    r->kind = kind;
    if (display_name)
        r->display_name = (char *)display_name;
    return r;
}

Cx__Common__V1__ConversationRef *cx__meta_conversation(cx_arena_t *a, const char *id)
{
    Cx__Common__V1__ConversationRef *c = cx_arena_alloc(a, sizeof *c);
    if (c == NULL)
        return NULL;
    cx__common__v1__conversation_ref__init(c);
    c->id = (char *)(id ? id : "");
    c->kind = CX__COMMON__V1__CONVERSATION_KIND__CONVERSATION_KIND_DIRECT;
    return c;
}

/* ---- reactions --------------------------------------------------------------------------- */

static int nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int cx__meta_reaction(cx_arena_t *a, const cx_meta_reaction_in_t *in,
                      const cx_meta_reaction_at_t *at, const cx_msg_meta_t **meta,
                      ProtobufCMessage **msg)
{
    int removed;
    if (nonempty(in->action)) {
        if (strcmp(in->action, "unreact") == 0)
            removed = 1;
        else if (strcmp(in->action, "react") == 0)
            removed = 0;
        else
            return CX_EMALFORMED;
    } else {
        removed = !nonempty(in->emoji) && !nonempty(in->reaction);
    }
    if (removed) {
        cx_reactions_reaction_removed_t *r = cx_arena_alloc(a, sizeof *r);
        if (r == NULL)
            return CX_ENOSPC;
        cx_reactions_reaction_removed_init(r);
        r->channel = at->channel;
        r->target_kind = at->target_kind;
        r->target_id = (char *)at->target_id;
        r->actor = at->actor;
        r->occurred_at = at->occurred_at;
        r->conversation = at->conversation;
        if (nonempty(in->emoji))
            r->emoji = (char *)in->emoji;
        if (nonempty(in->provider_event_id))
            r->provider_event_id = (char *)in->provider_event_id;
        else if (!nonempty(in->emoji))
            r->provider_event_id = (char *)(nonempty(in->action) ? in->action : "unreact");
        *meta = &cx_reactions_reaction_removed_meta;
        *msg = &r->base;
        return 0;
    }
    cx_reactions_reaction_t *r = cx_arena_alloc(a, sizeof *r);
    if (r == NULL)
        return CX_ENOSPC;
    cx_reactions_reaction_init(r);
    r->channel = at->channel;
    r->target_kind = at->target_kind;
    r->target_id = (char *)at->target_id;
    r->actor = at->actor;
    r->occurred_at = at->occurred_at;
    r->conversation = at->conversation;
    if (nonempty(in->provider_event_id))
        r->provider_event_id = (char *)in->provider_event_id;
    if (nonempty(in->emoji)) {
        r->kind = CX__REACTIONS__V1__REACTION_KIND__REACTION_KIND_EMOJI;
        r->emoji = (char *)in->emoji;
        if (nonempty(in->reaction))
            r->custom_value = (char *)in->reaction;
    } else if (nonempty(in->reaction) && strcmp(in->reaction, "like") == 0) {
        r->kind = CX__REACTIONS__V1__REACTION_KIND__REACTION_KIND_LIKE;
        if (!nonempty(in->provider_event_id))
            r->provider_event_id = (char *)in->reaction;
    } else {
        r->kind = CX__REACTIONS__V1__REACTION_KIND__REACTION_KIND_CUSTOM;
        r->custom_value = (char *)in->reaction;
        if (!nonempty(in->provider_event_id))
            r->provider_event_id = (char *)in->reaction;
    }
    *meta = &cx_reactions_reaction_meta;
    *msg = &r->base;
    return 0;
}

/* ---- Graph API errors -------------------------------------------------------------------- */

#define RATE CX_ERATE_LIMITED
#define REJ CX_EPROVIDER_REJECTED
#define AUTH CX_EPROVIDER_AUTH
#define TRANS CX_EPROVIDER

/* Meta's codes (Graph API error handling; WhatsApp Cloud API error codes). Sorted by code.
 * "permanent" means a retry of the same request cannot succeed; rate limits are transient. */
static const struct {
    int64_t code;
    int cx;
    const char *name;
    int permanent;
} ERRORS[] = {
    {1, TRANS, "PROVIDER_UNAVAILABLE", 0}, /* API Unknown: possibly temporary */
    {2, TRANS, "PROVIDER_UNAVAILABLE", 0}, /* API Service: temporary downtime */
    {3, AUTH, "PERMISSION_DENIED", 1},     /* API Method: capability or permission */
    {4, RATE, "RATE_LIMITED", 0},          /* API Too Many Calls (app) */
    {10, AUTH, "PERMISSION_DENIED", 1},    /* API Permission Denied */
    {17, RATE, "RATE_LIMITED", 0},         /* API User Too Many Calls */
    {32, RATE, "RATE_LIMITED", 0},         /* Page-level throttling */
    {33, REJ, "INVALID_PARAMETER", 1},     /* object does not exist / number deleted */
    {100, REJ, "INVALID_PARAMETER", 1},    /* Invalid parameter */
    {102, AUTH, "TOKEN_INVALID", 1},       /* API Session */
    {131, REJ, "INVALID_PARAMETER", 1},
    {190, AUTH, "TOKEN_INVALID", 1},   /* Access token expired or invalid */
    {341, RATE, "RATE_LIMITED", 0},    /* Application limit reached */
    {368, REJ, "POLICY_BLOCKED", 1},   /* Temporarily blocked: policy violation */
    {551, REJ, "UNDELIVERABLE", 1},    /* Messenger: person not available */
    {613, RATE, "RATE_LIMITED", 0},    /* Calls within a time window */
    {80007, RATE, "RATE_LIMITED", 0},  /* WhatsApp Business Account rate limit */
    {130429, RATE, "RATE_LIMITED", 0}, /* Cloud API throughput reached */
    {130472, REJ, "EXPERIMENT", 1},    /* user's number part of an experiment */
    {130497, REJ, "COUNTRY_RESTRICTED", 1},
    {131000, TRANS, "PROVIDER_ERROR", 0},         /* Something went wrong */
    {131005, AUTH, "PERMISSION_DENIED", 1},       /* Access denied */
    {131008, REJ, "INVALID_PARAMETER", 1},        /* Required parameter is missing */
    {131009, REJ, "INVALID_PARAMETER", 1},        /* Parameter value is not valid */
    {131016, TRANS, "PROVIDER_UNAVAILABLE", 0},   /* Service unavailable */
    {131021, REJ, "INVALID_RECIPIENT", 1},        /* Recipient cannot be sender */
    {131026, REJ, "UNDELIVERABLE", 1},            /* Message undeliverable */
    {131031, AUTH, "ACCOUNT_LOCKED", 1},          /* Business account locked */
    {131042, REJ, "PAYMENT_ISSUE", 1},            /* Business eligibility payment issue */
    {131045, REJ, "CERTIFICATE_ERROR", 1},        /* Incorrect certificate */
    {131047, REJ, "REENGAGEMENT_WINDOW", 1},      /* More than 24 h since the last reply */
    {131048, RATE, "SPAM_RATE_LIMITED", 0},       /* Spam rate limit hit */
    {131049, REJ, "NOT_DELIVERED_BY_META", 1},    /* Meta chose not to deliver (marketing) */
    {131050, REJ, "USER_STOPPED_MARKETING", 1},   /* user opted out of marketing messages */
    {131051, REJ, "UNSUPPORTED_MESSAGE_TYPE", 1}, /* Unsupported message type */
    {131052, REJ, "MEDIA_DOWNLOAD_ERROR", 1},     /* Media download error */
    {131053, REJ, "MEDIA_UPLOAD_ERROR", 1},       /* Media upload error */
    {131056, RATE, "PAIR_RATE_LIMITED", 0},       /* Pair rate limit hit (same recipient) */
    {131057, TRANS, "ACCOUNT_MAINTENANCE", 0},    /* Business account in maintenance mode */
    {132000, REJ, "TEMPLATE_ERROR", 1},           /* Template parameter count mismatch */
    {132001, REJ, "TEMPLATE_ERROR", 1},           /* Template does not exist */
    {132005, REJ, "TEMPLATE_ERROR", 1},           /* Template hydrated text too long */
    {132007, REJ, "TEMPLATE_ERROR", 1},           /* Template format character policy */
    {132012, REJ, "TEMPLATE_ERROR", 1},           /* Template parameter format mismatch */
    {132015, REJ, "TEMPLATE_ERROR", 1},           /* Template is paused */
    {132016, REJ, "TEMPLATE_ERROR", 1},           /* Template is disabled */
    {133004, TRANS, "PROVIDER_UNAVAILABLE", 0},   /* Server temporarily unavailable */
    {133010, REJ, "PHONE_NOT_REGISTERED", 1},     /* Phone number not registered */
    {135000, REJ, "INVALID_PARAMETER", 1},        /* Generic user error */
};

cx_meta_error_class_t cx__meta_error_map(int64_t code, int64_t subcode, int http_status,
                                         int is_transient)
{
    (void)subcode;
    cx_meta_error_class_t k = {0, NULL, 0};
    /* 200-299: permission errors (API Permission (Multiple values depending on permission)). */
    if (code >= 200 && code <= 299) {
        k = (cx_meta_error_class_t){AUTH, "PERMISSION_DENIED", 1};
        return k;
    }
    size_t lo = 0, hi = sizeof ERRORS / sizeof ERRORS[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ERRORS[mid].code == code) {
            k = (cx_meta_error_class_t){ERRORS[mid].cx, ERRORS[mid].name, ERRORS[mid].permanent};
            return k;
        }
        if (ERRORS[mid].code < code)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (is_transient || http_status >= 500)
        return (cx_meta_error_class_t){TRANS, "PROVIDER_ERROR", 0};
    if (http_status == 429)
        return (cx_meta_error_class_t){RATE, "RATE_LIMITED", 0};
    if (http_status == 401 || http_status == 403)
        return (cx_meta_error_class_t){AUTH, "PROVIDER_AUTH", 1};
    return (cx_meta_error_class_t){REJ, "PROVIDER_REJECTED", 1};
}

static void copy_field(char *dst, size_t cap, const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL)
        return;
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 1;
        /* never cut a UTF-8 sequence in two */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int64_t int_field(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        int64_t n = 0;
        size_t len = strlen(s);
        if (len == 0 || len > 18)
            return 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return 0;
            n = n * 10 + (s[i] - '0');
        }
        return n;
    }
    return 0;
}

void cx__meta_graph_error_from_json(const json_t *error, cx_meta_graph_error_t *e)
{
    memset(e, 0, sizeof *e);
    if (!json_is_object(error))
        return;
    e->code = int_field(error, "code");
    e->subcode = int_field(error, "error_subcode");
    e->is_transient = json_is_true(json_object_get(error, "is_transient"));
    copy_field(e->type, sizeof e->type, error, "type");
    copy_field(e->message, sizeof e->message, error, "message");
    if (e->message[0] == '\0')
        copy_field(e->message, sizeof e->message, error, "title");
    copy_field(e->details, sizeof e->details, json_object_get(error, "error_data"), "details");
    copy_field(e->fbtrace_id, sizeof e->fbtrace_id, error, "fbtrace_id");
}

int cx__meta_graph_error_parse(const char *body, size_t len, cx_meta_graph_error_t *e)
{
    memset(e, 0, sizeof *e);
    if (body == NULL || len == 0)
        return CX_EMALFORMED;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *error = json_object_get(root, "error");
    int rc = CX_EMALFORMED;
    if (json_is_object(error)) {
        cx__meta_graph_error_from_json(error, e);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* Cuts an arena string to at most max bytes on a UTF-8 boundary (bytes >= code points). */
static void clip(char *s, size_t max)
{
    if (s == NULL || strlen(s) <= max)
        return;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = '\0';
}

Cx__Common__V1__ProviderError *cx__meta_provider_error(cx_arena_t *a, const json_t *error,
                                                       int http_status)
{
    Cx__Common__V1__ProviderError *p = cx_arena_alloc(a, sizeof *p);
    if (p == NULL)
        return NULL;
    cx__common__v1__provider_error__init(p);
    int nomem = 0;
    int64_t code = int_field(error, "code");
    int64_t sub = int_field(error, "error_subcode");
    char num[24];
    if (code) {
        snprintf(num, sizeof num, "%" PRId64, code);
        p->code = cx_arena_strndup(a, num, strlen(num));
        nomem |= p->code == NULL;
    }
    if (sub) {
        snprintf(num, sizeof num, "%" PRId64, sub);
        p->subcode = cx_arena_strndup(a, num, strlen(num));
        nomem |= p->subcode == NULL;
    }
    const char *title = cx__meta_str(a, error, "title", &nomem);
    const char *message = cx__meta_str(a, error, "message", &nomem);
    const char *details = cx__meta_str(a, json_object_get(error, "error_data"), "details", &nomem);
    /* WhatsApp status errors: title + message (+ details); Graph: message only. */
    if (title) {
        p->title = (char *)title;
        if (details)
            p->detail = (char *)details;
        else if (message && strcmp(message, title) != 0)
            p->detail = (char *)message;
    } else if (message) {
        p->title = (char *)message;
        if (details)
            p->detail = (char *)details;
    } else if (details) {
        p->detail = (char *)details;
    }
    /* The schema bounds these (512 / 2048 code points): keep an overlong text, cut. */
    clip(p->title, 512);
    clip(p->detail, 2048);
    const char *trace = cx__meta_str(a, error, "fbtrace_id", &nomem);
    if (trace)
        p->trace_id = (char *)trace;
    clip(p->trace_id, 128);
    cx_meta_error_class_t k = cx__meta_error_map(
        code, sub, http_status, json_is_true(json_object_get(error, "is_transient")));
    p->cx_code = (char *)k.cx_code;
    return nomem ? NULL : p;
}

/* ---- Outbound: the Graph API ------------------------------------------------------------- */

/* A settings file as text without surrounding whitespace into buf; 0 when present. */
static int setting(const cx_ctx_t *ctx, const char *name, char *buf, size_t cap)
{
    cx_secret_value_t v;
    if (cx_ctx_secret(ctx, NULL, name, &v) != 0 || v.current_len == 0)
        return -1;
    const unsigned char *s = v.current;
    size_t n = v.current_len;
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        n--;
    }
    if (n == 0 || n >= cap)
        return -2;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

int cx__meta_graph_target(const cx_ctx_t *ctx, char *base, size_t base_cap, char *version,
                          size_t version_cap, cx_error_t *err)
{
    int rc = setting(ctx, CX_META_SETTING_BASE_URL, base, base_cap);
    if (rc == -1)
        snprintf(base, base_cap, "%s", CX_META_GRAPH_BASE_URL_DEFAULT);
    else if (rc != 0 || (strncmp(base, "https://", 8) != 0 && strncmp(base, "http://", 7) != 0))
        return cx_error_set(err, CX_ECONFIG, CX_META_SETTING_BASE_URL,
                            "%s/%s must be an http(s):// URL", ctx->connector,
                            CX_META_SETTING_BASE_URL);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
    rc = setting(ctx, CX_META_SETTING_VERSION, version, version_cap);
    if (rc == -1) {
        snprintf(version, version_cap, "%s", CX_META_GRAPH_VERSION_DEFAULT);
        return 0;
    }
    int ok = rc == 0 && version[0] == 'v';
    int dots = 0, digits = 0;
    for (const char *p = version + 1; ok && *p; p++) {
        if (*p == '.')
            dots++, ok = digits > 0, digits = 0;
        else if (*p >= '0' && *p <= '9')
            digits++;
        else
            ok = 0;
    }
    if (!ok || dots != 1 || digits == 0)
        return cx_error_set(err, CX_ECONFIG, CX_META_SETTING_VERSION, "%s/%s must look like v21.0",
                            ctx->connector, CX_META_SETTING_VERSION);
    return 0;
}

int cx__meta_access_token(const cx_ctx_t *ctx, const char *account, const char **token,
                          cx_error_t *err)
{
    cx_secret_value_t v;
    *token = NULL;
    if (cx_ctx_secret(ctx, account, CX_META_SECRET_ACCESS_TOKEN, &v) != 0 || v.current_len == 0)
        return cx_error_set(err, CX_ECONFIG, CX_META_SECRET_ACCESS_TOKEN,
                            "no %s/accounts/%s/%s (nor a connector-wide one)", ctx->connector,
                            account ? account : "-", CX_META_SECRET_ACCESS_TOKEN);
    size_t n = v.current_len;
    while (n && (v.current[n - 1] == '\n' || v.current[n - 1] == '\r' || v.current[n - 1] == ' '))
        n--;
    char *t = cx_arena_strndup(ctx->arena, (const char *)v.current, n);
    memset(&v, 0, sizeof v);
    if (t == NULL)
        return cx_error_set(err, CX_ENOMEM, NULL, "request arena exhausted");
    *token = t;
    return 0;
}

#include <pthread.h>

static pthread_mutex_t HTTP_MU = PTHREAD_MUTEX_INITIALIZER;

int cx__meta_http_client(const cx_ctx_t *ctx, cx_http_client_t **slot, cx_http_client_t **out,
                         cx_error_t *err)
{
    pthread_mutex_lock(&HTTP_MU);
    int rc = 0;
    if (*slot == NULL) {
        /* No logger or metrics: the client outlives any one runtime (a process may create
         * and destroy several), so it must not hold theirs. cx_outbound_send logs and counts
         * every send; the client's own per-attempt figures are not collected. */
        cx_http_config_t cfg = {
            .connector = ctx->connector,
            .timeout_ms = 10000,
            .allow_loopback_http = 1,
        };
        rc = cx_http_client_new(&cfg, slot, err);
    }
    *out = *slot;
    pthread_mutex_unlock(&HTTP_MU);
    return rc;
}

int cx__meta_graph_failure(cx_arena_t *a, int rc, const cx_http_response_t *rs,
                           Cx__Common__V1__ProviderError **perr, cx_error_t *err)
{
    if (perr)
        *perr = NULL;
    if (rc == CX_EIN_DOUBT || rc == CX_ECONFIG || rc == CX_EINVAL || rc == CX_ENOMEM)
        return cx_error_set(err, rc, NULL, "graph api: %s", cx_strerror(rc));
    json_t *root = NULL;
    json_t *error = NULL;
    if (rs && rs->body.len) {
        json_error_t jerr;
        root = json_loadb(rs->body.data, rs->body.len, 0, &jerr);
        error = json_object_get(root, "error");
    }
    if (!json_is_object(error)) {
        json_decref(root);
        if (rc == 0)
            rc = CX_EIN_DOUBT; /* a 2xx we cannot read: it may have been accepted */
        return cx_error_set(err, rc, NULL, "graph api answered %d without a Graph error",
                            rs ? rs->status : 0);
    }
    cx_meta_graph_error_t ge;
    cx__meta_graph_error_from_json(error, &ge);
    cx_meta_error_class_t k =
        cx__meta_error_map(ge.code, ge.subcode, rs ? rs->status : 0, ge.is_transient);
    if (perr)
        *perr = cx__meta_provider_error(a, error, rs ? rs->status : 0);
    json_decref(root);
    /* The text names the codes and the trace id, never Meta's message (it may quote content). */
    return cx_error_set(err, k.code, NULL, "graph api error %lld/%lld (%s), fbtrace_id %s",
                        (long long)ge.code, (long long)ge.subcode, k.cx_code,
                        ge.fbtrace_id[0] ? ge.fbtrace_id : "-");
}

/* ---- the walk over the arena reader --------------------------------------------------------- */

int cx__meta_load_mj(const cx_ctx_t *ctx, const cx_request_t *req, const cx_mj_t **root,
                     cx_error_t *err)
{
    cx_error_t perr;
    cx_error_clear(&perr);
    int rc = cx_mj_parse(ctx->arena, req->body, req->body_len, root, &perr);
    if (rc == CX_ENOSPC)
        return cx_error_set(err, CX_ENOSPC, NULL, "request arena exhausted");
    if (rc != 0 || !cx_mj_is(*root, CX_MJ_OBJECT)) {
        *root = NULL;
        return cx_error_set(err, CX_EMALFORMED, NULL, "body is not a JSON object");
    }
    return 0;
}

static int64_t mj_int(const cx_mj_t *v)
{
    if (cx_mj_is(v, CX_MJ_NUMBER))
        return v->is_int ? v->u.num.i : 0;
    const char *s = cx_mj_str(v);
    if (s == NULL || s[0] == '\0' || v->n > 18)
        return 0;
    int64_t n = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        n = n * 10 + (*s - '0');
    }
    return n;
}

int cx__meta_time_mj(const cx_mj_t *v, int64_t *seconds, int32_t *nanos)
{
    int64_t t;
    if (cx_mj_is(v, CX_MJ_NUMBER)) {
        if (!v->is_int)
            return -1;
        t = v->u.num.i;
    } else if (cx_mj_is(v, CX_MJ_STRING)) {
        if (v->n == 0 || v->n > 18)
            return -1;
        t = 0;
        for (const char *s = v->u.s; *s; s++) {
            if (*s < '0' || *s > '9')
                return -1;
            t = t * 10 + (*s - '0');
        }
    } else {
        return -1;
    }
    if (t < 0)
        return -1;
    if (t >= 100000000000LL) {
        *seconds = t / 1000;
        *nanos = (int32_t)(t % 1000) * 1000000;
    } else {
        *seconds = t;
        *nanos = 0;
    }
    return *seconds > 253402300799LL ? -1 : 0;
}

static int mj_walk_array(cx_meta_mj_walk_t *w, const cx_meta_mj_entry_t *e, const char *name,
                         int standby)
{
    const cx_mj_t *arr = cx_mj_get(e->json, name);
    if (arr == NULL || arr->type == CX_MJ_NULL || w->on_messaging == NULL)
        return 0;
    if (arr->type != CX_MJ_ARRAY)
        return cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                   standby ? "entry.standby is not an array"
                                           : "entry.messaging is not an array");
    for (uint32_t i = 0; i < arr->n; i++) {
        const cx_mj_t *ev = &arr->u.items[i];
        int rc = ev->type == CX_MJ_OBJECT ? w->on_messaging(w, e, ev, standby)
                                          : cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                                                "messaging item is not an object");
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cx__meta_walk_mj(const cx_mj_t *root, const char *expect_object, cx_meta_mj_walk_t *w,
                     cx_error_t *err)
{
    if (expect_object != NULL) {
        const char *obj = cx_mj_gets(root, "object");
        if (obj == NULL || strcmp(obj, expect_object) != 0)
            return cx_error_set(err, CX_EMALFORMED, "object", "object is not %s", expect_object);
    }
    const cx_mj_t *entries = cx_mj_get(root, "entry");
    if (!cx_mj_is(entries, CX_MJ_ARRAY))
        return cx_error_set(err, CX_EMALFORMED, "entry", "entry is not an array");
    int nomem = 0;
    for (uint32_t i = 0; i < entries->n; i++) {
        const cx_mj_t *ej = &entries->u.items[i];
        int rc = 0;
        if (ej->type != CX_MJ_OBJECT) {
            rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED, "entry is not an object");
            if (rc != 0)
                goto fatal;
            continue;
        }
        cx_meta_mj_entry_t e = {ej, "", 0, i};
        const char *id = cx_mj_text(w->ctx->arena, cx_mj_get(ej, "id"), &nomem);
        if (nomem) {
            rc = CX_ENOSPC;
            goto fatal;
        }
        if (id)
            e.id = id;
        int32_t ns;
        if (cx__meta_time_mj(cx_mj_get(ej, "time"), &e.time, &ns) != 0)
            e.time = 0;
        const cx_mj_t *changes = cx_mj_get(ej, "changes");
        if (changes != NULL && changes->type != CX_MJ_NULL && w->on_change != NULL) {
            if (changes->type != CX_MJ_ARRAY) {
                rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                         "entry.changes is not an array");
            } else {
                for (uint32_t k = 0; k < changes->n && rc == 0; k++) {
                    const cx_mj_t *ch = &changes->u.items[k];
                    const char *field = cx_mj_gets(ch, "field");
                    if (field == NULL)
                        rc = cx_parse_emit_error(w->out, NULL, CX_EMALFORMED,
                                                 "change without a string field");
                    else
                        rc = w->on_change(w, &e, field, cx_mj_get(ch, "value"));
                }
            }
            if (rc != 0)
                goto fatal;
        }
        if ((rc = mj_walk_array(w, &e, "messaging", 0)) != 0 ||
            (rc = mj_walk_array(w, &e, "standby", 1)) != 0)
            goto fatal;
        continue;
    fatal:
        return cx_error_set(err, rc, NULL, rc == CX_ENOSPC ? "request arena exhausted" : NULL);
    }
    return 0;
}

Cx__Common__V1__ProviderError *cx__meta_provider_error_mj(cx_arena_t *a, const cx_mj_t *error,
                                                          int http_status)
{
    Cx__Common__V1__ProviderError *p = cx_arena_alloc(a, sizeof *p);
    if (p == NULL)
        return NULL;
    cx__common__v1__provider_error__init(p);
    int nomem = 0;
    int64_t code = mj_int(cx_mj_get(error, "code"));
    int64_t sub = mj_int(cx_mj_get(error, "error_subcode"));
    char num[24];
    if (code) {
        snprintf(num, sizeof num, "%" PRId64, code);
        p->code = cx_arena_strndup(a, num, strlen(num));
        nomem |= p->code == NULL;
    }
    if (sub) {
        snprintf(num, sizeof num, "%" PRId64, sub);
        p->subcode = cx_arena_strndup(a, num, strlen(num));
        nomem |= p->subcode == NULL;
    }
    /* Strings are copied: clip() may cut them, and the tree is shared. */
    const char *t = cx_mj_gets(error, "title"), *m = cx_mj_gets(error, "message");
    const char *d = cx_mj_gets(cx_mj_get(error, "error_data"), "details");
    const char *tr = cx_mj_gets(error, "fbtrace_id");
    const char *title = NULL, *detail = NULL;
    if (t) {
        title = t;
        detail = d ? d : (m && strcmp(m, t) != 0 ? m : NULL);
    } else if (m) {
        title = m;
        detail = d;
    } else {
        detail = d;
    }
    if (title && (p->title = cx_arena_strndup(a, title, strlen(title))) == NULL)
        nomem = 1;
    if (detail && (p->detail = cx_arena_strndup(a, detail, strlen(detail))) == NULL)
        nomem = 1;
    if (tr && (p->trace_id = cx_arena_strndup(a, tr, strlen(tr))) == NULL)
        nomem = 1;
    if (nomem)
        return NULL;
    clip(p->title, 512);
    clip(p->detail, 2048);
    clip(p->trace_id, 128);
    cx_meta_error_class_t k =
        cx__meta_error_map(code, sub, http_status, cx_mj_true(cx_mj_get(error, "is_transient")));
    p->cx_code = (char *)k.cx_code;
    return p;
}

/* ---- the bridge to cx_outbound_send ------------------------------------------------------- */

#include <time.h>

#include "cx/messaging/v1/messaging.cx.h"

int cx__meta_outbound_bridge(const cx_connector_t *c, cx_runtime_t *rt,
                             const cx_outbound_command_t *cmd, cx_arena_t *arena,
                             cx_outbound_reply_t *reply, cx_error_t *err)
{
    if (c == NULL || c->send == NULL || cmd == NULL || cmd->meta == NULL)
        return cx_error_set(err, CX_ENOT_IMPLEMENTED, NULL, "connector has no send");
    cx_arena_t own;
    cx_arena_init(&own, NULL, (size_t)4 << 20);
    cx_ctx_t ctx = {rt, c->manifest->id, (int64_t)time(NULL), arena ? arena : &own};
    ProtobufCMessage *result = NULL;
    int rc = c->send(c, &ctx, cmd->meta->capability ? cmd->meta->capability : "", cmd->msg, &result,
                     err);
    if (result && result->descriptor &&
        strcmp(result->descriptor->name, cx_messaging_send_message_result_meta.desc->name) == 0) {
        const cx_messaging_send_message_result_t *r = (const void *)result;
        if (r->provider_message_id && r->provider_message_id[0])
            snprintf(reply->provider_message_id, sizeof reply->provider_message_id, "%s",
                     r->provider_message_id);
        if (r->error && r->error->code && r->error->code[0])
            snprintf(reply->provider_code, sizeof reply->provider_code, "%s", r->error->code);
    }
    if (arena)
        reply->result = result;
    cx_arena_release(&own);
    return rc;
}

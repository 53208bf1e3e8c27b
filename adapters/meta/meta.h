/* Shared code of the Meta adapters: WhatsApp Cloud API, Instagram Messaging, Messenger.
 *
 * Meta delivers every webhook the same way, whatever the product:
 *
 *   - signed: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the app
 *     secret>`; during a rotation the previous app secret (`app_secret.previous`) verifies too;
 *   - subscribed with a GET handshake: `hub.mode=subscribe&hub.verify_token=<ours>&
 *     hub.challenge=<n>`, answered with exactly the challenge as text/plain, 403 otherwise;
 *   - batched: `{"object": "...", "entry": [{"id", "time", "changes": [{"field", "value"}]}]}`
 *     (WhatsApp, Instagram comments, Page `leadgen`) or `{"entry": [{"id", "time",
 *     "messaging": [...]}]}` (Messenger and Instagram messaging; `standby` under handover);
 *   - delivered at least once, for days: the runtime dedupes, adapters only map.
 *
 * Secrets, per connector (`<secrets dir>/<connector>/<name>`): `app_secret` (required),
 * `verify_token` (required), and per account `access_token`
 * (`<secrets dir>/<connector>/accounts/<account_id>/access_token`) for outbound calls.
 *
 * Graph API errors (`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id",
 * "error_data": {"details"}}}`, also WhatsApp status `errors[]`) map to our codes and classes
 * through one table (cx__meta_error_map): rate limits are transient, policy rejections are
 * permanent, token and permission failures are auth.
 *
 * Everything here is internal to the adapters library (`cx__meta_` prefix), reentrant, and keeps
 * no global state: thread-safe. Memory for canonical messages comes from ctx->arena; jansson
 * values are borrowed from the caller's parsed tree.
 */
#ifndef CX_ADAPTERS_META_H
#define CX_ADAPTERS_META_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cx/common/v1/common.cx.h"
#include "cx/connector.h"
#include "cx/http.h"
#include "cx/json_reader.h"
#include "cx/outbound.h"
#include "cx/reactions/v1/reactions.cx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Secret file names, the same for the three connectors. */
#define CX_META_SECRET_APP_SECRET "app_secret"
#define CX_META_SECRET_VERIFY_TOKEN "verify_token"
#define CX_META_SECRET_ACCESS_TOKEN "access_token"
/* The signature header and its value prefix. */
#define CX_META_SIGNATURE_HEADER "X-Hub-Signature-256"
#define CX_META_SIGNATURE_PREFIX "sha256="
/* The Graph API version outbound calls use unless configured otherwise. */
#define CX_META_GRAPH_VERSION_DEFAULT "v21.0"
/* Longest hub.challenge echoed (Meta sends a short integer). */
#define CX_META_MAX_CHALLENGE 512

/* What every Meta connector declares: the secrets app_secret and verify_token (required),
 * access_token (per account, needed for outbound only), and the optional settings files
 * graph_api_base_url and graph_api_version (see "Outbound" below), for a manifest's static
 * initialiser:
 *
 *     .secrets = cx__meta_secrets, .n_secrets = CX_META_N_SECRETS,
 */
#define CX_META_N_SECRETS 5
extern const cx_secret_decl_t cx__meta_secrets[CX_META_N_SECRETS];

/* ---- Inbound: verify and handshake ------------------------------------------------------ */

/* Verifies X-Hub-Signature-256 over the raw body with the connector's app_secret (current, and
 * app_secret.previous during a rotation). Returns 0; CX_EBAD_SIGNATURE (missing header, bad
 * format, no secret matches: 401); CX_ECONFIG (no app_secret configured: 503). err may be NULL.
 * The connector's verify: `.verify = cx__meta_verify`. */
int cx__meta_verify(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                    cx_error_t *err);

/* The GET subscription handshake. Answers 200 text/plain with exactly hub.challenge when
 * hub.mode is `subscribe` and hub.verify_token equals the connector's verify_token (current or
 * previous; compared in constant time); 403 when the mode or the token is wrong, or no
 * verify_token is configured; 400 when a parameter is missing or the challenge is longer than
 * CX_META_MAX_CHALLENGE. Always returns 0 (the status says it); resp->body is written only on
 * success. The connector's handshake: `.handshake = cx__meta_handshake`. */
int cx__meta_handshake(const cx_connector_t *c, const cx_ctx_t *ctx, const cx_request_t *req,
                       cx_response_t *resp, cx_error_t *err);

/* ---- Inbound: the batch walk ------------------------------------------------------------- */

/* One entry of a batch, as the walk hands it over. Borrowed for the callback's duration. */
typedef struct cx_meta_entry_s {
    json_t *json;   /* the entry object */
    const char *id; /* entry.id (WABA id, Page id, Instagram account id); "" if absent */
    int64_t time;   /* entry.time in unix seconds (Meta sends seconds or milliseconds:
                       normalised); 0 if absent */
    size_t index;   /* position in entry[] */
} cx_meta_entry_t;

typedef struct cx_meta_walk_s cx_meta_walk_t;

/* What to do with each element. A callback returns 0, or a fatal code (CX_ENOSPC when the
 * arena is exhausted) that stops the walk; per-item mapping failures are emitted with
 * cx_parse_emit_error and the callback returns 0. A NULL callback skips that kind. */
struct cx_meta_walk_s {
    const cx_ctx_t *ctx;
    cx_parse_out_t *out;
    void *ud;
    /* entry.changes[i]: field and value (value may be any JSON type or NULL). */
    int (*on_change)(cx_meta_walk_t *w, const cx_meta_entry_t *entry, const char *field,
                     json_t *value);
    /* entry.messaging[i] (standby 0) and entry.standby[i] (standby 1). */
    int (*on_messaging)(cx_meta_walk_t *w, const cx_meta_entry_t *entry, json_t *event,
                        int standby);
};

/* Decodes the request body as a JSON object into *root (release with json_decref). Returns 0
 * or CX_EMALFORMED ("body is not a JSON object": the whole request is a 400). */
int cx__meta_load(const cx_request_t *req, json_t **root, cx_error_t *err);

/* Walks root = {"object": ..., "entry": [...]}: for each entry, each element of `changes`,
 * `messaging` and `standby`. expect_object, when not NULL, must equal root.object
 * (`whatsapp_business_account`, `page`, `instagram`). Returns 0; CX_EMALFORMED when object
 * differs or entry is not an array (400); a fatal code from a callback. An entry that is not an
 * object, or a change that is not an object with a string `field`, is emitted as a per-item
 * error (account unknown) and the walk goes on. An empty entry[] yields no event. */
int cx__meta_walk(json_t *root, const char *expect_object, cx_meta_walk_t *w, cx_error_t *err);

/* ---- Inbound: the same walk over the arena reader (cx/json_reader.h) --------------------- */

/* The hot path: the body is read once into the request arena (no malloc per value) and its
 * strings are used by the canonical messages as they are. Same rules as cx__meta_load and
 * cx__meta_walk. */
typedef struct cx_meta_mj_entry_s {
    const cx_mj_t *json; /* the entry object */
    const char *id;      /* entry.id (arena), "" if absent */
    int64_t time;        /* entry.time in unix seconds, 0 if absent */
    size_t index;
} cx_meta_mj_entry_t;

typedef struct cx_meta_mj_walk_s cx_meta_mj_walk_t;
struct cx_meta_mj_walk_s {
    const cx_ctx_t *ctx;
    cx_parse_out_t *out;
    void *ud;
    int (*on_change)(cx_meta_mj_walk_t *w, const cx_meta_mj_entry_t *entry, const char *field,
                     const cx_mj_t *value);
    int (*on_messaging)(cx_meta_mj_walk_t *w, const cx_meta_mj_entry_t *entry, const cx_mj_t *event,
                        int standby);
};

/* Reads the body as a JSON object into ctx->arena. Returns 0, CX_EMALFORMED (not a JSON
 * object: 400) or CX_ENOSPC (the arena limit: 413). */
int cx__meta_load_mj(const cx_ctx_t *ctx, const cx_request_t *req, const cx_mj_t **root,
                     cx_error_t *err);
/* cx__meta_walk over the arena tree. */
int cx__meta_walk_mj(const cx_mj_t *root, const char *expect_object, cx_meta_mj_walk_t *w,
                     cx_error_t *err);
/* cx__meta_time for an arena value. */
int cx__meta_time_mj(const cx_mj_t *v, int64_t *seconds, int32_t *nanos);
/* cx__meta_provider_error for an arena value. */
Cx__Common__V1__ProviderError *cx__meta_provider_error_mj(cx_arena_t *a, const cx_mj_t *error,
                                                          int http_status);

/* ---- Inbound: JSON to canonical values --------------------------------------------------- */

/* The string member key of obj copied into arena, or NULL when obj is not an object, the
 * member is absent or not a string (or a number when numbers_ok, rendered in decimal). Sets
 * *nomem when the copy fails (leaves it alone otherwise). */
const char *cx__meta_str(cx_arena_t *a, const json_t *obj, const char *key, int *nomem);

/* Like cx__meta_str but returns "" (static) instead of NULL when absent. */
const char *cx__meta_str0(cx_arena_t *a, const json_t *obj, const char *key, int *nomem);

/* A unix time in seconds from a JSON string of digits ("1700000000") or an integer; values
 * above 10^11 are taken as milliseconds. Returns 0 and *out, or -1 when absent or not a time. */
int cx__meta_time(const json_t *v, int64_t *seconds, int32_t *nanos);

/* A Timestamp in arena; NULL when out of memory. */
Google__Protobuf__Timestamp *cx__meta_timestamp(cx_arena_t *a, int64_t seconds, int32_t nanos);

/* A ChannelRef in arena (strings borrowed; business_account_id and display_phone_number may be
 * NULL). NULL when out of memory. */
Cx__Common__V1__ChannelRef *cx__meta_channel(cx_arena_t *a, const char *channel,
                                             const char *account_id,
                                             const char *business_account_id,
                                             const char *display_phone_number);

/* An ActorRef in arena (strings borrowed; display_name may be NULL). NULL when out of memory. */
Cx__Common__V1__ActorRef *cx__meta_actor(cx_arena_t *a, const char *id,
                                         Cx__Common__V1__ActorKind kind, const char *display_name);

/* A direct ConversationRef with this id, in arena. NULL when out of memory. */
Cx__Common__V1__ConversationRef *cx__meta_conversation(cx_arena_t *a, const char *id);

/* ---- Reactions --------------------------------------------------------------------------- */

/* A provider reaction, before normalisation. Every pointer may be NULL. */
typedef struct cx_meta_reaction_in_s {
    const char *action;            /* Meta `action`: "react" / "unreact"; NULL for WhatsApp */
    const char *reaction;          /* Meta `reaction` name ("love", "like", "other") or the
                                      Facebook `reaction_type` */
    const char *emoji;             /* `emoji`; NULL or "" when absent */
    const char *provider_event_id; /* an id of the reaction event (WhatsApp: the reaction
                                      message id); NULL when the provider has none */
} cx_meta_reaction_in_t;

/* Where the reaction happened. Pointers are borrowed into the built message (arena-owned). */
typedef struct cx_meta_reaction_at_s {
    Cx__Common__V1__ChannelRef *channel;
    Cx__Reactions__V1__ReactionTargetKind target_kind;
    const char *target_id;
    Cx__Common__V1__ActorRef *actor;
    Google__Protobuf__Timestamp *occurred_at;
    Cx__Common__V1__ConversationRef *conversation; /* may be NULL */
} cx_meta_reaction_at_t;

/* Normalises a reaction into cx.reactions.v1.Reaction or ReactionRemoved, allocated in arena:
 *
 *   - removal: action "unreact", or no action and an absent or empty emoji with no reaction
 *     name (WhatsApp removes with `emoji` absent or ""). ReactionRemoved keeps the emoji when
 *     given; provider_event_id is the event id, else the action name ("unreact");
 *   - emoji: a non-empty emoji -> REACTION_KIND_EMOJI, custom_value = the reaction name if any;
 *   - like: no emoji and reaction "like" -> REACTION_KIND_LIKE, provider_event_id = event id or
 *     "like";
 *   - custom: no emoji and another reaction name -> REACTION_KIND_CUSTOM, custom_value = name,
 *     provider_event_id = event id or the name.
 *
 * Returns 0 with *meta and *msg set, CX_EMALFORMED (an action other than react/unreact), or
 * CX_ENOSPC (arena). Emit with cx_parse_emit(out, *meta, *msg, account_id). */
int cx__meta_reaction(cx_arena_t *a, const cx_meta_reaction_in_t *in,
                      const cx_meta_reaction_at_t *at, const cx_msg_meta_t **meta,
                      ProtobufCMessage **msg);

/* ---- Graph API errors -------------------------------------------------------------------- */

/* A Graph API error as received. Strings are truncated copies, NUL-terminated. */
typedef struct cx_meta_graph_error_s {
    int64_t code;        /* `code`, 0 when absent */
    int64_t subcode;     /* `error_subcode`, 0 when absent */
    int is_transient;    /* `is_transient: true` */
    char type[64];       /* `type` ("OAuthException") */
    char message[256];   /* `message` (may quote user content: never logged as is) */
    char details[256];   /* `error_data.details` */
    char fbtrace_id[64]; /* `fbtrace_id` */
} cx_meta_graph_error_t;

/* What one of our codes makes of a Meta error. */
typedef struct cx_meta_error_class_s {
    int code;            /* CX_ERATE_LIMITED, CX_EPROVIDER_REJECTED, CX_EPROVIDER_AUTH,
                            CX_EPROVIDER (transient) */
    const char *cx_code; /* ProviderError.cx_code: "RATE_LIMITED", "PAIR_RATE_LIMITED",
                            "REENGAGEMENT_WINDOW", "UNDELIVERABLE", "TOKEN_INVALID",
                            "PERMISSION_DENIED", ... (static) */
    int permanent;       /* 1: a retry cannot succeed as is */
} cx_meta_error_class_t;

/* Maps a Meta error code (+ subcode, + HTTP status of the response, 0 when from a webhook) to
 * our code, name and permanence. Unknown codes fall back on the HTTP status (429 rate limited,
 * 401/403 auth, 5xx transient, other 4xx rejected) and, with no status, on `rejected`.
 * Never fails; thread-safe.
 *
 *     cx_meta_error_class_t k = cx__meta_error_map(131047, 0, 400, 0);  // REENGAGEMENT_WINDOW
 */
cx_meta_error_class_t cx__meta_error_map(int64_t code, int64_t subcode, int http_status,
                                         int is_transient);

/* Parses a Graph API error body ({"error": {...}}). Returns 0, or CX_EMALFORMED when the body
 * holds no error object (e is then zeroed). */
int cx__meta_graph_error_parse(const char *body, size_t len, cx_meta_graph_error_t *e);

/* Same from an already decoded `error` object (or a WhatsApp `errors[]` element: `code`,
 * `title`, `message`, `error_data.details`; `title` fills message when `message` is absent). */
void cx__meta_graph_error_from_json(const json_t *error, cx_meta_graph_error_t *e);

/* A cx.common.v1.ProviderError in arena from a decoded error object (Graph `error` or a
 * WhatsApp `errors[]` element): code, subcode, title, detail (`message`, else
 * `error_data.details`), trace_id (`fbtrace_id`) and cx_code from cx__meta_error_map.
 * NULL when out of memory. */
Cx__Common__V1__ProviderError *cx__meta_provider_error(cx_arena_t *a, const json_t *error,
                                                       int http_status);

/* ---- Outbound: the Graph API ------------------------------------------------------------- */

/* Optional settings files beside the secrets (not secrets themselves, read the same way so a
 * deployment, a test or the conformance mock can point a connector elsewhere):
 *   <secrets dir>/<connector>/graph_api_base_url   default https://graph.facebook.com
 *   <secrets dir>/<connector>/graph_api_version    default CX_META_GRAPH_VERSION_DEFAULT */
#define CX_META_SETTING_BASE_URL "graph_api_base_url"
#define CX_META_SETTING_VERSION "graph_api_version"
#define CX_META_GRAPH_BASE_URL_DEFAULT "https://graph.facebook.com"

/* Where Graph calls go for this connector: base URL (no trailing '/') and version ("v21.0").
 * Returns 0, or CX_ECONFIG when a setting is malformed (a base URL that is not http(s)://, a
 * version that is not `v<digits>.<digits>`). */
int cx__meta_graph_target(const cx_ctx_t *ctx, char *base, size_t base_cap, char *version,
                          size_t version_cap, cx_error_t *err);

/* The per-account access token (accounts/<account>/access_token, else the connector's
 * access_token) as a NUL-terminated string in the arena (*token). Returns 0, or CX_ECONFIG
 * when there is none (the message names the connector and the account, never the token). */
int cx__meta_access_token(const cx_ctx_t *ctx, const char *account, const char **token,
                          cx_error_t *err);

/* The HTTP client of a connector, created on first use (thread-safe): 10 s per attempt, POSTs
 * never resent once they may have been received, plain http only to loopback (tests and
 * mocks). It holds no runtime's logger or metrics, since it outlives runtimes. *slot is the
 * connector's own static pointer.
 * Returns 0 or CX_ENOMEM / CX_EINVAL. The client lives until the process ends. */
int cx__meta_http_client(const cx_ctx_t *ctx, cx_http_client_t **slot, cx_http_client_t **out,
                         cx_error_t *err);

/* Turns a failed Graph call into our outcome: rc is cx_http_send's code, rs the response.
 * When the body holds a Graph error, its code decides (cx__meta_error_map): e.g. a 400 with
 * code 130429 or 131056 is CX_ERATE_LIMITED (transient), 131047 CX_EPROVIDER_REJECTED, 190
 * CX_EPROVIDER_AUTH; CX_EIN_DOUBT and local failures (CX_ECONFIG, CX_EINVAL, CX_ENOMEM) are
 * kept as they are. *perr (may be NULL) gets a ProviderError in arena, or NULL when the body
 * holds none. Returns the code to return from send, with err set (no payload in it). */
int cx__meta_graph_failure(cx_arena_t *a, int rc, const cx_http_response_t *rs,
                           Cx__Common__V1__ProviderError **perr, cx_error_t *err);

/* Runs connector c's send for cx_outbound_send (the body of a cx_outbound_send_fn): builds
 * the connector context (rt, the wall clock, arena or a private one), calls c->send with the
 * command's capability, and reports the SendMessageResult's provider message id and the
 * provider's error code in reply (reply->result is set when arena is given). Returns what
 * c->send returned. */
int cx__meta_outbound_bridge(const cx_connector_t *c, cx_runtime_t *rt,
                             const cx_outbound_command_t *cmd, cx_arena_t *arena,
                             cx_outbound_reply_t *reply, cx_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* CX_ADAPTERS_META_H */

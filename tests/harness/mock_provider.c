/* The scriptable mock provider (mock_provider.h): libmicrohttpd, one thread per connection,
 * so a delayed answer blocks only its own connection. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "cx/messaging/v1/messaging.cx.h"
#include "mock_provider.h"

#define MAX_BODY (16u << 20)

typedef struct step_s {
    cx_mock_action_t action;
    int status;
    char *body;
    char *retry_after;
    uint32_t delay_ms;
    int left; /* requests still to answer */
} step_t;

struct cx_mock_provider_s {
    struct MHD_Daemon *d;
    int port;
    char url[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    step_t *steps; /* queue: steps[head..n) */
    size_t head, n, cap;
    cx_mock_request_t **reqs;
    size_t nreqs, capreqs;
    size_t count; /* requests received */
    int recording;
    atomic_ulong conns; /* connections accepted */
    atomic_int stopping;
};

/* Per request, while it is being read. */
typedef struct rq_s {
    cx_mock_request_t *rec;
    size_t cap;
    int oversize;
} rq_t;

static void free_request(cx_mock_request_t *r)
{
    if (r == NULL)
        return;
    free(r->path);
    free(r->query);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    free(r);
}

static void free_step(step_t *s)
{
    free(s->body);
    free(s->retry_after);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)c;
    cx_mock_provider_t *m = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        *socket_context = (void *)(uintptr_t)(atomic_fetch_add(&m->conns, 1) + 1);
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    cx_mock_request_t *r = cls;
    cx_mock_header_t *h = realloc(r->headers, (r->n_headers + 1) * sizeof *h);
    if (h == NULL)
        return MHD_NO;
    r->headers = h;
    h[r->n_headers].name = strdup(key ? key : "");
    h[r->n_headers].value = strdup(value ? value : "");
    r->n_headers++;
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    rq_t *rq = *con_cls;
    if (rq) {
        free_request(rq->rec); /* NULL once handed to the records */
        free(rq);
        *con_cls = NULL;
    }
}

static const char *default_body(int status, char *buf, size_t cap, size_t index)
{
    if (status >= 200 && status < 300)
        snprintf(buf, cap,
                 "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"x\","
                 "\"wa_id\":\"x\"}],\"messages\":[{\"id\":\"wamid.mock-%zu\"}]}",
                 index);
    else if (status == 429)
        snprintf(buf, cap,
                 "{\"error\":{\"message\":\"(#130429) Rate limit hit\","
                 "\"type\":\"OAuthException\",\"code\":130429,"
                 "\"fbtrace_id\":\"Amock\"}}");
    else if (status == 400)
        snprintf(buf, cap,
                 "{\"error\":{\"message\":\"(#131009) Parameter value is not "
                 "valid\",\"type\":\"OAuthException\",\"code\":131009,"
                 "\"fbtrace_id\":\"Amock\"}}");
    else if (status == 401)
        snprintf(buf, cap,
                 "{\"error\":{\"message\":\"Error validating access token\","
                 "\"type\":\"OAuthException\",\"code\":190}}");
    else
        snprintf(buf, cap,
                 "{\"error\":{\"message\":\"An unknown error occurred\","
                 "\"type\":\"OAuthException\",\"code\":1,\"fbtrace_id\":\"Amock\"}}");
    return buf;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    cx_mock_provider_t *m = cls;
    rq_t *rq = *con_cls;
    if (rq == NULL) {
        rq = calloc(1, sizeof *rq);
        if (rq == NULL)
            return MHD_NO;
        rq->rec = calloc(1, sizeof *rq->rec);
        if (rq->rec == NULL) {
            free(rq);
            return MHD_NO;
        }
        snprintf(rq->rec->method, sizeof rq->rec->method, "%s", method);
        rq->rec->path = strdup(url ? url : "");
        rq->rec->query = strdup("");
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        rq->rec->conn = ci ? (unsigned long)(uintptr_t)ci->socket_context : 0;
        MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, rq->rec);
        rq->rec->body = calloc(1, 1);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        cx_mock_request_t *r = rq->rec;
        size_t n = *upload_size;
        if (r->body_len + n > MAX_BODY) {
            rq->oversize = 1;
        } else {
            if (r->body_len + n + 1 > rq->cap) {
                size_t cap = (r->body_len + n + 1) * 2;
                char *b = realloc(r->body, cap);
                if (b == NULL)
                    return MHD_NO;
                r->body = b;
                rq->cap = cap;
            }
            memcpy(r->body + r->body_len, upload_data, n);
            r->body_len += n;
            r->body[r->body_len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }

    /* The whole request is here: take the next step. */
    step_t st = {.action = CX_MOCK_REPLY, .status = 200};
    char *body_copy = NULL, *ra_copy = NULL;
    cx_mock_request_t *rec = rq->rec;
    rq->rec = NULL;
    size_t index;
    pthread_mutex_lock(&m->mu);
    if (m->head < m->n) {
        step_t *s = &m->steps[m->head];
        st = *s;
        body_copy = s->body ? strdup(s->body) : NULL;
        ra_copy = s->retry_after ? strdup(s->retry_after) : NULL;
        if (--s->left <= 0) {
            free_step(s);
            m->head++;
        }
    }
    index = ++m->count;
    rec->index = (int)index;
    rec->status = st.action == CX_MOCK_CLOSE ? 0 : (st.status ? st.status : 200);
    if (m->recording && m->nreqs == m->capreqs) {
        size_t cap = m->capreqs ? m->capreqs * 2 : 64;
        cx_mock_request_t **p = realloc(m->reqs, cap * sizeof *p);
        if (p) {
            m->reqs = p;
            m->capreqs = cap;
        }
    }
    if (m->recording && m->nreqs < m->capreqs) {
        m->reqs[m->nreqs++] = rec;
        rec = NULL;
    }
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    free_request(rec);

    for (uint32_t waited = 0; waited < st.delay_ms && !atomic_load(&m->stopping); waited += 5) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st.action == CX_MOCK_CLOSE || atomic_load(&m->stopping)) {
        free(body_copy);
        free(ra_copy);
        return MHD_NO; /* closes the connection: no answer */
    }
    int status = st.status ? st.status : 200;
    char buf[512];
    const char *body = body_copy ? body_copy : default_body(status, buf, sizeof buf, index);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(body_copy);
    if (resp == NULL) {
        free(ra_copy);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (ra_copy)
        MHD_add_response_header(resp, "Retry-After", ra_copy);
    free(ra_copy);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

int cx_mock_provider_start(cx_mock_provider_t **out)
{
    *out = NULL;
    cx_mock_provider_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->recording = 1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    m->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL,
        NULL, on_request, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, m, MHD_OPTION_NOTIFY_COMPLETED, completed, m,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (m->d == NULL) {
        fprintf(stderr, "mock provider: MHD_start_daemon failed\n");
        free(m);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = di ? di->port : 0;
    if (m->port == 0) {
        fprintf(stderr, "mock provider: no port\n");
        MHD_stop_daemon(m->d);
        free(m);
        return -1;
    }
    snprintf(m->url, sizeof m->url, "http://127.0.0.1:%d", m->port);
    *out = m;
    return 0;
}

void cx_mock_provider_stop(cx_mock_provider_t *m)
{
    if (m == NULL)
        return;
    atomic_store(&m->stopping, 1);
    MHD_stop_daemon(m->d);
    cx_mock_provider_reset(m);
    free(m->steps);
    free(m->reqs);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int cx_mock_provider_port(const cx_mock_provider_t *m)
{
    return m->port;
}

const char *cx_mock_provider_url(const cx_mock_provider_t *m)
{
    return m->url;
}

int cx_mock_provider_push(cx_mock_provider_t *m, const cx_mock_step_t *step)
{
    step_t s = {.action = step->action,
                .status = step->status,
                .delay_ms = step->delay_ms,
                .left = step->repeat > 0 ? step->repeat : 1};
    if ((step->body && (s.body = strdup(step->body)) == NULL) ||
        (step->retry_after && (s.retry_after = strdup(step->retry_after)) == NULL)) {
        free_step(&s);
        return -1;
    }
    pthread_mutex_lock(&m->mu);
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        step_t *p = realloc(m->steps, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&m->mu);
            free_step(&s);
            return -1;
        }
        m->steps = p;
        m->cap = cap;
    }
    m->steps[m->n++] = s;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int cx_mock_push_status(cx_mock_provider_t *m, int status, const char *body,
                        const char *retry_after)
{
    cx_mock_step_t s = {
        .action = CX_MOCK_REPLY, .status = status, .body = body, .retry_after = retry_after};
    return cx_mock_provider_push(m, &s);
}

int cx_mock_push_delay(cx_mock_provider_t *m, uint32_t delay_ms)
{
    cx_mock_step_t s = {.action = CX_MOCK_REPLY, .status = 200, .delay_ms = delay_ms};
    return cx_mock_provider_push(m, &s);
}

int cx_mock_push_close(cx_mock_provider_t *m, uint32_t delay_ms)
{
    cx_mock_step_t s = {.action = CX_MOCK_CLOSE, .delay_ms = delay_ms};
    return cx_mock_provider_push(m, &s);
}

size_t cx_mock_provider_count(cx_mock_provider_t *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->count;
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t cx_mock_provider_connections(cx_mock_provider_t *m)
{
    return (size_t)atomic_load(&m->conns);
}

int cx_mock_provider_wait_count(cx_mock_provider_t *m, size_t n, uint32_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    while (m->count < n) {
        if (pthread_cond_timedwait(&m->cv, &m->mu, &dl) == ETIMEDOUT) {
            rc = m->count >= n ? 0 : -1;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

const cx_mock_request_t *cx_mock_provider_request(cx_mock_provider_t *m, size_t i)
{
    pthread_mutex_lock(&m->mu);
    const cx_mock_request_t *r = i < m->nreqs ? m->reqs[i] : NULL;
    pthread_mutex_unlock(&m->mu);
    return r;
}

const char *cx_mock_request_header(const cx_mock_request_t *r, const char *name)
{
    for (size_t i = 0; r && i < r->n_headers; i++)
        if (r->headers[i].name && strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

int cx_mock_provider_saw(cx_mock_provider_t *m, const char *needle)
{
    int found = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nreqs && !found; i++) {
        const cx_mock_request_t *r = m->reqs[i];
        found = strstr(r->method, needle) || (r->path && strstr(r->path, needle)) ||
                (r->body && strstr(r->body, needle));
        for (size_t j = 0; j < r->n_headers && !found; j++)
            found = (r->headers[j].name && strstr(r->headers[j].name, needle)) ||
                    (r->headers[j].value && strstr(r->headers[j].value, needle));
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}

void cx_mock_provider_reset(cx_mock_provider_t *m)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = m->head; i < m->n; i++)
        free_step(&m->steps[i]);
    m->head = m->n = 0;
    for (size_t i = 0; i < m->nreqs; i++)
        free_request(m->reqs[i]);
    m->nreqs = 0;
    m->count = 0;
    pthread_mutex_unlock(&m->mu);
}

void cx_mock_provider_set_recording(cx_mock_provider_t *m, int on)
{
    pthread_mutex_lock(&m->mu);
    m->recording = on;
    pthread_mutex_unlock(&m->mu);
}

/* ---- The WhatsApp-like adapter -------------------------------------------------------------- */

static void json_str(cx_buf_t *b, const char *s)
{
    cx_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            cx_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            cx_buf_printf(b, "\\u%04x", *p);
        else
            cx_buf_putc(b, (char)*p);
    }
    cx_buf_putc(b, '"');
}

/* The string value after "key": in a JSON text (first occurrence), into out. */
static int json_find(const char *json, size_t len, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *end = json + len;
    const char *p = json;
    size_t pl = strlen(pat);
    while (p + pl <= end && memcmp(p, pat, pl) != 0)
        p++;
    if (p + pl > end)
        return -1;
    p += pl;
    while (p < end && *p == ' ')
        p++;
    size_t n = 0;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"' && n + 1 < cap)
            out[n++] = *p++;
    } else {
        while (p < end && ((*p >= '0' && *p <= '9') || *p == '-') && n + 1 < cap)
            out[n++] = *p++;
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

int cx_mock_send(void *ud, const cx_outbound_command_t *cmd, const char *intent_key,
                 cx_arena_t *arena, cx_outbound_reply_t *reply, cx_error_t *err)
{
    cx_mock_sender_t *s = ud;
    const cx_messaging_send_message_command_t *m = (const void *)cmd->msg;
    char url[512];
    snprintf(url, sizeof url, "%s/v19.0/%s/messages", s->base_url,
             m->channel && m->channel->account_id ? m->channel->account_id : "0");
    cx_buf_t body;
    cx_buf_init(&body, 1 << 20);
    cx_buf_puts(&body, "{\"messaging_product\":\"whatsapp\",\"to\":");
    json_str(&body, m->to);
    cx_buf_puts(&body, ",\"type\":\"text\",\"text\":{\"body\":");
    json_str(&body,
             m->content_case == CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT && m->text
                 ? m->text->body
                 : "");
    cx_buf_puts(&body, "},\"biz_opaque_callback_data\":");
    json_str(&body, intent_key);
    cx_buf_putc(&body, '}');
    if (cx_buf_error(&body)) {
        cx_buf_free(&body);
        return cx_error_set(err, CX_ENOMEM, NULL, "mock sender: out of memory");
    }
    cx_http_header_t hd[] = {{"Content-Type", "application/json"}};
    cx_http_request_t rq = {.method = "POST",
                            .url = url,
                            .headers = hd,
                            .n_headers = 1,
                            .body = body.data,
                            .body_len = body.len,
                            .bearer_token = s->token,
                            .capability = cmd->meta ? cmd->meta->capability : NULL,
                            .correlation_id = cmd->correlation_id};
    cx_http_response_t rs;
    cx_http_response_init(&rs);
    int rc = cx_http_send(s->http, &rq, &rs, err);
    cx_buf_free(&body);
    reply->http_status = rs.status;
    reply->retry_after_ms = rs.retry_after_ms;
    if (rc == 0) {
        if (json_find(rs.body.data, rs.body.len, "id", reply->provider_message_id,
                      sizeof reply->provider_message_id) != 0) {
            cx_http_response_free(&rs);
            return cx_error_set(err, CX_EIN_DOUBT, NULL, "2xx without a message id");
        }
        if (arena) {
            cx_messaging_send_message_result_t *r = cx_arena_alloc(arena, sizeof *r);
            if (r) {
                cx_messaging_send_message_result_init(r);
                r->client_message_id =
                    cx_arena_strndup(arena, m->client_message_id, strlen(m->client_message_id));
                r->provider_message_id = cx_arena_strndup(arena, reply->provider_message_id,
                                                          strlen(reply->provider_message_id));
                r->status = CX__MESSAGING__V1__SEND_MESSAGE_STATUS__SEND_MESSAGE_STATUS_ACCEPTED;
                if (r->client_message_id && r->provider_message_id)
                    reply->result = &r->base;
            }
        }
    } else if (rs.body.len > 0) {
        json_find(rs.body.data, rs.body.len, "code", reply->provider_code,
                  sizeof reply->provider_code);
    }
    cx_http_response_free(&rs);
    return rc;
}

/* The mock OAuth token endpoint (mock_oauth.h). */
#define _POSIX_C_SOURCE 200809L

#include "mock_oauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/rand.h>

#define MAX_PARAMS 24
#define MAX_BODY 65536
#define MAX_ISSUED 4096

typedef struct scripted_s {
    struct scripted_s *next;
    int status;
    char *body;
    unsigned delay_ms;
} scripted_t;

typedef struct counter_s {
    char grant[40];
    unsigned n;
} counter_t;

struct cx_mock_oauth_s {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    scripted_t *head, *tail;
    int expires_in, rotate;
    unsigned delay_ms;
    counter_t counts[16];
    unsigned total;
    char last_method[8], last_path[256];
    int nlast;
    char *last_k[MAX_PARAMS], *last_v[MAX_PARAMS];
    char tag[17];
    unsigned seq;
    char *issued[MAX_ISSUED];
    size_t nissued;
    char *last_at;
};

/* One connection's upload. */
typedef struct upload_s {
    char *body;
    size_t len;
    int too_large;
} upload_t;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* application/x-www-form-urlencoded decoding of s[0..n) into a new string. */
static char *form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%' && i + 2 < n + 0 && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            *o++ = (char)(hexv(s[i + 1]) << 4 | hexv(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

typedef struct params_s {
    int n;
    char *k[MAX_PARAMS], *v[MAX_PARAMS];
} params_t;

static void params_free(params_t *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->k[i]);
        free(p->v[i]);
    }
    p->n = 0;
}

static void params_add(params_t *p, const char *k, size_t kl, const char *v, size_t vl)
{
    if (p->n >= MAX_PARAMS)
        return;
    p->k[p->n] = form_decode(k, kl);
    p->v[p->n] = form_decode(v, vl);
    if (p->k[p->n] && p->v[p->n])
        p->n++;
    else {
        free(p->k[p->n]);
        free(p->v[p->n]);
    }
}

static void params_parse(params_t *p, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        size_t eq = i;
        while (eq < j && s[eq] != '=')
            eq++;
        if (eq > i)
            params_add(p, s + i, eq - i, eq < j ? s + eq + 1 : "", eq < j ? j - eq - 1 : 0);
        i = j + 1;
    }
}

static const char *params_get(const params_t *p, const char *k)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->k[i], k) == 0)
            return p->v[i];
    return NULL;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    params_t *p = cls;
    if (p->n < MAX_PARAMS && key) {
        p->k[p->n] = strdup(key);
        p->v[p->n] = strdup(value ? value : "");
        if (p->k[p->n] && p->v[p->n])
            p->n++;
    }
    return MHD_YES;
}

static char *issue(cx_mock_oauth_t *m, const char *kind)
{
    char buf[96];
    snprintf(buf, sizeof buf, "mock%s-%s-%u", kind, m->tag, ++m->seq);
    char *t = strdup(buf);
    if (t && m->nissued < MAX_ISSUED)
        m->issued[m->nissued++] = t;
    return t;
}

static void count(cx_mock_oauth_t *m, const char *grant)
{
    m->total++;
    for (size_t i = 0; i < sizeof m->counts / sizeof m->counts[0]; i++) {
        if (m->counts[i].grant[0] == '\0') {
            snprintf(m->counts[i].grant, sizeof m->counts[i].grant, "%s", grant);
            m->counts[i].n = 1;
            return;
        }
        if (strcmp(m->counts[i].grant, grant) == 0) {
            m->counts[i].n++;
            return;
        }
    }
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    cx_mock_oauth_t *m = cls;
    upload_t *u = *con_cls;
    if (u == NULL) {
        if ((u = calloc(1, sizeof *u)) == NULL)
            return MHD_NO;
        *con_cls = u;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (u->len + *upload_size > MAX_BODY) {
            u->too_large = 1;
        } else {
            char *nb = realloc(u->body, u->len + *upload_size + 1);
            if (nb == NULL)
                return MHD_NO;
            u->body = nb;
            memcpy(u->body + u->len, upload, *upload_size);
            u->len += *upload_size;
            u->body[u->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (u->too_large)
        return reply(c, 413, "{\"error\":\"too_large\"}");

    params_t p = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &p);
    if (u->body && strcmp(method, "POST") == 0)
        params_parse(&p, u->body, u->len);
    const char *grant = params_get(&p, "grant_type");
    if (grant == NULL)
        grant = params_get(&p, "code") ? "authorization_code" : "none";

    pthread_mutex_lock(&m->mu);
    count(m, grant);
    snprintf(m->last_method, sizeof m->last_method, "%s", method);
    snprintf(m->last_path, sizeof m->last_path, "%s", url);
    for (int i = 0; i < m->nlast; i++) {
        free(m->last_k[i]);
        free(m->last_v[i]);
    }
    m->nlast = p.n;
    for (int i = 0; i < p.n; i++) {
        m->last_k[i] = p.k[i];
        m->last_v[i] = p.v[i];
    }
    p.n = 0; /* moved */
    scripted_t *s = m->head;
    if (s) {
        m->head = s->next;
        if (m->head == NULL)
            m->tail = NULL;
    }
    unsigned delay = s ? s->delay_ms : m->delay_ms;
    int status = s ? s->status : 200;
    char *body = NULL;
    if (s && s->body) {
        body = s->body;
        s->body = NULL;
    } else if (status >= 200 && status < 300) {
        char *at = issue(m, "at"), *rt = NULL;
        int with_rt = strcmp(grant, "authorization_code") == 0 ||
                      (strcmp(grant, "refresh_token") == 0 && m->rotate);
        if (with_rt)
            rt = issue(m, "rt");
        m->last_at = at;
        char exp[48] = "";
        if (m->expires_in > 0)
            snprintf(exp, sizeof exp, ",\"expires_in\":%d", m->expires_in);
        size_t cap = 256 + (at ? strlen(at) : 0) + (rt ? strlen(rt) : 0);
        if ((body = malloc(cap)) != NULL)
            snprintf(body, cap, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\"%s%s%s%s}",
                     at ? at : "", exp, rt ? ",\"refresh_token\":\"" : "", rt ? rt : "",
                     rt ? "\"" : "");
    } else {
        body = strdup("{}");
    }
    pthread_mutex_unlock(&m->mu);
    free(s);
    if (delay)
        sleep_ms(delay);
    enum MHD_Result rc = reply(c, status, body ? body : "{}");
    free(body);
    params_free(&p);
    return rc;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    upload_t *u = *con_cls;
    if (u) {
        free(u->body);
        free(u);
        *con_cls = NULL;
    }
}

int cx_mock_oauth_start(cx_mock_oauth_t **out)
{
    cx_mock_oauth_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -1;
    pthread_mutex_init(&m->mu, NULL);
    m->expires_in = 3600;
    unsigned char r[8];
    if (RAND_bytes(r, sizeof r) != 1) {
        free(m);
        return -1;
    }
    for (int i = 0; i < 8; i++)
        snprintf(m->tag + 2 * i, 3, "%02x", r[i]);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    m->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, completed,
        NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (m->d == NULL) {
        fprintf(stderr, "mock_oauth: cannot start the server\n");
        free(m);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : 0;
    if (m->port == 0) {
        MHD_stop_daemon(m->d);
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void cx_mock_oauth_reset(cx_mock_oauth_t *m)
{
    pthread_mutex_lock(&m->mu);
    while (m->head) {
        scripted_t *s = m->head;
        m->head = s->next;
        free(s->body);
        free(s);
    }
    m->tail = NULL;
    memset(m->counts, 0, sizeof m->counts);
    m->total = 0;
    for (int i = 0; i < m->nlast; i++) {
        free(m->last_k[i]);
        free(m->last_v[i]);
    }
    m->nlast = 0;
    m->last_method[0] = m->last_path[0] = '\0';
    pthread_mutex_unlock(&m->mu);
}

void cx_mock_oauth_stop(cx_mock_oauth_t *m)
{
    if (m == NULL)
        return;
    MHD_stop_daemon(m->d);
    cx_mock_oauth_reset(m);
    for (size_t i = 0; i < m->nissued; i++)
        free(m->issued[i]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int cx_mock_oauth_port(const cx_mock_oauth_t *m)
{
    return m->port;
}

const char *cx_mock_oauth_url(const cx_mock_oauth_t *m, const char *path, char *buf, size_t cap)
{
    snprintf(buf, cap, "http://127.0.0.1:%d%s", m->port, path ? path : "");
    return buf;
}

void cx_mock_oauth_push(cx_mock_oauth_t *m, int status, const char *body, unsigned delay_ms)
{
    scripted_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return;
    s->status = status;
    s->body = body ? strdup(body) : NULL;
    s->delay_ms = delay_ms;
    pthread_mutex_lock(&m->mu);
    if (m->tail)
        m->tail->next = s;
    else
        m->head = s;
    m->tail = s;
    pthread_mutex_unlock(&m->mu);
}

void cx_mock_oauth_configure(cx_mock_oauth_t *m, int expires_in, int rotate_refresh,
                             unsigned delay_ms)
{
    pthread_mutex_lock(&m->mu);
    m->expires_in = expires_in;
    m->rotate = rotate_refresh;
    m->delay_ms = delay_ms;
    pthread_mutex_unlock(&m->mu);
}

unsigned cx_mock_oauth_count(cx_mock_oauth_t *m, const char *grant)
{
    unsigned n = 0;
    pthread_mutex_lock(&m->mu);
    if (grant == NULL)
        n = m->total;
    else
        for (size_t i = 0; i < sizeof m->counts / sizeof m->counts[0]; i++)
            if (strcmp(m->counts[i].grant, grant) == 0)
                n = m->counts[i].n;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int cx_mock_oauth_last(cx_mock_oauth_t *m, const char *param, char *out, size_t cap)
{
    int rc = -1;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nlast; i++)
        if (strcmp(m->last_k[i], param) == 0) {
            snprintf(out, cap, "%s", m->last_v[i]);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int cx_mock_oauth_last_request(cx_mock_oauth_t *m, char *method, size_t mcap, char *path,
                               size_t pcap)
{
    pthread_mutex_lock(&m->mu);
    snprintf(method, mcap, "%s", m->last_method);
    snprintf(path, pcap, "%s", m->last_path);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

const char *cx_mock_oauth_issued(cx_mock_oauth_t *m, size_t i)
{
    pthread_mutex_lock(&m->mu);
    const char *t = i < m->nissued ? m->issued[i] : NULL;
    pthread_mutex_unlock(&m->mu);
    return t;
}

const char *cx_mock_oauth_last_access_token(cx_mock_oauth_t *m)
{
    pthread_mutex_lock(&m->mu);
    const char *t = m->last_at;
    pthread_mutex_unlock(&m->mu);
    return t;
}

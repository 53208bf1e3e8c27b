/* outbound_sender: one sender process of the outbound tests (test_outbound).
 *
 * Sends one SendMessageCommand (channel whatsapp, account 1065, tenant t1, the given
 * client_message_id) from --threads threads at once through cx_outbound_send, with the Redis
 * intent store and the mock provider at --url (tests/harness/mock_provider.h's cx_mock_send).
 * test_outbound runs it
 *
 *   - twice at once with 8 threads each: the provider must receive exactly one request and
 *     every thread of both processes must report the same provider message id;
 *   - once, killed with SIGKILL while the provider holds its request, then again ("restart"):
 *     the intent must come back in doubt and the provider must not be called again.
 *
 * Protocol: after creating its stores, print "ready"; start when stdin reaches end of file;
 * then print one line per thread, "result <thread> <code name> <replayed> <state> <id|->",
 * and exit 0 when every call returned (whatever it returned).
 *
 *   outbound_sender --redis-port P --env E --url URL --cmid ID [--threads 8]
 *                   [--lease-ms 120000] [--wait-ms 15000] [--timeout-ms 10000]
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cx/http.h"
#include "cx/messaging/v1/messaging.cx.h"
#include "cx/outbound.h"
#include "mock_provider.h"

typedef struct opts_s {
    const char *env, *url, *cmid;
    int port, threads;
    unsigned lease_ms, wait_ms, timeout_ms;
} opts_t;

typedef struct shared_s {
    opts_t o;
    cx_outbound_t *ob;
    cx_mock_sender_t sender;
    pthread_barrier_t barrier;
    pthread_mutex_t out_mu;
} shared_t;

typedef struct worker_s {
    shared_t *sh;
    int index;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    cx_common_channel_ref_t ch;
    cx_common_channel_ref_init(&ch);
    ch.channel = "whatsapp";
    ch.account_id = "1065";
    cx_messaging_text_content_t text;
    cx_messaging_text_content_init(&text);
    text.body = "hello from the stress sender";
    cx_messaging_send_message_command_t m;
    cx_messaging_send_message_command_init(&m);
    m.channel = &ch;
    m.tenant_id = "t1";
    m.client_message_id = (char *)sh->o.cmid;
    m.to = "+14155550123";
    m.content_case = CX__MESSAGING__V1__SEND_MESSAGE_COMMAND__CONTENT_TEXT;
    m.text = &text;
    cx_outbound_command_t cmd = {.meta = &cx_messaging_send_message_command_meta,
                                 .msg = &m.base,
                                 .connector = "whatsapp",
                                 .account_id = "1065",
                                 .tenant_id = "t1",
                                 .result_meta = &cx_messaging_send_message_result_meta,
                                 .send = cx_mock_send,
                                 .send_ud = &sh->sender};
    cx_outbound_result_t *res = malloc(sizeof *res);
    if (res == NULL)
        return NULL;
    cx_arena_t arena;
    cx_arena_init(&arena, NULL, 1 << 20);
    cx_error_t err;
    cx_error_clear(&err);
    pthread_barrier_wait(&sh->barrier);
    int rc = cx_outbound_send(sh->ob, &cmd, &arena, res, &err);
    pthread_mutex_lock(&sh->out_mu);
    printf("result %d %s %d %s %s\n", w->index, cx_err_name(rc), res->replayed,
           cx_intent_state_name(res->state),
           res->intent.provider_message_id[0] ? res->intent.provider_message_id : "-");
    fflush(stdout);
    pthread_mutex_unlock(&sh->out_mu);
    cx_arena_release(&arena);
    free(res);
    return NULL;
}

static int parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.threads = 8, .lease_ms = 120000, .wait_ms = 15000, .timeout_ms = 10000};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--redis-port"))
            o->port = atoi(v);
        else if (!strcmp(k, "--env"))
            o->env = v;
        else if (!strcmp(k, "--url"))
            o->url = v;
        else if (!strcmp(k, "--cmid"))
            o->cmid = v;
        else if (!strcmp(k, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(k, "--lease-ms"))
            o->lease_ms = (unsigned)atoi(v);
        else if (!strcmp(k, "--wait-ms"))
            o->wait_ms = (unsigned)atoi(v);
        else if (!strcmp(k, "--timeout-ms"))
            o->timeout_ms = (unsigned)atoi(v);
        else
            return -1;
    }
    if (argc % 2 == 0 || !o->env || !o->url || !o->cmid || o->port <= 0 || o->threads <= 0 ||
        o->threads > 256)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static shared_t sh;
    if (parse(argc, argv, &sh.o) != 0) {
        fprintf(stderr, "usage: outbound_sender --redis-port P --env E --url URL --cmid ID "
                        "[options]\n");
        return 2;
    }
    cx_error_t err;
    cx_error_clear(&err);
    cx_redis_options_t ro = {.host = "127.0.0.1",
                             .port = sh.o.port,
                             .pool_size = sh.o.threads,
                             .connect_timeout_ms = 2000,
                             .command_timeout_ms = 5000};
    cx_intent_store_t *is = NULL;
    cx_http_client_t *http = NULL;
    cx_http_config_t hc = {.connector = "whatsapp",
                           .timeout_ms = sh.o.timeout_ms,
                           .max_attempts = 1,
                           .allow_loopback_http = 1,
                           .max_handles = sh.o.threads};
    int rc = cx_intent_store_redis(sh.o.env, &ro, NULL, &is, &err);
    if (rc == 0)
        rc = is->ops->ping(is, &err);
    if (rc == 0)
        rc = cx_http_client_new(&hc, &http, &err);
    cx_outbound_config_t oc = {.intents = is, .lease_ms = sh.o.lease_ms, .wait_ms = sh.o.wait_ms};
    if (rc == 0)
        rc = cx_outbound_new(&oc, &sh.ob, &err);
    if (rc != 0) {
        fprintf(stderr, "outbound_sender: %s: %s\n", cx_err_name(rc), err.message);
        return 1;
    }
    sh.sender = (cx_mock_sender_t){.http = http, .base_url = sh.o.url, .token = "TEST-TOKEN"};
    pthread_barrier_init(&sh.barrier, NULL, (unsigned)sh.o.threads);
    pthread_mutex_init(&sh.out_mu, NULL);
    worker_t *w = calloc((size_t)sh.o.threads, sizeof *w);
    pthread_t *t = calloc((size_t)sh.o.threads, sizeof *t);
    if (!w || !t)
        return 1;

    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    for (int i = 0; i < sh.o.threads; i++) {
        w[i].sh = &sh;
        w[i].index = i;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < sh.o.threads; i++)
        pthread_join(t[i], NULL);
    free(w);
    free(t);
    pthread_barrier_destroy(&sh.barrier);
    pthread_mutex_destroy(&sh.out_mu);
    cx_outbound_free(sh.ob);
    cx_http_client_free(http);
    cx_intent_store_destroy(is);
    return 0;
}

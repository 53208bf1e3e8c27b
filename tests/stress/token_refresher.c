/* token_refresher: one process of the multi-process refresh test (test_oauth).
 *
 * Two copies run against one Redis and one mock token endpoint, each with --threads threads
 * asking for the access token of one (tenant, account) at the same moment, the stored token
 * having expired. Each thread prints "ok <hex SHA-256 of the token it got>" (never the token
 * itself) or "err <code name>"; the test counts refreshes at the endpoint, outside the
 * processes, and compares the digests. Log lines go to stderr (the test checks them for
 * secrets).
 *
 * Protocol with the test: after connecting, print "ready" on stdout; start when stdin reaches
 * end of file, so every process starts together. Exit status 0 when every thread got a token.
 *
 *   token_refresher --port P --env E --token-url URL --tenant T --account A --key-hex HEX
 *                   --client-secret S [--threads 16] [--host H]
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cx/log.h"
#include "cx/oauth.h"

typedef struct opts_s {
    const char *host, *env, *token_url, *tenant, *account, *key_hex, *client_secret;
    int port, threads;
} opts_t;

typedef struct shared_s {
    opts_t o;
    cx_oauth_t *oauth;
    pthread_barrier_t go;
    pthread_mutex_t out_mu;
    atomic_int failures;
} shared_t;

static void *worker(void *ud)
{
    shared_t *sh = ud;
    char tok[CX_OAUTH_TOKEN_MAX];
    cx_error_t err = {0};
    pthread_barrier_wait(&sh->go);
    int rc =
        cx_oauth_access_token(sh->oauth, sh->o.tenant, sh->o.account, tok, sizeof tok, NULL, &err);
    pthread_mutex_lock(&sh->out_mu);
    if (rc == 0) {
        unsigned char d[32];
        unsigned int n;
        EVP_Digest(tok, strlen(tok), d, &n, EVP_sha256(), NULL);
        printf("ok ");
        for (int i = 0; i < 32; i++)
            printf("%02x", d[i]);
        printf("\n");
    } else {
        printf("err %s\n", cx_err_name(rc));
        atomic_fetch_add(&sh->failures, 1);
    }
    fflush(stdout);
    pthread_mutex_unlock(&sh->out_mu);
    memset(tok, 0, sizeof tok);
    return NULL;
}

static int parse_key(const char *hex, unsigned char key[32])
{
    if (hex == NULL || strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        key[i] = (unsigned char)v;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static shared_t sh;
    sh.o.host = "127.0.0.1";
    sh.o.threads = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--port") == 0)
            sh.o.port = atoi(v);
        else if (strcmp(k, "--host") == 0)
            sh.o.host = v;
        else if (strcmp(k, "--env") == 0)
            sh.o.env = v;
        else if (strcmp(k, "--token-url") == 0)
            sh.o.token_url = v;
        else if (strcmp(k, "--tenant") == 0)
            sh.o.tenant = v;
        else if (strcmp(k, "--account") == 0)
            sh.o.account = v;
        else if (strcmp(k, "--key-hex") == 0)
            sh.o.key_hex = v;
        else if (strcmp(k, "--client-secret") == 0)
            sh.o.client_secret = v;
        else if (strcmp(k, "--threads") == 0)
            sh.o.threads = atoi(v);
        else {
            fprintf(stderr, "token_refresher: unknown option %s\n", k);
            return 2;
        }
    }
    unsigned char key[32];
    if (sh.o.port <= 0 || sh.o.env == NULL || sh.o.token_url == NULL || sh.o.tenant == NULL ||
        sh.o.account == NULL || sh.o.client_secret == NULL || parse_key(sh.o.key_hex, key) != 0 ||
        sh.o.threads < 1 || sh.o.threads > 256) {
        fprintf(stderr, "token_refresher: missing or bad options\n");
        return 2;
    }
    cx_error_t err = {0};
    cx_logger_config_t lc = {.service = "token_refresher", .level = CX_LOG_DEBUG};
    cx_logger_t *lg;
    cx_token_store_t *st;
    cx_redis_options_t ro = {.host = sh.o.host,
                             .port = sh.o.port,
                             .pool_size = sh.o.threads + 2,
                             .command_timeout_ms = 2000};
    if (cx_logger_new(&lc, &lg) != 0 || cx_token_store_redis(sh.o.env, &ro, &st, &err) != 0) {
        fprintf(stderr, "token_refresher: %s\n", err.message);
        return 1;
    }
    cx_oauth_provider_t p = {.name = "google",
                             .strategy = CX_OAUTH_GOOGLE,
                             .authorize_url = sh.o.token_url,
                             .token_url = sh.o.token_url,
                             .client_id = "client-1",
                             .client_secret = sh.o.client_secret,
                             .redirect_uri = "https://app.example.com/oauth/google/callback"};
    cx_oauth_config_t cfg = {
        .provider = &p, .store = st, .token_key = key, .logger = lg, .http_timeout_ms = 5000};
    if (cx_oauth_new(&cfg, &sh.oauth, &err) != 0 || st->ops->ping(st, &err) != 0) {
        fprintf(stderr, "token_refresher: %s\n", err.message);
        return 1;
    }
    memset(key, 0, sizeof key);
    pthread_barrier_init(&sh.go, NULL, (unsigned)sh.o.threads);
    pthread_mutex_init(&sh.out_mu, NULL);
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    pthread_t *th = calloc((size_t)sh.o.threads, sizeof *th);
    if (th == NULL)
        return 1;
    for (int i = 0; i < sh.o.threads; i++)
        pthread_create(&th[i], NULL, worker, &sh);
    for (int i = 0; i < sh.o.threads; i++)
        pthread_join(th[i], NULL);
    free(th);
    int failures = atomic_load(&sh.failures);
    cx_oauth_free(sh.oauth);
    cx_token_store_destroy(st);
    cx_logger_free(lg);
    return failures == 0 ? 0 : 1;
}

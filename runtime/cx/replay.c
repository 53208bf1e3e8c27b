/* `cx replay`: captured requests sent to a running gateway (libcurl multi).
 *
 * Every case is loaded (and checked) before the first request goes out, so a bad capture stops
 * the run with one line instead of half a replay. Requests keep their method, path, query,
 * headers and exact body bytes; with --secrets, signature headers are recomputed (resign.c).
 * Up to --concurrency transfers run at once, started no faster than --rate per second. The
 * summary adds up the batch responses' summary objects ({processed, deduped, failed, queued}).
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "capture.h"
#include "cli.h"
#include "resign.h"

#define SUB "replay"
#define MAX_CASES 1000000
#define MAX_DEPTH 8
#define MAX_RESPONSE (4u << 20)

/* ---- Finding the cases ----------------------------------------------------------------------- */

typedef struct {
    char **paths;
    size_t n, cap;
} case_list_t;

static int add_case(case_list_t *l, const char *path)
{
    if (l->n == MAX_CASES)
        return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (p == NULL)
            return -1;
        l->paths = p;
        l->cap = cap;
    }
    size_t n = strlen(path) + 1;
    if ((l->paths[l->n] = malloc(n)) == NULL)
        return -1;
    memcpy(l->paths[l->n++], path, n);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A case directory, a request.json, or a tree whose directories holding request.json are
 * cases (walked in sorted order). Returns the number of cases found, or -1. */
static long find_cases(case_list_t *l, const char *path, int depth)
{
    char rj[4200];
    if (!cx_cli_is_dir(path))
        return cx_cli_is_file(path) ? (add_case(l, path) == 0 ? 1 : -1) : 0;
    snprintf(rj, sizeof rj, "%s/request.json", path);
    if (cx_cli_is_file(rj))
        return add_case(l, path) == 0 ? 1 : -1;
    if (depth >= MAX_DEPTH)
        return 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    case_list_t sub = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char child[4200];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (cx_cli_is_dir(child) && add_case(&sub, child) != 0)
            break;
    }
    closedir(d);
    qsort(sub.paths, sub.n, sizeof *sub.paths, cmp_str);
    long found = 0;
    for (size_t i = 0; i < sub.n; i++) {
        long k = found >= 0 ? find_cases(l, sub.paths[i], depth + 1) : 0;
        found = k < 0 ? -1 : found + k;
        free(sub.paths[i]);
    }
    free(sub.paths);
    return found;
}

/* ---- Transfers ---------------------------------------------------------------------------------
 */

typedef struct {
    cx_capture_t cap;
    char *url;
    struct curl_slist *headers;
} job_t;

typedef struct {
    CURL *easy;
    job_t *job;
    cx_buf_t body;
} xfer_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t n = size * nmemb;
    cx_buf_append(&x->body, data, n); /* past the bound the summary is simply not read */
    return n;
}

/* Builds the URL and the header list of a job. Returns 0 or -1 with why. */
static int prepare(job_t *j, const char *base, const char *secrets, char *why, size_t cap)
{
    size_t n = strlen(base) + strlen(j->cap.path) + strlen(j->cap.query) + 2;
    if ((j->url = malloc(n)) == NULL)
        return -1;
    snprintf(j->url, n, "%s%s%s%s", base, j->cap.path, j->cap.query[0] ? "?" : "", j->cap.query);
    for (size_t i = 0; i < j->cap.n_headers; i++) {
        const char *name = j->cap.headers[i].name;
        const char *value = j->cap.headers[i].value;
        /* libcurl writes these itself from what it actually sends. */
        if (!strcasecmp(name, "Host") || !strcasecmp(name, "Content-Length") ||
            !strcasecmp(name, "Transfer-Encoding") || !strcasecmp(name, "Connection") ||
            !strcasecmp(name, "Expect"))
            continue;
        char sig[256];
        const cx_resign_rule_t *rule = secrets ? cx_resign_rule(name) : NULL;
        if (rule) {
            if (j->cap.connector[0] == '\0') {
                snprintf(why, cap, "%s: cannot re-sign: the path is not /webhook/<connector>",
                         j->cap.dir);
                return -1;
            }
            if (cx_resign(rule, secrets, j->cap.connector, j->cap.body, j->cap.body_len, sig,
                          sizeof sig, why, cap) != 0)
                return -1;
            value = sig;
        }
        size_t ln = strlen(name) + strlen(value) + 3;
        char *line = malloc(ln);
        if (line == NULL)
            return -1;
        /* "Name;" is how libcurl sends a header with an empty value. */
        if (value[0])
            snprintf(line, ln, "%s: %s", name, value);
        else
            snprintf(line, ln, "%s;", name);
        struct curl_slist *s = curl_slist_append(j->headers, line);
        free(line);
        if (s == NULL)
            return -1;
        j->headers = s;
    }
    struct curl_slist *s = curl_slist_append(j->headers, "Expect:");
    if (s == NULL)
        return -1;
    j->headers = s;
    return 0;
}

static CURL *make_easy(xfer_t *x, long timeout_s)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    job_t *j = x->job;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(j->cap.method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(j->cap.method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->cap.method);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->cap.body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->cap.body_len);
    }
    return e;
}

/* ---- Results --------------------------------------------------------------------------------- */

typedef struct {
    size_t sent, transport_errors;
    size_t status_count[600];
    long long processed, deduped, failed, queued;
    double *latency_ms;
    size_t n_latency;
} stats_t;

static void add_summary(stats_t *st, const cx_buf_t *body)
{
    if (body->len == 0 || cx_buf_error(body))
        return;
    json_t *root = json_loadb(body->data, body->len, 0, NULL);
    json_t *s = json_object_get(root, "summary");
    if (json_is_object(s)) {
        st->processed += json_integer_value(json_object_get(s, "processed"));
        st->deduped += json_integer_value(json_object_get(s, "deduped"));
        st->failed += json_integer_value(json_object_get(s, "failed"));
        st->queued += json_integer_value(json_object_get(s, "queued"));
    }
    json_decref(root);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (i == 0)
        i = 1;
    return sorted[(i > n ? n : i) - 1];
}

static void progress(size_t done, size_t total, const stats_t *st, int final)
{
    const int width = 30;
    int fill = total ? (int)((double)done / (double)total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    size_t ok = 0;
    for (int s = 200; s < 300; s++)
        ok += st->status_count[s];
    fprintf(stderr, "\r[%s] %zu/%zu  2xx %zu  other %zu  errors %zu%s", bar, done, total, ok,
            st->sent - st->transport_errors - ok, st->transport_errors, final ? "\n" : "");
    fflush(stderr);
}

static void print_summary(const stats_t *st, double secs, int json)
{
    double p50 = percentile(st->latency_ms, st->n_latency, 50);
    double p99 = percentile(st->latency_ms, st->n_latency, 99);
    double max = st->n_latency ? st->latency_ms[st->n_latency - 1] : 0;
    if (json) {
        printf("{\"sent\":%zu,\"transportErrors\":%zu,\"statuses\":{", st->sent,
               st->transport_errors);
        int first = 1;
        for (int s = 0; s < 600; s++)
            if (st->status_count[s]) {
                printf("%s\"%d\":%zu", first ? "" : ",", s, st->status_count[s]);
                first = 0;
            }
        printf("},\"items\":{\"processed\":%lld,\"deduped\":%lld,\"failed\":%lld,\"queued\":%lld},"
               "\"latencyMs\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"seconds\":%.3f}\n",
               st->processed, st->deduped, st->failed, st->queued, p50, p99, max, secs);
        return;
    }
    printf("sent        %zu requests in %.2f s (%.1f/s)\n", st->sent, secs,
           secs > 0 ? (double)st->sent / secs : 0.0);
    printf("statuses   ");
    for (int s = 0; s < 600; s++)
        if (st->status_count[s])
            printf(" %d: %zu", s, st->status_count[s]);
    if (st->transport_errors)
        printf(" transport errors: %zu", st->transport_errors);
    printf("\n");
    printf("items       processed %lld, deduped %lld, failed %lld, queued %lld\n", st->processed,
           st->deduped, st->failed, st->queued);
    printf("latency ms  p50 %.3f, p99 %.3f, max %.3f\n", p50, p99, max);
}

/* ---- The command ------------------------------------------------------------------------------
 */

int cx_cmd_replay(int argc, char **argv)
{
    const char *to = NULL, *secrets = NULL, *v;
    uint64_t rate = 0, concurrency = 4, timeout_s = 30;
    int json = 0;
    case_list_t cases = {0};
    job_t *jobs = NULL;
    size_t n_jobs = 0;
    xfer_t *xfers = NULL;
    CURLM *multi = NULL;
    stats_t st;
    memset(&st, 0, sizeof st);
    char why[1024];
    int exit_code = CX_EXIT_USAGE;
    int curl_ready = 0;

    for (int i = 1; i < argc; i++) {
        int m;
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help(SUB);
            exit_code = CX_EXIT_OK;
            goto done;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--to", &v)) != 0) {
            if (m < 0)
                goto done;
            to = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--secrets", &v)) != 0) {
            if (m < 0)
                goto done;
            secrets = v;
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--rate", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_cli_parse_u64(v, 1, 1000000, &rate) != 0) {
                cx_cli_error(SUB, "--rate must be requests per second, 1 to 1000000");
                goto done;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--concurrency", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_cli_parse_u64(v, 1, 1024, &concurrency) != 0) {
                cx_cli_error(SUB, "--concurrency must be 1 to 1024");
                goto done;
            }
        } else if ((m = cx_cli_opt(SUB, argc, argv, &i, "--timeout", &v)) != 0) {
            if (m < 0)
                goto done;
            if (cx_cli_parse_u64(v, 1, 3600, &timeout_s) != 0) {
                cx_cli_error(SUB, "--timeout must be 1 to 3600 seconds");
                goto done;
            }
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            exit_code = cx_cli_bad_arg(SUB, argv[i]);
            goto done;
        } else {
            long k = find_cases(&cases, argv[i], 0);
            if (k < 0) {
                cx_cli_error(SUB, "out of memory (or more than %d cases)", MAX_CASES);
                exit_code = CX_EXIT_INTERNAL;
                goto done;
            }
            if (k == 0) {
                cx_cli_error(SUB, "%s: no captured request (request.json) found", argv[i]);
                exit_code = CX_EXIT_INVALID;
                goto done;
            }
        }
    }
    if (to == NULL) {
        cx_cli_error(SUB, "--to URL is required, e.g. --to http://127.0.0.1:8080");
        goto done;
    }
    if (strncmp(to, "http://", 7) != 0 && strncmp(to, "https://", 8) != 0) {
        cx_cli_error(SUB, "--to must be an http:// or https:// URL, got '%s'", to);
        goto done;
    }
    if (cases.n == 0) {
        cx_cli_error(SUB, "no captured requests given (see cx replay --help)");
        goto done;
    }
    char base[2048];
    snprintf(base, sizeof base, "%s", to);
    for (size_t n = strlen(base); n && base[n - 1] == '/';)
        base[--n] = '\0';

    /* Load every case first: a bad one stops the run before anything is sent. */
    exit_code = CX_EXIT_INTERNAL;
    if ((jobs = calloc(cases.n, sizeof *jobs)) == NULL ||
        (st.latency_ms = calloc(cases.n, sizeof *st.latency_ms)) == NULL ||
        (xfers = calloc(concurrency, sizeof *xfers)) == NULL)
        goto done;
    for (size_t i = 0; i < cases.n; i++) {
        n_jobs = i + 1;
        if (cx_capture_load(cases.paths[i], &jobs[i].cap, why, sizeof why) != 0 ||
            prepare(&jobs[i], base, secrets, why, sizeof why) != 0) {
            cx_cli_error(SUB, "%s", why);
            exit_code = CX_EXIT_INVALID;
            goto done;
        }
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto done;
    curl_ready = 1;
    if ((multi = curl_multi_init()) == NULL)
        goto done;
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)concurrency);
    int tty = isatty(STDERR_FILENO);
    double t0 = cx_cli_now_ms(), last_bar = 0;
    size_t next = 0, done_n = 0, running = 0;
    while (done_n < n_jobs) {
        /* Start transfers while there is a free slot and the rate allows. */
        while (next < n_jobs && running < concurrency &&
               (rate == 0 || cx_cli_now_ms() >= t0 + (double)next * 1000.0 / (double)rate)) {
            xfer_t *x = NULL;
            for (size_t s = 0; s < concurrency; s++)
                if (xfers[s].easy == NULL) {
                    x = &xfers[s];
                    break;
                }
            x->job = &jobs[next];
            cx_buf_init(&x->body, MAX_RESPONSE);
            if ((x->easy = make_easy(x, (long)timeout_s)) == NULL ||
                curl_multi_add_handle(multi, x->easy) != CURLM_OK)
                goto done;
            next++;
            running++;
        }
        int still;
        if (curl_multi_perform(multi, &still) != CURLM_OK)
            goto done;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer_t *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            st.sent++;
            if (msg->data.result != CURLE_OK) {
                st.transport_errors++;
                if (st.transport_errors == 1)
                    cx_cli_error(SUB, "%s: %s", x->job->url, curl_easy_strerror(msg->data.result));
            } else {
                long code = 0;
                curl_off_t us = 0;
                curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
                curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
                if (code >= 0 && code < 600)
                    st.status_count[code]++;
                st.latency_ms[st.n_latency++] = (double)us / 1000.0;
                add_summary(&st, &x->body);
            }
            curl_multi_remove_handle(multi, x->easy);
            curl_easy_cleanup(x->easy);
            x->easy = NULL;
            cx_buf_free(&x->body);
            running--;
            done_n++;
        }
        if (tty && cx_cli_now_ms() - last_bar >= 100) {
            progress(done_n, n_jobs, &st, 0);
            last_bar = cx_cli_now_ms();
        }
        if (done_n < n_jobs) {
            int wait_ms = 100;
            if (rate && next < n_jobs && running < concurrency) {
                double due = t0 + (double)next * 1000.0 / (double)rate - cx_cli_now_ms();
                wait_ms = due <= 0 ? 0 : due < 100 ? (int)due + 1 : 100;
            }
            curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
        }
    }
    if (tty)
        progress(done_n, n_jobs, &st, 1);
    qsort(st.latency_ms, st.n_latency, sizeof *st.latency_ms, cmp_double);
    print_summary(&st, (cx_cli_now_ms() - t0) / 1000.0, json);
    fflush(stdout);
    exit_code = st.transport_errors ? CX_EXIT_UNAVAILABLE : CX_EXIT_OK;

done:
    for (size_t s = 0; xfers && s < concurrency; s++)
        if (xfers[s].easy) {
            curl_multi_remove_handle(multi, xfers[s].easy);
            curl_easy_cleanup(xfers[s].easy);
            cx_buf_free(&xfers[s].body);
        }
    free(xfers);
    if (multi)
        curl_multi_cleanup(multi);
    if (curl_ready)
        curl_global_cleanup();
    for (size_t i = 0; i < n_jobs; i++) {
        cx_capture_free(&jobs[i].cap);
        free(jobs[i].url);
        curl_slist_free_all(jobs[i].headers);
    }
    free(jobs);
    free(st.latency_ms);
    for (size_t i = 0; i < cases.n; i++)
        free(cases.paths[i]);
    free(cases.paths);
    return exit_code;
}

/* Test harness: a real redis-server per test group (see redis_server.h). */
#define _GNU_SOURCE /* prctl, mkdtemp */

#include "redis_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define READY_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 5000

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A port nobody listens on right now: bind port 0, read what the kernel chose, close. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void dump_log(const cx_test_redis_t *r)
{
    char path[200];
    snprintf(path, sizeof path, "%s/redis.log", r->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "---- redis-server log (%s) ----\n", path);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Connects to the server with a receive/send timeout. Returns the socket or -1. */
static int dial(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends line + CRLF and reads the reply's first line (without CRLF) into out. */
static int send_line(int fd, const char *line, char *out, size_t cap)
{
    char buf[600];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t got = recv(fd, &c, 1, 0);
        if (got <= 0)
            return -1;
        if (c == '\n')
            break;
        if (c != '\r' && out && len + 1 < cap)
            out[len++] = c;
    }
    if (out && cap)
        out[len] = '\0';
    return 0;
}

int cx_test_redis_command(const cx_test_redis_t *r, const char *line, char *reply, size_t cap)
{
    int fd = dial(r->port, 1000);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (r->password[0]) {
        char auth[100], ok[64];
        snprintf(auth, sizeof auth, "AUTH %s", r->password);
        rc = send_line(fd, auth, ok, sizeof ok);
        if (rc == 0 && ok[0] != '+')
            rc = -1;
    }
    if (rc == 0)
        rc = send_line(fd, line, reply, cap);
    close(fd);
    return rc;
}

/* Forks and execs redis-server on r->port. argv is built before fork: between fork and exec
 * the child only calls async-signal-safe functions. */
static int spawn(cx_test_redis_t *r)
{
    const char *bin = getenv("CX_REDIS_SERVER");
    if (bin == NULL || bin[0] == '\0')
        bin = "/usr/bin/redis-server";
    char port[16], logpath[200];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(logpath, sizeof logpath, "%s/redis.log", r->dir);
    const char *argv[20];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--port";
    argv[argc++] = port;
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--daemonize";
    argv[argc++] = "no";
    argv[argc++] = "--loglevel";
    argv[argc++] = "warning";
    if (r->password[0]) {
        argv[argc++] = "--requirepass";
        argv[argc++] = r->password;
    }
    argv[argc] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(126); /* the test died before we got here */
#endif
        int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = open("/dev/null", O_RDONLY);
        if (log < 0 || null < 0 || chdir(r->dir) != 0)
            _exit(126);
        dup2(null, 0);
        dup2(log, 1);
        dup2(log, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    (void)parent;
    r->pid = pid;
    return 0;
}

/* Waits until the server answers PING (a NOAUTH error also proves it is up). */
static int wait_ready(cx_test_redis_t *r)
{
    long long deadline = mono_ms() + READY_TIMEOUT_MS;
    while (mono_ms() < deadline) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return -1; /* exited: port taken, bad binary... */
        }
        int fd = dial(r->port, 200);
        if (fd >= 0) {
            char reply[64];
            int rc = send_line(fd, "PING", reply, sizeof reply);
            close(fd);
            if (rc == 0 && (reply[0] == '+' || reply[0] == '-'))
                return 0;
        }
        sleep_ms(10);
    }
    return -1;
}

static int kill_and_reap(cx_test_redis_t *r)
{
    if (r->pid <= 0)
        return 0;
    kill(r->pid, SIGTERM);
    if (r->paused)
        kill(r->pid, SIGCONT); /* a stopped process handles SIGTERM only once continued */
    r->paused = 0;
    long long deadline = mono_ms() + STOP_TIMEOUT_MS;
    int status;
    for (;;) {
        pid_t got = waitpid(r->pid, &status, WNOHANG);
        if (got == r->pid || (got < 0 && errno == ECHILD))
            break;
        if (mono_ms() >= deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
            break;
        }
        sleep_ms(5);
    }
    r->pid = 0;
    return 0;
}

int cx_test_redis_start(cx_test_redis_t *r, const char *password)
{
    memset(r, 0, sizeof *r);
    if (password)
        snprintf(r->password, sizeof r->password, "%s", password);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/cx-redis-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(r->dir) == NULL) {
        fprintf(stderr, "redis harness: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    /* Another process may grab the port between our probe and the server's bind. */
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (r->port <= 0)
            break;
        if (spawn(r) != 0)
            break;
        if (wait_ready(r) == 0)
            return 0;
        kill_and_reap(r);
    }
    fprintf(stderr, "redis harness: redis-server did not start\n");
    dump_log(r);
    return -1;
}

int cx_test_redis_stop(cx_test_redis_t *r)
{
    return kill_and_reap(r);
}

int cx_test_redis_restart(cx_test_redis_t *r)
{
    if (r->pid > 0)
        kill_and_reap(r);
    if (spawn(r) != 0 || wait_ready(r) != 0) {
        fprintf(stderr, "redis harness: restart on port %d failed\n", r->port);
        dump_log(r);
        kill_and_reap(r);
        return -1;
    }
    return 0;
}

int cx_test_redis_pause(cx_test_redis_t *r)
{
    if (r->pid <= 0 || kill(r->pid, SIGSTOP) != 0)
        return -1;
    r->paused = 1;
    return 0;
}

int cx_test_redis_resume(cx_test_redis_t *r)
{
    if (r->pid <= 0 || kill(r->pid, SIGCONT) != 0)
        return -1;
    r->paused = 0;
    return 0;
}

void cx_test_redis_destroy(cx_test_redis_t *r)
{
    kill_and_reap(r);
    if (r->dir[0] == '\0')
        return;
    DIR *d = opendir(r->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[400];
            snprintf(path, sizeof path, "%s/%s", r->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(r->dir);
    r->dir[0] = '\0';
}

/* `cx`: the program of the connectors SDK (docs/cx.md).
 *
 *   cx serve      the webhook gateway (libmicrohttpd)
 *   cx parse      one captured request through the pipeline, offline
 *   cx replay     captured requests sent to a running gateway
 *   cx validate   canonical JSON checked against the schema
 *   cx dlq        dead letters: list, show, replay, purge (libcx: cx_dlq_cli)
 *   cx apikey     API keys of the internal routes (new, check)
 *   cx version    SemVer, schema-set digest, git commit
 *
 * Exit codes: 0 ok, 1 input invalid, 2 usage, 69 unavailable, 70 internal, 78 config.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "apikeys.h"
#include "cli.h"
#include "cx/cx.h"
#include "cx/audit.h"
#include "cx/dlq.h"
#include "cx_build_info.h"
#include "cx_git.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *help;
} command_t;

static const command_t COMMANDS[] = {
    {"serve", cx_cmd_serve, "run the webhook gateway",
     "usage: cx serve [--config FILE] [--listen HOST:PORT] [--secrets DIR]\n"
     "                [--env development|staging|production] [--redis HOST:PORT]\n"
     "                [--connector-lib PATH.so]... [--account CONNECTOR:ACCOUNT_ID=TENANT]...\n"
     "                [--connectors ID,ID...] [--log-level debug|info|warn|error|off]\n"
     "\n"
     "Hosts every connector (built in, and each --connector-lib shared object; --connectors\n"
     "or CX_CONNECTORS keeps only the ones named) behind\n"
     "  POST|GET /webhook/<connector>   the inbound pipeline\n"
     "  GET /health                     200 while the process runs\n"
     "  GET /ready                      200 when the stores answer, else 503\n"
     "  GET /metrics                    Prometheus text\n"
     "  POST /commands/<connector>/<capability>   a canonical command, sent exactly once\n"
     "                                  (API key: Authorization: Bearer <key>)\n"
     "  GET /oauth/<connector>/start|callback     OAuth authorisation (docs/oauth.md)\n"
     "Sources, later ones winning: defaults < --config FILE (JSON) < CX_ENV, CX_LISTEN,\n"
     "CX_SECRETS_DIR, CX_REDIS, CX_LOG_LEVEL < flags. --listen defaults to 127.0.0.1:8080.\n"
     "Staging and production refuse to start without Redis and their secrets (exit 78).\n"
     "The default handler only counts processed items; applications register their own\n"
     "handlers through the library API. SIGHUP re-reads secrets; SIGTERM/SIGINT drain.\n"
     "\n"
     "examples:\n"
     "  cx serve --secrets ./secrets --connector-lib ./libcx_test_connector.so \\\n"
     "           --account test:acc-1=acme\n"
     "  CX_ENV=production cx serve --config /etc/cx/serve.json --redis 10.0.0.5:6379\n"},
    {"parse", cx_cmd_parse, "run one captured request through the pipeline offline",
     "usage: cx parse [--connector NAME] --request DIR|request.json [--secrets DIR]\n"
     "                [--now UNIX_SECONDS] [--connector-lib PATH.so]...\n"
     "                [--account CONNECTOR:ACCOUNT_ID=TENANT]... [--log-level LEVEL]\n"
     "\n"
     "Prints ONE JSON object: {\"status\", \"body\", \"events\": [{\"type\", \"dedupeKey\",\n"
     "\"capability\", \"tenantId\", \"data\"}]}. The connector defaults to the one named by the\n"
     "captured path (/webhook/<connector>). Accounts come from accounts.json beside\n"
     "request.json and from --account; an account in neither fails as UNKNOWN_ACCOUNT.\n"
     "Secrets default to a secrets/ directory beside request.json. --now pins the clock.\n"
     "\n"
     "examples:\n"
     "  cx parse --connector-lib ./libcx_test_connector.so --request fixtures/test/batch \\\n"
     "           --account test:acc-1=acme --now 1764403200\n"
     "  cx parse --connector test --request case/request.json --secrets ./secrets \\\n"
     "           --connector-lib ./libcx_test_connector.so | python3 -m json.tool\n"},
    {"replay", cx_cmd_replay, "send captured requests to a running gateway",
     "usage: cx replay DIR... --to URL [--secrets DIR] [--rate N] [--concurrency N]\n"
     "                [--timeout SECONDS] [--json]\n"
     "\n"
     "Each DIR is a captured request (a directory with request.json, or the file itself) or a\n"
     "tree of them (sent in sorted order). Requests go to URL + their captured path. With\n"
     "--secrets, signature headers are recomputed with <DIR>/<connector>/<secret>\n"
     "(X-Hub-Signature-256: app_secret; X-Test-Signature: secret). --rate caps requests per\n"
     "second, --concurrency the transfers at once (default 4). A progress bar goes to stderr\n"
     "when it is a terminal; the summary (statuses, items processed/deduped/failed, p50/p99\n"
     "latency) to stdout, as JSON with --json. Exit 69 when a request got no response.\n"
     "\n"
     "examples:\n"
     "  cx replay fixtures/test --to http://127.0.0.1:8080 --secrets ./secrets\n"
     "  cx replay case1 case2 --to http://127.0.0.1:8080 --rate 50 --concurrency 8 --json\n"},
    {"validate", cx_cmd_validate, "check canonical JSON against the schema",
     "usage: cx validate TYPE FILE|-\n"
     "       cx validate --list\n"
     "\n"
     "TYPE is a full name (cx.messaging.v1.DirectMessage) or an event type\n"
     "(cx.messaging.v1.direct_message). Prints every violation as `path: rule: message` and\n"
     "exits 1 when there is any; decoding errors use the rule json.<error>. --list prints\n"
     "every type.\n"
     "\n"
     "examples:\n"
     "  cx validate cx.messaging.v1.DirectMessage message.json\n"
     "  echo '{\"messageId\": \"m1\"}' | cx validate cx.messaging.v1.direct_message -\n"},
    {"dlq", cx_dlq_cli, "list, show, replay or purge dead letters",
     /* the same text as `cx dlq --help` (runtime/src/inbound/dlq_cli.c) */
     "usage: cx dlq list   [--limit N] [--offset N] [--json]\n"
     "       cx dlq show   ID\n"
     "       cx dlq replay ID... | --all\n"
     "       cx dlq purge  ID... | --all | --before UNIX_SECONDS\n"
     "options: --redis HOST:PORT (CX_REDIS)   --env development|staging|production (CX_ENV)\n"
     "         --redis-password-file FILE      --queue NAME (default inbound)\n"
     "         --secrets DIR (CX_SECRETS_DIR)  --account CONNECTOR:ACCOUNT_ID=TENANT ...\n"
     "\n"
     "Dead letters are items that failed permanently, were invalid, or exhausted their retries.\n"
     "list prints the oldest first; show prints one with its canonical event as JSON (it holds\n"
     "personal data: for operators, not for logs). replay claims the item's dedupe key (a replay\n"
     "and a provider duplicate never both run) and queues it for the workers of `cx serve`;\n"
     "purge removes dead letters. Exit codes: 0 ok, 1 some item not found or not replayed,\n"
     "2 usage, 69 Redis unavailable, 78 configuration.\n"
     "\n"
     "examples:\n"
     "  cx dlq list --redis 127.0.0.1:6379 --env production\n"
     "  cx dlq replay 'dm:whatsapp:123:msg:wamid.X' --redis 127.0.0.1:6379 --env production\n"},
    {"audit", cx_audit_cli, "verify, show or trim the tamper-evident audit trail",
     /* the library's command (cx/audit.h, docs/audit.md) */
     "usage: cx audit verify [--tenant T] STORE KEY\n"
     "       cx audit show --correlation-id ID [--tenant T] STORE KEY\n"
     "       cx audit retain --max-age DAYS [--tenant T] STORE KEY\n"
     "  STORE: --dir DIR [--checkpoint-dir DIR] | --redis HOST:PORT [--env ENV]\n"
     "         [--redis-password-file F]\n"
     "  KEY:   --secrets DIR     (runtime/audit_key, audit_key.previous)\n"
     "  environment: CX_AUDIT_DIR, CX_REDIS, CX_ENV, CX_SECRETS_DIR (flags win)\n"
     "\n"
     "verify walks every tenant's chain (or one) from its genesis and checks each record's MAC\n"
     "and the signed checkpoints: an edited, removed, reordered, forged or truncated record is\n"
     "reported with its sequence number. show prints the verified records of one correlation\n"
     "id as JSON lines. retain drops records older than DAYS and moves the checkpoint. Exit\n"
     "codes: 0 intact, 1 a chain is broken, 2 usage, 69 store unavailable, 78 configuration.\n"
     "\n"
     "examples:\n"
     "  cx audit verify --redis 127.0.0.1:6379 --env production --secrets /run/secrets/cx\n"
     "  cx audit show --correlation-id 6f1c... --dir /var/lib/cx/audit --secrets ./secrets\n"},
    {"apikey", cx_cmd_apikey, "create an API key for the internal routes of cx serve",
     "usage: cx apikey new --id ID --tenant T... --capability C... [--connector C]...\n"
     "                     [--append FILE]\n"
     "       cx apikey check FILE\n"
     "\n"
     "new prints a fresh key (cxk_ + 43 base64url characters, 256 random bits) on the first\n"
     "line, and on the second the line to store in the key file (default\n"
     "<secrets>/runtime/api_keys; config api_keys_file): `ID sha256:<hex> tenants=...\n"
     "connectors=... capabilities=...`. The key is shown only once; the server keeps only its\n"
     "SHA-256. With --append FILE the line is appended to FILE (created 0600; an id already in\n"
     "it is refused) and only the key is printed. Send SIGHUP to cx serve to load it.\n"
     "--tenant, --capability and --connector repeat; * means any. Capabilities are the\n"
     "outbound capability ids (outbound_messages, ...) and `oauth` (GET\n"
     "/oauth/<connector>/start). check parses a key file and prints each id with its grants.\n"
     "\n"
     "examples:\n"
     "  cx apikey new --id billing --tenant acme --capability outbound_messages\n"
     "  cx apikey new --id onboarding --tenant '*' --connector whatsapp --capability oauth \\\n"
     "                --append /run/secrets/cx/runtime/api_keys\n"},
    {"version", cx_cmd_version, "print the version, schema-set digest and git commit",
     "usage: cx version\n"
     "\n"
     "Prints three lines: `cx <SemVer>`, `schemas sha256:<digest>` (SHA-256 over the bytes of\n"
     "schemas/**/*.proto concatenated in sorted path order) and `commit <short hash>` (at\n"
     "configure time, or unknown). Nothing in it depends on when it was built.\n"
     "\n"
     "examples:\n"
     "  cx version\n"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void overview(FILE *f)
{
    fprintf(f, "usage: cx <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "  %-9s %s\n", "help", "show the help of a command (cx help serve)");
    fprintf(f, "\nexit codes: 0 ok, 1 input invalid, 2 usage, 69 unavailable, 70 internal, "
               "78 config\n");
}

int cx_cli_help(const char *subcommand)
{
    if (subcommand == NULL) {
        overview(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, subcommand) == 0) {
            fputs(COMMANDS[i].help, stdout);
            return 0;
        }
    return -1;
}

int cx_cmd_version(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (cx_cli_is_help(argv[i])) {
            cx_cli_help("version");
            return CX_EXIT_OK;
        }
        return cx_cli_bad_arg("version", argv[i]);
    }
    printf("cx %s\nschemas sha256:%s\ncommit %s\n", CX_VERSION_STRING, CX_SCHEMA_DIGEST,
           CX_GIT_COMMIT);
    return CX_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        overview(stderr);
        return CX_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || cx_cli_is_help(cmd)) {
        if (argc > 2 && cx_cli_help(argv[2]) != 0) {
            cx_cli_error(NULL, "no command '%s' (see cx help)", argv[2]);
            return CX_EXIT_USAGE;
        }
        if (argc <= 2)
            cx_cli_help(NULL);
        return CX_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0)
        return cx_cmd_version(1, argv + 1);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, cmd) == 0)
            return COMMANDS[i].fn(argc - 1, argv + 1);
    cx_cli_error(NULL, "no command '%s' (see cx help)", cmd);
    return CX_EXIT_USAGE;
}

"""`cx serve`'s outbound routes over real loopback HTTP with a real redis-server.

POST /commands/<connector>/<capability> with API keys (exactly once: a command sent twice, or
by 8 clients at once, or through two gateways sharing Redis, reaches the provider once and every
answer carries the same provider message id; 401/403/400/404/422/502 without a provider request
where none is due), GET /oauth/<connector>/start (302 with PKCE and state) and /callback (code
exchange checked against the PKCE challenge, token stored and then used by a command; a reused,
unknown or denied state is 400), a revoked grant, SIGHUP reloading the key file, the audit
trail, and no API key, token, code, state or Authorization header in any log line.

The provider is a loopback mock in this file: the WhatsApp Cloud API messages endpoint (the
built-in whatsapp connector is pointed at it with graph_api_base_url) and an OAuth token
endpoint that checks code_verifier against the code_challenge the authorisation carried.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socketserver
import threading
import urllib.parse

import cxtest
from cxtest import Redis, Serve, Workdir, wait_until

ACCOUNT = "1065"            # registered for acme in the accounts registry, file token
OAUTH_ACCOUNT = "2000"      # not registered: authorised by acme through OAuth
FILE_TOKEN = "EAAG-file-token-" + secrets.token_hex(8)
CLIENT_ID = "cx-test-client"
CLIENT_SECRET = "client-secret-" + secrets.token_hex(8)


class Mock:
    """The provider: POST /v21.0/<account>/messages and an OAuth token endpoint /token."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []        # (path, headers dict lower-case, body bytes)
        self.script = []          # (status, body) answers for the messages endpoint
        self.codes = {}           # code -> (code_challenge, redirect_uri)
        self.token_requests = []  # (grant_type, ok)
        self.token_script = []    # (status, body) answers for /token
        self.issued = []
        self.n = 0
        self.release = threading.Event()
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if self.path == "/token":
                    return self.reply(*mock.token(body))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with mock.lock:
                    mock.requests.append((self.path, headers, body))
                    mock.n += 1
                    n = mock.n
                    step = mock.script.pop(0) if mock.script else None
                if step and step[0] == "hang":
                    mock.release.wait(step[1])  # past the client's timeout: it gives up
                    return None
                if step:
                    return self.reply(*step)
                self.reply(200, {"messaging_product": "whatsapp",
                                 "contacts": [{"input": "x", "wa_id": "14155550123"}],
                                 "messages": [{"id": f"wamid.mock-{n}"}]})

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up on a hanging answer

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def token(self, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        grant = form.get("grant_type", "")
        with self.lock:
            if self.token_script:
                self.token_requests.append((grant, False))
                return self.token_script.pop(0)
            ok = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
            if grant == "authorization_code":
                want = self.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                ok = ok and want is not None and want[0] == challenge and \
                    form.get("redirect_uri") == want[1]
            elif grant != "refresh_token":
                ok = False
            self.token_requests.append((grant, ok))
            if not ok:
                return 400, {"error": "invalid_grant"}
            at, rt = "mockat-" + secrets.token_hex(12), "mockrt-" + secrets.token_hex(12)
            self.issued += [at, rt]
            return 200, {"access_token": at, "refresh_token": rt, "token_type": "Bearer",
                         "expires_in": 3600}

    def count(self):
        with self.lock:
            return len(self.requests)

    def last(self):
        with self.lock:
            return self.requests[-1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


mock = None
redis = None
work = None
gw = None
keys = {}  # name -> key
CODES = []  # authorisation codes handed to the callback


def new_code(q):
    code = "code-" + secrets.token_hex(8)
    mock.codes[code] = (q["code_challenge"], q["redirect_uri"])
    CODES.append(code)
    return code


def new_key(name, *args):
    rc, out, err = cxtest.run_cx(["apikey", "new", "--id", name, *args, "--append",
                                  os.path.join(work.secrets, "runtime", "api_keys")])
    assert rc == 0, (rc, err)
    key = out.strip()
    assert key.startswith("cxk_") and len(key) == 47 and "\n" not in key, out
    keys[name] = key
    return key


def config(extra=None):
    cfg = {"secrets_dir": "secrets", "audit_dir": "audit",
           "accounts": {"whatsapp": {ACCOUNT: "acme"}},
           "oauth": {"redirect_base_url": "http://127.0.0.1:8080",
                     "state_ttl_s": 600,
                     "providers": {"whatsapp": {
                         "strategy": "standard", "client_id": CLIENT_ID,
                         "authorize_url": mock.url + "/authorize",
                         "token_url": mock.url + "/token",
                         "scope": "whatsapp_business_messaging"}}}}
    cfg.update(extra or {})
    return cfg


def start(name="serve", extra_args=()):
    return Serve(work, ["--config", work.file("serve.json"), "--redis", redis.addr,
                        "--connectors", "whatsapp", *extra_args], name=name)


def setup():
    global mock, redis, work, gw
    mock = Mock()
    redis = Redis()
    work = Workdir()
    work.write_secret("whatsapp", "graph_api_base_url", mock.url)
    work.write_secret(f"whatsapp/accounts/{ACCOUNT}", "access_token", FILE_TOKEN)
    work.write_secret("whatsapp", "oauth_client_secret", CLIENT_SECRET)
    work.write_secret("runtime", "token_key", secrets.token_hex(32))
    work.write_secret("runtime", "audit_key", secrets.token_hex(32))
    new_key("sender", "--tenant", "acme", "--capability", "outbound_messages")
    new_key("globex-sender", "--tenant", "globex", "--capability", "outbound_messages")
    new_key("reader", "--tenant", "acme", "--capability", "inbound_messages")
    new_key("onboarding", "--tenant", "acme", "--connector", "whatsapp", "--capability", "oauth")
    with open(work.file("serve.json"), "w") as f:
        json.dump(config(), f)
    gw = start()


def teardown():
    if gw:
        gw.stop()
    if redis:
        redis.cleanup()
    if mock:
        mock.stop()
    if work:
        work.cleanup()


def command(cid, account=ACCOUNT, tenant="acme", text="hello", **over):
    c = {"channel": {"channel": "whatsapp", "accountId": account}, "tenantId": tenant,
         "clientMessageId": cid, "to": "+14155550123", "text": {"body": text}}
    c.update(over)
    return c


def post(cmd, key="sender", path="/commands/whatsapp/outbound_messages", server=None, raw=None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = "Bearer " + keys.get(key, key)
    body = raw if raw is not None else json.dumps(cmd).encode()
    status, hdrs, data = (server or gw).request("POST", path, body, headers)
    return status, json.loads(data), hdrs


def get(path, key=None, accept=None, server=None):
    headers = {}
    if key is not None:
        headers["Authorization"] = "Bearer " + keys.get(key, key)
    if accept:
        headers["Accept"] = accept
    return (server or gw).request("GET", path, None, headers)


# ---- cx apikey -----------------------------------------------------------------------------------

def test_apikey_new_prints_the_key_once_and_a_hashed_line():
    rc, out, err = cxtest.run_cx(["apikey", "new", "--id", "ops", "--tenant", "acme", "--tenant",
                                  "globex", "--capability", "outbound_messages"])
    assert rc == 0, err
    key, line = out.strip().split("\n")
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert line == (f"ops sha256:{digest} tenants=acme,globex connectors=* "
                    "capabilities=outbound_messages"), line
    assert key not in err
    # Two keys are never the same.
    rc, out2, _ = cxtest.run_cx(["apikey", "new", "--id", "ops", "--tenant", "acme",
                                 "--capability", "oauth"])
    assert rc == 0 and out2.split("\n")[0] != key
    # Usage errors and the file check.
    assert cxtest.run_cx(["apikey", "new", "--id", "x"])[0] == 2
    assert cxtest.run_cx(["apikey", "new", "--id", "x", "--tenant", "Acme!",
                          "--capability", "oauth"])[0] == 2
    rc, out, err = cxtest.run_cx(["apikey", "check",
                                  os.path.join(work.secrets, "runtime", "api_keys")])
    assert rc == 0 and "sender tenants=acme connectors=* capabilities=outbound_messages" in out, \
        (out, err)
    assert "sha256" not in out
    # A duplicate id is refused by --append.
    rc, _, err = cxtest.run_cx(["apikey", "new", "--id", "sender", "--tenant", "acme",
                                "--capability", "oauth", "--append",
                                os.path.join(work.secrets, "runtime", "api_keys")])
    assert rc == 78 and "already has a key with id sender" in err, err


# ---- POST /commands ------------------------------------------------------------------------------

def test_command_sent_twice_reaches_the_provider_once():
    n = mock.count()
    s1, r1, h1 = post(command("twice-1"))
    assert s1 == 200 and r1["ok"] and r1["state"] == "done" and not r1["replayed"], r1
    assert r1["intentKey"] == "whatsapp:outbound:acme:twice-1", r1
    assert r1["providerMessageId"].startswith("wamid.mock-"), r1
    assert r1["result"]["status"] == "SEND_MESSAGE_STATUS_ACCEPTED", r1
    assert h1.get("cache-control") == "no-store"
    s2, r2, _ = post(command("twice-1"))
    assert s2 == 200 and r2["replayed"] and r2["state"] == "done", r2
    assert r2["providerMessageId"] == r1["providerMessageId"], (r1, r2)
    assert mock.count() == n + 1, "the replay called the provider"
    path, headers, body = mock.last()
    assert path == f"/v21.0/{ACCOUNT}/messages", path
    assert headers["authorization"] == "Bearer " + FILE_TOKEN
    sent = json.loads(body)
    assert sent["to"] == "+14155550123" and sent["text"]["body"] == "hello", sent
    assert sent["biz_opaque_callback_data"] == r1["intentKey"], sent


def test_eight_clients_at_once_one_provider_request():
    n = mock.count()
    results = [None] * 8

    def one(i):
        results[i] = post(command("burst-1"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = set()
    for status, body, _ in results:
        assert status == 200, body
        ids.add(body["providerMessageId"])
    assert len(ids) == 1, ids
    assert mock.count() == n + 1
    assert sum(1 for _, b, _ in results if not b["replayed"]) == 1, results


def test_missing_or_bad_key_is_401_and_nothing_is_sent():
    n = mock.count()
    status, body, hdrs = post(command("nokey-1"), key=None)
    assert status == 401 and body["errorCode"] == "API_KEY_MISSING", body
    assert body["errorClass"] == "auth" and hdrs.get("www-authenticate", "").startswith("Bearer")
    status, body, _ = post(command("nokey-1"), key="cxk_" + "A" * 43)
    assert status == 401 and body["errorCode"] == "API_KEY_INVALID", body
    status, body, _ = post(command("nokey-1"), key=keys["sender"] + "x")
    assert status == 401 and body["errorCode"] == "API_KEY_INVALID", body
    status, _, data = gw.request("POST", "/commands/whatsapp/outbound_messages",
                                 json.dumps(command("nokey-1")).encode(),
                                 {"Authorization": "Basic " + keys["sender"]})
    assert status == 401 and json.loads(data)["errorCode"] == "API_KEY_MISSING"
    assert mock.count() == n
    # The intent was never claimed: a valid key sends it now.
    status, body, _ = post(command("nokey-1"))
    assert status == 200 and not body["replayed"], body
    values = gw.metrics()
    assert cxtest.metric(values, "api_auth_failures_total", route="commands",
                         error_code="API_KEY_INVALID") >= 2


def test_key_scopes_are_403():
    n = mock.count()
    status, body, _ = post(command("scope-1"), key="globex-sender")
    assert status == 403 and body["errorCode"] == "API_KEY_FORBIDDEN" and \
        "tenant" in body["message"], body
    status, body, _ = post(command("scope-1"), key="reader")
    assert status == 403 and body["errorCode"] == "API_KEY_FORBIDDEN", body
    # globex may send for globex, but not from acme's registered account.
    status, body, _ = post(command("scope-2", tenant="globex"), key="globex-sender")
    assert status == 403 and body["errorCode"] == "ACCOUNT_FORBIDDEN", body
    # Nor from an account nobody registered or authorised.
    status, body, _ = post(command("scope-3", account="3000"))
    assert status == 403 and body["errorCode"] == "ACCOUNT_FORBIDDEN", body
    assert mock.count() == n


def test_invalid_commands_are_400_with_the_validators_error():
    n = mock.count()
    bad = command("inv-1")
    del bad["to"]
    bad["text"] = {"body": ""}
    status, body, _ = post(bad)
    assert status == 400 and body["errorCode"] == "VALIDATION", body
    paths = {v["path"] for v in body["violations"]}
    assert "to" in paths and "text.body" in paths, body
    status, body, _ = post(None, raw=b"{not json")
    assert status == 400 and body["errorCode"] == "JSON", body
    status, body, _ = post(command("inv-2", extra=1))
    assert status == 400 and body["errorCode"] == "UNKNOWN_FIELD" and body["path"], body
    mism = command("inv-3")
    mism["channel"]["channel"] = "messenger"
    status, body, _ = post(mism)
    assert status == 400 and body["errorCode"] == "CONNECTOR_MISMATCH", body
    assert mock.count() == n


def test_unknown_connector_or_capability_is_404():
    for path in ("/commands/nope/outbound_messages", "/commands/whatsapp/email_outbound",
                 "/commands/whatsapp/inbound_messages", "/commands/whatsapp",
                 "/commands/whatsapp/outbound_messages/x"):
        status, body, _ = post(command("nf-1"), path=path)
        assert status == 404 and body["errorCode"] == "NOT_FOUND", (path, body)
    assert gw.request("GET", "/commands/whatsapp/outbound_messages")[0] == 405


def test_permanent_rejection_is_422_stored_and_replayed():
    n = mock.count()
    mock.script.append((400, {"error": {"message": "Re-engagement message", "type":
                                        "OAuthException", "code": 131047,
                                        "fbtrace_id": "Ab1"}}))
    status, body, _ = post(command("rej-1"))
    assert status == 422 and body["state"] == "failed" and not body["retryable"], body
    assert body["errorCode"] == "PROVIDER_REJECTED" and body["providerCode"] == "131047", body
    assert body["errorClass"] == "provider"
    assert body["result"]["error"]["cxCode"] == "REENGAGEMENT_WINDOW", body
    status, body2, _ = post(command("rej-1"))
    assert status == 422 and body2["replayed"] and body2["providerCode"] == "131047", body2
    assert mock.count() == n + 1


def test_provider_failure_is_502_and_the_command_can_be_sent_again():
    n = mock.count()
    mock.script.extend([(500, {"error": {"message": "down", "code": 2}})] * 4)
    status, body, _ = post(command("5xx-1"))
    assert status == 502 and body["errorCode"] == "PROVIDER" and body["retryable"], body
    assert body["state"] == "none", body
    assert mock.count() == n + 4, "the client retries a 5xx within its attempt bound"
    status, body, _ = post(command("5xx-1"))
    assert status == 200 and not body["replayed"], body


def test_no_answer_after_sending_is_504_in_doubt_and_never_resent():
    n = mock.count()
    mock.release.clear()
    mock.script.append(("hang", 30))  # the connector's client gives up after 10 s
    try:
        status, body, _ = post(command("doubt-1"))
    finally:
        mock.release.set()
    assert status == 504 and body["errorCode"] == "IN_DOUBT" and body["state"] == "in_doubt", \
        body
    assert not body["retryable"] and body["errorClass"] == "provider", body
    for _ in range(3):
        status, body, _ = post(command("doubt-1"))
        assert status == 504 and body["replayed"] and body["state"] == "in_doubt", body
    assert mock.count() == n + 1, "an in-doubt command was sent again"


def test_key_file_errors_are_refused_whole():
    cases = {
        "no hash": "a tenants=acme capabilities=oauth\n",
        "short hash": "a sha256:abcd tenants=acme capabilities=oauth\n",
        "unknown attribute": f"a sha256:{'1' * 64} tenants=acme capabilities=oauth role=x\n",
        "no capabilities": f"a sha256:{'1' * 64} tenants=acme\n",
        "bad tenant": f"a sha256:{'1' * 64} tenants=Acme capabilities=oauth\n",
        "bad capability": f"a sha256:{'1' * 64} tenants=acme capabilities=send_all\n",
        "duplicate id": f"a sha256:{'1' * 64} tenants=acme capabilities=oauth\n"
                        f"a sha256:{'2' * 64} tenants=acme capabilities=oauth\n",
        "duplicate hash": f"a sha256:{'1' * 64} tenants=acme capabilities=oauth\n"
                          f"b sha256:{'1' * 64} tenants=acme capabilities=oauth\n",
        "nul byte": f"a sha256:{'1' * 64} tenants=acme capabilities=oauth\0\n",
    }
    path = work.file("keys-check")
    for what, text in cases.items():
        with open(path, "w") as f:
            f.write(text)
        rc, out, err = cxtest.run_cx(["apikey", "check", path])
        assert rc == 1 and err.startswith("cx apikey: ") and out == "", (what, rc, out, err)
        assert "1111" not in err, "a hash in an error line"
    with open(path, "w") as f:
        f.write(f"# comment\n\n  a sha256:{'1' * 64} tenants=acme,globex capabilities=* \n")
    rc, out, err = cxtest.run_cx(["apikey", "check", path])
    assert rc == 0 and out == "a tenants=acme,globex connectors=* capabilities=*\n", (out, err)


# ---- OAuth ---------------------------------------------------------------------------------------

def start_oauth(account=OAUTH_ACCOUNT, tenant="acme", key="onboarding"):
    status, hdrs, data = get(f"/oauth/whatsapp/start?tenant={tenant}&account={account}", key=key)
    assert status == 302, (status, data)
    loc = hdrs["location"]
    assert json.loads(data)["authorizeUrl"] == loc
    return loc, dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))


def test_oauth_start_redirects_with_pkce_and_state():
    loc, q = start_oauth()
    assert loc.startswith(mock.url + "/authorize?"), loc
    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID, q
    assert q["redirect_uri"] == "http://127.0.0.1:8080/oauth/whatsapp/callback", q
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43, q
    assert len(q["state"]) == 43 and q["scope"] == "whatsapp_business_messaging", q
    _, q2 = start_oauth()
    assert q2["state"] != q["state"] and q2["code_challenge"] != q["code_challenge"]
    # The start needs a key with the oauth grant, for that tenant.
    assert get(f"/oauth/whatsapp/start?tenant=acme&account={OAUTH_ACCOUNT}")[0] == 401
    status, _, data = get(f"/oauth/whatsapp/start?tenant=acme&account={OAUTH_ACCOUNT}",
                          key="sender")
    assert status == 403 and json.loads(data)["errorCode"] == "API_KEY_FORBIDDEN", data
    status, _, data = get(f"/oauth/whatsapp/start?tenant=globex&account={OAUTH_ACCOUNT}",
                          key="onboarding")
    assert status == 403, data
    status, _, data = get("/oauth/whatsapp/start?tenant=acme", key="onboarding")
    assert status == 400 and json.loads(data)["errorCode"] == "OAUTH_BAD_REQUEST", data
    assert get("/oauth/messenger/start?tenant=acme&account=1", key="onboarding")[0] == 404
    assert get("/oauth/whatsapp/other", key="onboarding")[0] == 404


def test_oauth_callback_stores_the_token_and_a_command_uses_it():
    # No OAuth token yet: the account is neither registered nor authorised.
    status, body, _ = post(command("oauth-0", account=OAUTH_ACCOUNT))
    assert status == 403 and body["errorCode"] == "ACCOUNT_FORBIDDEN", body
    _, q = start_oauth()
    code = new_code(q)
    status, hdrs, data = get(f"/oauth/whatsapp/callback?code={code}&state={q['state']}")
    assert status == 200, data
    body = json.loads(data)
    assert body == {"ok": True, "correlationId": body["correlationId"], "connector": "whatsapp",
                    "tenantId": "acme", "accountId": OAUTH_ACCOUNT, "status": "connected"}, body
    assert mock.token_requests[-1] == ("authorization_code", True), mock.token_requests
    assert hdrs.get("cache-control") == "no-store"
    token = mock.issued[-2]
    # The stored token is what the connector sends with, for acme's account 2000.
    n = mock.count()
    status, body, _ = post(command("oauth-1", account=OAUTH_ACCOUNT))
    assert status == 200, body
    assert mock.count() == n + 1
    path, headers, _ = mock.last()
    assert path == f"/v21.0/{OAUTH_ACCOUNT}/messages" and \
        headers["authorization"] == "Bearer " + token, (path, headers)
    # The file token still serves the registered account.
    status, body, _ = post(command("oauth-2"))
    assert status == 200 and mock.last()[1]["authorization"] == "Bearer " + FILE_TOKEN


def test_oauth_state_is_single_use_and_errors_are_400():
    _, q = start_oauth(account="2001")
    code = new_code(q)
    cb = f"/oauth/whatsapp/callback?code={code}&state={q['state']}"
    assert get(cb)[0] == 200
    exchanges = len(mock.token_requests)
    status, _, data = get(cb)
    assert status == 400 and json.loads(data)["errorCode"] == "OAUTH_STATE_INVALID", data
    status, _, data = get("/oauth/whatsapp/callback?code=x&state=" + "A" * 43)
    assert status == 400 and json.loads(data)["errorCode"] == "OAUTH_STATE_INVALID", data
    assert len(mock.token_requests) == exchanges, "a bad state reached the token endpoint"
    _, q = start_oauth(account="2002")
    status, hdrs, data = get(f"/oauth/whatsapp/callback?error=access_denied&error_description="
                             f"%3Cscript%3E&state={q['state']}", accept="text/html")
    assert status == 400 and hdrs["content-type"].startswith("text/html"), (status, hdrs)
    assert b"OAUTH_ACCESS_DENIED" in data and b"<script>" not in data, data
    status, _, data = get(f"/oauth/whatsapp/callback?error=access_denied&state={q['state']}")
    assert status == 400 and json.loads(data)["errorCode"] == "OAUTH_ACCESS_DENIED", data
    status, _, data = get("/oauth/whatsapp/callback?state=" + q["state"])
    assert status == 400 and json.loads(data)["errorCode"] == "OAUTH_BAD_REQUEST", data
    # A code the provider refuses: 502, and the state is spent.
    status, _, data = get(f"/oauth/whatsapp/callback?code=unknown-code&state={q['state']}")
    assert status == 502 and json.loads(data)["errorCode"] == "PROVIDER_REJECTED", data
    assert get(f"/oauth/whatsapp/callback?code=unknown-code&state={q['state']}")[0] == 400


def test_a_revoked_grant_makes_the_integration_unhealthy_without_a_loop():
    _, q = start_oauth(account="2003")
    code = new_code(q)
    assert get(f"/oauth/whatsapp/callback?code={code}&state={q['state']}")[0] == 200
    n, t = mock.count(), len(mock.token_requests)
    # The provider refuses the token; the refresh it triggers is refused too (revoked).
    mock.script.append((401, {"error": {"message": "Session expired", "type": "OAuthException",
                                        "code": 190}}))
    mock.token_script.append((400, {"error": "invalid_grant"}))
    status, body, _ = post(command("revoked-1", account="2003"))
    assert status == 502 and body["errorCode"] == "PROVIDER_AUTH", body
    assert body["errorClass"] == "auth" and not body["retryable"], body
    assert mock.count() == n + 1 and len(mock.token_requests) == t + 1
    # Unhealthy: refused at once, neither the provider nor the token endpoint is called.
    for i in range(3):
        status, body, _ = post(command(f"revoked-{2 + i}", account="2003"))
        assert status == 502 and body["errorCode"] == "REAUTH_REQUIRED", body
    assert mock.count() == n + 1 and len(mock.token_requests) == t + 1
    # Re-authorising heals it.
    _, q = start_oauth(account="2003")
    code = new_code(q)
    assert get(f"/oauth/whatsapp/callback?code={code}&state={q['state']}")[0] == 200
    status, body, _ = post(command("revoked-9", account="2003"))
    assert status == 200, body


# ---- Reload, several gateways, audit, logs -------------------------------------------------------

def test_sighup_reloads_the_key_file():
    path = os.path.join(work.secrets, "runtime", "api_keys")
    late = new_key("late", "--tenant", "acme", "--capability", "outbound_messages")
    status, _, _ = post(command("late-1"), key="late")
    assert status == 401, "a key appended without SIGHUP is not loaded yet"
    n = gw.log_text().count("api keys and oauth apps reloaded")
    gw.signal(signal.SIGHUP)
    wait_until(lambda: gw.log_text().count("api keys and oauth apps reloaded") > n,
               what="reload")
    assert post(command("late-1"), key="late")[0] == 200
    # A broken file keeps the keys that were loaded.
    with open(path) as f:
        good = f.read()
    with open(path, "a") as f:
        f.write("broken line\n")
    r = gw.log_text().count("reload_refused")
    gw.signal(signal.SIGHUP)
    wait_until(lambda: gw.log_text().count("reload_refused") > r, what="refused reload")
    assert post(command("late-2"), key="late")[0] == 200
    # Revoking: the line removed, SIGHUP, the key is refused.
    with open(path, "w") as f:
        f.write("\n".join(l for l in good.splitlines() if not l.startswith("late ")) + "\n")
    n = gw.log_text().count("api keys and oauth apps reloaded")
    gw.signal(signal.SIGHUP)
    wait_until(lambda: gw.log_text().count("api keys and oauth apps reloaded") > n,
               what="reload")
    status, body, _ = post(command("late-3"), key="late")
    assert status == 401 and body["errorCode"] == "API_KEY_INVALID", body
    assert late not in gw.log_text()


def test_two_gateways_sharing_redis_send_once():
    other = start(name="serve-b")
    try:
        n = mock.count()
        results = [None] * 8

        def one(i):
            results[i] = post(command("shared-1"), server=gw if i % 2 else other)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(s == 200 for s, _, _ in results), results
        assert len({b["providerMessageId"] for _, b, _ in results}) == 1, results
        assert mock.count() == n + 1
    finally:
        rc = other.stop()
    assert rc == 0 and "Sanitizer" not in other.log_text(), (rc, other.log_text()[-3000:])
    check_logs(other.log_text())


def test_sends_and_authorisations_are_audited():
    post(command("audit-1"))
    post(command("audit-1"))
    lines = [json.loads(l) for l in open(os.path.join(work.path, "audit", "acme.jsonl"))]
    sends = [l for l in lines if l.get("dedupeKey") == "whatsapp:outbound:acme:audit-1"]
    assert [l["outcome"] for l in sends] == ["AUDIT_OUTCOME_SUCCEEDED",
                                             "AUDIT_OUTCOME_DEDUPED"], sends
    assert sends[0]["action"] == "outbound.send" and sends[0]["actor"]["id"] == "apikey:sender", \
        sends[0]
    assert any(l["action"] == "integration.authorized" for l in lines), lines
    denied = [l for l in lines if l.get("outcome") == "AUDIT_OUTCOME_DENIED"]
    assert any(l.get("errorCode") == "ACCOUNT_FORBIDDEN" for l in denied), denied
    # `cx audit verify` on what cx serve wrote: intact; then on a copy with one record edited.
    audit_dir = os.path.join(work.path, "audit")
    secrets_dir = os.path.join(work.path, "secrets")
    rc, out, err = cxtest.run_cx(["audit", "verify", "--dir", audit_dir, "--secrets", secrets_dir])
    assert rc == 0 and "acme: ok" in out, (rc, out, err)
    rc, out, err = cxtest.run_cx(["audit", "show", "--correlation-id", sends[0]["correlationId"],
                                  "--dir", audit_dir, "--secrets", secrets_dir])
    assert rc == 0 and [json.loads(l)["seq"] for l in out.splitlines()] == [sends[0]["seq"]], \
        (rc, out, err)
    forged = os.path.join(work.path, "audit-forged")
    shutil.copytree(audit_dir, forged)
    with open(os.path.join(forged, "acme.jsonl")) as f:
        text = f.read()
    with open(os.path.join(forged, "acme.jsonl"), "w") as f:
        f.write(text.replace("AUDIT_OUTCOME_DENIED", "AUDIT_OUTCOME_SUCCEEDED", 1))
    rc, out, err = cxtest.run_cx(["audit", "verify", "--dir", forged, "--secrets", secrets_dir])
    assert rc == 1 and "acme: BROKEN" in out, (rc, out, err)


def test_production_refuses_outbound_routes_without_an_audit_key():
    w = Workdir()
    try:
        w.write_secret("runtime", "api_keys", "")
        rc, _, err = cxtest.run_cx(["serve", "--env", "production", "--secrets", w.secrets,
                                    "--redis", redis.addr, "--connector-lib", cxtest.TEST_LIB,
                                    "--connectors", "test", "--listen", "127.0.0.1:0",
                                    "--log-level", "off"])
        assert rc == 78 and "audit" in err and len(err.strip().splitlines()) == 1, (rc, err)
    finally:
        w.cleanup()


def test_bad_oauth_configuration_exits_78():
    bad = config()
    bad["oauth"]["providers"]["whatsapp"]["token_url"] = "http://203.0.113.9/token"
    with open(work.file("bad.json"), "w") as f:
        json.dump(bad, f)
    rc, _, err = cxtest.run_cx(["serve", "--config", work.file("bad.json"), "--connectors",
                                "whatsapp", "--listen", "127.0.0.1:0", "--log-level", "off"])
    assert rc == 78 and "token_url" in err, (rc, err)
    os.remove(os.path.join(work.secrets, "whatsapp", "oauth_client_secret"))
    try:
        rc, _, err = cxtest.run_cx(["serve", "--config", work.file("serve.json"),
                                    "--connectors", "whatsapp", "--listen", "127.0.0.1:0",
                                    "--log-level", "off"])
        assert rc == 78 and "oauth_client_secret" in err, (rc, err)
    finally:
        work.write_secret("whatsapp", "oauth_client_secret", CLIENT_SECRET)


def check_logs(text):
    secrets_seen = list(keys.values()) + mock.issued + [FILE_TOKEN, CLIENT_SECRET]
    for s in secrets_seen:
        assert s not in text, "a secret reached the logs"
    for needle in ("Authorization", "Bearer ", "code_verifier", "mockat-", "mockrt-", "cxk_",
                   "client-secret-", "EAAG-"):
        assert needle not in text, needle
    for c in CODES:
        assert c not in text, "an authorisation code reached the logs"


def test_no_log_line_carries_a_key_token_or_authorization_header():
    text = gw.log_text()
    assert "outbound_ready" in text
    check_logs(text)


def test_drains_and_exits_cleanly():
    rc = gw.stop()
    text = gw.log_text()
    assert rc == 0 and "Sanitizer" not in text, (rc, text[-3000:])
    check_logs(text)


if __name__ == "__main__":
    cxtest.require_binaries(redis=True)
    setup()
    try:
        cxtest.run([
            test_apikey_new_prints_the_key_once_and_a_hashed_line,
            test_command_sent_twice_reaches_the_provider_once,
            test_eight_clients_at_once_one_provider_request,
            test_missing_or_bad_key_is_401_and_nothing_is_sent,
            test_key_scopes_are_403,
            test_invalid_commands_are_400_with_the_validators_error,
            test_unknown_connector_or_capability_is_404,
            test_permanent_rejection_is_422_stored_and_replayed,
            test_provider_failure_is_502_and_the_command_can_be_sent_again,
            test_no_answer_after_sending_is_504_in_doubt_and_never_resent,
            test_key_file_errors_are_refused_whole,
            test_oauth_start_redirects_with_pkce_and_state,
            test_oauth_callback_stores_the_token_and_a_command_uses_it,
            test_oauth_state_is_single_use_and_errors_are_400,
            test_a_revoked_grant_makes_the_integration_unhealthy_without_a_loop,
            test_sighup_reloads_the_key_file,
            test_two_gateways_sharing_redis_send_once,
            test_sends_and_authorisations_are_audited,
            test_production_refuses_outbound_routes_without_an_audit_key,
            test_bad_oauth_configuration_exits_78,
            test_no_log_line_carries_a_key_token_or_authorization_header,
            test_drains_and_exits_cleanly,
        ])
    finally:
        teardown()

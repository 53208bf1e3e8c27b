"""Shared harness of the `cx` integration tests (python3 standard library only).

Real components: the `cx` binary built by CMake ($CX_BIN), the test connector as a shared
object ($CX_TEST_CONNECTOR_LIB), a real redis-server on a free loopback port, and real HTTP
over loopback. `cx serve` listens on 127.0.0.1:0 and the harness reads the bound port from its
"listening" log line, so parallel ctest runs never race for ports.

Each test file is a plain script: `run(tests)` runs the functions in order, prints one line
per test and exits non-zero when any failed; exit 77 (ctest SKIP_RETURN_CODE) when a
prerequisite such as redis-server is missing.
"""

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

CX_BIN = os.environ.get("CX_BIN", "")
TEST_LIB = os.environ.get("CX_TEST_CONNECTOR_LIB", "")
NOAUTH_LIB = os.environ.get("CX_NOAUTH_CONNECTOR_LIB", "")
SOURCE_DIR = os.environ.get("CX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
REDIS_SERVER = os.environ.get("CX_REDIS_SERVER", "/usr/bin/redis-server")

SKIP = 77


def require_binaries(redis=False):
    for path, what in ((CX_BIN, "CX_BIN"), (TEST_LIB, "CX_TEST_CONNECTOR_LIB")):
        if not path or not os.path.exists(path):
            print(f"{what} is not set or missing ({path!r}): run through ctest", file=sys.stderr)
            sys.exit(2)
    if redis and not os.access(REDIS_SERVER, os.X_OK):
        print(f"SKIP: {REDIS_SERVER} not found", file=sys.stderr)
        sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sign(secret, body):
    if isinstance(secret, str):
        secret = secret.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def batch(account, ids, text="hello"):
    items = [{"id": i, "from": "+14155550123", "text": text} for i in ids]
    return json.dumps({"account": account, "items": items}, separators=(",", ":")).encode()


class Workdir:
    """A temporary directory with the secrets layout cx expects."""

    def __init__(self, secret="s3cr3t-current", pseudonym_key="pseudonym-key-for-tests"):
        self.path = tempfile.mkdtemp(prefix="cx-it-")
        self.secrets = os.path.join(self.path, "secrets")
        self.write_secret("test", "secret", secret)
        self.write_secret("runtime", "pseudonym_key", pseudonym_key)

    def write_secret(self, connector, name, value):
        d = os.path.join(self.secrets, connector)
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write(value + "\n")
        os.replace(tmp, os.path.join(d, name))

    def file(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Redis:
    """A real redis-server on a free loopback port, in the foreground of a child process."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cx-it-redis-")
        self.port = None
        self.proc = None
        self.start()

    def start(self):
        for _ in range(20):
            port = self.port or free_port()
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--logfile", "redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: self.ping(port) or self.proc.poll() is not None, 5,
                           what="redis-server")
            except AssertionError:
                pass
            if self.proc.poll() is None and self.ping(port):
                self.port = port
                return
            self.proc.kill()
            self.proc.wait()
            if self.port:  # a restart on the kept port: retry the same one
                time.sleep(0.1)
        raise RuntimeError("cannot start redis-server")

    @staticmethod
    def ping(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, line):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(line.encode() + b"\r\n")
            return s.recv(65536).decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Serve:
    """`cx serve` on 127.0.0.1:0; stderr (the JSON logs) goes to a file.

    The bound port is read from the "listening" log line, an info line: keep the log level at
    info (the default) or below when the harness starts the process."""

    def __init__(self, workdir, args, env=None, wait=True, name="serve"):
        self.log_path = workdir.file(f"{name}-{time.monotonic_ns()}.log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        for k in ("CX_ENV", "CX_LISTEN", "CX_SECRETS_DIR", "CX_REDIS", "CX_LOG_LEVEL",
                  "CX_CONNECTORS", "CX_HANDLER_MODE"):
            full_env.pop(k, None)
        full_env.update(env or {})
        self.argv = [CX_BIN, "serve"] + list(args)
        # Host only the connectors the test loads (the built-in adapters would need their
        # secrets in staging/production): libcx_<id>_connector.so -> <id>.
        if not any(a.startswith("--connectors") for a in args):
            ids = [os.path.basename(a)[len("libcx_"):-len("_connector.so")]
                   for a in args if a.endswith("_connector.so")]
            if ids:
                self.argv += ["--connectors", ",".join(ids)]
        if not any(a == "--listen" or a.startswith("--listen=") for a in args):
            self.argv += ["--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=full_env)
        self.port = None
        self.conn = None
        if wait:
            try:
                self.wait_listening()
            except BaseException:
                self.stop()  # never leave a process behind when the test gives up on it
                raise

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            out = []
            for raw in f.read().splitlines():
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append({"raw": raw.decode(errors="replace")})
            return out

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def listening_line(self):
        """The "listening" log line (it names the port and the handler mode)."""
        for line in self.log_lines():
            if line.get("msg") == "listening":
                return line
        return None

    def wait_listening(self, timeout=15):
        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"cx serve exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            for line in self.log_lines():
                if line.get("msg") == "listening":
                    return line["port"]
            return None
        self.port = wait_until(listening, timeout, what="cx serve to listen")

    def request(self, method, path, body=None, headers=None, timeout=30, keep=False):
        """One HTTP request; returns (status, headers dict, body bytes)."""
        conn = self.conn if keep and self.conn else http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            result = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        except Exception:
            conn.close()
            self.conn = None
            raise
        if keep:
            self.conn = conn
        else:
            conn.close()
        return result

    def post_batch(self, body, secret, path="/webhook/test", extra=None):
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Test-Signature"] = sign(secret, body)
        headers.update(extra or {})
        status, _, data = self.request("POST", path, body, headers)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def metrics(self):
        status, _, data = self.request("GET", "/metrics")
        assert status == 200, status
        values = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def wait_metric(self, name, at_least, timeout=60, **labels):
        """Waits (bounded: a guard, not a timed assertion) until a metric reaches at_least;
        returns its value. In queued mode handlers run after the response, on the workers."""
        got = {}

        def reached():
            got["value"] = metric(self.metrics(), name, **labels)
            return got["value"] >= at_least
        wait_until(reached, timeout, step=0.05, what=f"{name}{labels} >= {at_least}")
        return got["value"]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout)

    def stop(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def run_cx(args, stdin=None, timeout=60, env=None):
    """Runs `cx ARGS`; returns (returncode, stdout, stderr) as text."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run([CX_BIN] + list(args), input=stdin, capture_output=True, timeout=timeout,
                       env=full_env)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def metric(values, name, **labels):
    key = name
    if labels:
        key += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return values.get(key, 0.0)


def run(tests):
    failed = 0
    for fn in tests:
        t0 = time.monotonic()
        try:
            fn()
            print(f"ok    {fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL  {fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
            traceback.print_exc()
    print(f"{len(tests) - failed}/{len(tests)} passed", flush=True)
    sys.exit(1 if failed else 0)

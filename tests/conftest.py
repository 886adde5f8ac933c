"""Fixtures and helpers shared by the test modules (no test module imports another).

- One emulated DHIS2 per release on 127.0.0.1 for the whole run, reset before each test:
  ``emulator``, ``connect``, ``admin``, ``alice``; ``waits`` records the client's sleeps.
- ``raw_request``: a request as a seeded user around the client, for what the emulator
  answers on the wire; ``participants``: the read and follow-up flags the emulator holds.
- ``MiniServer``: the tests' own scripted server, raw socket and all, for what the emulator
  will not do (drip, hang up, answer 500 MiB, speak HTTPS); ``http_answer``,
  ``json_answer``, ``serve_bytes``, ``empty_inbox`` and ``messenger_at`` go with it.
- ``certificate`` and ``tls_server``: a throwaway self-signed certificate and an HTTPS
  MiniServer that uses it.
- ``standalone_demo``: ``python -m tests.emulator --demo`` running.
- ``nginx``: a real nginx on 127.0.0.1 with its default limits and TLS, proxying to the
  emulator (or any URL); the tests that use it skip where nginx is not installed.

Every test that uses the ``emulator`` fixture (directly or through ``connect``, ``admin``,
``alice``) runs once per DHIS2 release in ``tests.emulator.VERSIONS``; its id ends in the
release, e.g. ``test_send[2.40]``.  To narrow the run::

    DHIS2_VERSIONS=2.42 pytest              # one release
    DHIS2_VERSIONS=2.38,2.44 pytest         # the oldest and the newest

A test that only makes sense on some releases says so with a marker; the other releases do
not generate it at all::

    @pytest.mark.dhis2_versions(since="2.41.3")          # 2.41.3 and later
    @pytest.mark.dhis2_versions(until="2.41.3")          # before 2.41.3
    @pytest.mark.dhis2_versions("2.38", "2.43")          # exactly these
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import requests
from hypothesis import HealthCheck, settings

import dhis2_messages
from dhis2_messages import Messenger
from tests.emulator import (  # noqa: F401 - the seeded uids, imported by the tests from here
    ADMIN,
    ALICE,
    BO_DISTRICT,
    BOB,
    CAROL,
    DAVE,
    FEEDBACK_TEAM,
    REPORTERS,
    VERSIONS,
    Emulator,
    free_port,
    parse_version,
)

# Hypothesis's time limits (200 ms an example, the too_slow health check) are
# timed assertions: on a busy two-core machine they fail properties that hold.
settings.register_profile(
    "no-time-limits", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("no-time-limits")

API = "/api/messageConversations"
UNKNOWN = "Zz0000000Zz"  # a well-formed uid that nothing in the seeded world has


def _selected_versions() -> list[str]:
    text = os.environ.get("DHIS2_VERSIONS", "").strip()
    if not text or text == "all":
        return list(VERSIONS)
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VERSIONS]
    if unknown:
        raise pytest.UsageError(
            f"DHIS2_VERSIONS: unknown release(s) {', '.join(unknown)}; choose from "
            + ", ".join(VERSIONS)
        )
    return chosen


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "dhis2_versions(*versions, since=None, until=None): run only on these emulated DHIS2 "
        "releases (since: this one and later; until: strictly before this one)",
    )


def versions_for(marker) -> list[str]:
    """The releases of VERSIONS a dhis2_versions marker admits."""
    wanted = list(marker.args) or list(VERSIONS)
    for version in wanted:
        if version not in VERSIONS:
            raise pytest.UsageError(f"dhis2_versions: unknown release {version!r}")
    since, until = marker.kwargs.get("since"), marker.kwargs.get("until")
    return [
        v
        for v in wanted
        if (since is None or parse_version(v) >= parse_version(since))
        and (until is None or parse_version(v) < parse_version(until))
    ]


def pytest_generate_tests(metafunc):
    if "_server" not in metafunc.fixturenames:
        return
    versions = _selected_versions()
    for marker in metafunc.definition.iter_markers("dhis2_versions"):
        admitted = versions_for(marker)
        versions = [v for v in versions if v in admitted]
    metafunc.parametrize("_server", versions, indirect=True, scope="session")


def at_least(emulator, version: str) -> bool:
    """Whether the test runs against ``version`` or later.

    Read from the release the fixture asked for (``emulator.release``), not from the emulator's
    behaviour switch (``Emulator.since``), so that a test of a version difference fails when
    the emulator ignores its version."""
    return emulator.release >= parse_version(version)


@pytest.fixture(scope="session")
def _server(request):
    server = Emulator(version=request.param).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(_server):
    """The emulator, back to its seeded world with an empty request log."""
    _server.reset()
    return _server


@pytest.fixture
def connect(emulator):
    """connect("alice", **options) -> a Messenger logged in as that seeded user."""
    opened = []

    def connect(username="admin", *, token=False, **options):
        user = emulator.user(username)
        options.setdefault("retries", 0)
        credentials = {"token": user.token} if token else {"auth": (user.username, user.password)}
        messenger = Messenger(emulator.url, **credentials, **options)
        opened.append(messenger)
        return messenger

    yield connect
    for messenger in opened:
        messenger.close()


@pytest.fixture
def admin(connect):
    return connect("admin")


@pytest.fixture
def alice(connect):
    return connect("alice")


@pytest.fixture
def waits(monkeypatch):
    """The seconds the client slept between attempts, in order (no real sleeping)."""
    recorded = []
    monkeypatch.setattr(dhis2_messages.time, "sleep", recorded.append)
    return recorded


def pytest_report_header(config):
    return f"dhis2_messages {dhis2_messages.__version__} from {dhis2_messages.__file__}"


@contextlib.contextmanager
def standalone_demo():
    """``python -m tests.emulator --port 0 --demo`` running: yields what it printed before its prompt."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0", "--demo"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for _ in range(500):  # bounded: the banner, the users, the tree, the export line
            line = proc.stdout.readline()
            if not line or line.startswith("Press Ctrl-C"):
                break
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


class RawClient:
    """Requests to an emulator as its seeded users, around the client: the one raw-request
    helper of the tests.  ``raw(method, path, user="admin", **requests_kwargs)`` goes over a
    real socket as that user (``user=None``: no credentials), one session per user (so a
    session cookie carries on), without following redirects."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.sessions = {}

    def __call__(self, method, path, user="admin", **kwargs):
        if user not in self.sessions:
            session = self.sessions[user] = requests.Session()
            if user is not None:
                seeded = self.emulator.user(user)
                session.auth = (seeded.username, seeded.password)
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 5)
        return self.sessions[user].request(method, self.emulator.url + path, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for session in self.sessions.values():
            session.close()


@pytest.fixture
def raw_request(emulator):
    """raw_request(method, path, user="admin", **requests_kwargs) -> requests.Response: a
    ``RawClient`` of the emulator.  The test fails if the emulator hit a bug of its own
    while answering."""
    with RawClient(emulator) as raw:
        yield raw
    assert [] == emulator.errors, "the emulator hit a bug:\n" + "\n".join(emulator.errors)


def participants(emulator, uid):
    """username -> (read, followUp) in the emulator's state."""
    conv = emulator.conversations[uid]
    return {name: (p.read, p.follow_up) for name, p in conv.participants.items()}


# -- The tests' own small server ----------------------------------------------------------

DRIP = 0.1  # seconds between two bytes of a dripping server


class MiniServer:
    """A scripted server on 127.0.0.1: ``handler(conn, server)`` answers each connection.

    Each connection is served in its own thread.  Its request is read first: the handler
    finds it in ``server.request``, and every request is kept in ``server.requests``, as
    ``(request line, headers dict)``.  The handler then writes raw bytes to the socket, so
    it can do what no well-behaved HTTP server does: drip bytes, announce 500 MiB, hang up
    half-way.  With an ``ssl.SSLContext`` the server speaks HTTPS; a failed handshake is
    no request.  ``server.seen`` is for a handler to record what it answered (see
    ``empty_inbox``).

    Use it as a context manager.  ``server.stopped`` is set when the block ends: handlers
    check it between two writes, so none outlives its test by more than one DRIP.

    With ``read_body=False`` the request's body is left in the socket for the handler
    (see ``throttle``), and the socket takes in little at a time: a slow reader slows the
    client down at once.
    """

    def __init__(self, handler, context=None, read_body=True):
        self.handler, self.context, self.read_body = handler, context, read_body
        self.stopped = threading.Event()
        self.sent = 0  # body bytes the handlers managed to write (see stream)
        self.requests = []  # (request line, headers dict) as received
        self.seen = []
        self._current = threading.local()
        self._threads = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        if not read_body:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self._listener.settimeout(0.1)
        scheme = "https" if context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def request(self):
        """(request line, headers dict) of the request this connection's handler answers."""
        return self._current.request

    def __enter__(self):
        thread = threading.Thread(target=self._accept, name="mini-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the accept timed out
                continue
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="mini-server-conn", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                request = _read_request(conn, self.read_body)
                if not request[0]:  # connected and hung up without asking anything
                    return
                self.requests.append(request)
                self._current.request = request
                self.handler(conn, self)
            except OSError:  # the client hung up: what a cut-off looks like from here
                pass

    def drip(self, conn, data, limit=300):
        """Send *data* one byte every DRIP seconds, at most *limit* bytes."""
        for byte in data[:limit]:
            if self.stopped.wait(DRIP):
                return
            conn.sendall(bytes([byte]))

    def throttle(self, conn, length, rate):
        """Read *length* bytes of body at *rate* bytes a second, a twentieth of a second's
        worth at a time; return how many arrived before the client stopped or the test ended."""
        got, due = 0, time.monotonic()
        while got < length:
            quota = min(length - got, rate // 20)
            while quota > 0:
                piece = conn.recv(quota)
                if not piece:
                    return got
                got, quota = got + len(piece), quota - len(piece)
            due += 0.05
            if self.stopped.wait(max(0.0, due - time.monotonic())):
                break
        return got

    def stream(self, conn, chunk, total):
        """Send *chunk* again and again, up to *total* bytes, counting what got out."""
        while self.sent < total and not self.stopped.is_set():
            conn.sendall(chunk)
            self.sent += len(chunk)


def _read_request(conn, read_body=True):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 1 << 20:
        piece = conn.recv(65536 if read_body else 1)  # else not a byte past the head
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("Content-Length", "0")) if read_body else 0
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return lines[0], headers


def http_answer(status, body=b"", headers=()):
    """Bytes of a complete HTTP/1.1 answer that closes the connection, e.g. ``"200 OK"``."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    head += list(headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def json_answer(obj, status="200 OK"):
    """Bytes of a complete answer with *obj* as its JSON body."""
    return http_answer(status, json.dumps(obj).encode(), ["Content-Type: application/json"])


def serve_bytes(data):
    """A MiniServer handler that answers every request with the same bytes."""

    def handler(conn, server):
        conn.sendall(data)

    return handler


def empty_inbox(conn, server):
    """A MiniServer handler: an empty conversation list for every request, each recorded
    in ``server.seen`` as (method, path, headers)."""
    line, headers = server.request
    method, path = line.split(" ")[:2]
    server.seen.append((method, path, headers))
    page = {"pager": {"page": 1, "pageCount": 1, "total": 0, "pageSize": 50}}
    conn.sendall(json_answer({**page, "messageConversations": []}))


def messenger_at(url, **options):
    """A Messenger for a MiniServer (or any URL): a made-up token, 1 s to connect and 0.5 s
    to read (every drip comes faster than that), no retries."""
    options.setdefault("timeout", (1.0, 0.5))
    options.setdefault("retries", 0)
    return Messenger(url, token="d2p_test", **options)


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(cert.pem, key.pem): a self-signed certificate for 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_context(certificate):
    """The server side of *certificate*: an ``ssl.SSLContext`` for a MiniServer."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture(scope="module")
def tls_server(certificate):
    """An HTTPS MiniServer with the throwaway certificate, answering ``empty_inbox``:
    ``tls_server.seen`` lists the requests that got through the handshake."""
    with MiniServer(empty_inbox, tls_context(certificate)) as server:
        yield server


# -- A real proxy ------------------------------------------------------------------------

NGINX = "/usr/sbin/nginx"  # Debian's nginx-light; also looked up on PATH

_NGINX_CONF = """\
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # nginx's own defaults, written out: an 8 KB request line, a 1 MiB body.
    large_client_header_buffers 4 8k;
    client_max_body_size 1m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass {upstream};
            # What DHIS2's reverse-proxy guide sets: they count against Tomcat's 8 KB.
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout {read_timeout}s;
        }}
    }}
}}
"""


@pytest.fixture
def nginx(certificate, tmp_path):
    """nginx(upstream, read_timeout=60) -> the https URL of a real nginx proxying to *upstream*.

    Debian's nginx (package nginx-light), started on a free port of 127.0.0.1 with a
    configuration of its own in a temporary folder: the default limits written out
    (``large_client_header_buffers 4 8k``: a request line over 8 KB is a 414;
    ``client_max_body_size 1m``: a larger body is a 413), the headers DHIS2's nginx guide
    adds, TLS from the throwaway ``certificate`` and ``proxy_read_timeout`` *read_timeout*
    seconds (60 by default; give a short one to see its 504).  Connect with
    ``verify=str(certificate[0])``::

        def test_through_a_proxy(emulator, nginx, certificate):
            url = nginx(emulator.url)
            m = Messenger(url, auth=("alice", "District1#"), verify=str(certificate[0]))

    Each call starts another nginx; all are stopped when the test ends (SIGTERM, then
    SIGKILL, each wait bounded), so none outlives its test.  Without nginx the test skips
    and says so.
    """
    binary = shutil.which("nginx") or (NGINX if os.access(NGINX, os.X_OK) else None)
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    started = []

    def start(upstream, read_timeout=60):
        folder = tmp_path / f"nginx{len(started)}"
        folder.mkdir()
        port = free_port()
        cert, key = certificate
        conf = folder / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                dir=folder,
                port=port,
                cert=cert,
                key=key,
                upstream=upstream,
                read_timeout=read_timeout,
            )
        )
        proc = subprocess.Popen(
            [
                binary,
                "-p",
                str(folder),
                "-c",
                str(conf),
                "-e",
                str(folder / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        for _ in range(200):  # at most about 10 s
            if proc.poll() is not None:
                error = proc.stderr.read().decode(errors="replace")
                pytest.fail(f"nginx did not start: {error.strip()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.05):
                return f"https://127.0.0.1:{port}"
            time.sleep(0.05)
        pytest.fail("nginx did not listen within 10 s")

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()

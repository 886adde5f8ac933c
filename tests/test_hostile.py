"""Hostile and broken servers: each promise of the README's fault matrix, over real sockets.

The servers here are small raw-socket servers on 127.0.0.1, so they can do what
no well-behaved HTTP server does: drip bytes, announce 500 MiB, send a gzip
bomb, answer with JSON nested ten thousand deep or a Location no URL parser
takes.  Every server loop is bounded; a test that would hang without the fix
ends when its server gives up, and then fails on the error it got.
"""

from __future__ import annotations

import base64
import functools
import gzip
import threading
import time
import zlib

import pytest
import requests

import dhis2_messages
from dhis2_messages import (
    ApiError,
    AuthenticationError,
    ConflictError,
    Dhis2Error,
    Messenger,
    ResponseError,
    TransportError,
)
from tests.conftest import (
    ALICE,
    BOB,
    MiniServer,
    http_answer,
    messenger_at,
    serve_bytes,
    tls_context,
)

UID = "AbCdEfGhIjK"
MiB = 1024 * 1024


def _threads():
    return {t for t in threading.enumerate() if not t.name.startswith("mini-server")}


# Every public call that makes a request, so that each promise is kept by all.
CALLS = {
    "list_conversations": lambda m: m.list_conversations(),
    "count_unread": lambda m: m.count_unread(),
    "get_conversation": lambda m: m.get_conversation(UID),
    "send": lambda m: m.send(subject="s", text="t", users=[ALICE]),
    "reply": lambda m: m.reply(UID, "t"),
    "send_feedback": lambda m: m.send_feedback(subject="s", text="t"),
    "add_recipients": lambda m: m.add_recipients(UID, users=[BOB]),
    "mark_read": lambda m: m.mark_read(UID),
    "delete_conversations": lambda m: m.delete_conversations(UID),
    "set_status": lambda m: m.set_status(UID, "OPEN"),
    "assign": lambda m: m.assign(UID, BOB),
    "unassign": lambda m: m.unassign(UID),
    "upload_attachment": lambda m: m.upload_attachment(b"%PDF-1.4", filename="a.pdf"),
    "download_attachment": lambda m: m.download_attachment(UID, UID, UID),
}


# -- 1. The credentials given are the identity ---------------------------------------


class TestIdentity:
    """Neither .netrc, nor a borrowed session's auth or Authorization header, nor a proxy
    setting replaces the credentials given to Messenger; none given, none sent."""

    @pytest.fixture
    def netrc_for_bob(self, emulator, tmp_path, monkeypatch):
        bob = emulator.user("bob")
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {bob.username} password {bob.password}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        monkeypatch.setenv("HOME", str(tmp_path))
        # The file is there and requests would use it: the test would not prove anything otherwise.
        assert requests.utils.get_netrc_auth(emulator.url) == (bob.username, bob.password)

    @pytest.mark.parametrize("kind", ["token", "basic"])
    def test_netrc_does_not_replace_them(self, emulator, connect, netrc_for_bob, kind):
        m = connect("alice", token=kind == "token")
        m.send(subject="From alice", text="t", users=[BOB])
        m.list_conversations()
        assert ["alice", "alice"] == [r.user for r in emulator.log]
        scheme = "ApiToken " if kind == "token" else "Basic "
        assert emulator.log[0].headers["Authorization"].startswith(scheme)

    @pytest.mark.parametrize("kind", ["token", "basic"])
    @pytest.mark.parametrize("where", ["session.auth", "header"])
    def test_borrowed_session_does_not_replace_them(self, emulator, kind, where):
        alice, bob = emulator.user("alice"), emulator.user("bob")
        session = requests.Session()
        if where == "session.auth":
            session.auth = (bob.username, bob.password)
        else:
            pair = f"{bob.username}:{bob.password}".encode()
            session.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        credentials = (
            {"token": alice.token}
            if kind == "token"
            else {"auth": (alice.username, alice.password)}
        )
        with Messenger(emulator.url, session=session, retries=0, **credentials) as m:
            m.list_conversations()
            m.mark_read(m.send(subject="s", text="t", users=[BOB]))
        assert ["alice"] * 3 == [r.user for r in emulator.log]
        session.close()

    def test_no_credentials_sends_none(self, emulator, netrc_for_bob):
        """Without auth= or token= nothing else is taken in their place: DHIS2 says 401."""
        bob = emulator.user("bob")
        session = requests.Session()
        session.auth = (bob.username, bob.password)
        session.headers["Authorization"] = "ApiToken " + bob.token
        for m in (Messenger(emulator.url, retries=0), Messenger(emulator.url, session=session)):
            with m, pytest.raises(AuthenticationError):
                m.list_conversations()
        assert [None, None] == [r.user for r in emulator.log]
        assert [None, None] == [r.headers.get("Authorization") for r in emulator.log]
        session.close()

    def test_a_proxy_setting_does_not_replace_them(self, monkeypatch):
        """Proxy credentials go in Proxy-Authorization; Authorization stays the token."""
        page = b'{"pager": {"page": 1, "pageCount": 1, "total": 0, "pageSize": 50}, "messageConversations": []}'
        with MiniServer(
            serve_bytes(http_answer("200 OK", page, ["Content-Type: application/json"]))
        ) as proxy:
            host_port = proxy.url.split("//", 1)[1]
            monkeypatch.setenv("HTTP_PROXY", f"http://puser:ppass@{host_port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            with messenger_at("http://dhis2.example.org") as m:
                m.list_conversations()
        [(line, headers)] = proxy.requests
        assert line.startswith("GET http://dhis2.example.org/api/messageConversations?")
        assert "ApiToken d2p_test" == headers["Authorization"]
        assert (
            "Basic " + base64.b64encode(b"puser:ppass").decode() == headers["Proxy-Authorization"]
        )


# -- 2. The deadline bounds a whole call --------------------------------------------------

DRIPPED = {
    # what the server sends before and while it drips
    "headers dripped": (b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000),
    "Content-Length body dripped": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b" " * 1000,
    ),
    "chunked body forever": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1\r\n \r\n" * 200,
    ),
}


class TestDeadline:
    @pytest.mark.parametrize("case", list(DRIPPED))
    def test_dripping_server_is_cut_off(self, case):
        """Each byte comes within the read timeout; the deadline still ends the call."""
        start, dripped = DRIPPED[case]

        def handler(conn, server):
            conn.sendall(start)
            server.drip(conn, dripped, limit=len(dripped))

        before = _threads()
        with MiniServer(handler) as server, messenger_at(server.url, deadline=1.0) as m:
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"deadline of 1 s passed during GET") as info:
                m.list_conversations()
            elapsed = time.monotonic() - started
        assert "raise deadline=" in str(info.value)
        assert elapsed < 10, f"took {elapsed:.1f} s: the call was not cut off"  # not hanging
        assert set() == _threads() - before, "a thread outlived the call"

    @pytest.mark.parametrize("case", list(DRIPPED))
    def test_over_tls(self, certificate, case):
        cert = certificate[0]
        context = tls_context(certificate)
        start, dripped = DRIPPED[case]

        def handler(conn, server):
            conn.sendall(start)
            server.drip(conn, dripped)

        with MiniServer(handler, context) as server:
            m = messenger_at(server.url, deadline=1.0, verify=str(cert))
            with pytest.raises(TransportError, match="deadline of 1 s passed"):
                m.list_conversations()

    @pytest.mark.parametrize("name", ["list_conversations", "download_attachment", "send"])
    def test_every_kind_of_call(self, name):
        start, dripped = DRIPPED["Content-Length body dripped"]

        def handler(conn, server):
            conn.sendall(start)
            server.drip(conn, dripped)

        with MiniServer(handler) as server, messenger_at(
            server.url, deadline=0.5
        ) as m, pytest.raises(TransportError, match="deadline of 0.5 s passed"):
            CALLS[name](m)

    def test_retries_stop_at_the_deadline(self):
        """A server that always fails slowly: the retries end with the deadline, not after them."""

        def handler(conn, server):
            server.drip(conn, b"HTTP/1.1 5", limit=4)  # then hang up: a broken answer

        with MiniServer(handler) as server:
            m = messenger_at(server.url, deadline=1.0, retries=1000)
            m.backoff = 0.05
            started = time.monotonic()
            with pytest.raises(TransportError, match="deadline of 1 s passed"):
                m.list_conversations()
            elapsed = time.monotonic() - started
        assert 1 < len(server.requests) < 1000
        assert elapsed < 10, f"took {elapsed:.1f} s"

    def test_a_wait_past_the_deadline_is_not_made(self, waits):
        answer = http_answer("503 Service Unavailable", b"", ["Retry-After: 5"])
        with MiniServer(serve_bytes(answer)) as server:
            m = messenger_at(server.url, deadline=2.0, retries=3)
            with pytest.raises(ApiError) as info:
                m.list_conversations()
        assert 503 == info.value.status_code
        assert [] == waits
        assert 1 == len(server.requests)
        # A wait that fits is made.
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(ApiError):
            messenger_at(server.url, deadline=6.0, retries=1).list_conversations()
        assert [5.0] == waits

    def test_one_deadline_for_a_method_of_two_requests(self):
        """send_feedback without a Location (DHIS2 before 2.41.3) looks the ticket up: the
        lookup has what is left of the deadline, not a deadline of its own."""
        answers = [
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            http_answer(
                "200 OK", b'{"messageConversations": []}', ["Content-Type: application/json"]
            ),
        ]

        def handler(conn, server):
            answer = answers[len(server.requests) - 1]
            server.drip(conn, answer[:7])  # 0.7 s, within the deadline on its own
            conn.sendall(answer[7:])

        failed = pytest.raises(ResponseError, match="looking it up failed")
        with MiniServer(handler) as server, failed as info:
            messenger_at(server.url, deadline=1.0).send_feedback(subject="s", text="t")
        assert "deadline of 1 s passed" in str(info.value)
        assert 2 == len(server.requests)

    def test_borrowed_session_checks_between_reads(self):
        """A borrowed session's own adapter reads as it does; the deadline is checked
        between reads, so a body that keeps coming is still cut off."""

        def handler(conn, server):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
            for _ in range(600):  # 16 KiB every 10 ms, a minute of it at most
                if server.stopped.wait(0.01):
                    return
                conn.sendall(chunk)

        session = requests.Session()
        with MiniServer(handler) as server:
            m = Messenger(server.url, token="d2p_test", session=session, deadline=0.5, retries=0)
            with pytest.raises(TransportError, match="deadline of 0.5 s passed"):
                m.list_conversations()
        session.close()


# -- 3. Nothing untyped once a request was sent --------------------------------------------

NESTED = b"[" * 100_000


class TestNothingUntyped:
    def test_deeply_nested_json_on_200(self):
        answer = http_answer("200 OK", NESTED, ["Content-Type: application/json"])
        for name in ("list_conversations", "get_conversation", "mark_read", "upload_attachment"):
            with MiniServer(serve_bytes(answer)) as server, pytest.raises(
                ResponseError, match="not valid JSON"
            ):
                CALLS[name](messenger_at(server.url))

    def test_deeply_nested_json_on_409(self):
        answer = http_answer("409 Conflict", NESTED, ["Content-Type: application/json"])
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(ConflictError) as info:
            CALLS["send"](messenger_at(server.url))
        assert 409 == info.value.status_code

    @pytest.mark.parametrize(
        "location", ["http://[::1", "http://[::1]:99999/x", "http://h:abc/", "http://exa mple/"]
    )
    @pytest.mark.parametrize("name", ["send", "list_conversations"])
    def test_redirect_with_a_broken_location(self, name, location):
        """requests parses a redirect's Location even when it follows none."""
        answer = http_answer("302 Found", b"", [f"Location: {location}"])
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(ApiError) as info:
            CALLS[name](messenger_at(server.url))
        assert 302 == info.value.status_code
        assert "not followed" in str(info.value)
        assert 1 == len(server.requests)

    @pytest.mark.parametrize(
        "head",
        [
            "Content-Length: \xb2",  # a digit to str.isdigit, not to int()
            "Content-Length: 99999999999999999999999",
            "Content-Type: application/json; charset=nonsense",
            "Content-Encoding: gzip",  # and a body that is not gzip
            "Retry-After: 99999999999999999999999",
        ],
    )
    def test_odd_headers(self, head):
        body = b'{"httpStatus": "OK"}'
        data = f"HTTP/1.1 200 OK\r\n{head}\r\nConnection: close\r\n\r\n".encode("latin-1") + body
        for name in ("list_conversations", "set_status"):
            with MiniServer(serve_bytes(data)) as server:
                try:
                    CALLS[name](messenger_at(server.url))
                    outcome = "answered"
                except Dhis2Error as error:  # anything else fails the test
                    outcome = type(error).__name__
            assert outcome in ("answered", "ResponseError", "TransportError")


# -- 4. Timeouts and URLs are checked up front -----------------------------------------------


class TestCheckedUpFront:
    @pytest.mark.parametrize(
        "timeout",
        [float("inf"), (3.05, float("inf")), 1e300, float("nan"), (1, -1), (0, 1), "5", (1, 2, 3)],
    )
    def test_timeout(self, timeout):
        with pytest.raises(ValueError, match="timeout"):
            Messenger("https://h.org", token="d2p_x", timeout=timeout)

    @pytest.mark.parametrize("deadline", [None, 0, -1, float("inf"), float("nan"), 1e300])
    def test_deadline(self, deadline):
        with pytest.raises((ValueError, TypeError), match="deadline"):
            Messenger("https://h.org", token="d2p_x", deadline=deadline)

    @pytest.mark.parametrize("size", [0, -1, True, 1.5, None])
    def test_max_response_size(self, size):
        with pytest.raises(ValueError, match="max_response_size"):
            Messenger("https://h.org", token="d2p_x", max_response_size=size)

    @pytest.mark.parametrize(
        "url",
        [
            "https://h.org:99999",
            "https://h.org:abc",
            "https://h.org:0",
            "https://my host.org",
            "https://h\x00.org",
            "http://[::1",
            "https://h.org:-1",
            "https://.h.org",
        ],
    )
    def test_base_url(self, url):
        with pytest.raises(ValueError, match="base_url"):
            Messenger(url, token="d2p_x")

    @pytest.mark.parametrize(
        "url",
        ["http://[::1]:8080", "https://dhis2.example.org:8443/dhis", "https://bücher.example"],
    )
    def test_good_base_urls(self, url):
        assert Messenger(url, token="d2p_x").base_url == url


# -- 5. No header injection ---------------------------------------------------------------------


class TestNoHeaderInjection:
    @pytest.mark.parametrize(
        "content_type",
        [
            "application/pdf\r\nX-Forged: y",
            "application/pdf\nContent-Disposition: x",
            "application/pdf\x00",
            "pdf",
            "application/",
            "/pdf",
            "application/pdf; name",
            "application pdf/x",
        ],
    )
    def test_content_type(self, emulator, alice, content_type):
        with pytest.raises(ValueError, match="content_type must be a media type"):
            alice.upload_attachment(b"%PDF", filename="a.pdf", content_type=content_type)
        assert [] == emulator.log

    @pytest.mark.parametrize("filename", ["a.pdf\r\nX-Forged: y", "a\n.pdf", "a\x00.pdf", "a\x7f"])
    def test_filename(self, emulator, alice, filename):
        with pytest.raises(ValueError, match="filename contains a control character"):
            alice.upload_attachment(b"%PDF", filename=filename)
        assert [] == emulator.log

    @pytest.mark.parametrize(
        "content_type", ["application/pdf", 'text/plain; charset="utf-8"', "image/svg+xml"]
    )
    def test_good_media_types(self, emulator, alice, content_type):
        uid = alice.upload_attachment(b"%PDF", filename="a.pdf", content_type=content_type)
        assert uid
        [request] = emulator.log
        assert f"Content-Type: {content_type}\r\n".encode() in request.body

    def test_colon_in_a_basic_username(self):
        """HTTP Basic splits at the first colon: "bob:x" with "pw" would log in as bob."""
        with pytest.raises(ValueError, match="':'"):
            Messenger("https://h.org", auth=("bob:x", "pw"))


# -- 6. No secret in a message about a bad URL ----------------------------------------------------

SECRET = "S3cret-pw"


class TestSecretsInBadUrls:
    @pytest.mark.parametrize(
        "url",
        [
            f"htps://admin:{SECRET}@host",
            f"https://admin:{SECRET}@host",
            f"http://admin:{SECRET}@[::1",
            f"https://admin:{SECRET}@host:abc",
            f"https://admin:{SECRET}@my host",
            f"admin:{SECRET}@host",
            f"https://admin:{SECRET}@@host/x",
            f"https://admin:{SECRET}/x@host",
        ],
    )
    def test_not_echoed(self, url):
        with pytest.raises(ValueError) as info:
            Messenger(url, token="d2p_x")
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)

    def test_not_echoed_by_the_command_line(self, monkeypatch, capsys):
        monkeypatch.setenv("DHIS2_URL", f"htps://admin:{SECRET}@host")
        monkeypatch.setenv("DHIS2_TOKEN", "d2p_x")
        status = dhis2_messages.main(["list"])
        out, err = capsys.readouterr()
        assert 2 == status
        assert "base_url" in err or "URL" in err
        assert SECRET not in out + err


# -- 7. Bounded memory: max_response_size, after decompression ----------------------------------


@functools.lru_cache(maxsize=None)
def _gzip_bomb(expanded):
    """About expanded / 1000 bytes of gzip that inflate to *expanded* bytes of spaces."""
    member = gzip.compress(b" " * (16 * MiB), compresslevel=9)
    return member * (expanded // (16 * MiB))


class TestBoundedMemory:
    @pytest.mark.parametrize("name", list(CALLS))
    def test_500_mib_body(self, name):
        """The server announces 500 MiB; the client stops reading after max_response_size."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

        def handler(conn, server):
            conn.sendall(head % (500 * MiB))
            server.stream(conn, b" " * 65536, 500 * MiB)

        with MiniServer(handler) as server:
            m = messenger_at(server.url, max_response_size=MiB)
            with pytest.raises(ResponseError, match="more than max_response_size"):
                CALLS[name](m)
            server.stopped.wait(0.2)  # let the server see the hang-up
        assert server.sent < 64 * MiB, f"{server.sent:,} bytes were read"

    def test_500_mib_body_without_length(self):
        """No Content-Length, no chunks: the body ends when the connection does."""

        def handler(conn, server):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            server.stream(conn, b" " * 65536, 500 * MiB)

        with MiniServer(handler) as server, pytest.raises(
            ResponseError, match="more than max_response_size"
        ):
            messenger_at(server.url, max_response_size=MiB).list_conversations()
            server.stopped.wait(0.2)
        assert server.sent < 64 * MiB

    @pytest.mark.parametrize(
        "name", ["list_conversations", "get_conversation", "download_attachment"]
    )
    def test_gzip_bomb(self, name):
        """64 KiB of gzip that inflate to 64 MiB: refused at 1 MiB, counted after decompression."""
        bomb = _gzip_bomb(64 * MiB)
        answer = http_answer(
            "200 OK", bomb, ["Content-Type: application/json", "Content-Encoding: gzip"]
        )
        with MiniServer(serve_bytes(answer)) as server:
            m = messenger_at(server.url, max_response_size=MiB)
            with pytest.raises(ResponseError, match="after decompression"):
                CALLS[name](m)

    def test_error_bodies_are_bounded_too(self):
        answer = http_answer("500 Server Error", b" " * (2 * MiB), ["Content-Type: text/html"])
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(
            ResponseError, match="more than max_response_size"
        ):
            messenger_at(server.url, max_response_size=MiB).list_conversations()

    def test_at_the_limit_is_accepted(self):
        body = b"%PDF" + b"x" * (MiB - 4)
        answer = http_answer("200 OK", body, ["Content-Type: application/pdf"])
        with MiniServer(serve_bytes(answer)) as server:
            got = messenger_at(server.url, max_response_size=MiB).download_attachment(UID, UID, UID)
        assert body == got
        deflated = zlib.compress(body)
        answer = http_answer(
            "200 OK", deflated, ["Content-Type: application/pdf", "Content-Encoding: deflate"]
        )
        with MiniServer(serve_bytes(answer)) as server:
            got = messenger_at(server.url, max_response_size=MiB).download_attachment(UID, UID, UID)
        assert body == got


# -- 11. ApiError.message is DHIS2's own text -----------------------------------------------------


class TestMessageIsDhis2s:
    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_error(self, emulator, alice, status):
        emulator.inject(status=status, body={"httpStatus": "x", "message": "Database is down"})
        with pytest.raises(ApiError) as info:
            alice.list_conversations()
        assert "Database is down" == info.value.message
        assert "try again later" in info.value.hint
        assert str(info.value).startswith(f"HTTP {status}: Database is down (")
        assert "try again later" in str(info.value)

    def test_no_message(self):
        with MiniServer(
            serve_bytes(http_answer("503 Service Unavailable"))
        ) as server, pytest.raises(ApiError) as info:
            messenger_at(server.url).list_conversations()
        assert "Service Unavailable" == info.value.message  # the status line's own words
        assert "no message from DHIS2" in str(info.value)

    def test_redirect(self, emulator, alice):
        emulator.inject(status=302, headers={"Location": "https://elsewhere.example/api"})
        with pytest.raises(ApiError) as info:
            alice.list_conversations()
        assert "Found" == info.value.message
        assert "https://elsewhere.example/api" in info.value.hint


# -- Issue 11.4: settings take effect, or are read-only ---------------------------------------------


class TestSettingsTakeEffect:
    def test_timeout(self, emulator, connect):
        m = connect("alice")
        m.timeout = (1.0, 0.2)
        emulator.inject(delay=2)
        with pytest.raises(TransportError, match=r"within 0\.2 s"):
            m.list_conversations()

    def test_retries(self, emulator, connect, waits):
        m = connect("alice", retries=0)
        m.retries = 2
        emulator.inject(status=503, times=2)
        m.list_conversations()
        assert 2 == len(waits)

    def test_backoff(self, emulator, connect, waits):
        m = connect("alice", retries=2)
        m.backoff = 0.25
        emulator.inject(status=503, times=2)
        m.list_conversations()
        assert [0.25, 0.5] == waits

    def test_max_retry_wait(self, emulator, connect, waits):
        m = connect("alice", retries=2)
        m.max_retry_wait = 5
        emulator.inject(status=503, headers={"Retry-After": "10"})
        with pytest.raises(ApiError):
            m.list_conversations()
        assert [] == waits

    def test_deadline(self):
        def handler(conn, server):
            server.drip(conn, DRIPPED["headers dripped"][1])

        with MiniServer(handler) as server:
            m = messenger_at(server.url)
            m.deadline = 0.5
            with pytest.raises(TransportError, match="deadline of 0.5 s"):
                m.list_conversations()

    def test_max_response_size(self, emulator, connect):
        emulator.add_conversation(sender="admin", recipients=["alice"], subject="x" * 200)
        m = connect("alice")
        m.list_conversations()
        m.max_response_size = 100
        with pytest.raises(ResponseError, match="max_response_size"):
            m.list_conversations()

    @pytest.mark.parametrize(
        "name, value",
        [
            ("timeout", None),
            ("timeout", float("inf")),
            ("retries", -1),
            ("backoff", float("nan")),
            ("max_retry_wait", -1),
            ("deadline", 0),
            ("max_response_size", 0),
        ],
    )
    def test_checked_when_set(self, name, value):
        m = Messenger("https://h.org", token="d2p_x")
        before = getattr(m, name)
        with pytest.raises((ValueError, TypeError), match=name):
            setattr(m, name, value)
        assert before == getattr(m, name)

    def test_base_url_is_read_only(self):
        m = Messenger("https://h.org", token="d2p_x")
        with pytest.raises(AttributeError):
            m.base_url = "https://other.org"
        assert "https://h.org" == m.base_url

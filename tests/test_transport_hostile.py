"""Hostile and broken servers, over real sockets: the deadline, bounded memory, typed errors.

The servers here are MiniServers (tests/conftest.py), raw sockets on 127.0.0.1, so they can
do what no well-behaved HTTP server does: drip bytes, announce 500 MiB, send a gzip bomb,
answer with JSON nested ten thousand deep or a Location no URL parser takes.  The deadline
bounds a whole call however the server drips (``TestDeadline``); nothing untyped escapes
once a request was sent (``TestNothingUntyped``); memory stays bounded by
``max_response_size``, counted after decompression (``TestBoundedMemory``).  Every server
loop is bounded; a test that would hang without the fix ends when its server gives up, and
then fails on the error it got.

Neighbours: the emulator's faults and the retries in test_transport.py, with the retries
the deadline leaves no time for; the deadline, timeout and size settings checked and
changed in test_construction.py; which credentials a server sees (netrc, a proxy) in
test_security.py.
"""

from __future__ import annotations

import functools
import gzip
import socket
import threading
import time
import zlib

import pytest
import requests
from urllib3.connection import HTTPConnection

from dhis2_messages import (
    ApiError,
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
    json_answer,
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


# -- The deadline bounds a whole call --------------------------------------------------

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


# -- A slow uplink: the body is written within the deadline ------------------------------

RECEIPT = json_answer({"response": {"fileResource": {"id": UID}}}, "202 Accepted")


def _small_send_buffer(m, url):
    """The client's socket holds 64 KiB, as a slow link's would: on the loopback the kernel
    takes megabytes of body at once, and the upload would seem to have gone out."""
    adapter = m._session.get_adapter(url)
    options = HTTPConnection.default_socket_options + [(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)]
    adapter.poolmanager.connection_pool_kw["socket_options"] = options


def _slow_reader(rate, stall_after=None):
    """A MiniServer handler that takes the body at *rate* bytes a second (and stops taking
    it after *stall_after* bytes), then answers as DHIS2 does to an upload."""
    taken = []

    def handler(conn, server):
        length = int(server.request[1]["Content-Length"])
        taken.append(server.throttle(conn, stall_after or length, rate))
        if stall_after is None:
            conn.sendall(RECEIPT)
        else:
            server.stopped.wait(30)  # takes no more, answers nothing

    return handler, taken


class TestSlowUplink:
    """A body is written in pieces: each within the read timeout, all within the deadline.
    Before, one write of the whole body had to finish within the connect timeout."""

    @pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
    def test_an_upload_at_250_kb_a_second_arrives(self, request, tls):
        """1 MB at 250 kB/s takes about 4 s: more than the connect timeout, well within the
        deadline.  (It failed after the 1 s connect timeout, "timed out".)"""
        handler, taken = _slow_reader(250_000)
        context, options = None, {}
        if tls:
            certificate = request.getfixturevalue("certificate")
            context, options = tls_context(certificate), {"verify": str(certificate[0])}
        data = bytes(range(256)) * 4096  # 1 MiB
        with MiniServer(handler, context, read_body=False) as server:
            m = messenger_at(server.url, timeout=(1.0, 5.0), deadline=120, **options)
            _small_send_buffer(m, server.url)
            assert UID == m.upload_attachment(data, filename="report.pdf")
        assert 1 == len(server.requests)
        assert taken[0] > len(data)  # the whole multipart body arrived

    def test_a_body_that_stalls_is_cut_at_the_deadline(self):
        """The server takes 256 KiB, then nothing: the call ends when the deadline passes,
        not at the connect timeout (it said "The connection broke ... timed out")."""
        handler, _ = _slow_reader(1_000_000, stall_after=256 * 1024)
        with MiniServer(handler, read_body=False) as server:
            m = messenger_at(server.url, timeout=(0.5, 20.0), deadline=2.0)
            _small_send_buffer(m, server.url)
            started = time.monotonic()
            with pytest.raises(TransportError) as info:
                m.upload_attachment(b"x" * 4 * MiB, filename="big.bin")
            elapsed = time.monotonic() - started
        assert ("deadline", 2.0, True) == (info.value.kind, info.value.seconds, info.value.sent)
        assert elapsed < 30, f"took {elapsed:.1f} s: the write was not cut off"  # it ended

    def test_a_body_that_stalls_is_cut_after_the_read_timeout(self):
        """Within a long deadline, a server that takes nothing more for the read timeout ends
        the call as a read timeout, as a server that does not answer does."""
        handler, _ = _slow_reader(1_000_000, stall_after=256 * 1024)
        with MiniServer(handler, read_body=False) as server:
            m = messenger_at(server.url, timeout=(0.5, 1.0), deadline=60.0)
            _small_send_buffer(m, server.url)
            started = time.monotonic()
            with pytest.raises(TransportError) as info:
                m.upload_attachment(b"x" * 4 * MiB, filename="big.bin")
            elapsed = time.monotonic() - started
        assert ("read_timeout", 1.0) == (info.value.kind, info.value.seconds)
        assert "the server took no more of the request within 1 s" == info.value.reason
        assert elapsed < 30, f"took {elapsed:.1f} s: the write was not cut off"


# -- Nothing untyped once a request was sent --------------------------------------------

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


# -- Bounded memory: max_response_size, after decompression ----------------------------------


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
        """Of an error page only max_response_size bytes are read, and its status is the error."""
        page = b"<html><title>Server Error</title>" + b" " * (2 * MiB)
        answer = http_answer("500 Server Error", page, ["Content-Type: text/html"])
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(ApiError) as info:
            messenger_at(server.url, max_response_size=MiB, retries=0).list_conversations()
        assert (500, "Server Error") == (info.value.status_code, info.value.message)
        assert len(info.value.body) <= MiB

    def test_an_error_page_that_claims_two_gigabytes_keeps_its_status(self):
        """A 500 page whose Content-Length says 2 GB, then ends: the status, not a size error."""
        page = b"<html><title>Database is down</title></html>"
        answer = (
            b"HTTP/1.1 500 Server Error\r\nContent-Type: text/html\r\n"
            b"Content-Length: 2147483648\r\nConnection: close\r\n\r\n" + page
        )
        with MiniServer(serve_bytes(answer)) as server, pytest.raises(ApiError) as info:
            messenger_at(server.url, retries=0).list_conversations()
        assert (500, "Database is down") == (info.value.status_code, info.value.message)

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

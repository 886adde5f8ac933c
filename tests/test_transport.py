"""The transport against the emulator: what each fault becomes, and what is retried.

Every call kind meets every fault (``TestFaultMatrix``): a GET, an idempotent POST, a
DELETE and the calls that create something.  Error answers, DHIS2's own and a proxy's,
become typed errors with DHIS2's text (``TestErrorStyles``, ``TestMessageIsDhis2s``).
Idempotent calls are retried (``TestIdempotentRetries``: backoff, Retry-After, and a
retry the deadline leaves no time for); a call that creates something is never sent twice
(``TestCreatesNeverResent``), and when its answer is lost send, reply and send_feedback look
for what DHIS2 did (``TestLostCreates``; through a real nginx that answers 504 before the
conversation is made, at the end), while what never left this machine is never said to
have been done (``TestNeverSent``); and a retry after a lost answer does not turn work that
was done into an error (``TestDeleteAfterALostAnswer``, ``TestBulkFlagsAfterALostAnswer``).
Waits between retries are recorded by replacing ``dhis2_messages.time.sleep``; requests
always go over real HTTP to the emulator.

Neighbours: servers no emulator imitates (dripping, 500 MiB, gzip bombs) and the
deadline against them are in test_transport_hostile.py; what an error or log line may
show of the credentials, TLS and redirects in test_security.py; each setting's own check
in test_construction.py.  What a method means when all goes well is in its area's file
(test_read_state.py for mark_read, and so on).
"""

from __future__ import annotations

import email.utils
import json
import logging
import pickle
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import dhis2_messages
from dhis2_messages import (
    ApiError,
    ConflictError,
    Dhis2Error,
    Messenger,
    NotFoundError,
    PermissionDenied,
    ResponseError,
    TransportError,
)
from tests.conftest import (
    ALICE,
    BOB,
    UNKNOWN,
    MiniServer,
    http_answer,
    messenger_at,
    serve_bytes,
)
from tests.emulator import free_port, html_page

SHORT = (1.0, 0.3)  # (connect, read) seconds for the fault tests
HTML_LOGIN = (
    "<!doctype html><html><head><title>DHIS2 - Log in</title></head>"
    "<body><form action='/dhis-web-login/'>Username <input name='j_username'></form></body></html>"
)
DATA = Path(__file__).parent / "data"


# -- The call kinds ----------------------------------------------------------
# Each entry: how to call it (given a Messenger and a conversation uid), the
# method and path regex of its request, and whether it may be retried.


def _list(m, uid):
    return m.list_conversations()


def _get(m, uid):
    return m.get_conversation(uid)


def _mark_read(m, uid):
    return m.mark_read([uid])


def _set_status(m, uid):
    return m.set_status(uid, "OPEN")


def _delete(m, uid):
    return m.delete_conversations([uid])


def _send(m, uid):
    return m.send(subject="Fault test", text="Body", users=[ALICE])


def _reply(m, uid):
    return m.reply(uid, "A reply")


def _feedback(m, uid):
    return m.send_feedback(subject="Fault test", text="Body")


def _add_recipients(m, uid):
    return m.add_recipients(uid, users=[BOB])


def _upload(m, uid):
    return m.upload_attachment(b"%PDF-1.4 test", filename="report.pdf")


KINDS = {
    # name: (call, method, path regex, idempotent)
    "list": (_list, "GET", r"^/api/messageConversations$", True),
    "get": (_get, "GET", r"^/api/messageConversations/[A-Za-z0-9]{11}$", True),
    "mark_read": (_mark_read, "POST", r"/read$", True),
    "set_status": (_set_status, "POST", r"/status$", True),
    "delete": (_delete, "DELETE", r"^/api/messageConversations$", True),
    "send": (_send, "POST", r"^/api/messageConversations$", False),
    "reply": (_reply, "POST", r"^/api/messageConversations/[A-Za-z0-9]{11}$", False),
    "send_feedback": (_feedback, "POST", r"/feedback$", False),
    "add_recipients": (_add_recipients, "POST", r"/recipients$", False),
    "upload": (_upload, "POST", r"^/api/fileResources$", False),
}
IDEMPOTENT = [name for name, kind in KINDS.items() if kind[3]]
CREATES = [name for name, kind in KINDS.items() if not kind[3]]
#: The creates that look on DHIS2 for what a lost answer did, and what that costs.
LOOKED_UP = ["send", "reply", "send_feedback"]
#: What each create says when its answer was lost.
LOST_ADVICE = {
    "send": "look before sending it again",
    "reply": "look before sending it again",
    "send_feedback": "look before sending it again",
    "add_recipients": "adding the same recipients again is harmless",
    "upload": "uploading again makes a new one",
}


@pytest.fixture
def conversation(emulator):
    return emulator.add_conversation(sender="admin", recipients=["alice"], subject="Existing")


def _messenger(connect, **options):
    options.setdefault("timeout", SHORT)
    m = connect("admin", **options)
    m.backoff = 0.01
    return m


def _inject(emulator, kind, **fault):
    _, method, path, _ = KINDS[kind]
    emulator.inject(method=method, path=path, **fault)


def _matching(emulator, kind):
    """The requests of this call kind the emulator received."""
    import re

    _, method, path, _ = KINDS[kind]
    return [r for r in emulator.log if r.method == method and re.search(path, r.path)]


def _run(call, m, uid, error, match=None):
    """Call, expect *error*, and check it came within the timeout."""
    started = time.monotonic()
    with pytest.raises(error, match=match) as info:
        call(m, uid)
    elapsed = time.monotonic() - started
    assert elapsed < sum(m.timeout) + 2, f"took {elapsed:.1f} s"
    return info.value


# -- The fault matrix: fault x call kind -> error class --------------------------

ALL = list(KINDS)


class TestFaultMatrix:
    @pytest.mark.parametrize("kind", ALL)
    def test_connection_refused(self, connect, kind):
        """Nothing listens on the port: TransportError that says to check base_url."""
        m = Messenger(
            f"http://127.0.0.1:{free_port()}", auth=("admin", "district"), timeout=SHORT, retries=0
        )
        error = _run(KINDS[kind][0], m, "AbCdEfGhIjK", TransportError, match="Could not connect")
        assert "Check base_url" in str(error)
        assert isinstance(error.__cause__, dhis2_messages.requests.ConnectionError)

    @pytest.mark.parametrize("kind", ALL)
    def test_server_never_answers(self, emulator, connect, conversation, kind):
        """Accepted, then silence longer than the read timeout: TransportError in time."""
        _inject(emulator, kind, delay=5)
        error = _run(
            KINDS[kind][0],
            _messenger(connect),
            conversation,
            TransportError,
            match=r"did not answer .* within 0\.3 s",
        )
        assert "raise timeout=" in str(error)
        assert 1 == len(_matching(emulator, kind))

    @pytest.mark.parametrize("kind", ALL)
    def test_dropped_without_response(self, emulator, connect, conversation, kind):
        """The server hangs up before answering: TransportError, the answer was lost."""
        _inject(emulator, kind, drop=True)
        error = _run(
            KINDS[kind][0],
            _messenger(connect),
            conversation,
            TransportError,
            match="connection broke",
        )
        # Only a create is told it may have been done: a read has nothing to look for.
        assert error.maybe_done is (kind in CREATES)
        assert (kind in CREATES) is (LOST_ADVICE.get(kind, "again") in error.hint)
        assert "try again" not in error.hint
        assert (1 if kind in LOOKED_UP else 0) == error.looked
        assert error.sent and "broken" == error.kind
        assert 1 == len(_matching(emulator, kind))

    @pytest.mark.parametrize("kind", [k for k in ALL if k not in LOOKED_UP])
    def test_dropped_mid_response(self, emulator, connect, conversation, kind):
        """Half the body, then the connection closes: TransportError, never a partial result.

        (send, reply and send_feedback then find what DHIS2 did: TestLostCreates.)"""
        # add_recipients answers 204 without a body, so give it one to cut in half.
        fault = (
            {"status": 200, "body": {"httpStatus": "OK", "message": "x" * 200}, "process": True}
            if kind == "add_recipients"
            else {}
        )
        _inject(emulator, kind, truncate=True, **fault)
        _run(
            KINDS[kind][0],
            _messenger(connect),
            conversation,
            TransportError,
            match="connection broke",
        )
        assert 1 == len(_matching(emulator, kind))

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    @pytest.mark.parametrize("kind", ALL)
    def test_server_errors(self, emulator, connect, conversation, waits, kind, status):
        """5xx from DHIS2 or a proxy: ApiError with the status and a hint to try later; for a
        create never that alone: a proxy's 502, 503 or 504 may come after DHIS2 did it."""
        _inject(emulator, kind, status=status)
        error = _run(KINDS[kind][0], _messenger(connect), conversation, ApiError)
        assert status == error.status_code
        assert type(error) is ApiError
        assert str(status) in str(error)
        if kind in IDEMPOTENT:
            assert "try again later" in str(error)
            return
        assert "try again" not in str(error)
        assert error.maybe_done is (status != 500)
        advice = LOST_ADVICE[kind] if status != 500 else "most likely nothing was done"
        assert advice in error.hint

    @pytest.mark.parametrize("kind", ALL)
    def test_html_page_with_200(self, emulator, connect, conversation, kind):
        """A proxy's or login page answered 200 in DHIS2's place: ResponseError naming it."""
        _inject(emulator, kind, status=200, body=HTML_LOGIN, content_type="text/html;charset=UTF-8")
        error = _run(
            KINDS[kind][0],
            _messenger(connect),
            conversation,
            ResponseError,
            match="not at a proxy or login page",
        )
        assert "DHIS2 - Log in" in str(error)
        assert "<html>" not in str(error)

    @pytest.mark.parametrize(
        "body", ['{"messageConversations": [{"id": "AbCd', "not json at all", "{}}"]
    )
    @pytest.mark.parametrize("kind", ALL)
    def test_truncated_or_invalid_json(self, emulator, connect, conversation, kind, body):
        """A 2xx whose JSON body is cut short or malformed: ResponseError, not a JSON error.

        send and send_feedback read only Location, which such an answer lacks."""
        status = 201 if kind in ("send", "reply", "send_feedback") else 200
        _inject(emulator, kind, status=status, body=body, content_type="application/json")
        creates_uid = kind in ("send", "send_feedback")
        error = _run(
            KINDS[kind][0],
            _messenger(connect),
            conversation,
            ResponseError,
            # send_feedback then looks for the ticket, finds none (none was made) and says so
            match="no Location|without the Location header" if creates_uid else "not valid JSON",
        )
        if not creates_uid:
            assert "Check that base_url points at DHIS2" in str(error)

    def test_created_without_location(self, emulator, connect):
        """DHIS2 always names the new conversation in Location; without it, ResponseError
        that warns the conversation probably exists."""
        _inject(emulator, "send", process=True, strip_headers=("Location",))
        error = _run(KINDS["send"][0], _messenger(connect), None, ResponseError, match="Location")
        assert "look in the inbox before sending again" in str(error)
        assert 1 == len(emulator.conversations)

    def test_feedback_without_location_is_looked_up(self, emulator, connect):
        """A ticket whose Location was lost (a proxy, or DHIS2 before 2.41.3) is found with
        one list request, never sent again."""
        _inject(emulator, "send_feedback", process=True, strip_headers=("Location",))
        uid = _messenger(connect).send_feedback(subject="Lost", text="Where is it?")
        assert [uid] == list(emulator.conversations)
        assert ["POST", "GET"] == [r.method for r in emulator.log]

    def test_reply_needs_no_location(self, emulator, connect, conversation):
        """reply returns nothing, so a 201 without Location is still a success."""
        _inject(emulator, "reply", process=True, strip_headers=("Location",))
        assert _messenger(connect).reply(conversation, "Fine") is None

    @pytest.mark.parametrize(
        "location",
        [
            "/api/messageConversations/",
            "/api/messageConversations/../x",
            "/api/messageConversations/AbC?x=1",
        ],
    )
    def test_location_without_uid(self, emulator, connect, location):
        _inject(emulator, "send", process=True, headers={"Location": emulator.url + location})
        _run(_send, _messenger(connect), None, ResponseError, match="uid was expected")

    @pytest.mark.parametrize(
        "location",
        [
            "http://127.0.0.1:{port}/api/fileResources/AbCdEfGhIjK",
            "javascript:alert(1)//AbCdEfGhIjK",
            "http://127.0.0.1:{port}/AbCdEfGhIjK",
            "http://127.0.0.1:{port}/api/messageConversations/AbCdEfGhIjK/recipients",
            "ftp://127.0.0.1:{port}/api/messageConversations/AbCdEfGhIjK",
        ],
    )
    def test_a_location_that_names_no_conversation(self, location):
        """Only .../api[/NN]/messageConversations/<uid> names the new conversation (the
        last path segment of any Location was taken as its uid)."""
        answer = http_answer("201 Created", b"", ["Location: " + location])
        with MiniServer(serve_bytes(answer)) as server:
            answer = answer.replace(b"{port}", server.url.rsplit(":", 1)[1].encode())
            server.handler = serve_bytes(answer)
            with pytest.raises(ResponseError, match="no conversation's address") as info:
                _send(messenger_at(server.url), None)
        assert "no_location" == info.value.kind
        assert "look in the inbox before sending again" in str(info.value)

    @pytest.mark.parametrize(
        "location",
        [
            "http://localhost:8080/api/messageConversations/AbCdEfGhIjK",  # a proxy's backend
            "https://dhis2.example.org/dhis/api/40/messageConversations/AbCdEfGhIjK/",
            "/api/messageConversations/AbCdEfGhIjK",  # relative to the request
        ],
    )
    def test_a_location_names_the_conversation_wherever_it_points(self, location):
        """DHIS2 builds Location from the request and X-Forwarded-*: behind a proxy its host,
        port, scheme and context path may be another's, and a versioned request gets a
        versioned path.  The uid is what counts; the address is never requested."""
        answer = http_answer("201 Created", b"", ["Location: " + location])
        with MiniServer(serve_bytes(answer)) as server:
            assert "AbCdEfGhIjK" == _send(messenger_at(server.url), None)
        assert 1 == len(server.requests)

    @pytest.mark.parametrize("kind", ALL)
    def test_every_fault_is_a_dhis2_error(self, emulator, connect, conversation, kind):
        """A fault never escapes as a requests or json exception."""
        m = _messenger(connect)
        for fault in (
            {"drop": True},
            {"status": 200, "body": "<html></html>", "content_type": "text/html"},
            {"status": 503},
            {"status": 200, "body": "[", "content_type": "application/json"},
        ):
            emulator.inject(**fault)
            with pytest.raises(Dhis2Error) as info:
                KINDS[kind][0](m, conversation)
            assert type(info.value).__module__ == "dhis2_messages"


# -- Error answers: DHIS2's styles, and the message is DHIS2's own text -------------


class TestErrorStyles:
    """The three error styles of DHIS2, and the reference bodies from its controller tests."""

    @pytest.mark.parametrize(
        "name, cls",
        [
            ("create_no_recipients_409", ConflictError),
            ("reply_forbidden_403", PermissionDenied),
            ("reply_unknown_attachment_409", ConflictError),
            ("reply_unknown_conversation_404", NotFoundError),
        ],
    )
    def test_reference_webmessages(self, emulator, admin, name, cls):
        """Each WebMessage from DHIS2's tests maps to its class with message and errorCode."""
        response = json.loads((DATA / f"{name}.json").read_text())["response"]
        body = response["body"]
        emulator.inject(
            status=response["status"], body=json.dumps(body), content_type="application/json"
        )
        with pytest.raises(cls) as info:
            admin.list_conversations()
        assert (response["status"], body["message"], body.get("errorCode")) == (
            info.value.status_code,
            info.value.message,
            info.value.error_code,
        )
        assert body == info.value.body

    def test_bare_message(self, emulator, admin):
        """A bare {"message"} body (no WebMessage envelope) still gives DHIS2's text."""
        emulator.inject(
            status=404,
            body='{"message":"No user with uid: Zz0000000Zz"}',
            content_type="application/json",
        )
        with pytest.raises(NotFoundError) as info:
            admin.list_conversations()
        assert ("No user with uid: Zz0000000Zz", None) == (
            info.value.message,
            info.value.error_code,
        )
        assert {"message": "No user with uid: Zz0000000Zz"} == info.value.body

    def test_html_error_page(self, emulator, admin):
        """A container's HTML error page gives its title, not a JSON crash."""
        page = b"<html><head><title>HTTP Status 400 - Bad Request</title></head><body><h1>x</h1></body></html>"
        emulator.inject(status=400, body=page, content_type="text/html")
        with pytest.raises(ApiError) as info:
            admin.list_conversations()
        assert "HTTP Status 400 - Bad Request" == info.value.message
        assert page.decode() == info.value.body

    def test_errors_pickle(self, admin):
        with pytest.raises(ConflictError) as info:
            admin.send(subject="s", text="t", users=UNKNOWN)
        copy = pickle.loads(pickle.dumps(info.value))
        assert (copy.status_code, copy.message) == (info.value.status_code, info.value.message)


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


# -- Retries -------------------------------------------------------------------


RETRIED_CALLS = {
    "list": _list,
    "get": _get,
    "mark_read": _mark_read,
    "mark_unread": lambda m, uid: m.mark_unread([uid]),
    "follow_up": lambda m, uid: m.follow_up([uid]),
    "unfollow_up": lambda m, uid: m.unfollow_up([uid]),
    "set_status": _set_status,
    "set_priority": lambda m, uid: m.set_priority(uid, "HIGH"),
    "assign": lambda m, uid: m.assign(uid, ALICE),
    "unassign": lambda m, uid: m.unassign(uid),
    "delete": _delete,
}


class TestIdempotentRetries:
    @pytest.mark.parametrize("status", [429, 502, 503, 504])
    @pytest.mark.parametrize("name", list(RETRIED_CALLS))
    def test_retried_until_success(self, emulator, connect, conversation, waits, name, status):
        """Two failures, then success: three requests, backoff doubling between them."""
        emulator.inject(status=status, times=2)
        m = _messenger(connect, retries=3)
        RETRIED_CALLS[name](m, conversation)
        assert 3 == len(emulator.log)
        assert (
            len({(r.method, r.path, r.query) for r in emulator.log}) == 1
        )  # the same request again
        assert [0.01, 0.02] == waits

    @pytest.mark.parametrize("fault", [{"drop": True}, {"delay": 5}, {"truncate": True}])
    @pytest.mark.parametrize("kind", IDEMPOTENT)
    def test_connection_errors_retried(self, emulator, connect, conversation, waits, kind, fault):
        """Dropped, timed-out and cut-short answers are retried for idempotent calls."""
        _inject(emulator, kind, **fault)
        KINDS[kind][0](_messenger(connect, retries=2), conversation)
        assert 2 == len(_matching(emulator, kind))
        assert [0.01] == waits

    def test_download_is_retried(self, emulator, connect, waits):
        m = _messenger(connect, retries=2)
        file_uid = m.upload_attachment(b"payload", filename="a.txt")
        uid = m.send(subject="s", text="t", users=[ALICE], attachments=[file_uid])
        message = m.get_conversation(uid).messages[0].id
        emulator.inject(method="GET", path="/attachments/", status=503)
        assert b"payload" == m.download_attachment(uid, message, file_uid)
        assert [0.01] == waits

    @pytest.mark.parametrize("kind", IDEMPOTENT)
    def test_exhausted_retries_raise_api_error(self, emulator, connect, conversation, waits, kind):
        """retries=2 means three attempts; then ApiError with the last status, chained to nothing."""
        _inject(emulator, kind, status=502)
        _inject(emulator, kind, status=503)
        _inject(emulator, kind, status=504)
        _inject(emulator, kind, status=503)  # never reached
        error = _run(KINDS[kind][0], _messenger(connect, retries=2), conversation, ApiError)
        assert 504 == error.status_code
        assert 3 == len(_matching(emulator, kind))
        assert [0.01, 0.02] == waits
        assert not isinstance(error.__context__, dhis2_messages.requests.RequestException)

    @pytest.mark.parametrize("kind", IDEMPOTENT)
    def test_exhausted_connection_retries_raise_transport_error(
        self, emulator, connect, conversation, waits, kind
    ):
        _inject(emulator, kind, drop=True, times=5)
        _run(KINDS[kind][0], _messenger(connect, retries=2), conversation, TransportError)
        assert 3 == len(_matching(emulator, kind))
        assert [0.01, 0.02] == waits

    def test_refused_idempotent_retried(self, connect, waits):
        m = Messenger(
            f"http://127.0.0.1:{free_port()}", auth=("admin", "district"), timeout=SHORT, retries=3
        )
        m.backoff = 0.01
        with pytest.raises(TransportError, match="Could not connect"):
            m.list_conversations()
        assert [0.01, 0.02, 0.04] == waits

    def test_retry_after_seconds(self, emulator, connect, waits):
        emulator.inject(status=503, headers={"Retry-After": "2"})
        _messenger(connect, retries=1).list_conversations()
        assert [2.0] == waits
        assert 2 == len(emulator.log)

    def test_retry_after_http_date(self, emulator, connect, waits):
        when = email.utils.formatdate(time.time() + 3, usegmt=True)
        emulator.inject(status=429, headers={"Retry-After": when})
        _messenger(connect, retries=1).list_conversations()
        assert 1 == len(waits)
        assert 1.5 <= waits[0] <= 3.5  # the date has whole seconds
        assert 2 == len(emulator.log)

    def test_retry_after_in_the_past(self, emulator, connect, waits):
        emulator.inject(status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        _messenger(connect, retries=1).list_conversations()
        assert [0.0] == waits

    @pytest.mark.parametrize("value", ["soon", "-5", "1.5e3x", ""])
    def test_unparseable_retry_after_uses_backoff(self, emulator, connect, waits, value):
        emulator.inject(status=503, headers={"Retry-After": value})
        _messenger(connect, retries=1).list_conversations()
        assert [0.01] == waits

    def test_a_retry_the_deadline_leaves_no_time_for_says_so(self, emulator, connect, waits):
        """The 503 is final because its Retry-After would pass the deadline: the error says why."""
        m = _messenger(connect, retries=3, deadline=1.5)
        emulator.inject(status=503, headers={"Retry-After": "2"})
        with pytest.raises(ApiError) as info:
            m.list_conversations()
        assert 503 == info.value.status_code
        assert "Service Unavailable" == info.value.message  # DHIS2's own text, nothing added
        assert "the next wait would pass the deadline of 1.5 s" in str(info.value)
        assert [] == waits
        assert 1 == len(emulator.log)

    def test_a_broken_connection_the_deadline_leaves_no_retry_for_says_so(
        self, emulator, connect, waits
    ):
        m = _messenger(connect, retries=3, deadline=0.4)
        m.backoff = 1.0
        emulator.inject(drop=True)
        with pytest.raises(TransportError) as info:
            m.list_conversations()
        assert "the next wait would pass the deadline of 0.4 s" in str(info.value)
        assert [] == waits

    def test_retry_after_longer_than_max_wait_is_not_waited(self, emulator, connect, waits):
        """A Retry-After beyond max_retry_wait: no retry, ApiError at once."""
        m = _messenger(connect, retries=3)
        emulator.inject(status=503, headers={"Retry-After": str(int(m.max_retry_wait) + 1)})
        with pytest.raises(ApiError) as info:
            m.list_conversations()
        assert 503 == info.value.status_code
        assert [] == waits
        assert 1 == len(emulator.log)

    def test_429_retried_for_get(self, emulator, connect, conversation, waits):
        emulator.inject(method="GET", status=429)
        assert conversation == _messenger(connect, retries=1).get_conversation(conversation).id
        assert 2 == len(emulator.log)

    @pytest.mark.parametrize("status", [500, 400, 401, 403, 404, 409])
    def test_other_statuses_not_retried(self, emulator, connect, waits, status):
        emulator.inject(status=status)
        with pytest.raises(ApiError) as info:
            _messenger(connect, retries=3).list_conversations()
        assert status == info.value.status_code
        assert 1 == len(emulator.log)
        assert [] == waits

    def test_retries_zero_turns_retries_off(self, emulator, connect, waits):
        emulator.inject(status=503)
        with pytest.raises(ApiError):
            _messenger(connect, retries=0).list_conversations()
        assert 1 == len(emulator.log)
        assert [] == waits


class TestCreatesNeverResent:
    @pytest.mark.parametrize("status", [429, 502, 503, 504])
    @pytest.mark.parametrize("kind", CREATES)
    def test_gateway_errors(self, emulator, connect, conversation, waits, kind, status):
        """Exactly one POST arrives, whatever the status and however many retries are allowed;
        the waits are those of looking again for what a 504 may still bring."""
        _inject(emulator, kind, status=status, times=5)
        error = _run(KINDS[kind][0], _messenger(connect, retries=3), conversation, ApiError)
        assert status == error.status_code
        assert 1 == len(_matching(emulator, kind))
        relooks = status == 504 and kind in LOOKED_UP
        assert ([0.01, 0.02, 0.04, 0.08, 0.16] if relooks else []) == waits

    @pytest.mark.parametrize("status", [502, 503])
    @pytest.mark.parametrize("kind", ["send", "send_feedback"])
    def test_created_then_proxy_failed(self, emulator, connect, waits, kind, status):
        """DHIS2 created it, a proxy answered 5xx: exactly one conversation, and its uid."""
        _inject(emulator, kind, status=status, process=True, times=5)
        uid = KINDS[kind][0](_messenger(connect, retries=3), None)
        assert 1 == len(_matching(emulator, kind))
        assert [uid] == list(emulator.conversations)

    @pytest.mark.parametrize("status", [502, 503])
    def test_reply_processed_then_proxy_failed(
        self, emulator, connect, conversation, waits, status
    ):
        _inject(emulator, "reply", status=status, process=True, times=5)
        m = _messenger(connect, retries=3)
        assert m.reply(conversation, "Only once") is None
        texts = [message.text for message in m.get_conversation(conversation).messages]
        assert 1 == texts.count("Only once")

    @pytest.mark.parametrize(
        "fault", [{"delay": 5}, {"drop": True}, {"drop": True, "process": True}, {"truncate": True}]
    )
    @pytest.mark.parametrize("kind", CREATES)
    def test_timeout_and_dropped(self, emulator, connect, conversation, waits, kind, fault):
        """Read timeout or a dropped connection: the request may have arrived, so it is not
        re-sent; send, reply and send_feedback find what DHIS2 did (all but the timeout and
        the drop before the work), the others say it may have been done."""
        if kind == "add_recipients" and fault.get("truncate"):
            fault = dict(fault, status=200, body={"message": "x" * 100}, process=True)
        _inject(emulator, kind, times=5, **fault)
        done = fault.get("process") or fault.get("truncate")
        if kind in LOOKED_UP and done:
            KINDS[kind][0](_messenger(connect, retries=3), conversation)
        else:
            error = _run(
                KINDS[kind][0], _messenger(connect, retries=3), conversation, TransportError
            )
            assert error.maybe_done and LOST_ADVICE[kind] in error.hint
        assert 1 == len(_matching(emulator, kind))
        relooks = "delay" in fault and kind in LOOKED_UP
        assert ([0.01, 0.02, 0.04, 0.08, 0.16] if relooks else []) == waits

    def test_send_processed_then_dropped_exists_once(self, emulator, connect, waits):
        _inject(emulator, "send", drop=True, process=True, times=5)
        uid = _send(_messenger(connect, retries=3), None)
        assert [uid] == list(emulator.conversations)

    @pytest.mark.parametrize("kind", CREATES)
    def test_refused_before_sending_is_retried(self, connect, waits, kind):
        """Nothing reached a server, so a create may try again: retries=2 is three attempts."""
        m = Messenger(
            f"http://127.0.0.1:{free_port()}", auth=("admin", "district"), timeout=SHORT, retries=2
        )
        m.backoff = 0.01
        with pytest.raises(TransportError, match="Could not connect"):
            KINDS[kind][0](m, "AbCdEfGhIjK")
        assert [0.01, 0.02] == waits  # two waits: three attempts


# -- A create whose answer was lost --------------------------------------------------
# send, reply and send_feedback look on DHIS2 for what they may have done (one look;
# after a timeout or a 504 a few more, waiting as between retries) and return as if the
# answer had come, or raise an error that says it was not found and may still arrive.


LOOKERS = {
    "send": lambda m, uid: m.send(subject="Lost", text="Where is it?", users=[ALICE]),
    "reply": lambda m, uid: m.reply(uid, "Where is it?"),
    "send_feedback": lambda m, uid: m.send_feedback(subject="Lost", text="Where is it?"),
}


def _made(emulator, kind, uid):
    """How many times the call's work is on the emulated server."""
    if kind == "reply":
        return [m.text for m in emulator.conversations[uid].messages].count("Where is it?")
    wanted = "TICKET" if kind == "send_feedback" else "PRIVATE"
    return sum(
        c.subject == "Lost" and c.message_type == wanted for c in emulator.conversations.values()
    )


class TestLostCreates:
    @pytest.mark.parametrize("kind", LOOKERS)
    @pytest.mark.parametrize(
        "fault",
        [{"drop": True}, {"status": 504}, {"status": 502}, {"truncate": True}, {"delay": 5}],
        ids=["dropped", "proxy-504", "proxy-502", "cut-off", "late"],
    )
    def test_done_then_lost_is_found(
        self, emulator, connect, conversation, waits, caplog, kind, fault
    ):
        """DHIS2 did it and the answer was lost: the call returns as if it had come, says so
        in a WARNING, and the work is there once."""
        _inject(emulator, kind, process=True, **fault)
        m = _messenger(connect, retries=3)
        with caplog.at_level(logging.WARNING, logger="dhis2_messages"):
            result = LOOKERS[kind](m, conversation)
        assert 1 == _made(emulator, kind, conversation)
        if kind != "reply":
            assert emulator.conversations[result].subject == "Lost"
        assert 1 == len(_matching(emulator, kind))
        (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "was lost" in record.getMessage() and "nothing was sent twice" in record.getMessage()
        assert [] == waits
        looked = [(r.method, r.path) for r in emulator.log[1:]]
        assert ("GET", "/api/system/info") == looked[0]  # DHIS2's clock, to the millisecond
        assert 3 == len(looked)  # the clock, the caller's uid, one look

    @pytest.mark.parametrize("kind", LOOKERS)
    def test_a_504_before_dhis2_finished_is_looked_for_again(
        self, emulator, connect, conversation, waits, kind
    ):
        """nginx gave up (504) while DHIS2 worked on: the work shows a little later, and the
        second look finds it."""
        # The clock and the caller's uid come first: the work shows as the second look arrives.
        _inject(emulator, kind, process=True, status=504, commit_after=4)
        LOOKERS[kind](_messenger(connect, retries=3), conversation)
        assert 1 == _made(emulator, kind, conversation)
        assert [0.01] == waits
        assert 1 == len(_matching(emulator, kind))

    @pytest.mark.parametrize("kind", LOOKERS)
    @pytest.mark.parametrize(
        "fault, looks",
        [({"drop": True}, 1), ({"status": 502}, 1), ({"status": 503}, 1), ({"status": 504}, 6)],
        ids=["dropped", "502", "503", "504"],
    )
    def test_not_done_is_not_found_and_says_so(
        self, emulator, connect, conversation, waits, kind, fault, looks
    ):
        _inject(emulator, kind, **fault)
        with pytest.raises(Dhis2Error) as info:
            LOOKERS[kind](_messenger(connect, retries=3), conversation)
        error = info.value
        assert (True, looks) == (error.maybe_done, error.looked)
        assert "not found on DHIS2" in str(error) and "may still arrive" in str(error)
        assert "look before sending it again" in str(error)
        assert "try again" not in str(error)
        assert 0 == _made(emulator, kind, conversation)
        assert 1 == len(_matching(emulator, kind))
        assert [0.01, 0.02, 0.04, 0.08, 0.16][: looks - 1] == waits

    def test_looking_again_stops_at_the_deadline(self, emulator, connect, waits):
        """A wait between looks that would pass the call's one deadline is not made."""
        m = _messenger(connect, retries=0, deadline=30)
        m.backoff = 10.0
        _inject(emulator, "send", status=504)
        with pytest.raises(ApiError) as info:
            _send(m, None)
        assert [10.0, 20.0] == waits  # (not slept) the next, 40 s, would pass the 30 s
        assert 3 == info.value.looked

    def test_looking_fails_too(self, emulator, connect, waits):
        """The network is gone for the look-up as well: the error says it could not look."""
        _inject(emulator, "send", drop=True)
        emulator.inject(method="GET", status=503, times=10)
        with pytest.raises(TransportError) as info:
            _send(_messenger(connect, retries=1), None)
        assert (True, 0) == (info.value.maybe_done, info.value.looked)
        assert "Looking on DHIS2 for the conversation failed" in str(info.value)
        assert "look before sending it again" in str(info.value)

    def test_same_words_sent_just_before_are_not_taken_for_the_lost_one(
        self, emulator, connect, waits
    ):
        """A loop sends the same subject and text to one district after another: the lost
        answer of the second is not mistaken for the first, sent a moment before."""
        m = _messenger(connect)
        first = m.send(subject="Reminder", text="Submit by Friday", users=[ALICE])
        _inject(emulator, "send", drop=True)
        with pytest.raises(TransportError) as info:
            m.send(subject="Reminder", text="Submit by Friday", users=[BOB])
        assert 1 == info.value.looked
        assert [first] == list(emulator.conversations)

    @pytest.mark.parametrize("clock, zone", [(2, 3), (-2, -5)], ids=["fast-east", "slow-west"])
    def test_an_older_conversation_with_the_same_words_is_not_the_lost_one(
        self, emulator, connect, waits, clock, zone
    ):
        """By DHIS2's clock, hours off this machine's and in another zone: the one sent an
        hour ago (before this Messenger) is not what the lost answer was about."""
        emulator.clock_offset, emulator.utc_offset = clock * 3600.0, zone * 3600.0
        old = emulator.add_conversation(
            sender="admin", recipients=["alice"], subject="Lost", text="Where is it?"
        )
        emulator.backdate(old, 3600)
        _inject(emulator, "send", status=502)
        with pytest.raises(ApiError):
            _send_lost(_messenger(connect))
        assert [old] == list(emulator.conversations)
        _inject(emulator, "send", status=502, process=True)
        assert old != _send_lost(_messenger(connect))

    def test_a_reply_with_the_same_words_as_an_earlier_one(self, emulator, connect, waits):
        """Replying "Received." again is legitimate: an equal reply the caller made before
        the lost one was sent does not count as it (DHIS2's clock tells them apart)."""
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject="Stock")
        m = _messenger(connect)
        m.reply(uid, "Where is it?")
        emulator.backdate(uid, 60)
        _inject(emulator, "reply", drop=True)
        with pytest.raises(TransportError) as info:
            m.reply(uid, "Where is it?")
        assert 1 == info.value.looked
        _inject(emulator, "reply", drop=True, process=True)
        assert m.reply(uid, "Where is it?") is None
        assert 2 == _made(emulator, "reply", uid)

    @pytest.mark.parametrize("kind", ["add_recipients", "upload"])
    def test_what_cannot_be_looked_up_says_what_is_known(
        self, emulator, connect, conversation, kind
    ):
        """Adding the same recipients again is harmless (DHIS2 adds only new participants);
        a lost upload leaves an unused file resource behind."""
        _inject(emulator, kind, process=True, status=504)
        with pytest.raises(ApiError) as info:
            KINDS[kind][0](_messenger(connect), conversation)
        assert (True, 0) == (info.value.maybe_done, info.value.looked)
        assert LOST_ADVICE[kind] in str(info.value)
        assert [] == emulator.requests("GET")


def _send_lost(m):
    return m.send(subject="Lost", text="Where is it?", users=[ALICE])


class TestNeverSent:
    """Only a create that may have reached DHIS2 may have been done: never one that never
    left this machine, and never a read."""

    @pytest.fixture
    def no_proxy_settings(self, monkeypatch):
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)

    def _through(self, emulator, proxy, **options):
        session = dhis2_messages.requests.Session()
        session.proxies = {"http": proxy, "https": proxy}
        user = emulator.user("admin")
        m = Messenger(emulator.url, auth=(user.username, user.password), session=session, **options)
        m.backoff = 0.01
        return m

    def test_a_dead_proxy(self, emulator, no_proxy_settings, waits):
        """Nothing listens where HTTP_PROXY points: requests' ProxyError, nothing sent."""
        m = self._through(emulator, f"http://127.0.0.1:{free_port()}", retries=2, timeout=SHORT)
        with pytest.raises(TransportError) as info:
            _send(m, None)
        assert (False, False, "connect") == (
            info.value.sent,
            info.value.maybe_done,
            info.value.kind,
        )
        assert "may have been done" not in str(info.value)
        assert [0.01, 0.02] == waits  # a request that never left may be tried again
        assert [] == emulator.log

    def test_a_socks_proxy_without_its_dependency(self, emulator, no_proxy_settings, waits):
        """requests refuses a socks:// proxy without PySocks (InvalidSchema) before sending."""
        pytest.importorskip("requests")
        try:
            import socks  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("PySocks is installed: the SOCKS proxy would be tried")
        m = self._through(emulator, "socks5://127.0.0.1:9", retries=2, timeout=SHORT)
        with pytest.raises(TransportError) as info:
            _send(m, None)
        assert (False, False) == (info.value.sent, info.value.maybe_done)
        assert "may have been done" not in str(info.value)
        assert isinstance(info.value.__cause__, dhis2_messages.requests.exceptions.InvalidSchema)
        assert [] == waits  # requests would refuse it again
        assert [] == emulator.log

    def test_a_proxy_that_hangs_up_after_the_request(self, no_proxy_settings, waits):
        """The request reached the proxy, which closed the connection: it may have been
        passed on, so it is not sent again, although urllib3 calls this a ProxyError."""

        def hang_up(conn, server):
            pass  # read the request, answer nothing

        with MiniServer(hang_up) as proxy:
            session = dhis2_messages.requests.Session()
            session.proxies = {"http": proxy.url}
            m = Messenger(
                "http://dhis2.invalid", token="d2p_test", session=session, retries=3, timeout=SHORT
            )
            m.backoff = 0.01
            with pytest.raises(TransportError) as info:
                m.add_recipients("AbCdEfGhIjK", users=[ALICE])
            posts = [line for line, _ in proxy.requests if line.startswith("POST ")]
        assert 1 == len(posts)
        assert (True, True) == (info.value.sent, info.value.maybe_done)
        assert LOST_ADVICE["add_recipients"] in str(info.value)

    def test_a_read_is_never_told_it_may_have_been_done(self, emulator, connect):
        for fault in ({"drop": True}, {"status": 504}, {"delay": 5}):
            emulator.inject(method="GET", **fault)
            with pytest.raises(Dhis2Error) as info:
                _messenger(connect).list_conversations()
            assert not info.value.maybe_done
            assert "again" not in info.value.hint or "try again" in info.value.hint


# -- A retry after a lost answer ---------------------------------------------------
# The emulator runs the handler and then drops the connection (``drop=True,
# process=True``): DHIS2 did the work, the answer was lost, and the client's retry
# meets a server on which the work is already done.


@pytest.fixture
def retrying(connect, waits):
    """alice, with retries (and no real sleeping between them)."""
    return connect("alice", retries=2)


def _conversations(emulator, n=1):
    return [
        emulator.add_conversation(sender="bob", recipients="alice", subject=f"Retry {i}")
        for i in range(n)
    ]


def _lose_the_answer(emulator, method, path):
    emulator.inject(method=method, path=path, drop=True, process=True)


def _inbox(emulator, username="alice"):
    return {uid for uid, c in emulator.conversations.items() if username in c.participants}


class TestDeleteAfterALostAnswer:
    def test_delete_conversation_succeeds_when_the_lost_attempt_deleted_it(
        self, emulator, retrying
    ):
        """Before: PermissionDenied (2.41.3+: alice is no longer a participant) or NotFoundError."""
        (uid,) = _conversations(emulator)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert retrying.delete_conversation(uid) is None
        assert uid not in _inbox(emulator)
        assert 2 == sum(r.method == "DELETE" for r in emulator.log)

    def test_delete_conversations_lists_a_subset_when_the_lost_attempt_deleted_them(
        self, emulator, retrying
    ):
        uids = _conversations(emulator, 3)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        removed = retrying.delete_conversations(uids)
        assert set(removed) <= set(uids)
        assert not set(uids) & _inbox(emulator)

    def test_for_another_user_a_retry_lists_only_what_it_removed(self, emulator, connect, waits):
        admin = connect("admin", retries=2)
        uids = _conversations(emulator, 2)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert [] == admin.delete_conversations(uids[:1], user=ALICE)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert admin.delete_conversation(uids[1], user=ALICE) is None
        assert not set(uids) & _inbox(emulator)

    def test_without_a_lost_answer_the_errors_stay(self, emulator, retrying):
        """Only a lost answer makes "not there" a success: a plain call still says so, as
        NotFoundError on every release (2.41.3+ answers 403 for a removed participant)."""
        (uid,) = _conversations(emulator)
        retrying.delete_conversation(uid)
        with pytest.raises(NotFoundError, match="not in the inbox"):
            retrying.delete_conversation(uid)
        with pytest.raises(NotFoundError):
            retrying.delete_conversations([UNKNOWN])

    def test_a_lost_answer_does_not_hide_an_error_the_retry_repeats(self, emulator, retrying):
        """Unknown uids are an error on every attempt, lost answer or not."""
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        with pytest.raises(NotFoundError):
            retrying.delete_conversations([UNKNOWN])

    def test_a_proxy_504_after_the_work_counts_as_a_lost_answer(self, emulator, retrying):
        """The proxy gave up (504) while DHIS2 finished: the retry finds the work done."""
        (uid,) = _conversations(emulator)
        emulator.inject(method="DELETE", path=r"/messageConversations$", status=504, process=True)
        assert retrying.delete_conversation(uid) is None
        assert uid not in _inbox(emulator)

    @pytest.mark.dhis2_versions(since="2.41.3")
    def test_a_503_is_not_a_lost_answer(self, emulator, retrying):
        """503 means DHIS2 did nothing: the retry's 403 (not alice's) is the real answer,
        not "already done": the uid was never in her inbox."""
        uid = emulator.add_conversation(sender="bob", recipients="carol", subject="Not alice's")
        emulator.inject(method="DELETE", path=r"/messageConversations$", status=503)
        with pytest.raises(NotFoundError, match="not in the inbox"):
            retrying.delete_conversation(uid)

    @pytest.mark.parametrize("lost", ["504 after processing", "dropped connection"])
    def test_a_stale_uid_and_a_lost_answer_still_remove_the_rest(self, emulator, retrying, lost):
        """One uid alice no longer takes part in: 2.41.3+ refuses the first attempt (403,
        nothing removed) and its answer is lost; the retry's 403 is not "already done"."""
        uids = _conversations(emulator, 3)
        stale = emulator.add_conversation(sender="bob", recipients="carol", subject="Not alice's")
        fault = {"status": 504} if lost.startswith("504") else {"drop": True}
        emulator.inject(method="DELETE", path=r"/messageConversations$", process=True, **fault)
        removed = retrying.delete_conversations(uids[:2] + [stale] + uids[2:])
        assert not set(uids) & _inbox(emulator)
        if emulator.quirks.participant_check:  # nothing was removed by the lost attempt
            assert uids == removed
        else:
            assert set(removed) <= set(uids)


class TestBulkFlagsAfterALostAnswer:
    @pytest.mark.parametrize(
        "call, path",
        [
            (lambda m, uids: m.mark_read(uids), "/read$"),
            (lambda m, uids: m.mark_unread(uids), "/unread$"),
            (lambda m, uids: m.follow_up(uids), "/followup$"),
            (lambda m, uids: m.unfollow_up(uids), "/unfollowup$"),
        ],
        ids=["mark_read", "mark_unread", "follow_up", "unfollow_up"],
    )
    def test_a_retried_bulk_call_succeeds_with_a_subset(self, emulator, retrying, call, path):
        uids = _conversations(emulator, 3)
        if "unread" in path:
            retrying.mark_read(uids)
        if "unfollowup" in path:
            retrying.follow_up(uids)
        _lose_the_answer(emulator, "POST", path)
        assert set(call(retrying, uids)) <= set(uids)
        assert 2 == sum(r.path.endswith(path[:-1]) for r in emulator.log[-2:])

    def test_mark_read_after_a_lost_answer_leaves_them_read(self, emulator, retrying):
        uids = _conversations(emulator, 2)
        _lose_the_answer(emulator, "POST", "/read$")
        assert [] == retrying.mark_read(uids)  # the lost attempt changed them: nothing to report
        assert all(emulator.conversations[u].participants["alice"].read for u in uids)


# -- The commonest mistakes: named, with the fix, and not retried in vain ------------------


@pytest.fixture
def resolver(monkeypatch):
    """Host names ending in .invalid fail as DNS fails them (no DNS server is asked):
    EAI_NONAME, or EAI_AGAIN (a resolver that did not answer) for "slow-dns.invalid".
    Returns the names looked up, in order."""

    asked = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            asked.append(host)
            code = socket.EAI_AGAIN if host == "slow-dns.invalid" else socket.EAI_NONAME
            raise socket.gaierror(code, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


class TestCommonMistakes:
    def test_an_unknown_host_is_said_and_not_retried(self, resolver, waits):
        m = Messenger("https://dhis2.example.invalid", token="d2p_x", retries=3)
        with pytest.raises(TransportError) as info:
            m.count_unread()
        err = info.value
        assert ("connect", "unknown_host", False) == (err.kind, err.detail, err.sent)
        assert "host name does not exist" in err.hint and "base_url" in err.hint
        assert (["dhis2.example.invalid"], []) == (resolver, waits)

    def test_a_resolver_that_does_not_answer_is_retried(self, resolver, waits):
        m = Messenger("http://slow-dns.invalid", token="d2p_x", retries=2)
        with pytest.raises(TransportError) as info:
            m.count_unread()
        assert ("connect", "") == (info.value.kind, info.value.detail)
        assert 3 == len(resolver) and 2 == len(waits)

    def test_https_to_a_plain_http_server(self, emulator):
        """The TLS handshake meets a plain-http answer (WRONG_VERSION_NUMBER): the hint
        says to use http://, not a CA bundle."""
        url = emulator.url.replace("http://", "https://")
        with pytest.raises(TransportError) as info:
            Messenger(url, token="d2p_x", retries=3).count_unread()
        err = info.value
        assert ("tls", "plain_http", False) == (err.kind, err.detail, err.sent)
        assert "plain http" in err.hint and "http://" in err.hint and "verify=" not in err.hint
        assert isinstance(err.__cause__, dhis2_messages.requests.exceptions.SSLError)

    def test_a_certificate_problem_keeps_its_own_hint(self, tls_server):
        with pytest.raises(TransportError) as info:
            messenger_at(tls_server.url).count_unread()
        assert ("tls", "") == (info.value.kind, info.value.detail)
        assert "verify=" in info.value.hint

    def test_a_wrong_context_path_is_a_page_not_dhis2(self, emulator):
        """DHIS2 answers its own 404s in JSON; the container's HTML 404 for /dhis/api/...
        means base_url is not DHIS2's address."""
        with pytest.raises(NotFoundError) as info:
            Messenger(emulator.url + "/dhis", auth=("admin", "district")).count_unread()
        err = info.value
        assert "HTTP Status 404 – Not Found" == err.message and isinstance(err.body, str)
        assert "no DHIS2 API at this address" in err.hint and "base_url" in err.hint

    def test_dhis2s_own_404_has_no_such_hint(self, admin):
        with pytest.raises(NotFoundError) as info:
            admin.get_conversation(UNKNOWN)
        assert "base_url" not in str(info.value)

    def test_each_retry_is_announced_in_one_short_line(self, emulator, connect, waits, caplog):
        """The INFO line of a retry (the command line shows it) stays short, whatever
        the underlying error says."""
        import logging

        caplog.set_level(logging.INFO, logger="dhis2_messages")
        m = connect("admin", retries=2, timeout=SHORT)
        emulator.inject(drop=True, times=2)
        m.count_unread()
        m = Messenger(f"http://127.0.0.1:{free_port()}", token="d2p_x", retries=1)
        with pytest.raises(TransportError):
            m.count_unread()
        notes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert 3 == len(notes), notes
        assert notes[0].startswith("the connection broke (Remote end closed connection")
        assert "could not connect (Connection refused); retry 1 of 1 in 0.5 s" == notes[2]
        assert all(len("dhis2-messages: " + note) <= 100 for note in notes), notes
        assert len("dhis2-messages: " + notes[2]) <= 80  # the commonest fits any terminal


# -- Behind a real nginx ------------------------------------------------------------------


@pytest.mark.dhis2_versions("2.42")
def test_behind_nginx_a_504_then_the_conversation(emulator, nginx, certificate, caplog):
    """nginx gives up after 1 s and answers 504; DHIS2 makes the conversation after 2 s.
    The send looks again, finds it, and returns its uid: one conversation, one POST."""
    emulator.inject(method="POST", path=r"/messageConversations$", delay=2)
    url = nginx(emulator.url, read_timeout=1)
    m = Messenger(url, auth=("admin", "district"), retries=3, verify=str(certificate[0]))
    with caplog.at_level(logging.WARNING, logger="dhis2_messages"):
        uid = m.send(subject="Behind nginx", text="Slow", users=[ALICE])
    assert [uid] == list(emulator.conversations)
    assert 1 == len(emulator.requests("POST"))
    assert "HTTP 504" in caplog.text and "nothing was sent twice" in caplog.text


class TestLimitsOfRealDeployments:
    """What the servers and proxies in front of DHIS2 refuse by size, in words."""

    def test_tomcat_refuses_a_head_over_8_kb(self, emulator, connect):
        """DHIS2's Tomcat: request line and headers over 8,192 bytes are its 400 page."""
        m = connect("alice")
        with pytest.raises(ApiError) as info:
            m.list_conversations(filter="subject:like:" + "x" * 9000)
        error = info.value
        assert 400 == error.status_code and "<" not in str(error)
        assert "8,192 bytes" in error.hint and "maxHttpHeaderSize" in error.hint
        assert [] == emulator.log and 1 == len(emulator.refused)

    @pytest.mark.dhis2_versions("2.42")
    def test_nginx_refuses_a_request_line_over_8_kb(self, emulator, nginx, certificate):
        user = emulator.user("alice")
        with Messenger(
            nginx(emulator.url), auth=(user.username, user.password), verify=str(certificate[0])
        ) as m, pytest.raises(ApiError) as info:
            m.list_conversations(filter="subject:like:" + "x" * 9000)
        error = info.value
        assert (414, "414 Request-URI Too Large") == (error.status_code, error.message)
        assert "large_client_header_buffers" in error.hint and "<" not in str(error)
        assert [] == emulator.log

    @pytest.mark.parametrize(
        "status, words",
        [(413, "client_max_body_size"), (414, "LimitRequestLine"), (431, "request headers")],
    )
    def test_each_limit_status_has_its_hint(self, emulator, connect, status, words):
        emulator.inject(status=status, body="<html><title>Too large</title></html>")
        with pytest.raises(ApiError) as info:
            connect("alice").list_conversations()
        assert (status, "Too large") == (info.value.status_code, info.value.message)
        assert words in info.value.hint and words in str(info.value)

    def test_tomcat_11_refuses_more_than_1000_parameters(self, emulator, connect):
        """Its 400 page (the emulator's parameter_limit): no request of the library has
        that many, but a proxy's rewrite or a borrowed session's parameters could."""
        emulator.inject(
            status=400,
            body=html_page(400, "More than the maximum number of request parameters").body,
        )
        with pytest.raises(ApiError) as info:
            connect("alice").list_conversations()
        assert 400 == info.value.status_code
        assert "1,000 request parameters" in info.value.hint


# -- Many threads, one Messenger ---------------------------------------------------------


def test_sixteen_threads_keep_their_connections(caplog):
    """16 threads, each with a request open at once: every connection goes back to the pool
    for the next call (with requests' 10, urllib3 logged "Connection pool is full,
    discarding connection" six times and the next calls connected again)."""
    threads = 16
    together = threading.Barrier(threads, timeout=10)
    pager = {"page": 1, "pageCount": 0, "total": 0, "pageSize": 50}
    page = json.dumps({"pager": pager, "messageConversations": []})
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"

    def handler(conn, server):
        try:
            together.wait()  # every thread's request is open: 16 connections
        except threading.BrokenBarrierError:
            return
        conn.sendall(answer % (len(page), page.encode()))
        server.stopped.wait(1)  # keep-alive: the client may send its next request

    caplog.set_level(logging.WARNING, logger="urllib3")
    with MiniServer(handler) as server, messenger_at(
        server.url, timeout=(2.0, 15.0)
    ) as m, ThreadPoolExecutor(threads) as pool:
        pages = list(pool.map(lambda _: m.list_conversations(), range(threads)))
    assert threads == len(pages) == len(server.requests)
    assert [] == [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]

"""Secrets stay secret; identity, certificate and host are the ones given; bad input stops.

The redaction tests run real calls (successes and every kind of failure) and look for the
password, the token and the Authorization header in everything a user can see: repr,
exception text and arguments along the whole cause chain, and every log record at DEBUG
(``TestRedaction``).  Neither .netrc, nor a borrowed session, nor a proxy setting replaces
the credentials given (``TestIdentity``).  A certificate is verified (``TestTls``); no
redirect is followed (``TestRedirects``).  No argument can forge a header
(``TestNoHeaderInjection``), and a bad URL's message never echoes its password
(``TestSecretsInBadUrls``).  Every uid argument of every method, and every other argument,
is checked before any request (``TestBadInput``).

Neighbours: the throwaway certificate, the HTTPS server and the MiniServer are in
conftest.py; the checks of Messenger's own arguments (URL, timeout, auth kinds) in
test_construction.py; each method's own bad-input cases beside its area's tests.
"""

from __future__ import annotations

import base64
import io
import logging

import pytest
import requests

import dhis2_messages
from dhis2_messages import (
    ApiError,
    AuthenticationError,
    Dhis2Error,
    Messenger,
    TransportError,
)
from tests.conftest import (
    ALICE,
    API,
    BOB,
    UNKNOWN,
    MiniServer,
    at_least,
    empty_inbox,
    http_answer,
    messenger_at,
    serve_bytes,
)
from tests.emulator import free_port

SHORT = (1.0, 0.3)
WRONG_PASSWORD = "Wr0ng-pa55!secret"


# -- Redaction -------------------------------------------------------------------


def _secrets(user, password=None):
    password = password or user.password
    basic = base64.b64encode(f"{user.username}:{password}".encode()).decode()
    return [password, user.token, basic, f"Basic {basic}", f"ApiToken {user.token}"]


def _exception_texts(error):
    """str, repr and args of an exception and of everything in its cause/context chain."""
    texts, todo, seen = [], [error], set()
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += (
            [str(exc), repr(exc)] + [repr(arg) for arg in exc.args] + [str(arg) for arg in exc.args]
        )
        if isinstance(exc, ApiError):
            texts.append(repr(exc.body))
        todo += [exc.__cause__, exc.__context__]
    return texts


def _log_texts(records):
    texts = []
    for record in records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or "", repr(record.msg)]
    return texts


def _assert_clean(texts, secrets):
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:200]!r}"


FAILURES = [
    pytest.param({"status": 500}, ApiError, id="500"),
    pytest.param({"status": 503, "times": 5}, ApiError, id="503-retried"),
    pytest.param({"status": 401}, AuthenticationError, id="401"),
    pytest.param(
        {"status": 302, "headers": {"Location": "/dhis-web-login/"}},
        AuthenticationError,
        id="302-login",
    ),
    pytest.param(
        {"status": 302, "headers": {"Location": "http://elsewhere.invalid/api"}},
        ApiError,
        id="302-elsewhere",
    ),
    pytest.param({"drop": True, "times": 5}, TransportError, id="dropped"),
    pytest.param({"truncate": True, "times": 5}, TransportError, id="truncated"),
    pytest.param({"delay": 5, "times": 5}, TransportError, id="timeout"),
    pytest.param(
        {"status": 200, "body": "<html><title>Login</title></html>", "content_type": "text/html"},
        Dhis2Error,
        id="html-200",
    ),
]


class TestRedaction:
    @pytest.mark.parametrize("kind", ["basic", "token"])
    def test_repr_and_str(self, emulator, kind):
        user = emulator.user("alice")
        credentials = (
            {"auth": (user.username, user.password)} if kind == "basic" else {"token": user.token}
        )
        m = Messenger(emulator.url, **credentials)
        assert f"auth={kind}" in repr(m)
        assert emulator.url in repr(m)
        _assert_clean([repr(m), str(m), repr(vars(m).get("_send_options"))], _secrets(user))

    @pytest.mark.parametrize("kind", ["basic", "token"])
    @pytest.mark.parametrize(("fault", "error"), FAILURES)
    def test_failures(self, emulator, caplog, waits, kind, fault, error):
        """Every failure, with retries, leaks nothing in exceptions or in DEBUG logs of any logger."""
        caplog.set_level(logging.DEBUG)
        user = emulator.user("alice")
        credentials = (
            {"auth": (user.username, user.password)} if kind == "basic" else {"token": user.token}
        )
        # A short read timeout only where the fault is a slow answer: elsewhere a busy
        # machine could turn the expected error into a timeout.
        read_timeout = 0.1 if "delay" in fault else 5.0
        m = Messenger(emulator.url, timeout=(1.0, read_timeout), retries=1, **credentials)
        m.backoff = 0.01
        uid = m.send(subject="s", text="t", users=[BOB])
        delete = lambda: m.delete_conversations(uid)
        for call in (
            m.list_conversations,
            lambda: m.get_conversation(uid),
            lambda: m.reply(uid, "r"),
            lambda: m.mark_read(uid),
            delete,
        ):
            emulator.inject(**fault)
            try:
                call()
            except error as exc:
                _assert_clean(_exception_texts(exc), _secrets(user))
            else:
                # The first answer was cut off after the delete was done; from 2.41.3 the
                # retry's 403 (error pages are read however short they end) meets that work.
                assert call is delete and "truncate" in fault and at_least(emulator, "2.41.3")
        _assert_clean(_log_texts(caplog.records), _secrets(user))
        assert caplog.records, "DEBUG logging was captured"

    @pytest.mark.parametrize("kind", ["basic", "token"])
    def test_chained_error_holds_no_request(self, emulator, kind):
        """The requests error under a TransportError no longer carries the request and its headers."""
        user = emulator.user("alice")
        credentials = (
            {"auth": (user.username, user.password)} if kind == "basic" else {"token": user.token}
        )
        m = Messenger(emulator.url, timeout=(1.0, 0.1), retries=0, **credentials)
        emulator.inject(delay=5)
        with pytest.raises(TransportError) as info:
            m.count_unread()
        cause = info.value.__cause__
        assert cause is not None and cause.request is None
        _assert_clean([repr(vars(cause)), repr(cause.args)], _secrets(user))

    def test_wrong_password_is_not_echoed(self, emulator, caplog):
        caplog.set_level(logging.DEBUG)
        user = emulator.user("alice")
        m = Messenger(emulator.url, auth=("alice", WRONG_PASSWORD), retries=0)
        with pytest.raises(AuthenticationError) as info:
            m.list_conversations()
        assert "check the username and password" in str(info.value)
        _assert_clean(
            _exception_texts(info.value) + _log_texts(caplog.records) + [repr(m)],
            _secrets(user, WRONG_PASSWORD),
        )

    @pytest.mark.parametrize("kind", ["basic", "token"])
    def test_refused_and_tls_errors(self, caplog, waits, kind, tls_server):
        """The chained requests exception's text names the URL, never the credentials."""
        caplog.set_level(logging.DEBUG)
        secret = "d2p_S3cretTok3nValue0123456789"
        credentials = {"auth": ("alice", WRONG_PASSWORD)} if kind == "basic" else {"token": secret}
        basic = base64.b64encode(f"alice:{WRONG_PASSWORD}".encode()).decode()
        secrets = [WRONG_PASSWORD, secret, basic]
        for url in (f"http://127.0.0.1:{free_port()}", tls_server.url):
            m = Messenger(url, timeout=SHORT, retries=1, **credentials)
            with pytest.raises(TransportError) as info:
                m.list_conversations()
            assert isinstance(info.value.__cause__, dhis2_messages.requests.RequestException)
            _assert_clean(_exception_texts(info.value), secrets)
        _assert_clean(_log_texts(caplog.records), secrets)

    def test_successes_log_nothing_secret(self, emulator, caplog, connect):
        caplog.set_level(logging.DEBUG)
        user = emulator.user("alice")
        for m in (connect("alice"), connect("alice", token=True)):
            uid = m.send(subject="s", text="t", users=[BOB])
            m.reply(uid, "r")
            m.get_conversation(uid, mark_read=True)
            m.list_conversations()
            m.mark_unread(uid)
            m.upload_attachment(b"x")
        _assert_clean(_log_texts(caplog.records), _secrets(user))

    def test_one_debug_line_per_request_including_retries(self, emulator, caplog, connect, waits):
        """The module logs to "dhis2_messages" only: one DEBUG line per request that was sent."""
        caplog.set_level(logging.DEBUG)
        m = connect("alice", retries=2, timeout=SHORT)
        m.backoff = 0.01
        uid = m.send(subject="s", text="t", users=[BOB])
        emulator.inject(status=503, times=2)
        m.get_conversation(uid)
        emulator.inject(method="POST", drop=True)
        m.mark_read(uid)
        emulator.inject(status=404)
        with pytest.raises(ApiError):
            m.list_conversations()
        emulator.inject(status=502, times=5)
        with pytest.raises(ApiError):
            m.set_status(uid, "OPEN")
        logged = [r for r in caplog.records if r.name.startswith("dhis2_messages")]
        assert {"dhis2_messages"} == {r.name for r in logged}
        from_module = [r for r in caplog.records if r.pathname.endswith("dhis2_messages.py")]
        assert from_module == logged, "the module logs through no other logger"
        ours = [r for r in logged if r.levelno == logging.DEBUG]
        assert len(emulator.log) == len(ours) == 1 + 3 + 2 + 1 + 3
        # One INFO record per retry, for the command line to show.
        retries = [r.getMessage() for r in logged if r.levelno == logging.INFO]
        assert len(logged) == len(ours) + len(retries)
        assert [
            "DHIS2 answered 503; retry 1 of 2 in 0.01 s",
            "DHIS2 answered 503; retry 2 of 2 in 0.02 s",
            ("the connection broke (Remote end closed connection ...); retry 1 of 2 in 0.01 s"),
            "DHIS2 answered 502; retry 1 of 2 in 0.01 s",
            "DHIS2 answered 502; retry 2 of 2 in 0.02 s",
        ] == retries
        for record, request in zip(ours, emulator.log):
            text = record.getMessage()
            assert text.startswith(f"{request.method} ")
            assert request.path.split("/api", 1)[1] in text
            assert text.endswith(" ms)")
        statuses = [r.getMessage().split(" -> ")[1].split(" ")[0] for r in ours]
        assert [
            "201",
            "503",
            "503",
            "200",
            "ConnectionError",
            "200",
            "404",
            "502",
            "502",
            "502",
        ] == statuses


# -- The credentials given are the identity ---------------------------------------


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


# -- TLS ---------------------------------------------------------------------------


class TestTls:
    def test_verify_is_on_by_default(self, tls_server, waits):
        """A self-signed certificate is refused: TransportError about the certificate, no retry."""
        tls_server.seen.clear()
        m = Messenger(tls_server.url, token="d2p_x", timeout=SHORT)
        assert 3 == m.retries
        with pytest.raises(TransportError) as info:
            m.list_conversations()
        message = str(info.value)
        assert "certificate" in message.lower()
        assert "verify=" in message
        assert isinstance(info.value.__cause__, dhis2_messages.requests.exceptions.SSLError)
        assert [] == tls_server.seen  # no HTTP request got through
        assert [] == waits  # a certificate problem is not retried

    def test_verify_with_the_certificate(self, tls_server, certificate):
        """verify=<the certificate> trusts it: the call reaches the server and succeeds."""
        tls_server.seen.clear()
        m = Messenger(tls_server.url, token="d2p_x", timeout=SHORT, verify=str(certificate[0]))
        assert 0 == len(m.list_conversations())
        assert 1 == len(tls_server.seen)
        assert "ApiToken d2p_x" == tls_server.seen[0][2]["Authorization"]

    def test_verify_false(self, tls_server):
        tls_server.seen.clear()
        m = Messenger(tls_server.url, token="d2p_x", timeout=SHORT, verify=False)
        with pytest.warns(Warning):  # urllib3's InsecureRequestWarning
            m.list_conversations()
        assert 1 == len(tls_server.seen)

    def test_env_ca_bundle_does_not_override_explicit_verify(
        self, tls_server, monkeypatch, certificate
    ):
        """REQUESTS_CA_BUNDLE is honoured for verify=True (the default), not against an explicit path."""
        tls_server.seen.clear()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
        assert 0 == len(
            Messenger(tls_server.url, token="d2p_x", timeout=SHORT).list_conversations()
        )
        assert 1 == len(tls_server.seen)

    def test_a_verify_path_that_does_not_exist_is_refused_at_once(self, tmp_path):
        """ValueError naming verify=, before any request (every https call raised a bare
        OSError, "Could not find a suitable TLS CA certificate bundle")."""
        missing = str(tmp_path / "ca-bundle.pem")
        for url in ("https://h.org", "http://h.org"):
            with pytest.raises(ValueError, match=r"verify=.*ca-bundle\.pem' does not exist"):
                Messenger(url, token="d2p_x", verify=missing)

    @pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
    def test_a_ca_bundle_variable_that_names_no_file(self, monkeypatch, tmp_path, variable):
        """The variable is named, for https; plain http never reads it, and an explicit
        verify= wins over it, as requests has it."""
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv(variable, str(tmp_path / "gone.pem"))
        with pytest.raises(ValueError, match=f"{variable} is .*gone.pem', which does not exist"):
            Messenger("https://h.org", token="d2p_x")
        Messenger("http://h.org", token="d2p_x")
        Messenger("https://h.org", token="d2p_x", verify=False)


# -- Redirects ---------------------------------------------------------------------


@pytest.fixture
def other_server():
    """A plain-HTTP MiniServer answering ``empty_inbox``: a host a redirect could lead to."""
    with MiniServer(empty_inbox) as server:
        yield server


class TestRedirects:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    def test_redirect_to_another_host_is_not_followed(
        self, emulator, connect, other_server, status
    ):
        target = f"{other_server.url}/api/messageConversations"
        emulator.inject(status=status, headers={"Location": target})
        with pytest.raises(ApiError) as info:
            connect("alice", retries=3).list_conversations()
        assert type(info.value) is ApiError
        assert status == info.value.status_code
        assert target in str(info.value)
        assert "not followed" in str(info.value)
        assert [] == other_server.seen
        assert 1 == len(emulator.log)

    @pytest.mark.parametrize("call", ["send", "reply", "mark_read", "delete"])
    def test_no_call_follows(self, emulator, connect, other_server, call):
        m = connect("alice", token=True)
        uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
        emulator.inject(status=307, headers={"Location": other_server.url + "/x"})
        calls = {
            "send": lambda: m.send(subject="s", text="t", users=[BOB]),
            "reply": lambda: m.reply(uid, "t"),
            "mark_read": lambda: m.mark_read(uid),
            "delete": lambda: m.delete_conversations(uid),
        }
        with pytest.raises(ApiError, match="redirect to http://127.0.0.1"):
            calls[call]()
        assert [] == other_server.seen

    def test_same_server_under_another_name(self, emulator, connect):
        """localhost vs 127.0.0.1: a different host as far as credentials go; not followed."""
        port = emulator.url.rsplit(":", 1)[1]
        target = f"http://localhost:{port}{API}"
        emulator.inject(status=302, headers={"Location": target})
        with pytest.raises(ApiError, match=f"redirect to {target}"):
            connect("alice").list_conversations()
        assert 1 == len(emulator.log)

    @pytest.mark.parametrize(
        "location", ["/dhis-web-login/", "/login/", "https://sso.example.org/LOGIN?next=/"]
    )
    def test_redirect_to_login_page(self, emulator, connect, location):
        emulator.inject(status=302, headers={"Location": location})
        with pytest.raises(AuthenticationError) as info:
            connect("alice").list_conversations()
        assert 302 == info.value.status_code
        assert "check the username and password or the personal access token" in str(info.value)
        assert 1 == len(emulator.log)


# -- No header injection ---------------------------------------------------------------------


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


# -- No secret in a message about a bad URL ----------------------------------------------------

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


# -- Bad input ------------------------------------------------------------------------

BAD_UIDS = [
    pytest.param("AbCdEfGhIj", ValueError, id="too-short"),
    pytest.param("AbCdEfGhIjKl", ValueError, id="too-long"),
    pytest.param("1bCdEfGhIjK", ValueError, id="leading-digit"),
    pytest.param("../AbCdEfGh", ValueError, id="dot-dot-slash"),
    pytest.param("AbCdEfGhIj?", ValueError, id="question-mark"),
    pytest.param("AbCdE/GhIjK", ValueError, id="slash"),
    pytest.param("AbCdEfGhIj#", ValueError, id="hash"),
    pytest.param("AbCdEfGhIj\n", ValueError, id="newline"),
    pytest.param("AbCdEfGhIjé", ValueError, id="non-ascii"),
    pytest.param("", ValueError, id="empty"),
    pytest.param(12345678901, TypeError, id="int"),
    pytest.param(None, TypeError, id="none"),
    pytest.param(b"AbCdEfGhIjK", TypeError, id="bytes"),
]


GOOD = "AbCdEfGhIjK"


# Every method that takes a uid, with the uid in each position it can appear.
UID_CALLS = {
    "get_conversation": lambda m, u: m.get_conversation(u),
    "reply": lambda m, u: m.reply(u, "text"),
    "reply-attachment": lambda m, u: m.reply(GOOD, "text", attachments=[u]),
    "send-users": lambda m, u: m.send(subject="s", text="t", users=[u]),
    "send-user_groups": lambda m, u: m.send(subject="s", text="t", users=ALICE, user_groups=[u]),
    "send-organisation_units": lambda m, u: m.send(
        subject="s", text="t", users=ALICE, organisation_units=[u]
    ),
    "send-attachments": lambda m, u: m.send(subject="s", text="t", users=ALICE, attachments=[u]),
    "add_recipients": lambda m, u: m.add_recipients(u, users=ALICE),
    "add_recipients-users": lambda m, u: m.add_recipients(GOOD, users=[ALICE, u]),
    "mark_read": lambda m, u: m.mark_read([GOOD, u]),
    "mark_read-user": lambda m, u: m.mark_read(GOOD, user=u),
    "mark_unread": lambda m, u: m.mark_unread([u]),
    "follow_up": lambda m, u: m.follow_up([u]),
    "unfollow_up": lambda m, u: m.unfollow_up([u]),
    "unfollow_up-user": lambda m, u: m.unfollow_up(GOOD, user=u),
    "delete_conversations": lambda m, u: m.delete_conversations([u]),
    "delete_conversations-user": lambda m, u: m.delete_conversations(GOOD, user=u),
    "delete_conversation": lambda m, u: m.delete_conversation(u),
    "delete_conversation-user": lambda m, u: m.delete_conversation(GOOD, user=u),
    "set_status": lambda m, u: m.set_status(u, "OPEN"),
    "set_priority": lambda m, u: m.set_priority(u, "HIGH"),
    "assign": lambda m, u: m.assign(u, ALICE),
    "assign-user": lambda m, u: m.assign(GOOD, u),
    "unassign": lambda m, u: m.unassign(u),
    "download-conversation": lambda m, u: m.download_attachment(u, GOOD, GOOD),
    "download-message": lambda m, u: m.download_attachment(GOOD, u, GOOD),
    "download-attachment": lambda m, u: m.download_attachment(GOOD, GOOD, u),
}

OTHER_BAD_CALLS = [
    # (id, call, error)
    ("list-page-0", lambda m: m.list_conversations(page=0), ValueError),
    ("list-page-str", lambda m: m.list_conversations(page="1"), TypeError),
    ("list-page-bool", lambda m: m.list_conversations(page=True), TypeError),
    ("list-page_size-0", lambda m: m.list_conversations(page_size=0), ValueError),
    ("list-page_size-float", lambda m: m.list_conversations(page_size=2.5), TypeError),
    ("list-filter-empty", lambda m: m.list_conversations(filter=[" "]), ValueError),
    ("list-filter-no-operator", lambda m: m.list_conversations(filter="read"), ValueError),
    ("list-filter-int", lambda m: m.list_conversations(filter=[1]), TypeError),
    ("list-filter-dict", lambda m: m.list_conversations(filter={"read": "eq"}), TypeError),
    ("list-query-int", lambda m: m.list_conversations(query=5), TypeError),
    ("list-query_operator", lambda m: m.list_conversations(query_operator="a&b=c"), ValueError),
    ("list-fields-blank", lambda m: m.list_conversations(fields="  "), ValueError),
    ("list-order-int", lambda m: m.list_conversations(order=[1]), TypeError),
    ("iter-page_size-0", lambda m: m.iter_conversations(page_size=0), ValueError),
    ("iter-filter-int", lambda m: m.iter_conversations(filter=5), TypeError),
    ("get-mark_read-str", lambda m: m.get_conversation(GOOD, mark_read="false"), TypeError),
    ("send-no-recipients", lambda m: m.send(subject="s", text="t"), ValueError),
    ("send-empty-users", lambda m: m.send(subject="s", text="t", users=[]), ValueError),
    ("send-empty-subject", lambda m: m.send(subject="", text="t", users=ALICE), ValueError),
    ("send-blank-subject", lambda m: m.send(subject=" \t\n", text="t", users=ALICE), ValueError),
    ("send-empty-text", lambda m: m.send(subject="s", text="", users=ALICE), ValueError),
    ("send-blank-text", lambda m: m.send(subject="s", text="\u3000\n", users=ALICE), ValueError),
    ("send-nul", lambda m: m.send(subject="s", text="a\x00b", users=ALICE), ValueError),
    ("send-surrogate", lambda m: m.send(subject="s", text="\udc80", users=ALICE), ValueError),
    ("send-subject-none", lambda m: m.send(subject=None, text="t", users=ALICE), TypeError),
    ("send-text-bytes", lambda m: m.send(subject="s", text=b"t", users=ALICE), TypeError),
    ("send-users-int", lambda m: m.send(subject="s", text="t", users=5), TypeError),
    ("send-users-bytes", lambda m: m.send(subject="s", text="t", users=ALICE.encode()), TypeError),
    ("send-users-dict", lambda m: m.send(subject="s", text="t", users={ALICE: ALICE}), TypeError),
    ("reply-empty", lambda m: m.reply(GOOD, ""), ValueError),
    ("reply-blank", lambda m: m.reply(GOOD, "   "), ValueError),
    ("reply-none", lambda m: m.reply(GOOD, None), TypeError),
    ("reply-internal-str", lambda m: m.reply(GOOD, "t", internal="yes"), TypeError),
    ("reply-internal-int", lambda m: m.reply(GOOD, "t", internal=1), TypeError),
    ("feedback-empty-subject", lambda m: m.send_feedback(subject="", text="t"), ValueError),
    ("feedback-blank-text", lambda m: m.send_feedback(subject="s", text="\n"), ValueError),
    ("feedback-subject-int", lambda m: m.send_feedback(subject=1, text="t"), TypeError),
    ("add_recipients-none", lambda m: m.add_recipients(GOOD), ValueError),
    (
        "add_recipients-empty",
        lambda m: m.add_recipients(GOOD, users=[], user_groups=()),
        ValueError,
    ),
    # No uids at all is no error ([] without a request: test_read_state.py); a bad one is.
    ("mark_read-bad-in-list", lambda m: m.mark_read([GOOD, "bad"]), ValueError),
    ("mark_unread-bad-in-tuple", lambda m: m.mark_unread((GOOD, "x")), ValueError),
    ("follow_up-bad-in-iterator", lambda m: m.follow_up(iter(["x"])), ValueError),
    ("unfollow_up-int", lambda m: m.unfollow_up(5), TypeError),
    ("delete-mapping", lambda m: m.delete_conversations({GOOD: 1}), TypeError),
    ("delete-bytes", lambda m: m.delete_conversations(GOOD.encode()), TypeError),
    ("set_status-unknown", lambda m: m.set_status(GOOD, "CLOSED"), ValueError),
    ("set_status-empty", lambda m: m.set_status(GOOD, ""), ValueError),
    ("set_status-none", lambda m: m.set_status(GOOD, None), TypeError),
    ("set_priority-unknown", lambda m: m.set_priority(GOOD, "URGENT"), ValueError),
    ("set_priority-int", lambda m: m.set_priority(GOOD, 3), TypeError),
    ("upload-empty", lambda m: m.upload_attachment(b""), ValueError),
    ("upload-text-mode", lambda m: m.upload_attachment(io.StringIO("text")), TypeError),
    ("upload-int", lambda m: m.upload_attachment(5), TypeError),
    ("upload-filename-blank", lambda m: m.upload_attachment(b"x", filename=" "), ValueError),
    ("upload-content_type", lambda m: m.upload_attachment(b"x", content_type="pdf"), ValueError),
]


# user=None means "the caller": not a bad value there.
UID_CASES = [
    pytest.param(call, *case.values, id=f"{call}-{case.id}")
    for call in UID_CALLS
    for case in BAD_UIDS
    if not (call.endswith("-user") and case.values[0] is None)
]


class TestBadInput:
    @pytest.mark.parametrize(("call", "value", "error"), UID_CASES)
    def test_malformed_uid(self, emulator, alice, call, value, error):
        """Every uid argument of every method is checked before any request."""
        with pytest.raises(error) as info:
            UID_CALLS[call](alice, value)
        if error is ValueError:
            assert "not a DHIS2 uid" in str(info.value) or "is empty" in str(info.value)
        assert [] == emulator.log

    @pytest.mark.parametrize(
        ("call", "error"), [pytest.param(c, e, id=i) for i, c, e in OTHER_BAD_CALLS]
    )
    def test_other_bad_arguments(self, emulator, alice, call, error):
        with pytest.raises(error) as info:
            call(alice)
        assert str(info.value)  # says what is wrong
        assert [] == emulator.log

    def test_malformed_uid_message_names_argument_and_value(self, emulator, alice):
        with pytest.raises(ValueError, match=r"^user is not a DHIS2 uid.*'\.\./AbCdEfGh'"):
            alice.mark_read(GOOD, user="../AbCdEfGh")
        assert [] == emulator.log


def test_unknown_uid_is_not_a_bad_input(emulator, alice):
    """A well-formed uid that does not exist reaches DHIS2 (and is its 404)."""
    with pytest.raises(ApiError):
        alice.get_conversation(UNKNOWN)
    assert 1 == len(emulator.log)

"""Making a Messenger: its arguments, from_env, the session, the credentials, its settings.

Every argument is checked up front, before any request (``TestConstruction``,
``TestCheckedUpFront``); ``from_env`` reads the DHIS2_* variables; the session a Messenger
creates it closes, a borrowed one it leaves alone.  Every request carries the headers and
the credentials given (``TestHeadersAndAuth``: basic auth, a personal access token, none).
A setting changed after construction is checked and takes effect (``TestSettingsTakeEffect``).

Neighbours: credentials that must not leak or be replaced (netrc, a borrowed session's
own, a proxy's) are in test_security.py; what timeouts, retries and the deadline do
against faults is in test_transport.py and test_transport_hostile.py; the command line's
flags and environment in test_cli.py.
"""

from __future__ import annotations

import pytest
import requests

from dhis2_messages import (
    ApiError,
    AuthenticationError,
    Messenger,
    ResponseError,
    TransportError,
)
from tests.conftest import ALICE, API, MiniServer, messenger_at

# Headers that never end, one byte at a time: the dripping server's first case in
# test_transport_hostile.py.
DRIPPED_HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000


class TestConstruction:
    @pytest.mark.parametrize("suffix", ["", "/", "/api", "/api/"])
    def test_base_url_forms(self, emulator, suffix):
        """A trailing / or /api is tolerated: requests still go to /api/messageConversations."""
        m = Messenger(emulator.url + suffix, auth=("admin", "district"), retries=0)
        assert emulator.url == m.base_url
        m.list_conversations()
        assert [API] == [r.path for r in emulator.log]

    def test_context_path(self):
        """A DHIS2 under a context path keeps it."""
        assert "https://h.org/dhis" == Messenger("https://h.org/dhis/api/", token="d2p_x").base_url

    @pytest.mark.parametrize("suffix", ["/api/40", "/api/28/", "/api/44"])
    def test_a_versioned_api_path_is_the_same_server(self, emulator, suffix):
        """DHIS2 serves /api/40/... as /api/...: the root before it is taken (it was kept,
        and every request went to /api/40/api/... and met a 404)."""
        m = Messenger(emulator.url + suffix, auth=("admin", "district"), retries=0)
        assert emulator.url == m.base_url
        m.list_conversations()
        assert [API] == [r.path for r in emulator.log]
        assert "https://h.org/dhis" == Messenger("https://h.org/dhis/api/41", token="x").base_url

    @pytest.mark.parametrize(
        "url",
        [
            "dhis2.example.org",
            "ftp://h.org",
            "",
            "https://",
            "/api",
            "https://admin:district@h.org",
            "https://h.org?x=1",
        ],
    )
    def test_bad_base_url(self, url):
        """Anything but an absolute http(s) URL without credentials is a ValueError."""
        with pytest.raises(ValueError):
            Messenger(url, token="d2p_x")

    def test_base_url_type(self):
        with pytest.raises(TypeError):
            Messenger(b"https://h.org", token="d2p_x")

    def test_auth_and_token_together(self):
        """Giving both auth and token is a ValueError."""
        with pytest.raises(ValueError, match="not both"):
            Messenger("https://h.org", auth=("a", "b"), token="d2p_x")

    @pytest.mark.parametrize(
        "auth", [("admin",), ["admin", "district"], ("admin", 5), "admin:district"]
    )
    def test_bad_auth(self, auth):
        with pytest.raises(TypeError):
            Messenger("https://h.org", auth=auth)

    def test_password_outside_latin1(self):
        """HTTP Basic cannot carry it: a ValueError that does not echo the password."""
        with pytest.raises(ValueError, match="token") as info:
            Messenger("https://h.org", auth=("admin", "pässwörd€"))
        assert "€" not in str(info.value) and info.value.__cause__ is None

    @pytest.mark.parametrize("token", ["", "d2p_abc\r\nX-Evil: 1", "d2p abc", 12])
    def test_bad_token(self, token):
        """A token that could not be a header value is refused."""
        with pytest.raises(ValueError):
            Messenger("https://h.org", token=token)

    @pytest.mark.parametrize(
        "token, problem",
        [
            ("d2p_abc def", "a space or a line break inside"),
            ("d2p_abc\ndef", "a space or a line break inside"),
            ("d2p_abc\x00", "a character no token has"),
            ("d2p_é", "a character no token has"),
        ],
    )
    def test_a_bad_token_says_what_is_wrong_without_showing_it(self, token, problem):
        with pytest.raises(ValueError, match=problem) as info:
            Messenger("https://h.org", token=token)
        assert "abc" not in str(info.value) and "é" not in str(info.value)

    @pytest.mark.parametrize("end", ["\n", "\r\n", " ", "\t\n"])
    def test_whitespace_around_a_token_is_dropped(self, emulator, end):
        """A token read from a file or a .env line ends in a line break; no token has one
        (it was refused, without saying why)."""
        token = emulator.user("alice").token
        m = Messenger(emulator.url, token=" " + token + end, retries=0)
        m.count_unread()
        assert "ApiToken " + token == emulator.log[-1].headers["Authorization"]

    @pytest.mark.parametrize("timeout", [None, 0, -1, (1, None), (1, 2, 3), "5", True])
    def test_timeout_cannot_be_disabled(self, timeout):
        """timeout=None (wait forever) and other nonsense are refused."""
        with pytest.raises(ValueError):
            Messenger("https://h.org", token="d2p_x", timeout=timeout)

    def test_scalar_timeout(self):
        assert (5.0, 5.0) == Messenger("https://h.org", token="d2p_x", timeout=5).timeout

    @pytest.mark.parametrize(
        "retries, error", [(-1, ValueError), (1.5, TypeError), (None, TypeError), (True, TypeError)]
    )
    def test_bad_retries(self, retries, error):
        """One check for every count: a TypeError for what is not a whole number, a ValueError
        for one out of range (as for page=, page_size= and limit=)."""
        with pytest.raises(error, match="retries"):
            Messenger("https://h.org", token="d2p_x", retries=retries)

    def test_repr_hides_secrets(self):
        """repr shows the URL and the auth kind, never the password or token."""
        basic = Messenger("https://h.org", auth=("admin", "s3cret-pw"))
        token = Messenger("https://h.org", token="d2p_SECRETTOKEN")
        assert "<Messenger https://h.org auth=basic>" == repr(basic)
        assert "<Messenger https://h.org auth=token>" == repr(token)
        assert "SECRET" not in repr(token) and "s3cret" not in repr(basic)

    def test_from_env_token(self, emulator, monkeypatch):
        """from_env reads DHIS2_URL and DHIS2_TOKEN."""
        monkeypatch.setenv("DHIS2_URL", emulator.url)
        monkeypatch.setenv("DHIS2_TOKEN", emulator.user("alice").token)
        monkeypatch.delenv("DHIS2_USERNAME", raising=False)
        with Messenger.from_env(retries=0) as m:
            m.list_conversations()
        assert "alice" == emulator.log[-1].user

    def test_from_env_pat_alias(self, emulator, monkeypatch):
        monkeypatch.setenv("DHIS2_URL", emulator.url)
        monkeypatch.delenv("DHIS2_TOKEN", raising=False)
        monkeypatch.setenv("DHIS2_PAT", emulator.user("bob").token)
        with Messenger.from_env() as m:
            m.count_unread()
        assert "bob" == emulator.log[-1].user

    def test_from_env_basic(self, emulator, monkeypatch):
        """from_env falls back to DHIS2_USERNAME and DHIS2_PASSWORD."""
        for name in ("DHIS2_TOKEN", "DHIS2_PAT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DHIS2_URL", emulator.url + "/")
        monkeypatch.setenv("DHIS2_USERNAME", "carol")
        monkeypatch.setenv("DHIS2_PASSWORD", "District1#")
        with Messenger.from_env() as m:
            m.count_unread()
        assert "carol" == emulator.log[-1].user

    def test_from_env_missing(self, monkeypatch):
        """Missing settings name the variables to set."""
        for name in ("DHIS2_URL", "DHIS2_TOKEN", "DHIS2_PAT", "DHIS2_USERNAME", "DHIS2_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ValueError, match="DHIS2_URL"):
            Messenger.from_env()
        monkeypatch.setenv("DHIS2_URL", "https://h.org")
        with pytest.raises(ValueError, match="DHIS2_TOKEN.*DHIS2_USERNAME.*DHIS2_PASSWORD"):
            Messenger.from_env()

    def test_owned_session_is_closed(self, emulator):
        """The context manager closes the session the Messenger created."""
        with Messenger(emulator.url, auth=("admin", "district")) as m:
            m.count_unread()
            pool = m._session.get_adapter(emulator.url).poolmanager
            assert pool.pools
        assert not pool.pools

    def test_borrowed_session_is_used_and_left_open(self, emulator):
        """A borrowed session's headers are sent; it is neither changed nor closed."""
        closed = []

        class Session(requests.Session):
            def close(self):
                closed.append(True)
                super().close()

        session = Session()
        session.headers["X-Team"] = "hmis"
        before = dict(session.headers)
        with Messenger(emulator.url, auth=("admin", "district"), session=session) as m:
            m.count_unread()
        assert [] == closed
        assert before == dict(session.headers)
        assert "hmis" == emulator.log[-1].headers["X-Team"]


class TestHeadersAndAuth:
    def test_every_request_carries_the_headers(self, emulator, admin):
        """X-Requested-With and Accept: application/json go with every call."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.list_conversations()
        admin.get_conversation(uid)
        admin.reply(uid, "r")
        admin.count_unread()
        assert 5 == len(emulator.log)
        for request in emulator.log:
            assert "XMLHttpRequest" == request.headers["X-Requested-With"]
            assert "application/json" == request.headers["Accept"]
            assert request.headers["User-Agent"].startswith("dhis2-messages/")

    def test_token_auth(self, emulator, connect):
        """A personal access token is sent as 'Authorization: ApiToken ...'."""
        m = connect("alice", token=True)
        m.count_unread()
        request = emulator.log[-1]
        assert "ApiToken " + emulator.user("alice").token == request.headers["Authorization"]
        assert "alice" == request.user

    def test_wrong_password(self, emulator):
        """Wrong credentials: AuthenticationError with DHIS2's message and a hint."""
        m = Messenger(emulator.url, auth=("admin", "wrong"), retries=0)
        with pytest.raises(AuthenticationError) as info:
            m.list_conversations()
        assert (401, "Unauthorized") == (info.value.status_code, info.value.message)
        assert "password" in str(info.value)
        assert "wrong" not in str(info.value) + repr(info.value)

    def test_unknown_token(self, emulator):
        m = Messenger(emulator.url, token="d2p_" + "x" * 48, retries=0)
        with pytest.raises(AuthenticationError, match="The API token does not exists"):
            m.count_unread()

    def test_no_credentials_gives_401_not_login_page(self, emulator):
        """Because X-Requested-With is sent, DHIS2 answers 401 instead of redirecting to /login/."""
        m = Messenger(emulator.url, retries=0)
        with pytest.raises(AuthenticationError) as info:
            m.count_unread()
        assert 401 == info.value.status_code

    def test_login_redirect(self, emulator, admin):
        """A 302 to the login page (a proxy ate the header) is an AuthenticationError, not HTML parsing."""
        emulator.inject(
            status=302, headers={"Location": emulator.url + "/dhis-web-login/"}, body=b""
        )
        with pytest.raises(AuthenticationError, match="login page") as info:
            admin.list_conversations()
        assert 302 == info.value.status_code
        assert 1 == len(emulator.log)


# -- Timeouts and URLs are checked up front -----------------------------------------------


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

    @pytest.mark.parametrize(
        "size, error",
        [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError), (None, TypeError)],
    )
    def test_max_response_size(self, size, error):
        with pytest.raises(error, match="max_response_size"):
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


# -- Settings take effect, or are read-only ------------------------------------------------


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
            server.drip(conn, DRIPPED_HEADERS)

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

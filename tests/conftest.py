"""Fixtures: one emulated DHIS2 per release on 127.0.0.1 for the whole run, reset before each test.

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
import subprocess
import sys

import pytest
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


def answer_json(handler, obj, status=200):
    """Answer *obj* as JSON from an ``http.server`` handler (the tests' own small servers)."""
    body = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)

"""Fixtures: one emulated DHIS2 on 127.0.0.1 for the whole run, reset before each test."""

from __future__ import annotations

import pytest

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
    Emulator,
)

API = "/api/messageConversations"
UNKNOWN = "Zz0000000Zz"  # a well-formed uid that nothing in the seeded world has


@pytest.fixture(scope="session")
def _server():
    server = Emulator().start()
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

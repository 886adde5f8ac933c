"""Fixtures: one emulated DHIS2 on 127.0.0.1 for the whole run, reset before each test."""

from __future__ import annotations

import pytest

from dhis2_messages import Messenger
from tests.emulator import Emulator

# Uids of the emulator's seeded world (see tests/emulator.py).
ADMIN = "xE7jOejl9FI"
ALICE = "PhzytPW3g2J"
BOB = "DXyJmlo9rge"
CAROL = "Kh68cDMwZsg"
DAVE = "Onf73mPD6sL"
REPORTERS = "wl5cDMuUhmF"
FEEDBACK_TEAM = "QYrzIjSfI8z"
BO_DISTRICT = "O6uvpzGd5pu"
UNKNOWN = "Zz0000000Zz"


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

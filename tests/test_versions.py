"""DHIS2 releases: the emulator answers as each one does, and the client is right on each.

Each test here that pins a version difference runs on every emulated release (through the
parametrised ``emulator`` fixture) and asserts what that release does, so it fails when the
emulator's version switch is taken away.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.conftest import versions_for
from tests.emulator import DEFAULT_VERSION, VERSIONS, Emulator, parse_version

MC = "/api/messageConversations"


def _get(emulator, path, user="admin", **kwargs):
    seeded = emulator.user(user)
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("allow_redirects", False)
    return requests.get(emulator.url + path, auth=(seeded.username, seeded.password), **kwargs)


# -- the version switch and the fixture -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("2.38", (2, 38, 0)),
        ("2.41", (2, 41, 0)),
        ("2.41.2", (2, 41, 2)),
        ("2.41.4.1", (2, 41, 4)),
        ("2.44-SNAPSHOT", (2, 44, 0)),
        ("master", (2, 44, 0)),
    ],
)
def test_parse_version(text, release):
    assert release == parse_version(text)


@pytest.mark.parametrize("text", ["2.37", "2.45", "3.0", "2.x", ""])
def test_unsupported_versions_are_refused(text):
    with pytest.raises(ValueError, match="unsupported DHIS2 version"):
        Emulator(version=text)


def test_default_version():
    assert "2.42" == DEFAULT_VERSION
    assert "2.42.0" == Emulator().version


def test_marker_forms():
    mark = pytest.mark.dhis2_versions
    assert list(VERSIONS) == versions_for(mark().mark)
    assert ["2.41.3", "2.42", "2.43", "2.44"] == versions_for(mark(since="2.41.3").mark)
    assert ["2.38", "2.39", "2.40", "2.41.0"] == versions_for(mark(until="2.41.3").mark)
    assert ["2.40", "2.41.0", "2.41.3"] == versions_for(mark(since="2.40", until="2.42").mark)
    assert ["2.38", "2.43"] == versions_for(mark("2.38", "2.43").mark)


def test_each_release_gets_its_own_emulator(request, emulator):
    """The test id names the release, and the emulator behind it is that release."""
    assert request.node.callspec.params["_server"] in request.node.name
    assert emulator.release == parse_version(request.node.callspec.params["_server"])


@pytest.mark.dhis2_versions(since="2.43")
def test_marker_limits_the_releases(emulator):
    assert emulator.since("2.43")


def test_system_info_version(emulator):
    """SystemController: any logged-in user; fields=version is {"version": "..."}."""
    r = _get(emulator, "/api/system/info", user="alice", params={"fields": "version"})
    assert 200 == r.status_code
    assert {"version": emulator.version} == r.json()
    assert emulator.version.startswith(".".join(map(str, emulator.release[:2])))


def test_command_line_version():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0", "--version", "2.40"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("DHIS2 2.40.0 messaging emulator at ")
        url = first.split()[-1]
        r = requests.get(
            url + "/api/system/info",
            params={"fields": "version"},
            auth=("alice", "District1#"),
            timeout=5,
        )
        assert {"version": "2.40.0"} == r.json()
    finally:
        proc.terminate()
        proc.wait(5)

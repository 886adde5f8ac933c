"""DHIS2 releases: the emulator answers as each one does, and the client is right on each.

What differs between releases is the emulator's quirk table (``tests.emulator.QUIRKS``).
Every quirk has a probe here that runs on every emulated release (through the parametrised
``emulator`` fixture) and asserts what that release does, and a second test switches the
quirk the other way and wants its probe to fail.  The README's compatibility table is
checked against the same table.
"""

from __future__ import annotations

import ast
import contextlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import requests

import tests.emulator as emulator_module
from dhis2_messages import ApiError, NotFoundError, ResponseError
from tests.conftest import UNKNOWN, RawClient, at_least, versions_for
from tests.emulator import (
    ADMIN,
    ALICE,
    BOB,
    DEFAULT_VERSION,
    PROFILES,
    QUIRK_NAMES,
    QUIRKS,
    VERSIONS,
    Emulator,
    Profile,
    Quirk,
    parse_version,
)

MC = "/api/messageConversations"


def _get(emulator, path, user="admin", **kwargs):
    return _call(emulator, "GET", path, user, **kwargs)


def _call(emulator, method, path, user="admin", **kwargs):
    with RawClient(emulator) as raw:
        return raw(method, path, user, **kwargs)


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
    assert at_least(emulator, "2.43")


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


# -- the quirk table: what differs between releases --------------------------------------
#
# Each quirk of the emulator's table has a probe here, which asserts over HTTP what a release
# does with the quirk (``on``) or without it.  test_quirk runs every probe on every release,
# so each quirk is checked on both sides of its first release; test_probe_sees_its_quirk
# switches the one quirk the other way and wants the probe to fail, so a quirk that no
# handler reads, or a probe that cannot tell, fails too.

PROBES: dict[str, Callable[[Emulator, bool], None]] = {}


def probe(name):
    def register(function):
        PROBES[name] = function
        return function

    return register


def _reply(emulator, uid, user, text=b"hi", **params):
    headers = {"Content-Type": "text/plain"}
    return _call(emulator, "POST", f"{MC}/{uid}", user, data=text, headers=headers, params=params)


@probe("unknown_uid_200")
def _unknown_uid_200(emulator, on):
    """c7cd9b45094 sets 404, then returns ResponseEntity.ok: the client sees 200."""
    r = _get(emulator, f"{MC}/{UNKNOWN}")
    assert (200 if on else 404) == r.status_code
    assert {"message": "No MessageConversation found with UID: " + UNKNOWN} == r.json()


@probe("lookup_boundary")
def _lookup_boundary(emulator, on):
    """Aminata works at Ngelehun CHC, below alice's Bo District: not on the boundary."""
    params = {"query": "Conteh", "orgUnitBoundary": "DATA_CAPTURE"}
    users = _get(emulator, "/api/userLookup", user="alice", params=params).json()["users"]
    assert ([] if on else ["aminata"]) == [u["username"] for u in users]


@probe("upload_size_limit")
def _upload_size_limit(emulator, on):
    """FileResourceUtils.validateFileSize: 10,000,000 bytes pass, one more does not."""
    files = {"file": ("big.bin", b"\0" * 10_000_001, "application/octet-stream")}
    params = {"domain": "MESSAGE_ATTACHMENT"}
    r = _call(emulator, "POST", "/api/fileResources", "alice", params=params, files=files)
    if on:
        message = "File size can't be bigger than 10000000, current file size 10000001"
        assert (409, message) == (r.status_code, r.json()["message"])
        assert "errorCode" not in r.json()
    else:
        assert 202 == r.status_code


@probe("typed_errors")
def _typed_errors(emulator, on):
    """ConflictException E1004 and NotFoundException E1005; before, WebMessageUtils'
    conflict and notFound without errorCode."""
    r = _call(emulator, "POST", MC, json={"subject": "s", "text": "t", "users": [{"id": UNKNOWN}]})
    assert (409, "User does not exist: " + UNKNOWN) == (r.status_code, r.json()["message"])
    assert ("E1004" if on else None) == r.json().get("errorCode")
    body = {"subject": "s", "text": "t", "userGroups": [{"id": UNKNOWN}]}
    r = _call(emulator, "POST", MC, json=body)
    assert 404 == r.status_code
    if on:
        assert f"UserGroup with id {UNKNOWN} could not be found." == r.json()["message"]
        assert "E1005" == r.json()["errorCode"]
    else:
        assert f"User Group does not exist: {UNKNOWN}" == r.json()["message"]
        assert "errorCode" not in r.json()
    r = _call(emulator, "POST", MC, json={"subject": "s", "text": "t", "users": []})
    assert (409, "No recipients selected.") == (r.status_code, r.json()["message"])
    assert ("E1004" if on else None) == r.json().get("errorCode")


@probe("participant_check")
def _participant_check(emulator, on):
    """Alice takes no part in admin's conversation with bob."""
    uid = emulator.add_conversation(sender="admin", recipients=["bob"], subject="Private")
    r = _reply(emulator, uid, "alice")
    if on:
        assert 403 == r.status_code
        assert "Not authorized to send messages to this conversation." == r.json()["message"]
        assert "E1006" == r.json()["errorCode"]
    else:  # anyone may reply
        assert 201 == r.status_code
    params = {"messageConversationStatus": "SOLVED"}
    r = _call(emulator, "POST", f"{MC}/{uid}/status", "alice", params=params)
    assert (403 if on else 200) == r.status_code
    r = _call(emulator, "POST", f"{MC}/followup", "alice", json=[uid])
    assert (403 if on else 200) == r.status_code


@probe("acting_for_others")
def _acting_for_others(emulator, on):
    """Before, only a superuser may mark read or remove for another user."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice", "bob"], subject="s")
    r = _call(emulator, "POST", f"{MC}/read", "alice", params={"user": BOB}, json=[uid])
    r2 = _call(emulator, "DELETE", MC, "alice", params={"mc": uid, "user": BOB})
    if on:
        assert (200, {"markedRead": [uid]}) == (r.status_code, r.json())
        assert (200, {"removed": [uid]}) == (r2.status_code, r2.json())
    else:
        assert (403, "Not authorized to modify this object.") == (
            r.status_code,
            r.json()["message"],
        )
        assert "errorCode" not in r.json()
        assert (403, "Not authorized to modify user: " + BOB) == (
            r2.status_code,
            r2.json()["message"],
        )


@probe("feedback_location")
def _feedback_location(emulator, on):
    r = _call(emulator, "POST", MC + "/feedback", "alice", params={"subject": "s"}, data=b"t")
    assert 201 == r.status_code
    assert "Feedback created" == r.json()["message"]
    if on:
        assert r.headers["Location"].endswith(f"{MC}/" + next(reversed(emulator.conversations)))
    else:
        assert "Location" not in r.headers


@probe("forbidden_e1006_everywhere")
def _forbidden_e1006_everywhere(emulator, on):
    """The refusals every release makes: reading another's conversation, and an internal
    reply by someone who does not manage tickets."""
    uid = emulator.add_conversation(sender="admin", recipients=["bob"], subject="Private")
    r = _get(emulator, f"{MC}/{uid}", user="alice")
    assert (403, "Not authorized to access this conversation.") == (
        r.status_code,
        r.json()["message"],
    )
    assert ("E1006" if on else None) == r.json().get("errorCode")
    r = _reply(emulator, uid, "bob", internal="true")
    assert (403, "Not authorized to send internal messages") == (
        r.status_code,
        r.json()["message"],
    )
    assert ("E1006" if on else None) == r.json().get("errorCode")
    r = _call(emulator, "POST", f"{MC}/followup", "alice", json=[uid])
    if on or r.status_code == 403:  # no participant check at all on the oldest releases
        assert 403 == r.status_code
        assert ("E1006" if on else None) == r.json().get("errorCode")


@probe("resplits_filters")
def _resplits_filters(emulator, on):
    """GetObjectListParams.splitFilters: ``subject:ilike:malaria, stock`` is cut at the comma."""
    both = emulator.add_conversation(sender="admin", recipients=["alice"], subject="Malaria, stock")
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="Malaria report")
    r = _get(emulator, MC, user="alice", params={"filter": "subject:ilike:malaria, stock"})
    found = {c["id"] for c in r.json()["messageConversations"]}
    assert (2 if on else 1) == len(found)
    assert both in found
    # DefaultQueryParser splits at colons and joins the pieces again: trailing ones are lost.
    colon = emulator.add_conversation(sender="admin", recipients=["alice"], subject="Re: stock:")
    plain = emulator.add_conversation(sender="admin", recipients=["alice"], subject="Re: stock")
    r = _get(emulator, MC, user="alice", params={"filter": "subject:eq:Re: stock:"})
    assert [plain if on else colon] == [c["id"] for c in r.json()["messageConversations"]]


@probe("date_equality")
def _date_equality(emulator, on):
    """Up to 2.41 the list is filtered in memory, against java.sql.Timestamp values: their
    equals() refuses the filter's java.util.Date, so an equal date never matches eq, le or
    ge.  A strict filter one millisecond past it matches on every release."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    ms = emulator.conversations[uid].last_message
    at, past = emulator_module.format_date(ms), emulator_module.format_date(ms + 1)

    def found(expression):
        params = {"filter": expression, "fields": "id"}
        return [
            c["id"]
            for c in _get(emulator, MC, "alice", params=params).json()["messageConversations"]
        ]

    for op in ("eq", "le", "ge"):
        assert ([uid] if on else []) == found(f"lastMessage:{op}:{at}"), op
    assert [uid] == found(f"lastMessage:lt:{past}")
    assert [uid] == found(f"lastMessage:gt:{emulator_module.format_date(ms - 1)}")


@probe("or_lifts_inbox")
def _or_lifts_inbox(emulator, on):
    """Without the quirk the filters only narrow the caller's own conversations."""
    mine = emulator.add_conversation(sender="admin", recipients=["alice"], subject="mine")
    other = emulator.add_conversation(sender="admin", recipients=["bob"], subject="other")
    params = {"filter": "subject:eq:other", "rootJunction": "OR", "fields": "id"}
    found = {
        c["id"]
        for c in _get(emulator, MC, user="alice", params=params).json()["messageConversations"]
    }
    assert ({mine, other} if on else set()) == found


@probe("mark_read_exact")
def _mark_read_exact(emulator, on):
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    _get(emulator, f"{MC}/{uid}", user="alice", params={"markRead": "TRUE"})
    assert (not on) == emulator.conversations[uid].participants["alice"].read


@probe("no_xml_create")
def _no_xml_create(emulator, on):
    """postXmlObject."""
    xml = (
        '<messageConversation xmlns="http://dhis2.org/schema/dxf/2.0">'
        f'<subject>By XML</subject><text>Hi</text><users><user id="{ALICE}"/></users>'
        "</messageConversation>"
    ).encode()
    r = _call(emulator, "POST", MC, data=xml, headers={"Content-Type": "application/xml"})
    if on:
        assert 415 == r.status_code
    else:
        assert 201 == r.status_code
        uid = r.headers["Location"].rsplit("/", 1)[-1]
        conv = emulator.conversations[uid]
        assert ("By XML", "Hi") == (conv.subject, conv.messages[0].text)
        assert {"admin", "alice"} == set(conv.participants)


@probe("forwarding_off")
def _forwarding_off(emulator, on):
    assert (not on) == emulator.forwards_by_default
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    assert ([] if on else [("alice", uid)]) == emulator.forwarded


@probe("notifies_sender")
def _notifies_sender(emulator, on):
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    emulator.forwarding["alice"] = emulator.forwarding["admin"] = True
    emulator.forwarded.clear()
    assert 201 == _reply(emulator, uid, "alice", text=b"r").status_code
    expected = {("admin", uid), ("alice", uid)} if on else {("admin", uid)}
    assert expected == set(emulator.forwarded)


@probe("parameter_limit")
def _parameter_limit(emulator, on):
    """1,001 parameters in under 4 kB: Tomcat 11 refuses the request before DHIS2 sees it."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    params = [("mc", uid)] + [("x", "")] * 1000
    r = _call(emulator, "DELETE", MC, "alice", params=params)
    if on:
        assert 400 == r.status_code
        assert "maximum number of request parameters" in r.text
        assert "alice" in emulator.conversations[uid].participants
    else:
        assert 200 == r.status_code
        assert {"removed": [uid]} == r.json()
    r = _call(emulator, "GET", MC, "alice", params=[("fields", "id")] + [("x", "")] * 999)
    assert 200 == r.status_code


@probe("typed_uid_path")
def _typed_uid_path(emulator, on):
    """0057d9bdf6c: a leading digit still matches GET's path pattern, then fails as a UID."""
    r = _get(emulator, f"{MC}/1bcdefghijk")
    if on:
        assert 400 == r.status_code
        assert r.json()["message"].startswith("Value '1bcdefghijk' is not valid for parameter uid.")
    else:
        assert r.status_code in (200, 404)  # the unknown-conversation answer
    r = _call(emulator, "DELETE", f"{MC}/abc")
    assert (400 if on else 404) == r.status_code


@probe("order_refusal")
def _order_refusal(emulator, on):
    """Before, QueryUtils.convertOrderStrings drops an unknown property silently."""
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    r = _get(emulator, MC, user="alice", params={"order": "bogus:desc"})
    if on:
        assert 400 == r.status_code
        assert "No such property: bogus" == r.json()["message"]
        assert "errorCode" not in r.json()
    else:
        assert (200, 1) == (r.status_code, len(r.json()["messageConversations"]))


@probe("message_unnamed")
def _message_unnamed(emulator, on):
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s", text="Hi")
    r = _get(emulator, f"{MC}/{uid}", params={"fields": "messages[name,displayName,text]"})
    message = r.json()["messages"][0]
    if on:
        assert {"displayName": "", "text": "Hi"} == message
    else:
        assert {"name": "Hi", "displayName": "Hi", "text": "Hi"} == message


@probe("gist_bridge")
def _gist_bridge(emulator, on):
    """With query= there is no pre-query filter, so GistBridge may answer."""
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    r = _get(emulator, MC, params={"query": "", "fields": "id,subject"})
    assert 200 == r.status_code
    assert on == ("gist" in r.json())
    r = _get(emulator, MC, params={"fields": "id,subject"})
    assert "gist" not in r.json()


def _before(version):
    return VERSIONS[VERSIONS.index(version) - 1]


@pytest.mark.parametrize("quirk", QUIRKS, ids=lambda q: q.name)
def test_quirk(emulator, quirk):
    """Each release does what the table says: the quirk from its first release on, not before."""
    PROBES[quirk.name](emulator, at_least(emulator, quirk.since))


@pytest.fixture(scope="module")
def emulator_at():
    """emulator_at("2.42") -> an emulator of that release, reset (one per release and module)."""
    started = {}

    def emulator_at(version):
        if version not in started:
            started[version] = Emulator(version=version).start()
        started[version].quirks = PROFILES[version]
        started[version].reset()
        return started[version]

    yield emulator_at
    for server in started.values():
        server.stop()


@pytest.mark.parametrize(
    ("quirk", "version"),
    [(q, v) for q in QUIRKS for v in (_before(q.since), q.since)],
    ids=lambda p: p.name if isinstance(p, Quirk) else p,
)
def test_probe_sees_its_quirk(emulator_at, quirk, version):
    """With the one quirk switched the other way, the release no longer does what the table
    says: the handlers read that quirk, and its probe sees it."""
    emulator = emulator_at(version)
    on = parse_version(version) >= parse_version(quirk.since)
    emulator.quirks = PROFILES[version].replace(**{quirk.name: not on})
    emulator.reset()
    bugs = len(emulator.errors)
    with pytest.raises((AssertionError, KeyError)):  # KeyError: a key the answer lacks
        PROBES[quirk.name](emulator, on)
    assert bugs == len(emulator.errors), "the emulator hit a bug:\n" + emulator.errors[-1]


# -- the table itself ----------------------------------------------------------------------


def test_every_quirk_has_a_probe():
    assert [q.name for q in QUIRKS] == list(PROBES)  # the same names, in the table's order


def test_quirk_table():
    """Named once, oldest first, each with a release on both sides, a source and a change."""
    names = [q.name for q in QUIRKS]
    assert len(set(names)) == len(names)
    assert QUIRK_NAMES == set(names)
    for quirk in QUIRKS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", quirk.name), quirk
        assert quirk.since in VERSIONS[1:], quirk  # the release before it is emulated too
        assert re.search(r"\b[0-9a-f]{11}\b|\.java:[-\d,]+@(2\.\d+(\.\d+)?|master)", quirk.source)
        assert quirk.change and "\n" not in quirk.change
    releases = [parse_version(q.since) for q in QUIRKS]
    assert sorted(releases) == releases


def test_one_profile_per_release():
    """A release has the quirks that began at it or before; nothing goes away again."""
    assert list(VERSIONS) == list(PROFILES)
    assert set() == PROFILES["2.38"].names
    assert QUIRK_NAMES == PROFILES["2.44"].names
    assert {"participant_check", "acting_for_others", "feedback_location"} == (
        PROFILES["2.41.3"].names - PROFILES["2.41.0"].names
    )
    for older, newer in zip(VERSIONS, VERSIONS[1:]):
        assert PROFILES[older].names <= PROFILES[newer].names
    for version in VERSIONS:
        assert PROFILES[version] == Emulator(version=version).quirks
        for quirk in QUIRKS:
            has = parse_version(version) >= parse_version(quirk.since)
            assert has == getattr(PROFILES[version], quirk.name)
    assert Profile.of("master") == PROFILES["2.44"]
    assert Profile.of("2.41.4.1") == PROFILES["2.41.3"]


def test_profile_names_are_checked():
    profile = PROFILES["2.42"]
    with pytest.raises(AttributeError, match="no quirk named 'feedback_locaton'"):
        profile.feedback_locaton  # noqa: B018
    with pytest.raises(ValueError, match="unknown quirk"):
        profile.replace(bogus=True)
    with pytest.raises(ValueError, match="unknown quirk"):
        Profile(["bogus"])
    assert not profile.replace(feedback_location=False).feedback_location
    assert profile.feedback_location  # replace() made a copy


def test_handlers_read_quirks_not_versions():
    """Only the version plumbing looks at the release; everything else reads the profile."""
    tree = ast.parse(Path(emulator_module.__file__).read_text(encoding="utf-8"))
    allowed = {"__init__", "since", "of", "version_name", "parse_version"}
    offenders = []

    def visit(node, function):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            function = getattr(node, "name", function)
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("release", "since")
            and function not in allowed
        ):
            offenders.append((function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    assert [] == offenders


def test_readme_table_matches_the_quirks():
    """README's compatibility table names every quirk once, in the row of its first release."""
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")
    section = readme[readme.index("\nCompatibility\n") :]
    table = section[section.index(".. list-table::") :]
    table = table[: table.index("\n\n", table.index("   * - "))]
    header, *rows = table.split("\n   * - ")[1:]
    assert header.split("\n     - ")[0] == "From"
    seen = {}
    for row in rows:
        cells = row.split("\n     - ")
        release = cells[0].split()[0]  # "2.44 (master)"
        for name in re.findall(r"``([a-z0-9_]+)``", cells[-1]):
            assert name not in seen, name
            seen[name] = release
    assert {q.name: q.since for q in QUIRKS} == seen


# -- what holds on every release --------------------------------------------------------


def test_empty_pager(emulator):
    pager = _get(emulator, MC, user="alice").json()["pager"]
    assert {"page": 1, "total": 0, "pageSize": 50, "pageCount": 0} == pager


def test_page_past_the_end(emulator):
    emulator.add_conversations(3, sender="admin", recipients=["alice"])
    body = _get(emulator, MC, user="alice", params={"page": 5, "pageSize": 2}).json()
    assert [] == body["messageConversations"]
    assert (2, 2, 3) == (body["pager"]["page"], body["pager"]["pageCount"], body["pager"]["total"])


def test_enum_filter_values_are_case_sensitive(emulator):
    r = _get(emulator, MC, user="alice", params={"filter": "messageType:eq:private"})
    assert (400, "E1003") == (r.status_code, r.json()["errorCode"])
    assert r.json()["message"] == (
        "Unable to parse `private` as `class org.hisp.dhis.message.MessageType`, "
        "available values are: [PRIVATE, SYSTEM, VALIDATION_RESULT, TICKET, SYSTEM_VERSION_UPDATE]"
    )


@pytest.mark.parametrize("prop", ["read", "followUp"])
def test_read_and_follow_up_are_orderable(emulator, prop):
    first = emulator.add_conversation(sender="admin", recipients=["alice"], subject="a")
    second = emulator.add_conversation(sender="admin", recipients=["alice"], subject="b")
    participant = emulator.conversations[second].participants["alice"]
    participant.read = participant.follow_up = True
    for direction, expected in (("desc", [second, first]), ("asc", [first, second])):
        params = {"order": f"{prop}:{direction}", "fields": "id"}
        body = _get(emulator, MC, user="alice", params=params).json()
        assert expected == [c["id"] for c in body["messageConversations"]]


def test_user_messages_user_is_a_fixed_dto(emulator):
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    params = {"fields": "userMessages[user[firstName]],createdBy[surname]"}
    body = _get(emulator, f"{MC}/{uid}", params=params).json()
    admin = {"id": ADMIN, "name": "John Traore", "displayName": "John Traore", "username": "admin"}
    assert admin == body["createdBy"]
    assert admin in [m["user"] for m in body["userMessages"]]


def test_system_update_notice(emulator):
    uid = emulator.add_update_notice(["admin"], version="2.42.1")
    body = _get(
        emulator, f"{MC}/{uid}", params={"fields": "messageType,extMessageId,subject"}
    ).json()
    assert {
        "messageType": "SYSTEM",
        "extMessageId": "2.42.1",
        "subject": "System update available",
    } == body


def test_a_trailing_slash_is_the_same_path(emulator):
    """Every release's Spring MVC matches a path with one trailing slash as the path itself."""
    r = _call(
        emulator, "POST", MC + "/", json={"subject": "s", "text": "t", "users": [{"id": ALICE}]}
    )
    assert (201, "Message conversation created") == (r.status_code, r.json()["message"])
    uid = r.headers["Location"].rsplit("/", 1)[-1]
    assert emulator.url + f"{MC}/{uid}" == r.headers["Location"]
    assert [uid] == [c["id"] for c in _get(emulator, MC + "/").json()["messageConversations"]]
    assert uid == _get(emulator, f"{MC}/{uid}/", params={"fields": "id"}).json()["id"]
    assert 201 == _reply(emulator, uid, "alice", text=b"r").status_code
    r = _call(emulator, "POST", f"{MC}/{uid}/", "alice", data=b"r2")
    assert 201 == r.status_code
    assert ["t", "r", "r2"] == [m.text for m in emulator.conversations[uid].messages]
    r = _call(emulator, "POST", f"{MC}/read/", json=[uid])
    assert {"markedRead": [uid]} == r.json()
    r = _call(
        emulator, "POST", f"{MC}/{uid}/priority/", params={"messageConversationPriority": "HIGH"}
    )
    assert {"HIGH": [uid]} == r.json()
    r = _get(emulator, "/api/41/system/info/", params={"fields": "version"})
    assert {"version": emulator.version} == r.json()
    assert 200 == _call(emulator, "DELETE", f"{MC}/{uid}/").status_code
    assert uid not in emulator.conversations
    # Only one slash: two are no path, and neither is a slash on its own.
    assert 404 == _get(emulator, MC + "//").status_code
    assert 404 == _get(emulator, "/api/").status_code


def test_a_trailing_slash_is_not_on_the_public_list(emulator):
    """Spring Security's permitAll patterns have no trailing slash: /api/auth/login/ wants
    credentials like any other path, and is the login endpoint once it has them."""
    login = {"username": "alice", "password": "District1#"}
    r = requests.post(emulator.url + "/api/auth/login", json=login, timeout=5)
    assert (200, "SUCCESS") == (r.status_code, r.json()["loginStatus"])
    r = requests.post(
        emulator.url + "/api/auth/login/", json=login, timeout=5, allow_redirects=False
    )
    assert (302, emulator.url + "/login/") == (r.status_code, r.headers["Location"])
    r = _call(emulator, "POST", "/api/auth/login/", "bob", json=login)
    assert (200, "SUCCESS") == (r.status_code, r.json()["loginStatus"])


# -- the client on each release ------------------------------------------------------------


def test_send_feedback_returns_the_new_ticket(emulator, connect):
    """From Location on 2.41.3+; before, with one list request; never a second ticket."""
    alice = connect("alice")
    uid = alice.send_feedback(subject="Login broken", text="Since Monday")
    assert [uid] == [c.uid for c in emulator.conversations.values() if c.message_type == "TICKET"]
    methods = [(r.method, r.path) for r in emulator.log]
    lookup = [] if at_least(emulator, "2.41.3") else [("GET", MC)]
    assert [("POST", MC + "/feedback")] + lookup == methods


def _rival_ticket_after_each_feedback(emulator, monkeypatch, username, text):
    """Another user's ticket with the same subject lands right after each feedback POST,
    before the client can look for its own: newer than it, so first in created:desc order."""
    handler = emulator._h_feedback

    def feedback_then_a_rival(req):
        response = handler(req)
        rival = emulator.user(username)
        conv = emulator._new_conversation(
            req.first("subject"), "TICKET", rival, [emulator.user("carol")], status="OPEN"
        )
        emulator._append(conv, rival, req.body.decode() if text is None else text)
        return response

    monkeypatch.setattr(emulator, "_h_feedback", feedback_then_a_rival)


@pytest.mark.parametrize(
    ("token", "rival_text"),
    [(False, None), (True, "Something else")],
    ids=["basic-same-text", "token-other-text"],
)
def test_send_feedback_picks_its_own_ticket_among_equal_subjects(
    emulator, connect, monkeypatch, token, rival_text
):
    """Carol, a feedback manager, sees every ticket.  With Basic auth a newer ticket by alice
    with the same subject and text is told apart by its sender; with a token (the caller's
    username unknown), by its text."""
    emulator.add_conversation(
        sender="carol",
        recipients=["carol"],
        subject="Login broken",
        text="Since Monday",
        message_type="TICKET",
    )
    _rival_ticket_after_each_feedback(emulator, monkeypatch, "alice", rival_text)
    emulator.clear_log()
    uid = connect("carol", token=token).send_feedback(subject="Login broken", text="Since Monday")
    ticket = emulator.conversations[uid]
    assert ("carol", "Since Monday") == (ticket.created_by.username, ticket.messages[0].text)
    assert 3 == len(emulator.conversations)  # the seeded one, carol's new one, alice's
    assert (1 if at_least(emulator, "2.41.3") else 2) == len(emulator.log)


def test_send_feedback_lookup_failure_is_not_a_second_ticket(emulator, connect):
    emulator.inject(method="GET", path=r"/messageConversations$", status=503)
    alice = connect("alice")
    if at_least(emulator, "2.41.3"):
        assert alice.send_feedback(subject="s", text="t")
        return
    with pytest.raises(ResponseError, match="created the feedback ticket but sent no Location"):
        alice.send_feedback(subject="s", text="t")
    assert 1 == len(emulator.conversations)
    assert 1 == len(emulator.requests("POST"))


@pytest.mark.dhis2_versions(until="2.41.3")
@pytest.mark.parametrize(
    "answer",
    [
        {"messageConversations": 5},
        {"messageConversations": [5]},
        {"messageConversations": [{"id": "x", "subject": "s", "messages": "t"}]},
        {"messageConversations": [{"id": 5, "subject": "s", "messages": [{"text": "t"}]}]},
        {
            "messageConversations": [
                {"id": "bad id", "subject": "s", "messages": [{"id": "m", "text": "t"}]}
            ]
        },
        {"pager": "one", "messageConversations": []},
        [],
    ],
    ids=["number", "list-of-numbers", "messages-text", "id-number", "bad-uid", "pager", "list"],
)
def test_send_feedback_lookup_answers_that_make_no_sense(emulator, connect, answer):
    """Whatever the list answers after a Location-less 201, the error is a ResponseError
    that says the ticket was made and to look before sending it again."""
    emulator.inject(method="GET", path=r"/messageConversations$", status=200, body=answer)
    with pytest.raises(ResponseError) as info:
        connect("alice").send_feedback(subject="s", text="t")
    assert "DHIS2 created the feedback ticket but sent no Location" in str(info.value)
    assert "look in the inbox before sending it again" in str(info.value)
    assert ("no_location", 1) == (info.value.kind, len(emulator.requests("POST")))
    assert 1 == len(emulator.conversations)


@pytest.mark.dhis2_versions(until="2.41.3")
def test_send_feedback_lookup_takes_only_tickets_made_since_the_post(emulator, connect):
    """An older ticket of the caller's with the same words is not the one just made."""
    old = emulator.add_conversation(
        sender="alice", recipients=["carol"], subject="s", text="t", message_type="TICKET"
    )
    emulator.backdate(old, 60)
    uid = connect("alice").send_feedback(subject="s", text="t")
    assert uid != old and 2 == len(emulator.conversations)
    # gt a millisecond early: up to 2.41 DHIS2's in-memory ge misses an equal date
    created = [f for f in emulator.log[-1].param("filter") if f.startswith("created:gt:")]
    assert 1 == len(created) and created[0].endswith("Z")


def test_send_feedback_with_commas_and_colons_in_the_subject(emulator, connect):
    subject = "Data: 2024, Q1 [draft]"
    uid = connect("alice").send_feedback(subject=subject, text="t")
    assert subject == emulator.conversations[uid].subject


def test_the_client_never_sends_root_junction(emulator, connect):
    """rootJunction=OR lifts the inbox restriction on 2.42+: the library never sends it."""
    alice = connect("alice")
    hostile = "subject:eq:x&rootJunction=OR"
    with contextlib.suppress(ApiError):  # DHIS2 may refuse these; what matters is the query
        alice.list_conversations(filter=[hostile, "read:eq:false"], order="subject:asc")
    with contextlib.suppress(ApiError):
        alice.list_conversations(order="subject:asc,rootJunction:OR")
    with contextlib.suppress(ApiError):
        list(alice.iter_conversations(filter="rootJunction:eq:OR", fields="id&rootJunction=OR"))
    alice.count_unread()
    alice.send_feedback(subject="rootJunction=OR", text="rootJunction=OR")
    with pytest.raises(TypeError):
        alice.list_conversations(rootJunction="OR")  # not a parameter of the API
    assert emulator.log
    assert not [r for r in emulator.log if "rootJunction" in {k for k, _ in r.params}]


def test_unknown_order_says_which_release_refused_it(emulator, connect):
    alice = connect("alice")
    if not at_least(emulator, "2.43"):
        assert [] == list(alice.list_conversations(order="bogus:desc"))  # ignored silently
        assert [] == emulator.requests(path="/api/system/info")
        return
    with pytest.raises(ApiError) as info:
        alice.list_conversations(order=["lastMessage:desc", "bogus:desc"])
    assert "No such property: bogus" == info.value.message  # DHIS2's text, untouched
    assert f"DHIS2 {emulator.version} refused order='bogus:desc'" in str(info.value)
    assert "2.42 and older ignore" in str(info.value)
    with pytest.raises(ApiError, match="refused order='bogus:asc'"):
        list(alice.iter_conversations(order="bogus:asc"))
    assert 1 == len(emulator.requests(path="/api/system/info"))  # asked once, remembered


def test_no_version_probe(emulator, connect):
    """Nothing asks the version unless an error needs it."""
    admin = connect("admin")
    uid = admin.send(subject="s", text="t", users=[ALICE])
    admin.reply(uid, "r")
    admin.get_conversation(uid, mark_read=True)
    admin.list_conversations()
    admin.mark_unread(uid)
    admin.send_feedback(subject="f", text="t")
    assert [] == emulator.requests(path="/api/system/info")


def test_mark_read_on_get_works_everywhere(emulator, connect):
    """The client sends markRead=true exactly, which every release reads as true."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    connect("alice").get_conversation(uid, mark_read=True)
    assert emulator.conversations[uid].participants["alice"].read
    assert ["true"] == emulator.log[-1].param("markRead")


def test_unknown_conversation_is_not_found_everywhere(emulator, connect):
    with pytest.raises(NotFoundError, match="No MessageConversation found with UID"):
        connect("alice").get_conversation(UNKNOWN)


def test_master_gist_answers_parse(emulator, connect):
    """The "gist" key of master's list answers is ignored."""
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    page = connect("admin").list_conversations(fields="id,subject")
    assert ["s"] == [c.subject for c in page]

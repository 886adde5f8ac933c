"""DHIS2 releases: the emulator answers as each one does, and the client is right on each.

Each test here that pins a version difference runs on every emulated release (through the
parametrised ``emulator`` fixture) and asserts what that release does, so it fails when the
emulator's version switch is taken away.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import requests

from dhis2_messages import ApiError, NotFoundError, ResponseError
from tests.conftest import UNKNOWN, at_least, versions_for
from tests.emulator import ADMIN, ALICE, BOB, DEFAULT_VERSION, VERSIONS, Emulator, parse_version

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


# -- what differs between releases (each asserts what the emulated release does) -----------


def _call(emulator, method, path, user="admin", **kwargs):
    seeded = emulator.user(user)
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("allow_redirects", False)
    return requests.request(
        method, emulator.url + path, auth=(seeded.username, seeded.password), **kwargs
    )


def test_unknown_conversation(emulator):
    """2.38: a real 404; from 2.39 (c7cd9b45094) HTTP 200 with the same bare message."""
    r = _get(emulator, f"{MC}/{UNKNOWN}")
    assert (404 if emulator.release < (2, 39, 0) else 200) == r.status_code
    assert {"message": "No MessageConversation found with UID: " + UNKNOWN} == r.json()


def test_feedback_location(emulator):
    """The feedback Location header arrives with 2.41.3 (c31ce96615b, #19139)."""
    r = _call(emulator, "POST", MC + "/feedback", "alice", params={"subject": "s"}, data=b"t")
    assert 201 == r.status_code
    assert "Feedback created" == r.json()["message"]
    if at_least(emulator, "2.41.3"):
        assert r.headers["Location"].endswith(f"{MC}/" + next(reversed(emulator.conversations)))
    else:
        assert "Location" not in r.headers


def test_forbidden_styles(emulator):
    """AccessDeniedException (no errorCode) up to 2.41.2; ForbiddenException E1006 after,
    except GET /{uid} and follow-ups on 2.41.3, which 2.42 converts too."""
    uid = emulator.add_conversation(sender="admin", recipients=["bob"], subject="Private")
    r = _get(emulator, f"{MC}/{uid}", user="alice")
    assert 403 == r.status_code
    assert "Not authorized to access this conversation." == r.json()["message"]
    assert ("E1006" if at_least(emulator, "2.42") else None) == r.json().get("errorCode")

    r = _call(
        emulator, "POST", f"{MC}/{uid}", "alice", data=b"hi", headers={"Content-Type": "text/plain"}
    )
    if at_least(emulator, "2.41.3"):
        assert (403, "E1006") == (r.status_code, r.json().get("errorCode"))
    else:  # no participant check before #19139: anyone may reply
        assert 201 == r.status_code

    r = _call(emulator, "POST", f"{MC}/followup", "alice", json=[uid])
    if at_least(emulator, "2.41.3"):
        assert 403 == r.status_code
        assert ("E1006" if at_least(emulator, "2.42") else None) == r.json().get("errorCode")
    else:
        assert 200 == r.status_code


def test_acting_for_another_user(emulator):
    """Up to 2.41.2 only a superuser may mark read or remove for another user."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice", "bob"], subject="s")
    r = _call(emulator, "POST", f"{MC}/read", "alice", params={"user": BOB}, json=[uid])
    r2 = _call(emulator, "DELETE", MC, "alice", params={"mc": uid, "user": BOB})
    if at_least(emulator, "2.41.3"):
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


def test_unknown_recipients(emulator):
    """2.40 throws typed exceptions: E1004 conflicts, E1005 "UserGroup with id X could not be
    found."; before, WebMessageUtils conflict/notFound without errorCode."""
    r = _call(emulator, "POST", MC, json={"subject": "s", "text": "t", "users": [{"id": UNKNOWN}]})
    assert (409, "User does not exist: " + UNKNOWN) == (r.status_code, r.json()["message"])
    assert ("E1004" if at_least(emulator, "2.40") else None) == r.json().get("errorCode")
    body = {"subject": "s", "text": "t", "userGroups": [{"id": UNKNOWN}]}
    r = _call(emulator, "POST", MC, json=body)
    assert 404 == r.status_code
    if at_least(emulator, "2.40"):
        assert f"UserGroup with id {UNKNOWN} could not be found." == r.json()["message"]
        assert "E1005" == r.json()["errorCode"]
    else:
        assert f"User Group does not exist: {UNKNOWN}" == r.json()["message"]
        assert "errorCode" not in r.json()
    r = _call(emulator, "POST", MC, json={"subject": "s", "text": "t", "users": []})
    assert (409, "No recipients selected.") == (r.status_code, r.json()["message"])
    assert ("E1004" if at_least(emulator, "2.40") else None) == r.json().get("errorCode")


def test_xml_create(emulator):
    """postXmlObject exists up to 2.41 and is gone in 2.42."""
    xml = (
        '<messageConversation xmlns="http://dhis2.org/schema/dxf/2.0">'
        f'<subject>By XML</subject><text>Hi</text><users><user id="{ALICE}"/></users>'
        "</messageConversation>"
    ).encode()
    r = _call(emulator, "POST", MC, data=xml, headers={"Content-Type": "application/xml"})
    if at_least(emulator, "2.42"):
        assert 415 == r.status_code
    else:
        assert 201 == r.status_code
        uid = r.headers["Location"].rsplit("/", 1)[-1]
        conv = emulator.conversations[uid]
        assert ("By XML", "Hi") == (conv.subject, conv.messages[0].text)
        assert {"admin", "alice"} == set(conv.participants)


def test_mark_read_parsing(emulator):
    """Boolean.parseBoolean up to 2.41 (any case); exactly "true" from 2.42."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    _get(emulator, f"{MC}/{uid}", user="alice", params={"markRead": "TRUE"})
    assert (not at_least(emulator, "2.42")) == emulator.conversations[uid].participants[
        "alice"
    ].read


def test_filter_values_resplit_on_commas(emulator):
    """2.42 joins every filter with commas and re-splits (GetObjectListParams.splitFilters)."""
    both = emulator.add_conversation(sender="admin", recipients=["alice"], subject="Malaria, stock")
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="Malaria report")
    r = _get(emulator, MC, user="alice", params={"filter": "subject:ilike:malaria, stock"})
    found = {c["id"] for c in r.json()["messageConversations"]}
    assert (2 if at_least(emulator, "2.42") else 1) == len(found)
    assert both in found


def test_unknown_order_property(emulator):
    """Dropped silently up to 2.42; a 400 "No such property" from 2.43 (9e84ead485b)."""
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    r = _get(emulator, MC, user="alice", params={"order": "bogus:desc"})
    if at_least(emulator, "2.43"):
        assert 400 == r.status_code
        assert "No such property: bogus" == r.json()["message"]
        assert "errorCode" not in r.json()
    else:
        assert (200, 1) == (r.status_code, len(r.json()["messageConversations"]))


def test_malformed_path_uid(emulator):
    """2.43 (0057d9bdf6c) types the path uid as UID: a malformed one is a 400."""
    r = _get(emulator, f"{MC}/1bcdefghijk")
    assert (400 if at_least(emulator, "2.43") else 200 if at_least(emulator, "2.39") else 404) == (
        r.status_code
    )
    r = _call(emulator, "DELETE", f"{MC}/abc")
    assert (400 if at_least(emulator, "2.43") else 404) == r.status_code


def test_message_name_and_display_name(emulator):
    """2.43 (92494b04526): Message has no name and an empty displayName."""
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s", text="Hi")
    r = _get(emulator, f"{MC}/{uid}", params={"fields": "messages[name,displayName,text]"})
    message = r.json()["messages"][0]
    if at_least(emulator, "2.43"):
        assert {"displayName": "", "text": "Hi"} == message
    else:
        assert {"name": "Hi", "displayName": "Hi", "text": "Hi"} == message


def test_gist_answers_query_lists_on_master(emulator):
    """master: with query= there is no pre-query filter, so GistBridge may answer."""
    emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    r = _get(emulator, MC, params={"query": "", "fields": "id,subject"})
    assert 200 == r.status_code
    assert at_least(emulator, "2.44") == ("gist" in r.json())
    r = _get(emulator, MC, params={"fields": "id,subject"})
    assert "gist" not in r.json()


def test_forwarding_defaults(emulator):
    """E-mail/SMS forwarding is on by default up to 2.41 and off from 2.42 (6e7d208e02b)."""
    assert (not at_least(emulator, "2.42")) == emulator.forwards_by_default
    uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
    if at_least(emulator, "2.42"):
        assert [] == emulator.forwarded
        emulator.forwarding["alice"] = emulator.forwarding["admin"] = True
        r = _call(
            emulator,
            "POST",
            f"{MC}/{uid}",
            "alice",
            data=b"r",
            headers={"Content-Type": "text/plain"},
        )
        assert 201 == r.status_code
        assert {("alice", uid), ("admin", uid)} == set(emulator.forwarded)  # the sender too
    else:
        assert [("alice", uid)] == emulator.forwarded


def test_root_junction_or_lifts_the_inbox(emulator):
    """2.42+: the inbox restriction is one more filter, which rootJunction=OR ORs away."""
    mine = emulator.add_conversation(sender="admin", recipients=["alice"], subject="mine")
    other = emulator.add_conversation(sender="admin", recipients=["bob"], subject="other")
    params = {"filter": "subject:eq:other", "rootJunction": "OR", "fields": "id"}
    found = {
        c["id"]
        for c in _get(emulator, MC, user="alice", params=params).json()["messageConversations"]
    }
    # up to 2.41 the filters only narrow the caller's own conversations
    assert ({mine, other} if at_least(emulator, "2.42") else set()) == found


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

"""The emulator itself, checked over real sockets with plain ``requests``.

These pin the DHIS2 wire quirks the emulator reproduces, so that the client's
tests stand on a known floor.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
import socket
import subprocess
import sys
import time
from http import HTTPStatus

import pytest
import requests

from tests.conftest import API as MC
from tests.conftest import RawClient, standalone_demo
from tests.emulator import (
    ADMIN,
    ALICE,
    BO_DISTRICT,
    BOB,
    CAROL,
    DAVE,
    REPORTERS,
    Emulator,
)

UID = re.compile(r"^[a-zA-Z][a-zA-Z0-9]{10}$")
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")


@pytest.fixture(scope="module")
def server():
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server):
    server.reset()
    yield server
    assert [] == server.errors, "the emulator hit a bug:\n" + "\n".join(server.errors)


@pytest.fixture
def call(emu):
    """call(method, path, user="admin", **requests_kwargs) -> requests.Response."""
    with RawClient(emu) as raw:
        yield raw


def send(call, user="admin", **body):
    """Create a conversation over HTTP; returns its uid (from Location)."""
    body.setdefault("subject", "Subject")
    body.setdefault("text", "Text")
    r = call("POST", MC, user, json=body)
    assert 201 == r.status_code, r.text
    return r.headers["Location"].rsplit("/", 1)[1]


def wm(status, message=None, error_code=None, overall="ERROR"):
    body = {"httpStatus": HTTPStatus(status).phrase, "httpStatusCode": status, "status": overall}
    if message is not None:
        body["message"] = message
    if error_code is not None:
        body["errorCode"] = error_code
    return body


# -- authentication -----------------------------------------------------------


class TestAuth:
    def test_basic_and_token(self, emu, call):
        assert 200 == call("GET", MC).status_code
        token = emu.user("alice").token
        assert re.match(r"^d2p_[A-Za-z0-9]{44}[A-Za-z0-9]{4,6}$", token)
        r = requests.get(emu.url + MC, headers={"Authorization": "apitoken " + token})
        assert 200 == r.status_code
        assert "alice" == emu.log[-1].user

    def test_wrong_basic_credentials(self, emu):
        r = requests.get(emu.url + MC, auth=("alice", "nope"), allow_redirects=False)
        assert 401 == r.status_code
        assert {
            "httpStatus": "Unauthorized",
            "httpStatusCode": 401,
            "status": "ERROR",
            "message": "Unauthorized",
        } == r.json()
        assert r.text.startswith('{"httpStatus":"Unauthorized","httpStatusCode":401,')

    def test_no_credentials_redirects_to_login(self, emu):
        r = requests.get(emu.url + MC, allow_redirects=False)
        assert 302 == r.status_code
        assert emu.url + "/login/" == r.headers["Location"]
        assert b"" == r.content

    def test_no_credentials_with_xhr_header_is_401(self, emu):
        r = requests.get(emu.url + MC, headers={"X-Requested-With": "XMLHttpRequest"})
        assert 401 == r.status_code
        assert "Unauthorized" == r.json()["message"]

    def test_bad_tokens(self, emu):
        r = requests.get(emu.url + MC, headers={"Authorization": "ApiToken not,valid"})
        assert (400, "Api token is malformed") == (r.status_code, r.json()["message"])
        r = requests.get(emu.url + MC, headers={"Authorization": "ApiToken d2p_unknown"})
        assert (401, "The API token does not exists") == (r.status_code, r.json()["message"])
        assert "ApiToken" == r.headers["WWW-Authenticate"]

    def test_session_cookie(self, emu):
        r = requests.get(emu.url + MC, auth=("bob", "District1#"))
        cookie = r.cookies["JSESSIONID"]
        r = requests.get(emu.url + MC, cookies={"JSESSIONID": cookie}, allow_redirects=False)
        assert 200 == r.status_code
        assert "bob" == emu.log[-1].user

    def test_versioned_path_and_unknown_paths(self, emu, call):
        uid = send(call, users=[{"id": ALICE}])
        r = call(
            "POST",
            "/api/41/messageConversations",
            json={"subject": "s", "text": "t", "users": [{"id": BOB}]},
        )
        assert r.headers["Location"].startswith(emu.url + "/api/41/messageConversations/")
        assert uid == call("GET", f"/api/42/messageConversations/{uid}").json()["id"]
        for path in ("/api/nothingHere", "/api/99/messageConversations", f"{MC}/{uid}/nope"):
            r = call("GET", path)
            assert 404 == r.status_code
            assert r.headers["Content-Type"].startswith("text/html")


# -- listing --------------------------------------------------------------------


class TestList:
    def test_default_fields_order_and_inbox(self, emu, call):
        uids = [send(call, subject=f"S{i}", users=[{"id": ALICE}]) for i in range(3)]
        send(call, subject="Not for alice", users=[{"id": BOB}])
        r = call("GET", MC, "alice")
        assert "application/json;charset=UTF-8" == r.headers["Content-Type"]
        body = r.json()
        assert {"page": 1, "total": 3, "pageSize": 50, "pageCount": 1} == body["pager"]
        assert sorted(uids) == [c["id"] for c in body["messageConversations"]]  # by uid, not date
        assert {"id", "displayName"} == set(body["messageConversations"][0])

    def test_pager_links(self, emu, call):
        emu.add_conversations(7, sender="admin", recipients=["alice"])
        r = call("GET", MC, "alice", params={"pageSize": 3, "page": 2, "fields": "id,subject"})
        pager = r.json()["pager"]
        base = emu.url + MC
        assert {
            "page": 2,
            "total": 7,
            "pageSize": 3,
            "pageCount": 3,
            "nextPage": base + "?page=3&pageSize=3&fields=id%2Csubject",
            "prevPage": base + "?pageSize=3&fields=id%2Csubject",
        } == pager
        assert list(pager) == ["page", "total", "pageSize", "nextPage", "prevPage", "pageCount"]
        assert 3 == len(r.json()["messageConversations"])
        last = call("GET", MC, "alice", params={"page": 99}).json()["pager"]
        assert (1, 1) == (last["page"], last["pageCount"])
        assert "nextPage" not in last and "prevPage" not in last

    def test_paging_false(self, emu, call):
        emu.add_conversations(60, sender="admin", recipients=["alice"])
        body = call("GET", MC, "alice", params={"paging": "false"}).json()
        assert ["messageConversations"] == list(body)
        assert 60 == len(body["messageConversations"])

    def test_fields_selector(self, emu, call):
        uid = emu.add_conversation(
            sender="admin", recipients=["alice"], subject="Stock", text="ACT?"
        )
        fields = (
            "id,subject,read,lastSender[id,displayName],messages[text,sender[username]],nonsense"
        )
        conv = call("GET", MC, "alice", params={"fields": fields}).json()["messageConversations"][0]
        assert {
            "id": uid,
            "subject": "Stock",
            "read": False,
            "lastSender": {"id": ADMIN, "displayName": "John Traore"},
            "messages": [{"text": "ACT?", "sender": {"username": "admin"}}],
        } == conv
        star = call("GET", MC, "alice", params={"fields": "*"}).json()["messageConversations"][0]
        assert {"id": ADMIN} == star["lastSender"]
        assert DATE.match(star["lastMessage"])

    def test_filters(self, emu, call):
        a = emu.add_conversation(sender="admin", recipients=["alice"], subject="Malaria stock")
        b = emu.add_conversation(
            sender="bob", recipients=["alice"], subject="Measles", priority="HIGH"
        )
        t = emu.add_conversation(
            sender="alice", recipients=["carol"], subject="Help", message_type="TICKET"
        )

        def ids(*filters, **extra):
            r = call("GET", MC, "alice", params={"filter": list(filters), "fields": "id", **extra})
            assert 200 == r.status_code, r.text
            return sorted(c["id"] for c in r.json()["messageConversations"])

        assert sorted([a, b]) == ids("read:eq:false")
        assert [t] == ids("messageType:eq:TICKET")
        assert [b] == ids("priority:in:[HIGH,LOW]")
        assert [a] == ids("subject:ilike:malaria")
        assert [] == ids("subject:like:malaria")
        assert [b] == ids(f"lastSender.id:eq:{BOB}")
        assert sorted([a, b, t]) == ids("assignee.id:null")
        # On 2.42 rootJunction=OR also ORs the inbox restriction away (see test_versions.py).
        assert {a, t} <= set(ids("priority:eq:NONE", "read:eq:true", rootJunction="OR"))
        r = call("GET", MC, "alice", params={"filter": "bogus:eq:1"})
        assert 400 == r.status_code
        assert wm(400, "Unknown path property: bogus", "E1003") == r.json()

    def test_order(self, emu, call):
        first = emu.add_conversation(sender="admin", recipients=["alice"], subject="b")
        second = emu.add_conversation(sender="admin", recipients=["alice"], subject="A")
        emu.add_conversation(sender="admin", recipients=["alice"], subject="c")

        def ids(order):
            return [
                c["id"]
                for c in call("GET", MC, "alice", params={"order": order}).json()[
                    "messageConversations"
                ]
            ]

        assert second == ids("lastMessage:desc")[1]
        assert first == ids("lastMessage:asc")[0]
        subjects = [
            c["displayName"]
            for c in call("GET", MC, "alice", params={"order": "subject:iasc"}).json()[
                "messageConversations"
            ]
        ]
        assert ["A", "b", "c"] == subjects

    def test_query_string_tokens(self, emu, call):
        hit = emu.add_conversation(
            sender="admin",
            recipients=["alice"],
            subject="Monthly malaria report",
            text="Please send the figures",
        )
        emu.add_conversation(
            sender="bob", recipients=["alice"], subject="Other", text="Nothing here"
        )

        def ids(q):
            r = call("GET", MC, "alice", params={"queryString": q})
            return [c["id"] for c in r.json()["messageConversations"]]

        assert [hit] == ids("mal rep")  # every word is a prefix of some word
        assert [hit] == ids("FIGURES")
        assert [hit] == ids("john")  # the sender's display name
        assert [] == ids("alaria")

    def test_query_parameter_lifts_the_inbox_restriction(self, emu, call):
        mine = emu.add_conversation(sender="admin", recipients=["alice"], subject="mine")
        theirs = emu.add_conversation(sender="bob", recipients=["carol"], subject="theirs")
        assert [mine] == [c["id"] for c in call("GET", MC, "alice").json()["messageConversations"]]
        listed = call("GET", MC, "alice", params={"query": "", "fields": "id,read"}).json()[
            "messageConversations"
        ]
        assert sorted([mine, theirs]) == sorted(c["id"] for c in listed)
        assert all(c["read"] is False for c in listed)

    def test_list_shows_only_the_callers_participation(self, emu, call):
        emu.add_conversation(sender="admin", recipients=["alice", "bob"], subject="s")
        fields = {"fields": "userMessages[user[username]]"}
        listed = call("GET", MC, "alice", params=fields).json()["messageConversations"][0]
        # DHIS2's fixed UserDto, whatever sub-fields are asked (DHIS2-21856)
        alice = {"id": ALICE, "name": "Alice Banda", "displayName": "Alice Banda"}
        assert [{"user": {**alice, "username": "alice"}}] == listed["userMessages"]
        everyone = call("GET", MC, "alice", params={"query": "", **fields}).json()[
            "messageConversations"
        ][0]
        assert 3 == len(everyone["userMessages"])

    def test_internal_messages_show_in_the_list_only(self, emu, call):
        uid = emu.add_conversation(
            sender="alice", recipients=["carol"], subject="t", message_type="TICKET"
        )
        r = call("POST", f"{MC}/{uid}", "carol", params={"internal": "true"}, data="internal note")
        assert 201 == r.status_code
        listed = call("GET", MC, "alice", params={"fields": "messages[text]"}).json()[
            "messageConversations"
        ][0]
        assert ["Hello", "internal note"] == [m["text"] for m in listed["messages"]]
        single = call(
            "GET", f"{MC}/{uid}", "alice", params={"fields": "messageCount,messages[text]"}
        ).json()
        assert {"messageCount": 1, "messages": [{"text": "Hello"}]} == single


# -- one conversation -----------------------------------------------------------


class TestGet:
    def test_unknown_uid_is_200_with_a_bare_message(self, call):
        r = call("GET", f"{MC}/Zz0000000Zz")
        assert 200 == r.status_code
        assert {"message": "No MessageConversation found with UID: Zz0000000Zz"} == r.json()

    def test_default_fields_give_message_ids_only(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s", replies=1)
        body = call("GET", f"{MC}/{uid}", "alice").json()
        assert [set(m) for m in body["messages"]] == [{"id"}, {"id"}]
        assert {"id": ADMIN} == body["lastSender"]
        assert 2 == body["messageCount"]
        users = {um["user"]["username"]: um for um in body["userMessages"]}
        assert {
            "id": ALICE,
            "name": "Alice Banda",
            "displayName": "Alice Banda",
            "username": "alice",
        } == users["alice"]["user"]
        assert (True, False) == (users["admin"]["read"], users["alice"]["read"])

    def test_not_a_participant(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        r = call("GET", f"{MC}/{uid}", "dave")
        assert 403 == r.status_code
        assert wm(403, "Not authorized to access this conversation.", "E1006") == r.json()
        assert 200 == call("GET", f"{MC}/{uid}", "admin").status_code  # ALL may read anything

    def test_mark_read_answers_the_old_value(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        before = emu.conversations[uid].last_updated
        assert (
            False
            is call(
                "GET", f"{MC}/{uid}", "alice", params={"markRead": "TRUE", "fields": "read"}
            ).json()["read"]
        )
        assert False is emu.conversations[uid].participants["alice"].read  # only "true" counts
        assert (
            False
            is call(
                "GET", f"{MC}/{uid}", "alice", params={"markRead": "true", "fields": "read"}
            ).json()["read"]
        )
        assert True is emu.conversations[uid].participants["alice"].read
        assert emu.conversations[uid].last_updated > before


# -- creating -------------------------------------------------------------------


class TestCreate:
    def test_created(self, emu, call):
        r = call(
            "POST",
            MC,
            json={"subject": "Mortality", "text": "Reported?", "users": [{"id": ALICE}]},
            headers={"User-Agent": "probe/1.0"},
        )
        assert 201 == r.status_code
        assert wm(201, "Message conversation created", overall="OK") == r.json()
        location = r.headers["Location"]
        assert location.startswith(emu.url + MC + "/")
        uid = location.rsplit("/", 1)[1]
        assert UID.match(uid)
        conv = emu.conversations[uid]
        assert ("PRIVATE", "NONE", "NONE") == (conv.message_type, conv.status, conv.priority)
        assert {"admin": True, "alice": False} == {n: p.read for n, p in conv.participants.items()}
        assert "User-agent: probe/1.0" == conv.messages[0].meta_data

    def test_groups_and_org_units_expand(self, emu, call):
        uid = send(call, userGroups=[{"id": REPORTERS}], organisationUnits=[{"id": BO_DISTRICT}])
        assert {"admin", "alice", "bob", "dave"} == set(emu.conversations[uid].participants)

    @pytest.mark.parametrize(
        "key, java",
        [
            ("users", "org.hisp.dhis.user.User"),
            ("attachments", "org.hisp.dhis.fileresource.FileResource"),
        ],
    )
    def test_bare_string_ids_are_a_jackson_409(self, call, key, java):
        body = {"subject": "s", "text": "t", "users": [{"id": ALICE}]}
        body[key] = ["fTpI4GOmujz"]
        r = call("POST", MC, json=body)
        assert 409 == r.status_code
        message = r.json()["message"]
        assert message.startswith(
            f"Cannot construct instance of `{java}` (although at least one Creator exists): "
            "no String-argument constructor/factory method to deserialize from String "
            "value ('fTpI4GOmujz')"
        )
        assert "errorCode" not in r.json()

    def test_recipient_error_order(self, call):
        def error(**body):
            r = call("POST", MC, json={"subject": "s", "text": "t", **body})
            return r.status_code, r.json()["message"], r.json().get("errorCode")

        everything_wrong = {
            "users": [{"id": "nobody00000"}],
            "userGroups": [{"id": "nogroup0000"}],
            "organisationUnits": [{"id": "noorgunit00"}],
        }
        assert (409, "Organisation Unit does not exist: noorgunit00", "E1004") == error(
            **everything_wrong
        )
        del everything_wrong["organisationUnits"]
        assert (409, "User does not exist: nobody00000", "E1004") == error(**everything_wrong)
        del everything_wrong["users"]
        assert (404, "UserGroup with id nogroup0000 could not be found.", "E1005") == error(
            **everything_wrong
        )
        assert (409, "No recipients selected.", "E1004") == error(
            users=[], attachments=[{"id": "nofile00000"}]
        )
        assert (409, "Attachment 'nofile00000' not found.", "E1004") == error(
            users=[{"id": ALICE}], attachments=[{"id": "nofile00000"}]
        )

    def test_content_type_must_be_json(self, call):
        r = call("POST", MC, data='{"subject":"s"}', headers={"Content-Type": "text/plain"})
        assert 415 == r.status_code
        assert "ERROR" == r.json()["status"]

    def test_malformed_json_is_409(self, call):
        r = call("POST", MC, data="{nope", headers={"Content-Type": "application/json"})
        assert 409 == r.status_code
        assert r.json()["message"].startswith("Unexpected character")


class TestReply:
    def test_body_is_stored_verbatim(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice", "bob"], subject="s")
        emu.conversations[uid].participants["bob"].read = True
        r = call(
            "POST",
            f"{MC}/{uid}",
            "alice",
            data='{"text":"hi"}',
            headers={"Content-Type": "application/json"},
        )
        assert 201 == r.status_code
        assert wm(201, "Message conversation created", overall="OK") == r.json()
        assert emu.url + f"{MC}/{uid}" == r.headers["Location"]
        conv = emu.conversations[uid]
        assert '{"text":"hi"}' == conv.messages[-1].text
        assert (ALICE, 2) == (conv.last_sender.uid, conv.message_count)
        # others become unread; the replier's own flag is left as it was
        assert {"admin": False, "alice": False, "bob": False} == {
            n: p.read for n, p in conv.participants.items()
        }

    def test_errors_in_order(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        r = call("POST", f"{MC}/xyz", "alice", data="The message")
        assert wm(404, "Message conversation does not exist: xyz") == r.json()
        r = call("POST", f"{MC}/{uid}", "dave", data="x", params={"internal": "true"})
        assert wm(403, "Not authorized to send internal messages", "E1006") == r.json()
        r = call("POST", f"{MC}/{uid}", "dave", data="x")
        assert wm(403, "Not authorized to send messages to this conversation.", "E1006") == r.json()
        r = call("POST", f"{MC}/{uid}", "alice", data="x", params={"attachments": "xyz"})
        assert wm(409, "Attachment 'xyz' not found.") == r.json()
        r = call("POST", f"{MC}/{uid}", "alice", data=b"", headers={"Content-Type": "text/plain"})
        assert 400 == r.status_code
        assert 1 == len(emu.conversations[uid].messages)

    def test_removed_upload_endpoint_falls_into_reply(self, call):
        r = call("POST", f"{MC}/attachments", files={"file": ("a.txt", b"abc")})
        assert wm(404, "Message conversation does not exist: attachments") == r.json()

    def test_feedback(self, emu, call):
        r = call(
            "POST", f"{MC}/feedback", "dave", params={"subject": "Broken form"}, data="It crashes"
        )
        assert 201 == r.status_code
        assert wm(201, "Feedback created", overall="OK") == r.json()
        conv = emu.conversations[r.headers["Location"].rsplit("/", 1)[1]]
        assert ("TICKET", "OPEN", "It crashes") == (
            conv.message_type,
            conv.status,
            conv.messages[0].text,
        )
        assert {"dave": True, "carol": False} == {n: p.read for n, p in conv.participants.items()}
        r = call("POST", f"{MC}/feedback", "dave", data="no subject")
        assert 400 == r.status_code
        assert r.headers["Content-Type"].startswith("text/html")
        assert "subject" in r.text


# -- changing ---------------------------------------------------------------------


class TestChanges:
    def test_read_and_unread_list_only_changed(self, emu, call):
        a = emu.add_conversation(sender="admin", recipients=["alice"], subject="a")
        b = emu.add_conversation(sender="admin", recipients=["alice"], subject="b")
        emu.conversations[b].participants["alice"].read = True
        r = call("POST", f"{MC}/read", "alice", json=[a, b, "Zz0000000Zz"])
        assert (200, {"markedRead": [a]}) == (r.status_code, r.json())
        assert {"markedUnread": [a, b]} == call("POST", f"{MC}/unread", "alice", json=[a, b]).json()
        r = call("POST", f"{MC}/read", "alice", json=["Zz0000000Zz"])
        assert (404, {"message": "No MessageConversations found for the given IDs."}) == (
            r.status_code,
            r.json(),
        )
        r = call("POST", f"{MC}/read", "alice", json=[a], params={"user": "Zz0000000Zz"})
        assert {"message": "No user with uid: Zz0000000Zz"} == r.json()
        r = call("POST", f"{MC}/{a}/read", "admin", params={"userUid": ALICE})
        assert {"markedRead": [a]} == r.json()
        assert True is emu.conversations[a].participants["alice"].read

    def test_bulk_is_all_or_nothing(self, emu, call):
        mine = emu.add_conversation(sender="admin", recipients=["dave"], subject="mine")
        other = emu.add_conversation(sender="admin", recipients=["alice"], subject="other")
        r = call("POST", f"{MC}/read", "dave", json=[mine, other])
        assert (
            wm(403, "Not authorized to change read property of this conversation.", "E1006")
            == r.json()
        )
        assert False is emu.conversations[mine].participants["dave"].read

    def test_followup_lists_all_found(self, emu, call):
        a = emu.add_conversation(sender="admin", recipients=["alice"], subject="a")
        b = emu.add_conversation(sender="admin", recipients=["alice"], subject="b")
        emu.conversations[b].participants["alice"].follow_up = True
        assert {"markedFollowup": [a, b]} == call(
            "POST", f"{MC}/followup", "alice", json=[a, b]
        ).json()
        assert {"unmarkedFollowup": [a]} == call(
            "POST", f"{MC}/unfollowup", "alice", json=[a]
        ).json()
        r = call("POST", f"{MC}/followup", "alice", json=["Zz0000000Zz"])
        assert {"message": "No MessageConversations found for the given UIDs"} == r.json()
        flags = call(
            "GET", MC, "alice", params={"fields": "id,followUp", "filter": "followUp:eq:true"}
        ).json()
        assert [{"id": b, "followUp": True}] == flags["messageConversations"]

    def test_status_and_priority(self, emu, call):
        uid = emu.add_conversation(
            sender="alice", recipients=["carol"], subject="t", message_type="TICKET"
        )
        r = call(
            "POST", f"{MC}/{uid}/status", "alice", params={"messageConversationStatus": "solved"}
        )
        assert (200, {"SOLVED": [uid]}) == (r.status_code, r.json())
        assert {"HIGH": [uid]} == call(
            "POST", f"{MC}/{uid}/priority", "alice", params={"messageConversationPriority": "HIGH"}
        ).json()
        assert ("SOLVED", "HIGH") == (
            emu.conversations[uid].status,
            emu.conversations[uid].priority,
        )
        r = call(
            "POST",
            "/api/messageConversations/Zz0000000Zz/status",
            params={"messageConversationStatus": "FOO"},
        )
        assert (
            wm(
                400,
                "Value 'FOO' is not valid for parameter messageConversationStatus. "
                "Valid values are: [NONE, OPEN, PENDING, INVALID, SOLVED]",
            )
            == r.json()
        )
        r = call(
            "POST", f"{MC}/Zz0000000Zz/priority", params={"messageConversationPriority": "low"}
        )
        assert (404, {"message": "No MessageConversation found for the given ID."}) == (
            r.status_code,
            r.json(),
        )
        r = call("POST", f"{MC}/{uid}/status", "dave", params={"messageConversationStatus": "OPEN"})
        assert wm(403, "Not authorized to change status in this conversation.", "E1006") == r.json()
        # a feedback manager may change a ticket without taking part in it
        uid2 = emu.add_conversation(
            sender="alice", recipients=["bob"], subject="t2", message_type="TICKET"
        )
        assert (
            200
            == call(
                "POST", f"{MC}/{uid2}/status", "carol", params={"messageConversationStatus": "OPEN"}
            ).status_code
        )

    def test_assign(self, emu, call):
        ticket = emu.add_conversation(
            sender="alice", recipients=["carol"], subject="t", message_type="TICKET"
        )
        r = call("POST", f"{MC}/{ticket}/assign", "carol", params={"userId": BOB})
        assert (
            409,
            {"message": "User provided is not a member of the system's feedback recipient group"},
        ) == (r.status_code, r.json())
        r = call("POST", f"{MC}/{ticket}/assign", "carol", params={"userId": CAROL})
        assert {"message": "User Carol Osei was assigned successfully"} == r.json()
        assert CAROL == call("GET", f"{MC}/{ticket}", "carol").json()["assignee"]["id"]
        r = call("POST", f"{MC}/{ticket}/assign", "carol", params={"userId": "Zz0000000Zz"})
        assert (404, {"message": "Could not find user to assign"}) == (r.status_code, r.json())
        assert {"message": "Message is no longer assigned to user"} == call(
            "DELETE", f"{MC}/{ticket}/assign", "carol"
        ).json()
        assert emu.conversations[ticket].assignee is None

    def test_add_recipients(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        r = call("POST", f"{MC}/{uid}/recipients", json={"users": [{"id": DAVE}]})
        assert (204, b"") == (r.status_code, r.content)
        assert False is emu.conversations[uid].participants["dave"].read
        r = call("POST", f"{MC}/{uid}/recipients", "bob", json={})
        assert (
            wm(403, "Not authorized to change recipients in this conversation.", "E1006")
            == r.json()
        )


class TestDelete:
    def test_batch_soft_delete(self, emu, call):
        a = emu.add_conversation(sender="admin", recipients=["alice"], subject="a")
        b = emu.add_conversation(sender="admin", recipients=["alice"], subject="b")
        r = call("DELETE", MC, "alice", params={"mc": [a, f"{b},Zz0000000Zz"]})
        assert (200, {"removed": [a, b]}) == (r.status_code, r.json())
        assert [] == call("GET", MC, "alice").json()["messageConversations"]
        assert 2 == len(
            call("GET", MC, "admin").json()["messageConversations"]
        )  # others still see them
        r = call("DELETE", MC, "alice", params={"mc": a})
        assert (
            wm(403, "Not authorized to remove assigned users to this conversation.", "E1006")
            == r.json()
        )
        r = call("DELETE", MC, "admin", params={"mc": a, "user": ALICE})
        assert {"removed": []} == r.json()
        r = call("DELETE", MC, "admin", params={"mc": "Zz0000000Zz"})
        assert {"message": "No MessageConversations found for the given UIDs."} == r.json()
        r = call("DELETE", MC, "admin")
        assert (400, True) == (r.status_code, r.headers["Content-Type"].startswith("text/html"))

    def test_remove_one_participant(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice", "bob"], subject="s")
        r = call("DELETE", f"{MC}/{uid}/{BOB}", "alice")
        assert (200, {"removed": [uid]}) == (r.status_code, r.json())
        assert {"admin", "alice"} == set(emu.conversations[uid].participants)
        assert {"message": "No user with uid: Zz0000000Zz"} == call(
            "DELETE", f"{MC}/{uid}/Zz0000000Zz"
        ).json()
        assert {"message": "No messageConversation with uid: Zz0000000Zz"} == call(
            "DELETE", f"{MC}/Zz0000000Zz/{BOB}"
        ).json()
        # with a JSON content type the generic collection endpoint answers instead
        r = call("DELETE", f"{MC}/{uid}/{ALICE}", json={})
        assert 404 == r.status_code
        assert "does not exist on org.hisp.dhis.message.MessageConversation" in r.json()["message"]
        assert "alice" in emu.conversations[uid].participants

    def test_hard_delete(self, emu, call):
        uid = emu.add_conversation(sender="alice", recipients=["bob"], subject="s")
        r = call("DELETE", f"{MC}/{uid}", "alice")
        assert (
            wm(403, "Access is denied, requires one Authority from [F_METADATA_IMPORT]") == r.json()
        )
        r = call("DELETE", f"{MC}/{uid}", "admin")
        assert {
            "httpStatus": "OK",
            "httpStatusCode": 200,
            "status": "OK",
            "response": {
                "responseType": "ObjectReport",
                "klass": "org.hisp.dhis.message.MessageConversation",
                "uid": uid,
                "errorReports": [],
            },
        } == r.json()
        assert uid not in emu.conversations
        r = call("DELETE", f"{MC}/{uid}", "admin")
        assert wm(404, f"Message conversation does not exist: {uid}") == r.json()


# -- attachments ------------------------------------------------------------------


class TestAttachments:
    def upload(self, call, data, user="alice", name="report.pdf", domain="MESSAGE_ATTACHMENT"):
        params = {"domain": domain} if domain else {}
        return call(
            "POST",
            "/api/fileResources",
            user,
            params=params,
            files={"file": (name, data, "application/pdf")},
        )

    def test_upload_attach_once_download(self, emu, call):
        data = bytes(range(256)) * 10
        r = self.upload(call, data)
        assert 202 == r.status_code
        body = r.json()
        assert ("Accepted", "OK", "FileResource") == (
            body["httpStatus"],
            body["status"],
            body["response"]["responseType"],
        )
        fr = body["response"]["fileResource"]
        assert ("report.pdf", "application/pdf", 2560, "MESSAGE_ATTACHMENT", False) == (
            fr["name"],
            fr["contentType"],
            fr["contentLength"],
            fr["domain"],
            fr["assigned"],
        )
        file_uid = fr["id"]
        uid = send(call, "alice", users=[{"id": BOB}], attachments=[{"id": file_uid}])
        assert emu.files[file_uid].assigned
        r = call(
            "POST",
            MC,
            "alice",
            json={
                "subject": "s",
                "text": "t",
                "users": [{"id": BOB}],
                "attachments": [{"id": file_uid}],
            },
        )
        assert (
            wm(409, f"Attachment '{file_uid}' is already used or not a valid attachment.", "E1004")
            == r.json()
        )
        msg = call(
            "GET", f"{MC}/{uid}", "bob", params={"fields": "messages[id,attachments[id,name]]"}
        ).json()
        message = msg["messages"][0]
        assert [{"id": file_uid, "name": "report.pdf"}] == message["attachments"]
        r = call("GET", f"{MC}/{uid}/{message['id']}/attachments/{file_uid}", "bob")
        assert (200, data) == (r.status_code, r.content)
        assert "application/pdf" == r.headers["Content-Type"]
        assert "filename=report.pdf" == r.headers["Content-Disposition"]
        assert str(len(data)) == r.headers["Content-Length"]

    def test_download_errors(self, emu, call):
        uid = emu.add_conversation(
            sender="alice", recipients=["carol"], subject="t", message_type="TICKET"
        )
        f = emu.add_file(owner="carol", data=b"secret")
        assert (
            201
            == call(
                "POST",
                f"{MC}/{uid}",
                "carol",
                data="note",
                params={"internal": "true", "attachments": f},
            ).status_code
        )
        internal = emu.conversations[uid].messages[-1].uid
        path = f"{MC}/{uid}/{internal}/attachments/{f}"
        assert wm(409, "Not authorized to access this message") == call("GET", path, "admin").json()
        assert b"secret" == call("GET", path, "carol").content
        assert (
            wm(403, "Not authorized to access this conversation.", "E1006")
            == call("GET", path, "dave").json()
        )
        assert (
            wm(404, "No message conversation with uid 'Zz0000000Zz'")
            == call("GET", f"{MC}/Zz0000000Zz/{internal}/attachments/{f}", "carol").json()
        )
        assert (
            wm(404, f"No message with uid 'Zz0000000Zz' in messageConversation '{uid}")
            == call("GET", f"{MC}/{uid}/Zz0000000Zz/attachments/{f}", "carol").json()
        )
        assert (
            wm(404, "No messageattachment found with id 'Zz0000000Zz'")
            == call("GET", f"{MC}/{uid}/{internal}/attachments/Zz0000000Zz", "carol").json()
        )

    def test_upload_limits_and_domain(self, emu, call):
        r = self.upload(call, b"")
        assert wm(409, "Could not read file or file is empty.") == r.json()
        r = self.upload(call, b"x" * 10_000_001)
        assert (
            wm(409, "File size can't be bigger than 10000000, current file size 10000001")
            == r.json()
        )
        r = self.upload(call, b"data", domain=None)
        data_value = r.json()["response"]["fileResource"]
        assert "DATA_VALUE" == data_value["domain"]
        uid = emu.add_conversation(sender="alice", recipients=["bob"], subject="s")
        r = call("POST", f"{MC}/{uid}", "alice", data="x", params={"attachments": data_value["id"]})
        assert (
            wm(409, f"Attachment '{data_value['id']}' is already used or not a valid attachment.")
            == r.json()
        )
        assert (
            "MESSAGE_ATTACHMENT"
            == self.upload(call, b"d", domain="message_attachment").json()["response"][
                "fileResource"
            ]["domain"]
        )
        assert 400 == self.upload(call, b"d", domain="messageAttachment").status_code


# -- fault injection ----------------------------------------------------------------


class TestFaults:
    def test_status_body_and_headers(self, emu, call):
        emu.inject(
            method="GET",
            path=r"/messageConversations$",
            status=503,
            headers={"Retry-After": "1"},
            times=2,
        )
        for _ in range(2):
            r = call("GET", MC)
            assert (503, "1", b"") == (r.status_code, r.headers["Retry-After"], r.content)
        assert 200 == call("GET", MC).status_code
        emu.inject(
            path="feedback", status=502, body="<html>Bad gateway</html>", content_type="text/html"
        )
        r = call("POST", f"{MC}/feedback", params={"subject": "s"}, data="t")
        assert (502, "<html>Bad gateway</html>", "text/html") == (
            r.status_code,
            r.text,
            r.headers["Content-Type"],
        )
        assert [] == list(emu.conversations)  # the handler did not run

    def test_process_then_fail(self, emu, call):
        emu.inject(method="POST", path=r"/messageConversations$", status=502, process=True)
        r = call("POST", MC, json={"subject": "s", "text": "t", "users": [{"id": ALICE}]})
        assert 502 == r.status_code
        assert 1 == len(emu.conversations)  # created all the same

    def test_strip_headers(self, emu, call):
        emu.inject(method="POST", strip_headers=("Location",))
        r = call("POST", MC, json={"subject": "s", "text": "t", "users": [{"id": ALICE}]})
        assert 201 == r.status_code
        assert "Location" not in r.headers
        assert 1 == len(emu.conversations)

    def test_delay_and_a_server_that_never_answers(self, emu, call):
        emu.inject(delay=0.2)
        started = time.perf_counter()
        assert 200 == call("GET", MC).status_code
        assert time.perf_counter() - started >= 0.2
        emu.inject(delay=60)
        with pytest.raises(requests.exceptions.ReadTimeout):
            call("GET", MC, timeout=0.2)
        emu.reset()  # ends the waiting handler quietly
        assert 200 == call("GET", MC).status_code

    def test_drop(self, emu, call):
        emu.inject(drop=True, process=True)
        with pytest.raises(requests.exceptions.ConnectionError):
            call("POST", MC, json={"subject": "s", "text": "t", "users": [{"id": ALICE}]})
        assert 1 == len(emu.conversations)
        emu.inject(drop=True)
        with pytest.raises(requests.exceptions.ConnectionError):
            call("GET", MC)

    def test_truncate(self, emu, call):
        emu.add_conversations(20, sender="admin", recipients=["alice"])
        emu.inject(truncate=True)
        try:
            response = call("GET", MC, "alice", params={"fields": "*"})
        except requests.exceptions.RequestException:
            pass  # urllib3 2 checks Content-Length itself
        else:  # urllib3 1.26 hands over the short body
            assert len(response.content) < int(response.headers["Content-Length"])
        assert 200 == call("GET", MC, "alice").status_code

    def test_process_runs_the_handler_before_the_delay(self, emu, call):
        """process=True with a delay: the work is done at once, the answer comes late."""
        emu.inject(method="POST", delay=60, process=True)
        with pytest.raises(requests.exceptions.ReadTimeout):
            call(
                "POST",
                MC,
                json={"subject": "s", "text": "t", "users": [{"id": ALICE}]},
                timeout=0.5,
            )
        assert 1 == len(emu.conversations)
        emu.reset()  # ends the waiting handler quietly

    def test_commit_after_shows_the_work_later(self, emu, call):
        """A proxy's 504 before DHIS2 finished: the conversation appears as the third request
        after it arrives, before that request is answered."""
        emu.inject(method="POST", status=504, process=True, commit_after=3)
        body = {"subject": "Late", "text": "t", "users": [{"id": ALICE}]}
        assert 504 == call("POST", MC, json=body).status_code
        seen = [
            len(
                call("GET", MC, params={"filter": "subject:eq:Late"}).json()["messageConversations"]
            )
            for _ in range(4)
        ]
        assert [0, 0, 1, 1] == seen
        assert 1 == len(emu.conversations)

    def test_faults_are_logged_and_consumed_in_order(self, emu, call):
        emu.inject(path="nothing-matches-this", status=500)
        emu.inject(status=418)
        emu.inject(status=419)
        assert [418, 419, 200] == [call("GET", MC).status_code for _ in range(3)]
        assert 3 == len(emu.requests("GET", MC))


# -- the request log and the control API ------------------------------------------------


class TestLogAndControl:
    def test_request_log(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        call(
            "POST",
            f"{MC}/{uid}",
            "alice",
            params={"attachments": ["a", "b"], "internal": "false"},
            data="héllo".encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        entry = emu.log[-1]
        assert ("POST", f"{MC}/{uid}", "alice") == (entry.method, entry.path, entry.user)
        assert ["a", "b"] == entry.param("attachments")
        assert "attachments=a&attachments=b&internal=false" == entry.query
        assert "text/plain; charset=utf-8" == entry.headers["content-type"]
        assert "héllo".encode() == entry.body
        assert [entry] == emu.requests("POST", f"{MC}/{uid}")
        requests.get(emu.url + MC, allow_redirects=False)
        assert emu.log[-1].user is None
        emu.clear_log()
        assert [] == emu.log

    def test_control_api(self, emu):
        r = requests.post(
            emu.url + "/__emulator__/conversations",
            params={"n": 3, "sender": "admin", "recipients": "alice,bob", "messages": 2},
        )
        uids = r.json()
        assert 3 == len(uids) and all(UID.match(u) for u in uids)
        assert 2 == len(emu.conversations[uids[0]].messages)
        requests.get(emu.url + MC, auth=("bob", "District1#"))
        assert {"requests": 1} == requests.get(emu.url + "/__emulator__/stats").json()
        requests.post(emu.url + "/__emulator__/clear-log")
        assert {"requests": 0} == requests.get(emu.url + "/__emulator__/stats").json()
        requests.post(emu.url + "/__emulator__/reset")
        assert {} == emu.conversations

    def test_reset_is_deterministic(self, emu):
        first = emu.add_conversation(sender="admin", recipients=["alice"], subject="s")
        emu.reset()
        assert first == emu.add_conversation(sender="admin", recipients=["alice"], subject="s")

    def test_timestamps_strictly_increase(self, emu, call):
        uids = emu.add_conversations(50, sender="admin", recipients=["alice"])
        stamps = [emu.conversations[u].last_message for u in uids]
        assert stamps == sorted(set(stamps))
        listed = call(
            "GET",
            MC,
            "alice",
            params={"order": "lastMessage:desc", "fields": "id", "paging": "false"},
        )
        assert list(reversed(uids)) == [c["id"] for c in listed.json()["messageConversations"]]

    def test_bulk_setup_of_any_type_and_date(self, emu, call):
        """Old conversations of any type in bulk, for a script's own tests of date filters."""
        import datetime as dt

        start = dt.datetime(2024, 5, 1, 8, 0)
        tickets = emu.add_conversations(
            3,
            sender="alice",
            recipients=["carol"],
            message_type="ticket",
            created=start,
            messages=2,
        )
        notices = emu.add_conversations(
            2,
            sender=None,
            recipients=["carol"],
            message_type="VALIDATION_RESULT",
            priority="high",
        )
        listed = call(
            "GET",
            MC,
            "carol",
            params={
                "fields": "id,messageType,status,priority,created,lastMessage,messages[created]",
                "order": "created:asc",
                "paging": "false",
            },
        ).json()["messageConversations"]
        assert tickets + notices == [c["id"] for c in listed]
        assert [("TICKET", "OPEN", "NONE")] * 3 + [("VALIDATION_RESULT", "OPEN", "HIGH")] * 2 == [
            (c["messageType"], c["status"], c["priority"]) for c in listed
        ]
        assert [
            "2024-05-01T08:00:00.000",
            "2024-05-01T08:01:00.000",
            "2024-05-01T08:02:00.000",
        ] == [c["created"] for c in listed[:3]]
        assert ["2024-05-01T08:00:00.000", "2024-05-01T08:00:01.000"] == [
            m["created"] for m in listed[0]["messages"]
        ]
        assert "2024-05-01T08:00:01.000" == listed[0]["lastMessage"]
        before_june = call(
            "GET", MC, "carol", params={"filter": "lastMessage:lt:2024-06-01", "fields": "id"}
        ).json()["messageConversations"]
        assert sorted(tickets) == sorted(c["id"] for c in before_june)
        with pytest.raises(ValueError):
            emu.add_conversations(1, sender="alice", recipients=["bob"], message_type="MEMO")

    def test_me(self, emu, call):
        """MeController: the caller, through the field filter."""
        assert {"id": ALICE} == call("GET", "/api/me", "alice", params={"fields": "id"}).json()
        everything = call("GET", "/api/me", "bob").json()
        assert (BOB, "bob", "Bob Mensah") == (
            everything["id"],
            everything["username"],
            everything["displayName"],
        )

    def test_the_servers_clock_and_zone(self, emu, call):
        """The server's clock may be off from this machine's and its zone another: the Date
        header is its clock in GMT, dates are its local time without zone, and a filter date
        with a zone is an instant (DateUtils' Joda ``Z``); without one, local time."""
        emu.clock_offset, emu.utc_offset = 7200.0, 3 * 3600.0  # 2 h fast, UTC+3
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="Clock")
        r = call("GET", "/api/system/info")
        header = email.utils.parsedate_to_datetime(r.headers["Date"])
        assert abs(header.timestamp() - (time.time() + 7200)) < 5
        server_date = datetime.datetime.fromisoformat(r.json()["serverDate"])
        utc_now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        local_now = utc_now + datetime.timedelta(hours=5)
        assert abs((server_date - local_now).total_seconds()) < 5
        assert "Etc/GMT-3" == r.json()["serverTimeZoneId"]
        created = emu.conversations[uid].created
        utc = datetime.datetime(1970, 1, 1) + datetime.timedelta(
            milliseconds=created - 3 * 3600_000
        )

        def found(value):
            params = {"filter": f"created:ge:{value}", "fields": "id"}
            return [c["id"] for c in call("GET", MC, params=params).json()["messageConversations"]]

        def text(when, zone=""):
            return when.isoformat(timespec="milliseconds") + zone

        one_ms = datetime.timedelta(milliseconds=1)
        assert [uid] == found(text(utc, "Z")) == found(text(utc, "+00:00"))
        assert [] == found(text(utc + one_ms, "Z"))
        assert [uid] == found(text(utc + datetime.timedelta(hours=3), "+0300"))
        local = utc + datetime.timedelta(hours=3)  # without a zone: the server's local time
        assert ([uid], []) == (found(text(local)), found(text(local + one_ms)))

    def test_backdate(self, emu, call):
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="Old", replies=1)
        conv = emu.conversations[uid]
        before = [conv.created, conv.last_message] + [m.created for m in conv.messages]
        emu.backdate(uid, 60)
        after = [conv.created, conv.last_message] + [m.created for m in conv.messages]
        assert [c - 60_000 for c in before] == after

    def test_bulk_setup(self, emu):
        """20,000 conversations at once, as the benchmark's walks need (their time is the bench's)."""
        emu.add_conversations(20_000, sender="admin", recipients=["alice"])
        assert 20_000 == len(emu.conversations)


def test_command_line_demo_server():
    with standalone_demo() as lines:
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        table = lines[1:7]
        assert "d2p_" in table[2] and "alice" in table[2]
        r = requests.get(
            url + MC, auth=("alice", "District1#"), params={"fields": "subject"}, timeout=5
        )
        assert 6 == r.json()["pager"]["total"]


def test_the_demo_world_has_every_type_and_tickets_in_every_status():
    """--demo: a few dozen conversations over the past month, all of which the admin
    takes part in (the command line's demo user): every type, every ticket status."""
    import collections

    emu = Emulator()
    emu.seed_demo()
    with emu:
        convs = requests.get(
            emu.url + MC,
            auth=("admin", "district"),
            params={
                "fields": "id,messageType,status,created,messages[internal]",
                "paging": "false",
            },
            timeout=5,
        ).json()["messageConversations"]
    kinds = collections.Counter(c["messageType"] for c in convs)
    assert {"PRIVATE", "TICKET", "VALIDATION_RESULT", "SYSTEM"} == set(kinds)
    assert len(convs) >= 30 and min(kinds.values()) >= 5
    assert {"NONE", "OPEN", "PENDING", "INVALID", "SOLVED"} == {
        c["status"] for c in convs if c["messageType"] == "TICKET"
    }
    assert any(m["internal"] for c in convs for m in c["messages"])  # a note to the team
    days = {c["created"][:10] for c in convs}
    assert len(days) >= 10  # spread over weeks, for the date filters
    assert [] == emu.errors


def test_demo_prints_a_ready_export_line():
    """--demo ends with the line that points the command line at it; the line works."""
    with standalone_demo() as lines:
        (export,) = [line for line in lines if line.startswith("export ")]
        env = dict(item.split("=", 1) for item in export.split()[1:])
        assert {"DHIS2_URL", "DHIS2_TOKEN"} == set(env)
        r = requests.get(
            env["DHIS2_URL"] + MC,
            headers={"Authorization": f"ApiToken {env['DHIS2_TOKEN']}"},
            params={"fields": "subject"},
            timeout=5,
        )
        assert 200 == r.status_code


def test_a_busy_port_is_one_line_and_exit_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "tests.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert 1 == r.returncode and "" == r.stdout
    (line,) = r.stderr.splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_refuses_a_public_address():
    r = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert 2 == r.returncode
    assert "loopback" in r.stderr


def test_json_is_compact_and_without_nulls(server):
    server.reset()
    uid = server.add_conversation(sender=None, recipients=["alice"], subject="System notice")
    r = requests.get(f"{server.url}{MC}/{uid}", auth=("alice", "District1#"))
    assert ": " not in r.text and ", " not in r.text
    body = json.loads(r.text)
    assert "lastSender" not in body and "assignee" not in body
    assert (
        "sender"
        not in json.loads(
            requests.get(
                f"{server.url}{MC}/{uid}",
                auth=("alice", "District1#"),
                params={"fields": "messages[*]"},
            ).text
        )["messages"][0]
    )


class TestTomcatHeadLimit:
    """Tomcat's maxHttpHeaderSize (every release): request line plus header lines, up to
    and with the blank line, in at most 8,192 bytes; one more is its 400 page."""

    @staticmethod
    def send(emu, size):
        host = emu.url.split("//")[1]
        token = emu.user("alice").token
        fixed = (
            f"GET {MC}?fields=id HTTP/1.1\r\nHost: {host}\r\nAuthorization: ApiToken {token}\r\n"
        )
        fixed = fixed.encode()
        pad = size - len(fixed) - len(b"X-Pad: \r\n") - len(b"Connection: close\r\n\r\n")
        head = fixed + b"X-Pad: " + b"p" * pad + b"\r\nConnection: close\r\n\r\n"
        assert size == len(head)
        with socket.create_connection(("127.0.0.1", int(host.split(":")[1])), 5) as sock:
            sock.sendall(head)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data

    def test_8192_bytes_pass_8193_do_not(self, emu):
        assert self.send(emu, 8192).startswith(b"HTTP/1.1 200 ")
        assert 1 == len(emu.log)
        refused = self.send(emu, 8193)
        assert refused.startswith(b"HTTP/1.1 400 ")
        assert b"Request header is too large" in refused
        assert b"Connection: close" in refused
        assert 1 == len(emu.log) and 1 == len(emu.refused)  # DHIS2 never saw it

"""Read state: mark_read and mark_unread, follow_up and unfollow_up, delete_conversation(s).

Each is one request for any number of uids, for the caller or, with ``user=``, another
participant.  Read state lists only what changed, follow-up every conversation found, delete
what left the inbox; a caller who may not touch one of them changes none (2.41.3 and later).

Neighbours: the same calls retried after a lost answer and over every fault in
test_transport.py; ``get_conversation(mark_read=True)`` in test_thread.py; the walk that
marks or deletes as it goes in test_inbox.py; the mark-read, follow-up and delete commands
in test_cli.py.
"""

from __future__ import annotations

import json

import pytest

from dhis2_messages import NotFoundError, PermissionDenied
from tests.conftest import ALICE, API, BOB, DAVE, UNKNOWN, participants


class TestReadState:
    def test_mark_read_lists_only_changed(self, emulator, admin, alice):
        """One POST /read with a JSON array; uids already read are not listed."""
        a, b, c = (admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(3))
        assert [a] == alice.mark_read(a)
        emulator.clear_log()
        assert sorted([b, c]) == sorted(alice.mark_read([a, b, c]))
        (request,) = emulator.log
        assert ("POST", f"{API}/read") == (request.method, request.path)
        assert [a, b, c] == json.loads(request.body)
        assert request.headers["Content-Type"].startswith("application/json")
        assert 0 == alice.count_unread()

    def test_mark_unread(self, emulator, admin, alice):
        a, b = (admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(2))
        alice.mark_read(a)
        assert [a] == alice.mark_unread([a, b])
        assert f"{API}/unread" == emulator.log[-1].path
        assert 2 == alice.count_unread()

    def test_for_another_user(self, emulator, admin):
        """user= marks another participant's flag."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        assert [uid] == admin.mark_read(uid, user=ALICE)
        assert [ALICE] == emulator.log[-1].param("user")
        assert (True, False) == participants(emulator, uid)["alice"]

    def test_bulk_is_one_request(self, emulator, admin):
        """520 uids go in one request, one JSON array."""
        uids = emulator.add_conversations(520, sender="alice", recipients=["admin"])
        emulator.clear_log()
        assert set(uids) == set(admin.mark_read(uids))
        assert 1 == len(emulator.log)
        assert 520 == len(json.loads(emulator.log[0].body))

    def test_unknown_uids(self, admin):
        """DHIS2's bare 404 when none of the uids exist."""
        with pytest.raises(NotFoundError) as info:
            admin.mark_read([UNKNOWN])
        assert ("No MessageConversations found for the given IDs.", None) == (
            info.value.message,
            info.value.error_code,
        )

    def test_unknown_user(self, admin):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(NotFoundError, match=f"No user with uid: {UNKNOWN}"):
            admin.mark_unread(uid, user=UNKNOWN)

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_forbidden_is_all_or_nothing(self, emulator, admin, alice, connect):
        """One conversation the caller may not touch: 403 and nothing changes."""
        mine = admin.send(subject="s", text="t", users=ALICE)
        other = connect("bob").send(subject="s", text="t", users=DAVE)
        with pytest.raises(
            PermissionDenied, match="Not authorized to change read property of this conversation."
        ):
            alice.mark_read([mine, other])
        assert (False, False) == participants(emulator, mine)["alice"]

    @pytest.mark.parametrize("uids", [[], (), "", "bad", [ALICE, "bad"], None, 5, b"PhzytPW3g2J"])
    def test_bad_input(self, emulator, admin, uids):
        with pytest.raises((ValueError, TypeError)):
            admin.mark_read(uids)
        with pytest.raises((ValueError, TypeError)):
            admin.mark_unread(uids)
        assert [] == emulator.log

    def test_bad_user(self, emulator, admin):
        with pytest.raises(ValueError, match="user"):
            admin.mark_read(UNKNOWN, user="alice")
        assert [] == emulator.log


class TestFollowUp:
    def test_lists_every_found_uid(self, emulator, admin, alice):
        """Unlike read, follow-up lists every conversation found, changed or not."""
        a, b = (admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(2))
        assert [a] == alice.follow_up(a)
        assert sorted([a, b]) == sorted(alice.follow_up([a, b, UNKNOWN]))
        assert f"{API}/followup" == emulator.log[-1].path
        assert [a] == [
            c.id for c in alice.list_conversations(filter="followUp:eq:true", order="subject:asc")
        ][:1]
        assert sorted([a, b]) == sorted(alice.unfollow_up([a, b]))
        assert f"{API}/unfollowup" == emulator.log[-1].path
        assert (False, False) == participants(emulator, a)["alice"]

    def test_for_another_user(self, emulator, admin):
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.follow_up([uid], user=ALICE)
        assert [ALICE] == emulator.log[-1].param("user")
        assert (False, True) == participants(emulator, uid)["alice"]

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_errors(self, admin, connect):
        with pytest.raises(NotFoundError) as info:
            admin.follow_up(UNKNOWN)
        assert "No MessageConversations found for the given UIDs" == info.value.message
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(
            PermissionDenied, match="Not authorized to change unfollowups in this conversation."
        ):
            connect("dave").unfollow_up(uid)

    def test_bad_input(self, emulator, admin):
        with pytest.raises(ValueError):
            admin.follow_up([])
        with pytest.raises(ValueError):
            admin.unfollow_up(["x"])
        assert [] == emulator.log


class TestDelete:
    def test_soft_delete_for_the_caller(self, emulator, admin, alice):
        """One DELETE ?mc=a&mc=b, no body: gone from the caller's inbox, others keep it."""
        a, b = (admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(2))
        emulator.clear_log()
        assert sorted([a, b]) == sorted(alice.delete_conversations([a, b]))
        (request,) = emulator.log
        assert ("DELETE", API, [a, b], []) == (
            request.method,
            request.path,
            request.param("mc"),
            request.param("user"),
        )
        assert b"" == request.body
        assert "Content-Type" not in request.headers
        assert 0 == len(alice.list_conversations())
        assert {a, b} == {c.id for c in admin.list_conversations()}
        with pytest.raises(PermissionDenied):
            alice.get_conversation(a)

    def test_lists_only_removed(self, admin):
        """Uids not in the inbox (already removed, unknown) are not listed."""
        a, b = (admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(2))
        admin.delete_conversations(a)
        assert [b] == admin.delete_conversations([a, b, UNKNOWN])

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_removed_participant_loses_access(self, admin, alice):
        uid = admin.send(subject="s", text="t", users=ALICE)
        alice.delete_conversations(uid)
        with pytest.raises(PermissionDenied):
            alice.delete_conversations(uid)

    def test_for_another_user(self, emulator, admin):
        uid = admin.send(subject="s", text="t", users=[ALICE, BOB])
        assert [uid] == admin.delete_conversations(uid, user=BOB)
        assert [BOB] == emulator.log[-1].param("user")
        assert {"admin", "alice"} == set(participants(emulator, uid))

    def test_delete_one(self, emulator, admin, alice):
        """delete_conversation is the batch call for one uid, never the hard-delete item route."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        assert admin.delete_conversation(uid) is None
        assert ("DELETE", API, [uid]) == (
            emulator.log[-1].method,
            emulator.log[-1].path,
            emulator.log[-1].param("mc"),
        )
        with pytest.raises(NotFoundError, match="not in the inbox"):
            admin.delete_conversation(uid)
        assert uid in emulator.conversations
        assert ["alice"] == list(emulator.conversations[uid].participants)

    def test_hard_delete_route_is_never_used(self, emulator, admin):
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.delete_conversation(uid)
        assert [] == [r for r in emulator.log if r.method == "DELETE" and r.path != API]

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_errors(self, admin, connect):
        with pytest.raises(
            NotFoundError, match="No MessageConversations found for the given UIDs."
        ):
            admin.delete_conversations(UNKNOWN)
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(NotFoundError, match=f"User does not exist: {UNKNOWN}"):
            admin.delete_conversations(uid, user=UNKNOWN)
        with pytest.raises(
            PermissionDenied, match="Not authorized to remove assigned users to this conversation."
        ):
            connect("dave").delete_conversations(uid)
        with pytest.raises(NotFoundError):
            admin.delete_conversation(UNKNOWN)

    def test_bulk_is_one_request(self, emulator, alice):
        uids = emulator.add_conversations(500, sender="admin", recipients=["alice"])
        emulator.clear_log()
        assert 500 == len(alice.delete_conversations(uids))
        assert 1 == len(emulator.log)

    def test_bad_input(self, emulator, admin):
        for call in (
            lambda: admin.delete_conversations([]),
            lambda: admin.delete_conversation("x"),
            lambda: admin.delete_conversations(UNKNOWN, user="bob"),
        ):
            with pytest.raises(ValueError):
                call()
        assert [] == emulator.log

"""A thread: get_conversation, its messages, participants and flags, and mark_read=True.

Neighbours: the records a thread parses into in test_records.py; its terminal and notebook
views in test_cli.py and test_notebook.py; marking read without reading (mark_read) in
test_read_state.py; a malformed uid of every method in test_security.py.
"""

from __future__ import annotations

import pytest

from dhis2_messages import THREAD_FIELDS, NotFoundError, PermissionDenied
from tests.conftest import ALICE, UNKNOWN, at_least


class TestGetConversation:
    def test_whole_thread(self, emulator, admin, alice):
        """The thread selector brings texts, senders, dates, flags and participants."""
        uid = admin.send(subject="Stock-out", text="Any ACT left?", users=ALICE)
        alice.reply(uid, "Two boxes.")
        conv = admin.get_conversation(uid)
        assert [THREAD_FIELDS] == emulator.log[-1].param("fields")
        assert ["Any ACT left?", "Two boxes."] == [m.text for m in conv.messages]
        assert ["admin", "alice"] == [m.sender.username for m in conv.messages]
        assert "Alice Banda" == conv.messages[1].sender.name
        assert [False, False] == [m.internal for m in conv.messages]
        assert conv.messages[0].created < conv.messages[1].created
        flags = {p.user.username: p.read for p in conv.participants}
        # A reply marks the others unread and leaves the sender's own flag alone.
        assert {"admin": False, "alice": False} == flags
        assert 2 == conv.message_count

    def test_unknown_uid_is_not_found_though_dhis2_says_200(self, emulator, admin):
        """DHIS2 answers an unknown conversation with HTTP 200 and a bare message (2.38: 404)."""
        with pytest.raises(NotFoundError) as info:
            admin.get_conversation(UNKNOWN)
        assert f"No MessageConversation found with UID: {UNKNOWN}" == info.value.message
        assert (200 if at_least(emulator, "2.39") else 404) == info.value.status_code

    def test_not_a_participant(self, emulator, admin, connect):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(PermissionDenied) as info:
            connect("dave").get_conversation(uid)
        # an AccessDeniedException, without errorCode, up to 2.41
        code = "E1006" if at_least(emulator, "2.42") else None
        assert ("Not authorized to access this conversation.", code) == (
            info.value.message,
            info.value.error_code,
        )

    def test_mark_read(self, emulator, admin, alice):
        """mark_read=True marks it read; the answer still shows the value from before."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        assert 1 == alice.count_unread()
        conv = alice.get_conversation(uid, mark_read=True)
        assert ["true"] == emulator.log[-1].param("markRead")
        assert conv.read is False
        assert 0 == alice.count_unread()
        alice.get_conversation(uid)
        assert [] == emulator.log[-1].param("markRead")

    def test_internal_messages_hidden_from_reporters(self, connect):
        """A ticket's internal notes are shown to feedback managers only."""
        alice, carol = connect("alice"), connect("carol")
        ticket = alice.send_feedback(subject="Login broken", text="Cannot log in")
        carol.reply(ticket, "Probably the LDAP sync", internal=True)
        carol.reply(ticket, "Fixed, try again")
        assert ["Cannot log in", "Fixed, try again"] == [
            m.text for m in alice.get_conversation(ticket).messages
        ]
        seen = [(m.text, m.internal) for m in carol.get_conversation(ticket).messages]
        assert ("Probably the LDAP sync", True) == seen[1]

    @pytest.mark.parametrize(
        "uid", ["short", "1abcdefghij", "../abcdefgh", "abcdefghij?", "abcdefghijkl", ""]
    )
    def test_malformed_uid_sends_nothing(self, emulator, admin, uid):
        with pytest.raises(ValueError, match="uid"):
            admin.get_conversation(uid)
        assert [] == emulator.log

    def test_uid_type(self, emulator, admin):
        with pytest.raises(TypeError):
            admin.get_conversation(None)
        assert [] == emulator.log

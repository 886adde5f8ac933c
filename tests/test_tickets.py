"""Tickets: set_status, set_priority, assign and unassign.

Values are checked, in any case, before any request and sent as DHIS2 wants them; a
feedback manager may triage a ticket without taking part in it; a ticket's assignee must be
a feedback recipient, a private conversation's anyone.

Neighbours: opening a ticket (send_feedback) and internal notes in test_sending.py; the
same calls over faults and retries in test_transport.py; the status, priority, assign and
unassign commands in test_cli.py.
"""

from __future__ import annotations

import pytest

from dhis2_messages import ConflictError, NotFoundError, PermissionDenied
from tests.conftest import ADMIN, ALICE, API, CAROL, DAVE, UNKNOWN


class TestTickets:
    @pytest.fixture
    def ticket(self, connect):
        return connect("alice").send_feedback(subject="Export fails", text="CSV export times out")

    @pytest.mark.parametrize(
        "given, sent", [("solved", "SOLVED"), ("Pending", "PENDING"), ("INVALID", "INVALID")]
    )
    def test_status(self, emulator, connect, ticket, given, sent):
        """Status is validated, sent upper-case, and applied."""
        connect("carol").set_status(ticket, given)
        request = emulator.log[-1]
        assert ("POST", f"{API}/{ticket}/status", [sent]) == (
            request.method,
            request.path,
            request.param("messageConversationStatus"),
        )
        assert sent == emulator.conversations[ticket].status

    @pytest.mark.parametrize("given", ["high", "LOW", "Medium", "none"])
    def test_priority(self, emulator, admin, ticket, given):
        admin.set_priority(ticket, given)
        assert [given.upper()] == emulator.log[-1].param("messageConversationPriority")
        assert given.upper() == admin.get_conversation(ticket).priority

    @pytest.mark.parametrize("call", ["set_status", "set_priority"])
    def test_bad_values_send_nothing(self, emulator, admin, call):
        """An unknown value is a ValueError listing the valid ones, with zero requests."""
        with pytest.raises(ValueError, match="NONE, "):
            getattr(admin, call)(UNKNOWN, "URGENT")
        with pytest.raises(TypeError):
            getattr(admin, call)(UNKNOWN, 3)
        assert [] == emulator.log

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_status_errors(self, admin, connect, ticket):
        with pytest.raises(NotFoundError) as info:
            admin.set_status(UNKNOWN, "SOLVED")
        assert ("No MessageConversation found for the given ID.", None) == (
            info.value.message,
            info.value.error_code,
        )
        with pytest.raises(
            PermissionDenied, match="Not authorized to change status in this conversation."
        ):
            connect("dave").set_status(ticket, "SOLVED")
        with pytest.raises(
            PermissionDenied, match="Not authorized to change priority in this conversation."
        ):
            connect("dave").set_priority(ticket, "HIGH")

    def test_feedback_manager_may_triage_without_participating(self, emulator, connect):
        """A feedback-team member who is no participant may still triage a TICKET."""
        ticket = connect("bob").send_feedback(subject="s", text="t")
        del emulator.conversations[ticket].participants["carol"]
        connect("carol").set_priority(ticket, "HIGH")
        assert "HIGH" == emulator.conversations[ticket].priority

    def test_assign_and_unassign(self, emulator, connect, ticket):
        carol = connect("carol")
        assert carol.assign(ticket, CAROL) is None
        assert [CAROL] == emulator.log[-1].param("userId")
        conv = carol.get_conversation(ticket)
        assert ("carol", "Carol Osei") == (conv.assignee.username, conv.assignee.name)
        assert [ticket] == [
            c.id for c in carol.list_conversations(filter=f"assignee.id:eq:{CAROL}")
        ]
        assert carol.unassign(ticket) is None
        assert ("DELETE", f"{API}/{ticket}/assign") == (
            emulator.log[-1].method,
            emulator.log[-1].path,
        )
        assert carol.get_conversation(ticket).assignee is None

    def test_ticket_assignee_must_be_feedback_recipient(self, admin, ticket):
        """DHIS2's 409 for a TICKET assignee outside the feedback group (ALL does not count)."""
        with pytest.raises(ConflictError) as info:
            admin.assign(ticket, ADMIN)
        assert (
            "User provided is not a member of the system's feedback recipient group"
            == info.value.message
        )

    def test_private_conversation_assignable_to_anyone(self, emulator, admin):
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.assign(uid, DAVE)
        assert "dave" == admin.get_conversation(uid).assignee.username

    @pytest.mark.dhis2_versions(since="2.41.3")  # participant checks came with #19139
    def test_assign_errors(self, admin, connect, ticket):
        with pytest.raises(NotFoundError, match="Could not find user to assign"):
            admin.assign(ticket, UNKNOWN)
        with pytest.raises(NotFoundError, match="No MessageConversation found for the given ID."):
            admin.assign(UNKNOWN, CAROL)
        with pytest.raises(
            PermissionDenied, match="Not authorized to assign a user to this conversation."
        ):
            connect("dave").assign(ticket, CAROL)
        with pytest.raises(
            PermissionDenied,
            match="Not authorized to remove the assigned user to this conversation.",
        ):
            connect("dave").unassign(ticket)

    def test_assign_bad_input(self, emulator, admin):
        for call in (
            lambda: admin.assign(UNKNOWN, "carol"),
            lambda: admin.assign("x", CAROL),
            lambda: admin.unassign("../assign"),
        ):
            with pytest.raises(ValueError):
                call()
        assert [] == emulator.log

    @pytest.mark.parametrize("value", ["open", " Solved ", "pending"])
    def test_status_is_case_insensitive(self, emulator, admin, value):
        uid = admin.send_feedback(subject="s", text="t")
        admin.set_status(uid, value)
        assert [value.strip().upper()] == emulator.log[-1].param("messageConversationStatus")

"""Feedback, recipients, read state, follow-up, delete, tickets and attachments over real HTTP."""

from __future__ import annotations

import io
import json

import pytest

from dhis2_messages import ConflictError, NotFoundError, PermissionDenied
from tests.conftest import (
    ADMIN,
    ALICE,
    API,
    BO_DISTRICT,
    BOB,
    CAROL,
    DAVE,
    REPORTERS,
    UNKNOWN,
    at_least,
    participants,
)


class TestFeedback:
    def test_ticket(self, emulator, connect):
        """POST /feedback?subject= with a text body opens an OPEN ticket to the feedback team."""
        alice = connect("alice")
        uid = alice.send_feedback(subject="Login broken", text='{"not": "json"} ✓')
        request = emulator.requests("POST")[-1]  # before 2.41.3 a GET finds the ticket
        assert ("POST", f"{API}/feedback", ["Login broken"]) == (
            request.method,
            request.path,
            request.param("subject"),
        )
        assert "text/plain; charset=utf-8" == request.headers["Content-Type"]
        conv = connect("carol").get_conversation(uid)
        assert ("TICKET", "OPEN", "Login broken") == (conv.message_type, conv.status, conv.subject)
        assert '{"not": "json"} ✓' == conv.messages[0].text
        assert {"alice": True, "carol": False} == {
            p.user.username: p.read for p in conv.participants
        }

    def test_bad_input(self, emulator, alice):
        for kwargs in ({"subject": "", "text": "t"}, {"subject": "s", "text": " "}):
            with pytest.raises(ValueError):
                alice.send_feedback(**kwargs)
        assert [] == emulator.log


class TestAddRecipients:
    def test_add(self, emulator, admin):
        """{"id"} references; DHIS2's 204 with an empty body is success; new ones are unread."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        assert admin.add_recipients(uid, users=[CAROL], user_groups=REPORTERS) is None
        request = emulator.log[-1]
        assert ("POST", f"{API}/{uid}/recipients") == (request.method, request.path)
        assert {"users": [{"id": CAROL}], "userGroups": [{"id": REPORTERS}]} == json.loads(
            request.body
        )
        assert {"admin": True, "alice": False, "bob": False, "carol": False} == {
            k: v[0] for k, v in participants(emulator, uid).items()
        }

    def test_org_unit(self, emulator, admin):
        uid = admin.send(subject="s", text="t", users=CAROL)
        admin.add_recipients(uid, organisation_units=[BO_DISTRICT])
        assert {"admin", "alice", "bob", "carol", "dave"} == set(participants(emulator, uid))

    def test_errors(self, emulator, admin, connect):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(ConflictError, match=f"User does not exist: {UNKNOWN}"):
            admin.add_recipients(uid, users=UNKNOWN)
        group_text = (
            f"UserGroup with id {UNKNOWN} could not be found."
            if at_least(emulator, "2.40")
            else f"User Group does not exist: {UNKNOWN}"
        )
        with pytest.raises(NotFoundError, match=group_text):
            admin.add_recipients(uid, user_groups=UNKNOWN)
        with pytest.raises(NotFoundError, match=f"Message conversation does not exist: {UNKNOWN}"):
            admin.add_recipients(UNKNOWN, users=BOB)
        if at_least(emulator, "2.41.3"):  # no participant check before #19139
            with pytest.raises(
                PermissionDenied, match="Not authorized to change recipients in this conversation."
            ):
                connect("dave").add_recipients(uid, users=DAVE)

    def test_bad_input(self, emulator, admin):
        for args, kwargs in [
            ((UNKNOWN,), {}),
            (("bad",), {"users": BOB}),
            ((UNKNOWN,), {"users": ["x"]}),
        ]:
            with pytest.raises(ValueError):
                admin.add_recipients(*args, **kwargs)
        assert [] == emulator.log


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


class TestAttachments:
    def test_round_trip(self, emulator, admin, alice, tmp_path):
        """upload -> send with attachment -> download gives the same bytes."""
        data = bytes(range(256)) * 1000
        path = tmp_path / "district report.pdf"
        path.write_bytes(data)
        file_uid = admin.upload_attachment(path)
        request = emulator.log[-1]
        assert ("POST", "/api/fileResources", ["MESSAGE_ATTACHMENT"]) == (
            request.method,
            request.path,
            request.param("domain"),
        )
        assert request.headers["Content-Type"].startswith("multipart/form-data")
        assert b'name="file"; filename="district report.pdf"' in request.body
        uid = admin.send(subject="Report", text="attached", users=ALICE, attachments=[file_uid])
        assert [{"id": file_uid}] == json.loads(emulator.requests("POST", API)[-1].body)[
            "attachments"
        ]
        conv = alice.get_conversation(uid)
        (attachment,) = conv.messages[0].attachments
        assert (file_uid, "district report.pdf", "application/pdf", len(data)) == (
            attachment.id,
            attachment.name,
            attachment.content_type,
            attachment.content_length,
        )
        assert data == alice.download_attachment(uid, conv.messages[0].id, file_uid)
        assert "*/*" == emulator.log[-1].headers["Accept"]

    @pytest.mark.parametrize("make", ["bytes", "file", "str"])
    def test_inputs(self, emulator, admin, tmp_path, make):
        """A path (str or Path), bytes or a binary file object can be uploaded."""
        path = tmp_path / "notes.txt"
        path.write_bytes(b"hello")
        # Only "file" opens one, and it is closed below.
        file = open(path, "rb") if make == "file" else {"bytes": b"hello", "str": str(path)}[make]  # noqa: SIM115
        try:
            uid = admin.upload_attachment(file)
        finally:
            if make == "file":
                file.close()
        stored = emulator.files[uid]
        assert (b"hello", "MESSAGE_ATTACHMENT") == (stored.data, stored.domain)
        assert ("attachment" if make == "bytes" else "notes.txt") == stored.name

    def test_filename_and_type(self, emulator, admin):
        uid = admin.upload_attachment(
            io.BytesIO(b"a,b\n1,2\n"), filename="cases.csv", content_type="text/csv"
        )
        assert ("cases.csv", "text/csv") == (
            emulator.files[uid].name,
            emulator.files[uid].content_type,
        )

    def test_reply_with_attachments(self, emulator, admin, alice):
        """reply sends attachment uids as a query parameter."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        first, second = admin.upload_attachment(b"one"), admin.upload_attachment(b"two")
        admin.reply(uid, "two files", attachments=[first, second])
        assert [f"{first},{second}"] == emulator.log[-1].param("attachments")
        message = alice.get_conversation(uid).messages[-1]
        assert {first, second} == {a.id for a in message.attachments}
        assert b"two" == alice.download_attachment(uid, message.id, second)

    def test_attach_once(self, admin):
        """An uploaded file can be attached once only."""
        file_uid = admin.upload_attachment(b"x")
        admin.send(subject="s", text="t", users=ALICE, attachments=file_uid)
        with pytest.raises(
            ConflictError,
            match=f"Attachment '{file_uid}' is already used or not a valid attachment.",
        ):
            admin.send(subject="s", text="t", users=ALICE, attachments=file_uid)

    def test_wrong_domain(self, emulator, admin):
        """A file uploaded without domain=MESSAGE_ATTACHMENT cannot be attached (why the client always sends it)."""
        file_uid = emulator.add_file(owner="admin", data=b"x", domain="DATA_VALUE")
        with pytest.raises(ConflictError, match="is already used or not a valid attachment"):
            admin.send(subject="s", text="t", users=ALICE, attachments=file_uid)

    def test_unknown_attachment(self, admin):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(ConflictError, match=f"Attachment '{UNKNOWN}' not found."):
            admin.reply(uid, "t", attachments=UNKNOWN)

    def test_too_large(self, emulator, admin):
        """DHIS2's 10 MB limit is its 409, passed on as a ConflictError."""
        with pytest.raises(
            ConflictError,
            match="File size can't be bigger than 10000000, current file size 10000001",
        ):
            admin.upload_attachment(b"x" * 10_000_001)

    def test_bad_input(self, emulator, admin, tmp_path):
        (tmp_path / "empty.bin").write_bytes(b"")
        text_file = open(tmp_path / "empty.bin")  # noqa: SIM115 (closed below)
        cases = [
            (b"", ValueError),
            (str(tmp_path / "empty.bin"), ValueError),
            (text_file, TypeError),
            (12, TypeError),
            (str(tmp_path / "missing.pdf"), FileNotFoundError),
        ]
        try:
            for file, error in cases:
                with pytest.raises(error):
                    admin.upload_attachment(file)
        finally:
            text_file.close()
        with pytest.raises(ValueError):
            admin.upload_attachment(b"x", filename=" ")
        with pytest.raises(ValueError):
            admin.upload_attachment(b"x", content_type="pdf")
        assert [] == emulator.log

    def test_download_errors(self, emulator, admin, connect):
        """Each of DHIS2's download errors maps to its class."""
        carol, alice = connect("carol"), connect("alice")
        file_uid = admin.upload_attachment(b"secret")
        uid = admin.send(subject="s", text="t", users=ALICE, attachments=file_uid)
        msg = alice.get_conversation(uid).messages[0].id
        with pytest.raises(NotFoundError, match=f"No message conversation with uid '{UNKNOWN}'"):
            alice.download_attachment(UNKNOWN, msg, file_uid)
        with pytest.raises(PermissionDenied, match="Not authorized to access this conversation."):
            connect("dave").download_attachment(uid, msg, file_uid)
        with pytest.raises(
            NotFoundError, match=f"No message with uid '{UNKNOWN}' in messageConversation '{uid}"
        ):
            alice.download_attachment(uid, UNKNOWN, file_uid)
        with pytest.raises(NotFoundError, match=f"No messageattachment found with id '{UNKNOWN}'"):
            alice.download_attachment(uid, msg, UNKNOWN)
        # An internal note's attachment: only feedback-team members may fetch it, ALL is not enough.
        ticket = alice.send_feedback(subject="s", text="t")
        note_file = carol.upload_attachment(b"internal")
        carol.reply(ticket, "note", internal=True, attachments=note_file)
        admin.add_recipients(ticket, users=ADMIN)
        note = carol.get_conversation(ticket).messages[-1].id
        assert b"internal" == carol.download_attachment(ticket, note, note_file)
        with pytest.raises(ConflictError, match="Not authorized to access this message"):
            admin.download_attachment(ticket, note, note_file)

    def test_download_bad_input(self, emulator, admin):
        with pytest.raises(ValueError, match="attachment"):
            admin.download_attachment(UNKNOWN, UNKNOWN, "../../etc")
        assert [] == emulator.log

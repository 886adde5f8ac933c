"""Attachments: upload_attachment, attaching to a send or a reply, download_attachment.

Neighbours: a filename or media type that could forge a header in test_security.py
(``TestNoHeaderInjection``); an answer too large, or a gzip bomb, in
test_transport_hostile.py; the upload, download and --attach options in test_cli.py.
"""

from __future__ import annotations

import io
import json

import pytest

from dhis2_messages import (
    ApiError,
    ConflictError,
    Messenger,
    NotFoundError,
    PermissionDenied,
    ResponseError,
)
from tests.conftest import ADMIN, ALICE, API, UNKNOWN


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

    @pytest.mark.dhis2_versions(since="2.39")  # 2.39.8, 2.40.6, 2.41.2, 2.42.0 (#18113)
    def test_too_large(self, emulator, admin):
        """DHIS2's 10 MB limit is its 409, passed on as a ConflictError whose hint names
        the setting; DHIS2's own text stays the message."""
        with pytest.raises(ConflictError) as info:
            admin.upload_attachment(b"x" * 10_000_001)
        message = "File size can't be bigger than 10000000, current file size 10000001"
        assert message == info.value.message
        assert "max.file_upload_size" in info.value.hint
        assert "max.file_upload_size" in str(info.value)

    @pytest.mark.dhis2_versions("2.38")
    def test_no_size_limit_on_2_38(self, emulator, admin):
        """2.38 has no max.file_upload_size: a file over 10 MB is stored."""
        uid = admin.upload_attachment(b"x" * 10_000_001)
        assert 10_000_001 == len(emulator.files[uid].data)

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

    def test_a_login_page_is_not_the_attachment(self, emulator, admin, alice):
        """A proxy or portal answering 200 with its HTML login page: ResponseError, as for
        every other call (the page's bytes were returned as the file)."""
        file_uid = admin.upload_attachment(b"%PDF-1.4", filename="a.pdf")
        uid = admin.send(subject="s", text="t", users=ALICE, attachments=[file_uid])
        message = alice.get_conversation(uid).messages[0].id
        page = "<html><head><title>Sign in - Health Portal</title></head><body>...</body></html>"
        emulator.inject(
            method="GET", path="/attachments/", status=200, body=page, content_type="text/html"
        )
        with pytest.raises(ResponseError, match="HTML page .*Sign in - Health Portal") as info:
            alice.download_attachment(uid, message, file_uid)
        assert ("not_json", 200) == (info.value.kind, info.value.status_code)
        assert "proxy or login page" in str(info.value)

    def test_an_html_attachment_is_an_attachment(self, admin, alice):
        """DHIS2 sends a real one with Content-Disposition: filename=..., whatever its type."""
        page = b"<html><head><title>Sign in</title></head></html>"
        file_uid = admin.upload_attachment(page, filename="form.html")
        uid = admin.send(subject="s", text="t", users=ALICE, attachments=[file_uid])
        message = alice.get_conversation(uid).messages[0]
        assert "text/html" == message.attachments[0].content_type
        assert page == alice.download_attachment(uid, message.id, file_uid)

    def test_download_bad_input(self, emulator, admin):
        with pytest.raises(ValueError, match="attachment"):
            admin.download_attachment(UNKNOWN, UNKNOWN, "../../etc")
        assert [] == emulator.log


@pytest.mark.dhis2_versions("2.42")
def test_an_upload_over_the_proxy_limit_says_which_limit(emulator, nginx, certificate):
    """nginx's client_max_body_size (1m by default): its 413 page becomes an ApiError whose
    message is the page's title, never its HTML, and whose hint names the setting."""
    user = emulator.user("alice")
    with Messenger(
        nginx(emulator.url), auth=(user.username, user.password), verify=str(certificate[0])
    ) as alice:
        with pytest.raises(ApiError) as info:
            alice.upload_attachment(b"x" * 5_000_000, filename="scan.pdf")
        assert "1 KiB" not in str(info.value)
        assert 413 == info.value.status_code
        assert "413 Request Entity Too Large" == info.value.message
        assert "<" not in str(info.value)
        assert "client_max_body_size" in info.value.hint
        assert "max.file_upload_size" in info.value.hint
        assert alice.upload_attachment(b"x" * 500_000, filename="small.pdf")
    assert 1 == len(emulator.files)

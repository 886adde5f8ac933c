"""Jupyter views: a Page as a table, a Conversation as its thread, DHIS2 content escaped."""

from __future__ import annotations

import attrs

from tests.conftest import ALICE

SCRIPT = "<script>alert('x')</script>"


def test_page_table_escapes_and_bolds_unread(admin, alice):
    """The inbox renders as a table; unread subjects are bold; HTML in subjects is text."""
    admin.send(subject=SCRIPT, text="t", users=ALICE)
    read = admin.send(subject="Weekly & monthly", text="t", users=ALICE)
    alice.mark_read(read)
    html = alice.list_conversations()._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 3
    assert SCRIPT not in html
    assert "<b>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</b>" in html
    assert "<td>Weekly &amp; monthly</td>" in html
    for column in ("Type", "Status", "Priority", "Last message", "Last sender"):
        assert f"<th>{column}</th>" in html
    assert "<td>John Traore</td>" in html and "<td>PRIVATE</td>" in html


def test_conversation_thread_escapes(connect):
    """A thread renders each message with its sender; texts and names are escaped."""
    alice, carol = connect("alice"), connect("carol")
    ticket = alice.send_feedback(subject="Bug <b>", text=SCRIPT)
    carol.reply(ticket, "note & more", internal=True)
    html = carol.get_conversation(ticket)._repr_html_()
    assert SCRIPT not in html and "<b>" not in html.replace("<b>Alice", "").replace("<b>Carol", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<h4>Bug &lt;b&gt;</h4>" in html
    assert "<b>Alice Banda</b>" in html and "<b>Carol Osei</b>" in html
    assert "note &amp; more" in html and "<i>(internal)</i>" in html
    assert html.index("Alice Banda") < html.index("Carol Osei")


def test_records_convert_to_dicts(admin):
    """attrs.asdict gives plain rows a DataFrame takes."""
    uid = admin.send(subject="s", text="t", users=ALICE)
    (row,) = [attrs.asdict(c) for c in admin.list_conversations()]
    assert (uid, "s", "admin") == (row["id"], row["subject"], row["last_sender"]["username"])

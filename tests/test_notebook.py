"""Jupyter views: a Page as a table, a Conversation as its thread, DHIS2 content escaped.

The HTML views and the terminal's (tests/test_cli.py) show the same columns and
the same words; the flat rows are what pandas takes.
"""

from __future__ import annotations

import datetime as dt
import re

import attrs
import pandas
import pytest

from dhis2_messages import Conversation, Message, Page, Participant, UserRef
from tests.conftest import ALICE, CAROL

SCRIPT = "<script>alert('x')</script>"
LEFT = '<td style="text-align:left">'


def cells(html):
    """The text of each row's cells, tags removed."""
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r)]
        for r in rows
    ]


def test_page_table_escapes_and_bolds_unread(admin, alice):
    """The inbox renders as a table; unread subjects are bold; HTML in subjects is text."""
    admin.send(subject=SCRIPT, text="t", users=ALICE)
    read = admin.send(subject="Weekly & monthly", text="t", users=ALICE)
    alice.mark_read(read)
    html = alice.list_conversations()._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 3
    assert SCRIPT not in html
    assert f"{LEFT}<b>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</b></td>" in html
    assert f"{LEFT}Weekly &amp; monthly</td>" in html
    header, *rows = cells(html)
    assert [
        "UID",
        "Flags",
        "Type",
        "Status",
        "Priority",
        "Last message",
        "From",
        "Subject",
    ] == header
    assert {("*", "PRIVATE", "John Traore"), ("", "PRIVATE", "John Traore")} == {
        (r[1], r[2], r[6]) for r in rows
    }


def test_subjects_read_from_the_left(admin, alice):
    """Jupyter right-aligns table cells by default: every cell says left."""
    admin.send(subject="S", text="t", users=ALICE)
    html = alice.list_conversations()._repr_html_()
    assert html.count("<td") == html.count(LEFT) == 8
    assert len(re.findall("<th[ >]", html)) == html.count('<th style="text-align:left">') == 8


def test_the_inbox_and_the_terminal_agree(emulator, alice):
    """Same columns, same cells; a system message (no sender) says System in both."""
    emulator.add_conversation(sender=None, recipients=["alice"], subject="Validation")
    emulator.add_conversation(sender="bob", recipients=["alice"], subject="Stock")
    page = alice.list_conversations()
    header, *rows = cells(page._repr_html_())
    lines = str(page).splitlines()[:-1]  # the terminal's table, without its footer
    starts = [lines[0].index(name.upper()) for name in header]
    terminal = [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])] for line in lines]
    assert [name.upper() for name in header] == terminal[0]
    assert rows == terminal[1:]
    assert ["Bob Mensah", "System"] == [row[6] for row in rows]


def test_an_empty_inbox_says_so(alice):
    html = alice.list_conversations()._repr_html_()
    assert "no conversations" in html and "<tbody></tbody>" in html
    assert "no conversations" == str(alice.list_conversations())


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


def test_conversation_shows_its_facts_and_who_has_read_it(emulator, connect):
    carol = connect("carol")
    uid = emulator.add_conversation(
        sender="alice", recipients=["carol", "bob"], subject="T", message_type="TICKET"
    )
    carol.assign(uid, CAROL)
    emulator.conversations[uid].participants["bob"].read = True
    emulator.conversations[uid].participants["carol"].read = True
    emulator.conversations[uid].participants["alice"].read = False
    html = carol.get_conversation(uid)._repr_html_()
    assert "Type: TICKET · Status: OPEN · Priority: NONE · Assignee: Carol Osei" in html
    assert "Participants, read by 2 of 3:" in html
    assert "<li><span><b>Bob Mensah</b> (bob): read</span></li>" in html
    assert "<li><span><b>Alice Banda</b> (alice): unread</span></li>" in html


USER = UserRef(id=ALICE, name="Alice <Banda>", username="alice")
MESSAGE = Message(
    id="Mx1y2z3a4b5",
    text="Line & one\nline two",
    sender=USER,
    created=dt.datetime(2024, 5, 2, 10, 11, 12),
    internal=True,
)


def test_message_and_participant_render_in_a_notebook():
    html = MESSAGE._repr_html_()
    assert "<b>Alice &lt;Banda&gt;</b> <small>2024-05-02 10:11</small> <i>(internal)</i>" in html
    assert ">Line &amp; one\nline two</pre>" in html
    system = attrs.evolve(MESSAGE, sender=None)._repr_html_()
    assert "<b>System</b>" in system
    p = Participant(user=USER, read=True, follow_up=True)
    assert "<span><b>Alice &lt;Banda&gt;</b> (alice): read, follow-up</span>" == p._repr_html_()


def test_print_is_short_and_repr_stays_attrs():
    """print() gives the terminal's view; repr() is still attrs' (every field, evaluable)."""
    assert (
        "[2024-05-02 10:11] Alice <Banda> (internal)  (Mx1y2z3a4b5)\n    Line & one\n    line two"
        == str(MESSAGE)
    )
    assert repr(MESSAGE).startswith("Message(id='Mx1y2z3a4b5', text='Line & one\\nline two'")
    assert "datetime.datetime(2024, 5, 2, 10, 11, 12)" in repr(MESSAGE)
    p = Participant(user=USER, read=False)
    assert "Alice <Banda> (alice): unread" == str(p)
    assert repr(p).startswith("Participant(user=UserRef(")
    conv = Conversation(id="Qa1b2c3d4e5", subject="S", messages=(MESSAGE,))
    assert str(conv).startswith("S\nType: ? · Status: ? · Priority: ? · Assignee: nobody\n\n[2024")
    page = Page(conversations=(conv,), total=1)
    lines = str(page).splitlines()
    assert lines[0].startswith("UID") and lines[1].startswith("Qa1b2c3d4e5")
    assert "page 1 of 1, 1 in all" == lines[-1]
    assert repr(page).startswith("Page(conversations=(Conversation(")


class TestPandas:
    def test_flat_rows(self, admin, alice):
        uid = admin.send(subject="s", text="t", users=ALICE)
        frame = pandas.DataFrame(alice.list_conversations().rows(), columns=Conversation.ROW_KEYS)
        assert list(Conversation.ROW_KEYS) == list(frame.columns)
        (row,) = frame.to_dict("records")
        assert (uid, "s", "admin", "John Traore") == (
            row["id"],
            row["subject"],
            row["last_sender_username"],
            row["last_sender_name"],
        )
        assert row["assignee_id"] is None and row["read"] is False
        assert isinstance(row["last_message"], (dt.datetime, pandas.Timestamp))
        assert not any(isinstance(v, (dict, list, tuple)) for v in row.values())

    def test_an_empty_inbox_is_an_empty_table_with_its_columns(self, alice):
        frame = pandas.DataFrame(alice.list_conversations().rows(), columns=Conversation.ROW_KEYS)
        assert (0, list(Conversation.ROW_KEYS)) == (len(frame), list(frame.columns))
        assert [] == list(frame["subject"])  # the README's next line, which used to raise KeyError

    def test_row_keys_are_the_row(self):
        full = Conversation(id="Qa1b2c3d4e5", last_sender=USER, assignee=USER)
        assert Conversation.ROW_KEYS == tuple(full.row())
        assert Conversation.ROW_KEYS == tuple(Conversation(id="Qa1b2c3d4e5").row())

    @pytest.mark.parametrize("field", ["last_sender", "assignee"])
    def test_users_are_flattened(self, field):
        row = Conversation(id="Qa1b2c3d4e5", **{field: USER}).row()
        assert (ALICE, "Alice <Banda>", "alice") == (
            row[f"{field}_id"],
            row[f"{field}_name"],
            row[f"{field}_username"],
        )

"""Jupyter views: a Page as a table, a Conversation as its thread, DHIS2 content escaped.

The HTML views and the terminal's (tests/test_cli.py) show the same columns and
the same words; the flat rows are what pandas takes.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import attrs
import pandas
import pytest

from dhis2_messages import (
    Conversation,
    Message,
    OrgUnitRef,
    Page,
    Participant,
    UserGroupRef,
    UserRef,
)
from tests.conftest import ALICE, BO_DISTRICT, CAROL

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
    assert "note &amp; more" in html and "internal note · feedback team only" in html
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
    assert (
        "<summary><small>3 participants, read by 2 of 3 (readers first)</small></summary>" in html
    )
    people = re.findall(r"<li[^>]*><span><b>([^<]*)</b> \((\w+)\): (\w+)</span></li>", html)
    assert [
        ("Bob Mensah", "bob", "read"),
        ("Carol Osei", "carol", "read"),
        ("Alice Banda", "alice", "unread"),
    ] == people


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
    assert "<b>Alice &lt;Banda&gt;</b> <small>2024-05-02 10:11</small>" in html
    assert "<strong>internal note · feedback team only</strong>" in html
    assert ">Line &amp; one\nline two</pre>" in html
    system = attrs.evolve(MESSAGE, sender=None)._repr_html_()
    assert "<b>System</b>" in system
    p = Participant(user=USER, read=True, follow_up=True)
    assert "<span><b>Alice &lt;Banda&gt;</b> (alice): read, follow-up</span>" == p._repr_html_()


def test_print_is_short_and_repr_stays_attrs():
    """print() gives the terminal's view; repr() is still attrs' (every field, evaluable)."""
    assert (
        "[2024-05-02 10:11] Alice <Banda>  (Mx1y2z3a4b5)  [internal note · feedback team only]\n"
        "  ┃ Line & one\n  ┃ line two" == str(MESSAGE)
    )
    assert repr(MESSAGE).startswith("Message(id='Mx1y2z3a4b5', text='Line & one\\nline two'")
    assert "datetime.datetime(2024, 5, 2, 10, 11, 12)" in repr(MESSAGE)
    p = Participant(user=USER, read=False)
    assert "Alice <Banda> (alice): unread" == str(p)
    assert repr(p).startswith("Participant(user=UserRef(")
    conv = Conversation(id="Qa1b2c3d4e5", subject="S", messages=(MESSAGE,))
    assert str(conv).startswith("S\nType: ?\n\n[2024")
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


# -- A district in a notebook: hundreds of participants, tickets, internal notes --------


def district(n=500, every=13):
    """A message to a district: the admin and n - 1 users, every 13th of them has read it,
    the participants in no particular order (DHIS2 sends them so), then a reply and a note."""
    admin = UserRef(id="xE7jOejl9FI", name="John Traore", username="admin")
    users = [
        UserRef(id=f"U{i:010d}", name=f"CHW Bo {i:03d}", username=f"chw.bo{i:03d}")
        for i in range(n - 1)
    ]
    people = tuple(
        Participant(user=u, read=i % every == 0) for i, u in reversed(list(enumerate(users)))
    ) + (Participant(user=admin, read=True),)
    at = dt.datetime(2024, 5, 2, 9, 30)
    return Conversation(
        id="Qa1b2c3d4e5",
        subject="Stock count on Friday",
        message_type="PRIVATE",
        status="NONE",
        priority="NONE",
        messages=(
            Message(id="Mx1y2z3a4b5", text="Count the ORS by Friday.", sender=admin, created=at),
            Message(id="Mx1y2z3a4b6", text="140 sachets.", sender=users[13], created=at),
            Message(
                id="Mx1y2z3a4b7", text="Short of zinc.", sender=admin, created=at, internal=True
            ),
        ),
        participants=people,
    )


class TestADistrict:
    def test_participants_fold_into_one_line_readers_first(self):
        conv = district()
        readers = sum(p.read for p in conv.participants)
        html = conv._repr_html_()
        summary = f"500 participants, read by {readers} of 500 (readers first)"
        assert (
            1 == html.count("<details>") and f"<summary><small>{summary}</small></summary>" in html
        )
        folded = html[html.index("<details>") : html.index("</details>")]
        names = re.findall(r"<li[^>]*><span><b>([^<]*)</b>", folded)
        assert 500 == len(names) and 0 == html.count("<li", html.index("</details>"))
        assert names[:readers] == sorted(names[:readers], key=str.casefold)
        assert names[readers:] == sorted(names[readers:], key=str.casefold)
        assert "John Traore" in names[:readers] and "CHW Bo 013" in names[:readers]
        # the thread follows at once
        assert html.index("Count the ORS by Friday.") > html.index("</details>")

    def test_the_text_view_lists_the_first_few(self):
        lines = str(district()).splitlines()
        assert "500 participants, read by 40 of 500:" == lines[2]
        assert "    CHW Bo 000 (chw.bo000): read" == lines[3]
        assert "    … and 490 more (460 of them unread)" == lines[13]
        assert lines[15].startswith("[2024-05-02 09:30] John Traore")
        assert 25 > len(lines)

    @pytest.mark.parametrize(
        "fields, facts",
        [
            ({"message_type": "PRIVATE", "status": "NONE", "priority": "NONE"}, "Type: PRIVATE"),
            (
                {"message_type": "TICKET", "status": "OPEN", "priority": "NONE"},
                "Type: TICKET · Status: OPEN · Priority: NONE · Assignee: nobody",
            ),
            (
                {"message_type": "VALIDATION_RESULT", "status": "OPEN", "priority": "HIGH"},
                "Type: VALIDATION_RESULT · Status: OPEN · Priority: HIGH",
            ),
            (
                {"message_type": "PRIVATE", "priority": "HIGH", "assignee": USER},
                "Type: PRIVATE · Priority: HIGH · Assignee: Alice <Banda>",
            ),
        ],
    )
    def test_ticket_fields_only_where_they_say_something(self, fields, facts):
        conv = Conversation(id="Qa1b2c3d4e5", subject="S", **fields)
        assert facts == str(conv).splitlines()[1]
        assert f"<p><small>{facts.replace('<', '&lt;').replace('>', '&gt;')}</small></p>" in (
            conv._repr_html_()
        )

    def test_an_internal_note_stands_apart(self):
        reply, note = (m._repr_html_() for m in district().messages[1:])
        assert note.startswith('<div style="border-left:4px solid #e0a800;')
        assert "internal note · feedback team only" in note
        assert "#e0a800" not in reply and "internal" not in reply

    @pytest.mark.skipif(not shutil.which("chromium"), reason="no Chromium to render with")
    def test_in_a_browser_the_thread_fits_one_page_until_the_list_is_opened(self, tmp_path):
        """Chromium prints the district's view on one page; opened, the list of 500
        takes several."""
        html = district()._repr_html_()
        pages = []
        for name, view in (("folded", html), ("open", html.replace("<details>", "<details open>"))):
            (tmp_path / f"{name}.html").write_text(
                f'<!doctype html><meta charset="utf-8"><body>{view}</body>', encoding="utf-8"
            )
            pdf = tmp_path / f"{name}.pdf"
            subprocess.run(
                [
                    shutil.which("chromium"),
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={tmp_path / name}",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}",
                    (tmp_path / f"{name}.html").as_uri(),
                ],
                capture_output=True,
                timeout=120,
                check=False,
            )
            pages.append(len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes())))
        folded, opened = pages
        assert 1 == folded and opened > 2, pages


class TestLookupsInANotebook:
    def test_a_user_a_group_and_a_unit_show_their_uid(self):
        assert "<span><b>Alice &lt;Banda&gt;</b> (alice) <code>PhzytPW3g2J</code></span>" == (
            USER._repr_html_()
        )
        group = UserGroupRef(id="wl5cDMuUhmF", name="Reporters")
        assert "<span><b>Reporters</b> <code>wl5cDMuUhmF</code></span>" == group._repr_html_()
        unit = OrgUnitRef(id="O6uvpzGd5pu", name="Bo District", level=2)
        assert "<span><b>Bo District</b> (level 2) <code>O6uvpzGd5pu</code></span>" == (
            unit._repr_html_()
        )

    def test_a_lookup_is_a_list_shown_as_a_table(self, alice):
        found = alice.lookup_users("banda")
        assert isinstance(found, list) and ["Alice Banda", "Jose Banda", "José Banda"] == [
            u.name for u in found
        ]
        header, *rows = cells(found._repr_html_())
        assert ["Name", "Username", "UID"] == header
        assert ["Alice Banda", "alice", "PhzytPW3g2J"] == rows[0] and 3 == len(rows)
        assert "<caption" in found._repr_html_() and ">3 users</caption>" in found._repr_html_()
        nothing = alice.find_user_groups("zzz")
        assert [] == nothing and ">no user groups</caption>" in nothing._repr_html_()
        units = alice.find_organisation_units("bo")
        assert ["Name", "Level", "UID"] == cells(units._repr_html_())[0]

    def test_a_subtree_is_indented_by_level(self, alice):
        tree = alice.organisation_unit_subtree(BO_DISTRICT)
        html = tree._repr_html_()
        indents = re.findall(r'padding-left:([\d.]+)em">([^<]*)<', html)
        assert ("0", "Bo District") == indents[0]
        assert ("1.5", "Badjia") in indents and ("3", "Ngelehun CHC") in indents
        assert "a subtree: Bo District and the units below it" in html

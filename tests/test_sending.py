"""Sending: send, reply, send_feedback and add_recipients; any text round-trips; once.

Each writes the body DHIS2 reads (``{"id"}`` references, a text/plain reply, a feedback
ticket's subject) and passes DHIS2's refusals on as typed errors with DHIS2's text; any
text, from emoji to 1 MB, arrives byte-exact (``TestTextRoundTrip``).  ``once=`` and
``find_sent`` find what the caller already started with the same words, by DHIS2's clock
(``TestOnce``, ``TestFindSent``), and a cron job killed half-way sends each district's
reminder once when it runs again.

Neighbours: attachments on a send or reply in test_attachments.py; recipients found by
name, and whole subtrees, in test_recipients.py; a send over a failed connection (never
sent twice) in test_transport.py; a ticket's status and assignee in test_tickets.py; the
send, reply, feedback and add-recipients commands in test_cli.py.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhis2_messages import (
    ConflictError,
    NotFoundError,
    PermissionDenied,
    ResponseError,
)
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

ROOT = Path(__file__).resolve().parent.parent


class TestSend:
    def test_send(self, emulator, admin):
        """One JSON POST with {"id"} references; the uid comes from Location."""
        uid = admin.send(
            subject="Mortality data",
            text="Reported January?",
            users=[ALICE, BOB],
            user_groups=REPORTERS,
        )
        (request,) = emulator.log
        assert ("POST", API) == (request.method, request.path)
        assert request.headers["Content-Type"].startswith("application/json")
        assert {
            "subject": "Mortality data",
            "text": "Reported January?",
            "users": [{"id": ALICE}, {"id": BOB}],
            "userGroups": [{"id": REPORTERS}],
        } == json.loads(request.body)
        conv = emulator.conversations[uid]
        assert "Mortality data" == conv.subject

    def test_uid_is_the_new_conversation(self, admin, alice):
        uid = admin.send(subject="Hello", text="World", users=ALICE)
        conv = alice.get_conversation(uid)
        assert ("Hello", ["World"]) == (conv.subject, [m.text for m in conv.messages])

    def test_org_unit_reaches_its_users(self, admin, connect):
        """Sending to an organisation unit reaches every user attached to it."""
        uid = admin.send(
            subject="District reminder", text="Submit by Friday", organisation_units=BO_DISTRICT
        )
        for name in ("alice", "bob", "dave"):
            assert uid in [c.id for c in connect(name).list_conversations()]
        assert 0 == len(connect("carol").list_conversations())

    def test_unicode_round_trip(self, admin, alice):
        subject, text = "Données — مرحبا", "Ça va? 你好 🙂\nline two\ttab"
        uid = admin.send(subject=subject, text=text, users=ALICE)
        conv = alice.get_conversation(uid)
        assert (subject, text) == (conv.subject, conv.messages[0].text)

    def test_unknown_user(self, emulator, admin):
        """DHIS2's 409 for an unknown user is a ConflictError with its text and code (2.40+)."""
        with pytest.raises(ConflictError) as info:
            admin.send(subject="s", text="t", users=[UNKNOWN])
        code = "E1004" if at_least(emulator, "2.40") else None
        assert (f"User does not exist: {UNKNOWN}", code) == (
            info.value.message,
            info.value.error_code,
        )

    def test_unknown_group_is_404(self, emulator, admin):
        text = (
            f"UserGroup with id {UNKNOWN} could not be found."
            if at_least(emulator, "2.40")
            else f"User Group does not exist: {UNKNOWN}"
        )
        with pytest.raises(NotFoundError, match=text):
            admin.send(subject="s", text="t", user_groups=UNKNOWN)

    def test_org_unit_error_comes_first(self, admin):
        """DHIS2 checks organisation units before users."""
        with pytest.raises(ConflictError, match=f"Organisation Unit does not exist: {UNKNOWN}"):
            admin.send(subject="s", text="t", users="Zz1111111Zz", organisation_units=UNKNOWN)

    def test_units_with_nobody_assigned_point_to_the_subtree(self, emulator, admin):
        """A district's users are assigned below it: DHIS2's 409 "No recipients selected."
        says what to send to instead, and DHIS2's own text is left as it was."""
        bombali = admin.resolve_organisation_unit("Bombali District")  # nobody assigned there
        with pytest.raises(ConflictError) as info:
            admin.send(subject="s", text="t", organisation_units=[bombali])
        err = info.value
        assert ("No recipients selected.", True) == (err.message, err.no_recipients)
        assert "organisation_unit_subtree" in err.hint and "organisation_unit_subtree" in str(err)
        assert {} == emulator.conversations
        # The subtree reaches the users below it.
        uid = admin.send(
            subject="s", text="t", organisation_units=admin.organisation_unit_subtree(bombali)
        )
        assert {"admin", "kadiatu", "ama", "ama.sankoh"} <= set(
            emulator.conversations[uid].participants
        )

    def test_other_conflicts_are_not_taken_for_no_recipients(self, admin):
        with pytest.raises(ConflictError) as info:
            admin.send(subject="s", text="t", users=[UNKNOWN], organisation_units=[BO_DISTRICT])
        assert (False, "") == (info.value.no_recipients, info.value.hint)

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            ({"subject": "s", "text": "t"}, ValueError),
            ({"subject": "", "text": "t", "users": ALICE}, ValueError),
            ({"subject": "   ", "text": "t", "users": ALICE}, ValueError),
            ({"subject": "s", "text": "\n\t ", "users": ALICE}, ValueError),
            ({"subject": "s", "text": "a\x00b", "users": ALICE}, ValueError),
            ({"subject": "s", "text": "\ud800", "users": ALICE}, ValueError),
            ({"subject": None, "text": "t", "users": ALICE}, TypeError),
            ({"subject": "s", "text": b"t", "users": ALICE}, TypeError),
            ({"subject": "s", "text": "t", "users": ["alice"]}, ValueError),
            ({"subject": "s", "text": "t", "users": [ALICE, 5]}, TypeError),
            ({"subject": "s", "text": "t", "users": {ALICE: 1}}, TypeError),
            ({"subject": "s", "text": "t", "user_groups": ["../../api"]}, ValueError),
            ({"subject": "s", "text": "t", "users": ALICE, "attachments": ["x"]}, ValueError),
        ],
    )
    def test_bad_input_sends_nothing(self, emulator, admin, kwargs, error):
        with pytest.raises(error):
            admin.send(**kwargs)
        assert [] == emulator.log

    def test_missing_location(self, emulator, admin):
        """A 201 without Location is a ResponseError that warns the message may exist."""
        emulator.inject(method="POST", process=True, strip_headers=("Location",))
        with pytest.raises(ResponseError, match="Location") as info:
            admin.send(subject="s", text="t", users=ALICE)
        assert "before sending again" in str(info.value)
        assert 1 == len(emulator.conversations)


class TestReply:
    def test_plain_text_body(self, emulator, admin):
        """The reply is a text/plain UTF-8 body; DHIS2 stores it verbatim."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.reply(uid, "Ça marche")
        request = emulator.log[-1]
        assert ("POST", f"{API}/{uid}") == (request.method, request.path)
        assert "text/plain; charset=utf-8" == request.headers["Content-Type"]
        assert "Ça marche".encode() == request.body
        assert "" == request.query

    @pytest.mark.parametrize(
        "text", ['{"text": "hi"}', "[1, 2]", '"quoted"', "🙂 مرحبا\r\n<b>x</b>", "x" * 1_000_000]
    )
    def test_verbatim(self, admin, alice, text):
        """JSON-looking, non-ASCII and 1 MB texts arrive exactly as given."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        admin.reply(uid, text)
        assert text == alice.get_conversation(uid).messages[-1].text

    def test_reply_marks_others_unread(self, admin, alice):
        uid = admin.send(subject="s", text="t", users=ALICE)
        alice.mark_read(uid)
        assert 0 == alice.count_unread()
        admin.reply(uid, "again")
        assert 1 == alice.count_unread()
        assert 0 == admin.count_unread()

    def test_internal_by_manager(self, emulator, connect):
        alice, carol = connect("alice"), connect("carol")
        ticket = alice.send_feedback(subject="s", text="t")
        carol.reply(ticket, "note", internal=True)
        assert ["true"] == emulator.log[-1].param("internal")

    def test_internal_by_reporter_is_denied(self, admin, alice):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(PermissionDenied, match="Not authorized to send internal messages"):
            alice.reply(uid, "psst", internal=True)

    def test_unknown_conversation(self, admin):
        with pytest.raises(NotFoundError) as info:
            admin.reply(UNKNOWN, "hello")
        assert (404, f"Message conversation does not exist: {UNKNOWN}", None) == (
            info.value.status_code,
            info.value.message,
            info.value.error_code,
        )

    @pytest.mark.dhis2_versions(since="2.41.3")  # before #19139 anyone may reply
    def test_not_a_participant(self, admin, connect):
        uid = admin.send(subject="s", text="t", users=ALICE)
        with pytest.raises(
            PermissionDenied, match="Not authorized to send messages to this conversation."
        ):
            connect("dave").reply(uid, "hi")

    @pytest.mark.parametrize(
        "args, kwargs, error",
        [
            (("Zz0000000Zz", ""), {}, ValueError),
            (("Zz0000000Zz", " "), {}, ValueError),
            (("bad", "t"), {}, ValueError),
            (("Zz0000000Zz", "t"), {"internal": "yes"}, TypeError),
            (("Zz0000000Zz", "t"), {"attachments": "x/y"}, ValueError),
            (("Zz0000000Zz", None), {}, TypeError),
        ],
    )
    def test_bad_input_sends_nothing(self, emulator, admin, args, kwargs, error):
        with pytest.raises(error):
            admin.reply(*args, **kwargs)
        assert [] == emulator.log


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


# -- Any text round-trips --------------------------------------------------------------

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=200,
).filter(lambda s: s.strip())

SAMPLES = [
    "🙂👍🏽👨‍👩‍👧‍👦 emoji with modifiers and joiners",
    "مرحبا بالعالم — שלום עולם \u202eRTL override\u202c",
    "control \x01\x02\x07\x08\x0b\x0c\x1b[31m\x7f\x85 characters",
    "line\r\nendings\rkept\n\n",
    "  leading and trailing space  ",
    '{"json": "looking", "a": [1, 2]}',
    "\ufeffBOM at the start and a zero\u200bwidth space",
    "Ω≈ç√∫ 𝕏𝕐ℤ 漢字かなカナ 한국어",
    "🙂مx" * 150_000,  # about 1 MB of UTF-8
    "x" * 1_000_000,
]


# These run once per emulated release, so pytest calls them on a fresh instance each time.
_PER_RELEASE = [HealthCheck.function_scoped_fixture] + (
    [HealthCheck.differing_executors] if hasattr(HealthCheck, "differing_executors") else []
)


class TestTextRoundTrip:
    def _check(self, emulator, m, text):
        uid = m.send(subject=text[:255], text=text, users=[BOB])
        sent = emulator.log[-1]
        assert text == sent.json()["text"]
        assert json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")[9:-1] in sent.body
        m.reply(uid, text)
        replied = emulator.log[-1]
        assert text.encode("utf-8") == replied.body  # byte-exact
        messages = m.get_conversation(uid).messages
        assert [text, text] == [message.text for message in messages]

    @pytest.mark.parametrize("text", SAMPLES, ids=lambda t: f"{t[:12]!r}x{len(t)}")
    def test_samples(self, emulator, alice, text):
        self._check(emulator, alice, text)

    @settings(max_examples=30, deadline=None, suppress_health_check=_PER_RELEASE)
    @given(text=TEXT)
    def test_any_text(self, emulator, alice, text):
        self._check(emulator, alice, text)

    @settings(max_examples=15, deadline=None, suppress_health_check=_PER_RELEASE)
    @given(subject=TEXT, text=TEXT)
    def test_feedback(self, emulator, alice, subject, text):
        uid = alice.send_feedback(subject=subject, text=text)
        posted = emulator.requests("POST")[-1]  # before 2.41.3 a GET finds the ticket
        assert [subject] == posted.param("subject")
        assert text.encode("utf-8") == posted.body
        conversation = alice.get_conversation(uid)
        assert subject == conversation.subject
        assert text == conversation.messages[0].text


# -- Sending once -----------------------------------------------------------------------


def _posts(emulator):
    return [r for r in emulator.log if r.method == "POST"]


def _server_now(emulator):
    """The emulated server's time now, as an aware datetime."""
    return datetime.datetime.fromtimestamp(
        time.time() + emulator.clock_offset, datetime.timezone.utc
    )


class TestOnce:
    def test_once_sends_the_first_time_and_returns_that_uid_after(self, emulator, admin):
        """One look-up (and once per Messenger the caller's uid), then the send; then only
        the look-up, which finds it."""
        kwargs = {"subject": "Weekly report", "text": "Submit by Friday", "users": ALICE}
        uid = admin.send(**kwargs, once=True)
        assert [("GET", "/api/me"), ("GET", API), ("POST", API)] == [
            (r.method, r.path) for r in emulator.log
        ]
        assert ["id"] == emulator.log[0].param("fields")
        emulator.clear_log()
        assert uid == admin.send(**kwargs, once=True)
        assert uid == admin.send(**kwargs, once=datetime.timedelta(days=7))
        assert [("GET", API)] * 2 == [(r.method, r.path) for r in emulator.log]
        assert [uid] == list(emulator.conversations)

    def test_without_once_it_sends_again(self, emulator, admin):
        admin.send(subject="s", text="t", users=ALICE)
        admin.send(subject="s", text="t", users=ALICE)
        assert 2 == len(emulator.conversations)
        assert [] == emulator.requests("GET")

    def test_only_what_the_caller_started_counts(self, emulator, admin, connect):
        """Bob's conversation with the same words, and admin's own reply with the text, do
        not count: only a conversation whose first message admin sent."""
        bob = connect("bob")
        bob.send(subject="Stock", text="Count it", users=ADMIN)
        theirs = emulator.add_conversation(sender="alice", recipients=["admin"], subject="Stock")
        admin.reply(theirs, "Count it")
        uid = admin.send(subject="Stock", text="Count it", users=ALICE, once=True)
        assert 1 == len(_posts(emulator)) - 2  # bob's send and the reply came first
        assert emulator.conversations[uid].created_by.username == "admin"
        assert None is bob.find_sent(subject="Stock", text="Other", since=None)

    @pytest.mark.parametrize(
        "other",
        [
            {"subject": "weekly report"},
            {"subject": "Weekly report "},
            {"subject": "Weekly"},
            {"text": "Submit by Friday."},
            {"text": "submit by friday"},
        ],
    )
    def test_the_words_must_be_exactly_the_same(self, emulator, admin, other):
        kwargs = {"subject": "Weekly report", "text": "Submit by Friday", "users": ALICE}
        admin.send(**kwargs)
        admin.send(**{**kwargs, **other}, once=True)
        assert 2 == len(emulator.conversations)

    @pytest.mark.parametrize(
        "subject, decoys",
        [
            ("Stock, week 12", ["Stock", "Stock, week 13"]),
            ("Re: stock:", ["Re: stock", "Re: stock::"]),
            ("[URGENT] ORS", ["[URGENT]", "[URGENT] ORS."]),
            ("[URGENT], ORS: 5% of_stock\\", ["[URGENT]", "ORS: 5% of_stock"]),
            (":::", [":", "::"]),
            ("Two\nlines, one subject", ["Two", "Two\nlines"]),
            ("a,b,c", ["a", "a,b"]),
        ],
    )
    def test_commas_colons_and_brackets(self, emulator, admin, subject, decoys):
        """2.42+ cuts filter values at commas and drops trailing colons: the look-up still
        finds exactly this subject, and none of the subjects it would be cut to."""
        for decoy in decoys:
            admin.send(subject=decoy, text="Same text", users=ALICE)
        uid = admin.send(subject=subject, text="Same text", users=ALICE, once=True)
        assert uid == admin.send(subject=subject, text="Same text", users=ALICE, once=True)
        assert len(decoys) + 1 == len(_posts(emulator))
        assert subject == emulator.conversations[uid].subject

    @pytest.mark.parametrize("clock, zone", [(2, 3), (-2, -5)], ids=["fast-east", "slow-west"])
    def test_a_timedelta_counts_by_dhis2s_clock(self, emulator, admin, clock, zone):
        """The server's clock is hours off this machine's and its zone is not UTC: a
        conversation 90 minutes old by the server's clock is within 2 h, not within 1 h."""
        emulator.clock_offset, emulator.utc_offset = clock * 3600.0, zone * 3600.0
        kwargs = {"subject": "Weekly reminder", "text": "Submit by Friday", "users": ALICE}
        old = admin.send(**kwargs)
        emulator.backdate(old, 90 * 60)
        assert old == admin.send(**kwargs, once=datetime.timedelta(hours=2))
        new = admin.send(**kwargs, once=datetime.timedelta(hours=1))
        assert new != old and 2 == len(_posts(emulator))
        assert new == admin.send(**kwargs, once=datetime.timedelta(minutes=1))

    @pytest.mark.parametrize("clock, zone", [(2, 3), (-2, -5)], ids=["fast-east", "slow-west"])
    def test_an_aware_datetime_is_that_moment(self, emulator, admin, clock, zone):
        emulator.clock_offset, emulator.utc_offset = clock * 3600.0, zone * 3600.0
        kwargs = {"subject": "Weekly reminder", "text": "Submit by Friday", "users": ALICE}
        old = admin.send(**kwargs)
        emulator.backdate(old, 90 * 60)
        now = _server_now(emulator)
        assert old == admin.send(**kwargs, once=now - datetime.timedelta(hours=2))
        east = datetime.timezone(datetime.timedelta(hours=7))  # any zone: the same moment
        new = admin.send(**kwargs, once=(now - datetime.timedelta(hours=1)).astimezone(east))
        assert new != old

    def test_a_naive_datetime_is_dhis2s_own_time(self, emulator, admin):
        """As the records' dates are: a conversation's own created counts it in."""
        emulator.clock_offset, emulator.utc_offset = 3600.0, 3 * 3600.0
        kwargs = {"subject": "s", "text": "t", "users": ALICE}
        uid = admin.send(**kwargs)
        created = admin.get_conversation(uid).created
        assert uid == admin.send(**kwargs, once=created)
        later = admin.send(**kwargs, once=created + datetime.timedelta(milliseconds=1))
        assert later != uid

    def test_the_caller_is_asked_once_per_messenger(self, emulator, admin):
        for i in range(3):
            admin.send(subject=f"s{i}", text="t", users=ALICE, once=True)
        admin.send_feedback(subject="f", text="t", once=True)
        assert 1 == len(emulator.requests("GET", "/api/me"))

    @pytest.mark.parametrize(
        "once, error",
        [
            ("yes", TypeError),
            (1, TypeError),
            (None, TypeError),
            (datetime.date(2024, 1, 1), TypeError),
            (datetime.timedelta(0), ValueError),
            (datetime.timedelta(seconds=-1), ValueError),
        ],
    )
    def test_bad_once_sends_nothing(self, emulator, admin, once, error):
        with pytest.raises(error, match="once"):
            admin.send(subject="s", text="t", users=ALICE, once=once)
        with pytest.raises(error, match="once"):
            admin.send_feedback(subject="s", text="t", once=once)
        assert [] == emulator.log

    def test_tickets_once(self, emulator, connect):
        """send_feedback(once=...) looks among the caller's tickets, on every release."""
        alice = connect("alice")
        alice.send(subject="Export fails", text="CSV", users=BOB)  # private: does not count
        uid = alice.send_feedback(subject="Export fails", text="CSV", once=True)
        assert uid == alice.send_feedback(subject="Export fails", text="CSV", once=True)
        assert uid == alice.send_feedback(
            subject="Export fails", text="CSV", once=datetime.timedelta(hours=1)
        )
        tickets = [c for c in emulator.conversations.values() if c.message_type == "TICKET"]
        assert [uid] == [c.uid for c in tickets]

    def test_a_long_history_is_paged_until_found(self, emulator, admin):
        """More than a page of conversations with the subject: the look-up goes on, by date."""
        first = admin.send(subject="Daily", text="Day 0", users=ALICE)
        emulator.backdate(first, 3600)
        for i in range(1, 56):
            admin.send(subject="Daily", text=f"Day {i}", users=ALICE)
        emulator.clear_log()
        assert first == admin.send(subject="Daily", text="Day 0", users=ALICE, once=True)
        assert 2 == len(emulator.requests("GET", API))


class TestFindSent:
    def test_finds_the_newest_the_caller_started(self, emulator, admin):
        older = admin.send(subject="s", text="t", users=ALICE)
        newer = admin.send(subject="s", text="t", users=BOB)
        found = admin.find_sent(subject="s", text="t")
        assert (newer, "s", "t") == (found.id, found.subject, found.messages[0].text)
        assert found.created is not None
        emulator.backdate(newer, 7200)
        assert older == admin.find_sent(subject="s", text="t", since=datetime.timedelta(hours=1)).id
        assert None is admin.find_sent(subject="s", text="other")
        assert None is admin.find_sent(subject="s", text="t", feedback=True)

    def test_bad_arguments(self, emulator, admin):
        for kwargs, error in [
            ({"subject": "", "text": "t"}, ValueError),
            ({"subject": "s", "text": None}, TypeError),
            ({"subject": "s", "text": "t", "since": True}, TypeError),
            ({"subject": "s", "text": "t", "since": datetime.timedelta(0)}, ValueError),
            ({"subject": "s", "text": "t", "feedback": "yes"}, TypeError),
        ]:
            with pytest.raises(error):
                admin.find_sent(**kwargs)
        assert [] == emulator.log


# A cron job: the weekly reminder to three districts, each subject naming its district.
CRON_SCRIPT = """
import datetime, os, signal
from dhis2_messages import Messenger

DISTRICTS = [("O6uvpzGd5pu", "Bo"), ("fdc6uOvgoji", "Bombali"), ("kJq2mPyFEHo", "Kenema")]
with Messenger.from_env() as m:
    for number, (district, name) in enumerate(DISTRICTS, 1):
        m.send(
            subject=f"Weekly reminder: {name}",
            text="Please submit the weekly report by Friday.",
            organisation_units=m.organisation_unit_subtree(district),
            once=datetime.timedelta(days=6),
        )
        if number == int(os.environ.get("DIE_AFTER", "0")):
            os.kill(os.getpid(), signal.SIGKILL)  # a reboot, a kill: no clean-up at all
"""


def test_a_cron_job_killed_half_way_and_run_again_sends_each_district_once(emulator):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHIS2_")}
    env.update({"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token})

    def run(**extra):
        return subprocess.run(
            [sys.executable, "-c", CRON_SCRIPT],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    killed = run(DIE_AFTER="2")
    assert -signal.SIGKILL == killed.returncode, killed.stderr
    assert 2 == len(emulator.conversations)
    again = run()
    assert 0 == again.returncode, again.stderr
    for district, name in [
        (BO_DISTRICT, "Bo"),
        ("fdc6uOvgoji", "Bombali"),
        ("kJq2mPyFEHo", "Kenema"),
    ]:
        users = {
            username
            for unit in emulator.org_units.values()
            if district in unit.path.split("/")
            for username in unit.members
        }
        assert users
        for username in users:
            theirs = [
                c
                for c in emulator.conversations.values()
                if username in c.participants and c.subject == f"Weekly reminder: {name}"
            ]
            assert 1 == len(theirs), (name, username)
    assert 3 == len(emulator.conversations)
    assert 3 == len(_posts(emulator))

"""The inbox: list_conversations, count_unread, and iter_conversations (the walk).

``list_conversations`` sends DHIS2's selector, order, paging, filters and search as given
(``TestListConversations``); ``count_unread`` is one request (``TestCountUnread``);
``iter_conversations`` asks for each page only when the caller reaches it
(``TestIterConversations``).  The walk survives the caller's own changes, keeps any order
and filter (``TestItsOwnChanges``, ``TestOrdersAndFilters``), asks for rows near what it
yields whatever the ties, commas or zones (``TestTiesCommasAndZones``), keeps what
arrives during it from pushing the others out and misses what others reply to, as the
README says (``TestArrivalsAndReplies``), and always ends, even against a pager that
never does.

Neighbours: mark_read and delete themselves in test_read_state.py; a page that fails in
test_transport.py; the table a page prints in test_cli.py and test_notebook.py; every bad
list argument also in test_security.py (``TestBadInput``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import types
import urllib.parse

import pytest

import tests.emulator as emulator_module
from dhis2_messages import (
    LIST_FIELDS,
    WALK_PAGE_SIZE,
    ApiError,
    Conversation,
    Messenger,
    Page,
    ResponseError,
    UserRef,
    before,
    since,
)
from tests.conftest import ADMIN, ALICE, API, DAVE, MiniServer, json_answer

# -- list_conversations, count_unread ----------------------------------------------------


class TestListConversations:
    def test_defaults_on_the_wire(self, emulator, admin):
        """The default selector, newest-first order, page 1 and 50 a page are sent."""
        admin.list_conversations()
        request = emulator.log[-1]
        assert ("GET", API) == (request.method, request.path)
        assert [LIST_FIELDS] == request.param("fields")
        assert ["lastMessage:desc"] == request.param("order")
        assert (["1"], ["50"]) == (request.param("page"), request.param("pageSize"))

    def test_records(self, emulator, admin):
        """The default fields fill the Conversation records."""
        before = dt.datetime.now() - dt.timedelta(minutes=1)
        uid = admin.send(subject="Mortality data", text="Reported January?", users=ALICE)
        page = admin.list_conversations()
        assert isinstance(page, Page)
        (conv,) = page
        assert uid == conv.id
        assert ("Mortality data", "PRIVATE", "NONE", "NONE") == (
            conv.subject,
            conv.message_type,
            conv.status,
            conv.priority,
        )
        assert (True, False, 1) == (conv.read, conv.follow_up, conv.message_count)
        assert UserRef(id=ADMIN, name="John Traore", username="admin") == conv.last_sender
        assert conv.assignee is None
        assert before < conv.last_message and conv.last_updated and conv.created
        assert () == conv.messages

    def test_newest_first(self, emulator, admin):
        """order=lastMessage:desc is sent; DHIS2's own default would order by uid."""
        uids = [admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(6)]
        assert uids[::-1] == [c.id for c in admin.list_conversations()]
        by_uid = admin.list_conversations(order=None)
        assert sorted(uids) == [c.id for c in by_uid]
        assert [] == emulator.log[-1].param("order")

    def test_paging(self, admin):
        """page and page_size map to DHIS2's pager."""
        for i in range(5):
            admin.send(subject=f"s{i}", text="t", users=ALICE)
        page = admin.list_conversations(page=3, page_size=2)
        assert (3, 3, 5, 2, 1) == (
            page.page,
            page.page_count,
            page.total,
            page.page_size,
            len(page),
        )

    def test_filters(self, emulator, admin, alice):
        """One filter or several (ANDed) reach DHIS2 as repeated filter params."""
        first = admin.send(subject="a", text="t", users=ALICE)
        second = admin.send(subject="b", text="t", users=ALICE)
        alice.mark_read(first)
        assert [second] == [c.id for c in alice.list_conversations(filter="read:eq:false")]
        both = alice.list_conversations(filter=["read:eq:true", "messageType:eq:PRIVATE"])
        assert [first] == [c.id for c in both]
        assert ["read:eq:true", "messageType:eq:PRIVATE"] == emulator.log[-1].param("filter")

    def test_query_searches_only_the_inbox(self, emulator, admin, connect):
        """query= becomes DHIS2's queryString: DHIS2's 'query' would list other users' conversations."""
        mine = admin.send(subject="Malaria cases week 12", text="t", users=ALICE)
        connect("bob").send(subject="Malaria stock", text="t", users=DAVE)
        found = admin.list_conversations(query="malar")
        assert [mine] == [c.id for c in found]
        request = emulator.log[-1]
        assert (["malar"], []) == (request.param("queryString"), request.param("query"))

    def test_query_operator(self, emulator, admin):
        admin.send(subject="Weekly report", text="t", users=ALICE)
        assert 1 == len(admin.list_conversations(query="eekly", query_operator="ilike"))
        assert 0 == len(admin.list_conversations(query="eekly"))  # token: word prefixes only
        assert ["ilike"] == emulator.log[-2].param("queryOperator")

    def test_custom_fields(self, admin):
        """A caller's own selector is sent as is."""
        uid = admin.send(subject="Hello", text="t", users=ALICE)
        (conv,) = admin.list_conversations(fields="id,subject")
        assert Conversation(id=uid, subject="Hello") == conv

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            ({"page": 0}, ValueError),
            ({"page_size": 0}, ValueError),
            ({"page": "2"}, TypeError),
            ({"page_size": 2.5}, TypeError),
            ({"filter": 5}, TypeError),
            ({"filter": "read"}, ValueError),
            ({"filter": ["read:eq:true", ""]}, ValueError),
            ({"query": 5}, TypeError),
            ({"query_operator": "ilike; drop"}, ValueError),
            ({"order": [None]}, TypeError),
        ],
    )
    def test_bad_input_sends_nothing(self, emulator, admin, kwargs, error):
        """Bad arguments raise before any request."""
        with pytest.raises(error):
            admin.list_conversations(**kwargs)
        if "page" not in kwargs:
            with pytest.raises(error):
                admin.iter_conversations(**kwargs)
        assert [] == emulator.log

    def test_unknown_filter_property(self, admin):
        """DHIS2's 400 for an unknown property is an ApiError with its text and code."""
        with pytest.raises(ApiError) as info:
            admin.list_conversations(filter="colour:eq:red")
        assert (400, "E1003") == (info.value.status_code, info.value.error_code)
        assert "Unknown path property: colour" in info.value.message


class TestDateFilters:
    """since() and before(): the common date cuts, in DHIS2's own date format."""

    def old_and_new(self, emulator):
        """Three conversations of May 2024 and two of today (the emulator's time is UTC)."""
        old = emulator.add_conversations(
            3, sender="bob", recipients=["alice"], created=dt.datetime(2024, 5, 1, 8, 0)
        )
        new = emulator.add_conversations(2, sender="bob", recipients=["alice"])
        return old, new

    def test_the_filters_dhis2_reads(self):
        # since: gt a millisecond before, which every release reads as "at or after"
        assert "lastMessage:gt:2024-04-30T23:59:59.999" == since(dt.date(2024, 5, 1))
        assert "created:lt:2024-05-01T08:30:00.000" == before(
            dt.datetime(2024, 5, 1, 8, 30), field="created"
        )
        # DHIS2 keeps milliseconds: a finer time is rounded up, so the cut stays exact
        assert "lastUpdated:gt:2024-05-01T08:30:00.000" == since(
            dt.datetime(2024, 5, 1, 8, 30, 0, 1), field="lastUpdated"
        )
        cut = dt.datetime.fromisoformat(before(dt.timedelta(days=30)).split(":", 2)[2])
        assert dt.timedelta(days=29) < dt.datetime.now() - cut < dt.timedelta(days=31)

    def test_since_includes_its_own_millisecond_on_every_release(self, emulator, alice):
        """Up to 2.41 DHIS2 filters the list in memory, where ``ge`` misses an equal date."""
        old, _ = self.old_and_new(emulator)
        exactly = dt.datetime(2024, 5, 1, 8, 1)  # the second one's own time
        assert set(old[1:]) <= {c.id for c in alice.iter_conversations(filter=since(exactly))}

    def test_old_and_new(self, emulator, alice):
        old, new = self.old_and_new(emulator)
        cut = dt.datetime(2024, 5, 1, 8, 1, 30)  # between the second and the third
        assert set(old[:2]) == {c.id for c in alice.list_conversations(filter=before(cut))}
        recent = alice.iter_conversations(filter=since(cut))
        assert set(old[2:] + new) == {c.id for c in recent}
        stale = [since(dt.date(2024, 5, 1)), before(dt.timedelta(days=1))]
        assert set(old) == {c.id for c in alice.iter_conversations(filter=stale)}
        assert "lastMessage:lt:2024-05-01T08:01:30.000" in emulator.log[0].param("filter")

    @pytest.mark.parametrize(
        "when, field, error",
        [
            (dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc), "lastMessage", ValueError),
            (dt.timedelta(days=-1), "lastMessage", ValueError),
            ("2024-05-01", "lastMessage", TypeError),
            (dt.date(2024, 5, 1), "lastmessage", ValueError),
            (dt.date(2024, 5, 1), None, TypeError),
        ],
    )
    def test_bad_input(self, when, field, error):
        with pytest.raises(error):
            since(when, field=field)
        with pytest.raises(error):
            before(when, field=field)


def test_a_page_is_indexed_and_sliced_like_its_conversations(emulator, alice):
    uids = emulator.add_conversations(3, sender="bob", recipients=["alice"])
    page = alice.list_conversations()
    assert (uids[2], uids[0]) == (page[0].id, page[-1].id)
    assert isinstance(page[0], Conversation)
    assert page.conversations[1:] == page[1:] and isinstance(page[1:], tuple)
    assert [c.id for c in page[::-1]] == uids
    with pytest.raises(IndexError):
        page[3]


class TestCountUnread:
    def test_count(self, emulator, admin, alice):
        """count_unread is one request whose pager total is the answer."""
        uids = [admin.send(subject=f"s{i}", text="t", users=ALICE) for i in range(3)]
        alice.mark_read(uids[0])
        emulator.clear_log()
        assert 2 == alice.count_unread()
        assert 0 == admin.count_unread()
        request = emulator.log[0]
        assert (["read:eq:false"], ["1"], ["id"]) == (
            request.param("filter"),
            request.param("pageSize"),
            request.param("fields"),
        )
        assert 2 == len(emulator.log)

    @pytest.mark.parametrize("total", [-7, None, "3", True])
    def test_a_total_that_is_not_a_count(self, emulator, alice, total):
        """A pager total below zero, or not a number, is no count (-7 was returned)."""
        pager = {"page": 1, "pageCount": 1, "pageSize": 1}
        if total is not None:
            pager["total"] = total
        emulator.inject(status=200, body={"pager": pager, "messageConversations": []})
        with pytest.raises(ResponseError, match="total") as info:
            alice.count_unread()
        assert "invalid" == info.value.kind


# -- iter_conversations ---------------------------------------------------------------


class TestIterConversations:
    def test_lazy(self, emulator, admin):
        """Page N+1 is requested only when the caller reaches it."""
        uids = set(emulator.add_conversations(7, sender="admin", recipients=["alice"]))
        walk = admin.iter_conversations(page_size=3)
        assert [] == emulator.log  # nothing before the first next()
        next(walk)
        assert 1 == len(emulator.log)
        rest = list(walk)
        assert uids == {c.id for c in rest} | {c.id for c in admin.list_conversations()}
        assert 6 == len(rest)
        # Each request is page 1 of what is left after the last lastMessage seen.
        assert [["1"], ["1"], ["1"]] == [r.param("page") for r in emulator.log[:3]]
        assert [[], ["lastMessage"], ["lastMessage"]] == [
            [f.split(":")[0] for f in r.param("filter")] for r in emulator.log[:3]
        ]
        assert 3 + 1 == len(emulator.log)

    def test_a_whole_walk_asks_the_walk_page_size(self, emulator, admin):
        """DHIS2 loads the caller's whole inbox for every page: a walk without page_size asks
        WALK_PAGE_SIZE a page (it asked 50, twenty times the inbox for 1,000); page_size
        stays the caller's choice, and list_conversations keeps 50."""
        emulator.add_conversations(3, sender="admin", recipients=["alice"])
        assert 3 == len(list(admin.iter_conversations()))
        assert 3 == len(list(admin.iter_conversations(page_size=2)))
        admin.list_conversations()
        sizes = [r.param("pageSize") for r in _gets(emulator)]
        assert [[str(WALK_PAGE_SIZE)], ["2"], ["3"], ["50"]] == sizes
        assert 1000 == WALK_PAGE_SIZE

    def test_exact_multiple(self, emulator, admin):
        """6 conversations at 3 a page: two requests, no empty third page."""
        emulator.add_conversations(6, sender="admin", recipients=["alice"])
        assert 6 == len(list(admin.iter_conversations(page_size=3)))
        assert 2 == len(emulator.log)

    def test_empty_inbox(self, emulator, alice):
        assert [] == list(alice.iter_conversations())
        assert 1 == len(emulator.log)

    def test_stops_on_pager_not_next_page(self, emulator, admin):
        """A nextPage link on the last page (pager says page == pageCount) does not cause another request."""
        body = {
            "pager": {
                "page": 1,
                "pageCount": 1,
                "total": 1,
                "pageSize": 50,
                "nextPage": emulator.url + API + "?page=2",
            },
            "messageConversations": [{"id": "ZjHHSjyyeJ2", "subject": "only"}],
        }
        emulator.inject(status=200, body=json.dumps(body), content_type="application/json")
        assert ["ZjHHSjyyeJ2"] == [c.id for c in admin.iter_conversations()]
        assert 1 == len(emulator.log)

    def test_filters_are_kept_on_every_page(self, emulator, admin):
        emulator.add_conversations(4, sender="admin", recipients=["alice"])
        list(
            admin.iter_conversations(
                filter="messageType:eq:PRIVATE", page_size=2, query="Conversation"
            )
        )
        for request in emulator.log:
            assert "messageType:eq:PRIVATE" == request.param("filter")[0]  # then the walk's bound
            assert ["Conversation"] == request.param("queryString")


# -- The walk: its own changes, any order and filter --------------------------------
# DHIS2 pages by offset: a loop that marks each conversation read (so it leaves
# ``read:eq:false``) or deletes it shifts every later page, and a walk by page
# numbers meets about half of them.  The walk resumes by the value of the first
# order instead; these tests count what it yields and what it asks.


def _unread(emulator, n, **options):
    """*n* conversations from bob to alice, unread for alice, newest last."""
    return emulator.add_conversations(n, sender="bob", recipients=["alice"], **options)


def _gets(emulator):
    return emulator.requests("GET", API)


def _walk(m, loop=None, **options):
    """The uids the walk yields, in order; *loop* runs on each, as the caller's loop body."""
    yielded = []
    for conv in m.iter_conversations(**options):
        yielded.append(conv.id)
        if loop is not None:
            loop(conv)
        assert len(yielded) <= 10_000  # bounded, whatever happens
    return yielded


def _same_last_message(emulator, uids):
    """Give every conversation of *uids* one lastMessage: ties in the sort key."""
    with emulator._lock:
        at = emulator.conversations[uids[0]].last_message
        for uid in uids:
            emulator.conversations[uid].last_message = at
        emulator._tick()  # the list cache goes with every change


class TestItsOwnChanges:
    def test_the_triage_loop_meets_every_unread_conversation_once(self, emulator, alice):
        """123 unread, each marked read in the loop: 123 yielded (63 when paging by number)."""
        uids = _unread(emulator, 123)
        yielded = _walk(
            alice, lambda c: alice.mark_read(c.id), filter="read:eq:false", page_size=50
        )
        assert (123, 123) == (len(yielded), len(set(yielded)))
        assert uids[::-1] == yielded  # newest first, as ordered
        assert 3 == len(_gets(emulator))  # 123 at 50 a page: as many requests as by number
        assert 0 == alice.count_unread()

    def test_the_delete_loop_meets_every_conversation_once(self, emulator, alice):
        uids = _unread(emulator, 123)
        yielded = _walk(alice, lambda c: alice.delete_conversation(c.id), page_size=20)
        assert sorted(uids) == sorted(yielded)
        assert 123 == len(yielded)
        assert len(_gets(emulator)) <= 7  # ceil(123 / 20): no more than by page numbers
        assert [] == list(alice.iter_conversations())

    def test_a_loop_that_changes_some_and_not_others(self, emulator, alice):
        """Every other conversation marked read: all 100 met once, the others stay unread."""
        _unread(emulator, 100)
        flip = iter(range(1000))
        yielded = _walk(
            alice,
            lambda c: next(flip) % 2 and alice.mark_read(c.id),
            filter="read:eq:false",
            page_size=10,
        )
        assert (100, 100) == (len(yielded), len(set(yielded)))
        assert 50 == alice.count_unread()
        assert 10 == len(_gets(emulator)) - 1  # the count is the extra request

    def test_new_conversations_during_the_walk_do_not_disturb_it(self, emulator, alice):
        """A conversation that arrives during the walk (newest, so before the bound) is not met;
        every one that was there is met once."""
        uids = _unread(emulator, 30)
        arrived = []

        def loop(conv):
            alice.mark_read(conv.id)
            if len(arrived) < 5:
                arrived.extend(_unread(emulator, 1))

        yielded = _walk(alice, loop, filter="read:eq:false", page_size=7)
        assert uids[::-1] == yielded
        assert 5 == alice.count_unread()  # the newcomers, untouched
        assert set(arrived).isdisjoint(yielded)

    def test_ties_in_the_sort_key_longer_than_a_page(self, emulator, alice):
        """120 conversations with one lastMessage, 50 a page, each marked read: 120 met once."""
        uids = _unread(emulator, 120)
        _same_last_message(emulator, uids)
        yielded = _walk(
            alice, lambda c: alice.mark_read(c.id), filter="read:eq:false", page_size=50
        )
        assert (120, 120) == (len(yielded), len(set(yielded)))
        assert set(uids) == set(yielded)
        assert len(_gets(emulator)) <= 3

    def test_ties_at_every_page_boundary(self, emulator, alice):
        """Pairs of equal lastMessage, 5 a page: every boundary cuts a pair."""
        uids = _unread(emulator, 40)
        for pair in zip(uids[::2], uids[1::2]):
            _same_last_message(emulator, list(pair))
        yielded = _walk(alice, page_size=5)
        assert (40, 40) == (len(yielded), len(set(yielded)))
        assert 8 == len(_gets(emulator))
        sizes = [r.param("pageSize") for r in _gets(emulator)]
        assert ["5"] == sizes[0] and all(s in (["6"], ["7"]) for s in sizes[1:])


class TestOrdersAndFilters:
    @pytest.mark.parametrize(
        "order, key",
        [
            ("subject:asc", lambda c: c.subject),
            ("subject:desc", lambda c: c.subject),
            ("created:desc", lambda c: c.created),
            ("created:asc", lambda c: c.created),
            ("lastUpdated:asc", lambda c: c.last_updated),
            ("messageCount:desc", lambda c: c.message_count),
            ("messageCount:asc,created:desc", lambda c: c.message_count),
        ],
    )
    def test_the_callers_order_is_kept_through_its_own_changes(self, emulator, alice, order, key):
        for i, priority in zip(range(45), ["LOW", "HIGH", "MEDIUM"] * 15):
            emulator.add_conversation(
                sender="bob",
                recipients="alice",
                subject=f"Report {i % 9}",  # ties in the subject too
                priority=priority,
                replies=i % 4,
            )
        met = []
        yielded = _walk(
            alice,
            lambda c: met.append(c) or alice.mark_read(c.id),
            filter="read:eq:false",
            order=order,
            page_size=8,
        )
        assert (45, 45) == (len(yielded), len(set(yielded)))
        values = [key(c) for c in met]
        assert values == sorted(values, reverse=order.split(",")[0].endswith("desc"))
        # ceil(45 / 8), and one to find the newest conversation where new ones sort among
        # the others
        assert len(_gets(emulator)) <= 6 + order.startswith(("subject", "messageCount"))

    def test_the_callers_filters_are_kept(self, emulator, alice):
        _unread(emulator, 12)
        tickets = [
            emulator.add_conversation(
                sender="alice", recipients=[], subject=f"T{i}", message_type="TICKET"
            )
            for i in range(3)
        ]
        yielded = _walk(alice, filter=["messageType:eq:PRIVATE", "read:eq:false"], page_size=5)
        assert 12 == len(yielded) and not set(tickets) & set(yielded)
        for request in _gets(emulator):
            assert ["messageType:eq:PRIVATE", "read:eq:false"] == request.param("filter")[:2]

    def test_own_fields_still_bring_the_order_key(self, emulator, alice):
        """fields="id" and order lastMessage: the walk asks for lastMessage too, to resume."""
        _unread(emulator, 9)
        yielded = _walk(
            alice, lambda c: alice.mark_read(c.id), filter="read:eq:false", fields="id", page_size=4
        )
        assert 9 == len(set(yielded))

    def test_subjects_with_commas_at_the_boundaries(self, emulator, alice):
        """2.42+ cuts a filter value at its first comma; such a value never becomes the bound."""
        for i in range(20):
            emulator.add_conversation(
                sender="bob", recipients="alice", subject=f"Week {i:02d}, district, report"
            )
        yielded = _walk(
            alice,
            lambda c: alice.mark_read(c.id),
            filter="read:eq:false",
            order="subject:asc",
            page_size=3,
        )
        assert (20, 20) == (len(yielded), len(set(yielded)))
        for request in _gets(emulator):
            assert all("," not in f for f in request.param("filter"))

    @pytest.mark.parametrize("order", ["read:asc", "priority:desc", "subject:iasc", None])
    def test_an_order_it_cannot_resume_pages_by_number(self, emulator, alice, order):
        """Booleans, enums (2.41's in-memory le/ge match no enum), case-insensitive or no order.
        One request first finds the newest conversation: what is created after it stays out,
        so arrivals do not shift the pages."""
        uids = _unread(emulator, 11)
        yielded = _walk(alice, order=order, page_size=4)
        assert 11 == len(set(yielded)) == len(yielded)
        newest, *pages = _gets(emulator)
        assert (["created:desc"], ["1"]) == (newest.param("order"), newest.param("pageSize"))
        assert [["1"], ["2"], ["3"]] == [r.param("page") for r in pages]
        created = emulator_module.format_date(emulator.conversations[uids[-1]].created + 1)
        assert all([f"created:lt:{created}"] == r.param("filter") for r in pages)
        assert all(r.param("order")[-1:] == ["id:asc"] for r in pages if order)


# -- Ties, commas and zones: rows asked stay near the conversations yielded ---------------
# DHIS2 pages by offset and filters by value.  Each request keeps what is left after the
# last value met; the conversations met with that value come back at its front, and when a
# value cannot be written in a filter (2.42+ cuts one at a comma) all met since the bound.
# That head was asked for again in full with every page: 1,000 conversations with one
# subject, one lastMessage, or subjects with commas, 15 a page, cost 34,170 rows in 67
# requests, and a timestamp with a zone was such a value too (3,150 rows for 300).


def _rows_asked(emulator):
    return sum(int(r.param("pageSize")[0]) for r in _gets(emulator))


def _zoned(monkeypatch, zone):
    """The emulator writes its dates with a zone, as a server may: 2024-05-02T10:11:12.345Z."""
    plain = emulator_module.format_date
    monkeypatch.setattr(emulator_module, "format_date", lambda ms: plain(ms) + zone)


class TestTiesCommasAndZones:
    @pytest.mark.parametrize(
        "subject, order",
        [
            (lambda i: "Weekly report", "subject:asc"),
            (lambda i: f"District report, week {i:03d}", "subject:asc"),
            (lambda i: f"District report, week {i:03d}", "subject:desc"),
            (lambda i: "s", "lastMessage:desc"),  # with one lastMessage, below
        ],
        ids=["one-subject", "commas-asc", "commas-desc", "one-lastMessage"],
    )
    def test_a_long_head_costs_rows_near_what_is_yielded(self, emulator, alice, subject, order):
        uids = [
            emulator.add_conversation(sender="bob", recipients="alice", subject=subject(i))
            for i in range(300)
        ]
        if order.startswith("lastMessage"):
            _same_last_message(emulator, uids)
        met = []
        yielded = _walk(alice, met.append, order=order, page_size=10)
        assert (300, 300) == (len(yielded), len(set(yielded)))
        subjects = [c.subject for c in met]
        assert subjects == sorted(subjects, reverse=order.endswith("desc"))
        assert _rows_asked(emulator) <= 2 * 300  # it was 4,650 (10 x (1 + ... + 30))
        assert len(_gets(emulator)) <= 30 + 2

    @pytest.mark.parametrize("loop", ["mark each read", "mark every other read"])
    def test_the_loops_own_changes_in_a_long_head(self, emulator, alice, loop):
        """With one lastMessage for 300 (up to 2.41 an equal date matches no le or ge), the
        loop marking each, or every other, conversation read: all met once."""
        uids = _unread(emulator, 300)
        _same_last_message(emulator, uids)
        every = 1 if loop == "mark each read" else 2
        yielded = _walk(
            alice,
            lambda c: uids.index(c.id) % every or alice.mark_read(c.id),
            filter="read:eq:false",
            page_size=10,
        )
        assert sorted(uids) == sorted(yielded)
        assert 300 - 300 // every == alice.count_unread()
        assert _rows_asked(emulator) <= 2 * 300

    @pytest.mark.parametrize("zone", ["Z", "+00:00"])
    def test_timestamps_with_a_zone(self, emulator, alice, monkeypatch, zone):
        """The bound carries the zone back, and DHIS2 reads it (3,150 rows were asked for 300)."""
        uids = _unread(emulator, 300)
        _zoned(monkeypatch, zone)
        yielded = _walk(
            alice, lambda c: alice.mark_read(c.id), filter="read:eq:false", page_size=15
        )
        assert uids[::-1] == yielded
        assert _rows_asked(emulator) <= 300 + 2 * 20
        bounds = [r.param("filter")[-1] for r in _gets(emulator)[1:]]
        assert all(re.fullmatch(r"lastMessage:lt:[-0-9T:.]+\+00:00", b) for b in bounds)

    def test_a_bound_one_step_past_the_value(self, emulator, alice):
        """lastMessage:lt:<one millisecond later>: up to 2.41 DHIS2 filters the list in memory,
        where lastMessage:le:<a value> leaves out the conversations that have it."""
        uids = _unread(emulator, 8)
        _same_last_message(emulator, uids[2:6])  # ties across the first boundary
        yielded = _walk(alice, page_size=3)
        assert sorted(uids) == sorted(yielded)
        first = emulator.conversations[yielded[2]].last_message
        bound = _gets(emulator)[1].param("filter")
        assert [f"lastMessage:lt:{emulator_module.format_date(first + 1)}"] == bound

    def test_equal_values_come_in_one_order(self, emulator, alice):
        """DHIS2 in its database (2.42+) may return equal values in any order from one request
        to the next: the walk orders them by uid too, and pages by offset among them."""
        _unread(emulator, 5)
        list(alice.iter_conversations(order="subject:asc", page_size=2))
        assert all(["subject:asc", "id:asc"] == r.param("order") for r in _gets(emulator)[1:])
        emulator.clear_log()
        list(alice.iter_conversations(order="id:desc", page_size=2))
        assert all(["id:desc"] == r.param("order") for r in _gets(emulator)[1:])


# -- Conversations that arrive or change during the walk ----------------------------------


class TestArrivalsAndReplies:
    @pytest.mark.parametrize("delete", [False, True], ids=["read-only", "deleting-every-third"])
    def test_arrivals_among_the_others_do_not_end_the_walk_early(self, emulator, alice, delete):
        """subject:asc, 100 conversations, 60 arriving during the walk with subjects among them:
        every one of the 100 is met once (19 were missed, 16 when deleting every third: the
        arrivals used up the pages the first total allowed).  One request first finds the
        newest conversation; what is created after it stays out of the walk."""
        uids = [
            emulator.add_conversation(sender="bob", recipients="alice", subject=f"S{i * 10:04d}")
            for i in range(100)
        ]
        order = iter(range(1000))
        arrived = []

        def loop(conv):
            if delete and next(order) % 3 == 2:
                alice.delete_conversation(conv.id)
            if len(arrived) < 60:
                subject = f"S{(len(arrived) * 37) % 1000:04d}x"
                arrived.append(
                    emulator.add_conversation(sender="bob", recipients="alice", subject=subject)
                )

        yielded = _walk(alice, loop, order="subject:asc", page_size=10)
        assert sorted(uids) == sorted(yielded)
        assert 60 == len(arrived)
        assert len(_gets(emulator)) <= 1 + 10 + 1

    def test_replies_during_a_newest_first_walk_are_missed(self, emulator, alice):
        """A reply makes a conversation the newest, before the walk's bound: a default-order
        walk does not meet it (api.md allows it; the README says so).  Every conversation
        nobody touched is met once."""
        uids = _unread(emulator, 100)
        replied = []

        def loop(conv):
            if len(replied) < 20:
                target = uids[len(replied) * 3]  # the oldest ones, not met yet
                emulator_reply(emulator, target)
                replied.append(target)

        yielded = _walk(alice, loop, page_size=10)
        assert set(uids) - set(replied) <= set(yielded)
        assert not set(replied) & set(yielded)
        assert len(yielded) == len(set(yielded))


def emulator_reply(emulator, uid):
    """bob replies to conversation *uid*, as another user would during the walk."""
    with emulator._lock:
        conv = emulator.conversations[uid]
        emulator._append(conv, emulator.user("bob"), "Any news?", user_agent="emulator")
        emulator._mark_replied(conv, emulator.user("bob"), False)


# -- A walk always ends ------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["new-every-page", "same-again"])
def pager(request):
    """A list endpoint whose pager always announces one more page, with new uids each time
    (or, with ``repeat``, the same two conversations again): its URL, and what it did
    (``served``: the query of each request; ``repeat``)."""
    repeat, served = request.param, []

    def handler(conn, server):
        line, _ = server.request
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(line.split(" ")[1]).query))
        n = len(served)
        served.append(query)
        page = int(query.get("page", "1"))
        base = 0 if repeat else 2 * n
        conn.sendall(
            json_answer(
                {
                    "pager": {"page": page, "pageCount": page + 1, "total": 6, "pageSize": 2},
                    "messageConversations": [
                        {
                            "id": f"Conv{base + i:07d}",
                            "lastMessage": f"2024-05-0{9 - n % 9}T10:00:00.000",
                        }
                        for i in range(2)
                    ],
                }
            )
        )

    with MiniServer(handler) as server:
        yield server.url, types.SimpleNamespace(served=served, repeat=repeat)


@pytest.mark.parametrize("order", ["lastMessage:desc", "read:asc"], ids=["by-value", "by-number"])
def test_a_pager_that_never_ends_cannot_hold_the_walk(pager, order):
    """total 6 at 2 a page: at most twice 3 + 1 pages (by number, one request more finds
    the newest conversation), and no conversation twice."""
    url, handler = pager
    with Messenger(url, auth=("alice", "pw"), retries=0) as m:
        yielded = [
            c.id for c in itertools.islice(m.iter_conversations(order=order, page_size=2), 100)
        ]
    assert len(yielded) == len(set(yielded))
    assert len(handler.served) <= 2 * (3 + 1) + (order == "read:asc")
    assert len(yielded) <= 16
    if handler.repeat:
        assert 2 == len(yielded)


@pytest.mark.parametrize("order", ["lastMessage:desc", "lastMessage:asc"])
def test_a_date_at_the_end_of_time_is_no_bound(order):
    """One step past 9999-12-31T23:59:59.999 (or before year 1) is no date: the walk goes on
    by offset, never an OverflowError."""
    edge = "9999-12-31T23:59:59.999" if order.endswith("desc") else "0001-01-01T00:00:00.000"
    rows = [{"id": f"Conv{i:07d}", "lastMessage": edge} for i in range(3)]

    def handler(conn, server):
        query = dict(
            urllib.parse.parse_qsl(urllib.parse.urlsplit(server.request[0].split(" ")[1]).query)
        )
        size, page = int(query["pageSize"]), int(query["page"])
        chosen = rows[(page - 1) * size : page * size]
        pager = {"page": page, "pageCount": -(-3 // size), "total": 3, "pageSize": size}
        conn.sendall(json_answer({"pager": pager, "messageConversations": chosen}))

    with MiniServer(handler) as server, Messenger(server.url, auth=("alice", "pw"), retries=0) as m:
        yielded = [c.id for c in m.iter_conversations(order=order, page_size=2)]
    assert [r["id"] for r in rows] == yielded
    assert all("filter" not in line for line, _ in server.requests)


def test_on_page_sees_each_page_with_what_is_about_to_be_yielded(emulator, alice):
    """The command line streams rows and shows progress from _iter_pages' on_page."""
    uids = _unread(emulator, 12)
    _same_last_message(emulator, uids[4:8])  # ties across the first boundary
    pages = []
    params = [("fields", "id,lastMessage"), ("order", "lastMessage:desc"), ("pageSize", "5")]
    yielded = [c.id for c in alice._iter_pages(params, on_page=pages.append)]
    assert yielded == [c.id for page in pages for c in page]
    assert (12, 12) == (len(yielded), len(set(yielded)))
    assert [12, 12, 12] == [page.total for page in pages[:1]] * 3
    assert 3 == len(pages) == len(_gets(emulator))

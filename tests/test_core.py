"""The inbox, a thread, send and reply: Messenger over real HTTP against the emulator."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dhis2_messages import (
    LIST_FIELDS,
    THREAD_FIELDS,
    ApiError,
    ConflictError,
    Conversation,
    NotFoundError,
    Page,
    PermissionDenied,
    ResponseError,
    UserRef,
)
from tests.conftest import (
    ADMIN,
    ALICE,
    API,
    BO_DISTRICT,
    BOB,
    DAVE,
    REPORTERS,
    UNKNOWN,
    at_least,
)


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

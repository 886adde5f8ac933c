"""Read state: mark_read and mark_unread, follow_up and unfollow_up, delete_conversation(s).

Each takes any number of uids (and Conversations, Pages), read lazily and sent in as many
requests as the limits of real deployments need (``TestAnySize``), for the caller or, with
``user=``, another participant.  Read state lists only what changed, follow-up every
conversation found, delete what left the inbox; uids no longer in the caller's inbox are
left out on 2.41.3 and later, which refuse a whole request for one of them
(``TestStaleUids``).

Neighbours: the same calls retried after a lost answer and over every fault in
test_transport.py; ``get_conversation(mark_read=True)`` in test_thread.py; the walk that
marks or deletes as it goes in test_inbox.py; the mark-read, follow-up and delete commands
in test_cli.py.
"""

from __future__ import annotations

import json

import pytest

from dhis2_messages import ApiError, Conversation, Messenger, NotFoundError, Page, PermissionDenied
from tests.conftest import ALICE, API, BOB, DAVE, UNKNOWN, participants
from tests.emulator import MAX_HEAD_SIZE, json_response

#: What a bulk request's line and headers keep under: Tomcat's 8,192 bytes less 1 KiB
#: for what proxies add on the way.
BUDGET = MAX_HEAD_SIZE - 1024
CALLS = {
    "mark_read": lambda m, uids, **kw: m.mark_read(uids, **kw),
    "mark_unread": lambda m, uids, **kw: m.mark_unread(uids, **kw),
    "follow_up": lambda m, uids, **kw: m.follow_up(uids, **kw),
    "unfollow_up": lambda m, uids, **kw: m.unfollow_up(uids, **kw),
    "delete_conversations": lambda m, uids, **kw: m.delete_conversations(uids, **kw),
}


def head_size(request):
    """A logged request's line and headers, as the emulator received them."""
    line = f"{request.method} {request.path}{'?' + request.query if request.query else ''} HTTP/1.1"
    lines = [line] + [f"{name}: {value}" for name, value in request.headers.items()]
    return sum(len(text.encode()) + 2 for text in lines) + 2


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
    def test_forbidden_for_another_user_names_the_uids(self, emulator, admin, connect):
        """Acting for another user, a conversation the caller takes no part in is a 403 for
        the whole request, as DHIS2 answers it, naming the uid DHIS2 did not name."""
        mine = admin.send(subject="s", text="t", users=[ALICE, DAVE])
        other = connect("bob").send(subject="s", text="t", users=ALICE)
        with pytest.raises(
            PermissionDenied, match="Not authorized to change read property of this conversation."
        ) as info:
            connect("dave").mark_read([mine, other], user=ALICE)
        assert (other,) == info.value.not_in_inbox
        assert other in info.value.hint and other in str(info.value)
        assert mine not in info.value.hint
        assert (False, False) == participants(emulator, mine)["alice"]

    @pytest.mark.parametrize("uids", ["", "bad", [ALICE, "bad"], None, 5, b"PhzytPW3g2J"])
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
        ) as info:
            connect("dave").unfollow_up(uid, user=ALICE)
        assert (uid,) == info.value.not_in_inbox
        assert [] == connect("dave").unfollow_up(uid)  # not in dave's inbox: nothing to change

    def test_bad_input(self, emulator, admin):
        with pytest.raises(ValueError):
            admin.follow_up(["x"])
        with pytest.raises(ValueError):
            admin.unfollow_up([ALICE, "x"])
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

    def test_deleting_again_removes_nothing(self, admin, alice):
        """Once removed, alice takes no part in it: 2.41.3+ refuses her (403) where older
        releases remove nothing; the call answers as those do, on every release."""
        uid = admin.send(subject="s", text="t", users=ALICE)
        assert [uid] == alice.delete_conversations(uid)
        assert [] == alice.delete_conversations(uid)

    def test_delete_one_that_is_not_in_the_inbox_is_not_found(self, emulator, alice):
        """Another's conversation, or one removed before: NotFoundError on every release."""
        uid = emulator.add_conversation(sender="bob", recipients=["carol"], subject="Not alice's")
        with pytest.raises(NotFoundError, match="not in the inbox"):
            alice.delete_conversation(uid)
        assert {"bob", "carol"} == set(participants(emulator, uid))

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
            connect("dave").delete_conversations(uid, user=ALICE)
        assert [] == connect("dave").delete_conversations(uid)
        with pytest.raises(NotFoundError, match="not in the inbox"):
            connect("dave").delete_conversation(uid)
        with pytest.raises(NotFoundError):
            admin.delete_conversation(UNKNOWN)

    def test_bulk_is_one_request(self, emulator, alice):
        """400 uids fit one request line with room to spare."""
        uids = emulator.add_conversations(400, sender="admin", recipients=["alice"])
        emulator.clear_log()
        assert uids == alice.delete_conversations(uids)
        assert 1 == len(emulator.log)

    def test_bad_input(self, emulator, admin):
        for call in (
            lambda: admin.delete_conversations(["x"]),
            lambda: admin.delete_conversation("x"),
            lambda: admin.delete_conversations(UNKNOWN, user="bob"),
        ):
            with pytest.raises(ValueError):
                call()
        assert [] == emulator.log


class TestAnySize:
    """Any number of uids, from any iterable, in as few requests as real deployments take."""

    @pytest.mark.parametrize("name", list(CALLS))
    @pytest.mark.parametrize(
        "empty",
        [[], (), lambda: iter([]), lambda: (u for u in []), "walk", lambda: Page()],
        ids=["list", "tuple", "iterator", "generator", "walk", "page"],
    )
    def test_nothing_to_do_is_no_request(self, emulator, admin, name, empty):
        """A filter that matches nothing in a quiet week is normal: [] and no request."""
        if empty == "walk":
            uids = (c.id for c in admin.iter_conversations(filter="subject:eq:nothing"))
        else:
            uids = empty() if callable(empty) else empty
        emulator.clear_log()
        assert [] == CALLS[name](admin, uids)
        assert [] == [r for r in emulator.log if r.method != "GET"]

    @pytest.mark.parametrize("name", list(CALLS))
    def test_a_malformed_uid_is_still_refused_before_any_request(self, emulator, admin, name):
        with pytest.raises(ValueError, match="'bad'"):
            CALLS[name](admin, [ALICE, "bad"])
        with pytest.raises(TypeError):
            CALLS[name](admin, 5)
        assert [] == emulator.log

    def test_delete_1200_in_requests_that_fit_8_kb(self, emulator, alice):
        """15 bytes a uid: about 450 fit a request line with the headers and 1 KiB to spare."""
        uids = emulator.add_conversations(1200, sender="admin", recipients=["alice"])
        emulator.clear_log()
        assert uids == alice.delete_conversations(uids)
        deletes = [r for r in emulator.log if r.method == "DELETE"]
        assert 3 == len(deletes)  # as few as fit: ceil(1200 / ~450)
        assert uids == [uid for r in deletes for uid in r.param("mc")]
        assert all(BUDGET - 15 < head_size(r) <= BUDGET for r in deletes[:-1])
        assert [] == emulator.refused
        assert 0 == len(alice.list_conversations())

    def test_what_the_request_carries_counts(self, emulator, connect):
        """user=, a long token and the session's cookies leave less room for uids."""
        admin = connect("admin")
        admin._session.cookies.set("proxy_session", "x" * 3000)
        uids = emulator.add_conversations(600, sender="alice", recipients=["bob"])
        emulator.clear_log()
        assert uids == admin.delete_conversations(uids, user=BOB)
        deletes = [r for r in emulator.log if r.method == "DELETE"]
        assert 3 == len(deletes)  # about 260 a request instead of 450
        assert all(head_size(r) <= BUDGET for r in deletes)
        assert [] == emulator.refused

    def test_flags_go_2000_a_request(self, emulator, alice):
        """A JSON array of 2,000 uids is 28 kB: DHIS2's time per conversation is the limit."""
        uids = emulator.add_conversations(4500, sender="admin", recipients=["alice"])
        emulator.clear_log()
        assert uids == alice.mark_read(uids)
        assert [2000, 2000, 500] == [len(r.json()) for r in emulator.log]
        assert uids == alice.follow_up(uids)
        assert 6 == len(emulator.log)

    def test_records_pages_and_duplicates(self, emulator, alice):
        """Conversations, Pages and lists of them give their ids; no uid twice, in order."""
        uids = emulator.add_conversations(6, sender="admin", recipients=["alice"])
        page = alice.list_conversations(order="created:asc", page_size=3)
        conv = Conversation(id=uids[3])
        given = [page, conv, uids[3], uids[4], page, uids[5], uids[0]]
        assert uids == alice.mark_read(given)
        assert uids == emulator.log[-1].json()
        assert uids[:3] == alice.mark_unread(page)
        assert [uids[3]] == alice.delete_conversations(conv)

    def test_uids_are_read_as_the_requests_go(self, emulator, alice):
        """A generator is not drained first: the first request goes before the rest is read."""
        uids = emulator.add_conversations(900, sender="admin", recipients=["alice"])
        emulator.clear_log()
        requests_when_read = []

        def lazily():
            for uid in uids:
                requests_when_read.append(len(emulator.log))
                yield uid

        assert uids == alice.delete_conversations(lazily())
        assert 0 == requests_when_read[0]
        assert 1 <= requests_when_read[-1]  # the last uids were read after the first request

    def test_delete_while_walking(self, emulator, alice):
        """The clean-up in one line: the walk meets every match once though each
        request removes conversations from under it."""
        old = emulator.add_conversations(
            700, sender="admin", recipients=["alice"], subject_prefix="Old"
        )
        keep = emulator.add_conversations(
            30, sender="admin", recipients=["alice"], subject_prefix="New"
        )
        removed = alice.delete_conversations(
            c.id for c in alice.iter_conversations(filter="subject:like:Old", fields="id")
        )
        assert set(old) == set(removed) and len(old) == len(removed)
        assert set(keep) == {c.id for c in alice.iter_conversations(fields="id")}

    def test_a_failed_request_says_what_was_done(self, emulator, alice):
        """The second request fails: the error is the one for that failure, with ``done``."""
        uids = emulator.add_conversations(1200, sender="admin", recipients=["alice"])

        def failing_second():
            for i, uid in enumerate(uids):
                if i == 600:  # read for the second request, after the first was answered
                    emulator.inject(
                        method="DELETE", status=500, body={"message": "Database is down"}
                    )
                yield uid

        with pytest.raises(ApiError) as info:
            alice.delete_conversations(failing_second())
        error = info.value
        first = next(r for r in emulator.log if r.method == "DELETE").param("mc")
        assert (500, "Database is down") == (error.status_code, error.message)
        assert first == error.done and len(first) > 400
        assert f"{len(first):,} of the " in str(error) and "were done" in str(error)
        assert not set(first) & {c.id for c in alice.iter_conversations(fields="id")}
        with pytest.raises(ApiError) as info:
            emulator.inject(method="POST", path="/read$", status=502, times=2)
            alice.mark_read(emulator.add_conversations(2, sender="admin", recipients=["alice"]))
        assert [] == info.value.done and "were done" not in str(info.value)

    def test_a_failed_request_of_a_list_says_of_how_many(self, emulator, alice, monkeypatch):
        """Given a list, the error counts against its length."""
        uids = emulator.add_conversations(4100, sender="admin", recipients=["alice"])
        handle, posts = emulator._handle, []

        def second_fails(req):
            posts.append(req)
            return json_response(503, {"message": "Busy"}) if len(posts) == 2 else handle(req)

        monkeypatch.setattr(emulator, "_handle", second_fails)
        with pytest.raises(ApiError) as info:
            alice.mark_read(uids)
        assert 503 == info.value.status_code
        assert uids[:2000] == info.value.done
        assert "2,000 of 4,100 were done" in str(info.value)

    def test_a_malformed_uid_further_on_says_what_was_done(self, emulator, alice):
        uids = emulator.add_conversations(2001, sender="admin", recipients=["alice"])
        with pytest.raises(ValueError, match="'bad'") as info:
            alice.mark_read(u for u in uids + ["bad"])
        assert uids[:2000] == info.value.done
        assert "2,000 of the" in str(info.value)

    def test_a_chunk_of_unknown_uids_after_known_ones_is_skipped(self, emulator, alice):
        """DHIS2 skips unknown uids within a request: across requests, so does the call."""
        known = emulator.add_conversations(2000, sender="admin", recipients=["alice"])
        unknown = [f"Zz{i:09d}" for i in range(2000)]
        assert known == alice.mark_read(known + unknown)
        with pytest.raises(NotFoundError) as info:
            alice.mark_read(unknown + known)  # the first request knows none: DHIS2's 404
        assert [] == info.value.done


class TestStaleUids:
    """A uid the caller no longer takes part in (removed before, a crashed run re-run)."""

    def test_the_rest_is_done(self, emulator, alice):
        """2.41.3+ refuses the whole request (403, nothing changed); the call finds which are
        not in the inbox with one list request and does the rest, as 2.40 does by itself."""
        uids = emulator.add_conversations(5, sender="admin", recipients=["alice", "bob"])
        alice.delete_conversations(uids[:2])  # a first run that crashed half-way
        emulator.clear_log()
        assert uids[2:] == alice.delete_conversations(uids)
        calls = [(r.method, r.param("filter")) for r in emulator.log]
        if emulator.quirks.participant_check:
            assert [
                ("DELETE", []),
                ("GET", ["id:in:[" + ",".join(uids) + "]"]),
                ("DELETE", []),
            ] == calls
            assert uids[2:] == emulator.log[-1].param("mc")
        else:
            assert [("DELETE", [])] == calls
        assert not set(uids) & {c.id for c in alice.iter_conversations(fields="id")}

    @pytest.mark.parametrize("name", ["mark_read", "mark_unread", "follow_up", "unfollow_up"])
    def test_flags_too(self, emulator, alice, connect, name):
        mine = emulator.add_conversations(3, sender="admin", recipients=["alice"])
        theirs = emulator.add_conversations(1, sender="bob", recipients=["dave"])
        for uid in mine + theirs:
            for p in emulator.conversations[uid].participants.values():
                p.read = p.follow_up = name in ("mark_unread", "unfollow_up")
        changed = CALLS[name](alice, mine[:2] + theirs + mine[2:])
        if "follow" in name and not emulator.quirks.participant_check:
            assert mine[:2] + theirs + mine[2:] == changed  # follow-up lists all DHIS2 found
        else:
            assert mine == changed
        assert {(name in ("mark_unread", "unfollow_up"))} != {
            participants(emulator, uid)["alice"][0 if "read" in name else 1] for uid in mine
        }
        assert participants(emulator, theirs[0])["dave"] in ((True, True), (False, False))

    def test_a_page_of_stale_uids_in_a_long_batch(self, emulator, alice):
        """Stale uids in the second request of three: only that request is looked up."""
        uids = emulator.add_conversations(1000, sender="admin", recipients=["alice", "bob"])
        stale = uids[500:510]
        alice.delete_conversations(stale)
        emulator.clear_log()
        assert [u for u in uids if u not in stale] == alice.delete_conversations(uids)
        gets = [r for r in emulator.log if r.method == "GET"]
        assert (1 if emulator.quirks.participant_check else 0) == len(gets)


@pytest.mark.dhis2_versions("2.40", "2.41.3", "2.42")
class TestThroughNginx:
    """Through a real nginx with its default limits (an 8 KB request line, 1 MiB bodies)
    and TLS, in front of the emulator's Tomcat limits."""

    def messenger(self, emulator, nginx, certificate, **options):
        user = emulator.user("alice")
        return Messenger(
            nginx(emulator.url, **options),
            auth=(user.username, user.password),
            verify=str(certificate[0]),
            retries=1,
        )

    def test_delete_and_mark_thousands(self, emulator, nginx, certificate):
        """600 uids in one request line is a 414 from nginx: split, they all pass."""
        uids = emulator.add_conversations(1300, sender="admin", recipients=["alice"])
        with self.messenger(emulator, nginx, certificate) as alice:
            assert uids[:700] == alice.mark_read(uids[:700])
            assert uids[700:] == alice.follow_up(uids[700:])
            assert uids == alice.delete_conversations(uids)
        assert 3 == len([r for r in emulator.log if r.method == "DELETE"])  # about 450 each
        assert [] == emulator.refused
        assert not any("alice" in emulator.conversations[u].participants for u in uids)

    def test_stale_uids_in_a_rerun(self, emulator, nginx, certificate):
        """The clean-up re-run after a crash: the uids removed by the first run are left
        out on 2.41.3+ (which refuses them), and skipped by 2.40 itself."""
        uids = emulator.add_conversations(700, sender="admin", recipients=["alice", "bob"])
        with self.messenger(emulator, nginx, certificate) as alice:
            assert uids[:300] == alice.delete_conversations(uids[:300])
            assert uids[300:] == alice.delete_conversations(uids)
            assert [] == alice.delete_conversations(uids)

    @pytest.mark.dhis2_versions("2.42")
    def test_a_proxy_timeout_after_the_work_is_a_lost_answer(self, emulator, nginx, certificate):
        """nginx gives up after proxy_read_timeout (504) while DHIS2 finishes: the retry
        meets the work done, and the call succeeds with what it can know changed."""
        uids = emulator.add_conversations(3, sender="admin", recipients=["alice"])
        emulator.inject(method="DELETE", delay=1.5, process=True)
        with self.messenger(emulator, nginx, certificate, read_timeout=1) as alice:
            assert [] == alice.delete_conversations(uids)
        assert not any("alice" in emulator.conversations[u].participants for u in uids)

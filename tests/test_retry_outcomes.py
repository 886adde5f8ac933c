"""A retry never turns work that was done into an error.

The emulator runs the handler and then drops the connection (``drop=True,
process=True``): DHIS2 did the work, the answer was lost, and the client's retry
meets a server on which the work is already done.
"""

from __future__ import annotations

import pytest

from dhis2_messages import NotFoundError, PermissionDenied
from tests.conftest import ALICE, UNKNOWN


@pytest.fixture
def retrying(connect, waits):
    """alice, with retries (and no real sleeping between them)."""
    return connect("alice", retries=2)


def _conversations(emulator, n=1):
    return [
        emulator.add_conversation(sender="bob", recipients="alice", subject=f"Retry {i}")
        for i in range(n)
    ]


def _lose_the_answer(emulator, method, path):
    emulator.inject(method=method, path=path, drop=True, process=True)


def _inbox(emulator, username="alice"):
    return {uid for uid, c in emulator.conversations.items() if username in c.participants}


class TestDelete:
    def test_delete_conversation_succeeds_when_the_lost_attempt_deleted_it(
        self, emulator, retrying
    ):
        """Before: PermissionDenied (2.41.3+: alice is no longer a participant) or NotFoundError."""
        (uid,) = _conversations(emulator)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert retrying.delete_conversation(uid) is None
        assert uid not in _inbox(emulator)
        assert 2 == sum(r.method == "DELETE" for r in emulator.log)

    def test_delete_conversations_lists_a_subset_when_the_lost_attempt_deleted_them(
        self, emulator, retrying
    ):
        uids = _conversations(emulator, 3)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        removed = retrying.delete_conversations(uids)
        assert set(removed) <= set(uids)
        assert not set(uids) & _inbox(emulator)

    def test_for_another_user_a_retry_lists_only_what_it_removed(self, emulator, connect, waits):
        admin = connect("admin", retries=2)
        uids = _conversations(emulator, 2)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert [] == admin.delete_conversations(uids[:1], user=ALICE)
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        assert admin.delete_conversation(uids[1], user=ALICE) is None
        assert not set(uids) & _inbox(emulator)

    def test_without_a_lost_answer_the_errors_stay(self, emulator, retrying):
        """Only a lost answer makes "not there" a success: a plain call still says so."""
        (uid,) = _conversations(emulator)
        retrying.delete_conversation(uid)
        with pytest.raises((NotFoundError, PermissionDenied)):
            retrying.delete_conversation(uid)
        with pytest.raises(NotFoundError):
            retrying.delete_conversations([UNKNOWN])

    def test_a_lost_answer_does_not_hide_an_error_the_retry_repeats(self, emulator, retrying):
        """Unknown uids are an error on every attempt, lost answer or not."""
        _lose_the_answer(emulator, "DELETE", r"/messageConversations$")
        with pytest.raises(NotFoundError):
            retrying.delete_conversations([UNKNOWN])

    def test_a_proxy_504_after_the_work_counts_as_a_lost_answer(self, emulator, retrying):
        """The proxy gave up (504) while DHIS2 finished: the retry finds the work done."""
        (uid,) = _conversations(emulator)
        emulator.inject(method="DELETE", path=r"/messageConversations$", status=504, process=True)
        assert retrying.delete_conversation(uid) is None
        assert uid not in _inbox(emulator)

    @pytest.mark.dhis2_versions(since="2.41.3")
    def test_a_503_is_not_a_lost_answer(self, emulator, retrying):
        """503 means DHIS2 did nothing: a 403 on the retry is the real answer."""
        uid = emulator.add_conversation(sender="bob", recipients="carol", subject="Not alice's")
        emulator.inject(method="DELETE", path=r"/messageConversations$", status=503)
        with pytest.raises(PermissionDenied):
            retrying.delete_conversation(uid)


class TestBulkFlags:
    @pytest.mark.parametrize(
        "call, path",
        [
            (lambda m, uids: m.mark_read(uids), "/read$"),
            (lambda m, uids: m.mark_unread(uids), "/unread$"),
            (lambda m, uids: m.follow_up(uids), "/followup$"),
            (lambda m, uids: m.unfollow_up(uids), "/unfollowup$"),
        ],
        ids=["mark_read", "mark_unread", "follow_up", "unfollow_up"],
    )
    def test_a_retried_bulk_call_succeeds_with_a_subset(self, emulator, retrying, call, path):
        uids = _conversations(emulator, 3)
        if "unread" in path:
            retrying.mark_read(uids)
        if "unfollowup" in path:
            retrying.follow_up(uids)
        _lose_the_answer(emulator, "POST", path)
        assert set(call(retrying, uids)) <= set(uids)
        assert 2 == sum(r.path.endswith(path[:-1]) for r in emulator.log[-2:])

    def test_mark_read_after_a_lost_answer_leaves_them_read(self, emulator, retrying):
        uids = _conversations(emulator, 2)
        _lose_the_answer(emulator, "POST", "/read$")
        assert [] == retrying.mark_read(uids)  # the lost attempt changed them: nothing to report
        assert all(emulator.conversations[u].participants["alice"].read for u in uids)

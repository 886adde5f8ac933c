# pyright: strict
"""A user's cron script: it must type-check cleanly against the installed package.

tools/check_types.py runs ``mypy --strict`` and pyright (strict) on it.  The
``assert_type`` calls fail when a checker sees ``Any`` instead of the real types.
"""

from __future__ import annotations

import datetime as dt
from typing import List, Optional, Tuple

from typing_extensions import assert_type

import dhis2_messages
from dhis2_messages import (
    ApiError,
    Conversation,
    ConversationRow,
    Messenger,
    NotFoundError,
    Page,
    UserRef,
    since,
)


def triage(m: Messenger) -> List[str]:
    page = m.list_conversations(filter="read:eq:false", page_size=20)
    assert_type(page, Page)
    subjects: List[str] = []
    for conv in page:
        assert_type(conv, Conversation)
        assert_type(conv.last_message, Optional[dt.datetime])
        assert_type(conv.last_sender, Optional[UserRef])
        subjects.append(conv.subject or "(no subject)")
    changed = m.mark_read([conv.id for conv in page])
    assert_type(changed, List[str])
    return subjects


def main() -> int:
    with Messenger.from_env(timeout=60) as m:
        assert_type(m, Messenger)
        assert_type(m.timeout, Tuple[float, float])
        assert_type(m.deadline, float)
        m.retries = 0  # settings may be changed; the next call uses them
        assert_type(m.count_unread(), int)
        uid = m.send(subject="Weekly report", text="Due Friday.", users=["PhzytPW3g2J"])
        assert_type(uid, str)
        try:
            thread = m.get_conversation(uid, mark_read=True)
        except NotFoundError as err:
            assert_type(err.status_code, int)
            return 1
        except ApiError as err:
            assert_type(err.error_code, Optional[str])
            return 1
        for message in thread.messages:
            print(message.created, message.sender.name if message.sender else "System")
        m.set_status(uid, "SOLVED")  # DHIS2's spelling, or lower case
        m.set_priority(uid, "high")
        page = m.list_conversations(filter=since(dt.timedelta(days=7)))
        assert_type(page[0], Conversation)
        assert_type(page[:2], Tuple[Conversation, ...])
        row = page[0].row()
        assert_type(row, ConversationRow)
        assert_type(row["last_message"], Optional[dt.datetime])
        assert_type(row["assignee_username"], Optional[str])
        print(triage(m), dhis2_messages.LIST_FIELDS, dhis2_messages.STATUSES)
    return 0

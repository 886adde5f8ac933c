"""Records parse DHIS2's JSON leniently: pure tests, no server.

Neighbours: the property-based parsing tests in test_records_properties.py; how a
record reads in a terminal or a notebook in test_notebook.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import pickle

import attrs
import pytest

from dhis2_messages import (
    ApiError,
    Attachment,
    ConflictError,
    Conversation,
    Message,
    OrgUnitRef,
    Page,
    Participant,
    ResponseError,
    UserGroupRef,
    UserRef,
)

# One conversation as GET /api/messageConversations/{uid}?fields=... renders it:
# nulls omitted, dates without a zone (DHIS2 serialises its MessageConversation,
# dhis-2/dhis-api/src/main/java/org/hisp/dhis/message/MessageConversation.java,
# through the field filter), plus a key the client does not model.
THREAD = {
    "id": "ZjHHSjyyeJ2",
    "subject": "Mortality data",
    "messageType": "PRIVATE",
    "status": "NONE",
    "priority": "NONE",
    "read": True,
    "followUp": False,
    "messageCount": 2,
    "lastMessage": "2024-05-02T10:11:12.345",
    "lastSender": {"id": "xE7jOejl9FI", "displayName": "John Traore"},
    "messages": [
        {
            "id": "Ab1cdefghij",
            "text": "Have you reported?",
            "internal": False,
            "created": "2024-05-01T09:00:00.000",
            "sender": {"id": "xE7jOejl9FI", "displayName": "John Traore"},
            "attachments": [],
            "metaData": "User-agent: curl",
        },
        {
            "id": "Bc2defghijk",
            "text": "Yes",
            "internal": False,
            "created": "2024-05-02T10:11:12.345",
            "sender": {"id": "PhzytPW3g2J", "displayName": "Alice Banda", "username": "alice"},
            "attachments": [
                {
                    "id": "fTpI4GOmujz",
                    "name": "report.pdf",
                    "contentType": "application/pdf",
                    "contentLength": 1234,
                }
            ],
        },
    ],
    "userMessages": [
        {
            "key": "2b7c...",
            "read": True,
            "followUp": False,
            "user": {
                "id": "xE7jOejl9FI",
                "code": None,
                "name": "John Traore",
                "displayName": "John Traore",
                "username": "admin",
            },
        },
    ],
    "someFieldWeDoNotModel": {"nested": [1, 2, 3]},
}


class TestConversation:
    def test_thread_parses(self):
        """A whole thread as DHIS2 renders it becomes records with naive datetimes."""
        conv = Conversation.from_json(THREAD)
        assert "ZjHHSjyyeJ2" == conv.id
        assert "Mortality data" == conv.subject
        assert ("PRIVATE", "NONE", "NONE") == (conv.message_type, conv.status, conv.priority)
        assert (True, False, 2) == (conv.read, conv.follow_up, conv.message_count)
        assert dt.datetime(2024, 5, 2, 10, 11, 12, 345000) == conv.last_message
        assert conv.last_message.tzinfo is None
        assert UserRef(id="xE7jOejl9FI", name="John Traore") == conv.last_sender
        assert ["Have you reported?", "Yes"] == [m.text for m in conv.messages]
        second = conv.messages[1]
        assert "alice" == second.sender.username
        assert (
            Attachment(
                id="fTpI4GOmujz",
                name="report.pdf",
                content_type="application/pdf",
                content_length=1234,
            ),
        ) == second.attachments
        assert (
            Participant(
                user=UserRef(id="xE7jOejl9FI", name="John Traore", username="admin"),
                read=True,
                follow_up=False,
            ),
        ) == conv.participants

    def test_default_list_shape(self):
        """DHIS2's default list fields (id, displayName) give a subject and Nones."""
        conv = Conversation.from_json({"id": "ZjHHSjyyeJ2", "displayName": "Hello"})
        assert Conversation(id="ZjHHSjyyeJ2", subject="Hello") == conv
        assert (None, None, ()) == (conv.read, conv.assignee, conv.messages)

    def test_unknown_enum_values_are_kept(self):
        """A message type or status this library does not know stays a string."""
        conv = Conversation.from_json(
            {"id": "a", "messageType": "CARRIER_PIGEON", "status": "ESCALATED"}
        )
        assert ("CARRIER_PIGEON", "ESCALATED") == (conv.message_type, conv.status)

    def test_system_message_has_no_sender(self):
        """A system message (no sender key) parses with sender None."""
        message = Message.from_json({"id": "Ab1cdefghij", "text": "Data set completed"})
        assert message.sender is None

    def test_star_fields_messages_are_ids_only(self):
        """fields=* renders messages as {id}: they parse with text None."""
        conv = Conversation.from_json({"id": "ZjHHSjyyeJ2", "messages": [{"id": "Ab1cdefghij"}]})
        assert (Message(id="Ab1cdefghij"),) == conv.messages

    @pytest.mark.parametrize(
        "value, expected",
        [
            ("2024-05-02T10:11:12.345", dt.datetime(2024, 5, 2, 10, 11, 12, 345000)),
            ("2024-05-02T10:11:12", dt.datetime(2024, 5, 2, 10, 11, 12)),
            ("2024-05-02", dt.datetime(2024, 5, 2)),
            (
                "2024-05-02T10:11:12.345Z",
                dt.datetime(2024, 5, 2, 10, 11, 12, 345000, tzinfo=dt.timezone.utc),
            ),
            (
                "2024-05-02T10:11:12.345+0200",
                dt.datetime(
                    2024, 5, 2, 10, 11, 12, 345000, tzinfo=dt.timezone(dt.timedelta(hours=2))
                ),
            ),
        ],
    )
    def test_timestamps(self, value, expected):
        """DHIS2's zone-less timestamps are naive; a zone, when sent, is kept."""
        assert expected == Conversation.from_json({"id": "a", "lastUpdated": value}).last_updated

    @pytest.mark.parametrize(
        "data",
        [
            None,
            [],
            "x",
            {"subject": "no id"},
            {"id": 5},
            {"id": "a", "read": "yes"},
            {"id": "a", "messageCount": "2"},
            {"id": "a", "messageCount": True},
            {"id": "a", "lastMessage": "yesterday"},
            {"id": "a", "lastMessage": "2024-13-45T00:00:00"},
            {"id": "a", "messages": {"id": "b"}},
            {"id": "a", "messages": [{"text": "no id"}]},
            {"id": "a", "lastSender": "xE7jOejl9FI"},
            {"id": "a", "userMessages": [{"read": True}]},
        ],
    )
    def test_garbage_is_a_response_error(self, data):
        """Wrong types or a missing id raise ResponseError, nothing else."""
        with pytest.raises(ResponseError):
            Conversation.from_json(data)

    def test_records_are_frozen_and_hashable(self):
        """Records are values: frozen, hashable, picklable, evolvable."""
        conv = Conversation.from_json(THREAD)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            conv.subject = "x"
        assert conv == pickle.loads(pickle.dumps(conv))
        assert hash(conv) == hash(Conversation.from_json(THREAD))
        assert "New" == attrs.evolve(conv, subject="New").subject

    def test_asdict(self):
        """Records convert to plain dicts (for pandas)."""
        row = attrs.asdict(Conversation.from_json(THREAD))
        assert "Mortality data" == row["subject"]
        assert "John Traore" == row["last_sender"]["name"]


class TestPage:
    def test_pager(self):
        """The pager envelope fills page, page_count, total and page_size."""
        page = Page.from_json(
            {
                "pager": {
                    "page": 2,
                    "total": 120,
                    "pageSize": 50,
                    "pageCount": 3,
                    "nextPage": "https://x/api/messageConversations?page=3",
                },
                "messageConversations": [{"id": "ZjHHSjyyeJ2"}, {"id": "Bc2defghijk"}],
            }
        )
        assert (2, 3, 120, 50) == (page.page, page.page_count, page.total, page.page_size)
        assert ["ZjHHSjyyeJ2", "Bc2defghijk"] == [c.id for c in page]
        assert 2 == len(page)

    def test_paging_false(self):
        """Without a pager (paging=false) everything is one page."""
        page = Page.from_json({"messageConversations": [{"id": "ZjHHSjyyeJ2"}]})
        assert (1, 1, 1) == (page.page, page.page_count, page.total)

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"pager": {}},
            {"messageConversations": [], "pager": []},
            {"messageConversations": [], "pager": {"page": "1"}},
        ],
    )
    def test_bad_pages(self, data):
        """A page without the list, or with a malformed pager, is a ResponseError."""
        with pytest.raises(ResponseError):
            Page.from_json(data)


JOHN = {"id": "xE7jOejl9FI", "displayName": "John Traore", "username": "admin"}
ALICE = {"id": "PhzytPW3g2J", "displayName": "Alice Banda", "username": "alice"}


def thread(senders):
    """A thread with one message per sender, each sender a copy: equal, never the same dict."""
    return {
        "id": "ZjHHSjyyeJ2",
        "messages": [
            {"id": f"Msg{i:08d}", "text": "t", "sender": copy.copy(sender)}
            for i, sender in enumerate(senders)
        ],
    }


class TestSharedUsers:
    """Within one response, equal users become one UserRef; nothing is shared beyond it."""

    def test_a_thread_holds_one_record_per_sender(self):
        """Senders, participants and lastSender share records, each equal to its own parse."""
        data = thread([JOHN, ALICE] * 50)
        data["lastSender"] = dict(ALICE)
        data["userMessages"] = [{"read": True, "user": dict(JOHN)}]
        conv = Conversation.from_json(data)
        senders = [m.sender for m in conv.messages]
        assert 2 == len({id(s) for s in senders})
        assert [UserRef.from_json(JOHN), UserRef.from_json(ALICE)] * 50 == senders
        assert conv.last_sender is conv.messages[1].sender
        assert conv.participants[0].user is conv.messages[0].sender

    def test_a_page_shares_across_its_conversations(self):
        page = Page.from_json(
            {
                "messageConversations": [
                    {"id": f"Conv{i:07d}", "lastSender": dict(JOHN)} for i in range(3)
                ]
            }
        )
        assert page.conversations[0].last_sender is page.conversations[2].last_sender

    @pytest.mark.parametrize(
        "other",
        [
            {"id": "xE7jOejl9FI", "displayName": "John T.", "username": "admin"},
            {"id": "xE7jOejl9FI", "displayName": "John Traore"},
            {"id": "Zz0000000Zz", "displayName": "John Traore", "username": "admin"},
            {"id": "xE7jOejl9FI", "name": "Someone Else", "username": "admin"},
        ],
    )
    def test_users_that_differ_in_any_field_stay_apart(self, other):
        conv = Conversation.from_json(thread([JOHN, other]))
        assert [UserRef.from_json(JOHN), UserRef.from_json(other)] == [
            m.sender for m in conv.messages
        ]

    def test_name_is_the_fallback_key(self):
        """Without displayName, name gives UserRef.name, also for a second, equal user."""
        named = {"id": "xE7jOejl9FI", "name": "John Traore"}
        conv = Conversation.from_json(thread([named, JOHN, named]))
        assert ["John Traore"] * 3 == [m.sender.name for m in conv.messages]
        assert [None, "admin", None] == [m.sender.username for m in conv.messages]

    @pytest.mark.parametrize(
        "bad",
        [
            {"id": "xE7jOejl9FI", "displayName": ["John"]},
            {"id": "xE7jOejl9FI", "displayName": 5},
            {"id": {"uid": "x"}},
            "xE7jOejl9FI",
        ],
    )
    def test_a_bad_user_after_a_good_one_is_a_response_error(self, bad):
        """An unhashable or wrongly typed user is a ResponseError, never a TypeError or a cache hit."""
        with pytest.raises(ResponseError):
            Conversation.from_json(thread([JOHN, bad]))

    def test_nothing_is_shared_between_responses(self):
        first, second = (Conversation.from_json(thread([JOHN])) for _ in range(2))
        assert first.messages[0].sender == second.messages[0].sender
        assert first.messages[0].sender is not second.messages[0].sender


class TestErrors:
    def test_api_error_pickles(self):
        """ApiError keeps its fields through pickle (multiprocessing, caching)."""
        err = ConflictError(409, "No recipients selected.", "E1004", {"status": "ERROR"})
        copy = pickle.loads(pickle.dumps(err))
        assert (409, "No recipients selected.", "E1004") == (
            copy.status_code,
            copy.message,
            copy.error_code,
        )
        assert isinstance(copy, ApiError)
        assert "HTTP 409 [E1004]: No recipients selected." == str(copy)


# -- Every key of every record is checked ---------------------------------------------
# Written out here, from the JSON DHIS2 sends (dhis-api's MessageConversation, Message and
# UserMessage), not read from the module: a key
# whose check is dropped from a record's table fails its row below.

_ID = {"id": "AbCdEfGhIjK"}
_OBJECT = {"id": "xE7jOejl9FI"}
STRING, BOOLEAN, INTEGER, TIMESTAMP, RECORD, LIST = (
    [5, ["x"], {"a": 1}, True],
    ["yes", 1, 0],
    ["2", True, 2.5],
    [5, "yesterday", "2024-13-45T00:00:00"],
    ["xE7jOejl9FI", ["x"], 5],
    [{"id": "b"}, "x", 5],
)
RECORD_KEYS = {
    UserRef: (
        _OBJECT,
        {"id": STRING, "displayName": STRING, "name": STRING, "username": STRING},
    ),
    Attachment: (
        _ID,
        {"id": STRING, "name": STRING, "contentType": STRING, "contentLength": INTEGER},
    ),
    Message: (
        _ID,
        {
            "id": STRING,
            "text": STRING,
            "sender": RECORD,
            "created": TIMESTAMP,
            "internal": BOOLEAN,
            "attachments": LIST,
        },
    ),
    Participant: (
        {"user": _OBJECT},
        {"user": RECORD, "read": BOOLEAN, "followUp": BOOLEAN},
    ),
    Conversation: (
        _ID,
        {
            "id": STRING,
            "subject": STRING,
            "displayName": STRING,
            "messageType": STRING,
            "status": STRING,
            "priority": STRING,
            "read": BOOLEAN,
            "followUp": BOOLEAN,
            "messageCount": INTEGER,
            "lastMessage": TIMESTAMP,
            "lastUpdated": TIMESTAMP,
            "created": TIMESTAMP,
            "lastSender": RECORD,
            "assignee": RECORD,
            "messages": LIST,
            "userMessages": LIST,
        },
    ),
    Page: (
        {"messageConversations": []},
        {"messageConversations": LIST, "pager": RECORD},
    ),
    UserGroupRef: (_ID, {"id": STRING, "displayName": STRING, "name": STRING}),
    OrgUnitRef: (
        _ID,
        {"id": STRING, "displayName": STRING, "name": STRING, "level": INTEGER, "path": STRING},
    ),
}
REQUIRED = {(UserRef, "id"), (Attachment, "id"), (Message, "id"), (Conversation, "id")}
REQUIRED |= {(UserGroupRef, "id"), (OrgUnitRef, "id")}
REQUIRED |= {(Participant, "user"), (Page, "messageConversations")}
PAGER_KEYS = ("page", "pageCount", "total", "pageSize")


def _cases():
    for cls, (good, keys) in RECORD_KEYS.items():
        for key, wrong in keys.items():
            for value in wrong:
                yield pytest.param(cls, good, key, value, id=f"{cls.__name__}.{key}={value!r}")


@pytest.mark.parametrize("cls, good, key, value", list(_cases()))
def test_a_wrong_type_in_any_key_names_that_key(cls, good, key, value):
    """Every key of every record is checked, and the error says which key and what it held."""
    assert isinstance(cls.from_json(good), cls)  # only *key* is wrong below
    with pytest.raises(ResponseError) as caught:
        cls.from_json({**good, key: value})
    assert f"DHIS2 sent {key}=" in str(caught.value)


@pytest.mark.parametrize("key", PAGER_KEYS)
@pytest.mark.parametrize("value", INTEGER)
def test_a_wrong_type_in_any_pager_key_names_that_key(key, value):
    with pytest.raises(ResponseError, match=f"DHIS2 sent {key}="):
        Page.from_json({"messageConversations": [], "pager": {"page": 1, key: value}})


@pytest.mark.parametrize(
    "cls, key", sorted(REQUIRED, key=str), ids=lambda x: getattr(x, "__name__", x)
)
@pytest.mark.parametrize("missing", ["absent", None])
def test_a_missing_required_key_names_that_key(cls, key, missing):
    """Without its id (or user, or list) a record is a ResponseError that says what was missing."""
    data = {k: v for k, v in RECORD_KEYS[cls][0].items() if k != key}
    if missing is None:
        data[key] = None
    with pytest.raises(ResponseError) as caught:
        cls.from_json(data)
    assert f"without '{key}'" in str(caught.value)
    assert "malformed" not in str(caught.value)


@pytest.mark.parametrize("cls", list(RECORD_KEYS), ids=lambda c: c.__name__)
def test_every_optional_key_may_be_null(cls):
    """null is as good as absent for every key that is not required (DHIS2 omits or nulls)."""
    good, keys = RECORD_KEYS[cls]
    nulls = {k: None for k in keys if (cls, k) not in REQUIRED}
    assert cls.from_json(good) == cls.from_json({**good, **nulls})


@pytest.mark.parametrize(
    "cls, primary, fallback, attr",
    [
        (Conversation, "subject", "displayName", "subject"),
        (UserRef, "displayName", "name", "name"),
        (UserGroupRef, "displayName", "name", "name"),
        (OrgUnitRef, "displayName", "name", "name"),
    ],
)
def test_the_fallback_key_is_read_only_when_the_first_is_missing(cls, primary, fallback, attr):
    good = RECORD_KEYS[cls][0]
    assert "A" == getattr(cls.from_json({**good, fallback: "A"}), attr)
    assert "A" == getattr(cls.from_json({**good, primary: None, fallback: "A"}), attr)
    assert "B" == getattr(cls.from_json({**good, primary: "B", fallback: "A"}), attr)
    assert "B" == getattr(cls.from_json({**good, primary: "B", fallback: 5}), attr)


def test_the_table_above_covers_every_record_and_key():
    """A record or key added to the module without a row above fails here."""
    import dhis2_messages

    records = {getattr(dhis2_messages, n) for n in dhis2_messages.__all__}
    records = {c for c in records if isinstance(c, type) and hasattr(c, "from_json")}
    assert records == set(RECORD_KEYS)
    tables = [v for n, v in vars(dhis2_messages).items() if n.endswith("_KEYS") and n != "_KEYS"]
    in_module = {k.key for table in tables for k in table} | {
        k.fallback for table in tables for k in table if k.fallback
    }
    tested = {k for _, keys in RECORD_KEYS.values() for k in keys} | set(PAGER_KEYS)
    assert in_module == tested


def test_each_parser_reads_the_keys_of_its_table():
    """A ``_parse_x`` function reads exactly the keys of the _X_KEYS table it names.

    The table names the bad key when the function's type test fails, so a key
    read but left out of it (or listed but no longer read) fails here.
    """
    import ast
    from pathlib import Path

    import dhis2_messages

    tree = ast.parse(Path(dhis2_messages.__file__).read_text(encoding="utf-8"))
    checked = set()
    for function in tree.body:
        if not isinstance(function, ast.FunctionDef):
            continue
        nodes = list(ast.walk(function))
        tables = {n.id for n in nodes if isinstance(n, ast.Name) and n.id.endswith("_KEYS")}
        if not tables:
            continue
        read = {
            n.args[0].value
            for n in nodes
            if isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", None)) == "get"
            and n.args
            and isinstance(n.args[0], ast.Constant)
        }
        rows = [k for name in tables for k in getattr(dhis2_messages, name)]
        listed = {k.key for k in rows} | {k.fallback for k in rows if k.fallback}
        assert read == listed, function.name
        checked |= tables
    tables = {n for n in vars(dhis2_messages) if n.endswith("_KEYS") and n != "_KEYS"}
    assert checked == tables

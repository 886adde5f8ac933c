"""Property-based tests of everything that reads what a server sent: records, headers, errors.

Whatever JSON value stands in any field of any record, parsing either succeeds
with values of the documented types or raises ResponseError; well-formed DHIS2
shapes always parse to exactly the values they carry.  The header and error
parsers (Retry-After, Location, error bodies, uid lists) never raise at all.

Neighbours: the records' example-based tests and the key table in test_records.py.
"""

from __future__ import annotations

import datetime as dt
import json
import string

import attrs
import pytest
import requests
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import dhis2_messages
from dhis2_messages import (
    ApiError,
    Attachment,
    Conversation,
    Message,
    Page,
    Participant,
    ResponseError,
    UserRef,
)

# -- Strategies ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
UIDS = st.builds(
    "{}{}".format,
    st.sampled_from(string.ascii_letters),
    st.text(string.ascii_letters + string.digits, min_size=10, max_size=10),
)
NAMES = st.none() | st.text(max_size=40)
BOOLS = st.none() | st.booleans()
INTS = st.none() | st.integers(min_value=0, max_value=2**53)
MOMENTS = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2999, 12, 31, 23, 59, 59)
)
ENUMS = st.none() | st.sampled_from(
    ["PRIVATE", "TICKET", "SYSTEM", "OPEN", "SOLVED", "HIGH", "SOMETHING_NEW"]
)


@st.composite
def timestamps(draw):
    """A DHIS2 timestamp (no zone) in one of the shapes DHIS2 and its databases produce,
    and the datetime it stands for."""
    moment = draw(MOMENTS)
    shape = draw(st.sampled_from(["millis", "seconds", "date", "space", "micros"]))
    if shape == "millis":
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}", moment
    if shape == "micros":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f"), moment
    moment = moment.replace(microsecond=0)
    if shape == "seconds":
        return moment.strftime("%Y-%m-%dT%H:%M:%S"), moment
    if shape == "space":
        return moment.strftime("%Y-%m-%d %H:%M:%S"), moment
    moment = moment.replace(hour=0, minute=0, second=0)
    return moment.strftime("%Y-%m-%d"), moment


def _maybe(strategy):
    return st.none() | strategy


@st.composite
def users(draw):
    uid, name, username = draw(UIDS), draw(NAMES), draw(NAMES)
    data = {"id": uid}
    if name is not None or draw(st.booleans()):
        data["displayName"] = name
    if username is not None or draw(st.booleans()):
        data["username"] = username
    data.update(draw(_extra()))
    return data, UserRef(id=uid, name=name, username=username)


def _extra():
    """Keys DHIS2 may add that the records ignore."""
    return st.dictionaries(
        st.sampled_from(["href", "access", "sharing", "translations", "code"]), JSON, max_size=2
    )


@st.composite
def attachments(draw):
    uid, name, kind, length = draw(UIDS), draw(NAMES), draw(NAMES), draw(INTS)
    data = {"id": uid, "name": name, "contentType": kind, "contentLength": length}
    data.update(draw(_extra()))
    return data, Attachment(id=uid, name=name, content_type=kind, content_length=length)


@st.composite
def messages(draw):
    uid, text, internal = draw(UIDS), draw(NAMES), draw(BOOLS)
    sender = draw(_maybe(users()))
    created = draw(_maybe(timestamps()))
    files = draw(st.lists(attachments(), max_size=2))
    data = {
        "id": uid,
        "text": text,
        "internal": internal,
        "sender": sender[0] if sender else None,
        "created": created[0] if created else None,
        "attachments": [f[0] for f in files],
    }
    record = Message(
        id=uid,
        text=text,
        internal=internal,
        sender=sender[1] if sender else None,
        created=created[1] if created else None,
        attachments=tuple(f[1] for f in files),
    )
    return data, record


@st.composite
def participants(draw):
    user, read, follow_up = draw(users()), draw(BOOLS), draw(BOOLS)
    return (
        {"user": user[0], "read": read, "followUp": follow_up},
        Participant(user=user[1], read=read, follow_up=follow_up),
    )


@st.composite
def conversations(draw, full=True):
    uid = draw(UIDS)
    values = {
        "subject": draw(NAMES),
        "message_type": draw(ENUMS),
        "status": draw(ENUMS),
        "priority": draw(ENUMS),
        "read": draw(BOOLS),
        "follow_up": draw(BOOLS),
        "message_count": draw(INTS),
    }
    keys = {
        "subject": "subject",
        "message_type": "messageType",
        "status": "status",
        "priority": "priority",
        "read": "read",
        "follow_up": "followUp",
        "message_count": "messageCount",
    }
    data = {keys[name]: value for name, value in values.items()}
    data["id"] = uid
    for name, key in (
        ("last_message", "lastMessage"),
        ("last_updated", "lastUpdated"),
        ("created", "created"),
    ):
        stamp = draw(_maybe(timestamps()))
        data[key], values[name] = (stamp[0], stamp[1]) if stamp else (None, None)
    for name, key in (("last_sender", "lastSender"), ("assignee", "assignee")):
        user = draw(_maybe(users()))
        data[key], values[name] = (user[0], user[1]) if user else (None, None)
    if full:
        thread = draw(st.lists(messages(), max_size=3))
        people = draw(st.lists(participants(), max_size=3))
        data["messages"] = [m[0] for m in thread]
        data["userMessages"] = [p[0] for p in people]
        values["messages"] = tuple(m[1] for m in thread)
        values["participants"] = tuple(p[1] for p in people)
    data.update(draw(_extra()))
    # DHIS2 omits null fields unless asked; both forms must parse the same.
    if draw(st.booleans()):
        data = {k: v for k, v in data.items() if v is not None}
    return data, Conversation(id=uid, **values)


@st.composite
def pages(draw):
    items = draw(st.lists(conversations(full=False), max_size=4))
    page, page_count = draw(st.integers(1, 1000)), draw(st.integers(1, 1000))
    total, page_size = draw(st.integers(0, 10**6)), draw(st.integers(1, 1000))
    data = {
        "pager": {
            "page": page,
            "pageCount": page_count,
            "total": total,
            "pageSize": page_size,
            "nextPage": "http://x/api/messageConversations?page=2",
        },
        "messageConversations": [c[0] for c in items],
    }
    return data, Page(
        conversations=tuple(c[1] for c in items),
        page=page,
        page_count=page_count,
        total=total,
        page_size=page_size,
    )


# -- Arbitrary values in every field ------------------------------------------------

RECORDS = {
    UserRef: (users(), ["id", "displayName", "name", "username"]),
    Attachment: (attachments(), ["id", "name", "contentType", "contentLength"]),
    Message: (messages(), ["id", "text", "sender", "created", "internal", "attachments"]),
    Participant: (participants(), ["user", "read", "followUp"]),
    Conversation: (
        conversations(),
        [
            "id",
            "subject",
            "displayName",
            "messageType",
            "status",
            "priority",
            "read",
            "followUp",
            "messageCount",
            "lastMessage",
            "lastUpdated",
            "created",
            "lastSender",
            "assignee",
            "messages",
            "userMessages",
        ],
    ),
    Page: (pages(), ["messageConversations", "pager"]),
}

FIELD_TYPES = {
    # attribute: the types it may hold after a successful parse
    "id": (str,),
    "name": (str, type(None)),
    "username": (str, type(None)),
    "content_type": (str, type(None)),
    "content_length": (int, type(None)),
    "text": (str, type(None)),
    "sender": (UserRef, type(None)),
    "created": (dt.datetime, type(None)),
    "internal": (bool, type(None)),
    "attachments": (tuple,),
    "user": (UserRef,),
    "read": (bool, type(None)),
    "follow_up": (bool, type(None)),
    "subject": (str, type(None)),
    "message_type": (str, type(None)),
    "status": (str, type(None)),
    "priority": (str, type(None)),
    "message_count": (int, type(None)),
    "last_message": (dt.datetime, type(None)),
    "last_updated": (dt.datetime, type(None)),
    "last_sender": (UserRef, type(None)),
    "assignee": (UserRef, type(None)),
    "messages": (tuple,),
    "participants": (tuple,),
    "conversations": (tuple,),
    "page": (int,),
    "page_count": (int,),
    "total": (int,),
    "page_size": (int,),
}


NESTED = {
    "attachments": Attachment,
    "messages": Message,
    "participants": Participant,
    "conversations": Conversation,
}


def _check_types(record):
    """Every attribute, nested records too, has one of its documented types."""
    for name, value in attrs.asdict(record, recurse=False).items():
        assert isinstance(value, FIELD_TYPES[name]), (name, value)
        if isinstance(value, (bool, int)) and not isinstance(value, bool):
            assert name not in ("read", "follow_up", "internal"), (name, value)
        if isinstance(value, bool):
            assert name in ("read", "follow_up", "internal"), (name, value)
        if isinstance(value, UserRef):
            _check_types(value)
        if name in NESTED:
            for item in value:
                assert isinstance(item, NESTED[name])
                _check_types(item)


def _parse(cls, data):
    """Parse, allowing only ResponseError; check the result's types."""
    try:
        record = cls.from_json(data)
    except ResponseError as error:
        assert str(error)
        return None
    assert isinstance(record, cls)
    _check_types(record)
    return record


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda c: c.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_any_value_in_any_field(cls, data):
    strategy, keys = RECORDS[cls]
    good, _ = data.draw(strategy)
    key = data.draw(st.sampled_from(keys))
    good[key] = data.draw(JSON)
    _parse(cls, good)


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda c: c.__name__)
@settings(max_examples=50)
@given(value=JSON)
def test_any_value_as_the_whole_record(cls, value):
    _parse(cls, value)


@settings(max_examples=60)
@given(data=st.data())
def test_any_value_deep_inside_a_conversation(data):
    """Replace one value anywhere in a full conversation (nested users, messages, attachments)."""
    good, _ = data.draw(conversations())
    paths = list(_paths(good))
    path = data.draw(st.sampled_from(paths))
    target = good
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(JSON)
    _parse(Conversation, good)
    _parse(Page, {"pager": {"page": 1}, "messageConversations": [good]})


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


@settings(max_examples=100)
@given(pager=JSON)
def test_any_pager(pager):
    _parse(Page, {"pager": pager, "messageConversations": []})


@given(value=st.text(max_size=40))
def test_any_string_as_a_timestamp(value):
    record = _parse(Message, {"id": "AbCdEfGhIjK", "created": value})
    if record is not None:
        assert isinstance(record.created, dt.datetime)


# -- Well-formed shapes parse to exactly what they carry ---------------------------------


@given(pair=users())
def test_users(pair):
    assert pair[1] == UserRef.from_json(pair[0])


@given(pair=attachments())
def test_attachments(pair):
    assert pair[1] == Attachment.from_json(pair[0])


@given(pair=messages())
def test_messages(pair):
    assert pair[1] == Message.from_json(pair[0])


@given(pair=participants())
def test_participants(pair):
    assert pair[1] == Participant.from_json(pair[0])


@settings(max_examples=40)
@given(pair=conversations())
def test_conversations(pair):
    record = Conversation.from_json(pair[0])
    assert pair[1] == record
    assert json.loads(json.dumps(pair[0])) == pair[0]  # what was parsed really is JSON


@settings(max_examples=30)
@given(pair=pages())
def test_pages(pair):
    page = Page.from_json(pair[0])
    assert pair[1] == page
    assert len(pair[1].conversations) == len(page) == len(list(page))


@settings(max_examples=30)
@given(items=st.lists(conversations(full=False), max_size=4))
def test_unpaged_list(items):
    """paging=false: no pager, everything on one page."""
    page = Page.from_json({"messageConversations": [c[0] for c in items]})
    assert tuple(c[1] for c in items) == page.conversations
    assert (1, 1, len(items)) == (page.page, page.page_count, page.total)


@given(pair=timestamps())
def test_timestamps(pair):
    text, moment = pair
    parsed = Message.from_json({"id": "AbCdEfGhIjK", "created": text}).created
    assert moment == parsed
    assert parsed.tzinfo is None


@given(
    moment=MOMENTS,
    hours=st.integers(-14, 14),
    minutes=st.sampled_from([0, 30, 45]),
    style=st.sampled_from(["{:+03d}:{:02d}", "{:+03d}{:02d}"]),
)
def test_timestamps_with_a_zone(moment, hours, minutes, style):
    assume(not (hours in (-14, 14) and minutes))
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    offset = dt.timedelta(hours=hours, minutes=minutes if hours >= 0 else -minutes)
    text = (
        moment.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}"
        + style.format(hours, minutes)
    )
    parsed = Message.from_json({"id": "AbCdEfGhIjK", "created": text}).created
    assert moment.replace(tzinfo=dt.timezone(offset)) == parsed


# -- Headers, uids and error bodies ------------------------------------------------------


def _response(
    status=200, headers=None, body=b"", method="POST", url="http://h/api/messageConversations"
):
    """An answer as the client's request path makes it from requests' Response (built,
    not mocked: no network)."""
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.request = requests.Request(method, url).prepare()
    response.reason = "Reason"
    return dhis2_messages._Answer(response, body, "/messageConversations")


@settings(max_examples=300)
@example(value="\u00b2")
@example(value="Mon, 01 Jan 99999999999999999999 00:00:00 GMT")
@given(
    value=st.one_of(
        st.text(max_size=40),
        st.text(string.digits + " ,:GMTADFJMNOSUWaceghilnoprstuvy", max_size=40),
    )
)
def test_retry_after_never_raises(value):
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        assume(False)  # headers are Latin-1
    wait = dhis2_messages._retry_after(value)
    assert wait is None or wait >= 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        ("\u00b2", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),
    ],
)
def test_retry_after_examples(value, expected):
    assert expected == dhis2_messages._retry_after(value)


@settings(max_examples=300)
@example(location="http://[::1/api/messageConversations/AbCdEfGhIjK")
@example(location="//[x")
@given(
    location=st.text(max_size=60)
    | st.builds("http://h/api/messageConversations/{}".format, st.text(max_size=15))
)
def test_any_location(location):
    try:
        location.encode("latin-1")
    except UnicodeEncodeError:
        assume(False)
    response = _response(201, {"Location": location})
    try:
        uid = dhis2_messages._location_uid(response)
    except ResponseError as error:
        assert str(error)
    else:
        assert dhis2_messages._UID_RE.fullmatch(uid)
        assert uid in location


@given(
    uid=UIDS,
    prefix=st.sampled_from(
        [
            "http://h/api/messageConversations/",
            "/api/33/messageConversations/",
            "https://h:8443/dhis/api/messageConversations/",
        ]
    ),
    suffix=st.sampled_from(["", "/"]),
)
def test_good_locations(uid, prefix, suffix):
    assert uid == dhis2_messages._location_uid(_response(201, {"Location": prefix + uid + suffix}))


@settings(max_examples=200)
@given(
    status=st.integers(300, 599),
    body=st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode())),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
def test_any_error_answer(status, body, content_type):
    """Every error status with any body maps to an ApiError whose text says something."""
    headers = {"Content-Type": content_type} if content_type else {}
    error = dhis2_messages._error_from(_response(status, headers, body, method="GET"))
    assert isinstance(error, ApiError)
    assert error.status_code == status
    assert str(error).startswith(f"HTTP {status}")
    assert isinstance(error.message, str) and error.message


@settings(max_examples=100)
@given(body=JSON)
def test_any_uid_list_answer(body):
    try:
        result = dhis2_messages._uid_list(body, "markedRead")
    except ResponseError:
        return
    assert isinstance(result, list) and all(isinstance(v, str) for v in result)

"""
Send, read and triage DHIS2 messages from Python.

A small, blocking client for DHIS2's ``/api/messageConversations`` Web API::

    from dhis2_messages import Messenger

    with Messenger("https://dhis2.example.org", token="d2p_...") as m:
        uid = m.send(subject="Mortality data", text="Reported January?", users=["PhzytPW3g2J"])
        m.reply(uid, "Yes, done.")
        for conv in m.iter_conversations(filter="read:eq:false"):
            print(conv.subject, conv.last_message)

Words: a *call* is one call of a ``Messenger`` method; a *request* is one HTTP
request; an *attempt* is one try of a request (a retry is another attempt).
Each call makes one request, except:

- ``iter_conversations``: one per page, as the loop reaches it (a walk ordered by
  ``subject`` or ``messageCount``, or by page number, first asks for the newest
  conversation, to keep arrivals out);
- the bulk calls (``mark_read`` ... ``delete_conversations``): as many as the uids
  need to fit what real deployments accept, and, when DHIS2 2.41.3+ refuses
  uids that left the caller's inbox, one to find which;
- ``find_sent``, and ``send`` or ``send_feedback`` with ``once=``: one list
  request first (and, once per ``Messenger``, one for the caller's uid);
- ``send_feedback`` on DHIS2 before 2.41.3 (which names no new ticket): one more
  to find it; ``send``, ``reply`` and ``send_feedback`` whose answer was lost:
  DHIS2's clock, and a look for what they did (again a few times after a timeout);
- ``expand_recipients``: one per 200 uids of each kind; the ``resolve_*`` calls:
  none for a uid;
- once per ``Messenger``, an error that needs the server's version to be
  explained asks ``/api/system/info``.

A call that creates something never sends its request twice.  Errors::

    Dhis2Error                 anything raised on purpose
    ├── TransportError         no usable answer: refused, timed out, dropped
    ├── ResponseError          a success status with a body we cannot use
    ├── NameMatchError         a name that matched no record, or several
    └── ApiError               DHIS2 answered with an error
        ├── AuthenticationError    401, or a redirect to the login page
        ├── PermissionDenied       403
        ├── NotFoundError          404 (and DHIS2's 200 for an unknown conversation)
        └── ConflictError          409

Bad arguments raise ``ValueError`` or ``TypeError`` before any request is sent.

The module reads top to bottom: errors, records, their views (Jupyter and
``str``), the date filters ``since`` and ``before``, the ``Messenger`` client,
its transport, and the private helpers (checking arguments, building requests,
reading answers, retries).  Below a marked fence comes the ``dhis2-messages``
command line, which uses only the public names above it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import email.utils
import html
import http.client
import io
import ipaddress
import json
import logging
import math
import mimetypes
import os
import re
import shlex
import socket
import ssl
import threading
import time
from itertools import repeat
from typing import (
    IO,
    Any,
    Callable,
    ClassVar,
    Deque,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    TypedDict,
    TypeVar,
    Union,
    overload,
)
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.poolmanager import ProxyManager

__all__ = [
    "BOUNDARIES",
    "DEFAULT_TIMEOUT",
    "LIST_FIELDS",
    "MESSAGE_TYPES",
    "PRIORITIES",
    "STATUSES",
    "THREAD_FIELDS",
    "WALK_PAGE_SIZE",
    "ApiError",
    "Attachment",
    "AuthenticationError",
    "ConflictError",
    "Conversation",
    "ConversationRow",
    "Dhis2Error",
    "Message",
    "Messenger",
    "NameMatchError",
    "NotFoundError",
    "OrgUnitRef",
    "Page",
    "Participant",
    "PermissionDenied",
    "ResponseError",
    "TransportError",
    "UserGroupRef",
    "UserRef",
    "before",
    "since",
]
__version__ = "0.3.0"

log: logging.Logger = logging.getLogger("dhis2_messages")

#: ``(connect, read)`` seconds applied to every request unless overridden.
DEFAULT_TIMEOUT: Tuple[float, float] = (3.05, 30.0)
# DHIS2's enums, as type checkers see them: ``set_status(uid, "SOLVD")`` is an error
# there.  At run time any case is accepted (and checked); records keep whatever
# DHIS2 sends, a value this library does not know included, so their fields are str.
_Status = Literal["NONE", "OPEN", "PENDING", "INVALID", "SOLVED"]
_StatusArg = Union[_Status, Literal["none", "open", "pending", "invalid", "solved"]]
_Priority = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
_PriorityArg = Union[_Priority, Literal["none", "low", "medium", "high"]]
_MessageType = Literal["PRIVATE", "SYSTEM", "VALIDATION_RESULT", "TICKET", "SYSTEM_VERSION_UPDATE"]
#: The values ``set_status`` accepts (DHIS2's MessageConversationStatus).
STATUSES: Tuple[_Status, ...] = ("NONE", "OPEN", "PENDING", "INVALID", "SOLVED")
#: The values ``set_priority`` accepts (DHIS2's MessageConversationPriority).
PRIORITIES: Tuple[_Priority, ...] = ("NONE", "LOW", "MEDIUM", "HIGH")
#: DHIS2's message types: PRIVATE (user to user), SYSTEM, VALIDATION_RESULT, TICKET
#: (feedback) and SYSTEM_VERSION_UPDATE (declared, but DHIS2 sends update notices as SYSTEM).
MESSAGE_TYPES: Tuple[_MessageType, ...] = (
    "PRIVATE",
    "SYSTEM",
    "VALIDATION_RESULT",
    "TICKET",
    "SYSTEM_VERSION_UPDATE",
)
#: The values ``lookup_users(boundary=...)`` accepts (DHIS2's UserOrgUnitType).
BOUNDARIES: Tuple[str, ...] = ("DATA_CAPTURE", "DATA_OUTPUT", "TEI_SEARCH")
#: Conversations per request of a whole walk (``iter_conversations`` without
#: ``page_size``).  DHIS2 loads the caller's whole inbox for every page, so a
#: walk costs the server the inbox times the pages, plus the rows: the fewer
#: pages the better.  1,000 rows are about 350 kB of JSON, parsed in 10 ms into
#: 2 MB of records: one page stays small on a slow link and in memory.
WALK_PAGE_SIZE: int = 1000

_USER_FIELDS = "id,displayName,username"
_ORG_UNIT_FIELDS = "id,displayName,level,path"
#: The ``fields`` selector list calls use unless given another.
LIST_FIELDS = (
    "id,subject,messageType,status,priority,read,followUp,messageCount,"
    "lastMessage,lastUpdated,created,"
    f"lastSender[{_USER_FIELDS}],assignee[{_USER_FIELDS}]"
)
#: The selector ``get_conversation`` uses: DHIS2's default (``*``) returns
#: message ids only, without their texts.
THREAD_FIELDS = (
    f"{LIST_FIELDS},"
    f"messages[id,text,created,internal,sender[{_USER_FIELDS}],"
    "attachments[id,name,contentType,contentLength]],"
    f"userMessages[read,followUp,user[{_USER_FIELDS}]]"
)


# -- Errors ------------------------------------------------------------------
# Every error carries what happened as attributes; ``str(err)`` is written from
# them, and so is the command line's text, in its own words.  Advice goes in
# ``hint``, never into DHIS2's ``message``.


class Dhis2Error(Exception):
    """Base class for everything this module raises on purpose.

    ``method`` and ``path`` name the request that failed (the path below
    ``/api``), when there was one; ``hint`` says what to do, when the library
    can tell.
    """

    method: Optional[str] = None
    path: Optional[str] = None
    hint: str = ""
    #: True when a retry was due but waiting for it would have passed the deadline.
    no_time_to_retry: bool = False
    #: True when a request that creates something may have done it on DHIS2 although
    #: its answer was lost (a timeout after it was sent, a connection broken after it
    #: was written, a proxy's 502, 503 or 504).
    maybe_done: bool = False
    #: How many times send, reply or send_feedback looked on DHIS2 for what such a
    #: request may have done, and found nothing (0: it could not look).
    looked: int = 0
    #: For a bulk call (``mark_read``, ..., ``delete_conversations``): the uids its
    #: earlier requests changed before this failure, in order; None for other calls.
    done: Optional[List[str]] = None


class TransportError(Dhis2Error):
    """No usable answer: the server was not reached, or did not answer in time.

    ``kind`` says what happened, one of ``TransportError.KINDS``:

    - ``"connect"``: the connection could not be made (refused, unknown host, a proxy);
    - ``"connect_timeout"``: no connection within the connect timeout;
    - ``"tls"``: the TLS handshake failed (a certificate, or https to an http server);
    - ``"read_timeout"``: no answer within the read timeout;
    - ``"broken"``: the connection broke or the answer was cut off;
    - ``"deadline"``: the call's ``deadline`` passed.

    ``sent`` is False when the request cannot have reached the server (the
    connection was never made); ``seconds`` is the limit that ran out, for the
    timeouts and the deadline; ``reason`` is the underlying error in a few words;
    ``url`` is the request's address.  The requests exception is ``__cause__``.

    ``detail`` names the commonest mistakes behind a kind, one of ``DETAILS``, or is
    ``""``: ``"unknown_host"`` (``connect``: the host name does not exist; not
    retried) and ``"plain_http"`` (``tls``: an https URL to a server that speaks
    plain http).
    """

    KINDS: ClassVar[Tuple[str, ...]] = (
        "connect",
        "connect_timeout",
        "tls",
        "read_timeout",
        "broken",
        "deadline",
    )
    DETAILS: ClassVar[Tuple[str, ...]] = ("unknown_host", "plain_http")

    def __init__(
        self,
        kind: str,
        method: Optional[str] = None,
        url: Optional[str] = None,
        reason: str = "",
        seconds: Optional[float] = None,
        sent: bool = True,
        path: Optional[str] = None,
        hint: str = "",
        detail: str = "",
    ) -> None:
        # args mirror the positional signature, so errors pickle and copy.
        super().__init__(kind, method, url, reason, seconds, sent, path, hint, detail)
        self.kind = kind
        self.method = method
        self.url = url
        self.reason = reason
        self.seconds = seconds
        self.sent = sent
        self.path = path
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        where = f"{self.method} {self.url}"
        seconds = f"{self.seconds:g}" if self.seconds is not None else "?"
        text = {
            "connect": f"Could not connect for {where}: {self.reason}.",
            "connect_timeout": f"Could not connect within {seconds} s for {where}.",
            "tls": f"TLS failed for {where}: {self.reason}.",
            "read_timeout": f"DHIS2 did not answer {where} within {seconds} s.",
            "broken": f"The connection broke during {where}: {self.reason}. The answer was lost.",
            "deadline": f"The deadline of {seconds} s passed during {where}: "
            "the server answered too slowly or not at all.",
        }.get(self.kind, f"{self.kind} during {where}: {self.reason}.")
        return f"{text} {self.hint}" if self.hint else text

    def __repr__(self) -> str:
        return f"TransportError({self.kind!r}, {self.method!r}, {self.url!r})"


class ResponseError(Dhis2Error):
    """DHIS2 answered with a success status, but not with something usable.

    ``str(err)`` says what was wrong with the answer.  ``kind`` is ``"invalid"``
    (a value of the wrong type or a missing key), ``"not_json"`` (HTML, say a
    proxy's or a login page), ``"too_large"`` (past ``max_response_size``) or
    ``"no_location"`` (a create answered without the new uid).
    """

    def __init__(
        self,
        text: str,
        kind: str = "invalid",
        method: Optional[str] = None,
        path: Optional[str] = None,
        status_code: Optional[int] = None,
        hint: str = "",
    ) -> None:
        super().__init__(text, kind, method, path, status_code, hint)
        self.text = text
        self.kind = kind
        self.method = method
        self.path = path
        #: The HTTP status of the answer, when the error is about one.
        self.status_code = status_code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.text} {self.hint}" if self.hint else self.text


class ApiError(Dhis2Error):
    """DHIS2 answered with an error status.

    ``message`` is DHIS2's own text (or the status line's reason when DHIS2
    sent none); ``error_code`` DHIS2's ``errorCode``; ``body`` the decoded JSON
    or the raw text.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        error_code: Optional[str] = None,
        body: Any = None,
    ) -> None:
        # args mirror the positional signature, so errors pickle and copy.
        super().__init__(status_code, message, error_code, body)
        #: HTTP status, e.g. 404
        self.status_code = status_code
        #: DHIS2's message (WebMessage or bare ``{"message": ...}``)
        self.message = message
        #: DHIS2's ``errorCode`` such as ``"E1004"``, when it sent one
        self.error_code = error_code
        #: The decoded JSON body, or the raw text when it was not JSON
        self.body = body

    def __str__(self) -> str:
        code = f" [{self.error_code}]" if self.error_code else ""
        text = f": {self.message}" if self.message else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"HTTP {self.status_code}{code}{text}{hint}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code!r}, {self.message!r}, {self.error_code!r})"


class AuthenticationError(ApiError):
    """401, or a redirect to the login page: missing or wrong credentials."""


class PermissionDenied(ApiError):
    """403: the user may not do this to that conversation.

    For a bulk call, ``not_in_inbox`` lists the uids of the refused request that
    are not in the caller's inbox (DHIS2's 403 names none); empty when all are.
    """

    not_in_inbox: Tuple[str, ...] = ()


class NotFoundError(ApiError):
    """404, or DHIS2's 200 answer for an unknown conversation."""


class ConflictError(ApiError):
    """409: DHIS2 refused the request (unknown recipient, attachment, ...)."""

    #: True when DHIS2 refused a message that would reach nobody ("No recipients
    #: selected."): organisation units reach only the users assigned to those very units.
    no_recipients: bool = False


class NameMatchError(Dhis2Error):
    """A name given to ``resolve_user``, ``resolve_user_group`` or
    ``resolve_organisation_unit`` matched no record, or more than one.

    ``candidates`` holds the records that matched (none, or several to choose
    from by uid); ``more`` is True when DHIS2 had more than those.
    """

    def __init__(
        self, name: str, kind: str, candidates: Sequence[Any] = (), more: bool = False
    ) -> None:
        super().__init__(name, kind, tuple(candidates), more)
        #: The name as given
        self.name = name
        #: What it should have named: "user", "user group" or "organisation unit"
        self.kind = kind
        self.candidates: Tuple[Any, ...] = tuple(candidates)
        self.more = more

    def __str__(self) -> str:
        if not self.candidates:
            return f"no {self.kind} matches {self.name!r}"
        lines = [f"  {c.id}  {_candidate(c)}" for c in self.candidates]
        if self.more:
            lines.append("  ... and more: give a longer name")
        count = f"{len(self.candidates)}{'+' if self.more else ''}"
        return f"{self.name!r} matches {count} {self.kind}s; give one of these uids:\n" + "\n".join(
            lines
        )


_STATUS_ERRORS: Dict[int, Type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
}


# -- Records -----------------------------------------------------------------
# Each record is an attrs class whose ``from_json`` named constructor calls the
# plain function written after it, ``_parse_x(data, key, users)``: one ``get``
# per DHIS2 key, one chained test of the plain values' JSON types, then the
# record (timestamps and nested records are checked by their own parsers as
# the record is built).  Unknown keys are ignored, missing ones become None
# (or an empty tuple), a value of the wrong type is a ResponseError.  Only
# when the type test fails does ``_key_error`` read the record's _X_KEYS
# table, the same keys written as data, to name the first bad one.  A new
# record is an attrs class, its _X_KEYS table, its _parse_x function in the
# shape of the others, and its rows in the key table of tests/test_records.py.
#
# Each parser is written out rather than a loop over its table: the loop took
# 1.3 times as long for a page of 1,000 conversations and 1.9 times for a
# 1,000-message thread, and the benchmark allows decoding and parsing together
# three times the time of ``json.loads`` alone.
#
# Records are frozen but not slotted: attrs then fills ``__dict__`` directly,
# which makes a page of 1,000 conversations parse about 15% faster, for
# about 100 bytes more per record.

_JsonObject = Mapping[str, Any]
_T = TypeVar("_T")
#: One response's UserRefs, by their values (see ``_parse_user``).
_Users = Dict[Tuple[Any, ...], "UserRef"]

_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?\Z"
)


def _bad(key: str, value: Any, expected: str) -> ResponseError:
    return ResponseError(f"DHIS2 sent {key}={_shown(value, 60)}, expected {expected}")


def _check_object(data: Any, what: str) -> _JsonObject:
    if not isinstance(data, dict):
        raise _bad(what, data, "a JSON object")
    return data


def _get_required_str(data: _JsonObject, key: str, what: str) -> str:
    value = data.get(key)
    if isinstance(value, str):
        return value
    if value is None:
        raise ResponseError(f"DHIS2 sent {what} without {key!r}")
    raise _bad(key, value, "a string")


def _get_int(data: _JsonObject, key: str) -> Optional[int]:
    value = data.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _bad(key, value, "an integer")


_fromisoformat = _dt.datetime.fromisoformat


def _parse_timestamp(value: Any, key: str) -> Optional[_dt.datetime]:
    if type(value) is str and len(value) == 23:
        # DHIS2's own shape, 2024-05-02T10:11:12.345: the C parser is ten times
        # faster than the general path below, which handles everything else.
        try:
            return _fromisoformat(value)
        except ValueError:
            pass
    elif value is None:
        return None
    match = _TIMESTAMP_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(key, value, "a timestamp like 2024-05-02T10:11:12.345")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    try:
        tz: Optional[_dt.tzinfo] = None
        if zone == "Z":
            tz = _dt.timezone.utc
        elif zone:
            digits = zone[1:].replace(":", "")
            offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = _dt.timezone(-offset if zone[0] == "-" else offset)
        return _dt.datetime(
            int(y),
            int(mo),
            int(d),
            int(h or 0),
            int(mi or 0),
            int(s or 0),
            int((frac or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        raise _bad(key, value, "a valid date") from None


def _parse_list(
    value: Any, key: str, parse: Callable[[Any, str, _Users], _T], users: _Users
) -> Tuple[_T, ...]:
    """The records of a JSON list, each parsed by *parse*; () when it is missing or empty."""
    if type(value) is list:
        return tuple(map(parse, value, repeat(key), repeat(users))) if value else ()
    if value is None:
        return ()
    raise _bad(key, value, "a list")


class _Key(NamedTuple):
    """One DHIS2 key of a record, as ``_key_error`` reads it."""

    key: str
    #: str, bool or int: the JSON type of a plain value (null is allowed too,
    #: unless required); None for a timestamp, record or list, which its own
    #: parser checks
    json_type: Optional[type] = None
    required: bool = False
    #: read when ``key`` is absent or null: DHIS2 renders some names under two keys
    fallback: Optional[str] = None


_EXPECTED: Dict[type, str] = {str: "a string", bool: "true or false", int: "an integer"}


def _key_error(data: _JsonObject, what: str, keys: Sequence[_Key]) -> ResponseError:
    """The error naming the first bad key of *data*, once its record's type test failed."""
    for k in keys:
        key, value = k.key, data.get(k.key)
        if value is None and k.fallback:
            key, value = k.fallback, data.get(k.fallback)
        if value is None:
            if k.required:
                return ResponseError(f"DHIS2 sent {what} without {k.key!r}")
        elif k.json_type is not None and type(value) is not k.json_type:
            return _bad(key, value, _EXPECTED[k.json_type])  # type(True) is bool, not int
    raise AssertionError(f"the type test of {what} and its table of keys disagree")


@attrs.frozen(kw_only=True, slots=False)
class UserRef:
    """A DHIS2 user as it appears in a conversation."""

    id: str
    #: DHIS2's ``displayName``
    name: Optional[str] = None
    username: Optional[str] = None

    @classmethod
    def from_json(cls, data: Any) -> UserRef:
        return _parse_user(data, "user", {})

    def _repr_html_(self) -> str:
        """The user on one line, with its uid, for Jupyter."""
        return _ref_html(self)


_USER_KEYS = (
    _Key("id", str, required=True),
    _Key("displayName", str, fallback="name"),
    _Key("username", str),
)


def _parse_user(data: Any, key: str, users: _Users) -> UserRef:
    """A user, shared through *users*: one UserRef for each set of values.

    A 1,000-message thread between three people then holds three UserRefs,
    not 1,000.  *users* lives for one response, and records are frozen, so
    the sharing shows only to ``is``.
    """
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    name = get("displayName")
    if name is None:
        name = get("name")
    username = get("username")
    seen = (uid, name, username)
    try:
        shared = users.get(seen)  # a hit holds values that passed the test below
    except TypeError:  # unhashable: a list or object where a string belongs
        shared = None
    if shared is not None:
        return shared
    if not (
        type(uid) is str
        and (name is None or type(name) is str)
        and (username is None or type(username) is str)
    ):
        raise _key_error(data, "a user", _USER_KEYS)
    user = users[seen] = UserRef(id=uid, name=name, username=username)
    return user


@attrs.frozen(kw_only=True, slots=False)
class Attachment:
    """A file attached to a message (a DHIS2 file resource)."""

    id: str
    name: Optional[str] = None
    content_type: Optional[str] = None
    content_length: Optional[int] = None

    @classmethod
    def from_json(cls, data: Any) -> Attachment:
        return _parse_attachment(data, "attachment", {})

    @property
    def file_name(self) -> str:
        """A safe local name to save it under: its own name without any folder (nor
        control characters, nor a leading ``-``), else its uid."""
        return _file_name(self)


_ATTACHMENT_KEYS = (
    _Key("id", str, required=True),
    _Key("name", str),
    _Key("contentType", str),
    _Key("contentLength", int),
)


def _parse_attachment(data: Any, key: str, users: _Users) -> Attachment:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    name = get("name")
    content_type = get("contentType")
    content_length = get("contentLength")
    if not (
        type(uid) is str
        and (name is None or type(name) is str)
        and (content_type is None or type(content_type) is str)
        and (content_length is None or type(content_length) is int)
    ):
        raise _key_error(data, "an attachment", _ATTACHMENT_KEYS)
    return Attachment(id=uid, name=name, content_type=content_type, content_length=content_length)


@attrs.frozen(kw_only=True, slots=False)
class Message:
    """One message of a conversation; ``sender`` is None for system messages."""

    id: str
    text: Optional[str] = None
    sender: Optional[UserRef] = None
    created: Optional[_dt.datetime] = None
    internal: Optional[bool] = None
    attachments: Tuple[Attachment, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Message:
        return _parse_message(data, "message", {})

    def __str__(self) -> str:
        return "\n".join(_message_lines(self, None))

    def _repr_html_(self) -> str:
        """The message as HTML, for Jupyter."""
        return _message_html(self)


_MESSAGE_KEYS = (
    _Key("id", str, required=True),
    _Key("text", str),
    _Key("sender"),
    _Key("created"),
    _Key("internal", bool),
    _Key("attachments"),
)


def _parse_message(data: Any, key: str, users: _Users) -> Message:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    text = get("text")
    sender = get("sender")
    internal = get("internal")
    if not (
        type(uid) is str
        and (text is None or type(text) is str)
        and (internal is None or type(internal) is bool)
    ):
        raise _key_error(data, "a message", _MESSAGE_KEYS)
    return Message(
        id=uid,
        text=text,
        sender=None if sender is None else _parse_user(sender, "sender", users),
        created=_parse_timestamp(get("created"), "created"),
        internal=internal,
        attachments=_parse_list(get("attachments"), "attachments", _parse_attachment, users),
    )


@attrs.frozen(kw_only=True, slots=False)
class Participant:
    """A user taking part in a conversation, with that user's own flags."""

    user: UserRef
    read: Optional[bool] = None
    follow_up: Optional[bool] = None

    @classmethod
    def from_json(cls, data: Any) -> Participant:
        return _parse_participant(data, "userMessage", {})

    def __str__(self) -> str:
        return _participant_text(self)

    def _repr_html_(self) -> str:
        """The participant and their flags as HTML, for Jupyter."""
        return _participant_html(self)


_PARTICIPANT_KEYS = (
    _Key("user", required=True),
    _Key("read", bool),
    _Key("followUp", bool),
)


def _parse_participant(data: Any, key: str, users: _Users) -> Participant:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    user = get("user")
    read = get("read")
    follow_up = get("followUp")
    if not (
        user is not None
        and (read is None or type(read) is bool)
        and (follow_up is None or type(follow_up) is bool)
    ):
        raise _key_error(data, "a userMessage", _PARTICIPANT_KEYS)
    return Participant(user=_parse_user(user, "user", users), read=read, follow_up=follow_up)


class ConversationRow(TypedDict):
    """A conversation as ``Conversation.row()`` flattens it for a table: plain
    values, the users as their id, name and username (None when there is none)."""

    id: str
    subject: Optional[str]
    message_type: Optional[str]
    status: Optional[str]
    priority: Optional[str]
    read: Optional[bool]
    follow_up: Optional[bool]
    message_count: Optional[int]
    last_message: Optional[_dt.datetime]
    last_updated: Optional[_dt.datetime]
    created: Optional[_dt.datetime]
    last_sender_id: Optional[str]
    last_sender_name: Optional[str]
    last_sender_username: Optional[str]
    assignee_id: Optional[str]
    assignee_name: Optional[str]
    assignee_username: Optional[str]


@attrs.frozen(kw_only=True, slots=False)
class Conversation:
    """A message conversation.

    ``read`` and ``follow_up`` are the calling user's flags.  ``messages`` and
    ``participants`` are filled by ``get_conversation``, empty in lists.
    Enum-like values (``message_type``, ``status``, ``priority``) are DHIS2's
    strings, kept as sent even when this library does not know them.
    """

    id: str
    subject: Optional[str] = None
    message_type: Optional[str] = None
    status: Optional[str] = None
    priority: Optional[str] = None
    read: Optional[bool] = None
    follow_up: Optional[bool] = None
    message_count: Optional[int] = None
    last_message: Optional[_dt.datetime] = None
    last_updated: Optional[_dt.datetime] = None
    created: Optional[_dt.datetime] = None
    last_sender: Optional[UserRef] = None
    assignee: Optional[UserRef] = None
    messages: Tuple[Message, ...] = ()
    participants: Tuple[Participant, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Conversation:
        return _parse_conversation(data, "conversation", {})

    #: The keys of ``row()``, in order: the columns of a table, even of an empty one.
    ROW_KEYS: ClassVar[Tuple[str, ...]] = tuple(ConversationRow.__annotations__)

    def row(self) -> ConversationRow:
        """The conversation as one flat dict (``ROW_KEYS``), for a table such as pandas'.

        Users become ``*_id``, ``*_name`` and ``*_username`` (None when absent);
        the thread and the participants are left out.
        """
        sender, assignee = self.last_sender, self.assignee
        return {
            "id": self.id,
            "subject": self.subject,
            "message_type": self.message_type,
            "status": self.status,
            "priority": self.priority,
            "read": self.read,
            "follow_up": self.follow_up,
            "message_count": self.message_count,
            "last_message": self.last_message,
            "last_updated": self.last_updated,
            "created": self.created,
            "last_sender_id": sender.id if sender else None,
            "last_sender_name": sender.name if sender else None,
            "last_sender_username": sender.username if sender else None,
            "assignee_id": assignee.id if assignee else None,
            "assignee_name": assignee.name if assignee else None,
            "assignee_username": assignee.username if assignee else None,
        }

    def __str__(self) -> str:
        return _thread(self)

    def _repr_html_(self) -> str:
        """The thread as HTML, for Jupyter."""
        return _conversation_html(self)


_CONVERSATION_KEYS = (
    _Key("id", str, required=True),
    # DHIS2's default list fields (id,displayName) carry the subject as displayName.
    _Key("subject", str, fallback="displayName"),
    _Key("messageType", str),
    _Key("status", str),
    _Key("priority", str),
    _Key("read", bool),
    _Key("followUp", bool),
    _Key("messageCount", int),
    _Key("lastMessage"),
    _Key("lastUpdated"),
    _Key("created"),
    _Key("lastSender"),
    _Key("assignee"),
    _Key("messages"),  # only in a thread
    _Key("userMessages"),
)


def _parse_conversation(data: Any, key: str, users: _Users) -> Conversation:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    subject = get("subject")
    if subject is None:
        subject = get("displayName")
    message_type = get("messageType")
    status = get("status")
    priority = get("priority")
    read = get("read")
    follow_up = get("followUp")
    message_count = get("messageCount")
    last_sender = get("lastSender")
    assignee = get("assignee")
    if not (
        type(uid) is str
        and (subject is None or type(subject) is str)
        and (message_type is None or type(message_type) is str)
        and (status is None or type(status) is str)
        and (priority is None or type(priority) is str)
        and (read is None or type(read) is bool)
        and (follow_up is None or type(follow_up) is bool)
        and (message_count is None or type(message_count) is int)
    ):
        raise _key_error(data, "a conversation", _CONVERSATION_KEYS)
    return Conversation(
        id=uid,
        subject=subject,
        message_type=message_type,
        status=status,
        priority=priority,
        read=read,
        follow_up=follow_up,
        message_count=message_count,
        last_message=_parse_timestamp(get("lastMessage"), "lastMessage"),
        last_updated=_parse_timestamp(get("lastUpdated"), "lastUpdated"),
        created=_parse_timestamp(get("created"), "created"),
        last_sender=None if last_sender is None else _parse_user(last_sender, "lastSender", users),
        assignee=None if assignee is None else _parse_user(assignee, "assignee", users),
        messages=_parse_list(get("messages"), "messages", _parse_message, users),
        participants=_parse_list(get("userMessages"), "userMessages", _parse_participant, users),
    )


@attrs.frozen(kw_only=True, slots=False)
class Page:
    """One page of conversations with DHIS2's pager; iterate it for its conversations."""

    conversations: Tuple[Conversation, ...] = ()
    page: int = 1
    page_count: int = 1
    total: int = 0
    page_size: int = 50

    @classmethod
    def from_json(cls, data: Any) -> Page:
        return _parse_page(data, "page", {})

    def __iter__(self) -> Iterator[Conversation]:
        return iter(self.conversations)

    def __len__(self) -> int:
        return len(self.conversations)

    @overload
    def __getitem__(self, index: int) -> Conversation: ...
    @overload
    def __getitem__(self, index: slice) -> Tuple[Conversation, ...]: ...
    def __getitem__(
        self, index: Union[int, slice]
    ) -> Union[Conversation, Tuple[Conversation, ...]]:
        """``page[0]``, ``page[-1]``: a conversation; ``page[:10]``: a tuple of them."""
        return self.conversations[index]

    def rows(self) -> List[ConversationRow]:
        """The conversations as flat dicts (``Conversation.row``), for a table::

        pandas.DataFrame(page.rows(), columns=Conversation.ROW_KEYS)
        """
        return [conv.row() for conv in self.conversations]

    def __str__(self) -> str:
        return _page_text(self)

    def _repr_html_(self) -> str:
        """The page as an HTML table, for Jupyter."""
        return _page_html(self)


_PAGE_KEYS = (
    _Key("messageConversations", required=True),
    _Key("pager"),
)
_PAGER_KEYS = (
    _Key("page", int),
    _Key("pageCount", int),
    _Key("total", int),
    _Key("pageSize", int),
)


def _parse_page(data: Any, key: str, users: _Users) -> Page:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    found = data.get("messageConversations")
    if found is None:
        raise _key_error(data, "a list", _PAGE_KEYS)
    conversations = _parse_list(found, "messageConversations", _parse_conversation, users)
    n = len(conversations)
    pager = data.get("pager")
    if pager is None:  # paging=false: everything on one page
        return Page(conversations=conversations, total=n, page_size=max(n, 1))
    if type(pager) is not dict:
        raise _bad("pager", pager, "a JSON object")
    get = pager.get
    page = get("page")
    page_count = get("pageCount")
    total = get("total")
    page_size = get("pageSize")
    if not (
        (page is None or type(page) is int)
        and (page_count is None or type(page_count) is int)
        and (total is None or type(total) is int)
        and (page_size is None or type(page_size) is int)
    ):
        raise _key_error(pager, "a pager", _PAGER_KEYS)
    return Page(
        conversations=conversations,
        page=1 if page is None else page,
        page_count=1 if page_count is None else page_count,
        total=n if total is None else total,
        page_size=n if page_size is None else page_size,
    )


@attrs.frozen(kw_only=True, slots=False)
class UserGroupRef:
    """A DHIS2 user group, as ``find_user_groups`` returns it."""

    id: str
    #: DHIS2's ``displayName``
    name: Optional[str] = None

    @classmethod
    def from_json(cls, data: Any) -> UserGroupRef:
        return _parse_user_group(data, "user group", {})

    def _repr_html_(self) -> str:
        """The user group on one line, with its uid, for Jupyter."""
        return _ref_html(self)


_USER_GROUP_KEYS = (
    _Key("id", str, required=True),
    _Key("displayName", str, fallback="name"),
)


def _parse_user_group(data: Any, key: str, users: _Users) -> UserGroupRef:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    name = get("displayName")
    if name is None:
        name = get("name")
    if not (type(uid) is str and (name is None or type(name) is str)):
        raise _key_error(data, "a user group", _USER_GROUP_KEYS)
    return UserGroupRef(id=uid, name=name)


@attrs.frozen(kw_only=True, slots=False)
class OrgUnitRef:
    """A DHIS2 organisation unit, as the organisation-unit lookups return it."""

    id: str
    #: DHIS2's ``displayName``
    name: Optional[str] = None
    #: 1 for the root (the country), 2 for the level below it, ...
    level: Optional[int] = None
    #: ``/rootUid/.../ownUid``
    path: Optional[str] = None

    @classmethod
    def from_json(cls, data: Any) -> OrgUnitRef:
        return _parse_org_unit(data, "organisation unit", {})

    def _repr_html_(self) -> str:
        """The organisation unit on one line, with its uid, for Jupyter."""
        return _ref_html(self)


_ORG_UNIT_KEYS = (
    _Key("id", str, required=True),
    _Key("displayName", str, fallback="name"),
    _Key("level", int),
    _Key("path", str),
)


def _parse_org_unit(data: Any, key: str, users: _Users) -> OrgUnitRef:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    get = data.get
    uid = get("id")
    name = get("displayName")
    if name is None:
        name = get("name")
    level = get("level")
    path = get("path")
    if not (
        type(uid) is str
        and (name is None or type(name) is str)
        and (level is None or type(level) is int)
        and (path is None or type(path) is str)
    ):
        raise _key_error(data, "an organisation unit", _ORG_UNIT_KEYS)
    return OrgUnitRef(id=uid, name=name, level=level, path=path)


# The lookups' answers: userLookup's {"users": [...]}, the metadata lists'
# {"<plural>": [...]}; each is returned as {"found": (record, ...)}.


def _parse_found(
    data: Any,
    key: str,
    what: str,
    plural: str,
    parse: Callable[[Any, str, _Users], _T],
    users: _Users,
) -> Dict[str, Tuple[_T, ...]]:
    if type(data) is not dict:
        raise _bad(key, data, "a JSON object")
    found = data.get(plural)
    if found is None:
        raise ResponseError(f"DHIS2 sent {what} without {plural!r}")
    return {"found": _parse_list(found, plural, parse, users)}


def _parse_user_lookup(data: Any, key: str, users: _Users) -> Dict[str, Tuple[UserRef, ...]]:
    return _parse_found(data, key, "a user lookup", "users", _parse_user, users)


def _parse_user_groups(data: Any, key: str, users: _Users) -> Dict[str, Tuple[UserGroupRef, ...]]:
    return _parse_found(data, key, "a list", "userGroups", _parse_user_group, users)


def _parse_org_units(data: Any, key: str, users: _Users) -> Dict[str, Tuple[OrgUnitRef, ...]]:
    return _parse_found(data, key, "a list", "organisationUnits", _parse_org_unit, users)


# -- Views -------------------------------------------------------------------
# A record as people read it: HTML in Jupyter (``_repr_html_``), plain text from
# ``str()``.  Everything that came from DHIS2 is user input: the HTML view
# escapes it, the text view turns control characters into spaces.

#: The columns of a list of conversations.  FLAGS holds ``*`` for unread and
#: ``!`` for follow-up.
_LIST_HEADERS = ("UID", "Flags", "Type", "Status", "Priority", "Last message", "From", "Subject")


def _when(value: Optional[_dt.datetime]) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _name(user: UserRef) -> str:
    """A user as people know them: the display name, else the uid."""
    return user.name or user.id


def _sender(user: Optional[UserRef]) -> str:
    """Who sent a message; DHIS2 sends no sender for its own (validation, system) messages."""
    return "System" if user is None else _name(user)


def _list_row(conv: Conversation) -> Tuple[str, ...]:
    """The cells of one conversation under ``_LIST_HEADERS``, not yet escaped."""
    return (
        conv.id,
        ("*" if conv.read is False else "") + ("!" if conv.follow_up else ""),
        conv.message_type or "",
        conv.status or "",
        conv.priority or "",
        _when(conv.last_message),
        _sender(conv.last_sender),
        conv.subject or "",
    )


def _facts(conv: Conversation) -> List[Tuple[str, str]]:
    """The labelled facts of a conversation, above its thread: the type, and the ticket
    fields (status, priority, assignee) for a ticket, or where another conversation has
    them set; a private message has none of them worth a line."""
    facts = [("Type", conv.message_type or "?")]
    ticket = conv.message_type == "TICKET"
    if ticket or conv.status not in (None, "NONE"):
        facts.append(("Status", conv.status or "?"))
    if ticket or conv.priority not in (None, "NONE"):
        facts.append(("Priority", conv.priority or "?"))
    if ticket or conv.assignee is not None:
        facts.append(("Assignee", "nobody" if conv.assignee is None else _name(conv.assignee)))
    return facts


def _read_by(conv: Conversation) -> str:
    readers = sum(1 for p in conv.participants if p.read)
    return f"read by {readers} of {len(conv.participants)}"


def _participants(conv: Conversation) -> str:
    n = len(conv.participants)
    return f"{n} participant{'s' * (n != 1)}"


def _participants_in_order(conv: Conversation) -> List[Participant]:
    """Readers first, each group by name (any case), then by uid."""
    return sorted(
        conv.participants, key=lambda p: (not p.read, _name(p.user).casefold(), p.user.id)
    )


#: How many participants the text view lists before it counts the rest.
_PARTICIPANT_LINES = 10


def _participant_state(p: Participant) -> str:
    return ("read" if p.read else "unread") + (", follow-up" if p.follow_up else "")


def _size(attachment: Attachment) -> str:
    n = attachment.content_length
    return "size unknown" if n is None else f"{n:,} bytes"


def _page_summary(page: Page) -> str:
    if not page.conversations:
        if page.total:
            return (
                f"no conversations on page {page.page} (of {page.page_count}; {page.total} in all)"
            )
        return "no conversations"
    return f"page {page.page} of {page.page_count}, {page.total} in all"


# Jupyter's stylesheet right-aligns table cells; text reads better from the left.
_TD = '<td style="text-align:left">'
_TH = '<th style="text-align:left">'


def _html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def _page_html(page: Page) -> str:
    esc = _html_escape
    rows = []
    for conv in page.conversations:
        cells = [esc(cell) for cell in _list_row(conv)]
        cells[0] = f"<code>{cells[0]}</code>"
        if conv.read is False:
            cells[-1] = f"<b>{cells[-1]}</b>"
        rows.append("<tr>" + "".join(f"{_TD}{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"{_TH}{name}</th>" for name in _LIST_HEADERS)
    caption = _page_summary(page)
    if page.conversations:
        caption += "; * unread (in bold), ! follow-up"
    return (
        f'<table><caption style="text-align:left">{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# An internal note stands apart: a coloured bar and a label.  Colours with alpha
# read on Jupyter's light and dark themes alike.
_NOTE_STYLE = (
    "border-left:4px solid #e0a800;background:rgba(224,168,0,0.12);padding:2px 8px;margin:6px 0"
)
_MESSAGE_STYLE = "border-left:4px solid rgba(128,128,128,0.35);padding:2px 8px;margin:6px 0"
_NOTE_LABEL = "internal note · feedback team only"


def _message_html(message: Message) -> str:
    esc = _html_escape
    note = (
        f' <small style="color:#a07000"><strong>{esc(_NOTE_LABEL)}</strong></small>'
        if message.internal
        else ""
    )
    files = "".join(
        f"<li>{esc(a.name or a.id)} ({esc(_size(a))}) <code>{esc(a.id)}</code></li>"
        for a in message.attachments
    )
    return (
        f'<div style="{_NOTE_STYLE if message.internal else _MESSAGE_STYLE}">'
        f"<b>{esc(_sender(message.sender))}</b> <small>{esc(_when(message.created))}</small>"
        f'{note}<pre style="white-space: pre-wrap">{esc(message.text or "")}</pre>'
        + (f"<ul>{files}</ul>" if files else "")
        + "</div>"
    )


def _participant_html(p: Participant) -> str:
    esc = _html_escape
    username = f" ({esc(p.user.username)})" if p.user.username else ""
    return f"<span><b>{esc(_name(p.user))}</b>{username}: {esc(_participant_state(p))}</span>"


def _conversation_html(conv: Conversation) -> str:
    """The subject and its facts, the participants folded into one line (a district
    has hundreds), then the thread."""
    esc = _html_escape
    facts = " · ".join(f"{label}: {esc(value)}" for label, value in _facts(conv))
    parts = [f"<h4>{esc(conv.subject or conv.id)}</h4><p><small>{facts}</small></p>"]
    if conv.participants:
        people = "".join(
            f'<li style="break-inside:avoid">{_participant_html(p)}</li>'
            for p in _participants_in_order(conv)
        )
        parts.append(
            f"<details><summary><small>{esc(_participants(conv))}, "
            f"{esc(_read_by(conv))} (readers first)</small></summary>"
            f'<ul style="columns:18em;margin:4px 0">{people}</ul></details>'
        )
    parts += [_message_html(message) for message in conv.messages]
    return "".join(parts)


def _ref_html(record: Any) -> str:
    """A user, user group or organisation unit: its name, what tells it apart, its uid."""
    esc = _html_escape
    extra = _ref_extra(record)
    return (
        f"<span><b>{esc(record.name or record.id)}</b>"
        + (f" ({esc(extra)})" if extra else "")
        + f" <code>{esc(record.id)}</code></span>"
    )


def _ref_extra(record: Any) -> str:
    """What tells a record apart from another of the same name: a username, a level."""
    if isinstance(record, UserRef):
        return record.username or ""
    if isinstance(record, OrgUnitRef) and record.level is not None:
        return f"level {record.level}"
    return ""


class _Found(List[_T]):
    """A lookup's answer: a plain list of records, shown as a table in Jupyter."""

    def __init__(self, records: Iterable[_T], what: str, tree: bool = False) -> None:
        super().__init__(records)
        self._what, self._tree = what, tree  # "user", ...; an organisation unit's subtree

    def _repr_html_(self) -> str:
        return _found_html(self, self._what, self._tree)


def _found_html(records: Sequence[Any], what: str, tree: bool) -> str:
    """Records as a table: name (a subtree indented by level), username or level, uid."""
    esc = _html_escape
    top = min((r.level for r in records if getattr(r, "level", None)), default=1)
    rows = []
    for r in records:
        depth = (r.level or top) - top if tree and isinstance(r, OrgUnitRef) else 0
        name = f'<span style="padding-left:{1.5 * depth:g}em">{esc(r.name or "")}</span>'
        rows.append(
            f"<tr>{_TD}{name}</td>{_TD}{esc(_ref_extra(r))}</td>"
            f"{_TD}<code>{esc(r.id)}</code></td></tr>"
        )
    count = f"{len(records)} {what}{'' if len(records) == 1 else 's'}" if records else f"no {what}s"
    if tree and records:
        count += f" (a subtree: {esc(records[0].name or records[0].id)} and the units below it)"
    extra = {"user": "Username", "organisation unit": "Level"}.get(what, "")
    head = f"<tr>{_TH}Name</th>{_TH}{extra}</th>{_TH}UID</th></tr>"
    return (
        f'<table><caption style="text-align:left">{count}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _cell(value: Optional[str]) -> str:
    """One line of text from DHIS2 (user input): line breaks and terminal escapes become spaces."""
    return _CONTROL_RE.sub(" ", value or "")


def _page_text(page: Page) -> str:
    """The page as a table: the columns as wide as their widest cell, the subject last."""
    if not page.conversations:
        return _page_summary(page)
    rows = [tuple(h.upper() for h in _LIST_HEADERS)]
    rows += [tuple(map(_cell, _list_row(conv))) for conv in page.conversations]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_LIST_HEADERS) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines + [_page_summary(page)])


def _message_lines(message: Message, conv: Optional[str]) -> List[str]:
    """A message under its header line; with the conversation's uid, each attachment's
    ``download`` command, ready to copy.  An internal note's lines are marked ``┃``."""
    note = f"  [{_NOTE_LABEL}]" if message.internal else ""
    lines = [f"[{_when(message.created)}] {_cell(_sender(message.sender))}  ({message.id}){note}"]
    indent = "  ┃ " if message.internal else "    "
    lines += [indent + _cell(line) for line in (message.text or "").splitlines() or [""]]
    for a in message.attachments:
        lines.append(f"    attachment {_cell(a.name or a.id)} ({_size(a)})")
        if conv is not None:
            lines.append(
                f"      dhis2-messages download {conv} {message.id} {a.id} "
                f"-o {shlex.quote(_file_name(a))}"
            )
    return lines


def _file_name(attachment: Attachment) -> str:
    """A safe local name for an attachment: its own name without any folder, else its uid."""
    name = _cell(os.path.basename((attachment.name or "").replace("\\", "/"))).strip()
    return name if name not in ("", ".", "..") and not name.startswith("-") else attachment.id


def _participant_text(p: Participant) -> str:
    username = f" ({_cell(p.user.username)})" if p.user.username else ""
    return f"{_cell(_name(p.user))}{username}: {_participant_state(p)}"


def _thread(conv: Conversation) -> str:
    lines = [
        _cell(conv.subject or conv.id),
        " · ".join(f"{label}: {_cell(value)}" for label, value in _facts(conv)),
    ]
    if conv.participants:
        people = _participants_in_order(conv)
        lines.append(f"{_participants(conv)}, {_read_by(conv)}:")
        # A district has hundreds: past the first few, only how many more.
        shown = people if len(people) <= _PARTICIPANT_LINES + 1 else people[:_PARTICIPANT_LINES]
        lines += ["    " + _participant_text(p) for p in shown]
        if len(shown) < len(people):
            rest = people[len(shown) :]
            unread = sum(1 for p in rest if not p.read)
            lines.append(f"    … and {len(rest)} more ({unread} of them unread)")
    for message in conv.messages:
        lines += [""] + _message_lines(message, conv.id)
    return "\n".join(lines)


# -- Date filters --------------------------------------------------------------
# DHIS2 compares dates as it stores them: yyyy-MM-ddTHH:mm:ss.SSS, no time zone,
# in the server's time.  These build the filters for the common cuts.

_DateField = Literal["lastMessage", "lastUpdated", "created"]
_When = Union[_dt.datetime, _dt.date, _dt.timedelta]
_DATE_FIELDS = ("lastMessage", "lastUpdated", "created")


def since(when: _When, *, field: _DateField = "lastMessage") -> str:
    """The ``filter`` for conversations whose *field* is *when* or later; by default
    the ones with a message since then::

        m.list_conversations(filter=since(datetime.date(2024, 5, 1)))
        # filter=lastMessage:gt:2024-04-30T23:59:59.999

    *when* is a naive ``datetime`` in the server's time (as DHIS2 sends its dates),
    a ``date`` (its midnight), or a ``timedelta``: that long before now, by this
    computer's clock.  *field* is ``lastMessage``, ``lastUpdated`` or ``created``.
    """
    # gt a millisecond earlier, not ge: up to 2.41 DHIS2 filters the list in memory,
    # where ge misses a date equal to the bound (DHIS2 keeps milliseconds).
    return f"{_date_field(field)}:gt:{_date_value(when, -1)}"


def before(when: _When, *, field: _DateField = "lastMessage") -> str:
    """The ``filter`` for conversations whose *field* is before *when*; with a
    ``timedelta``, the ones older than that::

        m.iter_conversations(filter=before(datetime.timedelta(days=30)))
        # filter=lastMessage:lt:2024-04-02T09:30:00.000, 30 days before now

    *when* and *field* are as for ``since``.
    """
    return f"{_date_field(field)}:lt:{_date_value(when)}"


def _date_field(field: Any) -> str:
    if not isinstance(field, str):
        raise TypeError(f"field must be a string, one of {', '.join(_DATE_FIELDS)}")
    if field not in _DATE_FIELDS:
        raise ValueError(f"field {_shown(field)} is not one of {', '.join(_DATE_FIELDS)}")
    return field


def _date_value(when: Any, shift: int = 0) -> str:
    """*when* as DHIS2 reads a date in a filter, rounded up to the millisecond (DHIS2
    keeps milliseconds, so ``lt`` cuts exactly where *when* does), *shift* ms later."""
    if isinstance(when, _dt.timedelta):
        if when < _dt.timedelta(0):
            raise ValueError("a timedelta counts back from now: give a positive one")
        when = _dt.datetime.now() - when
    elif isinstance(when, _dt.datetime):
        if when.tzinfo is not None:
            raise ValueError(
                "DHIS2 compares dates without a time zone, in the server's time: "
                "give a naive datetime (convert it to the server's zone, then drop tzinfo)"
            )
    elif isinstance(when, _dt.date):
        when = _dt.datetime.combine(when, _dt.time())
    else:
        raise TypeError(f"when must be a datetime, a date or a timedelta, not {_shown(when)}")
    moment: _dt.datetime = when
    if moment.microsecond % 1000:
        moment += _dt.timedelta(microseconds=1000 - moment.microsecond % 1000)
    return (moment + shift * _MILLISECOND).isoformat(timespec="milliseconds")


# -- Client ------------------------------------------------------------------

_UidArg = Union[str, Iterable[str]]
#: What the bulk calls take: uids, conversations, pages of them, or any iterable of those.
_ConversationsArg = Union[str, Conversation, Page, Iterable[Union[str, Conversation, Page]]]
_UserArg = Union[str, UserRef]
_UsersArg = Union[str, UserRef, Iterable[Union[str, UserRef]]]
_GroupsArg = Union[str, UserGroupRef, Iterable[Union[str, UserGroupRef]]]
_OrgUnitsArg = Union[str, OrgUnitRef, Iterable[Union[str, OrgUnitRef]]]
_File = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
_Since = Union[_dt.datetime, _dt.timedelta, None]
_Once = Union[bool, _dt.datetime, _dt.timedelta]

#: What the look-up for a conversation started before reads of each candidate.
_STARTED_FIELDS = f"id,subject,messageType,created,messages[id,text,sender[{_USER_FIELDS}]]"
#: What the look-up for a reply reads of its thread.
_REPLY_FIELDS = "id,messages[id,text,created,sender[id]]"
#: How many more times a create's lost answer is looked for when DHIS2 may still be at
#: work (a timeout, a proxy's 504), waiting as between retries: 0.5, 1, 2, 4, 8 s.
_LOOKS_AGAIN = 5

_RETRY_STATUSES = frozenset((429, 502, 503, 504))
_MEDIA_JSON = "application/json"
_MEDIA_TEXT = "text/plain; charset=utf-8"


class _Setting(Generic[_T]):
    """A Messenger setting: checked when set, and read by every call, so a
    change after construction takes effect (nothing keeps a stale copy)."""

    def __init__(self, check: Callable[[Any, str], _T], default: Optional[_T] = None) -> None:
        self._check, self._default = check, default

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._slot = name, "_" + name

    @overload
    def __get__(self, obj: None, owner: Any) -> _Setting[_T]: ...
    @overload
    def __get__(self, obj: object, owner: Any) -> _T: ...
    def __get__(self, obj: Optional[object], owner: Any) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._slot, self._default)

    def __set__(self, obj: object, value: Any) -> None:
        setattr(obj, self._slot, self._check(value, self._name))


class Messenger:
    """Blocking client for the messaging API of one DHIS2 instance.

    Use it as a context manager, or call :meth:`close` when done.  A *session*
    you pass in is borrowed: it is used as it is and never closed here.  The
    settings below may be changed at any time; the next call uses the new value.
    """

    #: ``(connect, read)`` seconds for each request.
    timeout: _Setting[Tuple[float, float]] = _Setting(lambda value, name: _check_timeout(value))
    #: How many times an idempotent call is retried.
    retries: _Setting[int] = _Setting(lambda value, name: _check_count(value, name, 0))
    #: Seconds before the first retry; doubled for each further one.
    backoff: _Setting[float] = _Setting(
        lambda value, name: _check_seconds(value, name, zero=True), 0.5
    )
    #: The longest wait between retries; a longer ``Retry-After`` is not waited for.
    max_retry_wait: _Setting[float] = _Setting(
        lambda value, name: _check_seconds(value, name, zero=True), 60.0
    )
    #: The most one method call may take, retries and waits included, in seconds.
    deadline: _Setting[float] = _Setting(lambda value, name: _check_seconds(value, name))
    #: The largest response body accepted, in bytes, counted after decompression.
    max_response_size: _Setting[int] = _Setting(lambda value, name: _check_count(value, name))

    def __init__(
        self,
        base_url: str,
        *,
        auth: Union[Tuple[str, str], AuthBase, None] = None,
        token: Optional[str] = None,
        session: Optional[requests.Session] = None,
        timeout: Union[float, Tuple[float, float]] = DEFAULT_TIMEOUT,
        retries: int = 3,
        verify: Union[bool, str] = True,
        deadline: float = 300.0,
        max_response_size: int = 64 * 1024 * 1024,
    ) -> None:
        """Connect to the DHIS2 at *base_url*; nothing is sent until the first call.

        - *base_url*: the server root, with its context path if any
          (``https://host/dhis``); a trailing ``/`` or ``/api`` is dropped.
        - *auth*: ``(username, password)`` for HTTP Basic, or any requests ``AuthBase``.
        - *token*: a personal access token (``d2p_...``), sent as ``ApiToken``.
          Give *auth* or *token*, not both.
        - *session*: a ``requests.Session`` to borrow; it is never closed here.
        - *timeout*: ``(connect, read)`` seconds for each request, or one number for both.
        - *retries*: how many times a request that changes nothing twice is
          retried on a failed connection or a 429, 502, 503, 504; 0 for never.
        - *verify*: TLS verification: True, False, or the path of a CA bundle.
        - *deadline*: the most one method call may take, in seconds, retries
          and waits included.
        - *max_response_size*: the largest answer accepted, in bytes, counted
          after decompression.

        Bad values are a ValueError or TypeError, here.
        """
        self._base_url = _check_base_url(base_url)
        self.timeout = timeout  # a number or a pair, kept as a pair
        self.retries = retries
        self.deadline = deadline
        self.max_response_size = max_response_size
        self._auth, self._auth_kind = _credentials(auth, token)
        self._headers = _HEADERS
        # The server's DHIS2 version, asked once and only when an error needs explaining.
        self._dhis2_version: Optional[str] = None
        self._version_asked = False
        self._me: Optional[str] = None  # the caller's uid, asked once, when sending once
        # The last answer's Date header, and when its request was sent and answered
        # (time.time()): the server's clock, for once= with a datetime or timedelta.
        self._clock: Tuple[Optional[str], float, float] = (None, 0.0, 0.0)
        # Conversations and tickets this Messenger started lately: never mistaken for
        # the one a lost answer was about.
        self._started: Deque[str] = collections.deque(maxlen=64)
        self._owns_session = session is None
        self._session = _own_session() if session is None else session
        self._send_options = _send_options(self._session, self.base_url, verify)

    @property
    def base_url(self) -> str:
        """The server root, without ``/api``; fixed at construction."""
        return self._base_url

    @classmethod
    def from_env(cls, **overrides: Any) -> Messenger:
        """Build a Messenger from ``DHIS2_URL`` and ``DHIS2_TOKEN`` (or ``DHIS2_PAT``),
        or ``DHIS2_USERNAME`` + ``DHIS2_PASSWORD``; keyword arguments win."""
        options = _env_options(overrides)
        if not options.get("base_url"):
            raise ValueError("DHIS2_URL is not set: export DHIS2_URL=https://your.dhis2.server")
        auth = options.get("auth")
        if auth is None and "token" not in options:
            raise ValueError(
                "no DHIS2 credentials in the environment: set DHIS2_TOKEN (or DHIS2_PAT), "
                "or DHIS2_USERNAME and DHIS2_PASSWORD"
            )
        if isinstance(auth, tuple) and auth[1] is None:
            raise ValueError(f"DHIS2_PASSWORD is not set (DHIS2_USERNAME is {auth[0]!r})")
        return cls(**options)

    def __repr__(self) -> str:
        return f"<Messenger {self.base_url} auth={self._auth_kind}>"

    def __enter__(self) -> Messenger:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections, unless the session was borrowed."""
        if self._owns_session:
            self._session.close()

    # -- Inbox ----------------------------------------------------------------

    def list_conversations(
        self,
        *,
        filter: Union[str, Iterable[str], None] = None,
        query: Optional[str] = None,
        query_operator: Optional[str] = None,
        order: Union[str, Iterable[str], None] = "lastMessage:desc",
        fields: Optional[str] = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Page:
        """Return one page of the caller's conversations, newest first by default.

        ``GET /api/messageConversations``
        """
        params = _list_params(filter, query, query_operator, order, fields, page_size)
        params.append(("page", str(_check_count(page, "page"))))
        return self._get_page(params)

    def iter_conversations(
        self,
        *,
        filter: Union[str, Iterable[str], None] = None,
        query: Optional[str] = None,
        query_operator: Optional[str] = None,
        order: Union[str, Iterable[str], None] = "lastMessage:desc",
        fields: Optional[str] = None,
        page_size: Optional[int] = None,
        on_page: Optional[Callable[[Page], None]] = None,
    ) -> Iterator[Conversation]:
        """Yield every matching conversation, fetching the next page only when reached.

        The walk survives its own changes: a loop that marks each conversation
        read, or deletes it, still meets every one that matched when the walk
        began, once.  That holds when the first ``order`` is ``lastMessage``,
        ``lastUpdated``, ``created``, ``messageCount`` or ``subject``, with
        ``asc`` or ``desc``;
        with another order (or none) the walk pages by number, as DHIS2 does,
        and changes made during it shift the pages.  Conversations created
        during the walk do not disturb it: in the orders that would put them
        among the others (``subject``, ``messageCount``, or by number) one
        request first finds the newest, and the walk keeps to those before it.
        One that someone replies to during a newest-first walk becomes the
        newest and is not met.  The walk ends within twice the pages the first
        page's total calls for, plus two.

        *page_size* defaults to ``WALK_PAGE_SIZE``, for the fewest requests.
        *on_page*, when given, is called with each page as it arrives, before its
        conversations are yielded (its pager tells how far the walk has come; its
        conversations are the ones about to be yielded): a progress line, say.

        ``GET /api/messageConversations``, once per page
        """
        size = WALK_PAGE_SIZE if page_size is None else page_size
        params = _list_params(filter, query, query_operator, order, fields, size)
        if on_page is not None and not callable(on_page):
            raise TypeError("on_page must be a function that takes a Page")
        return self._iter_pages(params, on_page)

    def _iter_pages(
        self, params: List[Tuple[str, str]], on_page: Optional[Callable[[Page], None]]
    ) -> Iterator[Conversation]:
        """The walk behind iter_conversations."""
        params = list(params)  # the walk adds to the fields, orders and filters
        size = int(dict(params)["pageSize"])
        resume = _resume_by(params)
        _total_order(params)
        if resume is None or resume[0] in _ARRIVE_AMONG:
            params += self._created_so_far()
        if resume is None:
            pages: Iterator[Page] = self._pages_by_number(params)
        else:
            pages = self._pages_by_value(params, size, *resume)
        limit = 0
        for number, page in enumerate(pages, 1):
            if number == 1:
                # What arrives during the walk is kept out of it (by the bound, or by
                # _created_so_far), so it meets the first page's total at most: twice
                # its pages leave room for the walk's own checks and for conversations
                # that change into the filter, and a pager that announces one more page
                # forever, or answers the same conversations again, cannot hold it longer.
                limit = 2 * (-(-page.total // size) + 1)
            if on_page is not None:
                on_page(page)
            yield from page.conversations
            if number >= limit:
                return

    def _created_so_far(self) -> List[Tuple[str, str]]:
        """``created:lt:<just past the newest conversation>``: a filter that keeps out
        of a walk the conversations created after it began (one request).  The walks
        that need it are those whose order puts a new conversation among the others."""
        newest = self._get_page(
            [("fields", "id,created"), ("order", "created:desc"), ("pageSize", "1"), ("page", "1")]
        )
        created = newest.conversations[0].created if newest.conversations else None
        bound = None if created is None else _bound("created", created, "le")
        return [] if bound is None else [("filter", bound)]

    def _pages_by_number(self, params: List[Tuple[str, str]]) -> Iterator[Page]:
        number = 1
        previous: Set[str] = set()
        while True:
            page = self._get_page(params + [("page", str(number))])
            fresh = tuple(c for c in page.conversations if c.id not in previous)
            yield attrs.evolve(page, conversations=fresh)
            # The pager decides; a page with nothing new also ends the walk.
            if not fresh or page.page >= page.page_count or page.page < number:
                return
            previous = {c.id for c in fresh}
            number = page.page + 1

    # Pages resumed by value: DHIS2 pages by offset, so a loop that marks each
    # conversation read (out of ``read:eq:false``) or deletes it shifts every later
    # page, and a walk by page numbers skips about half of them.
    #
    # Each request keeps, with the caller's filters, a bound: the last value met and
    # what sorts after it (_bound).  At the front of what it keeps come the
    # conversations already met with that value (ties), or, while the values met
    # cannot be written in a filter (a subject with a comma, which 2.42+ cuts),
    # every one met since the bound was set: the head.  A short head is asked for
    # again with the next page (page 1, that much larger); a long one is skipped by
    # offset (_window).  The window starts before the last page's conversations
    # while the loop removes what it meets (read out of the filter, or deleted), and
    # just before the next new one while it does not; its first conversation must
    # be one of the head, or the list changed under it and the walk asks again,
    # further back.  So each request brings about ``size`` new conversations, for
    # at most about twice as many rows, whatever the ties.

    def _pages_by_value(
        self, params: List[Tuple[str, str]], size: int, key: str, attr: str, op: str
    ) -> Iterator[Page]:
        """The pages of a walk whose first order is ``key`` (see above)."""
        base = [p for p in params if p[0] != "pageSize"]
        bound: Optional[str] = None
        at: Any = None  # the value of the bound
        head: Set[str] = set()
        kept = 0  # conversations of the head there at the last look
        recent: Set[str] = set()  # of them, the ones the last page yielded
        removes, failed = True, 0  # the loop may remove what it meets; windows that failed
        trusted = key != "subject"  # a date or a number compares here as in DHIS2

        def new(conv: Conversation) -> bool:
            value = getattr(conv, attr)
            if trusted and at is not None and (value is None or _before(value, at, op)):
                return False  # before the bound: a server ignoring the filter
            return conv.id not in head

        while True:
            back = min(2, failed + removes)  # how far back the window starts
            number, page_size = _window(kept, (0, len(recent), kept)[back], size)
            query = base + [("pageSize", str(page_size)), ("page", str(number))]
            if bound is not None:
                query.append(("filter", bound))
            page = self._get_page(query)
            rows, start = page.conversations, (number - 1) * page_size
            if start and (not rows or rows[0].id not in head):
                failed += 1  # the list changed before the window: ask again, further back
                yield attrs.evolve(page, conversations=())
                continue
            if back:
                removes, failed = not recent <= {c.id for c in rows}, 0
            fresh = tuple(c for c in rows if new(c))
            yield attrs.evolve(page, conversations=fresh)
            if len(rows) < page_size or start + len(rows) >= page.total:
                return
            last = getattr(rows[-1], attr)
            text = _bound(key, last, op)
            if text is not None and last != at:
                bound, at = text, last
                head = {c.id for c in rows if getattr(c, attr) == last}
                kept = len(head)
            else:
                head.update(c.id for c in rows)
                kept = start + len(rows)
            recent = {c.id for c in fresh} & head

    def _get_page(self, params: List[Tuple[str, str]]) -> Page:
        answer = self._request("GET", "/messageConversations", params=params)
        return Page.from_json(_decode_json(answer))

    def _server_version(self) -> Optional[str]:
        """``GET /api/system/info?fields=version``, once per Messenger, on demand."""
        if not self._version_asked:
            self._version_asked = True
            try:
                answer = self._request("GET", "/system/info", params=[("fields", "version")])
                version = _check_object(_decode_json(answer), "system info").get("version")
            except Dhis2Error:
                version = None
            self._dhis2_version = version if isinstance(version, str) else None
        return self._dhis2_version

    def count_unread(self) -> int:
        """Return how many of the caller's conversations are unread.

        ``GET /api/messageConversations?filter=read:eq:false&pageSize=1&fields=id``
        """
        params = [("filter", "read:eq:false"), ("pageSize", "1"), ("fields", "id")]
        body = _check_object(
            _decode_json(self._request("GET", "/messageConversations", params=params)), "list"
        )
        total = _get_int(_check_object(body.get("pager"), "pager"), "total")
        if total is None or total < 0:
            raise ResponseError(
                "DHIS2 sent a pager without 'total'"
                if total is None
                else f"DHIS2 sent a pager whose total is {total}, not a count",
                "invalid",
                "GET",
                "/messageConversations",
                200,
            )
        return total

    def get_conversation(self, uid: str, *, mark_read: bool = False) -> Conversation:
        """Return one conversation with its whole thread, oldest message first.

        ``mark_read=True`` marks it read for the caller; ``read`` in the answer
        is still the value from before.  ``GET /api/messageConversations/{uid}``
        """
        uid = _check_uid(uid, "uid")
        params = [("fields", THREAD_FIELDS)]
        if _check_flag(mark_read, "mark_read"):
            params.append(("markRead", "true"))
        answer = self._request("GET", f"/messageConversations/{uid}", params=params)
        body = _decode_json(answer)
        if isinstance(body, dict) and "id" not in body and isinstance(body.get("message"), str):
            # DHIS2 answers an unknown uid with HTTP 200 and a bare message.
            error = NotFoundError(answer.status, body["message"], None, body)
            error.method, error.path = answer.method, answer.path
            raise error
        return Conversation.from_json(body)

    # -- Sending --------------------------------------------------------------
    # A create is sent at most once.  When its answer is lost (a timeout after it was
    # sent, a connection broken after it was written, a proxy's 502, 503 or 504) send,
    # reply and send_feedback look on DHIS2 whether it was done before raising (_create).
    # once= and find_sent look the same way before sending (_look_up).

    def send(
        self,
        *,
        subject: str,
        text: str,
        users: _UsersArg = (),
        user_groups: _GroupsArg = (),
        organisation_units: _OrgUnitsArg = (),
        attachments: _UidArg = (),
        once: _Once = False,
    ) -> str:
        """Start a private conversation and return its uid.  Never sent twice.

        Recipients are uids or the records the lookups return (``UserRef``,
        ``UserGroupRef``, ``OrgUnitRef``).  An organisation unit reaches only the
        users assigned to that exact unit: pass ``organisation_unit_subtree(uid)``
        to reach everyone in it and below it.

        *once*: ``True``, a ``datetime`` or a ``timedelta``: when the caller already
        started a conversation with exactly this subject whose first message is exactly
        this text (created since then, by DHIS2's clock; see :meth:`find_sent`), return
        its uid and send nothing.  When the answer is lost (a timeout, a broken
        connection, a proxy's 502, 503 or 504), DHIS2 is asked whether the conversation
        was made before anything is raised: found, its uid is returned and a WARNING
        logged; not found, the error says so.
        ``POST /api/messageConversations``
        """
        body: Dict[str, Any] = {
            "subject": _check_text(subject, "subject"),
            "text": _check_text(text, "text"),
        }
        body.update(_recipients_body(users, user_groups, organisation_units))
        if not body.keys() - {"subject", "text"}:
            raise ValueError(
                "send needs at least one recipient: users, user_groups or organisation_units"
            )
        refs = _check_uids(attachments, "attachments", allow_empty=True)
        if refs:
            body["attachments"] = [{"id": ref} for ref in refs]
        look, since = _check_once(once)
        with _one_deadline(self.deadline):  # for the look-ups and the send together
            if look:
                found = self._look_up("PRIVATE", subject, text, since)
                if found is not None:
                    return self._not_sent("send", found)
            try:
                uid: str = self._create(
                    "send",
                    "the conversation",
                    lambda: self._request(
                        "POST", "/messageConversations", json_body=body, idempotent=False
                    ),
                    _location_uid,
                    lambda at: self._started_since("PRIVATE", subject, text, at),
                )
            except ConflictError as err:
                _explain_no_recipients(err, "organisationUnits" in body)
                raise
            self._started.append(uid)
            return uid

    def reply(
        self, uid: str, text: str, *, internal: bool = False, attachments: _UidArg = ()
    ) -> None:
        """Add a message to a conversation.  Never sent twice.

        When the answer is lost, DHIS2 is asked whether the thread has a message from
        the caller with this text, made after the reply was sent (by DHIS2's clock):
        found, the call returns and a WARNING is logged; not found, the error says so.
        ``POST /api/messageConversations/{uid}`` with the text as the body
        """
        uid = _check_uid(uid, "uid")
        data = _check_text(text, "text").encode("utf-8")
        params = [("internal", "true")] if _check_flag(internal, "internal") else []
        refs = _check_uids(attachments, "attachments", allow_empty=True)
        if refs:
            params.append(("attachments", ",".join(refs)))

        def done(answer: _Answer) -> str:
            _ack(answer)
            return uid

        with _one_deadline(self.deadline):
            self._create(
                "reply",
                "the reply",
                lambda: self._request(
                    "POST",
                    f"/messageConversations/{uid}",
                    params=params,
                    data=data,
                    content_type=_MEDIA_TEXT,
                    idempotent=False,
                ),
                done,
                lambda at: self._replied_since(uid, text, at),
            )

    def send_feedback(self, *, subject: str, text: str, once: _Once = False) -> str:
        """Open a feedback ticket to the feedback recipients group; return its uid.

        *once* as for :meth:`send`, for the caller's tickets; a lost answer is looked
        up as there.  ``POST /api/messageConversations/feedback?subject=...``; DHIS2
        before 2.41.3 sends no ``Location``, and one list request then finds the ticket
        (never sent twice).
        """
        params = [("subject", _check_text(subject, "subject"))]
        data = _check_text(text, "text").encode("utf-8")
        look, since = _check_once(once)
        with _one_deadline(self.deadline):
            if look:
                found = self._look_up("TICKET", subject, text, since)
                if found is not None:
                    return self._not_sent("send_feedback", found)
            uid: str = self._create(
                "send_feedback",
                "the ticket",
                lambda: self._request(
                    "POST",
                    "/messageConversations/feedback",
                    params=params,
                    data=data,
                    content_type=_MEDIA_TEXT,
                    idempotent=False,
                ),
                lambda answer: self._new_ticket(answer, subject, text),
                lambda at: self._started_since("TICKET", subject, text, at),
            )
            self._started.append(uid)
            return uid

    def find_sent(
        self,
        *,
        subject: str,
        text: str,
        since: Union[_dt.datetime, _dt.timedelta, None] = None,
        feedback: bool = False,
    ) -> Optional[Conversation]:
        """The newest conversation the caller started with exactly this subject and
        first message text, or None; ``feedback=True``: the caller's tickets.

        Only conversations the caller started count, not one someone else sent with
        the same words; one the caller removed from their inbox cannot be found.
        *since*: only those created since then, by DHIS2's clock: a ``timedelta``
        counts back from DHIS2's time now (the ``Date`` of its answers), an aware
        ``datetime`` is that moment, a naive one is DHIS2's own time, as the records'
        dates are.  The record has ``id``, ``subject``, ``created`` and the messages.

        ``GET /api/messageConversations`` filtered by type, subject and date (newest
        first; a further page only when more than 50 such conversations came first),
        and once per Messenger ``GET /api/me?fields=id`` for the caller's uid.
        """
        _check_text(subject, "subject")
        _check_text(text, "text")
        bound = _check_since(since, "since")
        kind = "TICKET" if _check_flag(feedback, "feedback") else "PRIVATE"
        with _one_deadline(self.deadline):
            return self._look_up(kind, subject, text, bound)

    def _look_up(self, kind: str, subject: str, text: str, since: _Since) -> Optional[Conversation]:
        """find_sent's look-up: the caller's uid first, whose answer also sets the clock."""
        me = self._caller()
        return self._find_started(kind, subject, text, self._since(since), ("id", me))

    def _find_started(
        self,
        kind: str,
        subject: str,
        text: str,
        since: Optional[str],
        sender: Optional[Tuple[str, str]],
        exclude: Iterable[str] = (),
    ) -> Optional[Conversation]:
        """The newest conversation of *kind* created since *since* (a filter value), with
        exactly *subject*, whose first message is exactly *text* from *sender*
        (``(attribute, value)`` of its UserRef; None: anyone), not one of *exclude*.

        The filters are ones DHIS2 reads back exactly (``_subject_filter``); the rest is
        checked here, on the caller's conversations newest first."""
        params = [("fields", _STARTED_FIELDS), ("filter", f"messageType:eq:{kind}")]
        narrowed = _subject_filter(subject)
        if narrowed is not None:
            params.append(("filter", narrowed))
        if since is not None:
            # gt, not ge: up to 2.41 DHIS2 filters the list in memory, where ge misses an
            # equal date (the bound is one millisecond early instead, as DHIS2 keeps them).
            params.append(("filter", f"created:gt:{since}"))
        params += [("order", "created:desc"), ("pageSize", "50")]
        excluded = set(exclude)
        for conv in self._iter_pages(params, None):
            first = conv.messages[0] if conv.messages else None
            if (
                first is not None
                and conv.subject == subject
                and first.text == text
                and conv.id not in excluded
                and (sender is None or getattr(first.sender, sender[0], None) == sender[1])
            ):
                _check_uid_from_server(conv.id)
                return conv
        return None

    def _caller(self) -> str:
        """The caller's uid: ``GET /api/me?fields=id``, once per Messenger."""
        if self._me is None:
            body = _check_object(
                _decode_json(self._request("GET", "/me", params=[("fields", "id")])), "/api/me"
            )
            self._me = _check_uid_from_server(_get_required_str(body, "id", "the caller"))
        return self._me

    def _since(self, since: _Since) -> Optional[str]:
        """One millisecond before *since*, as a ``created:gt:`` value: a naive datetime is
        DHIS2's own time (its dates carry no zone); an aware one, and now minus a
        timedelta, are instants written in UTC (``...Z``), which DHIS2 moves into its own
        zone (DateUtils)."""
        if since is None:
            return None
        if isinstance(since, _dt.timedelta):
            return _utc_value(self._server_now() - since.total_seconds() - 0.001)
        if since.tzinfo is None:
            return _local_value(since - _MILLISECOND)
        return _utc_value(since.timestamp() - 0.001)

    def _server_now(self) -> float:
        """DHIS2's time now, in seconds since 1970, at least: from the last answer's
        ``Date`` (whole seconds, cut down) and the seconds since it came."""
        date, _, answered = self._clock
        when = _http_date(date)
        if when is None:
            log.debug("no Date header from DHIS2: its clock is taken to be this machine's")
            return time.time()
        return when + (time.time() - answered)

    def _not_sent(self, call: str, found: Conversation) -> str:
        log.info(
            "%s: not sent: the caller started %s with this subject and text on %s",
            call,
            found.id,
            found.created,
        )
        return found.id

    def _create(
        self,
        call: str,
        thing: str,
        request: Callable[[], _Answer],
        finish: Callable[[_Answer], str],
        look: Callable[[_dt.datetime], Optional[str]],
    ) -> str:
        """Send a create (*request*) once and return what *finish* reads from its answer.

        When the answer is lost, *look* is asked (with DHIS2's time when it was sent)
        whether DHIS2 did it anyway: found, its uid is returned as if the answer had
        come; not found, the error is raised and says so."""
        sent = time.monotonic()
        try:
            answer = request()
        except Dhis2Error as error:
            if not error.maybe_done:
                raise
            found = self._look_for(thing, error, look, sent)
            log.warning(
                "%s: the answer to %s %s was lost (%s), but DHIS2 did it: %s was found; "
                "nothing was sent twice",
                call,
                error.method,
                error.path,
                _lost_how(error),
                found,
            )
            return found
        return finish(answer)

    def _look_for(
        self,
        thing: str,
        error: Dhis2Error,
        look: Callable[[_dt.datetime], Optional[str]],
        sent: float,
    ) -> str:
        """Look on DHIS2 for what a create whose answer was lost did, or raise *error*.

        After a timeout or a proxy's 504 DHIS2 may still be working: it looks again a few
        times, waiting as between retries, within the call's one deadline."""
        no_time = f"No time was left within the deadline to look for {thing}. {_MAYBE_DONE}."
        if time.monotonic() >= _deadline.call:
            _advise_lost(error, no_time)
            raise error
        looks = 1 + (_LOOKS_AGAIN if _may_still_work(error) else 0)
        started, looked = time.monotonic(), 0
        try:
            since = self._server_time(sent)
            for number in range(looks):
                wait = min(self.backoff * 2.0 ** (number - 1), self.max_retry_wait)
                if number and time.monotonic() + wait >= _deadline.call:
                    break
                if number and wait:
                    time.sleep(wait)
                found = look(since)
                if found is not None:
                    return found
                looked += 1
        except Dhis2Error as failure:
            error.looked = looked
            _advise_lost(error, f"Looking on DHIS2 for {thing} failed: {failure} {_MAYBE_DONE}.")
            raise error
        error.looked = looked
        _advise_lost(
            error,
            f"{thing[0].upper()}{thing[1:]} was not found on DHIS2 (looked {_times(looked)} over "
            f"{time.monotonic() - started:.1f} s), but it may still arrive: look before "
            "sending it again.",
        )
        raise error

    def _server_time(self, sent: float) -> _dt.datetime:
        """DHIS2's own time (its zone, no zone attached) when a request was sent at
        ``time.monotonic()`` *sent*, at the earliest: ``serverDate`` from
        ``/api/system/info``, which is DHIS2's clock to the millisecond, less the time
        since then."""
        answer = self._request("GET", "/system/info", params=[("fields", "serverDate")])
        answered = time.monotonic()
        value = _check_object(_decode_json(answer), "system info").get("serverDate")
        now = _parse_timestamp(value, "serverDate")
        if now is None or now.tzinfo is not None:
            raise _bad("serverDate", value, "DHIS2's date and time")
        return now - _dt.timedelta(seconds=answered - sent)

    def _started_since(self, kind: str, subject: str, text: str, at: _dt.datetime) -> Optional[str]:
        """The conversation (or ticket) a send made at DHIS2's time *at*, if DHIS2 made it."""
        value = _local_value(at - _MILLISECOND)
        me = self._caller()
        found = self._find_started(kind, subject, text, value, ("id", me), self._started)
        return None if found is None else found.id

    def _replied_since(self, uid: str, text: str, at: _dt.datetime) -> Optional[str]:
        """*uid* when its thread has a message from the caller with *text*, made at DHIS2's
        time *at* or later.  An equal message the caller sent before *at* (the same words
        again) does not count."""
        me = self._caller()
        answer = self._request(
            "GET", f"/messageConversations/{uid}", params=[("fields", _REPLY_FIELDS)]
        )
        for message in reversed(Conversation.from_json(_decode_json(answer)).messages):
            made = message.created
            if (
                message.text == text
                and message.sender is not None
                and message.sender.id == me
                and made is not None
                and made.tzinfo is None
                and made >= at
            ):
                return uid
        return None

    def _new_ticket(self, answer: _Answer, subject: str, text: str) -> str:
        """The uid of the ticket a ``201 Feedback created`` made: from ``Location``, or
        (DHIS2 before 2.41.3, which sends none) with one list request.

        The look-up is the one ``once=`` uses, for tickets created since the POST by the
        201's ``Date`` (less the request's time and a second); from the caller when its uid
        is known, else, with Basic auth, by username (one request, not two)."""
        if answer.headers.get("Location"):
            return _location_uid(answer)
        date, sent, answered = self._clock  # this 201's
        when = _http_date(date)
        since = None if when is None else _utc_value(when - (answered - sent) - 1.0)
        sender: Optional[Tuple[str, str]] = None
        if self._me is not None:
            sender = ("id", self._me)
        elif isinstance(self._auth, HTTPBasicAuth):
            sender = ("username", str(self._auth.username))
        try:
            found = self._find_started("TICKET", subject, text, since, sender, self._started)
        except Dhis2Error as err:
            failure = f"looking it up failed: {err}"
        else:
            if found is not None:
                return found.id
            failure = "no such ticket is in the caller's list"
        raise ResponseError(
            "DHIS2 created the feedback ticket but sent no Location (DHIS2 before 2.41.3) and "
            f"{failure}.",
            "no_location",
            answer.method,
            answer.path,
            answer.status,
            "The ticket exists: look in the inbox before sending it again.",
        )

    def add_recipients(
        self,
        uid: str,
        *,
        users: _UsersArg = (),
        user_groups: _GroupsArg = (),
        organisation_units: _OrgUnitsArg = (),
    ) -> None:
        """Add users, user groups' members or organisation units' users to a conversation.

        ``POST /api/messageConversations/{uid}/recipients``
        """
        uid = _check_uid(uid, "uid")
        body = _recipients_body(users, user_groups, organisation_units)
        if not body:
            raise ValueError("add_recipients needs users, user_groups or organisation_units")
        with _if_lost(
            "DHIS2 may have added them: adding the same recipients again is harmless "
            "(DHIS2 adds only users who are not participants yet)."
        ):
            _ack(
                self._request(
                    "POST",
                    f"/messageConversations/{uid}/recipients",
                    json_body=body,
                    idempotent=False,
                )
            )

    # -- Read state, follow-up, delete ----------------------------------------

    def mark_read(self, uids: _ConversationsArg, *, user: Optional[_UserArg] = None) -> List[str]:
        """Mark conversations read; return the uids that were unread before.

        After a retry of a lost answer, only those the retry changed: a subset.
        ``POST /api/messageConversations/read``, as often as the uids need
        (see :meth:`delete_conversations` for how they are split and what an error holds).
        """
        return self._bulk("/read", "markedRead", uids, user)

    def mark_unread(self, uids: _ConversationsArg, *, user: Optional[_UserArg] = None) -> List[str]:
        """Mark conversations unread; return the uids that were read before.

        After a retry of a lost answer, only those the retry changed: a subset.
        ``POST /api/messageConversations/unread``, as often as the uids need
        """
        return self._bulk("/unread", "markedUnread", uids, user)

    def follow_up(self, uids: _ConversationsArg, *, user: Optional[_UserArg] = None) -> List[str]:
        """Flag conversations for follow-up; return every uid DHIS2 found.

        ``POST /api/messageConversations/followup``, as often as the uids need
        """
        return self._bulk("/followup", "markedFollowup", uids, user)

    def unfollow_up(self, uids: _ConversationsArg, *, user: Optional[_UserArg] = None) -> List[str]:
        """Clear the follow-up flag; return every uid DHIS2 found.

        ``POST /api/messageConversations/unfollowup``, as often as the uids need
        """
        return self._bulk("/unfollowup", "unmarkedFollowup", uids, user)

    def _bulk(
        self, path: str, key: str, uids: _ConversationsArg, user: Optional[_UserArg]
    ) -> List[str]:
        params = _user_params(user)
        values = _bulk_uids(uids, "uids")

        def send(chunk: List[str]) -> List[str]:
            answer = self._request(
                "POST", f"/messageConversations{path}", params=params, json_body=chunk
            )
            return _uid_list(_decode_json(answer), key)

        # A JSON body of 2,000 uids is 28 kB: the count, not the size, is the limit.
        with _one_deadline(self.deadline):  # one for the whole call, as for every call
            return self._in_chunks(values, send, lambda: _MAX_UIDS, user is None)

    def delete_conversations(
        self, uids: _ConversationsArg, *, user: Optional[_UserArg] = None
    ) -> List[str]:
        """Remove conversations from a user's inbox (the caller's by default).

        Other participants keep them.  Returns the uids actually removed;
        after a retry of a lost answer, only those the retry removed: a subset
        (the lost attempt may have removed the others, which are gone all the same).

        *uids*: uids, ``Conversation`` records, a ``Page``, or any iterable of
        them, read lazily (a walk is not read ahead of the requests), each
        checked before the request that carries it; none at all is ``[]``
        without a request.  They go in as few requests as real deployments
        accept: the request line and headers within 8,192 bytes less 1 KiB for
        what proxies add, at most 1,000 query parameters, at most 2,000 uids.
        When a request fails after others succeeded, the error has ``done``
        (the uids changed so far) and says how many of how many were done.
        Acting for the caller, uids no longer in the caller's inbox (DHIS2
        2.41.3+ refuses the whole request with a 403 for one of them) are looked
        up, left out, and the rest is done: the result lists what changed.
        ``DELETE /api/messageConversations?mc=...&mc=...``, as often as the uids need
        """
        return self._remove(uids, user)[0]

    def delete_conversation(self, uid: str, *, user: Optional[_UserArg] = None) -> None:
        """Remove one conversation from a user's inbox; NotFoundError if it was not
        there, on every DHIS2 (2.41.3+ answers 403 for it).

        After a retry of a lost answer it is gone either way, and that is no error.
        ``DELETE /api/messageConversations?mc=...``
        """
        uid = _check_uid(uid, "uid")
        user = None if user is None else _check_uid(user, "user", UserRef)
        removed, lost = self._remove(uid, user)
        if uid not in removed and not lost:
            who = f"user {user}" if user else "the caller"
            error = NotFoundError(200, f"Conversation {uid} is not in the inbox of {who}")
            error.method, error.path = "DELETE", "/messageConversations"
            raise error

    def _remove(self, uids: _ConversationsArg, user: Optional[_UserArg]) -> Tuple[List[str], bool]:
        """The uids removed, and whether an attempt whose answer was lost came before."""
        params = _user_params(user)
        values = _bulk_uids(uids, "uids")
        lost: List[bool] = []

        def send(chunk: List[str]) -> List[str]:
            answer = self._request(
                "DELETE",
                "/messageConversations",
                params=[("mc", uid) for uid in chunk] + params,
                on_lost=lambda: lost.append(True),
            )
            return _uid_list(_decode_json(answer), "removed")

        def room() -> int:
            return self._room("DELETE", "/messageConversations", params, len("&mc=") + 11)

        with _one_deadline(self.deadline):  # one for the whole call, as for every call
            return self._in_chunks(values, send, room, user is None), bool(lost)

    # -- Bulk calls in as many requests as the limits need ---------------------
    # A bulk call reads its uids lazily and sends them in chunks that fit the
    # limits of real deployments (wire.md § 11): _room says how many fit the
    # next request, _take reads that many, _send_chunk sends them (and copes
    # with uids the caller no longer takes part in), _in_chunks merges the
    # answers and, on a failure, says what was done.

    def _in_chunks(
        self,
        uids: _BulkUids,
        send: Callable[[List[str]], List[str]],
        room: Callable[[], int],
        own: bool,
    ) -> List[str]:
        """Send *uids* in chunks of at most ``room()``; the merged answers, in order.

        It keeps the answers and nothing else: a uid sent again in a later chunk
        (a list that repeats it) changes nothing the second time, and is listed once.
        """
        done: List[str] = []
        listed: Set[str] = set()  # the same strings as done: about 100 bytes a uid in all
        read = sent = answered = 0  # uids read and sent, requests answered

        def failed(error: _E) -> _E:
            of = f"{uids.given:,}" if uids.given is not None else f"the {read:,} read so far"
            return _partly(error, done, sent, of)

        while True:
            try:
                chunk = _take(uids.values, room())
            except (ValueError, TypeError) as err:  # a malformed uid further on
                raise failed(err) if sent else err
            except Dhis2Error as err:  # a walk that feeds the call failed
                raise failed(err)
            if not chunk:
                return done
            read += len(chunk)
            try:
                changed = self._send_chunk(chunk, send, own)
            except NotFoundError as err:
                if not answered:  # none of these known, or no such user
                    raise failed(err)
                changed = []  # none of this chunk exists: DHIS2 skips those
            except Dhis2Error as err:
                raise failed(err)
            answered += 1
            sent += len(chunk)
            asked = set(chunk)
            for uid in changed:
                if uid in asked and uid not in listed:
                    listed.add(uid)
                    done.append(uid)

    def _send_chunk(
        self, chunk: List[str], send: Callable[[List[str]], List[str]], own: bool
    ) -> List[str]:
        """One request for *chunk*.  DHIS2 2.41.3+ refuses the whole request (403)
        when the caller takes no part in one of its conversations: acting for the
        caller, those are left out and the rest is sent again (they are not in the
        caller's inbox, so nothing of theirs could change); acting for another
        user, the 403 stands and names them."""
        try:
            return send(chunk)
        except PermissionDenied as err:
            denied = err
        inbox = self._in_inbox(chunk)
        kept = [uid for uid in chunk if uid in inbox]
        if own and len(kept) < len(chunk):
            return send(kept) if kept else []
        denied.not_in_inbox = tuple(uid for uid in chunk if uid not in inbox)
        if denied.not_in_inbox:
            named = _named(denied.not_in_inbox)
            denied.hint = (
                f"the caller takes no part in {len(denied.not_in_inbox):,} of the "
                f"{len(chunk):,} conversations: {named} (not_in_inbox lists them)"
            )
        raise denied

    def _in_inbox(self, uids: List[str]) -> Set[str]:
        """Which of *uids* are in the caller's inbox: a list filtered by
        ``id:in:[...]`` (whole on 2.42+, which re-splits filters at commas but not
        inside brackets), in as few requests as the limits allow."""
        found: Set[str] = set()
        fixed = [("filter", "id:in:[]"), ("fields", "id"), ("pageSize", str(_MAX_UIDS))]
        start = 0
        while start < len(uids):
            # Each uid adds 11 characters and an encoded comma (%2C).
            part = uids[start : start + self._room("GET", "/messageConversations", fixed, 14)]
            start += len(part)
            query = [("filter", f"id:in:[{','.join(part)}]"), ("fields", "id")]
            query.append(("pageSize", str(len(part))))
            found.update(conv.id for conv in self._get_page(query).conversations)
        return found

    def _room(self, method: str, path: str, params: List[Tuple[str, str]], each: int) -> int:
        """How many query parameters of *each* bytes the next request can add to
        *params*: its request line and headers, as this session sends them now
        (cookies included), stay within what every default deployment accepts."""
        request = _Request(method, path, params, 0.0, 0)
        head = _head_size(self._prepare(request, None, None, None, None, None))
        fits = (_MAX_HEAD - _HEAD_ROOM - head) // each
        return max(1, min(fits, _MAX_PARAMS - len(params), _MAX_UIDS))

    # -- Tickets ----------------------------------------------------------------

    def set_status(self, uid: str, status: _StatusArg) -> None:
        """Set a conversation's (usually a ticket's) status, one of ``STATUSES``.

        ``POST /api/messageConversations/{uid}/status?messageConversationStatus=...``
        """
        self._set(uid, "status", status, STATUSES)

    def set_priority(self, uid: str, priority: _PriorityArg) -> None:
        """Set a conversation's priority, one of ``PRIORITIES``.

        ``POST /api/messageConversations/{uid}/priority?messageConversationPriority=...``
        """
        self._set(uid, "priority", priority, PRIORITIES)

    def _set(self, uid: str, what: str, value: str, valid: Sequence[str]) -> None:
        uid = _check_uid(uid, "uid")
        param = ("messageConversation" + what.capitalize(), _check_choice(value, valid, what))
        _ack(self._request("POST", f"/messageConversations/{uid}/{what}", params=[param]))

    def assign(self, uid: str, user: _UserArg) -> None:
        """Assign a conversation to a user (for a ticket: a feedback recipient).

        ``user`` is a uid or a ``UserRef`` (``lookup_feedback_recipients`` finds them).
        ``POST /api/messageConversations/{uid}/assign?userId=...``
        """
        uid, user = _check_uid(uid, "uid"), _check_uid(user, "user", UserRef)
        _ack(
            self._request("POST", f"/messageConversations/{uid}/assign", params=[("userId", user)])
        )

    def unassign(self, uid: str) -> None:
        """Remove a conversation's assignee.

        ``DELETE /api/messageConversations/{uid}/assign``
        """
        uid = _check_uid(uid, "uid")
        _ack(self._request("DELETE", f"/messageConversations/{uid}/assign"))

    # -- Finding recipients ------------------------------------------------------

    def lookup_users(self, query: str, *, boundary: Optional[str] = None) -> List[UserRef]:
        """Users whose name ("first surname"), username or email contains *query*.

        DHIS2 matches case-insensitively but not accent-insensitively, treats
        ``%`` and ``_`` as wildcards, orders by surname and answers at most 25.
        *boundary* (``DATA_CAPTURE``, ``DATA_OUTPUT`` or ``TEI_SEARCH``) keeps the
        users assigned to exactly the caller's own units of that kind (DHIS2 2.38
        ignores it).
        ``GET /api/userLookup?query=...``
        """
        params = [("query", _check_query(query))]
        if boundary is not None:
            params.append(("orgUnitBoundary", _check_choice(boundary, BOUNDARIES, "boundary")))
        response = self._request("GET", "/userLookup", params=params)
        return _Found(_parse_user_lookup(_decode_json(response), "response", {})["found"], "user")

    def lookup_feedback_recipients(self, query: str) -> List[UserRef]:
        """Members of the feedback recipients group matching *query* (who a ticket
        may be assigned to), as ``lookup_users`` matches them.

        ConflictError (E6200) when the server has no feedback recipients group.
        ``GET /api/userLookup/feedbackRecipients?query=...``
        """
        params = [("query", _check_query(query))]
        try:
            response = self._request("GET", "/userLookup/feedbackRecipients", params=params)
        except ConflictError as err:
            if err.error_code == "E6200":
                err.hint = (
                    "an administrator sets the group under System Settings > General > "
                    "Feedback recipients"
                )
            raise
        return _Found(_parse_user_lookup(_decode_json(response), "response", {})["found"], "user")

    def find_user_groups(self, query: str, *, limit: int = 25) -> List[UserGroupRef]:
        """User groups the caller may see with every word of *query* starting a word
        of their name, by name (at most *limit*).

        ``GET /api/userGroups?filter=displayName:token:...``
        """
        params = [
            ("fields", "id,displayName"),
            ("filter", "displayName:token:" + _token_words(query)),
            ("pageSize", str(_check_count(limit, "limit"))),
        ]
        body = _decode_json(self._request("GET", "/userGroups", params=params))
        return _Found(_parse_user_groups(body, "response", {})["found"][:limit], "user group")

    def find_organisation_units(self, query: str, *, limit: int = 25) -> List[OrgUnitRef]:
        """Organisation units with every word of *query* starting a word of their name:
        higher levels first (the country before its districts), then by name; at most
        *limit*.

        ``GET /api/organisationUnits?filter=displayName:token:...&order=level:asc``
        """
        params = [
            ("fields", _ORG_UNIT_FIELDS),
            ("filter", "displayName:token:" + _token_words(query)),
            ("order", "level:asc"),
            ("order", "name:iasc"),
            ("pageSize", str(_check_count(limit, "limit"))),
        ]
        body = _decode_json(self._request("GET", "/organisationUnits", params=params))
        found = _parse_org_units(body, "response", {})["found"][:limit]
        return _Found(found, "organisation unit")

    def organisation_unit_subtree(self, uid: Union[str, OrgUnitRef]) -> List[OrgUnitRef]:
        """The unit and every unit below it, in one request whatever the depth: the unit
        first, then the tree depth-first, siblings by name.  NotFoundError for an
        unknown uid.

        Sending to the whole list reaches everyone assigned anywhere in the subtree
        (DHIS2 delivers an organisation-unit message only to that exact unit's users).
        ``GET /api/organisationUnits?filter=path:like:{uid}&paging=false``
        """
        uid = _check_uid(uid, "uid", OrgUnitRef)
        # path:like is one database query on every version; includeDescendants and
        # /descendants are paged in memory (and truncated at 50) before 2.42.
        params = [
            ("filter", f"path:like:{uid}"),
            ("fields", _ORG_UNIT_FIELDS),
            ("paging", "false"),
        ]
        body = _decode_json(self._request("GET", "/organisationUnits", params=params))
        units = {unit.id: unit for unit in _parse_org_units(body, "response", {})["found"]}
        if uid not in units:  # DHIS2 answers an unknown uid with an empty list
            raise NotFoundError(200, f"Organisation unit {uid} does not exist", None, body)
        tree = sorted(units.values(), key=lambda unit: _tree_key(unit, uid, units))
        return _Found(tree, "organisation unit", tree=True)

    def expand_recipients(
        self,
        *,
        users: _UsersArg = (),
        user_groups: _GroupsArg = (),
        organisation_units: _OrgUnitsArg = (),
    ) -> List[UserRef]:
        """The users a ``send`` to these recipients would reach, found without sending:
        the users given, the members of each group and the users assigned to each
        organisation unit itself (not to the units below it), each once, by name.

        Any logged-in user may read these (units are not shared objects; a group it may
        send to, it may read).  A user given as a uid is taken as it is, unchecked; a
        group it may not see, or a unit that does not exist, is a NotFoundError, as the
        send would be refused.  ``GET /api/userGroups`` and ``GET /api/organisationUnits``
        with ``filter=id:in:[...]`` (one request per 200 uids of each kind)
        """
        if isinstance(users, Iterable) and not isinstance(users, (str, bytes, Mapping)):
            users = list(users)  # read twice: checked, then its records kept with their names
        people = _check_uids(users, "users", allow_empty=True, record=UserRef)
        given = [users] if isinstance(users, (str, UserRef)) else users
        named = {u.id: u for u in given if isinstance(u, UserRef)}
        groups = _check_uids(user_groups, "user_groups", allow_empty=True, record=UserGroupRef)
        units = _check_uids(
            organisation_units, "organisation_units", allow_empty=True, record=OrgUnitRef
        )
        found = {uid: named.get(uid) or UserRef(id=uid) for uid in people}
        with _one_deadline(self.deadline):  # for all the requests
            for user in self._members("userGroups", "user group", groups) + self._members(
                "organisationUnits", "organisation unit", units
            ):
                found[user.id] = user
        return _Found(sorted(found.values(), key=lambda u: (_name(u).casefold(), u.id)), "user")

    def _members(self, plural: str, what: str, uids: Sequence[str]) -> List[UserRef]:
        """The ``users`` of these groups or units, 200 of them a request."""
        members: List[UserRef] = []
        for start in range(0, len(uids), 200):
            chunk = uids[start : start + 200]
            params = [
                ("filter", f"id:in:[{','.join(chunk)}]"),
                ("fields", f"id,users[{_USER_FIELDS}]"),
                ("paging", "false"),
            ]
            body = _decode_json(self._request("GET", f"/{plural}", params=params))
            members += _users_of(body, plural, what, chunk)
        return members

    def resolve_user(self, name: Union[str, UserRef]) -> UserRef:
        """The one user *name* means: a uid (taken as it is, no request), else the user
        whose username is *name*, else whose display name is, else the only user
        ``lookup_users(name)`` finds (any case).  NameMatchError lists the candidates
        when none or several match.

        ``GET /api/userLookup?query=...`` (none for a uid)
        """
        if isinstance(name, UserRef):
            return name
        text = _check_query(name)
        if _UID_RE.fullmatch(text.strip()):  # a uid copied with a space around it too
            return UserRef(id=text.strip())
        found = self.lookup_users(text)
        wanted = text.strip().casefold()
        by_username = [u for u in found if (u.username or "").casefold() == wanted]
        if len(by_username) == 1:
            return by_username[0]
        return _the_one(text, "user", found, more=len(found) == 25)

    def resolve_user_group(self, name: Union[str, UserGroupRef]) -> UserGroupRef:
        """The one user group *name* means: a uid (no request), else the group of that
        name (any case), else the only group ``find_user_groups(name)`` finds.
        NameMatchError lists the candidates when none or several match.

        ``GET /api/userGroups?filter=displayName:token:...`` (none for a uid)
        """
        if isinstance(name, UserGroupRef):
            return name
        if _UID_RE.fullmatch(_check_query(name).strip()):
            return UserGroupRef(id=name.strip())
        found = self.find_user_groups(name, limit=26)
        return _the_one(name, "user group", found[:25], more=len(found) > 25)

    def resolve_organisation_unit(self, name: Union[str, OrgUnitRef]) -> OrgUnitRef:
        """The one organisation unit *name* means: a uid (no request), else the unit of
        that name (any case: "Bo District", not "Bombali District"), else the only
        unit ``find_organisation_units(name)`` finds.  NameMatchError lists the
        candidates when none or several match.

        ``GET /api/organisationUnits?filter=displayName:token:...`` (none for a uid)
        """
        if isinstance(name, OrgUnitRef):
            return name
        if _UID_RE.fullmatch(_check_query(name).strip()):
            return OrgUnitRef(id=name.strip())
        found = self.find_organisation_units(name, limit=26)
        return _the_one(name, "organisation unit", found[:25], more=len(found) > 25)

    # -- Attachments ----------------------------------------------------------

    def upload_attachment(
        self,
        file: _File,
        *,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> str:
        """Upload a file to attach to one later ``send`` or ``reply``; return its uid.

        *file* is a path, ``bytes`` or a binary file object.
        ``POST /api/fileResources?domain=MESSAGE_ATTACHMENT``
        """
        data, name = _read_file(file)
        name = name if filename is None else filename
        if not isinstance(name, str) or not name.strip():
            raise ValueError("filename must be a non-empty string")
        if _CONTROL_RE.search(name):
            # It goes into the part's headers, where a line break starts a new header.
            raise ValueError(f"filename contains a control character: {_shown(name)}")
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        elif not isinstance(content_type, str) or not _MEDIA_TYPE_RE.fullmatch(content_type):
            raise ValueError(
                f"content_type must be a media type such as 'application/pdf', not {_shown(content_type)}"
            )
        with _if_lost(
            "DHIS2 may have stored the file: a lost upload leaves a file resource that no "
            "message uses (its uid was in the lost answer); uploading again makes a new one."
        ):
            response = self._request(
                "POST",
                "/fileResources",
                # Without the domain DHIS2 files the upload as DATA_VALUE, which
                # messages then refuse as "not a valid attachment".
                params=[("domain", "MESSAGE_ATTACHMENT")],
                files={"file": (name, data, content_type)},
                idempotent=False,
            )
        body = _check_object(_decode_json(response), "upload answer")
        resource = _check_object(
            _check_object(body.get("response"), "response").get("fileResource"), "fileResource"
        )
        return _check_uid_from_server(_get_required_str(resource, "id", "a fileResource"))

    def download_attachment(self, conversation: str, message: str, attachment: str) -> bytes:
        """Return the exact bytes of a message's attachment.

        ``GET /api/messageConversations/{conversation}/{message}/attachments/{attachment}``
        """
        path = "/messageConversations/{}/{}/attachments/{}".format(
            _check_uid(conversation, "conversation"),
            _check_uid(message, "message"),
            _check_uid(attachment, "attachment"),
        )
        answer = self._request("GET", path, accept="*/*")
        # DHIS2 sends every attachment, an HTML one too, with Content-Disposition:
        # an HTML page without it is a proxy's or a login portal's, not the file.
        if answer.media_type == "text/html" and "Content-Disposition" not in answer.headers:
            raise ResponseError(
                f"DHIS2 answered GET {path} with HTTP {answer.status} and an HTML page "
                f"({_snippet(answer)!r}) in place of the attachment, which DHIS2 sends "
                "with a file name (Content-Disposition).",
                "not_json",
                "GET",
                path,
                answer.status,
                "Check that base_url points at DHIS2 itself, not at a proxy or login page.",
            )
        return answer.body

    # -- Plumbing ---------------------------------------------------------------
    # The one request path: _request prepares, then per attempt _attempt sends
    # and reads, _retry_wait decides, and _failure turns what went wrong into
    # the error to raise.

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[List[Tuple[str, str]]] = None,
        json_body: Any = None,
        data: Optional[bytes] = None,
        content_type: Optional[str] = None,
        files: Optional[Mapping[str, Any]] = None,
        accept: Optional[str] = None,
        idempotent: bool = True,
        on_lost: Optional[Callable[[], None]] = None,
    ) -> _Answer:
        """Send one request: deadline, timeout, auth, size limit, retries, logging, errors.

        A request that is not idempotent (it creates something) is retried only
        when the connection was never made, so it cannot reach DHIS2 twice.
        *on_lost* is called before a retry of an attempt that may have done its
        work on DHIS2 although its answer was lost: the retry then meets that work.
        """
        deadline = getattr(_deadline, "call", None) or time.monotonic() + self.deadline
        request = _Request(method, path, params, deadline, self.max_response_size, idempotent)
        prepared = self._prepare(request, json_body, data, content_type, files, accept)
        attempt = 0
        while True:
            failure: Union[_Answer, TransportError]
            sent = time.time()
            try:
                failure = answer = self._attempt(request, prepared)
            except requests.RequestException as exc:
                failure = self._transport_error(request, exc, idempotent)
            else:
                self._clock = (answer.headers.get("Date"), sent, time.time())
                if answer.status < 300:
                    if accept is None and answer.media_type == "text/html":
                        raise _not_json(answer)  # a proxy's or login page, not DHIS2
                    return answer
            wait = self._retry_wait(attempt, idempotent, failure)
            now = time.monotonic()
            if wait is None or now + wait >= request.deadline:
                # Once the deadline itself has passed, the error says so already.
                cut = wait is not None and now < request.deadline
                raise self._failure(request, failure, no_time_to_retry=cut)
            if on_lost is not None and _maybe_done(failure):
                on_lost()
            attempt += 1
            log.info(
                "%s; retry %d of %d in %g s", _attempt_text(failure), attempt, self.retries, wait
            )
            time.sleep(wait)

    def _prepare(
        self,
        request: _Request,
        json_body: Any,
        data: Optional[bytes],
        content_type: Optional[str],
        files: Optional[Mapping[str, Any]],
        accept: Optional[str],
    ) -> requests.PreparedRequest:
        headers = self._headers
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = _MEDIA_JSON
        if content_type or accept:
            headers = dict(headers)
            if content_type:
                headers["Content-Type"] = content_type
            if accept:
                headers["Accept"] = accept
        return self._session.prepare_request(
            requests.Request(
                request.method,
                self._url(request.path),
                headers=headers,
                params=request.params,
                data=data,
                files=files,
                auth=self._auth,
                hooks={"response": [request.read]},
            )
        )

    def _url(self, path: str) -> str:
        return f"{self.base_url}/api{path}"

    def _attempt(self, request: _Request, prepared: requests.PreparedRequest) -> _Answer:
        """One attempt: send, and read the whole body (``request.read``, the response hook)."""
        left = request.deadline - time.monotonic()
        if left <= 0:  # a ConnectTimeout: nothing was sent
            raise requests.ConnectTimeout("the deadline passed before the request was sent")
        connect, read = self.timeout
        request.answer = None
        outcome: Any = "?"
        started = time.perf_counter()
        _deadline.at, _deadline.stall = request.deadline, read
        try:
            self._session.send(
                prepared, timeout=(min(connect, left), min(read, left)), **self._send_options
            )
        except requests.RequestException as exc:
            outcome = type(exc).__name__
            raise
        except ValueError as exc:
            # requests looks for a redirect's next request even when redirects
            # are off, and fails on a Location it cannot parse; the answer
            # itself was read in full by then.
            if request.answer is None:
                outcome = type(exc).__name__
                raise requests.RequestException(f"the answer could not be used: {exc}") from None
        finally:
            _deadline.at = _deadline.stall = None
            log.debug(
                "%s %s -> %s (%.1f ms)",
                request.method,
                request.path,
                request.answer.status if request.answer else outcome,
                (time.perf_counter() - started) * 1000,
            )
        answer, request.answer = request.answer, None
        assert answer is not None  # the hook ran, or send raised
        return answer

    def _retry_wait(
        self, attempt: int, idempotent: bool, failure: Union[_Answer, TransportError]
    ) -> Optional[float]:
        """Seconds to wait before trying again, or None not to retry: for failed
        connections and for error statuses alike."""
        if attempt >= self.retries:
            return None
        if isinstance(failure, TransportError):
            if not _may_retry(failure, idempotent):
                return None
        elif not idempotent or failure.status not in _RETRY_STATUSES:
            return None
        else:
            asked = _retry_after(failure.headers.get("Retry-After"))
            if asked is not None:
                return asked if asked <= self.max_retry_wait else None
        # 2**64 is far past any wait; the cap keeps the power a float.
        return min(self.backoff * 2.0 ** min(attempt, 64), self.max_retry_wait)

    def _transport_error(
        self, request: _Request, exc: requests.RequestException, idempotent: bool
    ) -> TransportError:
        """What a requests exception means, as a TransportError chained from it."""
        connect, read = self.timeout
        sent = not _never_sent(exc)
        if time.monotonic() >= request.deadline:
            kind, seconds = "deadline", self.deadline
        elif isinstance(exc, requests.exceptions.SSLError):
            kind, seconds, sent = "tls", None, False
        elif isinstance(exc, requests.ConnectTimeout):
            kind, seconds = "connect_timeout", connect
        elif isinstance(exc, requests.ReadTimeout):
            kind, seconds = "read_timeout", read
        elif not sent:
            kind, seconds = "connect", None
        else:
            kind, seconds = "broken", None
        error = TransportError(
            kind, request.method, self._url(request.path), _reason(exc), seconds, sent, request.path
        )
        error.detail = _transport_detail(exc, kind)
        error.hint = _TRANSPORT_HINTS.get(error.detail) or _TRANSPORT_HINTS[kind]
        if sent and not idempotent:
            error.maybe_done = True
            _advise_lost(error, _MAYBE_DONE + ".")
        # The requests error keeps the prepared request, whose headers hold the
        # credentials: drop it before it travels as the cause.
        exc.request = None
        error.__cause__ = exc
        return error

    def _failure(
        self,
        request: _Request,
        failure: Union[_Answer, TransportError],
        no_time_to_retry: bool = False,
    ) -> Dhis2Error:
        """The error to raise for the last attempt.  *no_time_to_retry*: a retry
        was due, but its wait would have passed the deadline."""
        error: Dhis2Error = failure if isinstance(failure, TransportError) else _error_from(failure)
        if isinstance(failure, _Answer) and isinstance(error, ApiError):
            self._explain(error, request)
            if failure.status >= 500 and not request.idempotent:
                _server_failed_a_create(error)
        if no_time_to_retry:
            cut = f"no retry: the next wait would pass the deadline of {self.deadline:g} s"
            error.hint = f"{error.hint}; {cut}" if error.hint else cut
            error.no_time_to_retry = True
        return error

    def _explain(self, error: ApiError, request: _Request) -> None:
        """Add what only this client knows to DHIS2's refusal of *request*."""
        refused = (
            _refused_order(error.body, request.params or ()) if error.status_code == 400 else None
        )
        if refused:
            # DHIS2 2.43 refuses an unknown order property; 2.42 and older drop it silently.
            name, order = refused
            version = self._server_version()
            server = f"DHIS2 {version}" if version else "this DHIS2 (2.43 or later)"
            error.hint = (
                f"{server} refused order={order!r}: conversations have no property {name!r}; "
                "DHIS2 2.42 and older ignore such an order silently"
            )


#: What may have happened to a create whose answer was lost, and what to do.
_MAYBE_DONE = "It may have been done on DHIS2: look before sending it again"


def _server_failed_a_create(error: ApiError) -> None:
    """A 5xx for a request that creates something: never advice to just try again.

    A proxy's 502, 503 or 504 may come after DHIS2 did the work (nginx gives up after 60 s
    and DHIS2 carries on); DHIS2's own 500 rolls its work back, most likely."""
    if error.status_code in (502, 503, 504):
        error.maybe_done = True
        _advise_lost(error, _MAYBE_DONE + ".")
    else:
        error.hint = (
            f"{error.method} {error.path}: DHIS2 failed while doing it, so most likely "
            "nothing was done; look before sending it again"
        )


def _advise_lost(error: Dhis2Error, words: str) -> None:
    """The advice for a create whose answer was lost: what went wrong, then *words*, what
    is known of the work and what to do."""
    if isinstance(error, TransportError):
        lead = _TRANSPORT_HINTS.get(error.detail) or _TRANSPORT_HINTS.get(error.kind, "")
    else:
        lead = (
            f"{error.method} {error.path}: the answer was lost on the way (DHIS2 or a "
            "proxy in front of it failed)."
        )
    error.hint = f"{lead} {words}".strip()


#: What to do about each kind of TransportError, in the library's words.
_TRANSPORT_HINTS = {
    "connect": "Check base_url and that DHIS2 is running and reachable.",
    "connect_timeout": "Check base_url, the network, VPN or proxy.",
    "tls": "Check the certificate, or pass verify='/path/to/ca-bundle.pem' for a private "
    "certificate authority.",
    "read_timeout": "The server may be busy: try later or raise timeout=.",
    "broken": "",
    "deadline": "Try later, or raise deadline= for a slow server or a large attachment.",
    # The details that say more than their kind:
    "unknown_host": "The host name does not exist: check base_url.",
    "plain_http": "The server speaks plain http, not https: give base_url as http://..., "
    "or the address of its https port.",
}


# -- Transport (private) -----------------------------------------------------
# requests' read timeout bounds each recv(), so a server that sends a byte a
# second holds a call forever.  The connections of Messenger's own session
# read through _DeadlineReader, which shortens every recv() to what is left of
# the request's deadline; no thread is involved.
#
# Writing has the opposite problem: urllib3 writes the request under the
# connect timeout, and one sendall() of the whole body must finish within it,
# so a 10 MB upload at 1 MB/s fails after 3 s whatever the deadline.  The same
# connections write the body in pieces (send, below): each piece within the
# read timeout, all of them within the deadline, so a slow link that keeps
# moving has until the deadline, and one that stops is cut after the read
# timeout.
#
# This is the one place that reaches below requests' public interface: the
# deadline must cut a server that drips its status line and headers, which are
# read inside http.client before requests or urllib3 see a response.  It uses
# http.client's HTTPConnection.response_class and send(), urllib3's
# ConnectionCls and PoolManager.pool_classes_by_scheme, and the socket's
# makefile() and settimeout(); the suite runs on the lowest (1.26) and the
# newest urllib3 the package allows.

# .at: time.monotonic() when this thread's request must end; .call: when its method
# call must, for a method that makes more than one request; .stall: the read
# timeout of the request being written, the longest wait for each piece.
_deadline = threading.local()


@contextlib.contextmanager
def _one_deadline(seconds: float) -> Iterator[None]:
    """One deadline for all the requests of a method that makes more than one."""
    if getattr(_deadline, "call", None) is not None:
        yield
        return
    _deadline.call = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.call = None


@contextlib.contextmanager
def _if_lost(hint: str) -> Iterator[None]:
    """What to do when a create's answer was lost (``maybe_done``): *hint*, in place of
    the advice to look before sending again."""
    try:
        yield
    except Dhis2Error as error:
        if error.maybe_done:
            _advise_lost(error, hint)
        raise


class _DeadlineReader(io.RawIOBase):
    """The socket's own unbuffered file, each read cut short at the deadline."""

    def __init__(self, sock: socket.socket, raw: Any) -> None:
        self._sock, self._raw, self._timeout = sock, raw, sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        at = getattr(_deadline, "at", None)
        if at is not None:
            left = at - time.monotonic()
            if left <= 0:
                raise socket.timeout("the deadline passed")
            if self._timeout is None or left < self._timeout:  # else the read timeout comes first
                self._sock.settimeout(left)
        result: Optional[int] = self._raw.readinto(buffer)
        return result

    def close(self) -> None:
        if not self.closed:
            try:
                self._sock.settimeout(self._timeout)
            except OSError:  # already closed
                pass
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What http.client's HTTPResponse is given in place of the socket: it only
    calls ``makefile("rb")``, and gets the socket's file behind the deadline reader.
    (That file, unlike the socket, keeps the connection open while it is read.)"""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_DeadlineReader(self._sock, raw))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(_DeadlineSocket(sock), *args, **kwargs)  # type: ignore[arg-type]


class _WriteTimeout(ReadTimeoutError):
    """The server took no piece of the request within the read timeout, or the
    deadline came: requests turns it into its ReadTimeout, as for an answer."""

    def __init__(self, seconds: float) -> None:
        super().__init__(None, None, "")  # type: ignore[arg-type]
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the server took no more of the request within {self.seconds:g} s"


_PIECE = 16 * 1024  # the most written under one timeout: at least 0.5 kB/s at 30 s


def _send_in_pieces(conn: Any, data: Any, send: Callable[[Any], None]) -> None:
    """http.client's send(), in pieces that keep to the read timeout and the deadline."""
    stall = getattr(_deadline, "stall", None)
    if stall is None or conn.sock is None or not isinstance(data, (bytes, bytearray, memoryview)):
        send(data)  # the first write connects, under the connect timeout
        return
    view = memoryview(data)
    for start in range(0, len(view), _PIECE):
        wait = min(stall, _deadline.at - time.monotonic())
        if wait <= 0:
            raise _WriteTimeout(stall)
        conn.sock.settimeout(wait)
        try:
            send(view[start : start + _PIECE])
        except socket.timeout:
            raise _WriteTimeout(wait) from None


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse

    def send(self, data: Any) -> None:
        _send_in_pieces(self, data, super().send)


class _HTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse

    def send(self, data: Any) -> None:
        _send_in_pieces(self, data, super().send)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Transport(HTTPAdapter):
    """requests' adapter, with connections that keep to the request's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is ProxyManager:  # a SOCKS manager has its own pools
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _Answer:
    """What one attempt brought back: the status, the headers and the whole body."""

    __slots__ = ("body", "headers", "method", "path", "reason", "status")

    def __init__(self, response: requests.Response, body: bytes, path: str) -> None:
        self.status: int = response.status_code
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self.method: str = response.request.method or ""
        self.path, self.body = path, body

    @property
    def media_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()


class _Request:
    """One HTTP request, over its attempts: what it asks, when it must end, how
    much it may read, and the answer its response hook read."""

    __slots__ = ("answer", "deadline", "idempotent", "limit", "method", "params", "path")

    def __init__(
        self,
        method: str,
        path: str,
        params: Optional[List[Tuple[str, str]]],
        deadline: float,
        limit: int,
        idempotent: bool = True,
    ) -> None:
        self.method, self.path, self.params = method, path, params
        self.deadline, self.limit, self.idempotent = deadline, limit, idempotent
        self.answer: Optional[_Answer] = None

    def read(self, response: requests.Response, **kwargs: Any) -> None:
        """The response hook: read the body, at most ``limit`` bytes after decompression.

        It runs inside requests' ``send``, before requests would read a
        redirect's body on its own, without a limit.  The response keeps no
        reference to what was read, so a walk's pages are freed as it goes.  Of
        an error page only the first ``limit`` bytes are kept, however long it
        says it is or wherever it ends: its status matters more than its end.
        """
        error_page = response.status_code >= 400
        length = response.headers.get("Content-Length", "")
        encoded = "Content-Encoding" in response.headers  # the length is of the encoded body
        known = length.isascii() and length.isdigit() and not encoded and not error_page
        if known and int(length) > self.limit:
            response.close()
            raise self._too_large(response)
        chunks: List[bytes] = []
        if error_page:
            # A short error page is read as it is: urllib3 2 would drop what it read
            # of a body shorter than its Content-Length, and raise.
            response.raw.enforce_content_length = False
        try:
            self._read_into(chunks, response, error_page)
        except requests.RequestException:
            if not (error_page and chunks):
                raise
            response.close()
        body = b"".join(chunks)
        if known and len(body) < int(length):
            # urllib3 1.26 returns a cut-off body silently, where urllib3 2 raises:
            # a truncated attachment would come back as wrong bytes.
            response.close()
            raise requests.exceptions.ChunkedEncodingError(
                f"the answer was cut off: {len(body)} of {length} bytes arrived"
            )
        self.answer = _Answer(response, body, self.path)

    def _read_into(
        self, chunks: List[bytes], response: requests.Response, error_page: bool
    ) -> None:
        size = 0
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > self.limit:
                response.close()
                if error_page:
                    return
                raise self._too_large(response)
            chunks.append(chunk)
            if time.monotonic() >= self.deadline:  # a borrowed session's own adapter
                response.close()
                raise requests.ReadTimeout("the deadline passed")

    def _too_large(self, response: requests.Response) -> ResponseError:
        return ResponseError(
            f"DHIS2 answered {self.method} {self.path} with more than max_response_size "
            f"({self.limit:,} bytes, counted after decompression); nothing was kept.",
            "too_large",
            self.method,
            self.path,
            response.status_code,
            "Ask for less (a smaller page_size or fewer fields), or raise max_response_size=.",
        )


_CHUNK = 16 * 1024  # small reads keep a compressed answer's growth per read small


class _Credentials(AuthBase):
    """An ``Authorization`` value (or none), set on every request in place of
    whatever the session, its headers or a ``.netrc`` entry would send."""

    def __init__(self, value: Optional[str]) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._value is None:
            request.headers.pop("Authorization", None)
        else:
            request.headers["Authorization"] = self._value
        return request


#: What every request asks for and says about itself.
_HEADERS = {
    "Accept": _MEDIA_JSON,
    "X-Requested-With": "XMLHttpRequest",  # a 401 instead of a redirect to /login/
    "User-Agent": f"dhis2-messages/{__version__} {requests.utils.default_user_agent()}",
}


#: Connections kept open per host: one per thread of a ThreadPoolExecutor at its
#: default size (at most 32 workers).  requests keeps 10, and a Messenger shared by
#: more threads made urllib3 warn "Connection pool is full" and reconnect.
_POOL_SIZE = 32


def _own_session() -> requests.Session:
    """A session whose connections keep to each request's deadline."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Transport(pool_maxsize=_POOL_SIZE))
    return session


def _send_options(session: requests.Session, url: str, verify: Any) -> Dict[str, Any]:
    """The options of every ``session.send``.  Proxy, CA bundle and certificate come
    from the session and the environment; requests re-reads them on every request
    unless they are settled once, here."""
    if not isinstance(verify, (bool, str)):
        raise TypeError("verify must be True, False or the path of a CA bundle")
    if isinstance(verify, str) and not os.path.exists(verify):
        raise ValueError(
            f"verify={verify!r} does not exist: give the path of a CA bundle (a PEM file), "
            "or True for the system's certificate authorities"
        )
    settings = session.merge_environment_settings(url, {}, None, verify, None)
    bundle = settings["verify"]
    if isinstance(bundle, str) and not os.path.exists(bundle) and url.startswith("https:"):
        # requests found it in the environment, and would fail every https request on it.
        name = "REQUESTS_CA_BUNDLE" if os.environ.get("REQUESTS_CA_BUNDLE") else "CURL_CA_BUNDLE"
        raise ValueError(
            f"{name} is {bundle!r}, which does not exist: point it at a CA bundle "
            "(a PEM file), or unset it"
        )
    return {
        "allow_redirects": False,  # credentials never follow a redirect
        "stream": True,  # the body is read here, within the size limit and the deadline
        "verify": settings["verify"],
        "cert": settings["cert"],
        "proxies": settings["proxies"],
    }


def _credentials(auth: Any, token: Any) -> Tuple[AuthBase, str]:
    """The AuthBase every request carries, and its kind for ``repr``.

    Always an AuthBase, even for a token or no credentials: requests then never
    puts a .netrc entry or the session's auth in its place.
    """
    if auth is not None and token is not None:
        raise ValueError("give either auth=(username, password) or token=..., not both")
    if token is not None:
        return _Credentials(f"ApiToken {_check_token(token)}"), "token"
    if isinstance(auth, AuthBase):
        return auth, "custom"
    if auth is not None:
        return _basic_auth(auth), "basic"
    return _Credentials(None), "none"


def _check_token(token: Any) -> str:
    """The token without the line break or spaces around it: a token never holds
    whitespace, and a file read whole, or a line of a .env file, ends in some."""
    if isinstance(token, str):
        token = token.strip(" \t\r\n")
    if isinstance(token, str) and re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        return token
    # Said without the token's characters: it is a secret.
    problem = ""
    if isinstance(token, str) and re.search(r"\s", token):
        problem = ": it has a space or a line break inside"
    elif isinstance(token, str) and token:
        problem = ": it has a character no token has (letters, digits and -._~+/ only)"
    raise ValueError(f"token must be a DHIS2 personal access token such as d2p_...{problem}")


def _basic_auth(auth: Any) -> HTTPBasicAuth:
    if not isinstance(auth, tuple) or len(auth) != 2 or not all(isinstance(p, str) for p in auth):
        raise TypeError(
            "auth must be a (username, password) tuple of strings or a requests AuthBase"
        )
    if not auth[0]:
        raise ValueError("auth has an empty username")
    if ":" in auth[0]:
        # HTTP Basic splits at the first colon: DHIS2 would see another user.
        raise ValueError("auth has a username with ':', which HTTP Basic cannot send")
    try:
        ":".join(auth).encode("latin-1")  # what HTTP Basic can carry, in requests
    except UnicodeEncodeError:
        # Said without the offending character: it is part of a secret.
        raise ValueError(
            "the username or password has characters HTTP Basic cannot send "
            "(outside Latin-1): use a personal access token (token=...)"
        ) from None
    return HTTPBasicAuth(*auth)


# -- Checking arguments (private) ---------------------------------------------

_UID_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{10}")
#: Control characters (C0, DEL and C1): never in a header value or on a terminal.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 9110 media-type: type/subtype, then ;name=value parameters (token or quoted).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"(?:[^\"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*\"))*"
)


def _shorten(text: str, limit: int) -> str:
    """*text* in at most *limit* characters, ending in ... when it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any, limit: int = 40) -> str:
    """A value as an error message shows it: its repr, shortened."""
    return _shorten(repr(value), limit)


_RECORD_KINDS = (UserRef, UserGroupRef, OrgUnitRef)


def _check_uid(value: Any, name: str, record: Optional[type] = None) -> str:
    """A uid string, or the uid of a *record* of that kind (a lookup's answer)."""
    if record is not None and isinstance(value, _RECORD_KINDS):
        if not isinstance(value, record):
            raise TypeError(
                f"{name} takes uids or {record.__name__} records, not {type(value).__name__} "
                f"{_shown(value.name or value.id)}"
            )
        value = value.id
    if not isinstance(value, str):
        expected = f"a DHIS2 uid string or a {record.__name__}" if record else "a DHIS2 uid string"
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")
    if not _UID_RE.fullmatch(value):
        raise ValueError(
            f"{name} is not a DHIS2 uid (11 characters: a letter, then 10 letters or digits): {_shown(value)}"
        )
    return value


def _check_uids(
    values: Any, name: str, *, allow_empty: bool = False, record: Optional[type] = None
) -> List[str]:
    if isinstance(values, str) or (record is not None and isinstance(values, _RECORD_KINDS)):
        values = [values]
    elif isinstance(values, (bytes, bytearray, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a uid string or an iterable of uid strings")
    result = list(dict.fromkeys(_check_uid(value, name, record) for value in values))
    if not result and not allow_empty:
        raise ValueError(f"{name} is empty: give at least one uid")
    return result


class _BulkUids(NamedTuple):
    """A bulk call's uids: read lazily, each checked as it is read."""

    values: Iterator[str]
    #: How many were given, when the argument knows its length (a list, a Page).
    given: Optional[int]


def _bulk_uids(values: Any, name: str) -> _BulkUids:
    """The uids of a bulk call's argument: uids, Conversations, Pages, or an
    iterable of those.  Its type is checked now.  The uids of a list or a tuple
    are checked now too, so that a ValueError means nothing was sent; those of
    any other iterable (a generator, a walk) as they are read, since reading
    them ahead would drain a walk into memory."""
    if isinstance(values, (str, Conversation, Page)):
        values = [values]
    elif isinstance(values, (bytes, bytearray, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(
            f"{name} must be a uid, a Conversation, a Page, or an iterable of them, "
            f"not {type(values).__name__}"
        )
    if isinstance(values, (list, tuple)):
        checked = list(_each_uid(values, name))
        return _BulkUids(iter(checked), len(checked))
    return _BulkUids(_each_uid(values, name), None)


def _each_uid(values: Iterable[Any], name: str) -> Iterator[str]:
    for value in values:
        for item in value if isinstance(value, Page) else (value,):
            yield _check_uid(item.id if isinstance(item, Conversation) else item, name)


_MAX_QUERY = 255


def _check_query(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"query must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError("query is empty: give part of a name")
    if len(value) > _MAX_QUERY:
        raise ValueError(f"query is {len(value)} characters long; at most {_MAX_QUERY} are allowed")
    return _check_text(value, "query")


def _token_words(query: Any) -> str:
    """The query as DHIS2's token operator reads it: its words, space-separated.

    DHIS2 2.42+ splits a ``filter`` value at commas, and a query with no letter
    or digit would have no word to match, so every group or unit would match.
    """
    words = re.findall(r"[^\W_]+", _check_query(query))
    if not words:
        raise ValueError(f"query {_shown(query)} has no letter or digit to search for")
    return " ".join(words)


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which DHIS2 cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{name} contains characters that are not valid Unicode (lone surrogates)"
        ) from None
    return value


def _check_once(value: Any) -> Tuple[bool, _Since]:
    """``once=``: whether to look before sending, and since when (None: ever)."""
    if isinstance(value, bool):
        return value, None
    if value is None:
        raise TypeError("once must be True, False, a datetime or a timedelta, not None")
    return True, _check_since(value, "once", "True, False, a datetime or a timedelta")


def _check_since(value: Any, name: str, kinds: str = "a datetime, a timedelta or None") -> _Since:
    if value is None or isinstance(value, _dt.datetime):
        return value
    if isinstance(value, _dt.timedelta):
        if value <= _dt.timedelta(0):
            raise ValueError(f"{name} must be a positive timedelta, not {value!r}")
        return value
    raise TypeError(f"{name} must be {kinds}, not {_shown(value)}")


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_shown(value)}")
    return value


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
    """A whole number of at least *minimum*: TypeError for another type, ValueError below."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {_shown(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be {minimum} or more, not {value}")
    return value


def _check_choice(value: Any, valid: Sequence[str], name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(valid)}")
    upper = value.strip().upper()
    if upper not in valid:
        raise ValueError(f"{name} {_shown(value)} is not one of {', '.join(valid)}")
    return upper


def _check_strings(value: Any, name: str) -> List[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
        raise TypeError(f"{name} must be a string or an iterable of strings")
    result = list(items)
    for item in result:
        if not isinstance(item, str):
            raise TypeError(f"{name} must contain strings, not {type(item).__name__}")
        if not item.strip():
            raise ValueError(f"{name} contains an empty expression")
    return result


def _read_file(file: Any) -> Tuple[bytes, str]:
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        with open(path, "rb") as handle:
            data = handle.read()
        name = os.path.basename(path)
    elif isinstance(file, (bytes, bytearray, memoryview)):
        data, name = bytes(file), "attachment"
    elif hasattr(file, "read"):
        data = file.read()
        if isinstance(data, str):
            raise TypeError("file is open in text mode: open it with 'rb'")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("file.read() must return bytes")
        data = bytes(data)
        file_name = getattr(file, "name", None)
        name = os.path.basename(file_name) if isinstance(file_name, str) else "attachment"
    else:
        raise TypeError("file must be a path, bytes or a binary file object")
    if not data:
        raise ValueError("the file is empty; DHIS2 refuses empty attachments")
    return data, name


def _env_options(overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Messenger's keyword arguments for ``from_env``: *overrides* first, then
    DHIS2_URL, DHIS2_TOKEN (or DHIS2_PAT), DHIS2_USERNAME + DHIS2_PASSWORD.

    What is missing stays missing for the caller to report: no ``base_url``,
    neither ``auth`` nor ``token``, or ``auth=(username, None)`` without a password.
    """
    env = os.environ
    options = dict(overrides)
    options["base_url"] = options.get("base_url") or env.get("DHIS2_URL")
    if "auth" in options or "token" in options:
        return options
    token = env.get("DHIS2_TOKEN") or env.get("DHIS2_PAT")
    if token:
        options["token"] = token
    elif env.get("DHIS2_USERNAME"):
        options["auth"] = (env["DHIS2_USERNAME"], env.get("DHIS2_PASSWORD") or None)
    return options


def _check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    shown = _url_shown(base_url)
    try:
        parts = urlsplit(base_url.strip())
    except ValueError:  # e.g. "http://[::1"
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an absolute http(s) URL such as https://dhis2.example.org, not {shown!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "base_url must not contain credentials: pass auth=(username, password) or token="
        )
    try:
        port = parts.port
    except ValueError:  # "abc", 99999
        port = 0
    if port == 0:
        raise ValueError(f"base_url has a port that is not a number from 1 to 65535: {shown!r}")
    host = parts.hostname
    if not (_HOST_RE.fullmatch(host) and not host.startswith(".")) and not _is_ip6(host):
        raise ValueError(f"base_url has a host name that cannot be used: {shown!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")
    # DHIS2 serves every release's API at /api and, the same, at /api/<version>
    # (ApiVersionFilter): a root copied with either is this server's root.
    path = re.sub(r"/api(/[0-9]+)?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"


# A DNS name or IPv4 address; non-ASCII letters for international names.
_HOST_RE = re.compile(r"[^\x00-\x2c\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\s]+")


def _is_ip6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _url_shown(url: str) -> str:
    """The URL as an error may show it: anything before an ``@`` could be a password."""
    if "@" not in url:
        return url
    start = url.find("//")
    start = 0 if start < 0 else start + 2
    return url[:start] + "***" + url[url.rfind("@") :]


def _check_seconds(value: Any, name: str, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {_shown(value)}")
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= _MAX_SECONDS):
        least = "0" if zero else "more than 0"
        raise ValueError(
            f"{name} must be {least} and at most {_MAX_SECONDS:g} seconds, not {value!r}"
        )
    return float(value)


_MAX_SECONDS = 86400.0  # a day: longer is a mistake, and past what sockets accept


def _check_timeout(timeout: Any) -> Tuple[float, float]:
    if timeout is None:
        raise ValueError(
            "timeout=None would let a call hang forever: give seconds or (connect, read)"
        )
    pair = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    try:
        if len(pair) != 2:
            raise ValueError
        return (_check_seconds(pair[0], "timeout"), _check_seconds(pair[1], "timeout"))
    except (TypeError, ValueError):
        raise ValueError(
            f"timeout must be positive seconds (at most {_MAX_SECONDS:g}) or a (connect, read) "
            f"pair of them, not {_shown(timeout)}"
        ) from None


# -- Building requests (private) ----------------------------------------------

# What one request of a bulk call may hold, so that every default deployment
# takes it (wire.md § 11).  Tomcat (DHIS2's own server, every release) refuses a
# request line plus headers over 8,192 bytes with a 400; nginx a request line
# over its 8 KB buffer with a 414, Apache one over 8,190 bytes.  Proxies add
# headers on the way (X-Forwarded-For/-Proto/-Host, X-Real-IP, Forwarded, Via,
# a load balancer's trace id: 150-400 bytes each hop) and may lengthen the path
# (a context path): 1 KiB is kept for them, two proxies' worth.  Tomcat 11
# (DHIS2 2.42+) refuses more than 1,000 parameters.  DHIS2 changes each
# conversation of a request in its own transaction, so a request of 2,000 ends
# well inside a proxy's 60 s; as a JSON body that is 28 kB, far under nginx's
# 1 MiB default.
_MAX_HEAD = 8192
_HEAD_ROOM = 1024
_MAX_PARAMS = 1000
_MAX_UIDS = 2000


def _user_params(user: Any) -> List[Tuple[str, str]]:
    """The ``user`` parameter of a bulk call, checked."""
    return [] if user is None else [("user", _check_uid(user, "user", UserRef))]


def _take(values: Iterator[str], count: int) -> List[str]:
    """A bulk call's next chunk: the next *count* different uids."""
    chunk: Dict[str, None] = {}
    while len(chunk) < count:
        uid = next(values, None)
        if uid is None:
            break
        chunk[uid] = None
    return list(chunk)


def _head_size(prepared: requests.PreparedRequest) -> int:
    """The bytes of a request's line and headers as http.client writes them."""
    lines = [f"{prepared.method} {prepared.path_url} HTTP/1.1"]
    lines.append(f"Host: {urlsplit(prepared.url or '').netloc}")
    lines.extend(f"{name}: {value}" for name, value in prepared.headers.items())
    return sum(len(line.encode("utf-8")) + 2 for line in lines) + 2


def _recipients_body(users: Any, user_groups: Any, organisation_units: Any) -> Dict[str, Any]:
    body = {}
    for key, values, name, record in (
        ("users", users, "users", UserRef),
        ("userGroups", user_groups, "user_groups", UserGroupRef),
        ("organisationUnits", organisation_units, "organisation_units", OrgUnitRef),
    ):
        uids = _check_uids(values, name, allow_empty=True, record=record)
        if uids:
            # DHIS2 refuses bare-string ids here (409): references are objects.
            body[key] = [{"id": uid} for uid in uids]
    return body


_Record = TypeVar("_Record", UserRef, UserGroupRef, OrgUnitRef)


def _the_one(name: str, kind: str, found: Sequence[_Record], more: bool) -> _Record:
    """The candidate named exactly *name* (any case), or the only candidate."""
    wanted = name.strip().casefold()
    exact = [c for c in found if (c.name or "").casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    if not exact and len(found) == 1:
        return found[0]
    raise NameMatchError(name, kind, exact or found, more and not exact)


def _candidate(record: Any) -> str:
    """A candidate as a list of choices shows it: its name, and what tells it apart."""
    extra = _ref_extra(record)
    name = _cell(record.name or "")
    return f"{name} ({_cell(extra)})" if extra else name


def _tree_key(unit: OrgUnitRef, root: str, units: Mapping[str, OrgUnitRef]) -> Tuple[Any, ...]:
    """Depth-first order below *root*: the names on the way down from it."""
    if unit.id == root:
        return ()
    segments = (unit.path or "").split("/")
    below = segments[segments.index(root) + 1 :] if root in segments else [unit.id]
    return tuple(((units[s].name or "").casefold() if s in units else "", s) for s in below)


def _list_params(
    filter: Any, query: Any, query_operator: Any, order: Any, fields: Any, page_size: Any
) -> List[Tuple[str, str]]:
    params = [("fields", LIST_FIELDS if fields is None else _check_text(fields, "fields"))]
    for expression in _check_strings(() if filter is None else filter, "filter"):
        if expression.count(":") < 1:
            raise ValueError(f"filter {expression!r} is not of the form property:operator:value")
        params.append(("filter", expression))
    for expression in _check_strings(() if order is None else order, "order"):
        params.append(("order", expression))
    if query is not None:
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        if query.strip():
            # DHIS2's own "query" parameter drops the inbox restriction and lists
            # other users' conversations; "queryString" is the inbox search.
            params.append(("queryString", query))
    if query_operator is not None:
        if not isinstance(query_operator, str) or not re.fullmatch(r"!?[A-Za-z$]+", query_operator):
            raise ValueError(
                f"query_operator must be an operator name such as token or ilike, not {query_operator!r}"
            )
        params.append(("queryOperator", query_operator))
    params.append(("pageSize", str(_check_count(page_size, "page_size"))))
    return params


#: The orders a walk resumes by value: DHIS2's property -> the Conversation attribute.
#: Filtered and sorted by the same engine on every release (in memory up to 2.41,
#: in the database from 2.42).  Not the enums: up to 2.41 the in-memory ``le`` and
#: ``ge`` match no enum value at all (LessEqualOperator.test knows strings,
#: numbers and dates).
_RESUMABLE = {
    "lastMessage": "last_message",
    "lastUpdated": "last_updated",
    "created": "created",
    "messageCount": "message_count",
    "subject": "subject",
}


def _resume_by(params: List[Tuple[str, str]]) -> Optional[Tuple[str, str, str]]:
    """``(property, attribute, filter operator)`` of the first order, if resumable."""
    orders = [o.strip() for name, value in params if name == "order" for o in value.split(",")]
    key, _, direction = orders[0].partition(":") if orders else ("", "", "")
    if key not in _RESUMABLE or direction.lower() not in ("asc", "desc"):
        return None
    fields = dict(params)["fields"]
    if fields != LIST_FIELDS and key not in fields.split(","):  # the walk reads the key's value
        params[params.index(("fields", fields))] = ("fields", f"{fields},{key}")
    return key, _RESUMABLE[key], "le" if direction.lower() == "desc" else "ge"


#: The orders that put a conversation created during a walk among the others (a
#: new one has one message, and any subject).  By a date it sorts first, where the
#: bound keeps it out, or last, where the walk meets it after all the others.
_ARRIVE_AMONG = frozenset(("subject", "messageCount"))


def _total_order(params: List[Tuple[str, str]]) -> None:
    """Order equal values by uid: in the database (2.42+) DHIS2 leaves them in any
    order from one request to the next, and a walk counts on one order."""
    keys = [
        o.strip().partition(":")[0] for name, v in params if name == "order" for o in v.split(",")
    ]
    if keys and "id" not in keys:
        params.append(("order", "id:asc"))


def _bound(key: str, value: Any, op: str) -> Optional[str]:
    """The filter that keeps *value* and what sorts after it (``op`` is ``le`` for a
    descending order, ``ge`` ascending), as DHIS2 reads it back; None where it cannot."""
    if isinstance(value, _dt.datetime):
        # Strict, one step past the value: up to 2.41 DHIS2 filters the list in
        # memory, where an equal date never matches (java.sql.Timestamp.equals
        # refuses a java.util.Date), so "le" would act as "lt".
        exact = value.microsecond % 1000 == 0
        step = _dt.timedelta(milliseconds=1) if exact else _dt.timedelta(microseconds=1)
        try:
            past = value + step if op == "le" else value - step
        except OverflowError:  # year 9999 or 1
            return None
        # DHIS2's own shape, its zone too when it sent one: its DateUtils reads both.
        text = past.isoformat(timespec="milliseconds" if exact else "microseconds")
        return f"{key}:{'lt' if op == 'le' else 'gt'}:{text}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{key}:{op}:{value}"
    # 2.42+ joins the filters with commas and splits them again (a "[" starts a
    # list), so such a text would come back cut short.
    if isinstance(value, str) and value and value[0] != "[" and not set(value) & set(",\r\n"):
        return f"{key}:{op}:{value}"
    return None


def _subject_filter(subject: str) -> Optional[str]:
    """A filter every subject equal to *subject* passes, in words DHIS2 reads back exactly.

    ``subject:eq:`` when the subject survives every release's parsing: 2.42+ joins the
    filters with commas and re-splits them (a value ends at a comma, a CR or LF, or at
    the ``]`` of a leading ``[...]``), then splits each at colons, dropping trailing
    ones; a value of colons only is none anywhere.  Else ``subject:like:`` the longest
    piece without those characters nor LIKE's own (``%``, ``_``, a backslash): more subjects
    pass, and the caller checks the subject itself.  None when no piece is left."""
    if not re.search(r"[,\r\n]", subject) and subject[0] != "[" and subject[-1] != ":":
        return f"subject:eq:{subject}"
    pieces = (piece.strip() for piece in re.split(r"[,\[\]:%_\\\x00-\x1f\x7f]+", subject))
    longest = max(pieces, key=len)
    return f"subject:like:{longest}" if longest else None


_MILLISECOND = _dt.timedelta(milliseconds=1)


def _local_value(when: _dt.datetime) -> str:
    """A naive datetime (DHIS2's own time) as DHIS2's DateUtils reads it back in a filter."""
    return when.isoformat(timespec="microseconds" if when.microsecond % 1000 else "milliseconds")


def _utc_value(seconds: float) -> str:
    """An instant (seconds since 1970) as a filter value DHIS2 reads as that instant:
    UTC with ``Z``, to the millisecond below (DateUtils' Joda patterns end in ``Z``)."""
    seconds = min(max(seconds, -62135596800.0), 253402300799.0)  # years 1 to 9999
    when = _dt.datetime(1970, 1, 1) + _dt.timedelta(milliseconds=math.floor(seconds * 1000))
    return when.isoformat(timespec="milliseconds") + "Z"


def _window(kept: int, unsure: int, size: int) -> Tuple[int, int]:
    """``(page, pageSize)`` of a walk's next request by value.

    *kept* conversations at the front of what the bound keeps were met, and the
    last *unsure* of them may be gone since (the loop removed them).  While one page
    from the front holds them all, or all may be gone, that page is asked.  Else
    DHIS2 pages by offset in multiples of the page size: the smallest page that
    starts at or before the last conversation surely still there (the walk checks
    it is) and reaches *size* past the last one met, or past where the gone ones
    were, up to twice *size*.
    """
    if kept <= size or unsure >= kept:
        return 1, kept + size
    skip = kept - unsure - 1
    want = min(unsure + 1, size + 1) + size
    page_size = want
    while (skip // page_size + 1) * page_size < skip + want:
        page_size += 1
    return skip // page_size + 1, page_size


def _before(value: Any, bound: Any, op: str) -> bool:
    """True when *value* sorts before *bound* in a walk filtered with *op*."""
    try:
        return bool(value > bound if op == "le" else value < bound)
    except TypeError:  # a naive and an aware datetime
        return False


# -- Reading answers (private) -------------------------------------------------


def _decode_json(answer: _Answer) -> Any:
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):  # RecursionError: thousands of nested "["
        raise _not_json(answer) from None


def _ack(answer: _Answer) -> None:
    """Check the answer of a call that uses nothing from it: empty, or JSON as DHIS2 sends."""
    if answer.body.strip():
        _decode_json(answer)


def _not_json(answer: _Answer) -> ResponseError:
    kind = answer.headers.get("Content-Type", "no Content-Type")
    return ResponseError(
        f"DHIS2 answered {answer.method} {answer.path} with HTTP {answer.status} but the body "
        f"is not valid JSON ({_shorten(kind, 60)}): {_snippet(answer)!r}.",
        "not_json",
        answer.method,
        answer.path,
        answer.status,
        "Check that base_url points at DHIS2 itself, not at a proxy or login page.",
    )


def _uid_list(body: Any, key: str) -> List[str]:
    body = _check_object(body, "answer")
    values = body.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(key, values, "a list of uids")
    return values


#: A new conversation's address in a 201's Location (wire.md § 2.5): DHIS2's context
#: path, /api, the API version when the request named one, the uid.  Its scheme, host
#: and port are not compared with base_url's: DHIS2 builds them from the request and
#: the X-Forwarded-* headers, so behind a proxy they may be another's, and the
#: library never requests the address.
_CREATED_RE = re.compile(r"(?:/[^/]+)*/api(?:/[0-9]+)?/messageConversations/([^/]*)/?")


def _location_uid(answer: _Answer) -> str:
    """The new conversation's uid, from the path of the 201's Location."""
    location = answer.headers.get("Location")
    try:
        parts = urlsplit(location or "")
    except ValueError:  # e.g. "http://[" : not a URL at all
        parts = None
    found = None
    if parts is not None and parts.scheme in ("http", "https", ""):
        found = _CREATED_RE.fullmatch(parts.path)
    if found is None:
        what = (
            f"and a Location ({_shown(location, 100)}) that is no conversation's address: its "
            "uid was expected at .../api/messageConversations/<uid>"
            if location
            else "without the Location header that names the new conversation"
        )
        raise ResponseError(
            f"DHIS2 answered {answer.method} {answer.path} with HTTP {answer.status} {what}.",
            "no_location",
            answer.method,
            answer.path,
            answer.status,
            "It was probably created: look in the inbox before sending again "
            "(DHIS2 before 2.41.3 sends no Location for feedback).",
        )
    return _check_uid_from_server(found.group(1))


def _http_date(value: Optional[str]) -> Optional[float]:
    """An HTTP date (a ``Date`` header) in seconds since 1970, or None."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _check_uid_from_server(value: str) -> str:
    if not _UID_RE.fullmatch(value):
        raise ResponseError(f"DHIS2 sent {_shown(value)} where a uid was expected")
    return value


def _snippet(answer: _Answer) -> str:
    """An error page's gist: its HTML title, else its text without tags, on one short line."""
    text = answer.body[:4096].decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    return _shorten(" ".join(re.sub(r"<[^>]+>", " ", text).split()), 200)


#: What to do about an error status, where it does not depend on the request.
_STATUS_HINTS = {
    401: "check the username and password or the personal access token",
    403: "the user is not a participant, or lacks the authority for this action",
}


_NO_API_HINT = (
    "the server has no DHIS2 API at this address: check base_url and its context path "
    "(https://host or https://host/dhis, say)"
)


#: The limits of DHIS2 and of the servers and proxies in front of it (wire.md § 11):
#: the status of each refusal, a phrase of its page where that status has other
#: causes too, and what to do.
_LIMIT_HINTS = (
    (
        400,
        "Request header is too large",
        (
            "DHIS2's Tomcat takes at most 8,192 bytes of request line and headers "
            "(maxHttpHeaderSize): ask for less in one request, e.g. a shorter filter"
        ),
    ),
    (
        400,
        "maximum number of request parameters",
        (
            "DHIS2's Tomcat takes at most 1,000 request parameters (maxParameterCount): "
            "ask for less in one request"
        ),
    ),
    (
        409,
        "File size can't be bigger than",
        (
            "the file is larger than DHIS2's max.file_upload_size (dhis.conf, 10,000,000 "
            "bytes by default): send a smaller file, or ask the administrator to raise it"
        ),
    ),
    (
        413,
        "",
        (
            "the body is larger than the server or a proxy in front of DHIS2 accepts (nginx's "
            "client_max_body_size is 1m unless raised): send a smaller file, or ask the "
            "administrator to raise client_max_body_size (and DHIS2's max.file_upload_size)"
        ),
    ),
    (
        414,
        "",
        (
            "the request line is longer than a proxy in front of DHIS2 accepts (nginx: 8 KB, "
            "large_client_header_buffers; Apache: 8,190 bytes, LimitRequestLine): ask for less "
            "in one request, e.g. a shorter filter, or ask the administrator to raise the limit"
        ),
    ),
    (
        431,
        "",
        (
            "the request headers are larger than the server accepts (a long cookie or "
            "token?): ask the administrator to raise the limit"
        ),
    ),
)


def _error_from(answer: _Answer) -> ApiError:
    """The ApiError for an error status (or an unfollowed redirect).  ``message``
    stays DHIS2's own text, or the status line's reason; what to do goes in ``hint``."""
    status, method, path = answer.status, answer.method, answer.path
    if status < 400:
        return _redirect_error(answer)
    body: Any
    message = error_code = None
    try:
        body = json.loads(answer.body)
    except (ValueError, RecursionError):
        body = answer.body.decode("utf-8", "replace")
        message = _snippet(answer) or None
    else:
        if isinstance(body, dict):
            text = body.get("message") or body.get("devMessage") or body.get("httpStatus")
            message = text if isinstance(text, str) else None
            code = body.get("errorCode")
            error_code = code if isinstance(code, str) else None
    error = _STATUS_ERRORS.get(status, ApiError)(status, message or answer.reason, error_code, body)
    error.method, error.path = method, path
    hints = [] if message else ["no message from DHIS2"]
    if status >= 500:
        hints.append(f"{method} {path}: DHIS2 or a proxy in front of it failed; try again later")
    elif status == 404 and isinstance(body, str):
        # DHIS2 answers its own 404s in JSON: a page means no DHIS2 API at this address.
        hints.append(_NO_API_HINT)
    elif status in _STATUS_HINTS:
        hints.append(_STATUS_HINTS[status])
    page = answer.body[:16384].decode("utf-8", "replace")
    hints += [hint for code, phrase, hint in _LIMIT_HINTS if code == status and phrase in page]
    error.hint = "; ".join(hints)
    return error


def _users_of(body: Any, plural: str, what: str, uids: Sequence[str]) -> List[UserRef]:
    """The ``users`` of the groups or units *uids* in a metadata list; NotFoundError
    when one of them is not in it (it does not exist, or the caller may not see it)."""
    items = _check_object(body, "list").get(plural)
    if not isinstance(items, list):
        raise _bad(plural, items, "a list")
    shared: _Users = {}
    members: Dict[str, Tuple[UserRef, ...]] = {}
    for item in items:
        obj = _check_object(item, what)
        uid = _get_required_str(obj, "id", f"a {what}")
        members[uid] = _parse_list(obj.get("users"), "users", _parse_user, shared)
    missing = [uid for uid in uids if uid not in members]
    if missing:
        raise NotFoundError(
            200, f"No {what} {missing[0]} (it does not exist, or you may not see it)", None, body
        )
    return [user for uid in uids for user in members[uid]]


def _explain_no_recipients(error: ConflictError, units: bool) -> None:
    """Mark DHIS2's refusal of a message that would reach nobody ("No recipients
    selected.", the same text from 2.38 to 2.44); when it went to organisation
    units, say how to reach the users below them."""
    if error.message.strip().rstrip(".") != "No recipients selected":
        return
    error.no_recipients = True
    if units:
        error.hint = (
            "no user is assigned to those organisation units themselves, and DHIS2 does not "
            "deliver to the units below them: send to organisation_unit_subtree(unit) to "
            "reach everyone in and below a unit"
        )


def _redirect_error(answer: _Answer) -> ApiError:
    location = answer.headers.get("Location", "")
    error: ApiError
    if "login" in location.lower():
        error = AuthenticationError(answer.status, answer.reason, None, location)
        error.hint = (
            "DHIS2 redirected to its login page: the request carried no valid credentials; "
            + _STATUS_HINTS[401]
        )
    else:
        error = ApiError(answer.status, answer.reason, None, location)
        error.hint = (
            f"DHIS2 answered {answer.method} {answer.path} with a redirect to "
            f"{_shorten(_CONTROL_RE.sub('?', location), 200) if location else '(nowhere)'}; "
            "redirects are not followed: use the final address as base_url"
        )
    error.method, error.path = answer.method, answer.path
    return error


def _refused_order(body: Any, params: Iterable[Tuple[str, str]]) -> Optional[Tuple[str, str]]:
    """``(property, order)`` when DHIS2 2.43+ refused an ``order`` of the request:
    its 400 body says ``No such property: x`` of a property one of the orders sorts by."""
    text = body.get("message") if isinstance(body, dict) else None
    prefix = "No such property: "
    if not isinstance(text, str) or not text.startswith(prefix):
        return None
    name = text[len(prefix) :]
    for key, value in params:
        for order in value.split(",") if key == "order" else ():
            if order.strip().partition(":")[0] == name:
                return name, order.strip()
    return None


_E = TypeVar("_E", bound=Exception)


def _partly(error: _E, done: List[str], sent: int, of: str) -> _E:
    """A bulk call's failure, with ``done``; after some requests succeeded its text says
    how many uids of how many (*of*) were done."""
    setattr(error, "done", done)  # noqa: B010 - a ValueError has no such attribute
    if sent:
        note = (
            f"{sent:,} of {of} were done before this request failed (done lists the "
            f"{len(done):,} DHIS2 reported changed); the rest were not sent"
        )
        if isinstance(error, Dhis2Error):
            error.hint = f"{error.hint}; {note}" if error.hint else note
        else:
            error.args = (f"{error}; {note}",)
    return error


def _named(uids: Sequence[str], shown: int = 5) -> str:
    """Some uids for a message: the first few, then how many more."""
    more = f" and {len(uids) - shown:,} more" if len(uids) > shown else ""
    return ", ".join(uids[:shown]) + more


# -- Retries (private) --------------------------------------------------------


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):  # not isdigit(): that takes "²" too
        return float(value)
    when = _http_date(value)
    return None if when is None else max(0.0, when - time.time())


#: requests' errors for a request it refused to send (a socks:// proxy without PySocks
#: is InvalidSchema): nothing left the machine.
_NOT_SENDABLE = (
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so DHIS2 cannot have seen the request."""
    if isinstance(exc, (requests.ConnectTimeout,) + _NOT_SENDABLE):
        return True
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the cause
    if isinstance(reason, ProxyError):
        # Also for a connection through an http:// proxy that broke after the request was
        # written (the proxy may have passed it on): only a failed connection to the proxy
        # (NewConnectionError is a ConnectTimeoutError) means nothing was sent.
        return isinstance(reason.original_error, ConnectTimeoutError)
    return isinstance(reason, NewConnectionError)


def _maybe_done(failure: Union[_Answer, TransportError]) -> bool:
    """True when a failed attempt may still have done its work on DHIS2."""
    if isinstance(failure, TransportError):
        return failure.sent
    # A proxy's 502 or 504: DHIS2 may have finished after the proxy gave up.
    return failure.status in (502, 504)


def _may_still_work(error: Dhis2Error) -> bool:
    """True when DHIS2 may still be doing what a lost answer was about: the client's read
    timeout or a proxy's 504 ran out while DHIS2 worked on."""
    if isinstance(error, TransportError):
        return error.kind == "read_timeout"
    return isinstance(error, ApiError) and error.status_code == 504


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _lost_how(error: Dhis2Error) -> str:
    if isinstance(error, ApiError):
        return f"HTTP {error.status_code}"
    if isinstance(error, TransportError):
        return error.kind.replace("_", " ")
    return type(error).__name__


def _may_retry(error: TransportError, idempotent: bool) -> bool:
    if error.kind == "tls":
        return False  # a certificate problem does not go away by asking again
    if error.detail == "unknown_host":
        return False  # nor does a name that does not exist (a DNS timeout is retried)
    if isinstance(error.__cause__, (requests.exceptions.ContentDecodingError,) + _NOT_SENDABLE):
        return False  # the same bytes would come back; requests would refuse it again
    return idempotent or not error.sent


def _attempt_text(failure: Union[_Answer, TransportError]) -> str:
    """A failed attempt in a few words, for the line that announces its retry: with
    the retry's wait and count, one line of at most 100 characters."""
    if isinstance(failure, _Answer):
        return f"DHIS2 answered {failure.status}"
    if failure.kind in ("read_timeout", "connect_timeout") and failure.seconds is not None:
        what = "no answer" if failure.kind == "read_timeout" else "no connection"
        return f"{what} within {failure.seconds:g} s"
    what = "the connection broke" if failure.kind == "broken" else "could not connect"
    return f"{what} ({_shorten(failure.reason, 32)})"


#: getaddrinfo's answers for a name that does not exist (a timeout is EAI_AGAIN).
_NO_SUCH_NAME = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


def _transport_detail(exc: BaseException, kind: str) -> str:
    """What ``TransportError.detail`` says of a requests exception: read from the
    errors it wraps (their types, ``errno`` and ``ssl.SSLError.reason``), never their text."""
    for inner in _wrapped(exc):
        if (
            kind == "connect"
            and isinstance(inner, socket.gaierror)
            and inner.errno in _NO_SUCH_NAME
        ):
            return "unknown_host"
        if (
            kind == "tls"
            and isinstance(inner, ssl.SSLError)
            and inner.reason == "WRONG_VERSION_NUMBER"  # a plain-http answer read as TLS
        ):
            return "plain_http"
    return ""


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """*exc* and the errors inside it: urllib3's ``reason``, ``__cause__``,
    ``__context__`` and exceptions among ``args``; a bounded walk."""
    pending: List[BaseException] = [exc]
    seen: Set[int] = set()
    while pending and len(seen) < 30:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [getattr(current, "reason", None), current.__cause__, current.__context__]
        inner += list(current.args)
        pending += [e for e in inner if isinstance(e, BaseException)]


def _reason(exc: BaseException) -> str:
    """The innermost cause requests and urllib3 wrapped, in a few words: no
    object addresses, no ``HTTPConnection(host=...)`` framing, no ``_ssl.c`` line."""
    for _ in range(10):  # urllib3 nests them three or four deep
        reason = getattr(exc, "reason", None)
        inner = reason if isinstance(reason, BaseException) else exc.__cause__
        if inner is None and exc.args and isinstance(exc.args[-1], BaseException):
            inner = exc.args[-1]  # requests' (urllib3's error,), urllib3's ("text", cause)
        if inner is None and isinstance(exc, NewConnectionError):
            inner = exc.__context__  # urllib3 1.26 raises it without "from"
        if inner is None or inner is exc:
            break
        exc = inner
    text = getattr(exc, "verify_message", None) or getattr(exc, "strerror", None) or str(exc)
    text = re.sub(r"^(<[^>]*>|\w+\(host=[^)]*\)): ", "", str(text))
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text) or type(exc).__name__


# =============================================================================
# The command line
# =============================================================================
# Everything above is the library; everything below is the ``dhis2-messages``
# command (also ``python -m dhis2_messages``), a terminal tool built on the
# library's public names only: Messenger's methods, the records and the errors'
# fields (a test holds it to that).  Each subcommand is one function, declared
# with its arguments by @_command.  Its output: a str or bytes to print, data
# for --json, or None when it wrote its output itself.
# Exit status: 0 done, 1 DHIS2 or the network failed, 2 the command was wrong.

import datetime  # the command line's own imports
import shutil
import sys
import unicodedata
import warnings

from urllib3.exceptions import InsecureRequestWarning


class _UsageError(Exception):
    """A command-line mistake: exit status 2."""


class _Outcome(NamedTuple):
    """A command's output with an exit status other than 0 (find with no match)."""

    output: Any
    status: int


# -- The terminal ---------------------------------------------------------------

#: SGR colours for DHIS2's message types; any other type is shown uncoloured.
_TYPE_COLOURS = {
    "PRIVATE": "36",
    "TICKET": "33",
    "VALIDATION_RESULT": "35",
    "SYSTEM": "34",
    "SYSTEM_VERSION_UPDATE": "34",
}


class _Style:
    """ANSI styles; with colour off every method returns its text unchanged."""

    def __init__(self, colour: bool = False) -> None:
        self.colour = colour

    def _sgr(self, on: str, off: str, text: str) -> str:
        return f"\x1b[{on}m{text}\x1b[{off}m" if self.colour and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", "22", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", "22", text)

    def kind(self, message_type: Optional[str], text: str) -> str:
        colour = _TYPE_COLOURS.get(message_type or "")
        return self._sgr(colour, "39", text) if colour else text


class _Terminal:
    """Where the command writes and how: colour and width on standard output,
    progress and retry notes on standard error (only when it is a terminal)."""

    def __init__(self, color: str = "never", quiet: bool = True) -> None:
        out = sys.stdout
        self.style = _Style(_colour_wanted(color, out))
        self.width = shutil.get_terminal_size().columns if _isatty(out) else None
        self.chatty = not quiet and _isatty(sys.stderr)
        self._progress = ""
        self._note_width = _terminal_columns(sys.stderr) if self.chatty else None

    def progress(self, text: str) -> None:
        """Show *text* as the one progress line, replacing the last one."""
        if self.chatty:
            sys.stderr.write("\r\x1b[K" + text)
            sys.stderr.flush()
            self._progress = text

    def clear(self) -> None:
        if self._progress:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._progress = ""

    def note(self, text: str) -> None:
        """A line on standard error, above the progress line; cut to one terminal line."""
        if self.chatty:
            shown = self._progress
            self.clear()
            if self._note_width:
                text = _cut(text, self._note_width)
            print(text, file=sys.stderr, flush=True)
            if shown:
                self.progress(shown)


def _terminal_columns(stream: Any) -> Optional[int]:
    """The width of the terminal *stream* writes to, if it is one."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _colour_wanted(choice: str, stream: Any) -> bool:
    """--color, then NO_COLOR (no-color.org), then FORCE_COLOR, then: is it a terminal?"""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream) and os.environ.get("TERM") != "dumb"


class _RetryNotes(logging.Handler):
    """The library's INFO lines (each retry, and why) as notes on the terminal."""

    def __init__(self, terminal: _Terminal) -> None:
        super().__init__(logging.INFO)
        self.terminal = terminal

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno in (logging.INFO, logging.WARNING):
            self.terminal.note(f"dhis2-messages: {record.getMessage()}")


def _text(value: Optional[str]) -> str:
    """Text from DHIS2 (user input) on one terminal line: control characters become spaces."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", value or "")


def _columns(text: str) -> int:
    """Terminal columns of *text*: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(
        2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
        for ch in text
    )


def _cut(text: str, width: int) -> str:
    """*text* in at most *width* terminal columns, ending in … when it was cut."""
    if _columns(text) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        used += _columns(ch)
        if used > width - 1:
            break
        kept.append(ch)
    return "".join(kept) + "…"


#: The list's columns; FLAGS holds ``*`` for unread and ``!`` for follow-up.
_COLUMNS = ("UID", "FLAGS", "TYPE", "STATUS", "PRIORITY", "LAST MESSAGE", "FROM", "SUBJECT")
#: The columns a subject should get on a terminal before other columns give way.
_SUBJECT_ROOM = 20


def _row(conv: Conversation) -> Tuple[str, ...]:
    """One conversation's cells under ``_COLUMNS``."""
    sender = conv.last_sender
    return tuple(
        _text(cell)
        for cell in (
            conv.id,
            ("*" if conv.read is False else "") + ("!" if conv.follow_up else ""),
            conv.message_type,
            conv.status,
            conv.priority,
            conv.last_message.strftime("%Y-%m-%d %H:%M") if conv.last_message else "",
            "System" if sender is None else sender.name or sender.id,
            conv.subject,
        )
    )


class _Table:
    """The list table, written a page at a time: the first rows set the column widths.

    With a *width* (a terminal's) every line fits it.  A column that holds one value
    in every row (TYPE under ``--type TICKET``, say) is left out first, and the footer
    says the value; then a narrow terminal leaves out PRIORITY, then STATUS, then
    shortens FROM so the subject keeps some room, and cells that would not fit are cut
    with ….  Without (a pipe or a file), every column and every cell is written whole.
    """

    def __init__(self, style: _Style, width: Optional[int] = None) -> None:
        self.style, self.width = style, width
        self.widths: List[int] = []
        self.shown = list(range(len(_COLUMNS) - 1))  # every column but the subject
        self.uniform: Dict[int, str] = {}  # a column left out: its one value

    def start(
        self,
        conversations: Sequence[Conversation],
        complete: bool = True,
        pinned: Sequence[int] = (),
    ) -> str:
        """Set the column widths from these rows (a first page); return the header line.

        *complete*: these are all the rows the table will hold; *pinned*: columns a
        filter holds to one value, whatever the rows to come."""
        rows = [_COLUMNS] + [_row(conv) for conv in conversations]
        self.widths = [max(_columns(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
        if self.width is not None:
            for column in _UNIFORM_COLUMNS:
                values = {row[column] for row in rows[1:]}
                if len(values) == 1 and len(rows) > 2 and (complete or column in pinned):
                    self.uniform[column] = values.pop()
                    self.shown.remove(column)
            for column in (4, 3):  # PRIORITY, STATUS: the least read on a narrow terminal
                if column in self.shown and self._room() < _SUBJECT_ROOM:
                    self.shown.remove(column)
            self.widths[6] = max(8, self.widths[6] - max(0, _SUBJECT_ROOM - self._room()))
        return self.style.bold(self._line(_COLUMNS, None))

    def _room(self) -> int:
        assert self.width is not None
        return self.width - sum(self.widths[i] + 2 for i in self.shown)

    def line(self, conv: Conversation) -> str:
        line = self._line(_row(conv), conv)
        return self.style.bold(line) if conv.read is False else self.style.dim(line)

    def _line(self, row: Tuple[str, ...], conv: Optional[Conversation]) -> str:
        cells = []
        for i in self.shown:
            cell, width = row[i], self.widths[i]
            if self.width is not None:
                cell = _cut(cell, width)
            padding = " " * (width - _columns(cell))
            if conv is not None and i == 2:  # the type column
                cell = self.style.kind(conv.message_type, cell)
            cells.append(cell + padding)
        subject = row[-1]
        if self.width is not None:
            subject = _cut(subject, max(self._room(), 1))
        return "  ".join(cells) + "  " + subject

    def footer(self, summary: str) -> str:
        """The pager's words, and the one value of each column left out."""
        words = [
            _FLAG_WORDS.get(value, value) if column == 1 else _UNIFORM_WORDS[column] + value
            for column, value in sorted(self.uniform.items(), key=lambda item: item[0] == 1)
            if value or column == 1
        ]
        return f"{summary}; all {', '.join(words)}" if words else summary


#: FLAGS, TYPE, STATUS, PRIORITY: left out of a terminal's table when every row agrees.
_UNIFORM_COLUMNS = (1, 2, 3, 4)
_UNIFORM_WORDS = {2: "", 3: "status ", 4: "priority "}
_FLAG_WORDS = {"": "read", "*": "unread", "!": "read, follow-up", "*!": "unread, follow-up"}
#: The filters that hold a column to one value: ``property:eq:VALUE``.
_PINNING = {"messageType": 2, "status": 3, "priority": 4}


def _pinned(filters: Sequence[str]) -> List[int]:
    """The columns the ``--filter`` expressions (and ``--type``) hold to one value."""
    return [
        _PINNING[name]
        for name, op, _ in (f.split(":", 2) for f in filters if f.count(":") >= 2)
        if op == "eq" and name in _PINNING
    ]


def _summary(page: Page) -> str:
    """What a page's pager says, under its table."""
    if page.conversations:
        return f"page {page.page} of {page.page_count}, {page.total} in all"
    if page.total:
        return f"no conversations on page {page.page} (of {page.page_count}; {page.total} in all)"
    return "no conversations"


# -- Commands ---------------------------------------------------------------------

_Argument = Tuple[Tuple[str, ...], Dict[str, Any]]


class _Command(NamedTuple):
    name: str
    run: Callable[[Messenger, Any], Any]
    help: str
    arguments: Tuple[_Argument, ...]
    #: the command sends or uploads something, so a lost answer may hide work done
    creates: bool


_COMMANDS: List[_Command] = []


def _arg(*flags: str, **options: Any) -> _Argument:
    """One argparse argument, declared beside the command that reads it."""
    return flags, options


def _command(
    name: str, help: str, *arguments: _Argument, creates: bool = False
) -> Callable[[Callable[[Messenger, Any], Any]], Callable[[Messenger, Any], Any]]:
    """Register the decorated function as the subcommand *name*."""

    def register(run: Callable[[Messenger, Any], Any]) -> Callable[[Messenger, Any], Any]:
        _COMMANDS.append(_Command(name, run, help, arguments, creates))
        return run

    return register


def _uid_arg(text: str) -> str:
    """An argument that must be a DHIS2 uid, checked before any request or upload."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{10}", text):
        raise _argparse().ArgumentTypeError(
            f"{text!r} is not a DHIS2 uid (11 characters: a letter, then 10 letters or digits)"
        )
    return text


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise _argparse().ArgumentTypeError(f"must be a whole number, 1 or more, not {text!r}")
    return value


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= 86400):
        raise _argparse().ArgumentTypeError(
            f"must be a number of seconds above 0 and at most 86400, not {text!r}"
        )
    return value


def _retries_arg(text: str) -> int:
    if not text.isdigit():
        raise _argparse().ArgumentTypeError(f"must be a whole number, 0 or more, not {text!r}")
    return int(text)


def _date_arg(text: str) -> Union[datetime.datetime, datetime.timedelta]:
    """A date for --since and --before: an ISO date or date and time (the server's
    time, as DHIS2 keeps it), or a number of days back from now (7d)."""
    days = re.fullmatch(r"(\d{1,5})d", text.strip())
    if days:
        return datetime.timedelta(days=int(days.group(1)))
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is not None:
        raise _argparse().ArgumentTypeError(
            f"{text!r} is not a date such as 2024-05-01 or 2024-05-01T08:00 (no time zone: "
            "DHIS2 compares in the server's time), nor a number of days such as 7d"
        )
    return when


def _choice_arg(text: str, valid: Sequence[str]) -> str:
    if text.strip().upper() not in valid:
        raise _argparse().ArgumentTypeError(f"{text!r} is not one of {', '.join(valid)}")
    return text.strip().upper()


def _argparse() -> Any:
    import argparse  # only the command line needs it

    return argparse


def _jsonable(value: Any) -> Any:
    if attrs.has(type(value)):
        return {k: _jsonable(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


#: How long a walk runs before it shows its progress line.
_PROGRESS_AFTER = 0.5


@_command(
    "list",
    "list conversations, newest first",
    _arg("--unread", action="store_true", help="only unread ones"),
    _arg(
        "--type",
        type=lambda text: _choice_arg(text, MESSAGE_TYPES),
        help=f"only this message type: {', '.join(MESSAGE_TYPES)}",
    ),
    _arg(
        "--since",
        type=_date_arg,
        metavar="WHEN",
        help="only those with a message since WHEN: 2024-05-01, 2024-05-01T08:00 "
        "(the server's time), or 7d (days ago)",
    ),
    _arg("--before", type=_date_arg, metavar="WHEN", help="only those with no message since WHEN"),
    _arg("--filter", action="append", default=[], help="a DHIS2 filter, e.g. status:eq:OPEN"),
    _arg("--query", help="search subjects, texts and senders"),
    _arg("--order", default="lastMessage:desc", help="default lastMessage:desc"),
    _arg("--page", type=_count_arg, default=1),
    _arg(
        "--page-size",
        type=_count_arg,
        help=f"conversations a page (default 50; with --all {WALK_PAGE_SIZE}, for the fewest requests)",
    ),
    _arg("--all", action="store_true", help="walk every page, printing each as it arrives"),
)
def _cli_list(m: Messenger, args: Any) -> Any:
    filters = list(args.filter)
    filters += ["read:eq:false"] if args.unread else []
    filters += [f"messageType:eq:{args.type}"] if args.type else []
    filters += [since(args.since)] if args.since else []
    filters += [before(args.before)] if args.before else []
    options = {
        "filter": filters or None,
        "query": args.query,
        "order": args.order,
        "page_size": args.page_size,
    }
    if args.all:
        _cli_walk(m, args, options)
        return None
    options["page_size"] = args.page_size or 50
    page = m.list_conversations(page=args.page, **options)
    if args.json:
        return _jsonable(page)
    if not page.conversations:
        return _summary(page)
    table = _Table(args.terminal.style, args.terminal.width)
    lines = [table.start(page.conversations)] + [table.line(c) for c in page.conversations]
    return "\n".join(lines + [table.footer(_summary(page))])


def _cli_walk(m: Messenger, args: Any, options: Dict[str, Any]) -> None:
    """list --all: rows (or JSON Lines) as each page arrives, a progress line meanwhile."""
    terminal, out = args.terminal, sys.stdout
    table = None if args.json else _Table(terminal.style, terminal.width)
    started = time.monotonic()
    first: Optional[Page] = None
    pages = rows = 0
    last: Optional[str] = None  # the uid that ends the page being written

    def on_page(page: Page) -> None:
        nonlocal first, pages, last
        pages += 1
        first = first or page
        last = page.conversations[-1].id if page.conversations else None
        if table is not None and not table.widths and page.conversations:
            pinned = _pinned(options["filter"] or ())
            out.write(table.start(page.conversations, page.page_count <= 1, pinned) + "\n")

    def page_written() -> None:
        # Flushed before the next page is fetched, so a pipe sees rows as they come.
        out.flush()
        if first is not None and time.monotonic() - started >= _PROGRESS_AFTER:
            terminal.progress(
                f"{pages:,} of {first.page_count:,} pages, "
                f"{rows:,} of {first.total:,} conversations…"
            )

    try:
        for conv in m.iter_conversations(**options, on_page=on_page):
            terminal.clear()
            if table is None:
                out.write(json.dumps(_jsonable(conv), ensure_ascii=False) + "\n")
            else:
                out.write(table.line(conv) + "\n")
            rows += 1
            if conv.id == last:
                page_written()
    finally:
        terminal.clear()
    if not rows and table is not None:
        out.write("no conversations\n")
    elif table is not None and table.uniform:  # the values of the columns left out
        out.write(table.footer(f"{rows:,} conversations") + "\n")


@_command(
    "show",
    "show a conversation's thread, oldest message first",
    _arg("uid", type=_uid_arg),
    _arg("--mark-read", action="store_true"),
)
def _cli_show(m: Messenger, args: Any) -> Any:
    conv = m.get_conversation(args.uid, mark_read=args.mark_read)
    if args.json:
        return _jsonable(conv)
    subject, _, rest = str(conv).partition("\n")
    return f"{args.terminal.style.bold(subject)}\n{rest}"


_RECIPIENTS = (
    _arg("--user", action="append", default=[], help="a user: uid, username or name (repeatable)"),
    _arg("--group", action="append", default=[], help="a user group: uid or name (repeatable)"),
    _arg(
        "--org-unit",
        action="append",
        default=[],
        help="an organisation unit (its own users only): uid or name (repeatable)",
    ),
    _arg(
        "--org-unit-tree",
        action="append",
        default=[],
        metavar="ORG_UNIT",
        help="an organisation unit and every unit below it: uid or name (repeatable)",
    ),
)
_ATTACH = _arg(
    "--attach", action="append", default=[], metavar="FILE", help="upload and attach a file"
)
_ONCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _once_arg(text: str) -> Any:
    """--once (True) or --once=DURATION: a whole number and s, m, h, d or w."""
    if text == "":
        return True
    match = re.fullmatch(r"([0-9]{1,6})([smhdw])", text.strip())
    if match is None or match.group(1).strip("0") == "":
        raise _argparse().ArgumentTypeError(
            f"must be a duration such as 90m, 12h, 7d or 2w (s, m, h, d or w), not {text!r}"
        )
    return datetime.timedelta(seconds=int(match.group(1)) * _ONCE_UNITS[match.group(2)])


def _once(what: str) -> _Argument:
    return _arg(
        "--once",
        nargs="?",
        const=True,
        type=_once_arg,
        metavar="DURATION",
        help=f"do nothing if you already started {what} with this subject and text, "
        "ever or within --once=DURATION (a number and s, m, h, d or w: 12h, 7d, 2w); "
        "print its uid",
    )


def _cli_not_sent(found: Conversation, args: Any) -> Any:
    """--once found what the command would have started: say so, and give its uid."""
    when = found.created.strftime("%Y-%m-%d %H:%M") if found.created else "an unknown date"
    print(
        f"dhis2-messages: not sent: you started {found.id} with this subject and text on {when}",
        file=sys.stderr,
    )
    return {"uid": found.id, "sent": False} if args.json else found.id


def _cli_sent(args: Any) -> Dict[str, bool]:
    """With --once, the JSON says whether the command sent anything."""
    return {} if args.once is None else {"sent": True}


def _cli_found(m: Messenger, args: Any, subject: str, text: str, feedback: bool) -> Any:
    """With --once, what the caller already started with these words (else None)."""
    if args.once is None:
        return None
    since = None if args.once is True else args.once
    return m.find_sent(subject=subject, text=text, since=since, feedback=feedback)


@_command(
    "send",
    "start a conversation; prints its uid and whom it reached",
    _arg("subject"),
    _arg("text"),
    *_RECIPIENTS,
    _ATTACH,
    _arg(
        "--dry-run",
        action="store_true",
        help="send nothing: resolve the recipients and count the users the message would reach",
    ),
    _once("a conversation"),
    creates=True,
)
def _cli_send(m: Messenger, args: Any) -> Any:
    # Check everything before the first upload, so a mistake leaves no orphan files on DHIS2.
    subject = _cli_words(args.subject, "subject")
    if not (args.user or args.group or args.org_unit or args.org_unit_tree):
        raise _UsageError(
            "send needs at least one recipient: --user, --group, --org-unit or --org-unit-tree"
        )
    text = _cli_words(_cli_text(args.text), "text")
    found = _cli_found(m, args, subject, text, feedback=False)
    if found is not None:
        return _cli_not_sent(found, args)
    recipients = _cli_recipients(m, args)
    users, groups, units = recipients[:3]
    if args.dry_run:
        return _cli_would_reach(m, args, recipients)
    files = _cli_upload_all(m, args.attach)
    uid = m.send(
        subject=subject,
        text=text,
        users=users,
        user_groups=groups,
        organisation_units=units,
        attachments=files,
    )
    return _cli_reached(m, args, uid, files, recipients)


@_command(
    "reply",
    "reply to a conversation",
    _arg("uid", type=_uid_arg),
    _arg("text"),
    _arg("--internal", action="store_true", help="an internal note (feedback team only)"),
    _ATTACH,
    creates=True,
)
def _cli_reply(m: Messenger, args: Any) -> Any:
    text = _cli_words(_cli_text(args.text), "text")
    files = _cli_upload_all(m, args.attach)
    m.reply(args.uid, text, internal=args.internal, attachments=files)
    return {"uid": args.uid, "attachments": files} if args.json else f"replied to {args.uid}"


@_command(
    "feedback",
    "open a feedback ticket; prints its uid",
    _arg("subject"),
    _arg("text"),
    _once("a ticket"),
    creates=True,
)
def _cli_feedback(m: Messenger, args: Any) -> Any:
    subject = _cli_words(args.subject, "subject")
    text = _cli_words(_cli_text(args.text), "text")
    found = _cli_found(m, args, subject, text, feedback=True)
    if found is not None:
        return _cli_not_sent(found, args)
    uid = m.send_feedback(subject=subject, text=text)
    return {"uid": uid, **_cli_sent(args)} if args.json else uid


@_command(
    "add-recipients",
    "add users, groups or organisation units to a conversation",
    _arg("uid", type=_uid_arg),
    *_RECIPIENTS,
    creates=True,
)
def _cli_add_recipients(m: Messenger, args: Any) -> Any:
    if not (args.user or args.group or args.org_unit or args.org_unit_tree):
        raise _UsageError("add-recipients needs --user, --group, --org-unit or --org-unit-tree")
    users, groups, units = _cli_recipients(m, args)[:3]
    m.add_recipients(args.uid, users=users, user_groups=groups, organisation_units=units)
    return {"uid": args.uid} if args.json else f"added recipients to {args.uid}"


class _Bulk(NamedTuple):
    """What a bulk command does, in its own words."""

    method: Callable[..., List[str]]
    #: (attribute, value) of a conversation the command would not change; None: delete.
    flag: Optional[Tuple[str, bool]]
    did: str  # "marked {} read"
    would: str  # "would mark {} read"
    already: str  # "{} read already": after "was" or "were"


_BULKS = {
    "mark-read": _Bulk(
        Messenger.mark_read, ("read", True), "marked {} read", "mark {} read", "read"
    ),
    "mark-unread": _Bulk(
        Messenger.mark_unread, ("read", False), "marked {} unread", "mark {} unread", "unread"
    ),
    "follow-up": _Bulk(
        Messenger.follow_up,
        ("follow_up", True),
        "flagged {} for follow-up",
        "flag {} for follow-up",
        "flagged",
    ),
    "unfollow-up": _Bulk(
        Messenger.unfollow_up,
        ("follow_up", False),
        "cleared the follow-up flag of {}",
        "clear the follow-up flag of {}",
        "not flagged",
    ),
    "delete": _Bulk(
        Messenger.delete_conversations, None, "deleted {} from the inbox", "delete {}", ""
    ),
}


def _cli_bulk(command: str) -> Callable[[Messenger, Any], Any]:
    """A bulk command: the given uids, or with --all every conversation the filters
    match; it says how many changed and how many were already so."""
    bulk = _BULKS[command]

    def run(m: Messenger, args: Any) -> Any:
        if bool(args.uids) == bool(args.all):
            raise _UsageError(f"{command} takes UIDs or --all (with the list's filters), not both")
        if (args.filter or args.unread or args.query) and not args.all:
            raise _UsageError("--filter, --unread and --query go with --all")
        if args.all and args.user:
            raise _UsageError("--all walks your own inbox: it does not go with --user")
        user = None if args.user is None else _cli_user(m, args.user, "--user")
        convs: Iterable[Conversation]
        missing: List[str] = []
        if args.all:
            convs = _cli_matches(m, args, command)
        elif user is None:
            convs, missing = _cli_given(m, args.uids)
        else:  # another user's flags are not in the caller's list: send them all
            convs = [Conversation(id=uid) for uid in args.uids]
        already: List[str] = []

        def todo() -> Iterator[str]:
            for conv in convs:
                if bulk.flag and getattr(conv, bulk.flag[0]) is bulk.flag[1]:
                    already.append(conv.id)
                else:
                    yield conv.id

        try:
            changed = list(todo()) if args.dry_run else bulk.method(m, todo(), user=user)
        finally:
            args.terminal.clear()
        return _cli_bulk_said(bulk, args, changed, already, missing)

    return run


def _cli_matches(m: Messenger, args: Any, command: str) -> Iterator[Conversation]:
    """--all: every conversation of the caller's the filters match, with a progress line;
    delete asks first on a terminal, and needs --yes on none."""
    filters = args.filter + (["read:eq:false"] if args.unread else [])
    options: Dict[str, Any] = {"filter": filters or None, "query": args.query}
    if command == "delete" and not args.dry_run and not args.yes:
        total = m.list_conversations(**options, fields="id", page_size=1).total
        if not _isatty(sys.stdin):
            raise _UsageError(
                f"delete --all would delete {total:,} conversations: give --yes to do it "
                "without a terminal to ask on; nothing was deleted"
            )
        print(f"Delete {total:,} conversations from your inbox? [y/N] ", end="", file=sys.stderr)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise _UsageError("nothing was deleted")
    started, seen, total = time.monotonic(), 0, -1

    def on_page(page: Page) -> None:
        nonlocal seen, total
        seen += len(page.conversations)
        total = page.total if total < 0 else total  # later pages count what is left
        if time.monotonic() - started >= _PROGRESS_AFTER:
            args.terminal.progress(f"{seen:,} of {total:,} conversations…")

    return m.iter_conversations(**options, page_size=args.page_size, on_page=on_page)


def _cli_given(m: Messenger, uids: Sequence[str]) -> Tuple[List[Conversation], List[str]]:
    """The given uids' conversations in the caller's inbox, with their flags (a list
    request per 300: ``id:in:[...]`` stays whole on 2.42+), and the uids not there."""
    found: Dict[str, Conversation] = {}
    unique = list(dict.fromkeys(uids))
    for start in range(0, len(unique), 300):
        part = unique[start : start + 300]
        page = m.list_conversations(
            filter=f"id:in:[{','.join(part)}]", fields="id,read,followUp", page_size=len(part)
        )
        found.update((conv.id, conv) for conv in page.conversations)
    return [found[u] for u in unique if u in found], [u for u in unique if u not in found]


def _cli_bulk_said(
    bulk: _Bulk, args: Any, changed: List[str], already: List[str], missing: List[str]
) -> Any:
    """What a bulk command did (or would do), in words or JSON; uids to delete that are
    not in the inbox are an error once the others are deleted."""
    if args.json:
        said: Any = {"changed": changed, "already": already, "not_in_inbox": missing}
        if args.dry_run:
            said["dry_run"] = True
    else:
        said = (f"would {bulk.would}" if args.dry_run else bulk.did).format(f"{len(changed):,}")
        if already:
            were = "was" if len(already) == 1 else "were"
            said += f"; {len(already):,} {were} {bulk.already} already"
        if missing and bulk.flag:
            said += f"; {len(missing):,} not in your inbox: {' '.join(missing)}"
        if args.dry_run:
            said += "; nothing was changed"
    if missing and not bulk.flag and not args.dry_run:
        _cli_print(said, args.json)
        raise NotFoundError(404, f"not in your inbox, nothing to delete: {' '.join(missing)}")
    return said


_BULK_ARGUMENTS = (
    _arg("uids", nargs="*", metavar="UID", type=_uid_arg),
    _arg("--user", help="act for this user (uid, username or name) instead of yourself"),
    _arg("--all", action="store_true", help="every conversation of yours the filters match"),
    _arg("--filter", action="append", default=[], help="with --all: a DHIS2 filter"),
    _arg("--unread", action="store_true", help="with --all: only unread ones"),
    _arg("--query", help="with --all: search subjects, texts and senders"),
    _arg(
        "--page-size",
        type=_count_arg,
        help=f"with --all: conversations a page (default {WALK_PAGE_SIZE}, the fewest requests)",
    ),
    _arg("--dry-run", action="store_true", help="say how many would change; change nothing"),
)
_cli_mark_read = _command("mark-read", "mark conversations read", *_BULK_ARGUMENTS)(
    _cli_bulk("mark-read")
)
_cli_mark_unread = _command("mark-unread", "mark conversations unread", *_BULK_ARGUMENTS)(
    _cli_bulk("mark-unread")
)
_cli_follow_up = _command("follow-up", "flag conversations for follow-up", *_BULK_ARGUMENTS)(
    _cli_bulk("follow-up")
)
_cli_unfollow_up = _command("unfollow-up", "clear the follow-up flag", *_BULK_ARGUMENTS)(
    _cli_bulk("unfollow-up")
)
_cli_delete = _command(
    "delete",
    "remove conversations from an inbox (others keep them)",
    *_BULK_ARGUMENTS,
    _arg("--yes", action="store_true", help="with --all: delete without asking"),
)(_cli_bulk("delete"))


@_command(
    "status",
    f"set a ticket's status: {', '.join(STATUSES)}",
    _arg("uid", type=_uid_arg),
    _arg("value", type=lambda text: _choice_arg(text, STATUSES), metavar="STATUS"),
)
def _cli_status(m: Messenger, args: Any) -> Any:
    m.set_status(args.uid, args.value)
    if args.json:
        return {"uid": args.uid, "status": args.value}
    return f"status of {args.uid} set to {args.value}"


@_command(
    "priority",
    f"set a priority: {', '.join(PRIORITIES)}",
    _arg("uid", type=_uid_arg),
    _arg("value", type=lambda text: _choice_arg(text, PRIORITIES), metavar="PRIORITY"),
)
def _cli_priority(m: Messenger, args: Any) -> Any:
    m.set_priority(args.uid, args.value)
    if args.json:
        return {"uid": args.uid, "priority": args.value}
    return f"priority of {args.uid} set to {args.value}"


@_command(
    "assign",
    "assign a conversation to a user",
    _arg("uid", type=_uid_arg),
    _arg("user", help="uid, username or name (for a ticket: a feedback recipient)"),
)
def _cli_assign(m: Messenger, args: Any) -> Any:
    m.assign(args.uid, _cli_user(m, args.user, "USER"))
    if args.json:
        return {"uid": args.uid, "assignee": args.user}
    return f"assigned {args.uid} to {args.user}"


@_command("unassign", "remove a conversation's assignee", _arg("uid", type=_uid_arg))
def _cli_unassign(m: Messenger, args: Any) -> Any:
    m.unassign(args.uid)
    return {"uid": args.uid} if args.json else f"unassigned {args.uid}"


@_command(
    "upload", "upload a file for a later send or reply; prints its uid", _arg("file"), creates=True
)
def _cli_upload(m: Messenger, args: Any) -> Any:
    data, name = _cli_file(args.file)
    uid = m.upload_attachment(data, filename=name)
    return {"uid": uid} if args.json else uid


@_command(
    "download",
    "download an attachment under its own name (show lists the command)",
    _arg("conversation", type=_uid_arg),
    _arg("message", type=_uid_arg),
    _arg("attachment", type=_uid_arg),
    _arg(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead (replacing it); without -o, piped or redirected, the "
        "bytes go to standard output",
    ),
)
def _cli_download(m: Messenger, args: Any) -> Any:
    ids = (args.conversation, args.message, args.attachment)
    if not args.output and not args.json and not _isatty(sys.stdout):
        return m.download_attachment(*ids)  # | or >: the bytes themselves
    target, mode = args.output, "wb"
    if not target:  # like curl -OJ: the attachment's own name, never over another file
        target, mode = _cli_own_name(m, *ids), "xb"
        if os.path.lexists(target):
            raise _UsageError(f"{target} exists: give -o FILE to write elsewhere or over it")
    data = m.download_attachment(*ids)
    try:
        with open(target, mode) as handle:
            handle.write(data)
    except FileExistsError:  # appeared meanwhile
        raise _UsageError(f"{target} exists: give -o FILE to write elsewhere or over it") from None
    if args.json:
        return {"file": target, "bytes": len(data)}
    return f"wrote {len(data)} bytes to {target}"


def _cli_own_name(m: Messenger, conversation: str, message: str, attachment: str) -> str:
    """The safe local name of an attachment, from its conversation (one request);
    its uid when the thread does not list it."""
    for item in m.get_conversation(conversation).messages:
        for file in item.attachments if item.id == message else ():
            if file.id == attachment:
                return file.file_name
    return attachment


@_command("unread", "print how many conversations are unread")
def _cli_unread(m: Messenger, args: Any) -> Any:
    count = m.count_unread()
    return {"unread": count} if args.json else str(count)


@_command(
    "find",
    "find users, user groups and organisation units by name",
    _arg("query", help="part of a name (users: also of a username or email)"),
    _arg(
        "--feedback-recipients",
        action="store_true",
        help="only the feedback recipients (who a ticket may be assigned to)",
    ),
    _arg("--limit", type=_count_arg, default=25, help="groups and units to show (default 25)"),
)
def _cli_find(m: Messenger, args: Any) -> Any:
    groups: List[UserGroupRef] = []
    units: List[OrgUnitRef] = []
    if args.feedback_recipients:
        users = m.lookup_feedback_recipients(args.query)
    else:
        # Groups first: they refuse a query with no word to search for before any request.
        groups = m.find_user_groups(args.query, limit=args.limit)
        units = m.find_organisation_units(args.query, limit=args.limit)
        users = m.lookup_users(args.query)
    status = 0 if users or groups or units else 1  # like grep: nothing found is exit 1
    if args.json:
        found = {
            "users": _jsonable(users),
            "user_groups": _jsonable(groups),
            "organisation_units": _jsonable(units),
        }
        return _Outcome(found, status)
    if status:
        kinds = "user" if args.feedback_recipients else "user, user group or organisation unit"
        return _Outcome(f"no {kinds} matches {args.query!r}", status)
    lines = []
    for title, rows in (
        ("users", [(u.id, u.name, u.username) for u in users]),
        ("user groups", [(g.id, g.name, None) for g in groups]),
        ("organisation units", [(o.id, o.name, f"level {o.level}") for o in units]),
    ):
        if rows or title == "users":
            lines.append(f"{title}:" if rows else f"{title}: none")
            lines.extend(
                f"  {uid}  {_text(name)}" + (f"  {_text(extra)}" if extra else "")
                for uid, name, extra in rows
            )
    if len(users) == 25:
        lines.append("(DHIS2 shows at most 25 users: give a longer name to see others)")
    return "\n".join(lines)


@_command(
    "tree",
    "list an organisation unit and every unit below it",
    _arg("org_unit", metavar="ORG_UNIT", help="uid or name"),
)
def _cli_tree(m: Messenger, args: Any) -> Any:
    units = m.organisation_unit_subtree(_cli_org_unit(m, args.org_unit, "ORG_UNIT"))
    if args.json:
        return _jsonable(units)
    top = units[0].level or 1
    return "\n".join(f"{'  ' * ((u.level or top) - top)}{_text(u.name)}  {u.id}" for u in units)


# -- What the commands share ------------------------------------------------------


class _Recipients(NamedTuple):
    """The --user, --group, --org-unit and --org-unit-tree of a command, resolved."""

    users: List[UserRef]
    groups: List[UserGroupRef]
    units: List[OrgUnitRef]  # every unit, each subtree's included
    trees: List[List[OrgUnitRef]]  # each --org-unit-tree: its unit first, then the rest


def _cli_recipients(m: Messenger, args: Any) -> _Recipients:
    """Every --user, --group, --org-unit and --org-unit-tree, before anything is sent."""
    users = [_cli_name(m.resolve_user, text, "--user") for text in args.user]
    groups = [_cli_name(m.resolve_user_group, text, "--group") for text in args.group]
    units = [_cli_name(m.resolve_organisation_unit, text, "--org-unit") for text in args.org_unit]
    trees = []
    for text in args.org_unit_tree:
        top = _cli_name(m.resolve_organisation_unit, text, "--org-unit-tree")
        trees.append(m.organisation_unit_subtree(top))
        units.extend(trees[-1])
    return _Recipients(users, groups, units, trees)


def _cli_asked(recipients: _Recipients) -> str:
    """The recipients as asked, in a few words: "Alice Banda, the group Reporters and
    Bo District and the 5 units below it"."""
    users, groups, units, trees = recipients
    in_trees = {unit.id for tree in trees for unit in tree}
    plain = [unit for unit in units if unit.id not in in_trees]
    parts = [_cli_some(users, "user"), _cli_some(groups, "group")]
    parts += [_cli_some(plain, "organisation unit")]
    for tree in trees:
        below, name = len(tree) - 1, _text(tree[0].name or tree[0].id)
        units_below = f" and the {below} unit{'s' * (below != 1)} below it" if below else ""
        parts.append(name + units_below)
    said = [part for part in parts if part]
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else said[0]


def _cli_some(records: Sequence[Any], kind: str) -> str:
    """One record by name ("the group Reporters"), or several counted ("3 users")."""
    if len(records) == 1:
        name = _text(records[0].name or records[0].id)
        return name if kind == "user" else f"the {kind} {name}"
    return f"{len(records)} {kind}s" if records else ""


def _cli_would_reach(m: Messenger, args: Any, recipients: _Recipients) -> Any:
    """send --dry-run: the users DHIS2 would deliver to, by where they come from.

    Each group's members and each unit's assigned users, as any logged-in user may
    read them (Messenger.expand_recipients); the count is of distinct users, you
    among them if you are one."""
    users, groups, units, trees = recipients
    sources = [(f"named with --user: {len(users)}", users)] if users else []
    for group in groups:
        members = m.expand_recipients(user_groups=[group])
        sources.append((f"in the group {_text(group.name or group.id)}: {len(members)}", members))
    if units:
        assigned = m.expand_recipients(organisation_units=units)
        where = _cli_asked(_Recipients([], [], units, trees))
        sources.append((f"assigned to {where}: {len(assigned)}", assigned))
    people = sorted({u.id: u for _, found in sources for u in found}.values(), key=_cli_by_name)
    if args.json:
        return {"dry_run": True, "reach": _jsonable(people)}
    lines = [f"would reach {len(people)} user{'s' * (len(people) != 1)}; nothing was sent"]
    lines += [f"  {said}" for said, _ in sources]
    names = ""
    for shown, user in enumerate(people):
        more = f", … and {len(people) - shown} more" if shown else ""
        name = ", " * bool(shown) + _text(user.name or user.id)
        if len(names) + len(name) + 20 > (args.terminal.width or 100):
            names += more
            break
        names += name
    return "\n".join(lines + ([f"  {names}"] if names else []))


def _cli_by_name(user: UserRef) -> Tuple[str, str]:
    return ((user.name or "").casefold(), user.id)


def _cli_reached(
    m: Messenger, args: Any, uid: str, files: List[str], recipients: _Recipients
) -> Any:
    """What send prints: the uid; on a terminal, and in JSON, also whom it reached, as
    DHIS2 made the conversation (its participants, the sender left out)."""
    if not args.json and not args.terminal.width:
        return uid  # a pipe or a file: the uid alone, for $(dhis2-messages send ...)
    try:
        conv = m.get_conversation(uid)
        sender = conv.messages[0].sender if conv.messages else None
        reached: Optional[int] = sum(
            1 for p in conv.participants if sender is None or p.user.id != sender.id
        )
    except Dhis2Error:
        reached = None  # sent all the same: say so, and exit 0
    if args.json:
        return {"uid": uid, "attachments": files, "reached": reached, **_cli_sent(args)}
    count = "?" if reached is None else str(reached)
    return f"sent {uid} to {_cli_asked(recipients)}: {count} user{'s' * (reached != 1)} reached"


def _cli_user(m: Messenger, text: str, flag: str) -> str:
    return str(_cli_name(m.resolve_user, text, flag).id)


def _cli_org_unit(m: Messenger, text: str, flag: str) -> str:
    return str(_cli_name(m.resolve_organisation_unit, text, flag).id)


def _cli_name(resolve: Callable[[str], Any], text: str, flag: str) -> Any:
    """The one record *text* names; none or several is a usage error listing the candidates."""
    try:
        return resolve(text)
    except NameMatchError as exc:
        if not exc.candidates:
            raise _UsageError(f"{flag} {text!r}: no {exc.kind} matches") from None
        lines = [f"  {c.id}  {_text(c.name)}{_cli_extra(c)}" for c in exc.candidates]
        if exc.more:
            lines.append("  ... and more: give a longer name")
        count = f"{len(exc.candidates)}{'+' if exc.more else ''}"
        raise _UsageError(
            f"{flag} {text!r} matches {count} {exc.kind}s; give one of these uids:\n"
            + "\n".join(lines)
        ) from None


def _cli_extra(record: Any) -> str:
    """What tells a candidate apart from one of the same name: a username, a level."""
    if isinstance(record, UserRef) and record.username:
        return f" ({_text(record.username)})"
    if isinstance(record, OrgUnitRef) and record.level is not None:
        return f" (level {record.level})"
    return ""


def _cli_upload_all(m: Messenger, paths: Sequence[str]) -> List[str]:
    """Upload every --attach file; all are read first, so a bad one uploads nothing."""
    contents = [_cli_file(path) for path in paths]
    return [m.upload_attachment(data, filename=name) for data, name in contents]


def _cli_file(path: str) -> Tuple[bytes, str]:
    """A file's bytes and name; a missing or empty file is a usage error that names it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise _UsageError(f"{path}: the file is empty; DHIS2 refuses empty attachments")
    return data, os.path.basename(path)


def _cli_text(value: str) -> str:
    """A TEXT argument; ``-`` reads standard input, without its one final newline
    (what ``echo`` and the Enter before Ctrl-D add)."""
    if value != "-":
        return value
    if _isatty(sys.stdin):
        print("Type the text, then Ctrl-D on a line of its own:", file=sys.stderr, flush=True)
    text = sys.stdin.read()
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _cli_words(text: str, name: str) -> str:
    """A subject or text, refused before anything is uploaded when it is empty."""
    if not text.strip():
        raise _UsageError(f"{name} is empty")
    return text


# -- Running a command ----------------------------------------------------------------


def _cli_parser() -> Any:
    argparse = _argparse()
    parser = argparse.ArgumentParser(
        prog="dhis2-messages",
        description="Send, read and triage DHIS2 messages.",
        epilog="Without --url/--token/--username the DHIS2_URL, DHIS2_TOKEN (or DHIS2_PAT), "
        "DHIS2_USERNAME and DHIS2_PASSWORD environment variables are used; REQUESTS_CA_BUNDLE "
        "names a CA bundle, like --ca-bundle. A TEXT of - is read from standard input.",
    )
    for flags, options in _GLOBAL_OPTIONS:
        parser.add_argument(*flags, **options)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # No command at all is answered with a short help (main), not argparse's error.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.set_defaults(run=command.run, creates=command.creates, usage=p.format_usage)
        # --json is accepted after the subcommand too; SUPPRESS keeps a global --json.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        for flags, options in command.arguments:
            p.add_argument(*flags, **options)
    return parser


_GLOBAL_OPTIONS = (
    _arg("--url", help="the DHIS2 server, e.g. https://dhis2.example.org"),
    _arg("--token", help="a personal access token (d2p_...)"),
    _arg(
        "--username", help="log in as this user; the password comes from DHIS2_PASSWORD or a prompt"
    ),
    _arg(
        "--timeout",
        type=_seconds_arg,
        metavar="S",
        help="seconds to wait for each answer, or for DHIS2 to take each piece of an "
        "upload (default 30)",
    ),
    _arg(
        "--connect-timeout",
        type=_seconds_arg,
        metavar="S",
        help="seconds to connect, TLS handshake included (default 3.05)",
    ),
    _arg(
        "--retries",
        type=_retries_arg,
        metavar="N",
        help="retry a failed read up to N times (default 3; 0: never)",
    ),
    _arg(
        "--deadline",
        type=_seconds_arg,
        metavar="S",
        help="the most one command may take, retries and waits included (default 300)",
    ),
    _arg(
        "--ca-bundle",
        metavar="FILE",
        help="trust the certificate authorities in FILE (a PEM bundle), for a private CA",
    ),
    _arg(
        "--insecure", action="store_true", help="do not check DHIS2's TLS certificate (a lab only)"
    ),
    _arg("--json", action="store_true", help="print machine-readable JSON"),
    _arg(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (default: on a terminal, unless NO_COLOR is set), "
        "always, never",
    ),
    _arg("-q", "--quiet", action="store_true", help="no progress line and no retry notes"),
)


def _cli_argv(argv: Sequence[str]) -> List[str]:
    """A bare ``--once`` takes no DURATION: argparse would take the next argument (the
    subject) as one, so it becomes ``--once=`` (before a ``--``)."""
    out, operands = [], False
    for arg in argv:
        operands = operands or arg == "--"
        out.append("--once=" if arg == "--once" and not operands else arg)
    return out


def _cli_messenger(args: Any) -> Messenger:
    """The Messenger the flags and the environment describe; the password may come from a prompt.

    The flags win over the environment, and a token over a username, as in
    Messenger.from_env; the command line adds the prompt and says what is missing
    in its own words.
    """
    if args.token and args.username:
        raise _UsageError("give --token or --username, not both")
    if args.ca_bundle and args.insecure:
        raise _UsageError("give --ca-bundle or --insecure, not both")
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        raise _UsageError(f"--ca-bundle {args.ca_bundle}: no such file")
    env = os.environ
    url = args.url or env.get("DHIS2_URL")
    if not url:
        raise _UsageError(
            "no DHIS2 server: give --url or set DHIS2_URL (e.g. https://dhis2.example.org)"
        )
    token = args.token or (
        None if args.username else env.get("DHIS2_TOKEN") or env.get("DHIS2_PAT")
    )
    username = args.username or (None if token else env.get("DHIS2_USERNAME"))
    if not token and not username:
        raise _UsageError(
            "no DHIS2 credentials: give --token or --username, or set DHIS2_TOKEN (or DHIS2_PAT), "
            "or DHIS2_USERNAME and DHIS2_PASSWORD"
        )
    options: Dict[str, Any] = {"token": token} if token else {}
    if username:
        options["auth"] = (username, env.get("DHIS2_PASSWORD") or _cli_password(username))
    if args.timeout is not None or args.connect_timeout is not None:
        connect, read = DEFAULT_TIMEOUT
        options["timeout"] = (args.connect_timeout or connect, args.timeout or read)
    if args.retries is not None:
        options["retries"] = args.retries
    if args.deadline is not None:
        options["deadline"] = args.deadline
    if args.insecure or args.ca_bundle:
        options["verify"] = False if args.insecure else args.ca_bundle
    if args.insecure and not args.quiet:
        print("dhis2-messages: --insecure: DHIS2's certificate is not checked", file=sys.stderr)
    if not re.match(r"https?://[^/?#]", url.strip()):
        raise _UsageError(
            "the DHIS2 URL must be an http(s) address such as https://dhis2.example.org: "
            "give --url or set DHIS2_URL"
        )
    return Messenger(url, **options)


def _cli_password(username: str) -> str:
    import getpass

    if not _isatty(sys.stdin):
        raise _UsageError(
            f"the password for {username} comes from DHIS2_PASSWORD or a prompt, "
            "and there is no terminal to ask on: set DHIS2_PASSWORD"
        )
    try:
        return getpass.getpass(f"DHIS2 password for {username}: ")
    except EOFError:
        raise _UsageError("no password given") from None


# -- Failures, in the command line's words ------------------------------------------


def _cli_error(exc: Dhis2Error, args: Any, m: Optional[Messenger]) -> str:
    """A DHIS2 or network failure in a few lines, with the advice that fits the command."""
    host = urlsplit(m.base_url).netloc if m else "DHIS2"
    if isinstance(exc, TransportError):
        text = _cli_transport_error(exc, host)
        if exc.detail and m:
            text = _cli_transport_detail(exc, m.base_url)
    elif isinstance(exc, ApiError):
        text = _cli_api_error(exc, args.command, args.creates)
        if isinstance(exc, NotFoundError) and isinstance(exc.body, str) and m:
            # An error page, not DHIS2's JSON: no DHIS2 API at that address.
            text = (
                f"no DHIS2 API at {m.base_url} (HTTP {exc.status_code}: {_text(exc.message)}).\n"
                "Check --url: DHIS2's address, with its context path if it has one "
                "(https://host/dhis, say)."
            )
        if isinstance(exc, ConflictError) and exc.no_recipients:
            text += "\n" + _cli_nobody(args)
    elif isinstance(exc, ResponseError):
        text = _cli_response_error(exc)
    else:
        text = str(exc)
    if exc.maybe_done:
        text += _cli_lost(exc, args.command)
    if isinstance(exc, PermissionDenied) and exc.not_in_inbox:
        text += f"\nNot in your inbox: {' '.join(exc.not_in_inbox)}"
    if exc.done:
        text += f"\n{len(exc.done):,} were changed before it failed; the rest were not sent."
    if exc.no_time_to_retry:
        deadline = m.deadline if m else 0.0
        text += (
            f"\nNo retry was made: the next would have passed the deadline of {deadline:g} s "
            "(--deadline)."
        )
    return text


def _cli_lost(exc: Dhis2Error, command: str) -> str:
    """What a lost answer means for the command, from the error's fields."""
    path = exc.path or ""
    if path.startswith("/fileResources"):
        return "\nDHIS2 may have stored the file, unused; uploading it again makes a new one."
    if path.endswith("/recipients"):
        return "\nDHIS2 may have added them; running it again is harmless."
    again = "check (dhis2-messages list) before running it again"
    if command in ("send", "feedback"):
        again += ", or run it again with --once"
    if exc.looked:
        looks = f"{exc.looked} look-up{'s' if exc.looked > 1 else ''}"
        return (
            f"\nThe {command} was not found on DHIS2 when looked for ({looks}), "
            f"but it may still arrive: {again}."
        )
    return f"\nThe {command} may still have reached DHIS2: {again}."


def _cli_transport_error(exc: TransportError, host: str) -> str:
    s = exc.seconds or 0.0
    if exc.kind == "deadline":
        return (
            f"{host} did not finish within the deadline of {s:g} s: DHIS2 answered too "
            f"slowly or not at all; try again later or give --deadline {s * 2:g}."
        )
    if exc.kind == "tls":
        return (
            f"TLS failed for {host}: {exc.reason}.\n"
            "For a private certificate authority give --ca-bundle FILE (or set REQUESTS_CA_BUNDLE)."
        )
    if exc.kind == "connect_timeout":
        return (
            f"could not connect to {host} within {s:g} s: check --url, the network, VPN or proxy."
        )
    if exc.kind == "read_timeout":
        return (
            f"{host} did not answer within {s:g} s: DHIS2 may be busy; try again later "
            f"or give --timeout {s * 2:g}."
        )
    if exc.kind == "connect":
        return f"could not connect to {host}: {exc.reason}. Check --url and that DHIS2 is running."
    return f"the connection to {host} broke: {exc.reason}."


def _cli_transport_detail(exc: TransportError, base_url: str) -> str:
    """The commonest mistakes, which ``TransportError.detail`` names, with the fix."""
    parts = urlsplit(base_url)
    if exc.detail == "plain_http":
        return (
            f"{parts.netloc} answered in plain http, not https.\n"
            f"Give --url http://{parts.netloc}{parts.path} (or the address of its https port)."
        )
    return f"no such host: {parts.hostname} (DNS knows no such name).\nCheck --url."


def _cli_nobody(args: Any) -> str:
    """What to do when DHIS2 refused a message that would reach nobody."""
    if getattr(args, "org_unit", None):
        return (
            "--org-unit reaches only the users assigned to that very unit, and it has none.\n"
            "Give --org-unit-tree to reach everyone in and below it (--dry-run counts them)."
        )
    return "The users and groups given hold nobody (send --dry-run counts them)."


def _cli_api_error(exc: ApiError, command: str, creating: bool) -> str:
    status, message = exc.status_code, exc.message
    if 300 <= status < 400:
        return (
            f"DHIS2 answered with a redirect (HTTP {status}) to {_text(str(exc.body))[:200]}: "
            "give the final address as --url."
        )
    if status >= 500 and creating:  # never just "try again": it may have been done
        done = "" if exc.maybe_done else "; most likely nothing was done, but check first"
        return f"DHIS2 failed (HTTP {status}): {message}{done}"
    if status >= 500:
        return f"DHIS2 failed (HTTP {status}): {message}; try again later"
    if isinstance(exc, NotFoundError):
        return f"not found: {message}"
    if isinstance(exc, AuthenticationError):
        return (
            f"DHIS2 refused the credentials (HTTP {status}): {message}\n"
            "Check --token, or --username and its password (DHIS2_TOKEN, DHIS2_PASSWORD)."
        )
    if isinstance(exc, PermissionDenied):
        return f"permission denied (HTTP {status}): {message}"
    code = f" {exc.error_code}" if exc.error_code else ""
    text = f"DHIS2 refused the {command} (HTTP {status}{code}): {message}"
    if isinstance(exc, ConflictError) and exc.no_recipients:
        return text  # the command line's own advice follows (_cli_nobody)
    return f"{text}\n{exc.hint[0].upper()}{exc.hint[1:]}." if exc.hint else text


def _cli_response_error(exc: ResponseError) -> str:
    advice = {
        "not_json": " Check that --url points at DHIS2 itself, not at a proxy or login page.",
        "too_large": " Ask for less (a smaller --page-size).",
        "no_location": " It was probably created: check (dhis2-messages list) before running "
        "it again.",
    }
    return f"DHIS2's answer was unusable: {exc.text}" + advice.get(exc.kind, "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``dhis2-messages`` command; returns the exit status."""
    parser = _cli_parser()
    try:
        args = parser.parse_args(_cli_argv(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version, or a usage error argparse has reported
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command is None:
        print(_cli_short_help(), file=sys.stderr)
        return 2
    args.terminal = terminal = _Terminal(args.color, args.quiet)
    messenger = None
    try:
        with _cli_notes(terminal), warnings.catch_warnings():
            # --insecure says so once (in _cli_messenger), not on every request.
            warnings.simplefilter("ignore", InsecureRequestWarning)
            with _cli_messenger(args) as messenger:
                result = args.run(messenger, args)
    except _UsageError as exc:
        print(args.usage(), end="", file=sys.stderr)
        print(f"dhis2-messages: error: {_cli_unsent(str(exc), args.creates)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except KeyboardInterrupt:
        terminal.clear()
        print("dhis2-messages: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        # Bad input caught before any request (a malformed uid, a missing file, ...).
        print(f"dhis2-messages: error: {exc}", file=sys.stderr)
        return 2
    except Dhis2Error as exc:
        print(f"dhis2-messages: {_cli_error(exc, args, messenger)}", file=sys.stderr)
        return 1
    status = 0
    if isinstance(result, _Outcome):
        result, status = result
    _cli_print(result, args.json)
    return status


def _cli_short_help() -> str:
    """What a bare ``dhis2-messages`` prints: the commands, and where to read more."""
    width = max(len(command.name) for command in _COMMANDS) + 2
    lines = [
        "usage: dhis2-messages [--url URL] [--token TOKEN | --username NAME] COMMAND ...",
        "",
        "Send, read and triage DHIS2 messages. Commands:",
    ]
    lines += [f"  {c.name.ljust(width)}{c.help}" for c in _COMMANDS]
    lines += [
        "",
        "The server and credentials come from --url and --token (or DHIS2_URL and DHIS2_TOKEN).",
        "dhis2-messages --help lists every option; dhis2-messages COMMAND --help, a command's.",
    ]
    return "\n".join(lines)


def _cli_unsent(text: str, creates: bool) -> str:
    """A usage error of a command that sends or uploads: it says that nothing was,
    on its first line (before the list of candidates, if there is one)."""
    if not creates:
        return text
    first, newline, rest = text.partition("\n")
    if first.endswith(":"):
        return f"{first[:-1]} (nothing was sent):{newline}{rest}"
    return f"{first}; nothing was sent{newline}{rest}"


@contextlib.contextmanager
def _cli_notes(terminal: _Terminal) -> Iterator[None]:
    """While the command runs, the library's INFO records (its retries) go to the terminal."""
    if not terminal.chatty:
        yield
        return
    notes, level = _RetryNotes(terminal), log.level
    log.addHandler(notes)
    log.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        log.removeHandler(notes)
        log.setLevel(level)


def _cli_print(result: Any, as_json: bool) -> None:
    try:
        if isinstance(result, bytes):
            sys.stdout.buffer.write(result)
        elif as_json and result is not None:
            print(json.dumps(result, ensure_ascii=False, indent=2))
        elif result:
            print(result)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    """The reader stopped early (``| head``): the command has done its work.
    Point stdout at devnull so the interpreter's last flush stays quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - a stdout without a file descriptor
        pass


if __name__ == "__main__":
    raise SystemExit(main())

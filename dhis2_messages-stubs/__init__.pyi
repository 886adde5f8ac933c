# The public interface of dhis2_messages.py, written by tools/stubs.py from the
# module's annotations: do not edit, run `python tools/stubs.py` after changing the module.

import datetime as _dt
import logging
import os
from typing import (
    IO,
    Any,
    Callable,
    ClassVar,
    Generic,
    Iterable,
    Iterator,
    Literal,
    Sequence,
    TypedDict,
    TypeVar,
    overload,
)

import attrs
import requests
from requests.auth import AuthBase
from typing_extensions import Self, TypeAlias

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
__version__: str
log: logging.Logger
DEFAULT_TIMEOUT: tuple[float, float]
_Status: TypeAlias = Literal["NONE", "OPEN", "PENDING", "INVALID", "SOLVED"]
_StatusArg: TypeAlias = _Status | Literal["none", "open", "pending", "invalid", "solved"]
_Priority: TypeAlias = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
_PriorityArg: TypeAlias = _Priority | Literal["none", "low", "medium", "high"]
_MessageType: TypeAlias = Literal[
    "PRIVATE", "SYSTEM", "VALIDATION_RESULT", "TICKET", "SYSTEM_VERSION_UPDATE"
]
STATUSES: tuple[_Status, ...]
PRIORITIES: tuple[_Priority, ...]
MESSAGE_TYPES: tuple[_MessageType, ...]
BOUNDARIES: tuple[str, ...]
WALK_PAGE_SIZE: int
LIST_FIELDS: str
THREAD_FIELDS: str

class Dhis2Error(Exception):
    method: str | None = ...
    path: str | None = ...
    hint: str = ...
    no_time_to_retry: bool = ...
    maybe_done: bool = ...
    looked: int = ...
    done: list[str] | None = ...

class TransportError(Dhis2Error):
    KINDS: ClassVar[tuple[str, ...]] = ...
    DETAILS: ClassVar[tuple[str, ...]] = ...
    kind: str
    method: str | None
    url: str | None
    reason: str
    seconds: float | None
    sent: bool
    path: str | None
    hint: str
    detail: str

    def __init__(
        self,
        kind: str,
        method: str | None = None,
        url: str | None = None,
        reason: str = "",
        seconds: float | None = None,
        sent: bool = True,
        path: str | None = None,
        hint: str = "",
        detail: str = "",
    ) -> None: ...

class ResponseError(Dhis2Error):
    text: str
    kind: str
    method: str | None
    path: str | None
    status_code: int | None
    hint: str

    def __init__(
        self,
        text: str,
        kind: str = "invalid",
        method: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
        hint: str = "",
    ) -> None: ...

class ApiError(Dhis2Error):
    status_code: int
    message: str
    error_code: str | None
    body: Any

    def __init__(
        self, status_code: int, message: str, error_code: str | None = None, body: Any = None
    ) -> None: ...

class AuthenticationError(ApiError): ...

class PermissionDenied(ApiError):
    not_in_inbox: tuple[str, ...] = ...

class NotFoundError(ApiError): ...

class ConflictError(ApiError):
    no_recipients: bool = ...

class NameMatchError(Dhis2Error):
    name: str
    kind: str
    candidates: tuple[Any, ...]
    more: bool

    def __init__(
        self, name: str, kind: str, candidates: Sequence[Any] = (), more: bool = False
    ) -> None: ...

_T = TypeVar("_T")

@attrs.frozen(kw_only=True, slots=False)
class UserRef:
    id: str
    name: str | None = ...
    username: str | None = ...

    @classmethod
    def from_json(cls, data: Any) -> UserRef: ...

@attrs.frozen(kw_only=True, slots=False)
class Attachment:
    id: str
    name: str | None = ...
    content_type: str | None = ...
    content_length: int | None = ...

    @classmethod
    def from_json(cls, data: Any) -> Attachment: ...
    @property
    def file_name(self) -> str: ...

@attrs.frozen(kw_only=True, slots=False)
class Message:
    id: str
    text: str | None = ...
    sender: UserRef | None = ...
    created: _dt.datetime | None = ...
    internal: bool | None = ...
    attachments: tuple[Attachment, ...] = ...

    @classmethod
    def from_json(cls, data: Any) -> Message: ...

@attrs.frozen(kw_only=True, slots=False)
class Participant:
    user: UserRef
    read: bool | None = ...
    follow_up: bool | None = ...

    @classmethod
    def from_json(cls, data: Any) -> Participant: ...

class ConversationRow(TypedDict):
    id: str
    subject: str | None
    message_type: str | None
    status: str | None
    priority: str | None
    read: bool | None
    follow_up: bool | None
    message_count: int | None
    last_message: _dt.datetime | None
    last_updated: _dt.datetime | None
    created: _dt.datetime | None
    last_sender_id: str | None
    last_sender_name: str | None
    last_sender_username: str | None
    assignee_id: str | None
    assignee_name: str | None
    assignee_username: str | None

@attrs.frozen(kw_only=True, slots=False)
class Conversation:
    id: str
    subject: str | None = ...
    message_type: str | None = ...
    status: str | None = ...
    priority: str | None = ...
    read: bool | None = ...
    follow_up: bool | None = ...
    message_count: int | None = ...
    last_message: _dt.datetime | None = ...
    last_updated: _dt.datetime | None = ...
    created: _dt.datetime | None = ...
    last_sender: UserRef | None = ...
    assignee: UserRef | None = ...
    messages: tuple[Message, ...] = ...
    participants: tuple[Participant, ...] = ...
    ROW_KEYS: ClassVar[tuple[str, ...]] = ...

    @classmethod
    def from_json(cls, data: Any) -> Conversation: ...
    def row(self) -> ConversationRow: ...

@attrs.frozen(kw_only=True, slots=False)
class Page:
    conversations: tuple[Conversation, ...] = ...
    page: int = ...
    page_count: int = ...
    total: int = ...
    page_size: int = ...

    @classmethod
    def from_json(cls, data: Any) -> Page: ...
    def __iter__(self) -> Iterator[Conversation]: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int) -> Conversation: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Conversation, ...]: ...
    def rows(self) -> list[ConversationRow]: ...

@attrs.frozen(kw_only=True, slots=False)
class UserGroupRef:
    id: str
    name: str | None = ...

    @classmethod
    def from_json(cls, data: Any) -> UserGroupRef: ...

@attrs.frozen(kw_only=True, slots=False)
class OrgUnitRef:
    id: str
    name: str | None = ...
    level: int | None = ...
    path: str | None = ...

    @classmethod
    def from_json(cls, data: Any) -> OrgUnitRef: ...

_DateField: TypeAlias = Literal["lastMessage", "lastUpdated", "created"]
_When: TypeAlias = _dt.datetime | _dt.date | _dt.timedelta

def since(when: _When, *, field: _DateField = "lastMessage") -> str: ...
def before(when: _When, *, field: _DateField = "lastMessage") -> str: ...

_UidArg: TypeAlias = str | Iterable[str]
_ConversationsArg: TypeAlias = str | Conversation | Page | Iterable[str | Conversation | Page]
_UserArg: TypeAlias = str | UserRef
_UsersArg: TypeAlias = str | UserRef | Iterable[str | UserRef]
_GroupsArg: TypeAlias = str | UserGroupRef | Iterable[str | UserGroupRef]
_OrgUnitsArg: TypeAlias = str | OrgUnitRef | Iterable[str | OrgUnitRef]
_File: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
_Once: TypeAlias = bool | _dt.datetime | _dt.timedelta

class _Setting(Generic[_T]):
    def __init__(self, check: Callable[[Any, str], _T], default: _T | None = None) -> None: ...
    def __set_name__(self, owner: type, name: str) -> None: ...
    @overload
    def __get__(self, obj: None, owner: Any) -> _Setting[_T]: ...
    @overload
    def __get__(self, obj: object, owner: Any) -> _T: ...
    def __set__(self, obj: object, value: Any) -> None: ...

class Messenger:
    timeout: _Setting[tuple[float, float]] = ...
    retries: _Setting[int] = ...
    backoff: _Setting[float] = ...
    max_retry_wait: _Setting[float] = ...
    deadline: _Setting[float] = ...
    max_response_size: _Setting[int] = ...

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | AuthBase | None = None,
        token: str | None = None,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = ...,
        retries: int = 3,
        verify: bool | str = True,
        deadline: float = 300.0,
        max_response_size: int = ...,
    ) -> None: ...
    @property
    def base_url(self) -> str: ...
    @classmethod
    def from_env(cls, **overrides: Any) -> Messenger: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def close(self) -> None: ...
    def list_conversations(
        self,
        *,
        filter: str | Iterable[str] | None = None,
        query: str | None = None,
        query_operator: str | None = None,
        order: str | Iterable[str] | None = "lastMessage:desc",
        fields: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Page: ...
    def iter_conversations(
        self,
        *,
        filter: str | Iterable[str] | None = None,
        query: str | None = None,
        query_operator: str | None = None,
        order: str | Iterable[str] | None = "lastMessage:desc",
        fields: str | None = None,
        page_size: int | None = None,
        on_page: Callable[[Page], None] | None = None,
    ) -> Iterator[Conversation]: ...
    def count_unread(self) -> int: ...
    def get_conversation(self, uid: str, *, mark_read: bool = False) -> Conversation: ...
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
    ) -> str: ...
    def reply(
        self, uid: str, text: str, *, internal: bool = False, attachments: _UidArg = ()
    ) -> None: ...
    def send_feedback(self, *, subject: str, text: str, once: _Once = False) -> str: ...
    def find_sent(
        self,
        *,
        subject: str,
        text: str,
        since: _dt.datetime | _dt.timedelta | None = None,
        feedback: bool = False,
    ) -> Conversation | None: ...
    def add_recipients(
        self,
        uid: str,
        *,
        users: _UsersArg = (),
        user_groups: _GroupsArg = (),
        organisation_units: _OrgUnitsArg = (),
    ) -> None: ...
    def mark_read(self, uids: _ConversationsArg, *, user: _UserArg | None = None) -> list[str]: ...
    def mark_unread(
        self, uids: _ConversationsArg, *, user: _UserArg | None = None
    ) -> list[str]: ...
    def follow_up(self, uids: _ConversationsArg, *, user: _UserArg | None = None) -> list[str]: ...
    def unfollow_up(
        self, uids: _ConversationsArg, *, user: _UserArg | None = None
    ) -> list[str]: ...
    def delete_conversations(
        self, uids: _ConversationsArg, *, user: _UserArg | None = None
    ) -> list[str]: ...
    def delete_conversation(self, uid: str, *, user: _UserArg | None = None) -> None: ...
    def set_status(self, uid: str, status: _StatusArg) -> None: ...
    def set_priority(self, uid: str, priority: _PriorityArg) -> None: ...
    def assign(self, uid: str, user: _UserArg) -> None: ...
    def unassign(self, uid: str) -> None: ...
    def lookup_users(self, query: str, *, boundary: str | None = None) -> list[UserRef]: ...
    def lookup_feedback_recipients(self, query: str) -> list[UserRef]: ...
    def find_user_groups(self, query: str, *, limit: int = 25) -> list[UserGroupRef]: ...
    def find_organisation_units(self, query: str, *, limit: int = 25) -> list[OrgUnitRef]: ...
    def organisation_unit_subtree(self, uid: str | OrgUnitRef) -> list[OrgUnitRef]: ...
    def expand_recipients(
        self,
        *,
        users: _UsersArg = (),
        user_groups: _GroupsArg = (),
        organisation_units: _OrgUnitsArg = (),
    ) -> list[UserRef]: ...
    def resolve_user(self, name: str | UserRef) -> UserRef: ...
    def resolve_user_group(self, name: str | UserGroupRef) -> UserGroupRef: ...
    def resolve_organisation_unit(self, name: str | OrgUnitRef) -> OrgUnitRef: ...
    def upload_attachment(
        self, file: _File, *, filename: str | None = None, content_type: str | None = None
    ) -> str: ...
    def download_attachment(self, conversation: str, message: str, attachment: str) -> bytes: ...

def main(argv: Sequence[str] | None = None) -> int: ...

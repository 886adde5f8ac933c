"""A stateful emulator of DHIS2's messaging Web API, for tests and demos.

It serves ``/api/messageConversations`` (list, read, create, reply, feedback,
recipients, read/unread, follow-up, status, priority, assign, soft and hard
delete, attachment download) and ``/api/fileResources`` (upload) over real
HTTP on 127.0.0.1, with the wire behaviour of DHIS2 2.41.3+/2.42 as it is found
in DHIS2's MessageConversationController and friends: the three error styles
(WebMessage envelopes, bare ``{"message": ...}`` objects and Tomcat HTML
pages), the 200 answer for an unknown conversation, ids only in ``Location``,
reply bodies stored verbatim, the 302 to ``/login/`` without credentials, the
``query=`` quirk that lifts the inbox restriction, and so on.

``Emulator(version="2.40")`` (``--version 2.40`` standalone) answers as that release
does instead; ``VERSIONS`` lists the releases, ``DEFAULT_VERSION`` (2.42) is the default.
What differs between releases is the table ``QUIRKS``: each named difference with its
first release, its dhis2-core source and what it changes.  ``PROFILES`` holds the quirks
of each release, and the handlers read the emulator's own (``emulator.quirks``).

In tests::

    from tests.emulator import Emulator

    with Emulator() as emu:
        uid = emu.add_conversation(sender="admin", recipients=["alice"], subject="Hi")
        requests.get(emu.url + "/api/messageConversations", auth=("alice", "District1#"))
        emu.inject(path=r"/messageConversations$", status=503, headers={"Retry-After": "1"})

As a demo server (prints the users, passwords and tokens, serves until Ctrl-C)::

    python -m tests.emulator --port 8080 --demo

Dates are rendered like DHIS2 (``2024-05-02T10:11:12.345``, no zone), in the server's
zone: UTC, or ``utc_offset`` seconds ahead of it; ``clock_offset`` puts the server's clock
(its dates and its ``Date`` header) ahead of this machine's, or behind.  Only the
standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as _dt
import email.utils
import functools
import hashlib
import html
import http
import http.server
import ipaddress
import json
import math
import random
import re
import socket
import string
import sys
import threading
import time
import traceback
import unicodedata
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

__all__ = [
    "DEFAULT_VERSION",
    "PROFILES",
    "QUIRKS",
    "VERSIONS",
    "Emulator",
    "LoggedRequest",
    "Profile",
    "Quirk",
    "SeedUser",
    "free_port",
    "parse_version",
]

# The releases the emulator can be: one per behaviour change on the messaging wire.  "2.41.0"
# stands for 2.41.0-2.41.2, "2.41.3" for 2.41.3 and later 2.41 patches, "2.44" for master.
VERSIONS = ("2.38", "2.39", "2.40", "2.41.0", "2.41.3", "2.42", "2.43", "2.44")
DEFAULT_VERSION = "2.42"

# SYSTEM_VERSION_UPDATE is in the enum but DHIS2 never assigns it: update notices are SYSTEM.
MESSAGE_TYPES = ("PRIVATE", "SYSTEM", "VALIDATION_RESULT", "TICKET", "SYSTEM_VERSION_UPDATE")
STATUSES = ("NONE", "OPEN", "PENDING", "INVALID", "SOLVED")
PRIORITIES = ("NONE", "LOW", "MEDIUM", "HIGH")
DOMAINS = (
    "DATA_VALUE",
    "DOCUMENT",
    "MESSAGE_ATTACHMENT",
    "USER_AVATAR",
    "ORG_UNIT",
    "ICON",
    "JOB_DATA",
)
MAX_UPLOAD_SIZE = 10_000_000  # dhis.conf max.file_upload_size, its default (upload_size_limit)
# Tomcat's maxHttpHeaderSize on every release (Tomcat 9 in the 2.38-2.41 images, the embedded
# Tomcat 11 of 2.42+ sets no other): the request line and every header line, up to and with
# the blank line, in at most 8,192 bytes (Http11InputBuffer.parseHeaders/fill on 9.0.x and
# 11.0.x); past it a 400 "Request header is too large" page, and the connection is closed.
MAX_HEAD_SIZE = 8192
MAX_PARAMETERS = 1000  # Tomcat 11's maxParameterCount (parameter_limit)
API_VERSIONS = range(28, 44)
UID_CHARS = string.ascii_letters + string.digits
# DHIS2's ApiTokenResolver: the prefix is matched case-insensitively, so is the token.
API_TOKEN_RE = re.compile(r"^apitoken (?P<token>[a-z0-9\-._~+/]+=*)$", re.IGNORECASE)
JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=utf-8"
NO_CACHE = ("Cache-Control", "no-cache, private")
JACKSON_SOURCE = "[Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled)"
FILTER_OPERATORS = frozenset(
    (
        "eq",
        "ieq",
        "!eq",
        "neq",
        "ne",
        "gt",
        "lt",
        "gte",
        "ge",
        "lte",
        "le",
        "like",
        "!like",
        "$like",
        "!$like",
        "like$",
        "!like$",
        "ilike",
        "!ilike",
        "startsWith",
        "$ilike",
        "!$ilike",
        "endsWith",
        "ilike$",
        "!ilike$",
        "token",
        "!token",
        "in",
        "!in",
        "null",
        "!null",
        "empty",
        "!empty",
    )
)
ORDERABLE = {
    "read",
    "followUp",
    "id",
    "subject",
    "messageType",
    "status",
    "priority",
    "messageCount",
    "lastMessage",
    "lastUpdated",
    "created",
}


VERSION_RE = re.compile(r"^2\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(-SNAPSHOT)?$")


def parse_version(text: str) -> tuple[int, int, int]:
    """ "2.41.3" -> (2, 41, 3); "2.41" is 2.41.0; "master" and "2.44-SNAPSHOT" are 2.44."""
    if text == "master":
        return (2, 44, 0)
    match = VERSION_RE.match(text)
    if match is None or not 38 <= int(match.group(1)) <= 44:
        raise ValueError(f"unsupported DHIS2 version {text!r}: use 2.38 to 2.44 (or master)")
    return (2, int(match.group(1)), int(match.group(2) or 0))


def version_name(release: tuple[int, int, int]) -> str:
    """What /api/system/info reports: "2.41.3", "2.42.0"; master is "2.44-SNAPSHOT"."""
    if release >= (2, 44, 0):
        return "2.44-SNAPSHOT"
    return ".".join(map(str, release))


# ---------------------------------------------------------------------------
# Release differences: the quirk table and one profile per release
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Quirk:
    """One difference on the wire between DHIS2 releases, present from ``since`` on."""

    name: str
    since: str  # the first release of VERSIONS that has it
    source: str  # where in dhis2-core it comes from (file:line@branch, or the commit)
    change: str  # what it changes, in one line


# Every release difference the emulator knows, oldest first.  Handlers read them from the
# emulator's profile (``self.quirks.feedback_location``) and never compare versions; the
# README's compatibility table and tests/test_versions.py are checked against this table.
QUIRKS: tuple[Quirk, ...] = (
    Quirk(
        "unknown_uid_200",
        "2.39",
        "c7cd9b45094; MessageConversationController.java:155-161@2.38",
        "GET /{uid} of an unknown conversation is HTTP 200 with the bare message "
        "(2.38: a real 404)",
    ),
    Quirk(
        "lookup_boundary",
        "2.39",
        "33ef6102293 (#11623); UserLookupController.java:81-86@2.39",
        "userLookup reads orgUnitBoundary (2.38 ignores it)",
    ),
    Quirk(
        "upload_size_limit",
        "2.39",
        "eae98479b77 (#18113), in 2.39.8 (19912bb4ea8), 2.40.6 (c60cc5aa957), 2.41.2 "
        "(8f0dbb89c1f), 2.42.0; FileResourceUtils.java:292-297@2.41",
        "an upload over max.file_upload_size (10,000,000 bytes) is a 409 \"File size can't be "
        'bigger than ..."; the 2.39, 2.40 and 2.41.0 profiles stand for their later patches '
        "(2.39.8+, 2.40.6+, 2.41.2), which have it (2.38 and earlier patches: no limit)",
    ),
    Quirk(
        "typed_errors",
        "2.40",
        "da30b198514 (#12584)",
        "typed exceptions: the conflicts of a create carry E1004, an unknown user group is "
        '404 E1005 "UserGroup with id X could not be found." (before: "User Group does not '
        'exist: X"; no errorCode)',
    ),
    Quirk(
        "participant_check",
        "2.41.3",
        "c31ce96615b (#19139)",
        "reply, recipients, status, priority, assign, read, follow-up, remove and delete need "
        "a participant, a superuser or (tickets) a feedback manager: 403 E1006 (follow-ups: "
        "no errorCode)",
    ),
    Quirk(
        "acting_for_others",
        "2.41.3",
        "c31ce96615b (#19139)",
        "read, follow-up and remove for another user need no superuser (before: 403 "
        '"Not authorized to modify ...", no errorCode)',
    ),
    Quirk(
        "feedback_location",
        "2.41.3",
        "c31ce96615b; MessageConversationController.java:446-456@2.41.2",
        "the feedback's 201 carries a Location header",
    ),
    Quirk(
        "forbidden_e1006_everywhere",
        "2.42",
        "c898a1850af (#18295)",
        "GET /{uid}, internal replies and follow-ups refuse with E1006 too",
    ),
    Quirk(
        "resplits_filters",
        "2.42",
        "d2b80a51110 (#19046); GetObjectListParams.java:155-199@2.42, "
        "DefaultQueryParser.java:71-80@2.42",
        "all filter parameters are joined with commas and re-split: a value ends at a comma "
        "(or at the ] of a leading [...]), and loses its trailing colons",
    ),
    Quirk(
        "date_equality",
        "2.42",
        "d2b80a51110 (#19046); EqualOperator.java:136-141,LessEqualOperator.java:115-120@2.41",
        "a date filter's eq, le and ge match an equal date (before: the list was filtered in "
        "memory, where eq never matches a date and le and ge act as lt and gt)",
    ),
    Quirk(
        "or_lifts_inbox",
        "2.42",
        "d2b80a51110 (#19046), 52e4a64d820 (#19427); "
        "AbstractFullReadOnlyController.java:241-257,487-493@2.42",
        "the inbox restriction is one more filter, which rootJunction=OR ORs away",
    ),
    Quirk(
        "mark_read_exact",
        "2.42",
        "d2b80a51110 (#19046); MessageConversationController.java:173@2.42",
        'markRead must be exactly "true" (before: Boolean.parseBoolean, any case)',
    ),
    Quirk(
        "no_xml_create",
        "2.42",
        "0da00deacac (#18535)",
        "create refuses application/xml and text/xml with 415",
    ),
    Quirk(
        "forwarding_off",
        "2.42",
        "6e7d208e02b; UserSettings.java:126-132@2.42, UserSettingKey.java:50-56@2.40",
        "e-mail and SMS forwarding of messages is off by default",
    ),
    Quirk(
        "notifies_sender",
        "2.42",
        "DefaultMessageService.java:275-285@2.42",
        "a message is forwarded to every participant, its sender included",
    ),
    Quirk(
        "parameter_limit",
        "2.42",
        "Main.java:93-98@2.42 (dhis-web-server: embedded Tomcat 11, maxParameterCount 1,000; "
        "tomcat Parameters.java:247-249 on 11.0.x)",
        "more than 1,000 request parameters is a 400 Tomcat page (Tomcat 9 drops those past "
        "10,000, which its 8,192-byte request head cannot carry)",
    ),
    Quirk(
        "typed_uid_path",
        "2.43",
        "0057d9bdf6c",
        "a malformed uid in the path of GET and DELETE /{uid} is a 400",
    ),
    Quirk(
        "order_refusal",
        "2.43",
        "9e84ead485b; InMemoryQueryEngine.java:111@2.43",
        'an unknown order property is a 400 "No such property: x" (before: dropped)',
    ),
    Quirk(
        "message_unnamed",
        "2.43",
        "92494b04526",
        "a message has no name and an empty displayName (before: both its text)",
    ),
    Quirk(
        "gist_bridge",
        "2.44",
        "a82beb802e0; GistBridge.java:120-154@master",
        'the Gist engine answers list reads with query=, adding "gist": true',
    ),
)
QUIRK_NAMES = frozenset(q.name for q in QUIRKS)


class Profile:
    """What one release does: ``profile.feedback_location`` is True when it has that quirk."""

    __slots__ = ("names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        chosen = frozenset(names)
        unknown = chosen - QUIRK_NAMES
        if unknown:
            raise ValueError(f"unknown quirk(s): {', '.join(sorted(unknown))}")
        self.names = chosen

    @classmethod
    def of(cls, version: str) -> Profile:
        """The quirks of a release ("2.41.3", "master"): those whose first release it has reached."""
        release = parse_version(version)
        return cls(q.name for q in QUIRKS if release >= parse_version(q.since))

    def __getattr__(self, name: str) -> bool:
        if name in QUIRK_NAMES:
            return name in self.names
        raise AttributeError(f"no quirk named {name!r}")

    def replace(self, **flags: bool) -> Profile:
        """A copy with some quirks switched on or off (for tests)."""
        names = set(self.names)
        for name, on in flags.items():
            if name not in QUIRK_NAMES:
                raise ValueError(f"unknown quirk: {name}")
            if on:
                names.add(name)
            else:
                names.discard(name)
        return Profile(names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self.names == other.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"Profile({sorted(self.names)!r})"


# One profile per emulated release.
PROFILES = {version: Profile.of(version) for version in VERSIONS}


# ---------------------------------------------------------------------------
# The world: users, groups, org units, file resources, conversations
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class SeedUser:
    """A DHIS2 user of the seeded world."""

    uid: str
    username: str
    password: str = field(repr=False)
    first_name: str
    surname: str
    authorities: tuple[str, ...]
    token: str = field(repr=False)
    email: str | None = None
    # Data view (DATA_OUTPUT) and search (TEI_SEARCH) units; capture units are OrgUnit.members.
    view_units: tuple[str, ...] = ()
    search_units: tuple[str, ...] = ()

    @property
    def display_name(self) -> str:
        return self.first_name + " " + self.surname

    name = display_name


# The seeded world's uids: the tests and tests/demo.py import them from here.
ADMIN = "xE7jOejl9FI"
ALICE = "PhzytPW3g2J"
BOB = "DXyJmlo9rge"
CAROL = "Kh68cDMwZsg"
DAVE = "Onf73mPD6sL"
REPORTERS = "wl5cDMuUhmF"
FEEDBACK_TEAM = "QYrzIjSfI8z"
BO_DISTRICT = "O6uvpzGd5pu"
SIERRA_LEONE = "ImspTQPwCqd"  # the country, level 1
KENEMA = "kJq2mPyFEHo"  # a district next to Bo
BADJIA = "YuQRtpLP10I"  # a chiefdom in Bo District
NGELEHUN_CHC = "DiszpKrYNg8"  # a facility in Badjia, two levels below Bo District
AMINATA = "GOLswS44mh8"  # aminata, assigned to Ngelehun CHC
SIA = "Wd4KpLs9cYe"  # sia, assigned to Kenema Govt Hospital (outside Bo District)
DISTRICT_REPORTERS = "Gk3JdR7xWqs"
DISTRICT_MANAGERS = "Zq9WcT4kLmb"  # a private group, owned by admin

_SEED_USERS = (
    (
        ADMIN,
        "admin",
        "district",
        "John",
        "Traore",
        ("ALL",),
        "d2p_38AibNyyurlGFb0EkjKWREhbiGjlvhkTp3SKQOo6Cd6r2Xxx3X",
    ),
    (
        ALICE,
        "alice",
        "District1#",
        "Alice",
        "Banda",
        (),
        "d2p_vau5kHvRwMzzuVtYkwMJFrCfZ4U2EqkNk6sEr6f4gUy02hSjbZ",
    ),
    (
        BOB,
        "bob",
        "District1#",
        "Bob",
        "Mensah",
        (),
        "d2p_BQ8DEoFogNCAI3Ao3pxTnHyf6t5YdIngBaVbVJBMQKnY1giOJ3",
    ),
    (
        CAROL,
        "carol",
        "District1#",
        "Carol",
        "Osei",
        (),
        "d2p_8qS0BFn7BwpkZ01BZGaG7yOh3FZ9NoDxQshIISj3bb5639Fabe",
    ),
    (
        DAVE,
        "dave",
        "District1#",
        "Dave",
        "Kamara",
        (),
        "d2p_42ldGDinouxZjugnDD57Nb5srpS9wg1QlRRLiiRejeKx23vv0z",
    ),
)
# The rest of the world, around the five users above: people assigned at every level of
# the hierarchy, names that differ only in accents or in case, and enough community
# health workers that userLookup's cap of 25 shows.  (uid, username, first name, surname,
# email, data view units); password District1#, the token derived from the uid.
_MORE_USERS = (
    ("Fs8KtNe3WqA", "fatmata", "Fatmata", "Sesay", "f.sesay@moh.example.org", (SIERRA_LEONE,)),
    ("vAwxNm2QdxE", "ibrahim", "Ibrahim", "Koroma", None, ()),
    (AMINATA, "aminata", "Aminata", "Conteh", "aminata.conteh@example.org", ()),
    ("Lx9ZbhjUP6q", "jose", "José", "Banda", None, ()),
    ("Hm2Tc8aNwBq", "jbanda", "Jose", "Banda", "jose.banda@example.org", ()),
    ("QfV3hYn1wKd", "mohamed", "Mohamed", "Kallon", None, ()),
    ("Tq7JxWmz2Rn", "abu", "Abu", "Jalloh", None, ()),
    (SIA, "sia", "Sia", "Lebbie", None, ()),
    ("Bn6RtVq3xPz", "kadiatu", "Kadiatu", "Turay", None, ()),
    ("Ck1MzHw8uTf", "ama", "Ama", "Sankoh", None, ()),
    ("Dr5NxJq2vLg", "ama.sankoh", "AMA", "SANKOH", None, ()),
)
# Community health workers: (username prefix, facility uid, how many).
_CHW_POSTS = (("chw.ngelehun", NGELEHUN_CHC, 12), ("chw.makeni", "rxc497GUdDt", 16))
_SEED_GROUPS = (
    (REPORTERS, "Reporters", ("alice", "bob")),
    (FEEDBACK_TEAM, "Feedback Team", ("carol",)),
    (DISTRICT_REPORTERS, "District Reporters", ("ibrahim", "abu")),
    ("Vp8LmQ2zNcx", "Facility Reporters", ("aminata", "mohamed", "sia")),
    ("Rs4TnY6bKwd", "Data Managers", ("fatmata",)),
    ("Hx2PwE9mJvb", "District Data Managers", ("alice", "abu")),
)
# Groups that are not public: only their owner (and superusers) can see or use them.
_PRIVATE_GROUPS = ((DISTRICT_MANAGERS, "District Managers", ("fatmata", "abu"), "admin"),)
# A country, districts, chiefdoms and facilities: (uid, name, parent uid, users assigned).
# Bo District keeps exactly alice, bob and dave; Bombali District and Njandama MCHP have nobody.
_SEED_ORG_UNITS: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    (SIERRA_LEONE, "Sierra Leone", None, ("fatmata",)),
    (BO_DISTRICT, "Bo District", SIERRA_LEONE, ("alice", "bob", "dave")),
    ("fdc6uOvgoji", "Bombali District", SIERRA_LEONE, ()),
    (KENEMA, "Kenema District", SIERRA_LEONE, ("abu",)),
    (BADJIA, "Badjia", BO_DISTRICT, ("ibrahim",)),
    ("vWbkYPRmKyS", "Baoma", BO_DISTRICT, ()),
    ("KKkLOTpMXGV", "Bombali Sebora", "fdc6uOvgoji", ("kadiatu",)),
    ("KXSqt7jv6DU", "Nongowa", KENEMA, ()),
    (NGELEHUN_CHC, "Ngelehun CHC", BADJIA, ("aminata", "jose")),
    ("g8upMTyEZGZ", "Njandama MCHP", BADJIA, ()),
    ("EJoI3HArJ2W", "Baoma Station CHP", "vWbkYPRmKyS", ("mohamed", "jbanda")),
    ("rxc497GUdDt", "Makeni Govt Hospital", "KKkLOTpMXGV", ("ama", "ama.sankoh")),
    ("vn9KJsLyP5f", "Kenema Govt Hospital", "KXSqt7jv6DU", ("sia",)),
)


def _derived_uid(seed: str) -> str:
    """A stable uid for a generated seed object (not drawn from the emulator's random stream)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return string.ascii_letters[digest[0] % 52] + "".join(UID_CHARS[b % 62] for b in digest[1:11])


def _derived_token(uid: str) -> str:
    digest = hashlib.sha256(b"token:" + uid.encode("ascii")).digest()
    return "d2p_" + "".join(UID_CHARS[b % 62] for b in (digest + digest[::-1])[:50])


@dataclass(eq=False)
class Group:
    """A user group: a uid, a name, member usernames and who may see it."""

    uid: str
    name: str
    members: list[str]
    public: bool = True
    owner: str | None = None  # a username
    directory: dict[str, SeedUser] = field(default_factory=dict, repr=False)  # all users

    @property
    def member_users(self) -> list[SeedUser]:
        return [self.directory[name] for name in self.members]


@dataclass(eq=False)
class OrgUnit:
    """An organisation unit; ``members`` are the users who capture data for it."""

    uid: str
    name: str
    members: list[str]
    parent: OrgUnit | None = None
    level: int = 1
    path: str = ""
    children: list[OrgUnit] = field(default_factory=list, repr=False)
    directory: dict[str, SeedUser] = field(default_factory=dict, repr=False)  # all users

    @property
    def member_users(self) -> list[SeedUser]:
        return [self.directory[name] for name in self.members]


@dataclass(eq=False)
class FileResource:
    uid: str
    name: str
    content_type: str
    data: bytes = field(repr=False)
    domain: str
    owner: SeedUser | None
    created: int
    last_updated: int
    assigned: bool = False

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass(eq=False)
class Message:
    uid: str
    text: str | None
    sender: SeedUser | None
    created: int
    last_updated: int
    internal: bool = False
    meta_data: str = "User-agent: null"
    attachments: list[FileResource] = field(default_factory=list)


@dataclass(eq=False)
class Participant:
    """A DHIS2 UserMessage: one user's participation in a conversation."""

    user: SeedUser
    read: bool
    key: str = field(repr=False)
    follow_up: bool = False


@dataclass(eq=False)
class Conversation:
    uid: str
    subject: str | None
    message_type: str
    status: str
    priority: str
    created_by: SeedUser | None
    created: int
    last_updated: int
    last_message: int
    messages: list[Message] = field(default_factory=list, repr=False)
    participants: dict[str, Participant] = field(default_factory=dict)  # by username
    assignee: SeedUser | None = None
    last_sender: SeedUser | None = None
    message_count: int = 0  # non-internal messages only
    ext_message_id: str | None = None  # set by DHIS2's system update notices

    def participant(self, username: str) -> Participant | None:
        return self.participants.get(username)


@dataclass(eq=False)
class LoggedRequest:
    """One request the emulator received (the control API is not logged)."""

    method: str
    path: str  # the URL path, without the query
    query: str  # the raw query string
    params: list[tuple[str, str]]  # decoded, in order
    headers: Any = field(repr=False)  # an email.message.Message: case-insensitive lookup
    body: bytes = field(repr=False)
    user: str | None  # the authenticated username

    def param(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


# ---------------------------------------------------------------------------
# Responses and the error styles
# ---------------------------------------------------------------------------


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.headers: list[tuple[str, str]] = []
        if content_type:
            self.headers.append(("Content-Type", content_type))
        self.headers.extend(headers)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name: str, value: str) -> None:
        self.remove_header(name)
        self.headers.append((name, value))

    def remove_header(self, name: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]


class Fail(Exception):
    """Raised by handlers to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, _dumps(obj), JSON_TYPE, headers)


def web_message(
    status: int,
    message: str | None = None,
    *,
    error_code: str | None = None,
    response: dict | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """DHIS2's WebMessage envelope, keys in DHIS2's order, nulls omitted."""
    body: dict[str, Any] = {
        "httpStatus": _phrase(status),
        "httpStatusCode": status,
        "status": "OK" if status < 400 else "ERROR",
    }
    if message is not None:
        body["message"] = message
    if response is not None:
        body["response"] = response
    if error_code is not None:
        body["errorCode"] = error_code
    extra = [NO_CACHE] if status >= 400 else []
    return json_response(status, body, extra + list(headers))


def bare(status: int, message: str) -> Response:
    """The bare node-serializer error: ``{"message": ...}`` and nothing else."""
    return json_response(status, {"message": message})


def forbidden(message: str) -> Fail:  # ForbiddenException
    return Fail(web_message(403, message, error_code="E1006"))


def conflict(message: str, error_code: str | None = "E1004") -> Fail:  # ConflictException
    return Fail(web_message(409, message, error_code=error_code))


def html_page(status: int, message: str) -> Response:
    """A Tomcat error page, as sent for a missing required query parameter."""
    phrase = _phrase(status)
    descriptions = {
        400: "The server cannot or will not process the request due to something that is perceived "
        "to be a client error (e.g., malformed request syntax, invalid request message framing, "
        "or deceptive request routing).",
        404: "The origin server did not find a current representation for the target resource or is "
        "not willing to disclose that one exists.",
    }
    description = descriptions.get(status, phrase)
    page = (
        f'<!doctype html><html lang="en"><head><title>HTTP Status {status} – {phrase}</title>'
        '<style type="text/css">body {font-family:Tahoma,Arial,sans-serif;} h1, h2, h3, b '
        "{color:white;background-color:#525D76;} h1 {font-size:22px;} .line {height:1px;"
        "background-color:#525D76;border:none;}</style></head><body>"
        f'<h1>HTTP Status {status} – {phrase}</h1><hr class="line" /><p><b>Type</b> Status Report</p>'
        f"<p><b>Message</b> {html.escape(message)}</p><p><b>Description</b> {description}</p>"
        '<hr class="line" /><h3>Apache Tomcat/10.1.34</h3></body></html>'
    )
    return Response(status, page.encode("utf-8"), HTML_TYPE, [("Content-Language", "en")])


def missing_param(name: str, java_type: str = "String") -> Fail:
    return Fail(
        html_page(
            400,
            f"Required request parameter '{name}' for method parameter type {java_type} "
            "is not present",
        )
    )


def bad_enum(value: str, param: str, valid: Iterable[str]) -> Fail:
    return Fail(
        web_message(
            400,
            f"Value '{value}' is not valid for parameter {param}. "
            f"Valid values are: [{', '.join(valid)}]",
        )
    )


# ---------------------------------------------------------------------------
# Rendering: DHIS2's field filter (fields=a,b[c,d[*]],*,!e)
# ---------------------------------------------------------------------------


def _to_ms(when: _dt.datetime) -> int:
    """A datetime as the emulator keeps dates: milliseconds since 1970 in UTC (naive: UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return (when - _dt.datetime(1970, 1, 1)) // _dt.timedelta(milliseconds=1)


@functools.lru_cache(maxsize=65536)
def format_date(ms: int) -> str:
    dt = _dt.datetime(1970, 1, 1) + _dt.timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


_ZONE_SUFFIX = re.compile(r"(Z|[+-]\d\d(?::?\d\d)?)$")


def parse_date(value: str, utc_offset_ms: int = 0) -> int | None:
    """A filter's date as the server's local milliseconds (what ``format_date`` renders).

    Without a zone the value is the server's local time; with one (``Z``, ``+03:00``,
    ``-0800``: the ``Z`` of DateUtils' Joda patterns) it is an instant, moved into the
    server's zone, ``utc_offset_ms`` ahead of UTC."""
    text = value.strip().replace(" ", "T")
    zone = _ZONE_SUFFIX.search(text) if "T" in text else None
    shift = 0
    if zone is not None:
        text = text[: zone.start()]
        if zone.group(1) != "Z":
            digits = zone.group(1)[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
            shift = -minutes if zone.group(1)[0] == "+" else minutes
        shift = shift * 60_000 + utc_offset_ms
    for fmt in (
        "%Y-%m-%dT%H:%M:%S.%f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
        "%Y-%m",
        "%Y",
    ):
        try:
            dt = _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int((dt - _dt.datetime(1970, 1, 1)).total_seconds() * 1000) + shift
    return None


@functools.lru_cache(maxsize=1024)
def parse_fields(text: str) -> tuple[tuple[str, Any], ...]:
    """``a,b[c,d]`` -> ``(("a", None), ("b", (("c", None), ("d", None))))``."""
    pos = 0

    def parse_list(closing: str | None) -> tuple[tuple[str, Any], ...]:
        nonlocal pos
        items: list[tuple[str, Any]] = []
        name = ""
        sub = None
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch in "[(":
                sub = parse_list("])")
            elif closing and ch in closing:
                break
            elif ch == ",":
                if name.strip():
                    items.append((_clean_field(name), sub))
                name, sub = "", None
            else:
                name += ch
        if name.strip():
            items.append((_clean_field(name), sub))
        return tuple(items)

    return parse_list(None)


def _clean_field(name: str) -> str:
    name = name.strip()
    for sep in ("~", "::"):  # transformers such as name~rename(x) are not supported: keep the name
        if sep in name and not name.startswith(":"):
            name = name.split(sep, 1)[0]
    return name


class Ctx:
    """What rendering and filtering need to know about the request."""

    __slots__ = (
        "href_base",
        "in_list",
        "own_entry_only",
        "quirks",
        "read_override",
        "show_internal",
        "user",
    )

    def __init__(
        self,
        user: SeedUser,
        href_base: str,
        quirks: Profile,
        *,
        show_internal: bool = True,
        in_list: bool = False,
        own_entry_only: bool = False,
    ) -> None:
        self.user = user
        self.href_base = href_base
        self.quirks = quirks
        self.show_internal = show_internal
        self.in_list = in_list
        self.own_entry_only = own_entry_only
        self.read_override: bool | None = None


class Prop:
    """A property of a rendered type.

    kind: "value"; "ref"/"refs" (identifiable references, ``{"id"}`` unless expanded);
    "embedded" (expanded fully by default); "dto" (a user rendered as DHIS2's UserDto).
    """

    __slots__ = ("get", "kind", "target", "vtype")

    def __init__(
        self, kind: str, vtype: str, get: Callable[[Any, Ctx], Any], target: str | None = None
    ):
        self.kind = kind
        self.vtype = vtype
        self.get = get
        self.target = target


def _v(vtype: str, get: Callable[[Any, Ctx], Any]) -> Prop:
    return Prop("value", vtype, get)


def _conv_read(c: Conversation, x: Ctx) -> bool:
    if x.read_override is not None:
        return x.read_override
    p = c.participants.get(x.user.username)
    return p.read if p else False


def _conv_follow_up(c: Conversation, x: Ctx) -> bool:
    p = c.participants.get(x.user.username)
    return p.follow_up if p else False


def _conv_messages(c: Conversation, x: Ctx) -> list[Message]:
    return c.messages if x.show_internal else [m for m in c.messages if not m.internal]


def _conv_user_messages(c: Conversation, x: Ctx) -> list[Participant]:
    if x.own_entry_only:
        p = c.participants.get(x.user.username)
        return [p] if p else []
    return list(c.participants.values())


def _list_only(get: Callable[[Conversation], Any]) -> Callable[[Conversation, Ctx], Any]:
    return lambda c, x: get(c) if x.in_list else None


TYPES: dict[str, dict[str, Prop]] = {
    "user": {
        "id": _v("str", lambda u, x: u.uid),
        "code": _v("str", lambda u, x: None),
        "name": _v("str", lambda u, x: u.display_name),
        "displayName": _v("str", lambda u, x: u.display_name),
        "username": _v("str", lambda u, x: u.username),
        "firstName": _v("str", lambda u, x: u.first_name),
        "surname": _v("str", lambda u, x: u.surname),
    },
    "file": {
        "id": _v("str", lambda f, x: f.uid),
        "name": _v("str", lambda f, x: f.name),
        "displayName": _v("str", lambda f, x: f.name),
        "created": _v("date", lambda f, x: f.created),
        "lastUpdated": _v("date", lambda f, x: f.last_updated),
        "contentType": _v("str", lambda f, x: f.content_type),
        "contentLength": _v("int", lambda f, x: len(f.data)),
        "contentMd5": _v("str", lambda f, x: f.md5),
        "domain": _v("enum", lambda f, x: f.domain),
        "assigned": _v("bool", lambda f, x: f.assigned),
        "storageStatus": _v("enum", lambda f, x: "STORED"),
        "hasMultipleStorageFiles": _v("bool", lambda f, x: False),
    },
    "message": {
        "id": _v("str", lambda m, x: m.uid),
        # Message is no longer a BaseIdentifiableObject: name null, displayName ""
        "name": _v("str", lambda m, x: None if x.quirks.message_unnamed else m.text),
        "displayName": _v("str", lambda m, x: "" if x.quirks.message_unnamed else m.text),
        "text": _v("str", lambda m, x: m.text),
        "created": _v("date", lambda m, x: m.created),
        "lastUpdated": _v("date", lambda m, x: m.last_updated),
        "internal": _v("bool", lambda m, x: m.internal),
        "metaData": _v("str", lambda m, x: m.meta_data),
        "sender": Prop("ref", "str", lambda m, x: m.sender, "user"),
        "attachments": Prop("refs", "str", lambda m, x: m.attachments, "file"),
    },
    "userMessage": {
        "key": _v("str", lambda p, x: p.key),
        "read": _v("bool", lambda p, x: p.read),
        "followUp": _v("bool", lambda p, x: p.follow_up),
        "user": Prop("dto", "str", lambda p, x: p.user, "user"),
    },
    "conversation": {
        "id": _v("str", lambda c, x: c.uid),
        "href": _v("str", lambda c, x: x.href_base + c.uid),
        "name": _v("str", lambda c, x: c.subject),
        "displayName": _v("str", lambda c, x: c.subject),
        "subject": _v("str", lambda c, x: c.subject),
        "messageType": _v("enum", lambda c, x: c.message_type),
        "status": _v("enum", lambda c, x: c.status),
        "priority": _v("enum", lambda c, x: c.priority),
        "read": _v("bool", _conv_read),
        "followUp": _v("bool", _conv_follow_up),
        "messageCount": _v("int", lambda c, x: c.message_count),
        "lastMessage": _v("date", lambda c, x: c.last_message),
        "created": _v("date", lambda c, x: c.created),
        "lastUpdated": _v("date", lambda c, x: c.last_updated),
        "extMessageId": _v("str", lambda c, x: c.ext_message_id),
        "lastSender": Prop("ref", "str", lambda c, x: c.last_sender, "user"),
        "assignee": Prop("ref", "str", lambda c, x: c.assignee, "user"),
        "createdBy": Prop("dto", "str", lambda c, x: c.created_by, "user"),
        "messages": Prop("refs", "str", _conv_messages, "message"),
        "userMessages": Prop("embedded", "str", _conv_user_messages, "userMessage"),
        "userFirstname": _v(
            "str", _list_only(lambda c: c.created_by.first_name if c.created_by else None)
        ),
        "userSurname": _v(
            "str", _list_only(lambda c: c.created_by.surname if c.created_by else None)
        ),
        "lastSenderFirstname": _v(
            "str", _list_only(lambda c: c.last_sender.first_name if c.last_sender else None)
        ),
        "lastSenderSurname": _v(
            "str", _list_only(lambda c: c.last_sender.surname if c.last_sender else None)
        ),
    },
    "userGroup": {
        "id": _v("str", lambda g, x: g.uid),
        "name": _v("str", lambda g, x: g.name),
        "displayName": _v("str", lambda g, x: g.name),
        "users": Prop("refs", "str", lambda g, x: g.member_users, "user"),
    },
    "organisationUnit": {
        "id": _v("str", lambda o, x: o.uid),
        "name": _v("str", lambda o, x: o.name),
        "displayName": _v("str", lambda o, x: o.name),
        "shortName": _v("str", lambda o, x: o.name),
        "level": _v("int", lambda o, x: o.level),
        "path": _v("str", lambda o, x: o.path),
        "parent": Prop("ref", "str", lambda o, x: o.parent, "organisationUnit"),
        "children": Prop("refs", "str", lambda o, x: o.children, "organisationUnit"),
        "users": Prop("refs", "str", lambda o, x: o.member_users, "user"),
    },
}
ALL_FIELDS = (("*", None),)


def _select(type_name: str, tokens: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Expand ``*``/``:all`` and ``!name`` into an ordered name -> sub-selector mapping."""
    props = TYPES[type_name]
    chosen: dict[str, Any] = {}
    excluded = []
    for name, sub in tokens:
        if name in ("*", ":all"):
            for prop_name in props:
                chosen.setdefault(prop_name, None)
        elif name.startswith("!"):
            excluded.append(name[1:])
        elif name in props:
            chosen[name] = sub
    for name in excluded:
        chosen.pop(name, None)
    return chosen


def render(
    type_name: str, obj: Any, tokens: tuple[tuple[str, Any], ...], ctx: Ctx
) -> dict[str, Any]:
    props = TYPES[type_name]
    out: dict[str, Any] = {}
    for name, sub in _select(type_name, tokens).items():
        prop = props[name]
        value = prop.get(obj, ctx)
        if value is None:
            continue
        if prop.kind == "value":
            out[name] = format_date(value) if prop.vtype == "date" else value
        elif prop.kind == "ref":
            out[name] = {"id": value.uid} if sub is None else render(prop.target, value, sub, ctx)
        elif prop.kind == "refs":
            out[name] = [
                {"id": v.uid} if sub is None else render(prop.target, v, sub, ctx) for v in value
            ]
        elif prop.kind == "embedded":
            out[name] = [render(prop.target, v, sub or ALL_FIELDS, ctx) for v in value]
        elif prop.kind == "dto":
            out[name] = _user_dto(value)  # DHIS2's fixed UserDto, whatever sub-fields are asked
    return out


def _user_dto(u: SeedUser) -> dict[str, Any]:
    return {
        "id": u.uid,
        "name": u.display_name,
        "displayName": u.display_name,
        "username": u.username,
    }


# ---------------------------------------------------------------------------
# Filtering and ordering: filter=prop:op:value, order=prop:dir, queryString
# ---------------------------------------------------------------------------


def _bad_request(message: str) -> Fail:  # QueryParserException rethrown as BadRequestException
    return Fail(web_message(400, message, error_code="E1003"))


def _path_leaf(type_name: str, path: str) -> Prop:
    prop = None
    current: str | None = type_name
    parts = path.split(".")
    for part in parts:
        if current is None:
            raise _bad_request(
                "Simple type was found before finished parsing path expression, "
                "please check your path string."
            )
        prop = TYPES[current].get(part)
        if prop is None:
            raise _bad_request("Unknown path property: " + path)
        current = prop.target
    assert prop is not None
    return prop


def _path_values(type_name: str, obj: Any, parts: list[str], ctx: Ctx) -> list[Any]:
    """All values at a dotted path; collections fan out (any-match semantics)."""
    prop = TYPES[type_name][parts[0]]
    value = prop.get(obj, ctx)
    if len(parts) == 1:
        if prop.kind in ("ref", "dto"):
            return [value.uid if value is not None else None]
        return [value]
    if value is None:
        return [None]
    items = value if prop.kind in ("refs", "embedded") else [value]
    out: list[Any] = []
    for item in items:
        out.extend(_path_values(prop.target, item, parts[1:], ctx))
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def _token_match(value: Any, query: str) -> bool:
    """DHIS2's token operator: every word of the query is a prefix of some word of the value."""
    if value is None:
        return False
    words = _words(str(value))
    return all(any(w.startswith(q) for w in words) for q in _words(query))


def _parse_arg(vtype: str, arg: str | None, utc_offset_ms: int = 0) -> Any:
    if arg is None:
        return None
    if vtype == "bool":
        return arg.lower() == "true"
    if vtype == "int":
        try:
            return int(arg)
        except ValueError:
            return None
    if vtype == "date":
        return parse_date(arg, utc_offset_ms)
    return arg


def _compare(op: str, value: Any, arg: Any, raw: str | None) -> bool:
    """One operator against one value (``arg`` typed, ``raw`` the text given)."""
    if op == "null":
        return value is None
    if op == "!null":
        return value is not None
    if op in ("empty", "!empty"):
        empty = value is None or (isinstance(value, (list, str)) and len(value) == 0)
        return empty if op == "empty" else not empty
    if op in ("in", "!in"):
        found = value is not None and value in arg
        return found if op == "in" else (value is not None and not found)
    if value is None or arg is None:
        return False
    if op == "eq":
        return value == arg
    if op in ("!eq", "neq", "ne"):
        return value != arg
    if op == "ieq":
        return str(value).lower() == str(arg).lower()
    if op in ("gt", "lt", "gte", "ge", "lte", "le"):
        try:
            if op == "gt":
                return value > arg
            if op == "lt":
                return value < arg
            if op in ("gte", "ge"):
                return value >= arg
            return value <= arg
        except TypeError:
            return False
    if op in ("token", "!token"):
        hit = _token_match(value, raw or "")
        return hit if op == "token" else not hit
    text, needle = str(value), raw or ""
    negate = op.startswith("!")
    base = op.lstrip("!")
    if base in ("ilike", "$ilike", "ilike$", "startsWith", "endsWith"):
        text, needle = text.lower(), needle.lower()
    if base in ("like", "ilike"):
        hit = needle in text
    elif base in ("$like", "$ilike", "startsWith"):
        hit = text.startswith(needle)
    else:  # like$, ilike$, endsWith
        hit = text.endswith(needle)
    return not hit if negate else hit


_FILTER_PARTS = re.compile(r"[a-zA-Z0-9.]+:[!$a-zA-Z]{2,10}(?::(?:\[[^]]*]|[^,\n\r]+))?")
_SIZE_OPERATORS = frozenset(("eq", "gt", "lt", "gte", "ge", "lte", "le"))


ENUM_CLASSES = {
    "messageType": ("org.hisp.dhis.message.MessageType", MESSAGE_TYPES),
    "status": ("org.hisp.dhis.message.MessageConversationStatus", STATUSES),
    "priority": ("org.hisp.dhis.message.MessageConversationPriority", PRIORITIES),
}


def _check_enum_values(path: str, values: Iterable[str]) -> None:
    """QueryUtils.getEnumValue: Enums.getIfPresent, so the case must match exactly."""
    java_class, valid = ENUM_CLASSES[path]
    for value in values:
        if value not in valid:
            raise _bad_request(
                f"Unable to parse `{value}` as `class {java_class}`, "
                f"available values are: [{', '.join(valid)}]"
            )


#: Up to 2.41 the list is filtered in memory, and a date there is a java.sql.Timestamp,
#: whose equals() refuses the java.util.Date of the filter (``date_equality``).
_UNEQUAL_DATES = {"eq": "never", "in": "never", "le": "lt", "lte": "lt", "ge": "gt", "gte": "gt"}


def _java_split(text: str, separator: str) -> list[str]:
    """Java's ``String.split``: trailing empty pieces are dropped."""
    parts = text.split(separator)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def compile_filter(
    expr: str,
    type_name: str = "conversation",
    *,
    rejoins_value: bool = False,
    utc_offset_ms: int = 0,
    equal_dates: bool = True,
) -> Callable[[Any, Ctx], bool]:
    """One ``prop:op[:value]`` filter as a test of an object.

    The value is what follows ``prop:op:`` (DefaultJpaQueryParser up to 2.41); from 2.42
    (``rejoins_value``) DefaultQueryParser joins the pieces of Java's ``split(":")``
    again, so trailing colons are lost.  Either way a value of colons only is none.
    Without ``equal_dates`` (the list up to 2.41, filtered in memory) a date's ``eq``,
    ``le`` and ``ge`` miss an equal date."""
    parts = _java_split(expr, ":")
    if len(parts) < 2:
        raise _bad_request("Invalid filter => " + expr)
    path, op = parts[0], parts[1]
    raw = None
    if len(parts) >= 3:
        raw = ":".join(parts[2:]) if rejoins_value else expr[len(path) + len(op) + 2 :]
    leaf = _path_leaf(type_name, path)
    if op not in FILTER_OPERATORS:
        raise _bad_request(f"`{op}` is not a valid operator.")
    if leaf.vtype == "date" and not equal_dates and op in _UNEQUAL_DATES:
        op = _UNEQUAL_DATES[op]
        if op == "never":
            return lambda obj, ctx: False
    if op in ("in", "!in"):
        if raw is None or not (raw.startswith("[") and raw.endswith("]")) or len(raw) < 3:
            raise _bad_request(f"Invalid argument `{raw}` for in operator.")
        arg: Any = [_parse_arg(leaf.vtype, v, utc_offset_ms) for v in raw[1:-1].split(",")]
    else:
        arg = _parse_arg(leaf.vtype, raw, utc_offset_ms)
    if leaf.vtype == "enum" and path in ENUM_CLASSES and raw is not None:
        _check_enum_values(path, arg if op in ("in", "!in") else [raw])
    steps = path.split(".")
    if leaf.kind == "refs" and len(steps) == 1 and op in _SIZE_OPERATORS:
        # users:gte:1 -- on a collection, DHIS2 compares its size.
        size = _parse_arg("int", raw)
        getter = leaf.get
        return lambda obj, ctx: _compare(op, len(getter(obj, ctx)), size, raw)

    def test(obj: Any, ctx: Ctx) -> bool:
        return any(_compare(op, v, arg, raw) for v in _path_values(type_name, obj, steps, ctx))

    return test


def _order_key(prop: str, ignore_case: bool, ctx: Ctx | None) -> Callable[[Conversation], Any]:
    getter = TYPES["conversation"][prop].get
    if ignore_case:
        return lambda c: (getter(c, ctx) or "").lower()
    return lambda c: getter(c, ctx)


def _collation_key(text: str) -> tuple[str, str]:
    """About PostgreSQL's en_US order: accents and case count only on a tie, lower case first."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return plain.casefold(), text.swapcase()


def _metadata_order(objects: list[Any], type_name: str, orders: list[str]) -> list[Any]:
    """Query.setDefaultOrder (name, ignoring case, then id) unless ``order`` names properties."""
    props = TYPES[type_name]
    keys: list[tuple[str, bool, bool]] = []
    for order in orders:
        prop, _, direction = order.strip().partition(":")
        direction = direction.lower() or "asc"
        # QueryUtils.convertOrderStrings: unknown properties, collections and bad directions
        # are skipped; a property named twice counts once.
        if (
            prop in props
            and props[prop].kind == "value"
            and direction in ("asc", "desc", "iasc", "idesc")
            and prop not in [k[0] for k in keys]
        ):
            keys.append((prop, direction.startswith("i"), direction.endswith("desc")))
    if not keys:
        keys = [("name", True, False), ("id", False, False)]
    result = sorted(objects, key=lambda o: props["id"].get(o, None))
    for prop, ignore_case, descending in reversed(keys):
        get = props[prop].get
        if ignore_case:
            result.sort(key=lambda o: str(get(o, None) or "").lower(), reverse=descending)
        else:
            result.sort(key=lambda o: get(o, None), reverse=descending)
    return result


def apply_orders(
    convs: list[Conversation], orders: list[str], ctx: Ctx | None = None
) -> list[Conversation]:
    """Sort by the given ``prop:asc|desc|iasc|idesc``; ties by uid.

    An unknown property is dropped silently (QueryUtils.convertOrderStrings), or refused with
    a 400 "No such property: x" by InMemoryQueryEngine (``order_refusal``).
    """
    keys = []
    for order in orders:
        prop, _, direction = order.strip().partition(":")
        if prop not in ORDERABLE:
            if ctx is not None and ctx.quirks.order_refusal and prop not in TYPES["conversation"]:
                raise Fail(web_message(400, "No such property: " + prop))
            continue
        direction = direction.lower() or "asc"
        keys.append((prop, direction.startswith("i"), direction.endswith("desc")))
    for prop, ignore_case, descending in reversed(keys):  # stable sorts, last key first
        convs.sort(key=_order_key(prop, ignore_case, ctx), reverse=descending)
    return convs


# ---------------------------------------------------------------------------
# Request parsing helpers
# ---------------------------------------------------------------------------


class Request:
    """What handlers see."""

    __slots__ = (
        "api_prefix",
        "body",
        "headers",
        "method",
        "origin",
        "params",
        "path",
        "query",
        "raw_path",
        "set_cookie",
        "user",
    )

    def __init__(
        self, method: str, raw_path: str, query: str, headers: Any, body: bytes, origin: str
    ):
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path
        self.query = query
        self.params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.user: SeedUser | None = None
        self.api_prefix = "/api"
        self.origin = origin
        self.set_cookie: str | None = None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]

    def first(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.params)

    def fields(self, default: str = "") -> tuple[tuple[str, Any], ...]:
        """The ``fields`` parameters, joined as Spring binds a list, or ``default``."""
        return parse_fields(",".join(self.all("fields")) or default)

    def junction(self) -> Callable[[Iterable[bool]], bool]:
        """``rootJunction``: AND (all) unless OR (any)."""
        return any if (self.first("rootJunction") or "AND").upper() == "OR" else all

    def listing(self, name: str) -> list[str]:
        """A Spring list parameter: repeated keys or one comma-separated value."""
        out: list[str] = []
        for value in self.all(name):
            out.extend(value.split(","))
        return out

    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def api_url(self, rest: str) -> str:
        return self.origin + self.api_prefix + rest


def _is_json_type(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _unsupported_media(req: Request) -> Fail:
    given = req.headers.get("Content-Type") or "application/octet-stream"
    return Fail(web_message(415, f"Content-Type '{given}' is not supported"))


def _bool_param(req: Request, name: str, default: bool) -> bool:
    value = req.first(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "on", "yes", "1"):
        return True
    if lowered in ("false", "off", "no", "0"):
        return False
    raise Fail(
        web_message(
            400, f"Value '{value}' is not valid for parameter {name}. It should be of type boolean"
        )
    )


def _int_param(req: Request, name: str, default: int) -> int:
    value = req.first(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise Fail(
            web_message(
                400,
                f"Value '{value}' is not valid for parameter {name}. It should be of type Integer",
            )
        ) from None


def _page(items: list[Any], page: int, page_size: int) -> tuple[list[Any], int, int]:
    """Pager.java: (rows, the page reported, pageCount).  pageCount is 0 for an empty result;
    the reported page is clamped, but the rows come from the requested offset, so a page past
    the end is empty."""
    page_count = math.ceil(len(items) / page_size)
    page = max(page, 1)
    rows = items[(page - 1) * page_size : page * page_size]
    return rows, max(1, min(page, page_count)), page_count


def _enum_param(req: Request, name: str, valid: tuple[str, ...]) -> str:
    value = req.first(name)
    if value is None:
        raise missing_param(name, name[0].upper() + name[1:])
    if value.upper() not in valid:
        raise bad_enum(value, name, valid)
    return value.upper()


def _jackson_location(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"\n at {JACKSON_SOURCE}; line: {line}, column: {column}]"


def _json_error(text: str, err: json.JSONDecodeError) -> str:
    if err.pos >= len(text.rstrip()):
        return f"Unexpected end-of-input: {err.msg}{_jackson_location(text, err.pos)}"
    ch = text[err.pos]
    return f"Unexpected character ('{ch}' (code {ord(ch)})): {err.msg}{_jackson_location(text, err.pos)}"


_JAVA_CLASSES = {
    "users": "org.hisp.dhis.user.User",
    "userGroups": "org.hisp.dhis.user.UserGroup",
    "organisationUnits": "org.hisp.dhis.organisationunit.OrganisationUnit",
    "attachments": "org.hisp.dhis.fileresource.FileResource",
}
_DTO_CLASS = "org.hisp.dhis.webapi.webdomain.MessageConversation"


class JacksonError(Exception):
    """A request body Jackson could not read; the message imitates Jackson's."""


def _json_kind(value: Any) -> tuple[str, str]:
    """Jackson's words for a JSON value: (shape, token)."""
    if isinstance(value, dict):
        return "Object", "START_OBJECT"
    if isinstance(value, list):
        return "Array", "START_ARRAY"
    if isinstance(value, bool):
        return "Boolean", "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, (int, float)):
        return "Number", "VALUE_NUMBER_INT" if isinstance(value, int) else "VALUE_NUMBER_FLOAT"
    return "String", "VALUE_STRING"


def _cannot_deserialize(java_type: str, value: Any) -> JacksonError:
    shape, token = _json_kind(value)
    return JacksonError(
        f"Cannot deserialize value of type `{java_type}` from {shape} value "
        f"(token `JsonToken.{token}`)"
    )


def parse_conversation_dto(body: bytes) -> dict[str, Any]:
    """Read the create/recipients body like Jackson does (raises JacksonError)."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        raise JacksonError("No content to map due to end-of-input" + _jackson_location(text, 0))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise JacksonError(_json_error(text, err)) from None
    if not isinstance(data, dict):
        raise _cannot_deserialize(_DTO_CLASS, data)
    dto: dict[str, Any] = {
        "subject": None,
        "text": None,
        "users": [],
        "userGroups": [],
        "organisationUnits": [],
        "attachments": [],
    }
    for key, value in data.items():  # document order: Jackson fails on the first bad value
        if key in ("subject", "text"):
            if isinstance(value, (dict, list)):
                raise _cannot_deserialize("java.lang.String", value)
            if isinstance(value, bool):
                value = "true" if value else "false"
            dto[key] = str(value) if value not in (None, "") else None  # "" reads as null
        elif key in _JAVA_CLASSES:
            dto[key] = _parse_references(text, key, value)
    return dto


def parse_conversation_xml(body: bytes) -> dict[str, Any]:
    """The same request DTO read from XML (renderService.fromXml), namespaces ignored."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as err:
        raise Fail(web_message(409, f"Unexpected XML: {err}")) from None
    dto: dict[str, Any] = {key: [] for key in _JAVA_CLASSES}
    dto["subject"] = dto["text"] = None
    for child in root:
        tag = child.tag.rpartition("}")[2]
        if tag in ("subject", "text"):
            dto[tag] = child.text or None
        elif tag in _JAVA_CLASSES:
            dto[tag] = [ref.get("id") or ref.findtext("id") for ref in child]
    return dto


def _parse_references(text: str, key: str, value: Any) -> list[str | None]:
    """A list of ``{"id": ...}`` objects; anything else fails the way Jackson fails."""
    java = _JAVA_CLASSES[key]
    if value is None:
        return []
    if not isinstance(value, list):
        raise _cannot_deserialize(f"java.util.HashSet<{java}>", value)
    ids: list[str | None] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            ref = item.get("id")
            ids.append(None if ref is None else str(ref))
            continue
        if isinstance(item, (list, type(None))):
            raise _cannot_deserialize(java, item)
        where = text.find(json.dumps(item), max(text.find(f'"{key}"'), 0))
        shape, _ = _json_kind(item)
        shown = f"'{item}'" if isinstance(item, str) else json.dumps(item)
        argument = {"String": "String", "Number": "int/Int", "Boolean": "boolean/Boolean"}[shape]
        raise JacksonError(
            f"Cannot construct instance of `{java}` (although at least one Creator exists): "
            f"no {argument}-argument constructor/factory method to deserialize from {shape} value ({shown})"
            f"{_jackson_location(text, max(where, 0))} "
            f'(through reference chain: {_DTO_CLASS}["{key}"]->java.util.HashSet[{i}])'
        )
    return ids


def parse_multipart(
    content_type: str, body: bytes
) -> list[tuple[dict[str, str], dict[str, str], bytes]]:
    """Split a multipart/form-data body into (headers, disposition params, data) parts."""
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not match:
        return []
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        params: dict[str, str] = {}
        for piece in headers.get("content-disposition", "").split(";")[1:]:
            name, _, value = piece.strip().partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        parts.append((headers, params, data))
    return parts


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------


@dataclass
class Fault:
    method: str | None
    path: re.Pattern[str] | None
    times: int
    status: int | None
    body: Any
    headers: dict[str, str]
    content_type: str | None
    delay: float
    drop: bool
    truncate: bool
    process: bool
    strip_headers: tuple[str, ...]
    commit_after: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path.search(path) is not None
        )

    @property
    def runs_handler(self) -> bool:
        """The real handler runs unless the fault replaces the answer (and process is off)."""
        if self.process:
            return True
        return not self.drop and self.status is None and self.body is None

    def apply(self, resp: Response) -> Response:
        if self.status is not None:
            resp.status = self.status
            if self.body is None:  # a proxy's answer: not DHIS2's body
                resp.body = b""
                resp.remove_header("Content-Type")
        if self.body is not None:
            body = self.body
            if isinstance(body, (dict, list)):
                resp.body, guessed = _dumps(body), JSON_TYPE
            else:
                resp.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
                guessed = (
                    JSON_TYPE
                    if resp.body.lstrip()[:1] in (b"{", b"[")
                    else "text/plain;charset=UTF-8"
                )
            resp.set_header("Content-Type", guessed)
        if self.content_type is not None:
            resp.set_header("Content-Type", self.content_type)
        for name, value in (self.headers or {}).items():
            resp.set_header(name, str(value))
        for name in self.strip_headers:
            resp.remove_header(name)
        return resp


# ---------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), h)
    for m, p, h in (
        ("GET", r"/messageConversations", "list"),
        ("POST", r"/messageConversations", "create"),
        ("DELETE", r"/messageConversations", "remove_batch"),
        ("POST", r"/messageConversations/feedback", "feedback"),
        ("POST", r"/messageConversations/(read|unread)", "bulk_read"),
        ("POST", r"/messageConversations/(followup|unfollowup)", "bulk_follow_up"),
        ("GET", r"/messageConversations/([a-zA-Z0-9]{11})", "get"),
        ("POST", r"/messageConversations/([^/]+)", "reply"),
        ("DELETE", r"/messageConversations/([^/]+)", "hard_delete"),
        ("POST", r"/messageConversations/([^/]+)/recipients", "recipients"),
        ("POST", r"/messageConversations/([^/]+)/(read|unread)", "single_read"),
        ("POST", r"/messageConversations/([^/]+)/status", "status"),
        ("POST", r"/messageConversations/([^/]+)/priority", "priority"),
        ("POST", r"/messageConversations/([^/]+)/assign", "assign"),
        ("DELETE", r"/messageConversations/([^/]+)/assign", "unassign"),
        ("DELETE", r"/messageConversations/([^/]+)/([^/]+)", "remove_participant"),
        ("GET", r"/messageConversations/([^/]+)/([^/]+)/attachments/([^/]+)", "download"),
        ("POST", r"/fileResources", "upload"),
        ("GET", r"/fileResources/([^/]+)", "file_metadata"),
        ("GET", r"/fileResources/([^/]+)/data", "file_data"),
        ("POST", r"/auth/login", "login"),
        ("GET", r"/userLookup", "user_lookup"),
        ("GET", r"/userLookup/feedbackRecipients", "feedback_recipients"),
        ("GET", r"/userGroups", "user_groups"),
        ("GET", r"/organisationUnits", "org_units"),
        ("GET", r"/system/info", "system_info"),
        ("GET", r"/me", "me"),
    )
]
_PUBLIC = {"login"}


class Emulator:
    """A DHIS2 messaging server on loopback, with a seeded world and fault injection."""

    SEED = 20240502

    def __init__(self, *, latency: float = 0.0, version: str = DEFAULT_VERSION) -> None:
        self.latency = latency
        self.release = parse_version(version)
        self.version = version_name(self.release)
        # What this release does differently (see QUIRKS); handlers read it, tests may swap it
        # (then reset(), which reads it too).
        self.quirks = Profile.of(version)
        self.url = ""
        self.errors: list[str] = []  # tracebacks of emulator bugs (answered as 500)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # set on reset()/stop() to end injected delays
        self.reset()

    def since(self, version: str) -> bool:
        """True when the emulated release is ``version`` or later ("2.41.3", "2.42", ...).

        For tests; handlers read ``self.quirks`` instead."""
        return self.release >= parse_version(version)

    # -- lifecycle ---------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), self)
        bound_host, bound_port = self._server.server_address[:2]
        self.url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dhis2-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._wake.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> Emulator:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the seeded world: no conversations, no files, empty log, no faults."""
        with self._lock:
            old_wake = self._wake
            self._wake = threading.Event()
            old_wake.set()
            self._rng = random.Random(self.SEED)
            # The server's clock: seconds ahead of this machine's, and its zone's offset
            # from UTC in seconds.  Dates are kept and rendered as its local time, the
            # Date header is its clock in GMT.
            self.clock_offset = 0.0
            self.utc_offset = 0.0
            self._deferred: list[list[Any]] = []  # [requests to wait, Request] (commit_after)
            self._last_ms = 0
            self._version = 0
            self._list_cache: dict[Any, list[Conversation]] = {}
            self._cache_version = -1
            self._uid_order: tuple[int, list[Conversation]] = (-1, [])
            self.users: dict[str, SeedUser] = {}
            for uid, username, password, first, surname, auths, token in _SEED_USERS:
                self.users[username] = SeedUser(
                    uid, username, password, first, surname, auths, token
                )
            for uid, username, first, surname, email, view in _MORE_USERS:
                self.users[username] = SeedUser(
                    uid,
                    username,
                    "District1#",
                    first,
                    surname,
                    (),
                    _derived_token(uid),
                    email,
                    view,
                )
            for prefix, _, count in _CHW_POSTS:
                place = prefix.split(".")[1].capitalize()
                for i in range(1, count + 1):
                    username = f"{prefix}{i:02d}"
                    uid = _derived_uid(username)
                    self.users[username] = SeedUser(
                        uid,
                        username,
                        "District1#",
                        "CHW",
                        f"{place} {i:02d}",
                        (),
                        _derived_token(uid),
                    )
            self._users_by_uid = {u.uid: u for u in self.users.values()}
            self._tokens = {u.token: u for u in self.users.values()}
            self.groups = {
                uid: Group(uid, name, list(members), directory=self.users)
                for uid, name, members in _SEED_GROUPS
            }
            for uid, name, members, owner in _PRIVATE_GROUPS:
                self.groups[uid] = Group(
                    uid, name, list(members), public=False, owner=owner, directory=self.users
                )
            self.org_units: dict[str, OrgUnit] = {}
            for uid, name, parent, members in _SEED_ORG_UNITS:
                self._new_org_unit(uid, name, parent, list(members))
            for prefix, facility, count in _CHW_POSTS:
                self.org_units[facility].members.extend(
                    f"{prefix}{i:02d}" for i in range(1, count + 1)
                )
            self.feedback_group_uid = FEEDBACK_TEAM
            self.conversations: dict[str, Conversation] = {}
            # keyMessageEmailNotification / keyMessageSmsNotification: what a real server would
            # have sent on by e-mail or SMS, per message.
            self.forwards_by_default = not self.quirks.forwarding_off
            self.forwarding = {name: self.forwards_by_default for name in self.users}
            self.forwarded: list[tuple[str, str]] = []  # (username, conversation uid)
            self.files: dict[str, FileResource] = {}
            self.log: list[LoggedRequest] = []
            # Request lines Tomcat refused before DHIS2 saw them (over MAX_HEAD_SIZE).
            self.refused: list[str] = []
            self._faults: list[Fault] = []
            self._sessions: dict[str, str] = {}
            self._used_uids = (
                {u.uid for u in self.users.values()} | set(self.groups) | set(self.org_units)
            )

    # -- inspection and setup (for tests) ----------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method.upper())
                and (path is None or r.path == path)
            ]

    def clear_log(self) -> None:
        with self._lock:
            self.log = []

    def inject(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        truncate: bool = False,
        process: bool = False,
        strip_headers: Iterable[str] = (),
        commit_after: int = 0,
    ) -> None:
        """Make the next ``times`` matching requests misbehave.

        ``status``, ``body``, ``headers``, ``content_type``: answer with these in place of
        DHIS2's (a status alone: a proxy's empty answer); ``strip_headers``: leave those
        out; ``delay``: wait that many seconds first; ``drop``: hang up without an answer;
        ``truncate``: send half the body, then hang up.  A fault that replaces the answer
        keeps DHIS2 from doing the work, unless ``process=True``: then the handler runs
        first (before the delay, too: the work is done, the answer is late or lost).
        ``commit_after=N`` (with ``process``): the work shows only when N more requests
        have arrived, as when a proxy gives up (504) before DHIS2 finishes.
        """
        fault = Fault(
            method=method,
            path=re.compile(path) if path is not None else None,
            times=times,
            status=status,
            body=body,
            headers=dict(headers or {}),
            content_type=content_type,
            delay=delay,
            drop=drop,
            truncate=truncate,
            process=process,
            strip_headers=tuple(strip_headers),
            commit_after=commit_after,
        )
        with self._lock:
            self._faults.append(fault)

    def user(self, username: str) -> SeedUser:
        return self._user_ref(username)

    def add_conversation(
        self,
        *,
        sender: str | None,
        recipients: Any,
        subject: str,
        text: str = "Hello",
        message_type: str = "PRIVATE",
        status: str | None = None,
        priority: str = "NONE",
        internal: bool = False,
        replies: int = 0,
        ext_message_id: str | None = None,
    ) -> str:
        if isinstance(recipients, str):
            recipients = [recipients]
        with self._lock:
            author = self._user_ref(sender) if sender is not None else None
            people = [self._user_ref(r) for r in recipients]
            message_type = message_type.upper()
            if status is None:
                status = "OPEN" if message_type in ("TICKET", "VALIDATION_RESULT") else "NONE"
            conv = self._new_conversation(
                subject,
                message_type,
                author,
                people,
                status=status.upper(),
                priority=priority.upper(),
            )
            conv.ext_message_id = ext_message_id
            self._append(conv, author, text, internal=internal, user_agent="emulator")
            for i in range(replies):
                self._append(
                    conv, author, f"Reply {i + 1}", internal=internal, user_agent="emulator"
                )
            return conv.uid

    def add_update_notice(self, recipients: Any, version: str = "2.42.1") -> str:
        """What SystemUpdateNotificationService sends: a SYSTEM message, the version as extMessageId."""
        return self.add_conversation(
            sender=None,
            recipients=recipients,
            subject="System update available",
            text=f"Version {version} of DHIS2 is available.",
            message_type="SYSTEM",
            ext_message_id=version,
        )

    def backdate(self, uid: str, seconds: float) -> None:
        """Move a conversation and its messages that many seconds into the past."""
        shift = int(seconds * 1000)
        with self._lock:
            conv = self.conversations[uid]
            conv.created -= shift
            conv.last_updated -= shift
            conv.last_message -= shift
            for message in conv.messages:
                message.created -= shift
                message.last_updated -= shift
            self._version += 1

    def add_conversations(
        self,
        n: int,
        *,
        sender: str | None,
        recipients: Any,
        subject_prefix: str = "Conversation",
        messages: int = 1,
        message_type: str = "PRIVATE",
        status: str | None = None,
        priority: str = "NONE",
        created: _dt.datetime | None = None,
    ) -> list[str]:
        """``n`` conversations from ``sender`` (None: DHIS2 itself, as for SYSTEM and
        VALIDATION_RESULT) to ``recipients``, ``messages`` messages each; return their uids.

        ``message_type`` is one of ``MESSAGE_TYPES`` (any case); TICKET and
        VALIDATION_RESULT start ``OPEN`` unless ``status`` says otherwise.  ``created``
        (a naive datetime in the emulator's time, UTC) backdates them: the first one is
        created then, each next one a minute later, and each message a second after the
        one before, so a script can try its date filters on old conversations.
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        message_type = message_type.upper()
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"message_type must be one of {', '.join(MESSAGE_TYPES)}")
        if status is None:
            status = "OPEN" if message_type in ("TICKET", "VALIDATION_RESULT") else "NONE"
        if status.upper() not in STATUSES or priority.upper() not in PRIORITIES:
            raise ValueError(f"status is one of {STATUSES}, priority one of {PRIORITIES}")
        start = None if created is None else _to_ms(created)
        uids = []
        with self._lock:
            author = self._user_ref(sender) if sender is not None else None
            people = [self._user_ref(r) for r in recipients]
            for i in range(n):
                conv = self._new_conversation(
                    f"{subject_prefix} {i + 1}",
                    message_type,
                    author,
                    people,
                    status=status.upper(),
                    priority=priority.upper(),
                )
                for j in range(max(1, messages)):
                    self._append(conv, author, f"Message {j + 1}", user_agent="emulator")
                if start is not None:
                    self._backdate(conv, start + i * 60_000)
                uids.append(conv.uid)
        return uids

    def add_file(
        self,
        *,
        owner: str,
        data: bytes,
        name: str = "report.pdf",
        content_type: str = "application/pdf",
        domain: str = "MESSAGE_ATTACHMENT",
    ) -> str:
        with self._lock:
            return self._new_file(
                self._user_ref(owner), data, name, content_type, domain.upper()
            ).uid

    def add_org_unit_tree(
        self, parent: str, *, depth: int, children: int = 2, users: int = 1
    ) -> list[str]:
        """Grow ``depth`` levels below ``parent``, ``children`` units under each unit and
        ``users`` new users assigned to each new unit; return the new units' uids."""
        if depth < 1 or children < 1 or users < 0:
            raise ValueError("depth and children must be 1 or more, users 0 or more")
        with self._lock:
            if parent not in self.org_units:
                raise KeyError(f"no such organisation unit: {parent!r}")
            created: list[str] = []
            level = [parent]
            for _ in range(depth):
                below = []
                for up in level:
                    for i in range(children):
                        uid = self._uid()
                        name = f"{self.org_units[up].name} {i + 1}"
                        unit = self._new_org_unit(uid, name, up, [])
                        for _ in range(users):
                            user_uid = self._uid()
                            username = "u." + user_uid.lower()
                            self.users[username] = SeedUser(
                                user_uid,
                                username,
                                "District1#",
                                "Staff",
                                name,
                                (),
                                _derived_token(user_uid),
                            )
                            self._users_by_uid[user_uid] = self.users[username]
                            self._tokens[self.users[username].token] = self.users[username]
                            unit.members.append(username)
                        below.append(uid)
                created.extend(below)
                level = below
            self._tick()
            return created

    def tree_text(self) -> str:
        """The organisation-unit hierarchy, one unit a line, with its assigned users."""
        lines: list[str] = []

        def walk(unit: OrgUnit) -> None:
            users = ", ".join(unit.members[:4]) + (" ..." if len(unit.members) > 4 else "")
            lines.append(
                f"{'  ' * (unit.level - 1)}{unit.name} ({unit.uid}, level {unit.level})"
                + (f": {users}" if users else ": no users")
            )
            for child in sorted(unit.children, key=lambda u: u.name.lower()):
                walk(child)

        with self._lock:
            for root in sorted(
                (u for u in self.org_units.values() if u.parent is None),
                key=lambda u: u.name.lower(),
            ):
                walk(root)
        return "\n".join(lines)

    # -- state primitives (call with the lock held) ------------------------

    def _user_ref(self, ref: str) -> SeedUser:
        user = self.users.get(ref) or self._users_by_uid.get(ref)
        if user is None:
            raise KeyError(f"no such user: {ref!r}")
        return user

    def _new_org_unit(
        self, uid: str, name: str, parent_uid: str | None, members: list[str]
    ) -> OrgUnit:
        parent = self.org_units[parent_uid] if parent_uid is not None else None
        unit = OrgUnit(uid, name, members, parent, directory=self.users)
        unit.level = parent.level + 1 if parent else 1
        unit.path = (parent.path if parent else "") + "/" + uid
        if parent is not None:
            parent.children.append(unit)
        self.org_units[uid] = unit
        return unit

    def _uid(self) -> str:
        rng = self._rng
        while True:
            uid = rng.choice(string.ascii_letters) + "".join(rng.choices(UID_CHARS, k=10))
            if uid not in self._used_uids:
                self._used_uids.add(uid)
                return uid

    def _key(self) -> str:
        h = f"{self._rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def now_ms(self) -> int:
        """The server's local time now, in ms since 1970 (as DHIS2 renders it, without zone)."""
        return int((time.time() + self.clock_offset + self.utc_offset) * 1000)

    def _tick(self) -> int:
        """Now in ms, strictly increasing; every mutation calls it (it also invalidates list caches)."""
        now = self.now_ms()
        if now <= self._last_ms:
            now = self._last_ms + 1
        self._last_ms = now
        self._version += 1
        return now

    def _touch(self, conv: Conversation) -> None:
        conv.last_updated = self._tick()

    def _new_conversation(
        self,
        subject: str | None,
        message_type: str,
        sender: SeedUser | None,
        recipients: Iterable[SeedUser],
        status: str = "NONE",
        priority: str = "NONE",
    ) -> Conversation:
        now = self._tick()
        conv = Conversation(
            self._uid(), subject, message_type, status, priority, sender, now, now, now
        )
        if sender is not None:
            conv.participants[sender.username] = Participant(sender, True, self._key())
        for user in recipients:
            if user.username not in conv.participants:
                conv.participants[user.username] = Participant(user, False, self._key())
        self.conversations[conv.uid] = conv
        return conv

    def _append(
        self,
        conv: Conversation,
        sender: SeedUser | None,
        text: str | None,
        *,
        internal: bool = False,
        user_agent: str | None = None,
        attachments: Iterable[FileResource] = (),
    ) -> Message:
        now = self._tick()
        message = Message(
            self._uid(),
            text,
            sender,
            now,
            now,
            internal,
            "User-agent: " + ("null" if user_agent is None else user_agent),
            list(attachments),
        )
        conv.messages.append(message)
        if not internal:
            conv.message_count += 1
            for username in conv.participants:
                if self.forwarding.get(username) and (
                    self.quirks.notifies_sender or sender is None or username != sender.username
                ):
                    self.forwarded.append((username, conv.uid))
        conv.last_sender = sender
        conv.last_message = conv.last_updated = now
        return message

    def _backdate(self, conv: Conversation, ms: int, step: int = 1000) -> None:
        """Date a conversation from ``ms`` on: created then, its messages ``step`` ms apart."""
        conv.created = ms
        for j, message in enumerate(conv.messages):
            message.created = message.last_updated = ms + j * step
        conv.last_message = conv.last_updated = conv.messages[-1].created if conv.messages else ms
        self._tick()  # the lists' caches see the change

    def _mark_replied(self, conv: Conversation, sender: SeedUser, internal: bool) -> None:
        for username, p in conv.participants.items():
            if username == sender.username:
                continue
            if not internal or self._is_feedback_manager(p.user):
                p.read = False

    def _new_file(
        self,
        owner: SeedUser | None,
        data: bytes,
        name: str,
        content_type: str,
        domain: str,
        uid: str | None = None,
    ) -> FileResource:
        if uid is None:
            uid = self._uid()
        else:
            self._used_uids.add(uid)
        now = self._tick()
        f = FileResource(uid, name, content_type, data, domain, owner, now, now)
        self.files[f.uid] = f
        return f

    # -- permissions (DHIS2 2.41.3+/2.42) ----------------------------------

    def _in_feedback_group(self, user: SeedUser) -> bool:
        group = self.groups.get(self.feedback_group_uid)
        return group is not None and user.username in group.members

    def _is_feedback_manager(self, user: SeedUser) -> bool:
        return "ALL" in user.authorities or self._in_feedback_group(user)

    def _forbidden(self, message: str, old_style: bool = False) -> Fail:
        """A 403 as the release writes it.

        An AccessDeniedException is a WebMessage without errorCode; ``participant_check``
        brings ForbiddenException (E1006), except on GET /{uid}, internal replies and
        follow-ups (``old_style``), which ``forbidden_e1006_everywhere`` converts too.
        """
        if old_style:
            coded = self.quirks.forbidden_e1006_everywhere
        else:
            coded = self.quirks.participant_check
        return forbidden(message) if coded else Fail(web_message(403, message))

    def _check_path_uid(self, uid: str) -> None:
        """``typed_uid_path``: the path variable is a UID, and a malformed one is a 400."""
        if self.quirks.typed_uid_path and not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9]{10}", uid):
            raise Fail(
                web_message(
                    400,
                    f"Value '{uid}' is not valid for parameter uid. UID must be an alphanumeric "
                    f"string of 11 characters starting with a letter, but was: {uid}",
                )
            )

    def _check_acting_for(self, req: Request, target: SeedUser, message: str) -> None:
        """Without ``acting_for_others``, acting for another user needs a superuser
        (canModifyUserConversation)."""
        assert req.user is not None
        if (
            not self.quirks.acting_for_others
            and target is not req.user
            and "ALL" not in req.user.authorities
        ):
            raise Fail(web_message(403, message))

    def _can_read(self, conv: Conversation, user: SeedUser) -> bool:
        return user.username in conv.participants or "ALL" in user.authorities

    def _has_access(self, conv: Conversation, user: SeedUser) -> bool:
        return self._can_read(conv, user) or (
            conv.message_type == "TICKET" and self._is_feedback_manager(user)
        )

    # -- the HTTP side: called by the request handler ----------------------

    def _admit(self, req: Request) -> Fault | None:
        """Log the request (before anything else happens) and pick the fault to apply, if any."""
        with self._lock:
            req.user = self._authenticate(req, create_session=False)[0]
            self.log.append(
                LoggedRequest(
                    req.method,
                    req.raw_path,
                    req.query,
                    req.params,
                    req.headers,
                    req.body,
                    req.user.username if req.user else None,
                )
            )
            for fault in self._faults:
                if fault.matches(req.method, req.raw_path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _process(self, req: Request, fault: Fault) -> Response:
        """A fault's ``process``: run the handler now, or when ``commit_after`` requests came."""
        if fault.commit_after <= 0:
            return self._handle(req)
        with self._lock:
            self._deferred.append([fault.commit_after, req])
        return Response(200)

    def _commit_deferred(self) -> None:
        """Called as each request arrives: run the deferred work that is due."""
        if not self._deferred:
            return
        with self._lock:
            for entry in self._deferred:
                entry[0] -= 1
            due = [req for count, req in self._deferred if count <= 0]
            self._deferred = [entry for entry in self._deferred if entry[0] > 0]
        for req in due:
            self._handle(req)

    def _handle(self, req: Request) -> Response:
        """Authenticate, route and run one API request under the lock."""
        with self._lock:
            try:
                response = self._route(req)
            except Fail as failure:
                response = failure.response
            except Exception:  # noqa: BLE001 - an emulator bug: answer 500, keep the traceback for tests
                self.errors.append(traceback.format_exc())
                response = web_message(500, f"Emulator error: {sys.exc_info()[1]}")
            if req.set_cookie:
                response.headers.append(("Set-Cookie", req.set_cookie))
            return response

    def _route(self, req: Request) -> Response:
        path = req.raw_path
        if self.quirks.parameter_limit and len(req.params) > MAX_PARAMETERS:
            return html_page(
                400,
                "More than the maximum number of request parameters (GET plus POST) for a "
                f"single request ([{MAX_PARAMETERS}]) were detected. Any parameters beyond this "
                "limit have been ignored. To change this limit, set the maxParameterCount "
                "attribute on the Connector.",
            )
        if path in ("/login", "/login/"):
            return Response(
                200,
                b"<!doctype html><html><head><title>DHIS2</title></head><body>"
                b"<h1>Log in</h1></body></html>",
                HTML_TYPE,
            )
        match = re.match(r"^/api(?:/(\d+))?(/.*)$", path)
        target: tuple[str, tuple[str, ...]] | None = None
        public = False
        if match and (match.group(1) is None or int(match.group(1)) in API_VERSIONS):
            if match.group(1):
                req.api_prefix = "/api/" + match.group(1)
            req.path = match.group(2)
            # One trailing slash is the same path, on every release: Spring 5.3 matches it by
            # default (useTrailingSlashMatch, 2.38-2.41), 2.42 and 2.43 turn that back on for
            # Spring 6 (WebMvcConfig.java:269@2.42, :241@2.43), and master strips the slash
            # itself (CustomRequestMappingHandlerMapping.java:100-156,192-194@master).  Spring
            # Security's permitAll list holds Ant patterns without the slash
            # (DhisWebApiWebSecurityConfig.java:362@2.42), so such a path needs credentials.
            slashed = len(req.path) > 1 and req.path.endswith("/")
            target = self._find_route(
                req.method if req.method != "HEAD" else "GET",
                req.path[:-1] if slashed else req.path,
            )
            public = target is not None and target[0] in _PUBLIC and not slashed
        if not public:
            user, error = self._authenticate(req, create_session=True)
            if error is not None:
                return error
            req.user = user
        if target is None:
            return html_page(404, f"No endpoint {req.method} {path}.")
        return getattr(self, "_h_" + target[0])(req, *target[1])

    @staticmethod
    def _find_route(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
        for route_method, pattern, name in _ROUTES:
            if route_method == method:
                m = pattern.fullmatch(path)
                if m:
                    return name, tuple(urllib.parse.unquote(g) for g in m.groups())
        return None

    def _authenticate(
        self, req: Request, create_session: bool
    ) -> tuple[SeedUser | None, Response | None]:
        header = (req.headers.get("Authorization") or "").strip()
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                decoded = ""
            username, _, password = decoded.partition(":")
            user = self.users.get(username)
            if user is None or user.password != password:
                return None, web_message(401, "Unauthorized")
            if create_session and self._session_user(req) is not user:
                session = uuid.uuid4().hex.upper()
                self._sessions[session] = user.username
                req.set_cookie = f"JSESSIONID={session}; Path=/; HttpOnly"
            return user, None
        if header[:8].lower() == "apitoken":
            match = API_TOKEN_RE.match(header)
            challenge = [("WWW-Authenticate", "ApiToken")]
            if not match:
                return None, web_message(400, "Api token is malformed", headers=challenge)
            user = self._tokens.get(match.group("token"))
            if user is None:
                return None, web_message(401, "The API token does not exists", headers=challenge)
            return user, None
        session_user = self._session_user(req)
        if session_user is not None:
            return session_user, None
        if (req.headers.get("X-Requested-With") or "") == "XMLHttpRequest":
            return None, web_message(401, "Unauthorized")
        return None, Response(302, b"", None, [("Location", req.origin + "/login/")])

    def _session_user(self, req: Request) -> SeedUser | None:
        cookies = req.headers.get("Cookie") or ""
        for piece in cookies.split(";"):
            name, _, value = piece.strip().partition("=")
            if name == "JSESSIONID" and value in self._sessions:
                return self.users.get(self._sessions[value])
        return None

    def _control(self, method: str, path: str, query: str) -> Response:
        """The benchmark control API under /__emulator__/ (no auth, not logged)."""
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        if method == "POST" and path == "/__emulator__/reset":
            self.reset()
            return json_response(200, {"status": "OK"})
        if method == "POST" and path == "/__emulator__/clear-log":
            self.clear_log()
            return json_response(200, {"status": "OK"})
        if method == "GET" and path == "/__emulator__/stats":
            with self._lock:
                return json_response(200, {"requests": len(self.log)})
        if method == "POST" and path == "/__emulator__/conversations":
            try:
                uids = self.add_conversations(
                    int(params.get("n", "1")),
                    sender=params.get("sender", "admin"),
                    recipients=[r for r in params.get("recipients", "alice").split(",") if r],
                    subject_prefix=params.get("subject_prefix", "Conversation"),
                    messages=int(params.get("messages", "1")),
                )
            except (KeyError, ValueError) as err:
                return json_response(400, {"message": str(err)})
            return json_response(200, uids)
        if method == "POST" and path == "/__emulator__/org-units":
            try:
                uids = self.add_org_unit_tree(
                    params.get("parent", BO_DISTRICT),
                    depth=int(params.get("depth", "1")),
                    children=int(params.get("children", "2")),
                    users=int(params.get("users", "1")),
                )
            except (KeyError, ValueError) as err:
                return json_response(400, {"message": str(err)})
            return json_response(200, uids)
        return json_response(404, {"message": "unknown control endpoint"})

    # -- handlers: GET -----------------------------------------------------

    def _href_base(self, req: Request) -> str:
        return req.api_url("/messageConversations/")

    def _h_list(self, req: Request) -> Response:
        user = req.user
        assert user is not None
        fields = req.fields("id,displayName")
        paging = _bool_param(req, "paging", True)
        page = _int_param(req, "page", 1)
        page_size = max(1, _int_param(req, "pageSize", 50))
        has_query = req.has("query")
        query = req.first("query") or ""
        query_string = (req.first("queryString") or "").strip()
        query_operator = req.first("queryOperator") or "token"
        if query_string and not has_query and query_operator not in FILTER_OPERATORS:
            raise Fail(web_message(409, f"`{query_operator}` is not a valid operator."))
        filters = self._filter_params(req)
        compiled = [self._compile_filter(f, equal_dates=self.quirks.date_equality) for f in filters]
        junction = req.junction()
        orders = self._order_params(req)
        ctx = Ctx(
            user,
            self._href_base(req),
            self.quirks,
            show_internal=True,
            in_list=True,
            own_entry_only=not has_query,
        )
        # "Only my conversations" is one more filter (an id:in from the pre-query), so
        # rootJunction=OR ORs it away; before, the list starts from the caller's conversations.
        or_lifts_inbox = junction is any and self.quirks.or_lifts_inbox and bool(compiled)

        if self._cache_version != self._version:
            self._list_cache = {}
            self._cache_version = self._version
        key = (
            user.username,
            has_query,
            query,
            query_string,
            query_operator,
            tuple(filters),
            junction is any,
            tuple(orders),
        )
        result = self._list_cache.get(key)
        if result is None:
            result = self._sorted_by_uid()
            if or_lifts_inbox and not has_query:
                result = [
                    c
                    for c in result
                    if user.username in c.participants or any(f(c, ctx) for f in compiled)
                ]
                compiled = []
            if not has_query and not or_lifts_inbox:  # skipped when query= is present
                result = [c for c in result if user.username in c.participants]
                if query_string:
                    result = [
                        c
                        for c in result
                        if self._matches_query(c, query_string, query_operator, ctx)
                    ]
            elif query:
                q = query.lower()
                result = [c for c in result if c.uid == query or q in (c.subject or "").lower()]
            if compiled:
                result = [c for c in result if junction(f(c, ctx) for f in compiled)]
            else:
                result = list(result)
            result = apply_orders(result, orders, ctx)
            if len(self._list_cache) > 32:
                self._list_cache.clear()
            self._list_cache[key] = result

        total = len(result)
        if not paging:
            return json_response(
                200,
                {"messageConversations": [render("conversation", c, fields, ctx) for c in result]},
                [NO_CACHE],
            )
        items, shown, page_count = _page(result, page, page_size)
        links = self._pager_links(req, shown, page_size, page_count)
        rows = [render("conversation", c, fields, ctx) for c in items]
        if self.quirks.gist_bridge and has_query and self._gist_answers(req, filters, orders):
            # master's GistBridge: no pre-query filter when query= is present, and Gist writes
            # its own pager and a "gist" key.
            gist_pager = {"page": shown, "pageSize": page_size, "total": total}
            gist_pager["pageCount"] = page_count
            gist_pager.update(sorted(links.items(), reverse=True))  # prevPage, then nextPage
            body = {"pager": gist_pager, "gist": True, "messageConversations": rows}
            return json_response(200, body, [NO_CACHE])
        pager: dict[str, Any] = {"page": shown, "total": total, "pageSize": page_size}
        pager.update(links)
        pager["pageCount"] = page_count
        body = {"pager": pager, "messageConversations": rows}
        return json_response(200, body, [NO_CACHE])

    @staticmethod
    def _gist_answers(req: Request, filters: list[str], orders: list[str]) -> bool:
        """GistBridge.isSupportedObjectList, for what the emulator renders."""
        if req.has("gist"):
            return (req.first("gist") or "").lower() == "true"
        names = [name for name, _ in req.fields()]
        props = TYPES["conversation"]
        return (
            bool(names)
            and all(n in props and props[n].kind != "embedded" for n in names)
            and not any("token" in f or "display" in f for f in filters)
            and not any(o.lower().split(":")[-1] in ("iasc", "idesc") for o in orders)
        )

    def _sorted_by_uid(self) -> list[Conversation]:
        version, ordered = self._uid_order
        if version != self._version or len(ordered) != len(self.conversations):
            ordered = sorted(self.conversations.values(), key=lambda c: c.uid)
            self._uid_order = (self._version, ordered)
        return ordered

    def _matches_query(self, conv: Conversation, query: str, operator: str, ctx: Ctx) -> bool:
        """queryString: subject, messages.text, messages.sender.displayName, OR-ed, case-insensitive."""
        values: list[Any] = [conv.subject]
        values.extend(m.text for m in conv.messages)
        values.extend(m.sender.display_name for m in conv.messages if m.sender is not None)
        q = query.lower()
        for value in values:
            if value is None:
                continue
            if operator == "token":
                if _token_match(value, q):
                    return True
            elif _compare(operator, str(value).lower(), _parse_arg("str", q), q):
                return True
        return False

    @staticmethod
    def _pager_links(
        req: Request,
        page: int,
        page_size: int,
        page_count: int,
        collection: str = "/messageConversations",
    ) -> dict[str, str]:
        """DHIS2's DefaultLinkService: absolute links, other parameters appended URL-encoded."""
        endpoint = req.api_url(collection)
        grouped: dict[str, list[str]] = {}
        for k, v in req.params:
            if k not in ("page", "pageSize"):
                grouped.setdefault(k, []).append(v)
        encode = functools.partial(urllib.parse.quote_plus, safe="*")
        others = "&".join(f"{encode(k)}={encode(v)}" for k, vs in grouped.items() for v in vs)
        others = others.replace("~", "%7E")
        size = "" if page_size == 50 else f"pageSize={page_size}"

        def link(target: int) -> str:
            pieces = [f"page={target}"] if target > 1 else []
            pieces += [piece for piece in (size, others) if piece]
            return endpoint + ("?" + "&".join(pieces) if pieces else "")

        links = {}
        if page < page_count:
            links["nextPage"] = link(page + 1)
        if page > 1:
            links["prevPage"] = link(page - 1)
        return links

    def _h_get(self, req: Request, uid: str) -> Response:
        user = req.user
        assert user is not None
        self._check_path_uid(uid)
        conv = self.conversations.get(uid)
        if conv is None:
            message = {"message": "No MessageConversation found with UID: " + uid}
            # It sets 404, then returns ResponseEntity.ok(...): the client sees 200.  Before,
            # the RootNode was returned and the 404 stood.
            return json_response(200 if self.quirks.unknown_uid_200 else 404, message)
        if not self._can_read(conv, user):
            raise self._forbidden("Not authorized to access this conversation.", old_style=True)
        fields = req.fields("*")
        ctx = Ctx(
            user, self._href_base(req), self.quirks, show_internal=self._is_feedback_manager(user)
        )
        mark_read = req.first("markRead") or ""
        # Boolean.parseBoolean, or "true" exactly
        if mark_read == "true" or (not self.quirks.mark_read_exact and mark_read.lower() == "true"):
            p = conv.participants.get(user.username)
            ctx.read_override = p.read if p else False  # the answer shows the value before marking
            if p is not None:
                p.read = True
                self._touch(conv)
        return json_response(200, render("conversation", conv, fields, ctx), [NO_CACHE])

    def _h_system_info(self, req: Request) -> Response:
        # SystemController.getSystemInfo: any logged-in user; fields=version gives {"version": ...}
        hours = self.utc_offset / 3600
        info = {
            "version": self.version,
            "revision": "emulator",
            "serverDate": format_date(self.now_ms()),  # new Date(), in the server's zone
            # POSIX zone names count the other way: UTC+3 is Etc/GMT-3.
            "serverTimeZoneId": f"Etc/GMT{-hours:+g}" if hours else "Etc/UTC",
        }
        fields = req.fields("*")
        wanted = [name for name, _ in fields]
        if "*" not in wanted and ":all" not in wanted:
            info = {k: v for k, v in info.items() if k in wanted}
        return json_response(200, info, [("Cache-Control", "no-store")])

    def _h_me(self, req: Request) -> Response:
        # MeController.getCurrentUser: the caller, through the field filter (fields=id: {"id"})
        user = req.user
        assert user is not None
        me = {
            "id": user.uid,
            "username": user.username,
            "firstName": user.first_name,
            "surname": user.surname,
            "name": user.display_name,
            "displayName": user.display_name,
        }
        wanted = [name for name, _ in req.fields("*")]
        if "*" not in wanted and ":all" not in wanted:
            me = {k: v for k, v in me.items() if k in wanted}
        return json_response(200, me)

    def _h_download(self, req: Request, mc: str, msg: str, file_uid: str) -> Response:
        user = req.user
        assert user is not None
        conv = self.conversations.get(mc)
        if conv is None:
            raise Fail(web_message(404, f"No message conversation with uid '{mc}'"))
        if not self._can_read(conv, user):
            raise forbidden("Not authorized to access this conversation.")
        message = next((m for m in conv.messages if m.uid == msg), None)
        if message is None:
            raise Fail(
                web_message(404, f"No message with uid '{msg}' in messageConversation '{mc}")
            )
        if message.internal and not self._in_feedback_group(user):
            raise Fail(web_message(409, "Not authorized to access this message"))
        f = next((a for a in message.attachments if a.uid == file_uid), None)
        if f is None:
            raise Fail(web_message(404, f"No messageattachment found with id '{file_uid}'"))
        if f.domain != "MESSAGE_ATTACHMENT":
            raise Fail(web_message(409, "Invalid messageattachment."))
        return Response(
            200,
            f.data,
            f.content_type,
            [
                ("Content-Disposition", "filename=" + f.name),
                NO_CACHE,
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Security-Policy", "frame-ancestors 'self'"),
            ],
        )

    def _file_or_404(self, uid: str) -> FileResource:
        f = self.files.get(uid)
        if f is None:
            raise Fail(
                web_message(
                    404, f"FileResource with id {uid} could not be found.", error_code="E1005"
                )
            )
        return f

    def _h_file_metadata(self, req: Request, uid: str) -> Response:
        f = self._file_or_404(uid)
        fields = req.fields("*")
        return json_response(200, render("file", f, fields, Ctx(req.user, "", self.quirks)))

    def _h_file_data(self, req: Request, uid: str) -> Response:
        f = self._file_or_404(uid)
        return Response(
            200, f.data, f.content_type, [("Content-Disposition", "filename=" + f.name)]
        )

    # -- handlers: finding recipients --------------------------------------

    def _lookup(self, req: Request, candidates: Iterable[SeedUser]) -> Response:
        """UserLookupController: a LIKE '%query%' on name, email and username, 25 at most."""
        query = req.first("query")
        if query is None:
            raise missing_param("query")
        # HibernateUserStore: the value is wrapped in % and not escaped, so % and _ in
        # the query are LIKE wildcards (and a backslash escapes the next character).
        pattern = re.compile(
            ".*"
            + "".join(
                ".*" if piece == "%" else "." if piece == "_" else re.escape(piece[-1])
                for piece in re.findall(r"\\.|[%_]|[^%_\\]", query.lower(), re.DOTALL)
            )
            + ".*",
            re.DOTALL,
        )
        found = [
            u
            for u in candidates
            if any(
                value is not None and pattern.fullmatch(value)
                for value in (
                    u.first_name.lower() + " " + u.surname.lower(),
                    u.email.lower() if u.email else None,
                    u.username.lower(),
                )
            )
        ]
        found.sort(key=lambda u: (_collation_key(u.surname), _collation_key(u.first_name), u.uid))
        users = [
            {
                "id": u.uid,
                "username": u.username,
                "firstName": u.first_name,
                "surname": u.surname,
                "displayName": u.display_name,
            }
            for u in found[:25]
        ]
        return json_response(200, {"users": users})

    def _h_user_lookup(self, req: Request) -> Response:
        caller = req.user
        assert caller is not None
        candidates: Iterable[SeedUser] = self.users.values()
        # An unknown value is ignored, and so is every value without ``lookup_boundary``.
        boundary = (
            (req.first("orgUnitBoundary") or "").upper() if self.quirks.lookup_boundary else ""
        )
        if boundary == "DATA_CAPTURE":
            own = {u.uid for u in self.org_units.values() if caller.username in u.members}
        elif boundary == "DATA_OUTPUT":
            own = set(caller.view_units)
        elif boundary == "TEI_SEARCH":
            own = set(caller.search_units)
        else:
            own = set()
        if own:  # users assigned to exactly the caller's units, not to units below them
            if boundary == "DATA_CAPTURE":
                assigned = {n for uid in own for n in self.org_units[uid].members}
                candidates = [u for u in candidates if u.username in assigned]
            else:
                views = "view_units" if boundary == "DATA_OUTPUT" else "search_units"
                candidates = [u for u in candidates if own & set(getattr(u, views))]
        return self._lookup(req, candidates)

    def _h_feedback_recipients(self, req: Request) -> Response:
        group = self.groups.get(self.feedback_group_uid) if self.feedback_group_uid else None
        if group is None:
            raise conflict("Feedback message recipients user group not defined", "E6200")
        return self._lookup(req, group.member_users)

    def _can_see_group(self, group: Group, user: SeedUser) -> bool:
        """Sharing: public read, the owner, or a superuser."""
        return group.public or group.owner == user.username or "ALL" in user.authorities

    def _h_user_groups(self, req: Request) -> Response:
        user = req.user
        assert user is not None
        groups = [g for g in self.groups.values() if self._can_see_group(g, user)]
        return self._metadata_list(req, "userGroup", "userGroups", groups)

    def _h_org_units(self, req: Request) -> Response:
        # Organisation units are not shared objects: every logged-in user sees every unit.
        return self._metadata_list(
            req, "organisationUnit", "organisationUnits", self.org_units.values()
        )

    def _metadata_list(
        self, req: Request, type_name: str, plural: str, objects: Iterable[Any]
    ) -> Response:
        """A generic metadata list: fields, filter, rootJunction, order, page, pageSize, paging."""
        user = req.user
        assert user is not None
        ctx = Ctx(user, req.api_url(f"/{plural}/"), self.quirks)
        fields = req.fields("id,displayName")
        paging = _bool_param(req, "paging", True)
        page = _int_param(req, "page", 1)
        page_size = _int_param(req, "pageSize", 50)
        compiled = [self._compile_filter(f, type_name) for f in self._filter_params(req)]
        junction = req.junction()
        result = [o for o in objects if not compiled or junction(f(o, ctx) for f in compiled)]
        result = _metadata_order(result, type_name, self._order_params(req))
        if not paging:
            return json_response(200, {plural: [render(type_name, o, fields, ctx) for o in result]})
        total = len(result)
        page_size = max(1, page_size)
        rows, shown, page_count = _page(result, page, page_size)
        pager: dict[str, Any] = {"page": shown, "total": total, "pageSize": page_size}
        pager["pageCount"] = page_count
        pager.update(self._pager_links(req, shown, page_size, page_count, "/" + plural))
        return json_response(
            200, {"pager": pager, plural: [render(type_name, o, fields, ctx) for o in rows]}
        )

    def _filter_params(self, req: Request) -> list[str]:
        values = req.all("filter")
        if not self.quirks.resplits_filters or not values:
            return values
        # GetObjectListParams.setFilter: Spring joins the filter parameters with commas,
        # then splitFilters cuts them apart again, so a value ends at a comma.
        joined = ",".join(values)
        if "," not in joined:
            return [joined] if joined else []
        return [m.group() for m in _FILTER_PARTS.finditer(joined)]

    def _compile_filter(
        self, expr: str, type_name: str = "conversation", equal_dates: bool = True
    ) -> Callable[[Any, Ctx], bool]:
        return compile_filter(
            expr,
            type_name,
            rejoins_value=self.quirks.resplits_filters,
            utc_offset_ms=int(self.utc_offset * 1000),
            equal_dates=equal_dates,
        )

    def _order_params(self, req: Request) -> list[str]:
        return [o for value in req.all("order") for o in value.split(",") if o.strip()]

    # -- handlers: creating things -----------------------------------------

    def _created(self, req: Request, uid: str, message: str) -> Response:
        return web_message(
            201, message, headers=[("Location", req.api_url("/messageConversations/" + uid))]
        )

    def _conflict(self, message: str) -> Fail:
        """A ConflictException (E1004), or before ``typed_errors`` WebMessageUtils.conflict."""
        return conflict(message, "E1004" if self.quirks.typed_errors else None)

    def _resolve_recipients(self, dto: dict[str, Any], sender: SeedUser) -> dict[str, SeedUser]:
        """Org units, then users, then groups, as DHIS2 resolves them (first failure wins).

        An org unit brings only the users assigned to that exact unit, never those below it.
        A group the sender may not see (sharing) is not found.
        """
        recipients: dict[str, SeedUser] = {}
        for ou_id in dto["organisationUnits"]:
            unit = self.org_units.get(ou_id) if ou_id is not None else None
            if unit is None:
                raise self._conflict(f"Organisation Unit does not exist: {ou_id}")
            for username in unit.members:
                recipients.setdefault(username, self.users[username])
        for user_id in dto["users"]:
            user = self._users_by_uid.get(user_id) if user_id is not None else None
            if user is None:
                raise self._conflict(f"User does not exist: {user_id}")
            recipients.setdefault(user.username, user)
        for group_id in dto["userGroups"]:
            group = self.groups.get(group_id) if group_id is not None else None
            if group is None or not self._can_see_group(group, sender):
                if not self.quirks.typed_errors:
                    raise Fail(web_message(404, f"User Group does not exist: {group_id}"))
                raise Fail(
                    web_message(
                        404, f"UserGroup with id {group_id} could not be found.", error_code="E1005"
                    )
                )
            for username in group.members:
                recipients.setdefault(username, self.users[username])
        return recipients

    def _take_attachments(
        self, ids: Iterable[str | None], error_code: str | None
    ) -> list[FileResource]:
        """Check and assign attachments one by one (earlier ones stay consumed on failure)."""
        taken = []
        for file_id in ids:
            f = self.files.get(file_id) if file_id is not None else None
            if f is None:
                raise conflict(f"Attachment '{file_id}' not found.", error_code)
            if f.domain != "MESSAGE_ATTACHMENT" or f.assigned:
                raise conflict(
                    f"Attachment '{file_id}' is already used or not a valid attachment.", error_code
                )
            f.assigned = True
            f.last_updated = self._tick()
            taken.append(f)
        return taken

    def _h_create(self, req: Request) -> Response:
        user = req.user
        assert user is not None
        media = req.content_type()
        if media in ("application/xml", "text/xml") and not self.quirks.no_xml_create:
            return self._create(req, parse_conversation_xml(req.body))  # postXmlObject
        if media != "application/json":
            raise _unsupported_media(req)
        try:
            dto = parse_conversation_dto(req.body)
        except JacksonError as err:
            raise Fail(web_message(409, str(err))) from None
        return self._create(req, dto)

    def _create(self, req: Request, dto: dict[str, Any]) -> Response:
        user = req.user
        assert user is not None
        recipients = self._resolve_recipients(dto, user)
        if not recipients:
            raise self._conflict("No recipients selected.")
        attachments = self._take_attachments(dto["attachments"], "E1004")
        if dto["subject"] is None:  # a NOT NULL column in DHIS2's database
            raise Fail(
                web_message(
                    409,
                    'ERROR: null value in column "subject" of relation '
                    '"messageconversation" violates not-null constraint',
                )
            )
        conv = self._new_conversation(dto["subject"], "PRIVATE", user, recipients.values())
        self._append(
            conv,
            user,
            dto["text"],
            user_agent=req.headers.get("User-Agent"),
            attachments=attachments,
        )
        return self._created(req, conv.uid, "Message conversation created")

    def _text_body(self, req: Request) -> str:
        if not req.body:
            raise Fail(web_message(400, "Required request body is missing"))
        return req.body.decode("utf-8", errors="replace")

    def _h_reply(self, req: Request, uid: str) -> Response:
        user = req.user
        assert user is not None
        text = self._text_body(req)
        internal = _bool_param(req, "internal", False)
        attachment_ids = [a for a in req.listing("attachments") if a != ""]
        conv = self.conversations.get(uid)
        if conv is None:
            raise Fail(web_message(404, "Message conversation does not exist: " + uid))
        if internal and not self._is_feedback_manager(user):
            raise self._forbidden("Not authorized to send internal messages", old_style=True)
        self._check_all(req, [conv], "Not authorized to send messages to this conversation.")
        attachments = self._take_attachments(attachment_ids, None)
        self._append(
            conv,
            user,
            text,
            internal=internal,
            user_agent=req.headers.get("User-Agent"),
            attachments=attachments,
        )
        self._mark_replied(conv, user, internal)
        return self._created(req, conv.uid, "Message conversation created")

    def _h_feedback(self, req: Request) -> Response:
        user = req.user
        assert user is not None
        subject = req.first("subject")
        if subject is None:
            raise missing_param("subject")
        text = self._text_body(req)
        group = self.groups.get(self.feedback_group_uid)
        managers = [self.users[name] for name in group.members] if group else []
        conv = self._new_conversation(subject, "TICKET", user, managers, status="OPEN")
        self._append(conv, user, text, user_agent=req.headers.get("User-Agent"))
        if not self.quirks.feedback_location:  # created("Feedback created"), no Location
            return web_message(201, "Feedback created")
        return self._created(req, conv.uid, "Feedback created")

    def _h_upload(self, req: Request) -> Response:
        user = req.user
        assert user is not None
        domain_value = req.first("domain")
        domain = "DATA_VALUE"
        if domain_value:
            if domain_value.upper() not in DOMAINS:
                raise bad_enum(domain_value, "domain", DOMAINS)
            domain = domain_value.upper()
        content_type = req.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/"):
            raise Fail(html_page(400, "Current request is not a multipart request"))
        part = next(
            (p for p in parse_multipart(content_type, req.body) if p[1].get("name") == "file"), None
        )
        if part is None:
            raise Fail(html_page(400, "Required part 'file' is not present."))
        headers, params, data = part
        if not data:
            raise conflict("Could not read file or file is empty.", None)
        if self.quirks.upload_size_limit and len(data) > MAX_UPLOAD_SIZE:
            raise conflict(
                f"File size can't be bigger than {MAX_UPLOAD_SIZE}, current file size {len(data)}",
                None,
            )
        wanted_uid = req.first("uid")
        if wanted_uid and wanted_uid in self.files:
            raise conflict(f"FileResource already exists: `{wanted_uid}`", "E1119")
        part_type = headers.get("content-type", "").strip()
        if not re.match(r"^[\w.+-]+/[\w.+-]+", part_type):
            part_type = "application/octet-stream"
        f = self._new_file(
            user, data, params.get("filename") or "untitled", part_type, domain, wanted_uid or None
        )
        rendered = render("file", f, ALL_FIELDS, Ctx(user, "", self.quirks))
        return web_message(202, response={"responseType": "FileResource", "fileResource": rendered})

    def _h_login(self, req: Request) -> Response:
        try:
            data = json.loads(req.body.decode("utf-8") or "{}")
        except ValueError:
            raise Fail(web_message(400, "JSON parse error")) from None
        user = self.users.get(str(data.get("username"))) if isinstance(data, dict) else None
        if user is None or user.password != data.get("password"):
            raise Fail(web_message(401, "Bad credentials"))
        session = uuid.uuid4().hex.upper()
        self._sessions[session] = user.username
        return json_response(
            200,
            {"loginStatus": "SUCCESS", "redirectUrl": req.origin + "/dhis-web-dashboard/"},
            [("Set-Cookie", f"JSESSIONID={session}; Path=/; HttpOnly")],
        )

    # -- handlers: changing things -----------------------------------------

    def _json_body(self, req: Request) -> Any:
        """A Spring @RequestBody read as JSON (415 / 400 WebMessages on trouble)."""
        media = req.content_type()
        if not req.body and not media:
            raise Fail(web_message(400, "Required request body is missing"))
        if not _is_json_type(media):
            raise _unsupported_media(req)
        if not req.body:
            raise Fail(web_message(400, "Required request body is missing"))
        text = req.body.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise Fail(web_message(400, "JSON parse error: " + _json_error(text, err))) from None

    def _uid_list_body(self, req: Request) -> list[str]:
        data = self._json_body(req)
        if not isinstance(data, list) or any(isinstance(v, (dict, list)) for v in data):
            raise Fail(
                web_message(
                    400,
                    "JSON parse error: Cannot deserialize value of type "
                    "`java.util.ArrayList<java.lang.String>` from Object value "
                    "(token `JsonToken.START_OBJECT`)",
                )
            )
        return [
            "true" if v is True else "false" if v is False else str(v)
            for v in data
            if v is not None
        ]

    def _target_user(self, req: Request, param: str, message: str) -> SeedUser:
        uid = req.first(param)
        if uid is None:
            assert req.user is not None
            return req.user
        user = self._users_by_uid.get(uid)
        if user is None:
            raise Fail(bare(404, message % uid))
        return user

    def _found(self, uids: Iterable[str]) -> list[Conversation]:
        seen, found = set(), []
        for uid in uids:
            conv = self.conversations.get(uid)
            if conv is not None and uid not in seen:
                seen.add(uid)
                found.append(conv)
        return found

    def _check_all(
        self, req: Request, convs: Iterable[Conversation], message: str, old_style: bool = False
    ) -> None:
        assert req.user is not None
        if not self.quirks.participant_check:
            return
        for conv in convs:
            if not self._has_access(conv, req.user):
                raise self._forbidden(message, old_style)

    def _set_read(
        self, req: Request, convs: list[Conversation], target: SeedUser, read: bool
    ) -> Response:
        self._check_all(req, convs, "Not authorized to change read property of this conversation.")
        changed = []
        for conv in convs:
            p = conv.participants.get(target.username)
            if p is not None and p.read != read:
                p.read = read
                self._touch(conv)
                changed.append(conv.uid)
        return json_response(200, {"markedRead" if read else "markedUnread": changed})

    def _acting_on(
        self, req: Request, param: str, uids: Iterable[str], not_found: str
    ) -> tuple[SeedUser, list[Conversation]]:
        """The user named by ``param`` (the caller by default) and the conversations found."""
        target = self._target_user(req, param, "No user with uid: %s")
        self._check_acting_for(req, target, "Not authorized to modify this object.")
        convs = self._found(uids)
        if not convs:
            raise Fail(bare(404, not_found))
        return target, convs

    def _h_bulk_read(self, req: Request, which: str) -> Response:
        uids = self._uid_list_body(req)
        target, convs = self._acting_on(
            req, "user", uids, "No MessageConversations found for the given IDs."
        )
        return self._set_read(req, convs, target, which == "read")

    def _h_single_read(self, req: Request, uid: str, which: str) -> Response:
        target, convs = self._acting_on(
            req, "userUid", [uid], "No MessageConversations found for the given IDs."
        )
        return self._set_read(req, convs, target, which == "read")

    def _h_bulk_follow_up(self, req: Request, which: str) -> Response:
        uids = self._uid_list_body(req)
        target, convs = self._acting_on(
            req, "user", uids, "No MessageConversations found for the given UIDs"
        )
        follow = which == "followup"
        self._check_all(
            req,
            convs,
            "Not authorized to change %s in this conversation."
            % ("followups" if follow else "unfollowups"),
            old_style=follow,  # 2.41.3 still throws AccessDeniedException for followup
        )
        for conv in convs:
            p = conv.participants.get(target.username)
            if p is not None and p.follow_up != follow:
                p.follow_up = follow
                self._touch(conv)
        return json_response(
            200, {"markedFollowup" if follow else "unmarkedFollowup": [c.uid for c in convs]}
        )

    def _conversation_or_404(self, uid: str) -> Conversation:
        conv = self.conversations.get(uid)
        if conv is None:
            raise Fail(bare(404, "No MessageConversation found for the given ID."))
        return conv

    def _set_enum(self, req: Request, uid: str, attribute: str, valid: tuple[str, ...]) -> Response:
        """POST /{uid}/status or /{uid}/priority: the answer's key is the value set."""
        value = _enum_param(req, "messageConversation" + attribute.capitalize(), valid)
        conv = self._conversation_or_404(uid)
        self._check_all(req, [conv], f"Not authorized to change {attribute} in this conversation.")
        setattr(conv, attribute, value)
        self._touch(conv)
        return json_response(200, {value: [conv.uid]})

    def _h_status(self, req: Request, uid: str) -> Response:
        return self._set_enum(req, uid, "status", STATUSES)

    def _h_priority(self, req: Request, uid: str) -> Response:
        return self._set_enum(req, uid, "priority", PRIORITIES)

    def _h_assign(self, req: Request, uid: str) -> Response:
        conv = self._conversation_or_404(uid)
        self._check_all(req, [conv], "Not authorized to assign a user to this conversation.")
        user_id = req.first("userId")
        assignee = self._users_by_uid.get(user_id) if user_id is not None else None
        if assignee is None:
            raise Fail(bare(404, "Could not find user to assign"))
        if conv.message_type == "TICKET" and not self._in_feedback_group(assignee):
            raise Fail(
                bare(409, "User provided is not a member of the system's feedback recipient group")
            )
        conv.assignee = assignee
        self._touch(conv)
        return bare(200, f"User {assignee.display_name} was assigned successfully")

    def _h_unassign(self, req: Request, uid: str) -> Response:
        conv = self._conversation_or_404(uid)
        self._check_all(
            req, [conv], "Not authorized to remove the assigned user to this conversation."
        )
        conv.assignee = None
        self._touch(conv)
        return bare(200, "Message is no longer assigned to user")

    def _h_recipients(self, req: Request, uid: str) -> Response:
        self._json_body(req)  # 415/400 checks
        try:
            dto = parse_conversation_dto(req.body)
        except JacksonError as err:
            raise Fail(web_message(400, f"JSON parse error: {err}")) from None
        conv = self.conversations.get(uid)
        if conv is None:
            raise Fail(web_message(404, "Message conversation does not exist: " + uid))
        self._check_all(req, [conv], "Not authorized to change recipients in this conversation.")
        assert req.user is not None
        added = False
        for username, user in self._resolve_recipients(dto, req.user).items():
            if username not in conv.participants:
                conv.participants[username] = Participant(user, False, self._key())
                added = True
        if added:
            self._touch(conv)
        return Response(204)

    def _remove(self, conv: Conversation, user: SeedUser) -> bool:
        if conv.participants.pop(user.username, None) is None:
            return False
        self._touch(conv)
        return True

    def _h_remove_participant(self, req: Request, mc: str, user_uid: str) -> Response:
        if req.content_type() == "application/json":
            return self._generic_collection_delete(req, mc, user_uid)
        target = self._users_by_uid.get(user_uid)
        if target is None:
            raise Fail(bare(404, "No user with uid: " + user_uid))
        self._check_acting_for(req, target, "Not authorized to modify user: " + user_uid)
        conv = self.conversations.get(mc)
        if conv is None:
            raise Fail(bare(404, "No messageConversation with uid: " + mc))
        self._check_all(
            req, [conv], "Not authorized to remove assigned users to this conversation."
        )
        return json_response(200, {"removed": [mc] if self._remove(conv, target) else []})

    def _generic_collection_delete(self, req: Request, uid: str, prop: str) -> Response:
        """DELETE /{uid}/{property} with a JSON body: the inherited collection endpoint wins."""
        if uid not in self.conversations:
            raise Fail(
                web_message(
                    404,
                    f"MessageConversation with id {uid} could not be found.",
                    error_code="E1005",
                )
            )
        text = req.body.decode("utf-8", errors="replace")
        if not text.strip():
            raise Fail(
                web_message(
                    409, "No content to map due to end-of-input" + _jackson_location(text, 0)
                )
            )
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            raise Fail(web_message(409, _json_error(text, err))) from None
        raise Fail(
            web_message(
                404,
                f"Property {prop} does not exist on org.hisp.dhis.message.MessageConversation",
                error_code="E1005",
            )
        )

    def _h_remove_batch(self, req: Request) -> Response:
        if not req.has("mc"):
            raise missing_param("mc", "List")
        target = self._target_user(req, "user", "User does not exist: %s")
        self._check_acting_for(req, target, "Not authorized to modify user: " + target.uid)
        convs = self._found(req.listing("mc"))
        if not convs:
            raise Fail(bare(404, "No MessageConversations found for the given UIDs."))
        self._check_all(req, convs, "Not authorized to remove assigned users to this conversation.")
        return json_response(200, {"removed": [c.uid for c in convs if self._remove(c, target)]})

    def _h_hard_delete(self, req: Request, uid: str) -> Response:
        user = req.user
        assert user is not None
        if not {"ALL", "F_METADATA_IMPORT"} & set(user.authorities):
            raise Fail(
                web_message(
                    403, "Access is denied, requires one Authority from [F_METADATA_IMPORT]"
                )
            )
        self._check_path_uid(uid)
        conv = self.conversations.get(uid)
        if conv is None:
            raise Fail(web_message(404, "Message conversation does not exist: " + uid))
        self._check_all(req, [conv], "Not authorized to delete this conversation.")
        del self.conversations[uid]
        self._tick()
        report = {
            "responseType": "ObjectReport",
            "klass": "org.hisp.dhis.message.MessageConversation",
            "uid": uid,
            "errorReports": [],
        }
        return web_message(200, response=report)

    # -- demo data ---------------------------------------------------------

    def seed_demo(self) -> None:
        """The demo world (``--demo``): 35 conversations over the past month, of every
        type, tickets in every status; the admin takes part in all of them (in the demo,
        the admin is also in the feedback recipients group, so tickets reach the admin)."""
        with self._lock:
            self.groups[FEEDBACK_TEAM].members.append("admin")
            now = self._tick()
            for spec in _DEMO_CONVERSATIONS:
                self._seed_one(spec, now)

    def _seed_one(self, spec: tuple[Any, ...], now: int) -> None:
        """One conversation of ``_DEMO_CONVERSATIONS`` (with the lock held)."""
        subject, message_type, status, priority, days, people, messages, read_by, extra = spec
        authors = [self.users[a] if a else None for a, *_ in messages]
        conv = self._new_conversation(
            subject,
            message_type,
            authors[0],
            [self.users[name] for name in self._demo_people(people)],
            status=status,
            priority=priority,
        )
        for author, (_, text, *internal) in zip(authors, messages):
            self._append(
                conv, author, text, internal=bool(internal), user_agent="DHIS2 Web Messaging"
            )
            if author is not None:
                self._mark_replied(conv, author, bool(internal))
        last = authors[-1].username if authors[-1] else None
        for name, p in conv.participants.items():
            p.read = name in read_by or name == last  # one has read what one wrote
            p.follow_up = name in extra.get("follow_up", ())
        conv.assignee = self.users[extra["assignee"]] if "assignee" in extra else None
        conv.ext_message_id = extra.get("version")
        if "file" in extra:
            name, data = extra["file"]
            file = self._new_file(authors[0], data, name, "text/csv", "MESSAGE_ATTACHMENT")
            file.assigned = True
            conv.messages[0].attachments.append(file)
        self._backdate(conv, now - int(days * 86_400_000), step=37 * 60_000)

    def _demo_people(self, people: str) -> list[str]:
        """Usernames, or ``@bo`` (everyone in Bo District and below), ``@feedback``."""
        names: list[str] = []
        for word in people.split():
            if word == "@bo":
                names += [
                    n for u in self.org_units.values() if BO_DISTRICT in u.path for n in u.members
                ]
            elif word == "@feedback":
                names += self.groups[FEEDBACK_TEAM].members
            else:
                names.append(word)
        return names


# The demo world: (subject, type, status, priority, days ago, recipients, messages
# ((author or None for DHIS2 itself, text[, "internal"]), ...), who has read it, extras).
_DEMO_CONVERSATIONS: tuple[tuple[Any, ...], ...] = (
    (
        "Monthly reports due on the 5th",
        "PRIVATE",
        "NONE",
        "NONE",
        20,
        "alice bob dave",
        (
            (
                "admin",
                "Dear Bo District colleagues, please submit the monthly HMIS reports before the 5th.",
            ),
        ),
        {"alice"},
        {},
    ),
    (
        "Mortality data for January",
        "PRIVATE",
        "NONE",
        "NONE",
        12,
        "alice dave admin",
        (
            ("bob", "Have you reported the January mortality data?"),
            ("alice", "Yes, entered yesterday."),
            ("dave", "Ours will be in by Friday."),
        ),
        {"alice", "admin"},
        {},
    ),
    (
        "Stock count on Friday",
        "PRIVATE",
        "NONE",
        "NONE",
        3,
        "@bo",
        (
            (
                "admin",
                "Please count the ORS sachets and zinc tablets on Friday and report by Monday.",
            ),
            ("chw.ngelehun01", "Counted: 140 sachets, 60 zinc."),
            ("aminata", "Ngelehun CHC done."),
        ),
        {"alice", "bob", "aminata", "chw.ngelehun01", "chw.ngelehun02", "ibrahim"},
        {},
    ),
    (
        "Measles campaign microplans",
        "PRIVATE",
        "NONE",
        "HIGH",
        9,
        "admin abu",
        (("fatmata", "The microplans for the measles campaign are due next week."),),
        set(),
        {"follow_up": ("admin",)},
    ),
    (
        "Training venue in Kenema",
        "PRIVATE",
        "NONE",
        "NONE",
        7,
        "admin",
        (("abu", "Is the training still at the district office?"),),
        set(),
        {},
    ),
    (
        "Login problems at Baoma Station CHP",
        "PRIVATE",
        "NONE",
        "NONE",
        1,
        "admin",
        (
            ("mohamed", "Two of our staff cannot log in since Monday."),
            ("mohamed", "It is the same on the tablet and the laptop."),
        ),
        set(),
        {},
    ),
    (
        "Corrected December figures",
        "PRIVATE",
        "NONE",
        "NONE",
        15,
        "admin",
        (("ibrahim", "The corrected December figures for Badjia are attached."),),
        {"admin"},
        {
            "file": (
                "badjia-december.csv",
                b"data element,value\nOPD visits,1204\nANC 1st visit,88\n",
            )
        },
    ),
    (
        "Welcome to the reporting team",
        "PRIVATE",
        "NONE",
        "NONE",
        30,
        "kadiatu sia",
        (("admin", "Welcome! Your accounts can now enter data for your facilities."),),
        {"kadiatu"},
        {},
    ),
    (
        "Generator fuel for the cold chain",
        "PRIVATE",
        "NONE",
        "NONE",
        0.2,
        "admin",
        (("sia", "The generator at Kenema Govt Hospital has fuel for two more days."),),
        set(),
        {"follow_up": ("admin",)},
    ),
    (
        "Data review meeting minutes",
        "PRIVATE",
        "NONE",
        "NONE",
        5,
        "alice abu",
        (
            ("admin", "Minutes of Tuesday's data review are in the shared folder."),
            ("abu", "Thanks, one correction on page 2."),
        ),
        {"alice"},
        {},
    ),
    (
        "Question about the EPI form",
        "PRIVATE",
        "NONE",
        "NONE",
        2,
        "admin",
        (("jose", "Where do we report doses given outside the facility?"),),
        set(),
        {},
    ),
    (
        "Supervision visit",
        "PRIVATE",
        "NONE",
        "NONE",
        25,
        "admin dave",
        (
            ("carol", "The supervision visit to Bo is moved to the 14th."),
            ("admin", "Noted, thank you."),
        ),
        {"dave", "admin"},
        {},
    ),
    (
        "HMIS 105 due",
        "PRIVATE",
        "NONE",
        "NONE",
        4,
        "chw.makeni01 chw.makeni02 chw.makeni03 chw.makeni04 chw.makeni05",
        (("admin", "A reminder: the HMIS 105 is due on Friday."),),
        {"chw.makeni02"},
        {},
    ),
    (
        "Vehicle request for Thursday",
        "PRIVATE",
        "NONE",
        "NONE",
        0.5,
        "admin",
        (("dave", "May I have the district vehicle on Thursday for the outreach?"),),
        set(),
        {},
    ),
    (
        "ORS stock-out at Ngelehun CHC",
        "TICKET",
        "OPEN",
        "HIGH",
        6,
        "@feedback",
        (
            ("alice", "We ran out of ORS sachets last week. Can the district send more?"),
            ("carol", "Checking the store records first.", "internal"),
            ("carol", "A delivery is planned for Thursday."),
        ),
        {"carol"},
        {"assignee": "carol"},
    ),
    (
        "Cannot export the CSV report",
        "TICKET",
        "OPEN",
        "MEDIUM",
        2,
        "@feedback",
        (("dave", "The CSV export of the monthly report times out."),),
        set(),
        {},
    ),
    (
        "Wrong population figure for Badjia",
        "TICKET",
        "PENDING",
        "MEDIUM",
        10,
        "@feedback",
        (
            ("ibrahim", "The 2024 population of Badjia is off by a factor of ten."),
            ("admin", "Asked the statistics office for the census figure.", "internal"),
            ("admin", "We are waiting for the statistics office."),
        ),
        {"admin"},
        {"assignee": "admin"},
    ),
    (
        "Dashboard loads slowly",
        "TICKET",
        "PENDING",
        "LOW",
        14,
        "@feedback",
        (("bob", "The malaria dashboard takes a minute to load."),),
        {"carol"},
        {},
    ),
    (
        "Duplicate facility in the hierarchy",
        "TICKET",
        "SOLVED",
        "HIGH",
        21,
        "@feedback",
        (
            ("aminata", "Ngelehun CHC appears twice in the data entry screen."),
            ("carol", "Merged the two; please check."),
            ("aminata", "Fixed, thank you."),
        ),
        {"carol", "admin", "aminata"},
        {"assignee": "carol"},
    ),
    (
        "Password reset does not arrive",
        "TICKET",
        "SOLVED",
        "LOW",
        28,
        "@feedback",
        (
            ("kadiatu", "I requested a password reset but got no e-mail."),
            ("admin", "Your e-mail address was missing; it is set now."),
        ),
        {"kadiatu", "admin", "carol"},
        {},
    ),
    (
        "Test ticket, please ignore",
        "TICKET",
        "INVALID",
        "NONE",
        18,
        "@feedback",
        (("alice", "Testing the feedback form."),),
        {"carol", "admin"},
        {},
    ),
    (
        "Same as the ORS ticket",
        "TICKET",
        "INVALID",
        "LOW",
        5,
        "@feedback",
        (
            ("mohamed", "ORS is out at Baoma Station CHP too."),
            ("carol", "Covered by the Ngelehun ticket: the same delivery."),
        ),
        {"admin"},
        {},
    ),
    (
        "Suggestion: SMS reminders",
        "TICKET",
        "NONE",
        "LOW",
        8,
        "@feedback",
        (("abu", "Could DHIS2 send SMS reminders before the reporting deadline?"),),
        set(),
        {},
    ),
    (
        "New data element for malaria RDTs",
        "TICKET",
        "NONE",
        "MEDIUM",
        11,
        "@feedback",
        (("fatmata", "We need a data element for RDTs done by community health workers."),),
        {"carol"},
        {},
    ),
    (
        "Validation rule violated: ANC 4th visits > ANC 1st visits at Ngelehun CHC",
        "VALIDATION_RESULT",
        "OPEN",
        "HIGH",
        1,
        "admin fatmata",
        ((None, "ANC 4th visits (52) is greater than ANC 1st visits (41) in January."),),
        set(),
        {},
    ),
    (
        "Validation rule violated: BCG doses > live births at Baoma Station CHP",
        "VALIDATION_RESULT",
        "OPEN",
        "MEDIUM",
        3,
        "admin fatmata",
        ((None, "BCG doses given (130) is greater than live births (97) in January."),),
        {"fatmata"},
        {},
    ),
    (
        "Validation rule violated: malaria confirmed > tested at Makeni Govt Hospital",
        "VALIDATION_RESULT",
        "SOLVED",
        "HIGH",
        13,
        "admin fatmata",
        ((None, "Malaria cases confirmed (310) is greater than tested (288) in December."),),
        {"admin", "fatmata"},
        {},
    ),
    (
        "Validation rule violated: measles doses > doses received at Bombali Sebora",
        "VALIDATION_RESULT",
        "PENDING",
        "MEDIUM",
        6,
        "admin fatmata",
        ((None, "Measles doses given (400) is greater than doses received (350) in January."),),
        set(),
        {},
    ),
    (
        "Validation rule violated: outpatient visits missing at Njandama MCHP",
        "VALIDATION_RESULT",
        "OPEN",
        "LOW",
        2,
        "admin fatmata",
        ((None, "Outpatient visits are missing for January."),),
        set(),
        {},
    ),
    (
        "Validation rule violated: ORS given > diarrhoea cases at Badjia",
        "VALIDATION_RESULT",
        "INVALID",
        "LOW",
        16,
        "admin fatmata",
        ((None, "ORS given (75) is greater than diarrhoea cases (60) in December."),),
        {"admin"},
        {},
    ),
    (
        "Data set Child Health completed for Badjia, January",
        "SYSTEM",
        "NONE",
        "NONE",
        4,
        "admin",
        ((None, "Ibrahim Koroma completed Child Health for Badjia, January."),),
        {"admin"},
        {},
    ),
    (
        "Data set EPI completed for Bo District, February",
        "SYSTEM",
        "NONE",
        "NONE",
        2,
        "admin",
        ((None, "Alice Banda completed EPI for Bo District, February."),),
        set(),
        {},
    ),
    (
        "Import done: 1,204 data values",
        "SYSTEM",
        "NONE",
        "NONE",
        1,
        "admin",
        ((None, "Imported 1,204 data values: 1,180 new, 24 updated, 0 ignored."),),
        set(),
        {},
    ),
    (
        "Analytics tables updated",
        "SYSTEM",
        "NONE",
        "NONE",
        0.1,
        "admin",
        ((None, "The analytics tables were updated in 14 minutes."),),
        set(),
        {},
    ),
    (
        "System update available",
        "SYSTEM",
        "NONE",
        "NONE",
        9,
        "admin",
        ((None, "Version 2.42.1 of DHIS2 is available."),),
        {"admin"},
        {"version": "2.42.1"},
    ),
)


# ---------------------------------------------------------------------------
# The HTTP server
# ---------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when a busy machine
    # is slow to accept them, and a client then sees a timeout the test never asked for.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.connections: set = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # stay quiet
        pass

    def close_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for conn in connections:
            _shutdown(conn)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a connection to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DHIS2-emulator"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):  # the client went away, or the socket was shut down
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _origin(self) -> str:
        scheme = self.headers.get("X-Forwarded-Proto") or "http"
        host = self.headers.get("X-Forwarded-Host") or self.headers.get("Host")
        if not host:
            host = "{}:{}".format(*self.server.server_address[:2])
        return f"{scheme}://{host}"

    def _head_size(self) -> int:
        """The request line and header lines as received, with the blank line after them."""
        lines = sum(len(f"{name}: {value}\r\n".encode()) for name, value in self.headers.items())
        return len(self.raw_requestline) + lines + 2

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        try:
            body = self._read_body()
        except ValueError:
            self._send(html_page(400, "Bad request body"))
            self.close_connection = True
            return
        if self._head_size() > MAX_HEAD_SIZE:  # Tomcat refuses it: DHIS2 never sees it
            emulator.refused.append(self.requestline[:200])
            self.close_connection = True
            self._send(html_page(400, "Request header is too large"))
            return
        split = urllib.parse.urlsplit(self.path)
        if split.path.startswith("/__emulator__/"):
            self._send(emulator._control(self.command, split.path, split.query))
            return
        req = Request(self.command, split.path, split.query, self.headers, body, self._origin())
        wake = emulator._wake
        fault = emulator._admit(req)
        emulator._commit_deferred()
        if emulator.latency > 0 and wake.wait(emulator.latency):
            return self._hang_up()
        done = emulator._process(req, fault) if fault is not None and fault.process else None
        if fault is not None and fault.delay > 0 and wake.wait(fault.delay):
            return self._hang_up()  # reset() or stop() while waiting: give up quietly
        if done is not None:
            response = done
        elif fault is None or fault.runs_handler:
            response = emulator._handle(req)
        else:
            response = Response(200)
        if fault is not None:
            response = fault.apply(response)
            if fault.drop:
                return self._hang_up()
        self._send(response, truncate=fault is not None and fault.truncate)

    def _hang_up(self) -> None:
        self.close_connection = True
        _shutdown(self.connection)

    def _send(self, resp: Response, truncate: bool = False) -> None:
        """Status line, headers and body in one write (no Nagle delay between them)."""
        body = resp.body
        lines = [
            f"HTTP/1.1 {resp.status} {_phrase(resp.status)}",
            "Date: "
            + email.utils.formatdate(time.time() + self.server.emulator.clock_offset, usegmt=True),
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        if resp.status not in (204, 304) and resp.header("Content-Length") is None:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        if self.command == "HEAD":
            body = b""
        if truncate:
            body = body[: len(body) // 2]
        data = "\r\n".join(lines).encode("latin-1", errors="replace") + b"\r\n\r\n" + body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return
        if truncate:
            self._hang_up()


# ---------------------------------------------------------------------------
# Standalone demo server
# ---------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="Run the DHIS2 messaging emulator (a demo server).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port (default 8080, 0 = any free port)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds to wait before every answer"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="seed a few example conversations and list the organisation-unit tree",
    )
    parser.add_argument(
        "--version",
        default=DEFAULT_VERSION,
        choices=VERSIONS,
        help=f"the DHIS2 release to answer as (default {DEFAULT_VERSION})",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (the demo passwords and tokens are public)",
    )
    args = parser.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        parser.error(
            f"refusing to listen on {args.host}: not a loopback address (add --allow-remote)"
        )
    emulator = Emulator(latency=args.latency, version=args.version)
    if args.demo:
        emulator.seed_demo()
    try:
        emulator.start(args.host, args.port)
    except OSError as exc:  # most often: the port is taken (another emulator, a real server)
        print(
            f"{parser.prog}: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or exc}; try another --port (0: any free one)",
            file=sys.stderr,
        )
        return 1
    print(f"DHIS2 {emulator.version} messaging emulator at {emulator.url}")
    row = "{:<8} {:<12} {:<12} {:<14} {}"
    print(row.format("user", "uid", "password", "name", "personal access token"))
    for user in emulator.users.values():
        print(row.format(user.username, user.uid, user.password, user.display_name, user.token))
    if args.demo:
        print("\nOrganisation units (a message to a unit reaches only the users listed on it):")
        print(emulator.tree_text())
    if args.demo:
        print("\nTo use it from the command line or a script, as admin:")
        print(f"export DHIS2_URL={emulator.url} DHIS2_TOKEN={emulator.user('admin').token}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

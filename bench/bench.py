"""Benchmarks for dhis2_messages against the DHIS2 emulator, run in a separate process.

Not part of the test suite: nothing here is collected by pytest, and no test
asserts on time.  Run it from anywhere::

    python bench/bench.py            # full run, a minute or two
    python bench/bench.py --quick    # smoke run, every section, ~20 s
    python bench/bench.py --json out.json --profile

Sections (all in one run, side by side, medians of at least 5 repetitions):

1. Client overhead per call: ``Messenger`` against a hand-written plain
   ``requests.Session`` making the same HTTP exchanges (checked byte for byte
   against an in-process emulator first).  Target: ratio <= 1.10.
   ``dhis2-client`` is a peer row when it is importable.
2. Parsing: bytes -> records (``json.loads`` + ``from_json``) relative to
   ``json.loads`` alone, for a 1,000-message thread and a 1,000-conversation
   page.  Target: <= 3x.
3. Memory: peak traced memory of ``iter_conversations`` over N and 10 N
   conversations.  Target: ratio <= 1.3 (pages are not accumulated).
4. Round trips: a triage workflow against a second emulator with 20 ms of
   injected latency; the request count must be the minimum the API allows.
5. Requests per call on each emulated DHIS2 release (2.38 to 2.44): one per
   call everywhere, except ``send_feedback`` before 2.41.3, which has to find
   the ticket DHIS2 created without naming it (one more).  Nothing asks the
   server's version.  5b: ``send(once=...)`` and ``find_sent``, found and not
   found: one look-up (and, once per Messenger, the caller's uid) before a send.
6. Hostile servers (raw sockets on 127.0.0.1): the wall time of calls to a
   server that drips one byte a second, against the deadline (target: at most
   the deadline + 1 s), and the peak RSS of calls that meet a 500 MiB body or a
   1 MiB gzip bomb, each in a fresh process, beside plain requests reading the
   same answer (target: growth <= 1.5 x max_response_size).
7. Recipients: sending to a district's whole subtree is 2 requests whether the
   tree is 4 or 6 levels deep; ``lookup_users`` is 1.
8. Cleaning up an inbox (``--only cleanup`` runs it alone): 25,000 conversations,
   20,000 of them old validation results, 20 ms latency; mark them read, delete
   them, each in one line of library code.  Requests (target: at most
   ceil(N / chunk) + ceil(N / page) + 2), wall time and the client's peak traced
   memory at N and N / 10, beside the Messaging app's way (one request per
   conversation, on a smaller N, extrapolated), with ``--baseline FILE``,
   another version of dhis2_messages.py, and, with ``--dhis2w PYTHON``,
   dhis2w-client (async, Python 3.13+) in a child process of that interpreter
   (bench/dhis2w_jobs.py).  Measured: its mark read is 25 requests in 1.3 s (one
   POST of all 20,000 uids); its delete is DHIS2's hard delete, refused (403) to
   a user without the metadata authority, and its generic ``delete_raw``, one
   request per conversation 10 at a time, takes 20,025 requests and 48 s.
9. The walk's page size: a whole walk of one inbox at page sizes 50 to 2,000 (requests,
   rows asked, seconds), against the emulator, which, as DHIS2 does, loads the
   caller's whole inbox for every page: the default, ``WALK_PAGE_SIZE``, among them.

The figures are printed as a table and written as JSON (bench/results.json
unless --json says otherwise).  The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import requests

import dhis2_messages
from dhis2_messages import LIST_FIELDS, THREAD_FIELDS, Conversation, Messenger, Page
from tests.emulator import ALICE, BOB, DEFAULT_VERSION, VERSIONS, free_port, parse_version

try:  # a peer, never a requirement of this repository
    import dhis2_client  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    dhis2_client = None

USER, PASSWORD = "alice", "District1#"
TIMEOUT = dhis2_messages.DEFAULT_TIMEOUT
LATENCY = 0.02
TRIAGE_TOTAL = 500
TRIAGE_PAGE_SIZE = 100
TRIAGE_MARK, TRIAGE_DELETE, TRIAGE_REPLY = 200, 100, 5
CLEANUP_TOTAL_FULL, CLEANUP_OLD_FULL = 25_000, 20_000

FULL = {
    "reps": 7,
    "calls": 200,
    "parse_size": 1000,
    "parse_loops": 20,
    "mem_sizes": (2000, 20000),
    "mem_reps": 5,
    "walk_inbox": 5000,
    "rt_reps": 5,
    "deadline": 5.0,
    "cleanup": (CLEANUP_TOTAL_FULL, CLEANUP_OLD_FULL),
    "cleanup_app": 1000,
    "large_calls": (
        "list_conversations",
        "count_unread",
        "get_conversation",
        "send",
        "reply",
        "mark_read",
        "delete_conversations",
        "set_status",
        "upload_attachment",
        "download_attachment",
    ),
}
QUICK = {
    "reps": 5,
    "calls": 30,
    "parse_size": 1000,
    "parse_loops": 3,
    "mem_sizes": (2000, 5000),
    "mem_reps": 5,
    "walk_inbox": 2000,
    "rt_reps": 5,
    "deadline": 3.0,
    "cleanup": (2_500, 2_000),
    "cleanup_app": 200,
    "large_calls": ("list_conversations", "download_attachment"),
}

TARGET_OVERHEAD = 1.10
TARGET_PARSE = 3.0
TARGET_MEMORY = 1.3
TARGET_LARGE = 1.5  # peak RSS growth / max_response_size


# -- The emulator in its own process ------------------------------------------


class EmulatorProcess:
    """``python -m tests.emulator`` in a child process; killed on exit, also on error."""

    def __init__(self, latency: float = 0.0, version: str = DEFAULT_VERSION) -> None:
        self.latency = latency
        self.version = version
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.control = requests.Session()  # the control API: never counted, never timed
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read for error reports until the end)

    def __enter__(self) -> EmulatorProcess:  # noqa: PYI034 (typing.Self is 3.11+)
        try:
            for _attempt in range(3):  # another process may take the free port first
                if self._start():
                    return self
            raise RuntimeError("the emulator did not start: " + self._stderr_text())
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> bool:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.emulator",
                "--port",
                str(port),
                "--latency",
                str(self.latency),
                "--version",
                self.version,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                self.control.get(self.url + "/__emulator__/stats", timeout=1).raise_for_status()
                return True
            except requests.RequestException:
                time.sleep(0.05)
        self.stop()
        return False

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-2000:] or "(nothing on stderr)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.control.close()

    # The control API (no auth, not logged)
    def reset(self) -> None:
        self.control.post(self.url + "/__emulator__/reset", timeout=30).raise_for_status()

    def add(self, n: int, messages: int = 1, recipients: str = "alice,bob") -> List[str]:
        response = self.control.post(
            self.url + "/__emulator__/conversations",
            params={"n": n, "sender": "admin", "recipients": recipients, "messages": messages},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()

    def clear_log(self) -> None:
        self.control.post(self.url + "/__emulator__/clear-log", timeout=30).raise_for_status()

    def grow(self, parent: str, *, depth: int, children: int, users: int) -> List[str]:
        """More levels of organisation units below *parent*, with users assigned."""
        response = self.control.post(
            self.url + "/__emulator__/org-units",
            params={"parent": parent, "depth": depth, "children": children, "users": users},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()

    def requests_seen(self) -> int:
        response = self.control.get(self.url + "/__emulator__/stats", timeout=30)
        response.raise_for_status()
        return response.json()["requests"]


# -- Clients --------------------------------------------------------------------


def messenger(url: str, session: Optional[requests.Session] = None) -> Messenger:
    return Messenger(url, auth=(USER, PASSWORD), session=session)


class Plain:
    """What a user would write with requests alone, making the same exchanges as Messenger."""

    def __init__(self, url: str, user_agent: str) -> None:
        self.api = url + "/api"
        self.session = requests.Session()
        self.session.auth = (USER, PASSWORD)
        self.session.headers.update(
            {
                "Accept": "application/json",
                "X-Requested-With": "XMLHttpRequest",
                "User-Agent": user_agent,
            }
        )

    def close(self) -> None:
        self.session.close()

    def list_conversations(self) -> Any:
        params = [
            ("fields", LIST_FIELDS),
            ("order", "lastMessage:desc"),
            ("pageSize", "50"),
            ("page", "1"),
        ]
        response = self.session.get(
            self.api + "/messageConversations", params=params, timeout=TIMEOUT
        )
        response.raise_for_status()
        return response.json()

    def get_conversation(self, uid: str) -> Any:
        response = self.session.get(
            self.api + "/messageConversations/" + uid,
            params={"fields": THREAD_FIELDS},
            timeout=TIMEOUT,
        )
        response.raise_for_status()
        return response.json()

    def mark_read(self, uids: List[str]) -> Any:
        response = self.session.post(
            self.api + "/messageConversations/read", json=uids, timeout=TIMEOUT
        )
        response.raise_for_status()
        return response.json()["markedRead"]

    def send(self, subject: str, text: str, users: List[str]) -> str:
        body = {"subject": subject, "text": text, "users": [{"id": uid} for uid in users]}
        response = self.session.post(self.api + "/messageConversations", json=body, timeout=TIMEOUT)
        response.raise_for_status()
        return response.headers["Location"].rsplit("/", 1)[-1]

    def reply(self, uid: str, text: str) -> None:
        response = self.session.post(
            self.api + "/messageConversations/" + uid,
            data=text.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=TIMEOUT,
        )
        response.raise_for_status()


def peer(url: str) -> Any:
    """dhis2-client's DHIS2Client (httpx, dicts in and out), or None when it is not installed."""
    if dhis2_client is None:
        return None
    return dhis2_client.DHIS2Client(url, username=USER, password=PASSWORD, retries=0)


# The five calls of section 1: fixture (on a reset emulator) -> the three clients' calls.
# A peer call of None means the peer library cannot make that request.

SUBJECT, TEXT, REPLY = "Benchmark", "A message from the benchmark.", "Noted, thanks."


def _calls(emu: EmulatorProcess, m: Messenger, plain: Plain, d2: Any) -> Dict[str, Tuple]:
    emu.add(50)  # the page list_conversations returns
    thread = emu.add(1, messages=50)[0]
    hundred = emu.add(100)
    target = emu.add(1)[0]
    calls = {
        "list_conversations (50)": (
            m.list_conversations,
            plain.list_conversations,
            d2
            and (
                lambda: d2.get(
                    "/api/messageConversations",
                    params={
                        "fields": LIST_FIELDS,
                        "order": "lastMessage:desc",
                        "pageSize": 50,
                        "page": 1,
                    },
                )
            ),
        ),
        "get_conversation (50 msgs)": (
            lambda: m.get_conversation(thread),
            lambda: plain.get_conversation(thread),
            d2
            and (
                lambda: d2.get(
                    "/api/messageConversations/" + thread, params={"fields": THREAD_FIELDS}
                )
            ),
        ),
        "mark_read (100 uids)": (
            lambda: m.mark_read(hundred),
            lambda: plain.mark_read(hundred),
            d2 and (lambda: d2.post("/api/messageConversations/read", json=hundred)),
        ),
        "send": (
            lambda: m.send(subject=SUBJECT, text=TEXT, users=[BOB]),
            lambda: plain.send(SUBJECT, TEXT, [BOB]),
            d2
            and (
                lambda: d2.post(
                    "/api/messageConversations",
                    json={"subject": SUBJECT, "text": TEXT, "users": [{"id": BOB}]},
                )
            ),
        ),
        # dhis2-client sends JSON bodies only; a reply is a text/plain body.
        "reply": (lambda: m.reply(target, REPLY), lambda: plain.reply(target, REPLY), None),
    }
    return calls


# -- Section 1: client overhead ------------------------------------------------


def check_identical_exchanges() -> List[str]:
    """Run each call once per client on an in-process emulator; return the differences found."""
    from tests.emulator import Emulator

    problems = []
    with Emulator() as emu:
        uids = emu.add_conversations(100, sender="admin", recipients=["alice", "bob"])
        thread = emu.add_conversations(1, sender="admin", recipients=["alice", "bob"], messages=50)[
            0
        ]
        m = messenger(emu.url)
        plain = Plain(emu.url, m._headers["User-Agent"])
        try:
            pairs = [
                ("list_conversations", m.list_conversations, plain.list_conversations),
                (
                    "get_conversation",
                    lambda: m.get_conversation(thread),
                    lambda: plain.get_conversation(thread),
                ),
                ("mark_read", lambda: m.mark_read(uids), lambda: plain.mark_read(uids)),
                (
                    "send",
                    lambda: m.send(subject=SUBJECT, text=TEXT, users=[BOB]),
                    lambda: plain.send(SUBJECT, TEXT, [BOB]),
                ),
                ("reply", lambda: m.reply(thread, REPLY), lambda: plain.reply(thread, REPLY)),
            ]
            for name, ours, theirs in pairs:
                seen = []
                for call in (ours, theirs):
                    emu.clear_log()
                    call()
                    (logged,) = emu.requests()
                    # Each session has its own JSESSIONID: compare the cookie names only.
                    headers = sorted(
                        (k.lower(), re.sub(r"=[^;]*", "=...", v) if k.lower() == "cookie" else v)
                        for k, v in logged.headers.items()
                    )
                    seen.append((logged.method, logged.path, logged.query, headers, logged.body))
                if seen[0] != seen[1]:
                    labels = ("method", "path", "query", "headers", "body")
                    diff = [label for label, a, b in zip(labels, *seen) if a != b]
                    problems.append(f"{name}: {', '.join(diff)} differ")
        finally:
            m.close()
            plain.close()
    return problems


def _timed(call: Callable[[], Any], n: int, no_gc: bool = False) -> Tuple[float, float]:
    """Per-call wall and client-CPU microseconds over n calls (like timeit when no_gc)."""
    if no_gc:
        gc.collect()
        gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            call()
        return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)
    finally:
        if no_gc:
            gc.enable()


def bench_overhead(emu: EmulatorProcess, cfg: Dict[str, Any], profile: bool) -> Dict[str, Any]:
    rows = []
    profiles = {}
    emu.reset()
    m = messenger(emu.url)
    plain = Plain(emu.url, m._headers["User-Agent"])
    d2 = peer(emu.url)
    try:
        for name, (ours, theirs, other) in _calls(emu, m, plain, d2).items():
            clients = [("messenger", ours), ("plain", theirs)] + (
                [("peer", other)] if other else []
            )
            for _label, call in clients:  # warm up: connections, caches
                call()
            samples: Dict[str, List[Tuple[float, float]]] = {label: [] for label, _ in clients}
            for rep in range(cfg["reps"]):
                # Alternate who goes first, so drift on a busy machine hits both sides.
                order = clients if rep % 2 == 0 else clients[::-1]
                for label, call in order:
                    samples[label].append(_timed(call, cfg["calls"]))
            row = {"call": name, "calls_per_rep": cfg["calls"], "reps": cfg["reps"]}
            for label, values in samples.items():
                row[f"{label}_us"] = statistics.median(v[0] for v in values)
                row[f"{label}_cpu_us"] = statistics.median(v[1] for v in values)
            # The ratio of each repetition's pair, then the median: pairs ran back to back.
            row["ratio"] = statistics.median(
                a[0] / b[0] for a, b in zip(samples["messenger"], samples["plain"])
            )
            row["cpu_ratio"] = statistics.median(
                a[1] / b[1] for a, b in zip(samples["messenger"], samples["plain"])
            )
            if "peer" in samples:
                row["peer_ratio"] = statistics.median(
                    a[0] / b[0] for a, b in zip(samples["peer"], samples["plain"])
                )
            else:
                row["peer_ratio"] = None
            rows.append(row)
            if profile:
                profiles[name] = _profile(ours, cfg["calls"])
    finally:
        m.close()
        plain.close()
        if d2 is not None:
            d2.close()
    if dhis2_client is None:
        peer_note = "dhis2-client: not installed"
    else:
        peer_note = (
            f"dhis2-client {getattr(dhis2_client, '__version__', '')}".rstrip()
            + " (httpx, dicts, no X-Requested-With; cannot send a text/plain reply)"
        )
    return {"rows": rows, "peer": peer_note, "profiles": profiles}


def _profile(call: Callable[[], Any], n: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


# -- Section 2: parsing ----------------------------------------------------------


def bench_parsing(emu: EmulatorProcess, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    n = cfg["parse_size"]
    emu.reset()
    thread = emu.add(1, messages=n)[0]
    emu.add(n - 1)
    get = emu.control.get
    auth = (USER, PASSWORD)
    thread_body = get(
        f"{emu.url}/api/messageConversations/{thread}",
        params={"fields": THREAD_FIELDS},
        auth=auth,
        timeout=60,
    ).content
    page_body = get(
        f"{emu.url}/api/messageConversations",
        params={"fields": LIST_FIELDS, "pageSize": n},
        auth=auth,
        timeout=60,
    ).content
    rows = []
    for name, body, parse, count in (
        (
            f"thread of {n:,} messages",
            thread_body,
            Conversation.from_json,
            lambda r: len(r.messages),
        ),
        (f"page of {n:,} conversations", page_body, Page.from_json, lambda r: len(r.conversations)),
    ):
        got = count(parse(json.loads(body)))
        if got != n:
            raise RuntimeError(f"parsing {name}: {got} records, expected {n}")
        decoded = json.loads(body)
        loops = cfg["parse_loops"]

        def loads(body: bytes = body) -> Any:
            return json.loads(body)

        def records(body: bytes = body, parse: Callable[[Any], Any] = parse) -> Any:
            return parse(json.loads(body))

        def from_json(decoded: Any = decoded, parse: Callable[[Any], Any] = parse) -> Any:
            return parse(decoded)

        samples: Dict[str, List[float]] = {"loads": [], "records": [], "from_json": []}
        for rep in range(cfg["reps"]):
            order = [("loads", loads), ("records", records), ("from_json", from_json)]
            for label, fn in order if rep % 2 == 0 else order[::-1]:
                # Without the garbage collector, as timeit does: a collection
                # triggered by one side's garbage would land on the other's clock.
                samples[label].append(_timed(fn, loops, no_gc=True)[0])
        rows.append(
            {
                "body": name,
                "bytes": len(body),
                "loads_us": statistics.median(samples["loads"]),
                "records_us": statistics.median(samples["records"]),
                "from_json_us": statistics.median(samples["from_json"]),
                "ratio": statistics.median(
                    r / j for r, j in zip(samples["records"], samples["loads"])
                ),
                "reps": cfg["reps"],
                "loops": loops,
            }
        )
    return rows


# -- Section 3: memory -------------------------------------------------------------


def _clear_url_caches() -> None:
    """Empty urllib.parse's bounded caches (the last 128 URLs split, two per page here).

    Every traced walk then starts from the same state, whatever ran before it.
    """
    clear = getattr(urllib.parse, "clear_cache", None)
    if clear is not None:
        clear()


def _url_cache_entries() -> Optional[int]:
    info = getattr(urllib.parse.urlsplit, "cache_info", None)
    return info().currsize if info is not None else None


def bench_memory(emu: EmulatorProcess, cfg: Dict[str, Any]) -> Dict[str, Any]:
    small, large = cfg["mem_sizes"]
    emu.reset()
    results: Dict[int, Dict[str, Any]] = {}
    m = messenger(emu.url)
    try:
        m.list_conversations(page_size=1)  # connect and import everything lazy before tracing
        have = 0
        for size in (small, large):
            emu.add(size - have, recipients="alice")
            have = size
            peaks, walls = [], []
            for _ in range(cfg["mem_reps"]):
                _clear_url_caches()
                gc.collect()
                started = time.perf_counter()
                tracemalloc.start()
                count = 0
                for _conversation in m.iter_conversations():
                    count += 1
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                walls.append(time.perf_counter() - started)
                if count != size:
                    raise RuntimeError(f"iter_conversations yielded {count}, expected {size}")
                peaks.append(peak)
            results[size] = {
                "conversations": size,
                "pages": math.ceil(size / dhis2_messages.WALK_PAGE_SIZE),
                "peak_bytes": statistics.median(peaks),
                "url_cache_entries": _url_cache_entries(),
                "traced_walk_s": statistics.median(walls),
                "reps": len(peaks),
            }
    finally:
        m.close()
    return {
        "small": results[small],
        "large": results[large],
        "ratio": results[large]["peak_bytes"] / results[small]["peak_bytes"],
    }


def bench_walk_page_size(emu: EmulatorProcess, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A whole walk of one inbox at each page size: requests, rows asked, seconds."""
    inbox = cfg["walk_inbox"]
    emu.reset()
    emu.add(inbox, recipients="alice")
    rows = []
    m = messenger(emu.url)
    try:
        for size in (50, 200, 500, 1000, 2000):
            pages: List[Page] = []  # one a request: the default order needs no other
            started = time.perf_counter()
            count = sum(1 for _ in m.iter_conversations(page_size=size, on_page=pages.append))
            wall = time.perf_counter() - started
            if count != inbox:
                raise RuntimeError(f"iter_conversations yielded {count}, expected {inbox}")
            rows.append(
                {
                    "page_size": size,
                    "requests": len(pages),
                    "rows_asked": sum(p.page_size or 0 for p in pages),
                    "walk_s": wall,
                }
            )
    finally:
        m.close()
    return {"inbox": inbox, "default": dhis2_messages.WALK_PAGE_SIZE, "rows": rows}


# -- Section 4: round trips -------------------------------------------------------


class _CountingAdapter(requests.adapters.HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent += 1
        return super().send(request, *args, **kwargs)


def bench_round_trips(emu: EmulatorProcess, cfg: Dict[str, Any]) -> Dict[str, Any]:
    pages = math.ceil(TRIAGE_TOTAL / TRIAGE_PAGE_SIZE)
    expected = pages + 1 + 1 + TRIAGE_REPLY + 1
    expected_unread = TRIAGE_TOTAL - TRIAGE_MARK - TRIAGE_DELETE
    runs = []
    for _ in range(cfg["rt_reps"]):
        emu.reset()
        emu.add(TRIAGE_TOTAL)
        session = requests.Session()
        adapter = _CountingAdapter()
        session.mount("http://", adapter)
        m = messenger(emu.url, session=session)
        try:
            emu.clear_log()
            started = time.perf_counter()
            uids = [
                c.id
                for c in m.iter_conversations(filter="read:eq:false", page_size=TRIAGE_PAGE_SIZE)
            ]
            m.mark_read(uids[:TRIAGE_MARK])
            m.delete_conversations(uids[TRIAGE_MARK : TRIAGE_MARK + TRIAGE_DELETE])
            for uid in uids[:TRIAGE_REPLY]:  # already read: a reply leaves the caller's flag alone
                m.reply(uid, REPLY)
            unread = m.count_unread()
            wall = time.perf_counter() - started
        finally:
            m.close()
            session.close()
        runs.append(
            {
                "walked": len(uids),
                "unread": unread,
                "wall_s": wall,
                "server_requests": emu.requests_seen(),
                "client_requests": adapter.sent,
            }
        )
    wall = statistics.median(r["wall_s"] for r in runs)
    floor = expected * LATENCY
    worst = lambda key: max((r[key] for r in runs), key=lambda v: abs(v - expected))
    return {
        "latency_s": LATENCY,
        "page_size": TRIAGE_PAGE_SIZE,
        "reps": len(runs),
        "expected_requests": expected,
        "expected_breakdown": f"{pages} pages + 1 mark_read + 1 delete + {TRIAGE_REPLY} replies + 1 count",
        "server_requests": worst("server_requests"),
        "client_requests": worst("client_requests"),
        "walked": runs[0]["walked"],
        "unread": runs[0]["unread"],
        "expected_unread": expected_unread,
        "consistent": all(
            r["walked"] == TRIAGE_TOTAL and r["unread"] == expected_unread for r in runs
        ),
        "wall_s": wall,
        "latency_floor_s": floor,
        "wall_vs_floor": wall / floor,
    }


BO_DISTRICT, NGELEHUN_CHC = "O6uvpzGd5pu", "DiszpKrYNg8"  # seeded units (tests/emulator.py)


def bench_recipients(emu: EmulatorProcess, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Send to a district's whole subtree, at two depths of the tree; a user lookup."""
    rows = []
    # The seeded tree is 4 levels deep (country, districts, chiefdoms, facilities);
    # 2 more levels under one facility of Bo District make it 6.
    for depth, extra in ((4, 0), (6, 2)):
        walls, seen, sent, units, reached = [], set(), set(), 0, 0
        for _ in range(cfg["rt_reps"]):
            emu.reset()
            if extra:
                emu.grow(NGELEHUN_CHC, depth=extra, children=3, users=2)
            session = requests.Session()
            adapter = _CountingAdapter()
            session.mount("http://", adapter)
            m = Messenger(emu.url, auth=("admin", "district"), session=session, timeout=TIMEOUT)
            try:
                emu.clear_log()
                started = time.perf_counter()
                tree = m.organisation_unit_subtree(BO_DISTRICT)
                uid = m.send(subject="Stock count", text="By Friday.", organisation_units=tree)
                walls.append(time.perf_counter() - started)
                seen.add(emu.requests_seen())
                sent.add(adapter.sent)
                units = len(tree)
                reached = len(m.get_conversation(uid).participants) - 1  # not the sender
            finally:
                m.close()
                session.close()
        rows.append(
            {
                "depth": depth,
                "units": units,
                "users_reached": reached,
                "server_requests": max(seen),
                "client_requests": max(sent),
                "wall_s": statistics.median(walls),
            }
        )
    emu.reset()
    with Messenger(emu.url, auth=("admin", "district"), timeout=TIMEOUT) as m:
        emu.clear_log()
        found = m.lookup_users("banda")
        lookup = emu.requests_seen()
    return {"latency_s": emu.latency, "sends": rows, "lookup_requests": lookup, "found": len(found)}


# -- Report -----------------------------------------------------------------------


# -- Section 6: hostile servers ---------------------------------------------------

MiB = 1024 * 1024
LIMIT = 64 * MiB  # the default max_response_size
CALL_UID = "AbCdEfGhIjK"
LARGE_CALLS: Dict[str, Callable[[Any], Any]] = {
    "list_conversations": lambda m: m.list_conversations(),
    "count_unread": lambda m: m.count_unread(),
    "get_conversation": lambda m: m.get_conversation(CALL_UID),
    "send": lambda m: m.send(subject="s", text="t", users=[BOB]),
    "reply": lambda m: m.reply(CALL_UID, "t"),
    "mark_read": lambda m: m.mark_read(CALL_UID),
    "delete_conversations": lambda m: m.delete_conversations(CALL_UID),
    "set_status": lambda m: m.set_status(CALL_UID, "OPEN"),
    "upload_attachment": lambda m: m.upload_attachment(b"%PDF-1.4", filename="a.pdf"),
    "download_attachment": lambda m: m.download_attachment(CALL_UID, CALL_UID, CALL_UID),
}


class RawServer:
    """Answers every connection with ``handler(conn, stop)`` in a thread of its own."""

    def __init__(self, handler: Callable[[socket.socket, Any], None]) -> None:
        self.handler, self.stop = handler, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                self.handler(conn, self.stop)
            except OSError:  # the client hung up
                pass

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def _drip(conn: socket.socket, stop: Any, data: bytes, interval: float = 1.0) -> None:
    for byte in data:
        if stop.wait(interval):
            return
        conn.sendall(bytes([byte]))


def _headers_dripped(conn: socket.socket, stop: Any) -> None:
    _drip(conn, stop, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 600)


def _body_dripped(conn: socket.socket, stop: Any) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n"
    )
    _drip(conn, stop, b" " * 600)


def _chunked_forever(conn: socket.socket, stop: Any) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    _drip(conn, stop, b"1\r\n \r\n" * 100, interval=1.0 / 6)  # a 1-byte chunk a second


def _always_busy(conn: socket.socket, stop: Any) -> None:
    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")


SLOW_CASES: Dict[str, Callable[[socket.socket, Any], None]] = {
    "headers dripped, 1 byte/s": _headers_dripped,
    "Content-Length body dripped, 1 byte/s": _body_dripped,
    "chunked body forever, 1 byte/s": _chunked_forever,
    "503 with Retry-After: 1, retries=1000": _always_busy,
}


def bench_slow_servers(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for name, handler in SLOW_CASES.items():
        server = RawServer(handler)
        try:
            m = Messenger(
                server.url,
                token="d2p_bench",
                timeout=(1, 2),
                deadline=cfg["deadline"],
                retries=1000,
            )
            started = time.perf_counter()
            try:
                m.list_conversations()
                outcome = "answered"
            except dhis2_messages.Dhis2Error as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:40]}..."
            wall = time.perf_counter() - started
            m.close()
        finally:
            server.close()
        rows.append(
            {"case": name, "deadline_s": cfg["deadline"], "wall_s": wall, "outcome": outcome}
        )
    return rows


def _large_answer(case: str) -> Callable[[socket.socket, Any], None]:
    if case.startswith("500 MiB body"):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if "no Content-Length" in case:  # the body ends with the connection
            head += b"Connection: close\r\n\r\n"
        else:
            head += b"Content-Length: %d\r\n\r\n" % (500 * MiB)
        chunk = b" " * 65536

        def handler(conn: socket.socket, stop: Any) -> None:
            conn.sendall(head)
            for _ in range(500 * MiB // len(chunk)):
                if stop.is_set():
                    return
                conn.sendall(chunk)

        return handler
    # 1 MiB of gzip that inflates to 1 GiB: 64 members of 16 MiB of spaces each.
    import gzip

    bomb = gzip.compress(b" " * (16 * MiB), compresslevel=9) * 64
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(bomb)}\r\n\r\n"
    ).encode()
    return lambda conn, stop: conn.sendall(head + bomb)


def large_answer_child(case: str, call: str) -> None:
    """In a fresh process: the peak RSS of one call against one large answer."""
    import resource

    server = RawServer(_large_answer(case))
    m = Messenger(server.url, token="d2p_bench", retries=0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    started = time.perf_counter()
    try:
        if call == "plain requests":
            size = len(requests.get(server.url + "/api/messageConversations", timeout=30).content)
            outcome = f"read {size / MiB:,.0f} MiB"
        else:
            LARGE_CALLS[call](m)
            outcome = "answered"
    except dhis2_messages.Dhis2Error as exc:
        outcome = type(exc).__name__
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"baseline_kib": baseline, "peak_kib": peak, "outcome": outcome, "wall_s": wall}
    server.close()
    print(json.dumps(result))


def bench_large_answers(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for case in (
        "500 MiB body",
        "500 MiB body, no Content-Length",
        "1 MiB gzip bomb (1 GiB inflated)",
    ):
        for call in ("plain requests", *cfg["large_calls"]):
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--large-answer", case, call],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["growth_mib"] = (figures["peak_kib"] - figures["baseline_kib"]) / 1024
            rows.append({"case": case, "call": call, **figures})
    return rows


def _table(headers: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _release_calls(m: Messenger, uid: str, ticket: str) -> List[Tuple[str, Any]]:
    return [
        ("list_conversations", lambda: m.list_conversations()),
        ("iter_conversations (1 page)", lambda: list(m.iter_conversations())),
        ("count_unread", m.count_unread),
        ("get_conversation", lambda: m.get_conversation(uid, mark_read=True)),
        ("send", lambda: m.send(subject="s", text="t", users=[BOB])),
        ("reply", lambda: m.reply(uid, REPLY)),
        ("send_feedback", lambda: m.send_feedback(subject="Feedback", text="t")),
        ("mark_unread", lambda: m.mark_unread(uid)),
        ("mark_read", lambda: m.mark_read(uid)),
        ("follow_up", lambda: m.follow_up(uid)),
        ("set_status", lambda: m.set_status(ticket, "PENDING")),
        ("set_priority", lambda: m.set_priority(ticket, "HIGH")),
        ("delete_conversations", lambda: m.delete_conversations(uid)),
    ]


def bench_release_requests() -> Dict[str, Any]:
    """Requests each call makes against each release (the server's count)."""
    counts: Dict[str, Dict[str, int]] = {}
    for version in VERSIONS:
        with EmulatorProcess(version=version) as emu:
            uid = emu.add(1)[0]
            m = messenger(emu.url)
            try:
                ticket = m.send_feedback(subject="Ticket", text="t")
                for name, call in _release_calls(m, uid, ticket):
                    emu.clear_log()
                    call()
                    counts.setdefault(name, {})[version] = emu.requests_seen()
            finally:
                m.close()
    return {"versions": list(VERSIONS), "counts": counts}


#: send(once=...) and find_sent on a fresh Messenger, in this order: (call, requests expected).
ONCE_CALLS = [
    ("send(once=True), nothing sent before", 3),  # the caller's uid, the look-up, the POST
    ("send(once=True), found", 1),
    ("send(once=True), other text: not found", 2),
    ("send(once=timedelta(days=6)), found", 1),
    ("find_sent(), found", 1),
]


def bench_once() -> List[Dict[str, Any]]:
    """Requests of sending once, found and not found (the server's count)."""
    rows = []
    with EmulatorProcess() as emu:
        m = messenger(emu.url)
        try:
            calls = [
                lambda: m.send(subject="Weekly", text="Due Friday", users=[BOB], once=True),
                lambda: m.send(subject="Weekly", text="Due Friday", users=[BOB], once=True),
                lambda: m.send(subject="Weekly", text="Due Monday", users=[BOB], once=True),
                lambda: m.send(
                    subject="Weekly", text="Due Friday", users=[BOB], once=timedelta(days=6)
                ),
                lambda: m.find_sent(subject="Weekly", text="Due Monday"),
            ]
            for (name, expected), call in zip(ONCE_CALLS, calls):
                emu.clear_log()
                call()
                rows.append({"call": name, "expected": expected, "requests": emu.requests_seen()})
        finally:
            m.close()
    return rows


def _expected_requests(name: str, version: str) -> int:
    return 2 if name == "send_feedback" and parse_version(version) < (2, 41, 3) else 1


# -- Section 8: cleaning up an inbox -------------------------------------------------
# An admin inbox of 25,000 conversations, 20,000 of them VALIDATION_RESULT older than a
# date (validation notifications set to one message per result), behind 20 ms of latency:
# mark the 20,000 read, then delete those older than the date, each in one line of library
# code.  The server runs in its own process (a seeded emulator, --cleanup-server); the
# client's peak memory is traced here.  Beside it: the same jobs the Messaging app's way
# (one DELETE per conversation, one POST per page of 35 for read), on a smaller N and
# extrapolated, with --baseline FILE, another version of the module (the one before
# bulk calls were split: git show <commit>:dhis2_messages.py > before.py), and, with
# --dhis2w PYTHON, the peer dhis2w-client, run by that interpreter (bench/dhis2w_jobs.py).

CLEANUP_TOTAL, CLEANUP_OLD = 25_000, 20_000
CLEANUP_CUTOFF = "2024-01-01"
CLEANUP_FILTER = ["messageType:eq:VALIDATION_RESULT", f"lastMessage:lt:{CLEANUP_CUTOFF}"]
APP_PAGE = 35  # the Messaging app's page


def cleanup_server(port: int, total: int, old: int) -> None:
    """The child: an emulator with an inbox of *total* for alice, *old* of them validation
    results from 2023, the rest private messages from 2024; serves until terminated."""
    from tests.emulator import Emulator

    emu = Emulator(latency=LATENCY)
    uids = emu.add_conversations(total, sender="admin", recipients=["alice"])
    start = 1672531200000  # 2023-01-01 in ms
    for i, uid in enumerate(uids):
        conv = emu.conversations[uid]
        if i < old:
            conv.message_type, conv.status, conv.last_sender = "VALIDATION_RESULT", "OPEN", None
            when = start + i * 60_000
        else:
            when = 1704067200000 + i * 60_000  # from 2024-01-01
        conv.created = conv.last_message = conv.last_updated = when
    emu.start(port=port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        time.sleep(3600)


class CleanupServer(EmulatorProcess):
    def __init__(self, total: int, old: int) -> None:
        super().__init__(latency=LATENCY)
        self.total, self.old = total, old

    def _start(self) -> bool:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, os.path.abspath(__file__), "--cleanup-server", str(port)]
        argv += [str(self.total), str(self.old)]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip() == b"ready"


def _cleanup_jobs(module: Any) -> Dict[str, Callable[[Any], int]]:
    """The two jobs, each one line of library code; each returns how many it changed."""
    return {
        "mark read": lambda m: len(
            m.mark_read(
                c.id
                for c in m.iter_conversations(
                    filter=["messageType:eq:VALIDATION_RESULT", "read:eq:false"], fields="id"
                )
            )
        ),
        "delete older than a date": lambda m: len(
            m.delete_conversations(
                c.id for c in m.iter_conversations(filter=CLEANUP_FILTER, fields="id")
            )
        ),
    }


def _app_jobs(url: str, n: int) -> Dict[str, Callable[[], int]]:
    """The Messaging app's way, with plain requests, for the first *n* matches."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    session.headers["X-Requested-With"] = "XMLHttpRequest"
    api = url + "/api/messageConversations"
    me = ALICE  # USER

    def pages(filters: List[str]) -> Any:
        page = 1
        while True:
            params = [("filter", f) for f in filters] + [
                ("fields", "id"),
                ("pageSize", str(APP_PAGE)),
                ("page", str(page)),
            ]
            body = session.get(api, params=params, timeout=TIMEOUT).json()
            yield [c["id"] for c in body["messageConversations"]]
            if page >= body["pager"].get("pageCount", 0):
                return
            page += 1

    def mark_read() -> int:
        done = 0
        for ids in pages(["messageType:eq:VALIDATION_RESULT"]):
            session.post(api + "/read", json=ids, timeout=TIMEOUT).raise_for_status()
            done += len(ids)
            if done >= n:
                return done
        return done

    def delete() -> int:
        done = 0
        while done < n:  # what is left moves up: always page 1
            ids = next(pages(CLEANUP_FILTER))
            for uid in ids[: n - done]:
                session.delete(f"{api}/{uid}/{me}", timeout=TIMEOUT).raise_for_status()
            done += min(len(ids), n - done)
        return done

    return {"mark read": mark_read, "delete older than a date": delete}


def _run_cleanup(emu: EmulatorProcess, job: Callable[[], int], traced: bool) -> Dict[str, Any]:
    emu.clear_log()
    gc.collect()
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        changed: Any = job()
        outcome = "done"
    except Exception as exc:  # noqa: BLE001 - the baseline's failure is a figure too
        changed, outcome = 0, f"{type(exc).__name__}: {str(exc)[:120]}"
    wall = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    if traced:
        tracemalloc.stop()
    return {
        "changed": changed,
        "outcome": outcome,
        "requests": emu.requests_seen(),
        "wall_s": wall,
        "peak_bytes": peak,
    }


def bench_cleanup(
    cfg: Dict[str, Any], baseline: Optional[str] = None, dhis2w: Optional[str] = None
) -> Dict[str, Any]:
    """Section 8: the clean-up jobs, by this module, the baseline module, the app's way and
    dhis2w."""
    total, old = cfg["cleanup"]
    clients: List[Tuple[str, Any]] = [("dhis2_messages", dhis2_messages)]
    if baseline:
        import importlib.util

        spec = importlib.util.spec_from_file_location("dhis2_messages_before", baseline)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
        clients.append(("before", before))
    rows = []
    for name, module in clients:
        for size in (old, old // 10):  # memory flat in N: the same jobs at a tenth
            if size != old and name != "dhis2_messages":
                continue
            for job_name, job in _cleanup_jobs(module).items():
                for traced in (False, True):  # wall time untraced, memory traced
                    with CleanupServer(total * size // old, size) as emu:
                        if job_name.startswith("delete"):  # read first, as in the run
                            with module.Messenger(emu.url, auth=(USER, PASSWORD)) as m:
                                _cleanup_jobs(dhis2_messages)["mark read"](m)
                        with module.Messenger(emu.url, auth=(USER, PASSWORD)) as m:
                            run = _run_cleanup(emu, lambda job=job, m=m: job(m), traced)
                    row = rows[-1] if traced else {"client": name, "job": job_name, "n": size}
                    if traced:
                        row["peak_bytes"] = run["peak_bytes"]
                    else:
                        row.update(run)
                        rows.append(row)
    app_n = cfg["cleanup_app"]
    for job_name in ("mark read", "delete older than a date"):
        with CleanupServer(total, old) as emu:
            run = _run_cleanup(emu, _app_jobs(emu.url, app_n)[job_name], False)
        factor = old / app_n
        rows.append(
            {
                "client": "Messaging app's way",
                "job": job_name,
                "n": app_n,
                **run,
                "extrapolated_requests": round(run["requests"] * factor),
                "extrapolated_wall_s": run["wall_s"] * factor,
            }
        )
    if dhis2w:
        rows += _dhis2w_rows(dhis2w, total, old)
    pages = math.ceil(old / dhis2_messages.WALK_PAGE_SIZE)  # the walk's default page size
    return {
        "latency_s": LATENCY,
        "total": total,
        "old": old,
        "rows": rows,
        "goal": {
            "mark read": math.ceil(old / 2000) + pages + 2,
            "delete older than a date": math.ceil(old / 450) + pages + 2,
        },
    }


# The child's job: (client, job) in the table.  dhis2w's delete_conversation is DHIS2's hard
# delete, which alice may not do; "delete_raw" is what she is left with (bench/dhis2w_jobs.py).
DHIS2W_JOBS = {
    "mark read": ("dhis2w", "mark read"),
    "delete": ("dhis2w", "delete older than a date"),
    "delete_raw": ("dhis2w delete_raw", "delete older than a date"),
}


def _dhis2w_rows(python: str, total: int, old: int) -> List[Dict[str, Any]]:
    """The dhis2w peer, each job run by *python* in a child process against a fresh inbox,
    first untraced (requests, wall time), then traced (peak memory of the job)."""
    rows = []
    for child_job, (client, job_name) in DHIS2W_JOBS.items():
        row: Dict[str, Any] = {"client": client, "job": job_name, "n": old}
        for traced in (False, True):
            with CleanupServer(total, old) as emu:
                if child_job != "mark read":  # read first, as in the run
                    with Messenger(emu.url, auth=(USER, PASSWORD)) as m:
                        _cleanup_jobs(dhis2_messages)["mark read"](m)
                emu.clear_log()
                argv = [python, os.path.join(ROOT, "bench", "dhis2w_jobs.py"), emu.url, child_job]
                if traced:
                    argv.append("traced")
                child = subprocess.run(
                    argv, check=False, capture_output=True, text=True, timeout=3600
                )
                if child.returncode:
                    raise RuntimeError("the dhis2w child failed: " + child.stderr[-2000:])
                run = json.loads(child.stdout)
                run["requests"] = emu.requests_seen()
            if traced:
                row["peak_bytes"] = run["peak_bytes"]
            else:
                row.update(run)
        rows.append(row)
    return rows


def report_cleanup(rec: Dict[str, Any]) -> Tuple[str, List[Dict[str, Any]]]:
    out = [
        (
            f"\n8. Cleaning up an inbox of {rec['total']:,}, {rec['old']:,} old validation "
            f"results ({rec['latency_s'] * 1000:.0f} ms latency)"
        )
    ]
    rows, targets = [], []
    small = {
        r["job"]: r for r in rec["rows"] if r["client"] == "dhis2_messages" and r["n"] != rec["old"]
    }
    for r in rec["rows"]:
        extra = ""
        if "extrapolated_requests" in r:
            extra = f" (x{rec['old'] // r['n']}: {r['extrapolated_requests']:,} requests, {r['extrapolated_wall_s']:.0f} s)"
        if "rss_bytes" in r:
            extra = f" (process peak RSS {r['rss_bytes'] / 2**20:,.0f} MiB)"
        peak = "" if r.get("peak_bytes") is None else f"{r['peak_bytes'] / 1024:,.0f} KiB"
        rows.append(
            [
                r["client"],
                r["job"],
                f"{r['n']:,}",
                f"{r['changed']:,}",
                f"{r['requests']:,}",
                f"{r['wall_s']:.1f} s",
                peak,
                r["outcome"][:60] + extra,
            ]
        )
        if r["client"] == "dhis2_messages" and r["n"] == rec["old"]:
            goal = rec["goal"][r["job"]]
            met = r["requests"] <= goal and r["changed"] == rec["old"]
            targets.append(
                {
                    "name": f"cleanup {r['job']} requests",
                    "value": r["requests"],
                    "limit": f"<= {goal}",
                    "met": met,
                }
            )
            ratio = r["peak_bytes"] / small[r["job"]]["peak_bytes"]
            targets.append(
                {
                    "name": f"cleanup {r['job']} memory N / (N/10)",
                    "value": round(ratio, 2),
                    "limit": "report",
                    "met": True,
                }
            )
    out.append(
        _table(["client", "job", "N", "changed", "requests", "wall", "peak", "outcome"], rows)
    )
    return "\n".join(out), targets


def report(results: Dict[str, Any]) -> Tuple[str, List[Dict[str, Any]]]:
    out, targets = [], []

    def target(name: str, value: Any, limit: str, met: bool) -> str:
        targets.append({"name": name, "value": value, "limit": limit, "met": met})
        return _mark(met)

    over = results["overhead"]
    out.append(
        f"1. Client overhead per call: median of {over['rows'][0]['reps']} repetitions x "
        f"{over['rows'][0]['calls_per_rep']} calls, no latency; ratio = Messenger / plain requests "
        f"(target <= {TARGET_OVERHEAD:.2f})"
    )
    out.append(f"   exchanges identical to the plain baseline: {results['identical']}")
    rows = []
    for r in over["rows"]:
        met = r["ratio"] <= TARGET_OVERHEAD
        peer_cell = "n/a" if r["peer_ratio"] is None else f"{r['peer_ratio']:.2f}"
        if dhis2_client is None:
            peer_cell = "-"
        rows.append(
            [
                r["call"],
                f"{r['messenger_us']:.0f}",
                f"{r['plain_us']:.0f}",
                f"{r['ratio']:.2f}",
                f"{r['messenger_cpu_us']:.0f}",
                f"{r['plain_cpu_us']:.0f}",
                f"{r['cpu_ratio']:.2f}",
                peer_cell,
                target(f"overhead {r['call']}", round(r["ratio"], 3), f"<= {TARGET_OVERHEAD}", met),
            ]
        )
    out.append(
        _table(
            [
                "call",
                "Messenger us",
                "plain us",
                "ratio",
                "M cpu us",
                "plain cpu us",
                "cpu ratio",
                "peer ratio",
                "target",
            ],
            rows,
        )
    )
    out.append(
        f"   us = wall per call (client + emulator); cpu = this process only. peer = {over['peer']}"
    )

    out.append("")
    out.append(
        f"2. Parsing: bytes -> records relative to json.loads alone (target <= {TARGET_PARSE:.0f}x)"
    )
    rows = []
    for r in results["parsing"]:
        rows.append(
            [
                r["body"],
                f"{r['bytes']:,}",
                f"{r['loads_us']:.0f}",
                f"{r['from_json_us']:.0f}",
                f"{r['records_us']:.0f}",
                f"{r['ratio']:.2f}",
                target(
                    f"parse {r['body']}",
                    round(r["ratio"], 3),
                    f"<= {TARGET_PARSE}",
                    r["ratio"] <= TARGET_PARSE,
                ),
            ]
        )
    out.append(
        _table(
            ["body", "bytes", "json.loads us", "from_json us", "records us", "ratio", "target"],
            rows,
        )
    )

    out.append("")
    mem = results["memory"]
    small, large = mem["small"], mem["large"]
    out.append(
        f"3. Memory: peak traced memory of iter_conversations (page size "
        f"{dhis2_messages.WALK_PAGE_SIZE}), the loop keeping a counter "
        f"(target: {large['conversations']:,} / {small['conversations']:,} <= {TARGET_MEMORY})"
    )
    rows = [
        [
            f"{s['conversations']:,} conversations",
            str(s["pages"]),
            f"{s['peak_bytes'] / 1024:.0f}",
            str(s["url_cache_entries"]),
            f"{s['traced_walk_s']:.2f}",
        ]
        for s in (small, large)
    ]
    rows.append(
        [
            "ratio",
            "",
            f"{mem['ratio']:.2f}",
            "",
            target(
                "memory ratio",
                round(mem["ratio"], 3),
                f"<= {TARGET_MEMORY}",
                mem["ratio"] <= TARGET_MEMORY,
            ),
        ]
    )
    out.append(_table(["walk", "pages", "peak KiB", "URL cache", "traced walk s"], rows))
    out.append(
        f"   median of {small['reps']} walks, each from empty urllib.parse caches; the standard library keeps "
        "the last 128 URLs (2 per page): part of the peak, bounded"
    )
    out.append("")
    rt = results["round_trips"]
    out.append(
        f"4. Round trips: triage with {rt['latency_s'] * 1000:.0f} ms injected latency, median of "
        f"{rt['reps']} runs: walk {TRIAGE_TOTAL} unread (page size {rt['page_size']}), mark "
        f"{TRIAGE_MARK} read, delete {TRIAGE_DELETE}, reply to {TRIAGE_REPLY}, count unread"
    )
    rows = [
        [
            "requests seen by the emulator",
            str(rt["expected_requests"]),
            str(rt["server_requests"]),
            target(
                "round trips (emulator)",
                rt["server_requests"],
                f"== {rt['expected_requests']}",
                rt["server_requests"] == rt["expected_requests"],
            ),
        ],
        [
            "requests sent by the client",
            str(rt["expected_requests"]),
            str(rt["client_requests"]),
            target(
                "round trips (client)",
                rt["client_requests"],
                f"== {rt['expected_requests']}",
                rt["client_requests"] == rt["expected_requests"],
            ),
        ],
        [
            "unread afterwards",
            str(rt["expected_unread"]),
            str(rt["unread"]),
            target("triage result", rt["unread"], f"== {rt['expected_unread']}", rt["consistent"]),
        ],
    ]
    out.append(_table(["", "expected", "actual", "target"], rows))
    out.append(f"   minimum = {rt['expected_breakdown']}")
    out.append(
        f"   wall {rt['wall_s'] * 1000:.0f} ms; latency floor {rt['expected_requests']} x "
        f"{rt['latency_s'] * 1000:.0f} ms = {rt['latency_floor_s'] * 1000:.0f} ms; "
        f"wall / floor {rt['wall_vs_floor']:.2f}"
    )

    rel = results["releases"]
    out.append("")
    out.append("5. Requests per call on each emulated DHIS2 release (seen by the emulator)")
    rows = []
    for name, per_version in rel["counts"].items():
        met = all(per_version[v] == _expected_requests(name, v) for v in rel["versions"])
        target(f"requests: {name}", per_version, "1 (send_feedback before 2.41.3: 2)", met)
        rows.append([name] + [str(per_version[v]) for v in rel["versions"]] + [_mark(met)])
    out.append(_table([""] + rel["versions"] + ["target"], rows))
    out.append("")
    out.append("5b. Requests of sending once (a fresh Messenger, these calls in order)")
    rows = [
        [
            r["call"],
            str(r["expected"]),
            str(r["requests"]),
            target(
                f"requests: {r['call']}",
                r["requests"],
                f"== {r['expected']}",
                r["requests"] == r["expected"],
            ),
        ]
        for r in results["once"]
    ]
    out.append(_table(["", "expected", "requests", "target"], rows))
    out.append("")
    out.append(
        "6. Hostile servers: wall time of list_conversations with timeout=(1, 2) against a server "
        "dripping one byte a second (target: <= deadline + 1 s)"
    )
    rows = [
        [
            r["case"],
            f"{r['deadline_s']:g}",
            f"{r['wall_s']:.2f}",
            r["outcome"],
            target(
                f"deadline: {r['case']}",
                round(r["wall_s"], 2),
                f"<= {r['deadline_s'] + 1:g}",
                r["wall_s"] <= r["deadline_s"] + 1,
            ),
        ]
        for r in results["slow_servers"]
    ]
    out.append(_table(["server", "deadline s", "wall s", "outcome", "target"], rows))
    out.append("")
    out.append(
        f"   peak RSS of one call in a fresh process, max_response_size {LIMIT // MiB} MiB "
        f"(target for Messenger: growth <= {TARGET_LARGE} x {LIMIT // MiB} MiB)"
    )
    rows = []
    for r in results["large_answers"]:
        ours = r["call"] != "plain requests"
        met = r["growth_mib"] <= TARGET_LARGE * LIMIT / MiB
        rows.append(
            [
                r["case"],
                r["call"],
                f"{r['peak_kib'] / 1024:,.0f}",
                f"{r['growth_mib']:,.0f}",
                f"{r['wall_s']:.2f}",
                r["outcome"],
                target(
                    f"memory: {r['case']}, {r['call']}",
                    round(r["growth_mib"]),
                    f"<= {TARGET_LARGE * LIMIT / MiB:g} MiB",
                    met,
                )
                if ours
                else "-",
            ]
        )
    out.append(
        _table(["answer", "call", "peak MiB", "growth MiB", "wall s", "outcome", "target"], rows)
    )
    out.append(
        "   plain requests: requests.get(...).content, no limit: what an unbounded read costs"
    )
    rec = results["recipients"]
    out.append("")
    out.append(
        f"7. Recipients, {rec['latency_s'] * 1000:.0f} ms injected latency: send to a district's whole "
        "subtree (organisation_unit_subtree + send), and a user lookup"
    )
    rows = [
        [
            f"subtree send, tree depth {r['depth']}",
            f"{r['units']} units, {r['users_reached']} users",
            str(r["server_requests"]),
            str(r["client_requests"]),
            f"{r['wall_s'] * 1000:.0f} ms",
            target(
                f"subtree send requests (depth {r['depth']})",
                r["server_requests"],
                "== 2",
                r["server_requests"] == r["client_requests"] == 2,
            ),
        ]
        for r in rec["sends"]
    ]
    rows.append(
        [
            "lookup_users",
            f"{rec['found']} users",
            str(rec["lookup_requests"]),
            "",
            "",
            target(
                "lookup_users requests", rec["lookup_requests"], "== 1", rec["lookup_requests"] == 1
            ),
        ]
    )
    out.append(_table(["", "reached", "emulator", "client", "wall", "target"], rows))
    out.append("")
    walk = results["walk_page_size"]
    out.append(
        f"9. The walk's page size: a whole walk of {walk['inbox']:,} conversations; the emulator "
        f"loads the whole inbox for every page, as DHIS2 does (default {walk['default']:,})"
    )
    rows = [
        [str(r["page_size"]), str(r["requests"]), f"{r['rows_asked']:,}", f"{r['walk_s']:.2f}"]
        for r in walk["rows"]
    ]
    out.append(_table(["page size", "requests", "rows asked", "walk s"], rows))
    return "\n".join(out), targets


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: fewer calls and sizes"
    )
    parser.add_argument(
        "--json",
        default=os.path.join(ROOT, "bench", "results.json"),
        metavar="PATH",
        help="write the figures here (default bench/results.json)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile summary of each Messenger call of section 1",
    )
    parser.add_argument("--large-answer", nargs=2, metavar=("CASE", "CALL"), help=argparse.SUPPRESS)
    parser.add_argument("--cleanup-server", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only", choices=("cleanup",), help="run only this section (and report only it)"
    )
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        help="section 8 also runs this version of dhis2_messages.py, as 'before'",
    )
    parser.add_argument(
        "--dhis2w",
        metavar="PYTHON",
        help="section 8 also runs the jobs with dhis2w-client, in this interpreter (3.13+)",
    )
    args = parser.parse_args(argv)
    if args.large_answer:
        large_answer_child(*args.large_answer)
        return 0
    if args.cleanup_server:
        cleanup_server(*args.cleanup_server)
        return 0
    if args.only == "cleanup":
        return _main_cleanup(args)
    cfg = QUICK if args.quick else FULL
    # A plain SIGTERM would skip the finally blocks that stop the emulators.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    started = time.perf_counter()
    results: Dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "requests": requests.__version__,
        "dhis2_messages": dhis2_messages.__version__,
        "cpus": os.cpu_count(),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
    }
    problems = check_identical_exchanges()
    results["identical"] = "yes" if not problems else "NO: " + "; ".join(problems)
    with EmulatorProcess() as emu:
        print(f"emulator at {emu.url} (pid {emu.proc.pid}); mode {results['mode']}", flush=True)
        results["overhead"] = bench_overhead(emu, cfg, args.profile)
        results["parsing"] = bench_parsing(emu, cfg)
        results["memory"] = bench_memory(emu, cfg)
        results["walk_page_size"] = bench_walk_page_size(emu, cfg)
    with EmulatorProcess(latency=LATENCY) as slow:
        results["round_trips"] = bench_round_trips(slow, cfg)
        results["recipients"] = bench_recipients(slow, cfg)
    results["releases"] = bench_release_requests()
    results["once"] = bench_once()
    results["slow_servers"] = bench_slow_servers(cfg)
    results["large_answers"] = bench_large_answers(cfg)
    results["cleanup"] = bench_cleanup(cfg, args.baseline, args.dhis2w)
    results["elapsed_s"] = time.perf_counter() - started

    text, targets = report(results)
    cleanup_text, cleanup_targets = report_cleanup(results["cleanup"])
    text, targets = text + "\n" + cleanup_text, targets + cleanup_targets
    if problems:
        targets.append(
            {
                "name": "identical exchanges",
                "value": results["identical"],
                "limit": "yes",
                "met": False,
            }
        )
    results["targets"] = targets
    results["all_met"] = all(t["met"] for t in targets)
    print()
    print(text)
    for name, stats in results["overhead"].pop("profiles").items():
        print(f"\nprofile of Messenger {name}:\n{stats}")
    missed = [t["name"] for t in targets if not t["met"]]
    print()
    print(
        f"{len(targets) - len(missed)} of {len(targets)} targets met in {results['elapsed_s']:.0f} s"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {args.json}")
    return 0 if not missed else 1


def _main_cleanup(args: Any) -> int:
    """--only cleanup: section 8 alone, printed and written like a full run."""
    cfg = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    results = {"mode": "quick" if args.quick else "full", "python": platform.python_version()}
    results["cleanup"] = bench_cleanup(cfg, args.baseline, args.dhis2w)
    text, targets = report_cleanup(results["cleanup"])
    results["targets"] = targets
    print(text)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {args.json}")
    return 0 if all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)

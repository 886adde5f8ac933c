"""Section 8's clean-up jobs written with dhis2w-client, a peer of dhis2_messages.

dhis2w-client is async-only and needs Python 3.13+, so bench.py runs this file in a child
process with an interpreter that has it installed (``--dhis2w PYTHON``)::

    PYTHON dhis2w_jobs.py URL JOB [traced]

It opens a client (which asks the server for its version), runs JOB, and prints one JSON
line: how many it changed, the outcome, the job's wall time, its peak traced memory (with
``traced``; tracing starts once the client is open) and the process's peak RSS.  The
requests bench.py counts include the opening: the root page, where it redirects, and
``/api/system/info`` (three on the emulator).

The jobs use the client's messaging API as it presents it: ``list_conversations`` (one
page, one filter, no pager: the walk stops at a short page), ``mark_read`` (every uid in
one POST) and ``delete_conversation`` (one ``DELETE /api/messageConversations/{uid}``, the
hard delete, which needs the metadata authority).  It has no soft or batch delete, so
"delete_raw" is what a user without that authority is left with: the client's generic
``delete_raw`` on the per-participant path the Messaging app uses.  Many requests run as
its documentation advises for batches: ``asyncio.gather`` under a semaphore of 10.
"""

import asyncio
import json
import resource
import sys
import time
import tracemalloc
from importlib.metadata import version

from dhis2w_client import BasicAuth, Dhis2Client

USER, PASSWORD = "alice", "District1#"
PAGE = 1000  # dhis2_messages' walk page size (DHIS2's default is 50)
AT_ONCE = 10
OLD = "lastMessage:lt:2024-01-01"
VALIDATION = "messageType:eq:VALIDATION_RESULT"


async def matching(client, filter, keep):
    """The uids of every conversation that passes *filter* on the server and *keep* here."""
    uids, page = [], 1
    while True:
        rows = await client.messaging.list_conversations(filter=filter, page=page, page_size=PAGE)
        uids += [c.id for c in rows if keep(c)]
        if len(rows) < PAGE:
            return uids
        page += 1


async def each(uids, call):
    """``call(uid)`` for every uid, AT_ONCE at a time."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(uid):
        async with gate:
            await call(uid)

    await asyncio.gather(*(one(uid) for uid in uids))
    return len(uids)


async def mark_read(client):
    uids = await matching(client, VALIDATION, lambda c: not c.read)
    await client.messaging.mark_read(uids)
    return len(uids)


async def old_validation_results(client):
    return await matching(client, OLD, lambda c: c.messageType == "VALIDATION_RESULT")


async def delete(client):
    uids = await old_validation_results(client)
    return await each(uids, client.messaging.delete_conversation)


async def delete_raw(client):
    me = (await client.system.me()).id
    uids = await old_validation_results(client)
    return await each(uids, lambda uid: client.delete_raw(f"/api/messageConversations/{uid}/{me}"))


JOBS = {"mark read": mark_read, "delete": delete, "delete_raw": delete_raw}


async def main(url, job, traced):
    async with Dhis2Client(url, auth=BasicAuth(username=USER, password=PASSWORD)) as client:
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        try:
            changed, outcome = await JOBS[job](client), "done"
        except Exception as exc:  # noqa: BLE001 - a failure is a figure too
            changed, outcome = 0, f"{type(exc).__name__}: {str(exc)[:120]}"
        wall = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else None
    return {
        "version": version("dhis2w-client"),
        "changed": changed,
        "outcome": outcome,
        "wall_s": wall,
        "peak_bytes": peak,
        "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["traced"]))))

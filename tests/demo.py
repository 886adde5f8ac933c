"""A real round trip against the bundled DHIS2 emulator: ``python -m tests.demo``.

Starts the emulator on 127.0.0.1, then, over HTTP: the admin sends a reminder
to every user of an organisation unit, Alice lists her inbox and replies, and
the admin reads the whole thread.
"""

from __future__ import annotations

from dhis2_messages import Messenger
from tests.emulator import BO_DISTRICT, Emulator


def main() -> None:
    with Emulator() as server:
        print(f"DHIS2 emulator running at {server.url}\n")
        with Messenger(server.url, auth=("admin", "district")) as admin, Messenger(
            server.url, token=server.user("alice").token
        ) as alice:
            uid = admin.send(
                subject="Malaria report due Friday",
                text="Please submit the weekly malaria report for Bo District by Friday.",
                organisation_units=[BO_DISTRICT],
            )
            print(f"admin sent conversation {uid} to Bo District")

            print(f"alice has {alice.count_unread()} unread conversation(s):")
            for conv in alice.list_conversations(filter="read:eq:false"):
                print(f"  {conv.id}  {conv.subject!r} from {conv.last_sender.name}")

            alice.reply(uid, "Done: submitted this morning.")
            alice.mark_read(uid)
            print("alice replied and marked it read\n")

            thread = admin.get_conversation(uid)
            print(f"Thread {thread.subject!r} ({thread.message_count} messages):")
            for message in thread.messages:
                when = message.created.strftime("%Y-%m-%d %H:%M")
                print(f"  [{when}] {message.sender.name}: {message.text}")
            readers = sorted(p.user.name for p in thread.participants if p.read)
            print(f"\nRead by: {', '.join(readers)}")


if __name__ == "__main__":
    main()

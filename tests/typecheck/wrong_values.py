# pyright: strict
"""A user's typos that both checkers must catch: a status, a priority, a row key."""

from dhis2_messages import Messenger

with Messenger("https://dhis2.example.org", token="d2p_x") as m:
    m.set_status("Qa1b2c3d4e5", "SOLVD")
    m.set_priority("Qa1b2c3d4e5", "URGENT")
    for conv in m.list_conversations():
        print(conv.row()["subjet"])

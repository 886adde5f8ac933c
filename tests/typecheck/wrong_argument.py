# pyright: strict
"""A user's mistake that both checkers must catch: a number where uids belong."""

from dhis2_messages import Messenger

with Messenger("https://dhis2.example.org", token="d2p_x") as m:
    m.mark_read(42)

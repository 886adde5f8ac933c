"""The dhis2-messages command line against the emulator.

Most behaviour runs in-process through ``main(argv)`` (fast); a representative
few cases run ``python -m dhis2_messages`` as a real subprocess, and what a
person at a terminal sees (colour, width, progress, prompts) on a pseudo-terminal.
Each command has its class here, recipients given by name too
(``TestRecipientNames``); errors read in the command line's own words.

Neighbours: what each command's library call does is in its area's file
(test_inbox.py, test_sending.py, test_read_state.py, ...); the redaction of
secrets in test_security.py, which also checks the command line's bad-URL message.
"""

from __future__ import annotations

import configparser
import importlib
import io
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import attrs
import pytest

import dhis2_messages
from dhis2_messages import main
from tests.conftest import (
    ADMIN,
    ALICE,
    API,
    BO_DISTRICT,
    BOB,
    CAROL,
    DAVE,
    REPORTERS,
    UNKNOWN,
    at_least,
)
from tests.emulator import BADJIA, NGELEHUN_CHC, SIERRA_LEONE, free_port, json_response

ROOT = Path(__file__).resolve().parent.parent
PDF = b"%PDF-1.4\n\x00\x01\x02\xff binary \r\n report\n"


class Result:
    def __init__(self, status, out, err):
        self.status, self.out, self.err = status, out, err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"<Result {self.status} out={self.out[:300]!r} err={self.err[:300]!r}>"


def _clean_env(environ):
    return {k: v for k, v in environ.items() if not k.startswith("DHIS2_")}


@pytest.fixture
def cli(emulator, monkeypatch, capsysbinary):
    """cli(*argv, user="admin", env=None, stdin="", binary=False) -> Result, through main(argv).

    By default DHIS2_URL and DHIS2_TOKEN point at the emulator as *user*; *env*
    replaces every DHIS2_* variable instead.
    """
    monkeypatch.setattr(dhis2_messages.Messenger, "backoff", 0.0)

    def run(*argv, user="admin", env=None, stdin="", binary=False):
        # stdin: the text standard input holds, or a file object to use as it
        for name in [n for n in os.environ if n.startswith("DHIS2_")]:
            monkeypatch.delenv(name)
        if env is None:
            env = {"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user(user).token}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin)
        status = main([str(a) for a in argv])
        out, err = capsysbinary.readouterr()
        return Result(status, out if binary else out.decode("utf-8"), err.decode("utf-8"))

    return run


@pytest.fixture
def spawn(emulator):
    """spawn(*argv, user="admin", env=None, stdin=None, binary=False) -> Result, as a subprocess."""

    def run(*argv, user="admin", env=None, stdin=None, binary=False):
        full = _clean_env(os.environ)
        full["PYTHONIOENCODING"] = "utf-8"
        full.update(
            {"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user(user).token}
            if env is None
            else env
        )
        done = subprocess.run(
            [sys.executable, "-m", "dhis2_messages", *map(str, argv)],
            check=False,
            cwd=ROOT,
            env=full,
            input=None if stdin is None else stdin.encode("utf-8"),
            capture_output=True,
            timeout=60,
        )
        out = done.stdout if binary else done.stdout.decode("utf-8")
        return Result(done.returncode, out, done.stderr.decode("utf-8"))

    return run


def ok(result):
    assert 0 == result.status, result
    assert "" == result.err, result
    return result


def attachment_file(tmp_path, name="report.pdf", data=PDF):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_line(result):
    """The message after the usage line (which names every option anyway)."""
    return result.err.strip().splitlines()[-1]


# -- Subprocesses: the real command ------------------------------------------------


class TestSubprocess:
    def test_a_lost_answer_that_was_found_is_a_warning(self, emulator, spawn):
        """DHIS2 made it and the connection broke: exit 0 with the uid, and a warning."""
        emulator.inject(method="POST", path=API, drop=True, process=True)
        result = spawn("send", "S", "T", "--user", ALICE)
        uid = result.out.strip()
        assert (0, [uid]) == (result.status, list(emulator.conversations))
        assert "was lost" in result.err and f"{uid} was found" in result.err

    def test_list_table(self, emulator, spawn):
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject="Malaria ✓")
        result = ok(spawn("list"))
        header, row, footer = result.out.splitlines()
        assert header.startswith("UID") and row.startswith(uid)
        assert row.endswith("Alice Banda  Malaria ✓")
        assert "page 1 of 1, 1 in all" == footer

    @pytest.mark.parametrize(
        "argv", [("list",), ("--json", "list"), ("download", "{uid}", "{msg}", "{file}")]
    )
    def test_a_reader_that_stops_early_is_not_an_error(self, emulator, alice, argv):
        """`dhis2-messages list | head -1`: the closed pipe ends the command quietly, status 0."""
        emulator.add_conversations(30, sender="alice", recipients=["admin"])
        file = alice.upload_attachment(b"%PDF" * 50_000)
        uid = alice.send(subject="Big", text="Attached.", users=[ADMIN], attachments=[file])
        message = emulator.conversations[uid].messages[0]
        argv = [a.format(uid=uid, msg=message.uid, file=file) for a in argv]
        env = _clean_env(os.environ)
        env.update({"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token})
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the command writes a byte
        try:
            done = subprocess.run(
                [sys.executable, "-m", "dhis2_messages", *argv],
                check=False,
                cwd=ROOT,
                env=env,
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=60,
            )
        finally:
            os.close(write_end)
        assert (0, b"") == (done.returncode, done.stderr)

    def test_show_json(self, emulator, spawn):
        uid = emulator.add_conversation(
            sender="alice", recipients=["admin"], subject="S", text="first", replies=1
        )
        data = ok(spawn("--json", "show", uid)).json()
        conv = emulator.conversations[uid]
        assert (uid, "S") == (data["id"], data["subject"])
        assert [m.uid for m in conv.messages] == [m["id"] for m in data["messages"]]
        assert ["first", "Reply 1"] == [m["text"] for m in data["messages"]]
        assert {"id": ALICE, "name": "Alice Banda", "username": "alice"} == data["messages"][0][
            "sender"
        ]

    def test_send_with_attachment_then_download_to_stdout(self, emulator, spawn, tmp_path):
        path = attachment_file(tmp_path)
        result = ok(spawn("send", "Weekly report", "Attached.", "--user", ALICE, "--attach", path))
        uid = result.out.strip()
        conv = emulator.conversations[uid]
        (message,) = conv.messages
        (file,) = message.attachments
        assert ("Attached.", "report.pdf", PDF) == (message.text, file.name, file.data)
        assert {"admin", "alice"} == set(conv.participants)
        raw = spawn("download", uid, message.uid, file.uid, user="alice", binary=True)
        assert (0, PDF, "") == (raw.status, raw.out, raw.err)

    def test_reply_text_from_stdin(self, emulator, spawn):
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject="S")
        text = "Line one\nLíne two ✓\n"
        assert f"replied to {uid}\n" == ok(spawn("reply", uid, "-", stdin=text)).out
        assert text[:-1] == emulator.conversations[uid].messages[-1].text  # one final newline off

    def test_dhis2_error_exit_1(self, emulator, spawn):
        result = spawn("show", UNKNOWN)
        assert 1 == result.status and "" == result.out
        assert f"No MessageConversation found with UID: {UNKNOWN}" in result.err
        assert "Traceback" not in result.err

    def test_missing_credentials_exit_2(self, emulator, spawn):
        result = spawn("unread", env={"DHIS2_URL": emulator.url})
        assert 2 == result.status and "" == result.out
        for name in ("DHIS2_TOKEN", "DHIS2_USERNAME", "DHIS2_PASSWORD", "--token", "--username"):
            assert name in error_line(result)
        assert "Traceback" not in result.err
        assert [] == emulator.log

    def test_usage_error_exit_2(self, emulator, spawn):
        result = spawn("mark-read")  # argparse: UID is required
        assert 2 == result.status and "usage: dhis2-messages mark-read" in result.err
        result = spawn("status", "not-a-uid", "open")
        assert (
            2 == result.status and "not a DHIS2 uid" in result.err and "Traceback" not in result.err
        )
        assert [] == emulator.log


# -- Entry points ------------------------------------------------------------------


def test_console_script_declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    scripts = dict(
        (part.strip() for part in line.split("=", 1))
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert "dhis2_messages:main" == scripts["dhis2-messages"]
    module, _, name = scripts["dhis2-messages"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_main_in_process(cli, capsysbinary):
    assert 0 == main(["--version"])
    assert f"dhis2-messages {dhis2_messages.__version__}" in capsysbinary.readouterr().out.decode()
    assert 0 == main(["send", "--help"])
    assert "--attach FILE" in capsysbinary.readouterr().out.decode()
    assert 2 == main([])
    assert 2 == main(["no-such-command"])
    assert 2 == cli("list", "--page-size", "many").status


#: The command that calls each public Messenger method.  A new method needs a
#: command and a line here; a method no command calls fails the test below.
COMMAND_OF = {
    "list_conversations": "list",
    "iter_conversations": "list",  # list --all
    "count_unread": "unread",
    "get_conversation": "show",
    "send": "send",
    "reply": "reply",
    "send_feedback": "feedback",
    "add_recipients": "add-recipients",
    "mark_read": "mark-read",
    "mark_unread": "mark-unread",
    "follow_up": "follow-up",
    "unfollow_up": "unfollow-up",
    "delete_conversations": "delete",
    "delete_conversation": "delete",
    "set_status": "status",
    "set_priority": "priority",
    "assign": "assign",
    "unassign": "unassign",
    "upload_attachment": "upload",  # and send/reply --attach
    "download_attachment": "download",
    "lookup_users": "find",  # and every --user given as a name
    "lookup_feedback_recipients": "find",  # find --feedback-recipients
    "find_user_groups": "find",  # and every --group given as a name
    "find_organisation_units": "find",  # and every --org-unit given as a name
    "resolve_user": "send",  # --user, --assign's USER and every --user of a bulk command
    "resolve_user_group": "send",  # --group
    "resolve_organisation_unit": "tree",  # and --org-unit, --org-unit-tree
    "organisation_unit_subtree": "tree",  # and send/add-recipients --org-unit-tree
    "expand_recipients": "send",  # send --dry-run
    "find_sent": "send",  # send --once, feedback --once
}
#: Public methods that are about the Messenger itself, not a DHIS2 endpoint.
NOT_COMMANDS = {"close", "from_env"}


def _subcommands():
    parser = dhis2_messages._cli_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_every_method_has_a_command():
    public = {
        name
        for name, value in vars(dhis2_messages.Messenger).items()
        if not name.startswith("_") and callable(getattr(dhis2_messages.Messenger, name))
    }
    assert public - NOT_COMMANDS == set(COMMAND_OF), "a method without a command, or a stale entry"
    assert set(COMMAND_OF.values()) <= set(_subcommands())


def test_every_command_runs_its_own_function():
    """Each subcommand is registered with the function that runs it, none shared by accident."""
    runs = {name: p.get_default("run") for name, p in _subcommands().items()}
    assert all(callable(run) for run in runs.values())
    assert len(set(runs.values())) == len(runs)


# -- Connection ----------------------------------------------------------------------


class TestConnection:
    def test_missing_url(self, emulator, cli):
        result = cli("unread", env={"DHIS2_TOKEN": emulator.user("admin").token})
        assert 2 == result.status
        assert "--url" in error_line(result) and "DHIS2_URL" in error_line(result)
        assert emulator.user("admin").token not in result.err

    def test_flags(self, emulator, cli):
        emulator.add_conversation(sender="alice", recipients=["bob"], subject="S")
        result = ok(
            cli("--url", emulator.url, "--token", emulator.user("bob").token, "unread", env={})
        )
        assert "1\n" == result.out
        assert "bob" == emulator.log[-1].user

    def test_flags_win_over_environment(self, emulator, cli):
        ok(cli("--token", emulator.user("carol").token, "unread", user="bob"))
        assert "carol" == emulator.log[-1].user
        ok(
            cli(
                "--username",
                "alice",
                "unread",
                env={
                    "DHIS2_URL": emulator.url,
                    "DHIS2_TOKEN": emulator.user("bob").token,
                    "DHIS2_PASSWORD": "District1#",
                },
            )
        )
        assert "alice" == emulator.log[-1].user

    def test_username_and_password_from_environment(self, emulator, cli):
        ok(
            cli(
                "unread",
                env={
                    "DHIS2_URL": emulator.url,
                    "DHIS2_USERNAME": "dave",
                    "DHIS2_PASSWORD": "District1#",
                },
            )
        )
        assert "dave" == emulator.log[-1].user
        assert emulator.log[-1].headers["Authorization"].startswith("Basic ")

    def test_pat_variable(self, emulator, cli):
        ok(
            cli(
                "unread", env={"DHIS2_URL": emulator.url, "DHIS2_PAT": emulator.user("carol").token}
            )
        )
        assert "carol" == emulator.log[-1].user

    @pytest.mark.parametrize(
        "names",
        [
            ("DHIS2_TOKEN", "DHIS2_USERNAME", "DHIS2_PASSWORD"),
            ("DHIS2_TOKEN", "DHIS2_PAT"),
            ("DHIS2_PAT", "DHIS2_USERNAME", "DHIS2_PASSWORD"),
            ("DHIS2_USERNAME", "DHIS2_PASSWORD"),
        ],
    )
    def test_the_environment_means_what_it_means_to_from_env(self, emulator, cli, names):
        """One reading of DHIS2_*: the command logs in as the user Messenger.from_env picks."""
        values = {
            "DHIS2_TOKEN": emulator.user("bob").token,
            "DHIS2_PAT": emulator.user("carol").token,
            "DHIS2_USERNAME": "dave",
            "DHIS2_PASSWORD": "District1#",
        }
        env = {"DHIS2_URL": emulator.url, **{name: values[name] for name in names}}
        ok(cli("unread", env=env))
        by_cli = emulator.log[-1].user
        with dhis2_messages.Messenger.from_env() as m:  # cli() left env set as given
            m.count_unread()
        assert by_cli == emulator.log[-1].user

    def test_no_password_without_a_terminal(self, emulator, cli):
        for argv, env in (
            (["--username", "alice"], {"DHIS2_URL": emulator.url}),
            ([], {"DHIS2_URL": emulator.url, "DHIS2_USERNAME": "alice"}),
        ):
            result = cli(*argv, "unread", env=env)
            assert 2 == result.status and "DHIS2_PASSWORD" in result.err, result
        assert [] == emulator.log

    def test_password_prompt(self, emulator, cli, monkeypatch):
        class Terminal(io.StringIO):
            def isatty(self):
                return True

        prompts = []

        def getpass(prompt):
            prompts.append(prompt)
            return "District1#"

        monkeypatch.setattr("getpass.getpass", getpass)
        emulator.add_conversation(sender="bob", recipients=["alice"], subject="S")
        result = ok(
            cli("--username", "alice", "unread", env={"DHIS2_URL": emulator.url}, stdin=Terminal())
        )
        assert "1\n" == result.out
        assert ["DHIS2 password for alice: "] == prompts
        assert "alice" == emulator.log[-1].user

    def test_token_and_username_conflict(self, emulator, cli):
        result = cli(
            "--token",
            emulator.user("bob").token,
            "--username",
            "bob",
            "unread",
            env={"DHIS2_URL": emulator.url, "DHIS2_PASSWORD": "District1#"},
        )
        assert 2 == result.status and "not both" in result.err

    def test_wrong_credentials_exit_1_without_secrets(self, emulator, cli):
        token = "d2p_" + "x" * 50
        result = cli("--token", token, "unread", env={"DHIS2_URL": emulator.url})
        assert 1 == result.status and "refused the credentials (HTTP 401)" in result.err
        assert "--token" in result.err
        assert token not in result.err + result.out
        result = cli(
            "unread",
            env={
                "DHIS2_URL": emulator.url,
                "DHIS2_USERNAME": "alice",
                "DHIS2_PASSWORD": "Secret-Pa55word",
            },
        )
        assert 1 == result.status and "refused the credentials (HTTP 401)" in result.err
        assert "Secret-Pa55word" not in result.err + result.out

    def test_malformed_token_or_url(self, emulator, cli):
        result = cli("--token", "d2p_not a token!", "unread", env={"DHIS2_URL": emulator.url})
        assert 2 == result.status and "not a token" not in result.err
        assert 2 == cli("--url", "dhis2.example.org", "unread").status
        assert 2 == cli("--timeout", "0", "unread").status
        assert [] == emulator.log

    def test_password_that_basic_auth_cannot_carry(self, emulator, cli):
        password = "Pässwörd€"
        result = cli(
            "unread",
            env={"DHIS2_URL": emulator.url, "DHIS2_USERNAME": "alice", "DHIS2_PASSWORD": password},
        )
        assert 2 == result.status and "token" in result.err
        assert (
            "€" not in result.err and password not in result.err and "Traceback" not in result.err
        )

    def test_server_unreachable_exit_1(self, emulator, cli):
        result = cli("--url", f"http://127.0.0.1:{free_port()}", "unread")
        assert 1 == result.status
        assert result.err.startswith("dhis2-messages: could not connect to 127.0.0.1:")
        assert "Connection refused. Check --url" in result.err
        assert 1 == len(result.err.splitlines()) and "/api" not in result.err
        assert emulator.user("admin").token not in result.err


# -- list, show, unread ----------------------------------------------------------------


class TestList:
    def test_table_columns_line_up(self, emulator, cli):
        plain = emulator.add_conversation(sender="alice", recipients=["admin"], subject="Stock-out")
        tricky = emulator.add_conversation(
            sender="bob", recipients=["admin", "alice"], subject="Two\nlines \x1b[31mred\x1b[0m"
        )
        system = emulator.add_conversation(
            sender=None,
            recipients=["admin"],
            subject="Validation",
            message_type="VALIDATION_RESULT",
            priority="high",
        )
        mine = emulator.add_conversation(sender="admin", recipients=["carol"], subject="Mine")
        emulator.conversations[plain].participants["admin"].follow_up = True
        lines = ok(cli("list")).out.splitlines()
        header, rows, footer = lines[0], lines[1:-1], lines[-1]
        assert "page 1 of 1, 4 in all" == footer
        names = ("TYPE", "STATUS", "PRIORITY", "LAST MESSAGE", "FROM", "SUBJECT")
        starts = [header.index(name) for name in names]
        expected = {
            plain: ("*!", "PRIVATE", "NONE", "NONE", "Alice Banda", "Stock-out"),
            tricky: ("* ", "PRIVATE", "NONE", "NONE", "Bob Mensah", "Two lines  [31mred [0m"),
            system: ("* ", "VALIDATION_RESULT", "OPEN", "HIGH", "System", "Validation"),
            mine: ("  ", "PRIVATE", "NONE", "NONE", "John Traore", "Mine"),
        }
        assert sorted(expected) == sorted(row[:11] for row in rows)
        for row in rows:
            assert "\x1b" not in row
            flags, kind, status, priority, sender, subject = expected[row[:11]]
            assert flags == row[13:15]
            cells = [row[a:b].rstrip() for a, b in zip(starts, starts[1:] + [len(row)])]
            assert all(row[start - 2 : start] == "  " and row[start] != " " for start in starts), (
                row
            )
            assert [kind, status, priority, sender, subject] == [
                cells[0],
                cells[1],
                cells[2],
                cells[4],
                cells[5],
            ]
            assert len(cells[3]) == len("2024-05-02 10:11")

    def test_wide_names_keep_the_columns_in_line(self, emulator, cli, monkeypatch):
        """CJK takes two terminal columns per character, a combining accent none: SUBJECT stays in line."""
        monkeypatch.setattr(emulator.user("alice"), "surname", "Ba\u0301nda")
        bob = emulator.user("bob")
        monkeypatch.setattr(bob, "first_name", "王")
        monkeypatch.setattr(bob, "surname", "小明")
        emulator.add_conversation(sender="bob", recipients=["admin"], subject="宽")
        emulator.add_conversation(sender="alice", recipients=["admin"], subject="narrow")
        header, *rows, _footer = ok(cli("list")).out.splitlines()

        def columns(text):
            return sum(
                2
                if unicodedata.east_asian_width(ch) in "WF"
                else 0
                if unicodedata.combining(ch)
                else 1
                for ch in text
            )

        (wide,) = [row for row in rows if row.endswith("宽") and "  王 小明 " in row]
        (narrow,) = [row for row in rows if row.endswith("Alice Ba\u0301nda  narrow")]
        assert header.index("SUBJECT") == columns(wide[:-1]) == columns(narrow[: -len("narrow")])

    def test_options_reach_dhis2(self, emulator, cli):
        emulator.add_conversations(3, sender="bob", recipients=["admin"])
        ok(
            cli(
                "list",
                "--unread",
                "--filter",
                "messageType:eq:PRIVATE",
                "--query",
                "Conversation",
                "--order",
                "subject:asc",
                "--page",
                "2",
                "--page-size",
                "2",
            )
        )
        request = emulator.requests("GET", API)[-1]
        assert ["messageType:eq:PRIVATE", "read:eq:false"] == request.param("filter")
        assert (["Conversation"], ["subject:asc"], ["2"], ["2"]) == (
            request.param("queryString"),
            request.param("order"),
            request.param("page"),
            request.param("pageSize"),
        )

    def test_json_page(self, emulator, cli):
        uids = emulator.add_conversations(3, sender="bob", recipients=["admin"])
        data = ok(cli("--json", "list", "--page-size", "2")).json()
        assert (1, 2, 3, 2) == (data["page"], data["page_count"], data["total"], data["page_size"])
        assert uids[::-1][:2] == [c["id"] for c in data["conversations"]]
        assert {"id": BOB, "name": "Bob Mensah", "username": "bob"} == data["conversations"][0][
            "last_sender"
        ]
        assert (
            data == ok(cli("list", "--page-size", "2", "--json")).json()
        )  # --json after the command

    def test_page_sizes_of_a_page_and_of_a_walk(self, emulator, cli):
        """list asks 50; list --all the walk's page size (it asked 50 a page, and DHIS2 loads
        the whole inbox for each); --page-size is the caller's choice for both."""
        emulator.add_conversations(3, sender="bob", recipients=["admin"])
        for argv in (
            ["list"],
            ["list", "--all"],
            ["list", "--page-size", "7"],
            ["list", "--all", "--page-size", "7"],
        ):
            ok(cli(*argv))
        sizes = [r.param("pageSize") for r in emulator.requests("GET", API)]
        assert [["50"], [str(dhis2_messages.WALK_PAGE_SIZE)], ["7"], ["7"]] == sizes

    def test_all_walks_every_page(self, emulator, cli):
        uids = emulator.add_conversations(5, sender="bob", recipients=["admin"])
        lines = ok(cli("list", "--all", "--page-size", "2")).out.splitlines()
        assert uids[::-1] == [line[:11] for line in lines[1:]]  # no footer: every page is shown
        requests = emulator.requests("GET", API)
        assert 3 == len(requests)  # the walk resumes by lastMessage (tests/test_inbox.py)
        emulator.clear_log()
        out = ok(cli("--json", "list", "--all", "--page-size", "2", "--unread")).out
        lines = [json.loads(line) for line in out.splitlines()]  # JSON Lines
        assert uids[::-1] == [c["id"] for c in lines]
        assert 3 == len(emulator.requests("GET", API))

    def test_one_conversation_shape_everywhere(self, emulator, cli):
        """list --json, list --all --json (JSON Lines) and show --json share the record's keys."""
        emulator.add_conversations(3, sender="bob", recipients=["admin"])
        page = ok(cli("--json", "list")).json()
        lines = [json.loads(line) for line in ok(cli("--json", "list", "--all")).out.splitlines()]
        assert page["conversations"] == lines
        assert {"conversations", "page", "page_count", "total", "page_size"} == set(page)
        shown = ok(cli("--json", "show", lines[0]["id"])).json()
        assert set(shown) == set(lines[0])
        assert [f.name for f in attrs.fields(dhis2_messages.Conversation)] == list(shown)

    def test_bad_options(self, emulator, cli):
        assert 2 == cli("list", "--page-size", "0").status
        assert 2 == cli("list", "--filter", "nocolon").status
        assert [] == emulator.log


class TestShow:
    def test_thread(self, emulator, cli, connect, tmp_path, monkeypatch):
        uid = connect("alice").send_feedback(
            subject="Export \x1b[2Jfails", text="It times out.\n\x07Twice."
        )
        carol = connect("carol")
        carol.reply(uid, "Looking into it.", internal=True)
        file = carol.upload_attachment(PDF, filename="log.txt")
        carol.reply(uid, "Here is the log.", attachments=[file])
        carol.assign(uid, CAROL)
        conv = emulator.conversations[uid]
        out = ok(cli("show", uid)).out
        lines = out.splitlines()
        assert "Export  [2Jfails" == lines[0]
        assert "Type: TICKET · Status: OPEN · Priority: NONE · Assignee: Carol Osei" == lines[1]
        assert "\x1b" not in out and "\x07" not in out
        readers = {u for u, p in conv.participants.items() if p.read}
        assert f"2 participants, read by {len(readers)} of 2:" == lines[2]
        assert {
            f"    Alice Banda (alice): {'read' if 'alice' in readers else 'unread'}",
            f"    Carol Osei (carol): {'read' if 'carol' in readers else 'unread'}",
        } == set(lines[3:5])
        headers = [line for line in lines if line.startswith("[")]
        assert [
            f"Alice Banda  ({conv.messages[0].uid})",
            f"Carol Osei  ({conv.messages[1].uid})  [internal note · feedback team only]",
            f"Carol Osei  ({conv.messages[2].uid})",
        ] == [h.split("] ", 1)[1] for h in headers]
        assert all(len(h.split("] ")[0]) == len("[2024-05-02 10:11") for h in headers)
        assert "    It times out." in lines and "     Twice." in lines
        assert "  ┃ Looking into it." in lines  # an internal note's lines stand apart
        command = f"dhis2-messages download {uid} {conv.messages[2].uid} {file} -o log.txt"
        assert [f"    attachment log.txt ({len(PDF)} bytes)", "      " + command] == lines[-2:]
        # the command is ready to copy: it writes the attachment under its own name
        target = tmp_path / "log.txt"
        monkeypatch.chdir(tmp_path)
        ok(cli(*command.split()[1:], user="carol"))
        assert PDF == target.read_bytes()

    def test_read_by_counts_the_participants_flags(self, emulator, cli):
        uid = emulator.add_conversation(
            sender="admin", recipients=["alice", "bob", "carol", "dave"], subject="S"
        )
        for name in ("admin", "alice", "carol"):
            emulator.conversations[uid].participants[name].read = True
        emulator.conversations[uid].participants["bob"].follow_up = True
        lines = ok(cli("show", uid)).out.splitlines()
        assert "5 participants, read by 3 of 5:" == lines[2]
        # readers first, each group by name
        assert [
            "    Alice Banda (alice): read",
            "    Carol Osei (carol): read",
            "    John Traore (admin): read",
            "    Bob Mensah (bob): unread, follow-up",
            "    Dave Kamara (dave): unread",
        ] == lines[3:8]
        assert "Type: PRIVATE" == lines[1]  # a private message has no ticket fields

    def test_attachment_names_cannot_escape_the_folder(self, emulator, cli, connect):
        admin = connect("admin")
        names = {"../../etc/passwd": "passwd", "-rf": None, "a b$(x).pdf": "'a b$(x).pdf'"}
        for name, shown in names.items():
            file = admin.upload_attachment(PDF, filename=name)
            uid = admin.send(subject="S", text="T", users=ALICE, attachments=[file])
            last = ok(cli("show", uid)).out.splitlines()[-1]
            assert last.endswith(f" -o {shown or file}"), last

    def test_json_and_mark_read(self, emulator, cli):
        uid = emulator.add_conversation(
            sender="alice", recipients=["admin"], subject="S", replies=2
        )
        data = ok(cli("show", uid, "--mark-read", "--json")).json()
        conv = emulator.conversations[uid]
        assert [m.uid for m in conv.messages] == [m["id"] for m in data["messages"]]
        assert ["Hello", "Reply 1", "Reply 2"] == [m["text"] for m in data["messages"]]
        assert {"admin": True, "alice": True} == {
            p["user"]["username"]: p["read"] for p in data["participants"]
        }
        assert all(m["internal"] is False and m["attachments"] == [] for m in data["messages"])
        assert conv.participants["admin"].read is True
        assert data["created"].startswith("20") and "T" in data["created"]

    def test_errors(self, emulator, cli):
        uid = emulator.add_conversation(sender="alice", recipients=["bob"], subject="private")
        result = cli("show", uid, user="dave")
        assert 1 == result.status and "permission denied (HTTP 403)" in result.err
        result = cli("show", "x" * 11 + "!")
        assert 2 == result.status and "not a DHIS2 uid" in result.err
        assert 1 == len(emulator.log)


def test_unread(emulator, cli):
    emulator.add_conversations(2, sender="alice", recipients=["bob"])
    assert "2\n" == ok(cli("unread", user="bob")).out
    assert {"unread": 0} == ok(cli("--json", "unread", user="alice")).json()
    assert ["read:eq:false"] == emulator.log[-1].param("filter")


# -- send, reply, feedback, attachments -----------------------------------------------


class TestSend:
    def test_recipients(self, emulator, cli):
        uid = ok(
            cli(
                "send",
                "Report due",
                "Friday, please.",
                "--user",
                DAVE,
                "--group",
                REPORTERS,
                "--org-unit",
                BO_DISTRICT,
                "--user",
                CAROL,
            )
        ).out.strip()
        conv = emulator.conversations[uid]
        assert ("Report due", "Friday, please.") == (conv.subject, conv.messages[0].text)
        assert {"admin", "alice", "bob", "carol", "dave"} == set(conv.participants)
        body = emulator.log[-1].json()
        assert [{"id": DAVE}, {"id": CAROL}] == body["users"]

    def test_text_from_stdin_and_json(self, emulator, cli):
        text = "Multi\nline ✓\r\n"
        data = ok(cli("--json", "send", "S", "-", "--user", ALICE, stdin=text)).json()
        assert {"uid", "attachments", "reached"} == set(data) and [] == data["attachments"]
        assert 1 == data["reached"]  # alice; the sender is not counted
        assert "Multi\nline ✓" == emulator.conversations[data["uid"]].messages[0].text
        uid = ok(cli("send", "S", "-", "--user", ALICE, stdin="two\n\n")).out.strip()
        assert "two\n" == emulator.conversations[uid].messages[0].text  # only one newline off

    def test_attachments(self, emulator, cli, tmp_path):
        one = attachment_file(tmp_path, "one.pdf")
        two = attachment_file(tmp_path, "two.csv", b"a,b\n1,2\n")
        data = ok(
            cli("send", "S", "T", "--user", ALICE, "--attach", one, "--attach", two, "--json")
        ).json()
        (message,) = emulator.conversations[data["uid"]].messages
        assert data["attachments"] == [f.uid for f in message.attachments]
        assert [("one.pdf", PDF, "application/pdf"), ("two.csv", b"a,b\n1,2\n", "text/csv")] == [
            (f.name, f.data, f.content_type) for f in message.attachments
        ]
        assert all(f.domain == "MESSAGE_ATTACHMENT" for f in message.attachments)

    def test_nothing_uploaded_when_the_command_is_wrong(self, emulator, cli, tmp_path):
        good = attachment_file(tmp_path)
        empty = attachment_file(tmp_path, "empty.txt", b"")
        cases = [
            (["send", "S", "T", "--attach", good], "recipient"),  # no recipient
            (["send", "S", "T", "--user", "nobody at all", "--attach", good], "no user matches"),
            (["send", "S", " ", "--user", ALICE, "--attach", good], "text is empty"),
            (
                [
                    "send",
                    "S",
                    "T",
                    "--user",
                    ALICE,
                    "--attach",
                    good,
                    "--attach",
                    tmp_path / "missing.pdf",
                ],
                "missing.pdf",
            ),
            (["send", "S", "T", "--user", ALICE, "--attach", empty], "empty.txt"),
            (["reply", "bad-uid", "T", "--attach", good], "not a DHIS2 uid"),
            (["upload", tmp_path], str(tmp_path)),
        ]
        for argv, message in cases:
            result = cli(*argv)
            assert 2 == result.status and message in result.err, (argv, result)
            assert "Traceback" not in result.err
        # Only the name lookup went out: nothing uploaded, nothing sent.
        assert ["/api/userLookup"] == [r.path for r in emulator.log] and {} == emulator.files

    def test_dhis2_refuses(self, emulator, cli):
        result = cli("send", "S", "T", "--user", UNKNOWN)
        assert 1 == result.status and "DHIS2 refused the send (HTTP 409" in result.err
        assert f"User does not exist: {UNKNOWN}" in result.err


class TestOnce:
    def test_send_once(self, emulator, cli):
        """A bare --once takes no DURATION, before the subject too; the second run sends
        nothing, says so, prints the uid and exits 0."""
        uid = ok(cli("send", "--once", "Weekly report", "Due Friday", "--user", ALICE)).out
        again = cli("send", "--once", "Weekly report", "Due Friday", "--user", ALICE)
        assert (0, uid) == (again.status, again.out)
        assert f"dhis2-messages: not sent: you started {uid.strip()} with this subject" in (
            again.err
        )
        data = cli("--json", "send", "Weekly report", "Due Friday", "--user", ALICE, "--once")
        assert {"uid": uid.strip(), "sent": False} == data.json()
        data = ok(cli("--json", "send", "Other", "Due Friday", "--user", ALICE, "--once")).json()
        assert (True, []) == (data["sent"], data["attachments"])
        assert 2 == len(emulator.requests("POST"))

    @pytest.mark.parametrize("duration", ["90m", "12h", "7d", "2w", "3600s"])
    def test_once_within_a_duration(self, emulator, cli, duration):
        old = ok(cli("send", "Weekly report", "Due Friday", "--user", ALICE)).out.strip()
        emulator.backdate(old, 1800)  # half an hour: within every duration here
        result = cli("send", "Weekly report", "Due Friday", "--user", ALICE, f"--once={duration}")
        assert (0, old) == (result.status, result.out.strip())
        emulator.backdate(old, 30 * 86400)
        new = ok(cli("send", "Weekly report", "Due Friday", "--user", ALICE, f"--once={duration}"))
        assert old != new.out.strip()

    @pytest.mark.parametrize("duration", ["7", "7x", "d", "0h", "1.5h", "-1d", "1234567d"])
    def test_bad_durations(self, emulator, cli, duration):
        result = cli("send", "S", "T", "--user", ALICE, f"--once={duration}")
        assert 2 == result.status and "12h, 7d or 2w" in result.err
        assert [] == emulator.log

    def test_nothing_uploaded_when_already_sent(self, emulator, cli, tmp_path):
        report = attachment_file(tmp_path)
        ok(cli("send", "S", "T", "--user", ALICE, "--attach", report, "--once"))
        assert 0 == cli("send", "S", "T", "--user", ALICE, "--attach", report, "--once").status
        assert 1 == len(emulator.requests("POST", "/api/fileResources")) == len(emulator.files)

    def test_feedback_once(self, emulator, cli):
        uid = ok(cli("feedback", "Export fails", "CSV times out", "--once", user="alice")).out
        again = cli("feedback", "--once", "Export fails", "CSV times out", user="alice")
        assert (0, uid) == (again.status, again.out) and "not sent" in again.err
        assert 1 == len(emulator.requests("POST"))

    def test_help_gives_the_duration_syntax(self, cli, capsysbinary):
        assert 0 == main(["send", "--help"])
        text = " ".join(capsysbinary.readouterr().out.decode().split())
        assert "--once [DURATION]" in text and "12h, 7d, 2w" in text
        assert 0 == main(["feedback", "--help"])
        assert "--once [DURATION]" in capsysbinary.readouterr().out.decode()


class TestReply:
    def test_reply_internal_with_attachment(self, emulator, cli, tmp_path):
        uid = emulator.add_conversation(
            sender="alice", recipients=["carol"], subject="Ticket", message_type="TICKET"
        )
        data = ok(
            cli(
                "reply",
                uid,
                "Note to the team",
                "--internal",
                "--attach",
                attachment_file(tmp_path),
                "--json",
                user="carol",
            )
        ).json()
        message = emulator.conversations[uid].messages[-1]
        assert {"uid": uid, "attachments": [message.attachments[0].uid]} == data
        assert ("Note to the team", True, "carol") == (
            message.text,
            message.internal,
            message.sender.username,
        )
        assert ["true"] == emulator.log[-1].param("internal")

    def test_not_allowed(self, emulator, cli):
        uid = emulator.add_conversation(sender="alice", recipients=["bob"], subject="S")
        result = cli("reply", uid, "internal?", "--internal", user="alice")
        assert 1 == result.status and "permission denied (HTTP 403)" in result.err
        assert "Not authorized to send internal messages" in result.err
        result = cli("reply", UNKNOWN, "hello")
        assert 1 == result.status and "not found" in result.err


def test_feedback(emulator, cli):
    uid = ok(cli("feedback", "Export fails", "-", user="dave", stdin="CSV times out")).out.strip()
    conv = emulator.conversations[uid]
    assert ("TICKET", "OPEN", "Export fails", "CSV times out") == (
        conv.message_type,
        conv.status,
        conv.subject,
        conv.messages[0].text,
    )
    assert {"dave", "carol"} == set(conv.participants)
    assert {"uid"} == set(ok(cli("--json", "feedback", "S", "T")).json())


class TestAddRecipients:
    def test_users_groups_and_org_units(self, emulator, cli):
        uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="S")
        result = ok(cli("add-recipients", uid, "--user", DAVE, "--group", REPORTERS))
        assert f"added recipients to {uid}\n" == result.out
        assert {"admin", "alice", "bob", "dave"} <= set(emulator.conversations[uid].participants)
        assert {"users": [{"id": DAVE}], "userGroups": [{"id": REPORTERS}]} == {
            k: v for k, v in emulator.log[-1].json().items() if v
        }
        assert {"uid": uid} == ok(cli("--json", "add-recipients", uid, "--user", CAROL)).json()
        assert "carol" in emulator.conversations[uid].participants

    def test_needs_a_recipient(self, emulator, cli):
        uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="S")
        result = cli("add-recipients", uid)
        assert 2 == result.status and "--user, --group, --org-unit or --org-unit-tree" in result.err
        assert 2 == cli("add-recipients", "nope", "--user", DAVE).status
        assert [] == emulator.log


class TestAttachments:
    def test_upload(self, emulator, cli, tmp_path):
        uid = ok(cli("upload", attachment_file(tmp_path, "scan.png", b"\x89PNG..."))).out.strip()
        file = emulator.files[uid]
        assert ("scan.png", b"\x89PNG...", "image/png", "MESSAGE_ATTACHMENT", False) == (
            file.name,
            file.data,
            file.content_type,
            file.domain,
            file.assigned,
        )
        uid = ok(cli("--json", "upload", attachment_file(tmp_path))).json()["uid"]
        assert PDF == emulator.files[uid].data

    def test_round_trip(self, emulator, cli, tmp_path):
        """send --attach, then show lists it, then download -o writes the identical bytes."""
        uid = ok(
            cli("send", "S", "T", "--user", ALICE, "--attach", attachment_file(tmp_path))
        ).out.strip()
        show = ok(cli("--json", "show", uid, user="alice")).json()
        (message,) = show["messages"]
        (attachment,) = message["attachments"]
        assert ("report.pdf", len(PDF)) == (attachment["name"], attachment["content_length"])
        target = tmp_path / "out" / "copy.pdf"
        target.parent.mkdir()
        result = ok(
            cli("download", uid, message["id"], attachment["id"], "-o", target, user="alice")
        )
        assert f"wrote {len(PDF)} bytes to {target}\n" == result.out
        assert PDF == target.read_bytes()
        target.unlink()
        data = ok(
            cli("--json", "download", uid, message["id"], attachment["id"], "--output", target)
        ).json()
        assert {"file": str(target), "bytes": len(PDF)} == data
        assert PDF == target.read_bytes()

    def test_download_to_stdout(self, emulator, cli, connect):
        admin = connect("admin")
        file = admin.upload_attachment(PDF, filename="r.pdf")
        uid = admin.send(subject="S", text="T", users=ALICE, attachments=[file])
        message = emulator.conversations[uid].messages[0].uid
        result = cli("download", uid, message, file, binary=True)
        assert (0, PDF, "") == (result.status, result.out, result.err)

    def test_download_json_writes_the_attachment_under_its_own_name(
        self, emulator, cli, connect, tmp_path, monkeypatch
    ):
        """--json without -o: the file takes the attachment's own name (curl -OJ), never
        replacing one that is there."""
        admin = connect("admin")
        file = admin.upload_attachment(PDF, filename="../weekly report.pdf")
        uid = admin.send(subject="S", text="T", users=ALICE, attachments=[file])
        message = emulator.conversations[uid].messages[0].uid
        monkeypatch.chdir(tmp_path)
        data = ok(cli("--json", "download", uid, message, file)).json()
        assert {"file": "weekly report.pdf", "bytes": len(PDF)} == data
        assert PDF == (tmp_path / "weekly report.pdf").read_bytes()
        (tmp_path / "weekly report.pdf").write_bytes(b"mine")
        result = cli("--json", "download", uid, message, file)
        assert 2 == result.status and "weekly report.pdf exists" in result.err
        assert "-o FILE" in result.err and "" == result.out
        assert b"mine" == (tmp_path / "weekly report.pdf").read_bytes()
        assert ["weekly report.pdf"] == [p.name for p in tmp_path.iterdir()]

    def test_download_errors(self, emulator, cli, tmp_path):
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject="S")
        message = emulator.conversations[uid].messages[0].uid
        target = tmp_path / "never.pdf"
        result = cli("download", uid, message, UNKNOWN, "-o", target)
        assert 1 == result.status and "No messageattachment found" in result.err
        assert not target.exists()


# -- read state, follow-up, delete, tickets -------------------------------------------


class TestBulk:
    @pytest.mark.parametrize(
        "command, attribute, before, after, did, already",
        [
            ("mark-read", "read", False, True, "marked 2 read", "1 was read already"),
            ("mark-unread", "read", True, False, "marked 2 unread", "1 was unread already"),
            (
                "follow-up",
                "follow_up",
                False,
                True,
                "flagged 2 for follow-up",
                "1 was flagged already",
            ),
            (
                "unfollow-up",
                "follow_up",
                True,
                False,
                "cleared the follow-up flag of 2",
                "1 was not flagged already",
            ),
        ],
    )
    def test_flags_say_what_changed(
        self, emulator, cli, command, attribute, before, after, did, already
    ):
        uids = emulator.add_conversations(2, sender="alice", recipients=["bob"])
        for uid in uids:
            setattr(emulator.conversations[uid].participants["bob"], attribute, before)
        assert did == ok(cli(command, *uids, user="bob")).out.strip()
        assert [after, after] == [
            getattr(emulator.conversations[u].participants["bob"], attribute) for u in uids
        ]
        again = ok(cli(command, uids[0], user="bob")).out.strip()
        assert f"{did.replace('2', '0')}; {already}" == again
        data = ok(cli("--json", command, *uids, UNKNOWN, user="bob")).json()
        assert {"changed": [], "already": uids, "not_in_inbox": [UNKNOWN]} == data

    def test_for_another_user(self, emulator, cli):
        (uid,) = emulator.add_conversations(1, sender="alice", recipients=["bob"])
        data = ok(cli("--json", "mark-read", uid, "--user", BOB)).json()
        assert [uid] == data["changed"]
        assert [BOB] == emulator.log[-1].param("user")
        assert emulator.conversations[uid].participants["bob"].read is True

    def test_delete(self, emulator, cli):
        uids = emulator.add_conversations(2, sender="alice", recipients=["bob", "dave"])
        assert "deleted 2 from the inbox" == ok(cli("delete", *uids, user="bob")).out.strip()
        assert [{"alice", "dave"}] * 2 == [
            set(emulator.conversations[u].participants) for u in uids
        ]
        data = ok(cli("--json", "delete", uids[0], "--user", DAVE)).json()
        assert [uids[0]] == data["changed"]
        assert {"alice"} == set(emulator.conversations[uids[0]].participants)

    def test_deleting_again_is_an_error(self, emulator, cli):
        """The second delete of a uid: exit 1, saying it is not in the inbox."""
        uids = emulator.add_conversations(2, sender="alice", recipients=["bob"])
        ok(cli("delete", uids[0], user="bob"))
        result = cli("delete", *uids, user="bob")
        assert 1 == result.status
        assert "deleted 1 from the inbox" == result.out.strip()
        assert f"not in your inbox, nothing to delete: {uids[0]}" in result.err
        assert {"alice"} == set(emulator.conversations[uids[1]].participants)

    def test_all_with_the_lists_filters(self, emulator, cli):
        """--all walks every match (any number: the library splits the requests)."""
        tickets = [
            emulator.add_conversation(
                sender="alice", recipients=["admin"], subject=f"T{i}", message_type="TICKET"
            )
            for i in range(3)
        ]
        others = emulator.add_conversations(600, sender="alice", recipients=["admin"])
        emulator.conversations[tickets[0]].participants["admin"].read = True
        result = ok(cli("mark-read", "--all", "--filter", "messageType:eq:TICKET"))
        assert "marked 2 read; 1 was read already" == result.out.strip()
        assert not any(emulator.conversations[u].participants["admin"].read for u in others)
        result = ok(cli("delete", "--all", "--unread", "--yes"))
        assert "deleted 600 from the inbox" == result.out.strip()
        assert set(tickets) == {
            u for u, c in emulator.conversations.items() if "admin" in c.participants
        }

    def test_dry_run_changes_nothing(self, emulator, cli):
        uids = emulator.add_conversations(4, sender="alice", recipients=["admin"])
        emulator.conversations[uids[0]].participants["admin"].read = True
        result = ok(cli("mark-read", "--all", "--dry-run"))
        assert "would mark 3 read; 1 was read already; nothing was changed" == result.out.strip()
        assert (
            "would delete 2; nothing was changed"
            == ok(cli("delete", *uids[:2], "--dry-run")).out.strip()
        )
        data = ok(cli("--json", "delete", "--all", "--dry-run")).json()
        assert (True, sorted(uids)) == (data["dry_run"], sorted(data["changed"]))
        assert not [r for r in emulator.log if r.method != "GET"]
        assert 3 == sum(not emulator.conversations[u].participants["admin"].read for u in uids)

    def test_delete_all_needs_yes_without_a_terminal(self, emulator, cli, spawn):
        uids = emulator.add_conversations(3, sender="alice", recipients=["admin"])
        for run in (cli, spawn):
            result = run("delete", "--all")
            assert 2 == result.status
            assert "would delete 3 conversations: give --yes" in result.err
            assert "nothing was deleted" in result.err
        assert all("admin" in emulator.conversations[u].participants for u in uids)
        assert not [r for r in emulator.log if r.method == "DELETE"]

    @pytest.mark.parametrize("answer, left", [("n\n", 3), ("y\n", 0)])
    def test_delete_all_asks_on_a_terminal(self, emulator, answer, left):
        pytest.importorskip("pty")
        uids = emulator.add_conversations(3, sender="alice", recipients=["admin"])
        status, out, _ = terminal_run_with_input(
            emulator, ["delete", "--all"], answer, prompt=b"[y/N]"
        )
        assert "Delete 3 conversations from your inbox? [y/N]" in out
        assert (0 if left == 0 else 2) == status, out
        assert left == sum("admin" in emulator.conversations[u].participants for u in uids)

    def test_usage_errors_send_nothing(self, emulator, cli):
        for argv in (
            ["mark-read"],
            ["mark-read", ALICE, "--all"],
            ["delete", "--all", "--user", "bob", "--yes"],
            ["follow-up", ALICE, "--filter", "read:eq:false"],
        ):
            assert 2 == cli(*argv).status, argv
        assert [] == emulator.log

    def test_a_failure_part_way_says_what_was_done(self, emulator, cli, monkeypatch):
        emulator.add_conversations(2500, sender="alice", recipients=["admin"])
        handle, posts = emulator._handle, []

        def second_fails(req):
            posts.extend([req] if req.method == "POST" else [])
            return json_response(503, {"message": "Busy"}) if len(posts) == 2 else handle(req)

        monkeypatch.setattr(emulator, "_handle", second_fails)
        result = cli("--retries", "0", "mark-read", "--all")
        assert 1 == result.status
        assert "2,000 were changed before it failed; the rest were not sent." in result.err

    @pytest.mark.dhis2_versions(since="2.41.3")
    def test_a_refusal_names_the_uids(self, emulator, cli):
        uid = emulator.add_conversation(sender="bob", recipients=["carol"], subject="Not dave's")
        result = cli("mark-read", uid, "--user", CAROL, user="dave")
        assert 1 == result.status
        assert f"Not in your inbox: {uid}" in result.err

    def test_errors(self, emulator, cli):
        result = cli("mark-read", UNKNOWN, "--user", BOB)
        assert 1 == result.status and "No MessageConversations found" in result.err
        assert 2 == cli("follow-up", ALICE, "nope").status
        assert 2 == cli("delete", ALICE, "--user", "nobody at all").status  # a name: one lookup
        assert ["/api/messageConversations/read", "/api/userLookup"] == [
            r.path for r in emulator.log
        ]


class TestTickets:
    def test_status_and_priority(self, emulator, cli):
        uid = emulator.add_conversation(
            sender="alice", recipients=["carol"], subject="T", message_type="TICKET"
        )
        assert (
            f"status of {uid} set to SOLVED\n" == ok(cli("status", uid, "solved", user="carol")).out
        )
        assert {"uid": uid, "priority": "HIGH"} == ok(
            cli("--json", "priority", uid, "High", user="carol")
        ).json()
        conv = emulator.conversations[uid]
        assert ("SOLVED", "HIGH") == (conv.status, conv.priority)
        for argv in (("status", uid, "closed"), ("priority", uid, "urgent")):
            result = cli(*argv)
            assert 2 == result.status and "is not one of" in result.err
        if at_least(emulator, "2.41.3"):  # before #19139 status had no effective access check
            result = cli("status", uid, "OPEN", user="dave")
            assert 1 == result.status and "permission denied" in result.err
            assert "SOLVED" == conv.status

    def test_assign_and_unassign(self, emulator, cli):
        uid = emulator.add_conversation(
            sender="alice", recipients=["carol"], subject="T", message_type="TICKET"
        )
        assert f"assigned {uid} to {CAROL}\n" == ok(cli("assign", uid, CAROL)).out
        assert "carol" == emulator.conversations[uid].assignee.username
        result = cli("assign", uid, DAVE)
        assert 1 == result.status and "feedback recipient group" in result.err
        assert {"uid": uid} == ok(cli("--json", "unassign", uid)).json()
        assert emulator.conversations[uid].assignee is None
        assert {"uid": uid, "assignee": CAROL} == ok(cli("assign", uid, CAROL, "--json")).json()
        assert f"unassigned {uid}\n" == ok(cli("unassign", uid)).out


# -- Recipients by name: --user, --group, --org-unit, --org-unit-tree; find, tree ---------


class TestRecipientNames:
    def test_send_by_names_resolves_everything_first(self, emulator, cli):
        result = ok(
            cli(
                "send",
                "Stock",
                "Count the ORS.",
                "--user",
                "Jose Banda",  # one user: the accented José does not match
                "--user",
                "ama",  # a username wins over the names that contain it
                "--group",
                "reporters",  # the exact name wins over District/Facility Reporters
                "--org-unit",
                "kenema district",
            )
        )
        uid = result.out.strip()
        assert {"admin", "jbanda", "ama", "alice", "bob", "abu"} == set(
            emulator.conversations[uid].participants
        )
        body = emulator.requests("POST", "/api/messageConversations")[0].json()
        assert {"id": "Hm2Tc8aNwBq"} in body["users"]

    def test_org_unit_tree_sends_to_the_whole_subtree(self, emulator, cli):
        uid = ok(cli("send", "s", "t", "--org-unit-tree", "Bo District")).out.strip()
        people = set(emulator.conversations[uid].participants)
        assert {"alice", "bob", "dave", "ibrahim", "aminata", "mohamed"} <= people
        assert "sia" not in people and "fatmata" not in people
        # The name, then the subtree, then the message: three requests, the send last.
        assert ["GET", "GET", "POST"] == [r.method for r in emulator.requests()]

    @pytest.mark.parametrize(
        "flag, text, listed",
        [
            (
                "--user",
                "banda",
                ["PhzytPW3g2J  Alice Banda (alice)", "Lx9ZbhjUP6q  José Banda (jose)"],
            ),
            ("--user", "ama sankoh", ["Ck1MzHw8uTf  Ama Sankoh (ama)", "Dr5NxJq2vLg  AMA SANKOH"]),
            ("--group", "district", ["Gk3JdR7xWqs  District Reporters"]),
            (
                "--org-unit",
                "bo",
                ["O6uvpzGd5pu  Bo District (level 2)", "Bombali Sebora (level 3)"],
            ),
            ("--org-unit-tree", "b", ["YuQRtpLP10I  Badjia (level 3)"]),
        ],
    )
    def test_several_matches_list_the_candidates_and_send_nothing(
        self, emulator, cli, flag, text, listed
    ):
        result = cli("send", "s", "t", "--user", "alice", flag, text)
        assert 2 == result.status, result
        assert "nothing was sent" in result.err
        for line in listed:
            assert line in result.err
        assert [] == emulator.requests("POST")
        assert {} == emulator.conversations

    @pytest.mark.parametrize("flag", ["--user", "--group", "--org-unit", "--org-unit-tree"])
    def test_no_match_is_an_error_and_nothing_is_sent(self, emulator, cli, flag):
        result = cli("send", "s", "t", "--user", "alice", flag, "zzzz")
        assert 2 == result.status, result
        assert f"{flag} 'zzzz': no " in result.err
        assert [] == emulator.requests("POST")

    def test_add_recipients_assign_and_bulk_user_take_names(self, emulator, cli):
        uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
        ok(cli("add-recipients", uid, "--org-unit-tree", "Badjia", "--user", "sia lebbie"))
        assert {"ibrahim", "aminata", "jose", "sia"} <= set(
            emulator.conversations[uid].participants
        )
        ok(cli("assign", uid, "Sia Lebbie"))
        assert "sia" == emulator.conversations[uid].assignee.username
        ok(cli("mark-read", uid, "--user", "aminata"))
        assert emulator.conversations[uid].participants["aminata"].read

    def test_a_uid_is_used_as_it_is(self, emulator, cli):
        ok(cli("send", "s", "t", "--user", "PhzytPW3g2J", "--org-unit", BO_DISTRICT))
        assert ["/api/messageConversations"] == [r.path for r in emulator.requests()]

    def test_find_lists_users_groups_and_units_with_uids(self, cli):
        out = ok(cli("find", "district", user="alice")).out
        assert (
            "user groups:\n  Hx2PwE9mJvb  District Data Managers\n  Gk3JdR7xWqs  District Reporters"
            in out
        )
        assert "  O6uvpzGd5pu  Bo District  level 2" in out
        assert "users: none" in out

    def test_find_json(self, cli):
        data = ok(cli("find", "banda", "--json")).json()
        assert {"users", "user_groups", "organisation_units"} == set(data)
        assert {"id": "Lx9ZbhjUP6q", "name": "José Banda", "username": "jose"} in data["users"]
        units = ok(cli("find", "ngelehun", "--json")).json()["organisation_units"]
        assert [
            {
                "id": NGELEHUN_CHC,
                "name": "Ngelehun CHC",
                "level": 4,
                "path": f"/{SIERRA_LEONE}/{BO_DISTRICT}/{BADJIA}/{NGELEHUN_CHC}",
            }
        ] == units

    def test_find_feedback_recipients(self, cli):
        assert "Kh68cDMwZsg  Carol Osei  carol" in ok(cli("find", "o", "--feedback-recipients")).out

    @pytest.mark.parametrize("query", ["", "   ", "x" * 256, "%"])
    def test_find_refuses_bad_queries_without_a_request(self, emulator, cli, query):
        assert 2 == cli("find", query).status
        assert [] == emulator.requests()

    def test_tree(self, cli):
        out = ok(cli("tree", "badjia")).out
        assert (
            "Badjia  YuQRtpLP10I\n  Ngelehun CHC  DiszpKrYNg8\n  Njandama MCHP  g8upMTyEZGZ\n"
            == out
        )


# -- A person at a terminal: colour, width, progress, prompts -------------------------
# The command runs as a subprocess on a pseudo-terminal (stdlib pty); every read
# is bounded.  What a terminal changes does not depend on the DHIS2 release.

ESCAPE = "\x1b["
ONE_RELEASE = pytest.mark.dhis2_versions("2.42")


def terminal_run(
    emulator, *argv, columns=100, env=None, stdin=None, stderr_tty=True, timeout=60, cwd=ROOT
):
    """Run the command with stdout (and stderr, unless *stderr_tty* is false) on a
    pseudo-terminal *columns* wide, in the folder *cwd*; return (status, terminal text,
    piped stderr)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import select
    import struct
    import termios
    import time

    full = _clean_env(os.environ)
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TERM"):
        full.pop(name, None)
    full.update({"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token})
    full.update({"PYTHONIOENCODING": "utf-8", "TERM": "xterm"})
    full.update(env or {})
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhis2_messages", *map(str, argv)],
        cwd=cwd,
        env=full,
        stdin=slave if stdin is None else subprocess.PIPE,
        stdout=slave,
        stderr=slave if stderr_tty else subprocess.PIPE,
    )
    os.close(slave)
    if stdin is not None:
        proc.stdin.write(stdin.encode("utf-8"))
        proc.stdin.close()
    chunks, ends = [], time.monotonic() + timeout
    try:
        while True:
            left = ends - time.monotonic()
            assert left > 0, f"no end within {timeout} s: {b''.join(chunks)[-500:]!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        status = proc.wait(timeout=timeout)
        err = proc.stderr.read().decode("utf-8") if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    # the terminal turns \n into \r\n
    return status, b"".join(chunks).decode("utf-8").replace("\r\n", "\n"), err


def visible(text):
    """What the terminal shows of *text*: colours removed."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@ONE_RELEASE
class TestTerminal:
    def seed(self, emulator):
        unread = emulator.add_conversation(sender="alice", recipients=["admin"], subject="New")
        read = emulator.add_conversation(
            sender="bob", recipients=["admin"], subject="Old", message_type="TICKET"
        )
        emulator.conversations[read].participants["admin"].read = True
        return unread, read

    def test_colour_on_a_terminal(self, emulator):
        unread, read = self.seed(emulator)
        status, out, _ = terminal_run(emulator, "list")
        assert 0 == status
        header, *rows, footer = out.splitlines()
        assert header.startswith(f"{ESCAPE}1mUID ") and header.endswith(f"SUBJECT{ESCAPE}22m")
        (new,) = [r for r in rows if unread in r]
        (old,) = [r for r in rows if read in r]
        assert new.startswith(f"{ESCAPE}1m{unread}") and new.endswith(f"New{ESCAPE}22m")
        assert old.startswith(f"{ESCAPE}2m{read}") and old.endswith(f"Old{ESCAPE}22m")
        assert f"{ESCAPE}36mPRIVATE{ESCAPE}39m" in new and f"{ESCAPE}33mTICKET{ESCAPE}39m" in old
        assert "PRIORITY" not in header  # NONE in both rows: said once, below
        assert "page 1 of 1, 2 in all; all priority NONE" == footer

    @pytest.mark.parametrize(
        "argv, env",
        [
            (["list"], {"NO_COLOR": "1"}),
            (["--color=never", "list"], {}),
            (["--color", "never", "list"], {"FORCE_COLOR": "1"}),
        ],
    )
    def test_no_colour_when_told(self, emulator, argv, env):
        self.seed(emulator)
        status, out, _ = terminal_run(emulator, *argv, env=env)
        assert 0 == status and ESCAPE not in out and "UID" in out

    def test_no_colour_when_piped_unless_forced(self, emulator, spawn):
        self.seed(emulator)
        assert ESCAPE not in ok(spawn("list")).out
        assert ESCAPE not in ok(spawn("show", emulator.conversations.__iter__().__next__())).out
        env = {"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token}
        assert f"{ESCAPE}1m" in ok(spawn("list", env={**env, "FORCE_COLOR": "1"})).out
        assert f"{ESCAPE}1m" in ok(spawn("--color=always", "list")).out

    def test_long_subjects_are_cut_to_the_terminal_width(self, emulator, spawn):
        subject = "Stock-out of artemether-lumefantrine at Ngelehun CHC " * 3
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject=subject)
        for columns in (80, 120):
            status, out, _ = terminal_run(emulator, "list", columns=columns)
            header, row = [visible(line) for line in out.splitlines()[:2]]
            assert 0 == status and row.endswith("…") and columns == len(row), row
            assert subject.startswith(row[header.index("SUBJECT") : -1])
            assert len(row) - header.index("SUBJECT") >= 20
            assert all(len(visible(line)) <= columns for line in out.splitlines())
            # a narrow terminal leaves out the least read columns; a wide one shows them all
            assert ("STATUS" in header, "PRIORITY" in header) == (columns > 80, columns > 80)
            assert "Alice Banda" in row
        piped = [line for line in ok(spawn("list")).out.splitlines() if uid in line]
        assert piped[0].endswith(subject)  # a pipe gets the whole subject

    def test_an_empty_inbox_says_so(self, emulator, cli):
        status, out, _ = terminal_run(emulator, "list")
        assert (0, "no conversations\n") == (status, visible(out))
        assert "no conversations\n" == ok(cli("list", "--all")).out
        assert "" == ok(cli("list", "--all", "--json")).out  # JSON Lines: no line at all


@ONE_RELEASE
class TestWalkFeedback:
    def slow_walk(self, emulator, monkeypatch, pages=5):
        emulator.add_conversations(2 * pages, sender="alice", recipients=["admin"])
        monkeypatch.setattr(emulator, "latency", 0.2)  # five pages: a walk of about a second

    def test_progress_line_on_a_terminal(self, emulator, monkeypatch):
        self.slow_walk(emulator, monkeypatch)
        status, out, _ = terminal_run(emulator, "list", "--all", "--page-size", "2")
        assert 0 == status
        assert "of 5 pages, " in out and " of 10 conversations…" in out
        assert out.rstrip("\n").endswith("\r\x1b[K")  # erased at the end
        # what stays on the screen: the table, every progress line replaced
        screen = [line.rsplit("\r\x1b[K", 1)[-1] for line in visible(out).split("\n")]
        rows = [line for line in screen if line.strip()]
        assert rows[0].startswith("UID ") and 11 == len(rows)

    def test_bulk_all_shows_its_progress_and_what_it_did(self, emulator, monkeypatch):
        self.slow_walk(emulator, monkeypatch, pages=75)  # 150: three pages of 50
        status, out, _ = terminal_run(emulator, "mark-read", "--all", "--page-size", "50")
        assert 0 == status
        assert " of 150 conversations…" in out
        screen = [line.rsplit("\r\x1b[K", 1)[-1] for line in visible(out).split("\n")]
        assert ["marked 150 read"] == [line for line in screen if line.strip()]

    def test_no_progress_when_quiet_or_not_a_terminal(self, emulator, monkeypatch, spawn):
        self.slow_walk(emulator, monkeypatch)
        status, out, _ = terminal_run(emulator, "--quiet", "list", "--all", "--page-size", "2")
        assert 0 == status and "pages" not in out and "\x1b[K" not in out
        status, out, err = terminal_run(
            emulator, "list", "--all", "--page-size", "2", stderr_tty=False
        )
        assert (0, "") == (status, err) and 11 == len(out.splitlines())
        assert "" == ok(spawn("list", "--all", "--page-size", "2")).err

    @pytest.mark.parametrize("json_lines", [False, True])
    def test_rows_stream_as_each_page_arrives(self, emulator, json_lines):
        """The first page is on standard output while DHIS2 still holds the second."""
        import select
        import threading

        emulator.add_conversations(4, sender="alice", recipients=["admin"])
        gate = threading.Event()
        handle = emulator._handle

        def held(req):
            if req.method == "GET" and ("page", "2") in req.params:
                gate.wait(20)
            return handle(req)

        emulator._handle = held
        env = _clean_env(os.environ)
        env.update({"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token})
        argv = ["list", "--all", "--page-size", "2"] + (["--json"] if json_lines else [])
        proc = subprocess.Popen(
            [sys.executable, "-m", "dhis2_messages", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            first = b""
            while first.count(b"\n") < (2 if json_lines else 3):
                ready, _, _ = select.select([proc.stdout], [], [], 15)
                assert ready, f"page 1 not written while page 2 was held: {first!r}"
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, "the command ended early"
                first += chunk
            assert proc.poll() is None  # still walking
        finally:
            gate.set()
            rest, err = proc.communicate(timeout=60)
            del emulator._handle
        lines = (first + rest).decode().splitlines()
        assert (0, b"") == (proc.returncode, err)
        assert 4 == len(lines if json_lines else lines[1:])
        if json_lines:
            assert all(set(json.loads(line)) >= {"id", "subject", "last_sender"} for line in lines)


@ONE_RELEASE
class TestRetryNotes:
    def busy(self, emulator):
        emulator.inject(method="GET", path=API, status=503, times=2, headers={"Retry-After": "0"})

    def test_each_retry_is_one_line_on_a_terminal(self, emulator):
        self.busy(emulator)
        status, out, _ = terminal_run(emulator, "unread")
        assert 0 == status
        assert [
            "dhis2-messages: DHIS2 answered 503; retry 1 of 3 in 0 s",
            "dhis2-messages: DHIS2 answered 503; retry 2 of 3 in 0 s",
            "0",
        ] == visible(out).splitlines()

    def test_a_failed_connection_reads_without_object_reprs(self, emulator):
        url = f"http://127.0.0.1:{free_port()}"
        status, out, _ = terminal_run(emulator, "--url", url, "--retries", "1", "unread")
        assert 1 == status
        note, error = visible(out).splitlines()
        assert note.startswith("dhis2-messages: could not connect (") and "object at" not in note
        assert note.endswith("; retry 1 of 1 in 0.5 s")
        assert error.startswith("dhis2-messages: could not connect to 127.0.0.1:")

    def test_a_timeout_is_said_in_seconds_not_in_python(self, emulator):
        emulator.inject(method="GET", path=API, delay=3, times=2)
        status, out, _ = terminal_run(emulator, "--timeout", "0.3", "--retries", "1", "unread")
        note, error = visible(out).splitlines()
        assert 1 == status
        assert "dhis2-messages: no answer within 0.3 s; retry 1 of 1 in" in note
        assert "timeout=" not in out and "within 0.3 s" in error

    def test_nothing_when_quiet_or_not_a_terminal(self, emulator, spawn):
        self.busy(emulator)
        status, out, _ = terminal_run(emulator, "-q", "unread")
        assert (0, "0\n") == (status, out)
        self.busy(emulator)
        assert "" == ok(spawn("unread")).err


@ONE_RELEASE
class TestDeadline:
    def test_deadline_flag_and_its_words(self, emulator, cli):
        emulator.inject(method="GET", path=API, delay=3)
        result = cli("--deadline", "0.5", "list")
        assert 1 == result.status
        (line,) = result.err.splitlines()
        assert "within the deadline of 0.5 s" in line and "--deadline 1" in line
        assert "deadline=" not in line and "reached DHIS2" not in line

    def test_retries_the_deadline_cut_short_are_said(self, emulator, cli):
        emulator.inject(method="GET", path=API, status=503, headers={"Retry-After": "2"})
        result = cli("--deadline", "1.5", "--retries", "3", "list")
        assert 1 == result.status
        assert "HTTP 503" in result.err
        assert "No retry was made: the next would have passed the deadline of 1.5 s" in result.err
        assert 1 == len(emulator.log)

    def test_a_bad_deadline_is_a_usage_error_in_flag_words(self, emulator, cli):
        result = cli("--deadline", "0", "unread")
        assert 2 == result.status and "argument --deadline: must be" in result.err
        assert [] == emulator.log

    @pytest.mark.parametrize(
        "flags, timeout",
        [
            ((), dhis2_messages.DEFAULT_TIMEOUT),
            (("--timeout", "60"), (3.05, 60.0)),
            (("--connect-timeout", "10"), (10.0, 30.0)),
            (("--connect-timeout", "10", "--timeout", "90"), (10.0, 90.0)),
        ],
    )
    def test_both_timeouts_can_be_set(self, emulator, cli, monkeypatch, flags, timeout):
        """A slow uplink needs time for the TLS handshake (--connect-timeout) and for each
        piece of an upload (--timeout, which bounds every wait for the server)."""
        made = []

        class Recording(dhis2_messages.Messenger):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(self)

        monkeypatch.setattr(dhis2_messages, "Messenger", Recording)
        assert 0 == cli(*flags, "unread").status
        assert [timeout] == [m.timeout for m in made]


@ONE_RELEASE
class TestTerminalInput:
    def test_reply_prompts_on_a_terminal(self, emulator):
        """reply UID - on a terminal asks for the text; one final newline is dropped."""
        pytest.importorskip("pty")
        uid = emulator.add_conversation(sender="alice", recipients=["admin"], subject="S")
        status, out, _ = terminal_run_with_input(emulator, ["reply", uid, "-"], "Thanks,\nJohn\n")
        assert 0 == status, out
        assert "Type the text, then Ctrl-D on a line of its own:" in out
        assert "Thanks,\nJohn" == emulator.conversations[uid].messages[-1].text

    def test_download_on_a_terminal_writes_the_attachments_own_name(
        self, emulator, connect, tmp_path
    ):
        """Without -o on a terminal the bytes go to a file named as the attachment is,
        not to the screen; a file of that name is never replaced."""
        admin = connect("admin")
        file = admin.upload_attachment(PDF, filename="r.pdf")
        uid = admin.send(subject="S", text="T", users=ALICE, attachments=[file])
        message = emulator.conversations[uid].messages[0].uid
        status, out, _ = terminal_run(emulator, "download", uid, message, file, cwd=tmp_path)
        assert (0, f"wrote {len(PDF)} bytes to r.pdf\n") == (status, out)
        assert PDF == (tmp_path / "r.pdf").read_bytes()
        emulator.clear_log()
        status, out, _ = terminal_run(emulator, "download", uid, message, file, cwd=tmp_path)
        assert 2 == status and "r.pdf exists: give -o FILE" in out and "%PDF" not in out
        assert PDF == (tmp_path / "r.pdf").read_bytes()
        assert ["GET"] == [r.method for r in emulator.log]  # the name, not the bytes


def terminal_run_with_input(emulator, argv, text, timeout=60, prompt=b"Ctrl-D"):
    """Run the command on a pseudo-terminal and type *text* into it, then Ctrl-D, once
    it has shown *prompt*."""
    pty = pytest.importorskip("pty")
    import select
    import time

    env = _clean_env(os.environ)
    env.update({"DHIS2_URL": emulator.url, "DHIS2_TOKEN": emulator.user("admin").token})
    env["PYTHONIOENCODING"] = "utf-8"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dhis2_messages", *argv],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks, ends, typed = [], time.monotonic() + timeout, False
    try:
        while True:
            left = ends - time.monotonic()
            assert left > 0, f"no end within {timeout} s: {b''.join(chunks)!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            if not typed and prompt in b"".join(chunks):
                for line in text.splitlines(keepends=True):
                    os.write(master, line.encode("utf-8"))
                os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
                typed = True
        status = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, b"".join(chunks).decode("utf-8").replace("\r\n", "\n"), ""


# -- Errors in the command line's words --------------------------------------------


@ONE_RELEASE
class TestErrorWords:
    def test_a_list_timeout_says_what_to_do_and_nothing_about_sends(self, emulator, cli):
        emulator.inject(method="GET", path=API, delay=2)
        result = cli("--timeout", "0.2", "--retries", "0", "list")
        assert 1 == result.status
        (line,) = result.err.splitlines()
        assert line.startswith("dhis2-messages: 127.0.0.1:") and "within 0.2 s" in line
        assert "--timeout 0.4" in line
        assert "reached DHIS2" not in line and "timeout=" not in line and "fields" not in line

    def test_a_send_timeout_is_looked_up_and_says_what_was_found(self, emulator, cli):
        emulator.inject(method="POST", path=API, delay=2)  # the work, only after 2 s
        result = cli("--timeout", "0.2", "send", "S", "T", "--user", ALICE)
        assert 1 == result.status and 2 == len(result.err.splitlines())
        assert "did not answer within 0.2 s" in result.err
        assert "The send was not found on DHIS2 when looked for (6 look-ups)" in result.err
        assert "may still arrive: check (dhis2-messages list)" in result.err
        assert "or run it again with --once" in result.err

    def test_a_proxy_failure_of_a_create_never_says_only_try_again(self, emulator, cli):
        uid = emulator.add_conversation(sender="admin", recipients=["alice"], subject="s")
        emulator.inject(method="POST", status=504)
        result = cli("add-recipients", uid, "--user", BOB)
        assert 1 == result.status and "try again" not in result.err
        assert "DHIS2 may have added them; running it again is harmless." in result.err
        emulator.inject(method="POST", status=500)
        result = cli("send", "S", "T", "--user", ALICE)
        assert 1 == result.status and "try again" not in result.err
        assert "most likely nothing was done, but check first" in result.err

    def test_not_found_does_not_say_http_200(self, emulator, cli):
        result = cli("show", UNKNOWN)
        assert 1 == result.status
        assert f"dhis2-messages: not found: No MessageConversation found with UID: {UNKNOWN}\n" == (
            result.err
        )

    def test_library_names_become_flags(self, emulator, cli):
        result = cli("list", "--page-size", "0")
        assert 2 == result.status and "--page-size" in result.err and "page_size" not in result.err
        result = cli("--url", "ftp://dhis2.example.org", "unread")
        assert 2 == result.status and "base_url" not in result.err

    def test_retries_flag(self, emulator, cli):
        emulator.inject(method="GET", path=API, status=503, times=2)
        assert 1 == cli("--retries", "1", "unread").status
        assert 2 == len(emulator.requests("GET", API))
        emulator.clear_log()
        emulator.inject(method="GET", path=API, status=503, times=2)
        assert "0\n" == ok(cli("--retries", "2", "unread")).out
        assert 3 == len(emulator.requests("GET", API))
        assert 2 == cli("--retries", "-1", "unread").status

    def test_send_usage_errors_show_the_send_usage(self, emulator, cli):
        result = cli("send", "S", "T")
        assert 2 == result.status
        assert result.err.startswith("usage: dhis2-messages send ")
        assert "recipient" in error_line(result)


@ONE_RELEASE
class TestTls:
    def test_a_certificate_failure_is_two_lines(self, tls_server, cli):
        result = cli("--url", tls_server.url, "--token", "d2p_x", "--retries", "0", "list")
        assert 1 == result.status
        first, second = result.err.splitlines()
        assert first.startswith("dhis2-messages: TLS failed for 127.0.0.1:")
        assert "certificate" in first and "fields" not in first and "/api" not in first
        assert "--ca-bundle FILE" in second and "REQUESTS_CA_BUNDLE" in second
        assert [] == tls_server.seen

    def test_ca_bundle_and_insecure(self, tls_server, certificate, cli):
        tls_server.seen.clear()
        url = ["--url", tls_server.url, "--token", "d2p_x"]
        assert "no conversations\n" == ok(cli(*url, "--ca-bundle", certificate[0], "list")).out
        result = cli(*url, "--insecure", "list")
        assert (0, "no conversations\n") == (result.status, result.out)
        assert "dhis2-messages: --insecure: DHIS2's certificate is not checked\n" == result.err
        assert 2 == len(tls_server.seen)
        result = cli(*url, "--ca-bundle", "/no/such/bundle.pem", "list")
        assert 2 == result.status and "/no/such/bundle.pem" in result.err


# -- Saying what happened: whom a send reached, no match, the commonest mistakes ---------


@ONE_RELEASE
class TestWhomItReached:
    def test_send_on_a_terminal_says_whom_it_reached(self, emulator):
        status, out, _ = terminal_run(
            emulator, "send", "Stock count", "By Friday.", "--org-unit-tree", "Bo District"
        )
        (uid,) = emulator.conversations
        assert 0 == status
        assert f"sent {uid} to Bo District and the 5 units below it: 20 users reached\n" == out
        assert 21 == len(emulator.conversations[uid].participants)  # and the sender

    def test_piped_send_prints_the_uid_alone(self, emulator, spawn):
        out = ok(spawn("send", "S", "T", "--user", "alice", "--group", "Reporters")).out
        assert [out.strip()] == list(emulator.conversations) and 1 == len(out.splitlines())

    def test_dry_run_counts_without_sending(self, emulator, cli):
        result = ok(
            cli(
                "send",
                "Stock count",
                "By Friday.",
                "--dry-run",
                "--org-unit-tree",
                "Bo District",
                "--group",
                "Reporters",
                "--user",
                "sia",
            )
        )
        lines = result.out.splitlines()
        assert "would reach 21 users; nothing was sent" == lines[0]
        assert (
            [
                "  named with --user: 1",
                "  in the group Reporters: 2",  # alice and bob, who are in Bo District too
                "  assigned to Bo District and the 5 units below it: 20",
            ]
            == lines[1:4]
        )
        assert lines[4].startswith("  Alice Banda, Aminata Conteh, Bob Mensah, ")
        assert [] == emulator.requests("POST") and {} == emulator.conversations

    def test_dry_run_json_lists_everyone(self, emulator, cli):
        data = ok(
            cli("--json", "send", "S", "T", "--dry-run", "--org-unit", "Kenema District")
        ).json()
        assert {
            "dry_run": True,
            "reach": [{"id": "Tq7JxWmz2Rn", "name": "Abu Jalloh", "username": "abu"}],
        } == data
        assert [] == emulator.requests("POST")

    def test_dry_run_of_a_unit_nobody_is_assigned_to(self, emulator, cli):
        out = ok(cli("send", "S", "T", "--dry-run", "--org-unit", "Bombali District")).out
        assert "would reach 0 users; nothing was sent" == out.splitlines()[0]

    def test_a_unit_with_nobody_points_to_the_tree(self, emulator, cli):
        result = cli("send", "S", "T", "--org-unit", "Bombali District")
        assert 1 == result.status
        first, *advice = result.err.splitlines()
        assert first.endswith("(HTTP 409 E1004): No recipients selected.")
        assert "--org-unit-tree" in advice[1] and "organisation_unit_subtree" not in result.err


@ONE_RELEASE
class TestNoMatch:
    def test_find_with_no_match_exits_1(self, emulator, cli):
        result = cli("find", "zzz")
        assert (1, "no user, user group or organisation unit matches 'zzz'\n") == (
            result.status,
            result.out,
        )
        result = cli("--json", "find", "zzz")
        assert 1 == result.status
        assert {"users": [], "user_groups": [], "organisation_units": []} == result.json()
        assert 1 == cli("find", "zzz", "--feedback-recipients").status

    def test_a_name_that_matches_nothing_says_nothing_was_sent_only_for_a_send(self, cli):
        tree = cli("tree", "Port Loko")
        assert 2 == tree.status
        assert "dhis2-messages: error: ORG_UNIT 'Port Loko': no organisation unit matches" == (
            error_line(tree)
        )
        assert "sent" not in tree.err
        send = cli("send", "S", "T", "--org-unit-tree", "Port Loko")
        assert error_line(send).endswith("no organisation unit matches; nothing was sent")


@ONE_RELEASE
class TestCommonMistakes:
    def test_https_to_a_plain_http_server(self, emulator, cli):
        url = emulator.url.replace("http://", "https://")
        result = cli("--url", url, "unread")
        host = url.split("//")[1]
        assert 1 == result.status
        assert [
            f"dhis2-messages: {host} answered in plain http, not https.",
            f"Give --url http://{host} (or the address of its https port).",
        ] == result.err.splitlines()

    def test_an_unknown_host_is_one_line_at_once(self, emulator, tmp_path):
        """No retry notes, no waiting: a name DNS does not know stays unknown.  (The
        command's resolver fails every name, as DNS does an unknown one.)"""
        (tmp_path / "sitecustomize.py").write_text(
            "import socket\n"
            "def _unknown(*args, **kwargs):\n"
            "    raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')\n"
            "socket.getaddrinfo = _unknown\n",
            encoding="utf-8",
        )
        env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
        status, out, _ = terminal_run(
            emulator, "--url", "https://dhis2.example.invalid", "unread", env=env
        )
        assert 1 == status
        assert [
            "dhis2-messages: no such host: dhis2.example.invalid (DNS knows no such name).",
            "Check --url.",
        ] == visible(out).splitlines()

    def test_a_wrong_context_path(self, emulator, cli):
        result = cli("--url", emulator.url + "/dhis", "unread")
        assert 1 == result.status
        first, second = result.err.splitlines()
        assert first == (
            f"dhis2-messages: no DHIS2 API at {emulator.url}/dhis (HTTP 404: HTTP Status 404 – "
            "Not Found)."
        )
        assert second.startswith("Check --url: DHIS2's address, with its context path")

    def test_retry_notes_fit_a_narrow_terminal(self, emulator):
        emulator.inject(method="GET", path=API, drop=True, times=2)
        status, out, _ = terminal_run(emulator, "unread", columns=60)
        notes = visible(out).splitlines()[:-1]
        assert 0 == status and 2 == len(notes)
        assert all(note.startswith("dhis2-messages: the connection broke (") for note in notes)
        assert all(len(note) <= 60 and note.endswith("…") for note in notes), notes


@ONE_RELEASE
class TestColumnsByContent:
    def tickets(self, emulator, n=3):
        for status, priority in [("OPEN", "HIGH"), ("PENDING", "LOW"), ("SOLVED", "NONE")][:n]:
            emulator.add_conversation(
                sender="alice",
                recipients=["admin"],
                subject=f"Stock-out of ORS, {status.lower()}",
                message_type="TICKET",
                status=status,
                priority=priority,
            )

    @pytest.mark.parametrize("argv", [["--type", "TICKET"], ["--filter", "messageType:eq:TICKET"]])
    def test_a_column_with_one_value_gives_way_first(self, emulator, argv):
        self.tickets(emulator)
        emulator.add_conversation(sender="bob", recipients=["admin"], subject="Private")
        status, out, _ = terminal_run(emulator, "list", *argv, columns=80)
        header, *rows, footer = visible(out).splitlines()
        assert 0 == status and 3 == len(rows)
        assert "TYPE" not in header and "STATUS" in header and "FLAGS" not in header
        assert {"OPEN", "PENDING", "SOLVED"} == {row.split()[1] for row in rows}
        assert "page 1 of 1, 3 in all; all TICKET, unread" == footer
        status, out, _ = terminal_run(emulator, "list", *argv, columns=120)
        header = visible(out).splitlines()[0]
        assert "PRIORITY" in header and "STATUS" in header and "TYPE" not in header

    def test_a_walk_leaves_out_only_what_its_filter_holds(self, emulator):
        self.tickets(emulator)
        status, out, _ = terminal_run(
            emulator, "list", "--all", "--page-size", "2", "--type", "ticket"
        )
        header, *rows, footer = visible(out).splitlines()
        assert 0 == status and 3 == len(rows)
        assert "TYPE" not in header and "FLAGS" in header  # later pages could differ in flags
        assert "3 conversations; all TICKET" == footer.rsplit("\r\x1b[K", 1)[-1]
        status, out, _ = terminal_run(emulator, "list", "--all", "--page-size", "2")
        assert 0 == status and "TYPE" in visible(out).splitlines()[0]

    def test_a_pipe_gets_every_column(self, emulator, spawn):
        self.tickets(emulator)
        header = ok(spawn("list", "--type", "TICKET")).out.splitlines()[0]
        assert header.split() == [
            "UID",
            "FLAGS",
            "TYPE",
            "STATUS",
            "PRIORITY",
            "LAST",
            "MESSAGE",
            "FROM",
            "SUBJECT",
        ]


@ONE_RELEASE
class TestListDates:
    def test_since_and_before(self, emulator, cli):
        import datetime as dt

        old = emulator.add_conversations(
            2, sender="bob", recipients=["admin"], created=dt.datetime(2024, 5, 1, 8)
        )
        new = emulator.add_conversations(1, sender="bob", recipients=["admin"])
        listed = ok(cli("--json", "list", "--before", "2024-06-01")).json()["conversations"]
        assert set(old) == {c["id"] for c in listed}
        listed = ok(cli("--json", "list", "--since", "7d")).json()["conversations"]
        assert set(new) == {c["id"] for c in listed}
        listed = ok(cli("--json", "list", "--since", "2024-05-01T08:00:30")).json()["conversations"]
        assert {old[1], *new} == {c["id"] for c in listed}
        result = cli("list", "--since", "last week")
        assert 2 == result.status and "7d" in result.err


def test_bare_command_prints_a_short_help(capsys):
    """dhis2-messages alone: the commands and where to read more, not argparse's error."""
    assert 2 == main([])
    err = capsys.readouterr().err
    assert err.startswith("usage: dhis2-messages ")
    assert "error" not in err and "Commands:" in err
    for name in _subcommands():
        assert f"\n  {name} " in err
    assert "dhis2-messages COMMAND --help" in err and len(err.splitlines()) < 40
    assert 2 == main(["--json"])  # options, but no command

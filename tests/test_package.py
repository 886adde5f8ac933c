"""The package as users receive it: what ``dhis2_messages`` exports, and its README.

Every public name is exported and every export documented in the README; the README's
examples run: every Python block against the emulator, the demo, the set-up commands
CI runs, and each command line parses.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dhis2_messages

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")

# Public module-level names that are deliberately not exported: the console
# script's entry point and the logger (configured by its name, "dhis2_messages").
NOT_EXPORTED = {"main", "log"}


def module_public_names():
    """Every public name the module's own source binds at top level."""
    tree = ast.parse(Path(dhis2_messages.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def readme_names():
    """The identifiers the README shows as code: ``literals`` and code blocks."""
    literals = re.findall(r"``(.+?)``", README)
    blocks = re.findall(r"^\.\. code-block:: \w+\n\n((?:(?: {4}.*)?\n)+)", README, re.MULTILINE)
    return set(re.findall(r"[A-Za-z_]\w*", " ".join(literals + blocks)))


def test_all_lists_every_public_name():
    """A new public class, function or constant is exported, or this fails."""
    public = module_public_names() - NOT_EXPORTED
    exported = set(dhis2_messages.__all__)
    # (public but not exported, exported but not a public name of the module)
    assert ([], []) == (sorted(public - exported), sorted(exported - public))


def test_all_names_exist():
    missing = [name for name in dhis2_messages.__all__ if not hasattr(dhis2_messages, name)]
    assert [] == missing
    assert len(set(dhis2_messages.__all__)) == len(dhis2_messages.__all__)


def test_readme_documents_every_export():
    """Every exported name appears in the README as code, so the PyPI page documents it."""
    undocumented = sorted(set(dhis2_messages.__all__) - readme_names())
    assert [] == undocumented


# -- The README's examples run -------------------------------------------------------


def blocks(language):
    """The code blocks of one language, dedented, in order."""
    pattern = re.compile(rf"^\.\. code-block:: {language}\n\n((?:(?: {{4}}.*)?\n)+)", re.MULTILINE)
    return [textwrap.dedent(match.group(1)) for match in pattern.finditer(README)]


@pytest.mark.dhis2_versions(since="2.40")  # the README shows E1004, which 2.40 introduced
def test_python_examples_run(emulator, tmp_path, monkeypatch, capsys):
    """Every Python block runs, in order, in one namespace, against the emulator."""
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 weekly report")
    monkeypatch.setenv("DHIS2_URL", emulator.url)
    monkeypatch.setenv("DHIS2_TOKEN", emulator.user("admin").token)
    examples = blocks("python")
    assert len(examples) >= 14
    namespace = {"__name__": "readme"}
    for number, code in enumerate(examples, 1):
        code = code.replace("https://dhis2.example.org", emulator.url)
        code = code.replace("d2p_YOUR_TOKEN", emulator.user("admin").token)
        exec(compile(code, f"README.rst python block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    # A few outputs the README promises in its comments.
    assert f"<Messenger {emulator.url} auth=basic>" in out
    assert "409 E1004 User does not exist: Zz0000000Zz" in out
    assert "No MessageConversation found with UID: Zz0000000Zz" in out
    assert "report.pdf 22" in out
    assert "['Alice Banda', 'Jose Banda', 'José Banda']" in out
    assert "True no user is assigned to those organisation units themselves" in out
    [stock] = [c for c in emulator.conversations.values() if c.subject == "Stock count on Friday"]
    assert "aminata" in stock.participants  # a facility two levels below Bo District
    assert "sia" not in stock.participants  # Kenema District
    ticket = emulator.conversations[namespace["ticket"]]
    assert ("SOLVED", "HIGH", None) == (ticket.status, ticket.priority, ticket.assignee)


def test_the_seeded_users_are_listed():
    """Every seeded user is in the README's table, with its uid and name; the community
    health workers by their range of usernames."""
    from tests.emulator import Emulator

    start = README.index("The seeded world")
    table = README[start : README.index("\nPerformance\n", start)]
    rows = {
        line.split()[0]: line
        for line in table.splitlines()
        if re.match(r"[a-z.]+\s+\w{11}\s", line)
    }
    users = list(Emulator().users.values())
    workers = [u for u in users if u.username.startswith("chw.")]
    named = [u for u in users if u not in workers]
    assert sorted(u.username for u in named) == sorted(rows)
    for user in named:
        assert f"{user.uid}  {user.display_name}" in rows[user.username], user.username
    assert f"{len(workers)} community health workers" in table
    for first, last in (("chw.ngelehun01", "chw.ngelehun12"), ("chw.makeni01", "chw.makeni16")):
        assert f"``{first}`` to ``{last}``" in table
        assert {first, last} <= {u.username for u in workers}


def test_demo_round_trip():
    """The first set-up command's round trip runs and prints the thread."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "John Traore: Please submit the weekly malaria report" in result.stdout
    assert "Alice Banda: Done: submitted this morning." in result.stdout


def test_set_up_commands():
    """The README gives exactly the two set-up commands CI runs."""
    commands = [b.strip() for b in blocks("bash") if b.strip().startswith("python3 -m venv")]
    assert 2 == len(commands)
    assert commands[0].endswith("python -m tests.demo")
    assert commands[1].endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci  # the test command, as the README gives it
    # The round trip is a nox session that CI runs.
    noxfile = (ROOT / "noxfile.py").read_text()
    assert 'session.run("python", "-m", "tests.demo")' in noxfile
    assert re.search(r"--sessions demo\b", ci)


def test_cli_examples_parse():
    """Each dhis2-messages line of the README is a valid command line."""
    parser = dhis2_messages._cli_parser()
    lines = [line for b in blocks("bash") for line in b.splitlines() if "dhis2-messages " in line]
    assert len(lines) >= 8
    for line in lines:
        argv = shlex.split(line.split("|")[-1])
        assert "dhis2-messages" == argv[0]
        parser.parse_args(argv[1:])


def test_method_table_lists_every_method():
    """The method → endpoint table names every public Messenger method."""
    public = {
        name
        for name, value in vars(dhis2_messages.Messenger).items()
        if not name.startswith("_") and callable(value)  # settings are not methods
    }
    public -= {"from_env", "close"}
    table = README[README.index("Methods and endpoints") : README.index("Compatibility")]
    for name in public:
        assert f"``{name}(" in table, name


def test_env_variables_documented():
    assert all(
        name in README
        for name in ("DHIS2_URL", "DHIS2_TOKEN", "DHIS2_PAT", "DHIS2_USERNAME", "DHIS2_PASSWORD")
    )
    assert os.path.exists(ROOT / "LICENSE")


def test_readme_is_valid_restructuredtext():
    """The README renders without a docutils warning (PyPI rejects broken reST)."""
    import io

    import docutils.core

    warnings = io.StringIO()
    docutils.core.publish_doctree(
        README,
        settings_overrides={
            "warning_stream": warnings,
            "report_level": 2,
            "syntax_highlight": "none",
        },
    )
    assert "" == warnings.getvalue()


# -- The module's shape -------------------------------------------------------------


def _top_level_names(tree):
    """Each name the module defines at its top level, with the line that defines it first."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        else:
            names = []
        for name in names:
            found.setdefault(name, node.lineno)
    return found


def test_the_command_line_stands_after_the_library_and_uses_its_public_names_only():
    """One fence: nothing above it uses what the command line defines, and below it no
    private name of the library and no private attribute of anything but its own objects."""
    source = (ROOT / "dhis2_messages.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    fence = source.splitlines().index("# The command line") + 1
    defined = _top_level_names(tree)
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in defined:
            private = node.id.startswith("_") and not node.id.startswith("__")
            if node.lineno > fence > defined[node.id] and private:
                wrong.append(f"line {node.lineno}: the command line uses {node.id}")
            if node.lineno < fence < defined[node.id]:
                wrong.append(f"line {node.lineno}: the library uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.lineno > fence:
            own = isinstance(node.value, ast.Name) and node.value.id == "self"
            if node.attr.startswith("_") and not node.attr.startswith("__") and not own:
                wrong.append(f"line {node.lineno}: the command line reads .{node.attr}")
    assert [] == wrong
    assert 1 == source.count("\n# The command line\n")


def test_no_function_is_longer_than_sixty_lines_and_nothing_is_exec():
    tree = ast.parse((ROOT / "dhis2_messages.py").read_text(encoding="utf-8"))
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    assert [] == [f.name for f in functions if f.end_lineno - f.lineno + 1 > 60]
    calls = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    assert not {"exec", "eval", "compile"} & set(calls)


def test_a_users_type_checker_catches_misspelt_values(tmp_path, monkeypatch):
    """mypy --strict, reading the stub the package ships, rejects set_status(uid, "SOLVD"),
    an unknown priority and a row key that does not exist, each on its line, and passes
    the script that uses the library well (tools/check_types.py runs pyright too)."""
    api = pytest.importorskip("mypy.api")
    stub = ROOT / "dhis2_messages-stubs" / "__init__.pyi"
    (tmp_path / "dhis2_messages.pyi").write_bytes(stub.read_bytes())
    for name in ("uses_api.py", "wrong_values.py"):
        (tmp_path / name).write_bytes((ROOT / "tests" / "typecheck" / name).read_bytes())
    monkeypatch.chdir(tmp_path)  # where only the stub is to be found
    options = ["--strict", "--no-incremental", "--cache-dir", os.devnull]
    out, _, status = api.run([*options, "uses_api.py"])
    assert 0 == status, out
    out, _, status = api.run([*options, "wrong_values.py"])
    lines = (tmp_path / "wrong_values.py").read_text(encoding="utf-8").splitlines()
    flagged = sorted(
        {int(n) for n in re.findall(r"^wrong_values\.py:(\d+): error", out, re.MULTILINE)}
    )
    assert 1 == status and [7, 8, 10] == flagged, out
    assert ['"SOLVD"', '"URGENT"', '["subjet"]'] == [
        re.search(r'"[A-Z]+"|\["\w+"\]', lines[n - 1]).group() for n in flagged
    ]

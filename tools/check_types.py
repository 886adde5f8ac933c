"""Type-check user scripts against the installed package, as its users do.

    python tools/check_types.py VENV_PYTHON

*VENV_PYTHON* is the interpreter of an environment where the built wheel,
mypy and pyright are installed (and nothing of this repository is on the
path).  The scripts are copied into an empty folder first, so neither checker
can find ``dhis2_messages.py`` beside them: what they see is the installed
module and its stub package.

- ``tests/typecheck/uses_api.py`` must pass ``mypy --strict`` and pyright in
  strict mode; its ``assert_type`` calls fail if a checker sees ``Any``.
- ``tests/typecheck/wrong_argument.py`` passes ``42`` as uids, and
  ``tests/typecheck/wrong_values.py`` a misspelt status and priority and a row key
  that does not exist: both checkers must reject each, on its line.

Exit status 0 when all the results are as expected, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

SCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "typecheck"
GOOD = "uses_api.py"
#: Each script that must fail: the lines it must fail on, and what each line holds.
BAD: Dict[str, Dict[int, str]] = {
    "wrong_argument.py": {7: "mark_read(42)"},
    "wrong_values.py": {7: '"SOLVD"', 8: '"URGENT"', 10: '["subjet"]'},
}


def _run(command: List[str], cwd: str) -> Tuple[int, str]:
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1", MYPYPATH="")
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def _as_expected(name: str, status: int, output: str) -> bool:
    if name == GOOD:
        return status == 0
    return status != 0 and all(
        f"{name}:{line}:" in output or f"{name}:{line} " in output for line in BAD[name]
    )


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    python = os.path.abspath(argv[0])
    bin_dir = os.path.dirname(python)
    for name, lines in BAD.items():
        text = (SCRIPTS / name).read_text(encoding="utf-8").splitlines()
        for line, holds in lines.items():
            assert holds in text[line - 1], f"{name} line {line} is {text[line - 1]!r}"
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in (GOOD, *BAD):
            shutil.copy(SCRIPTS / name, folder)
        found = _run([python, "-c", "import dhis2_messages; print(dhis2_messages.__file__)"], "/")
        print(f"dhis2_messages under test: {found[1]}")
        checkers = {
            "mypy --strict": [python, "-m", "mypy", "--strict", "--no-incremental"],
            "pyright (strict)": [os.path.join(bin_dir, "pyright"), "--pythonpath", python],
        }
        for checker, command in checkers.items():
            for name in (GOOD, *BAD):
                status, output = _run(command + [name], folder)
                print(f"\n$ {checker} {name}  (exit {status})\n{output}")
                if not _as_expected(name, status, output):
                    failures += 1
                    expected = "pass" if name == GOOD else f"fail on lines {sorted(BAD[name])}"
                    print(f"UNEXPECTED: {checker} on {name} should {expected}")
    print("\ntype checks:", "as expected" if not failures else f"{failures} unexpected result(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

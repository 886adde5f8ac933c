"""Type-check two user scripts against the installed package, as its users do.

    python tools/check_types.py VENV_PYTHON

*VENV_PYTHON* is the interpreter of an environment where the built wheel,
mypy and pyright are installed (and nothing of this repository is on the
path).  The scripts are copied into an empty folder first, so neither checker
can find ``dhis2_messages.py`` beside them: what they see is the installed
module and its stub package.

- ``tests/typecheck/uses_api.py`` must pass ``mypy --strict`` and pyright in
  strict mode; its ``assert_type`` calls fail if a checker sees ``Any``.
- ``tests/typecheck/wrong_argument.py`` passes ``42`` as uids: both checkers
  must reject it, on that line.

Exit status 0 when all four results are as expected, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

SCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "typecheck"
GOOD = "uses_api.py"
BAD = "wrong_argument.py"
BAD_LINE = 7  # m.mark_read(42)


def _run(command: List[str], cwd: str) -> Tuple[int, str]:
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1", MYPYPATH="")
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    python = os.path.abspath(argv[0])
    bin_dir = os.path.dirname(python)
    bad_line = (SCRIPTS / BAD).read_text(encoding="utf-8").splitlines()[BAD_LINE - 1]
    assert "mark_read(42)" in bad_line, f"{BAD} line {BAD_LINE} is {bad_line!r}"
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in (GOOD, BAD):
            shutil.copy(SCRIPTS / name, folder)
        found = _run([python, "-c", "import dhis2_messages; print(dhis2_messages.__file__)"], "/")
        print(f"dhis2_messages under test: {found[1]}")
        checkers = {
            "mypy --strict": [python, "-m", "mypy", "--strict", "--no-incremental"],
            "pyright (strict)": [os.path.join(bin_dir, "pyright"), "--pythonpath", python],
        }
        for checker, command in checkers.items():
            for name, must_pass in ((GOOD, True), (BAD, False)):
                status, output = _run(command + [name], folder)
                print(f"\n$ {checker} {name}  (exit {status})\n{output}")
                if must_pass:
                    ok = status == 0
                else:
                    ok = status != 0 and (
                        f"{name}:{BAD_LINE}:" in output or f"{name}:{BAD_LINE} " in output
                    )
                if not ok:
                    failures += 1
                    expected = "pass" if must_pass else f"fail on line {BAD_LINE}"
                    print(f"UNEXPECTED: {checker} on {name} should {expected}")
    print("\ntype checks:", "as expected" if not failures else f"{failures} unexpected result(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Check the built wheel and sdist: their file lists and the wheel's metadata.

    python tools/check_dist.py DIST_DIR

DIST_DIR holds exactly one ``.whl`` and one ``.tar.gz`` built from this
repository.  The wheel must hold the module, its stub package and its
metadata, nothing else (no ``tests`` package: the emulator is not installed).
The sdist must hold every file the repository tracks, so that the suite runs
from it.  Prints both file lists; exit status 1 when a check fails.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import List, Set

ROOT = Path(__file__).resolve().parent.parent
# Tracked files an sdist has no use for.
NOT_IN_SDIST = {".gitignore"}


def _wheel_problems(path: Path) -> List[str]:
    with zipfile.ZipFile(path) as wheel:
        names = sorted(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    print(f"{path.name}:")
    for name in names:
        print(f"  {name}")
    expected = {"dhis2_messages.py", "dhis2_messages-stubs/__init__.pyi"} | {
        f"{info}/{name}"
        for name in (
            "METADATA",
            "WHEEL",
            "RECORD",
            "entry_points.txt",
            "top_level.txt",
            "licenses/LICENSE",
        )
    }
    problems = [f"wheel: unexpected file {n}" for n in names if n not in expected]
    problems += [f"wheel: missing {n}" for n in sorted(expected - set(names))]
    classifiers = metadata.get_all("Classifier") or []
    # setup.cfg's license becomes License (License-Expression needs setuptools 77,
    # which no longer runs on Python 3.8); either way the SPDX identifier.
    if "BSD-3-Clause" not in (metadata.get("License-Expression"), metadata.get("License")):
        problems.append("metadata: the license is not BSD-3-Clause")
    if any(c.startswith("License ::") for c in classifiers):
        problems.append("metadata: a License classifier, which setuptools warns about")
    if "Typing :: Typed" not in classifiers:
        problems.append("metadata: no 'Typing :: Typed' classifier")
    for field in ("Author", "Project-URL", "Requires-Python", "Summary"):
        if not metadata.get(field):
            problems.append(f"metadata: no {field}")
    extras = metadata.get_all("Provides-Extra") or []
    if extras != ["test"]:
        problems.append(f"metadata: extras are {extras}, want only 'test'")
    return problems


def _sdist_problems(path: Path) -> List[str]:
    with tarfile.open(path) as sdist:
        members = sorted(m.name for m in sdist.getmembers() if m.isfile())
    top = members[0].split("/")[0]
    names = sorted(name[len(top) + 1 :] for name in members)
    print(f"{path.name}:")
    for name in names:
        print(f"  {name}")
    tracked: Set[str] = set(
        subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    missing = sorted(tracked - NOT_IN_SDIST - set(names))
    return [f"sdist: missing {name}" for name in missing]


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dist = Path(argv[0])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"want one wheel and one sdist in {dist}, found {wheels + sdists}", file=sys.stderr)
        return 2
    problems = _wheel_problems(wheels[0]) + _sdist_problems(sdists[0])
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

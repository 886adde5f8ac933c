"""CI's steps, one nox session each; ``.ci/run`` runs them all, a contributor any one.

    nox -l                  # the sessions, in CI's order
    nox -s lint             # one of them
    nox -s tests -- -k walk # arguments after -- go to pytest, in the sessions that run the suite

Each session gets a fresh virtualenv under ``.nox/`` (``nox -R`` reuses it).  The
sessions that check the built distribution (stubs, types, wheel, lowest) require
``build``, which nox then runs first, once per invocation: it writes one wheel and
one sdist to ``.nox/.cache/dist``, where they read them.  The pinned lint, type and
packaging tools come from ``requirements-lint.txt``.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Tuple

import nox

ROOT = Path(__file__).resolve().parent
LINT_TOOLS = ("-r", "requirements-lint.txt")
OLDEST, NEWEST = "3.8", "3.13"
EVERY_PYTHON = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
# The DHIS2 release each run of the installed wheel tests against; the release
# matrix as a whole runs in `tests`.
WHEEL_RELEASES = {OLDEST: "2.38", NEWEST: "2.44"}
LOWEST_RELEASE = "2.42"
# The oldest versions setup.cfg's install_requires allows; requests 2.26.0 pulls
# in urllib3 1.26.
LOWEST_DEPENDENCIES = ("attrs==21.3.0", "requests==2.26.0")
SHOWN_DEPENDENCIES = ("attrs", "requests", "urllib3")

nox.options.default_venv_backend = "venv"  # as `python3 -m venv`, on 3.8 too
nox.options.error_on_external_run = True
# `nox` alone runs what CI runs, in CI's order (all but the release matrix's
# `matrix`, which is for a contributor's machine).
nox.options.sessions = ["tests", "demo", "build", "lint", "stubs", "types", "wheel", "lowest"]


def _find_pyenv_pythons() -> None:
    """Let nox find pyenv's interpreters when its shims do not answer for them.

    A pyenv shim like ``python3.8`` only runs the versions pyenv has made active;
    each installed version's ``bin`` goes at the end of ``PATH``, the newest
    patch release of each minor version first, so that nox finds ``python3.X``
    there and an interpreter already on ``PATH`` still comes first.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if not root.is_dir():
        return

    def release(path: Path) -> Tuple[int, ...]:
        return tuple(int(part) for part in path.name.split("."))

    installed = [p for p in root.iterdir() if re.fullmatch(r"3\.\d+\.\d+", p.name)]
    extra = [str(p / "bin") for p in sorted(installed, key=release, reverse=True)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [p for p in extra if p not in path])


_find_pyenv_pythons()


def _dist(session: nox.Session) -> Path:
    """The folder that `build` fills and the sessions that require it read."""
    return session.cache_dir / "dist"


def _built(session: nox.Session) -> Tuple[str, str]:
    """The wheel and the sdist that `build` wrote in this nox run."""
    wheels = sorted(_dist(session).glob("*.whl"))
    sdists = sorted(_dist(session).glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        session.error(f"no built wheel and sdist in {_dist(session)}: run the build session")
    return str(wheels[0]), str(sdists[0])


def _fresh_dir(session: nox.Session, name: str) -> Path:
    """An empty folder in the session's own temporary folder."""
    path = Path(session.create_tmp()).resolve() / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command: the suite on the source tree, every emulated DHIS2 release."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: a round trip over HTTP against the bundled emulator."""
    session.install(".")
    session.run("python", "-m", "tests.demo")


@nox.session
def build(session: nox.Session) -> None:
    """The wheel and the sdist, once, from the tracked files: no build warning, twine, file lists."""
    session.install(*LINT_TOOLS)
    src = _fresh_dir(session, "src")
    listing = session.run("git", "ls-files", "-z", external=True, silent=True)
    for name in str(listing).split("\0"):
        if name and (ROOT / name).is_file():  # a tracked file deleted in the work tree is left out
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = _dist(session)
    shutil.rmtree(dist, ignore_errors=True)
    # Without PYTHONDONTWRITEBYTECODE, setuptools has no byte-compiling notice to print.
    output = session.run(
        "python",
        "-m",
        "build",
        "--outdir",
        str(dist),
        str(src),
        env={"PYTHONDONTWRITEBYTECODE": None},
        silent=True,
    )
    warnings = [line for line in str(output).splitlines() if "warn" in line.lower()]
    if warnings:
        print(output)
        session.error("the build printed warnings:\n" + "\n".join(warnings))
    session.log(f"built {', '.join(sorted(p.name for p in dist.iterdir()))}")
    wheel, sdist = _built(session)
    session.run("twine", "check", "--strict", wheel, sdist)
    session.run("python", "tools/check_dist.py", str(dist))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and mypy --strict on the module, with the pinned tools."""
    session.install(*LINT_TOOLS, ".")  # the package brings the run-time dependencies mypy reads
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict", "dhis2_messages.py")


@nox.session(requires=["build"])
def stubs(session: nox.Session) -> None:
    """The stub: the same as a fresh one from the module, and true to the installed module."""
    wheel, _ = _built(session)
    session.install(*LINT_TOOLS, wheel)
    session.run("python", "tools/stubs.py", "--check")
    allowlist = str(ROOT / "tools" / "stubtest-allowlist.txt")
    # From an empty folder, where no dhis2_messages.py hides the installed stub package.
    with session.chdir(_fresh_dir(session, "stubtest")):
        session.run("python", "-m", "mypy.stubtest", "--allowlist", allowlist, "dhis2_messages")


@nox.session(requires=["build"])
def types(session: nox.Session) -> None:
    """A user's mypy --strict and pyright (strict) on the installed wheel."""
    wheel, _ = _built(session)
    session.install(*LINT_TOOLS, wheel)
    session.run("python", "tools/check_types.py", str(Path(session.bin) / "python"))


def _suite_on_installed_wheel(session: nox.Session, release: str, pins: Tuple[str, ...]) -> None:
    """Unpack the sdist and run its suite against the wheel installed in the session.

    pytest's --import-mode=append puts the unpacked tree after site-packages, so
    the tests import the installed module; the run fails if pytest's header
    names another file.
    """
    wheel, sdist = _built(session)
    session.install(f"{wheel}[test]", *pins)
    frozen = session.run("python", "-m", "pip", "list", "--format=freeze", silent=True)
    shown = [line for line in str(frozen).split() if line.split("==")[0] in SHOWN_DEPENDENCIES]
    session.log(f"DHIS2 {release}; {', '.join(shown)}")
    unpacked = _fresh_dir(session, "sdist")
    with tarfile.open(sdist) as archive:
        # The "data" filter where this Python has it (3.12+ warns without a filter).
        archive.extractall(
            unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {})
        )
    [tree] = unpacked.iterdir()
    site = session.run(
        "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", silent=True
    )
    installed = os.path.join(str(site).strip(), "dhis2_messages.py")
    session.log(f"the tests must import {installed}")
    with session.chdir(tree):
        # The pytest script, not python -m pytest, which would put this tree first on sys.path.
        output = session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            "--import-mode=append",
            *session.posargs,
            env={"DHIS2_VERSIONS": release},
            silent=True,
        )
    print(output)
    header = [line for line in str(output).splitlines() if line.startswith("dhis2_messages ")]
    if not header or not header[0].endswith(f" from {installed}"):
        session.error(f"the suite did not test the installed wheel: {header}")


@nox.session(python=[OLDEST, NEWEST], requires=["build"])
def wheel(session: nox.Session) -> None:
    """The suite from the unpacked sdist against the installed wheel: 3.8 on DHIS2 2.38, 3.13 on 2.44."""
    _suite_on_installed_wheel(session, WHEEL_RELEASES[str(session.python)], ())


@nox.session(python=OLDEST, requires=["build"])
def lowest(session: nox.Session) -> None:
    """The suite as in wheel, with the lowest dependency versions setup.cfg allows, on DHIS2 2.42."""
    _suite_on_installed_wheel(session, LOWEST_RELEASE, LOWEST_DEPENDENCIES)


@nox.session(python=EVERY_PYTHON)
def matrix(session: nox.Session) -> None:
    """The suite on the source tree, once under each Python from 3.8 to 3.13 (not part of CI)."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)

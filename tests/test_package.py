"""The package as users receive it: what ``dhis2_messages`` exports, and the README that documents it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dhis2_messages

README = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")

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

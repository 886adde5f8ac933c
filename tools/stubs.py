"""Write the type stub that ships with the package, from the module's own annotations.

    python tools/stubs.py            # rewrite dhis2_messages-stubs/__init__.pyi
    python tools/stubs.py --check    # exit 1 if the committed stub differs from a fresh one

Type checkers find no ``py.typed`` marker for a single-file module (PEP 561), so
the distribution also installs the stub-only package ``dhis2_messages-stubs``.
Its one file is the module's public interface: every public name, the private
type aliases and classes their signatures use, the same decorators, bases and annotations,
bodies reduced to ``...``.  An attribute is typed from its annotation, from a
literal, from the parameter or the module function whose result ``__init__``
stores in it; anything else stops the generator with the name to annotate in
the module, so the stub never guesses (stubgen writes ``Incomplete`` there,
which is ``Any`` for the user).  The result goes through ruff's fixes and formatter;
``python -m mypy.stubtest dhis2_messages`` checks it against the running module.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "dhis2_messages.py"
STUB = ROOT / "dhis2_messages-stubs" / "__init__.pyi"
HEADER = (
    "# The public interface of dhis2_messages.py, written by tools/stubs.py from the\n"
    "# module's annotations: do not edit, run `python tools/stubs.py` after changing the module.\n"
)


# Python 3.12 added type parameters to functions and classes (PEP 695).
_NO_TYPE_PARAMS: Dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}


class StubError(Exception):
    """The module has something the generator cannot type without guessing."""


def _ellipsis() -> ast.expr:
    return ast.Constant(value=...)


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _literal_type(value: ast.expr) -> Optional[str]:
    """The type of a literal the module assigns: str, int, float, bool."""
    if isinstance(value, ast.Constant) and type(value.value) in (str, int, float, bool):
        return type(value.value).__name__
    if isinstance(value, ast.JoinedStr):
        return "str"
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        left, right = _literal_type(value.left), _literal_type(value.right)
        return left if left == right == "str" else None
    return None


def _annotation(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


def _unquote(node: ast.expr) -> ast.expr:
    """Forward references need no quotes in a stub: "os.PathLike[str]" -> os.PathLike[str]."""

    class Unquote(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
            # The strings of Literal["NONE", ...] are values, not forward references.
            if isinstance(node.value, ast.Name) and node.value.id == "Literal":
                return node
            visited: ast.AST = self.generic_visit(node)
            return visited

        def visit_Constant(self, const: ast.Constant) -> ast.AST:
            if isinstance(const.value, str):
                parsed: ast.AST = self.visit(_annotation(const.value))
                return parsed
            return const

    unquoted: ast.expr = Unquote().visit(node)
    return unquoted


def _default(node: ast.expr) -> ast.expr:
    """Literal defaults stay (stubtest compares them); anything else becomes ``...``."""
    if isinstance(node, ast.Constant) and (
        node.value is None or type(node.value) in (bool, int, float) or isinstance(node.value, str)
    ):
        return node
    if isinstance(node, ast.Tuple) and not node.elts:
        return node
    return _ellipsis()


class _Generator:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.functions: Dict[str, ast.FunctionDef] = {
            node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
        }
        self.private_aliases: Dict[str, ast.Assign] = {}
        self.private_classes: Dict[str, ast.ClassDef] = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.ClassDef) and not _is_public(node.name)
        }
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and not _is_public(target.id):
                    self.private_aliases[target.id] = node

    # -- functions and classes -----------------------------------------------

    def function(self, node: ast.FunctionDef) -> ast.FunctionDef:
        args = node.args
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                arg.annotation = _unquote(arg.annotation)
        stub_args = ast.arguments(
            posonlyargs=args.posonlyargs,
            args=args.args,
            vararg=args.vararg,
            kwonlyargs=args.kwonlyargs,
            kw_defaults=[None if d is None else _default(d) for d in args.kw_defaults],
            kwarg=args.kwarg,
            defaults=[_default(d) for d in args.defaults],
        )
        return ast.FunctionDef(
            name=node.name,
            args=stub_args,
            body=[ast.Expr(_ellipsis())],
            decorator_list=node.decorator_list,
            returns=None if node.returns is None else _unquote(node.returns),
            type_comment=None,
            lineno=node.lineno,
            **_NO_TYPE_PARAMS,
        )

    def _attribute_type(self, value: ast.expr, params: Dict[str, ast.expr]) -> Optional[ast.expr]:
        if isinstance(value, ast.Name) and value.id in params:
            return params[value.id]
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            called = self.functions.get(value.func.id)
            if called is not None and called.returns is not None:
                return called.returns
        literal = _literal_type(value)
        return None if literal is None else ast.Name(id=literal)

    def _instance_attributes(self, cls: ast.ClassDef, known: Set[str]) -> Iterator[ast.stmt]:
        """``self.name = ...`` in ``__init__``, typed as the rules above say."""
        init = next(
            (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
        )
        if init is None:
            return
        params = {
            a.arg: a.annotation
            for a in init.args.posonlyargs + init.args.args + init.args.kwonlyargs
            if a.annotation is not None
        }
        for node in ast.walk(init):
            targets: Sequence[ast.expr]
            if isinstance(node, ast.AnnAssign):
                targets, annotation = [node.target], node.annotation
            elif isinstance(node, ast.Assign):
                targets, annotation = node.targets, None
            else:
                continue
            for target in targets:
                if not (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and _is_public(target.attr)
                    and target.attr not in known
                ):
                    continue
                typ = annotation
                if typ is None and isinstance(node, ast.Assign):
                    typ = self._attribute_type(node.value, params)
                if typ is None:
                    raise StubError(
                        f"{cls.name}.__init__ sets self.{target.attr} from an expression whose "
                        f"type is not written down: annotate it (self.{target.attr}: T = ...)"
                    )
                known.add(target.attr)
                yield ast.AnnAssign(
                    target=ast.Name(id=target.attr), annotation=_unquote(typ), simple=1
                )

    def klass(self, node: ast.ClassDef) -> ast.ClassDef:
        body: List[ast.stmt] = []
        known: Set[str] = set()
        overloaded = {
            n.name
            for n in node.body
            if isinstance(n, ast.FunctionDef) and any(_is_overload(d) for d in n.decorator_list)
        }
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                if _is_public(item.target.id):
                    known.add(item.target.id)
                    body.append(
                        ast.AnnAssign(
                            target=item.target,
                            annotation=_unquote(item.annotation),
                            value=None if item.value is None else _ellipsis(),
                            simple=1,
                        )
                    )
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name) and _is_public(target.id):
                        literal = _literal_type(item.value)
                        if literal is None:
                            raise StubError(
                                f"{node.name}.{target.id} has no literal value: annotate it"
                            )
                        known.add(target.id)
                        body.append(
                            ast.AnnAssign(
                                target=ast.Name(id=target.id),
                                annotation=ast.Name(id=literal),
                                simple=1,
                            )
                        )
            elif isinstance(item, ast.FunctionDef):
                if _is_public(item.name) and (
                    item.name not in overloaded or any(_is_overload(d) for d in item.decorator_list)
                ):
                    known.add(item.name)
            elif isinstance(item, (ast.Expr, ast.Pass)):  # the docstring
                continue
            else:
                raise StubError(f"class {node.name} has a {type(item).__name__} the stub lacks")
        body.extend(self._instance_attributes(node, known))
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name in known:
                if item.name in overloaded and not any(
                    _is_overload(d) for d in item.decorator_list
                ):
                    continue
                body.append(self.function(item))
        return ast.ClassDef(
            name=node.name,
            bases=node.bases,
            keywords=node.keywords,
            body=body or [ast.Expr(_ellipsis())],
            decorator_list=node.decorator_list,
            **_NO_TYPE_PARAMS,
        )

    # -- the module ---------------------------------------------------------

    def statements(self) -> List[ast.stmt]:
        out: List[Tuple[int, ast.stmt]] = []  # (line in the module, statement)
        imports: List[ast.stmt] = []
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.append(node)
            elif isinstance(node, ast.FunctionDef):
                if _is_public(node.name):
                    out.append((node.lineno, self.function(node)))
            elif isinstance(node, ast.ClassDef):
                if _is_public(node.name):
                    out.append((node.lineno, self.klass(node)))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if _is_public(node.target.id):
                    annotation = _unquote(node.annotation)
                    stmt = ast.AnnAssign(target=node.target, annotation=annotation, simple=1)
                    out.append((node.lineno, stmt))
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if names == ["__all__"]:
                    out.append((node.lineno, node))
                    continue
                for name in names:
                    if not _is_public(name) and name != "__version__":
                        continue
                    literal = _literal_type(node.value)
                    if literal is None:
                        raise StubError(f"{name} has no literal value: annotate it in the module")
                    stmt = ast.AnnAssign(
                        target=ast.Name(id=name), annotation=ast.Name(id=literal), simple=1
                    )
                    out.append((node.lineno, stmt))
            elif isinstance(node, ast.Expr) or (  # the docstring, or `if __name__ == ...`
                isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)
            ):
                continue
            else:
                raise StubError(
                    f"line {node.lineno}: a top-level {type(node).__name__} the generator "
                    "does not know how to stub"
                )
        body = self._with_private_aliases(out)
        return self._used_imports(imports, body) + body

    def _with_private_aliases(self, out: List[Tuple[int, ast.stmt]]) -> List[ast.stmt]:
        """Add the private aliases (``_UidArg = ...``) and classes the public interface uses."""
        wanted: Set[str] = set()
        pending = _names([stmt for _, stmt in out])
        while pending:
            name = pending.pop()
            stmt: ast.stmt
            if name in wanted:
                continue
            if name in self.private_aliases:
                wanted.add(name)
                alias = self.private_aliases[name]
                value = copy.deepcopy(alias.value)
                if not isinstance(value, ast.Call):  # TypeVar("_T") keeps its string
                    value = _unquote(value)
                line, stmt = alias.lineno, ast.Assign(targets=alias.targets, value=value)
            elif name in self.private_classes:  # e.g. a descriptor the public classes use
                wanted.add(name)
                klass = self.private_classes[name]
                line, stmt = klass.lineno, self.klass(copy.deepcopy(klass))
            else:
                continue
            out.append((line, stmt))
            pending |= _names([stmt])
        return [stmt for _, stmt in sorted(out, key=lambda item: item[0])]

    def _used_imports(self, imports: List[ast.stmt], out: List[ast.stmt]) -> List[ast.stmt]:
        used = _names(out)
        kept: List[ast.stmt] = []
        for node in imports:
            assert isinstance(node, (ast.Import, ast.ImportFrom))
            aliases = [a for a in node.names if (a.asname or a.name).split(".")[0] in used]
            if aliases:
                if isinstance(node, ast.Import):
                    kept.append(ast.Import(names=aliases))
                else:
                    kept.append(ast.ImportFrom(module=node.module, names=aliases, level=0))
        return kept


def _is_overload(decorator: ast.expr) -> bool:
    return (isinstance(decorator, ast.Name) and decorator.id == "overload") or (
        isinstance(decorator, ast.Attribute) and decorator.attr == "overload"
    )


def _names(nodes: List[ast.stmt]) -> Set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def generate(source: str) -> str:
    """The formatted stub for the module *source*."""
    tree = ast.parse(source)
    stub = ast.Module(body=_Generator(tree).statements(), type_ignores=[])
    for node in ast.walk(stub):  # the statements were built without positions
        for field in ("lineno", "end_lineno", "col_offset", "end_col_offset"):
            if hasattr(node, field) or field in getattr(node, "_attributes", ()):
                setattr(node, field, getattr(node, field, 0) or 0)
    text = HEADER + "\n" + ast.unparse(stub) + "\n"
    # The project's ruff rules, with their fixes: sorted imports and, since a stub
    # is never run, the typing syntax of current Python (X | None, list[str]).
    for command in (["check", "--fix", "--unsafe-fixes", "--exit-zero", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(STUB), "-"],
            input=text,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
    return text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        fresh = generate(MODULE.read_text(encoding="utf-8"))
    except StubError as exc:
        print(f"tools/stubs.py: {exc}", file=sys.stderr)
        return 2
    name = STUB.relative_to(ROOT).as_posix()
    if args.check:
        current = STUB.read_text(encoding="utf-8") if STUB.exists() else ""
        if current == fresh:
            print(f"{name} is up to date")
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                f"{name} (committed)",
                f"{name} (from dhis2_messages.py)",
            )
        )
        print(f"\n{name} is out of date: run `python tools/stubs.py` and commit it")
        return 1
    STUB.parent.mkdir(exist_ok=True)
    STUB.write_text(fresh, encoding="utf-8")
    print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

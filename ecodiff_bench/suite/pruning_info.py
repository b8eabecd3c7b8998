"""What a suite needs from ``pruning`` (method names and help, config dataclass fields, plan options), read
without importing torch.

``import pruning`` imports torch (seconds), and validating a suite or listing methods should not. So when
pruning is not imported yet, module-level constants and dataclass fields are read from pruning's source
with :mod:`ast` (nothing is executed); when the source holds something that cannot be read that way (a
computed constant, a default that is not a literal, a type that is not a builtin), or pruning is already
imported, the live objects are used. ``tests/test_layering.py`` checks that both readings agree.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MISSING = dataclasses.MISSING
# Names a config field's annotation may use when read from source.
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list, "tuple": tuple,
               "None": None, "Literal": typing.Literal}  # fmt: skip


class _Unreadable(Exception):
    """The source holds something :mod:`ast` cannot evaluate; use the live object."""


@dataclass(frozen=True)
class ConfigField:
    name: str
    type: Any
    default: Any  # MISSING when the field has none (or a default_factory)


@functools.cache
def _module_ast(module: str) -> ast.Module:
    root = importlib.util.find_spec("pruning")  # finds, does not import
    if root is None or not root.submodule_search_locations:
        raise _Unreadable("pruning is not installed as a package")
    path = Path(list(root.submodule_search_locations)[0]).joinpath(*module.split(".")[1:])
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    try:
        return ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as err:
        raise _Unreadable(f"{source}: {err}") from None


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _Unreadable(ast.unparse(node)) from None


def _static_constant(module: str, name: str) -> Any:
    for node in _module_ast(module).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return _literal(node.value)
    raise _Unreadable(f"{module}.{name} is not a module-level assignment")


def _static_fields(module: str, cls: str) -> list[ConfigField]:
    node = next((n for n in _module_ast(module).body if isinstance(n, ast.ClassDef) and n.name == cls), None)
    if node is None:
        raise _Unreadable(f"no class {cls} in {module}")
    fields = []
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        try:
            typ = eval(ast.unparse(item.annotation), {"__builtins__": {}}, _TYPE_NAMES)  # names above only
        except Exception:  # noqa: BLE001 - any name outside _TYPE_NAMES
            raise _Unreadable(ast.unparse(item.annotation)) from None
        value = item.value
        is_field_call = isinstance(value, ast.Call) and ast.unparse(value.func) in (
            "field",
            "dataclasses.field",
        )
        if value is None or is_field_call:
            default = MISSING if value is None else _field_default(value)
        else:
            default = _literal(value)
        fields.append(ConfigField(item.target.id, typ, default))
    return fields


def _field_default(call: ast.Call) -> Any:
    kw = {k.arg: k.value for k in call.keywords}
    return _literal(kw["default"]) if "default" in kw else MISSING


def _live(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def constant(ref: str) -> Any:
    """A module-level constant of pruning, ``"pruning.methods:METHODS"``."""
    if "pruning" not in sys.modules:
        try:
            return _static_constant(*ref.split(":"))
        except _Unreadable:
            pass
    return _live(ref)


def config_fields(ref: str) -> list[ConfigField]:
    """The fields of a config dataclass of pruning, ``"pruning.methods.ecodiff:EcoDiffConfig"``, in order."""
    if "pruning" not in sys.modules:
        try:
            return _static_fields(*ref.split(":"))
        except _Unreadable:
            pass
    cls = _live(ref)
    hints = typing.get_type_hints(cls)
    return [ConfigField(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls)]

"""Suite errors for people: every problem as ``<field.path>: <what is wrong> (got ...; allowed: ...)``.

Validators raise :func:`fail` (one problem at the field) or collect several with :class:`Problems` (cross-
field checks, each at its own path); :func:`format_validation_error` turns pydantic's errors into lines,
dropping the union tags pydantic puts into locations and suggesting the closest key or value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Tag, ValidationError
from pydantic_core import PydanticCustomError

from ecodiff_bench.core.registry import suggest, unknown_message

__all__ = ["Problems", "StrictModel", "check_unique", "fail", "format_validation_error", "unknown_message"]


class StrictModel(BaseModel):
    """The base of every suite section: unknown keys refused, no coercion (``"4"`` is not 4), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _allowed_text(allowed: Iterable[Any] | str) -> str:
    return allowed if isinstance(allowed, str) else ", ".join(str(a) for a in allowed)


def fail(message: str, *, allowed: Iterable[Any] | str | None = None) -> PydanticCustomError:
    """The error a field validator raises: ``raise fail("must be a multiple of 8", allowed=...)``."""
    ctx: dict[str, Any] = {"message": message}
    if allowed is not None:
        ctx["allowed"] = _allowed_text(allowed)
    return PydanticCustomError("suite_value", "{message}", ctx)


class Problems:
    """Problems found by a model validator, each at its own path; raised together so that all are reported."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: tuple, message: str, *, got: Any = ..., allowed: Iterable[Any] | str | None = None):
        item: dict[str, Any] = {"loc": tuple(loc), "message": message}
        if got is not ...:
            item["got"] = got
        if allowed is not None:
            item["allowed"] = _allowed_text(allowed)
        self.items.append(item)

    def raise_if_any(self) -> None:
        if self.items:
            summary = "; ".join(i["message"] for i in self.items)
            raise PydanticCustomError(
                "suite_problems", "{summary}", {"summary": summary, "problems": self.items}
            )

    @classmethod
    def one(cls, loc: tuple, message: str, **kw: Any) -> PydanticCustomError:
        """A single problem at ``loc`` (relative to the model being validated), ready to raise."""
        p = cls()
        p.add(loc, message, **kw)
        return PydanticCustomError("suite_problems", "{summary}", {"summary": message, "problems": p.items})


def check_unique(values: list, what: str) -> list:
    seen: set = set()
    for v in values:
        if v in seen:
            raise fail(f"duplicate {what} {v!r}")
        seen.add(v)
    return values


# -- turning pydantic errors into lines ------------------------------------------------------------------


def _fmt_path(loc: Iterable) -> str:
    out = ""
    for el in loc:
        out += f"[{el}]" if isinstance(el, int) else ("." if out else "") + str(el)
    return out or "<suite>"


def _fmt_value(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, str):
        return repr(v)
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 80 else s[:77] + "..."


def _strip_annotated(tp: Any) -> tuple[Any, list]:
    meta: list = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, meta = args[0], meta + list(args[1:])
    return tp, meta


def _literal_name(cls: Any) -> Any:
    """The ``name: Literal[...]`` discriminator value of a union member, if it has one."""
    if isinstance(cls, type) and issubclass(cls, BaseModel) and "name" in cls.model_fields:
        ann = cls.model_fields["name"].annotation
        return get_args(ann)[0] if get_origin(ann) is Literal else None
    return None


def _members(tp: Any) -> list[tuple[Any, list]]:
    return [_strip_annotated(m) for m in get_args(tp)] if get_origin(tp) in (Union, UnionType) else []


@functools.lru_cache(maxsize=8)
def _union_tags(root: type[BaseModel]) -> frozenset[str]:
    """Every tag pydantic may insert into an error location while validating ``root``."""
    tags: set[str] = set()
    seen: set[type] = set()

    def walk(tp: Any) -> None:
        tp, _ = _strip_annotated(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.add(tp)
            for f in tp.model_fields.values():
                walk(f.annotation)
            return
        for inner, meta in _members(tp):
            tags.update(m.tag for m in meta if isinstance(m, Tag))
            if (lit := _literal_name(inner)) is not None:
                tags.add(str(lit))
            walk(inner)
        for arg in get_args(tp) if get_origin(tp) in (list, dict) else ():
            walk(arg)

    walk(root)
    return frozenset(tags)


def _is_tag(el: str, root: type[BaseModel]) -> bool:
    return el in _union_tags(root) or "[" in el or el in ("str", "int", "float", "bool", "none")


def _clean_loc(loc: tuple, data: Any, root: type[BaseModel]) -> list:
    """Drop the union tags pydantic inserts into error locations, by walking the input alongside."""
    out: list = []
    cur = data
    for el in loc:
        if isinstance(el, int):
            out.append(el)
            cur = cur[el] if isinstance(cur, list) and 0 <= el < len(cur) else None
        elif isinstance(cur, dict) and el in cur:
            out.append(el)
            cur = cur[el]
        elif not _is_tag(el, root):
            out.append(el)
            cur = None
    return out


def _model_class_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (raw loc, tags included)."""
    tp: Any = root
    for el in loc:
        tp, _ = _strip_annotated(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(el) if isinstance(el, str) else None
            if field is None:
                return None
            tp = field.annotation
            continue
        origin = get_origin(tp)
        if origin in (Union, UnionType):
            chosen = None
            for inner, meta in _members(tp):
                tags = [m.tag for m in meta if isinstance(m, Tag)]
                if el in tags or el == _literal_name(inner) or el == getattr(inner, "__name__", None):
                    chosen = inner
                    break
            if chosen is None:
                return None
            tp = chosen
        elif origin is list and isinstance(el, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp, _ = _strip_annotated(tp)
    if get_origin(tp) in (Union, UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            tp = members[0]
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


_KIND_OF_LIST = {"methods": "method", "models": "model"}
_KEY_HINTS = {
    "hub_id": "applies only with source: hub",
    "revision": "applies only with source: hub",
    "variant": "applies only with source: hub or a local folder",
    "pretrained": "applies only to open_clip models, not digits-clip",
}
_BOUND_TEXT = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _describe(err: dict, data: Any, root: type[BaseModel]) -> list[tuple[list, str, Any, str | None]]:
    """(path, message, got, allowed) lines for one pydantic error."""
    loc, typ, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    path = _clean_loc(loc, data, root)
    got = err.get("input", ...)
    if typ == "suite_problems":
        return [
            (path + list(p["loc"]), p["message"], p.get("got", ...), p.get("allowed"))
            for p in ctx["problems"]
        ]
    if typ == "suite_value":
        return [(path, ctx["message"], got, ctx.get("allowed"))]
    if typ == "extra_forbidden":
        cls = _model_class_at(root, loc[:-1])
        allowed = list(cls.model_fields) if cls else []
        key = str(loc[-1])
        hint = suggest(key, allowed)
        msg = "unknown key" + ("." + hint if hint else "")
        if key in _KEY_HINTS and not hint:
            msg += f" ({key} {_KEY_HINTS[key]})"
        return [(path, msg, got, ", ".join(allowed) or None)]
    if typ == "missing":
        return [(path, "required field is missing", ..., None)]
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        hint = suggest(got, re.findall(r"'([^']*)'", expected)) if isinstance(got, str) else ""
        return [(path, "not an allowed value" + ("." + hint if hint else ""), got, expected.replace("'", ""))]
    if typ in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "name")).strip("'")
        list_name = next((p for p in reversed(path) if isinstance(p, str)), "")
        kind = _KIND_OF_LIST.get(list_name, field)
        allowed = str(ctx.get("expected_tags", "")).replace("'", "")
        if typ == "union_tag_not_found":
            return [(path + [field], "required field is missing", ..., allowed)]
        tag = str(ctx.get("tag"))
        return [
            (
                path + [field],
                unknown_message(kind, tag, [a.strip() for a in allowed.split(",")]),
                tag,
                allowed,
            )
        ]
    if typ in ("model_type", "dict_type", "model_attributes_type"):
        return [(path, "expected a mapping (key: value pairs)", got, None)]
    msg = str(ctx["error"]) if typ == "value_error" and "error" in ctx else err["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    bounds = " and ".join(f"{_BOUND_TEXT[k]} {ctx[k]}" for k in _BOUND_TEXT if k in ctx)
    return [(path, msg, got, bounds or None)]


def format_validation_error(exc: ValidationError, data: Any, root: type[BaseModel]) -> list[str]:
    """One line per problem: ``<field.path>: <what is wrong> (got <value>; allowed: ...)``.

    Errors that share a path (a value that fits none of a union's members) are merged into one line.
    """
    merged: dict[str, dict[str, Any]] = {}
    for err in exc.errors(include_url=False):
        for path, msg, got, allowed in _describe(err, data, root):
            entry = merged.setdefault(_fmt_path(path), {"msgs": [], "got": got, "allowed": []})
            if msg not in entry["msgs"]:
                entry["msgs"].append(msg)
            if allowed and allowed not in entry["allowed"]:
                entry["allowed"].append(allowed)
    lines = []
    for key, e in merged.items():
        detail = [f"got {_fmt_value(e['got'])}"] if e["got"] is not ... else []
        if e["allowed"]:
            detail.append("allowed: " + " or ".join(e["allowed"]))
        tail = f" ({'; '.join(detail)})" if detail else ""
        lines.append(f"{key}: {' or '.join(e['msgs'])}{tail}")
    return lines

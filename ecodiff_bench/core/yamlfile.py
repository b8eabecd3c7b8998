"""The one YAML reader of the project (suites, their includes, threshold files): safe and bounded.

Every file is read as bytes (at most :data:`MAX_BYTES`) and decoded as UTF-8 (a byte-order mark is
accepted; UTF-16/32 and binary files are refused by name). The limits hold *while* the document is
composed, before any Python object is built:

* nesting deeper than :data:`MAX_DEPTH` is refused (PyYAML would recurse until ``RecursionError``);
* a document whose values, counted with every alias expanded, exceed :data:`MAX_VALUES` is refused
  (an "alias bomb" of a few hundred bytes otherwise expands to billions of values downstream);
* recursive aliases and complex (non-scalar) mapping keys are refused.

Construction is PyYAML's safe one (no Python objects), with duplicate keys refused and YAML merge keys
(``<<: *defaults``) honoured: the mapping's own keys override merged ones, and of several merged
mappings the first wins. PyYAML's own ``flatten_mapping`` is not used: it copies merged pairs into the
node (a second way to blow up) and then the mapping's own key looks like a duplicate.

Written by hand because PyYAML offers no limits and no merge-aware duplicate check; the parser itself
is PyYAML's (iterative, so depth is only a problem from the composer on).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 50
MAX_VALUES = 250_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A file that cannot be read or parsed; the message names the file and, where known, the line."""


def _where(path: Path, mark: Any) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


class _Limited(yaml.error.MarkedYAMLError):
    """A limit was hit while composing (carries the position like PyYAML's own errors)."""


class _SafeBoundedLoader(yaml.SafeLoader):
    """SafeLoader with depth / expanded-size limits while composing and a merge-aware mapping constructor."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it holds with aliases expanded

    def fetch_flow_collection_start(self, TokenClass):
        # Refuse deep flow nesting in the scanner already: it keeps one pending simple key per open
        # bracket and rescans them all at every token, which makes "[[[[..." quadratic long before
        # the composer sees any depth.
        if self.flow_level >= MAX_DEPTH:
            raise _Limited(None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:  # the anchored node is still being composed
                raise _Limited(
                    None, None, f"recursive alias *{event.anchor} (refers to itself)", event.start_mark
                )
            return node
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limited(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = size = self._size_of(node)
        if size > MAX_VALUES:
            raise _Limited(
                None,
                None,
                f"holds more than {MAX_VALUES:,} values once its aliases are expanded (an alias bomb?)",
                node.start_mark,
            )
        return node

    def _size_of(self, node) -> int:
        if isinstance(node, ScalarNode):
            return 1
        if isinstance(node, SequenceNode):
            return 1 + sum(self._sizes[id(child)] for child in node.value)
        total = 1
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise _Limited(
                    None,
                    None,
                    "complex mapping keys (lists or mappings as keys) are not allowed",
                    key.start_mark,
                )
            total += self._sizes[id(key)] + self._sizes[id(value)]
        return total


def _construct_mapping(loader: _SafeBoundedLoader, node: MappingNode, deep: bool = False) -> dict:
    merged: dict = {}
    own: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in reversed(sources):  # the first mapping listed wins
                if not isinstance(source, MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while merging into a mapping",
                        node.start_mark,
                        f"'<<' takes a mapping or a list of mappings, found a {source.id}",
                        source.start_mark,
                    )
                merged.update(loader.construct_object(source, deep=True))
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in own:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        own[key] = loader.construct_object(value_node, deep=deep)
    return {**merged, **own}


_SafeBoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise YamlError(f"file not found: {path}") from None
    except OSError as e:
        raise YamlError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise YamlError(f"{path}: larger than {max_bytes // (1024 * 1024)} MiB, the limit for this file")
    return data


def decode_text(data: bytes, path: Path) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped), or a :class:`YamlError` saying what the file is."""
    for bom, name in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise YamlError(f"{path}: the file is {name} encoded; save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: holds NUL bytes, so it is a binary file, not YAML text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None


def parse_yaml(text: str, path: str | Path = "<string>") -> Any:
    """The content of one YAML document (``None`` when empty); raises :class:`YamlError`."""
    path = Path(path)
    loader = _SafeBoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(s for s in (e.context, e.problem) if s)
        kind = "refused" if isinstance(e, _Limited) else "YAML syntax error"
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise YamlError(f"{_where(path, mark)}: {kind}: {what}{line}") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{path}: YAML error: {e}") from None
    except (ValueError, OverflowError, TypeError) as e:  # e.g. an integer of 5,000 digits
        raise YamlError(f"{path}: a value cannot be read: {e}") from None
    finally:
        loader.dispose()


def read_text(path: str | Path, max_bytes: int | None = None) -> str:
    """A UTF-8 text file of at most ``max_bytes`` (default :data:`MAX_BYTES`; a BOM accepted); raises
    :class:`YamlError`."""
    path = Path(path)
    return decode_text(_read_bytes(path, MAX_BYTES if max_bytes is None else max_bytes), path)


def read_yaml(path: str | Path) -> Any:
    """The parsed content of a YAML file (``None`` for an empty one); raises :class:`YamlError`.

    Suites and threshold files are small: above :data:`MAX_BYTES` the file is refused (long prompt
    lists belong in a ``prompts_file``, one prompt per line).
    """
    path = Path(path)
    return parse_yaml(read_text(path), path)

"""The one YAML reader: safe (no object construction), duplicate keys refused, errors with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(ValueError):
    """A file that cannot be read or parsed; the message names the file and, for syntax errors, the line."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> Any:
    """The parsed content of a YAML file (``None`` for an empty one); raises :class:`YamlError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(f"file not found: {path}") from None
    except OSError as e:
        raise YamlError(f"cannot read {path}: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(s for s in (e.context, e.problem) if s)
        if mark is None:
            raise YamlError(f"{path}: YAML syntax error: {what}") from None
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        raise YamlError(f"{where}: YAML syntax error: {what} (line {mark.line + 1})") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{path}: YAML error: {e}") from None

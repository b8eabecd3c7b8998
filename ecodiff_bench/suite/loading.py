"""Reading suite files: ``include`` (mappings merge key by key, anything else is replaced by the including
file), paths that travel with a suite (relative to the file naming them), builtin names, validation."""

from __future__ import annotations

import copy
from pathlib import Path

from pydantic import ValidationError

from ecodiff_bench.core.errors import SuiteError
from ecodiff_bench.core.registry import UnknownNameError
from ecodiff_bench.core.yamlfile import YamlError, read_yaml
from ecodiff_bench.suite.catalog import builtin_suites
from ecodiff_bench.suite.problems import format_validation_error
from ecodiff_bench.suite.schema import Suite
from ecodiff_bench.suite.sources import looks_like_path

#: Paths that travel with a suite file: relative to the file that names them.
_LOCAL_FILE_KEYS = (("calibration", "prompts_file"), ("evaluation", "prompts_file"))


def _read_mapping(path: Path) -> dict:
    try:
        data = read_yaml(path)
    except YamlError as e:
        raise SuiteError(str(e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a mapping of keys to values (got a {type(data).__name__})")
    return data


def _anchor_local_paths(data: dict, base_dir: Path) -> None:
    """Make the suite-relative paths of one file absolute, before files are merged."""
    for section, key in _LOCAL_FILE_KEYS:
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key]).expanduser()
            sec[key] = str(p if p.is_absolute() else (base_dir / p).resolve())


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge recursively, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


#: At most this many files make up one suite (itself and everything it includes, counted per include),
#: so that a chain of includes cannot multiply into millions of reads.
MAX_FILES = 64


class _Includes:
    """The files read so far for one suite (a bound on their number, and cycles detected)."""

    def __init__(self) -> None:
        self.count = 0

    def load(self, path: Path, stack: tuple[Path, ...] = ()) -> tuple[dict, bool]:
        """The merged content of ``path`` and its includes, and whether the file itself names the suite."""
        path = path.resolve()
        if path in stack:
            chain = " -> ".join(p.name for p in (*stack, path))
            raise SuiteError(f"include: cycle detected ({chain})")
        self.count += 1
        if self.count > MAX_FILES:
            raise SuiteError(f"include: more than {MAX_FILES} files make up this suite (last: {path})")
        data = _read_mapping(path)
        has_name = "name" in data
        _anchor_local_paths(data, path.parent)
        includes = data.pop("include", None)
        if includes is None:
            return data, has_name
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            raise SuiteError(
                f"include: expected a file name or a list of file names (got {includes!r}) in {path}"
            )
        merged: dict = {}
        for inc in includes:
            inc_path = Path(inc).expanduser()
            inc_path = inc_path if inc_path.is_absolute() else path.parent / inc_path
            if not inc_path.is_file():
                raise SuiteError(
                    f"include: file not found: {inc_path.resolve()} (got {inc!r}; included from {path})"
                )
            merged = deep_merge(merged, self.load(inc_path, (*stack, path))[0])
        return deep_merge(merged, data), has_name


def _load_raw(path: Path) -> tuple[dict, bool]:
    return _Includes().load(path)


def resolve_suite_path(path_or_name: str | Path) -> Path:
    """A suite file path, or a builtin suite name such as ``digits``."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    s = str(path_or_name)
    builtins = builtin_suites()
    if not (looks_like_path(s) or s.endswith((".yaml", ".yml"))):
        if s in builtins:
            return builtins[s]
        raise UnknownNameError("suite", s, list(builtins))
    if p.exists():
        raise SuiteError(f"{p.resolve()} is not a suite file (a folder or a device?); give a YAML file")
    known = f" (builtin suites: {', '.join(builtins)})" if builtins else ""
    raise SuiteError(f"suite file not found: {p.resolve()}{known}")


def validate_suite(data: dict, source: str | None = None) -> Suite:
    """Validate an already-merged mapping (no ``include`` here); raises :class:`SuiteError`."""
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise SuiteError(format_validation_error(e, data, Suite), source=source) from None
    suite._source = source
    return suite


def load_suite(path_or_name: str | Path) -> Suite:
    """Load, merge includes, and validate a suite file or builtin suite name."""
    path = resolve_suite_path(path_or_name)
    source = str(path_or_name)
    try:
        data, has_name = _load_raw(path)
    except SuiteError as e:
        raise SuiteError(e.problems, source=source) from None
    if not has_name:
        data["name"] = path.stem  # a suite's name is its own, never inherited from an include
    return validate_suite(data, source=source)

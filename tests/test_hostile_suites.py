"""Hostile suite files: each is refused with exit code 2, a message naming the file, the field or the
line, and no traceback; nothing is loaded (these tests import no torch and build no model)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecodiff_bench.cli import main
from ecodiff_bench.core import yamlfile
from ecodiff_bench.core.yamlfile import YamlError, parse_yaml, read_yaml
from ecodiff_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = """name: t
models: [digits-sdxl]
methods: [{name: magnitude, ratios: [0.2]}]
energy: {country: FRA}
"""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": ``width ** levels`` values from a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _validate(tmp_path: Path, content: bytes | str, name: str = "suite.yaml"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path, CliRunner().invoke(main, ["validate", str(path)])


def _refused(result, *needles: str) -> str:
    text = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


# (id, file content, what the message names besides the file)
HOSTILE = [
    ("utf16", SUITE.encode("utf-16"), ["UTF-16", "save it as UTF-8"]),
    ("utf16-be", codecs.BOM_UTF16_BE + SUITE.encode("utf-16-be"), ["UTF-16"]),
    ("utf32", SUITE.encode("utf-32"), ["UTF-32"]),
    ("latin1", ("description: café\n" + SUITE).encode("latin-1"), [":1:17", "not valid UTF-8", "0xe9"]),
    ("binary", bytes(range(256)) * 4, ["binary file"]),
    ("nul-byte", SUITE.encode() + b"x: \x00\n", [":5:", "binary file"]),
    ("deep-flow-list", "x: " + "[" * 20000 + "]" * 20000 + "\n" + SUITE, ["nested deeper than 50"]),
    ("deep-flow-map", "x: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n" + SUITE, ["nested deeper than 50"]),
    ("deep-block", "x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)) + SUITE, ["nested deeper"]),
    ("deep-dashes", SUITE + "x:\n" + "- " * 5000 + "1\n", ["nested deeper"]),
    ("complex-key", "? [a, b]\n: 1\n" + SUITE, [":1:3", "complex mapping keys"]),
    ("complex-flow-key", "{[a]: 1}\n", ["complex mapping keys"]),
    ("map-as-key", "? {a: 1}\n: 2\n" + SUITE, ["complex mapping keys"]),
    ("bomb-prompts", alias_bomb() + SUITE + "evaluation: {prompts: *a8}\n", ["alias bomb"]),
    ("bomb-models", alias_bomb() + SUITE.replace("[digits-sdxl]", "*a8"), ["alias bomb"]),
    ("bomb-unknown-key", alias_bomb() + SUITE + "zzz: *a8\n", ["alias bomb"]),
    (
        "bomb-mappings",
        "a0: &a0 {k: v}\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 12)}]\n" for i in range(1, 8)),
        ["alias bomb"],
    ),
    (
        "bomb-merge",
        "a0: &a0 {"
        + ", ".join(f"k{j}: v" for j in range(10))
        + "}\n"
        + "".join(f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}\n" for i in range(1, 8)),
        ["alias bomb"],
    ),
    ("recursive-alias", SUITE + "x: &r [*r]\n", ["recursive alias *r"]),
    ("recursive-map", SUITE + "x: &r {y: *r}\n", ["recursive alias"]),
    ("undefined-alias", SUITE + "x: *nope\n", ["undefined alias"]),
    ("duplicate-key", SUITE + "name: u\n", [":5:1", "duplicate key 'name'"]),
    ("merge-of-scalar", SUITE + "x: {<<: 3}\n", ["'<<' takes a mapping"]),
    ("python-tag", SUITE + "x: !!python/object/apply:os.system [echo hi]\n", ["python/object/apply"]),
    ("two-documents", SUITE + "---\nname: u\n", ["expected a single document"]),
    ("huge-int", SUITE.replace("[0.2]", "[" + "9" * 5000 + "]"), ["a value cannot be read", "digits"]),
    ("top-level-list", "- a\n- b\n", ["must be a mapping", "list"]),
    ("top-level-scalar", "just text\n", ["must be a mapping", "str"]),
    ("tab-indent", "name: t\nmodels:\n\t- digits-sdxl\n", ["YAML syntax error", "line 3"]),
    ("bad-syntax", "name: t\nmodels: [digits-sdxl\n", ["YAML syntax error"]),
    ("int-key", SUITE + "1: 2\n", ["[1]", "keys should be strings"]),
    ("null-key", SUITE + "~: 2\n", ["keys should be strings"]),
    ("date-name", SUITE.replace("name: t", "name: 2020-01-01"), ["name:", "2020-01-01"]),
    (
        "label-parent",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: ../../escaped}]"),
        ["models[0].label", "'../../escaped'", "a label is a name"],
    ),
    (
        "label-absolute",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: /tmp/abs}]"),
        ["models[0].label", "'/tmp/abs'"],
    ),
    (
        "label-separator",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: a/b}]"),
        ["models[0].label"],
    ),
    (
        "label-backslash",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: 'a\\b'}]"),
        ["models[0].label"],
    ),
    (
        "label-dots",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: 'a..b'}]"),
        ["models[0].label"],
    ),
    (
        "label-too-long",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, label: " + "a" * 300 + "}]"),
        ["models[0].label"],
    ),
    ("ratio-nan", SUITE.replace("[0.2]", "[.nan]"), ["methods[0].ratios[0]", "NaN"]),
    ("ratio-inf", SUITE.replace("[0.2]", "[.inf]"), ["methods[0].ratios[0]", "Infinity"]),
    (
        "device-unknown",
        SUITE.replace("[digits-sdxl]", "[{name: digits-sdxl, device: tpu}]"),
        ["models[0].device", "'tpu'"],
    ),
    ("include-missing", "include: nope.yaml\n" + SUITE, ["include: file not found", "nope.yaml"]),
    ("include-not-a-list", "include: {a: 1}\n" + SUITE, ["include: expected a file name"]),
    ("include-device", "include: /dev/zero\n" + SUITE, ["include: file not found", "/dev/zero"]),
]


@pytest.mark.parametrize("content,needles", [(c, n) for _, c, n in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_hostile_suite_is_refused_with_a_clear_message(tmp_path, content, needles):
    path, result = _validate(tmp_path, content)
    text = _refused(result, *needles)
    assert str(path) in text or path.name in text


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_BYTES", 4096)
    _, result = _validate(tmp_path, SUITE + "description: '" + "x" * 5000 + "'\n")
    _refused(result, "larger than", "MiB")


def test_a_bom_is_accepted(tmp_path):
    _, result = _validate(tmp_path, codecs.BOM_UTF8 + SUITE.encode())
    assert result.exit_code == 0, result.output


def test_merge_keys_are_honoured_and_own_keys_override(tmp_path):
    content = """name: t
models: [digits-sdxl]
methods:
  - &mag {name: magnitude, ratios: [0.2], seeds: [0]}
  - {<<: *mag, name: random, seeds: [1]}
energy: {country: FRA}
"""
    path, result = _validate(tmp_path, content)
    assert result.exit_code == 0, result.output
    random = load_suite(path).methods[1]
    assert (random.name, random.ratios, random.seeds) == ("random", [0.2], [1])


def test_merge_semantics_first_mapping_wins_and_duplicates_stay_refused():
    data = parse_yaml("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc: {<<: [*a, *b], w: 3}\n")
    assert data["c"] == {"x": 1, "y": 1, "z": 2, "w": 3}
    with pytest.raises(YamlError, match="duplicate key 'x'"):
        parse_yaml("a: &a {x: 1}\nc: {<<: *a, x: 2, x: 3}\n")


def test_anchors_shared_within_the_limits_still_load():
    """Aliases are fine as long as the expanded document stays small."""
    data = parse_yaml(alias_bomb(levels=3, width=9))  # 9 ** 3 = 729 values
    assert len(data["a2"]) == 9 and data["a2"][0][0] == ["lol"] * 9


def test_include_chains_are_bounded(tmp_path):
    """Includes cannot multiply reads: a suite is made of at most MAX_FILES files."""
    (tmp_path / "leaf.yaml").write_text("description: leaf\n")
    (tmp_path / "mid.yaml").write_text("include: [" + ", ".join(["leaf.yaml"] * 30) + "]\n")
    path, result = _validate(tmp_path, "include: [mid.yaml, mid.yaml, mid.yaml]\n" + SUITE)
    _refused(result, "include: more than 64 files")


def test_a_suite_file_is_parsed_once(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("include: base.yaml\n" + SUITE.replace("name: t\n", ""))
    (tmp_path / "base.yaml").write_text("description: base\n")
    calls: list[str] = []
    real = yamlfile.parse_yaml

    def counting(text, p="<string>"):
        calls.append(Path(p).name)
        return real(text, p)

    monkeypatch.setattr("ecodiff_bench.suite.loading.read_yaml", lambda p: counting(yamlfile.read_text(p), p))
    suite = load_suite(path)
    assert suite.name == "s" and sorted(calls) == ["base.yaml", "s.yaml"]


def test_prompts_file_that_is_not_text_is_refused(tmp_path):
    (tmp_path / "prompts.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    _, result = _validate(tmp_path, SUITE + "evaluation: {prompts_file: prompts.txt}\n")
    _refused(result, "evaluation.prompts_file", "not valid UTF-8")


def test_thresholds_reader_shares_the_limits(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(YamlError, match="alias bomb"):
        read_yaml(path)


def test_the_benchmarked_bomb_is_refused_by_a_fresh_process(tmp_path):
    """benchmarks/hostile_inputs.py measures time and memory; here only the outcome is checked."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_inputs", ROOT / "benchmarks" / "hostile_inputs.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "bomb.yaml"
    path.write_text(bench.CASES["alias bomb under evaluation.prompts"])
    _, _, code, message = bench.run_cli(path)
    assert code == 2 and "alias bomb" in message

"""The model card (README.md) of a saved pruned model: Hub-style YAML front matter, what was removed, the
measured figures, and how to load it.

:func:`pruning.save` writes it from the plan alone; a benchmark harness rewrites it once it has measured
the model, passing its figures as plain rows (this module knows nothing of the harness). Every reference
in the card is a hub id or a path relative to the card's own directory: absolute locations of the machine
that wrote it are rewritten relative to the model directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

CARD = "README.md"
ARCH = {"unet": ("stable-diffusion-xl", "U-Net"), "flux": ("flux", "transformer")}


def _relative(text: str, path: Path) -> str:
    """``text`` with absolute locations of this machine (the model directory, its parent, the working and
    home directories) rewritten relative to the model directory, so the card travels with the model."""
    here = path.resolve()
    places = {here, here.parent, Path.cwd(), Path.home()}
    for place in sorted((p for p in places if len(p.parts) > 1), key=lambda p: len(str(p)), reverse=True):
        text = text.replace(str(place), os.path.relpath(place, here))
    return text


def _number(v: float | int | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "B":
        return f"{v / 1e6:,.2f} MB"
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{text} {unit}".strip() if unit not in ("", "fraction", "ratio", "count") else text


def _removed_table(plan: dict) -> list[str]:
    a = plan["achieved"]
    rows = [("parameters of the prunable units", a["params_removed"], a["params_prunable"])]
    if plan.get("total_params"):
        rows.append(("parameters of the denoiser", a["params_removed"], plan["total_params"]))
    for kind, label in (("heads", "attention heads"), ("ffn", "feed-forward units")):
        mods = [m for m in plan["modules"].values() if m["kind"] == kind]
        if mods:
            total = sum(m["total"] for m in mods)
            rows.append((label, total - sum(len(m["kept"]) for m in mods), total))
    lines = ["| | removed | of | share |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {n:,} | {total:,} | {n / total:.1%} |" for label, n, total in rows]
    return lines


def _measured_table(rows: list[dict], path: Path) -> list[str]:
    lines = ["| metric | this model | unpruned | ratio | status |", "|---|---:|---:|---:|---|"]
    for r in rows:
        unit = r.get("unit", "")
        value, base = r.get("value"), r.get("base")
        ratio = r.get("ratio")
        if ratio is None and value is not None and base:
            ratio = value / base
        status = r.get("status", "measured")
        if status != "measured" or r.get("note"):
            status = f"{status}: {_relative(r['note'], path)}" if r.get("note") else status
        shown = _number(value, unit) if value is not None else "unavailable"
        lines.append(
            f"| {r['name']} | {shown} | {_number(base, unit)} | "
            f"{f'{ratio:.3f}' if ratio is not None else 'n/a'} | {status} |"
        )
    return lines


def _how_to_load(meta: dict, name: str) -> list[str]:
    if meta["components_included"]:
        return [
            "A complete diffusers directory. With this toolkit installed (`pip install ecodiff-bench`; the pruned",
            "denoiser class lives in its `pruning` package, no remote code), from this folder's parent:",
            "",
            "```python",
            'import pruning  # noqa: F401  (diffusers resolves ["pruning", ...] among imported modules)',
            "from diffusers import DiffusionPipeline",
            "",
            f'pipe = DiffusionPipeline.from_pretrained("{name}")',
            "```",
            "",
            f'`pruning.load("{name}")` does the same after checking the sha256 of every weight file.',
        ]
    base = meta.get("base") or "<the unpruned model: hub id or directory>"
    attr = meta["denoiser"]
    return [
        "Only the pruned denoiser is stored here; the other components come from the unpruned model.",
        "",
        "```python",
        "import pruning",
        "",
        f'pipe = pruning.load("{name}", base="{base}")'
        if not meta.get("base")
        else f'pipe = pruning.load("{name}")',
        "# or with diffusers alone:",
        f"from diffusers import {meta['pipeline_class']}",
        f'{attr} = pruning.{meta["denoiser_class"]}.from_pretrained("{name}", subfolder="{attr}")',
        f'pipe = {meta["pipeline_class"]}.from_pretrained("{base}", {attr}={attr})',
        "```",
    ]


def _card_data(meta: dict, plan: dict, base_name: str, arch_tag: str) -> ModelCardData:
    """The Hub metadata of the card's YAML front matter."""
    a = plan["achieved"]
    return ModelCardData(
        base_model=meta.get("base"),
        library_name="diffusers",
        pipeline_tag="text-to-image",
        tags=["pruned", "structured-pruning", "ecodiff-bench", plan["method"], arch_tag, "text-to-image"],
        pruning={
            "method": plan["method"],
            "ratio": plan["ratio"],
            "target": plan["target"],
            "ranking": plan["ranking"],
            "params_removed_frac_of_prunable": round(a["params_removed_frac_of_prunable"], 6),
            "units_removed_frac": round(a["units_removed_frac"], 6),
            "base_name": base_name,
        },
    )


def _measured_section(measured: list[dict] | None, details: dict[str, str] | None, path: Path) -> list[str]:
    if not measured:
        return [
            "Not measured yet (this card was written when the model was saved; `ecodiff-bench run` "
            "measures speed, energy and quality against the unpruned model and rewrites it)."
        ]
    lines = _measured_table(measured, path)
    if details:
        lines += ["", *[f"- {k}: {_relative(str(v), path)}" for k, v in details.items()]]
    return lines


def write_card(
    path: str | Path,
    *,
    measured: list[dict] | None = None,
    details: dict[str, str] | None = None,
    base_name: str | None = None,
) -> Path:
    """Write ``README.md`` into the saved model at ``path`` from its ``pruned.json`` and ``plan.json``.

    ``measured``: rows ``{"name", "value", "unit", "status", "note", "base", "ratio"}`` (``base`` is the
    unpruned model's value; ``ratio`` defaults to value / base). ``details``: how they were measured
    (suite, device, steps, ...), shown as a list. ``base_name`` overrides the recorded display name.
    """
    path = Path(path)
    meta = json.loads((path / "pruned.json").read_text(encoding="utf-8"))
    plan = json.loads((path / "plan.json").read_text(encoding="utf-8"))
    arch_tag, arch_word = ARCH.get(plan.get("architecture"), ("diffusion", "denoiser"))
    base_name = _relative(base_name or meta.get("base_name") or "the unpruned model", path)
    a = plan["achieved"]
    body = [
        f"# {base_name}, {plan['method']} {plan['ratio']:.0%}",
        "",
        f"{base_name} with {a['params_removed_frac_of_prunable']:.1%} of the parameters of its attention heads and "
        f"feed-forward units removed from its {arch_word} by **{plan['method']}** structural pruning "
        f"(target {plan['ratio']:.0%} of {plan['target']}, {plan['ranking']} ranking). The removed units are",
        "physically gone: the layers are smaller, and fully pruned modules are replaced by their constant output.",
        "",
        "## What was removed",
        "",
        *_removed_table(plan),
        "",
        "## Measured",
        "",
        *_measured_section(measured, details, path),
        "",
        "## How to load",
        "",
        *_how_to_load(meta, path.name),
        "",
        "Integrity: `pruned.json` records the sha256 of `plan.json` and of every weight file, and the "
        "denoiser's `config.json` those of its own weights; loading refuses a file that changed.",
        "",
    ]
    data = _card_data(meta, plan, base_name, arch_tag)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    card.save(path / CARD)
    return path / CARD

"""Open the HTML report in headless Chromium: it renders, no image is broken, and the summary, the plots and
the sample grids are on the page, visible and large enough to read."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

import reports
from reports.synthetic import demo_records

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
]

# Appended to a copy of the report: after load, writes the image check into the DOM for --dump-dom.
CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  function shown(el) {
    var r = el.getBoundingClientRect(), st = getComputedStyle(el);
    return {w: Math.round(r.width), h: Math.round(r.height), top: Math.round(r.top + window.scrollY),
            visible: st.display !== 'none' && st.visibility !== 'hidden' && r.width > 0 && r.height > 0,
            natural: el.naturalWidth || 0};
  }
  function all(sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)).map(shown); }
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.src.slice(0, 40); });
  var pre = document.createElement('pre');
  pre.id = 'imgcheck';
  pre.textContent = JSON.stringify({n: imgs.length, broken: broken, summary: all('#summary table'),
    summary_text: (document.querySelector('#summary') || {}).innerText || '',
    plots: all('figure.plot img'), grids: all('img.grid')});
  document.body.appendChild(pre);
});
</script>
"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _page_check(page: str, script: str, pre_id: str, tmp_path: Path) -> dict:
    """Load ``page`` with ``script`` appended in Chromium; the JSON the script wrote into <pre id=pre_id>."""
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", script + "</body>"))
    res = _chromium(["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()], tmp_path / "profile1")
    m = re.search(rf'<pre id="{pre_id}">(.*?)</pre>', res.stdout, re.S)
    assert m, f"no {pre_id} in the DOM; chromium stderr:\n{res.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def test_html_report_renders_in_chromium_without_broken_images(tmp_path):
    out = reports.render(demo_records(tmp_path / "artifacts"), tmp_path / "report")
    page = out["html"].read_text()
    result = _page_check(page, CHECK_SCRIPT, "imgcheck", tmp_path)
    assert result["n"] == 10
    assert result["broken"] == []
    # the summary leads: one table per model, visible near the top of the page
    assert len(result["summary"]) == 1 and result["summary"][0]["visible"]
    assert result["summary"][0]["top"] < 900
    assert "Latency pruned/base" in result["summary_text"] and "[" in result["summary_text"]
    # the plots: ratio forest, Pareto panels, kept units, power, training
    assert len(result["plots"]) == 5
    assert all(p["visible"] and p["w"] >= 400 and p["natural"] >= 400 for p in result["plots"]), result[
        "plots"
    ]
    # the sample grids, upscaled to a readable size
    assert len(result["grids"]) == 5
    assert all(g["visible"] and g["w"] >= 600 and g["h"] >= 100 for g in result["grids"]), result["grids"]

    shot = tmp_path / "shot.png"
    res = _chromium(
        [
            "--window-size=1280,3000",
            "--virtual-time-budget=10000",
            f"--screenshot={shot}",
            out["html"].as_uri(),
        ],
        tmp_path / "profile2",
    )
    assert shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 3000)
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100  # not a blank page


HISTORY_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var sec = document.getElementById('release-history');
  var imgs = Array.prototype.slice.call(sec.querySelectorAll('figure.plot img'));
  var pre = document.createElement('pre');
  pre.id = 'histcheck';
  pre.textContent = JSON.stringify({
    plots: imgs.map(function (i) { var r = i.getBoundingClientRect();
      return {alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: Math.round(r.width), natural: i.naturalWidth,
              visible: r.width > 0 && r.height > 0 && getComputedStyle(i).visibility !== 'hidden'}; }),
    regress: Array.prototype.slice.call(sec.querySelectorAll('tr.regress td:first-child')).map(
      function (td) { return td.innerText; }),
    fails: sec.querySelectorAll('td.fail').length,
    items: Array.prototype.slice.call(sec.querySelectorAll('ul.regressions li')).map(function (li) { return li.innerText; })});
  document.body.appendChild(pre);
});
</script>
"""


def test_release_history_of_the_digits_suite_renders_in_chromium(tmp_path):
    """Three tagged runs of the digits suite (its own thresholds), a regression planted in the second."""
    from ecodiff_bench.core.store import Store
    from ecodiff_bench.suite import load_suite
    from reports.synthetic import release_records

    th = {
        k: v.model_dump(mode="json", exclude_none=True)
        for k, v in load_suite("digits").regression.thresholds.items()
    }
    planted = {("digits-sdxl", "ecodiff", 0.4): {"latency_ratio_vs_base": 1.25}}  # 25 % slower, allowed 10 %
    with Store(tmp_path / "store.sqlite") as store:
        for i in range(3):
            store.put_many(
                release_records(f"run-{i}", index=i, thresholds=th, changes=planted if i == 1 else None)
            )
            store.tag(f"r{i + 1}", run_id=f"run-{i}")
    out = reports.render(tmp_path / "store.sqlite", tmp_path / "report", formats=("html",))
    page = out["html"].read_text()
    result = _page_check(page, HISTORY_SCRIPT, "histcheck", tmp_path)
    # one plot per gated metric of the digits suite, loaded, shown at a readable size
    assert sorted(p["alt"] for p in result["plots"]) == [
        f"Release history: {m} (digits)"
        for m in ("energy_image_j", "frechet_distance", "latency_image_s", "recognisability")
    ]
    assert all(p["ok"] and p["visible"] and p["w"] >= 600 and p["natural"] >= 600 for p in result["plots"]), (
        result
    )
    # exactly the planted regression: the release row, the configuration's row, one failing cell
    assert result["regress"] == ["r2", "digits-sdxl/ecodiff@0.4"] and result["fails"] == 1
    assert len(result["items"]) == 1 and result["items"][0].startswith(
        "r2 vs r1: digits-sdxl/ecodiff@0.4 latency_image_s"
    )

    # the section alone, screenshotted: the plots are drawn (not blank)
    alone = tmp_path / "alone.html"
    alone.write_text(page.replace("</style>", "body > *:not(#release-history){display:none}</style>"))
    shot = tmp_path / "history.png"
    res = _chromium(
        ["--window-size=1280,1600", "--virtual-time-budget=10000", f"--screenshot={shot}", alone.as_uri()],
        tmp_path / "profile2",
    )
    assert shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        lo, hi = im.convert("L").getextrema()
        colours = len(set(im.convert("RGB").resize((320, 400)).getdata()))
    assert hi - lo > 100 and colours > 50  # text, lines and shaded bands, not an empty page

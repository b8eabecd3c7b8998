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

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars"]

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
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


def test_html_report_renders_in_chromium_without_broken_images(tmp_path):
    out = reports.render(demo_records(tmp_path / "artifacts"), tmp_path / "report")
    page = out["html"].read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))

    res = _chromium(["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()], tmp_path / "profile1")
    m = re.search(r'<pre id="imgcheck">(.*?)</pre>', res.stdout, re.S)
    assert m, f"no image check in the DOM; chromium stderr:\n{res.stderr[-2000:]}"
    result = json.loads(html.unescape(m.group(1)))
    assert result["n"] == 10
    assert result["broken"] == []
    # the summary leads: one table per model, visible near the top of the page
    assert len(result["summary"]) == 1 and result["summary"][0]["visible"]
    assert result["summary"][0]["top"] < 900
    assert "Latency pruned/base" in result["summary_text"] and "[" in result["summary_text"]
    # the plots: ratio forest, Pareto panels, kept units, power, training
    assert len(result["plots"]) == 5
    assert all(p["visible"] and p["w"] >= 400 and p["natural"] >= 400 for p in result["plots"]), result["plots"]
    # the sample grids, upscaled to a readable size
    assert len(result["grids"]) == 5
    assert all(g["visible"] and g["w"] >= 600 and g["h"] >= 100 for g in result["grids"]), result["grids"]

    shot = tmp_path / "shot.png"
    res = _chromium(["--window-size=1280,3000", "--virtual-time-budget=10000", f"--screenshot={shot}",
                     out["html"].as_uri()], tmp_path / "profile2")
    assert shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 3000)
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100  # not a blank page

"""Open the HTML report in headless Chromium: it renders, and no image is broken."""

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
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.src.slice(0, 40); });
  var pre = document.createElement('pre');
  pre.id = 'imgcheck';
  pre.textContent = JSON.stringify({n: imgs.length, broken: broken});
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

    shot = tmp_path / "shot.png"
    res = _chromium(["--window-size=1280,3000", "--virtual-time-budget=10000", f"--screenshot={shot}",
                     out["html"].as_uri()], tmp_path / "profile2")
    assert shot.exists(), res.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 3000)
        lo, hi = im.convert("L").getextrema()
    assert hi - lo > 100  # not a blank page

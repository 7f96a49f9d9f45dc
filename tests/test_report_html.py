"""report.html (self-contained HTML of report.md), fmt's round-off zero and the frontier envelope of the figures."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from helix.report import _pyplot, fmt, step_envelope
from helix.report_html import to_html, write_html

SCREENSHOT_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.py"

MARKDOWN = """# Report title

Intro with `code`, ``double`` and **bold**, and a [link](#sec).

<a id="sec"></a>
## Section one

![tiny.png](tiny.png)

| strategy | TTL ms | note |
|---|---|---|
| helix | 1,024 | weights > HBM |
| tp | 3.5 | a \\| b |

```text
raw <b>not bold</b>
  indented
```

- first item
- second item
"""


@pytest.fixture
def tiny_png(tmp_path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "tiny.png", dpi=30)
    plt.close(fig)
    return tmp_path / "tiny.png"


def test_fmt_prints_round_off_as_zero():
    assert fmt(3.3e-16) == "0"
    assert fmt(-2e-12) == "0"
    assert fmt(0.0) == "0"
    assert fmt(0.0123) == "0.0123"
    assert fmt(2e-9) == "2e-09"  # above the round-off threshold: printed as before
    assert fmt(1234.5) == "1.23e+03" and fmt(1234.5, 4) == "1,234"
    assert fmt(float("nan")) == "–" and fmt(None) == "–"


def test_write_html_is_self_contained(tmp_path, tiny_png):
    path = write_html(tmp_path, MARKDOWN, "Test report")
    assert path == tmp_path / "report.html"
    page = path.read_text()
    assert "<table" in page and page.count("<tr>") == 3
    assert 'src="data:image/png;base64,' in page and "tiny.png)" not in page
    assert "![" not in page
    assert "<h1>Report title</h1>" in page and "<h2>Section one</h2>" in page
    assert "<title>Test report</title>" in page
    assert '<a id="sec"></a>' in page and '<a href="#sec">link</a>' in page
    assert "<code>code</code>" in page and "<code>double</code>" in page and "<strong>bold</strong>" in page
    assert "weights &gt; HBM" in page and "<td>a | b</td>" in page  # escaped, and the escaped pipe kept
    assert '<td class="num">1,024</td>' in page
    assert "raw &lt;b&gt;not bold&lt;/b&gt;\n  indented" in page  # fenced text verbatim, not interpreted
    assert "<ul>\n<li>first item</li>\n<li>second item</li>\n</ul>" in page
    assert "<script>" in page  # the sortable-table script is inline too


def test_paragraph_lines_join_and_missing_image_is_left_as_a_link(tmp_path):
    body = to_html("one line\nnext line\n\n![gone](missing.png)", tmp_path)
    assert "<p>one line next line</p>" in body
    assert 'src="missing.png"' in body


def test_step_envelope_never_below_a_curve():
    # B's single point and C's early end are the cases where the Pareto set of the union, drawn step-wise,
    # dips below a curve: A's (1, 10) holds 10 up to x = 3, past B's point.
    curves = {"A": ([1.0, 3.0], [10.0, 1.0]), "B": ([2.0], [9.5]), "C": ([0.5, 1.5], [20.0, 0.1])}
    x, y, owners = step_envelope(curves)
    assert x.tolist() == [0.5, 1.0, 1.5, 2.0, 3.0]
    assert y.tolist() == [20.0, 20.0, 10.0, 10.0, 1.0]
    assert owners == ["C", "C", "A", "A", "A"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        curves = {}
        for k in range(3):
            cx = np.sort(rng.uniform(0, 10, 6))
            curves[k] = (cx, np.sort(rng.uniform(0, 5, 6))[::-1])
        x, y, _ = step_envelope(curves)
        for cx, cy in curves.values():
            for t in np.linspace(cx[0], cx[-1], 200)[:-1]:
                k = np.searchsorted(x, t, side="right") - 1
                assert y[k] >= cy[np.searchsorted(cx, t, side="right") - 1]


def test_report_html_screenshot_in_headless_chromium(tmp_path, tiny_png):
    if shutil.which("chromium") is None:
        pytest.skip("no chromium on PATH (CI has none)")
    spec = importlib.util.spec_from_file_location("screenshot_report", SCREENSHOT_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    html = write_html(tmp_path, MARKDOWN, "Test report")
    png = script.screenshot(html, tmp_path / "shot.png", width=800, height=600)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000

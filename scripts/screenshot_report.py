"""Screenshot a report.html with headless Chromium, to check by eye that every figure and table renders.

    python scripts/screenshot_report.py OUT/report.html /tmp/report.png [--height 4000]

Needs a ``chromium`` (or ``chromium-browser`` / ``google-chrome``) on PATH; Debian: ``apt-get install chromium``.
The screenshot is one window of the given size from the top of the page; a taller window shows more of it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html_path: Path, png_path: Path, width: int = 1400, height: int = 4000, timeout_s: float = 120) -> Path:
    """Render ``html_path`` to ``png_path``; raises RuntimeError when no browser is found or none is written."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no browser on PATH (tried {', '.join(BROWSERS)})")
    png_path = png_path.resolve()
    png_path.unlink(missing_ok=True)
    # a throwaway profile, so a run never touches (or waits on the lock of) a user's browser profile
    with tempfile.TemporaryDirectory(prefix="helix-chromium-") as profile:
        cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png_path}", f"--window-size={width},{height}",
               html_path.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
    return png_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the report.html to render")
    ap.add_argument("png", type=Path, help="where to write the screenshot (PNG)")
    ap.add_argument("--width", type=int, default=1400, help="window width in pixels (default 1400)")
    ap.add_argument("--height", type=int, default=4000, help="window height in pixels (default 4000)")
    args = ap.parse_args(argv)
    if not args.html.is_file():
        ap.error(f"{args.html} is not a file")
    try:
        out = screenshot(args.html, args.png, args.width, args.height)
    except RuntimeError as e:
        print(f"screenshot_report: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

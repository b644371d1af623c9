#!/usr/bin/env python
"""Open an xaicompare HTML report in headless Chromium and check that it renders.

    python scripts/check_report_browser.py REPORT.html [--screenshot-dir DIR]

Checks: the file references nothing outside itself (no http(s) src/href, no <script>);
Chromium loads it without console errors or CSP violations; every section linked from
the table of contents exists in the rendered DOM. Screenshots at a desktop (1280 px) and
a narrow (400 px) width are written to --screenshot-dir when given. Exit code 0 = pass.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
WIDTHS = {"desktop": 1280, "narrow": 400}
# Lines in Chromium's stderr that mean the page itself misbehaved (not browser-startup noise).
PAGE_PROBLEM = re.compile(
    r"CONSOLE|Uncaught|Refused to|Content Security Policy|net::ERR_|Failed to load", re.I
)
EXTERNAL_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def find_chromium(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def static_problems(html: str) -> list[str]:
    """What a self-contained, script-free report must not contain."""
    problems = []
    for match in EXTERNAL_REF.finditer(html):
        problems.append(f"external reference: {html[match.start() : match.end() + 40]!r}")
    if re.search(r"<script\b", html, re.I):
        problems.append("the report contains a <script> element")
    if re.search(r"@import|url\(\s*['\"]?https?:", html, re.I):
        problems.append("the report's CSS loads something from outside")
    return problems


def expected_ids(html: str) -> list[str]:
    """Section ids linked from the table of contents, plus the fixed ones."""
    linked = re.findall(r'<a href="#([^"]+)"', html)
    return list(dict.fromkeys(["top", "toc", "summary", *linked]))


def _run_chromium(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="xc-chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def page_problems(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if PAGE_PROBLEM.search(line)]


def check_report(
    report: str | Path,
    screenshot_dir: str | Path | None = None,
    chromium: str | None = None,
    timeout: float = 90.0,
    screenshot_height: int = 2400,
) -> list[str]:
    """Every problem found (empty list = the report passes); writes screenshots if asked."""
    report = Path(report).resolve()
    if not report.is_file():
        return [f"report '{report}' does not exist"]
    browser = find_chromium(chromium)
    if browser is None:
        return ["no Chromium found (apt-get install chromium)"]
    html = report.read_text(encoding="utf-8")
    problems = static_problems(html)
    url = report.as_uri()

    dump = _run_chromium(browser, ["--dump-dom", url], timeout)
    if dump.returncode != 0:
        problems.append(f"chromium --dump-dom exited {dump.returncode}: {dump.stderr[-500:]}")
    problems += [f"browser: {line}" for line in page_problems(dump.stderr)]
    dom = dump.stdout
    for section_id in expected_ids(html):
        if f'id="{section_id}"' not in dom:
            problems.append(f"section id '{section_id}' missing from the rendered DOM")
    n_images = len(re.findall(r"<img\b", html))
    if len(re.findall(r"<img\b", dom)) != n_images:
        problems.append(f"the DOM has a different number of images than the file ({n_images})")

    if screenshot_dir is not None:
        out = Path(screenshot_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, width in WIDTHS.items():
            for suffix, height in (("top", 900), ("full", screenshot_height)):
                path = out / f"{report.stem}_{name}_{suffix}.png"
                shot = _run_chromium(
                    browser,
                    [f"--window-size={width},{height}", f"--screenshot={path}", url],
                    timeout,
                )
                problems += [f"browser ({name}): {line}" for line in page_problems(shot.stderr)]
                if not path.is_file() or path.stat().st_size == 0:
                    problems.append(f"no screenshot written at {path}: {shot.stderr[-300:]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("report", help="the HTML report to check")
    parser.add_argument("--screenshot-dir", help="write desktop and narrow screenshots here")
    parser.add_argument("--chromium", help="path to the Chromium binary")
    parser.add_argument("--height", type=int, default=2400, help="full screenshot height (px)")
    args = parser.parse_args(argv)
    problems = check_report(
        args.report, args.screenshot_dir, args.chromium, screenshot_height=args.height
    )
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: {args.report} renders in headless Chromium without errors")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Render an HTML file in Debian's headless Chromium: a PNG screenshot at a window size, or the DOM after load."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def _run(html_file: Path, extra: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="rag-health-chromium-") as profile:
        args = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, html_file.resolve().as_uri()]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(html_file: Path, png: Path, width: int = 1400, height: int = 900, timeout: float = 60) -> Path:
    """The first screen of `html_file` as a PNG; raises when Chromium writes none."""
    png.unlink(missing_ok=True)
    proc = _run(html_file, [f"--window-size={width},{height}", f"--screenshot={png.resolve()}"], timeout)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def dump_dom(html_file: Path, width: int = 1400, height: int = 900, timeout: float = 60) -> str:
    """The document as Chromium serialises it after loading, laid out at the window size (scripts have run)."""
    return _run(html_file, [f"--window-size={width},{height}", "--dump-dom"], timeout).stdout


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from the PNG header."""
    data = png.read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png} is not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

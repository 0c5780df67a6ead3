"""Render an HTML file in headless Chromium (Debian package ``chromium``): DOM text and a PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (make test installs it with apt-get)")
    return exe


def chromium_render(html: Path, png: Path) -> tuple[str, Path]:
    """(the DOM after rendering, the screenshot path). Scripts are off: the report needs none."""
    exe = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-javascript",
             "--window-size=1400,2400", "--hide-scrollbars"]
    dom = subprocess.run([exe, *flags, "--dump-dom", html.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    subprocess.run([exe, *flags, f"--screenshot={png}", html.resolve().as_uri()], capture_output=True,
                   timeout=120, check=True)
    return dom, png


def ink_fraction(png: Path) -> float:
    """Share of pixels that are not (near) white."""
    img = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
    return float((img < 235).mean())


def colour_fraction(png: Path) -> float:
    """Share of saturated pixels: chart lines and bars (the page's text and tables are grey)."""
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return float((img.max(axis=2) - img.min(axis=2) > 60).mean())

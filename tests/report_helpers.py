"""Report test helpers: a fabricated search run directory (no Ray, no training) and rendering an
HTML file in headless Chromium (Debian package ``chromium``): DOM text and a PNG."""

from __future__ import annotations

import json
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


# A fabricated search run (no Ray, no training): what `leaderboard` and the report read.
PARAMS = {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
          "algorithm.daso.lambda_align": {"type": "float", "low": 0.1, "high": 2.0, "log": False},
          "algorithm.daso.dist_aware": {"type": "choice", "values": [True, False]}}
ANIMALS = ["albatross", "bison", "cheetah", "dingo", "emu", "ferret"]


def make_run(tmp_path: Path, k: int = 4, names: list[str] | None = None, n_done: int = 4,
             n_stopped: int = 3, iterations: int = 100, verify: dict | None = None) -> Path:
    """``tmp_path/run``: one per_scenario study ``consistent`` with ``n_done`` finished trials
    (the first is the baseline) and ``n_stopped`` stopped at step 50; the prepared data's
    manifest (``k`` classes named ``names``) under ``tmp_path/data``; ``verify.json`` if given."""
    run, data = tmp_path / "run", tmp_path / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text(json.dumps(
        {"num_classes": k, "class_names": names or [f"c{i}" for i in range(k)]}))
    baseline = {"algorithm.daso.t_proto": 0.05, "algorithm.daso.lambda_align": 1.0,
                "algorithm.daso.dist_aware": True}
    meta = {"name": "fab", "source": "fab.yaml", "sha256": "0" * 64, "started": "2026-01-01T00:00:00",
            "studies": ["consistent"], "iterations": iterations, "baseline": baseline, "seeds": 2,
            "objective": {"type": "per_scenario", "metric": "valid/top1_median", "mode": "max"},
            "spec": {"params": PARAMS, "scenarios": [{"name": "consistent"}],
                     "budget": {"asha": {"grace": 50}}},
            "base": {"data": {"root": str(data)}}}
    (run / "consistent").mkdir(parents=True)
    (run / "search.json").write_text(json.dumps(meta))
    for i in range(n_done + n_stopped):
        done = i < n_done
        params = baseline if i == 0 else {"algorithm.daso.t_proto": 0.02 * 2 ** (i % 6),
                                          "algorithm.daso.lambda_align": 0.1 + 0.15 * i,
                                          "algorithm.daso.dist_aware": i % 2 == 0}
        last_step = iterations if done else iterations // 2
        lines = []
        for step in range(25, last_step + 1, 25):
            obj = 50 + 5 * i + step / 10
            m = {"trial_id": f"trial{i}", "step": step, "objective": obj, "objective_stderr": 0.4,
                 "consistent/eval/top1_median": obj - 1,
                 "consistent/eval/per_class_recall": [90.0 - 10 * c for c in range(k)],
                 "consistent/data/labeled_counts": [40 // (c + 1) for c in range(k)]}
            if step == iterations:  # the loop logs the matrix at the last evaluation only
                m["consistent/eval/confusion"] = [[10 if r == c else r for c in range(k)]
                                                  for r in range(k)]
            if step == last_step:  # Tune marks the last result done (ASHA's stop included)
                m["done"] = True
            lines.append(json.dumps(m))
        trial = run / "consistent" / f"trial_{i}"
        trial.mkdir()
        (trial / "result.json").write_text("\n".join(lines) + "\n")
        (trial / "params.json").write_text(json.dumps(params))
    if verify is not None:
        (run / "verify.json").write_text(json.dumps(verify))
    return run


def verify_doc(ci: list[float], verdict: str) -> dict:
    """A verify.json of one study in the format of ``python -m daso_ray.verify``."""
    return {"studies": {"consistent": {
        "metric": "eval/top1_median", "seeds": [100, 101, 102], "iterations": 100,
        "winner": {"trial_id": "trial3", "params": {"algorithm.daso.t_proto": 0.5},
                   "values": [71.25, 72.5, 70.0]},
        "baseline": {"params": {"algorithm.daso.t_proto": 0.05}, "values": [70.0, 70.5, 69.0]},
        "gain": 1.417, "stderr": 0.44, "ci": ci, "verdict": verdict}}}

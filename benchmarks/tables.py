"""Benchmark entries and tables, shared by ``benchmarks.run`` and ``benchmarks/gpu_check.sh``.

:func:`entry` is one id's record (value, unit, goal, met, device, detail); :func:`p3` and :func:`p8`
turn benchmarks.step's and benchmarks.trainer_loop's JSON into entries; :func:`table` prints the
runner's table; :func:`gather` and :func:`gpu_table` read what gpu_check.sh's stages wrote into one
table (``python -m benchmarks.run --gather DIR``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

FULL_RUN_ITERS = 250_000
EVALS, EVAL_IMAGES = 500, 10_000 + 5_000  # CIFAR-10-LT: every 500 iterations, test + valid


def entry(value, unit: str, goal: float | None, device: str, detail: dict, at_least: bool = True) -> dict:
    met = None if value is None or goal is None else (value >= goal if at_least else value <= goal)
    return {"value": value, "unit": unit, "goal": goal, "goal_dir": ">=" if at_least else "<=",
            "met": met, "device": device, "detail": detail}


def p3(rows: list[dict], device: str) -> dict:
    """DASO it/s against 0.9 x FixMatch's, eager steps on ``device``."""
    ok = {r["algorithm"]: r for r in rows
          if r["device"] == device and r.get("mode", "eager") == "eager" and r.get("status") == "ok"}
    fm, da = ok.get("fixmatch"), ok.get("daso")
    if not (fm and da):
        return entry(None, "it/s", None, device, {"failed": [r for r in rows if r.get("status") != "ok"]})
    return entry(da["it_per_s"], "it/s", 0.9 * fm["it_per_s"], device, {
        "daso_ms_per_it": da["ms_per_it"], "fixmatch_ms_per_it": fm["ms_per_it"],
        "fixmatch_it_per_s": fm["it_per_s"], "daso_over_fixmatch_time": da["ms_per_it"] /
        fm["ms_per_it"], "arch": da["arch"], "batch": da["batch"], "mu": da["mu"],
        "threads": da["threads"]})


def loop_figures(r: dict) -> dict[str, dict]:
    """benchmarks.trainer_loop's JSON -> {loader: {it_per_s, eval_s, eval_images}}."""
    return {name: {k: f[k] for k in ("it_per_s", "eval_s", "eval_images")}
            for name, f in r["loaders"].items()}


def p8(loop: dict, device: str) -> dict:
    """A CIFAR-10-LT DASO run from the measured whole loop (data -> step, excluding evaluation)
    plus 500 evaluations of 10k test + 5k validation images at the measured seconds per image
    (configs/cifar10_lt_daso.yaml: 250k iterations, eval_period 500). Scaling a small evaluation
    set's time by images also scales its fixed per-evaluation costs: eval_h is an upper bound."""
    best_name, best = max(loop_figures(loop).items(), key=lambda kv: kv[1]["it_per_s"])
    train_h = FULL_RUN_ITERS / best["it_per_s"] / 3600
    eval_h = EVALS * best["eval_s"] * EVAL_IMAGES / max(best["eval_images"], 1) / 3600
    return entry(train_h + eval_h, "h", 1.5 if device == "cuda" else None, device, {
        "iterations": FULL_RUN_ITERS, "evaluations": EVALS, "images_per_evaluation": EVAL_IMAGES,
        "loader": best_name, "train_it_per_s": best["it_per_s"], "train_h": train_h,
        "eval_h": eval_h, "measured": loop}, at_least=False)


def table(results: dict) -> str:
    lines = [f"{'id':<10} {'value':>10} {'unit':<26} {'goal':>8} {'met':<5} device"]
    for k, v in results.items():
        value = "skipped" if v["value"] is None else f"{v['value']:.3f}"
        goal = "" if v["goal"] is None else f"{v['goal_dir']}{v['goal']:.3g}"
        met = {True: "yes", False: "NO", None: "-"}[v["met"]]
        lines.append(f"{k:<10} {value:>10} {v['unit']:<26} {goal:>8} {met:<5} {v['device']}")
    return "\n".join(lines)


# -- benchmarks/gpu_check.sh: one table over its stages ---------------------------------------
STAGES = ("prepare", "gpu_tests", "step_eager", "loop", "pack", "step_compiled", "step_cudagraphs")


def row(stage: str, metric: str, value, goal: str = "", met: bool | None = None) -> dict:
    return {"stage": stage, "metric": metric, "value": value, "goal": goal, "met": met}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _from_entry(stage: str, metric: str, e: dict) -> dict:
    goal = "" if e["goal"] is None else f"{e['goal_dir']} {e['goal']:.3g} {e['unit']}"
    value = e["detail"].get("skipped", "failed") if e["value"] is None else e["value"]
    return row(stage, metric, value, goal, e["met"])


def status_rows(d: Path) -> tuple[dict, list[dict]]:
    """Each stage's exit: ok, failed (exit code), timed out (124/137) or not run, with seconds."""
    stages, rows = {}, []
    for name in STAGES:
        st = _read(d / f"{name}.status") or {}
        rc = st.get("rc")
        how = ("not run" if rc is None else "ok" if rc == 0 else "not started: budget spent"
               if st["limit"] == 0 else f"timed out after {st['limit']} s" if rc in (124, 137)
               else f"failed (exit {rc})")
        stages[name] = {**st, "status": how}
        took = f" in {st['seconds']} s" if st.get("limit") else ""
        rows.append(row(name, "stage", how + took, "ok", how == "ok"))
    return stages, rows


def gpu_test_rows(d: Path, device: str) -> list[dict]:
    """One row per gpu-marked test (pytest's JUnit XML), then the figures the tests measured."""
    import xml.etree.ElementTree as ET

    rows, xml = [], d / "gpu_tests.xml"
    for case in ET.parse(xml).getroot().iter("testcase") if xml.is_file() else ():
        bad = next((e for e in case if e.tag in ("failure", "error")), None)
        skipped = case.find("skipped") is not None
        why = "" if bad is None else (bad.get("message") or "").split("\n")[0][:200]
        value = f"FAILED: {why}" if bad is not None else "skipped" if skipped else "passed"
        # On CUDA nothing should skip (a skip there is a missing import or device): a failure.
        met = None if skipped and device != "cuda" else bad is None and not skipped
        rows.append(row("gpu_tests", case.get("name"), value, "pass", met))
    f = _read(d / "gpu_tests.json") or {}
    step, syncs = f.get("step_bf16_vs_fp32"), f.get("sync_debug")
    if "augment_checked" in f:
        rows.append(row("gpu_tests", "augmentation: bit-exact checks",
                        f"{f['augment_exact']}/{f['augment_checked']}"))
    if step:
        rows += [row("gpu_tests", "bf16 step: loss rel. diff vs fp32 CPU", step["loss_rel_diff"],
                     "< 0.05", step["loss_rel_diff"] < 0.05),
                 row("gpu_tests", "bf16 step: grad cosine vs fp32 CPU", step["grad_cosine"], "> 0.97",
                     step["grad_cosine"] > 0.97)]
    if syncs:
        sites = ", ".join(f"{k} x{v}" for k, v in syncs["where"].items()) or "none"
        rows += [row("gpu_tests", "host syncs / iteration (excl. finite check)",
                     syncs["per_iteration_elsewhere"], "0", syncs["syncs_elsewhere"] == 0),
                 row("gpu_tests", f"syncs in the {syncs['finite_checks']} finite checks",
                     syncs["syncs_in_finite_check"]),
                 row("gpu_tests", "sync call sites (excl. finite check)", sites)]
    return rows


def step_rows(d: Path, device: str) -> list[dict]:
    rows, eager = [], []
    for mode in ("eager", "compiled", "cudagraphs"):
        for r in (_read(d / f"step_{mode}.json") or {}).get("rows", []):
            value = r["it_per_s"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
            breaks = (f" ({r['graph_breaks']} breaks, {r['cudagraph_skips']} cg skips)"
                      if mode != "eager" and "graph_breaks" in r else "")
            rows.append(row(f"step_{mode}", f"{r['algorithm']} it/s{breaks}", value))
            eager += [r] if mode == "eager" else []
    if eager:
        rows.append(_from_entry("step_eager", "P3 DASO it/s vs 0.9 x FixMatch", p3(eager, device)))
    return rows


def loop_rows(d: Path, device: str) -> list[dict]:
    loop = _read(d / "loop.json")
    if not loop:
        return [row("P8", "estimate", "not available: the loop stage left no result",
                    "<= 1.5 h" if device == "cuda" else "", False)]
    rows = []
    for name, f in loop_figures(loop).items():
        rows += [row("loop", f"{name}: train it/s (excl. eval)", f["it_per_s"]),
                 row("loop", f"{name}: s per evaluation", f["eval_s"]),
                 row("loop", f"{name}: images per evaluation", f["eval_images"])]
    e = p8(loop, device)
    what = f"250k it + 500 evals (h), {e['detail']['loader']} loader"
    if device != "cuda":
        what += " [CPU dry run, tiny model: not an estimate]"
    return rows + [_from_entry("P8", what, e),
                   row("P8", "of which train h, eval h", f"{e['detail']['train_h']:.3g}, "
                       f"{e['detail']['eval_h']:.3g}")]


def pack_rows(d: Path, device: str) -> list[dict]:
    r = _read(d / "pack.json")
    if not r:
        return []
    alone_packed = f"{r['single_it_per_s']:.3g}; " + " + ".join(f"{v:.3g}" for v in r["packed_it_per_s"])
    return [row("pack", f"it/s: 1 trial; {r['trials']} packed", alone_packed),
            _from_entry("pack", f"P5 aggregate / single ({r['trials']} trials)",
                        entry(r["ratio"], "x", 2.5 if device == "cuda" else None, device, r))]


def gather(out: Path, device: str) -> dict:
    """Read ``out/stages`` (what gpu_check.sh wrote so far), write ``out/gpu_check.json``. A part
    that cannot be read becomes a row: the table always comes out."""
    d = out / "stages"
    stages, rows = status_rows(d)
    for part in (gpu_test_rows, step_rows, loop_rows, pack_rows):
        try:
            rows += part(d, device)
        except Exception as err:  # one unreadable result must not hide the rest
            name = part.__name__.removesuffix("_rows")
            rows.append(row(name, "gather", f"error: {err!r}"[:200], "", False))
    res = {"device": device, "stages": stages, "rows": rows,
           "failed": [k for k, v in stages.items() if v["status"] != "ok"],
           "machine": f"{platform.node()}: {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (out / "gpu_check.json.tmp").write_text(json.dumps(res, indent=1))
    os.replace(out / "gpu_check.json.tmp", out / "gpu_check.json")
    return res


def gpu_table(rows: list[dict]) -> str:
    """The table; a value too long for its column is a footnote [n] printed in full below."""
    lines, notes = [f"{'stage':<15} {'metric':<44} {'value':>24}  {'goal':<14} met"], []
    for r in rows:
        v = f"{r['value']:.4g}" if isinstance(r["value"], float) else str(r["value"])
        if len(v) > 24:
            notes.append(f"[{len(notes) + 1}] {r['stage']} / {r['metric']}: {v}")
            v = f"[{len(notes)}]"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lines.append(f"{r['stage']:<15} {r['metric'][:44]:<44} {v:>24}  {r['goal']:<14} {met}")
    return "\n".join(lines + [""] + notes if notes else lines)

"""One benchmark runner: P1-P8 side by side in one run, written to benchmarks/results/latest.json.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--only P1,P6]
    python -m benchmarks.run --gather DIR [--device cuda]   # benchmarks/gpu_check.sh's table

Each benchmark runs in its own process (FFCV changes torch's thread count on import; Ray starts
its own local cluster) and writes its JSON; this runner gathers them into one object mapping each
id to ``{"value", "unit", "goal", "goal_dir", "met", "device", "detail"}`` and prints the table.
``--device`` is where P3, P5 and P8 run (only there: ``--device cuda`` does not time the CPU).

| id | what | goal |
|----|------|------|
| P1 | FFCV loader / torch DataLoader, same weak augmentation (img/s ratio) | >= 3 |
| P2 | batched strong augmentation / per-sample torchvision v2 in workers | >= 2 CPU, >= 10 GPU |
| P3 | DASO train iterations/s (WRN-28-2, B=64, mu=2); FixMatch beside it | >= 0.9 x FixMatch |
| P5 | aggregate it/s of 4 trials packed on one GPU / 1 trial (GPU only) | >= 2.5 |
| P6 | ASHA+TPE compute to reach best-of-grid / grid compute (digits-LT) | <= 0.25 |
| P7 | trial start -> first report, single and ddp modes (s) | <= 5 / <= 20 |
| P8 | CIFAR-10-LT DASO run, 250k iterations + 500 evaluations, from the whole loop (h; CUDA) | <= 1.5 |

``--quick`` (CPU, under 5 minutes on 2 cores) shrinks every benchmark: 4k images for P1/P2, two
timed rounds for P3, a 2x2 grid of 120-iteration trials for P6.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL_RUN_ITERS = 250_000
EVALS, EVAL_IMAGES = 500, 10_000 + 5_000  # CIFAR-10-LT: every 500 iterations, test + valid


def _run(module: str, args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args, "--out", str(out)]
    print(f"$ {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    res = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if res.returncode != 0:
        print(res.stdout[-2000:] + res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"benchmarks.{module} failed (exit {res.returncode})")
    print(res.stdout.rstrip() + f"\n  ({time.time() - t0:.0f} s)\n", flush=True)
    return json.loads(out.read_text())


def entry(value, unit: str, goal: float | None, device: str, detail: dict, at_least: bool = True) -> dict:
    met = None if value is None or goal is None else (value >= goal if at_least else value <= goal)
    return {"value": value, "unit": unit, "goal": goal, "goal_dir": ">=" if at_least else "<=",
            "met": met, "device": device, "detail": detail}


def loaders(tmp: Path, quick: bool, device: str) -> dict:
    r = _run("loaders", ["--n", "4000" if quick else "20000", "--epochs", "2" if quick else "3"],
             tmp / "loaders.json")
    return {pid: entry(r[pid]["value"], "x", r[pid]["goal"], "cpu",
                       {"what": r[pid]["detail"], "configs": r["configs"], "machine": r["machine"]})
            for pid in ("P1", "P2")}


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


def step(tmp: Path, quick: bool, device: str) -> dict:
    args = ["--device", device, "--iters", "2" if quick else ("20" if device == "cuda" else "5"),
            "--rounds", "2" if quick else "3"]
    return {"P3": p3(_run("step", args, tmp / "step.json")["rows"], device)}


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


def trainer_loop(tmp: Path, quick: bool, device: str) -> dict:
    if device != "cuda":
        return {"P8": entry(None, "h", 1.5, device, {"skipped": "CUDA only: run with --device cuda"},
                            at_least=False)}
    args = ["--device", device, "--loaders", "torch,ffcv",  # ffcv only where it is installed
            *(["--quick"] if quick else ["--period", "100", "--workers", "4"])]
    return {"P8": p8(_run("trainer_loop", args, tmp / "loop.json"), device)}


def pack(tmp: Path, quick: bool, device: str) -> dict:
    if device != "cuda":
        return {"P5": entry(None, "x", 2.5, device, {"skipped": "GPU only: run with --device cuda"})}
    r = _run("pack", ["--trials", "4", "--seconds", "5" if quick else "10"], tmp / "pack.json")
    return {"P5": entry(r["ratio"], "x", 2.5, "cuda", r)}


def search(tmp: Path, quick: bool, device: str) -> dict:
    r = _run("search", ["--quick"] if quick else [], tmp / "search.json")
    goals = {"P7_single": 5.0, "P7_ddp": 20.0}
    out = {"P6": entry(r["P6"]["value"], r["P6"]["unit"], 0.25, "cpu", r["P6"]["detail"], False)}
    for k, goal in goals.items():
        out[k] = entry(r[k]["value"], "s", goal, "cpu", r[k]["detail"], at_least=False)
    return out


SECTIONS = {"P1": loaders, "P2": loaders, "P3": step, "P5": pack, "P6": search, "P7": search,
            "P8": trainer_loop}


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized budgets (< 5 min on 2 cores)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--only", help="comma-separated ids (P1,P2,P3,P5,P6,P7,P8)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    p.add_argument("--gather", type=Path, metavar="DIR", help="gpu_check.sh: table + DIR/gpu_check.json")
    p.add_argument("--quiet", action="store_true", help="with --gather: write the JSON only")
    args = p.parse_args(argv)
    if args.gather:
        res = gather(args.gather, args.device)
        if not args.quiet:
            print(gpu_table(res["rows"]))
        return 0
    wanted = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown id(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    t0 = time.time()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_") as d:
        for fn in dict.fromkeys(SECTIONS[w] for w in wanted):  # each section once, in order
            results.update(fn(Path(d), args.quick, args.device))
    print(table(results))
    meta = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}",
            "quick": args.quick, "device": args.device, "wall_s": round(time.time() - t0, 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, args.out)
    args.out.with_name(args.out.stem + "_run.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {args.out} ({meta['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

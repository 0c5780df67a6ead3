"""The whole Trainer loop per data loader: data -> step -> backward -> SGD -> EMA -> evaluation.

    python -m benchmarks.trainer_loop --device cpu --loaders torch,ffcv [--quick] [--out FILE]

Times ``engine.loop.Trainer.advance`` as a run executes it (WRN-28-2, B = 64, mu = 2, 32 px, DASO
past its pre-train phase) on digits prepared by ``python -m daso_ray.prepare digits``. Each loader
runs in its own fresh process (FFCV changes torch's thread count at import), and rounds alternate
the loaders so machine noise hits both alike. Per loader (median over rounds):

- train iterations/s with evaluation and checkpoint time taken out;
- seconds and images per evaluation (test + validation; the sets are read once, in the first
  window, which is untimed), so callers can scale evaluation to CIFAR's 10k test + 5k valid;
- torch threads at start and end of the run (FFCV once left one), data workers, and the
  process's CPU seconds per wall second (torch DataLoader worker processes not included).

Runs without FFCV (torch only) and without Ray. ``--quick`` finishes in ~1.5-3 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "TRAINER_LOOP_RESULT "
CIFAR_EVAL_IMAGES = 10_000 + 5_000  # CIFAR-10-LT test + validation, for the extrapolation
# Digits split with every unlabeled image usable (per class: 60 L + 75 U + 5 valid <= 144).
DATA = {"dataset": "digits", "scenario": "uniform", "n_max_l": 60, "n_max_u": 75,
        "imb_ratio_l": 1, "imb_ratio_u": 1, "num_valid": 50, "image_size": 32}


# -- child: one loader, one process ---------------------------------------------------------------


def _config(args, out: Path):
    from daso_ray.config import from_dict

    windows = args.evals + 1  # the first window warms up (JIT, first epoch, eval-set reads)
    algo = {"name": args.algo}
    if args.algo == "daso":
        # Timed windows run the full DASO path (config: pre-train >= the m-hat update period).
        algo["daso"] = {"pretrain_iters": args.period, "dist_update_period": args.period}
    return from_dict({
        "data": {**DATA, "root": str(args.data), "loader": args.child, "batch_size": args.batch,
                 "mu": args.mu, "num_workers": args.workers},
        "model": {"arch": args.arch}, "algorithm": algo,
        "run": {"iterations": windows * args.period, "eval_period": args.period,
                "checkpoint_period": 10**9, "device": args.device, "out_dir": str(out)}})


def _timed(record: list, fn):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            record.append(time.perf_counter() - t0)
    return wrapper


def child(args) -> dict:
    """Build a Trainer, run one warm-up window, then time ``args.evals`` windows."""
    import torch  # no FFCV yet: this is the thread count the process was given

    threads_start = torch.get_num_threads()
    from daso_ray.engine.loop import Trainer

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(_config(args, Path(tmp)), Path(tmp) / "run")
        build_s = time.perf_counter() - t0
        evals, windows = [], []
        trainer.evaluate = _timed(evals, trainer.evaluate)
        trainer._end_window = _timed(windows, trainer._end_window)
        t0 = time.perf_counter()
        trainer.advance(args.period)
        sync()
        warm_s, first_eval_s = time.perf_counter() - t0, evals[0]
        evals.clear()
        windows.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        trainer.advance((args.evals + 1) * args.period)
        sync()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        images = sum(len(b["y"]) for w in ("test", "valid") for b in trainer.data.eval_batches(w))
    train_s = wall - sum(windows)
    return {"loader": args.child, "device": args.device, "it_per_s": args.evals * args.period / train_s,
            "train_s": train_s, "iterations": args.evals * args.period,
            "eval_s": statistics.mean(evals), "eval_images": images, "first_eval_s": first_eval_s,
            "build_s": build_s, "warmup_window_s": warm_s,
            "threads_start": threads_start, "threads_end": torch.get_num_threads(),
            "data_workers": args.workers, "cpu_per_wall": cpu / wall}


# -- parent: prepare once, alternate loaders across rounds --------------------------------------


def _prepare(data: Path, ffcv: bool) -> None:
    if (data / "manifest.json").is_file():
        return
    cmd = [sys.executable, "-m", "daso_ray.prepare", "digits", "--out", str(data)]
    res = subprocess.run(cmd + ([] if ffcv else ["--no-ffcv"]), cwd=REPO, capture_output=True,
                         text=True)
    if res.returncode:  # prepare's own one-line error, not a traceback from here
        last = (res.stderr.strip() or res.stdout.strip() or "failed").splitlines()[-1]
        raise SystemExit(f"error: --data {data}: preparing digits there failed ({last}) — pass a "
                         "prepared digits folder, a new path, or omit --data")


def _run_child(args, loader: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.trainer_loop", "--child", loader, "--data", str(args.data),
           *(f"--{k}={getattr(args, k)}" for k in ("device", "period", "evals", "algo", "arch",
                                                    "batch", "mu", "workers"))]
    env = {**os.environ, "NUMBA_THREADING_LAYER": os.environ.get("NUMBA_THREADING_LAYER", "tbb")}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=args.timeout)
    if res.returncode != 0:
        raise SystemExit(f"{loader} run failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    line = next(ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(MARK))
    return json.loads(line[len(MARK):])


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for loader, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in
               ("it_per_s", "eval_s", "first_eval_s", "build_s", "cpu_per_wall")}
        first = rs[0]
        out[loader] = {**med, "eval_images": first["eval_images"],
                       "eval_s_per_image": med["eval_s"] / max(first["eval_images"], 1),
                       "threads_start": first["threads_start"],
                       "threads_end": [r["threads_end"] for r in rs],
                       "data_workers": first["data_workers"],
                       "rounds_it_per_s": [round(r["it_per_s"], 4) for r in rs], "runs": rs}
        out[loader]["eval_s_cifar"] = out[loader]["eval_s_per_image"] * CIFAR_EVAL_IMAGES
    return out


def table(summary: dict[str, dict]) -> str:
    head = (f"{'loader':6s} {'it/s':>7s} {'s/eval':>7s} {'img/eval':>8s} {'s/eval@15k':>10s} "
            f"{'threads':>8s} {'workers':>7s} {'cpu/wall':>8s}")
    lines = [head]
    for name, s in summary.items():
        threads = f"{s['threads_start']}->{min(s['threads_end'])}"
        lines.append(f"{name:6s} {s['it_per_s']:7.3f} {s['eval_s']:7.2f} {s['eval_images']:8d} "
                     f"{s['eval_s_cifar']:10.1f} {threads:>8s} {s['data_workers']:7d} "
                     f"{s['cpu_per_wall']:8.2f}")
    if {"ffcv", "torch"} <= summary.keys():
        ratio = summary["ffcv"]["it_per_s"] / summary["torch"]["it_per_s"]
        lines.append(f"ffcv / torch train iterations/s = {ratio:.3f}x")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--loaders", default="torch,ffcv", help="comma list of torch, ffcv")
    p.add_argument("--period", type=int, default=20, help="iterations per evaluation window")
    p.add_argument("--evals", type=int, default=2, help="timed windows (one evaluation each)")
    p.add_argument("--rounds", type=int, default=2, help="rounds alternating the loaders")
    p.add_argument("--quick", action="store_true", help="--period 5 --rounds 1 (~1.5-3 min, 2 cores)")
    p.add_argument("--algo", default="daso")
    p.add_argument("--arch", default="wrn28_2")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mu", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="data.num_workers")
    p.add_argument("--data", type=Path,
                   help="prepared digits folder; a new path is prepared there (default: a temp dir)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per loader run")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/trainer_loop.json")
    p.add_argument("--child", choices=("torch", "ffcv"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.period, args.rounds = 5, 1
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        print(MARK + json.dumps(child(args)), flush=True)
        return 0
    has_ffcv = importlib.util.find_spec("ffcv") is not None  # found, not imported
    loaders = [x for x in args.loaders.split(",") if x]
    if "ffcv" in loaders and not has_ffcv:
        print("ffcv is not installed here: timing the torch loader only")
        loaders.remove("ffcv")
    with tempfile.TemporaryDirectory() as tmp:
        args.data = args.data or Path(tmp) / "digits"
        _prepare(args.data, has_ffcv)
        runs: dict[str, list[dict]] = {x: [] for x in loaders}
        for r in range(args.rounds):
            for loader in (loaders if r % 2 == 0 else loaders[::-1]):
                runs[loader].append(_run_child(args, loader))
                print(f"round {r}: {loader} {runs[loader][-1]['it_per_s']:.3f} it/s", flush=True)
    summary = summarise(runs)
    print(table(summary))
    meta = {"device": args.device, "arch": args.arch, "algo": args.algo, "batch": args.batch,
            "mu": args.mu, "period": args.period, "evals": args.evals, "rounds": args.rounds,
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": importlib.metadata.version("torch")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "loaders": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training-step throughput: FixMatch vs DASO, WRN-28-2, B = 64, mu = 2 (320 images per step).

Times ``engine.loop.Stepper.train_step`` — the production iteration (algorithm loss, backward, SGD,
LR step, EMA; DASO adds the EMA-encoder queue push, prototypes and the alignment loss) — on
synthetic normalised batches, so data loading is excluded (benchmarks/trainer_loop.py times the
whole loop). DASO is timed after its pre-train phase (t >= P) so the full DASO path runs. On CUDA
the step runs as the trainer runs it (bf16 autocast + channels_last).

Modes: ``eager``; ``compiled`` (``run.compile: true``, whatever the product compiles);
``cudagraphs`` (the same with ``torch.compile(mode="reduce-overhead")``, CUDA only). A mode that
fails is a row with ``status: failed`` and a one-line reason, never a crash.

    python -m benchmarks.step --device cuda --modes eager,compiled,cudagraphs
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
from torch._dynamo.utils import counters

from daso_ray.algorithms import Context
from daso_ray.config import from_dict
from daso_ray.engine.step import Stepper

ALGORITHMS = ("fixmatch", "daso")
MODES = ("eager", "compiled", "cudagraphs")
T0 = 1000  # past P = 100 for DASO, so its whole path (q_w, blend, L_align) runs; a multiple of
# the default m-hat period (50), see build()


def make_batch(b: int, mu: int, k: int, size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    img = lambda n: torch.randn(n, 3, size, size, generator=g).to(device)  # noqa: E731
    return {"x": img(b), "y": torch.randint(0, k, (b,), generator=g).to(device),
            "x_w": img(mu * b), "x_s": img(mu * b)}


@contextlib.contextmanager
def compile_mode(mode: str):
    """For ``cudagraphs``, every ``torch.compile`` the product makes uses mode="reduce-overhead"
    (CUDA graphs via cudagraph trees); the product has no knob for it, so it is patched here."""
    if mode != "cudagraphs":
        yield
        return
    original = torch.compile

    @functools.wraps(original)
    def reduce_overhead(*args, **kwargs):
        return original(*args, **{**kwargs, "mode": "reduce-overhead"})

    with mock.patch.object(torch, "compile", reduce_overhead):
        yield


def run_step(stepper: Stepper, batch: dict, t: int, mode: str) -> None:
    if mode == "cudagraphs":
        # A new iteration: cudagraph trees may overwrite the previous replay's outputs.
        torch.compiler.cudagraph_mark_step_begin()
    stepper.train_step(batch, t)


def build(algo: str, device: str, args, mode: str = "eager"):
    """A Stepper past its warm-up (compilation and graph capture happen here), its batch, next t."""
    cfg = from_dict({"algorithm": {"name": algo, "daso": {"pretrain_iters": 100}},
                     "model": {"arch": args.arch},
                     "data": {"batch_size": args.batch, "mu": args.mu},
                     "run": {"device": device, "iterations": 10**6, "compile": mode != "eager"}})
    dev = torch.device(device)
    ctx = Context(10, torch.tensor([500, 299, 179, 107, 64, 38, 23, 13, 8, 5]), 10**6, dev)
    torch.manual_seed(0)
    with compile_mode(mode):
        stepper = Stepper(cfg, ctx)
        batch = make_batch(args.batch, args.mu, 10, 32, dev)
        # Warm up on the iterations just before T0: the last one, T0 - 1, is an m-hat refresh
        # step of DASO ((t + 1) % period == 0), so a compiled step has built its graph for both
        # branches before the timing starts (no recompilation inside a timed round).
        for t in range(T0 - args.warmup, T0):
            run_step(stepper, batch, t, mode)
    return stepper, batch, T0


def time_round(stepper, batch, t0: int, iters: int, device: str, mode: str = "eager") -> float:
    """Seconds per iteration over ``iters`` iterations."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for t in range(iters):
        run_step(stepper, batch, t0 + t, mode)
    sync()
    return (time.perf_counter() - start) / iters


def reason(err: BaseException) -> str:
    """One line: the exception type and the first non-empty line of its message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def _row(algo: str, device: str, mode: str, args, **extra) -> dict:
    return {"algorithm": algo, "device": device, "mode": mode, "arch": args.arch,
            "batch": args.batch, "mu": args.mu, "threads": torch.get_num_threads(), **extra}


def measure(device: str, args, mode: str = "eager") -> list[dict]:
    """Rounds alternate FixMatch and DASO so machine noise hits both alike; median per algorithm."""
    if mode == "cudagraphs" and device != "cuda":
        return [_row(a, device, mode, args, status="skipped", reason="CUDA only")
                for a in ALGORITHMS]
    torch._dynamo.reset()  # each mode compiles afresh (and stays under dynamo's cache limit)
    runs, rows = {}, []
    for a in ALGORITHMS:
        start = time.perf_counter()
        counters.clear()  # compilation happens in the warm-up: count it per algorithm
        try:
            stepper, batch, t0 = build(a, device, args, mode)
            runs[a] = {"stepper": stepper, "batch": batch, "t0": t0, "times": [],
                       "warmup_s": round(time.perf_counter() - start, 1), **compile_counts()}
        except Exception as err:  # a failing mode is a result, not a crash
            rows.append(_row(a, device, mode, args, status="failed", reason=reason(err)))
    for r in range(args.rounds):
        for a, run in list(runs.items()):
            try:
                run["times"].append(time_round(run["stepper"], run["batch"], run["t0"] + r * args.iters,
                                               args.iters, device, mode))
            except Exception as err:
                rows.append(_row(a, device, mode, args, status="failed", reason=reason(err)))
                del runs[a]
    images = args.batch * (1 + 2 * args.mu)
    for a, run in runs.items():
        sec, times = statistics.median(run["times"]), run.pop("times")
        extra = {k: v for k, v in run.items() if k not in ("stepper", "batch", "t0")}
        rows.append(_row(a, device, mode, args, status="ok", it_per_s=1 / sec, img_per_s=images / sec,
                         ms_per_it=1000 * sec, rounds_ms=[round(1000 * t, 2) for t in times], **extra))
    runs.clear()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return sorted(rows, key=lambda r: ALGORITHMS.index(r["algorithm"]))


def compile_counts() -> dict:
    """Since the last ``counters.clear()``: graph breaks, graphs compiled, and the graphs that
    cudagraph trees declined to capture (their reasons are in the log)."""
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "graphs": counters["stats"].get("unique_graphs", 0),
            "cudagraph_skips": counters["inductor"].get("cudagraph_skips", 0)}


def print_rows(rows: list[dict]) -> None:
    print(f"{'device':6s} {'mode':10s} {'algorithm':9s} {'ms/it':>9s} {'it/s':>8s} {'img/s':>9s}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['device']:6s} {r['mode']:10s} {r['algorithm']:9s} {r['status']}: {r['reason']}")
            continue
        print(f"{r['device']:6s} {r['mode']:10s} {r['algorithm']:9s} {r['ms_per_it']:9.2f} "
              f"{r['it_per_s']:8.2f} {r['img_per_s']:9.0f}")
    for d, m in dict.fromkeys((r["device"], r["mode"]) for r in rows):
        ok = {r["algorithm"]: r for r in rows if (r["device"], r["mode"]) == (d, m) and r["status"] == "ok"}
        if len(ok) == 2:
            ratio = ok["daso"]["ms_per_it"] / ok["fixmatch"]["ms_per_it"]
            print(f"{d} {m}: DASO / FixMatch time per iteration = {ratio:.3f}x")


def devices(spec: str) -> list[str]:
    """``auto`` = CUDA when present, else CPU; or a comma-separated list (``cpu,cuda``)."""
    if spec == "auto":
        return ["cuda" if torch.cuda.is_available() else "cpu"]
    names = spec.split(",")
    if "cuda" in names and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cpu,cuda or auto (default)")
    p.add_argument("--modes", default="eager", help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--iters", type=int, default=3, help="iterations per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations (compiled modes: >= 3)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mu", type=int, default=2)
    p.add_argument("--arch", default="wrn28_2")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step.json"))
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    if set(modes) - set(MODES):
        p.error(f"--modes: choose from {', '.join(MODES)}")
    rows: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for d in devices(args.device):
        for m in modes:
            warm = args.warmup if m == "eager" else max(args.warmup, 3)
            rows += measure(d, argparse.Namespace(**{**vars(args), "warmup": warm}), m)
            args.out.write_text(json.dumps({"rows": rows}, indent=1))  # partial: a timeout keeps it
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

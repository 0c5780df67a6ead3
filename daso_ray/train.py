"""``python -m daso_ray.train CONFIG.yaml [--set key=value ...] [--seeds N] [--resume DIR]``

Trains one config locally, without Ray. It writes, under ``run.out_dir`` (or ``--out``):
``config.yaml`` (the validated config), ``checkpoints/``, ``metrics.jsonl`` (one line per
evaluation) and ``results.json`` (final metrics, the test median ``eval/top1_median``, the
config). With ``--seeds N`` seed i in 0..N-1 sets both ``run.seed`` and ``data.seed_split``
(equal, as ytaek-oh/daso's single SEED does) in ``<out>/seed_<i>/``, and ``<out>/results.json``
holds mean ± std over the seeds. On a terminal a progress line (``[  120/1000] 12.3 it/s, ETA
71 s``) is redrawn in place between evaluations; piped to a file or a CI log, stdout gets the
evaluation lines only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

from daso_ray.cli import summary as command_summary
from daso_ray.config import Config, from_dict, load_config, to_dict
from daso_ray.errors import UserError, cli_entry
from daso_ray.files import atomic_write_text
from daso_ray.metrics import SUMMARY_KEYS


def run_one(cfg: Config, out: Path, resume: Path | None = None, report=None,
            warmup: Path | None = None) -> dict:
    """Train (or continue) one run in ``out``; its results.json content. ``warmup``: a shared
    warm-up's checkpoint a fresh run starts from (engine.warmup.fork; the caller checked it)."""
    from daso_ray.engine import checkpoint
    from daso_ray.engine.loop import Trainer

    if resume is None and (checkpoint.latest(out) or (out / "results.json").is_file()):
        # Never overwrite a finished run or its checkpoints.
        raise UserError(f"{out} already holds a run — continue it with --resume {out}, or pass "
                        "another --out / run.out_dir")
    progress = Progress(cfg.run.iterations) if report is None else None
    # data/model errors (bad input included) are raised here, before anything is written
    trainer = Trainer(cfg, out, report or _print_report(cfg, progress))
    if progress is not None:
        trainer.on_step = progress.update
    if resume is None and warmup is not None:
        from daso_ray.engine.warmup import fork

        fork(trainer, warmup)
        print(f"{out}: starts at iteration {trainer.step} from the shared warm-up {warmup}")
    if resume is not None:
        trainer.resume(resume)  # the checkpoint is read once, here
        if trainer.step >= cfg.run.iterations and (out / "results.json").is_file():
            # Nothing left to train: leave the finished run as it is (results.json included).
            print(f"note: {out} finished all {cfg.run.iterations} iterations already; "
                  "nothing to resume")
            return json.loads((out / "results.json").read_text())
        if cfg.data.loader == "ffcv" and trainer.data.mode == "jpeg" and cfg.data.num_workers > 1:
            # Raw-pixel FFCV streams resume exactly (ffcv_ops: seeded order and draws).
            print("note: FFCV draws the random crops of JPEG images in unseeded worker threads; "
                  "the resumed run's crops differ from an uninterrupted run's (data.num_workers: 1 "
                  "or data.loader: torch resume bit-identically)")
        print(f"resumed {out} at iteration {trainer.step}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    try:
        return trainer.fit()
    finally:
        if progress is not None:
            progress.clear()


class Progress:
    """``[  120/1000] 12.3 it/s, ETA 71 s``, redrawn in place on ``stream`` — only when it is a
    terminal: a log file or CI output would fill with carriage-return frames."""

    def __init__(self, total: int, stream=None, every: float = 0.5):
        self.stream = sys.stdout if stream is None else stream
        self.total, self.every = total, every
        self.on = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.start = self.first = None  # time and step of the first update (startup excluded)
        self.drawn, self.last = False, 0.0

    def update(self, step: int) -> None:
        if not self.on:
            return
        now = time.perf_counter()
        if self.start is None:
            self.start, self.first = now, step
        if now - self.last < self.every and step < self.total:
            return
        self.last = now
        done, spent = step - self.first, now - self.start
        rate = done / spent if done and spent > 0 else 0.0
        eta = _duration((self.total - step) / rate) if rate else "?"
        self.stream.write(f"\r[{step:>{len(str(self.total))}d}/{self.total}] {rate:.1f} it/s, "
                          f"ETA {eta}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        """Erase the line, so the next print starts on a clean one."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h {s // 60 % 60:02d} min"


def _print_report(cfg: Config, progress: Progress | None = None):
    def report(m: dict, ckpt: str | None) -> None:
        if progress is not None:
            progress.clear()
        extra = f"  ckpt {Path(ckpt).name}" if ckpt else ""
        # A metric over no image is absent (engine/evaluate.py): shown as n/a, never as 0.
        num = lambda key: f"{m[key]:.2f}" if key in m else "n/a"  # noqa: E731
        print(f"[{m['step']:>7d}/{cfg.run.iterations}] top1 {num('eval/top1')}  "
              f"bal {num('eval/balanced_acc')}  tail {num('eval/tail_acc')}  "
              f"loss_u {m.get('train/loss_u', 0):.3f}  mask {m.get('train/mask_ratio', 0):.2f}  "
              f"{m['perf/img_per_s']:.0f} img/s{extra}", flush=True)
    return report


def summarize(results: list[dict]) -> dict:
    """mean ± std (population std over seeds, as the paper's 3-run cells) for SUMMARY_KEYS."""
    out = {}
    for key in SUMMARY_KEYS:
        vals = [r[key] if key in r else r["final"].get(key) for r in results]
        vals = [v for v in vals if v is not None]
        if vals:
            out[key] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "values": vals}
    return out


def _resume_config(run_dir: Path, overrides: list[str]) -> Config:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise UserError(f"--resume: {saved} not found — pass the directory of an earlier run")
    if overrides:
        raise UserError("--resume continues an identical run; --set is not allowed with it")
    return load_config(saved)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.train",
                                description=command_summary("daso_ray.train"))
    p.add_argument("config", nargs="?", help="YAML config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 (split and train seed)")
    p.add_argument("--resume", type=Path, help="run directory to continue from its newest checkpoint")
    p.add_argument("--out", type=Path, help="run directory (default: run.out_dir)")
    p.add_argument("--workers", type=int, help="train on Ray Train with N DDP workers per seed")
    p.add_argument("--gpu", action="store_true", help="with --workers: one GPU per worker (NCCL)")
    p.add_argument("--address", help="with --workers: Ray cluster (default: RAY_ADDRESS or local)")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers: must be >= 1")
    if args.workers is None and (args.gpu or args.address):
        raise UserError("--gpu/--address: only with --workers N (Ray Train)")
    if args.resume is not None:
        cfg = _resume_config(args.resume, args.overrides)
        res = run_one(cfg, args.resume, resume=args.resume)
        print(json.dumps({k: res[k] for k in SUMMARY_KEYS if k in res}))
        return 0
    if args.config is None:
        p.error("CONFIG is required unless --resume is given")
    if args.seeds < 1:
        raise UserError("--seeds: must be >= 1")
    cfg = load_config(args.config, args.overrides)
    out = args.out or Path(cfg.run.out_dir)
    if args.workers is not None:
        return _train_on_ray(cfg, out, args)
    if args.seeds == 1:
        res = run_one(cfg, out)
        print(json.dumps({k: res[k] for k in SUMMARY_KEYS if k in res}))
        return 0
    results = [run_one(seeded(cfg, seed), out / f"seed_{seed}") for seed in range(args.seeds)]
    write_summary(out, cfg, results)
    return 0


def seeded(cfg: Config, seed: int) -> Config:
    raw = to_dict(cfg)
    raw["run"]["seed"], raw["data"]["seed_split"] = seed, seed
    return from_dict(raw)


def write_summary(out: Path, cfg: Config, results: list[dict]) -> None:
    summary = {"seeds": list(range(len(results))), "summary": summarize(results),
               "config": to_dict(cfg)}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1))
    for k, v in summary["summary"].items():
        print(f"{k}: {v['mean']:.2f} ± {v['std']:.2f}")


def _train_on_ray(cfg: Config, out: Path, args) -> int:
    """Each seed is one Ray Train run of ``--workers`` DDP workers (gloo on CPU, NCCL on GPU)."""
    if (out / "results.json").is_file():
        raise UserError(f"{out} already holds a run — pass another --out")
    results = train_on_ray([seeded(cfg, s) for s in range(args.seeds)], out, args.workers,
                           args.gpu, args.address)
    write_summary(out, cfg, results)
    return 0


def train_on_ray(cfgs: list[Config], out: Path, workers: int, gpu: bool,
                 address: str | None) -> list[dict]:
    """One Ray Train run of ``workers`` DDP workers per config; each run's results in order. The
    gateway to ``ray_jobs`` for callers that must stay Ray-free (the pipeline)."""
    from daso_ray.ray_jobs.final import train_seeds

    return train_seeds(cfgs, out, workers, gpu, address)


if __name__ == "__main__":
    raise SystemExit(main())

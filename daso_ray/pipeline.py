"""End-to-end workflow shared by ``pipelines/*.py``: prepare -> search -> verify (winners vs the
baseline on held-out seeds) -> export -> final multi-seed training -> results table. Every stage
is skipped when its output exists, so a killed pipeline is simply run again (the search continues
with ``--resume``, verify keeps its finished runs, a final run resumes from its newest checkpoint).

Outputs under ``--work`` (default ``runs/pipelines/<name>``): ``best/`` (exported configs),
``final/<config>/`` (seed runs + results.json), ``results.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from daso_ray.errors import UserError, cli_entry
from daso_ray.files import atomic_write_text
from daso_ray.metrics import TEST_MEDIAN

SUMMARY = TEST_MEDIAN


def parse(argv, description: str, default_work: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--src", help="source files of the dataset (not needed once data is prepared)")
    p.add_argument("--address", help="Ray cluster (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--smoke", action="store_true", help="tiny budget everywhere: a quick check")
    p.add_argument("--seeds", type=int, default=3, help="final-training seeds per winner")
    p.add_argument("--workers", type=int, help="final training on Ray Train with N DDP workers")
    p.add_argument("--gpu", action="store_true", help="with --workers: one GPU per worker")
    p.add_argument("--work", type=Path, default=Path(default_work), help="pipeline output folder")
    return p.parse_args(argv)


def prepare(dataset: str, root: Path, src: str | None) -> None:
    if (root / "manifest.json").is_file():
        print(f"[prepare] {root} ready — skipped")
        return
    from daso_ray.prepare import main as prepare_main

    args = [dataset, "--out", str(root)] + (["--src", src] if src else [])
    if dataset != "digits" and not src:
        raise UserError(f"[prepare] {root} is missing — pass --src <{dataset} source folder>")
    if prepare_main(args) != 0:
        raise UserError(f"[prepare] {dataset} failed (see the error above)")


def search(search_file: Path, name: str, args) -> Path:
    from daso_ray.search import main as search_main
    from daso_ray.study.load import load_search

    spec, _ = load_search(search_file)
    run_dir = Path(spec.storage) / name
    if (run_dir / "leaderboard.json").is_file():
        print(f"[search] {run_dir} finished — skipped")
        return run_dir
    argv = [str(search_file), "--name", name]
    argv += ["--resume"] if (run_dir / "search.json").is_file() else []
    argv += ["--smoke"] if args.smoke else []
    argv += ["--address", args.address] if args.address else []
    if search_main(argv) != 0:
        raise UserError(f"[search] {search_file} failed (see above); rerun to resume it")
    return run_dir


def verify(run_dir: Path, args) -> None:
    """Winners vs baseline on held-out seeds (default 5; ``--smoke``: 2), before export reads the
    verdicts. Skipped once verify.json exists; a killed verify keeps its finished runs."""
    from daso_ray.verify import main as verify_main

    if (run_dir / "verify.json").is_file():
        print(f"[verify] {run_dir / 'verify.json'} exists — skipped")
        return
    argv = [str(run_dir)] + (["--smoke"] if args.smoke else [])
    argv += ["--address", args.address] if args.address else []
    if verify_main(argv) != 0:
        raise UserError(f"[verify] {run_dir} failed (see above); rerun to continue it")


def export(run_dir: Path, out: Path) -> list[Path]:
    from daso_ray.export import export as export_configs

    found = sorted(out.glob("*.yaml"))
    if found:
        print(f"[export] {out} holds {len(found)} configs — skipped")
        return found
    return sorted(r["path"] for r in export_configs(run_dir, out))


def final(configs: list[Path], work: Path, args) -> dict[str, dict]:
    """Train each exported config over ``--seeds`` seeds; {config stem: summary}."""
    from daso_ray.config import load_config
    from daso_ray.train import run_one, seeded, summarize, write_summary

    out = {}
    for path in configs:
        run_dir = work / "final" / path.stem
        done = run_dir / "results.json"
        overrides = _smoke_overrides(path) if args.smoke else []
        cfg = load_config(path, overrides)
        if not done.is_file():
            cfgs = [seeded(cfg, s) for s in range(args.seeds)]
            if args.workers:
                from daso_ray.train import train_on_ray

                results = train_on_ray(cfgs, run_dir, args.workers, args.gpu, args.address)
            else:
                results = [_local(run_one, c, run_dir / f"seed_{i}") for i, c in enumerate(cfgs)]
            write_summary(run_dir, cfg, results)
        else:
            print(f"[final] {run_dir} finished — skipped")
        out[path.stem] = json.loads(done.read_text()).get("summary") or summarize([])
    return out


def _local(run_one, cfg, seed_dir: Path) -> dict:
    from daso_ray.engine import checkpoint

    if (seed_dir / "results.json").is_file():
        return json.loads((seed_dir / "results.json").read_text())
    resume = seed_dir if checkpoint.latest(seed_dir) else None
    return run_one(cfg, seed_dir, resume=resume)


def _smoke_overrides(path: Path) -> list[str]:
    import yaml

    period = yaml.safe_load(path.read_text())["run"]["eval_period"]
    return [f"run.iterations={2 * period}", f"run.checkpoint_period={2 * period}"]


def table(summaries: dict[str, dict], work: Path, title: str) -> str:
    lines = [f"# {title}", "", f"| config | {SUMMARY} (mean ± std) | seeds |", "|---|---|---|"]
    for stem, s in summaries.items():
        v = s.get(SUMMARY)
        cell = f"{v['mean']:.2f} ± {v['std']:.2f}" if v else "n/a"
        lines.append(f"| {stem} | {cell} | {len(v['values']) if v else 0} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(work / "results.md", text)
    atomic_write_text(work / "results.json", json.dumps(summaries, indent=1))
    return text


def _in_repo(path: str) -> Path:
    """``search_spaces/...`` from the working directory, else from this checkout."""
    here = Path(path)
    return here if here.is_file() else Path(__file__).resolve().parents[1] / path


@cli_entry
def main(bench: dict, doc: str, argv: list[str] | None = None) -> int:
    """``bench``: dataset, root, search (file), name, title — one per ``pipelines/*.py``."""
    args = parse(argv, doc.split("\n")[0], f"runs/pipelines/{bench['name']}")
    work = args.work / ("smoke" if args.smoke else "full")
    work.mkdir(parents=True, exist_ok=True)
    prepare(bench["dataset"], Path(bench["root"]), args.src)
    name = f"{bench['name']}_smoke" if args.smoke else bench["name"]
    run_dir = search(_in_repo(bench["search"]), name, args)
    verify(run_dir, args)
    configs = export(run_dir, work / "best")
    print(table(final(configs, work, args), work, f"{bench['title']}: winners after final training"))
    return 0

"""``python -m daso_ray.report RUN_DIR [--out report.html]``

One self-contained HTML file (inline SVG, no scripts, no network) about a search run, finished or
still running. Reads only the run directory (and the prepared data's ``manifest.json`` for class
names, when it is on this machine). Sections, top to bottom:

- the verdict: ``verify.json`` of ``python -m daso_ray.verify`` — per study the winner's and the
  baseline's per-seed values on held-out seeds, the mean gain, its 95% interval and the verdict
  (adopt / keep_baseline / inconclusive); or a "not verified" note when there is no verify.json;
- the per-study leaderboard: objective ± its standard error over seeds, the baseline trial marked;
- the winners side by side across scenarios;
- slice plots: the objective against each searched parameter (finished trials filled, ASHA-stopped
  hollow, the baseline a diamond);
- learning curves of the best trials (ASHA's stops end in a cross);
- per-class test recall of each winner ordered head -> tail (the DASO paper's argument: pseudo-
  label bias hurts the tail classes), labelled with the dataset's class names;
- each winner's test confusion matrix (row-normalised heatmap, up to 50 classes);
- parameter importance (fANOVA over the finished trials).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from html import escape
from pathlib import Path

from daso_ray import storage, svg
from daso_ray.cli import summary as command_summary
from daso_ray.errors import UserError, cli_entry
from daso_ray.files import atomic_write_text
from daso_ray.metrics import GROUPS, TEST_MEDIAN
from daso_ray.report_sections import (
    class_names,
    confusion_section,
    curves_section,
    figs,
    importance,
    importance_section,
    left,
    num,
    recall_section,
    scenarios_of,
    slice_section,
    table,
    winners,
)
from daso_ray.study.leaderboard import leaderboard, params_text, read_meta, value_text

__all__ = ["importance", "main", "render", "verdict_of"]  # importance: re-exported for callers

TEST = TEST_MEDIAN
GROUP_KEYS = tuple(f"eval/{g}_acc" for g in GROUPS)
RULE = ("adopt when the 95% interval's lower bound is above 0, keep_baseline when its upper "
        "bound is below 0, inconclusive otherwise")
CSS = ("body{font-family:sans-serif;margin:24px;max-width:1400px}table{border-collapse:collapse;"
       "margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
       "th{background:#f3f3f3}td.l{text-align:left}h2{border-bottom:2px solid #333;margin-top:32px}"
       ".fig{display:inline-block;margin:4px;vertical-align:top}td.base{background:#fde9c8}"
       ".adopt{background:#d4f0d4}.keep_baseline{background:#f6d2d2}.inconclusive{background:#f2f2c4}"
       ".warn{background:#fff3cd;border:1px solid #e0c36c;padding:8px}")


def verdict_of(ci) -> str | None:
    """The verdict a 95% interval of the gain (winner − baseline) implies, None if malformed."""
    if not (isinstance(ci, list | tuple) and len(ci) == 2
            and all(isinstance(x, int | float) and math.isfinite(x) for x in ci)):
        return None
    lo, hi = ci
    return "adopt" if lo > 0 else "keep_baseline" if hi < 0 else "inconclusive"


def read_verify(run_dir: Path) -> dict | str | None:
    """verify.json (a dict with a ``studies`` dict); None when there is none; a reason when it
    cannot be read — the report still renders, with the not-verified note."""
    path = Path(run_dir) / "verify.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"{path} is unreadable ({type(err).__name__})"
    ok = isinstance(data, dict) and isinstance(data.get("studies"), dict)
    return data if ok else f"{path} has no 'studies'"


def _signed(v) -> str:
    return ("+" if isinstance(v, int | float) and v > 0 else "") + num(v)


def _values(v: dict, who: str) -> list:
    vals = (v.get(who) or {}).get("values") if isinstance(v.get(who), dict) else None
    return vals if isinstance(vals, list) else []


def verification_section(run_dir: Path, board: dict) -> str:
    """The verdict of ``python -m daso_ray.verify`` per study, or how to get one."""
    cmd = f"python -m daso_ray.verify {run_dir}"
    out = ["<h2>Verdict: winner vs baseline on held-out seeds</h2>"]
    doc = read_verify(run_dir)
    if not isinstance(doc, dict):
        why = "" if doc is None else f" ({doc})"
        return "".join(out) + (
            f'<p class="warn"><b>not verified</b>{escape(why)} — run <code>{escape(cmd)}</code>: it '
            "retrains each study's winner and the baseline on new seeds. Gains read off the "
            "leaderboard below are measured on the seeds the winner was selected on, so they are "
            "optimistic.</p>")
    data, level = doc["studies"], doc.get("level", 0.95)
    level = f"{level:.0%}" if isinstance(level, float) else "95%"
    out.append(f"<p>Verdict rule: {RULE}. Gain = winner − baseline, mean over the held-out seeds "
               f"(paired seed by seed), with its {level} interval.</p>")
    if doc.get("smoke"):  # verify --smoke trains a tiny budget: it checks the path, not the winner
        out.append('<p class="warn">verify ran with --smoke (a tiny budget): a check of the '
                   "path, not a verdict to trust.</p>")
    header = ["study", "verdict", "metric", "mean gain", "s.e.", f"{level} interval", "seeds",
              "iterations", "winner", "parameters", "note"]
    rows, seed_tables = [], []
    for study in [*board, *(s for s in data if s not in board)]:
        v = data.get(study)
        if not isinstance(v, dict):
            rows.append([study, '<td class="l">not verified</td>', *["–"] * 9])
            continue
        ci, rule = v.get("ci"), verdict_of(v.get("ci"))
        verdict = v.get("verdict") if isinstance(v.get("verdict"), str) else rule or "–"
        # A verdict that disagrees with its own interval is shown, not silently corrected.
        clash = f" (interval says {rule})" if rule and rule != verdict else ""
        interval = f"[{_signed(ci[0])}, {_signed(ci[1])}]" if rule else "–"
        winner = v.get("winner") if isinstance(v.get("winner"), dict) else {}
        params = winner.get("params") if isinstance(winner.get("params"), dict) else {}
        seeds = v.get("seeds") if isinstance(v.get("seeds"), list) else []
        rows.append([study, f'<td class="{escape(verdict)}"><b>{escape(verdict)}</b>{escape(clash)}</td>',
                     str(v.get("metric", "–")), _signed(v.get("gain")), num(v.get("stderr")),
                     interval, str(len(seeds) or "–"), str(v.get("iterations", "–")),
                     str(winner.get("trial_id", "–")), left(params_text({"params": params}, ", ")),
                     left(str(v.get("note") or ""))])
        if _values(v, "baseline") or _values(v, "winner"):
            seed_tables.append(_seed_table(study, v, seeds))
    return "".join(out) + table(header, rows) + figs(seed_tables)


def _seed_table(study: str, v: dict, seeds: list) -> str:
    base, win = _values(v, "baseline"), _values(v, "winner")
    rows = []
    for i in range(max(len(base), len(win))):
        b, w = (base[i] if i < len(base) else None), (win[i] if i < len(win) else None)
        diff = w - b if isinstance(b, int | float) and isinstance(w, int | float) else None
        rows.append([str(seeds[i]) if i < len(seeds) else f"#{i}", num(b), num(w), _signed(diff)])
    good = [(b, w) for b, w in zip(base, win, strict=False)
            if isinstance(b, int | float) and isinstance(w, int | float)]
    if good:
        rows.append(["mean", num(statistics.fmean(b for b, _ in good)),
                     num(statistics.fmean(w for _, w in good)), _signed(v.get("gain"))])
    return f"<h4>{escape(study)} per seed</h4>" + table(["seed", "baseline", "winner", "gain"], rows)


def leaderboard_section(board: dict, meta: dict, top: int = 10) -> str:
    seeds = meta.get("seeds", 1)
    out = ["<h2>Leaderboard</h2>",
           f"<p>objective <b>{escape(meta['objective']['metric'])}</b> "
           f"({escape(meta['objective']['type'])}, {escape(meta['objective']['mode'])}): mean over "
           f"{seeds} seed(s) ± its standard error; a trial is finished at {meta['iterations']} "
           f"iterations. Test columns: {TEST}. The baseline (the base config's values) is "
           "highlighted, and listed even when it ranks below the top.</p>"]
    for study, b in board.items():
        scns = scenarios_of(study, meta)
        header = ["#", "trial", "objective ± s.e.", "step"] + [f"{s} test" for s in scns] + ["parameters"]
        rows = [_row(str(rank), t, scns) for rank, t in enumerate(b["finished"], start=1)
                if rank <= top or t["baseline"]]
        rows += [_row("stop", t, scns) for i, t in enumerate(b["stopped"]) if i < top or t["baseline"]]
        out.append(f"<h3>{escape(study)}: {len(b['finished'])} finished, {len(b['stopped'])} "
                   "stopped early by ASHA (or running)</h3>" + table(header, rows))
    return "".join(out)


def _row(rank: str, t: dict, scns: list[str]) -> list[str]:
    tests = [num(t["last"].get(f"{s}/{TEST}")) for s in scns]
    trial = (f'<td class="l base"><b>{escape(t["trial_id"])}</b> baseline</td>' if t["baseline"]
             else left(t["trial_id"]))
    return [rank, trial, value_text(t), str(t["step"]), *tests, left(params_text(t, ", "))]


def comparison_section(board: dict, meta: dict) -> str:
    wins = winners(board, meta)
    names = sorted({k for _, _, t in wins for k in t["params"]})
    header = ["scenario", "trial", "objective", TEST, *GROUPS]
    rows = []
    for scn, _, t in wins:
        m = t["last"]
        rows.append([scn, t["trial_id"], value_text(t), num(m.get(f"{scn}/{TEST}")),
                     *(num(m.get(f"{scn}/{g}")) for g in GROUP_KEYS),
                     *(num(t["params"].get(n)) for n in names)])
    chart = svg.bar_chart([s for s, _, _ in wins], [
        {"label": g.split("/")[1], "values": [t["last"].get(f"{s}/{g}") for s, _, t in wins]}
        for g in (TEST, *GROUP_KEYS)], "winners: test accuracy by scenario", "accuracy %", (0.0, 100.0))
    return ("<h2>Winners across scenarios</h2>"
            + table(header + [n.split(".")[-1] for n in names], rows) + figs([chart]))


def render(run_dir: Path) -> str:
    meta = read_meta(run_dir)
    board = leaderboard(run_dir)
    names = class_names(meta)
    n = sum(len(b["finished"]) + len(b["stopped"]) for b in board.values())
    head = (f"<h1>daso_ray search <code>{escape(meta['name'])}</code></h1><p>search file "
            f"{escape(meta['source'])} (sha256 {meta['sha256'][:12]}), started {meta['started']}, "
            f"{n} trials, report written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>")
    body = (head + verification_section(run_dir, board) + leaderboard_section(board, meta)
            + comparison_section(board, meta) + slice_section(board, meta) + curves_section(board)
            + recall_section(board, meta, names) + confusion_section(board, meta, names)
            + importance_section(board, meta))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(meta['name'])}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.report",
                                description=command_summary("daso_ray.report"))
    p.add_argument("run_dir", help="<storage>/<name> of a search run (a directory or s3://...)")
    p.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/report.html)")
    args = p.parse_args(argv)
    run_dir = storage.local_run_dir(args.run_dir)  # a storage URI is synced down first
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory — pass <storage>/<name> of a search")
    out = args.out or run_dir / "report.html"
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder — pass a file path such as {out / 'report.html'}")
    html = render(run_dir)
    try:  # a new folder for the report is fine; a file in its way or no permission is the user's
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, html)
    except OSError as err:
        raise UserError(f"--out: cannot write {out} ({err.strerror or err}) — pass a path in a "
                        "folder you can write") from None
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m daso_ray.report RUN_DIR [--out report.html]``

One self-contained HTML file (inline SVG, no scripts, no network) about a search run, finished or
still running: the per-scenario leaderboard, learning curves of the best trials (ASHA's early stops
show as short dashed curves), per-class test recall of each winner ordered head -> tail (the DASO
paper's argument: pseudo-label bias hurts the tail classes), parameter importance (fANOVA over the
finished trials) and the winners side by side across scenarios. Reads only the run directory.
"""

from __future__ import annotations

import argparse
import math
import time
from html import escape
from pathlib import Path

from daso_ray import storage, svg
from daso_ray.data.ffcv_io import atomic_write_text
from daso_ray.errors import UserError, cli_entry
from daso_ray.study.leaderboard import fmt, leaderboard, params_text, read_meta

TEST = "eval/top1_median20"
GROUPS = ("eval/head_acc", "eval/medium_acc", "eval/tail_acc")
CSS = ("body{font-family:sans-serif;margin:24px;max-width:1400px}table{border-collapse:collapse;"
       "margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
       "th{background:#f3f3f3}td.l{text-align:left}h2{border-bottom:2px solid #333;margin-top:32px}"
       ".fig{display:inline-block;margin:4px}")


def scenarios_of(study: str, meta: dict) -> list[str]:
    names = [s["name"] for s in meta["spec"]["scenarios"]]
    return names if study == "robust" else [study]


def num(v) -> str:
    return fmt(v) if isinstance(v, int | float) and math.isfinite(v) else "–"


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{escape(c)}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def left(text: str) -> str:
    return f'<td class="l">{escape(text)}</td>'


def leaderboard_section(board: dict, meta: dict, top: int = 10) -> str:
    out = ["<h2>Leaderboard</h2>",
           f"<p>objective <b>{escape(meta['objective']['metric'])}</b> "
           f"({escape(meta['objective']['type'])}, {escape(meta['objective']['mode'])}); a trial is "
           f"finished at {meta['iterations']} iterations. Test columns: {TEST}.</p>"]
    for study, b in board.items():
        scns = scenarios_of(study, meta)
        header = ["#", "trial", "objective", "step"] + [f"{s} test" for s in scns] + ["parameters"]
        rows = []
        for rank, t in enumerate(b["finished"][:top], start=1):
            rows.append(_row(str(rank), t, scns))
        rows += [_row("stop", t, scns) for t in b["stopped"][:top]]
        out.append(f"<h3>{escape(study)}: {len(b['finished'])} finished, {len(b['stopped'])} "
                   "stopped early (or running)</h3>" + table(header, rows))
    return "".join(out)


def _row(rank: str, t: dict, scns: list[str]) -> list[str]:
    tests = [num(t["last"].get(f"{s}/{TEST}")) for s in scns]
    return [rank, t["trial_id"], num(t["last"].get("objective")), str(t["step"]), *tests,
            left(params_text(t, ", "))]


def curves_section(board: dict) -> str:
    figs = []
    for study, b in board.items():
        series = [{"label": f"{t['trial_id']} {num(t['last'].get('objective'))}", "points": t["curve"]}
                  for t in b["finished"][:4]]
        series += [{"label": f"{t['trial_id']} (stopped)", "points": t["curve"], "dashed": True}
                   for t in b["stopped"][:3]]
        figs.append(svg.line_chart(series, f"{study}: objective of the best trials", "iteration",
                                   "objective"))
    return "<h2>Learning curves</h2>" + "".join(f'<div class="fig">{f}</div>' for f in figs)


def winners(board: dict, meta: dict) -> list[tuple[str, str, dict]]:
    """(scenario, study, winning trial) for every scenario that has a finished trial."""
    out = []
    for study, b in board.items():
        if b["finished"]:
            out += [(s, study, b["finished"][0]) for s in scenarios_of(study, meta)]
    return out


def recall_section(board: dict, meta: dict) -> str:
    figs = []
    for scn, study, best in winners(board, meta):
        recall = best["last"].get(f"{scn}/eval/per_class_recall")
        counts = best["last"].get(f"{scn}/data/labeled_counts") or list(range(len(recall or []), 0, -1))
        if not recall:
            continue
        order = sorted(range(len(recall)), key=lambda c: -counts[c])  # stable: head first
        series = [{"label": f"winner {best['trial_id']}", "values": [recall[c] for c in order]}]
        worst = board[study]["finished"][-1]
        other = worst["last"].get(f"{scn}/eval/per_class_recall")
        if worst is not best and other:
            series.append({"label": f"worst {worst['trial_id']}", "values": [other[c] for c in order]})
        cats = [f"c{c}" for c in order]
        figs.append(svg.bar_chart(cats, series, f"{scn}: test recall per class, head → tail",
                                  "recall %", (0.0, 100.0)))
    return ("<h2>Per-class recall (head → tail)</h2><p>Classes ordered by labeled count, most "
            "first; the winner of each scenario against its worst finished trial.</p>"
            + "".join(f'<div class="fig">{f}</div>' for f in figs))


def importance(trials: list[dict], params: dict, mode: str) -> dict[str, float]:
    """fANOVA importance of the searched parameters over finished trials ({} if too few)."""
    import optuna

    from daso_ray.study.space import distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for t in trials:
        value = t["last"].get("objective")
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        ps = {k: v for k, v in t["params"].items() if k in params}
        study.add_trial(optuna.trial.create_trial(
            params=ps, distributions={k: distribution(params[k]) for k in ps}, value=value))
    if len(study.trials) < 3:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):  # e.g. every trial has the same value
        return {}


def importance_section(board: dict, meta: dict) -> str:
    figs, params = [], meta["spec"]["params"]
    for study, b in board.items():
        imp = importance(b["finished"], params, meta["objective"]["mode"])
        if not imp:
            figs.append(svg.empty(f"{study}: parameter importance (needs 3 finished trials)"))
            continue
        names = list(imp)
        figs.append(svg.bar_chart([n.split(".")[-1] for n in names],
                                  [{"label": "fANOVA", "values": [imp[n] for n in names]}],
                                  f"{study}: parameter importance", "share of variance", (0.0, 1.0)))
    return "<h2>Parameter importance</h2>" + "".join(f'<div class="fig">{f}</div>' for f in figs)


def comparison_section(board: dict, meta: dict) -> str:
    wins = winners(board, meta)
    names = sorted({k for _, _, t in wins for k in t["params"]})
    header = ["scenario", "trial", "objective", TEST, "head", "medium", "tail"]
    rows = []
    for scn, _, t in wins:
        m = t["last"]
        rows.append([scn, t["trial_id"], num(m.get("objective")), num(m.get(f"{scn}/{TEST}")),
                     *(num(m.get(f"{scn}/{g}")) for g in GROUPS),
                     *(num(t["params"].get(n)) for n in names)])
    chart = svg.bar_chart([s for s, _, _ in wins], [
        {"label": g.split("/")[1], "values": [t["last"].get(f"{s}/{g}") for s, _, t in wins]}
        for g in (TEST, *GROUPS)], "winners: test accuracy by scenario", "accuracy %", (0.0, 100.0))
    return ("<h2>Winners across scenarios</h2>"
            + table(header + [n.split(".")[-1] for n in names], rows) + f'<div class="fig">{chart}</div>')


def render(run_dir: Path) -> str:
    meta = read_meta(run_dir)
    board = leaderboard(run_dir)
    n = sum(len(b["finished"]) + len(b["stopped"]) for b in board.values())
    head = (f"<h1>daso_ray search <code>{escape(meta['name'])}</code></h1><p>search file "
            f"{escape(meta['source'])} (sha256 {meta['sha256'][:12]}), started {meta['started']}, "
            f"{n} trials, report written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>")
    body = (head + leaderboard_section(board, meta) + comparison_section(board, meta)
            + curves_section(board) + recall_section(board, meta) + importance_section(board, meta))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(meta['name'])}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.report", description=__doc__.split("\n")[2])
    p.add_argument("run_dir", help="<storage>/<name> of a search run (a directory or s3://...)")
    p.add_argument("--out", type=Path, help="HTML file (default: RUN_DIR/report.html)")
    args = p.parse_args(argv)
    run_dir = storage.local_run_dir(args.run_dir)  # a storage URI is synced down first
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory — pass <storage>/<name> of a search")
    out = args.out or run_dir / "report.html"
    atomic_write_text(out, render(run_dir))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

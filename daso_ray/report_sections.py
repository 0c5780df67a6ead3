"""Figure sections of the HTML report (``python -m daso_ray.report``) and the HTML helpers they
share with :mod:`daso_ray.report`: learning curves, slice plots, per-class recall, the winners'
confusion matrices and parameter importance. Each section is a function of the leaderboard and
``search.json`` returning an HTML fragment.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from daso_ray import svg
from daso_ray.metrics import CONFUSION_KEY
from daso_ray.study.leaderboard import fmt

MAX_HEATMAP_CLASSES = 50  # beyond this a cell is a few pixels: unreadable, and a huge SVG


def num(v) -> str:
    return fmt(v) if isinstance(v, int | float) and math.isfinite(v) else "–"


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table; a cell that already is ``<td ...>`` markup is kept, any other is escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{escape(c)}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def left(text: str) -> str:
    return f'<td class="l">{escape(text)}</td>'


def figs(items: list[str]) -> str:
    return "".join(f'<div class="fig">{f}</div>' for f in items)


def scenarios_of(study: str, meta: dict) -> list[str]:
    names = [s["name"] for s in meta["spec"]["scenarios"]]
    return names if study == "robust" else [study]


def winners(board: dict, meta: dict) -> list[tuple[str, str, dict]]:
    """(scenario, study, winning trial) for every scenario that has a finished trial."""
    out = []
    for study, b in board.items():
        if b["finished"]:
            out += [(s, study, b["finished"][0]) for s in scenarios_of(study, meta)]
    return out


def class_names(meta: dict) -> list[str] | None:
    """The prepared dataset's class names (``<data.root>/manifest.json``), or None when the data
    is not on this machine (a report written on a laptop for a cluster's run)."""
    root = meta.get("base", {}).get("data", {}).get("root")
    if not isinstance(root, str) or "://" in root:
        return None
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    names = manifest.get("class_names") if isinstance(manifest, dict) else None
    k = manifest.get("num_classes", len(names or [])) if isinstance(manifest, dict) else 0
    ok = isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names)
    return names if ok else None


def class_labels(names: list[str] | None, k: int) -> list[str]:
    """One label per class: its name, else ``c<i>``. A name that is only its own index (the
    CIFAR sources, STL-10 without class_names.txt) reads as a number on an axis, so it stays
    ``c<i>`` too."""
    if names is None or len(names) != k:
        return [f"c{i}" for i in range(k)]
    return [f"c{i}" if n == str(i) else n for i, n in enumerate(names)]


def curves_section(board: dict) -> str:
    charts = []
    for study, b in board.items():
        shown = b["finished"][:4] + [t for t in b["finished"][4:] if t["baseline"]]
        series = [{"label": f"{t['trial_id']} {num(t['last'].get('objective'))}"
                   + (" (base)" if t["baseline"] else ""), "points": t["curve"]} for t in shown]
        # Short dashed curves ending in a cross: where ASHA stopped a trial (step < iterations).
        series += [{"label": f"{t['trial_id']} (stopped)", "points": t["curve"], "dashed": True,
                    "stopped": True} for t in b["stopped"][:3]]
        charts.append(svg.line_chart(series, f"{study}: objective of the best trials", "iteration",
                                     "objective"))
    return ("<h2>Learning curves</h2><p>The best finished trials (and the baseline) solid; the "
            "best trials that stopped short of the budget dashed, a cross where ASHA stopped them "
            "(a trial still running also ends short).</p>" + figs(charts))


def slice_section(board: dict, meta: dict) -> str:
    """Objective vs each searched parameter: where the good values lie, per study."""
    params, charts = meta["spec"]["params"], []
    for study, b in board.items():
        for name, p in params.items():
            charts.append(_slice(study, name, p, b))
    return ("<h2>Slice plots</h2><p>The objective of every trial against each searched parameter "
            "(log axis where the parameter is searched on a log scale). Filled: finished trials; "
            "hollow: trials stopped by ASHA — their value is the objective when they stopped, a "
            "lower-fidelity value. The diamond is the baseline (the base config's values).</p>"
            + figs(charts))


def _slice(study: str, name: str, p: dict, b: dict) -> str:
    cats = None
    if p.get("type") == "choice":
        cats = [json.dumps(v) for v in p.get("values") or []]

    def x_of(t):
        v = t["params"].get(name)
        if cats is not None:  # by its JSON text: True and 1 are different choices
            return cats.index(json.dumps(v)) if json.dumps(v) in cats else None
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None

    def points(trials):
        out = [(x_of(t), t["last"].get("objective"), f"{t['trial_id']} {name.split('.')[-1]}="
                f"{fmt(t['params'].get(name))}: {num(t['last'].get('objective'))} at step "
                f"{t['step']}") for t in trials]
        return [pt for pt in out if pt[0] is not None]

    base = [t for t in b["finished"] + b["stopped"] if t["baseline"]]
    series = [
        {"label": "finished", "points": points([t for t in b["finished"] if not t["baseline"]]),
         "color": svg.PALETTE[0]},
        {"label": "stopped (ASHA)", "points": points([t for t in b["stopped"] if not t["baseline"]]),
         "color": svg.PALETTE[0], "hollow": True},
        {"label": "baseline", "points": points(base), "color": svg.PALETTE[3], "marker": "diamond",
         "hollow": any(t is base[0] for t in b["stopped"]) if base else False},
    ]
    labels = [fmt(json.loads(c)) for c in cats] if cats is not None else None
    return svg.scatter(series, f"{study}: objective vs {name.split('.')[-1]}", name, "objective",
                       log_x=bool(p.get("log")) and cats is None, categories=labels)


def recall_section(board: dict, meta: dict, names: list[str] | None) -> str:
    charts = []
    for scn, study, best in winners(board, meta):
        recall = best["last"].get(f"{scn}/eval/per_class_recall")
        if not recall:
            continue
        counts = best["last"].get(f"{scn}/data/labeled_counts") or list(range(len(recall), 0, -1))
        order = sorted(range(len(recall)), key=lambda c: -counts[c])  # stable: head first
        series = [{"label": f"winner {best['trial_id']}", "values": [recall[c] for c in order]}]
        worst = board[study]["finished"][-1]
        other = worst["last"].get(f"{scn}/eval/per_class_recall")
        if worst is not best and other:
            series.append({"label": f"worst {worst['trial_id']}", "values": [other[c] for c in order]})
        labels = class_labels(names, len(recall))
        charts.append(svg.bar_chart([labels[c] for c in order], series,
                                    f"{scn}: test recall per class, head → tail", "recall %",
                                    (0.0, 100.0)))
    return ("<h2>Per-class recall (head → tail)</h2><p>Classes ordered by labeled count, most "
            "first; the winner of each scenario against its worst finished trial.</p>" + figs(charts))


def confusion_section(board: dict, meta: dict, names: list[str] | None) -> str:
    """The winner's test confusion matrix per scenario (summed over the trial's seeds)."""
    charts, notes = [], []
    for scn, _, best in winners(board, meta):
        mat = best["last"].get(f"{scn}/{CONFUSION_KEY}")
        if not isinstance(mat, list) or not mat:
            notes.append(f"{scn}: the winner {best['trial_id']} logged no confusion matrix (runs "
                         "before it was logged at the last evaluation)")
        elif len(mat) > MAX_HEATMAP_CLASSES:
            notes.append(f"{scn}: {len(mat)} classes — not drawn (more than "
                         f"{MAX_HEATMAP_CLASSES}); the matrix is in the trial's result.json")
        else:
            charts.append(svg.heatmap(mat, class_labels(names, len(mat)),
                                      f"{scn}: winner {best['trial_id']}, test confusion"))
    note = "".join(f"<p>{escape(n)}</p>" for n in notes)
    return ("<h2>Confusion matrices of the winners</h2><p>Test set at the last iteration, summed "
            "over the trial's seeds; rows are the true class, columns the prediction, each row "
            "normalised to 100% (cell text: % of the row; hover for counts).</p>" + note
            + figs(charts))


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
        try:
            study.add_trial(optuna.trial.create_trial(
                params=ps, distributions={k: distribution(params[k]) for k in ps}, value=value))
        except ValueError:  # a value outside the space (a hand-edited search.json): left out
            continue
    if len(study.trials) < 3:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError):  # e.g. every trial has the same value
        return {}


def importance_section(board: dict, meta: dict) -> str:
    charts, params = [], meta["spec"]["params"]
    for study, b in board.items():
        imp = importance(b["finished"], params, meta["objective"]["mode"])
        if not imp:
            charts.append(svg.empty(f"{study}: parameter importance (needs 3 finished trials)"))
            continue
        keys = list(imp)
        charts.append(svg.bar_chart([n.split(".")[-1] for n in keys],
                                    [{"label": "fANOVA", "values": [imp[n] for n in keys]}],
                                    f"{study}: parameter importance", "share of variance", (0.0, 1.0)))
    return "<h2>Parameter importance</h2>" + figs(charts)

"""Resuming a finished run never loses its results (issue 13, case 9).

``train --resume R`` of a run that finished used to rewrite results.json with an empty ``final``
(the median-20 gone). The kind: finished work rewritten with less. The CLI path leaves the run
byte-identical with a note; the Trainer (also what a retried finished Tune trial runs) keeps the
last logged metrics as its final record.
"""

from __future__ import annotations

import json

from daso_ray.engine.loop import Trainer
from daso_ray.train import run_one
from tests.engine_helpers import tiny_config


def test_resume_of_a_finished_run_is_a_no_op(digits_root, tmp_path, capsys):
    cfg = tiny_config(digits_root, "fixmatch", tmp_path)
    out = tmp_path / "run"
    first = run_one(cfg, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert first["eval/top1_median"] == first["final"]["eval/top1_median"]
    again = run_one(cfg, out, resume=out)
    assert "nothing to resume" in capsys.readouterr().out
    assert again["final"] == first["final"] and again["eval/top1_median"] == first["eval/top1_median"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_trainer_resumed_at_the_end_keeps_its_final_metrics(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "fixmatch", tmp_path)
    out = tmp_path / "run"
    done = Trainer(cfg, out)
    done.fit()
    want = json.loads((out / "results.json").read_text())
    (out / "results.json").unlink()  # as if the process died after the last checkpoint
    again = Trainer(cfg, out)
    again.resume(out)
    got = again.fit()
    assert got["final"] == want["final"] != {}
    assert got["eval/top1_median"] == want["eval/top1_median"]

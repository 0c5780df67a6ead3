"""Ray Train: the per-worker function (DDP around the one training loop) and its driver.

Used by ``ddp`` trials (inside a Tune trial, metrics forwarded by ``TuneReportCallback``) and by
final training (``python -m daso_ray.train ... --workers N``). Every rank calls
``ray.train.report`` at every evaluation (it is a barrier); only rank 0 attaches a checkpoint, and
evaluation metrics are already summed over ranks by the loop, because Ray's ``TuneReportCallback``
forwards rank 0's metrics only.
"""

from __future__ import annotations

from pathlib import Path

import ray.train
import torch
from ray.train.torch import TorchTrainer

from daso_ray.config import from_dict
from daso_ray.dist import Collective
from daso_ray.engine.loop import Trainer
from daso_ray.errors import UserError
from daso_ray.metrics import RECALL_KEYS
from daso_ray.study.objective import Objective, aggregate


def worker_loop(config: dict) -> None:
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = from_dict(config["config"])
    if config["gpu"]:
        import ray.train.torch as rtt

        device = rtt.get_device()
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, int(config["cpu"])))
    scenario, objective = config.get("scenario"), config.get("objective")
    last = {"step": 0}  # the step of the last result this worker reported

    def report(metrics: dict, ckpt: str | None) -> None:
        if scenario is not None:  # a ddp trial: the names and objective of single-mode trials
            out = aggregate(Objective.model_validate(objective), {(scenario, 0): metrics},
                            metrics["step"])
        else:
            out = {k: v for k, v in metrics.items()
                   if isinstance(v, int | float) or k in RECALL_KEYS}
        checkpoint = ray.train.Checkpoint.from_directory(ckpt) if ckpt and rank == 0 else None
        ray.train.report(out, checkpoint=checkpoint)
        last["step"] = metrics["step"]

    trainer = Trainer(cfg, Path(config["run_dir"]), report, Collective(rank, world), device)
    resume = ray.train.get_checkpoint()
    if resume is not None:
        with resume.as_directory() as d:
            trainer.resume(d)
        last["step"] = trainer.step  # reported by the attempt that saved the checkpoint
    try:
        trainer.fit()
    except UserError as err:
        # A ddp trial's failed result goes at this step: past it, ASHA would take the result
        # for a new rung's value. The attribute survives the pickling back to the trial.
        err.reported_step = last["step"]
        raise


def fit_distributed(config: dict, run_dir: str, *, workers: int, gpu: bool, cpu: float, name: str,
                    storage: str, scenario: str | None = None, objective: dict | None = None,
                    in_tune: bool = False, max_failures: int = 0):
    """Run ``worker_loop`` on ``workers`` Ray Train workers; returns the Train ``Result``.

    ``name`` is deterministic (no timestamp): a retried trial finds its own checkpoints and
    Train resumes from them (Ray Train V2 auto-resumes a run
    by name from its storage path).
    """
    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    per_worker = {"CPU": cpu, **({"GPU": 1} if gpu else {})}
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"config": config, "run_dir": run_dir, "gpu": gpu, "cpu": cpu,
                           "scenario": scenario, "objective": objective},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=max_failures)),
    )
    return trainer.fit()

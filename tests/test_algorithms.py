"""Equivalences and state rules of the algorithms: each pins something that went wrong elsewhere
(DASO before its pre-train steps == FixMatch, DebiasPL with λ = 0 == FixMatch, ...)."""

from __future__ import annotations

import math

import pytest
import torch

from daso_ray.algorithms.base import labeled_ce, masked_hard_ce
from daso_ray.algorithms.daso_parts import FeatureQueue, PLDistribution, blend, semantic_pl
from daso_ray.algorithms.semi_bank import MemoryBank
from tests.engine_helpers import same_tensors, tiny_config, train


def test_daso_before_pretrain_equals_fixmatch_bit_for_bit(digits_root, tmp_path):
    """Before P the queue and m̂ are fed but never read: the online model is FixMatch's."""
    fm = train(tiny_config(digits_root, "fixmatch", tmp_path / "fm"), tmp_path / "fm")
    daso = train(tiny_config(digits_root, "daso", tmp_path / "d",
                             algorithm={"daso": {"pretrain_iters": 100, "dist_update_period": 4}}),
                 tmp_path / "d")
    assert same_tensors(fm.model.state_dict(), daso.model.state_dict()) == []
    assert same_tensors(fm.ema.state_dict(), daso.ema.state_dict()) == []
    # and DASO really did maintain its state meanwhile
    assert int(daso.algo.queue.count.sum()) > 0 and int(daso.algo.dist.hist.sum()) == 4 * 16


def test_daso_after_pretrain_differs_from_fixmatch(digits_root, tmp_path):
    fm = train(tiny_config(digits_root, "fixmatch", tmp_path / "fm"), tmp_path / "fm")
    daso = train(tiny_config(digits_root, "daso", tmp_path / "d",
                             algorithm={"daso": {"pretrain_iters": 4, "dist_update_period": 2}}),
                 tmp_path / "d")
    assert same_tensors(fm.model.state_dict(), daso.model.state_dict()) != []


def test_debiaspl_with_lambda_zero_equals_fixmatch(digits_root, tmp_path):
    fm = train(tiny_config(digits_root, "fixmatch", tmp_path / "fm"), tmp_path / "fm")
    dp = train(tiny_config(digits_root, "debiaspl", tmp_path / "dp", algorithm={"debiaspl": {"tau": 0.0}}),
               tmp_path / "dp")
    assert same_tensors(fm.model.state_dict(), dp.model.state_dict()) == []


def test_debiaspl_prior_moves_away_from_uniform(digits_root, tmp_path):
    """USB's port averages over all elements, so its p̄ stays exactly 1/K (microsoft/Semi-supervised-learning
    ``semilearn/imb_algorithms/debiaspl``; docs/algorithms.md, "DebiasPL")."""
    cfg = tiny_config(digits_root, "debiaspl", tmp_path / "dp", algorithm={"debiaspl": {"qhat_m": 0.5}})
    dp = train(cfg, tmp_path / "dp")
    q = dp.algo.qhat
    assert q.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (q - 0.1).abs().max().item() > 1e-3


def test_debiaspl_update_order():
    """Step 1 uses p̄ before the update; step 3 (margin) uses p̄ after; p̄ from RAW probabilities."""
    from daso_ray.algorithms.base import Context, Parts
    from daso_ray.algorithms.debiaspl import DebiasPL
    from daso_ray.config import from_dict

    cfg = from_dict({"algorithm": {"name": "debiaspl", "debiaspl": {"tau": 0.4, "qhat_m": 0.9}}})
    ctx = Context(3, torch.tensor([5, 3, 1]), 10, torch.device("cpu"))
    algo = DebiasPL(cfg, ctx)
    algo.qhat = torch.tensor([0.5, 0.3, 0.2])
    zw = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 1.5]])
    probs = torch.softmax(zw, 1)
    out = algo.pseudo_label(probs, Parts(zw, zw, zw, zw), 0)
    assert torch.allclose(out, torch.softmax(zw - 0.4 * torch.tensor([0.5, 0.3, 0.2]).log(), 1))
    new = 0.9 * torch.tensor([0.5, 0.3, 0.2]) + 0.1 * probs.mean(0)
    assert torch.allclose(algo.qhat, new)
    assert torch.allclose(algo.strong_logits(zw), zw + 0.4 * new.log())


def test_blend_matches_equation_3():
    k, t_dist = 4, 0.5
    dist = PLDistribution(k, period=10, iterations=100, device="cpu")
    dist.hist = torch.tensor([60, 30, 10, 0])
    m = torch.tensor([0.6, 0.3, 0.1, 0.0], dtype=torch.float64)
    expect = (m ** (1 / t_dist)) / (0.6 ** (1 / t_dist))
    ups = dist.upsilon(t_dist)
    assert torch.allclose(ups.double(), expect, atol=1e-7)
    assert ups[0] == 1.0 and ups[3] == 0.0
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]])
    q = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    out = blend(probs, q, ups[probs.argmax(1)])
    assert torch.allclose(out[0], q[0])  # head prediction: υ = 1 -> pure semantic label
    u = float(expect[2])
    assert torch.allclose(out[1], (1 - u) * probs[1] + u * q[1])
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_upsilon_before_any_count_is_zero():
    assert PLDistribution(3, 5, 50, "cpu").upsilon(1.5).tolist() == [0.0, 0.0, 0.0]


def test_mhat_replaced_every_period_not_smoothed():
    dist = PLDistribution(3, period=2, iterations=6, device="cpu")
    dist.observe(torch.tensor([0, 0, 1]), 0)
    assert dist.hist.tolist() == [0, 0, 0]
    dist.observe(torch.tensor([0, 2]), 1)  # (t+1) % 2 == 0: h <- window
    assert dist.hist.tolist() == [3, 1, 1] and dist.window.tolist() == [0, 0, 0]
    dist.observe(torch.tensor([2, 2]), 2)
    dist.observe(torch.tensor([2]), 3)
    assert dist.hist.tolist() == [0, 0, 3]  # replaced, nothing of the old window remains
    dist.observe(torch.tensor([1]), 4)
    dist.observe(torch.tensor([1]), 5)  # t+1 == T_max: no refresh
    assert dist.hist.tolist() == [0, 0, 3] and dist.window.tolist() == [0, 2, 0]


def test_queue_fifo_per_class_and_prototypes():
    q = FeatureQueue(3, 2, [3, 3, 3], "cpu")
    f = torch.arange(16, dtype=torch.float32).view(8, 2)
    q.push(f[:5], torch.tensor([0, 1, 0, 0, 0]))  # class 0 gets rows 0,2,3,4 -> keeps 2,3,4
    assert torch.equal(q.contents(0), f[[2, 3, 4]])
    assert torch.equal(q.contents(1), f[[1]])
    assert torch.equal(q.protos[2], torch.zeros(2))  # never seen: zero prototype
    q.push(f[5:8], torch.tensor([0, 1, 0]))  # class 0: 4,5,7 (FIFO across pushes)
    assert torch.equal(q.contents(0), f[[4, 5, 7]])
    assert torch.allclose(q.protos[0], f[[4, 5, 7]].mean(0))
    assert torch.allclose(q.protos[1], f[[1, 6]].mean(0))
    before = q.protos.clone()
    q.push(f[:1], torch.tensor([1]))
    assert torch.equal(q.protos[0], before[0])  # classes absent from the batch keep c_k


def test_semantic_pl_zero_prototype_scores_zero_similarity():
    protos = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    q = semantic_pl(torch.tensor([[2.0, 0.0]]), protos, t_proto=0.5)
    expect = torch.softmax(torch.tensor([1.0 / 0.5, 0.0]), 0)
    assert torch.allclose(q[0], expect)


def test_unlabeled_loss_divides_by_full_batch_and_la():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    target = torch.tensor([0, 1, 0, 1])
    mask = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert masked_hard_ce(logits, target, mask).item() == pytest.approx(
        -math.log(math.exp(2) / (math.exp(2) + 1)) / 4)
    prior = torch.tensor([0.8, 0.2]).log()
    la = labeled_ce(torch.zeros(1, 2), torch.tensor([1]), prior, 1.0)
    assert la.item() == pytest.approx(-math.log(0.2))


def test_semi_memory_bank_keeps_most_confident_and_decays_stale():
    bank = MemoryBank(2, slots=2, dim=1, device="cpu")
    yes = torch.ones(4, dtype=torch.bool)
    bank.push(torch.tensor([[1.0], [2.0], [3.0], [9.0]]), torch.tensor([0, 0, 0, 1]),
              torch.tensor([0.5, 0.9, 0.7, 0.99]), torch.tensor([True, True, True, False]))
    assert sorted(bank.feat[0, :, 0].tolist()) == [2.0, 3.0]
    assert bank.feat[1].eq(0).all() and not bank.fresh[1].any()  # the invalid candidate: no slot
    protos, filled = bank.prototypes()
    assert filled.tolist() == [True, False] and protos[0, 0].item() == pytest.approx(2.5)
    bank.decay(0.5)  # both fresh: untouched, flags cleared
    assert sorted(bank.conf[0].tolist()) == pytest.approx([0.7, 0.9])
    bank.push(torch.tensor([[4.0]]), torch.tensor([0]), torch.tensor([0.8]), yes[:1])  # evicts 0.7
    bank.decay(0.5)  # 0.9 is stale now, 0.8 was refreshed
    assert sorted(bank.conf[0].tolist()) == pytest.approx([0.45, 0.8])
    assert sorted(bank.feat[0, :, 0].tolist()) == [2.0, 4.0]


@pytest.mark.parametrize("name", ["semi", "supervised"])
def test_other_algorithms_train_and_change_weights(digits_root, tmp_path, name):
    extra = {"algorithm": {"threshold": 0.0, "semi": {"est_epoch_iters": 2, "epoch_iters": 2, "mb_size": 4,
                                    "decay_step": 2}}}
    tr = train(tiny_config(digits_root, name, tmp_path / name, **extra), tmp_path / name)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    if name == "semi":
        assert bool(torch.isfinite(tr.algo.bank.conf).any())  # the bank filled
        assert "train/loss_ea" in tr.last_metrics


def test_reference_train_bn_mode_touches_only_the_ema(digits_root, tmp_path):
    """ytaek-oh/daso runs the queue forward in train mode, which rewrites the EMA BN buffers
    (docs/algorithms.md, DASO deviation 2)."""
    daso = {"pretrain_iters": 100, "dist_update_period": 4}
    ev = train(tiny_config(digits_root, "daso", tmp_path / "e", algorithm={"daso": daso}), tmp_path / "e")
    ref = train(tiny_config(digits_root, "daso", tmp_path / "r",
                            algorithm={"daso": {**daso, "ema_bn_mode": "reference_train"}}), tmp_path / "r")
    assert same_tensors(ev.model.state_dict(), ref.model.state_dict()) == []
    changed = same_tensors(ev.ema.state_dict(), ref.ema.state_dict())
    assert changed and all("running" in k or "num_batches" in k for k in changed)


def test_unbalanced_queue_capacity_and_online_encoder(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "daso", tmp_path, algorithm={"daso": {
        "pretrain_iters": 4, "dist_update_period": 2, "balanced_queue": False, "queue_encoder": "online"}})
    tr = train(cfg, tmp_path)
    assert tr.algo.queue.capacity.tolist() == [5 * n for n in tr.data.split.counts["labeled"]]
    assert int(tr.algo.queue.count.sum()) == min(8 * 8, int(tr.algo.queue.capacity.sum()))

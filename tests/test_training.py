"""The shared training chores: lr schedule, resumable checkpoints, loss logs, figure PNGs."""

import math
import struct

import matplotlib
import pytest
import torch

from pipeline.data.figures import figure_png
from pipeline.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    resume_training,
    save_checkpoint,
    save_training,
)
from pipeline.training.loss_log import write_loss_png
from pipeline.training.plots import curves_png
from pipeline.training.schedules import cosine_lr, poly_lr

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_cosine_lr_formula():
    assert cosine_lr(0, 100, 10, 1.0) == 0.1
    assert cosine_lr(9, 100, 10, 1.0) == 1.0
    assert math.isclose(cosine_lr(55, 100, 10, 1.0), 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cosine_lr(100, 100, 10, 1.0) == 0.0


@pytest.mark.parametrize("step", [0, 1, 749, 1499, 1500, 1501, 60000, 119999, 120000])
def test_poly_lr_matches_detectron2_warmup_poly(step):
    """WarmupPolyLR of ov-seg's R101c config: base 2e-4, 120k steps, power 0.9, 1500 linear
    warm-up steps from a factor of 1e-6."""
    total, warmup, base = 120000, 1500, 2e-4
    factor = 1e-6 * (1 - step / warmup) + step / warmup if step < warmup else 1.0
    expected = base * factor * (1 - step / total) ** 0.9
    assert math.isclose(poly_lr(step, total, warmup, base, 0.9), expected, rel_tol=1e-12,
                        abs_tol=1e-18)
    assert poly_lr(step, total, warmup, base) <= base


def test_poly_lr_shape():
    lrs = [poly_lr(s, 100, 10, 1.0) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[10] == pytest.approx(0.9 ** 0.9)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # warm-up rises
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))  # then decays to 0
    assert lrs[100] == 0.0


@pytest.mark.parametrize("step", [0, 3, 7, 8, 20, 51, 99, 100, 130])
def test_cosine_lr_matches_explicit_schedule(step):
    total, warmup, base = 100, 8, 3e-4
    if step < warmup:  # linear warm-up reaching base at the last warm-up step
        expected = base * (step + 1) / warmup
    else:  # half a cosine from base down to 0 at `total`, then flat at 0
        t = min(1.0, (step - warmup) / (total - warmup))
        expected = 0.5 * base * (1 + math.cos(math.pi * t))
    assert cosine_lr(step, total, warmup, base) == expected  # same float operations


def test_cosine_lr_without_warmup_starts_at_base():
    assert cosine_lr(0, 5, 0, 2.0) == 2.0
    assert cosine_lr(5, 5, 0, 2.0) == 0.0


def _net_and_optimizer():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return net, opt


def test_checkpoint_round_trip(tmp_path, capsys):
    net, opt = _net_and_optimizer()
    path = tmp_path / "sub" / "last.pt"
    logs = [{"step": 0, "loss": 1.5, "phase": "ft"}]
    save_checkpoint(path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                           "step": 4, "logs": logs, "fingerprint": "run-a"})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left
    state = load_checkpoint(path, "run-a", "cpu")
    assert "resuming from step 4" in capsys.readouterr().out
    assert list(state) == ["model", "optimizer", "step", "logs", "fingerprint"]
    assert state["step"] == 4 and state["logs"] == logs
    for k, v in net.state_dict().items():
        assert torch.equal(state["model"][k], v)
    net2, opt2 = torch.nn.Linear(3, 2), torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    net2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"],
                       opt.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_of_another_run_or_none_is_not_resumed(tmp_path, capsys):
    path = tmp_path / "last.pt"
    assert load_checkpoint(path, "run-a", "cpu") is None
    save_checkpoint(path, {"step": 2, "fingerprint": "run-a"})
    assert load_checkpoint(path, "run-b", "cpu") is None
    assert "ignoring" in capsys.readouterr().out
    save_checkpoint(path, {"step": 3, "fingerprint": "run-b"})  # replaces the old one
    assert load_checkpoint(path, "run-b", "cpu")["step"] == 3


class _NotATensor:
    pass


def test_checkpoint_load_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "fingerprint": "x", "obj": _NotATensor()})
    with pytest.raises(CheckpointError):  # weights_only: no code runs on load
        read_checkpoint(path, "cpu")
    assert load_checkpoint(path, "x", "cpu") is None  # discarded: the run starts over


ROWS = [{"step": 0, "phase": "ft", "loss": 2.0, "lr": 1e-5, "extra": 9},
        {"step": 1, "phase": "mpt", "loss": 1.0 / 3, "lr": 0.02}]


def test_write_loss_png_draws_the_rows_curves(tmp_path):
    write_loss_png(tmp_path / "l.png", ROWS, ["loss", "lr"], "t")
    assert (tmp_path / "l.png").read_bytes() == curves_png(
        [0, 1], {"loss": [2.0, 1.0 / 3], "lr": [1e-5, 0.02]}, "step", "t")


def test_write_loss_png_with_no_rows(tmp_path):
    write_loss_png(tmp_path / "l.png", [], ["loss", "lr"], "t", empty_title="t: not trained")
    assert (tmp_path / "l.png").read_bytes() == curves_png([0], {"loss": [0.0]}, "step",
                                                           "t: not trained")


def _figure():
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    return fig


def test_figure_png_is_reproducible_and_closes_the_figure():
    fig = _figure()
    png = figure_png(fig, dpi=80)
    assert not plt.fignum_exists(fig.number)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (160, 80)  # figsize * dpi
    assert b"Software" not in png  # no tool version in the bytes
    assert figure_png(_figure(), dpi=80) == png
    assert struct.unpack(">II", figure_png(_figure(), dpi=90)[16:24]) == (180, 90)


def test_a_training_state_resumes_its_weights_optimizer_step_and_log(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    net[0].bias.requires_grad_(False)  # frozen: FT and MPT keep most of CLIP so
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    for trainable_only in (False, True):
        path = tmp_path / f"{trainable_only}.pt"
        save_training(path, net, opt, 7, [{"loss": 1.0}], "run", trainable_only)
        torch.manual_seed(1)
        fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        fresh[0].bias.requires_grad_(False)
        fresh_opt = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad])
        assert resume_training(path, fresh, fresh_opt, "run", "cpu") == (7, [{"loss": 1.0}])
        assert torch.equal(fresh[0].weight, net[0].weight)
        # the frozen bias and the BatchNorm statistics travel only in the whole state
        assert torch.equal(fresh[0].bias, net[0].bias) != trainable_only
        assert torch.equal(fresh[1].running_mean, net[1].running_mean) != trainable_only
        assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
        assert resume_training(path, fresh, fresh_opt, "other run", "cpu") == (0, [])
    with pytest.raises(CheckpointError, match="weights this model does not have"):
        resume_training(tmp_path / "False.pt", torch.nn.Linear(3, 4),
                        torch.optim.SGD(torch.nn.Linear(3, 4).parameters(), lr=1), "run", "cpu")

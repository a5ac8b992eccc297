import numpy as np
import open_clip
import torch

from pipeline.clip.model import create_clip, load_clip, model_config, save_clip, tokenizer_for
from pipeline.clip.pretrain import caption_batches, train_clip
from pipeline.clip.region_probe import accuracy_by_group, outline_control


def test_checkpoint_loads_with_plain_open_clip(tmp_path):
    model = create_clip("ovseg-tiny-vit")
    save_clip(model, model_config("ovseg-tiny-vit"), tmp_path)
    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(load_clip(tmp_path).logit_scale, model.logit_scale)
    assert tokenizer_for(tmp_path)(["a dog"]).shape == (1, 32)


def test_caption_batches_cover_epoch_without_repeats():
    batches = list(caption_batches(10, lambda i: 5, 5, 4, seed=0))
    first_epoch = np.concatenate([b[0] for b in batches[:2]])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert all(((c >= 0) & (c < 5)).all() for _, c in batches)


def test_pretraining_lowers_loss_on_a_learnable_pairing():
    torch.manual_seed(0)
    model = create_clip("ovseg-tiny-vit")
    tok = tokenizer_for("ovseg-tiny-vit")
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    words = ["red", "green", "blue", "yellow"]

    def load_batch(idx, caps):
        images = colours[idx % 4].view(-1, 3, 1, 1).expand(-1, 3, 64, 64).clone()
        return images, tok([f"a {words[i % 4]} thing" for i in idx])

    logs = train_clip(model, load_batch, caption_batches(8, lambda i: 1, 8, 40, 0), 40, 2e-3,
                      0.0, 5)
    assert np.mean([x.loss for x in logs[-5:]]) < 0.7 * np.mean([x.loss for x in logs[:5]])


def test_accuracy_by_group():
    out = accuracy_by_group(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]),
                            torch.tensor([True, True, False]))
    assert out["all"] == 0.75 and out["seen"] == 1.0 and out["unseen"] == 0.5


def test_outline_control_learns_outlines_only_when_they_carry_the_class():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    noise = torch.rand(400, 16, generator=g)
    informative = noise.clone()
    informative[torch.arange(400), y] += 2.0  # the class is written into the outline
    acc_info = outline_control(informative[:300], y[:300], informative[300:], y[300:], 4, 300)
    acc_noise = outline_control(noise[:300], y[:300], noise[300:], y[300:], 4, 300)
    assert acc_info > 0.9 and acc_noise < 0.45


def test_local_model_config_is_what_open_clip_reads():
    """check_params reads the repo's configs without open_clip; they must be the same."""
    from pipeline.clip.local_configs import MODEL_CONFIG_DIR, local_model_config
    from pipeline.clip.model import model_config

    archs = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
    assert "ovseg-tiny-vit" in archs
    for arch in archs:
        assert local_model_config(arch) == model_config(arch)
    assert local_model_config("ViT-B-16") is None  # a built-in: open_clip's own

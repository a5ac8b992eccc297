"""Batch-first training attention against open_clip's own nn.MultiheadAttention path."""

import open_clip
import torch
from open_clip.loss import ClipLoss

from pipeline.clip.model import register_model_configs
from pipeline.clip.training_attention import batch_first_attention, use_batch_first_attention


def _pair(seed=0):
    """The same tiny CLIP twice: open_clip's blocks, and with batch-first attention."""
    register_model_configs()
    torch.manual_seed(seed)
    reference = open_clip.create_model("ovseg-tiny-vit")
    candidate = use_batch_first_attention(open_clip.create_model("ovseg-tiny-vit"))
    candidate.load_state_dict(reference.state_dict())
    return reference.train(), candidate.train()


def _batch(model, n=6):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, *model.visual.image_size, generator=g)
    tokens = torch.randint(1, 49000, (n, 32), generator=g)
    return images, tokens


def _step(model, images, tokens):
    image_f = model.encode_image(images, normalize=True)
    text_f = model.encode_text(tokens, normalize=True)
    model.zero_grad(set_to_none=True)
    ClipLoss()(image_f, text_f, model.logit_scale.exp()).backward()
    return image_f.detach(), text_f.detach()


def test_attention_equals_multihead_attention_with_and_without_a_causal_mask():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(48, 2, batch_first=True)
    x = torch.randn(5, 9, 48)
    causal = torch.full((9, 9), float("-inf")).triu(1)
    for mask in (None, causal):
        want = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        torch.testing.assert_close(batch_first_attention(mha, x, mask), want,
                                   rtol=1e-6, atol=1e-6)


def test_training_step_matches_open_clip_forward_bits_and_gradients():
    reference, candidate = _pair()
    images, tokens = _batch(reference)
    want, got = _step(reference, images, tokens), _step(candidate, images, tokens)
    for w, g in zip(want, got):  # image (vision blocks) and text (causal mask) features
        assert torch.equal(w, g)
    params = dict(reference.named_parameters())
    for name, p in candidate.named_parameters():
        ref = params[name].grad
        if ref is not None:  # the same products summed in another order
            torch.testing.assert_close(p.grad, ref, rtol=1e-4,
                                       atol=1e-6 * float(ref.abs().max()), msg=name)


def test_without_gradients_the_blocks_run_open_clips_own_path():
    reference, candidate = _pair()
    images, tokens = _batch(reference)
    for model in (reference, candidate):
        model.eval()
    with torch.no_grad():  # nn.MultiheadAttention's inference fast path, in both
        assert torch.equal(reference.encode_image(images), candidate.encode_image(images))
        assert torch.equal(reference.encode_text(tokens), candidate.encode_text(tokens))


def test_state_dict_is_open_clips():
    reference, candidate = _pair()
    assert list(reference.state_dict()) == list(candidate.state_dict())
    blocks = list(candidate.visual.transformer.resblocks) + list(candidate.transformer.resblocks)
    assert all("attention" in vars(b) for b in blocks)  # every block was switched

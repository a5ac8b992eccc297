"""The proposal net's aspect-keeping input and padding-free output
(pipeline/proposals/inference.py), through extract and the segmenter."""

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.data.image_io import read_rgb
from pipeline.data.layouts import IndexRow
from pipeline.params import ProposalParams
from pipeline.proposals.extract import net_proposals
from pipeline.proposals.inference import masks_to_image, net_batch
from pipeline.proposals.model import (
    IMAGENET_MEAN,
    ProposalNet,
    ProposalNetConfig,
    class_logits,
    image_proposals,
    predict_proposals,
)
from pipeline.segment.segmenter import Segmenter

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


class PaddingStub(torch.nn.Module):
    """A proposal net whose 2 queries' mask logits are +1 on the stride-4 cells that hold
    image pixels and -1 on cells of padding alone (told apart by the ImageNet mean)."""

    def __init__(self):
        super().__init__()
        self.no_object = torch.nn.Parameter(torch.zeros(4))
        self.cfg = SimpleNamespace(temperature=1.0)

    def forward(self, images):
        real = ((images - MEAN).abs().amax(1, keepdim=True) > 1e-3).float()  # (B, 1, H, W)
        cells = F.max_pool2d(real, 4)[:, 0] * 2 - 1  # (B, H/4, W/4)
        b = len(images)
        return [{"mask_logits": cells[:, None].repeat(1, 2, 1, 1),
                 "query_text": torch.ones(b, 2, 4)}]


def test_net_batch_keeps_the_aspect_and_pads_with_the_mean_to_the_divisor():
    images = [torch.rand(3, 50, 90), torch.rand(3, 64, 64)]
    batch, sizes = net_batch(images, 64, 32)
    assert sizes == [(64, 115), (64, 64)] and batch.shape == (2, 3, 64, 128)
    assert torch.equal(batch[1, :, :, :64], images[1])  # already at the short side: as is
    assert torch.allclose(batch[0, :, :, 115:], MEAN[0].expand(3, 64, 13))
    assert torch.allclose(batch[1, :, :, 64:], MEAN[0].expand(3, 64, 64))
    assert 0 <= batch.min() and batch.max() <= 1
    big, sizes = net_batch([torch.rand(3, 200, 100)], 64, 32)  # shrunk, antialiased
    assert sizes == [(128, 64)] and big.shape == (1, 3, 128, 64)
    thin, sizes = net_batch([torch.rand(3, 10, 200)], 64, 32)  # long side capped at 4x
    assert sizes == [(13, 256)] and thin.shape == (1, 3, 32, 256)


def test_masks_come_back_at_the_image_size_without_the_padding():
    image = torch.ones(3, 50, 90)
    batch, sizes = net_batch([image], 64, 32)
    logits = PaddingStub()(batch)[0]["mask_logits"][0]  # (2, 16, 32)
    masks = masks_to_image(logits, sizes[0], (50, 90))
    assert masks.shape == (2, 50, 90) and (masks > 0).all()
    # the squash of the whole padded map would have let the padding in
    squashed = F.interpolate(logits[None], size=(50, 90), mode="bilinear", align_corners=False)
    assert (squashed <= 0).any()


def write_images(folder, shapes, seed=0):
    """World-like pictures (flat rectangles on a background) as PNG, and their index rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    rows = []
    for i, (h, w) in enumerate(shapes):
        im = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            im[y:y + rng.integers(8, h // 2), x:x + rng.integers(8, w // 2)] = \
                rng.integers(0, 256, 3)
        Image.fromarray(im).save(folder / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", h, w))
    return rows


def test_extract_gives_full_masks_at_the_image_size_of_a_wide_image(tmp_path):
    folder = tmp_path / "im"
    folder.mkdir()
    Image.fromarray(np.full((50, 90, 3), 255, np.uint8)).save(folder / "0.png")
    rows = [IndexRow(0, "0.png", "0.png", 50, 90)]
    p = ProposalParams(short_side=64, size_divisor=32)
    props = net_proposals(PaddingStub(), torch.randn(3, 4), rows, folder, p)[0]
    assert props.masks.shape == (2, 50, 90) and props.masks.all()


class Centred(torch.nn.Module):
    """A random small net with each mask's logits centred, so that masks are not empty."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = ProposalNet(ProposalNetConfig(width=8, hidden=16, queries=4,
                                                 decoder_layers=1, text_dim=8)).eval()
        self.no_object, self.cfg = self.net.no_object, self.net.cfg

    def forward(self, images):
        out = dict(self.net(images)[-1])
        m = out["mask_logits"]
        out["mask_logits"] = m - m.mean((-2, -1), keepdim=True)
        return [out]


def small_net():
    return Centred().eval()


def test_extract_on_square_world_images_equals_the_squash_path(tmp_path):
    rows = write_images(tmp_path / "im", [(64, 64)] * 3)
    net, text = small_net(), F.normalize(torch.randn(3, 8), dim=-1)
    p = ProposalParams(short_side=64, size_divisor=32)
    new = net_proposals(net, text, rows, tmp_path / "im", p)
    # before: read squashed to short_side x short_side, logits straight to the image size;
    # contiguous as net_batch's batch is (a channels-last view takes another oneDNN
    # convolution on some CPUs, which differs in the last bit)
    x = torch.from_numpy(np.stack([read_rgb(tmp_path / "im" / r.file_name, (64, 64))
                                   for r in rows])).permute(0, 3, 1, 2).float().div(255)
    logits, scores = predict_proposals(net, x.contiguous(), text)
    for r, lg, sc, got in zip(rows, logits, scores, new):
        masks, kept = image_proposals(lg, sc, (r.height, r.width), p.min_score)
        assert got.masks.any() and np.array_equal(got.masks, masks.numpy())
        assert np.array_equal(got.scores, kept.numpy().astype(np.float32))


def settings_at(short_side: int) -> dict:
    """The schema's segmenter settings (params defaults) with the net's input short side."""
    import dataclasses

    from pipeline.params import parse_params
    from pipeline.segment.segmenter import segmenter_settings

    return {**dataclasses.asdict(segmenter_settings(parse_params({}))), "short_side": short_side}


def test_segmenter_net_outputs_on_square_images_equal_the_squash_path():
    net, text = small_net(), F.normalize(torch.randn(5, 8), dim=-1)
    seg = Segmenter(net, text, None, None, **settings_at(64))
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    logits, mask_logits = seg.net_outputs(images)
    with torch.no_grad():  # before: squashed to 64 x 64, logits straight to the image size
        x = torch.cat([F.interpolate(im[None], size=(64, 64), mode="bilinear",
                                     align_corners=False) for im in images]).clamp(0, 1)
        out = net(x)[-1]
        old = class_logits(out["query_text"], text, net.no_object, net.cfg.temperature)
        assert torch.equal(logits, old)
        for b, im in enumerate(images):
            old_masks = F.interpolate(out["mask_logits"][b:b + 1].float(),
                                      size=im.shape[-2:], mode="bilinear",
                                      align_corners=False)[0]
            assert torch.equal(mask_logits[b], old_masks)


def test_segmenter_masks_are_at_each_images_own_size_without_padding():
    seg = Segmenter(PaddingStub(), torch.randn(3, 4), None, None, **settings_at(64))
    logits, masks = seg.net_outputs([torch.ones(3, 50, 90), torch.ones(3, 64, 40)])
    assert logits.shape == (2, 2, 4)
    assert [m.shape for m in masks] == [(2, 50, 90), (2, 64, 40)]
    assert all((m > 0).all() for m in masks)

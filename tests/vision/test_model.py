"""The ResNet-18 around the transfer: head replacement, freezing, discriminative rates, one step, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelpkg.codecs.image import normalise
from pipelines.vision.model import (augment, backbone_from_state, checkpoint_state, discriminative_groups,
                                    freeze_backbone, imagenet_state, preprocessing, resnet18, to_tensor)


@pytest.fixture(scope="module")
def source_state():
    torch.manual_seed(0)
    return resnet18(29).state_dict()


def test_a_new_head_keeps_every_backbone_weight(source_state):
    model = backbone_from_state(source_state, classes=10, seed=1)
    assert model.fc.out_features == 10
    for name, value in model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(value, source_state[name]), name


def test_a_checkpoint_of_another_architecture_is_refused(source_state, tmp_path):
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a torchvision ResNet-18"):
        backbone_from_state(checkpoint_state(tmp_path / "other.pt"), classes=10, seed=0)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint_state(tmp_path / "missing.pt")


def test_imagenet_weights_offline_fail_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache; downloads cannot reach the internet here

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    import torchvision.models._api as weights_api

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)  # the mock: a download cannot exist here
    with pytest.raises(RuntimeError, match="Offline: copy resnet18-"):
        imagenet_state()


def test_frozen_backbone_stays_frozen_during_a_warm_up_step(source_state):
    model = backbone_from_state(source_state, classes=10, seed=0)
    freeze_backbone(model, True)
    before = {k: v.clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}
    freeze_backbone(model, False)
    assert all(p.requires_grad for p in model.parameters())


def test_one_unfrozen_step_changes_backbone_weights_at_their_own_rate(source_state):
    model = backbone_from_state(source_state, classes=10, seed=0)
    groups = discriminative_groups(model, learning_rate=1e-3, decay=0.5)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 / 16, 1e-3 / 8, 1e-3 / 4, 1e-3 / 2, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    before = model.conv1.weight.clone()
    optimizer = torch.optim.AdamW(groups)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8) % 10).backward()
    optimizer.step()
    assert not torch.equal(model.conv1.weight, before)


def test_training_tensors_come_from_the_serving_codecs_normalise():
    """One preprocessing: to_tensor is the codec's `normalise`, image by image."""
    from PIL import Image

    settings = preprocessing(32, 10_000)
    images = (np.arange(2 * 64).reshape(2, 8, 8) % 17 * 15).astype(np.uint8)
    tensor = to_tensor(images, settings)
    assert tensor.shape == (2, 3, 32, 32)
    assert np.array_equal(tensor[1].numpy(), normalise(Image.fromarray(images[1]), settings))


def test_augmentation_is_seeded_and_keeps_the_background():
    batch = to_tensor(np.zeros((4, 8, 8), np.uint8), preprocessing(16, 10_000))
    first = augment(batch, torch.Generator().manual_seed(0), degrees=10, translate=0.1, scale=(0.9, 1.1))
    again = augment(batch, torch.Generator().manual_seed(0), degrees=10, translate=0.1, scale=(0.9, 1.1))
    assert torch.equal(first, again)
    assert torch.allclose(first, batch, atol=1e-6)  # an empty (black) image stays black wherever it moves

"""What keeps the instrument from changing what it measures: a workload with nothing random runs
as a plain ``Dataset.__getitem__`` would, and start-up avoids costs torch makes optional."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from loaderbench.data import TransformedDataset
from loaderbench.loop import EpochRunner
from loaderbench.transforms import Augment, Basic, NoTransforms


def test_no_transforms_hands_a_float_tensor_through_untouched():
    image = torch.randn(3, 8, 8)
    assert NoTransforms().train(image) is image  # no Compose, no copy
    as_float = NoTransforms().train(torch.full((3, 2, 2), 255, dtype=torch.uint8))
    assert as_float.dtype == torch.float32 and torch.all(as_float == 1.0)


def test_a_deterministic_pipeline_leaves_the_global_generator_alone_and_skips_forking():
    images, labels = torch.randn(4, 3, 8, 8), torch.arange(4)
    data = TransformedDataset(
        TensorDataset(images, labels), NoTransforms().train, seed=0, random=NoTransforms.random
    )
    state = torch.get_rng_state()
    image, label, index = data[(1, 2)]
    assert image.data_ptr() == images[2].data_ptr() and label == 2  # a view, as TensorDataset
    assert index == 2  # the sample's id, for the exactly-once count
    assert torch.equal(torch.get_rng_state(), state)
    assert not data.random


def test_presets_declare_whether_they_draw_random_numbers():
    assert (NoTransforms.random, Basic.random, Augment.random) == (False, False, True)


def test_a_random_pipeline_is_seeded_per_sample_and_epoch():
    base = TensorDataset(torch.rand(2, 3, 16, 16), torch.arange(2))
    data = TransformedDataset(base, Augment(image_size=8).train, seed=0, random=True)
    assert torch.equal(data[(0, 1)][0], data[(0, 1)][0])
    assert not torch.equal(data[(0, 1)][0], data[(1, 1)][0])


@pytest.mark.slow  # a fresh interpreter: ~2 s
def test_determinism_is_set_without_importing_the_compiler():
    code = (
        "import sys, torch\n"
        "from loaderbench.devices import configure_determinism\n"
        "configure_determinism(True, torch.device('cpu'))\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert 'torch._inductor.config' not in sys.modules, 'imported the compiler config'\n"
        "configure_determinism(False, torch.device('cpu'))\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_epoch_runner_refuses_an_unknown_mode():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="loader_only"):
        EpochRunner(
            "fast", model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"), [], []
        )

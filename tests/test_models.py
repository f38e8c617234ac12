import pytest
import torch

from genrobust.core.models import (GenerativeClassifier, ModelError, class_logits, count_parameters, create_model,
                              model_names)

# Pinned parameter counts (one output = binary d_k; 10 = softmax). ResNet18Thinner is the paper's d_k.
PINNED = {
    ("resnet18", 0.5, 1): 2_795_297,     # ResNet18Thinner binary model (the paper's d_k)
    ("resnet18thinner", None, 1): 2_795_297,
    ("resnet18thin", None, 1): 6_284_977,
    ("resnet18", 1.0, 10): 11_173_962,   # standard CIFAR ResNet18
    ("resnet18", 0.25, 1): 700_305,      # cpu profile d_k
    ("resnet18", 0.8, 10): 7_162_706,    # cpu profile softmax (~ 10 x the cpu d_k)
    ("resnet50", 1.0, 10): 23_520_842,   # paper softmax baseline
    ("small_cnn", 0.5, 1): 6_121,
}


@pytest.mark.parametrize("name, width, out", list(PINNED))
def test_parameter_counts_pinned(name, width, out):
    assert count_parameters(create_model(name, out, width)) == PINNED[(name, width, out)]


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("out", [1, 10])
def test_every_registry_entry_maps_images_to_outputs(name, out):
    m = create_model(name, out).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, out) and torch.isfinite(y).all()


def test_normalization_is_inside_the_model():
    m = create_model("small_cnn", 1)
    assert type(next(iter(m.children()))).__name__ == "Normalize"
    # a constant image at the CIFAR mean normalizes to ~0 at the first layer
    x = m.normalize.mean.expand(1, 3, 32, 32)
    assert m.normalize(x).abs().max() < 1e-6


def test_cpu_softmax_has_about_the_capacity_of_ten_binary_models():
    binary = count_parameters(create_model("resnet18", 1, 0.25))
    softmax = count_parameters(create_model("resnet18", 10, 0.8))
    assert abs(softmax - 10 * binary) / (10 * binary) < 0.05


def test_generative_classifier_is_eq7():
    torch.manual_seed(0)
    models = [create_model("small_cnn", 1).eval() for _ in range(4)]
    c = torch.tensor([0.5, -0.5, 1.0, 0.0])
    g = GenerativeClassifier(models, c).eval()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        z = g(x)
        expect = torch.stack([m(x)[:, 0] for m in models], 1) + c
        assert z.shape == (6, 4)
        assert torch.allclose(z, expect, atol=1e-6)
        cls = torch.tensor([0, 3, 1, 1, 2, 0])
        assert torch.allclose(g.logits_for(x, cls), z.gather(1, cls[:, None])[:, 0], atol=1e-6)
        assert torch.allclose(class_logits(g, x, cls), g.logits_for(x, cls))


def test_model_errors_are_one_line():
    for call in (lambda: create_model("vgg"), lambda: create_model("resnet18", 1, 0.0),
                 lambda: create_model("resnet18thin", 1, 0.5), lambda: GenerativeClassifier([create_model("small_cnn")])):
        with pytest.raises(ModelError) as e:
            call()
        assert "\n" not in str(e.value)

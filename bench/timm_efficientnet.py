"""EfficientNet-Lite in timm (an implementation independent of the harness's), loaded from a
PyTorch file with the tensor names of lukemelas/EfficientNet-PyTorch, the format of the published
EfficientNet-Lite0 weights. Used by `bench/reference.py` and by the harness-model fixtures
(`crates/harness-model/tests/fixtures/make_efficientnet_fixtures.py`).
"""
import collections
import functools

import torch
from timm.models._efficientnet_builder import decode_arch_def
from timm.models.efficientnet import EfficientNet

LITE0 = [
    ["ds_r1_k3_s1_e1_c16"],
    ["ir_r2_k3_s2_e6_c24"],
    ["ir_r2_k5_s2_e6_c40"],
    ["ir_r3_k3_s2_e6_c80"],
    ["ir_r3_k5_s1_e6_c112"],
    ["ir_r4_k5_s2_e6_c192"],
    ["ir_r1_k3_s1_e6_c320"],
]


def build(arch_def, stem, head, classes):
    """An EfficientNet-Lite in eval mode: ReLU6, BatchNorm eps 1e-3, TensorFlow "same" padding."""
    net = EfficientNet(
        block_args=decode_arch_def(arch_def),
        num_classes=classes,
        num_features=head,
        stem_size=stem,
        fix_stem=True,
        pad_type="same",
        act_layer=torch.nn.ReLU6,
        norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3),
    )
    return net.eval()


# timm's names → the original file's names.
DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}
TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}


def original_names(net):
    """timm state_dict key → the original file's key."""
    flat = {}
    n = 0
    for s, stage in enumerate(net.blocks):
        for j, block in enumerate(stage):
            flat[(s, j)] = (n, DS if type(block).__name__ == "DepthwiseSeparableConv" else IR)
            n += 1
    names = collections.OrderedDict()
    for key in net.state_dict():
        parts = key.split(".")
        if parts[0] == "blocks":
            index, table = flat[(int(parts[1]), int(parts[2]))]
            names[key] = ".".join(["_blocks", str(index), table[parts[3]]] + parts[4:])
        else:
            names[key] = ".".join([TOP[parts[0]]] + parts[1:])
    return names


def lite0(weights, classes=1000):
    """EfficientNet-Lite0 with the published weights; a new `classes`-way output layer unless
    `classes` is 1000."""
    net = build(LITE0, stem=32, head=1280, classes=1000)
    original = torch.load(weights, map_location="cpu", weights_only=True)
    names = original_names(net)
    assert len(original) == len(names), (len(original), len(names))
    net.load_state_dict({k: original[v] for k, v in names.items()}, strict=True)
    if classes != 1000:
        net.reset_classifier(classes)
    return net

"""PyTorch reference for `harness bench`: the harness's default models written the way a
researcher would write them in PyTorch, timed the same way as the harness times its own.

Reads a JSON request on stdin (threads, batch, steps, rounds, and the models: stem shape,
backbone width, depth, heads, feed-forward width, activation, classes) and prints one JSON
object: model name -> {"train": examples/s, "features": examples/s}. Run by `harness bench`;
install its PyTorch with bench/setup.sh.
"""

import json
import statistics
import sys
import time

import torch
from torch import nn


class PatchStem(nn.Module):
    """Non-overlapping patch_rows x patch_cols patches -> linear, plus learned positions."""

    def __init__(self, m):
        super().__init__()
        self.rows, self.cols = m["rows"], m["cols"]
        self.pr, self.pc = m["patch_rows"], m["patch_cols"]
        tokens = (self.rows // self.pr) * (self.cols // self.pc)
        self.projection = nn.Linear(self.pr * self.pc, m["d_model"])
        self.positions = nn.Parameter(torch.randn(tokens, m["d_model"]) * 0.02)

    def forward(self, x):
        n = x.shape[0]
        x = x.view(n, self.rows // self.pr, self.pr, self.cols // self.pc, self.pc)
        x = x.permute(0, 1, 3, 2, 4).reshape(n, -1, self.pr * self.pc)
        return self.projection(x) + self.positions, None


class TextStem(nn.Module):
    """Token ids -> embedding, plus learned positions; id 0 is padding."""

    def __init__(self, m):
        super().__init__()
        self.embedding = nn.Embedding(m["vocab_size"], m["d_model"])
        self.positions = nn.Parameter(torch.randn(m["cols"], m["d_model"]) * 0.02)

    def forward(self, x):
        ids = x.long()
        return self.embedding(ids) + self.positions, ids == 0


class Classifier(nn.Module):
    """Stem, pre-LN Transformer encoder + final layer norm, masked mean pooling, linear head."""

    def __init__(self, m):
        super().__init__()
        self.stem = TextStem(m) if m["vocab_size"] > 0 else PatchStem(m)
        layer = nn.TransformerEncoderLayer(
            m["d_model"],
            m["n_heads"],
            m["d_ff"],
            dropout=0.0,
            activation=m["activation"],
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, m["n_layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(m["d_model"])
        self.head = nn.Linear(m["d_model"], m["classes"])

    def features(self, x):
        tokens, pad = self.stem(x)
        out = self.norm(self.encoder(tokens, src_key_padding_mask=pad))
        if pad is None:
            return out.mean(dim=1)
        keep = (~pad).float().unsqueeze(2)
        return (out * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)

    def forward(self, x):
        return self.head(self.features(x))


def inputs(m, n, generator):
    width = m["rows"] * m["cols"]
    if m["vocab_size"] > 0:
        x = torch.randint(1, m["vocab_size"], (n, width), generator=generator).float()
    else:
        x = torch.randn(n, width, generator=generator)
    y = torch.randint(0, m["classes"], (n,), generator=generator)
    return x, y


def measure(m, batch, steps, rounds):
    generator = torch.Generator().manual_seed(0)
    x, y = inputs(m, batch, generator)
    loss_fn = nn.CrossEntropyLoss()
    train = []
    for _ in range(rounds):
        torch.manual_seed(0)
        model = Classifier(m)
        model.train()
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(steps + 2):
            if step == 2:
                started = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optim.step()
        train.append(steps * batch / (time.perf_counter() - started))

    n = steps * batch
    values, _ = inputs(m, n, generator)
    torch.manual_seed(0)
    model = Classifier(m).eval()
    features = []
    for _ in range(rounds):
        started = time.perf_counter()
        with torch.no_grad():
            for start in range(0, n, 500):
                model.features(values[start : start + 500])
        features.append(n / (time.perf_counter() - started))
    return {"train": statistics.median(train), "features": statistics.median(features)}


def main():
    request = json.load(sys.stdin)
    torch.set_num_threads(request["threads"])
    torch.set_num_interop_threads(1)
    out = {"torch": torch.__version__}
    for m in request["models"]:
        out[m["name"]] = measure(m, request["batch"], request["steps"], request["rounds"])
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()

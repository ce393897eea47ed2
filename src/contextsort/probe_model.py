"""The probe's tiny causal language model, its training loop and its per-token scorer (torch).

Imported only by `probe.py` once torch is known to be present. The output layer is torch's
adaptive softmax (exact, normalised log-probabilities): with the vocabulary shrunk and sorted
by frequency, most tokens are scored by a small head, which makes CPU training several times
faster than a full softmax over ~15k ids while the NLL stays a true NLL.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

PAD = -1  # target value of padding positions (never scored, never trained on)


def output_cutoffs(vocab: int) -> list[int]:
    """Adaptive-softmax cluster boundaries for a frequency-sorted vocabulary of `vocab` ids."""
    cut = [c for c in (2000, 8000) if c < vocab - 1]
    return cut or [max(1, vocab // 2)]


class TinyLM(nn.Module):
    """Pre-norm causal transformer: token + learned position embeddings, `layers` blocks,
    adaptive-softmax output. `token_nll` is the one scoring entry point."""

    def __init__(self, vocab: int, width: int, layers: int, heads: int, context_length: int):
        super().__init__()
        self.context_length = context_length
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context_length, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.output = nn.AdaptiveLogSoftmaxWithLoss(width, vocab, output_cutoffs(vocab), div_value=4.0)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        n = inputs.shape[1]
        pos = torch.arange(n, device=inputs.device)
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=inputs.device)
        h = self.blocks(self.embed(inputs) + self.position(pos), mask=mask, is_causal=True)
        return self.norm(h)

    def token_nll(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL (nats) of each target given the inputs up to it: [B, T]; 0 where target is PAD."""
        h = self.hidden(inputs)
        keep = targets != PAD
        out = torch.zeros(targets.shape, dtype=h.dtype, device=h.device)
        out[keep] = -self.output(h[keep], targets[keep]).output
        return out


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to 10% of `lr`."""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(model: nn.Module, contexts: np.ndarray, batch_size: int, lr: float, device: str, desc: str, progress: bool) -> float:
    """One pass over `contexts` ([C, L] ids, PAD-padded, already in training order) with AdamW;
    returns the mean training loss of the last 10% of steps."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
    steps = -(-len(contexts) // batch_size)
    losses = []
    bar = tqdm(total=steps, desc=desc, file=sys.stderr, disable=not progress, leave=False)
    for step in range(steps):
        batch = torch.from_numpy(contexts[step * batch_size : (step + 1) * batch_size]).to(device)
        inputs, targets = batch[:, :-1].clamp_min(0), batch[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        nll = model.token_nll(inputs, targets)
        loss = nll.sum() / (targets != PAD).sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    tail = losses[-max(1, steps // 10) :]
    return float(np.mean(tail)) if tail else float("nan")


@torch.no_grad()
def sequence_nll(model: nn.Module, seqs: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    """Per-token NLL of padded sequences ([N, S] ids, PAD-padded): [N, S-1], where column j
    is the NLL of ``seqs[:, j+1]``; NaN where that token is padding."""
    model.to(device).eval()
    out = np.full((len(seqs), max(0, seqs.shape[1] - 1)), np.nan, dtype=np.float64)
    for s in range(0, len(seqs), batch_size):
        batch = torch.from_numpy(seqs[s : s + batch_size]).to(device)
        targets = batch[:, 1:]
        nll = model.token_nll(batch[:, :-1].clamp_min(0), targets).double().cpu().numpy()
        nll[(targets == PAD).cpu().numpy()] = np.nan
        out[s : s + len(batch)] = nll
    return out

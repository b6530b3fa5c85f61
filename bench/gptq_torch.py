"""The same GPTQ algorithm in PyTorch on the CPU: the peer lowbit is measured against.

Written here from the published algorithm (REFERENCE.md §1.3-1.6), with the operations the
PyTorch implementations run (GPTQModel / AutoGPTQ / llm-compressor): float32 tensors, torch's
Cholesky / cholesky_inverse, a Python loop over columns and one matmul per block. Same grid
as lowbit (min-max, symmetric groups kept symmetric), same options.
"""

from __future__ import annotations

import torch


def _grid(x: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    maxq = 2**bits - 1
    xmin = torch.clamp(x.min(dim=1).values, max=0)
    xmax = torch.clamp(x.max(dim=1).values, min=0)
    if sym:
        amax = torch.maximum(-xmin, xmax)
        xmin, xmax = -amax, amax
    both = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both, torch.full_like(xmin, -1), xmin)
    xmax = torch.where(both, torch.full_like(xmax, 1), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) // 2) if sym else torch.round(-xmin / scale)
    return scale, zero


def gptq_torch(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int = 128, sym: bool = True,
               desc_act: bool = False, damp_percent: float = 0.01, block_size: int = 128) -> torch.Tensor:
    """Returns the dequantized weights W_hat (float32, original column order)."""
    W = W.clone().float()
    H = H.clone().float()
    rows, cols = W.shape
    maxq = 2**bits - 1
    gs = cols if group_size == -1 else group_size
    if gs == cols:
        scale, zero = _grid(W, bits, sym)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if desc_act:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
        invperm = torch.argsort(perm)
    H[range(cols), range(cols)] += damp_percent * torch.mean(torch.diag(H))
    L = torch.linalg.cholesky(H)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            w = W1[:, i]
            d = U1[i, i]
            if gs < cols and col % gs == 0:
                scale, zero = _grid(W[:, col:col + gs], bits, sym)
            q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
            qf = scale * (q - zero)
            Q[:, col] = qf
            e = (w - qf) / d
            W1[:, i:] -= e.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            Err1[:, i] = e
        W[:, i2:] -= Err1.matmul(U[i1:i2, i2:])
    if desc_act:
        Q = Q[:, invperm]
    return Q

"""Per-atom values of one model's prediction: readout terms and integrated gradients.

Readout terms (``readout_terms``) are what the model sums: ``"atomic_<key>"`` (N,), the head's
per-atom outputs after std, the isolated-atom reference, the atom-reference prior and the mean
(spread evenly over the atoms), so they add up to the molecular value exactly.

Integrated gradients (``integrated_gradients``; Sundararajan et al., ICML 2017) attribute an
output F to the atom embeddings x (N, H): the scalar atom features after the embedding and the
neighbour embedding, the input of the first ViS-MP layer. The baseline gives every atom the same
features, the molecule's mean embedding b = mean_i x_i (H,), in the same geometry: "a molecule of
identical average atoms". Along the straight path x(α) = b + α (x − b),

    A_i = Σ_h (x_ih − b_h) ∫_0^1 ∂F/∂x_ih(x(α)) dα,

computed with ``steps``-point Gauss–Legendre quadrature in one batched call. Completeness:
Σ_i A_i = F(x) − F(b) up to the quadrature error, which ``Attribution.residual`` reports.

Why not the usual zero baseline: every ViS-MP layer starts with a LayerNorm, which is blind to the
scale of x, so F(α x) is flat for α ≳ 1e-2 and jumps within LayerNorm's epsilon of α = 0; the
attribution would then describe the network at features of size ~1e-3, which it never sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_STEPS",
    "Attribution",
    "check_steps",
    "free_atom_outputs",
    "integrated_gradients",
    "readout_terms",
]

DEFAULT_STEPS = 64
# Edges (n² per copy of an n-atom molecule, at most) per batched call of the path points: below the
# representation's edge-slicing budget, so the gradient takes the plain edge path.
EDGES_PER_CALL = 8000


@dataclass(frozen=True)
class Attribution:
    """Per-atom values of one structure's prediction, in the model's output units.

    Attributes:
        values: (N,) per-atom values.
        total: the model's prediction F of the structure.
        baseline: F of the baseline (integrated gradients: every atom given the mean embedding),
            None for readout terms.
        residual: Σ values − (total − baseline) for integrated gradients (the quadrature error),
            Σ values − total for readout terms (rounding only).
        forces: (N, 3) forces (model units) when asked for, else None.
    """

    values: np.ndarray
    total: float
    baseline: float | None
    residual: float
    forces: np.ndarray | None = None


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def readout_terms(model: nn.Module, z: Tensor, pos: Tensor, key: str, forces: bool = False) -> Attribution:
    """The readout's per-atom terms ``"atomic_<key>"`` of one structure.

    Args:
        model: an eager ViSNet with a scalar head (eval mode).
        z: (N,) atomic numbers. pos: (N, 3) positions in the model's length unit.
        key: the model's output key. forces: also compute forces (energy models).

    Raises:
        ValueError: the model's head gives no per-atom terms (the dipole head).
    """
    with torch.set_grad_enabled(forces):
        out = model(z, pos, compute_forces=forces)
    if f"atomic_{key}" not in out:
        raise ValueError(f"the {key!r} model's head has no per-atom terms: use method='integrated_gradients'")
    values = _numpy(out[f"atomic_{key}"])
    total = float(_numpy(out[key]).sum())
    return Attribution(values, total, None, float(values.sum() - total), _numpy(out["forces"]) if forces else None)


@contextmanager
def _scaled_embeddings(model: nn.Module, alpha: Tensor, n: int) -> Iterator[dict[str, Tensor]]:
    """Within the block, the model's atom embeddings x (the output of the neighbour embedding,
    ``copies`` equal copies of n atoms) become b + α (x − b), b the mean embedding of the n atoms,
    ``alpha`` (copies·n,), as a leaf whose gradient the caller takes; the dict yields x ("x"), b
    ("baseline") and the leaf ("scaled"). Calls on other atom counts (the isolated-atom table) pass through."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if output.shape[0] != alpha.shape[0]:
            return None
        x = store["x"] = output.detach()
        b = store["baseline"] = x[:n].mean(dim=0)
        store["scaled"] = (b + alpha.unsqueeze(-1) * (x - b)).requires_grad_(True)
        return store["scaled"]

    handle = model.representation_model.neighbor_embedding.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _quadrature(steps: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Gauss–Legendre nodes and weights on [0, 1], ``steps`` of each."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return as_tensor((nodes + 1) / 2), as_tensor(weights / 2)


def check_steps(steps: int) -> None:
    """ValueError unless ``steps`` (quadrature points) is between 2 and 512."""
    if not 2 <= steps <= 512:
        raise ValueError(f"steps must be between 2 and 512, got {steps}")


def _path_points(model: nn.Module, z: Tensor, pos: Tensor, key: str, alphas: Tensor) -> tuple[Tensor, ...]:
    """F (g,) and ∂F/∂x (g, n, H) at the path points ``alphas`` (g,), with x − b (n, H), in one call."""
    n, copies = z.shape[0], alphas.shape[0]
    batch = torch.arange(copies, device=z.device).repeat_interleave(n)
    with _scaled_embeddings(model, alphas.repeat_interleave(n), n) as store, torch.enable_grad():
        out = model(z.repeat(copies), pos.repeat(copies, 1), batch, compute_forces=False)[key]
        (grad,) = torch.autograd.grad(out.sum(), store["scaled"])
    return out.detach(), grad.view(copies, n, -1), store["x"][:n] - store["baseline"]


def integrated_gradients(model: nn.Module, z: Tensor, pos: Tensor, key: str, steps: int = DEFAULT_STEPS) -> Attribution:
    """Integrated gradients of the model's molecular output ``key`` over the atom embeddings.

    Args:
        model: an eager ViSNet (eval mode), any molecular head (scalar, energy, dipole norm).
        z: (N,) atomic numbers. pos: (N, 3) positions in the model's length unit.
        key: the model's output key.
        steps: quadrature points (2..512). The integrand is smooth for models without
            ``vecnorm_type="max_min"`` (the residual then falls fast with ``steps``); that norm's
            max/min switch channels along the path, and the residual falls like 1/steps.

    Returns:
        ``Attribution`` with values (N,) summing to total − baseline (up to ``residual``);
        a one-atom structure has nothing to attribute (values 0, baseline = total).
    """
    check_steps(steps)
    n = z.shape[0]
    nodes, weights = _quadrature(steps, pos.dtype, pos.device)
    alphas = torch.cat([nodes, nodes.new_tensor([0.0, 1.0])])  # then the baseline and the input itself
    with torch.no_grad():
        model(z, pos, compute_forces=False)  # fills the isolated-atom cache outside the hook
    per_call = max(1, EDGES_PER_CALL // (n * n))
    outputs, grads = [], []
    for group in torch.split(alphas, per_call):
        out, grad, x = _path_points(model, z, pos, key, group)
        outputs.append(out)
        grads.append(grad)
    out, grad = torch.cat(outputs), torch.cat(grads)
    mean_grad = (grad[:steps] * weights.view(steps, 1, 1)).sum(dim=0)
    values = _numpy((x * mean_grad).sum(dim=-1))
    baseline, total = _numpy(out[-2:]).tolist()
    return Attribution(values, total, baseline, float(values.sum() - (total - baseline)))


def free_atom_outputs(model: nn.Module, elements: list[int], key: str) -> dict[int, float]:
    """The model's output ``key`` for each element as a lone atom (model units): the reference
    that per-atom energies are measured from in ``relative`` values."""
    z = torch.as_tensor(elements, dtype=torch.long, device=model.device)
    pos = torch.zeros(len(elements), 3, dtype=model.dtype, device=model.device)
    batch = torch.arange(len(elements), device=model.device)
    with torch.no_grad():
        out = model(z, pos, batch, compute_forces=False)[key]
    return dict(zip(elements, _numpy(out).tolist()))

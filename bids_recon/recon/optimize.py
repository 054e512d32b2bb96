"""Image optimizers, batched with independent per-image state.

Every quantity (step sizes, momentum, L-BFGS memory, line searches) is kept per image, so a
batch gives the same result as optimizing each image alone (up to floating point).

- :func:`gradient_descent`: the paper's GD with momentum (docs/method.md §4.2): learning rate
  decaying linearly, momentum, gradient normalized by its mean absolute value, multiplicative decay,
  optional jitter, clipping to bounds.
- :func:`lbfgs`: projected L-BFGS with box bounds (pixels stay valid), as the paper's L-BFGS-B
  on pixels (docs/method.md §4.3), with a backtracking Armijo line search per image. Variables
  held at a bound by their gradient are left out of the quasi-Newton step, which makes it reach
  L-BFGS-B's bounded optimum (``tests/test_optimize.py``). A trial step evaluates only the
  images still searching, and an image stops, as with SciPy, once an iteration no longer lowers
  its loss by more than ``ftol`` relative: on a flat loss a line search would otherwise spend
  many passes on rounding noise.

The loop keeps losses on the device (the curves are read once at the end); L-BFGS waits for the
device once per trial step, to know which images still search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# objective(x, rows): per-image loss (len(x),) of images x, the ``rows`` of the batch (None: all)
Objective = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
FTOL = 1e-7  # relative loss decrease below which an image has converged (float32: ~1 ulp)


@dataclass
class Trace:
    """What an optimization did, per image of the batch.

    ``curves[k]`` holds the loss of image k at the start (L-BFGS) or before each step (GD) and
    after each iteration it took; ``passes[k]`` counts the network passes (loss and gradient
    evaluations) that included image k.
    """

    curves: list[list[float]]
    passes: list[int]


@dataclass(frozen=True)
class GDSchedule:
    """Gradient descent settings; learning rate and decay change linearly over iterations.

    The defaults are the paper's DGN settings (docs/method.md §4.2): lr 2 → 1e-10, momentum 0.9,
    decay 0.01.
    """

    iterations: int = 200
    lr_start: float = 2.0
    lr_end: float = 1e-10
    momentum: float = 0.9
    decay_start: float = 0.01
    decay_end: float = 0.01
    jitter: int = 0


def _value_and_grad(
    objective: Objective, x: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    loss = objective(x, rows)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _held(
    x: torch.Tensor, grad: torch.Tensor, lower: torch.Tensor | None, upper: torch.Tensor | None
) -> torch.Tensor:
    """Variables at a bound whose gradient pushes them further out (they cannot move)."""
    held = torch.zeros_like(x, dtype=torch.bool)
    if lower is not None:
        held |= (x <= lower) & (grad > 0)
    if upper is not None:
        held |= (x >= upper) & (grad < 0)
    return held


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def gradient_descent(
    objective: Objective,
    start: torch.Tensor,
    schedule: GDSchedule,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    jitter_seeds: list[int] | None = None,
) -> tuple[torch.Tensor, Trace]:
    """Gradient descent with momentum on ``start`` (batch, ...).

    Parameters
    ----------
    objective : callable
        Per-image loss of a batch.
    start : tensor
        Initial values (pixels or generator latents).
    schedule : GDSchedule
    lower, upper : tensor, optional
        Bounds (broadcast against one image) applied after every step.
    jitter_seeds : list of int, optional
        Per-image seeds of the random shifts (``schedule.jitter`` pixels) so that a batch and a
        single image see the same shifts.

    Returns
    -------
    result : tensor
        The optimized values.
    trace : Trace
        Loss before each step, and one pass per iteration, for each image.
    """
    x = start.detach().clone()
    velocity = torch.zeros_like(x)
    losses = []
    generators = [torch.Generator().manual_seed(s) for s in (jitter_seeds or [0] * len(x))]
    n = schedule.iterations
    for t in range(n):
        lr = schedule.lr_start + t * (schedule.lr_end - schedule.lr_start) / n
        decay = schedule.decay_start + t * (schedule.decay_end - schedule.decay_start) / n
        shifts = None
        if schedule.jitter:
            shifts = [
                tuple(
                    int(v)
                    for v in torch.randint(-schedule.jitter, schedule.jitter + 1, (2,), generator=g)
                )
                for g in generators
            ]
            x = torch.stack([xi.roll(s, dims=(-2, -1)) for xi, s in zip(x, shifts, strict=True)])
        loss, grad = _value_and_grad(objective, x, None)
        losses.append(loss)
        scale = grad.abs().flatten(1).mean(dim=1).clamp_min(1e-30)
        velocity = schedule.momentum * velocity + grad / _per_image(scale, grad)
        x = (x - lr * velocity) * (1 - decay)
        if shifts is not None:
            x = torch.stack(
                [xi.roll((-s[0], -s[1]), dims=(-2, -1)) for xi, s in zip(x, shifts, strict=True)]
            )
        if lower is not None:
            x = torch.maximum(x, lower)
        if upper is not None:
            x = torch.minimum(x, upper)
    curves = torch.stack(losses, dim=1).tolist() if losses else [[] for _ in x]
    return x.detach(), Trace(curves, [n] * len(x))


def _inverse_hessian_times(
    gradient: torch.Tensor, memory: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """L-BFGS two-loop recursion per image: the inverse-Hessian estimate times ``gradient``.

    ``memory`` holds the recent (s, y, 1/sᵀy) of each image, oldest first; without any, the
    gradient is scaled to a mean absolute value of 1.
    """
    q = gradient.clone()
    coefficients = []
    for s, y, rho in reversed(memory):
        a = rho * torch.linalg.vecdot(s, q)
        q.addcmul_(y, a[:, None], value=-1)
        coefficients.append(a)
    if memory:
        s, y, rho = memory[-1]
        q *= (rho * torch.linalg.vecdot(y, y)).reciprocal().nan_to_num(0, 0, 0)[:, None]
    else:
        q /= gradient.abs().mean(dim=1, keepdim=True).clamp_min(1e-30)
    for (s, y, rho), a in zip(memory, reversed(coefficients), strict=True):
        b = rho * torch.linalg.vecdot(y, q)
        q.addcmul_(s, (a - b)[:, None])
    return q


def lbfgs(
    objective: Objective,
    start: torch.Tensor,
    iterations: int = 200,
    lower: torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    history: int = 10,
    max_backtracks: int = 20,
    ftol: float = FTOL,
) -> tuple[torch.Tensor, Trace]:
    """Projected L-BFGS with per-image memory and Armijo backtracking, within box bounds.

    Parameters
    ----------
    objective : callable
        Per-image loss ``objective(x, rows)`` of images ``x`` that are the ``rows`` of the batch
        (``rows`` None: the whole batch).
    start : tensor
        Initial values (batch, ...).
    iterations : int
        Most iterations per image.
    lower, upper : tensor, optional
        Box bounds (broadcast against one image).
    history : int
        Step pairs kept for the inverse-Hessian estimate.
    max_backtracks : int
        Most trial steps (step halved each time) of one line search; an image whose line
        search finds no decrease has converged.
    ftol : float
        An image stops once an iteration lowers its loss by at most
        ``ftol * max(|f_k|, |f_k+1|, 1)`` (SciPy's L-BFGS-B criterion).

    Returns
    -------
    result : tensor
        The optimized batch.
    trace : Trace
        Loss curves (non-increasing, one value per iteration the image took) and passes.
    """

    def project(values: torch.Tensor) -> torch.Tensor:
        if lower is not None:
            values = torch.maximum(values, lower)
        if upper is not None:
            values = torch.minimum(values, upper)
        return values

    x = project(start.detach().clone())
    batch = len(x)
    flat = lambda v: v.reshape(len(v), -1)  # noqa: E731
    loss, grad = _value_and_grad(objective, x, None)
    losses = [loss]
    passes = torch.ones(batch, dtype=torch.long, device=x.device)
    stopped = torch.full((batch,), iterations, dtype=torch.long, device=x.device)
    memory: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / sᵀy)
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    for iteration in range(iterations):
        # variables held at a bound by their gradient stay out of the quasi-Newton step
        # (their gradient would otherwise steer the step of the free ones)
        held = flat(_held(x, grad, lower, upper))
        free_grad = torch.where(held, 0.0, flat(grad))
        q = _inverse_hessian_times(free_grad, memory)
        direction = torch.where(held, 0.0, -q)
        slope = torch.linalg.vecdot(direction, free_grad)
        direction = torch.where((slope < 0)[:, None], direction, -free_grad).reshape(x.shape)
        new_x = new_loss = new_grad = None  # copies of x, loss and grad made only when needed
        step = torch.ones(batch, device=x.device, dtype=x.dtype)
        searching = active.clone()
        for _ in range(max_backtracks):
            rows = searching.nonzero().squeeze(1)  # the one host synchronisation per trial
            if len(rows) == 0:
                break
            whole = len(rows) == batch  # no copies of the batch's rows then
            pick = (lambda v: v) if whole else (lambda v, rows=rows: v[rows])  # noqa: E731
            start_x = pick(x)
            trial = project(start_x.addcmul(_per_image(pick(step), x), pick(direction)))
            trial_loss, trial_grad = _value_and_grad(objective, trial, None if whole else rows)
            passes[rows] += 1
            change = torch.linalg.vecdot(flat(pick(grad)), flat(trial - start_x))
            ok = trial_loss <= pick(loss) + 1e-4 * change  # Armijo
            # the gradient came with the trial: no second pass
            if whole and bool(ok.all()):  # the usual case: every image takes its first step
                new_x, new_loss, new_grad = trial, trial_loss, trial_grad
                searching[:] = False
                break
            if new_x is None:
                new_x, new_loss, new_grad = x.clone(), loss.clone(), grad.clone()
            done = rows[ok]
            new_x[done], new_loss[done], new_grad[done] = trial[ok], trial_loss[ok], trial_grad[ok]
            searching[done] = False
            # failed: the minimum of the quadratic through the loss, its slope and the trial
            # (Nocedal & Wright §3.5), kept within 0.1-0.5 of the step
            excess = (trial_loss - pick(loss) - change).clamp_min(1e-30)
            shrink = (-change / (2 * excess)).nan_to_num(0.5).clamp(0.1, 0.5)
            step[rows[~ok]] *= shrink[~ok]
        if new_x is None:  # no image found a decrease
            new_x, new_loss, new_grad = x, loss, grad
        # an image stops when its line search failed or its loss has stopped falling
        scale = torch.maximum(loss.abs(), new_loss.abs()).clamp_min(1.0)
        flat_loss = loss - new_loss <= ftol * scale
        failed = active & searching  # no decrease found: this iteration did not happen
        stopped[failed] = iteration
        stopped[active & ~searching & flat_loss] = iteration + 1
        ending = active & (searching | flat_loss)
        moved = active & ~searching
        s_new, y_new = flat(new_x - x), flat(new_grad - grad)
        curvature = torch.linalg.vecdot(s_new, y_new)
        keep = moved & (curvature > 1e-10)  # others add an empty pair (no curvature news)
        if not bool(keep.all()):
            s_new, y_new = (
                torch.where(keep[:, None], s_new, 0.0),
                torch.where(keep[:, None], y_new, 0.0),
            )
        memory.append((s_new, y_new, torch.where(keep, 1.0 / curvature.clamp_min(1e-30), 0.0)))
        memory = memory[-history:]
        x, loss, grad = new_x, new_loss, new_grad
        active &= ~ending
        losses.append(loss)
        if not bool(active.any()):
            break
    curves = torch.stack(losses, dim=1).tolist()
    ends = stopped.tolist()
    return x.detach(), Trace(
        [curve[: end + 1] for curve, end in zip(curves, ends, strict=True)], passes.tolist()
    )

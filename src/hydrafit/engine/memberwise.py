"""Adam, AdamW and SGD for a population: parameters stacked along a leading member dimension,
each member with its own hyperparameters, each updated with exactly torch.optim's arithmetic.

torch.optim takes one lr per parameter group (a tensor lr must have one element), and a stacked
tensor holds every member, so a population whose members differ in lr, betas, eps, weight_decay
or momentum needs its own update. These follow torch.optim's single-tensor path (the one it takes
on the CPU) operation by operation: the per-step scalars (bias corrections, step sizes) are
computed in float64 as Python computes them, then rounded to the parameters' dtype as torch does
with a Python scalar; tests/test_population.py checks each against torch.optim member by member.

`active` (a bool tensor, one entry a member) freezes members: a frozen member's parameters and
optimizer state stay as they were (a member whose loss turned NaN must not change the others or
its own last values).
"""
from __future__ import annotations

import numpy as np
import torch

from hydrafit.models import stepped

KINDS = {"torch.optim.Adam": "adam", "torch.optim.AdamW": "adamw", "torch.optim.SGD": "sgd"}
# Hyperparameters each kind takes per member; any other optimizer key keeps a job out of populations.
HYPERPARAMETERS = {
    "adam": ("lr", "betas", "eps", "weight_decay"),
    "adamw": ("lr", "betas", "eps", "weight_decay"),
    "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
}
DEFAULTS = {  # torch.optim's defaults, for keys a config leaves out
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
}


class Memberwise(torch.optim.Optimizer):
    """One optimizer for stacked parameters ([members, ...] each). `kind`: adam | adamw | sgd;
    `settings`: one dict of that kind's hyperparameters per member (a resolved optimizer config).
    A parameter group may hold the stack of some of the members only: its "members" entry,
    (first, end), says which (engine.stacked: one stack per architecture); by default all."""

    def __init__(self, params, kind: str, settings: list[dict], active: torch.Tensor | None = None):
        super().__init__(params, {"members": (0, len(settings))})
        self.span = (0, len(settings))  # the members of the parameter group being updated
        self.kind, self.members, self.settings = kind, len(settings), settings
        full = [DEFAULTS[kind] | {k: v for k, v in s.items() if k in DEFAULTS[kind]} for s in settings]
        self.h = {k: np.array([float(v) for v in (s[k] for s in full)]) for k in DEFAULTS[kind] if k != "betas"}
        h = self.h
        if kind != "sgd":
            h["beta1"] = np.array([float(s["betas"][0]) for s in full])
            h["beta2"] = np.array([float(s["betas"][1]) for s in full])
            h["1-beta1"], h["1-beta2"] = 1 - h["beta1"], 1 - h["beta2"]
        else:
            h["1-dampening"] = 1 - h["dampening"]
        self.active = active
        self.frozen = False  # True once some member is frozen: only then is the where() needed
        self.steps = 0
        self.constants: dict = {}  # _constant's tensors
        self.set_lr(h["lr"])

    def set_lr(self, lr: np.ndarray) -> None:
        """Each member's lr from now on (its scheduler's value for the epoch: lr_table)."""
        h = self.h
        if "-lr" in h and np.array_equal(lr, h["lr"]):
            return
        h["lr"], h["-lr"] = lr, -lr
        if self.kind != "sgd":
            h["decoupled"] = 1 - lr * h["weight_decay"]  # AdamW's param.mul_(1 - lr * weight_decay)
        self.constants = {key: t for key, t in self.constants.items() if key[0] not in ("-lr", "decoupled")}

    def set_member(self, k: int, values: dict) -> None:
        """Member k's hyperparameters ({lr, weight_decay, eps, momentum: value}) from the next
        step on (a PBT member's explored values: engine.pbt)."""
        h = self.h
        for name, value in values.items():
            h[name] = h[name].copy()  # set_lr may hold a row of a table
            h[name][k] = float(value)
        h["-lr"] = -h["lr"]
        if self.kind != "sgd":
            h["decoupled"] = 1 - h["lr"] * h["weight_decay"]
        self.constants = {}

    def copy_member(self, source: int, k: int) -> None:
        """Member k's optimizer state (Adam's moments, SGD's momentum buffer) becomes member
        `source`'s, in place; both in one parameter group (one architecture). The step count is
        every member's (they step together)."""
        for group in self.param_groups:
            a, b = group["members"]
            if a <= k < b:
                for p in group["params"]:
                    for t in self.state.get(p, {}).values():
                        t[k - a] = t[source - a]

    def state_dict(self) -> dict:
        """torch.optim's state, plus the per-member hyperparameters and the step count, which a
        resumed fit (a PBT run's population checkpoint) must continue with."""
        out = super().state_dict()
        out["memberwise"] = {"h": {k: v.tolist() for k, v in self.h.items()}, "steps": self.steps}
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        own = state_dict.pop("memberwise")
        super().load_state_dict(state_dict)
        self.h = {k: np.array(v) for k, v in own["h"].items()}
        self.steps, self.constants = own["steps"], {}

    def _member(self, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """Per-member float64 numbers as a tensor of `like`'s dtype, shaped to broadcast over it."""
        return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(-1, *[1] * (like.dim() - 1))

    def _h(self, name: str) -> np.ndarray:
        """Hyperparameter `name` of the members of the group being updated."""
        return self.h[name][self.span[0]:self.span[1]]

    def _constant(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """_member(self._h(name), like), made once for each group, dtype, device and rank: a step
        made ~6 such tensors a parameter, 10% of a 48-member fit on this project's CPU."""
        key = (name, self.span, like.dtype, like.device, like.dim())
        if key not in self.constants:
            self.constants[key] = self._member(self._h(name), like)
        return self.constants[key]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.steps += 1
        update = {"adam": self._adam, "adamw": self._adam, "sgd": self._sgd}[self.kind]
        for group in self.param_groups:
            self.span = group["members"]
            for p in group["params"]:
                if p.grad is not None:
                    new = update(p, p.grad, self.state[p])
                    if self.frozen:
                        new = torch.where(self._member_mask(p), new, p)
                    p.copy_(new)
        return loss

    def _member_mask(self, p: torch.Tensor) -> torch.Tensor:
        return self.active[self.span[0]:self.span[1]].view(-1, *[1] * (p.dim() - 1))

    def _keep(self, p: torch.Tensor, state: dict, name: str, value: torch.Tensor) -> None:
        """state[name] = value, except for frozen members, whose entry stays."""
        if self.frozen and name in state:
            value = torch.where(self._member_mask(p), value, state[name])
        state[name] = value

    def _adam(self, p: torch.Tensor, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """torch.optim._single_tensor_adam, one step, per-member scalars."""
        h, t = self._h, self.steps
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        if self.kind == "adamw":  # decoupled: param.mul_(1 - lr * weight_decay)
            p = p * self._constant("decoupled", p)
        elif h("weight_decay").any():  # grad.add(param, alpha=weight_decay)
            grad = fma(p, self._constant("weight_decay", p), grad)
        exp_avg = state["exp_avg"].lerp(grad, self._constant("1-beta1", p))
        exp_avg_sq = fma(self._constant("1-beta2", p) * grad, grad, state["exp_avg_sq"] * self._constant("beta2", p))
        self._keep(p, state, "exp_avg", exp_avg)
        self._keep(p, state, "exp_avg_sq", exp_avg_sq)
        step_size = h("lr") / (1 - h("beta1") ** t)
        denom = exp_avg_sq.sqrt() / self._member((1 - h("beta2") ** t) ** 0.5, p) + self._constant("eps", p)
        return p + self._member(-step_size, p) * exp_avg / denom  # addcdiv: self + value * t1 / t2

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """torch.optim._single_tensor_sgd, one step, per-member scalars."""
        h = self._h
        if h("weight_decay").any():
            grad = fma(p, self._constant("weight_decay", p), grad)
        if h("momentum").any():
            if "momentum_buffer" not in state:  # the first step: buf = grad
                buf = grad.clone()
            else:
                buf = fma(grad, self._constant("1-dampening", p),
                          state["momentum_buffer"] * self._constant("momentum", p))
            self._keep(p, state, "momentum_buffer", buf)
            nesterov = fma(buf, self._constant("momentum", p), grad)
            moved = torch.where(self._constant("nesterov", p).bool(), nesterov, buf)
            grad = torch.where(self._constant("momentum", p) != 0, moved, grad)  # torch: momentum 0 skips it
        return fma(grad, self._constant("-lr", p), p)


    def member_state(self, k: int) -> dict:
        """Member k's optimizer state in torch.optim's own format ({param index: state}), for a
        torch.optim optimizer of the member's plain net to load (a one-member checkpoint): the
        parameters of the group that holds member k, numbered from 0 as its own net's are."""
        group = next(g for g in self.param_groups if g["members"][0] <= k < g["members"][1])
        j, out = k - group["members"][0], {}
        for i, p in enumerate(group["params"]):
            state = self.state.get(p, {})
            if self.kind == "sgd":
                if self.h["momentum"][k] != 0 and "momentum_buffer" in state:
                    out[i] = {"momentum_buffer": state["momentum_buffer"][j].clone()}
            elif state:
                out[i] = {"step": torch.tensor(float(self.steps)), "exp_avg": state["exp_avg"][j].clone(),
                          "exp_avg_sq": state["exp_avg_sq"][j].clone()}
        return out


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c rounded once, as torch's CPU kernels compute `add(alpha=)` and `addcmul`
    (a fused multiply-add): in float64, where the product of two float32 numbers is exact."""
    return torch.addcmul(c.double(), a.double(), b.double()).to(c.dtype)


def lr_table(modules: list, epochs: list[int]) -> np.ndarray | None:
    """[max epochs, members]: the lr each member trains each epoch with, as its single run's
    scheduler sets it (its Regressor's configure_optimizers, stepped once an epoch as the
    Regressor steps it); None without schedulers. Members with the same optimizer and scheduler
    settings share one computation (~15 us a step of a torch scheduler)."""
    if not any(m.hparams.scheduler for m in modules):
        return None
    table, done = np.empty((max(epochs), len(modules))), {}
    for k, (module, n) in enumerate(zip(modules, epochs)):
        key = repr((module.hparams.optimizer, module.hparams.scheduler, n))
        if key not in done:
            done[key] = scheduled_lrs(module, n)
        table[:n, k] = done[key]
        table[n:, k] = done[key][-1]  # the member has finished: its lr no longer matters
    return table


def scheduled_lrs(module, epochs: int) -> list[float]:
    """The lr of each of `epochs` epochs under the module's optimizer and scheduler."""
    optimizer, scheduler = stepped(module, 0)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            optimizer.step()  # no gradients: changes nothing, and torch's scheduler expects it
            scheduler.step()
    return lrs


def clip_gradients(params: list[torch.Tensor], clip: torch.Tensor, algorithm: str) -> None:
    """Lightning's gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_), each
    member by its own trainer.gradient_clip_val (`clip`: [members], inf where none) over its own
    gradients: a member's norm is the 2-norm of its slices of every parameter's gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if algorithm == "value":
        for g in grads:
            bound = clip.view(-1, *[1] * (g.dim() - 1))
            torch.maximum(torch.minimum(g, bound), -bound, out=g)
        return
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, 2, dim=0)
    coef = torch.clamp(clip / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))

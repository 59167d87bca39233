"""The adversarial step shared by meta-learning (train.py) and few-shot fine-tuning (fitting.py),
and its helpers (after rosinality/stylegan2-pytorch's `train.py`).

One step: D's weights frozen, generate, score real and fake together, generator loss, step G;
D's weights live, score real and detached fake `discriminator_steps` times, hinge loss (plus
meta-learning's W_i half of the embedding match), step D.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from talkinghead.models import Discriminator, GeneratorOutput
from talkinghead.training.losses import GeneratorLoss, discriminator_hinge_loss, embedding_match_loss


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class MovingAverage:
    """An exponential moving average of a module's weights: `avg <- decay * avg + (1 - decay) * w`.

    Buffers (spectral norm's power-iteration vectors) are copied from the live module.
    """

    def __init__(self, module: nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        if state is not None:
            self.module.load_state_dict(state)
        self._average, self._buffers = list(self.module.parameters()), list(self.module.buffers())

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        torch._foreach_lerp_(self._average, [p.detach() for p in module.parameters()], 1 - self.decay)
        torch._foreach_copy_(self._buffers, list(module.buffers()))


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 arithmetic natively (AVX512-BF16 or AMX), so that oneDNN's bf16
    convolutions are faster than float32 ones; without them bf16 is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu helpers
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast (no loss scaling needed) where the hardware runs it natively: GPUs that support
    bf16 and CPUs with `cpu_has_bf16`; elsewhere nothing."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if enabled and device.type == "cpu" and cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Generated:
    """What the generator side made in a step."""

    output: GeneratorOutput  # the frame [B, 3, H, W] in [-1, 1], and what the generator shows of it
    embedding: torch.Tensor | None = None  # [B, D] e-hat when the step embeds shots (meta-learning)


@dataclass
class StepInputs:
    """The real side of a step and D's conditioning."""

    real: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    landmark_images: torch.Tensor  # [B, 3, H, W] the targets' landmarks, drawn
    # [B] int64 training-video indices (rows of D's W), or [B, D] vectors w' (fine-tuning)
    person: torch.Tensor
    real_content: dict[str, list[torch.Tensor]] | None = None  # content features of `real`, computed once
    region: torch.Tensor | None = None  # [B, 1, H, W] in [0, 1]: where LossConfig.region weighs the L1
    points: torch.Tensor | None = None  # [B, 20, 2] the targets' lip landmarks (crop px): LossConfig.lips


@dataclass
class Adversary:
    """D, the two optimizers and the generator's losses: what a step updates and how.

    `discriminator` is the plain module: the generator step scores with it (its weights get no
    gradient there, and DDP wants one forward per backward); `trained` is what the
    discriminator step calls (the same module, or its DDP wrapper)."""

    discriminator: Discriminator
    loss_fn: GeneratorLoss
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    trained: nn.Module | None = None  # None: `discriminator` itself
    discriminator_steps: int = 1
    amp: bool = False  # bf16 autocast where the hardware has it (`autocast`)


@dataclass
class StepOutput:
    """What one adversarial step did. Tensors are detached; `terms` are the weighted G terms."""

    fake: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    loss_generator: torch.Tensor
    loss_discriminator: torch.Tensor  # the hinge loss (without the embedding match)
    real_scores: torch.Tensor  # [B], from the generator step
    fake_scores: torch.Tensor  # [B]
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None  # [B, D] e-hat when the generator made one


def adversarial_step(generate: Callable[[], Generated], batch: StepInputs, gan: Adversary) -> StepOutput:
    """One G update, then `gan.discriminator_steps` D updates on the frames just generated.

    D scores `cat([real, fake])` against the targets' landmarks and the person. With an e-hat
    (meta-learning) and `loss.embedding_match`, the match pulls e-hat toward W_i in the generator
    step and W_i toward e-hat in the discriminator step (paper's L_MCH)."""
    device, d = batch.real.device, gan.discriminator
    pairs = torch.cat([batch.landmark_images] * 2), torch.cat([batch.person] * 2)
    requires_grad(d, False)
    with autocast(device, gan.amp):
        made = generate()
        fake, embedding = made.output.frame, made.embedding
        scores, features = d(torch.cat([batch.real, fake]), *pairs)
        real_scores, fake_scores = scores.chunk(2)
        loss_g, terms = gan.loss_fn(
            real=batch.real,
            fake=fake,
            fake_scores=fake_scores,
            real_features=[f.chunk(2)[0] for f in features],
            fake_features=[f.chunk(2)[1] for f in features],
            embedding=embedding,
            video_vector=None if embedding is None else d.person_vectors(batch.person),
            real_content=batch.real_content,
            synthesis=made.output.synthesised,
            region=batch.region,
            points=batch.points,
        )
    step(gan.opt_g, loss_g.float())

    requires_grad(d, True)
    fake = fake.detach()
    embedding = embedding.detach().float() if embedding is not None else None
    match = gan.loss_fn.config.embedding_match if embedding is not None else 0.0
    for _ in range(gan.discriminator_steps):
        with autocast(device, gan.amp):
            scores, _ = (gan.trained or d)(torch.cat([batch.real, fake]), *pairs)
            hinge = discriminator_hinge_loss(*scores.float().chunk(2))
        # The W_i half of L_MCH (the generator step moved e-hat toward W_i).
        extra = match * embedding_match_loss(embedding, d.person_vectors(batch.person)) if match else 0.0
        step(gan.opt_d, hinge + extra)
    return StepOutput(
        fake=fake,
        loss_generator=loss_g.detach(),
        loss_discriminator=hinge.detach(),
        real_scores=real_scores.detach().float(),
        fake_scores=fake_scores.detach().float(),
        terms={k: v.detach() for k, v in terms.items()},
        embedding=embedding,
    )


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class DivergenceGuard:
    """Keeps the last good state of a GAN fine-tuning and goes back to it when the run diverges.

    Diverged: a non-finite loss, a generator loss above `spike` times the median of the recent
    healthy ones, the discriminator's hinge loss collapsing to 0 (it separates real from fake
    perfectly: the generator has lost), or generated frames saturating (mean |x| above
    `saturation`: a blank or burnt-out frame). On a divergence the modules, parameters and
    optimizers return to the last snapshot and the learning rates are halved (in the
    optimizers and in `schedulers`, which would otherwise set them back on their next step).

    A step's loss measures the weights *before* that step's update. So a snapshot taken after
    step s becomes the good state only once step s + 1's check passes, and the final update,
    which no step checks, is compared with the good state by `settle` after the loop. `settle`
    also catches a run that drifted off without a single spike (each snapshot a little worse than
    the one before): it compares with the state before any update as well.
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        optimizers: list[torch.optim.Optimizer],
        *,
        schedulers: list | None = None,
        every: int = 10,
        spike: float = 4.0,
        saturation: float = 0.97,
        warmup: int = 5,
        drift: float = 1.3,
    ):
        self.modules, self.optimizers, self.schedulers = modules, optimizers, schedulers or []
        self.every, self.spike, self.saturation, self.warmup = every, spike, saturation, warmup
        self.drift = drift
        self.history: list[float] = []
        self.restored: list[tuple[int, int]] = []  # (step that diverged, step restored)
        self.good_step, self.good = 0, self._state()  # before any update: good by definition
        self.initial = self.good
        self.pending: tuple[int, tuple] | None = None  # a snapshot waiting for the next check

    def _state(self) -> tuple[dict, list]:
        return (
            {name: copy.deepcopy(module.state_dict()) for name, module in self.modules.items()},
            [copy.deepcopy(opt.state_dict()) for opt in self.optimizers],
        )

    def diverged(self, out: StepOutput) -> str:
        """Why this step diverged, or "" when it did not."""
        g, d = out.loss_generator.item(), out.loss_discriminator.item()
        if not (math.isfinite(g) and math.isfinite(d)):
            return "non-finite loss"
        if len(self.history) >= self.warmup:
            median = sorted(self.history)[len(self.history) // 2]
            if g > self.spike * abs(median) + 1.0:
                return f"generator loss {g:.2f} (recent median {median:.2f})"
            if d < 1e-3:
                return "discriminator loss 0"
        if out.fake.abs().mean().item() > self.saturation:
            return "saturated frames"
        return ""

    def __call__(self, step: int, out: StepOutput) -> bool:
        """After step `step`: True when the state was restored."""
        if self.diverged(out):
            self._restore(self.good)
            self.pending = None
            for opt in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] *= 0.5
            for scheduler in self.schedulers:
                scheduler.base_lrs = [rate * 0.5 for rate in scheduler.base_lrs]
            self.restored.append((step, self.good_step))
            return True
        if self.pending is not None:  # this step's loss measured the weights the snapshot holds
            (self.good_step, self.good), self.pending = self.pending, None
        self.history = (self.history + [out.loss_generator.item()])[-20:]
        if step % self.every == 0:
            self.pending = (step, self._state())
        return False

    def _restore(self, state: tuple[dict, list]) -> None:
        states, optimizer_states = state
        for name, module in self.modules.items():
            module.load_state_dict(states[name])
        for opt, saved in zip(self.optimizers, optimizer_states):
            opt.load_state_dict(saved)

    def settle(self, step: int, errors: Callable[[], dict[str, float]]) -> str:
        """After the last step, `errors()` (named measures, lower is better; the first is the
        re-made shots' L1 to the real ones) decides between the final state, the last good one
        and the one before any update.

        The final state stays unless its first error is above twice the good state's + 0.05 (a
        last update that blew up), or any error is not finite or above `drift` times the starting
        state's + 0.02 (a run that drifted off one small step at a time); then the good state, if
        it passes the last test, else the starting one. Returns why it went back, or ""."""
        final_errors, final = errors(), self._state()
        self._restore(self.good)
        good_errors = errors()
        self._restore(self.initial)
        start_errors = errors() if self.good_step else good_errors  # no snapshot yet: the same state

        def drifted(values: dict[str, float]) -> list[str]:
            return [
                f"{name} went to {value:.3f} (from {start_errors[name]:.3f} before fine-tuning)"
                for name, value in values.items()
                if not (math.isfinite(value) and value <= self.drift * start_errors[name] + 0.02)
            ]

        why = drifted(final_errors)
        first = next(iter(final_errors))
        if not why and not final_errors[first] <= 2 * good_errors[first] + 0.05:  # the last update blew up
            why = [
                f"{first} went to {final_errors[first]:.3f} (from {good_errors[first]:.3f} at step {self.good_step})"
            ]
        if not why:
            self._restore(final)
            return ""
        if self.good_step and not drifted(good_errors):
            self._restore(self.good)
            self.restored.append((step, self.good_step))
            return f"{'; '.join(why)}; it went back to step {self.good_step}"
        self.restored.append((step, 0))
        return f"{'; '.join(why)}; it went back to the feed-forward state"


class ParameterModule(nn.Module):
    """Free parameters (fine-tuning's psi' and w') as a module, so they snapshot like one."""

    def __init__(self, **parameters: nn.Parameter):
        super().__init__()
        for name, value in parameters.items():
            self.register_parameter(name, value)

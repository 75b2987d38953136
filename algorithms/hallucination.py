"""Low-shot learning from imaginary data: a feature-space generator G(x, z) adds examples to each support class.

Wang, Girshick, Hebert & Hariharan, "Low-Shot Learning from Imaginary Data", CVPR 2018. Sec. 3: the hallucinator
G takes a seed example's feature x and a noise vector z and outputs a new feature of the seed's class; the
augmented support set (real + hallucinated) goes to a meta-learned classifier, and G is trained end to end with
it by back-propagating the classification loss of each episode (Sec. 3.2); G is a small MLP with leaky ReLU
(three layers, as we read the paper's implementation details; not cross-checked). The classifier here is one of
the paper's meta-learners, a prototypical network (Snell et al. 2017): the prototype of each class is the mean
of its real and its `n_hallucinated` generated features.

This is the ProtoNet learner (algorithms/protonet.py) with the generator added, so `n_hallucinated: 0` is exactly
ProtoNet — same embedding, same initial weights for the same seed, same training episodes and classifier — and
both are evaluated on the same frozen test episodes (a paired comparison).

`residual: true` writes G(x, z) = x + MLP([x, z]): the same function class, but an untrained generator starts
by copying its seed instead of adding random points to every prototype. Noise comes from the "algorithm"
stream while training; at test it comes from a generator seeded by (a seed drawn once from that stream, the
episode's ids), so a test episode's prediction does not depend on which episodes were evaluated before it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from algorithms._registry import register
from algorithms.base import Episode, EpisodeBatch
from algorithms.protonet import ProtoNet, ProtoNetHparams, prototype_logits


@dataclass
class HallucinationHparams(ProtoNetHparams):
    n_hallucinated: int = 5            # generated examples per support class (0: plain ProtoNet)
    noise_dim: int = 64                # dimension of z ~ N(0, I)
    hidden_dim: int = 256              # width of G's two hidden layers
    residual: bool = True              # G(x, z) = x + MLP([x, z]) instead of MLP([x, z])


class Hallucinator(nn.Module):
    """G(x, z): a three-layer MLP with leaky ReLU on the concatenated seed feature and noise."""

    def __init__(self, dim: int, noise_dim: int, hidden: int, residual: bool):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim + noise_dim, hidden), nn.LeakyReLU(),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, dim))
        self.noise_dim = noise_dim
        self.residual = residual

    def forward(self, seed: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.mlp(torch.cat([seed, noise], -1))
        return seed + out if self.residual else out


@register("hallucination")
class Hallucination(ProtoNet):
    """Prototypical network with a hallucinator (Wang et al. 2018); n_hallucinated = 0 is ProtoNet."""

    Hparams = HallucinationHparams

    def __init__(self, problem, hparams, device, generators):
        if hparams.n_hallucinated < 0:
            raise ValueError("hallucination.n_hallucinated: must be 0 or more")
        # the ProtoNet base builds the embedding first, so n_hallucinated = 0 starts from ProtoNet's weights; one
        # optimiser over both: with n_hallucinated = 0 the generator gets no gradients and Adam skips it
        super().__init__(problem, hparams, device, generators)
        self.test_seed = int(torch.randint(2 ** 62, (1,), generator=generators["algorithm"]))

    def build_heads(self, generators):
        h = self.hparams
        return {"hallucinator": Hallucinator(self.net.feature_dim, h.noise_dim, h.hidden_dim, h.residual)}

    @property
    def hallucinator(self) -> Hallucinator:
        return self.heads["hallucinator"]

    def extra_state(self):
        return {**super().extra_state(), "test_seed": self.test_seed}

    def load_extra_state(self, state):
        super().load_extra_state(state)
        self.test_seed = int(state.get("test_seed", self.test_seed))

    def _noise_generator(self, batch: EpisodeBatch | Episode) -> torch.Generator:
        if self.net.training:
            return self.generators["algorithm"]
        ids = batch.info.get("ids")
        data = (ids if ids is not None else batch.support_y).detach().cpu().numpy().tobytes()
        digest = hashlib.sha256(self.test_seed.to_bytes(8, "little") + data).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:7], "little"))

    def hallucinate(self, zs: torch.Tensor, support_y: torch.Tensor, ways: int, generator: torch.Generator):
        """n_hallucinated features per class from seeds drawn uniformly among the class's support features.

        zs [..., n, d] with n = ways * shots; returns features [..., ways * H, d] and their labels."""
        h = self.hparams.n_hallucinated
        lead, n = zs.shape[:-2], zs.shape[-2]
        shots = n // ways
        order = torch.sort(support_y, dim=-1, stable=True).indices                    # class k at positions k*shots ...
        pick = torch.randint(shots, (*lead, ways, h), generator=generator).to(zs.device)
        pos = (torch.arange(ways, device=zs.device).view(ways, 1) * shots + pick).flatten(-2)  # [..., ways*h]
        seed_idx = order.gather(-1, pos)
        seeds = zs.gather(-2, seed_idx.unsqueeze(-1).expand(*seed_idx.shape, zs.shape[-1]))
        noise = torch.randn(*seeds.shape[:-1], self.hallucinator.noise_dim, generator=generator).to(zs.device)
        labels = torch.arange(ways, device=zs.device).repeat_interleave(h).expand(*lead, ways * h)
        return self.hallucinator(seeds, noise), labels

    def scores(self, zs, support_y, zq, batch):
        """ProtoNet's logits on the support set augmented with G(x, z) for each class (Sec. 3)."""
        if self.hparams.n_hallucinated > 0:
            fake, fake_y = self.hallucinate(zs, support_y, batch.ways, self._noise_generator(batch))
            zs, support_y = torch.cat([zs, fake], -2), torch.cat([support_y, fake_y], -1)
        return prototype_logits(zs, support_y, zq, batch.ways, self.hparams.distance)

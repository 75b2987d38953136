"""Siamese networks: a twin embedding with shared weights and a learned distance, trained on same/different pairs.

Koch, Zemel & Salakhutdinov, "Siamese Neural Networks for One-shot Image Recognition", ICML Deep Learning
Workshop 2015. Eq. (1): p(x1, x2) = σ(Σ_j α_j |h1_j − h2_j|) on the twin embeddings h, trained with the
regularised cross-entropy of Eq. (2) on balanced same/different pairs of training characters; one-shot
classification picks the support image of highest p (Eq. (4) with K support images per class: highest mean).

Our twin is the suite's Conv-4 (Koch's own net is a larger 105x105 ConvNet with sigmoid features). Pairs come from
labelled training batches drawn as episodes: every pair of the batch's images is used, same-class and
different-class pairs weighted equally (Koch's balanced pairs without sampling noise). Switches:
  distance: "l1-sigmoid" (Koch: learned weighted L1 then sigmoid), "cosine", "euclidean";
  loss: "bce" (pair binary cross-entropy, Koch), "contrastive" (Hadsell et al. 2006), "triplet" (every
        anchor/positive/negative triplet of the batch, Schroff et al. 2015).
Each distance defines a dissimilarity D ≥ 0 (1 − p, 1 − cos, ‖a − b‖) used by the contrastive and triplet
losses and, negated, as the similarity that classifies; with "bce" the pair logit is Koch's head for l1-sigmoid
and a learned affine map of −D (a Platt calibration) for the other two.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import nets
from algorithms._registry import register
from algorithms.base import AdamEpisodicLearner, BatchRequest, Episode, EpisodeBatch

DISTANCES = ("l1-sigmoid", "cosine", "euclidean")
LOSSES = ("bce", "contrastive", "triplet")


@dataclass
class SiameseHparams:
    lr: float = 0.001                 # Adam (Koch: SGD with momentum and per-layer rates)
    lr_halve_every: int = 0           # iterations between halvings of the learning rate; 0: constant
    distance: str = "l1-sigmoid"      # l1-sigmoid | cosine | euclidean
    loss: str = "bce"                 # bce | contrastive | triplet
    margin: float = 1.0               # contrastive/triplet margin, in units of D (1-p, 1-cos or ‖a-b‖)
    train_ways: int = 20              # classes per training batch
    train_per_class: int = 5          # images per class in a training batch (pairs: all of them)
    backbone: str | None = None
    # Koch et al. Sec. 4.3: every training image through a random affine distortion (rotation, shear, scale,
    # translation, each component present with probability 0.5); off by default, and then hash-neutral
    distort: bool = field(default=False, metadata={"hash_neutral": True})
    # each training batch's classes from one alphabet (where the dataset records alphabets): the look-alike
    # negatives of the Lake/Koch test episodes; off by default, and then hash-neutral
    train_within_alphabet: bool = field(default=False, metadata={"hash_neutral": True})
    # turn every class of a training batch (all of its images) by its own random multiple of 90 degrees: a rotated
    # character is a new character, so four times as many training classes, as the rotations of the Vinyals split
    # give every learner there (the Lake split has none). Test characters are never turned. Off by default, and
    # then hash-neutral
    rotate_classes: bool = field(default=False, metadata={"hash_neutral": True})
    # Koch's twin ends in a fully connected layer of sigmoid units (4,096 of them) that the weighted L1 compares;
    # > 0: that many sigmoid features on top of the backbone's flattened maps. 0 (the default, then hash-neutral):
    # the backbone's features themselves
    sigmoid_features: int = field(default=0, metadata={"hash_neutral": True})


# Koch et al.'s distortion ranges: rotation ±10°, shear ±0.3, scale 0.8-1.2, translation ±2 px of 105 (as a fraction of
# the image, so a 28x28 image shifts by the same share)
ROTATION_DEG, SHEAR, SCALE, SHIFT = 10.0, 0.3, (0.8, 1.2), 2.0 / 105.0


def rotate_classes(batch: EpisodeBatch, generator: torch.Generator) -> EpisodeBatch:
    """Every class of every task turned by its own random multiple of 90 degrees (drawn on the CPU from
    `generator`), the same turn for all of a class's support and query images."""
    turns = torch.randint(0, 4, (len(batch), batch.ways), generator=generator).to(batch.support_y.device)

    def turned(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = turns.gather(1, y)                                       # [T, m]: each image's class turn
        out = x.clone()
        for quarter in (1, 2, 3):
            chosen = k == quarter
            out[chosen] = torch.rot90(x[chosen], quarter, dims=(-2, -1))
        return out

    return dataclasses.replace(batch, support_x=turned(batch.support_x, batch.support_y),
                               query_x=turned(batch.query_x, batch.query_y))


def affine_distort(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images [N, C, H, W] each under its own random affine map (Koch et al. 2015, Sec. 4.3), drawn on the CPU
    from `generator`; zero padding is "no ink" (the Omniglot images have strokes 1, paper 0)."""
    n = x.shape[0]

    def draw(low, high, size=()):
        value = low + (high - low) * torch.rand(n, *size, generator=generator)
        keep = torch.rand(n, *([1] * len(size)), generator=generator) < 0.5  # each component with p = 0.5
        return torch.where(keep, value, torch.zeros_like(value))

    angle = torch.deg2rad(draw(-ROTATION_DEG, ROTATION_DEG))
    shear = draw(-SHEAR, SHEAR, (2,))
    scale = 1.0 + draw(SCALE[0] - 1.0, SCALE[1] - 1.0, (2,))
    shift = draw(-2 * SHIFT, 2 * SHIFT, (2,))  # affine_grid's coordinates span 2 per image width
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.eye(2).repeat(n, 1, 1)
    shearing[:, 0, 1], shearing[:, 1, 0] = shear[:, 0], shear[:, 1]
    linear = rotation @ shearing @ torch.diag_embed(scale)
    theta = torch.cat([linear, shift.unsqueeze(-1)], dim=-1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class PairHead(nn.Module):
    """The learned part of the distance: Koch's weighted L1 (α, bias) or a scalar calibration (scale, bias)."""

    def __init__(self, dim: int, distance: str):
        super().__init__()
        self.distance = distance
        if distance == "l1-sigmoid":
            self.linear = nn.Linear(dim, 1)
        else:
            # logit = scale * (−D) + bias; init: cos 0.5 (or ‖a − b‖ = 1) is the decision point
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.bias = nn.Parameter(torch.tensor(5.0 if distance == "cosine" else 10.0))

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits that a[i] and b[j] show the same class: [..., M, N] for a [..., M, d], b [..., N, d]."""
        if self.distance == "l1-sigmoid":
            diff = (a.unsqueeze(-2) - b.unsqueeze(-3)).abs()  # [..., M, N, d]
            return (diff @ self.linear.weight.squeeze(0)) + self.linear.bias
        return self.bias - self.log_scale.exp() * self.dissimilarity(a, b)

    def dissimilarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """D(a[i], b[j]) ≥ 0, small for the same class: [..., M, N]."""
        if self.distance == "l1-sigmoid":
            return 1.0 - torch.sigmoid(self.pair_logits(a, b))
        if self.distance == "cosine":
            return 1.0 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
        # sqrt with a floor: the gradient of ‖a − b‖ is undefined at a == b (the diagonal of a batch)
        return (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1).clamp_min(1e-12).sqrt()


def pair_loss(head: PairHead, z: torch.Tensor, labels: torch.Tensor, loss: str, margin: float):
    """Loss and pair accuracy over every pair (every triplet) of the embeddings z [M, d] with class labels [M]."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos, neg = same & ~eye, ~same
    if loss == "bce":
        logits = head.pair_logits(z, z)
        target = same.to(z.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        value = 0.5 * (bce[pos].mean() + bce[neg].mean())
        correct = (logits > 0) == same
    else:
        d = head.dissimilarity(z, z)
        if loss == "contrastive":
            value = 0.5 * (d[pos].pow(2).mean() + F.relu(margin - d[neg]).pow(2).mean())
        elif loss == "triplet":
            # t[i, j, k] = D(anchor i, positive j) − D(anchor i, negative k) + margin, over valid triplets
            t = d.unsqueeze(-1) - d.unsqueeze(-2) + margin
            valid = pos.unsqueeze(-1) & neg.unsqueeze(-2)
            value = F.relu(t[valid]).mean()
        else:
            raise ValueError(f"siamese.loss: {loss!r} is not one of {', '.join(LOSSES)}")
        correct = (d < margin / 2) == same
    accuracy = 0.5 * (correct[pos].float().mean() + correct[neg].float().mean())
    return value, accuracy


@register("siamese")
class Siamese(AdamEpisodicLearner):
    """Siamese network (Koch et al. 2015) on a Conv-4 twin; K-shot by highest mean similarity per class."""

    kinds = ("classification",)
    Hparams = SiameseHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        if hparams.distance not in DISTANCES:
            raise ValueError(f"siamese.distance: {hparams.distance!r} is not one of {', '.join(DISTANCES)}")
        if hparams.loss not in LOSSES:
            raise ValueError(f"siamese.loss: {hparams.loss!r} is not one of {', '.join(LOSSES)}")
        if hparams.train_per_class < 2:
            raise ValueError("siamese.train_per_class: needs at least 2 images per class to make same pairs")
        self.check_hparams(vars(hparams))
        # with sigmoid_features the backbone's linear head is Koch's fully connected layer; the sigmoid is in _embed
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, hparams.sigmoid_features,
                              generators["init"], device)
        self.head = PairHead(hparams.sigmoid_features or self.net.feature_dim, hparams.distance).to(device)
        if hparams.distance == "l1-sigmoid":
            nets.init_parameters(self.head, generators["init"])
        self.setup_adam([*self.net.parameters(), *self.head.parameters()])
        # verification threshold on D: fixed by the logit for "bce" (p = 0.5); tuned on validation pairs otherwise
        self.threshold = hparams.margin / 2
        # the harness calls predict and then extra_metrics on the same episode object: embed it once
        self._cached: tuple[Episode, list[torch.Tensor]] | None = None

    def modules(self):
        return {"net": self.net, "head": self.head}

    def extra_state(self):
        return {**super().extra_state(), "threshold": self.threshold}

    def load_extra_state(self, state):
        super().load_extra_state(state)
        self._cached = None
        self.threshold = state.get("threshold", self.threshold)

    @classmethod
    def check_hparams(cls, hparams):
        super().check_hparams(hparams)
        if hparams.get("sigmoid_features", 0) < 0:
            raise ValueError(f"siamese.sigmoid_features: {hparams['sigmoid_features']} is negative; set 0 (the "
                             f"backbone's features) or a positive layer width such as Koch's 4096")

    @classmethod
    def training_episode(cls, hparams):
        # an episode of train_ways classes with train_per_class images each; support/query roles are ignored
        return {"ways": hparams.get("train_ways"), "shots": 1, "query": hparams.get("train_per_class", 2) - 1}

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="episodes", tasks=1, within_group=self.hparams.train_within_alphabet,
                            **self.training_episode(vars(self.hparams)))

    def _embed(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """One embedding pass over several image sets (the twins share weights, so one pass is both twins)."""
        z = self.net(torch.cat([x.flatten(0, -4) for x in xs]))
        if self.hparams.sigmoid_features:
            z = torch.sigmoid(z)
        out, start = [], 0
        for x in xs:
            n = x.shape[:-3].numel()
            out.append(z[start:start + n].view(*x.shape[:-3], -1))
            start += n
        return out

    def _test_embeddings(self, episode: Episode) -> list[torch.Tensor]:
        """Support and query embeddings in eval mode, kept for the episode object last asked about (holding the
        object itself, so the identity check cannot be fooled by a new episode at a reused address)."""
        if self._cached is None or self._cached[0] is not episode:
            self.net.eval()
            self._cached = (episode, self._embed(episode.support_x, episode.query_x))
        return self._cached[1]

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self._cached = None
        self.net.train()
        if self.hparams.rotate_classes:
            batch = rotate_classes(batch, self.generators["algorithm"])
        if self.hparams.distort:
            gen = self.generators["algorithm"]
            batch = dataclasses.replace(batch, support_x=affine_distort(batch.support_x.flatten(0, 1), gen).view_as(
                batch.support_x), query_x=affine_distort(batch.query_x.flatten(0, 1), gen).view_as(batch.query_x))
        zs, zq = self._embed(batch.support_x, batch.query_x)
        losses, accs = [], []
        for t in range(len(batch)):
            z = torch.cat([zs[t], zq[t]])
            labels = torch.cat([batch.support_y[t], batch.query_y[t]])
            value, acc = pair_loss(self.head, z, labels, self.hparams.loss, self.hparams.margin)
            losses.append(value)
            accs.append(acc)
        loss = torch.stack(losses).mean()
        self.adam_step(loss)
        return {"loss": loss.item(), "pair_accuracy": 100.0 * torch.stack(accs).mean().item()}

    def _similarity(self, zq: torch.Tensor, zs: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
        """Mean similarity −D of each query to the support images of each class: [Q, ways] (Koch Eq. 4)."""
        sim = -self.head.dissimilarity(zq, zs)                        # [Q, n]
        one_hot = F.one_hot(support_y, ways).to(sim.dtype)            # [n, ways]
        return sim @ one_hot / one_hot.sum(0)

    @torch.no_grad()
    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        zs, zq = self._test_embeddings(episode)
        return self._similarity(zq, zs, episode.support_y, episode.ways)

    # -- verification: same/different pairs of test-class images ----------------------------------------
    @staticmethod
    def verification_pairs(episode: Episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Balanced same/different pairs, a deterministic function of the episode: every query image is paired
        with the first support image of its own class (same) and with the first support image of another class
        (different; the class cycles with the query's index). Returns query index, support index, same flag."""
        ways = episode.ways
        q = torch.arange(len(episode.query_y), device=episode.query_y.device)
        first = torch.stack([(episode.support_y == c).nonzero()[0, 0] for c in range(ways)])  # [ways]
        other = (episode.query_y + 1 + q % max(1, ways - 1)) % ways
        qi = torch.cat([q, q])
        si = torch.cat([first[episode.query_y], first[other]])
        same = torch.cat([torch.ones_like(q, dtype=torch.bool), torch.zeros_like(q, dtype=torch.bool)])
        return qi, si, same

    def _pair_decisions(self, zq, zs, qi, si) -> torch.Tensor:
        a, b = zq[qi].unsqueeze(-2), zs[si].unsqueeze(-2)     # [P, 1, d]: one pair per row
        if self.hparams.loss == "bce":
            return self.head.pair_logits(a, b).view(-1) > 0
        return self.head.dissimilarity(a, b).view(-1) < self.threshold

    @torch.no_grad()
    def extra_metrics(self, episode: Episode) -> dict[str, float]:
        zs, zq = self._test_embeddings(episode)
        qi, si, same = self.verification_pairs(episode)
        correct = self._pair_decisions(zq, zs, qi, si) == same
        return {"verification_accuracy": 100.0 * correct.float().mean().item()}

    @torch.no_grad()
    def tune(self, validation: EpisodeBatch) -> dict[str, float]:
        """contrastive/triplet: choose the verification threshold on D that is most accurate on validation pairs
        (their D has no calibrated decision point; "bce" decides by p > 0.5 as Koch)."""
        if self.hparams.loss == "bce" or len(validation) == 0:
            return {}
        self.net.eval()
        ds, sames = [], []
        for task in validation.tasks():
            zs, zq = self._embed(task.support_x, task.query_x)
            qi, si, same = self.verification_pairs(task)
            ds.append(self.head.dissimilarity(zq[qi].unsqueeze(-2), zs[si].unsqueeze(-2)).view(-1))
            sames.append(same)
        d, same = torch.cat(ds), torch.cat(sames)
        order = d.argsort()
        d, same = d[order], same[order].float()
        # threshold between sorted d[i-1] and d[i]: pairs 0..i-1 called "same"
        hits = torch.cat([same.new_zeros(1), same.cumsum(0)]) + \
            torch.cat([(1 - same).flip(0).cumsum(0).flip(0), same.new_zeros(1)])
        best = int(hits.argmax())
        lo = d[best - 1] if best > 0 else d[0] - 1.0
        hi = d[best] if best < len(d) else d[-1] + 1.0
        self.threshold = float((lo + hi) / 2)
        return {"threshold": self.threshold, "val_verification_accuracy": 100.0 * float(hits[best]) / len(d)}

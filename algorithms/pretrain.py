"""Pre-training baseline: one network trained on all training tasks pooled, fine-tuned on the support set at test.

Regression: Finn et al. 2017, Sec. 5.1 ("pretrained" baseline: a network trained to regress random sinusoids,
fine-tuned with an automatically chosen step size). Classification: Chen et al., "A Closer Look at Few-shot
Classification", ICLR 2019, Sec. 3.1 ("Baseline": a classifier over all training classes, then a new linear
head trained on each episode's support features with the backbone frozen).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from algorithms import nets
from algorithms._registry import register
from algorithms.base import BatchRequest, Episode, EpisodeBatch, LabelledBatch, Learner
from algorithms.functional import finetune_predictions, parameters_of, task_loss


@dataclass
class PretrainHparams:
    lr: float = 0.001                 # Adam on the pooled loss
    meta_batch: int = 25              # tasks pooled per step (regression)
    batch_size: int = 64              # labelled examples per step (classification)
    finetune_lrs: list[float] = field(default_factory=lambda: [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1])
    finetune_lr: float | None = None  # fixed fine-tuning step size; None: chosen from finetune_lrs by tune()
    test_inner_steps: int = 10        # regression fine-tuning steps when the benchmark does not ask for a count
    # classification: a new linear head on frozen features (Chen et al.: SGD, momentum 0.9, weight decay 1e-3,
    # batch 4, 100 epochs over the support set)
    head_epochs: int = 100
    head_batch: int = 4
    head_lr: float = 0.01
    head_weight_decay: float = 0.001
    backbone: str | None = None


def train_linear_head(features: torch.Tensor, labels: torch.Tensor, ways: int, h, generator: torch.Generator,
                      cosine_scale: float | None = None) -> torch.nn.Module:
    """Fit a fresh classifier on (frozen) support features by minibatch SGD, as Chen et al. fine-tune.

    cosine_scale: None for a linear layer (Baseline); a scale for a cosine-similarity head (Baseline++).
    """
    dim = features.shape[-1]
    # drawn on the CPU, where the episode's generator lives, then moved: the same head on every device
    weight = torch.nn.init.kaiming_uniform_(torch.zeros(ways, dim), a=5 ** 0.5, generator=generator)
    weight = weight.to(features.device).requires_grad_(True)
    bias = torch.zeros(ways, device=features.device, requires_grad=cosine_scale is None)
    params = [weight, bias] if cosine_scale is None else [weight]
    opt = torch.optim.SGD(params, lr=h.head_lr, momentum=0.9, dampening=0.9, weight_decay=h.head_weight_decay)
    n = features.shape[0]
    for _ in range(h.head_epochs):
        order = torch.randperm(n, generator=generator).to(features.device)
        for start in range(0, n, h.head_batch):
            idx = order[start:start + h.head_batch]
            logits = head_logits(features[idx], weight, bias, cosine_scale)
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return lambda z: head_logits(z, weight.detach(), bias.detach(), cosine_scale)


def head_logits(z, weight, bias, cosine_scale):
    if cosine_scale is None:
        return F.linear(z, weight, bias)
    return cosine_scale * F.normalize(z, dim=-1) @ F.normalize(weight, dim=-1).t()


@register("pretrain")
class Pretrain(Learner):
    """Pooled-loss pre-training, then fine-tuning on each test task's support set."""

    kinds = ("regression", "classification")
    Hparams = PretrainHparams
    cosine_scale: float | None = None  # Baseline++ sets a scale: cosine classifier in training and at test

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.classify = problem.kind == "classification"
        out_dim = 0 if self.classify else problem.output_dim
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, out_dim,
                              generators["init"], device)
        params = list(self.net.parameters())
        if self.classify:
            # the training classifier over all base classes; discarded at test
            self.head = torch.nn.Linear(self.net.feature_dim, problem.num_train_classes,
                                        bias=self.cosine_scale is None).to(device)
            nets.init_parameters(self.head, generators["init"])
            params += list(self.head.parameters())
        self.loss_fn = task_loss(problem.kind)
        self.optimizer = torch.optim.Adam(params, lr=hparams.lr)
        self.finetune_lr = hparams.finetune_lr

    def modules(self):
        return {"net": self.net, **({"head": self.head} if self.classify else {})}

    def optimizers(self):
        return {"adam": self.optimizer}

    def extra_state(self):
        return {"finetune_lr": self.finetune_lr}

    def load_extra_state(self, state):
        self.finetune_lr = state.get("finetune_lr", self.finetune_lr)

    def batch_request(self) -> BatchRequest:
        if self.classify:
            return BatchRequest(kind="labelled", batch_size=self.hparams.batch_size)
        return BatchRequest(kind="episodes", tasks=self.hparams.meta_batch)

    def meta_train_step(self, batch: EpisodeBatch | LabelledBatch) -> dict[str, float]:
        self.net.train()
        if isinstance(batch, LabelledBatch):
            z = self.net(batch.x)
            logits = head_logits(z, self.head.weight, self.head.bias, self.cosine_scale)
            loss = F.cross_entropy(logits, batch.y)
        else:
            # Every point of every task is one training example of a single regressor: the network learns the
            # average of the task distribution (output-space averaging), which is what makes it a weak start.
            x = torch.cat([batch.support_x, batch.query_x], dim=1).flatten(0, 1)
            y = torch.cat([batch.support_y, batch.query_y], dim=1).flatten(0, 1)
            loss = self.loss_fn(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def tune(self, validation: EpisodeBatch) -> dict[str, float]:
        """Regression: pick the fine-tuning step size with the lowest query loss after test_inner_steps."""
        if self.classify:
            return {}
        if self.hparams.finetune_lr is not None:
            self.finetune_lr = self.hparams.finetune_lr
            return {"finetune_lr": self.finetune_lr}
        steps = self.hparams.test_inner_steps
        scores = {}
        for lr in self.hparams.finetune_lrs:
            losses = []
            for task in validation.tasks():
                pred = finetune_predictions(self.net, parameters_of(self.net), task.support_x, task.support_y,
                                            task.query_x, lr, [steps], self.loss_fn)[steps]
                losses.append(float(self.loss_fn(pred, task.query_y)))
            scores[lr] = sum(losses) / len(losses)
        self.finetune_lr = min(scores, key=scores.get)
        return {"finetune_lr": self.finetune_lr, **{f"val_loss@lr={lr:g}": v for lr, v in scores.items()}}

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        if self.classify:
            return {s: self.predict(episode, s) for s in steps}
        lr = self.finetune_lr if self.finetune_lr is not None else self.hparams.finetune_lrs[0]
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, lr, steps, self.loss_fn)

    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        if not self.classify:
            return super().predict(episode, steps)
        self.net.eval()
        with torch.no_grad():
            support, query = self.net(episode.support_x), self.net(episode.query_x)
        head = train_linear_head(support, episode.support_y, episode.ways, self.hparams,
                                 self._episode_generator(episode), self.cosine_scale)
        with torch.no_grad():
            return head(query)

    def _episode_generator(self, episode: Episode) -> torch.Generator:
        # The head's initialisation and minibatch order depend on the episode only, so predictions do not
        # depend on which episodes were evaluated before.
        ids = episode.info.get("ids")
        data = ids.cpu().numpy().tobytes() if ids is not None else episode.support_y.cpu().numpy().tobytes()
        return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(data).digest()[:7], "little"))

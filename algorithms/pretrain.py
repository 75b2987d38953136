"""Pre-training baseline: one network trained on all training tasks pooled, fine-tuned on the support set at test.

Finn et al. 2017, Sec. 5.1 ("pretrained" baseline: a network trained to regress random sinusoids, fine-tuned
with an automatically chosen step size); for classification, Chen et al., "A Closer Look at Few-shot
Classification", ICLR 2019 ("Baseline": a classifier over all training classes, then a new linear head
fine-tuned on the support set).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from algorithms import nets, register
from algorithms.base import BatchRequest, Episode, EpisodeBatch, Learner
from algorithms.functional import finetune_predictions, parameters_of, task_loss


@dataclass
class PretrainHparams:
    lr: float = 0.001                 # Adam on the pooled loss
    meta_batch: int = 25              # tasks pooled per step (regression)
    finetune_lrs: list[float] = field(default_factory=lambda: [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1])
    finetune_lr: float | None = None  # fixed fine-tuning step size; None: chosen from finetune_lrs by tune()
    test_inner_steps: int = 10        # fine-tuning steps when the benchmark does not ask for a count
    backbone: str | None = None


@register("pretrain")
class Pretrain(Learner):
    """Pooled-loss pre-training, then gradient fine-tuning on each test task's support set."""

    kinds = ("regression",)
    Hparams = PretrainHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, problem.output_dim,
                              generators["init"], device)
        self.loss_fn = task_loss(problem.kind)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hparams.lr)
        self.finetune_lr = hparams.finetune_lr

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"adam": self.optimizer}

    def extra_state(self):
        return {"finetune_lr": self.finetune_lr}

    def load_extra_state(self, state):
        self.finetune_lr = state.get("finetune_lr", self.finetune_lr)

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="episodes", tasks=self.hparams.meta_batch)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
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
        """Pick the fine-tuning step size with the lowest query loss after test_inner_steps steps."""
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
        lr = self.finetune_lr if self.finetune_lr is not None else self.hparams.finetune_lrs[0]
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, lr, steps, self.loss_fn)

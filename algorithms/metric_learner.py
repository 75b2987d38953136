"""MetricLearner: the shared skeleton of the embedding ("metric") learners — protonet, matchingnet, relationnet,
hallucination.

Each embeds the support and query images of an episode with one backbone f_φ (one pass over both sets), scores
every query against the labelled support set, and is trained end to end by Adam on a loss of those scores over
the query set; at test the scores are the prediction. The papers differ only in the scoring (and the loss), so
this class owns everything else: the backbone, the optimiser over all modules, the train/eval switching, the
shape handling of one episode vs a batch of them, and the training step's loss/accuracy report.

A subclass supplies:
- `Hparams`: a dataclass with lr, lr_halve_every, meta_batch, train_ways, train_query (AdamEpisodicLearner's)
  and backbone (None: the benchmark's);
- `scores(zs, support_y, zq, batch)`: query scores [..., Q, ways] from support embeddings [..., n, d] and query
  embeddings [..., Q, d], where `...` is the task dimension of a batch and nothing for one episode (`per_task`
  adds it for heads that need it);
- optionally `build_heads(generators)`: the modules beyond the backbone, by name (the checkpoint's keys); each
  is moved to the device and initialised from the "init" stream in that order, after the backbone;
- optionally `loss(scores, batch)`: default cross-entropy of the scores as logits.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import nets
from algorithms.base import AdamEpisodicLearner, Episode, EpisodeBatch


class MetricLearner(AdamEpisodicLearner):
    """An episodic classifier that scores queries against the support set in a learned embedding."""

    kinds = ("classification",)

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        # draw order on the "init" stream: the backbone, then each head in build_heads' order (checkpoints and
        # published results depend on it)
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, 0, generators["init"], device)
        self.heads: dict[str, nn.Module] = {}
        for name, head in self.build_heads(generators).items():
            self.heads[name] = head.to(device)
            nets.init_parameters(self.heads[name], generators["init"])
        self.setup_adam([p for module in self.modules().values() for p in module.parameters()])

    def build_heads(self, generators) -> dict[str, nn.Module]:
        """The modules besides the backbone (self.net exists already, e.g. for its feature_dim)."""
        return {}

    def modules(self):
        return {"net": self.net, **self.heads}

    # -- the subclass's part -------------------------------------------------------------------------------------
    def scores(self, zs: torch.Tensor, support_y: torch.Tensor, zq: torch.Tensor,
               batch: EpisodeBatch | Episode) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, scores: torch.Tensor, batch: EpisodeBatch) -> torch.Tensor:
        return F.cross_entropy(scores.flatten(0, -2), batch.query_y.flatten())

    # -- shared ---------------------------------------------------------------------------------------------------
    def embed(self, batch: EpisodeBatch | Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """f_φ of the support and query images, [..., n, d] and [..., Q, d], in one pass of the backbone over both
        sets (so batch norm sees them together, as in the papers' code)."""
        support, query = batch.support_x, batch.query_x
        z = self.net(torch.cat([support.flatten(0, -4), query.flatten(0, -4)]))
        n_support = support.shape[:-3].numel()
        return z[:n_support].view(*support.shape[:-3], -1), z[n_support:].view(*query.shape[:-3], -1)

    @staticmethod
    def per_task(head: Callable[..., torch.Tensor], zs: torch.Tensor, support_y: torch.Tensor, zq: torch.Tensor,
                 *args) -> torch.Tensor:
        """head(zs [T, n, d], support_y [T, n], zq [T, Q, d], *args) on a batch or on one episode (given a task
        dimension of 1 and its result taken back out), for heads written for batches only."""
        if support_y.dim() == 1:
            return head(zs[None], support_y[None], zq[None], *args)[0]
        return head(zs, support_y, zq, *args)

    def _scores(self, batch: EpisodeBatch | Episode) -> torch.Tensor:
        zs, zq = self.embed(batch)
        return self.scores(zs, batch.support_y, zq, batch)

    def _mode(self, training: bool) -> None:
        for module in self.modules().values():
            module.train(training)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self._mode(True)
        scores = self._scores(batch)
        loss = self.loss(scores, batch)
        self.adam_step(loss, episodes=len(batch))
        accuracy = (scores.argmax(-1) == batch.query_y).float().mean()
        return {"loss": loss.item(), "accuracy": 100.0 * accuracy.item()}

    @torch.no_grad()
    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        self._mode(False)
        return self._scores(episode)

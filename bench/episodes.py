"""Fixed-seed episode sampling: named RNG streams from a cell seed, frozen test episodes, episode digests.

Test episode i of a benchmark is a pure function of (the benchmark's sampling spec, its eval seed, i): it is
drawn from a torch.Generator seeded by a hash of those three, so every algorithm and every training seed is
scored on identical episodes (paired comparisons) and episode i does not depend on how many are evaluated.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import numpy as np
import torch

from algorithms.base import Episode, EpisodeBatch, stack_episodes


def stable_hash(*parts: Any) -> int:
    """A 63-bit integer from the JSON of `parts`, identical across processes and platforms."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def named_generators(seed: int, names: Iterable[str]) -> dict[str, torch.Generator]:
    """Independent CPU generators, one per stream name, derived from one root seed with SeedSequence."""
    gens = {}
    for name in names:
        child = np.random.SeedSequence(entropy=int(seed), spawn_key=(stable_hash("stream", name),))
        gens[name] = torch.Generator().manual_seed(int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return gens


def frozen_generator(spec_key: dict[str, Any], eval_seed: int, index: int) -> torch.Generator:
    """The generator that draws test episode `index`: depends on nothing but its three arguments."""
    return torch.Generator().manual_seed(stable_hash("test-episode", spec_key, int(eval_seed), int(index)))


def episode_identity(episode: Episode) -> bytes:
    """What identifies an episode for its digest: its `ids` (class ids + example ids, or task parameters)."""
    ids = episode.info.get("ids")
    if ids is None:
        raise ValueError("test episodes must carry info['ids'] (what identifies them) for the digest")
    return ids.detach().cpu().contiguous().numpy().tobytes()


def digest(episodes: Iterable[Episode]) -> str:
    """sha256 over the ids of an episode list, recorded in the manifest to prove comparisons are paired."""
    h = hashlib.sha256()
    for episode in episodes:
        h.update(episode_identity(episode))
    return h.hexdigest()


def batches(episodes: list[Episode], size: int) -> Iterable[tuple[int, EpisodeBatch]]:
    """(first index, batch) over a list of equally shaped episodes."""
    for start in range(0, len(episodes), size):
        yield start, stack_episodes(episodes[start:start + size])

"""Write the committed Omniglot data files next to this script (run once; the outputs are committed):

  omniglot_files.json        the 32,460 expected images with a pixel checksum each (bench.data.omniglot.build_manifest)
  omniglot_vinyals.json      the Prototypical Networks split (Snell et al. 2017, after Vinyals et al. 2016)
  omniglot_maml-random.json  a seeded random 1,100 / 100 / 423 character split, as MAML's code drew it
  omniglot_lake.json         Lake et al. 2015's background / evaluation sets (964 / 659 characters), val from train

Usage: python bench/data/splits/make_omniglot_splits.py [OMNIGLOT_PY_FOLDER]
       (default: ../shared/datasets/omniglot/omniglot-py next to the repository)
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from bench.data.omniglot import Manifest, build_manifest  # noqa: E402

# The Vinyals split as published with the Prototypical Networks code (data/omniglot/splits/vinyals/*.txt in
# github.com/jakesnell/prototypical-networks): validation is five whole background alphabets; test is 13
# evaluation alphabets, of which Gurmukhi only contributes characters 42-45 (its 1-41 are in train); train is
# everything else (the other 25 background alphabets and 7 evaluation alphabets plus Gurmukhi 1-41).
VINYALS_VAL = ["Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"]
VINYALS_TEST = ["Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
                "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG"]
VINYALS_TEST_CHARACTERS = [f"Gurmukhi/character{n:02d}" for n in range(42, 46)]

# MAML (github.com/cbfinn/maml, data_generator.py): random.seed(1); random.shuffle(all 1,623 character folders);
# first 1,100 meta-train, next 100 meta-val, the remaining 423 meta-test. MAML shuffled os.listdir() order,
# which depends on the file system, so its exact characters cannot be recovered; we shuffle the characters
# in official id order (sorted, reproducible) with the same seed and proportions.
MAML_SEED, MAML_TRAIN, MAML_VAL = 1, 1100, 100

# Lake et al. 2015 (and Koch et al. 2015's one-shot task): learn from the 30 background alphabets, test on the 20
# evaluation alphabets, no rotations. Validation (what Learner.tune() picks test-time settings on) is a seeded draw
# of background alphabets that stay in train: the protocol's train and test parts are whole sets (964 / 659), so
# a disjoint validation part would have to shrink one of them (Koch took 10 evaluation alphabets for it, leaving
# 10 to test); tuning on test characters would leak them into the score, tuning on seen ones only biases the
# chosen settings towards classes the learner knows. Only alphabets with >= 20 characters, so one alone holds a
# 20-way episode.
LAKE_SEED, LAKE_VAL_ALPHABETS = 2015, 5


def vinyals(names: list[str]) -> dict:
    alphabet = {n: n.split("/")[0] for n in names}
    val = [n for n in names if alphabet[n] in VINYALS_VAL]
    test = [n for n in names if alphabet[n] in VINYALS_TEST or n in VINYALS_TEST_CHARACTERS]
    train = [n for n in names if n not in set(val) | set(test)]
    return {"name": "vinyals",
            "about": "Prototypical Networks' Omniglot split (Snell et al. 2017; after Vinyals et al. 2016): "
                     "whole alphabets except Gurmukhi (1-41 train, 42-45 test). With rotations [0, 90, 180, 270] "
                     "it gives 4,112 / 688 / 1,692 classes.",
            "source": "github.com/jakesnell/prototypical-networks data/omniglot/splits/vinyals/{train,val,test}.txt",
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
            "train": train, "val": val, "test": test}


def maml_random(names: list[str]) -> dict:
    order = list(names)
    random.Random(MAML_SEED).shuffle(order)  # a private generator: nothing global is touched
    train, val, test = order[:MAML_TRAIN], order[MAML_TRAIN:MAML_TRAIN + MAML_VAL], order[MAML_TRAIN + MAML_VAL:]
    return {"name": "maml-random",
            "about": "MAML's random character split (Finn et al. 2017): 1,200 meta-training characters "
                     "(1,100 train + 100 validation) and 423 test characters, drawn once and committed.",
            "method": f"random.Random({MAML_SEED}).shuffle(characters in official id order); "
                      f"train = first {MAML_TRAIN}, val = next {MAML_VAL}, test = the rest",
            "seed": MAML_SEED,
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
            "train": sorted(train, key=names.index), "val": sorted(val, key=names.index),
            "test": sorted(test, key=names.index)}


def lake(characters: list) -> dict:
    """`characters`: the manifest's Character records (their set says background or evaluation)."""
    names = [c.name for c in characters]
    train = [c.name for c in characters if c.set == "images_background"]
    test = [c.name for c in characters if c.set == "images_evaluation"]
    sizes = {}
    for n in train:
        sizes[n.split("/")[0]] = sizes.get(n.split("/")[0], 0) + 1
    candidates = sorted(a for a, k in sizes.items() if k >= 20)
    val_alphabets = sorted(random.Random(LAKE_SEED).sample(candidates, LAKE_VAL_ALPHABETS))
    val = [n for n in train if n.split("/")[0] in val_alphabets]
    return {"name": "lake",
            "about": "Lake et al. 2015 (Science) background / evaluation split, as Koch et al. 2015 used it: train = "
                     "images_background (30 alphabets, 964 characters), test = images_evaluation (20 alphabets, "
                     "659 characters), no rotations. val: 5 background alphabets that also stay in train "
                     "(val_in_train): only Learner.tune() sees them; see make_omniglot_splits.py for why.",
            "method": f"val alphabets = sorted(random.Random({LAKE_SEED}).sample(sorted(background alphabets with "
                      f">= 20 characters), {LAKE_VAL_ALPHABETS}))",
            "seed": LAKE_SEED, "val_alphabets": val_alphabets, "val_in_train": True, "rotations": [0],
            "counts": {"train": len(train), "val": len(val), "test": len(test)},
            "train": sorted(train, key=names.index), "val": sorted(val, key=names.index),
            "test": sorted(test, key=names.index)}


def write_json(path: Path, data: dict) -> None:
    # one list item per line: reviewable diffs, still plain JSON
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


def main(base: Path) -> None:
    manifest = {"about": "The 32,460 Omniglot images (Lake et al. 2015; github.com/brendenlake/omniglot, MIT) in "
                         "torchvision's layout: per alphabet its set, first character id and, per character, the "
                         "pixel checksums of drawings 01..20 (8 hex digits each). Made by make_omniglot_splits.py "
                         "from ../shared/datasets/omniglot (original evaluation PNGs; background PNGs pixel-identical "
                         "to the official ones).",
                **build_manifest(base)}
    write_json(HERE / "omniglot_files.json", manifest)
    names = Manifest.load(HERE / "omniglot_files.json").names
    assert len(names) == 1623, len(names)
    split = vinyals(names)
    assert split["counts"] == {"train": 1028, "val": 172, "test": 423}, split["counts"]
    assert len({n.split("/")[0] for n in split["test"]}) == 13
    write_json(HERE / "omniglot_vinyals.json", split)
    write_json(HERE / "omniglot_maml-random.json", maml_random(names))
    split = lake(Manifest.load(HERE / "omniglot_files.json").characters)
    assert split["counts"]["train"] == 964 and split["counts"]["test"] == 659, split["counts"]
    write_json(HERE / "omniglot_lake.json", split)


if __name__ == "__main__":
    default = HERE.parents[3] / "shared" / "datasets" / "omniglot" / "omniglot-py"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)

"""The metric-based family (siamese, matchingnet, relationnet, hallucination, baselinepp): properties that the
registry's smoke cells do not check — support-order (in)variance of Matching Networks, the relation module's
split convolution, hallucination with 0 examples being ProtoNet, Siamese pairs and switches. No dataset needed."""
import dataclasses

import pytest
import torch

import algorithms
from algorithms.base import Episode, ProblemSpec, stack_episodes

SHAPE = (1, 28, 28)


def problem(ways=5, shots=1, train_ways=None, num_train_classes=0):
    return ProblemSpec(kind="classification", input_shape=SHAPE, ways=ways, shots=shots, output_dim=ways,
                       backbone="conv4", train_ways=train_ways or ways, train_shots=shots, train_query=3,
                       num_train_classes=num_train_classes)


def make(name, spec=None, seed=0, **hparams):
    cls = algorithms.get(name)
    h = cls.Hparams(**hparams)
    gens = {"init": torch.Generator().manual_seed(seed), "algorithm": torch.Generator().manual_seed(seed + 1)}
    return cls(spec or problem(), h, torch.device("cpu"), gens)


def episode(ways=5, shots=1, query=3, seed=0):
    """Class-dependent random images (each class a noisy copy of its own pattern), labels in class order."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(ways, *SHAPE, generator=g)
    def draw(n):
        y = torch.arange(ways).repeat_interleave(n)
        return (patterns[y] + 0.3 * torch.rand(len(y), *SHAPE, generator=g)).clamp(0, 1), y
    sx, sy = draw(shots)
    qx, qy = draw(query)
    return Episode(sx, sy, qx, qy, ways, shots, {"ids": torch.arange(4) + seed})


def permuted(ep: Episode, perm: torch.Tensor) -> Episode:
    return dataclasses.replace(ep, support_x=ep.support_x[perm], support_y=ep.support_y[perm])


def train_steps(learner, n=2, ways=5, shots=1, query=3):
    for i in range(n):
        learner.meta_train_step(stack_episodes([episode(ways, shots, query, seed=100 + i)]))


# -- Matching Networks: the lecture's point about full context embeddings ------------------------------------

@pytest.mark.parametrize("shots", [1, 2])
def test_matchingnet_fce_makes_logits_depend_on_support_order(shots):
    learner = make("matchingnet", problem(shots=shots), fce=True, fce_steps=3, scale=10.0)
    train_steps(learner, shots=shots)
    ep = episode(shots=shots)
    perm = torch.randperm(len(ep.support_y), generator=torch.Generator().manual_seed(3))
    a, b = learner.predict(ep), learner.predict(permuted(ep, perm))
    assert (a - b).abs().max() > 1e-4, "FCE's bidirectional LSTM reads the support set in order"


@pytest.mark.parametrize("shots", [1, 2])
def test_matchingnet_without_fce_ignores_support_order(shots):
    learner = make("matchingnet", problem(shots=shots), fce=False, scale=10.0)
    train_steps(learner, shots=shots)
    ep = episode(shots=shots)
    perm = torch.randperm(len(ep.support_y), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(learner.predict(ep), learner.predict(permuted(ep, perm)), atol=1e-5, rtol=1e-5)


def test_matchingnet_logits_are_log_attention_weights_per_class():
    from algorithms.matchingnet import matching_logits
    g = torch.Generator().manual_seed(0)
    zq, zs = torch.randn(1, 4, 8, generator=g), torch.randn(1, 6, 8, generator=g)
    y = torch.tensor([[0, 1, 2, 0, 1, 2]])
    logits = matching_logits(zq, zs, y, 3, scale=5.0)
    attention = torch.softmax(5.0 * torch.nn.functional.cosine_similarity(zq[0, :, None], zs[0, None], dim=-1), -1)
    expected = attention @ torch.nn.functional.one_hot(y[0], 3).float()
    torch.testing.assert_close(logits[0].exp(), expected)


# -- Relation Networks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_relation_module_split_convolution_equals_concatenation(training):
    learner = make("relationnet")
    module = learner.relation.double().train(training)
    g = torch.Generator().manual_seed(0)
    classes = torch.rand(5, 64, 7, 7, generator=g, dtype=torch.float64)
    queries = torch.rand(9, 64, 7, 7, generator=g, dtype=torch.float64)
    if not training:  # non-trivial running statistics
        module.train()
        module(classes, queries)
        module.eval()
    torch.testing.assert_close(module(classes, queries), module.reference(classes, queries))


def test_relationnet_feature_maps_and_kshot_sum():
    learner = make("relationnet", problem(shots=2))
    assert (learner.channels, learner.size) == (64, 7)  # 28 -> 14 -> 7 (pooling in the first two blocks only)
    train_steps(learner, shots=2)
    scores = learner.predict(episode(shots=2))
    assert scores.shape == (15, 5) and bool(((scores > 0) & (scores < 1)).all())


# -- Hallucination: with 0 generated examples it is ProtoNet -------------------------------------------------

def test_hallucination_with_zero_examples_is_protonet():
    spec = problem(train_ways=5)
    proto = make("protonet", spec)
    hall = make("hallucination", spec, n_hallucinated=0)
    for a, b in zip(proto.net.parameters(), hall.net.parameters()):
        assert torch.equal(a, b)
    for i in range(3):
        batch = stack_episodes([episode(seed=200 + i)])
        assert proto.meta_train_step(batch) == hall.meta_train_step(batch)
    ep = episode(seed=7)
    assert torch.equal(proto.predict(ep), hall.predict(ep))


def test_hallucination_adds_examples_and_is_deterministic_per_episode():
    learner = make("hallucination", problem(shots=2), n_hallucinated=3)
    train_steps(learner, shots=2)
    zs = torch.randn(10, 64)
    y = torch.arange(5).repeat_interleave(2)
    fake, fake_y = learner.hallucinate(zs, y, 5, torch.Generator().manual_seed(0))
    assert fake.shape == (15, 64) and fake_y.tolist() == [k for k in range(5) for _ in range(3)]
    ep = episode(shots=2, seed=4)
    first = learner.predict(ep)
    learner.predict(episode(shots=2, seed=5))  # evaluating another episode in between changes nothing
    assert torch.equal(first, learner.predict(ep))
    plain = make("hallucination", problem(shots=2), n_hallucinated=0)
    plain.load_state_dict({**learner.state_dict(), "extra": learner.extra_state()})
    assert not torch.equal(first, plain.predict(ep)), "hallucinated examples move the prototypes"


# -- Siamese ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("distance", ["l1-sigmoid", "cosine", "euclidean"])
@pytest.mark.parametrize("loss", ["bce", "contrastive", "triplet"])
def test_siamese_switches_train_and_report_verification(distance, loss):
    learner = make("siamese", distance=distance, loss=loss, train_ways=5, train_per_class=3)
    for i in range(2):
        values = learner.meta_train_step(stack_episodes([episode(shots=1, query=2, seed=300 + i)]))
        assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    tuned = learner.tune(stack_episodes([episode(seed=10), episode(seed=11)]))
    assert ("threshold" in tuned) == (loss != "bce")
    ep = episode(shots=2)
    logits = learner.predict(ep)
    assert logits.shape == (15, 5)
    metrics = learner.extra_metrics(ep)
    assert 0.0 <= metrics["verification_accuracy"] <= 100.0
    assert metrics == learner.extra_metrics(ep)


def test_siamese_verification_pairs_are_balanced_and_valid():
    from algorithms.siamese import Siamese
    ep = episode(ways=5, shots=2, query=3)
    qi, si, same = Siamese.verification_pairs(ep)
    assert int(same.sum()) == int((~same).sum()) == len(ep.query_y)
    assert torch.equal(ep.query_y[qi] == ep.support_y[si], same)


def test_siamese_l1_head_is_koch_eq1():
    learner = make("siamese")
    a, b = torch.randn(3, 64), torch.randn(4, 64)
    w, bias = learner.head.linear.weight[0], learner.head.linear.bias
    expected = torch.sigmoid((a[:, None] - b[None]).abs() @ w + bias)
    torch.testing.assert_close(torch.sigmoid(learner.head.pair_logits(a, b)), expected)


def test_siamese_sigmoid_features_are_koch_fully_connected_layer():
    """siamese.sigmoid_features: the twin's embedding is sigmoid(W · backbone features + b), the width asked for,
    and the weighted L1 head compares those (float64 reference of the same computation)."""
    learner = make("siamese", sigmoid_features=16)
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    learner.net.eval()
    (z,) = learner._embed(x)
    assert z.shape == (3, 16) and bool(((z > 0) & (z < 1)).all())
    features = learner.net.features(x).double()
    fc = learner.net.head
    expected = torch.sigmoid(features @ fc.weight.double().T + fc.bias.double())
    torch.testing.assert_close(z.double(), expected, rtol=1e-5, atol=1e-6)
    assert learner.head.linear.in_features == 16
    values = learner.meta_train_step(stack_episodes([episode(shots=1, query=2, seed=1)]))
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    with pytest.raises(ValueError, match="siamese.sigmoid_features"):
        make("siamese", sigmoid_features=-1)


# -- Baseline++ ------------------------------------------------------------------------------------------------

def test_baselinepp_uses_cosine_classifiers():
    from algorithms.base import LabelledBatch
    learner = make("baselinepp", problem(num_train_classes=7), cosine_scale=10.0, head_scale=2.0, head_epochs=2)
    assert learner.head.bias is None  # a cosine classifier has no bias
    g = torch.Generator().manual_seed(0)
    batch = LabelledBatch(torch.rand(8, *SHAPE, generator=g), torch.randint(7, (8,), generator=g), 7)
    learner.meta_train_step(batch)
    logits = learner.predict(episode())
    assert logits.shape == (15, 5) and float(logits.abs().max()) <= 2.0 + 1e-5  # |scale * cos| <= scale


def test_koch_affine_distortion_moves_ink_within_its_ranges():
    """siamese.distort (Koch et al. Sec. 4.3): each image under its own random affine map; the same generator
    state gives the same images; ink is neither created nor lost beyond what a 0.8-1.2 scale allows."""
    import torch

    from algorithms.siamese import affine_distort
    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    y = affine_distort(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0 + 1e-6
    assert torch.equal(y, affine_distort(x, torch.Generator().manual_seed(0)))
    mass = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert bool(((mass > 0.8**2 * 0.9) & (mass < 1.2**2 * 1.1)).all())
    assert int((y != x).flatten(1).any(1).sum()) >= 28  # nearly every image is changed (p = 1/16 of none)


def test_siamese_rotate_classes_turns_all_of_a_class_by_one_quarter_count():
    """siamese.rotate_classes: each class of each task turned by its own multiple of 90 degrees, the same turn for
    its support and query images; labels untouched; the same generator state gives the same batch."""
    import torch

    from algorithms.base import EpisodeBatch
    from algorithms.siamese import rotate_classes
    g = torch.Generator().manual_seed(5)
    ways, per = 12, 3
    support_y = torch.arange(ways).expand(2, -1)
    query_y = torch.arange(ways).repeat_interleave(per).expand(2, -1)
    batch = EpisodeBatch(torch.rand(2, ways, 1, 6, 6, generator=g), support_y,
                         torch.rand(2, ways * per, 1, 6, 6, generator=g), query_y, ways, 1)
    out = rotate_classes(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out.support_y, support_y) and torch.equal(out.query_y, query_y)
    assert torch.equal(out.support_x, rotate_classes(batch, torch.Generator().manual_seed(0)).support_x)
    seen = set()
    for t in range(2):
        for c in range(ways):
            images = torch.cat([batch.support_x[t][support_y[t] == c], batch.query_x[t][query_y[t] == c]])
            turned = torch.cat([out.support_x[t][support_y[t] == c], out.query_x[t][query_y[t] == c]])
            quarters = [k for k in range(4) if torch.equal(turned, torch.rot90(images, k, dims=(-2, -1)))]
            assert len(quarters) == 1           # one turn for the whole class (random images: no symmetry)
            seen.add(quarters[0])
    assert seen == {0, 1, 2, 3}                 # 24 classes: every turn occurs (p of missing one < 4 * 0.75^24)

"""Black-box meta-learners (blackbox-lstm, mann, snail): episodes as sequences, the label-delay stream, MANN's
instance accuracies and LRUA addressing, SNAIL's causality, and per-query branching == separate sequences."""
import math

import pytest
import torch
from torch.nn import functional as F

from algorithms import mann, nets, sequences, snail
from algorithms.base import Episode
from algorithms.blackbox_lstm import LSTMReader


def _module(factory, seed=0):
    return sequences.build_module(factory, torch.Generator().manual_seed(seed), "cpu").double()


def _episode(ways=5, shots=1, query=15, ids=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat_interleave(shots)
    query_y = torch.arange(ways).repeat_interleave(query)
    info = {"ids": torch.randint(0, 10_000, (ways + ways * (shots + query),), generator=g)} if ids else {}
    return Episode(torch.rand(ways * shots, 1, 4, 4, generator=g), support_y,
                   torch.rand(ways * query, 1, 4, 4, generator=g), query_y, ways, shots, info)


# -- sequences ---------------------------------------------------------------------------------------------


def test_delayed_stream_carries_the_previous_label():
    features = torch.arange(8.0).view(1, 4, 2)
    labels = torch.tensor([[2, 0, 1, 2]])
    steps = sequences.delayed_steps(features, labels, ways=3)
    assert torch.equal(steps[..., :2], features)
    assert torch.equal(steps[0, :, 2:], torch.tensor([[0.0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]))
    # a query after the stream carries the stream's last label
    q = sequences.delayed_query_steps(torch.zeros(1, 2, 2), labels[:, -1], 3)
    assert torch.equal(q[0, :, 2:], torch.tensor([[0.0, 0, 1], [0, 0, 1]]))


def test_sequence_protocol_labels_support_and_zeroes_queries():
    support, query = torch.ones(2, 3, 4), torch.ones(2, 5, 4)
    y = torch.tensor([[1, 0, 2], [2, 2, 0]])
    s, q = sequences.support_and_query_steps("sequence", support, y, query, 3)
    assert torch.equal(s[..., 4:], F.one_hot(y, 3).float())
    assert q.shape == (2, 5, 7) and not q[..., 4:].any()
    with pytest.raises(ValueError, match="protocol"):
        sequences.check_protocol("tape", "mann")


def test_gather_steps_reorders_each_task():
    x = torch.arange(6).view(2, 3)
    order = torch.tensor([[2, 0, 1], [1, 2, 0]])
    assert torch.equal(sequences.gather_steps(x, order), torch.tensor([[2, 0, 1], [4, 5, 3]]))
    images = torch.arange(12.0).view(2, 3, 2)
    assert torch.equal(sequences.gather_steps(images, order)[1, 0], images[1, 1])


def test_instance_bookkeeping():
    labels = torch.tensor([[0, 1, 0, 0, 2, 1]])
    assert torch.equal(sequences.instance_numbers(labels), torch.tensor([[1, 1, 2, 3, 1, 2]]))
    correct = torch.tensor([[False, True, True, False, False, False]])
    acc = sequences.instance_accuracies(correct, sequences.instance_numbers(labels), (1, 2, 3, 10))
    assert acc == pytest.approx({"acc@instance1": 100 / 3, "acc@instance2": 50.0, "acc@instance3": 0.0})


def test_test_stream_has_ten_presentations_per_class_and_depends_only_on_the_episode():
    ep = _episode()
    x, y = sequences.test_stream(ep)
    assert x.shape[0] == 50 and torch.equal(torch.bincount(y), torch.full((5,), 10))
    assert sequences.instance_numbers(y[None]).max() == 10
    x2, y2 = sequences.test_stream(_episode())                             # the same episode rebuilt
    assert torch.equal(x, x2) and torch.equal(y, y2)
    other = _episode()
    other.info["ids"] = other.info["ids"] + 1                              # another episode id: another order
    assert not torch.equal(sequences.test_stream(other)[1], y)
    # each image really is one of its class's first ten (support first, then queries)
    allowed = {c: torch.cat([ep.support_x[ep.support_y == c], ep.query_x[ep.query_y == c]])[:10] for c in range(5)}
    for xi, yi in zip(x, y):
        assert any(torch.equal(xi, a) for a in allowed[int(yi)])
    # without ids the pixels seed the order
    assert torch.equal(sequences.test_stream(_episode(ids=False))[1], sequences.test_stream(_episode(ids=False))[1])


# -- MANN ---------------------------------------------------------------------------------------------------


def test_lrua_write_on_a_hand_made_example():
    memory = torch.tensor([[[1.0, 0], [0, 1], [1, 1], [2, 0]]])         # 4 slots of width 2
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3]])                           # least used: slot 1, then slot 3
    read_prev = torch.tensor([[[0.0, 0, 1, 0], [1, 0, 0, 0]]])            # head 0 read slot 2, head 1 slot 0
    gate = torch.tensor([[[0.25], [0.5]]])
    values = torch.tensor([[[4.0, 8], [1, 1]]])
    assert torch.equal(mann.least_used(usage, 2), torch.tensor([[[0.0, 1, 0, 0], [0, 0, 0, 1]]]))
    new, write = mann.lrua_write(memory, usage, read_prev, gate, values)
    # w^w = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1}; head 0 gets the least-used slot 1, head 1 the next, slot 3
    assert torch.allclose(write, torch.tensor([[[0.0, 0.75, 0.25, 0], [0.5, 0, 0, 0.5]]]))
    # slot 1 (least used) is erased first, then every slot gets Σ_heads w^w k
    expected = torch.tensor([[[1 + 0.5, 0 + 0.5], [0 + 3, 0 + 6], [1 + 1, 1 + 2], [2 + 0.5, 0 + 0.5]]])
    assert torch.allclose(new, expected)


def test_content_read_is_a_sharpened_cosine_lookup():
    memory = torch.tensor([[[1.0, 0], [0, 3], [-1, 0]]])
    keys = torch.tensor([[[0.0, 1]]])
    weights, reads = mann.content_read(memory, keys, torch.tensor([[[50.0]]]))
    assert weights.argmax() == 1 and weights[0, 0, 1] > 0.99
    assert torch.allclose(reads, memory[:, 1:2], atol=0.05)
    flat, _ = mann.content_read(memory, keys, torch.tensor([[[0.0]]]))    # strength 0: uniform
    assert torch.allclose(flat, torch.full((1, 1, 3), 1 / 3))


def test_usage_decays_and_accumulates_reads_and_writes():
    core = _module(lambda: mann.MANNCore(6, 3, controller=8, slots=5, width=4, heads=2, gamma=0.9))
    state = core.initial_state(2, torch.zeros(1, dtype=torch.double))
    x = torch.rand(2, 6, dtype=torch.double)
    _, s1 = core.step(x, state)
    _, s2 = core.step(x, s1)
    # once there is a previous read, each step adds one unit of read weight and one of write weight per head:
    # Σ w^u_t = γ Σ w^u_{t-1} + 2 · heads (the first write has no previous read to reuse, only σ-scaled LRU)
    assert torch.allclose(s2["usage"].sum(-1), 0.9 * s1["usage"].sum(-1) + 4.0)


@pytest.mark.parametrize("factory", [
    lambda: mann.MANNCore(7, 3, controller=8, slots=6, width=4, heads=2, gamma=0.95),
    lambda: LSTMReader(7, 3, hidden=8, layers=2),
    lambda: snail.SNAILNet(7, 3, length=5, filters=4, keys=[4, 6, 8], values=[3, 5, 2]),
], ids=["mann", "lstm", "snail"])
def test_each_query_equals_its_own_support_plus_query_sequence(factory):
    """Branching per query after the support prefix == running T separate sequences support + query_i."""
    model = _module(factory)
    g = torch.Generator().manual_seed(1)
    support, query = torch.rand(2, 4, 7, generator=g).double(), torch.rand(2, 3, 7, generator=g).double()
    support_logits, query_logits = model(support, query)
    for i in range(3):
        full, _ = model(torch.cat([support, query[:, i:i + 1]], dim=1), query[:, :0])
        assert torch.allclose(full[:, :4], support_logits, atol=1e-10)
        assert torch.allclose(full[:, 4], query_logits[:, i], atol=1e-10)


@pytest.mark.parametrize("factory", [
    lambda: mann.MANNCore(7, 3, controller=8, slots=6, width=4, heads=2, gamma=0.95),
    lambda: LSTMReader(7, 3, hidden=8, layers=2),
    lambda: snail.SNAILNet(7, 3, length=5, filters=4, keys=[4, 6, 8], values=[3, 5, 2]),
], ids=["mann", "lstm", "snail"])
def test_a_query_at_position_p_sees_only_the_first_p_support_steps(factory):
    """What the instance metric of 'sequence' learners relies on: query i at positions[i] = p gives the logits of
    the sequence support[:p] + query i."""
    model = _module(factory)
    g = torch.Generator().manual_seed(2)
    support, query = torch.rand(2, 5, 7, generator=g).double(), torch.rand(2, 4, 7, generator=g).double()
    positions = torch.tensor([0, 3, 1, 5])
    support_logits, query_logits = model(support, query, positions)
    assert torch.allclose(support_logits, model(support, query[:, :0])[0], atol=1e-10)
    for i, p in enumerate(positions.tolist()):
        if p == 0:                                                       # an empty prefix: the query alone
            expected = model(query[:, i:i + 1], query[:, :0])[0][:, 0]
        else:
            expected = model(support[:, :p], query[:, i:i + 1])[1][:, 0]
        assert torch.allclose(query_logits[:, i], expected, atol=1e-10), f"query {i} at position {p}"


# -- SNAIL ---------------------------------------------------------------------------------------------------


def test_snail_is_causal():
    """Outputs at step t do not depend on inputs after t: perturbing steps > t leaves outputs ≤ t unchanged, and
    the gradient of output t with respect to later inputs is exactly zero."""
    model = _module(lambda: snail.SNAILNet(5, 3, length=9, filters=4, keys=[4, 6, 8], values=[3, 5, 2]))
    seq = torch.rand(1, 9, 5, dtype=torch.double, requires_grad=True)
    out, _ = model(seq, seq[:, :0])
    for t in range(9):
        (grad,) = torch.autograd.grad(out[0, t].sum(), seq, retain_graph=True)
        assert not grad[0, t + 1:].any(), f"output {t} depends on a later input"
        assert grad[0, :t + 1].abs().sum() > 0
    changed = seq.detach().clone()
    changed[:, 5:] += 1.0
    out2, _ = model(changed, changed[:, :0])
    assert torch.allclose(out2[:, :5], out[:, :5].detach()) and not torch.allclose(out2[:, 5:], out[:, 5:].detach())


def test_snail_dilations_cover_the_sequence():
    model = snail.SNAILNet(5, 20, length=21, filters=4, keys=[4, 6, 8], values=[3, 5, 2])
    dilations = [m.dilation for m in model.modules() if isinstance(m, snail.DenseBlock)]
    assert dilations == [1, 2, 4, 8, 16] * 2                               # ⌈log2 21⌉ = 5 per TC block


# -- learners ------------------------------------------------------------------------------------------------


def test_predictions_do_not_depend_on_query_order_or_learner_state(config):
    """Queries are independent; the support order at test is a function of the episode, not of the learner's
    generators, so predicting twice (or in another order) gives the same logits."""
    from conftest import real_omniglot_available

    from bench import cell as runner
    if not real_omniglot_available():
        pytest.skip("needs the Omniglot images (set METABENCH_DATA)")
    cell = config.cell("omniglot-5w1s", "mann", 0, "smoke")
    source = runner.task_source(cell.spec, None)
    learner, _ = runner.build_learner(cell, source, torch.device("cpu"))
    ep = source.test_episode(0, cell.spec["eval_seed"])
    a = learner.predict(ep)
    perm = torch.randperm(len(ep.query_y), generator=torch.Generator().manual_seed(0))
    shuffled = Episode(ep.support_x, ep.support_y, ep.query_x[perm], ep.query_y[perm], ep.ways, ep.shots, ep.info)
    assert torch.allclose(learner.predict(shuffled), a[perm], atol=1e-5)
    assert torch.equal(learner.predict(ep), a)
    metrics = learner.extra_metrics(ep)
    assert set(metrics) == {f"acc@instance{k}" for k in (1, 2, 5, 10)} and metrics == learner.extra_metrics(ep)


def test_pixels_embedding_resizes_and_flattens():
    px = sequences.Pixels((1, 28, 28), size=20)
    assert px.feature_dim == 400 and px(torch.rand(3, 1, 28, 28)).shape == (3, 400)
    assert nets.names()  # the registry of conv backbones is untouched


@pytest.mark.parametrize("name", ["mann", "blackbox-lstm", "snail"])
def test_learners_train_on_pixel_streams_without_queries_and_report_instances(name):
    """MANN's original setting (paper profile): raw 20x20 pixels, 50-step training streams with no queries."""
    import algorithms
    from algorithms.base import EpisodeBatch, ProblemSpec
    cls = algorithms.get(name)
    problem = ProblemSpec(kind="classification", input_shape=(1, 8, 8), ways=3, shots=1, output_dim=3,
                          backbone="conv4")
    gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
    settings = dict(backbone="pixels", pixel_size=4, train_shots=4, train_query=0, meta_batch=2)
    with pytest.raises(ValueError, match="train_query"):     # 'sequence' needs queries to predict
        cls(problem, cls.Hparams(protocol="sequence", **settings), torch.device("cpu"), gens)
    learner = cls(problem, cls.Hparams(protocol="stream", **settings), torch.device("cpu"), gens)
    g = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(4).expand(2, -1)
    batch = EpisodeBatch(torch.rand(2, 12, 1, 8, 8, generator=g), y, torch.rand(2, 0, 1, 8, 8), y[:, :0], 3, 4)
    values = learner.meta_train_step(batch)
    assert torch.isfinite(torch.tensor(values["loss"])) and "accuracy" not in values
    episode = Episode(torch.rand(3, 1, 8, 8, generator=g), torch.arange(3), torch.rand(30, 1, 8, 8, generator=g),
                      torch.arange(3).repeat_interleave(10), 3, 1)
    assert learner.predict(episode).shape == (30, 3)
    assert set(learner.extra_metrics(episode)) == {f"acc@instance{k}" for k in (1, 2, 5, 10)}


def test_curriculum_over_ways_grows_linearly_and_spreads_labels_over_every_slot():
    """curriculum_ways: training episodes start with fewer classes and grow to the benchmark's ways at
    curriculum_until of the run; a k-way episode's labels land on k random slots, the same slot for a class's
    support and queries, different slots in different episodes."""
    import algorithms
    from algorithms.base import EpisodeBatch, ProblemSpec
    cls = algorithms.get("blackbox-lstm")
    problem = ProblemSpec(kind="classification", input_shape=(1, 8, 8), ways=20, shots=1, output_dim=20,
                          backbone="conv4")
    gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
    settings = dict(backbone="pixels", train_query=2, meta_batch=3, hidden=8)
    learner = cls(problem, cls.Hparams(curriculum_ways=5, curriculum_until=0.5, **settings), torch.device("cpu"),
                  gens)
    learner.meta_iters = 100
    ways = []
    for step in (0, 10, 25, 49, 50, 99):
        learner.schedule.last_epoch = step
        ways.append(learner.batch_request().ways)
    assert ways == [5, 8, 12, 20, 20, 20]
    assert cls(problem, cls.Hparams(**settings), torch.device("cpu"), gens).batch_request().ways is None
    held = cls(problem, cls.Hparams(curriculum_ways=5, curriculum_from=0.6, curriculum_until=0.9, **settings),
               torch.device("cpu"), gens)   # 5 ways until 60% of the run, then 5 -> 20 by 90%
    held.meta_iters = 100
    ways = []
    for step in (0, 59, 60, 70, 80, 89, 90, 99):
        held.schedule.last_epoch = step
        ways.append(held.batch_request().ways)
    assert ways == [5, 5, 5, 10, 15, 20, 20, 20]
    with pytest.raises(ValueError, match="curriculum_from"):
        cls(problem, cls.Hparams(curriculum_ways=5, curriculum_from=0.5, curriculum_until=0.5, **settings),
            torch.device("cpu"), gens)

    g = torch.Generator().manual_seed(2)
    support_y = torch.arange(5).expand(3, -1)
    query_y = torch.arange(5).repeat_interleave(2).expand(3, -1)
    batch = EpisodeBatch(torch.rand(3, 5, 1, 8, 8, generator=g), support_y, torch.rand(3, 10, 1, 8, 8, generator=g),
                         query_y, 5, 1)
    spread = learner._spread_labels(batch)
    assert spread.ways == 20 and int(spread.support_y.max()) < 20
    for t in range(3):
        slots = spread.support_y[t]
        assert len(set(slots.tolist())) == 5                                   # distinct slots per class
        assert torch.equal(spread.query_y[t], slots.repeat_interleave(2))      # queries follow their class
    assert not torch.equal(spread.support_y[0], spread.support_y[1])           # a new draw per episode
    learner.schedule.last_epoch = 0
    assert torch.isfinite(torch.tensor(learner.meta_train_step(batch)["loss"]))


def test_curriculum_mask_scores_a_curriculum_episode_over_its_own_label_slots_only():
    """curriculum_mask: a k-way episode under a 20-slot head is scored by a softmax over its k slots (the same
    loss as the k columns alone, in float64), the other slots' head rows get no gradient, and an episode with every
    slot present is left as it is."""
    import algorithms
    from algorithms.base import EpisodeBatch, ProblemSpec
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 6, 20, generator=g, dtype=torch.float64)
    support_y = torch.tensor([[3, 7, 11], [0, 19, 5]])
    query_y = support_y.repeat_interleave(2, dim=1)
    masked = sequences.absent_labels_masked(logits, support_y, 20)
    for t in range(2):
        slots = support_y[t]
        own = logits[t][:, slots]                                    # the episode's 3 columns, in slot order
        target = (query_y[t][:, None] == slots[None]).float().argmax(1)
        expected = F.cross_entropy(own, target)
        assert torch.allclose(F.cross_entropy(masked[t], query_y[t]), expected, rtol=1e-12, atol=0)
    full = torch.arange(20).expand(2, -1)
    assert torch.equal(sequences.absent_labels_masked(logits, full, 20), logits)

    cls = algorithms.get("blackbox-lstm")
    problem = ProblemSpec(kind="classification", input_shape=(1, 8, 8), ways=20, shots=1, output_dim=20,
                          backbone="conv4")
    batch = EpisodeBatch(torch.rand(3, 5, 1, 8, 8, generator=g), torch.arange(5).expand(3, -1),
                         torch.rand(3, 10, 1, 8, 8, generator=g), torch.arange(5).repeat_interleave(2).expand(3, -1),
                         5, 1)
    changed, losses = {}, {}
    for spread in (False, True):
        for mask in (False, True):
            gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
            learner = cls(problem, cls.Hparams(backbone="pixels", train_query=2, meta_batch=3, hidden=8,
                                               curriculum_ways=5, curriculum_spread=spread, curriculum_mask=mask),
                          torch.device("cpu"), gens)
            learner.meta_iters, learner.schedule.last_epoch = 100, 0
            before = learner.model.head.weight.detach().clone()
            losses[spread, mask] = learner.meta_train_step(batch)["loss"]
            assert math.isfinite(losses[spread, mask])
            changed[spread, mask] = (learner.model.head.weight.detach() != before).any(dim=1)  # per label slot
    assert changed[False, False][5:].all()           # unmasked: the 15 unused slots are pushed down
    assert changed[False, True][:5].all() and not changed[False, True][5:].any()
    for spread in (False, True):                     # with or without spreading, the mask takes the loss to
        assert losses[spread, True] < 2.0 < losses[spread, False]   # about ln 5 at initialisation, not ln 20
    assert changed[True, True].sum() <= 3 * 5 < changed[True, False].sum()   # at most 5 slots per episode


def test_forget_bias_shifts_only_the_forget_gates_and_leaves_the_default_cell_hash_alone():
    """blackbox-lstm.forget_bias adds to the forget slice (PyTorch's gate order i, f, g, o) of each layer's input
    bias, nothing else; at its default 0 the model is the one committed results were made with."""
    import algorithms
    from algorithms.base import ProblemSpec
    from bench.config import Config
    cls = algorithms.get("blackbox-lstm")
    problem = ProblemSpec(kind="classification", input_shape=(1, 8, 8), ways=5, shots=1, output_dim=5,
                          backbone="conv4")

    def build(**extra):
        gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
        learner = cls(problem, cls.Hparams(backbone="pixels", hidden=6, layers=2, **extra), torch.device("cpu"), gens)
        return dict(learner.model.lstm.named_parameters())

    plain, biased = build(), build(forget_bias=2.5)
    for name, value in plain.items():
        shift = biased[name] - value
        if name.startswith("bias_ih"):
            assert torch.allclose(shift[6:12], torch.full((6,), 2.5), rtol=0, atol=1e-6)   # float32 (x + 2.5) - x
            assert not shift[:6].any() and not shift[12:].any()
        else:
            assert not shift.any(), name
    default = Config.load().cell("omniglot-20w1s", "blackbox-lstm", 0, "cpu")
    assert Config.load(sets=["blackbox-lstm.forget_bias=0"]).cell(
        "omniglot-20w1s", "blackbox-lstm", 0, "cpu").config_hash == default.config_hash
    assert Config.load(sets=["blackbox-lstm.forget_bias=3"]).cell(
        "omniglot-20w1s", "blackbox-lstm", 0, "cpu").config_hash != default.config_hash


def test_query_first_reads_each_query_then_the_support_prefix():
    """query_first: query i's prediction is the LSTM's output on the sequence [query i, first positions[i] support
    steps] (all n by default), each query its own sequence; a 'stream' protocol is refused with a message."""
    import algorithms
    from algorithms.base import ProblemSpec
    reader = _module(lambda: LSTMReader(7, 3, 5, 1, query_first=True))
    g = torch.Generator().manual_seed(3)
    support = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)
    query = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    positions = torch.tensor([0, 2, 4])
    _, every = reader(support, query)
    _, prefixes = reader(support, query, positions)
    for t in range(2):
        for i in range(3):
            for p, logits in ((4, every), (int(positions[i]), prefixes)):
                sequence = torch.cat([query[t, i:i + 1], support[t, :p]])[None]
                expected = reader.head(reader.lstm(sequence)[0][0, -1])
                assert torch.allclose(logits[t, i], expected, rtol=1e-12, atol=1e-12)   # float64 throughout
    cls = algorithms.get("blackbox-lstm")
    problem = ProblemSpec(kind="classification", input_shape=(1, 8, 8), ways=5, shots=1, output_dim=5,
                          backbone="conv4")
    gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
    with pytest.raises(ValueError, match="query_first: needs protocol 'sequence'"):
        cls(problem, cls.Hparams(backbone="pixels", query_first=True, protocol="stream"), torch.device("cpu"), gens)

"""The MNIST optimizer benchmarks: IDX loading and its errors, the optimizee problems, frozen test runs and the
metrics the task source writes."""
import dataclasses
import gzip
import struct

import pytest
import torch

from algorithms import nets
from algorithms.base import BatchRequest, OptimizeeProblem
from bench import cell as runner
from bench.data import DataError, data_root, mnist

needs_mnist = pytest.mark.skipif(not mnist.available(data_root()),
                                 reason="needs the four MNIST IDX files (set METABENCH_DATA)")


def source_for(config, name):
    return runner.task_source(config.cell(name, "sgd", 0, "smoke").spec, None)


# -- files -------------------------------------------------------------------------------------------------


def write_idx(path, magic, items, payload_per_item, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = [items, 28, 28] if magic == mnist.IMAGE_MAGIC else [items]
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(items * payload_per_item)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def test_missing_files_error_names_every_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        mnist.load_mnist(tmp_path)
    message = str(info.value)
    for split in mnist.SPLIT_FILES.values():
        assert split[0] in message and split[1] in message
    assert "metabench data prepare mnist --download" in message
    assert str(tmp_path / "mnist" / "MNIST" / "raw") in message


def test_truncated_file_is_reported_with_its_path(tmp_path):
    raw = tmp_path / "MNIST" / "raw"  # torchvision's own root layout
    for images, labels, items in mnist.SPLIT_FILES.values():
        write_idx(raw / f"{images}.gz", mnist.IMAGE_MAGIC, items, 28 * 28, gz=True)
        write_idx(raw / labels, mnist.LABEL_MAGIC, items, 1)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
        mnist.load_mnist(tmp_path)
    bad.unlink()
    write_idx(bad, mnist.LABEL_MAGIC, 10000, 1)
    # well-formed IDX files that are not the official ones: refused by their md5, each named (issue 26)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(md5 [0-9a-f]{32}, expected 27ae3e4e"):
        mnist.load_mnist(tmp_path)


@needs_mnist
def test_real_mnist_loads_once():
    data = mnist.load_mnist(data_root())
    images, labels = data["train"]
    assert images.shape == (60000, 784) and images.dtype == torch.uint8
    assert set(labels.unique().tolist()) == set(range(10))
    assert data["test"][0].shape == (10000, 784)
    assert mnist.load_mnist(data_root()) is data


# -- problems ----------------------------------------------------------------------------------------------


@needs_mnist
def test_loss_is_the_mnist_mlp_backbone(config):
    run = source_for(config, "mnist-2layers").test_episode(0, 1)
    assert [tuple(p.shape) for p in run.params] == [(20, 784), (20,), (20, 20), (20,), (10, 20), (10,)]
    net = nets.build("mnist-mlp", (784,), 10, torch.Generator().manual_seed(0), hidden=(20, 20))
    with torch.no_grad():
        for p, value in zip(net.parameters(), run.params):
            p.copy_(value)
        x, y = run.batch(3)
        expected = torch.nn.functional.cross_entropy(net(x), y)
    assert torch.equal(x, run.inputs[run.index[3]].float() / 255)
    assert torch.allclose(run.loss(run.params, 3), expected, atol=1e-6)
    assert torch.allclose(run.loss(run.flat_params(), 3), expected, atol=1e-6)
    assert run.horizon == 100 and run.num_params == run.flat_params().numel()


@needs_mnist
def test_transfer_benchmarks_train_on_the_base_problem(config):
    source = source_for(config, "mnist-40units")
    g = torch.Generator().manual_seed(0)
    train = source.sample_train(BatchRequest(kind="optimizees", tasks=2), g)
    assert len(train) == 2 and all(p.params[0].shape == (20, 784) for p in train)
    validation = source.sample_validation(2, g)
    assert all(p.params[0].shape == (40, 784) for p in validation)  # baselines tune on the problem itself
    assert all(p.params[0].shape == (20, 784) for p in validation.base)  # learned optimizers select on the base
    assert source.test_episode(0, 1).params[0].shape == (40, 784)
    relu = source_for(config, "mnist-relu")
    assert relu.test_episode(0, 1).activation == "relu"
    assert all(p.activation == "sigmoid" for p in relu.sample_train(BatchRequest(), g))
    assert source_for(config, "mnist-200steps").test_episode(0, 1).horizon == 200


def test_train_problem_keys_are_checked(config):
    spec = dict(config.benchmarks["mnist-base"], train_problem={"hidden": [20], "activaton": "relu"})
    with pytest.raises(ValueError, match="train_problem.*activaton"):
        mnist.MnistOptimizees(spec, {})


@needs_mnist
def test_frozen_runs_are_a_function_of_spec_seed_and_index(config):
    a, b = source_for(config, "mnist-base"), mnist.open_source(config.benchmarks["mnist-base"], data_root())
    r1, r2 = a.test_episode(7, 2016), b.test_episode(7, 2016)
    assert torch.equal(r1.index, r2.index) and all(torch.equal(x, y) for x, y in zip(r1.params, r2.params))
    assert torch.equal(r1.info["ids"], r2.info["ids"])
    assert not torch.equal(a.test_episode(8, 2016).index, r1.index)
    assert not torch.equal(a.test_episode(7, 2017).index, r1.index)
    # the frozen runs use the held-out test images, the tuning/training optimizees the training images
    assert a.test_images == "test"


@needs_mnist
def test_every_optimizer_is_scored_on_the_same_runs_with_all_metrics(config):
    results = {}
    for name in ("sgd", "adam"):
        cell = config.cell("mnist-base", name, 0, "smoke")
        cell.hparams["lr"] = 0.5 if name == "sgd" else 0.03  # fixed: no grid search, keeps the test fast
        cell.budget["cpus"] = 1  # tiny ops: one thread (two are far slower on a busy machine)
        results[name] = runner.run_cell(cell, progress=False)
        assert results[name].status == "ok", results[name].error
    assert results["sgd"].digest == results["adam"].digest
    rows = results["adam"].episodes
    runs = {r["episode"] for r in rows}
    assert runs == set(range(config.cell("mnist-base", "adam", 0, "smoke").budget["test_episodes"]))
    per_run = [r for r in rows if r["episode"] == 0]
    curve = [r["value"] for r in sorted((r for r in per_run if r["metric"].startswith("loss@")),
                                        key=lambda r: int(r["metric"][5:]))]
    assert len(curve) == 101
    final = next(r["value"] for r in per_run if r["metric"] == "final_loss")
    auc = next(r["value"] for r in per_run if r["metric"] == "auc")
    assert final == curve[-1] and auc == pytest.approx(sum(curve) / len(curve))
    assert curve[-1] < 0.7 * curve[0]  # a tuned Adam learns in 100 steps


def test_problem_moves_between_devices_without_copying_on_the_same_one():
    p = OptimizeeProblem([torch.zeros(2, 3)], torch.zeros(2, 4, 3, dtype=torch.uint8), torch.zeros(2, 4).long())
    q = p.to("cpu")
    assert q.inputs is p.inputs and q.horizon == 1
    assert dataclasses.replace(p, activation="relu").activation == "relu"
    # a run over a shared dataset table: minibatch t is the rows index[t]
    table, labels = torch.arange(30, dtype=torch.uint8).view(10, 3), torch.arange(10)
    r = OptimizeeProblem([torch.zeros(2, 3)], table, labels, index=torch.tensor([[1, 2], [3, 4], [5, 6]]))
    assert r.horizon == 2 and r.to("cpu").inputs is table
    x, y = r.batch(1)
    assert torch.equal(y, torch.tensor([3, 4])) and torch.equal(x, table[[3, 4]].float() / 255)


@needs_mnist
def test_base_validation_runs_are_the_same_on_every_benchmark(config):
    """Learned optimizers choose their snapshot on these: the same runs, hence the same choice, everywhere."""
    base = source_for(config, "mnist-base").sample_validation(2, torch.Generator().manual_seed(3))
    relu = source_for(config, "mnist-relu").sample_validation(2, torch.Generator().manual_seed(3))
    assert base.base is None and relu.base is not None
    for a, b in zip(base.problems, relu.base):
        assert torch.equal(a.index, b.index) and all(torch.equal(x, y) for x, y in zip(a.params, b.params))


@needs_mnist
def test_transfer_cells_reuse_the_base_meta_training_and_get_what_they_would_train(config, tmp_path):
    """The five benchmarks meta-train on the same base problem: in one run folder the learned optimizer trains
    once; a transfer cell that loads it scores exactly what it scores when it trains by itself."""
    def cell(benchmark):
        c = config.cell(benchmark, "lstm-optimizer", 0, "smoke")
        c.budget.update(meta_iters=2, test_episodes=2, validation_tasks=1, cpus=1)
        return c

    shared_dir = tmp_path / "shared"
    base = runner.run_cell(cell("mnist-base"), checkpoint_dir=shared_dir, progress=False)
    relu = runner.run_cell(cell("mnist-relu"), checkpoint_dir=shared_dir, progress=False)
    alone = runner.run_cell(cell("mnist-relu"), checkpoint_dir=tmp_path / "alone", progress=False)
    assert base.status == relu.status == alone.status == "ok", (base.error, relu.error, alone.error)
    assert len(list(shared_dir.glob("trained__lstm-optimizer__seed0__*.pt"))) == 1
    assert relu.trained_in == base.cell.key and alone.trained_in == "" and base.trained_in == ""
    assert relu.episodes == alone.episodes and relu.tuned == alone.tuned
    assert [r["value"] for r in relu.curves] == [r["value"] for r in alone.curves]
    assert {r["benchmark"] for r in relu.curves} == {"mnist-relu"}
    # a different seed or budget is different training: nothing is shared
    other = cell("mnist-relu")
    other.budget["meta_iters"] = 3
    assert runner.run_cell(other, checkpoint_dir=shared_dir, progress=False).trained_in == ""


def test_parallel_cells_wait_for_a_live_claim_and_ignore_a_dead_one(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import threading

    shared = tmp_path / "trained__x__seed0__abc.pt"
    marker = tmp_path / "trained__x__seed0__abc.pt.training"
    # a live claim (this process): wait until the other cell's training is written, then load it (no claim)
    marker.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    threading.Timer(0.3, lambda: shared.write_bytes(b"trained")).start()
    assert runner.claim_shared_training(shared, poll_seconds=0.05) is None and shared.exists()
    # a claim left by a process that is gone: taken over, this cell trains itself
    shared.unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker.write_text(f"{socket.gethostname()} {int(dead.stdout)}\n")
    assert runner.claim_shared_training(shared, poll_seconds=0.05) == marker
    assert marker.read_text().split()[1] == str(os.getpid())
    # an empty claim left by a crash between creating and writing it: taken over once it is old
    marker.write_text("")
    old = marker.stat().st_mtime - 60
    os.utime(marker, (old, old))
    assert runner.claim_shared_training(shared, poll_seconds=0.05) == marker

"""`metabench data check|where|prepare`: counts, checksums, expected paths, exit codes; never a silent download."""
import gzip
import hashlib
import io
import zipfile

import pytest
from conftest import REAL_DATA
from datafixtures import make_omniglot, write_omniglot_manifest, write_omniglot_split

from bench.cli import main
from bench.data import omniglot

REAL_OMNIGLOT = REAL_DATA / "omniglot" / "omniglot-py"
REAL_MNIST = REAL_DATA / "mnist" / "MNIST" / "raw"


def run(capsys, *argv):
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tiny_omniglot(tmp_path, monkeypatch):
    """A generated tree whose manifest and split stand in for the committed ones (SPLITS_DIR and MANIFEST)."""
    root = tmp_path / "data"
    base = make_omniglot(root)
    splits = tmp_path / "splits"
    splits.mkdir()
    manifest = write_omniglot_manifest(base, splits / "omniglot_files.json")
    names = omniglot.Manifest.load(manifest).names
    write_omniglot_split(splits / "omniglot_tiny.json", names[:4], names[4:7], names[7:])
    monkeypatch.setattr(omniglot, "SPLITS_DIR", splits)
    monkeypatch.setattr(omniglot, "MANIFEST", manifest)
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "cache"))
    return root, base


@pytest.mark.skipif(not REAL_OMNIGLOT.is_dir(), reason=f"real Omniglot not found at {REAL_OMNIGLOT}")
def test_check_real_omniglot_reports_counts_checksums_and_splits(capsys):
    code, out, _ = run(capsys, "check", "omniglot", "--data-root", str(REAL_DATA))
    assert code == 0, out
    assert "total: 50 alphabets, 1623 characters, 32460 images" in out
    assert "pixel checksums: 32460 of 32460 images match" in out
    assert "split vinyals: 1028 / 172 / 423 characters" in out and "4112 / 688 / 1692 classes" in out
    assert "split maml-random: 1100 / 100 / 423 characters" in out


def test_check_names_a_deleted_and_a_corrupted_png(tiny_omniglot, capsys):
    root, base = tiny_omniglot
    deleted = base / "images_background" / "Beta" / "character02" / "0006_11.png"
    deleted.unlink()
    corrupted = base / "images_evaluation" / "Gamma" / "character03" / "0010_20.png"
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the image data
    corrupted.write_bytes(bytes(data))
    code, out, _ = run(capsys, "check", "omniglot", "--data-root", str(root))
    assert code == 1
    assert f"{deleted} (missing)" in out and str(corrupted) in out
    assert "2 problems:" in out and "FAILED" in out
    assert "images_background: 2 alphabets, 7 characters, 139 images (expected 2, 7, 140)" in out


def test_check_tiny_omniglot_ok(tiny_omniglot, capsys):
    root, _ = tiny_omniglot
    code, out, _ = run(capsys, "check", "omniglot", "--data-root", str(root))
    assert code == 0, out
    assert "total: 3 alphabets, 10 characters, 200 images" in out and "split tiny: 4 / 3 / 3 characters" in out


def test_check_without_data_gives_expected_paths_and_fix(tmp_path, capsys):
    code, out, _ = run(capsys, "check", "omniglot", "--data-root", str(tmp_path))
    assert code == 1
    assert str(tmp_path / "omniglot" / "omniglot-py" / "images_background") in out
    assert "metabench data prepare omniglot --download" in out


def test_prepare_never_downloads_without_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(omniglot, "download", lambda root: pytest.fail("downloaded without --download"))
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "prepare", "omniglot", "--data-root", str(tmp_path))
    assert code == 1 and "--download" in out


def test_prepare_download_fetches_the_zips_then_fills_the_cache(tiny_omniglot, tmp_path, capsys, monkeypatch):
    """The download path with the network fetch replaced by writing fixture zips."""
    _, base = tiny_omniglot
    zips = {}
    for s in omniglot.SETS:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for png in sorted((base / s).rglob("*.png")):
                z.write(png, png.relative_to(base).as_posix())
        zips[f"{s}.zip"] = buf.getvalue()
        monkeypatch.setitem(omniglot.ZIP_MD5, s, hashlib.md5(buf.getvalue()).hexdigest())
    fetched = []

    def fake_fetch(url, folder, filename, md5):
        fetched.append(url)
        assert md5 == omniglot.ZIP_MD5[filename[:-4]]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / filename).write_bytes(zips[filename])

    monkeypatch.setattr(omniglot, "fetch", fake_fetch)
    code, out, _ = run(capsys, "prepare", "omniglot", "--download", "--data-root", str(tmp_path / "fresh"))
    assert code == 0, out
    assert fetched == [f"{omniglot.URL_PREFIX}/images_background.zip", f"{omniglot.URL_PREFIX}/images_evaluation.zip"]
    assert (tmp_path / "fresh" / "omniglot" / "omniglot-py" / "images_evaluation" / "Gamma").is_dir()
    assert "28px: uint8 [10, 20, 1, 28, 28]" in out
    assert list((tmp_path / "cache" / "omniglot").glob("omniglot-28px-*.pt"))


@pytest.mark.skipif(not REAL_OMNIGLOT.is_dir(), reason=f"real Omniglot not found at {REAL_OMNIGLOT}")
def test_prepare_real_omniglot_uses_the_shared_test_cache(capsys):
    # the tests' cache folder (conftest) already holds the 28px tensor once test_data_omniglot ran; if not,
    # this decodes it (the first-load cost, ~15 s on two cores)
    code, out, _ = run(capsys, "prepare", "omniglot", "--data-root", str(REAL_DATA))
    assert code == 0, out
    assert "28px: uint8 [1623, 20, 1, 28, 28]" in out


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST not found at {REAL_MNIST}")
def test_check_real_mnist(capsys):
    code, out, _ = run(capsys, "check", "mnist", "--data-root", str(REAL_DATA))
    assert code == 0, out
    assert ("train-images-idx3-ubyte: 60000 items; train-images-idx3-ubyte.gz md5 ok, "
            "train-images-idx3-ubyte md5 ok") in out
    assert "t10k-labels-idx1-ubyte: 10000 items" in out


def test_check_mnist_names_missing_and_corrupt_files(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"  # a torchvision root: R/MNIST/raw
    raw.mkdir(parents=True)
    labels = bytes([0, 0, 8, 1, 0, 0, 0x27, 0x10]) + bytes(10000)  # a valid header, wrong content
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(labels)
    code, out, _ = run(capsys, "check", "mnist", "--data-root", str(tmp_path))
    assert code == 1
    assert f"{raw / 't10k-labels-idx1-ubyte.gz'} (md5 " in out and "expected ec29112dd5afa0611ce80d1b7f02629c" in out
    assert f"{raw / 'train-images-idx3-ubyte.gz'} (missing" in out
    assert "4 problems:" in out


def test_check_miniimagenet_without_images_says_what_goes_where(tmp_path, capsys):
    code, out, _ = run(capsys, "check", "miniimagenet", "--data-root", str(tmp_path))
    assert code == 1
    assert "split ravi: 64 / 16 / 20 classes (train / val / test) x 600 images; CSV md5 ok" in out
    assert "images present: 0 of 60000" in out
    assert f"{tmp_path / 'mini-imagenet' / 'images'} (missing: no such folder (60000 JPEGs expected in it))" in out
    assert "n0153282900000005.jpg" in out and "image-net.org" in out
    (tmp_path / "mini-imagenet" / "images").mkdir(parents=True)
    code, out, _ = run(capsys, "check", "miniimagenet", "--data-root", str(tmp_path))
    assert code == 1 and "... and 59980 more" in out
    assert f"{tmp_path / 'mini-imagenet' / 'images' / 'n0153282900000005.jpg'} (missing)" in out


def test_where_prints_root_cache_and_expected_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METABENCH_DATA", str(tmp_path))
    code, out, _ = run(capsys, "where")
    assert code == 0
    assert f"data root: {tmp_path}  ($METABENCH_DATA)" in out
    assert f"{tmp_path}/omniglot/omniglot-py/images_background/<Alphabet>/characterNN/CCCC_DD.png" in out
    assert f"{tmp_path}/mnist/MNIST/raw/train-images-idx3-ubyte[.gz]   [missing]" in out
    assert f"{tmp_path}/mini-imagenet/images/n0153282900000005.jpg" in out


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "check", "cifar")
    assert code == 2 and "unknown dataset 'cifar'" in err
    code, _, err = run(capsys, "check", "omniglot", "--download")
    assert code == 2 and "--download only goes with" in err

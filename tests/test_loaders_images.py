"""The agedb loader (images + CSV through a tfds array_record cache), on tiny generated files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxunlearn.data import loaders
from jaxunlearn.data.loaders import agedb as agedb_module
from jaxunlearn.data.loaders import load_agedb
from jaxunlearn.data.sources import MissingDataError, build_task, load_dataset

SPLITS = ("train", "val", "test")
# (file, age, split, solid RGB colour or None for a special image)
ROWS = [
    ("faces/a.png", 12, "train", (255, 0, 0)),
    ("faces/b.png", 25, "val", (0, 255, 0)),
    ("faces/c.jpg", 31, "test", (0, 0, 255)),
    ("faces/d.png", 44, "train", (51, 102, 153)),
    ("faces/e.png", 30, "train", None),  # left half white, right half black, 8x16
    ("faces/f.png", 60, "test", (10, 20, 30)),
    ("faces/g.png", 7, "valid", (200, 200, 200)),
    ("faces/h.png", 71, "train", None),  # greyscale (mode L)
    ("faces/i.png", 29, "train", None),  # RGBA
    ("faces/j.png", 55, "test", (0, 128, 255)),
]


def _write_images(root):
    (root / "faces").mkdir(parents=True)
    for name, _, _, colour in ROWS:
        path = root / name
        if colour is not None:
            arr = np.zeros((6, 9, 3), np.uint8)
            arr[:] = colour
            Image.fromarray(arr).save(path, quality=100) if name.endswith(".jpg") else Image.fromarray(arr).save(path)
    half = np.zeros((8, 16, 3), np.uint8)
    half[:, :8] = 255
    Image.fromarray(half).save(root / "faces/e.png")
    Image.fromarray(np.full((5, 5), 64, np.uint8), mode="L").save(root / "faces/h.png")
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(root / "faces/i.png")


def _write_csv(root, name="ages.csv", with_split=True, rows=ROWS):
    lines = ["path,age,split" if with_split else "path,age"]
    lines += [f"{p},{a},{s}" if with_split else f"{p},{a}" for p, a, s, _ in rows]
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("agedb")
    _write_images(root)
    _write_csv(root)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds_cache")


@pytest.fixture(scope="module")
def raw(folder, cache):
    return load_agedb(folder, size=4, cache_dir=cache)


def _pixel(value):
    return (value / 255.0 - 0.5) / 0.5


def test_shapes_dtypes_and_split_assignment(raw):
    expected = {s: [a for _, a, split, _ in ROWS if {"valid": "val"}.get(split, split) == s] for s in SPLITS}
    for s in SPLITS:
        x, y = raw.splits[s]
        assert x.shape == (len(expected[s]), 4, 4, 3) and x.dtype == np.float32
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, expected[s])  # CSV order kept within each split
        assert x.min() >= -1.0 and x.max() <= 1.0
    assert raw.default_rule == "label<=30"
    assert raw.target_units == "years" and raw.per_feature_inputs is False


def test_pixel_values_after_resize_and_scaling(raw):
    x_train, _ = raw.splits["train"]
    x_val, _ = raw.splits["val"]
    x_test, _ = raw.splits["test"]
    np.testing.assert_allclose(x_train[0], np.broadcast_to([1.0, -1.0, -1.0], (4, 4, 3)), atol=1e-6)  # red
    np.testing.assert_allclose(x_val[0], np.broadcast_to([-1.0, 1.0, -1.0], (4, 4, 3)), atol=1e-6)  # green
    np.testing.assert_allclose(x_train[1, 2, 1], [_pixel(51), _pixel(102), _pixel(153)], atol=1e-6)
    np.testing.assert_allclose(x_test[0, ..., 2], 1.0, atol=0.05)  # blue JPEG, lossy but close
    np.testing.assert_allclose(x_test[0, ..., :2], -1.0, atol=0.05)
    half = x_train[2]  # white | black, 16 wide -> 4 wide: the outer columns stay pure
    np.testing.assert_allclose(half[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(half[:, 3], -1.0, atol=1e-6)
    np.testing.assert_allclose(x_train[3], _pixel(64), atol=1e-6)  # greyscale -> 3 equal channels
    np.testing.assert_allclose(x_train[4], np.broadcast_to([-1.0, 1.0, -1.0], (4, 4, 3)), atol=1e-6)  # RGBA -> RGB


def test_default_rule_and_task_end_to_end(folder, cache):
    raw = load_dataset("agedb", data_dir=str(folder), size=4, cache_dir=str(cache))
    task = build_task(raw)
    assert task.input_shape == (4, 4, 3)
    for s in SPLITS:
        ages = raw.splits[s][1]
        np.testing.assert_array_equal(np.asarray(getattr(task, s).forget) > 0.5, ages <= 30)


def test_second_load_reads_the_cache_without_decoding_images(folder, cache, raw, monkeypatch):
    import jaxunlearn.data.loaders._age_builder as builder_module

    def boom(*args, **kwargs):
        raise AssertionError("images decoded again")

    monkeypatch.setattr(builder_module, "read_image", boom)
    again = load_agedb(folder, size=4, cache_dir=cache)
    for s in SPLITS:
        np.testing.assert_array_equal(again.splits[s][0], raw.splits[s][0])
    configs = sorted(p.name for p in (cache / "jaxunlearn_age_images").iterdir())
    assert len(configs) == 1 and configs[0].startswith("s4_")


def test_seeded_split_without_split_column(tmp_path):
    _write_images(tmp_path)
    _write_csv(tmp_path, with_split=False)
    first = load_agedb(tmp_path, size=4, seed=3, cache_dir=tmp_path / "cache")
    sizes = [first.splits[s][1].size for s in SPLITS]
    assert sizes == [7, 1, 2]
    ages = np.concatenate([first.splits[s][1] for s in SPLITS])
    assert sorted(ages.tolist()) == sorted(a for _, a, _, _ in ROWS)
    same = load_agedb(tmp_path, size=4, seed=3, cache_dir=tmp_path / "cache")
    other = load_agedb(tmp_path, size=4, seed=4, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(same.splits["test"][1], first.splits["test"][1])
    assert any(not np.array_equal(other.splits[s][1], first.splits[s][1]) for s in SPLITS)


def test_missing_data_errors(tmp_path, folder):
    with pytest.raises(MissingDataError, match=r"does not exist.*path.*age"):
        load_agedb(tmp_path / "nowhere", cache_dir=tmp_path)
    with pytest.raises(MissingDataError, match=r"no \.csv file"):
        load_agedb(tmp_path, cache_dir=tmp_path)
    (tmp_path / "ages.csv").write_text(
        "path,age,split\nfaces/missing.png,30,train\nfaces/gone.png,3,val\nfaces/gone.png,4,test\n"
    )
    with pytest.raises(MissingDataError, match=r"missing\.png"):
        load_agedb(tmp_path, cache_dir=tmp_path)
    with pytest.raises(MissingDataError, match=r"other\.csv"):
        load_agedb(folder, csv_name="other.csv", cache_dir=tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,age,split\nfaces/a.png,3,train\n", r"line 1.*lacks column\(s\) \['path'\]"),
        ("path,age,split\nfaces/a.png,12,train\nfaces/b.png,twelve,val\n", r"line 3: age 'twelve' is not a number"),
        ("path,age,split\nfaces/a.png,-4,train\n", r"line 2: age '-4' must be"),
        ("path,age,split\nfaces/a.png,12,holdout\n", r"line 2: split 'holdout'"),
        ("path,age,split\nfaces/a.png,12\n", r"line 2: 2 field\(s\)"),
        ("path,age,split\nfaces/a.png,12,train\nfaces/b.png,3,val\n", r"split\(s\) \['test'\] have no rows"),
        ("", "empty"),
    ],
)
def test_malformed_csv_raises_value_error_naming_the_line(tmp_path, text, message):
    _write_images(tmp_path)
    (tmp_path / "ages.csv").write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_agedb(tmp_path, cache_dir=tmp_path / "cache")
    assert "ages.csv" in str(info.value)
    assert not isinstance(info.value, MissingDataError)


def test_truncated_image_raises_value_error_naming_the_file(tmp_path):
    _write_images(tmp_path)
    _write_csv(tmp_path)
    whole = (tmp_path / "faces/d.png").read_bytes()
    (tmp_path / "faces/d.png").write_bytes(whole[:50])  # cut inside the pixel data
    with pytest.raises(ValueError, match=r"faces/d.png: cannot decode image"):
        load_agedb(tmp_path, size=4, cache_dir=tmp_path / "cache")


def test_several_csvs_need_a_name(tmp_path, folder):
    _write_images(tmp_path)
    _write_csv(tmp_path, "one.csv")
    _write_csv(tmp_path, "two.csv")
    with pytest.raises(ValueError, match="several CSV files"):
        load_agedb(tmp_path, cache_dir=tmp_path / "cache")
    raw = load_agedb(tmp_path, csv_name="two.csv", size=4, cache_dir=tmp_path / "cache")
    assert raw.splits["train"][0].shape[1:] == (4, 4, 3)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXUNLEARN_CACHE", str(tmp_path))
    assert agedb_module.default_cache_dir() == tmp_path / "tfds"
    monkeypatch.delenv("JAXUNLEARN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert agedb_module.default_cache_dir() == tmp_path / "xdg" / "jaxunlearn" / "tfds"
    assert loaders.load_agedb is load_agedb

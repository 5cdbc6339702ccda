"""Text pairs: cleaning/GloVe embedding, and the stsb loader on tiny GLUE-format TSVs and mocked tfds."""

from __future__ import annotations

import numpy as np
import pytest

from jaxunlearn.data.loaders import clean_tokens, embed_pairs, embed_sentences, glove_vectors, load_stsb
from jaxunlearn.data.sources import MissingDataError, build_task, load_dataset

SPLITS = ("train", "val", "test")
HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
TRAIN = [
    ("A man is playing a flute.", "A man is playing a flute.", 5.0),
    ("The cat sat.", "A dog ran!", 0.4),
    ('He said "hello" twice.', "She said hi.", 1.6),
    ("Stocks fell sharply today.", "Shares dropped a lot today.", 4.2),
    ("A woman slices an onion.", "Someone is cutting an onion.", 3.8),
    ("Kids play football.", "The weather is cold.", 0.0),
    ("Two birds fly.", "Birds are flying.", 4.6),
    ("It's raining in Paris.", "Paris gets rain.", 3.0),
    ("A red car.", "A blue bicycle.", 1.0),
    ("Quarks decay.", "Bananas are yellow.", 0.2),
]
DEV = [
    ("A boy jumps.", "A child leaps.", 4.0),
    ("Prices rose.", "The sun set.", 0.5),
    ("Dogs bark.", "A dog barks loudly.", 3.6),
    ("Blah blah.", "Nothing here.", 1.2),
]


def _tsv(path, rows, scored=True):
    head = HEADER if scored else HEADER.rsplit("\t", 1)[0]
    lines = [head]
    for i, (s1, s2, *score) in enumerate(rows):
        fields = [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2]
        lines.append("\t".join(fields + ([f"{score[0]:.3f}"] if scored else [])))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    root = tmp_path_factory.mktemp("STS-B")
    _tsv(root / "train.tsv", TRAIN)
    _tsv(root / "dev.tsv", DEV)
    _tsv(root / "test.tsv", [(a, b) for a, b, _ in DEV[:2]], scored=False)  # GLUE: no scores
    return root


@pytest.fixture(scope="module")
def raw(glue):
    return load_stsb(glue)


def _vec(word):
    vocab, vectors = glove_vectors()
    return np.asarray(vectors[vocab[word]])


def test_clean_tokens():
    assert clean_tokens("It's the party's \"best\" day-trip, isn't it?") == [
        "it",
        "the",
        "party",
        "best",
        "day",
        "trip",
        "isnt",
        "it",
    ]
    assert clean_tokens(b"Hello,  WORLD!") == ["hello", "world"]
    assert clean_tokens("...") == []


def test_embedding_rows_are_glove_rows_with_front_padding():
    x = embed_sentences(["The cat sat.", "zzqxv the", ""], max_tokens=5)
    assert x.shape == (3, 5, 50) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 2], _vec("the"))
    np.testing.assert_array_equal(x[0, 3], _vec("cat"))
    np.testing.assert_array_equal(x[0, 4], _vec("sat"))
    assert not x[0, :2].any()  # padding
    assert not x[1, 3].any()  # unknown word -> zero vector
    np.testing.assert_array_equal(x[1, 4], _vec("the"))
    assert not x[2].any()
    post = embed_sentences(["The cat sat."], max_tokens=5, padding="post")
    np.testing.assert_array_equal(post[0, 0], _vec("the"))
    assert not post[0, 3:].any()
    truncated = embed_sentences(["one two three four five six"], max_tokens=2)
    np.testing.assert_array_equal(truncated[0], np.stack([_vec("one"), _vec("two")]))
    pairs = embed_pairs(["The cat sat."], ["zzqxv the"], max_tokens=5)
    np.testing.assert_array_equal(pairs[0, 0], x[0])
    np.testing.assert_array_equal(pairs[0, 1], x[1])
    with pytest.raises(ValueError, match="as many"):
        embed_pairs(["a"], [], max_tokens=5)


def test_tsv_shapes_and_splits(raw):
    sizes = {s: raw.splits[s][1].size for s in SPLITS}
    assert sizes == {"train": 9, "val": 1, "test": 4}  # 10% of train held out; dev is the test set
    for s in SPLITS:
        x, y = raw.splits[s]
        assert x.shape == (sizes[s], 2, 10, 50) and x.dtype == np.float32
        assert y.dtype == np.float32
    np.testing.assert_allclose(raw.splits["test"][1], [r[2] for r in DEV])
    train_and_val = np.concatenate([raw.splits["train"][1], raw.splits["val"][1]])
    assert sorted(train_and_val.tolist()) == pytest.approx(sorted(r[2] for r in TRAIN))
    assert raw.default_rule == "label<2" and raw.target_units == "similarity (0-5)"
    assert "dev.tsv as test" in raw.description


def test_tsv_values_are_embedded_sentences(raw):
    x_test = raw.splits["test"][0]
    np.testing.assert_array_equal(x_test[0], embed_pairs([DEV[0][0]], [DEV[0][1]])[0])
    # "A boy jumps." -> the last three positions hold a, boy, jumps
    np.testing.assert_array_equal(x_test[0, 0, -2], _vec("boy"))
    assert not x_test[0, 0, :7].any()


def test_quotes_and_stray_tabs(tmp_path):
    rows = list(TRAIN)
    _tsv(tmp_path / "train.tsv", rows)
    _tsv(tmp_path / "dev.tsv", DEV)
    text = (tmp_path / "dev.tsv").read_text().replace("A child leaps.", "A child\tleaps.")  # one extra field
    (tmp_path / "dev.tsv").write_text(text)
    raw = load_stsb(tmp_path)
    np.testing.assert_allclose(raw.splits["test"][1], [r[2] for r in DEV])
    np.testing.assert_array_equal(raw.splits["test"][0][0], embed_pairs(["A boy jumps."], ["A child leaps."])[0])


def test_scored_test_file_is_used_and_seed_changes_validation(tmp_path, glue):
    _tsv(tmp_path / "train.tsv", TRAIN)
    _tsv(tmp_path / "dev.tsv", DEV)
    _tsv(tmp_path / "test.tsv", DEV[:3])
    raw = load_stsb(tmp_path, max_tokens=4)
    assert [raw.splits[s][1].size for s in SPLITS] == [10, 4, 3]
    assert raw.splits["train"][0].shape[1:] == (2, 4, 50)
    vals = {float(load_stsb(glue, seed=seed).splits["val"][1][0]) for seed in range(6)}
    assert len(vals) > 1


def test_task_end_to_end_with_default_rule(glue):
    raw = load_dataset("stsb", data_dir=str(glue), max_tokens=10)
    task = build_task(raw)
    assert task.input_shape == (2, 10, 50)
    for s in SPLITS:
        np.testing.assert_array_equal(np.asarray(getattr(task, s).forget) > 0.5, raw.splits[s][1] < 2)


def test_missing_data(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist"):
        load_stsb(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match="glue/stsb is not prepared"):
        load_stsb(tmp_path)  # no TSVs, no tfds data: auto tries tfds without downloading
    _tsv(tmp_path / "train.tsv", TRAIN)
    with pytest.raises(MissingDataError, match=r"dev\.tsv"):
        load_stsb(tmp_path, source="tsv")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("\tscore", "\tlabel"), r"line 1: header .* lacks column\(s\) \['score'\]"),
        (lambda t: t.replace("4.200", "high"), r"line 5: score 'high' is not a number"),
        (lambda t: t.replace("4.200", "7.5"), r"line 5: score 7.5 lies outside \[0, 5\]"),
        (lambda t: t.replace("\tnone\tnone\tKids", "\tKids"), r"line 7: 8 field\(s\), the header has 10"),
    ],
)
def test_malformed_tsv(tmp_path, edit, message):
    _tsv(tmp_path / "train.tsv", TRAIN)
    _tsv(tmp_path / "dev.tsv", DEV)
    (tmp_path / "train.tsv").write_text(edit((tmp_path / "train.tsv").read_text()))
    with pytest.raises(ValueError, match=message) as info:
        load_stsb(tmp_path)
    assert "train.tsv" in str(info.value)


def test_tfds_glue_stsb_path_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        raw = load_stsb(tmp_path, source="tfds", max_tokens=6)
    assert [raw.splits[s][1].size for s in SPLITS] == [12, 12, 12]
    for s in SPLITS:
        x, y = raw.splits[s]
        assert x.shape == (12, 2, 6, 50) and x.dtype == np.float32 and np.isfinite(y).all()
    assert "tfds glue/stsb" in raw.description


def test_bad_source_name(tmp_path):
    with pytest.raises(ValueError, match="source must be"):
        load_stsb(tmp_path, source="csv")

"""Multi-label pools in select (demonstrations carry label lists) and suggest (uncertainty
as each item's closest per-label call), in the library and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_error, invoke, ok
from test_data import _jsonl, _message, _table

from fewshot.errors import DataError, UsageError
from fewshot.selection import (
    ExampleSelector,
    PromptTemplate,
    decision_thresholds,
    labelled_model,
    suggest,
)


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def clustered() -> np.ndarray:
    """30 unit vectors in 3 well-separated clusters of 10 (rows 0-9, 10-19, 20-29), 16-d."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 4
    return _norm(np.concatenate([c + rng.standard_normal((10, 16)) for c in centres])
                 .astype(np.float32))


#: Cluster 0: 'a' (two rows also 'b'); cluster 1: 'b' and 'c' together; cluster 2: no label.
LABELS = [["a", "b"] if i in (3, 4) else ["a"] for i in range(10)] + \
         [["b", "c"] for _ in range(10)] + [[] for _ in range(10)]


def _selector(X: np.ndarray, labels: list, **kw) -> ExampleSelector:
    return ExampleSelector(None, cache=False, **kw).fit(
        [f"item {i}" for i in range(len(X))], labels, embeddings=X)


# -- ExampleSelector -----------------------------------------------------------------------
def test_demonstrations_carry_label_lists(clustered: np.ndarray) -> None:
    sel = _selector(clustered, LABELS, k=3)
    assert sel.multi_label_ and sel.classes_.tolist() == ["a", "b", "c"]
    for q in (2, 15, 25):
        for d in sel.select_embeddings(clustered[[q]])[0]:
            assert d.label == LABELS[d.index] and d.item == f"item {d.index}"
    # The nearest of row 25 are label-less rows of its own cluster: empty lists.
    assert [d.label for d in sel.select_embeddings(clustered[[25]])[0]] == [[], [], []]
    # Tuples and sets are label lists too; a set's labels come back sorted.
    other = _selector(clustered[:2], [("y", "x"), {"z", "w"}], k=2)
    assert sorted(d.label for d in other.select_embeddings(clustered[:1])[0]) == [
        ["w", "z"], ["y", "x"]]


def test_balanced_shows_every_label_and_no_item_twice(clustered: np.ndarray) -> None:
    sel = _selector(clustered, LABELS, k=4, strategy="balanced")
    for q in (0, 12, 27):
        demos = sel.select_embeddings(clustered[[q]])[0]
        indices = [d.index for d in demos]
        assert len(indices) == 4 and len(set(indices)) == 4
        shown = {y for d in demos for y in d.label}
        assert shown == {"a", "b", "c"}, (q, [d.label for d in demos])
        assert all(d.label for d in demos), "label-less items only fill up k"
    # Labels 'b' and 'c' share cluster 1: a query there takes two different rows of it
    # for their turns, each nearest not yet shown.
    demos = sel.select_embeddings(clustered[[12]])[0]
    sims = clustered[10:20] @ clustered[12]
    nearest = 10 + np.argsort(-sims)[:3]  # row 12 itself (for 'b'), then 'c', then 'b'
    assert {d.index for d in demos} & set(range(10, 20)) == set(nearest.tolist())
    # k beyond the labelled rows: the rest are the nearest of any item, label-less too.
    small = _selector(clustered, LABELS[:10] + [[] for _ in range(20)], k=12,
                      strategy="balanced", labels_per_query=1)
    demos = small.select_embeddings(clustered[[25]])[0]
    assert len({d.index for d in demos}) == 12
    assert sum(bool(d.label) for d in demos) == 10


def test_balanced_single_label_pool_is_unchanged(clustered: np.ndarray) -> None:
    single = [lab for lab in "abc" for _ in range(10)]
    lists = [[lab] for lab in single]
    a = _selector(clustered, single, k=5, strategy="balanced").select_embeddings(clustered[:4])
    b = _selector(clustered, lists, k=5, strategy="balanced").select_embeddings(clustered[:4])
    assert [[(d.index, round(d.score, 5)) for d in row] for row in a] == \
        [[(d.index, round(d.score, 5)) for d in row] for row in b]
    assert [[d.label for d in row] for row in b] == [[[d.label] for d in row] for row in a]


def test_pool_label_errors(clustered: np.ndarray) -> None:
    with pytest.raises(DataError) as exc:
        _selector(clustered[:3], [["a"], "b", ["c"]], k=1)
    assert _message(exc) == (
        "pool label 1 is 'b' but label 0 is ['a']; give one label per item, or a list of "
        "labels for every item (multi-label)"
    )
    with pytest.raises(DataError) as exc:
        _selector(clustered[:3], [[], [], []], k=1, strategy="balanced")
    assert _message(exc) == (
        "no pool item has a label, so 'balanced' has no label to show; give labelled items "
        "or choose another strategy"
    )
    # Other strategies take a pool of label-less rows.
    assert len(_selector(clustered[:3], [[], [], []], k=2).select_embeddings(
        clustered[:1])[0]) == 2


def test_prompt_shows_label_lists() -> None:
    t = PromptTemplate("{% for ex in examples %}{{ ex.text }} => {{ ex.label }} "
                       "({{ ex.labels | length }})\n{% endfor %}{{ query }} =>")
    text = t.render("new", [{"index": 0, "label": ["joy", "surprise"], "score": 0.9,
                             "item": "wow"},
                            {"index": 1, "label": [], "score": 0.8, "item": "fine"}])
    assert text == "wow => joy, surprise (2)\nfine =>  (0)\nnew =>"
    text = t.render("new", [{"index": 0, "label": "pos", "score": 0.9, "item": "good"}])
    assert text == "good => pos (1)\nnew =>"


# -- suggest ---------------------------------------------------------------------------------
def test_uncertainty_is_the_closest_call(clustered: np.ndarray) -> None:
    thresholds = np.array([0.5, 0.1])
    proba = np.full((30, 2), [0.99, 0.001])  # every decision clear
    proba[7] = [0.5, 0.001]  # label 0 on its threshold
    proba[21] = [0.99, 0.12]  # label 1 near its own threshold
    proba[14] = [0.9, 0.2]
    picks = suggest(clustered, 3, strategy="uncertain", proba=proba, thresholds=thresholds)
    assert [p.index for p in picks] == [7, 21, 14]

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    expected = [1.0, np.exp(-abs(logit(proba[21, 1]) - logit(0.1))),
                np.exp(-min(abs(logit(0.9) - logit(0.5)), abs(logit(0.2) - logit(0.1))))]
    np.testing.assert_allclose([p.score for p in picks], expected, rtol=1e-6)
    assert all(p.reason == "uncertain" for p in picks)
    # hybrid: per region, the most uncertain of its central items.
    hybrid = suggest(clustered, 3, strategy="hybrid", proba=proba, thresholds=thresholds)
    assert len({p.index for p in hybrid}) == 3 and all(p.reason == "hybrid" for p in hybrid)
    # Without thresholds the same numbers are read as class probabilities (margins):
    # row 14's 0.9 against 0.2 is then a closer call than row 21's 0.99 against 0.12.
    margin = suggest(clustered, 3, strategy="uncertain", proba=proba)
    assert [p.index for p in margin] == [7, 14, 21]
    np.testing.assert_allclose([p.score for p in margin], [1 - 0.499, 1 - 0.7, 1 - 0.87],
                               rtol=1e-6)


def test_threshold_errors(clustered: np.ndarray) -> None:
    proba = np.full((30, 2), 0.3)
    with pytest.raises(UsageError) as exc:
        suggest(clustered, 2, strategy="uncertain", proba=proba, thresholds=[0.5])
    assert _message(exc) == (
        "thresholds must be one number in [0, 1] per column of proba (2), got shape (1,)"
    )
    with pytest.raises(UsageError) as exc:
        suggest(clustered, 2, strategy="uncertain", proba=proba, thresholds=[0.5, 1.5])
    assert _message(exc) == (
        "thresholds must be one number in [0, 1] per column of proba (2), got shape (2,)"
    )
    with pytest.raises(UsageError) as exc:
        suggest(clustered, 2, strategy="diverse", thresholds=[0.5, 0.5])
    assert _message(exc) == (
        "thresholds go with a multi-label model's probabilities; pass proba= too, or drop "
        "thresholds"
    )


EMOTIONS = [
    ("a good movie", ["pos"]), ("great film", ["pos", "film"]),
    ("excellent plot", ["pos"]), ("wonderful actor", ["pos"]),
    ("a bad movie", ["neg"]), ("awful film", ["neg", "film"]),
    ("terrible plot", ["neg"]), ("boring actor", ["neg"]),
    ("the best film", ["pos", "film"]), ("the worst film", ["neg", "film"]),
    ("the plot", []),
]
POOL = ["i loved this film", "the best story", "happy and nice", "i hated this film",
        "the worst story", "sad and dull", "it was fine", "a very dull plot", "the movie",
        "this actor"]


def test_labelled_model_on_label_lists(tiny_text_encoder) -> None:
    items, labels = zip(*EMOTIONS, strict=True)
    clf = labelled_model(tiny_text_encoder, items, labels, cache=False)
    assert clf.multi_label_ and clf.classes_.tolist() == ["film", "neg", "pos"]
    t = decision_thresholds(clf)
    np.testing.assert_array_equal(t, clf.model_.thresholds.values)
    clf.threshold = 0.3
    np.testing.assert_array_equal(decision_thresholds(clf), [0.3, 0.3, 0.3])
    assert labelled_model(tiny_text_encoder, items[:2], [["pos"], ["pos"]], cache=False) is None
    assert labelled_model(tiny_text_encoder, items[:2], [["pos"], []], cache=False) is None
    single = labelled_model(tiny_text_encoder, items[:8], ["p"] * 4 + ["n"] * 4, cache=False)
    assert decision_thresholds(single) is None and decision_thresholds(None) is None


def test_cli_suggest_with_label_lists(tmp_path: Path, tiny_text_model_dir: Path,
                                      tiny_text_encoder) -> None:
    labelled = _jsonl(tmp_path / "labelled.jsonl",
                      [{"text": t, "labels": y} for t, y in EMOTIONS])
    pool_path = tmp_path / "pool.txt"
    pool_path.write_text("\n".join(POOL) + "\n")
    enc = ["--encoder", tiny_text_model_dir, "--no-cache", "--device", "cpu"]
    out = tmp_path / "s.jsonl"
    result = ok("suggest", pool_path, "-o", out, "--budget", "3", "--strategy", "uncertain",
                "--labelled", labelled, *enc)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # The same model fitted here gives the same scores: each item's closest per-label call.
    items, labels = zip(*EMOTIONS, strict=True)
    clf = labelled_model(tiny_text_encoder, items, labels, cache=False)
    proba = clf.head_.predict_proba(clf.embed(POOL))
    expected = suggest(clf.embed(POOL), 3, strategy="uncertain", proba=proba,
                       thresholds=decision_thresholds(clf))
    assert [r["index"] for r in rows] == [p.index for p in expected]
    assert [r["score"] for r in rows] == [round(p.score, 6) for p in expected]
    assert "3 uncertain" in result.stderr
    result = ok("suggest", pool_path, "-o", out, "--budget", "3", "--strategy", "hybrid",
                "--labelled", labelled, "--force", *enc)
    assert ("hybrid: the model is multi-label and keeps no out-of-fold predictions to test "
            "it on; its margins (each label's distance from its threshold) are followed "
            "untested") in result.stderr
    assert len(out.read_text().splitlines()) == 3
    # A CSV of label lists works with --label-sep.
    csv = _table(tmp_path / "labelled.csv", ["text", "label"],
                 [(t, ";".join(y)) for t, y in EMOTIONS])
    ok("suggest", pool_path, "-o", out, "--budget", "3", "--strategy", "uncertain",
       "--labelled", csv, "--label-sep", ";", "--force", *enc)
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == \
        [p.index for p in expected]
    # A multi-label model folder.
    model = tmp_path / "m"
    ok("train", labelled, "-o", model, *enc)
    ok("suggest", pool_path, "-o", out, "--budget", "2", "--strategy", "uncertain",
       "--model", model, "--force", "--no-cache", "--device", "cpu")
    assert len(out.read_text().splitlines()) == 2


def test_cli_select_with_label_lists(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    pool = _jsonl(tmp_path / "pool.jsonl", [{"text": t, "labels": y, "id": f"p{i}"}
                                             for i, (t, y) in enumerate(EMOTIONS)])
    queries = tmp_path / "q.txt"
    queries.write_text("great movie\nthe worst plot\n")
    template = tmp_path / "t.j2"
    template.write_text("{% for ex in examples %}{{ ex.text }} -> {{ ex.label }}\n"
                        "{% endfor %}{{ query }} ->")
    out = tmp_path / "sel.jsonl"
    enc = ["--encoder", tiny_text_model_dir, "--no-cache", "--device", "cpu"]
    ok("select", pool, queries, "-o", out, "--k", "11", "--template", template, *enc)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {f"p{i}": (t, y) for i, (t, y) in enumerate(EMOTIONS)}
    for row in rows:
        assert len(row["examples"]) == 11
        for ex in row["examples"]:
            assert "label" not in ex and (ex["text"], ex["labels"]) == by_id[ex["id"]]
        lines = row["prompt"].splitlines()
        assert "great film -> pos, film" in lines and "the plot -> " in lines
    ok("select", pool, queries, "-o", out, "--k", "3", "--strategy", "balanced", "--force",
       *enc)
    for row in (json.loads(line) for line in out.read_text().splitlines()):
        assert {y for ex in row["examples"] for y in ex["labels"]} == {"film", "neg", "pos"}
    csv = _table(tmp_path / "pool.csv", ["text", "label"],
                 [(t, "|".join(y)) for t, y in EMOTIONS])
    ok("select", csv, queries, "-o", out, "--k", "2", "--label-sep", "|", "--force", *enc)
    for row in (json.loads(line) for line in out.read_text().splitlines()):
        assert all(isinstance(ex["labels"], list) for ex in row["examples"])
    # A pool mixing lists and single labels fails on the line that breaks the pattern.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": "y"}\n')
    line = assert_error(invoke("select", mixed, queries, "-o", tmp_path / "x.jsonl", "--k",
                               "1", *enc), 1)
    assert line == (
        f"error: {mixed}:2: the 'labels' field holds one label here but a list on line 1; "
        "give every row a list of labels (multi-label) or every row one label"
    )


def test_image_tables_with_label_lists_train_predict_select(
    image_folder: Path, tiny_image_dir: Path, tmp_path: Path
) -> None:
    rows = [(f"{c}/{c}{i}.png", ";".join([c, "warm" if c == "red" else "cool"]
                                         + (["bright"] if i % 2 else [])))
            for c in ("red", "blue") for i in range(6)]
    table = _table(image_folder / "labels.csv", ["image", "label"], rows)
    enc = ["--encoder", f"local-dir:{tiny_image_dir}", "--no-cache", "--device", "cpu"]
    model = tmp_path / "m"
    ok("train", table, "-o", model, "--label-sep", ";", *enc)
    out = tmp_path / "p.jsonl"
    ok("predict", model, image_folder / "red", "-o", out, "--no-cache", "--device", "cpu")
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(preds) == 6
    for p in preds:
        assert isinstance(p["labels"], list)
        assert set(p["probabilities"]) == {"blue", "bright", "cool", "red", "warm"}
    jsonl = _jsonl(image_folder / "labels.jsonl",
                   [{"path": path, "labels": labels.split(";")} for path, labels in rows])
    sel = tmp_path / "sel.jsonl"
    ok("select", jsonl, image_folder / "blue", "-o", sel, "--k", "2", *enc)
    for row in (json.loads(line) for line in sel.read_text().splitlines()):
        for ex in row["examples"]:
            expected = dict(rows)[str(Path(ex["path"]).relative_to(image_folder))]
            assert ex["labels"] == expected.split(";")

"""Demonstration selection (ExampleSelector, templates) and what-to-label-next (suggest)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTIMENT
from typer.testing import CliRunner

from fewshot.cli import app
from fewshot.errors import DataError, UsageError
from fewshot.selection import ExampleSelector, PromptTemplate, suggest


def _selector(vectors: np.ndarray, **kw) -> ExampleSelector:
    """A selector whose pool items are row numbers, fitted on ``vectors`` directly."""
    return ExampleSelector(None, cache=False, **kw)


@pytest.fixture
def clustered() -> tuple[np.ndarray, list[str]]:
    """60 pool vectors in 3 well-separated clusters (labels a, b, c), 16-d."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 4
    X = np.concatenate([c + rng.standard_normal((20, 16)) for c in centres]).astype(np.float32)
    return X, [lab for lab in "abc" for _ in range(20)]


def _fit(sel: ExampleSelector, X: np.ndarray, labels) -> ExampleSelector:
    return sel.fit([str(i) for i in range(len(X))], labels, embeddings=_norm(X))


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_nearest_is_exact_top_k_most_similar_last(clustered) -> None:
    X, labels = clustered
    sel = _fit(_selector(X, k=5, strategy="nearest"), X, labels)
    q = _norm(X[[3, 25]] + 0.1)
    out = sel.select_embeddings(q)
    sims = q @ _norm(X).T
    for row, demos in zip(sims, out, strict=True):
        expected = np.argsort(-row)[:5]
        assert {d.index for d in demos} == set(expected.tolist())
        scores = [d.score for d in demos]
        assert scores == sorted(scores)  # ascending: the most similar right before the query
        np.testing.assert_allclose(scores[-1], row.max(), atol=1e-5)
    sel.order = "descending"
    assert [d.score for d in sel.select_embeddings(q)[0]] == sorted(
        [d.score for d in out[0]], reverse=True
    )


def test_mmr_lambda_one_is_nearest_and_lower_lambda_is_more_diverse() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((5, 8))
    # Each base vector three times (near-duplicates): nearest picks duplicates.
    X = np.concatenate([base + 0.01 * rng.standard_normal((5, 8)) for _ in range(3)])
    q = _norm(base[:1] + 0.3 * base[1:2])
    near = _fit(_selector(X, k=3, strategy="nearest"), X, None).select_embeddings(q)[0]
    mmr1 = _fit(_selector(X, k=3, strategy="mmr", mmr_lambda=1.0), X, None)
    assert {d.index for d in mmr1.select_embeddings(q)[0]} == {d.index for d in near}
    mmr = _fit(_selector(X, k=3, strategy="mmr", mmr_lambda=0.3), X, None)
    div = mmr.select_embeddings(q)[0]
    Xn = _norm(X)

    def redundancy(demos) -> float:
        idx = [d.index for d in demos]
        s = Xn[idx] @ Xn[idx].T
        return float(s[np.triu_indices(len(idx), 1)].mean())

    assert redundancy(div) < redundancy(near) - 0.2
    assert len({d.index % 5 for d in div}) == 3  # three different base vectors


def test_balanced_covers_every_label_or_the_closest_m(clustered) -> None:
    X, labels = clustered
    sel = _fit(_selector(X, k=6, strategy="balanced"), X, labels)
    q = _norm(X[[0, 30, 59]])
    for demos in sel.select_embeddings(q):
        got = [d.label for d in demos]
        assert sorted(set(got)) == ["a", "b", "c"] and len(got) == 6
        assert sorted(got.count(x) for x in "abc") == [2, 2, 2]
    sel = _fit(_selector(X, k=4, strategy="balanced", labels_per_query=2), X, labels)
    demos = sel.select_embeddings(_norm(X[[5]]))[0]
    assert len({d.label for d in demos}) == 2 and "a" in {d.label for d in demos}
    # The query's own cluster comes last (most similar).
    assert demos[-1].label == "a"


def _on_circle(degrees: list[float], scale: float = 1.0) -> np.ndarray:
    rad = np.radians(degrees)
    return (scale * np.column_stack([np.cos(rad), np.sin(rad)])).astype(np.float32)


def test_balanced_fills_from_the_shown_labels_before_any_other() -> None:
    # a: one item at 0 degrees; b: 10 degrees, then 40-48; c: 20-29. The query is at 0.
    angles = [0.0, 10.0, *range(40, 49), *range(20, 30)]
    labels = ["a"] + ["b"] * 10 + ["c"] * 10
    X = _on_circle(angles)
    q = _on_circle([0.0])
    sel = ExampleSelector(None, k=4, strategy="balanced", labels_per_query=2, cache=False)
    sel.fit([str(a) for a in angles], labels, embeddings=X)
    demos = sel.select_embeddings(q)[0]
    # Labels a and b are shown (a has a single item): the 4th is b's next, not c's
    # nearer 20-degree item.
    assert [d.item for d in demos] == ["41", "40", "10.0", "0.0"]
    assert {d.label for d in demos} == {"a", "b"}
    # One label shown and it holds one item: the rest are the nearest of any label.
    sel.labels_per_query = 1
    assert [d.item for d in sel.select_embeddings(q)[0]] == ["21", "20", "10.0", "0.0"]


def test_selector_scores_are_cosines_of_unnormalised_embeddings_and_mmr_returns_k() -> None:
    angles = [0.0, 30.0, 60.0, 90.0, 120.0]
    X = _on_circle(angles, scale=5.0)
    sel = ExampleSelector(None, k=2, strategy="nearest", cache=False)
    sel.fit([str(a) for a in angles], embeddings=X)
    demos = sel.select_embeddings(_on_circle([0.0], scale=3.0))[0]
    assert [d.item for d in demos] == ["30.0", "0.0"]
    np.testing.assert_allclose([d.score for d in demos], [np.cos(np.radians(30)), 1.0],
                               rtol=1e-5)
    mmr = ExampleSelector(None, k=4, strategy="mmr", fetch_k=2, cache=False)
    mmr.fit([str(a) for a in angles], embeddings=X)
    assert len(mmr.select_embeddings(_on_circle([0.0]))[0]) == 4


def test_random_is_seeded(clustered) -> None:
    X, labels = clustered
    q = _norm(X[:3])
    a = _fit(_selector(X, k=5, strategy="random", seed=1), X, labels).select_embeddings(q)
    b = _fit(_selector(X, k=5, strategy="random", seed=1), X, labels).select_embeddings(q)
    c = _fit(_selector(X, k=5, strategy="random", seed=2), X, labels).select_embeddings(q)
    assert [[d.index for d in r] for r in a] == [[d.index for d in r] for r in b]
    assert [[d.index for d in r] for r in a] != [[d.index for d in r] for r in c]
    assert all(len({d.index for d in r}) == 5 for r in a)


def test_selector_errors(clustered, tiny_text_encoder) -> None:
    X, labels = clustered
    with pytest.raises(UsageError, match="fitted on embeddings without an encoder"):
        _fit(_selector(X, k=5), X, labels).select(["a query"])
    with pytest.raises(UsageError, match="larger than the pool"):
        _fit(_selector(X, k=5), X, labels).select_embeddings(_norm(X[:1]), k=61)
    with pytest.raises(UsageError, match="unknown strategy 'best'"):
        ExampleSelector(tiny_text_encoder, strategy="best").fit(["a", "b"], ["x", "y"])
    with pytest.raises(DataError, match="pool is empty"):
        ExampleSelector(tiny_text_encoder).fit([], [])
    with pytest.raises(UsageError, match="'balanced' needs pool labels"):
        ExampleSelector(tiny_text_encoder, strategy="balanced").fit(["a good film"])


def test_selector_refuses_a_single_string_and_a_1d_query(clustered, tiny_text_encoder) -> None:
    texts, labels = zip(*SENTIMENT, strict=True)
    sel = ExampleSelector(tiny_text_encoder, k=2, cache=False).fit(texts, labels)
    # A lone string would be split into one query per character.
    with pytest.raises(TypeError, match=r"wrap it in a list: \['a good film'\]"):
        sel.select("a good film")
    with pytest.raises(TypeError, match="not a single str"):
        ExampleSelector(tiny_text_encoder, k=2, cache=False).fit("abcdef", list("abcdef"))
    X, pool_labels = clustered
    fitted = _fit(_selector(X, k=2), X, pool_labels)
    for strategy in ("nearest", "mmr", "balanced", "random"):
        fitted.strategy = strategy
        with pytest.raises(UsageError, match=r"shape \(n_queries, 16\), got \(16,\)"):
            fitted.select_embeddings(_norm(X[:1])[0])
        with pytest.raises(UsageError, match=r"shape \(n_queries, 16\), got \(1, 8\)"):
            fitted.select_embeddings(X[:1, :8])
        assert len(fitted.select_embeddings(_norm(X[:1]).tolist())[0]) == 2
        assert fitted.select_embeddings([]) == []


def test_select_on_text_picks_same_sentiment(tiny_text_encoder) -> None:
    texts, labels = zip(*SENTIMENT, strict=True)
    sel = ExampleSelector(tiny_text_encoder, k=3, cache=False).fit(texts, labels)
    out = sel.select(["what a wonderful great film", "an awful boring plot"])
    assert [d.label for d in out[0]] == ["pos"] * 3
    assert [d.label for d in out[1]] == ["neg"] * 3
    assert all(isinstance(d.item, str) and d.item in texts for d in out[0])


def test_select_on_images(tiny_image_encoder, image_folder: Path) -> None:
    from fewshot.data import load_dataset

    ds = load_dataset(image_folder)
    sel = ExampleSelector(tiny_image_encoder, k=3, cache=False).fit(ds.items, ds.labels)
    red = [p for p in ds.items if p.parent.name == "red"][0]
    demos = sel.select([red])[0]
    assert demos[-1].item == red and demos[-1].score == pytest.approx(1.0, abs=1e-5)


def test_prompt_template_renders_and_rejects_unknown_fields() -> None:
    t = PromptTemplate("{% for ex in examples %}{{ ex.text }} => {{ ex.label }}\n"
                       "{% endfor %}{{ query }} =>")
    text = t.render("new", [{"index": 0, "label": "pos", "score": 0.9, "item": "good"},
                            {"index": 1, "label": "neg", "score": 0.8, "item": "bad"}])
    assert text == "good => pos\nbad => neg\nnew =>"
    with pytest.raises(UsageError, match="unknown field.*available: query, examples"):
        PromptTemplate("{{ question }}")
    with pytest.raises(UsageError, match="unknown field"):
        PromptTemplate("{% for ex in examples %}{{ ex.rationale }}{% endfor %}")
    with pytest.raises(UsageError, match="syntax error on line 1"):
        PromptTemplate("{% for ex in examples %}")
    with pytest.raises(UsageError, match="unsafe"):
        PromptTemplate("{{ query.__class__.__mro__ }}")
    with pytest.raises(UsageError) as exc:
        t.render("new", [{"index": 0, "label": "pos", "score": 0.9, "item": "good"},
                         {"txt": "bad"}])
    assert str(exc.value) == (
        "example 1 has no index, label, score, item; give each example the keys index, "
        "label, score, item (as ExampleSelector's picks have)")


def test_prompt_template_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no template file at"):
        PromptTemplate.from_file(tmp_path / "missing.txt")
    latin1 = tmp_path / "t.txt"
    latin1.write_bytes("{{ query }} \u2192 caf\xe9".encode("latin-1", errors="replace"))
    with pytest.raises(DataError, match="is not UTF-8 text; save it as UTF-8"):
        PromptTemplate.from_file(latin1)


# -- what to label next -----------------------------------------------------------------
def test_diverse_picks_one_central_item_per_cluster(clustered) -> None:
    X, labels = clustered
    picks = suggest(X, 3, strategy="diverse", seed=0)
    assert sorted(labels[p.index] for p in picks) == ["a", "b", "c"]
    assert all(p.reason == "diverse" for p in picks)
    # With cluster a already labelled, the 2 picks come from b and c.
    picks = suggest(X, 2, strategy="diverse", labelled=[0, 1], seed=0)
    assert sorted(labels[p.index] for p in picks) == ["b", "c"]


def test_diverse_fills_the_budget_on_a_pool_of_duplicates() -> None:
    # Two distinct vectors, 5 copies each: k-means finds 2 groups, not 4, so the
    # picks after the two centres come from the groups' next items.
    X = np.repeat(np.eye(2, 4, dtype=np.float32), 5, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct clusters than asked
        picks = suggest(X, 4, strategy="diverse", seed=0)
    assert len({p.index for p in picks}) == 4
    assert {p.index // 5 for p in picks[:2]} == {0, 1}


def test_diverse_fills_the_budget_from_covered_regions_too() -> None:
    # 5 copies of A, 5 of B; item 0 (an A) is labelled. Budget 6: B's region holds
    # only 5 free items, so the sixth comes from A's covered region, never item 0.
    X = np.repeat(np.eye(2, 4, dtype=np.float32), 5, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct clusters than asked
        picks = suggest(X, 6, strategy="diverse", labelled=[0], seed=0)
        hybrid = suggest(X, 6, strategy="hybrid", labelled=[0], proba=np.full((10, 2), 0.5))
    for got in (picks, hybrid):
        assert len({p.index for p in got}) == 6 and 0 not in {p.index for p in got}
        assert sorted(p.index // 5 for p in got) == [0, 1, 1, 1, 1, 1]
    assert {p.reason for p in hybrid} == {"hybrid"}
    assert {p.score for p in hybrid} == {1.0}  # margin uncertainty of 50/50


def test_suggest_refuses_labelled_indices_outside_the_pool(clustered) -> None:
    X, _ = clustered
    with pytest.raises(UsageError, match="labelled index -1 is outside the pool \\(0 to 59\\)"):
        suggest(X, 2, labelled=[-1, 3])
    with pytest.raises(UsageError, match="labelled index 60 is outside"):
        suggest(X, 2, labelled=[60])


def test_suggest_takes_labelled_as_a_numpy_array(clustered) -> None:
    # An index array (empty, or with repeats) works like the list it holds; an empty
    # array is not tested for truth (numpy: "truth value of an empty array is ambiguous").
    X, _ = clustered
    for strategy in ("diverse", "random"):
        assert suggest(X, 3, strategy=strategy, labelled=np.array([], dtype=np.int64)) == \
            suggest(X, 3, strategy=strategy, labelled=None)
        assert suggest(X, 2, strategy=strategy, labelled=np.array([1, 0, 1])) == \
            suggest(X, 2, strategy=strategy, labelled=[0, 1])


def test_uncertain_fills_the_budget_on_a_pool_of_duplicates() -> None:
    # Two distinct vectors, 10 copies each: k-means finds 2 groups for a budget of 3,
    # so the third pick is the next most uncertain candidate.
    X = np.repeat(np.eye(2, 4, dtype=np.float32), 10, axis=0)
    proba = np.column_stack([np.linspace(0.5, 0.95, 20), 1 - np.linspace(0.5, 0.95, 20)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct clusters than asked
        picks = suggest(X, 3, strategy="uncertain", proba=proba, seed=0)
    assert [p.index for p in picks] == [0, 1, 10]
    assert all(p.reason == "uncertain" for p in picks)


def test_uncertain_prefers_small_margins_with_diversity(clustered) -> None:
    X, _ = clustered
    proba = np.tile([0.9, 0.1], (60, 1))
    proba[[5, 6, 45]] = [[0.5, 0.5], [0.52, 0.48], [0.55, 0.45]]  # 5 and 6: same cluster
    picks = suggest(X, 2, strategy="uncertain", proba=proba, seed=0)
    assert [p.index for p in picks][0] == 5
    assert {p.index for p in picks} == {5, 45}  # 6 is near 5: the guard skips it
    # hybrid: one item per uncovered cluster (as diverse), the most uncertain of its
    # central fifth (4 of 20 items). Clusters a and b are labelled, so it picks in c.
    Xc = _norm(X[40:])
    by_distance = 40 + np.argsort(np.linalg.norm(Xc - Xc.mean(0), axis=1))
    central = by_distance[:4]
    unc_proba = np.tile([0.9, 0.1], (60, 1))
    unc_proba[40:, 0] = np.random.default_rng(1).uniform(0.55, 0.85, 20)
    unc_proba[central[0], 0] = 0.9  # the most central item is the most confident
    unc_proba[by_distance[-1], 0] = 0.5  # the most uncertain item is on the edge
    unc_proba[40:, 1] = 1 - unc_proba[40:, 0]
    (pick,) = suggest(X, 1, strategy="hybrid", labelled=[0, 20], proba=unc_proba, seed=0)
    assert pick.reason == "hybrid"
    assert pick.index == central[np.argmin(unc_proba[central, 0])]
    (d,) = suggest(X, 1, strategy="diverse", labelled=[0, 20], seed=0)
    assert d.index == central[0] and d.index != pick.index


def test_random_and_errors(clustered) -> None:
    X, _ = clustered
    a = suggest(X, 10, strategy="random", labelled=range(50), seed=3)
    assert {p.index for p in a} == set(range(50, 60))
    assert [p.index for p in suggest(X, 5, strategy="random", seed=1)] == [
        p.index for p in suggest(X, 5, strategy="random", seed=1)
    ]
    with pytest.raises(DataError, match="larger than the unlabelled pool"):
        suggest(X, 11, strategy="random", labelled=range(50))
    with pytest.raises(UsageError, match="needs a model"):
        suggest(X, 2, strategy="uncertain")
    with pytest.raises(UsageError, match="unknown strategy 'smart'"):
        suggest(X, 2, strategy="smart")
    with pytest.raises(DataError, match="pool is empty"):
        suggest(np.zeros((0, 4)), 1)


def test_suggest_refuses_a_mask_and_arrays_of_the_wrong_shape(clustered) -> None:
    X, _ = clustered
    mask = np.zeros(len(X), dtype=bool)
    mask[:50] = True
    # A boolean mask read as indices would mark only items 0 and 1 as labelled.
    with pytest.raises(UsageError, match=r"not a boolean mask; pass np.flatnonzero\(mask\)"):
        suggest(X, 2, labelled=mask)
    assert {p.index for p in suggest(X, 10, labelled=np.flatnonzero(mask))} == set(range(50, 60))
    with pytest.raises(UsageError, match=r"embeddings must be a 2-D array .* shape \(16,\)"):
        suggest(X[0], 1)
    with pytest.raises(UsageError, match=r"proba must be a 2-D array .* shape \(60,\)"):
        suggest(X, 2, strategy="uncertain", proba=np.full(len(X), 0.5))
    # A fractional budget is refused here, not passed to k-means as n_clusters=2.5.
    for bad in (2.5, "3", True):
        with pytest.raises(UsageError, match="budget must be a whole number of items, got"):
            suggest(X, bad)
    assert len(suggest(X, np.int64(3))) == 3
    # Float indices are refused, not truncated (1.7 -> 1).
    with pytest.raises(UsageError, match="labelled takes whole-number pool indices, got float64"):
        suggest(X, 2, labelled=[0, 1.7])
    assert len(suggest(X, 2, labelled=np.array([], dtype=float))) == 2  # empty is fine


# -- CLI ----------------------------------------------------------------------------------
def test_cli_select_with_template(sentiment_jsonl: Path, tiny_text_model_dir: Path,
                                  tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("a wonderful film\nthe worst plot\n")
    tpl = tmp_path / "t.j2"
    tpl.write_text("{% for ex in examples %}{{ ex.text }}: {{ ex.label }}\n{% endfor %}"
                   "{{ query }}:")
    out = tmp_path / "sel.jsonl"
    res = CliRunner().invoke(app, [
        "select", str(sentiment_jsonl), str(queries), "--k", "2", "--strategy", "nearest",
        "--template", str(tpl), "-o", str(out), "--encoder", str(tiny_text_model_dir),
        "--no-cache",
    ])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a wonderful film", "the worst plot"]
    assert [e["label"] for e in rows[0]["examples"]] == ["pos", "pos"]
    assert set(rows[0]["examples"][0]) == {"index", "id", "text", "label", "score"}
    assert rows[1]["prompt"].endswith("the worst plot:")
    assert rows[1]["prompt"].count(": neg\n") == 2


def test_cli_select_errors(sentiment_jsonl: Path, tiny_text_model_dir: Path,
                           tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["select", str(sentiment_jsonl), str(sentiment_jsonl), "-o", str(tmp_path / "o.jsonl"),
            "--encoder", str(tiny_text_model_dir), "--no-cache"]
    res = runner.invoke(app, [*base, "--k", "99"])
    assert res.exit_code == 1 and "larger than the pool (16 items)" in res.output
    res = runner.invoke(app, [*base, "--strategy", "best"])
    assert res.exit_code == 2 and "unknown strategy 'best'" in res.output
    bad = tmp_path / "bad.j2"
    bad.write_text("{{ nope }}")
    res = runner.invoke(app, [*base, "--template", str(bad)])
    assert res.exit_code == 2 and "unknown field" in res.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = runner.invoke(app, ["select", str(empty), str(sentiment_jsonl), "-o",
                              str(tmp_path / "o.jsonl"), "--no-cache"])
    assert res.exit_code == 1 and "has no rows" in res.output


def test_cli_suggest(sentiment_jsonl: Path, tiny_text_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "s.csv"
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--budget", "2", "--strategy",
                              "diverse", "-o", str(out), "--encoder", str(tiny_text_model_dir),
                              "--no-cache"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0] == "rank,index,id,text,reason,score" and len(lines) == 3
    # Two diverse picks on a two-sentiment pool: one of each.
    picked = [int(line.split(",")[1]) for line in lines[1:]]
    assert sorted(SENTIMENT[i][1] for i in picked) == ["neg", "pos"]
    # With a labelled set: labelled items are never suggested; uncertainty comes in.
    labelled = tmp_path / "lab.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                                for t, y in SENTIMENT[:4] + SENTIMENT[8:12]))
    out2 = tmp_path / "s.jsonl"
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--budget", "4", "--labelled",
                              str(labelled), "-o", str(out2), "--encoder",
                              str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out2.read_text().splitlines()]
    assert not {r["index"] for r in rows} & {0, 1, 2, 3, 8, 9, 10, 11}
    assert {r["reason"] for r in rows} == {"hybrid"}
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--budget", "2", "--strategy",
                              "uncertain", "-o", str(tmp_path / "u.jsonl"), "--encoder",
                              str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 2 and "needs a model" in res.output


def test_cli_suggest_never_suggests_a_copy_of_a_labelled_item(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    # The pool holds the first sentence 4 times (indices 0, 16, 17, 18); it is labelled.
    rows = SENTIMENT + [SENTIMENT[0]] * 3
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in rows))
    labelled = tmp_path / "lab.jsonl"
    labelled.write_text(json.dumps({"text": SENTIMENT[0][0], "label": SENTIMENT[0][1]}) + "\n")
    args = ["suggest", str(pool), "--labelled", str(labelled), "--strategy", "random",
            "--encoder", str(tiny_text_model_dir), "--no-cache"]
    out = tmp_path / "s.jsonl"
    res = CliRunner().invoke(app, [*args, "--budget", "15", "-o", str(out)])
    assert res.exit_code == 0, res.output
    picked = {json.loads(line)["index"] for line in out.read_text().splitlines()}
    assert picked == set(range(1, 16))
    res = CliRunner().invoke(app, [*args, "--budget", "16", "-o", str(tmp_path / "t.jsonl")])
    assert res.exit_code == 1 and "larger than the unlabelled pool (15 items)" in res.output


def test_cli_suggest_labelled_of_the_wrong_kind(
    sentiment_jsonl: Path, image_folder: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    res = CliRunner().invoke(app, ["suggest", str(sentiment_jsonl), "--budget", "2",
                                   "--labelled", str(image_folder), "-o",
                                   str(tmp_path / "s.jsonl"), "--encoder",
                                   str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 1
    assert f"{image_folder} holds image but the pool and model are text" in res.output


# -- diverse guided by label descriptions ---------------------------------------------------------
def _topics_and_sentiment() -> tuple[np.ndarray, np.ndarray]:
    """Two topics far apart (axes 0, 1) with a weaker sentiment axis (2): 30 positive and
    10 negative items per topic, so each topic's centre is positive."""
    rng = np.random.default_rng(0)
    rows, sentiment = [], []
    for topic in (0, 1):
        for sign, n in ((1.0, 30), (-1.0, 10)):
            centre = np.zeros(8)
            centre[topic], centre[2] = 3.0, sign
            rows.append(centre + rng.normal(0, 0.1, (n, 8)))
            sentiment += [sign] * n
    return np.concatenate(rows).astype(np.float32), np.asarray(sentiment)


def test_diverse_with_prototypes_spreads_picks_over_the_described_labels() -> None:
    X, sentiment = _topics_and_sentiment()
    protos = np.zeros((2, 8), dtype=np.float32)
    protos[0, 2], protos[1, 2] = 1.0, -1.0  # "positive", "negative"
    plain = suggest(X, 2, strategy="diverse")
    assert sorted(sentiment[[p.index for p in plain]]) == [1.0, 1.0]  # one per topic centre
    guided = suggest(X, 2, strategy="diverse", prototypes=protos)
    assert sorted(sentiment[[p.index for p in guided]]) == [-1.0, 1.0]
    assert {p.reason for p in guided} == {"diverse"}
    # hybrid before a model exists is diverse, guided the same way.
    assert suggest(X, 2, strategy="hybrid", prototypes=protos) == guided
    # hybrid with a model: inside the strata too, the most uncertain central item.
    proba = np.column_stack([np.linspace(0.5, 1.0, len(X)), 1 - np.linspace(0.5, 1.0, len(X))])
    plain_h = suggest(X, 2, strategy="hybrid", proba=proba)
    assert sorted(sentiment[[p.index for p in plain_h]]) == [1.0, 1.0]
    guided_h = suggest(X, 2, strategy="hybrid", proba=proba, prototypes=protos)
    assert sorted(sentiment[[p.index for p in guided_h]]) == [-1.0, 1.0]
    assert {p.reason for p in guided_h} == {"hybrid"}
    # Labelled items count for their stratum: two negatives known, the next two are positive.
    negatives = np.flatnonzero(sentiment < 0)[:2]
    more = suggest(X, 2, strategy="diverse", prototypes=protos, labelled=negatives)
    assert sorted(sentiment[[p.index for p in more]]) == [1.0, 1.0]
    # Copies of one labelled negative count once: 1 negative and 1 positive known, so two
    # picks are one of each (counted four times, the negative would get neither).
    dup = np.concatenate([X, np.repeat(X[negatives[:1]], 3, axis=0)])
    dup_sent = np.concatenate([sentiment, [-1.0] * 3])
    known = np.concatenate([negatives[:1], np.arange(len(X), len(X) + 3),
                            np.flatnonzero(sentiment > 0)[:1]])
    tie = suggest(dup, 1, strategy="diverse", prototypes=protos, labelled=known)
    assert dup_sent[tie[0].index] == 1.0
    two = suggest(dup, 2, strategy="diverse", prototypes=protos, labelled=known)
    assert sorted(dup_sent[[p.index for p in two]]) == [-1.0, 1.0]
    # Best first: the first pick of each stratum comes before any second pick.
    four = suggest(X, 4, strategy="diverse", prototypes=protos)
    assert sorted(sentiment[[p.index for p in four[:2]]]) == [-1.0, 1.0]
    assert len({p.index for p in four}) == 4
    # ... in the order the budget was dealt: with two positives labelled, a budget of 1
    # is a negative, and so is the first of a budget of 3.
    positives = np.flatnonzero(sentiment > 0)[:2]
    one = suggest(X, 1, strategy="diverse", prototypes=protos, labelled=positives)
    three = suggest(X, 3, strategy="diverse", prototypes=protos, labelled=positives)
    assert sentiment[one[0].index] == -1.0 and sentiment[three[0].index] == -1.0
    assert sorted(sentiment[[p.index for p in three]]) == [-1.0, -1.0, 1.0]


def test_prototype_errors() -> None:
    X, _ = _topics_and_sentiment()
    with pytest.raises(UsageError, match=r"pool's 8 dimensions, got shape \(2, 4\)"):
        suggest(X, 2, prototypes=np.eye(2, 4))
    with pytest.raises(UsageError, match=r"at least two label descriptions"):
        suggest(X, 2, prototypes=np.eye(1, 8))
    nan = np.eye(2, 8)
    nan[1, 0] = np.nan
    for broken in (nan, np.zeros((2, 8))):
        with pytest.raises(UsageError, match="prototype row .* is not finite or is all zeros"):
            suggest(X, 2, prototypes=broken)
    with pytest.raises(UsageError, match="prototypes must be embedded vectors, not texts"):
        suggest(X, 2, prototypes=["good", "bad"])
    for strategy in ("random", "uncertain"):
        with pytest.raises(UsageError, match=f"diverse' and 'hybrid' only, not '{strategy}'"):
            suggest(X, 2, strategy=strategy, prototypes=np.eye(2, 8),
                    proba=np.full((len(X), 2), 0.5))


def test_cli_suggest_with_label_descriptions(
    sentiment_jsonl: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    desc = tmp_path / "desc.json"
    desc.write_text(json.dumps({"pos": "good great", "neg": "bad awful"}))
    labelled = tmp_path / "lab.jsonl"  # two negatives, one label: no model is fitted
    labelled.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                                for t, y in SENTIMENT[8:10]))
    common = ["--encoder", str(tiny_text_model_dir), "--no-cache", "--labelled", str(labelled),
              "--budget", "2", "--strategy", "diverse"]
    out = tmp_path / "s.jsonl"
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "-o", str(out),
                              "--label-descriptions", str(desc), *common])
    assert res.exit_code == 0, res.output
    picked = [json.loads(line)["index"] for line in out.read_text().splitlines()]
    assert [SENTIMENT[i][1] for i in picked] == ["pos", "pos"]
    # The same picks as the Python API given the embedded descriptions as prototypes.
    from fewshot.encoders import get_encoder

    enc = get_encoder(str(tiny_text_model_dir), "text")
    texts = [t for t, _ in SENTIMENT]
    api = suggest(enc.encode(texts), 2, strategy="diverse", labelled=[8, 9],
                  prototypes=enc.encode(["good great", "bad awful"]))
    assert picked == [p.index for p in api]
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "-o", str(tmp_path / "r.jsonl"),
                              "--label-descriptions", str(desc), "--budget", "2", "--strategy",
                              "random", "--encoder", str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 2 and "guides diverse and hybrid only" in res.output
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"pos": "good", "neg": "good"}))
    res = runner.invoke(app, ["suggest", str(tmp_path / "missing.jsonl"), "-o",
                              str(tmp_path / "x.jsonl"), "--label-descriptions", str(same),
                              "--budget", "2", "--strategy", "diverse"])
    # Checked before the pool (which does not exist) is read.
    assert res.exit_code == 1 and "have the same description" in res.output
    # A described label the model does not know is a note (finding a new label's first
    # examples is a use), not an error.
    model = tmp_path / "model"
    res = runner.invoke(app, ["train", str(sentiment_jsonl), "-o", str(model), "--encoder",
                              str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 0, res.output
    three = tmp_path / "three.json"
    three.write_text(json.dumps({"pos": "good great", "neg": "bad awful", "meh": "the plot"}))
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "-o", str(tmp_path / "n.jsonl"),
                              "--label-descriptions", str(three), "--model", str(model),
                              "--budget", "3", "--strategy", "diverse", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert ("note: the descriptions name 1 label(s) the model does not know (meh); picks are "
            "spread over them too") in res.stderr


# -- hybrid follows a model's margins only if the model beats a guess -----------------------------
def test_informative_model_by_hand() -> None:
    from fewshot.selection import informative_model

    right = np.eye(2)[[0, 1] * 4]  # 8 of 8 right against a 0.5 base rate: p = 0.0039
    ok, why = informative_model(right, [0, 1] * 4)
    assert ok and "8 of 8 (1.00) held-out labelled items right, against 0.50" in why
    ok, why = informative_model(right[:4], [0, 1] * 2)  # 4 of 4: p = 0.0625
    assert not ok and "not measurably better than a guess" in why and "p=0.062" in why
    # Always the majority label (6 of 8): no better than the base rate.
    ok, why = informative_model(np.eye(2)[[0] * 8], [0] * 6 + [1] * 2)
    assert not ok and "label more items and hybrid will follow its margins" in why
    ok, why = informative_model(np.eye(2)[[0] * 3], [0] * 3)
    assert not ok and "only one label could be held out" in why
    with pytest.raises(UsageError, match="oof_labels must be class indices"):
        informative_model(right, ["pos", "neg"] * 4)
    with pytest.raises(UsageError, match="oof_labels must be class indices"):
        informative_model(right, [0, 2] * 4)
    # Rows never held out (NaN) are ignored; none at all: untested.
    nan = np.full((2, 2), np.nan)
    assert informative_model(np.vstack([right, nan]), [0, 1] * 5)[0]
    ok, why = informative_model(nan, [0, 1])
    assert not ok and "untested" in why


def test_cli_hybrid_stays_diverse_while_the_model_is_a_guess(
    sentiment_jsonl: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    common = ["--encoder", str(tiny_text_model_dir), "--no-cache", "--budget", "2"]
    few = tmp_path / "few.jsonl"  # 2 + 2 labelled: 4 of 4 right is p = 0.0625
    few.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                           for t, y in SENTIMENT[:2] + SENTIMENT[8:10]))
    out = tmp_path / "s.jsonl"
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--labelled", str(few),
                              "-o", str(out), *common])
    assert res.exit_code == 0, res.output
    assert "hybrid: picks stay diverse; 4 of 4 (1.00) held-out labelled items right" in res.stderr
    assert {json.loads(line)["reason"] for line in out.read_text().splitlines()} == {"diverse"}
    many = tmp_path / "many.jsonl"  # 4 + 4: 8 of 8 right is p = 0.0039
    many.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in SENTIMENT[:4] + SENTIMENT[8:12]))
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--labelled", str(many),
                              "-o", str(out), "--force", *common])
    assert res.exit_code == 0, res.output
    assert "hybrid: following the model's margins; 8 of 8" in res.stderr
    assert {json.loads(line)["reason"] for line in out.read_text().splitlines()} == {"hybrid"}


def test_cli_hybrid_with_an_uncalibrated_model_says_its_margins_are_untested(
    sentiment_jsonl: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    enc = ["--encoder", str(tiny_text_model_dir), "--no-cache"]
    model = tmp_path / "m"
    res = runner.invoke(app, ["train", str(sentiment_jsonl), "-o", str(model), "--calibration",
                              "none", *enc])
    assert res.exit_code == 0, res.output
    out = tmp_path / "s.jsonl"
    res = runner.invoke(app, ["suggest", str(sentiment_jsonl), "--model", str(model),
                              "--budget", "2", "-o", str(out), *enc])
    assert res.exit_code == 0, res.output
    assert "fitted without calibration" in res.stderr and "followed untested" in res.stderr
    assert {json.loads(line)["reason"] for line in out.read_text().splitlines()} == {"hybrid"}


def test_labelled_model_margins_do_what_suggest_labelled_does(
    tiny_text_encoder, sentiment_jsonl: Path, tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    from fewshot import FewShotClassifier
    from fewshot.selection.annotation import labelled_model, labelled_model_margins

    texts = [t for t, _ in SENTIMENT]
    X = tiny_text_encoder.encode(texts)
    assert labelled_model(tiny_text_encoder, texts[:2], ["pos", "pos"], cache=False) is None
    assert labelled_model_margins(None, X) == (None, None)
    few = SENTIMENT[:2] + SENTIMENT[8:10]  # 4 of 4 right: p = 0.0625, a guess
    model = labelled_model(tiny_text_encoder, [t for t, _ in few], [y for _, y in few],
                           cache=False)
    assert model.head_.class_weight == "balanced" and model.calibrator_ is not None
    proba, note = labelled_model_margins(model, X, strategy="hybrid")
    assert proba is None
    assert note.startswith("picks stay diverse; 4 of 4 (1.00) held-out labelled items right")
    proba, note = labelled_model_margins(model, X, strategy="uncertain")
    assert note is None and np.array_equal(proba, model.head_.predict_proba(X))
    many = SENTIMENT[:4] + SENTIMENT[8:12]  # 8 of 8: p = 0.0039, better than a guess
    model = labelled_model(tiny_text_encoder, [t for t, _ in many], [y for _, y in many],
                           cache=False)
    proba, note = labelled_model_margins(model, X)
    assert note.startswith("following the model's margins; 8 of 8")
    assert np.array_equal(proba, model.head_.predict_proba(X))
    # The CLI makes the same picks from the same calls.
    labelled_idx = list(range(4)) + list(range(8, 12))
    api = suggest(X, 4, strategy="hybrid", labelled=labelled_idx, proba=proba)
    lab = tmp_path / "lab.jsonl"
    lab.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in many))
    out = tmp_path / "s.jsonl"
    res = CliRunner().invoke(app, ["suggest", str(sentiment_jsonl), "--budget", "4",
                                   "--labelled", str(lab), "-o", str(out), "--encoder",
                                   str(tiny_text_model_dir), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == [
        p.index for p in api]
    # Without calibration there are no out-of-fold predictions: followed, untested.
    plain = FewShotClassifier(tiny_text_encoder, calibration=None, cache=False).fit(
        texts, [y for _, y in SENTIMENT])
    proba, note = labelled_model_margins(plain, X)
    assert proba is not None and "fitted without calibration" in note
    assert "margins are followed untested" in note

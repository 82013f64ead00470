"""Contrastive tuning, tuned models on disk, distillation: on tiny offline models."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SENTIMENT
from typer.testing import CliRunner

from fewshot import FewShotClassifier
from fewshot.cache import EmbeddingCache, embed
from fewshot.cli import app
from fewshot.distillation import distill
from fewshot.encoders import ImageEncoder, TextEncoder
from fewshot.errors import DataError, EncoderMismatchError, ModelError, UsageError
from fewshot.tuning import ContrastiveTuner, as_tuner
from fewshot.tuning.objectives import (
    inbatch_cosine_loss,
    pair_cosine_loss,
    resolve_objective,
    supcon_loss,
)
from fewshot.tuning.sampling import class_balanced_batches, sample_pairs

TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]


def fresh_text(model_dir: Path) -> TextEncoder:
    enc = TextEncoder(str(model_dir), device="cpu", show_progress=False)
    enc.fit()
    return enc


def state(enc) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in enc.training_module().state_dict().items()}


# -- objectives and sampling --------------------------------------------------------
def test_supcon_loss_exact_value() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([e1, e1, e2, e2])
    loss = supcon_loss(z, torch.tensor([0, 0, 1, 1]), temperature=1.0)
    # each anchor: one positive at similarity 1, two negatives at 0
    assert float(loss) == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)


def test_supcon_loss_prefers_separated_classes_and_skips_lonely_anchors() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]])
    mixed = torch.tensor([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]])
    assert supcon_loss(separated, labels) < supcon_loss(mixed, labels)
    assert float(supcon_loss(separated, torch.tensor([0, 1, 2, 3]))) == 0.0


def test_pair_cosine_loss_exact_value() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # cosines 1 and 0 against targets 0 and 0: mse = (1 + 0) / 2
    assert float(pair_cosine_loss(a, b, torch.tensor([0.0, 0.0]))) == pytest.approx(0.5)


def test_inbatch_cosine_loss_exact_values() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    labels = torch.tensor([0, 0, 1, 1])
    # separated classes: positives at cosine 1, negatives at 0 -> no loss
    assert float(inbatch_cosine_loss(torch.stack([e1, e1, e2, e2]), labels)) == 0.0
    # everything collapsed: positives fine, negatives at cosine 1 -> (0 + 1) / 2,
    # positive and negative pairs weighted equally whatever their counts
    assert float(inbatch_cosine_loss(torch.stack([e1] * 4), labels)) == pytest.approx(0.5)
    assert float(inbatch_cosine_loss(torch.stack([e1] * 5), torch.tensor([0, 0, 0, 0, 1]))
                 ) == pytest.approx(0.5)
    # only negatives in the batch: their term alone
    assert float(inbatch_cosine_loss(torch.stack([e1, e2]), torch.tensor([0, 1]))) == 0.0


def test_auto_objective_depends_on_the_number_of_classes(tiny_text_model_dir: Path) -> None:
    assert [resolve_objective("auto", n) for n in (2, 19, 20, 77)] == [
        "cosine", "cosine", "supcon", "supcon"]
    assert resolve_objective("pairs", 77) == "pairs"
    enc = fresh_text(tiny_text_model_dir)
    report = ContrastiveTuner(epochs=1).tune(enc, TEXTS, LABELS)
    assert report.objective == "cosine" and enc.tuned_["objective"] == "cosine"


def test_auto_with_many_classes_uses_a_gentler_step_and_more_classes_per_batch(
    tiny_text_model_dir: Path
) -> None:
    items = [f"text number {i} of class {i // 2}" for i in range(40)]
    labels = [f"c{i // 2}" for i in range(40)]  # 20 classes: auto picks supcon
    auto = ContrastiveTuner(max_steps=1)
    auto.tune(fresh_text(tiny_text_model_dir), items, labels)
    assert (auto.objective_, auto.learning_rate_, auto.per_class_) == ("supcon", 2e-5, 2)
    assert auto.settings_record()[1]["per_class"] == 2
    # An objective or setting chosen by the caller keeps the usual defaults.
    chosen = ContrastiveTuner("supcon", max_steps=1)
    chosen.tune(fresh_text(tiny_text_model_dir), items, labels)
    assert (chosen.learning_rate_, chosen.per_class_) == (1e-4, 4)
    given = ContrastiveTuner(max_steps=1, learning_rate=5e-5, per_class=4)
    given.tune(fresh_text(tiny_text_model_dir), items, labels)
    assert (given.learning_rate_, given.per_class_) == (5e-5, 4)
    few = ContrastiveTuner(epochs=1)  # below 20 classes: cosine, 1e-4, 4 per class
    few.tune(fresh_text(tiny_text_model_dir), TEXTS, LABELS)
    assert (few.objective_, few.learning_rate_, few.per_class_) == ("cosine", 1e-4, 4)


def test_class_balanced_batches_never_leave_an_item_alone_in_its_group() -> None:
    y = np.repeat(np.arange(30), 3)  # 3 per class in groups of 2: 2 + 1 -> one group of 3
    batches = class_balanced_batches(y, 32, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(y)))
    for b in batches:
        assert np.bincount(y[b]).max() <= 3 and 1 not in set(np.bincount(y[b]).tolist())
    one = class_balanced_batches(np.array([0, 1, 1]), 4, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(one).tolist()) == [0, 1, 2]  # a class of one stays as it is


def test_class_balanced_batches_cover_each_item_once_in_class_groups() -> None:
    y = np.repeat(np.arange(5), 8)
    batches = class_balanced_batches(y, 16, 4, np.random.default_rng(0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(y)))
    assert [len(b) for b in batches] == [16, 16, 8]
    for b in batches:  # groups of 4 of one class: every item has 3 positives in its batch
        counts = np.bincount(y[b], minlength=5)
        assert set(counts[counts > 0].tolist()) <= {4, 8}
        assert [len(set(y[b[i:i + 4]].tolist())) for i in range(0, len(b), 4)] == [1] * (
            len(b) // 4)


def test_sample_pairs_linear_count_and_targets() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    left, right, target = sample_pairs(y, 3, np.random.default_rng(0))
    assert len(left) == 2 * 3 * len(y)
    same = y[left] == y[right]
    assert np.array_equal(same, target == 1)
    assert not np.any(left[target == 1] == right[target == 1])


# -- the tuner ------------------------------------------------------------------------
def test_tune_is_deterministic_changes_weights_and_id(tiny_text_model_dir: Path) -> None:
    a, b, c = (fresh_text(tiny_text_model_dir) for _ in range(3))
    before = state(a)
    frozen_id = a.id
    report = ContrastiveTuner(epochs=6, seed=0, learning_rate=1e-2).tune(a, TEXTS, LABELS)
    ContrastiveTuner(epochs=6, seed=0, learning_rate=1e-2).tune(b, TEXTS, LABELS)
    ContrastiveTuner(epochs=6, seed=1, learning_rate=1e-2).tune(c, TEXTS, LABELS)
    sa, sb, sc = state(a), state(b), state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert any(not torch.equal(sa[k], before[k]) for k in sa)
    assert a.is_tuned and a.id != frozen_id and a.id == b.id
    assert a.fingerprint() is None
    assert report.steps == 6 and report.stopped == "epochs"
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert not a.training_module().training  # back in eval mode


@pytest.mark.parametrize("objective", ["cosine", "supcon"])
def test_tuning_separates_classes_better(tiny_text_model_dir: Path, objective: str) -> None:
    enc = fresh_text(tiny_text_model_dir)
    labels = ["a", "b"] * 8  # a split the frozen model does not know

    def margin() -> float:
        z = enc.encode(TEXTS)
        y = np.asarray(labels)
        sim = z @ z.T
        same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
        return float(sim[same].mean() - sim[y[:, None] != y[None, :]].mean())

    before = margin()
    ContrastiveTuner(objective, epochs=20, learning_rate=5e-2).tune(enc, TEXTS, labels)
    assert margin() > before + 0.1


def test_cache_never_serves_frozen_vectors_for_tuned_body(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    enc = fresh_text(tiny_text_model_dir)
    frozen = embed(enc, TEXTS, cache)
    tuned = fresh_text(tiny_text_model_dir)
    ContrastiveTuner(epochs=5, learning_rate=5e-2).tune(tuned, TEXTS, LABELS)
    through_cache = embed(tuned, TEXTS, cache)
    np.testing.assert_array_equal(through_cache, tuned.encode(TEXTS))
    assert not np.allclose(through_cache, frozen)
    assert cache.identify(tuned) == tuned.id != cache.identify(fresh_text(tiny_text_model_dir))


def test_max_steps_and_time_budget_cap_the_work(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    r = ContrastiveTuner(epochs=50, max_steps=7, batch_size=4, per_class=2).tune(
        enc, TEXTS, LABELS)
    assert (r.steps, r.stopped) == (7, "max_steps")
    enc = fresh_text(tiny_text_model_dir)
    r = ContrastiveTuner(epochs=10_000, max_steps=None, time_budget=0.3).tune(enc, TEXTS, LABELS)
    assert r.stopped == "time_budget" and 1 <= r.steps < 10_000 and r.seconds < 3


def test_pairs_objective_with_validation(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    r = ContrastiveTuner("pairs", epochs=3, pairs_per_item=2, batch_size=8,
                         validation_fraction=0.25).tune(enc, TEXTS, LABELS)
    # 12 training items (2 per class held out) x 2 x 2 pairs, 4 pairs per step
    assert (r.objective, r.steps, r.epochs) == ("pairs", 36, 3.0)
    assert len(r.validation_scores) == 3 and all(0 <= v <= 1 for v in r.validation_scores)


def test_explicit_validation_labels_must_be_known(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    with pytest.raises(DataError, match="validation labels surprise are not training labels"):
        ContrastiveTuner().tune(enc, TEXTS, LABELS, validation=(["a film"], ["surprise"]))


@pytest.mark.parametrize(
    ("items", "labels", "error", "message"),
    [
        (TEXTS[:4], ["pos"] * 4, DataError, "at least two classes"),
        (TEXTS[:3], ["pos", "neg", "x"], DataError, "class with at least two examples"),
        (TEXTS[:3], ["pos"], DataError, "got 3 items but 1 labels"),
    ],
)
def test_bad_training_data_is_one_clear_error(
    tiny_text_model_dir: Path, items, labels, error, message
) -> None:
    with pytest.raises(error, match=message):
        ContrastiveTuner().tune(fresh_text(tiny_text_model_dir), items, labels)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"objective": "triplet"},
         "unknown tuning objective 'triplet'; choose auto, cosine, supcon, pairs"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ({"mixed_precision": "fp8"}, "unknown mixed_precision 'fp8'"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
    ],
)
def test_bad_settings_are_usage_errors(tiny_text_model_dir: Path, settings, message) -> None:
    with pytest.raises(UsageError, match=message):
        ContrastiveTuner(**settings).tune(fresh_text(tiny_text_model_dir), TEXTS, LABELS)


def test_mixed_precision_needs_a_gpu(tiny_text_model_dir: Path) -> None:
    with pytest.raises(UsageError, match="needs a CUDA device"):
        ContrastiveTuner(mixed_precision="bf16").tune(
            fresh_text(tiny_text_model_dir), TEXTS, LABELS)


def test_as_tuner_forms() -> None:
    assert as_tuner(None) is None and as_tuner(False) is None
    assert as_tuner(True).objective == "auto"
    assert as_tuner("pairs").objective == "pairs"
    assert as_tuner({"epochs": 3}).epochs == 3
    t = ContrastiveTuner(epochs=4)
    assert as_tuner(t) is not t and as_tuner(t).epochs == 4
    with pytest.raises(UsageError, match="tune=3 is not understood"):
        as_tuner(3)
    with pytest.raises(UsageError, match="unknown tuning setting.s. lr; choose from"):
        as_tuner({"lr": 1e-3})
    assert repr(ContrastiveTuner(epochs=4)) == "ContrastiveTuner(epochs=4)"


def test_classifier_with_tuner_clones_and_sets_nested_params() -> None:
    from sklearn.base import clone

    clf = FewShotClassifier(tune=ContrastiveTuner(epochs=3))
    copy = clone(clf)
    assert copy.tune is not clf.tune and copy.tune.epochs == 3
    clf.set_params(tune__epochs=7)
    assert clf.get_params()["tune__epochs"] == 7


def test_interrupted_tuning_never_keeps_the_frozen_id(tiny_text_model_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    enc = fresh_text(tiny_text_model_dir)
    frozen_id = enc.id

    def boom(self, *args, **kwargs):
        next(iter(enc.training_module().parameters())).data.add_(1.0)  # half a step
        raise KeyboardInterrupt

    monkeypatch.setattr(ContrastiveTuner, "_train", boom)
    with pytest.raises(KeyboardInterrupt):
        ContrastiveTuner().tune(enc, TEXTS, LABELS)
    assert enc.fingerprint() is None and enc.id != frozen_id
    clf = FewShotClassifier(fresh_text(tiny_text_model_dir), tune=True, cache=False)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(TEXTS, LABELS)
    assert not hasattr(clf, "encoder_")


def test_tuning_twice_keeps_the_pretrained_base(tiny_text_model_dir: Path,
                                                tmp_path: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    frozen_id = enc.id
    ContrastiveTuner(epochs=2, learning_rate=1e-2).tune(enc, TEXTS, LABELS)
    ContrastiveTuner(epochs=2, learning_rate=1e-2, seed=3).tune(enc, TEXTS, LABELS)
    assert enc.tuned_["base_id"] == frozen_id
    clf = FewShotClassifier(enc, cache=False).fit(TEXTS, LABELS)
    folder = clf.save(tmp_path / "m")
    np.testing.assert_array_equal(FewShotClassifier.load(folder, cache=False).predict_proba(TEXTS),
                                  clf.predict_proba(TEXTS))


def test_early_stopping_restores_the_best_epoch(tiny_text_model_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([(0.4, 0.0), (0.5, 0.0), (0.9, 0.0), (0.8, 0.0), (0.7, 0.0), (1.0, 0.0)])
    saved: dict[int, dict] = {}

    def scripted(self, encoder, module, *args):
        saved[len(saved)] = {k: v.clone() for k, v in module.state_dict().items()}
        return next(scores)

    monkeypatch.setattr(ContrastiveTuner, "_validate", scripted)
    enc = fresh_text(tiny_text_model_dir)
    report = ContrastiveTuner(epochs=10, learning_rate=1e-2, validation_fraction=0.25,
                              patience=2).tune(enc, TEXTS, LABELS)
    assert report.validation_scores == [0.5, 0.9, 0.8, 0.7]
    assert (report.best_epoch, report.stopped, report.steps) == (2, "early_stopping", 4)
    final = enc.training_module().state_dict()
    assert all(torch.equal(final[k], v) for k, v in saved[2].items())
    assert any(not torch.equal(final[k], v) for k, v in saved[4].items())


def test_refit_trains_again_on_every_item_for_the_best_epoch_count(
        tiny_text_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([(0.4, 0.0), (0.5, 0.0), (0.9, 0.0), (0.8, 0.0), (0.7, 0.0)])
    monkeypatch.setattr(ContrastiveTuner, "_validate", lambda *a: next(scores))
    settings = {"learning_rate": 1e-2, "batch_size": 4, "per_class": 2}
    enc = fresh_text(tiny_text_model_dir)
    report = ContrastiveTuner(epochs=10, validation_fraction=0.25, refit=True,
                              **settings).tune(enc, TEXTS, LABELS)
    assert (report.best_epoch, report.stopped, report.refit_epochs) == (2, "early_stopping", 2)
    # The same weights as two epochs on every item from the untuned body.
    direct = fresh_text(tiny_text_model_dir)
    again = ContrastiveTuner(epochs=2, **settings).tune(direct, TEXTS, LABELS)
    # Held out 2 of 8 per class: 12 items, 3 batches of 4 an epoch, 4 epochs; then
    # 16 items, 4 batches an epoch, 2 epochs.
    assert (report.steps, again.steps) == (4 * 3 + 2 * 4, 2 * 4)
    final, expected = state(enc), state(direct)
    assert all(torch.equal(final[k], v) for k, v in expected.items())
    assert enc.is_tuned and enc.id == direct.id


def test_refit_keeps_the_untuned_body_when_it_scores_best(
        tiny_text_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([(0.9, 0.0), (0.5, 0.0), (0.6, 0.0)])
    monkeypatch.setattr(ContrastiveTuner, "_validate", lambda *a: next(scores))
    enc = fresh_text(tiny_text_model_dir)
    before = state(enc)
    report = ContrastiveTuner(epochs=10, learning_rate=1e-2, validation_fraction=0.25,
                              refit=True).tune(enc, TEXTS, LABELS)
    assert (report.best_epoch, report.refit_epochs, report.stopped) == (0, 0, "early_stopping")
    after = state(enc)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_batchnorm_statistics_stay_fixed_while_tuning(image_folder: Path) -> None:
    enc = ImageEncoder("test_efficientnet", pretrained=False, device="cpu", show_progress=False)
    enc.fit()
    bn = {k: v.clone() for k, v in enc.training_module().state_dict().items()
          if "running_" in k}
    assert bn
    paths = sorted(image_folder.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    report = ContrastiveTuner(epochs=2, batch_size=8).tune(enc, paths, labels)
    after = enc.training_module().state_dict()
    assert report.steps >= 2
    assert all(torch.equal(after[k], v) for k, v in bn.items())


# -- classifier integration ---------------------------------------------------------
def test_classifier_tune_round_trips_exactly(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    user_enc = fresh_text(tiny_text_model_dir)
    frozen_id = user_enc.id
    before = state(user_enc)
    clf = FewShotClassifier(user_enc, tune={"epochs": 8, "learning_rate": 2e-2},
                            cache=tmp_path / "cache").fit(TEXTS, LABELS)
    assert user_enc.id == frozen_id and not user_enc.is_tuned  # the caller's encoder is untouched
    assert all(torch.equal(before[k], v) for k, v in state(user_enc).items())
    assert clf.encoder_.is_tuned and clf.tuning_["report"]["steps"] == 8
    proba = clf.predict_proba(TEXTS)
    folder = clf.save(tmp_path / "model")
    manifest = json.loads((folder / "fewshot.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["encoder"]["tuned"] is True
    assert manifest["encoder"]["base_id"] == frozen_id != manifest["encoder"]["id"]
    assert manifest["tuning"]["settings"]["epochs"] == 8
    assert (folder / "body.safetensors").is_file()
    for cache in (tmp_path / "cache", False):
        loaded = FewShotClassifier.load(folder, cache=cache)
        assert loaded.encoder_.id == clf.encoder_.id
        np.testing.assert_array_equal(loaded.predict_proba(TEXTS), proba)
    # Its settings come back too, so a clone refits the same way (tuning again).
    assert as_tuner(loaded.get_params()["tune"]).get_params() == as_tuner(
        {"epochs": 8, "learning_rate": 2e-2}).get_params()
    assert FewShotClassifier.load(folder, cache=False).tuning_["requested"]["epochs"] == 8
    assert loaded.get_params()["tune"]["learning_rate"] == 2e-2


def saved_tuned(model_dir: Path, tmp_path: Path, epochs: int = 3) -> tuple[Any, Path]:
    """A tuned classifier on TEXTS and the folder it was saved to."""
    clf = FewShotClassifier(str(model_dir), tune={"epochs": epochs}, cache=False,
                            show_progress=False).fit(TEXTS, LABELS)
    return clf, clf.save(tmp_path / "model")


def test_auto_learning_rate_stays_auto_when_a_saved_model_refits(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    _, folder = saved_tuned(tiny_text_model_dir, tmp_path, epochs=2)
    manifest = json.loads((folder / "fewshot.json").read_text())
    assert manifest["tuning"]["requested"]["learning_rate"] is None  # auto: resolved at fit
    assert manifest["tuning"]["settings"]["learning_rate"] == 1e-4  # what ran
    assert FewShotClassifier.load(folder, cache=False).get_params()["tune"][
        "learning_rate"] is None


def test_tuned_model_with_missing_or_wrong_body_fails_clearly(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    _, folder = saved_tuned(tiny_text_model_dir, tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "body.safetensors").unlink()
    with pytest.raises(ModelError, match="missing body.safetensors"):
        FewShotClassifier.load(broken, cache=False)
    (broken / "body.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="body.safetensors is corrupt"):
        FewShotClassifier.load(broken, cache=False)
    # A body from another tuning run gives another id: refused, not silently used.
    other = FewShotClassifier(str(tiny_text_model_dir), tune={"epochs": 3, "seed": 5},
                              cache=False).fit(TEXTS, LABELS).save(tmp_path / "other")
    shutil.copy(other / "body.safetensors", broken / "body.safetensors")
    with pytest.raises(ModelError, match="does not give the tuned encoder"):
        FewShotClassifier.load(broken, cache=False)


def test_tuned_model_refuses_another_base_encoder(
    tiny_text_model_dir: Path, tmp_path: Path, copy_tree
) -> None:
    clf = FewShotClassifier(str(tiny_text_model_dir), tune={"epochs": 2}, cache=False).fit(
        TEXTS, LABELS)
    folder = clf.save(tmp_path / "model")
    from sentence_transformers import SentenceTransformer

    other_dir = tmp_path / "other-model"
    st = SentenceTransformer(str(tiny_text_model_dir))
    with torch.no_grad():
        next(iter(st.parameters())).mul_(2.0)
    st.save(str(other_dir))
    with pytest.raises(EncoderMismatchError, match="pass the original encoder"):
        FewShotClassifier.load(folder, encoder=str(other_dir), cache=False)


def test_image_classifier_tunes_and_round_trips(
    image_folder: Path, tiny_image_dir: Path, tmp_path: Path
) -> None:
    paths = sorted(image_folder.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    clf = FewShotClassifier(f"local-dir:{tiny_image_dir}", tune={"epochs": 2, "batch_size": 8},
                            cache=False, device="cpu", show_progress=False).fit(paths, labels)
    folder = clf.save(tmp_path / "model")
    loaded = FewShotClassifier.load(folder, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(paths), clf.predict_proba(paths))


# -- distillation ---------------------------------------------------------------------
def test_distill_student_matches_teacher_and_saves(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    teacher = FewShotClassifier(str(tiny_text_model_dir), cache=False).fit(TEXTS, LABELS)
    student = distill(teacher, TEXTS * 2, str(tiny_text_model_dir), cache=False,
                      tune={"learning_rate": 1e-2})
    assert student.encoder_.is_tuned
    assert student.distillation_["pool"] == 32
    assert student.distillation_["agreement_on_pool"] == 1.0
    assert list(student.predict(TEXTS)) == list(teacher.predict(TEXTS))
    folder = student.save(tmp_path / "student")
    manifest = json.loads((folder / "fewshot.json").read_text())
    assert manifest["distillation"]["pool"] == 32
    loaded = FewShotClassifier.load(folder, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), student.predict_proba(TEXTS))
    assert loaded.get_params()["tune"] is None  # distillation is not something fit() redoes
    assert loaded.distillation_ == manifest["distillation"]  # the report survives a load
    assert loaded.save(tmp_path / "again").joinpath("fewshot.json").read_text().count(
        '"agreement_on_pool": 1.0') == 1


def test_refitting_a_distilled_student_drops_its_distillation_report(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    teacher = FewShotClassifier(str(tiny_text_model_dir), cache=False).fit(TEXTS, LABELS)
    student = distill(teacher, TEXTS * 2, str(tiny_text_model_dir), head="knn", cache=False)
    assert student.distillation_["pool"] == 32
    student.fit(TEXTS[:4] + TEXTS[-4:], ["a"] * 4 + ["b"] * 4)
    assert getattr(student, "distillation_", None) is None
    manifest = json.loads((student.save(tmp_path / "refit") / "fewshot.json").read_text())
    assert "distillation" not in manifest


def test_distill_errors(tiny_text_model_dir: Path, image_folder: Path) -> None:
    teacher = FewShotClassifier(str(tiny_text_model_dir), cache=False).fit(TEXTS, LABELS)
    with pytest.raises(UsageError, match="drop validation_fraction and objective"):
        distill(teacher, TEXTS, str(tiny_text_model_dir), tune={"validation_fraction": 0.2})
    with pytest.raises(DataError, match="at least 2"):
        distill(teacher, ["one"], str(tiny_text_model_dir))
    with pytest.raises(DataError, match="predicts one class"):
        distill(teacher, ["good movie", "great film"], str(tiny_text_model_dir))
    with pytest.raises(DataError, match="items are image but the teacher classifies text"):
        distill(teacher, sorted(image_folder.rglob("*.png")), str(tiny_text_model_dir))


# -- CLI and bench ----------------------------------------------------------------------
def test_cli_train_tune_predict_and_distill(
    tiny_text_model_dir: Path, sentiment_jsonl: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    r = runner.invoke(app, ["train", str(sentiment_jsonl), "-o", str(tmp_path / "m"),
                            "--encoder", str(tiny_text_model_dir), "--tune",
                            "--tune-param", "epochs=4", "--tune-param", "learning_rate=0.02",
                            *cache])
    assert r.exit_code == 0, r.output
    assert "tuning: cosine, 4 steps (4 epochs)" in r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "m"), str(sentiment_jsonl),
                            "-o", str(tmp_path / "p.jsonl"), *cache])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert np.mean([row["label"] == y for row, y in zip(rows, LABELS, strict=True)]) == 1.0
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(TEXTS) + "\n")
    r = runner.invoke(app, ["distill", str(tmp_path / "m"), str(pool), "--student",
                            str(tiny_text_model_dir), "-o", str(tmp_path / "s"), *cache,
                            "--teacher-encoder", str(tiny_text_model_dir)])
    assert r.exit_code == 0, r.output
    assert "the student agrees with the teacher on 100.0%" in r.output
    assert (tmp_path / "s" / "body.safetensors").is_file()


def test_cli_tune_errors_exit_nonzero(
    tiny_text_model_dir: Path, sentiment_jsonl: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(sentiment_jsonl), "-o", str(tmp_path / "m"),
                            "--encoder", str(tiny_text_model_dir), "--tune",
                            "--tune-objective", "triplet"])
    assert r.exit_code == 2
    assert "error: unknown tuning objective 'triplet'" in r.output
    r = runner.invoke(app, ["distill", str(tmp_path / "missing"), str(sentiment_jsonl),
                            "--student", str(tiny_text_model_dir), "-o", str(tmp_path / "s")])
    assert r.exit_code == 1
    assert "no model folder at" in r.output
    # an unknown head is caught before the teacher is even loaded
    r = runner.invoke(app, ["distill", str(tmp_path / "missing"), str(sentiment_jsonl),
                            "--student", str(tiny_text_model_dir), "-o", str(tmp_path / "s"),
                            "--head", "svm"])
    assert r.exit_code == 2
    assert "unknown head 'svm'" in r.output


def test_bench_runs_tuned_methods(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    from fewshot.bench import run_bench

    data = tmp_path / "tiny_sentiment"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text(
            "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in SENTIMENT))
    rows = run_bench([data], tmp_path / "out", shots=[4], seeds=[0],
                     methods=["logreg", "tuned-logreg", "tuned-centroid"],
                     encoder=str(tiny_text_model_dir), cache=False, show_progress=False)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"logreg", "tuned-logreg", "tuned-centroid"}
    for r in by_method.values():
        assert r["error"] is None and r["accuracy"] >= 0.75
    assert by_method["tuned-logreg"]["fit_seconds"] > 0


def test_trainable_fraction_updates_only_the_top_layers(image_folder: Path) -> None:
    enc = ImageEncoder("test_vit", pretrained=False, device="cpu", show_progress=False)
    enc.fit()
    before = state(enc)
    paths = sorted(image_folder.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    tuner = ContrastiveTuner(epochs=2, batch_size=8, learning_rate=1e-2, trainable_fraction=0.3)
    tuner.tune(enc, paths, labels)
    module = enc.training_module()
    names = [n for n, _ in module.named_parameters()]
    trained = enc.tuned_["parameters"]
    assert trained and set(trained) < set(names)
    assert names.index(trained[0]) > len(names) // 3  # the bottom stays frozen
    after = module.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in names if n not in trained)
    assert any(not torch.equal(after[n], before[n]) for n in trained)
    assert all(p.requires_grad for p in module.parameters())  # flags restored
    with pytest.raises(UsageError, match=r"trainable_fraction must be in \(0, 1\]"):
        ContrastiveTuner(trainable_fraction=0).tune(enc, paths, labels)


def _tiny_bert(folder: Path):
    """A 2-layer BERT with mean pooling: its pooler weights never reach the embedding."""
    from conftest import TINY_VOCAB
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_VOCAB]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(TINY_VOCAB), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(folder)
    return SentenceTransformer(modules=[Transformer(str(folder)), Pooling(16, "mean")],
                               device="cpu")


def test_trainable_fraction_skips_weights_the_embedding_never_uses(tmp_path: Path) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    before = state(enc)
    ContrastiveTuner(epochs=2, learning_rate=1e-2, trainable_fraction=0.05).tune(
        enc, TEXTS, LABELS)
    trained = enc.tuned_["parameters"]
    assert trained and not any("pooler" in n for n in trained)
    after = state(enc)
    assert any(not torch.equal(after[n], before[n]) for n in trained)
    assert all(torch.equal(after[n], before[n]) for n in after if "pooler" in n)


@pytest.mark.parametrize("layers", [1, 2])
def test_top_layers_on_cached_inputs_embed_what_encode_embeds(tmp_path: Path,
                                                               layers: int) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    expected = enc.encode(TEXTS, show_progress=False)
    cached = enc.training_items(TEXTS, train_layers=layers)
    assert enc.training_layers() == 2 and all(c.cut == 2 - layers for c in cached)
    with torch.no_grad():
        got = enc.training_forward(enc.training_batch(cached)).numpy()
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The body is whole again afterwards.
    assert len(enc.training_module()[0].auto_model.encoder.layer) == 2


def test_top_layers_keep_a_prompt_that_pooling_leaves_out(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    body = _tiny_bert(tmp_path / "bert")[0]
    st = SentenceTransformer(modules=[body, Pooling(16, "mean", include_prompt=False)],
                             device="cpu", prompts={"query": "good "},
                             default_prompt_name="query")
    enc = TextEncoder(st, device="cpu", show_progress=False)
    expected = enc.encode(TEXTS, show_progress=False)
    with torch.no_grad():
        got = enc.training_forward(enc.training_batch(
            enc.training_items(TEXTS, train_layers=1))).numpy()
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_train_layers_updates_only_the_top_layers(tmp_path: Path) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    before = state(enc)
    tuner = ContrastiveTuner(epochs=3, learning_rate=1e-2, train_layers=1)
    report = tuner.tune(enc, TEXTS, LABELS)
    trained = enc.tuned_["parameters"]
    assert trained and all(".encoder.layer.1." in n for n in trained)
    top = enc.training_module()[0].auto_model.encoder.layer[1]
    assert report.trainable_parameters == sum(p.numel() for p in top.parameters())
    after = state(enc)
    assert all(torch.equal(after[n], before[n]) for n in after if n not in trained)
    assert all(not torch.equal(after[n], before[n]) for n in trained if "weight" in n)
    again = TextEncoder(_tiny_bert(tmp_path / "bert2"), device="cpu", show_progress=False)
    ContrastiveTuner(epochs=3, learning_rate=1e-2, train_layers=1).tune(again, TEXTS, LABELS)
    assert all(torch.equal(v, state(again)[k]) for k, v in after.items())  # deterministic
    assert all(p.requires_grad for p in enc.training_module().parameters())


def test_train_layers_with_validation_and_refit(tmp_path: Path) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    tuner = ContrastiveTuner(epochs=3, learning_rate=1e-2, train_layers=1,
                             validation_fraction=0.3, patience=5, refit=True, seed=3)
    report = tuner.tune(enc, TEXTS, LABELS)
    assert report.validation_scores == [0.5, 0.25, 0.0]
    assert report.best_epoch == report.refit_epochs == 1
    # The refit is the run epochs=1 makes on every item.
    again = TextEncoder(_tiny_bert(tmp_path / "bert2"), device="cpu", show_progress=False)
    ContrastiveTuner(epochs=1, learning_rate=1e-2, train_layers=1, seed=3).tune(
        again, TEXTS, LABELS)
    assert all(torch.equal(v, state(again)[k]) for k, v in state(enc).items())


def test_replay_puts_the_body_back_when_a_layer_fails(tmp_path: Path, monkeypatch) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    cached = enc.training_items(TEXTS, train_layers=1)
    body = enc.training_module()[0].auto_model
    embeddings, layers = body.embeddings, body.encoder.layer

    def fail(*args, **kwargs):
        raise RuntimeError("layer failed")

    monkeypatch.setattr(layers[1], "forward", fail)
    with pytest.raises(RuntimeError, match="layer failed"):
        enc.training_forward(enc.training_batch(cached))
    assert body.embeddings is embeddings and body.encoder.layer is layers


def test_train_layers_refuses_a_body_it_cannot_split(tmp_path: Path, monkeypatch) -> None:
    enc = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    enc.fit()
    replaying = TextEncoder._replaying
    # A body whose top layers do not reproduce the whole: one layer too many is skipped.
    monkeypatch.setattr(TextEncoder, "_replaying", lambda self, cut: replaying(self, cut + 1))
    with pytest.raises(UsageError, match=r"train_layers cannot split .*BertModel.*differ from "
                                         r"the whole model by .*tune it with trainable_fraction"):
        ContrastiveTuner(train_layers=2).tune(enc, TEXTS, LABELS)
    assert not enc.is_tuned


def test_classifier_tuned_with_train_layers_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    _tiny_bert(tmp_path / "bert").save(str(folder))
    clf = FewShotClassifier(str(folder), tune={"epochs": 3, "learning_rate": 1e-2,
                                               "train_layers": 1},
                            cache=False, show_progress=False).fit(TEXTS, LABELS)
    assert all(".encoder.layer.1." in n for n in clf.encoder_.tuned_["parameters"])
    proba = clf.predict_proba(TEXTS)
    loaded = FewShotClassifier.load(clf.save(tmp_path / "model"), cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), proba)
    assert loaded.get_params()["tune"]["train_layers"] == 1


def test_train_layers_errors(tmp_path: Path, tiny_text_model_dir: Path,
                             image_folder: Path) -> None:
    bert = TextEncoder(_tiny_bert(tmp_path / "bert"), device="cpu", show_progress=False)
    with pytest.raises(UsageError, match=r"train_layers must be between 1 and 2 .*, got 3"):
        ContrastiveTuner(train_layers=3).tune(bert, TEXTS, LABELS)
    with pytest.raises(UsageError, match="tuning train_layers must be at least 1, got 0"):
        ContrastiveTuner(train_layers=0).tune(bert, TEXTS, LABELS)
    with pytest.raises(UsageError, match="train_layers needs a transformer body .* "
                                         "StaticEmbedding. Tune it with trainable_fraction"):
        ContrastiveTuner(train_layers=1).tune(fresh_text(tiny_text_model_dir), TEXTS, LABELS)
    image = ImageEncoder("test_vit", pretrained=False, device="cpu", show_progress=False)
    paths = sorted(image_folder.rglob("*.png"))
    with pytest.raises(UsageError, match="train_layers applies to text encoders .*ImageEncoder"):
        ContrastiveTuner(train_layers=1).tune(image, paths, [p.parent.name for p in paths])


def test_tuning_leaves_no_gradients_behind(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    ContrastiveTuner(epochs=2, freeze_embeddings=False).tune(enc, TEXTS, LABELS)
    params = list(enc.training_module().parameters())
    assert params and all(p.grad is None for p in params)


def test_float32_guard_never_calls_autocast_off_cuda(monkeypatch) -> None:
    from fewshot.tuning import tuner as tuner_module

    def refuse(device_type, *args, **kwargs):
        raise RuntimeError(f"unsupported autocast device_type '{device_type}'")

    monkeypatch.setattr(torch, "autocast", refuse)
    with tuner_module._no_autocast(torch.zeros(2)):
        pass


def test_empty_explicit_validation_is_an_error(tiny_text_model_dir: Path) -> None:
    enc = fresh_text(tiny_text_model_dir)
    with pytest.raises(DataError, match="same nonzero length, got 0 and 0; pass validation=None"):
        ContrastiveTuner().tune(enc, TEXTS, LABELS, validation=([], []))


def test_training_embeds_what_encode_embeds(tiny_text_model_dir: Path) -> None:
    """Default prompt and truncate_dim apply in training as in encode()."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_text_model_dir), device="cpu", truncate_dim=16,
                             prompts={"query": "good "}, default_prompt_name="query")
    enc = TextEncoder(st, device="cpu", show_progress=False)
    expected = enc.encode(TEXTS, show_progress=False)
    assert expected.shape == (len(TEXTS), 16)
    with torch.no_grad():
        got = enc.training_forward(enc.training_batch(enc.training_items(TEXTS))).numpy()
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tuning_never_changes_a_model_object_passed_in(tiny_text_model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_text_model_dir), device="cpu")
    before = {k: v.clone() for k, v in st.state_dict().items()}
    clf = FewShotClassifier(st, tune={"epochs": 2, "learning_rate": 1e-2,
                                      "freeze_embeddings": False}, cache=False)
    first = clf.fit(TEXTS, LABELS).predict_proba(TEXTS)
    second = clf.fit(TEXTS, LABELS).predict_proba(TEXTS)  # tunes the pretrained body again
    np.testing.assert_array_equal(first, second)
    teacher = FewShotClassifier(str(tiny_text_model_dir), cache=False).fit(TEXTS, LABELS)
    distill(teacher, TEXTS * 2, st, cache=False,
            tune={"learning_rate": 1e-2, "freeze_embeddings": False, "seed": 3})
    assert all(torch.equal(v, before[k]) for k, v in st.state_dict().items())

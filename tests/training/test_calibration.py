"""Calibration on real photos at the sizes users have: one person, a few people, unequal counts,
stray duplicates and a strangers collection (issue 20). Strangers are lfw_dev/unknown photos, none of
whom is in krasserm_lfw10."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from faceforge.building.head_fitting import MIN_THRESHOLD, fit_and_evaluate, fit_head
from faceforge.core.dataset import image_files
from faceforge.core.model.head import RecognitionHead
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from tests.conftest import FACES

STRANGERS = 150  # lfw_dev/unknown photos scored as strangers
TARGET = 0.97
# A share near 97 % measured on 150 strangers has a standard error of 1.4 points; the estimate is
# held to three of them.
STRANGER_TOLERANCE = 3 * (TARGET * (1 - TARGET) / STRANGERS) ** 0.5

Embeddings = tuple[np.ndarray, list[str], list[Path]]


@pytest.fixture(scope="session")
def strangers(pipeline: FacePipeline) -> tuple[np.ndarray, list[Path]]:
    """The embeddings of the first STRANGERS lfw_dev/unknown photos with a face, and their photos."""
    paths = image_files(FACES / "lfw_dev" / "unknown")[:STRANGERS]
    found = [
        (r.faces[0].embedding, path)
        for path, r in zip(paths, pipeline.analyze_many(paths, single_face=False), strict=True)
        if not isinstance(r, PhotoError) and r.faces and r.faces[0].embedding is not None
    ]
    return np.stack([vector for vector, _ in found]), [path for _, path in found]


@pytest.fixture(scope="session")
def stranger_embeddings(strangers: tuple[np.ndarray, list[Path]]) -> np.ndarray:
    return strangers[0]


def _rows(labels: list[str], person: str, start: int = 0, stop: int | None = None) -> list[int]:
    return [i for i, label in enumerate(labels) if label == person][start:stop]


def _rejected(head: RecognitionHead, strangers: np.ndarray) -> float:
    return float(np.mean([match.index is None for match in head.predict(strangers)]))


def _named(head: RecognitionHead, embeddings: np.ndarray, labels: list[str], rows: list[int]) -> int:
    """Probes named as their own person, by their own label: a duplicate "X (again)" naming X's
    probes is a change in naming, not X named."""
    matches = head.predict(embeddings[rows])
    return sum(
        m.index is not None and head.labels[m.index] == labels[i] for m, i in zip(matches, rows, strict=True)
    )


def _variants(path: Path, pipeline: FacePipeline) -> list[np.ndarray]:
    """Three more photos of the face in ``path``: mirrored, brighter, and cropped closer."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    edits = [
        ImageOps.mirror(image),
        ImageEnhance.Brightness(image).enhance(1.3),
        image.crop((width // 10, height // 10, width - width // 10, height - height // 10)),
    ]
    found = []
    for edited in edits:
        buffer = io.BytesIO()
        edited.save(buffer, "JPEG", quality=92)
        result = pipeline.analyze(buffer.getvalue(), single_face=True)
        assert not result.reasons and result.faces[0].embedding is not None
        found.append(result.faces[0].embedding)
    return found


@pytest.mark.parametrize("photos", [1, 5, 20])
def test_one_person_with_any_number_of_photos(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray, pipeline: FacePipeline, photos: int
) -> None:
    """One person enrolled from 1, 5 or 20 photos (20: the first five and three edits of each) is
    named on their other photos, and strangers are rejected as the version estimates."""
    embeddings, labels, paths = lfw10_embeddings
    own = _rows(labels, "Colin_Powell")
    enrolled = [embeddings[i] for i in own[: min(photos, 5)]]
    if photos == 20:
        enrolled += [v for i in own[:5] for v in _variants(paths[i], pipeline)]
    assert len(enrolled) == photos
    head = fit_head(np.stack(enrolled), ["Colin_Powell"] * photos)
    assert head.calibration.method == "population"  # one person: no gallery evidence to weigh
    assert MIN_THRESHOLD <= head.threshold < 0.95
    estimate = head.calibration.estimated_unknown_reject
    assert estimate is not None and abs(estimate - TARGET) < 0.005
    probes = own[5:]
    assert _named(head, embeddings, labels, probes) >= 0.8 * len(probes)
    assert abs(_rejected(head, stranger_embeddings) - estimate) <= STRANGER_TOLERANCE


def test_people_with_very_unequal_photo_counts(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    embeddings, labels, _ = lfw10_embeddings
    rows = _rows(labels, "Tony_Blair", 0, 1) + _rows(labels, "Vladimir_Putin", 0, 9)
    head = fit_head(embeddings[rows], [labels[i] for i in rows])
    assert head.counts == [1, 9]
    assert _named(head, embeddings, labels, _rows(labels, "Tony_Blair", 1)) >= 7
    assert _named(head, embeddings, labels, _rows(labels, "Vladimir_Putin", 9)) == 1
    estimate = head.calibration.estimated_unknown_reject
    assert estimate is not None and abs(_rejected(head, stranger_embeddings) - estimate) <= STRANGER_TOLERANCE


@pytest.mark.parametrize("people", [2, 5, 10])
def test_the_estimate_is_true_at_every_gallery_size(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray, people: int
) -> None:
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))[:people]
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    head = fit_head(embeddings[rows], [labels[i] for i in rows])
    estimate = head.calibration.estimated_unknown_reject
    assert estimate is not None and estimate >= TARGET - 0.005
    assert abs(_rejected(head, stranger_embeddings) - estimate) <= STRANGER_TOLERANCE
    probes = [i for name in names for i in _rows(labels, name, 5)]
    assert _named(head, embeddings, labels, probes) >= 0.9 * len(probes)


@pytest.mark.parametrize("strays", [1, 2])
def test_a_stray_photo_under_a_second_name_moves_nothing(lfw10_embeddings: Embeddings, strays: int) -> None:
    """Ten people; then one or two ordinary photos of Hugo Chavez registered as another person.

    Everyone else's probes are named as before (within one). Hugo's own are named as Hugo or as his
    second name, never unknown: which of his two prototypes is nearer a probe is a coin flip of the
    photos (two strays from the same event as his probes won two of three on an AMD host's int8
    embeddings, one of three on an Intel host's), and no threshold can change it; the pair is flagged
    and the merge offered."""
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    others = [i for name in names if name != "Hugo_Chavez" for i in _rows(labels, name, 7)]
    his = _rows(labels, "Hugo_Chavez", 7)
    before = fit_head(embeddings[rows], [labels[i] for i in rows])
    stray = _rows(labels, "Hugo_Chavez", 5, 5 + strays)
    after = fit_head(embeddings[rows + stray], [labels[i] for i in rows] + ["Hugo_Chavez (again)"] * strays)
    assert abs(after.threshold - before.threshold) <= 0.01
    assert abs(_named(after, embeddings, labels, others) - _named(before, embeddings, labels, others)) <= 1
    as_him = [None if m.index is None else before.labels[m.index] for m in before.predict(embeddings[his])]
    assert as_him.count("Hugo_Chavez") >= len(his) - 1  # the case: a duplicate must not cost him
    for match, named_before in zip(after.predict(embeddings[his]), as_him, strict=True):
        named = None if match.index is None else after.labels[match.index]
        assert named in ("Hugo_Chavez", "Hugo_Chavez (again)") or named == named_before
    suspects = after.calibration.suspected_duplicates
    assert [s["labels"] for s in suspects] == [["Hugo_Chavez", "Hugo_Chavez (again)"]]
    assert suspects[0]["kind"] == "person"


def test_the_same_photo_under_two_names_is_flagged(lfw10_embeddings: Embeddings) -> None:
    embeddings, labels, _ = lfw10_embeddings
    rows = [i for name in sorted(set(labels)) for i in _rows(labels, name, 0, 3)]
    copy = _rows(labels, "Jacques_Chirac", 0, 1)
    before = fit_head(embeddings[rows], [labels[i] for i in rows])
    after = fit_head(embeddings[rows + copy], [labels[i] for i in rows] + ["Copy"])
    assert abs(after.threshold - before.threshold) <= 0.01
    assert [s["labels"] for s in after.calibration.suspected_duplicates] == [["Copy", "Jacques_Chirac"]]


def test_a_collected_stranger_stays_a_stranger(
    lfw10_embeddings: Embeddings, strangers: tuple[np.ndarray, list[Path]], pipeline: FacePipeline
) -> None:
    """The stranger who scores best against the gallery is named as someone before, and, once in the
    strangers collection, is unknown when seen again (other shots of their face: mirrored, brighter,
    closer); the people themselves are still named."""
    embeddings, labels, _ = lfw10_embeddings
    stranger_embeddings, stranger_paths = strangers
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    probes = [i for name in names for i in _rows(labels, name, 5)]
    before = fit_head(embeddings[rows], [labels[i] for i in rows])
    closest = int(np.argmax(before.similarities(stranger_embeddings).max(axis=1)))
    stranger = stranger_embeddings[closest]
    seen_again = np.stack(_variants(stranger_paths[closest], pipeline))
    named_before = [m.index is not None for m in before.predict(np.vstack([stranger[None], seen_again]))]
    assert named_before[0] and sum(named_before[1:]) >= 2, named_before  # the case a collection is for
    after = fit_head(embeddings[rows], [labels[i] for i in rows], strangers=[stranger[None]])
    assert after.calibration.method == "population+gallery+strangers"
    assert [m.index for m in after.predict(np.vstack([stranger[None], seen_again]))] == [None] * 4
    assert (after.margins >= 0).all()
    assert _named(after, embeddings, labels, probes) >= _named(before, embeddings, labels, probes) - 1
    # The decision the exported models make (argmax of the probabilities) is the head's.
    for row, match in zip(
        after.probabilities(stranger_embeddings), after.predict(stranger_embeddings), strict=True
    ):
        assert int(np.argmax(row)) == (len(after.labels) if match.index is None else match.index)


def test_verification_does_not_depend_on_who_is_enrolled(lfw10_embeddings: Embeddings) -> None:
    """Face-to-face probability from the population model: most same-person pairs of photos above
    one half, nearly every different-person pair below."""
    from faceforge.core.model.population import shipped_model

    embeddings, labels, _ = lfw10_embeddings
    pair = shipped_model().pair
    same: list[bool] = []
    different: list[bool] = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            probability = pair.probability(float(embeddings[i] @ embeddings[j]))
            (same if labels[i] == labels[j] else different).append(probability >= 0.5)
    assert np.mean(same) >= 0.85 and np.mean(different) <= 0.01
    assert pair.probability(1e6) == 1.0 and pair.probability(-1e6) == 0.0  # no overflow at extremes


def test_a_strangers_collection_keeps_every_photo_as_gallery_evidence(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    """An enrolled photo that scores below every other person's raised level is rejected there, not
    missing: with 100 strangers collected, the gallery's evidence kept only its highest-scoring photos
    (none at all at 10 people, a reviewer measured) while the method still said "+gallery"."""
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    without = fit_head(embeddings[rows], [labels[i] for i in rows])
    collected = [stranger[None] for stranger in stranger_embeddings[:100]]
    head = fit_head(embeddings[rows], [labels[i] for i in rows], strangers=collected)
    evidence, alone = head.calibration.evidence, without.calibration.evidence
    from faceforge.building.head_fitting import _stranger_people
    from faceforge.core.model.population import shipped_model

    # 100 different people, counted as the people they look like (about one pair in 1,000 agrees).
    people = _stranger_people(stranger_embeddings[:100].astype(np.float32), np.arange(100), shipped_model())
    assert evidence is not None and alone is not None
    assert evidence["collected_strangers"] == len(set(people.tolist())) >= 95
    assert evidence["gallery_photos"] == alone["gallery_photos"] == len(rows)
    assert head.calibration.method == "population+gallery+strangers"
    # The version's own figures are of its decision scores: every photo, none of them -inf.
    assert head.calibration.impostor_count == len(rows)
    assert head.calibration.impostor_mean is not None and np.isfinite(head.calibration.impostor_mean)


def test_a_raised_margin_leaves_how_well_a_persons_photos_agree(lfw10_embeddings: Embeddings) -> None:
    """The quality view's people (whose photos agree least) are ranked by similarity: a stranger who
    looks like someone raised their margin, and the decision scores made that person, with the same
    photos, the first candidate for better photos (a tester's)."""
    embeddings, labels, _ = lfw10_embeddings
    rows = [i for name in sorted(set(labels)) for i in _rows(labels, name, 0, 5)]
    enrolled = [labels[i] for i in rows]
    _, _, plain = fit_and_evaluate(embeddings[rows], enrolled)
    colin = _rows(labels, "Colin_Powell", 5, 8)  # Colin Powell's other photos, as a stranger
    head, _, raised = fit_and_evaluate(embeddings[rows], enrolled, strangers=[embeddings[colin]])
    assert head.margins[head.labels.index("Colin_Powell")] > 0.05
    before = {p["label"]: p["genuine_mean"] for p in plain["people"]}
    after = {p["label"]: p["genuine_mean"] for p in raised["people"]}
    assert after.keys() == before.keys()
    # The same similarities, rounded to 4 digits: the margin added back may move the last one.
    assert all(abs(after[label] - before[label]) <= 1e-4 for label in before), (before, after)


def test_the_floor_figure_sets_the_strangers_margins_aside(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    """What the known-accept floor judges once strangers are collected: every person's photos as if no
    margin were raised. Judged on the people without a margin, a large collection (which gives many
    people one) left few or none, and a broken version could go live."""
    embeddings, labels, _ = lfw10_embeddings
    rows = [i for name in sorted(set(labels)) for i in _rows(labels, name, 0, 5)]
    collected = [stranger[None] for stranger in stranger_embeddings[:100]]
    head, metrics, _ = fit_and_evaluate(embeddings[rows], [labels[i] for i in rows], strangers=collected)
    assert metrics["raised_people"] == int((head.margins > 0).sum()) >= 1
    assert metrics["accept_rate_without_margins"] is not None
    # Here every margin only costs photos (a neighbour's margin may also keep one, elsewhere).
    assert metrics["accept_rate_without_margins"] >= metrics["accept_rate"]
    _, plain, _ = fit_and_evaluate(embeddings[rows], [labels[i] for i in rows])
    assert plain["raised_people"] == 0 and plain["accept_rate_without_margins"] == plain["accept_rate"]


@pytest.mark.parametrize("person", ["Jacques_Chirac", "Vladimir_Putin"])
def test_a_collection_vouches_for_what_unseen_strangers_bear_out(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray, person: str
) -> None:
    """One person and 100 collected strangers: every person's threshold is raised and the bare one
    sits at the floor. A consistency check of the strangers' evidence with versions actually built:
    with one person there is no gallery evidence, so the estimate is the population model's figure
    and the share of collected strangers that a version built without each of them rejects (a
    stranger the collection has not seen), weighed together; it lies between the two. Judged at the
    bare threshold instead, the collection said how the model fits at the floor, far below where the
    raised thresholds decide: estimates of 0.975 where the model said 0.999 and every held-out
    stranger was rejected, or 1.000 where the model said 0.996."""
    embeddings, labels, _ = lfw10_embeddings
    rows = _rows(labels, person, 0, 5)
    collected = stranger_embeddings[:100]
    head = fit_head(embeddings[rows], [person] * len(rows), strangers=[s[None] for s in collected])
    assert head.threshold == MIN_THRESHOLD
    # Strangers who look like one person are held out together, here as in calibration.
    from faceforge.building.head_fitting import _stranger_people
    from faceforge.core.model.population import shipped_model

    together = _stranger_people(collected.astype(np.float32), np.arange(len(collected)), shipped_model())
    rejected_unseen = []
    for i in range(len(collected)):
        without = fit_head(
            embeddings[rows],
            [person] * len(rows),
            strangers=[s[None] for j, s in enumerate(collected) if together[j] != together[i]],
        )
        # The same bare threshold in every version built, or they would not measure one thing.
        assert without.threshold == MIN_THRESHOLD
        rejected_unseen.append(without.predict(collected[i][None])[0].index is None)
    calibration = head.calibration
    assert calibration.estimated_unknown_reject is not None and calibration.model_unknown_reject is not None
    # Weighed as the estimate weighs them: strangers who look like one person count once together.
    per_person = 1.0 / np.bincount(together)[together]
    unseen = float(np.average(rejected_unseen, weights=per_person))
    low, high = sorted([calibration.model_unknown_reject, unseen])
    # 0.001: the model's figure is stored rounded to four places; nothing statistical.
    assert low - 0.001 <= calibration.estimated_unknown_reject <= high + 0.001, (
        calibration.estimated_unknown_reject,
        calibration.model_unknown_reject,
        rejected_unseen,
    )


def test_one_person_collected_as_several_strangers_is_held_out_as_one(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    """Loose photos imported as strangers, or the mailman added again from Try it, make one person
    several strangers; held out one entry at a time, each met the level their own other photos set
    and was rejected by construction. Five photos of Tony Blair as five strangers are one person;
    100 lfw_dev strangers, each a different person, are very nearly 100."""
    from faceforge.building.head_fitting import _stranger_people
    from faceforge.core.model.population import shipped_model

    embeddings, labels, _ = lfw10_embeddings
    blair = embeddings[_rows(labels, "Tony_Blair", 0, 5)]
    units = np.concatenate([blair, stranger_embeddings[:100]]).astype(np.float32)
    people = _stranger_people(units, np.arange(len(units)), shipped_model())
    assert len(set(people[:5].tolist())) == 1
    assert people[0] not in people[5:]
    # One pair of different people in 1,000 agrees at the pair midpoint: 4,950 pairs here.
    assert len(set(people[5:].tolist())) >= 100 - 10


def test_one_person_collected_as_several_strangers_weighs_as_one(lfw10_embeddings: Embeddings) -> None:
    """The mailman added five times (one photo each time) weighs in the estimate as the mailman added
    once with five photos: one collected stranger. Counted per entry, he weighed five strangers
    against the gallery's photos and the population model. (His level still comes from each entry's
    photos: five single photos raise it more than five photos taken together.)"""
    embeddings, labels, _ = lfw10_embeddings
    names = ["Colin_Powell", "Hugo_Chavez"]
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    mailman = embeddings[_rows(labels, "Tony_Blair", 0, 5)]
    once = fit_head(embeddings[rows], [labels[i] for i in rows], strangers=[mailman])
    five_times = fit_head(embeddings[rows], [labels[i] for i in rows], strangers=[m[None] for m in mailman])
    assert once.calibration.evidence is not None and five_times.calibration.evidence is not None
    assert once.calibration.evidence["collected_strangers"] == 1
    # The weights (what each source says at the threshold differs: his levels do, see above).
    weighed = ["model_strangers", "gallery_photos", "gallery_weight"]
    weighed += ["collected_strangers", "strangers_weight"]
    assert {key: five_times.calibration.evidence[key] for key in weighed} == {
        key: once.calibration.evidence[key] for key in weighed
    }
    assert once.calibration.evidence["strangers_weight"] > 0


def test_strangers_are_not_chained_into_one_person(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    """Every photo of ten people and 150 other strangers, each photo collected as a stranger of its
    own: the ten people come out as ten groups that never mix. Linked pair by pair, the one-in-1,000
    chance pairs chained different people together (758 lfw_dev faces: one group of 34)."""
    from faceforge.building.head_fitting import _stranger_people
    from faceforge.core.model.population import shipped_model

    embeddings, labels, _ = lfw10_embeddings
    units = np.concatenate([embeddings, stranger_embeddings]).astype(np.float32)
    people = _stranger_people(units, np.arange(len(units)), shipped_model())
    for group in np.unique(people):
        members = np.flatnonzero(people == group)
        assert len({labels[i] for i in members if i < len(labels)}) <= 1, [
            labels[i] if i < len(labels) else "stranger" for i in members
        ]
    for name in sorted(set(labels)):
        theirs = people[_rows(labels, name)]
        assert np.bincount(theirs).max() >= 0.7 * len(theirs), name  # mostly one group each


def test_the_manifest_says_what_each_source_said_at_the_threshold(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray
) -> None:
    """A version's estimate is the model moved by the gallery's and the collection's evidence; the
    manifest records each source's own share at the threshold, so a user whose strangers disagree
    with the estimate can see which evidence it followed. The gallery's share is recomputed here from
    the photos themselves: each photo scored against every other person's prototype."""
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    chosen, chosen_labels = embeddings[rows], [labels[i] for i in rows]
    head = fit_head(chosen, chosen_labels)
    calibration = head.calibration
    evidence = calibration.evidence
    assert evidence is not None and calibration.model_unknown_reject is not None
    codes = np.array([head.labels.index(label) for label in chosen_labels])
    similarities = (chosen / np.linalg.norm(chosen, axis=1, keepdims=True)) @ head.prototypes.T
    similarities[np.arange(len(codes)), codes] = -np.inf
    assert not calibration.suspected_duplicates  # every photo is the gallery's evidence
    # The threshold may sit on a photo's own score (the estimate steps there), and another matrix
    # product rounds float32 cosines differently in the last bits: a photo within 1e-5 of the
    # threshold may fall either side. 1e-4: the figures are stored rounded to four places.
    best_other = similarities.max(axis=1)
    below_surely = float((best_other < head.threshold - 1e-5).mean())
    below_perhaps = float((best_other < head.threshold + 1e-5).mean())
    assert below_surely - 1e-4 <= evidence["gallery_reject"] <= below_perhaps + 1e-4
    assert evidence["strangers_reject"] is None
    recomposed = calibration.model_unknown_reject + evidence["gallery_weight"] * (
        evidence["gallery_reject"] - evidence["gallery_model_reject"]
    )
    # Four terms each rounded to four places (weights too): at most 3e-4 of rounding between them.
    assert calibration.estimated_unknown_reject == pytest.approx(recomposed, abs=3e-4)

    collected = fit_head(chosen, chosen_labels, strangers=[s[None] for s in stranger_embeddings[:60]])
    evidence = collected.calibration.evidence
    assert evidence is not None and collected.calibration.model_unknown_reject is not None
    assert evidence["strangers_reject"] is not None and evidence["strangers_weight"] > 0
    model = collected.calibration.model_unknown_reject
    recomposed = (
        model
        + evidence["gallery_weight"] * (evidence["gallery_reject"] - evidence["gallery_model_reject"])
        + evidence["strangers_weight"] * (evidence["strangers_reject"] - model)
    )
    assert collected.calibration.estimated_unknown_reject == pytest.approx(recomposed, abs=5e-4)


@pytest.mark.parametrize(
    "damage",
    ["nan in a photo", "inf in a photo", "zero photo", "nan in a stranger", "stranger of half width"],
)
def test_damaged_embeddings_are_refused_not_fitted(lfw10_embeddings: Embeddings, damage: str) -> None:
    """A damaged stored embedding is a training error, not a version: one NaN made every drawn
    stranger's best score NaN, the threshold 1.0 and a version that named nobody; a stranger's NaN
    made every person's margin NaN while the version's figures said all was well; a stranger of
    the wrong width was silently folded into rows of the right one."""
    from faceforge.core.errors import TrainingError

    embeddings, labels, _ = lfw10_embeddings
    rows = [i for name in ("Colin_Powell", "Hugo_Chavez") for i in _rows(labels, name, 0, 5)]
    chosen, chosen_labels = embeddings[rows].copy(), [labels[i] for i in rows]
    stranger = embeddings[_rows(labels, "Tony_Blair", 0, 2)].copy()
    # The message says which row, and whose: a worker's every later training failed with it.
    said = r"an embedding \(row 3, of 'Colin_Powell'\) is damaged"
    if damage == "nan in a photo":
        chosen[3, 17] = np.nan
    elif damage == "inf in a photo":
        chosen[3, 17] = np.inf
    elif damage == "zero photo":
        chosen[3] = 0.0
    elif damage == "nan in a stranger":
        stranger[1, 5] = np.nan
        said = r"an embedding of collected stranger 1 \(row 1\) is damaged"
    else:
        stranger = stranger[:, : stranger.shape[1] // 2]
        said = r"an embedding of collected stranger 1 must be \(n, \d+\)"
    fit_head(
        embeddings[rows], chosen_labels, strangers=[embeddings[_rows(labels, "Tony_Blair", 0, 2)]]
    )  # sound
    with pytest.raises(TrainingError, match=said):
        fit_head(chosen, chosen_labels, strangers=[stranger])


@pytest.mark.parametrize(
    ("owner", "filed_under"),
    [("Colin_Powell", "Tony_Blair"), ("Donald_Rumsfeld", "George_W_Bush"), ("Ariel_Sharon", "Hugo_Chavez")],
)
def test_photos_filed_under_another_person_move_nothing(
    lfw10_embeddings: Embeddings, owner: str, filed_under: str
) -> None:
    """Two ordinary photos of one person filed under another who is enrolled: flagged, and the
    threshold moves by no more than 0.01 (issue 20). Leaving out the photos alone was not enough:
    they are in the other person's prototype, so their owner's own photos scored high against it
    as "strangers", and these three pairs (the worst of lfw10's 90) moved it by 0.018 to 0.023."""
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    before = fit_head(embeddings[rows], [labels[i] for i in rows])
    stray = _rows(labels, owner, 5, 7)
    after = fit_head(embeddings[rows + stray], [labels[i] for i in rows] + [filed_under] * 2)
    suspects = after.calibration.suspected_duplicates
    assert [(s["kind"], sorted(s["labels"])) for s in suspects] == [
        ("photo", sorted([owner, filed_under]))
    ] * 2
    assert abs(after.threshold - before.threshold) <= 0.01, (before.threshold, after.threshold)
    others = [i for name in names if name not in (owner, filed_under) for i in _rows(labels, name, 7)]
    assert abs(_named(after, embeddings, labels, others) - _named(before, embeddings, labels, others)) <= 1


def test_a_second_name_enrolled_from_near_copies_is_still_flagged(
    lfw10_embeddings: Embeddings, pipeline: FacePipeline
) -> None:
    """Hugo Chavez registered again from three near-copies of one photo (mirrored, brighter, closer:
    as a door tablet enrols from a burst of frames). Near-copies agree with each other at 0.98 and
    more, where different photos of one person almost never do (1 pair in 5,000 on lfw_dev), so the
    bar "agrees as well as one person's photos agree" was set by the copies and the pair was not
    flagged; it is, and the threshold stays where it was."""
    embeddings, labels, paths = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    copies = _variants(paths[_rows(labels, "Hugo_Chavez", 5, 6)[0]], pipeline)
    agreement = [float(a @ b) for i, a in enumerate(copies) for b in copies[i + 1 :]]
    assert min(agreement) >= 0.98  # what the case is: copies, not photos
    before = fit_head(embeddings[rows], [labels[i] for i in rows])
    after = fit_head(
        np.concatenate([embeddings[rows], np.stack(copies)]),
        [labels[i] for i in rows] + ["Hugo (again)"] * len(copies),
    )
    suspects = after.calibration.suspected_duplicates
    assert [(s["kind"], s["labels"]) for s in suspects] == [("person", ["Hugo (again)", "Hugo_Chavez"])]
    assert abs(after.threshold - before.threshold) <= 0.01


def test_known_accepted_without_margins_compares_similarities(lfw10_embeddings: Embeddings) -> None:
    """The figure the worker's floor reads, "as if no collected stranger had raised anyone's
    threshold", is recomputed here from the photos: a held-out photo counts when its similarity to
    its own person (rebuilt without it) beats every other person's and reaches the threshold. It
    compared decision scores for "nearest": six people collected as strangers (their other photos,
    as a user who adds the wrong face would) lost 6 of their photos to neighbours without margins."""
    embeddings, labels, _ = lfw10_embeddings
    names = sorted(set(labels))
    rows = [i for name in names for i in _rows(labels, name, 0, 5)]
    chosen, chosen_labels = embeddings[rows], [labels[i] for i in rows]
    strangers = [embeddings[_rows(labels, name, 5, 7)] for name in names[:6]]
    head, metrics, _ = fit_and_evaluate(chosen, chosen_labels, strangers=strangers)
    assert metrics["raised_people"] >= 3  # the case: margins that move who is nearest
    units = chosen / np.linalg.norm(chosen, axis=1, keepdims=True)
    codes = np.array([head.labels.index(label) for label in chosen_labels])
    sums = np.zeros_like(head.prototypes)
    np.add.at(sums, codes, units)
    own = np.einsum(
        "nd,nd->n", units, (sums[codes] - units) / np.linalg.norm(sums[codes] - units, axis=1)[:, None]
    )
    others = units @ head.prototypes.T
    others[np.arange(len(codes)), codes] = -np.inf
    best_other = others.max(axis=1)
    # Another matrix product rounds float32 cosines differently in the last bits: a photo within
    # 1e-5 of a comparison may fall either side.
    surely = ((own > best_other + 1e-5) & (own >= head.threshold + 1e-5)).mean()
    perhaps = ((own > best_other - 1e-5) & (own >= head.threshold - 1e-5)).mean()
    assert surely <= metrics["accept_rate_without_margins"] <= perhaps


def test_one_photo_people_are_not_flagged_as_each_others_duplicates(
    lfw10_embeddings: Embeddings, stranger_embeddings: np.ndarray, pipeline: FacePipeline
) -> None:
    """150 people of one photo each (lfw_dev/unknown: all different people). One photo against
    another is one cosine, as noisy as a stranger's score, and with 11,175 pairs some reached the
    fixed bar: flagged as duplicates on both people, and left out of the gallery's evidence, whose
    highest impostor scores they were (471 such people: 26 pairs, strangers rejected 0.917 where
    0.970 was estimated). Two single photos of one person among a few others are still flagged."""
    gallery = stranger_embeddings
    head = fit_head(gallery, [f"person {i}" for i in range(len(gallery))])
    assert head.calibration.suspected_duplicates == []
    embeddings, labels, _ = lfw10_embeddings
    # Beside a person of two photos, a one-photo person's photo against theirs is one such score
    # too: unchecked, it came back as a "misfiled photo" (Costas Simitis's, beside these 150).
    ones = image_files(FACES / "lfw_dev" / "unknown")[:200]
    enrolled = [
        r.faces[0].embedding
        for r in pipeline.analyze_many(ones, single_face=True)
        if not isinstance(r, PhotoError) and not r.reasons and r.faces[0].embedding is not None
    ][:150]  # as they would be enrolled: one clear face each
    his = image_files(FACES / "lfw_dev" / "known" / "Costas_Simitis")[:5]
    two = [
        r.faces[0].embedding
        for r in pipeline.analyze_many(his, single_face=True)
        if not isinstance(r, PhotoError) and not r.reasons and r.faces[0].embedding is not None
    ][:2]
    mixed = np.concatenate([np.stack(two), np.stack(enrolled)])
    head = fit_head(mixed, ["Costas Simitis"] * 2 + [f"person {i}" for i in range(len(enrolled))])
    assert head.calibration.suspected_duplicates == []
    colin = _rows(labels, "Colin_Powell", 0, 2)
    few = np.concatenate([gallery[:10], embeddings[colin]])
    head = fit_head(few, [f"person {i}" for i in range(10)] + ["Colin Powell", "C. Powell"])
    assert [s["labels"] for s in head.calibration.suspected_duplicates] == [["C. Powell", "Colin Powell"]]

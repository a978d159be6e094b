"""Why a version is held back, in words a user acts on."""

from __future__ import annotations

from faceforge.building.worker.trainer import TrainingWorker


def test_a_pair_suspected_several_ways_is_named_once() -> None:
    """A pair is suspected as two people alike and as a photo of one filed under the other, either
    way round: the reason read "Gerhard and Rumsfeld; Rumsfeld and Gerhard" (a new user's trial)."""
    suspects = [
        {"people": [11, 13], "names": ["Gerhard", "Rumsfeld"], "kind": "person", "similarity": 0.8},
        {"people": [13, 11], "names": ["Rumsfeld", "Gerhard"], "kind": "photo", "similarity": 0.9},
        {"people": [20, 21], "names": ["Dash Person", "Dash Person2"], "kind": "person", "similarity": 0.8},
        {"people": [20, 21], "names": ["Dash Person", "Dash Person2"], "kind": "photo", "similarity": 0.9},
        {"people": [21, 20], "names": ["Dash Person2", "Dash Person"], "kind": "photo", "similarity": 0.9},
    ]
    reason = TrainingWorker._new_duplicates(
        {"accept_rate": 0.9, "suspected_duplicates": suspects},
        {"accept_rate": 0.95, "suspected_duplicates": []},
    )
    assert reason is not None
    assert reason.startswith(
        "held back: Gerhard and Rumsfeld; Dash Person and Dash Person2 look like one person"
    )
    # A pair the current version already suspected is not the new version's doing.
    known = {"accept_rate": 0.95, "suspected_duplicates": suspects[:2]}
    again = TrainingWorker._new_duplicates({"accept_rate": 0.9, "suspected_duplicates": suspects}, known)
    assert again is not None and "held back: Dash Person and Dash Person2 look" in again

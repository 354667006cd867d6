"""The main job end to end, shrunk: minima, the four paths per pair, the table, the files."""

from __future__ import annotations

import json

from paths.demo import PATH_KINDS, run


def test_the_demo_measures_every_pair_and_writes_its_results(tmp_path):
    demo = run(
        tmp_path / "out",
        n_samples=400,
        optimizers=("sgd", "adv"),
        per_optimizer=1,
        hidden=(16,),
        epochs=3,
        progress=False,
    )
    assert [m.name for m in demo.minima] == ["sgd0", "adv0"]
    (pair,) = demo.pairs
    assert pair.category == "SGD-ADV" and set(pair.barriers) == set(PATH_KINDS)
    for kind in PATH_KINDS:
        found = pair.barriers[kind]
        assert found.height >= 0 and found.evaluations >= 3
    table = demo.table()
    assert "sgd0-adv0" in table and "mean per pair type" in table
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["pairs"][0]["category"] == "SGD-ADV"
    assert set(saved["categories"]["SGD-ADV"]) == set(PATH_KINDS)
    for name in ("profiles.png", "barriers.png", "plane.png", "results.json"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name

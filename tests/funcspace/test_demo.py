"""The quick-start demonstration runs and its numbers are consistent."""

from funcspace.demo import run


def test_demo_runs_and_keeps_predictions():
    result = run(width=24, epochs=4)
    assert result.predictions_unchanged
    assert result.distance_weights <= result.distance_normalized + 1e-6
    # the geodesic (arc) distance of the classes is never shorter than the chord
    assert result.geodesic_distance >= result.distance_cosine - 1e-4
    assert 0 <= result.barrier_aligned <= 1 and 0 <= result.barrier_raw <= 1
    assert "geodesic distance" in result.table()


def test_demo_help_says_what_it_does_and_runs_nothing(capsys):
    from funcspace.demo import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m funcspace.demo") and "digits" in out
    assert main(["--epochs", "3"]) == 2
    assert "unexpected arguments ['--epochs', '3']" in capsys.readouterr().err

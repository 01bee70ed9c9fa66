"""benchmarks.sample: how a notebook's seconds split around its featurize cell."""

import pytest

from benchmarks.sample import featurize_ratio


def test_featurize_ratio_splits_start_and_stop_from_the_stages():
    cells = [
        {"cell": "output_path = '/tmp/x'", "seconds": 0.5},
        {"cell": "config", "seconds": 2.0},
        {"cell": "run.list_images().limit(5).toPandas()", "seconds": 1.5},
        {"cell": "run.featurize()", "seconds": 4.0},
        {"cell": "run.reduce()", "seconds": 2.5},
        {"cell": "run.close()", "seconds": 0.5},
    ]
    split = featurize_ratio(cells, total=12.0)  # 1 s outside the cells
    assert split["notebook_over_featurize"] == 3.0
    assert split["start_stop_seconds"] == pytest.approx(3.5)  # 1 + config + close
    assert split["stages_seconds"] == pytest.approx(4.5)  # parameters, list, reduce
    assert split["floor_over_featurize"] == pytest.approx(7.5 / 4.0)
    assert split["stages_budget_for_2x"] == pytest.approx(0.5)


def test_featurize_ratio_without_session_or_close_cells_counts_only_the_gap():
    cells = [{"cell": "run.featurize()", "seconds": 3.0}, {"cell": "run.reduce()", "seconds": 1.0}]
    split = featurize_ratio(cells, total=4.0)
    assert split["start_stop_seconds"] == 0.0
    assert split["stages_seconds"] == 1.0
    assert split["floor_over_featurize"] == 1.0

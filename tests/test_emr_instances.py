"""The EMR instance choice (scripts/emr/instances.py): the documented tables are its output, the
cluster's default is its choice, its prices and projections follow the rules it states, and the
types it refuses are the ones the bootstrap and the executor settings cannot run. Stdlib only:
no Spark, no TensorFlow, nothing leaves the machine (that EMR 7.5 offers every type is checked
with the real AWS CLI against moto in tests/test_emr_nightly.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMR = ROOT / "scripts" / "emr"
sys.path.insert(0, str(EMR))
import cluster  # noqa: E402
import instances  # noqa: E402
import nightly  # noqa: E402

BENCHMARKS = ROOT / "docs" / "benchmarks.md"


def _section() -> str:
    text = BENCHMARKS.read_text()
    start = text.index("## Instance choice")
    return text[start : text.index("\n## ", start + 1)]


def _prose() -> str:
    """The section with its line breaks as spaces, for sentences wrapped anywhere."""
    return " ".join(_section().split())


def test_benchmarks_page_holds_the_scripts_tables() -> None:
    """docs/benchmarks.md shows exactly what `python scripts/emr/instances.py` prints."""
    printed = subprocess.run(
        [sys.executable, str(EMR / "instances.py")], capture_output=True, text=True, check=True
    )
    types, runs = instances.markdown_table(), instances.runs_table()
    assert printed.stdout == f"{types}\n{runs}\n"
    assert f"default: {instances.best_default().name}" in printed.stderr
    section = _section()
    assert types in section and runs in section
    for name in ("m5", "m6i", "m7i", "m6a", "m7a", "m7g", "c6i", "c7i", "c6a", "c7a", "c7g"):
        assert f"| {name}.xlarge |" in types, name
    assert "PROJECTED" in section and "derived" in section and "assumed" in section


def test_cluster_default_is_the_best_supported_type() -> None:
    best = instances.best_default()
    assert cluster.DEFAULTS["INSTANCE_TYPE"] == best.name
    shell = (EMR / "create_cluster.sh").read_text()
    assert (
        re.search(r"^INSTANCE_TYPE=\$\{INSTANCE_TYPE:-([a-z0-9.]+)\}", shell, re.M).group(1)
        == best.name
    )
    assert best.fits_executors() is None and best.arch in instances.BOOTSTRAP_ARCHES
    assert (best.vcpus, best.memory_gib) == (instances.EXECUTOR_CORES, instances.NEEDED_MEMORY_GIB)
    others = [
        t
        for t in instances.TYPES
        if t.fits_executors() is None and t.vcpus == best.vcpus and t is not best
    ]
    assert others and all(
        instances.images_per_dollar(t) < instances.images_per_dollar(best) for t in others
    )
    assert f"**The default: {best.name}**" in _prose()


def test_default_type_replaces_m5_xlarge_at_the_same_price() -> None:
    """The change of default rests on this, not on the projection's precision."""
    new, old = instances.BY_NAME[cluster.DEFAULTS["INSTANCE_TYPE"]], instances.BY_NAME["m5.xlarge"]
    assert new.node_per_hour == old.node_per_hour == 0.28
    assert (new.vcpus, new.cores, new.memory_gib, new.width) == (
        old.vcpus,
        old.cores,
        old.memory_gib,
        old.width,
    )
    assert new.ghz > old.ghz


def test_prices_follow_the_stated_derivation() -> None:
    for t in instances.TYPES:
        assert t.ec2_paris == pytest.approx(t.us_east_1 * 7 / 6, abs=1e-4), t.name
        assert t.emr_paris == pytest.approx(t.ec2_paris * 0.25, abs=1e-4), t.name
        assert instances.node_price_per_hour(t.name) == pytest.approx(
            t.ec2_paris + t.emr_paris, abs=1e-4
        )
    # the derivation reproduces the project's earlier m5.xlarge assumption ($0.224 + $0.056)
    m5 = instances.BY_NAME["m5.xlarge"]
    assert (m5.ec2_paris, m5.emr_paris) == (0.224, 0.056)
    assert instances.node_price_per_hour("m5.2xlarge") is None


def test_nightly_cost_estimate_prices_every_tabled_type() -> None:
    env = {"BUCKET": "fruits-test-bucket"}
    assert nightly.settings(env)["COST_PER_HOUR"] == "0.84"
    for t in instances.TYPES:
        cost = nightly.settings({**env, "INSTANCE_TYPE": t.name, "CORE_COUNT": "4"})[
            "COST_PER_HOUR"
        ]
        assert cost == f"{5 * t.node_per_hour:.2f}", t.name
    with pytest.raises(cluster.SettingError, match="COST_PER_HOUR"):
        nightly.settings({**env, "INSTANCE_TYPE": "m5.2xlarge"})


def test_projection_rule() -> None:
    zen3, xeon = instances.ZEN3.per_core_ghz, instances.XEON.per_core_ghz
    assert zen3 == pytest.approx(instances.ZEN3.images_per_s / 2 / instances.ZEN3.ghz)
    assert xeon == pytest.approx(instances.XEON.images_per_s / 2 / instances.XEON.ghz)
    m6i, m6a, m7a = (instances.BY_NAME[n] for n in ("m6i.xlarge", "m6a.xlarge", "m7a.xlarge"))
    # Intel types scale the measured Xeon; the others the measured Zen 3
    assert {t.reference for t in instances.TYPES if t.cpu.startswith("Intel")} == {instances.XEON}
    assert {t.reference for t in instances.TYPES if not t.cpu.startswith("Intel")} == {
        instances.ZEN3
    }
    # a hyperthread counts for nothing: 4 vCPUs on 2 cores are 2 cores
    assert instances.projected_images_per_s(m6a) == pytest.approx(zen3 * 2 * 3.6)
    # the Xeon reference has the same two 512-bit FMA units as Ice Lake: cores x clock only
    assert instances.projected_images_per_s(m6i) == pytest.approx(xeon * 2 * 3.5)
    # no SMT on m7a: 4 vCPUs are 4 cores, all busy with the executor's 4 tasks; 256-bit units
    assert instances.projected_images_per_s(m7a) == pytest.approx(zen3 * 4 * 3.7)
    c6i2 = instances.BY_NAME["c6i.2xlarge"]
    assert instances.projected_images_per_s(c6i2) == pytest.approx(
        2 * instances.projected_images_per_s(m6i)
    )
    # what the page says about the rule and the measured kinds
    prose = _prose()
    assert f"{instances.XEON.images_per_s} images/s on 2 cores at {instances.XEON.ghz} GHz" in prose
    assert f"= {xeon:.1f} images/s per core and GHz" in prose
    assert f"= {zen3:.1f} images/s per core and GHz" in prose
    needed_ghz = instances.ZEN5.per_core / xeon
    assert f"{needed_ghz:.1f} GHz to give Zen 5's measured {instances.ZEN5.per_core:.0f}" in prose


def test_refused_types_are_the_ones_the_cluster_cannot_run() -> None:
    requirements = (ROOT / "requirements-emr.txt").read_text()
    # both architectures: requirements-emr.txt has their wheels (test_emr_cluster checks them)
    assert set(instances.BOOTSTRAP_ARCHES) == {"x86_64", "arm64"}
    assert re.search(r'^tensorflow-cpu==\S+ ; platform_machine == "x86_64"', requirements, re.M)
    assert re.search(r'^tensorflow==\S+ ; platform_machine == "aarch64"', requirements, re.M)
    assert {t.arch for t in instances.TYPES} <= set(instances.BOOTSTRAP_ARCHES)
    for t in instances.TYPES:
        why = t.fits_executors()
        if t.memory_gib < 16:
            assert why and "16 GiB" in why, t.name
        else:
            assert why is None, t.name
    # the memory bar is configurations.json's: executor heap + overhead + a Livy driver > 8 GiB
    defaults = next(
        c
        for c in json.loads((EMR / "configurations.json").read_text())
        if c["Classification"] == "spark-defaults"
    )["Properties"]
    executor_gb = int(defaults["spark.executor.memory"].rstrip("g")) + int(
        defaults["spark.executor.memoryOverhead"].rstrip("g")
    )
    assert executor_gb > 8 and int(defaults["spark.executor.cores"]) == instances.EXECUTOR_CORES


def test_c6i_2xlarge_break_even_is_as_documented() -> None:
    m6i, c6i2 = instances.BY_NAME["m6i.xlarge"], instances.BY_NAME["c6i.2xlarge"]
    assert instances.images_per_dollar(c6i2) > instances.images_per_dollar(m6i)
    assert instances.run_cost(m6i, 90_000) < instances.run_cost(c6i2, 90_000)
    assert instances.run_cost(m6i, 2_700_000) < instances.run_cost(c6i2, 2_700_000)
    assert instances.run_cost(m6i, 2_750_000) > instances.run_cost(c6i2, 2_750_000)
    assert "2.7 million images per run" in _prose()

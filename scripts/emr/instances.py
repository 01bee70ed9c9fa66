#!/usr/bin/env python3
"""The EMR instance choice: per type, the ISA TensorFlow gets, price in eu-west-3, projected images/s.

One table (:data:`TYPES`) of the instance types a user would consider for the cluster, at the
sizes the project's executor settings (scripts/emr/configurations.json) can use, and one rule
(:func:`projected_images_per_s`) turning the per-core rates measured on this project's machines
into a projected featurization rate per node. ``python scripts/emr/instances.py [types|runs]``
prints the tables of docs/benchmarks.md ("Instance choice"); :func:`best_default` is the type that
scripts/emr/cluster.py uses by default; :func:`node_price_per_hour` is what nightly.py charges per
node for the run's cost estimate.

Prices: EC2 on-demand Linux prices of us-east-1 as generated from AWS's price list API into
aws/karpenter-provider-aws (pkg/providers/pricing/zz_generated.pricing_aws.go, 2026-01-19);
eu-west-3 (Paris) prices are DERIVED from them with the ratio the project's m5.xlarge assumption
has always used ($0.224 in Paris against $0.192 in us-east-1, 7/6); the EMR surcharge is ASSUMED
to be 25 % of the EC2 price (the same assumption's $0.056 / $0.224). None was read from the AWS
pricing pages for Paris: check them there before relying on a cent. Stdlib only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

#: eu-west-3 price = us-east-1 price x this (the m5.xlarge ratio, 0.224 / 0.192).
PARIS_UPLIFT = 7 / 6
#: EMR's surcharge as a share of the EC2 on-demand price (assumed; m5.xlarge: 0.056 / 0.224).
EMR_SHARE = 0.25
#: YARN memory the executor settings need on a node (executor + a Livy driver; README section 6).
NEEDED_MEMORY_GIB = 16
#: Architectures requirements-emr.txt has a wheel of every package for (bootstrap-emr.sh installs it).
BOOTSTRAP_ARCHES = ("x86_64", "arm64")
#: Tasks (TensorFlow workers, one thread each) per executor in configurations.json.
EXECUTOR_CORES = 4


#: fp32 FMA width of a core relative to two 256-bit FMA units (Zen 3's).
WIDTH_256, WIDTH_512 = 1, 2


@dataclass(frozen=True)
class Reference:
    """A measured one-process model ceiling (oneDNN on, 224x224, fp32) on a CPU kind."""

    cpu: str
    images_per_s: float
    cores: int
    ghz: Optional[float]  #: effective all-core clock, when measured
    width: int  #: fp32 FMA width per core, WIDTH_256 or WIDTH_512
    source: str

    @property
    def per_core(self) -> float:
        return self.images_per_s / self.cores

    @property
    def per_core_ghz(self) -> Optional[float]:
        """Images/s per physical core and GHz, when the clock was measured."""
        return self.per_core / self.ghz if self.ghz else None


#: Zen 3 (AVX2 + FMA, two 256-bit FMA units per core): a 2-core machine here, idle (issue 15) --
#: 75 images/s; effective clock 2.75 GHz measured with a dependent-add loop on thread CPU time.
ZEN3 = Reference(
    "AMD EPYC Zen 3 (AVX2)",
    75.0,
    2,
    2.75,
    WIDTH_256,
    "issue 15 (idle); docs/benchmarks.md, Instance choice",
)
#: An Intel Xeon with AVX-512 and AMX (two 512-bit FMA units per core, both measured: 58 fp32
#: flops per cycle per core with both cores busy): a 2-core machine here, `make bench` with its
#: defaults, 5,000 images; effective clock 3.94 GHz measured with a dependent register-add loop.
XEON = Reference(
    "Intel Xeon (AVX-512, AMX)",
    189.6,
    2,
    3.94,
    WIDTH_512,
    "docs/benchmarks.md, Per CPU kind: Intel Xeon (AMX)",
)
#: Zen 5 (full-width AVX-512: two 512-bit FMA units per core): docs/benchmarks.md, 5,000 images.
ZEN5 = Reference(
    "AMD EPYC Zen 5 (AVX-512)", 278.4, 2, None, WIDTH_512, "docs/benchmarks.md, Results"
)


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as the chain sees it."""

    name: str
    cpu: str
    arch: str  #: "x86_64" or "arm64"
    isa: str  #: what TensorFlow's kernels use for fp32 inference
    vcpus: int
    cores: int  #: physical cores (x86 before m7a/c7a: 2 vCPUs per core)
    memory_gib: int
    ghz: float  #: AWS's all-core turbo clock for the processor
    width: int  #: fp32 FMA width per core, WIDTH_256 or WIDTH_512
    us_east_1: float  #: EC2 on-demand Linux, USD per hour

    @property
    def reference(self) -> Reference:
        """The measured CPU kind its rate is projected from."""
        return REFERENCE_BY_CPU[self.cpu]

    @property
    def ec2_paris(self) -> float:
        return round(self.us_east_1 * PARIS_UPLIFT, 4)

    @property
    def emr_paris(self) -> float:
        return round(self.ec2_paris * EMR_SHARE, 4)

    @property
    def node_per_hour(self) -> float:
        return round(self.ec2_paris + self.emr_paris, 4)

    def fits_executors(self) -> Optional[str]:
        """None when configurations.json's executor runs here as sized; else why not."""
        if self.arch not in BOOTSTRAP_ARCHES:
            return f"{self.arch}: requirements-emr.txt has no wheels for it"
        if self.memory_gib < NEEDED_MEMORY_GIB:
            return (
                f"{self.memory_gib} GiB: the executor (9 GB) and a Livy driver need a 16 GiB node"
            )
        return None


_SKX = "Intel Xeon Skylake-SP / Cascade Lake (8175M / 8259CL)"
_ICX = "Intel Xeon Ice Lake (8375C)"
_SPR = "Intel Xeon Sapphire Rapids (8488C)"
_ZEN3 = "AMD EPYC Zen 3 (7R13)"
_ZEN4 = "AMD EPYC Zen 4 (9R14)"
_GRAVITON3 = "AWS Graviton3 (Neoverse V1)"
_AVX512 = "oneDNN AVX-512 (no VNNI on Skylake hosts)"
_AVX512_VNNI = "oneDNN AVX-512 (+VNNI: int8 only)"
_AVX512_AMX = "oneDNN AVX-512 (+VNNI, BF16, AMX: bf16/int8 only)"
_AVX2 = "oneDNN AVX2 (set by helpers.onednn)"
_ZEN4_ISA = "oneDNN AVX-512 on 256-bit units (+VNNI, BF16)"
_ACL = "oneDNN + Arm Compute Library, SVE 256-bit (set by helpers.onednn)"

#: The measured kind each processor's rate is projected from: the Xeon for the Intel cores (two
#: 512-bit FMA units each, as measured on it), Zen 3 for the others (256-bit units).
REFERENCE_BY_CPU: Dict[str, Reference] = {
    _SKX: XEON,
    _ICX: XEON,
    _SPR: XEON,
    _ZEN3: ZEN3,
    _ZEN4: ZEN3,
    _GRAVITON3: ZEN3,
}

#: The types a user would consider, at the sizes the executor settings can use.
TYPES: List[InstanceType] = [
    InstanceType("m5.xlarge", _SKX, "x86_64", _AVX512, 4, 2, 16, 3.1, WIDTH_512, 0.192),
    InstanceType("m6i.xlarge", _ICX, "x86_64", _AVX512_VNNI, 4, 2, 16, 3.5, WIDTH_512, 0.192),
    InstanceType("m7i.xlarge", _SPR, "x86_64", _AVX512_AMX, 4, 2, 16, 3.2, WIDTH_512, 0.2016),
    InstanceType("m6a.xlarge", _ZEN3, "x86_64", _AVX2, 4, 2, 16, 3.6, WIDTH_256, 0.1728),
    InstanceType("m7a.xlarge", _ZEN4, "x86_64", _ZEN4_ISA, 4, 4, 16, 3.7, WIDTH_256, 0.23184),
    InstanceType("m7g.xlarge", _GRAVITON3, "arm64", _ACL, 4, 4, 16, 2.6, WIDTH_256, 0.1632),
    InstanceType("c6i.xlarge", _ICX, "x86_64", _AVX512_VNNI, 4, 2, 8, 3.5, WIDTH_512, 0.17),
    InstanceType("c7i.xlarge", _SPR, "x86_64", _AVX512_AMX, 4, 2, 8, 3.2, WIDTH_512, 0.1785),
    InstanceType("c6a.xlarge", _ZEN3, "x86_64", _AVX2, 4, 2, 8, 3.6, WIDTH_256, 0.153),
    InstanceType("c7a.xlarge", _ZEN4, "x86_64", _ZEN4_ISA, 4, 4, 8, 3.7, WIDTH_256, 0.20528),
    InstanceType("c7g.xlarge", _GRAVITON3, "arm64", _ACL, 4, 4, 8, 2.6, WIDTH_256, 0.145),
    InstanceType("c6i.2xlarge", _ICX, "x86_64", _AVX512_VNNI, 8, 4, 16, 3.5, WIDTH_512, 0.34),
    InstanceType("c7i.2xlarge", _SPR, "x86_64", _AVX512_AMX, 8, 4, 16, 3.2, WIDTH_512, 0.357),
]
BY_NAME: Dict[str, InstanceType] = {t.name: t for t in TYPES}


def projected_images_per_s(instance: InstanceType) -> float:
    """The projection rule: the measured rate per physical core and GHz of the instance's
    reference kind (an Intel Xeon for Intel types, Zen 3 for the others), x the core's fp32 FMA
    width relative to the reference's, x physical cores (a hyperthread counts for nothing), x
    AWS's all-core clock. The executor runs at most EXECUTOR_CORES tasks."""
    reference = instance.reference
    cores = min(instance.cores, EXECUTOR_CORES)
    return reference.per_core_ghz * instance.width / reference.width * cores * instance.ghz


def images_per_dollar(instance: InstanceType) -> float:
    """Projected images featurized per dollar of one core node (EC2 + EMR, eu-west-3)."""
    return projected_images_per_s(instance) * 3600 / instance.node_per_hour


def best_default() -> InstanceType:
    """The default type: among the types the executor settings run on as sized and with
    EXECUTOR_CORES vCPUs (the shape configurations.json is sized for), the most images per dollar."""
    shaped = [t for t in TYPES if t.fits_executors() is None and t.vcpus == EXECUTOR_CORES]
    return max(shaped, key=images_per_dollar)


def node_price_per_hour(name: str) -> Optional[float]:
    """USD per hour of one node of type ``name`` in eu-west-3 (EC2 + EMR), None if not tabled."""
    instance = BY_NAME.get(name)
    return instance.node_per_hour if instance else None


def run_minutes(
    instance: InstanceType, images: int, core_nodes: int = 2, fixed_minutes: float = 20
) -> float:
    """Projected minutes of a run: fixed part (start, bootstrap, PCA, writes) + featurization."""
    return fixed_minutes + images / (core_nodes * projected_images_per_s(instance)) / 60


def run_cost(
    instance: InstanceType, images: int, core_nodes: int = 2, fixed_minutes: float = 20
) -> float:
    """Projected USD of such a run on 1 primary + ``core_nodes`` nodes of ``instance``."""
    return (
        run_minutes(instance, images, core_nodes, fixed_minutes)
        / 60
        * instance.node_per_hour
        * (1 + core_nodes)
    )


def markdown_table() -> str:
    """The table of docs/benchmarks.md's "Instance choice" section."""
    lines = [
        "| type | CPU | what TensorFlow gets (fp32) | vCPUs / physical cores | GiB | EC2 + EMR, eu-west-3 (derived) | "
        "images/s per node (projected) | projected from (measured) | M images per $ (projected) | "
        "runs the executor settings? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in TYPES:
        why = t.fits_executors()
        fits = "yes" if why is None else f"no: {why}"
        lines.append(
            f"| {t.name} | {t.cpu}, {t.ghz} GHz | {t.isa} | {t.vcpus} / {t.cores} | {t.memory_gib} | "
            f"${t.ec2_paris:.4f} + ${t.emr_paris:.4f} = ${t.node_per_hour:.3f}/h | "
            f"{projected_images_per_s(t):.0f} | {t.reference.cpu} | "
            f"{images_per_dollar(t) / 1e6:.2f} | {fits} |"
        )
    return "\n".join(lines)


def runs_table() -> str:
    """The projected full runs of docs/benchmarks.md's "Instance choice", for the types the
    executor settings run on."""
    lines = [
        "| type | images/s per core node (projected) | cluster, 1 + 2 nodes | "
        "90,000 images: minutes, cost | 1 million images: minutes, cost |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in TYPES:
        if t.fits_executors() is None:
            runs = ", ".join(
                f"~{run_minutes(t, n):.0f} min, ~${run_cost(t, n):.2f} |"
                for n in (90_000, 1_000_000)
            )
            lines.append(
                f"| {t.name} | {projected_images_per_s(t):.0f} | ${3 * t.node_per_hour:.2f}/h | "
                + runs.replace("|, ", "| ")
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["types"], ["runs"]):
        sys.exit("usage: instances.py [types|runs]")
    if sys.argv[1:] != ["runs"]:
        print(markdown_table())
    if sys.argv[1:] != ["types"]:
        print(runs_table())
    best = best_default()
    print(
        f"default: {best.name} ({images_per_dollar(best) / 1e6:.2f} M images per $, projected)",
        file=sys.stderr,
    )

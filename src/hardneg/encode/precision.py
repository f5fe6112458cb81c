"""Compute precision of encoders: what the hardware offers, what a spec asks for, and the fidelity probe.

``EncoderSpec.precision`` is one of:

- ``"fp32"`` (default): everything in float32, as before this option existed (same bits, same cache keys).
- ``"bf16"``: the forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (matmuls in bf16, LayerNorm,
  softmax, pooling and normalisation in fp32); the output embeddings are float32. Needs native bf16: a CPU
  with ``avx512_bf16`` or ``amx_bf16`` (x86) / ``bf16`` (Arm), or a CUDA GPU with bf16; elsewhere autocast would
  emulate bf16 slower than fp32, so an explicit ``"bf16"`` there is an error.
- ``"auto"``: bf16 where the hardware has native bf16 AND the fidelity probe passes (the min cosine between
  fp32 and bf16 embeddings of ``PROBE_TEXTS`` is >= ``MIN_PROBE_COSINE``), else fp32, with a log line saying why.
- ``"int8"``: not available on this install (see ``INT8_UNAVAILABLE``): no int8 path measured here keeps the
  fidelity guard.

Why autocast and not bf16 weights (``benchmarks/bench_precision.py``, 1,000 SciFact docs at 256 tokens, MiniLM,
this 2-core AVX-512 BF16 CPU): autocast ran 2.31x and 2.44x fp32 in two runs at cosine to fp32 0.99997 min /
0.99998 mean; bf16 weights (LayerNorm, softmax and pooling in bf16 too) ran 1.57x and 2.70x (the same speed
within this machine's run-to-run noise) at 0.99992 min / 0.99995 mean, and would need a second copy of the model.

Why the guard is 0.999: fp32-vs-bf16 autocast measured 0.99997 min cosine on MiniLM, so a healthy model passes
with a wide margin, while the int8 paths measured on this machine type (onnx int8 0.987-0.99, torch dynamic int8 0.846)
moved the top-100 overlap with fp32 to 0.93: a model whose bf16 output drifts that far is not one to cache
under a "same model" label.

Why a fixed built-in probe (not the first texts being encoded): the resolved precision is part of the encoder
fingerprint, which the embedding cache needs before any text is encoded, and it must not depend on the data or
on which split a run happens to encode first; a fixed list makes the decision a function of (model, settings,
hardware) only. The probe is cached per fp32 fingerprint within the process (``teacher_fingerprint`` and stage
keys load an encoder several times).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardneg.errors import HardnegError

log = logging.getLogger("hardneg")

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
RESOLVED: tuple[str, ...] = ("fp32", "bf16")
MIN_PROBE_COSINE = 0.999
CPU_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX-512 BF16, AMX), Arm (FEAT_BF16)
REPORTED_FLAGS: tuple[str, ...] = ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni",
                                   "bf16", "i8mm")
CPUINFO = Path("/proc/cpuinfo")

INT8_UNAVAILABLE = (
    "precision 'int8' is not available on this install: torch dynamic int8 (quantize_dynamic on Linear) measured "
    "min cosine 0.846 to fp32 on MiniLM and the ONNX int8 model 0.987-0.99, both below the 0.999 fidelity guard "
    "(OpenVINO int8 needs openvino + nncf, not installed)")
INT8_FIX = 'use precision = "bf16" (or "auto") for 2x fp32 speed at fp32 fidelity on CPUs with native bf16, else "fp32"'

# A fixed, varied probe: short queries and passages of up to ~300 tokens (long enough to hit a 256-token
# truncation), science, general prose, numbers, code, non-English. Encoded as both queries and documents.
PROBE_TEXTS: tuple[str, ...] = (
    "what causes the seasons on earth",
    "does vitamin D supplementation reduce the risk of fractures in older adults",
    "how many grams of protein per day",
    "python sort a list of dictionaries by value",
    "symptoms of iron deficiency anemia",
    "capital of australia",
    "BRCA1 mutation breast cancer risk",
    "Wie funktioniert die Photosynthese?",
    "¿Cuál es la distancia entre la Tierra y la Luna?",
    "1.5 degrees warming target Paris agreement",
    "is coffee bad for your heart",
    "mRNA vaccine mechanism of action",
    "best way to learn linear algebra",
    "T cell exhaustion in chronic viral infection",
    "why is the sky blue",
    "tallest mountain in the solar system",
    "The mitochondrion is the site of oxidative phosphorylation, where the electron transport chain creates a "
    "proton gradient across the inner membrane that ATP synthase uses to produce ATP.",
    "Aspirin irreversibly inhibits cyclooxygenase-1 and -2, reducing the synthesis of prostaglandins and "
    "thromboxane A2; low doses are used to prevent platelet aggregation after myocardial infarction.",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "In 2019 the company reported revenue of $4.2 billion, up 13% year over year, with an operating margin of "
    "21.5% and 38,000 employees in 41 countries.",
    "La Révolution française est une période de bouleversements politiques et sociaux en France, de 1789 à 1799, "
    "qui met fin à l'Ancien Régime.",
    "Objective: To assess the association between sleep duration and incident type 2 diabetes. Design: Prospective "
    "cohort study of 12,345 adults followed for a median of 8.3 years. Results: Short sleep (<6 h) was associated "
    "with a hazard ratio of 1.28 (95% CI 1.10-1.49) compared with 7-8 h. Conclusions: Short sleep is an "
    "independent risk factor for type 2 diabetes.",
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. How vexingly quick "
    "daft zebras jump!",
    "Neural retrieval models encode queries and documents into dense vectors and rank documents by inner product; "
    "hard negatives mined with a teacher model improve contrastive fine-tuning, provided false negatives are "
    "filtered out, for example with a margin relative to the positive score.",
    "Plate tectonics describes the large-scale motion of Earth's lithosphere. The lithosphere is broken into "
    "tectonic plates that move relative to one another at convergent, divergent and transform boundaries, where "
    "earthquakes, volcanism, mountain building and oceanic trench formation occur. The driving forces include "
    "slab pull, ridge push and mantle convection. Seafloor spreading at mid-ocean ridges creates new oceanic "
    "crust, which is recycled into the mantle at subduction zones; the age of the oldest oceanic crust is about "
    "200 million years, while continental crust can be billions of years old. Paleomagnetic stripes recorded in "
    "the basalt on both sides of the ridges gave the decisive evidence for spreading in the 1960s, and GPS "
    "geodesy now measures plate velocities of a few centimetres per year directly. Hotspots such as Hawaii leave "
    "chains of volcanoes that age with distance from the active plume, recording the absolute motion of the "
    "plate above it.",
    "Background: Chronic kidney disease (CKD) affects more than 10% of adults worldwide and is associated with "
    "increased cardiovascular morbidity and mortality. Sodium-glucose cotransporter 2 (SGLT2) inhibitors were "
    "developed as glucose-lowering agents but have shown renal and cardiac benefits independent of glycaemic "
    "control. Methods: In this randomised, double-blind, placebo-controlled trial we assigned 4,304 participants "
    "with an estimated glomerular filtration rate of 25 to 75 ml per minute per 1.73 m2 and a urinary "
    "albumin-to-creatinine ratio of 200 to 5000 to receive the inhibitor (10 mg once daily) or placebo. The "
    "primary outcome was a composite of a sustained decline in eGFR of at least 50%, end-stage kidney disease, "
    "or death from renal or cardiovascular causes. Results: The trial was stopped early for efficacy after a "
    "median of 2.4 years. A primary outcome event occurred in 9.2% of the treatment group and 14.5% of the "
    "placebo group (hazard ratio 0.61; 95% confidence interval 0.51 to 0.72; P<0.001). The effects were "
    "similar in participants with and without type 2 diabetes. Conclusions: Among patients with CKD, regardless "
    "of the presence or absence of diabetes, the risk of the composite outcome was significantly lower with the "
    "inhibitor than with placebo.",
    "SELECT customer_id, SUM(amount) AS total FROM orders WHERE created_at >= '2024-01-01' GROUP BY customer_id "
    "HAVING SUM(amount) > 1000 ORDER BY total DESC LIMIT 10;",
    "東京は日本の首都であり、世界最大級の都市圏を形成している。",
    "a",
    "",
    "Rotterdam, Antwerp and Hamburg are the three largest container ports in Europe by throughput.",
    "Insulin resistance precedes the onset of type 2 diabetes by years; fasting insulin, HOMA-IR and the "
    "triglyceride-to-HDL ratio are inexpensive markers used in epidemiological studies.",
)


@dataclass(frozen=True)
class DeviceCaps:
    """What the device the encoder runs on offers: CPU flags, whether it runs on CUDA and whether that has bf16."""

    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    device: str = "cpu"  # "cpu" or "cuda": where sentence-transformers puts the model
    cuda_bf16: bool = False

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware on the device that runs the model."""
        if self.device == "cuda":
            return self.cuda_bf16
        return any(f in self.cpu_flags for f in CPU_BF16_FLAGS)

    def describe(self) -> str:
        """e.g. ``cpu (avx512_bf16, avx512_vnni)`` or ``cuda (bf16)``."""
        if self.device == "cuda":
            return f"cuda ({'bf16' if self.cuda_bf16 else 'no bf16'})"
        shown = [f for f in REPORTED_FLAGS if f in self.cpu_flags]
        return f"cpu ({', '.join(shown) if shown else 'no bf16/vnni flags'})"

    def to_dict(self) -> dict[str, object]:
        return {"device": self.device, "native_bf16": self.native_bf16, "cuda_bf16": self.cuda_bf16,
                "cpu_flags": [f for f in REPORTED_FLAGS if f in self.cpu_flags]}


def read_cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``);
    empty where the file does not exist (macOS, Windows): then nothing counts as native bf16."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_caps() -> DeviceCaps:
    """The capabilities of this machine, read at call time (never assumed): CPU flags from /proc/cpuinfo, and
    CUDA bf16 support when a GPU is present (the device sentence-transformers then uses)."""
    import torch

    if torch.cuda.is_available():
        return DeviceCaps(cpu_flags=read_cpu_flags(), device="cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()))
    return DeviceCaps(cpu_flags=read_cpu_flags())


def check_precision(value: object) -> None:
    """Reject what is not one of ``PRECISIONS`` (one line, with the fix); ``int8`` is known but unavailable."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise HardnegError(f"encoder precision must be one of {', '.join(PRECISIONS)}, got {value!r}",
                           fix='use precision = "fp32" (exact, the default), "bf16" (CPUs with avx512_bf16/amx_bf16 '
                               'or a bf16 GPU) or "auto" (bf16 where native and faithful, else fp32)')
    if value == "int8":
        raise HardnegError(INT8_UNAVAILABLE, fix=INT8_FIX)


def resolve_precision(requested: str, device_caps: DeviceCaps,
                      probe: Callable[[], float] | None = None) -> tuple[str, str]:
    """The precision to run (``"fp32"`` or ``"bf16"``) and why, for a requested one and the device's caps.

    ``probe`` (only called for ``"auto"`` on native-bf16 hardware) returns the min cosine between fp32 and bf16
    embeddings of a fixed sample; ``"auto"`` takes bf16 only if it is >= ``MIN_PROBE_COSINE``. No probe: the
    hardware alone decides. A pure function of its arguments (the tests force the caps and the probe).
    """
    check_precision(requested)
    if requested == "fp32":
        return "fp32", "fp32 requested"
    native = device_caps.native_bf16
    if requested == "bf16":
        if not native:
            raise HardnegError(f"precision 'bf16' needs native bf16 hardware, and this machine has none "
                               f"({device_caps.describe()}; bf16 needs avx512_bf16/amx_bf16 or a bf16 GPU)",
                               fix='use precision = "auto" (fp32 here) or "fp32"')
        return "bf16", f"bf16 requested; native bf16 on {device_caps.describe()}"
    # auto
    if not native:
        return "fp32", f"auto: fp32, no native bf16 on {device_caps.describe()}"
    if probe is None:
        return "bf16", f"auto: bf16, native on {device_caps.describe()}"
    cos = float(probe())
    if not cos >= MIN_PROBE_COSINE:  # NaN fails too
        return "fp32", (f"auto: fp32, the bf16 fidelity probe failed (min cosine to fp32 {cos:.6f} < "
                        f"{MIN_PROBE_COSINE}) although {device_caps.describe()} has native bf16")
    return "bf16", (f"auto: bf16, native on {device_caps.describe()} and the fidelity probe passed "
                    f"(min cosine to fp32 {cos:.6f} >= {MIN_PROBE_COSINE})")


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine between ``a`` and ``b`` [n, dim]; rows that are zero in both count as 1."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.einsum("ij,ij->i", a, b) / np.maximum(na * nb, 1e-300)
    cos[both_zero] = 1.0
    return float(cos.min()) if cos.size else 1.0


def probe_min_cosine(encode: Callable[[Sequence[str], str, str], np.ndarray],
                     texts: Sequence[str] = PROBE_TEXTS, kinds: Sequence[str] = ("query", "doc")) -> float:
    """Min cosine between ``encode(texts, kind, "fp32")`` and ``encode(texts, kind, "bf16")`` over ``kinds``."""
    worst = 1.0
    for kind in kinds:
        worst = min(worst, min_cosine(encode(texts, kind, "fp32"), encode(texts, kind, "bf16")))
    return worst


_PROBES: dict[str, float] = {}  # fp32 fingerprint -> min cosine, within this process


def cached_probe(key_fn: Callable[[], str], encode: Callable[[Sequence[str], str, str], np.ndarray],
                 kinds: Sequence[str] = ("query", "doc")) -> Callable[[], float]:
    """A probe for ``resolve_precision`` that runs ``probe_min_cosine`` once per ``key_fn()`` (the encoder's fp32
    fingerprint: weights and output settings) within the process."""

    def run() -> float:
        key = key_fn()
        if key not in _PROBES:
            t0 = time.perf_counter()
            _PROBES[key] = probe_min_cosine(encode, kinds=kinds)
            log.info("bf16 fidelity probe: min cosine to fp32 %.6f over %d texts x %d kind(s) in %.1f s",
                     _PROBES[key], len(PROBE_TEXTS), len(kinds), time.perf_counter() - t0)
        return _PROBES[key]

    return run


def resolve_for_encoder(requested: str, fp32_fingerprint: Callable[[], str],
                        encode: Callable[[Sequence[str], str, str], np.ndarray], *,
                        same_prompts: bool = False) -> tuple[str, str]:
    """``resolve_precision`` with this machine's caps and the probe cached per ``fp32_fingerprint()``;
    ``encode(texts, kind, precision)`` encodes at a given precision (both kinds, or only ``doc`` when the query
    and doc prompts are equal: the same inputs). Logs what ``auto`` chose and why."""
    from hardneg.encode import precision as this  # through the module, so tests can monkeypatch cpu_caps

    if requested == "fp32":
        return "fp32", "fp32 requested"
    kinds = ("doc",) if same_prompts else ("query", "doc")
    precision, reason = resolve_precision(requested, this.cpu_caps(),
                                          this.cached_probe(fp32_fingerprint, encode, kinds))
    if requested == "auto":
        log.info("encoder precision %s (%s)", precision, reason)
    return precision, reason


def clear_probe_cache() -> None:
    """Forget every probe result of this process (tests)."""
    _PROBES.clear()

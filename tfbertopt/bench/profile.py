"""Where a LiteRT model's time goes: a per-kernel sampling profile of the interpreter, grouped by op kind.

LiteRT's op profiler lives in its C++ benchmark tool, which the Python wheel does not ship. The wheel's kernels do
carry their symbol names (XNNPACK micro-kernels such as `xnn_qs8_qc8w_gemm_...`, TFLite builtins such as
`tflite::reference_ops::BatchMatMul<signed char, ...>`), so Linux `perf` sampling a process that invokes the model in
a loop tells which kernels the CPU time is spent in. `kernel_profile` runs that process under `perf record`, keeps
the samples that fall in LiteRT's own libraries, and groups them into op kinds (`KERNEL_KINDS`): int8 and float
GEMMs in XNNPACK, reference batch matmuls, the int8 LayerNorm's SQUARED_DIFFERENCE, requantization, softmax, ...
`ms` is each kind's share of the measured latency.

Needs Linux `perf` (Debian: linux-perf) with sampling allowed (root, or kernel.perf_event_paranoid <= 2 for one's own
processes); `perf_available()` says whether it works here. Command line: `tfbertopt profile MODEL.tflite`.

Example (the symbol grouping alone needs no perf):

>>> from tfbertopt.bench.profile import kernel_kind
>>> kernel_kind("xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_7x16c8__avx512vnni_prfm")
'int8 GEMM (XNNPACK)'
>>> kernel_kind("tflite::ops::builtin::squared_difference::SquaredDifference")
'SQUARED_DIFFERENCE (LayerNorm variance)'
>>> kernel_kind("tflite::reference_ops::BatchMatMul<signed char, int, signed char, signed char>")
'BATCH_MATMUL, reference kernel (attention)'
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tfbertopt.bench.latency import litert_latency_ms, serving_inputs

# First match wins; order from specific to general.
KERNEL_KINDS = [
    ("int8 GEMM (XNNPACK)", r"^xnn_q[sdu]8\w*gemm|^xnn_qd8\w*gemm|^xnn_qu8\w*gemm"),
    ("float GEMM (XNNPACK)", r"^xnn_f(32|16)\w*gemm"),
    ("BATCH_MATMUL, reference kernel (attention)", r"BatchMatMul"),
    ("SQUARED_DIFFERENCE (LayerNorm variance)", r"[Ss]quared_?[Dd]ifference|sqrdiff"),
    ("RSQRT", r"[Rr]sqrt|InvSqrt"),
    ("requantization in reference kernels", r"MultiplyByQuantizedMultiplier|QuantizedMultiplier"),
    ("SOFTMAX", r"[Ss]oftmax|raddstoreexpminusmax"),
    ("GELU", r"[Gg]elu"),
    ("MEAN / reductions", r"[Mm]ean|rsum|rminmax|rmin|rmax|[Rr]educe"),
    ("quantize / dequantize / convert", r"vcvt|[Qq]uantize|ConvertOp|pack_lh|f32_qs8|qs8_f32|qu8_f32|f32_qu8"),
    ("ADD / SUB / MUL (XNNPACK)", r"^xnn_\w*v(add|sub|mul|rsub)c?_"),
    ("elementwise, reference kernels", r"BinaryOp|BroadcastBinary|AddScalar|Broadcast\w*Add|Broadcast\w*Mul|"
                                       r"optimized_\w*ops::(Add|Sub|Mul)|reference_\w*ops::(Add|Sub|Mul)"),
    ("TRANSPOSE / GATHER / copies", r"[Tt]ranspose|StridedSlice|[Gg]ather|[Cc]oncat|memcpy|memmove|xnn_xx_|"
                                    r"xnn_x8_|xnn_x32_"),
    ("SELECT (attention mask)", r"[Ss]elect"),
    ("thread pool and runtime", r"pthreadpool|^thread_main$|xnn_run|xnn_invoke|xnn_compute|Subgraph|Invoke|RuntimeShape|"
                                r"GetTensor|xnnpack::"),
]
OTHER = "other LiteRT code"
# LiteRT's shared objects in the ai-edge-litert (and tensorflow) wheels.
LITERT_DSO = re.compile(r"litert|tflite|tensorflow_lite|_pywrap_tensorflow_internal", re.IGNORECASE)


class ProfileError(RuntimeError):
    """perf is missing, not allowed to sample, or recorded nothing usable."""


@functools.lru_cache(maxsize=None)
def _compiled():
    return [(kind, re.compile(pattern)) for kind, pattern in KERNEL_KINDS]


def kernel_kind(symbol: str) -> str:
    """The op kind (a `KERNEL_KINDS` name, or OTHER) of one kernel symbol."""
    for kind, pattern in _compiled():
        if pattern.search(symbol):
            return kind
    return OTHER


_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.+?)\s*$")


def parse_perf_report(text: str) -> list[tuple[float, str, str]]:
    """(percent, shared object, symbol) rows of `perf report --stdio --no-children --sort dso,sym` output."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            rows.append((float(match.group(1)), match.group(2), match.group(3)))
    return rows


@dataclasses.dataclass
class KernelProfile:
    """Shares of LiteRT's CPU samples per op kind (`kinds`, summing to 1) and the top kernels, for one model."""

    path: str
    num_threads: int
    latency_ms: float
    samples_share: float           # share of the process's samples spent in LiteRT (the rest: Python, kernel, ...)
    kinds: dict[str, float]
    top_kernels: list[tuple[str, float]]

    def kind_ms(self) -> dict[str, float]:
        """Each kind's share of the measured latency, in milliseconds."""
        return {k: round(v * self.latency_ms, 3) for k, v in self.kinds.items()}

    def to_dict(self) -> dict:
        return {"path": self.path, "num_threads": self.num_threads, "latency_ms": round(self.latency_ms, 3),
                "litert_samples_share": round(self.samples_share, 4),
                "kinds": {k: round(v, 4) for k, v in self.kinds.items()}, "kind_ms": self.kind_ms(),
                "top_kernels": [[s, round(v, 4)] for s, v in self.top_kernels]}

    def table(self) -> str:
        lines = [f"{os.path.basename(self.path)}: {self.latency_ms:.2f} ms ({self.num_threads} threads)",
                 "| op kind | share of LiteRT time | ms |", "| --- | --- | --- |"]
        lines += [f"| {k} | {v:.1%} | {v * self.latency_ms:.2f} |" for k, v in self.kinds.items()]
        return "\n".join(lines)


def group_rows(rows: list[tuple[float, str, str]], top: int = 12) -> tuple[dict[str, float], list, float]:
    """(kind -> share of LiteRT samples, top kernels with their shares, LiteRT share of all samples)."""
    litert = [(p, sym) for p, dso, sym in rows if LITERT_DSO.search(dso)]
    total = sum(p for p, _ in litert)
    if total <= 0:
        raise ProfileError("perf recorded no samples inside LiteRT's libraries")
    kinds = collections.Counter()
    for p, sym in litert:
        kinds[kernel_kind(sym)] += p / total
    ordered = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    kernels = sorted(((sym, p / total) for p, sym in litert), key=lambda kv: -kv[1])[:top]
    return ordered, kernels, total / max(sum(p for p, _, _ in rows), 1e-9)


def perf_available() -> bool:
    """Whether `perf record` can sample a child process here."""
    if shutil.which("perf") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["perf", "record", "-q", "-o", os.path.join(tmp, "p.data"), "--", "true"],
                              capture_output=True)
        return done.returncode == 0


def kernel_profile(path, num_threads: int = 2, seconds: float = 3.0, frequency: int = 999,
                   latency_runs: int = 30) -> KernelProfile:
    """Samples `seconds` of back-to-back invocations of the .tflite at `path` (batch 1) with perf and groups the
    LiteRT samples by op kind. The latency is measured first, in this process, as `litert_latency_ms` does."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no LiteRT model at {path}")
    if shutil.which("perf") is None:
        raise ProfileError("Linux perf is not installed (Debian/Ubuntu: apt-get install linux-perf)")
    ms = litert_latency_ms(path, num_threads=num_threads, runs=latency_runs)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        loop = [sys.executable, "-m", "tfbertopt.bench.profile", "--invoke", str(path), "--threads",
                str(num_threads), "--seconds", str(seconds)]
        record = subprocess.run(["perf", "record", "-q", "-F", str(frequency), "-o", data, "--", *loop],
                                capture_output=True, text=True)
        if record.returncode != 0:
            raise ProfileError(f"perf record failed ({record.returncode}): {record.stderr.strip()[-500:]} (sampling "
                               f"may be forbidden: see /proc/sys/kernel/perf_event_paranoid)")
        report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym"],
                                capture_output=True, text=True)
        if report.returncode != 0:
            raise ProfileError(f"perf report failed: {report.stderr.strip()[-500:]}")
    kinds, kernels, share = group_rows(parse_perf_report(report.stdout))
    return KernelProfile(str(path), num_threads, ms, share, kinds, kernels)


def _invoke_loop(path: str, num_threads: int, seconds: float) -> None:
    """The profiled process: invoke the model's serving signature back to back for `seconds` (after warm-up)."""
    import time

    from ai_edge_litert.interpreter import Interpreter


    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    runner = interpreter.get_signature_runner()
    inputs = serving_inputs(runner)  # the inputs litert_latency_ms times
    for _ in range(3):
        runner(**inputs)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        runner(**inputs)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="per-kernel profile of a LiteRT model (Linux perf)")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--invoke", help=argparse.SUPPRESS)  # the profiled child process
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.invoke:
        _invoke_loop(args.invoke, args.threads, args.seconds)
        return 0
    if not args.model:
        parser.error("give a .tflite file")
    profile = kernel_profile(args.model, args.threads, args.seconds)
    print(profile.table())
    print("top kernels:")
    for sym, share in profile.top_kernels:
        print(f"  {share:6.1%}  {sym[:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

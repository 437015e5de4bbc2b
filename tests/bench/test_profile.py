"""The per-kernel LiteRT profile: symbol grouping, perf report parsing, and a real perf run on a tiny model."""

import os

import pytest

from tfbertopt.bench import profile
from tfbertopt.bench.profile import OTHER, ProfileError, group_rows, kernel_kind, parse_perf_report

# Lines as `perf report --stdio --no-children --sort dso,sym` prints them (a full-integer tiny BERT, trimmed).
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 5K of event 'cpu-clock:ppp'
#
# Overhead  Shared Object                 Symbol
# ........  ............................  ..............................
#
    31.01%  libpywrap_litert_common.so    [.] tflite::ops::builtin::squared_difference::SquaredDifference
    12.56%  libpywrap_litert_common.so    [.] tflite::reference_ops::BatchMatMul<signed char, int, signed char, signed char>
     9.95%  libpywrap_litert_common.so    [.] tflite::MultiplyByQuantizedMultiplier
     6.41%  libpywrap_litert_common.so    [.] xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_7x16c8__avx512vnni_prfm
    20.00%  libpython3.11.so.1.0          [.] _PyEval_EvalFrameDefault
     3.74%  libpywrap_litert_common.so    [.] tflite::optimized_ops::Softmax<signed char, signed char>
     3.08%  libpywrap_litert_common.so    [.] tflite::GetInvSqrtQuantizedMultiplierExp
     1.83%  libpywrap_litert_common.so    [.] xnn_qs8_vadd_minmax_ukernel__avx512skx_mul32_ld128_u16
     1.00%  [kernel.kallsyms]             [k] exc_page_fault
     0.95%  libpywrap_litert_common.so    [.] tflite::ops::builtin::activations::GeluEval
     0.50%  libpywrap_litert_common.so    [.] some_unknown_helper
"""


@pytest.mark.parametrize("symbol, kind", [
    ("xnn_qd8_f32_qc8w_gemm_minmax_ukernel_5x64c4__asm_amd64_avx512vnni", "int8 GEMM (XNNPACK)"),
    ("xnn_f32_gemm_minmax_ukernel_7x32__avx512f_broadcast", "float GEMM (XNNPACK)"),
    ("tflite::optimized_ops::Softmax<signed char, signed char>", "SOFTMAX"),
    ("tflite::GetInvSqrtQuantizedMultiplierExp", "RSQRT"),
    ("xnn_qs8_vmulc_minmax_fp32_ukernel__avx_mul16_ld64_u16", "ADD / SUB / MUL (XNNPACK)"),
    ("xnn_f32_qu8_vcvt_ukernel__avx512skx_u128", "quantize / dequantize / convert"),
    ("tflite::reference_ops::RunSelectOp<bool, unsigned int>", "SELECT (attention mask)"),
    ("pthreadpool_parallelize_2d_tile_2d_dynamic", "thread pool and runtime"),
    ("thread_main", "thread pool and runtime"),  # pthreadpool's worker loop (waiting for work)
    ("xnn_f32_raddstoreexpminusmax_ukernel__avx512f_rr2_p5_u64_acc2", "SOFTMAX"),
    ("xnn_f32_vsqrdiffc_ukernel__avx512f_u32", "SQUARED_DIFFERENCE (LayerNorm variance)"),
    ("some_unknown_helper", OTHER),
])
def test_kernel_kinds(symbol, kind):
    assert kernel_kind(symbol) == kind


def test_parse_and_group_keep_only_litert_samples():
    rows = parse_perf_report(REPORT)
    assert len(rows) == 11 and rows[0] == (31.01, "libpywrap_litert_common.so",
                                           "tflite::ops::builtin::squared_difference::SquaredDifference")
    kinds, kernels, share = group_rows(rows)
    litert_total = sum(p for p, dso, _ in rows if "litert" in dso)
    assert sum(kinds.values()) == pytest.approx(1.0)
    assert share == pytest.approx(litert_total / sum(p for p, _, _ in rows))
    assert kinds["SQUARED_DIFFERENCE (LayerNorm variance)"] == pytest.approx(31.01 / litert_total)
    assert next(iter(kinds)) == "SQUARED_DIFFERENCE (LayerNorm variance)"  # ordered by share
    assert all("PyEval" not in s and "page_fault" not in s for s, _ in kernels)
    assert kernels[0][0].endswith("SquaredDifference")


def test_no_litert_samples_is_an_error():
    with pytest.raises(ProfileError, match="no samples inside LiteRT"):
        group_rows(parse_perf_report("    50.00%  libpython3.11.so.1.0  [.] _PyEval_EvalFrameDefault\n"))


def test_missing_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LiteRT model"):
        profile.kernel_profile(tmp_path / "absent.tflite")


@pytest.mark.skipif(not profile.perf_available(), reason="Linux perf cannot sample here")
def test_real_profile_of_a_tiny_model(tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.models import tiny_bert_classifier

    clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
    path = export_litert(clf, os.path.join(tmp_path, "m.tflite"), "float32", 16).path
    result = profile.kernel_profile(path, num_threads=1, seconds=1.0, latency_runs=5)
    assert result.latency_ms > 0 and 0 < result.samples_share <= 1
    assert sum(result.kinds.values()) == pytest.approx(1.0)
    # A float BERT's matmuls run in XNNPACK's float GEMMs.
    assert result.kinds.get("float GEMM (XNNPACK)", 0) > 0
    assert "| op kind |" in result.table()
    assert set(result.to_dict()["kind_ms"]) == set(result.kinds)


def test_cli_names_a_missing_model(tmp_path, capsys):
    from tfbertopt.cli import main

    assert main(["profile", str(tmp_path / "absent.tflite")]) == 2
    assert "no LiteRT model" in capsys.readouterr().err

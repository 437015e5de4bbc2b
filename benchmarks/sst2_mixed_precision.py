"""SST-2 mixed-precision int8 (Q-BERT-style sensitivity, most sensitive ops kept float) against plain full-integer
PTQ and dynamic-range int8, all from the fine-tuned MiniLM-L6, in one run.

    python benchmarks/sst2_mixed_precision.py --data-dir /work/shared/data/glue

Calibration: 100 SST-2 training sentences. Sensitivity and selection use other training sentences (`--holdout`),
never dev; dev (872) gives accuracy and agreement with Keras. Plain int8 is the same calibrated model with nothing
denylisted. Rows: baseline (float32 export), ptq-dynamic, ptq-int8, mixed-precision per budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    from tfbertopt.bench import harness, latency
    from tfbertopt.data.glue import load_glue
    from tfbertopt.data.pipeline import encode
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.mixed_precision import MixedPrecision
    from tfbertopt.export.verify import verify_litert
    from tfbertopt.kernels import count_macs, count_params
    from tfbertopt.saving import load_model
    from tfbertopt.train import predict_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data/glue")
    parser.add_argument("--model", default="runs/sst2-minilm-baseline/00_finetune/model.keras")
    parser.add_argument("--out-dir", default="runs/sst2-mixed-precision")
    parser.add_argument("--holdout", type=int, default=64)
    parser.add_argument("--granularity", default="layer_kind")
    parser.add_argument("--budgets", default="max_float_ops=20,max_float_ops=60,min_agreement=1.0")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--results", default="benchmarks/results/sst2_mixed_precision.json")
    args = parser.parse_args(argv)
    start = time.time()

    def log(msg):
        print(f"[{time.time() - start:6.0f}s] {msg}", flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    model = load_model(args.model)
    train = load_glue("sst2", "train", data_dir=args.data_dir)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    # Disjoint training slices: calibration (sampled by calibration_features) and the sensitivity holdout.
    import numpy as np

    order = np.random.default_rng(0).permutation(len(train))
    calibration = train._select(order[:1000])  # calibration_features samples 100 of these
    holdout = train._select(order[1000:1000 + args.holdout])
    features = encode(dev.texts, model.preprocessor)
    keras_logits = predict_logits(model, features)
    macs, params = count_macs(model, 128), count_params(model)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"keras logits on {len(dev)} dev, int8 peak {peak:.0f} GMAC/s")

    rows = []

    def row(variant, tags, baseline, result, extra=None):
        report = verify_litert(result.path, model, dev, quantized=variant != "float32", features=features,
                               keras_logits=keras_logits)
        ms = latency.litert_latency_ms(result.path, num_threads=2, runs=args.runs)
        ms_dyn = latency.litert_latency_ms(dynamic.path, num_threads=2, runs=args.runs) if dynamic else None
        r = harness.litert_row(variant, tags, baseline, result, report, "sst2", macs, params, peak, ms, None)
        r["dev_examples"] = len(dev)
        if ms_dyn:
            r["dynamic_latency_ms_same_time"] = round(ms_dyn, 3)
        r.update(extra or {})
        rows.append(r)
        log(f"{variant}: {report.summary()} | {r['tflite_mb']} MB, {ms:.2f} ms (dynamic now {ms_dyn or ms:.2f} ms)")
        return r

    dynamic = None
    f32 = export_litert(model, os.path.join(args.out_dir, "float32.tflite"), "float32", 128)
    row("float32", ["baseline", "teacher"], None, f32)
    rows[-1]["baseline"] = None
    dynamic = export_litert(model, os.path.join(args.out_dir, "dynamic.tflite"), "dynamic", 128)
    row("dynamic", ["ptq-dynamic"], "float32", dynamic)

    mp = MixedPrecision(model, calibration, 128, calibration_steps=100, holdout=holdout,
                        holdout_size=args.holdout, granularity=args.granularity)
    log(f"calibrated: {len(mp.nodes)} candidate ops in {len(mp.groups())} groups")
    plain = mp.select(max_float_ops=0)
    res = mp.export(os.path.join(args.out_dir, "int8.tflite"), plain)
    row("int8", ["ptq-int8"], "float32", res.export,
        {"float_ops": res.export.op_report.float_op_count, "selection": plain.to_dict()})
    debug = mp.debugger_statistics()
    worst = sorted(debug.items(), key=lambda kv: -kv[1]["rmse_over_scale"])[:15]
    log("debugger worst RMSE/scale: " + "; ".join(f"{v['group']} {v['op_name']} {v['rmse_over_scale']:.1f}"
                                                   for _, v in worst))
    sens = mp.sensitivity()
    log(f"sensitivity of {len(sens)} groups done")
    sensitivity = [{"group": g.group, "ops": g.num_ops, "gain_mean_logit_error": round(g.gain, 5),
                    "agreement_gain": round(g.agreement_gain, 4),
                    "holdout_agreement": round(g.evaluation.label_agreement, 4),
                    "rmse_over_scale": None if g.rmse_over_scale is None else round(g.rmse_over_scale, 2)}
                   for g in sens]
    for s in sensitivity[:15]:
        log(json.dumps(s))
    for budget in args.budgets.split(","):
        key, value = budget.split("=")
        value = int(value) if key == "max_float_ops" else float(value)
        selection = mp.select(**{key: value})
        log(selection.summary())
        name = f"mixed-{key.replace('_', '-')}-{value}"
        res = mp.export(os.path.join(args.out_dir, f"{name}.tflite"), selection)
        row(name, ["mixed-precision"], "float32", res.export,
            {"float_ops": res.export.op_report.float_op_count, "selection": selection.to_dict()})
    harness.write_results(args.results, "sst2_mixed_precision", "python " + " ".join(sys.argv), rows, peak,
                          extra={"sensitivity": sensitivity, "debugger_worst": [
                              {"tensor": k[-120:], **{kk: (round(vv, 3) if isinstance(vv, float) else vv)
                                                      for kk, vv in v.items()}} for k, v in worst],
                              "notes": "calibration: 100 SST-2 train sentences; sensitivity and budgets measured on "
                                       f"{args.holdout} other train sentences; "
                                       "dev only for the rows. dynamic_latency_ms_same_time: the dynamic-range file "
                                       "timed right after each row, as the machine is loaded."})
    log(f"wrote {args.results}")


if __name__ == "__main__":
    main()

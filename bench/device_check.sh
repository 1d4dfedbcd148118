#!/usr/bin/env bash
# The GPU check of `tuner measure` / `tuner calibrate`, prepared for a session lent an accelerator
# (about 6 minutes on an H200). Every step has its own time limit and writes under $OUT, so what
# finished comes back even if a later step does not; results.tgz holds them all.
#
# Run from the repository root on the device machine, with the project's missing dependencies
# importable (the H200 image has JAX 0.11.2 but not optuna, pydantic or SQLAlchemy: carry their
# cp312 wheels, `pip download --no-deps --only-binary=:all: --python-version 3.12 ...`, install
# them with `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` and put /tmp/site on
# PYTHONPATH before this script). What it checks (docs/benchmarks.md, "tuner measure on an H200"):
#  1. timing: queued against synchronized calls, and sixteen GEMMs to a compiled call (does XLA
#     merge them; is a kernel shorter than the dispatch timed then);
#  2. the small sweep (its attention grid grew after the first GPU run) and tuner calibrate on it:
#     every class must fit, with the dispatch floor taken out of the launch costs;
#  3. the database's H200 shapes replayed (data/measured/h200-jax/shapes), to compare with the
#     first run: python bench/measure_replay.py compare --measured <results>/replay.
set -u
: "${OUT:?set OUT to the folder that comes back}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
# cuBLAS GEMMs (as engines' bf16 linear layers) and no per-shape Triton autotuning (47 s, not 90+)
export XLA_FLAGS="${XLA_FLAGS:---xla_gpu_enable_triton_gemm=false}"
R=$OUT/r
mkdir -p "$R"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>&1
  python3 -c "import jax; print(jax.__version__, jax.devices())"; } > "$R/gpu.txt" 2>&1
step() {
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  timeout "$limit" "$@" > "$R/$name.log" 2>&1
  echo "$name rc=$? $((SECONDS - t0)) s" | tee -a "$R/steps.txt"
}
T="python3 -m tuner.cli"
step timing 90 python3 bench/bench_measure_timing.py
step small 240 $T measure --system h200_sxm --out "$R/small" --sweep small --json
step calibrate 120 $T calibrate --hardware h200 --backend jax --system h200_sxm \
  --kernels "$R/small/gemm_perf.csv" --kernels "$R/small/context_attention_perf.csv" \
  --kernels "$R/small/generation_attention_perf.csv" -o "$R/h200-jax.yaml"
S=data/measured/h200-jax/shapes
step replay 150 $T measure --system h200_sxm --out "$R/replay" --ops gemm,attention \
  --shapes-from $S/gemm_bf16.csv --shapes-from $S/gemm_fp8.csv --shapes-from $S/attention_shapes.csv --json
tar czf "$OUT/results.tgz" -C "$OUT" r
cat "$R/steps.txt"

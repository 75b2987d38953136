#!/usr/bin/env bash
# Both gates, for any CI: the accuracy gate (`metabench compare`, docs/regression-gate.md) and the speed gate
# (`metabench compare --perf`, docs/performance.md), each against its committed baseline, with one markdown summary
# for a pull-request comment. .github/workflows/metabench-gates.yml and .ci/run call this script.
#
#   .ci/perf-gate.sh [accuracy] [speed]        (no argument: both)
#
# Environment:
#   METABENCH     how to call metabench (default `metabench`; e.g. "python3 -m tox exec -e py311 -- metabench")
#   GATE_SUMMARY  file the markdown summary is appended to (default: $GITHUB_STEP_SUMMARY on GitHub, else
#                 gate-summary.md in the current folder)
#   GATE_WORK     folder for the new runs (default: a temporary folder, removed at exit)
# Exit: 0 both passed; 1 a regression (named on stderr and in the summary); 2 a gate could not compare (stale
# baseline, missing files). Both gates run even when the first fails, so one CI run reports everything.
set -uo pipefail
cd "$(dirname "$0")/.."

read -r -a metabench <<< "${METABENCH:-metabench}"   # a command prefix: split into words on purpose
summary="${GATE_SUMMARY:-${GITHUB_STEP_SUMMARY:-gate-summary.md}}"
if [ -n "${GATE_WORK:-}" ]; then
    work="$GATE_WORK"; mkdir -p "$work"
else
    work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
gates=("$@"); [ ${#gates[@]} -eq 0 ] && gates=(accuracy speed)
worst=0
record() {  # keep the most serious exit code: 2 (cannot compare) over 1 (regression) over 0
    local rc=$1
    if [ "$rc" -ge 2 ] || [ "$worst" -ge 2 ]; then worst=2; elif [ "$rc" -eq 1 ]; then worst=1; fi
}

# The speed gate. `metabench perf --quick`: about two minutes on 2 busy cores, one thread, each step between two
# samples of a reference workload, so the CI machine's speed and load cancel in the ratios (docs/performance.md).
speed_gate() {
    if ! "${metabench[@]}" perf --quick --out "$work/perf"; then
        echo "perf-gate: metabench perf failed" >&2; record 2; return
    fi
    # Ratios cancel a machine's speed, not its architecture: on another CPU model the committed ratios do not
    # apply, so every step is timed side by side with the baseline commit's code instead (two processes a side).
    local other_cpu
    other_cpu="$(python3 - "$work/perf/manifest.json" results/baseline-perf <<'PY'
import json, pathlib, sys
model = lambda path: json.loads(pathlib.Path(path).read_text()).get("provenance", {}).get("cpu_model")
new = model(sys.argv[1])
base = model(next(iter(sorted(pathlib.Path(sys.argv[2]).glob("*/manifest.json"))), pathlib.Path(sys.argv[2]) / "manifest.json"))
if new and base and new != base:
    print(f"{new} here, {base} in the baseline")
PY
)"
    if [ -n "$other_cpu" ]; then
        echo "perf-gate: another CPU ($other_cpu): timing every step side by side with the baseline's code" >&2
        if "${metabench[@]}" perf --quick --against results/baseline-perf --rounds 2 --out "$work/ab-all"; then
            { echo "The committed speed baseline was timed on another CPU ($other_cpu), so every step was timed" \
                   "side by side with the baseline commit's code (\`metabench perf --against results/baseline-perf\`):"
              echo; } >> "$summary"
            "${metabench[@]}" compare --perf "$work/ab-all/baseline" "$work/ab-all/new" --format md >> "$summary"
            record $?; return
        fi
        echo "perf-gate: the baseline's commit cannot be run here; comparing with the committed ratios" >&2
    fi
    "${metabench[@]}" compare --perf results/baseline-perf "$work/perf" --format json > "$work/speed.json"
    local rc=$?
    if [ "$rc" -ne 1 ]; then
        [ "$rc" -eq 0 ] && "${metabench[@]}" compare --perf results/baseline-perf "$work/perf" --format md >> "$summary"
        record "$rc"; return
    fi
    # A regression must reproduce against the baseline's own code, timed now on this machine: the committed
    # ratios were measured on another occasion, and some steps drift 5-15% between occasions on unchanged code
    # (docs/performance.md). `perf --against` runs the baseline commit's code and this code in alternating fresh
    # processes (bench/perf_ab.py); the gate is their comparison. A code change slows its step on every
    # side-by-side rerun; an occasion's drift hits both sides alike.
    # (raw_decode from the first brace: a wrapper such as `tox exec` may print lines around the JSON)
    local flagged steps s
    mapfile -t flagged < <(python3 -c 'import json, sys; t = open(sys.argv[1]).read(); print("\n".join(json.JSONDecoder().raw_decode(t[t.index("{"):])[0]["regressions"]))' "$work/speed.json")
    echo "perf-gate: slower: ${flagged[*]}; timing them side by side with the baseline's code to confirm" >&2
    steps=(); for s in "${flagged[@]}"; do steps+=(--step "$s"); done
    "${metabench[@]}" compare --perf results/baseline-perf "$work/perf" --format md >> "$summary"
    if "${metabench[@]}" perf --quick --against results/baseline-perf --out "$work/ab" "${steps[@]}"; then
        { echo; echo "Confirmation: the flagged step(s) timed side by side with the baseline commit's code" \
               "(alternating fresh processes, \`metabench perf --against results/baseline-perf\`):"; echo; } >> "$summary"
        "${metabench[@]}" compare --perf "$work/ab/baseline" "$work/ab/new" "${steps[@]}" --format md >> "$summary"
        record $?
    elif "${metabench[@]}" perf --quick --out "$work/perf-confirm" "${steps[@]}"; then
        # the baseline's commit cannot be run here (a shallow clone, a wheel): re-measure against the committed
        # ratios instead, which cannot tell an occasion's drift from a slower commit
        { echo; echo "Re-measured the flagged step(s) in a fresh process (the baseline's commit could not be" \
               "run here, so this compares with the committed ratios):"; echo; } >> "$summary"
        "${metabench[@]}" compare --perf results/baseline-perf "$work/perf-confirm" "${steps[@]}" --format md >> "$summary"
        record $?
    else
        echo "perf-gate: metabench perf (confirmation) failed" >&2; record 2
    fi
}

for gate in "${gates[@]}"; do
    case "$gate" in
    accuracy)
        # One thread, as results/baseline/ was made: tiny MLPs gain nothing from threads, and oversubscribed
        # threads on a busy 2-core box are ten times slower.
        if OMP_NUM_THREADS=1 "${metabench[@]}" run gate --out "$work/run" --no-progress --no-figures; then rc=0; else rc=$?; fi
        if [ "$rc" -ne 0 ]; then  # a cell failed: still compare (the gate names it), but never pass
            echo "perf-gate: metabench run gate exited $rc" >&2; record 1
        fi
        "${metabench[@]}" compare results/baseline "$work/run" --format md >> "$summary"; record $?
        ;;
    speed)
        speed_gate ;;
    *)
        echo "perf-gate: unknown gate '$gate' (expected accuracy and/or speed)" >&2; exit 2 ;;
    esac
    echo >> "$summary"
done
echo "perf-gate: summary in $summary; exit $worst" >&2
exit "$worst"

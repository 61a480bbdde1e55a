#!/usr/bin/env bash
# One self-boost round, exactly as a user runs it: each step is printed as a command line, then run.
#   scripts/round.sh DATASET ROUND CONFIG_PROFILE      e.g.  scripts/round.sh scifact 1 cpu-demo
# Reads configs/<PROFILE>/<DATASET>.yaml; stops at the first failing step and names it. Rerunning continues:
# steps whose manifest.json says complete, with today's parameters and inputs, are shown and skipped; a finished
# step whose parameters or inputs changed stops the script, naming them.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 DATASET ROUND CONFIG_PROFILE" >&2
  exit 2
fi
DATASET=$1 ROUND=$2 PROFILE=$3
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
CONFIG=${RIR_CONFIG_DIR:-configs}/$PROFILE/$DATASET.yaml   # RIR_CONFIG_DIR: another configs tree
[ -f "$CONFIG" ] || { echo "round.sh: no config $CONFIG" >&2; exit 2; }

mapfile -t STEPS < <("$PY" -m scripts.self_boost --config "$CONFIG" --round "$ROUND" --emit_commands)
[ ${#STEPS[@]} -gt 0 ] || { echo "round.sh: could not plan round $ROUND" >&2; exit 2; }
for line in "${STEPS[@]}"; do
  step=${line%%$'\t'*}
  rest=${line#*$'\t'}
  status=${rest%%$'\t'*}
  cmd=${rest#*$'\t'}
  if [ "$status" = complete ]; then
    echo "+ [$step] complete, skipped: $cmd"
    continue
  fi
  if [ "${status%% *}" = changed ]; then
    echo "round.sh: step '$step' finished with other parameters or inputs than now ${status#changed }; redo it" \
         "with: $PY -m scripts.self_boost --config $CONFIG --round $ROUND --overwrite true" >&2
    exit 1
  fi
  echo "+ [$step] $cmd"
  if ! eval "$cmd"; then
    echo "round.sh: round $ROUND stopped: step '$step' failed" >&2
    exit 1
  fi
done
echo "round.sh: round $ROUND of $DATASET ($PROFILE) done"

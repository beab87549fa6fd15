#!/usr/bin/env bash
# Drive the real console in tmux the way an operator would, and print the captured screens:
#   A. 160x48: approve one escalation with a double-tapped y (only one is approved), deny one,
#      lock (the rest runs in MOCK, the run finishes LOCKED), quit.
#   B. 40x12: the prompt cannot be shown in full, y does nothing; grow the window to 160x48 and
#      the same prompt is shown (armed again), then quit at the prompt (exit 5, INTERRUPTED).
# Usage: scripts/tmux_demo.sh [OUT_DIR]   (needs tmux and the project installed in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-$(mktemp -d)}"
session="phase24-demo-$$"
phase24="${PHASE24:-.venv/bin/phase24}"
# Its own system-wide lock state: the demo's lock never reaches the operator's other runs.
export PHASE24_STATE_DIR="$base/state"
capture() { echo "===== $1 ====="; tmux capture-pane -p -t "$session"; echo; }
wait_for() {  # wait until the screen shows $1 (at most 15 s)
  for _ in $(seq 1 150); do
    if tmux capture-pane -p -t "$session" | grep -q -- "$1"; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $1" >&2; capture "screen at timeout" >&2; return 1
}
approvals() { grep -c '"decision":"APPROVE"' "$1/operator_decisions.jsonl" 2>/dev/null || true; }
start() {  # start WIDTH HEIGHT OUT
  tmux kill-session -t "$session" 2>/dev/null || true
  tmux new-session -d -s "$session" -x "$1" -y "$2" \
    "PHASE24_STATE_DIR='$PHASE24_STATE_DIR' $phase24 console sample_plans/approvals.json --out '$3'; echo EXITED \$?; sleep 60"
}
trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT

out="$base/run_a"
start 160 48 "$out"
wait_for "APPROVAL NEEDED"
sleep 1  # the prompt arms 0.6 s after it is drawn
capture "A1. first HIGH-risk LIVE escalation, armed, waits for the operator"
tmux send-keys -t "$session" y y  # a double tap: the second y reaches the next prompt unarmed
sleep 1.5
capture "A2. double-tapped y: the first request approved, the next one is up and was NOT approved"
tmux send-keys -t "$session" n
sleep 1.5
capture "A3. denied with n"
tmux send-keys -t "$session" l
wait_for "SYSTEM LOCKED"
wait_for "FINISHED"
capture "A4. locked with l: pending approvals denied, the rest ran in MOCK, the run finished LOCKED"
tmux send-keys -t "$session" q
wait_for "EXITED"
capture "A5. quit with q (exit 6: LOCKED)"
echo "===== run A: operator_decisions.jsonl ($(approvals "$out") APPROVE line(s)) ====="
cat "$out/operator_decisions.jsonl"
echo

echo "===== the lock is system-wide: a new run would start locked. Unlock from a shell ====="
"$phase24" lock-status || true
"$phase24" unlock --reason "demo: part B" --yes
echo

out="$base/run_b"
start 40 12 "$out"
wait_for "ENLARGE"
sleep 1
tmux send-keys -t "$session" y
sleep 1
capture "B1. 40x12: the request cannot be shown in full; y did nothing"
tmux resize-window -t "$session" -x 160 -y 48
wait_for "y approve"
capture "B2. grown to 160x48: the same request, shown in full (arms again before it answers)"
tmux send-keys -t "$session" q
wait_for "EXITED"
capture "B3. quit at the prompt: waiting requests denied, nothing escalated, exit 5 (INTERRUPTED)"
echo "===== run B: operator_decisions.jsonl ($(approvals "$out") APPROVE line(s)) ====="
cat "$out/operator_decisions.jsonl"
echo "outputs in $base"

#!/usr/bin/env bash
# Drive the real console in tmux the way an operator would: start it on the approvals
# sample plan, approve one escalation, deny one, lock, quit, and print the captured screens.
# Usage: scripts/tmux_demo.sh [OUT_DIR]   (needs tmux and the project installed in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)/demo_run}"
session="phase24-demo-$$"
phase24="${PHASE24:-.venv/bin/phase24}"
capture() { echo "===== $1 ====="; tmux capture-pane -p -t "$session"; echo; }
wait_for() {  # wait until the screen shows $1 (at most 15 s)
  for _ in $(seq 1 150); do
    if tmux capture-pane -p -t "$session" | grep -q -- "$1"; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $1" >&2; capture "screen at timeout" >&2; return 1
}
trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT
tmux new-session -d -s "$session" -x 160 -y 48 \
  "$phase24 console sample_plans/approvals.json --out '$out' --approval-timeout 120; echo EXITED \$?; sleep 60"
wait_for "APPROVAL NEEDED"
capture "1. first HIGH-risk LIVE escalation waits for the operator"
tmux send-keys -t "$session" y
sleep 1.5
wait_for "APPROVAL NEEDED"
capture "2. approved with y; the next escalation is up"
tmux send-keys -t "$session" n
sleep 1.5
capture "3. denied with n"
tmux send-keys -t "$session" l
wait_for "SYSTEM LOCKED"
capture "4. locked with l: pending approvals denied, MOCK only"
tmux send-keys -t "$session" q
wait_for "EXITED"
capture "5. quit with q"
echo "===== operator_decisions.jsonl ====="
cat "$out/operator_decisions.jsonl"
echo "outputs in $out"

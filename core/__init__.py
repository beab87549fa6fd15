"""Phase 24 core: tool contracts, the execution controller, conflict resolution,
orchestration, feedback, monitoring, the harness and the audit journal.

A plain library: it never imports the console or Textual, and never prints.
"""

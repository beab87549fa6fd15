"""The MCP gateway: any MCP client\x27s tool calls through the Phase 24 gate."""

"""The operator's side: the command line (`phase24`) and the Textual console."""

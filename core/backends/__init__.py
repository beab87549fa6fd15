"""The shipped local backends: real effects on files, a SQLite database and an outbox."""

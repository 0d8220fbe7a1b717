"""asc: acoustic scene classification."""

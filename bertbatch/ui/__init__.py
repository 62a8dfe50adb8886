"""What a person or a script sees: terminal tables, `--output` formats and JSON fields, progress
bars, timestamps."""

"""The text side of a model, in the Celery process (no torch): tokenizing pairs into flat arrays, NONE/END
truncation, finding identical pairs."""

"""What the front door and the workers both import: settings, wire schemas, errors, Celery config."""

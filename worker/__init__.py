"""The long-running side: the Celery app, settings, the store (SQLAlchemy) and the CLI."""

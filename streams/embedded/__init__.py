"""The embedded pipeline (`callwatch run`): one process, no external services."""

"""Self-contained HTML deviation reports."""

__all__: list[str] = []

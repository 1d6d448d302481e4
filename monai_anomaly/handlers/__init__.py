"""monai_anomaly.handlers."""

__all__: list[str] = []

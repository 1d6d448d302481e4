"""monai_anomaly.metrics."""

__all__: list[str] = []

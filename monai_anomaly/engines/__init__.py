"""monai_anomaly.engines."""

__all__: list[str] = []

"""monai_anomaly.data."""

__all__: list[str] = []

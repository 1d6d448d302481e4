"""monai_anomaly.utils."""

__all__: list[str] = []

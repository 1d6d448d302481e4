"""monai_anomaly.transforms."""

__all__: list[str] = []

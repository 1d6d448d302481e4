"""monai_anomaly.apps."""

__all__: list[str] = []

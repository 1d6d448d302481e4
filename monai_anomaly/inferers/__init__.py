"""monai_anomaly.inferers."""

__all__: list[str] = []

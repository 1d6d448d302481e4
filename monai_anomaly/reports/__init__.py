"""monai_anomaly.reports."""

__all__: list[str] = []

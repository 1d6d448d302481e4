"""monai_anomaly.scoring."""

__all__: list[str] = []

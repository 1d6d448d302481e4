"""monai_anomaly.networks."""

__all__: list[str] = []

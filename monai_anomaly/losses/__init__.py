"""monai_anomaly.losses: training losses of the reconstruction methods."""

__all__: list[str] = []

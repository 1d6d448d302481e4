"""monai_anomaly.losses: training losses of the reconstruction methods."""

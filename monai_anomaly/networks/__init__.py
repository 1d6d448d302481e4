"""monai_anomaly.networks."""

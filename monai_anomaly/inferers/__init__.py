"""monai_anomaly.inferers."""

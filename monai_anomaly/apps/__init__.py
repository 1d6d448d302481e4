"""monai_anomaly.apps."""

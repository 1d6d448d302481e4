"""monai_anomaly.scoring."""

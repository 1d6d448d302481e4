"""``python -m monai_anomaly``: see :mod:`monai_anomaly.cli`."""

from monai_anomaly.cli import main

if __name__ == "__main__":
    main()

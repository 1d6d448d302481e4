"""Install monai_anomaly: ``pip install torch==2.13.0`` (or the CUDA build you want) first, then ``pip install -e .``."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in Path("monai_anomaly/utils/version.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

setup(
    name="monai_anomaly",
    version=version["__version__"],
    description="Unsupervised anomaly detection in medical images: a MONAI plugin",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["monai_anomaly", "monai_anomaly.*"]),
    include_package_data=True,
    package_data={
        "monai_anomaly": [
            "sample_data/*.csv",
            "sample_data/*.md",
            "sample_data/normal/*.png",
            "sample_data/abnormal/*/*.png",
            "sample_data/volumes/*.nii.gz",
            "sample_data/volumes/*.csv",
            "sample_data/volumes/*.md",
        ]
    },
    install_requires=[
        "torch>=2.2",
        "monai>=1.4",
        "pytorch-ignite>=0.4.11",
        "numpy",
        "nibabel>=5",
        "pydicom>=2.4",
        "SimpleITK>=2.2",
        "Pillow>=9",
        "scikit-learn>=1.2",
        "scipy",
        "tensorboard",
        "matplotlib>=3.6",
        "pyyaml",
        "fire",
        "tqdm",
        "einops",  # MONAI DiffusionModelUNet (attention blocks)
        "imagehash>=4.3",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout", "ruff", "jsonschema"],
        # monailabel 0.8.5 declares sam2 (needs torchvision); install it with --no-deps, see README.
        "label": ["monailabel==0.8.5"],
    },
    entry_points={"console_scripts": ["monai-anomaly=monai_anomaly.cli:main"]},
)

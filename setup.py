from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.split("#")[0].strip()
    for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="vlt",
    version="0.1.0",
    description="Pretraining and finetuning of vision-language transformers",
    packages=find_packages(include=["vlt", "vlt.*"]),
    python_requires=">=3.9",
    install_requires=requirements,
)

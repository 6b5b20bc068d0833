"""Install the ``core``, ``app`` and ``resources`` folders as ``embridge.core``, ``embridge.app`` and
``embridge.resources``.

The folders keep the names the project layout gives them, but generic top-level packages called ``core``
and ``app`` would collide with other projects' packages in one environment, so the wheel (and the
editable install) places them under the ``embridge`` namespace. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = {"embridge.core": "core", "embridge.app": "app", "embridge.resources": "resources"}

packages = [f"embridge.{name}" for name in find_packages(include=["core", "core.*", "app", "app.*"])]

setup(  # resources/demo and icons are data, each listed as a package so setuptools installs it without a warning
    packages=[*packages, "embridge.resources", "embridge.resources.demo", "embridge.resources.icons"],
    package_dir=FOLDERS,
    package_data={"embridge.core": ["py.typed"], "embridge.resources.demo": ["*"], "embridge.resources.icons": ["*"]},
)

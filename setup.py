"""Packages to install: `landscape` and `fusion` as they are, and the `cli/` folder as
`landscape_cli`, a name that cannot collide with another project's top-level `cli` (everything else
is in setup.cfg)."""

from setuptools import find_packages, setup

CLI = find_packages(include=["cli", "cli.*"])
setup(
    packages=[
        *find_packages(include=["landscape", "landscape.*", "fusion", "fusion.*"]),
        *(f"landscape_cli{name[len('cli') :]}" for name in CLI),
    ],
    package_dir={f"landscape_cli{name[len('cli') :]}": name.replace(".", "/") for name in CLI},
)

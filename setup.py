"""Build the optional native block-counting hook; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vkckpt.engine._blockhook",
            ["vkckpt/engine/blockhook.c"],
            optional=True,
        )
    ]
)

"""Build the optional native modules; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vkckpt.engine._blockhook",
            ["vkckpt/engine/blockhook.c"],
            optional=True,
        ),
        # Lazy thaw (vkckpt/host/lazypages.py); without it every thaw loads eagerly.
        Extension(
            "vkckpt.host._lazypages",
            ["vkckpt/host/lazypages.c", "vkckpt/host/framescan.c"],
            libraries=["z"],
            optional=True,
        ),
    ]
)

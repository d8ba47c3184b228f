"""The Cython extension list; everything else lives in pyproject.toml.

FCHANNEL_DEBUG=1 builds with line tracing and writes annotated HTML
(`cython -a`) next to each .pyx, for coverage and profiling.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FCHANNEL_DEBUG") == "1"

macros = [("CYTHON_TRACE_NOGIL", "1"), ("CYTHON_TRACE", "1")] if DEBUG else []
cflags = ["-O0", "-g"] if DEBUG else ["-O2"]

extensions = [
    Extension("fchannel._event", ["fchannel/_event.py"],
              define_macros=macros, extra_compile_args=cflags),
    Extension("fchannel.file._codec", ["fchannel/file/_codec.pyx"],
              libraries=["z"], define_macros=macros, extra_compile_args=cflags),
    Extension("fchannel.file._queue", ["fchannel/file/_queue.pyx"],
              define_macros=macros, extra_compile_args=cflags),
]

setup(
    ext_modules=cythonize(
        extensions,
        annotate=DEBUG,
        compiler_directives={"linetrace": DEBUG, "language_level": 3},
    ),
)

"""coursekit: validate, build, deploy and tear down a course's Jupyter fleet."""

__version__ = "0.1.0"

"""zephyr-recipes: declarative recipes for the Zephyr alignment method on top of TRL."""

__version__ = "0.1.0"

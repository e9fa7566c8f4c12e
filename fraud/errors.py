"""One exception hierarchy for the whole product.

Every message names the bad value and where it came from (file and line, topic and
offset, URI, option name), so that a user can act on it without reading code.
"""
from __future__ import annotations


class FraudError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigError(FraudError):
    """A setting or command-line option has a bad value."""


class SchemaError(FraudError):
    """Input lacks a required column, a column mapping names an absent column, or a column has an unusable type."""


class InputError(FraudError):
    """An input file cannot be read at all: missing, a directory, empty, not UTF-8, not the format its name says."""


class ValidationError(FraudError):
    """One or more input rows are invalid; ``problems`` lists them."""

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = problems


class ModelError(FraudError):
    """A model is not fitted, cannot be loaded, or lacks what the data needs."""


class NotFittedError(ModelError, AttributeError):
    """An estimator was used before ``fit``."""


class StateError(FraudError, ValueError):
    """A saved online state (a checkpoint) cannot be read back: not of the current format, malformed, or naming a
    state class outside the allowlist."""


class RegistryError(FraudError):
    """The MLflow tracking store / model registry is unreachable or lacks a model."""


class BrokerError(FraudError):
    """The Kafka broker is unreachable or refused an operation."""

"""Failures a plugin reports, each with the contract's error code."""

from __future__ import annotations

from wit_world.imports import iot2mqtt_connector_types as _types


class ConnectorError(Exception):
    """A failure the host reports with :attr:`code` and the message."""

    code = "PLUGIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wit(self) -> _types.Error:
        """The WIT `error` this failure crosses the boundary as."""
        return _types.Error_Other(_types.CodedError(self.code, self.message))


class InvalidValue(ConnectorError):
    """A value in the command has the wrong type or is out of range."""

    code = "INVALID_VALUE"

    def wit(self) -> _types.Error:
        return _types.Error_InvalidValue(self.message)


class ReadOnly(ConnectorError):
    """The device takes no commands."""

    code = "READ_ONLY"

    def wit(self) -> _types.Error:
        return _types.Error_ReadOnly(self.message)


class Unreachable(ConnectorError):
    """The device does not answer."""

    code = "DEVICE_UNREACHABLE"

    def wit(self) -> _types.Error:
        return _types.Error_Unreachable(self.message)


class Unsupported(ConnectorError):
    """Keys of the command, or a tool, that the device does not support."""

    code = "UNSUPPORTED_PROPERTY"

    def wit(self) -> _types.Error:
        return _types.Error_Unsupported(self.message)


class CommandFailed(ConnectorError):
    """The device refused or failed the command."""

    code = "COMMAND_FAILED"

    def wit(self) -> _types.Error:
        return _types.Error_Failed(self.message)


class CodedError(ConnectorError):
    """A failure with a code of the plugin's choosing, UPPER_SNAKE_CASE (`AUTH_FAILED`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

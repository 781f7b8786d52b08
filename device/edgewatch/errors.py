"""Domain exceptions.

Every exception raised on purpose by edgewatch derives from
:class:`EdgewatchError` and carries the one line a user should read. The
command line turns these into that line and a non-zero exit code; anything
else is a bug and keeps its traceback.

Messages never contain pixel data, embeddings or face coordinates: an
exception can end up in a log, and logs must stay free of biometric data.
"""


class EdgewatchError(Exception):
    """Base class: the message is what the user sees."""

    exit_code = 1


class FrameError(EdgewatchError):
    """Processing a frame failed with an error that was not edgewatch's own.

    Its message names only the original error's type: a library's message can
    hold the arrays it was given (dlib prints whole images), and the original
    traceback's frames still reference them.
    """


class ConfigError(EdgewatchError):
    """A configuration value or command-line option is invalid."""

    exit_code = 2


class InputError(EdgewatchError):
    """An input file (video, image, CSV) is missing, corrupt or unsupported."""

    exit_code = 3


class CameraError(EdgewatchError):
    """A camera backend cannot deliver frames (not configured, closed, failed)."""

    exit_code = 4


class ModelError(EdgewatchError):
    """A model file is missing, altered (hash mismatch) or cannot be run."""

    exit_code = 5

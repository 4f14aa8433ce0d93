"""The few exceptions a user may see: each carries a message a person can act on."""


class MasukaError(Exception):
    """Base for expected failures; the UI shows them as ``gr.Error``, the CLI exits with code 2."""


class InvalidInput(MasukaError):
    """A parameter, file or name given by the user is not acceptable."""


class NotFound(MasukaError):
    """A model, dataset, job, LoRA or file that was asked for does not exist (or is not yours)."""


class ModelUnavailable(MasukaError):
    """Model weights cannot be loaded: not downloaded, gated, offline or broken."""


class GPUBusy(MasukaError):
    """The GPU is held by another job and the caller chose not to wait."""


class Cancelled(MasukaError):
    """The user stopped the job; what was finished before the stop is kept."""


class ProviderError(MasukaError):
    """A remote provider refused or failed a request; the message is the provider's own."""

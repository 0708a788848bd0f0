"""One exception family, so the CLI can turn any expected failure into one clear line."""


class KananaError(Exception):
    """An expected failure the user can act on; the CLI prints its message and exits non-zero."""

    exit_code = 2


class UnknownModelError(KananaError):
    """The --model value is neither a registry key, a local folder nor a plausible hub id."""


class UnknownBenchmarkError(KananaError):
    """A --benchmarks value names no benchmark of the selected protocols."""


class DataUnavailableError(KananaError):
    """A dataset could be found neither in the mirror nor on the hub."""


class ConfigError(KananaError):
    """A protocol, task or registry file is malformed."""


class EngineError(KananaError):
    """The inference engine could not be built or reached (missing vLLM, endpoint down)."""


class ResultsError(KananaError):
    """A stored run is missing, malformed or fails its schema."""

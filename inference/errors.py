"""User-facing errors and the one place that turns them into a one-line message + exit code 2.

Every CLI in the project calls :func:`run_cli`. A :class:`UserError` (bad input file, missing
split, unknown config key, ...) is printed as a single ``error: ...`` line naming file, line and
field, with exit code 2 and no traceback (``--debug`` shows it). Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import contextvars
import logging
import os
import sys
from typing import Callable, Sequence


# True while run_cli runs a CLI for real: only then must the input paths its options name exist already
# (inference.option_checks). Elsewhere (a driver or test parsing step configs) they may be made by earlier steps.
FOR_A_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("for_a_run", default=False)


class UserError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 line: int | None = None, field: str | None = None):
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return (", ".join(where) + ": " if where else "") + self.detail


class GeneratorError(RuntimeError):
    """A generator backend gave up (after its bounded retries). Never contains the API key."""


def setup_logging(debug: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Third-party chatter (HTTP request lines, weight-loading reports) drowns the useful lines.
    for noisy in ("httpx", "openai", "urllib3", "filelock", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:  # weight-loading reports and bars on every model load; our own bars show the real work
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def run_cli(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)``; map UserError/GeneratorError to a one-line error and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    setup_logging(debug)
    running = FOR_A_RUN.set(True)
    try:
        code = main(argv)
    except (UserError, GeneratorError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to continue", file=sys.stderr)
        sys.exit(130)
    finally:
        FOR_A_RUN.reset(running)
    sys.exit(code or 0)

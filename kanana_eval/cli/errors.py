"""Bad input is one line on stderr and exit status 2, whether argparse or a command finds it.

argparse's own `error` prints the whole usage block before the message (18 lines for `run`);
`OneLineParser` prints only the message, naming the command and where its options are listed.
`error_line` is the one format every command's failures share.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import NoReturn

PROGRAM = "kanana-eval"
USAGE_ERROR = 2


def error_line(message: str) -> str:
    """`kanana-eval: error: <message>` on one line, however long or multi-line the message."""
    return f"{PROGRAM}: error: {textwrap.shorten(str(message), 400, placeholder=' …')}"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser (and, through `add_subparsers`, its subparsers) that errs in one line."""

    def error(self, message: str) -> NoReturn:
        """Print `kanana-eval: error: <command>: <message> (options: <command> --help)`, exit 2."""
        command = self.prog.removeprefix(PROGRAM).strip()
        where = f"{command}: " if command else ""
        print(error_line(f"{where}{message} (options: {self.prog} --help)"), file=sys.stderr)
        sys.exit(USAGE_ERROR)

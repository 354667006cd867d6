"""The ``funcspace`` command: run a connectivity study, write its report, show where it stands.

::

    funcspace study [CONFIG] --out DIR [--workers N] [--scheduler ADDRESS]
    funcspace report DIR
    funcspace show DIR

The one module of the project that parses arguments and prints. Every error funcspace reports
(a missing or damaged store, a bad configuration) becomes one line on stderr and exit status 1;
argparse's usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from funcspace.errors import FuncspaceError

__all__ = ["main"]

log = logging.getLogger("funcspace")

_DASK = "pip install 'dask[distributed]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``funcspace`` command with ``argv`` (default: ``sys.argv[1:]``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name.

    Returns
    -------
    int
        The exit status: 0 on success, 1 for an error (one line on stderr), 130 when
        interrupted. ``--help`` and usage errors exit through argparse (``SystemExit``).

    Example
    -------
    >>> main(["show", "/nonexistent/study"])
    1
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="funcspace: %(message)s",
    )
    try:
        return args.run(args)
    except FuncspaceError as e:
        return _fail(str(e))
    except OSError as e:  # a folder that cannot be written, a disk that is full
        return _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
    except KeyboardInterrupt:
        print(
            "funcspace: interrupted; what was finished is kept: run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return 130


def _fail(message: str) -> int:
    print(f"funcspace: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funcspace",
        description=(
            "Connectivity studies of neural-network minima: train minimizers, measure the "
            "barriers between them, draw the map."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    study = commands.add_parser(
        "study",
        help="run (or resume) a connectivity study",
        description=(
            "Run a connectivity study into a store directory, or resume an interrupted one "
            "(finished work is never redone), then write its HTML report there."
        ),
    )
    study.add_argument(
        "config",
        nargs="?",
        type=Path,
        metavar="CONFIG",
        help="a TOML file (tables [data], [model], [[optimizers]], ...); default: the default "
        "study (MNIST-1D, a ReLU MLP, SGD, RSGD and ADV minima)",
    )
    study.add_argument("--out", required=True, type=Path, metavar="DIR", help="the store directory")
    study.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="local worker processes (default 1: in this process)",
    )
    study.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"a Dask scheduler (tcp://host:8786) to run the work on; needs {_DASK}",
    )
    study.set_defaults(run=_study)

    report = commands.add_parser(
        "report",
        help="write a study's HTML report",
        description="Write DIR/report.html (self-contained: figures embedded, nothing loaded "
        "from the network) and print its path.",
    )
    report.add_argument("dir", type=Path, metavar="DIR", help="the store directory")
    report.set_defaults(run=_report)

    show = commands.add_parser(
        "show",
        help="summarize a study",
        description="Print a study's configuration key, its counts of minimizers, paths and "
        "work units by state, and its table of results.",
    )
    show.add_argument("dir", type=Path, metavar="DIR", help="the store directory")
    show.set_defaults(run=_show)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


# ----------------------------------------------------------------------------- the commands


def _study(args: argparse.Namespace) -> int:
    from .config import StudyConfig
    from .report import write_report

    config = StudyConfig() if args.config is None else StudyConfig.from_toml(args.config)
    client = None
    executor = None
    if args.scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            return _fail(f"--scheduler needs Dask's distributed scheduler: {_DASK}")
        try:
            client = Client(args.scheduler)
        except (OSError, TimeoutError) as e:
            return _fail(f"cannot reach the Dask scheduler at {args.scheduler}: {e}")
        executor = client.get_executor()
    from . import runner

    try:
        result = runner.run(config, args.out, workers=args.workers, executor=executor)
    finally:
        if client is not None:
            client.close()
    print(result.table())
    print(f"report: {write_report(args.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.dir))
    return 0


def _show(args: argparse.Namespace) -> int:
    from .report import summary
    from .store import StudyStore

    with StudyStore.open(args.dir, readonly=True, verify=False) as store:
        head = summary(store, tables=False)
        tables = summary(store, tables=True)[len(head) :]
    from . import runner

    table = None
    try:
        table = "\n\n" + runner.load(args.dir).table()
    except FuncspaceError as e:  # an unfinished study: the store's own tables say more
        log.info("no study result to show (%s); showing the store's tables", e)
    print(head + (table if table is not None else tables))
    return 0

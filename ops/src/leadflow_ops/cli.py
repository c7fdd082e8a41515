"""Console command `leadflow-ops`: recovery tools for SREs (ops/README.md, decision 0044).

Each command group is one module of `leadflow_ops.commands` with a `register(commands, common)`
function that adds its subcommands; each subcommand sets `run(args, settings) -> exit status`.
A new group is a new module listed in COMMAND_GROUPS.

Exit status: 0 done; 1 done, but some items need the operator (e.g. a refused replay);
2 the command could not run (usage, settings, Kafka or MongoDB unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from leadflow_ops.commands import asyncapi, contact, crm, dlq, seed, settings_reference
from leadflow_ops.errors import OpsError
from leadflow_ops.output import note
from leadflow_ops.settings import OpsSettings
from leadflow_shared.settings_catalog import SettingsRefusedError, nearest_setting, read_settings, unknown_variables

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace, OpsSettings], Coroutine[Any, Any, int]]

COMMAND_GROUPS: tuple[Register, ...] = (
    dlq.register,
    crm.register,
    seed.register,
    contact.register,
    asyncapi.register,
    settings_reference.register,
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="leadflow-ops",
        description="Recovery tools for leadflow. Kafka and MongoDB settings come from OPS_* variables, as the "
                    "services' do: OPS_KAFKA__BOOTSTRAP_SERVERS, OPS_KAFKA__SECURITY_PROTOCOL, OPS_MONGO__URL ...",
    )  # fmt: skip
    root.add_argument("-v", "--verbose", action="store_true", help="log the Kafka and MongoDB clients' warnings")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="one JSON document on stdout instead of lines")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(commands, common)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # The clients log connection trouble as they retry; the command reports the outcome itself.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    command: Run = args.run
    _warn_of_unknown_variables()
    try:
        settings = read_settings(OpsSettings)
    except SettingsRefusedError as refused:  # named and explained as the services do, never a value shown
        return _fail("invalid OPS_* settings:" + "".join(f"\n  {r.setting}: {r.reason}" for r in refused.refusals))
    try:
        return asyncio.run(command(args, settings))
    except OpsError as exc:
        return _fail(str(exc))
    except KafkaError as exc:
        return _fail(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}")
    except PyMongoError as exc:  # the message names hosts, never the URL's credentials
        return _fail(f"MongoDB: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    except KeyboardInterrupt:
        return _fail("interrupted")


def _warn_of_unknown_variables() -> None:
    """An OPS_ variable no setting reads would be ignored without a word (decision 0084): name it, not its value."""
    for name in unknown_variables(OpsSettings, os.environ):
        nearest = nearest_setting(OpsSettings, name)
        note(
            f"leadflow-ops: warning: {name} is not a setting: ignored"
            + (f" (did you mean {nearest}?)" if nearest else "")
        )


def _fail(message: str) -> int:
    note(f"leadflow-ops: error: {message}")
    return 2

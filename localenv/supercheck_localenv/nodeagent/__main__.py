"""``python -m supercheck_localenv.nodeagent --kubeconfig ... --node-name ...`` (see config.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .agent import NodeAgent
from .config import AgentConfig, parse_args


async def _run(cfg: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await NodeAgent(cfg).run(stop)


def main(argv: list[str] | None = None) -> int:
    cfg, verbose = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger(__name__).info("node agent %s starting (pid %d)", cfg.node_name, __import__("os").getpid())
    asyncio.run(_run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m devcloud [--host 127.0.0.1] [--port 8775] [--state var/devcloud.json] [--delay 2]"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from . import catalogue
from .server import DevCloud


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devcloud",
        description=f"{catalogue.DESCRIPTION}: Keystone v3, Nova v2.1 and Glance v2 for "
        "openstacksdk, in one small process.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8775)
    parser.add_argument("--state", default=None, help="JSON file: servers survive a restart")
    parser.add_argument(
        "--delay", type=float, default=2.0, help="seconds in BUILD, powering-off, REBOOT …"
    )
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="token lifetime (s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    cloud = DevCloud(
        host=args.host,
        port=args.port,
        delay=args.delay,
        state_file=args.state,
        token_ttl=args.token_ttl,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(
        f"{catalogue.DESCRIPTION} on {cloud.url}\n"
        f"  auth_url {cloud.auth_url}  user {catalogue.ADMIN_USER}  password "
        f"{cloud.cloud.config.admin_password}  project {catalogue.ADMIN_PROJECT}  region "
        f"{catalogue.REGION}\n  state {args.state or '(memory only)'}  delay {args.delay}s",
        flush=True,
    )
    try:
        cloud.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cloud.cloud.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

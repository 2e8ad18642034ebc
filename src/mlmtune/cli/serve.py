"""`mlmtune serve`: the fill-mask page and JSON API."""

from __future__ import annotations

from .args import port_number, positive_int, recover_model_folders, seconds


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="fill-mask web page and JSON API")
    p.add_argument("--model", required=True, help="model folder or Hugging Face id")
    p.add_argument("--compare", metavar="BASE", help="a second model shown beside it (e.g. the base model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=port_number, default=8000, help="port, 0 to 65535; 0 picks a free one (default: 8000)")
    p.add_argument("--timeout-request", type=seconds, default=10, metavar="SECONDS",
                   help="close a connection whose request (headers and body) is not all in after this long (default: 10)")
    p.add_argument("--timeout-keep-alive", type=seconds, default=5, metavar="SECONDS",
                   help="close an idle connection between requests after this long (default: 5)")
    p.add_argument("--max-connections", type=positive_int, default=256, metavar="N",
                   help="connections served at once; a request beyond them gets 503 (default: 256)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serve.server import run_server

    recover_model_folders(args.model, args.compare)
    return run_server(args.model, compare=args.compare, host=args.host, port=args.port,
                      timeout_keep_alive=args.timeout_keep_alive, timeout_request=args.timeout_request,
                      max_connections=args.max_connections)

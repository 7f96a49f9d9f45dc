"""``--scale-out`` (simulate, sweep, best) and the rank-order flags of ``simulate``: beyond one NVLink domain.

``--scale-out NAME`` puts the hardware's GPUs on a named network (helix.specs.networks: ndr400-ib,
xdr800-ib, roce400); ``--kvp-inner`` / ``--ep-inner`` choose which attention / FFN dimension is innermost
in the rank order, so its groups stay inside a domain (helix.placement). The search tries both orders.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from helix.errors import HelixInputError
from helix.specs.networks import networks, with_scale_out


def add_scale_out_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale-out", default=None, metavar="NETWORK",
                   help=f"the network between NVLink domains, one port per GPU: {', '.join(networks())} "
                        "(default: the hardware preset's)")


def hardware_with_scale_out(hw, args):
    return with_scale_out(hw, getattr(args, "scale_out", None))


def add_rank_order_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kvp-inner", action="store_true",
                   help="rank order: KVP innermost in attention (consecutive ranks), TPA strided (helix only)")
    p.add_argument("--ep-inner", action="store_true",
                   help="rank order: EP innermost in the FFN (consecutive ranks), TPF strided")


def layout_with_rank_order(layout, args):
    """The layout with the flags' rank order; a flag the strategy cannot use is an error naming it."""
    if args.kvp_inner and layout.strategy != "helix":
        raise HelixInputError("--kvp-inner", f"orders Helix's KVP x TPA ranks; it conflicts with --strategy "
                              f"{layout.strategy}")
    return replace(layout, kvp_inner=bool(args.kvp_inner), ep_inner=bool(args.ep_inner))

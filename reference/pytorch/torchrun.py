#!/usr/bin/python3
"""`torchrun` for Debian 12's PyTorch 1.13 under Python 3.11.

Python 3.11 no longer iterates zero-valued IntFlag members, so torch 1.13's Std.from_str("0") returns None and
/usr/bin/torchrun dies with "AttributeError: 'NoneType' object has no attribute 'get'" (in to_map) before
starting any worker. This wrapper fixes Std.from_str and then runs torch.distributed.run exactly as torchrun:

    /usr/bin/python3 reference/pytorch/torchrun.py --nproc_per_node=8 reference/pytorch/gpt2.py --flag=value ...

Harmless on PyTorch 2.x (where plain torchrun works).
Unless the command line names a rendezvous (--master_port, --rdzv_endpoint, --standalone), it also picks a free
local port instead of torchrun's fixed 29500, so that several runs on one machine do not collide
("Address already in use").
"""
import re
import socket
import sys

try:
    from torch.distributed.elastic.multiprocessing import api as _api

    if _api.Std.from_str("0") is None:
        def _from_str(cls, vm):
            if re.match(_api._VALUE_REGEX, vm):
                return cls(int(vm))
            if re.match(_api._MAPPING_REGEX, vm):
                return {int(i): cls(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
            raise ValueError(f"{vm} does not match: <{_api._VALUE_REGEX}> or <{_api._MAPPING_REGEX}>")

        _api.Std.from_str = classmethod(_from_str)
except Exception:  # layout differs (newer torch): nothing to fix
    pass

from torch.distributed.run import main  # noqa: E402


def _free_port_args(argv):
    """--master_addr/--master_port of a free local port, unless argv's launcher options already choose a rendezvous."""
    launcher = []
    for a in argv:
        if not a.startswith("-"):
            break  # the training script: what follows is its own flags
        launcher.append(a.split("=", 1)[0].replace("-", "_").lstrip("_"))
    if {"master_port", "rdzv_endpoint", "standalone"} & set(launcher):
        return []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return ["--master_addr=127.0.0.1", f"--master_port={s.getsockname()[1]}"]


if __name__ == "__main__":
    sys.exit(main(_free_port_args(sys.argv[1:]) + sys.argv[1:]))

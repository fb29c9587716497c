#!/usr/bin/python3
"""`torchrun` for Debian 12's PyTorch 1.13 under Python 3.11.

Python 3.11 no longer iterates zero-valued IntFlag members, so torch 1.13's Std.from_str("0") returns None and
/usr/bin/torchrun dies with "AttributeError: 'NoneType' object has no attribute 'get'" (in to_map) before
starting any worker. This wrapper fixes Std.from_str and then runs torch.distributed.run exactly as torchrun:

    /usr/bin/python3 reference/pytorch/torchrun.py --nproc_per_node=8 reference/pytorch/gpt2.py --flag=value ...

Harmless on PyTorch 2.x (where plain torchrun works).
"""
import re
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

if __name__ == "__main__":
    sys.exit(main())

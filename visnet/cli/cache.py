"""``visnet cache list | build MODEL | clear``: the fast-path cache of exported packages.

    visnet cache list                          # entries, most recently used first, and the total size
    visnet cache build default                 # the bundled model's package for float64 on the CPU
    visnet cache build model.pt --dtype float32 --device cuda
    visnet cache clear

``accel="auto"`` (the default of the calculator, ``visnet md``, ``visnet predict``, OpenMM and
TorchSim) fills the cache by itself for long jobs; ``build`` does it ahead of time, in the
foreground. The cache lives in ``$VISNET_CACHE_DIR`` (default ``~/.cache/visnet``) and is bounded
by ``$VISNET_CACHE_MAX_GB`` (default 2; least recently used entries go first).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from visnet.errors import VisnetError

if TYPE_CHECKING:
    from visnet.accel.cache import FastPathCache

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visnet cache``."""
    parser = argparse.ArgumentParser(
        prog="visnet cache",
        description="The fast-path cache of exported packages ($VISNET_CACHE_DIR, default ~/.cache/visnet).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,build,clear}")
    commands.add_parser("list", help="the cached packages, most recently used first")
    build = commands.add_parser("build", help="build a model's package now (a minute or so)")
    build.add_argument("model", help="model file, run folder member or bundled model name (default)")
    build.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="as the run will use")
    build.add_argument("--device", default="cpu", help="cpu or cuda (the package runs only there)")
    commands.add_parser("clear", help="remove every cached package")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet cache``; returns the exit code (errors reach ``visnet.cli``'s boundary)."""
    args = build_parser().parse_args(argv)
    from visnet.accel.cache import FastPathCache, max_cache_bytes

    cache = FastPathCache()
    if args.command == "list":
        entries = cache.entries()
        print(
            f"{cache.folder}: {len(entries)} package(s), {_size(sum(e.bytes for e in entries))} of {_size(max_cache_bytes())}"
        )
        for e in entries:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            print(
                f"  {e.digest[:12]}  {e.label or '?':<24} {e.dtype:<8} {e.device:<5} torch {e.torch:<16} {_size(e.bytes):>9}  used {used}"
            )
        return 0
    if args.command == "clear":
        print(f"removed {cache.clear()} package(s) from {cache.folder}")
        return 0
    return _build(cache, args.model, args.dtype, args.device)


def _build(cache: FastPathCache, model: str, dtype: str, device: str) -> int:
    from visnet.accel.auto import exportable
    from visnet.accel.build import build_now
    from visnet.accel.cache import cache_key
    from visnet.inference.resolve import resolve_model

    resolved = resolve_model(model, device=device, dtype=dtype, purpose="an exported package")
    if not exportable(resolved.model):
        raise VisnetError(
            f"{resolved.info.label}: visnet cache build needs a model file of an energy model (reduce_op 'sum')"
        )
    key = cache_key(resolved.model)
    found = cache.lookup(key)
    if found is None:
        print(f"visnet: exporting {resolved.info.label} ({dtype}, {device}): a minute or so", file=sys.stderr)
        start = time.perf_counter()
        outcome = build_now(cache, key, resolved.model, resolved.info.label)
        found = cache.lookup(key)
        if found is None:
            why = outcome.reason or "another process is building it; run again when it is done"
            raise VisnetError(f"could not build the package of {resolved.info.label}: {why}")
        print(f"built in {time.perf_counter() - start:.0f} s: {found}")
    else:
        print(f"already cached: {found}")
    return 0


def _size(count: int) -> str:
    return f"{count / 1024**2:.1f} MB" if count < 1024**3 else f"{count / 1024**3:.2f} GB"

"""Train/val/test splits by size or fraction with a seed, stored as ``splits.npz`` in the run folder.

A stored split is reused as long as it was made for the same number of structures, the same
requested sizes and seed, and the same data (a fingerprint of its contents, ``data_fingerprint``),
so a resumed run trains and validates on exactly the same structures.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from visnet.data.cache import atomic_savez
from visnet.data.structures import AtomsData

SPLITS_FILE = "splits.npz"
NAMES = ("train", "val", "test")


def resolve_size(size: int | float | str | None, total: int, name: str) -> int | None:
    """A size as a count: ints are counts, floats in (0, 1] and "N%" strings fractions of ``total``,
    None "the rest"."""
    if size is None:
        return None
    if isinstance(size, str):
        text = size.strip()
        try:
            size = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"num_{name}: cannot read {text!r} as a count, a fraction or a percentage like '80%'"
            ) from None
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"num_{name} must be an int (count), a float in (0, 1] (fraction) or None, got {size!r}")
    if isinstance(size, (float, np.floating)):
        if 0.0 < size <= 1.0:
            return int(round(size * total))
        if not (size > 1.0 and float(size).is_integer()):
            raise ValueError(f"num_{name}: a fraction must be in (0, 1] (or give a whole count), got {size}")
    if size < 0:
        raise ValueError(f"num_{name} must be >= 0, got {size}")
    return int(size)


def make_splits(
    total: int, num_train, num_val, num_test=None, seed: int = 0, source: str = "data"
) -> dict[str, np.ndarray]:
    """Random disjoint index sets.

    Args:
        total: number of structures.
        num_train, num_val, num_test: count (int), fraction (float in (0, 1]) or None (the rest);
            at most one may be None.
        seed: seed of the permutation.
        source: name of the data for error messages.

    Returns:
        {"train": (n_train,), "val": (n_val,), "test": (n_test,)} int64 indices.

    Raises:
        ValueError: the sizes add up to more than ``total``, or more than one is None.
    """
    sizes = [resolve_size(s, total, n) for s, n in zip((num_train, num_val, num_test), NAMES)]
    if sum(s is None for s in sizes) > 1:
        raise ValueError(f"at most one of num_train/num_val/num_test may be None (the rest), got {sizes}")
    fixed = sum(s for s in sizes if s is not None)
    if fixed > total:
        described = " + ".join(f"{n} {s}" for n, s in zip(NAMES, sizes) if s is not None)
        raise ValueError(f"split larger than the data: {described} = {fixed} > {total} structures in {source}")
    sizes = [total - fixed if s is None else s for s in sizes]
    perm = np.random.default_rng(seed).permutation(total)
    bounds = np.cumsum([0, *sizes])
    return {name: np.sort(perm[bounds[i] : bounds[i + 1]]).astype(np.int64) for i, name in enumerate(NAMES)}


def data_fingerprint(data: AtomsData) -> str:
    """Hex digest of the structures and labels of ``data`` as trained on (atomic numbers,
    positions, targets, forces, cells, pbc, target name and units), not of the file's name or
    layout: the same data gives the same fingerprint from any path. BLAKE2b, ~1 GB/s."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((data.target, sorted(data.units.items()))).encode())
    for name in ("z", "pos", "ptr", "y", "forces", "cell", "pbc"):
        array = getattr(data, name)
        if array is not None:
            array = np.ascontiguousarray(array)
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _request(total: int, num_train, num_val, num_test, seed: int) -> np.ndarray:
    """[total, train, val, test (counts; NaN for "the rest"), seed]: what a stored split is checked against."""
    sizes = [resolve_size(s, total, n) for s, n in zip((num_train, num_val, num_test), NAMES)]
    return np.array([total, *(np.nan if s is None else s for s in sizes), seed], dtype=np.float64)


def load_or_make_splits(
    run_dir: str | Path | None,
    total: int,
    num_train,
    num_val,
    num_test=None,
    seed: int = 0,
    source: str = "data",
    write: bool = True,
    replace_mismatched: bool = False,
    fingerprint: str | None = None,
) -> dict[str, np.ndarray]:
    """Reuse ``run_dir/splits.npz`` if it matches the request, else make the splits and write them.

    Args:
        replace_mismatched: a stored split made for other settings or data is replaced (a fresh
            run) instead of raising (resuming, evaluating).
        fingerprint: ``data_fingerprint`` of the data, recorded with new splits (with ``source``)
            and compared with a stored split's.

    Raises:
        ValueError: a stored split exists but was made for other data sizes, settings or data.
    """
    path = Path(run_dir) / SPLITS_FILE if run_dir is not None else None
    request = _request(total, num_train, num_val, num_test, seed)
    if path is not None and path.is_file():
        try:
            return read_splits(path, total, request, fingerprint, source)
        except ValueError as err:
            if not replace_mismatched:
                raise
            warnings.warn(f"{err}; making new splits for this fresh run", stacklevel=2)
    splits = make_splits(total, num_train, num_val, num_test, seed, source)
    if path is not None and write:
        identity = (
            {} if fingerprint is None else {"data_fingerprint": np.array(fingerprint), "data_source": np.array(source)}
        )
        atomic_savez(path, request=request, **identity, **{f"idx_{k}": v for k, v in splits.items()})
    return splits


def read_splits(
    path: str | Path,
    total: int | None = None,
    request: np.ndarray | None = None,
    fingerprint: str | None = None,
    source: str = "data",
) -> dict[str, np.ndarray]:
    """Read a ``splits.npz``; with ``request``, check it was made for the same settings, with
    ``fingerprint`` (``data_fingerprint`` of ``source``), for the same data (files written
    before fingerprints were recorded are not checked)."""
    with np.load(path, allow_pickle=False) as npz:
        splits = {name: npz[f"idx_{name}"].astype(np.int64) for name in NAMES}
        stored = npz["request"] if "request" in npz.files else None
        made_from = (str(npz["data_fingerprint"]), str(npz["data_source"])) if "data_fingerprint" in npz.files else None
    if fingerprint is not None and made_from is not None and made_from[0] != fingerprint:
        raise ValueError(
            f"{path} was made for other data: {made_from[1]} (fingerprint {made_from[0][:12]}), not {source} "
            f"(fingerprint {fingerprint[:12]}); its split indices would pick other structures. To train on "
            "other data start a new run in another folder (--trainer.default_root_dir); to fine-tune a "
            "trained model on new data, start from it there with --init MODEL"
        )
    if request is not None and stored is not None and not np.array_equal(stored, request, equal_nan=True):
        labels = ("structures", "num_train", "num_val", "num_test", "seed")
        same = lambda a, b: a == b or (np.isnan(a) and np.isnan(b))  # noqa: E731
        diff = ", ".join(
            f"{k}: stored {a:g} vs now {b:g}" for k, a, b in zip(labels, stored, request) if not same(a, b)
        )
        raise ValueError(
            f"{path} was made for other settings ({diff}); delete it, or use another run folder "
            "(--trainer.default_root_dir), to make new splits"
        )
    if total is not None:
        for name, idx in splits.items():
            if idx.size and (idx.min() < 0 or idx.max() >= total):
                raise ValueError(f"{path}: {name} indices out of range for {total} structures")
    return splits

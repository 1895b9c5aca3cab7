"""Prepared-set manifests: naming, reading, safety checks and verification (docs/DESIGN.md "Data").

A prepared set is a folder `<source>-<profile>-<N>f` (synthetic) or `<source>-<N>f` (footage) holding
`manifest.json` and the files it lists. Every path in a manifest is relative to its folder; `load_manifest`
refuses absolute paths, `..` and symlinks that leave the folder, so a manifest can never make the suite read
or trust a file outside its set.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from bench.errors import BenchError
from bench.fileio import UnreadableFile, atomic_write_json, load_json, sha256_file

MANIFEST = "manifest.json"
STAT_RECORD = "manifest.stat.json"  # beside the manifest: a cache of each file's stat when it last verified
STAT_FORMAT = "bench-stat/1"
VERIFY_MODES = ("fast", "full")  # fast: hash only files whose stat changed; full: hash every file
DATA_VERSION = 1  # bump when the rendering or layout changes: older sets then ask to be rebuilt
REQUIRED = ("source", "profile", "frames", "center", "resolution", "seed", "root", "gamma", "code_version",
            "samples", "sha256")
SAMPLE_KEYS = ("id", "split", "sequence", "blur", "sharp", "flow")
ENTRY_KEYS = ("frames", "first", "blur", "index")  # a sample's "packed" entry (`bench.data.packed.entry`)
FOOTAGE_SOURCES = ("gopro", "video")  # read from disk; their sets are named without a profile


def set_name(source: str, profile: str | None, n: int) -> str:
    """Folder name of a prepared set: synthetic data depends on the profile, footage does not."""
    if source in FOOTAGE_SOURCES:
        return f"{source}-{n}f"
    return f"{source}-{profile}-{n}f"


def data_digest(set_folder: Path | str) -> str:
    """The content digest of a prepared set: the sha256 of its manifest.json, which pins every file of the
    set by its own sha256. Results are reused only for the same digest, that is byte-identical data."""
    path = Path(set_folder) / MANIFEST
    try:
        return sha256_file(path)
    except OSError as err:
        raise BenchError(f"{path}: cannot read ({err.strerror or err}); prepare the set with bench prepare") \
            from None


def default_data_dir(option: str | Path | None = None) -> Path:
    """The data home: the option, else `$BENCH_DATA`, else `./datasets`."""
    return Path(option or os.environ.get("BENCH_DATA") or "datasets")


def repair_command(folder: Path, manifest: dict | None = None) -> str:
    """The `bench prepare` command that rebuilds or repairs the set in `folder`."""
    folder = Path(folder)
    parts = ["bench prepare"]
    m = manifest or {}
    source, profile, n = m.get("source"), m.get("profile"), m.get("frames")
    if not source:
        # Read what we can from the folder name when the manifest itself is unusable.
        bits = folder.name.split("-")
        if len(bits) >= 2 and bits[-1].endswith("f") and bits[-1][:-1].isdigit():
            source, n = bits[0], int(bits[-1][:-1])
            profile = bits[1] if len(bits) == 3 else None
    if source:
        parts.append(f"--source {source}")
    if m.get("root"):
        parts.append(f"--root {m['root']}")
    if n:
        parts.append(f"--frames {n}")
    if profile:
        parts.append(f"--profile {profile}")
    parts.append(f"--data-dir {folder.parent}")
    if m.get("seed") not in (None, 0):
        parts.append(f"--seed {m['seed']}")
    if m.get("gamma") is not None:
        parts.append(f"--gamma {m['gamma']}")
    if isinstance(m.get("video"), dict):
        # late: bench.data.video loads OpenCV, and `bench list` reads manifests without it
        from bench.data.video import option_flags

        parts.extend(option_flags(m["video"]))
    return " ".join(parts)


def safe_path(folder: Path, rel: object, where: Path, base: str | None = None,
              dirs: set[str] | None = None) -> Path:
    """The file a manifest path names, refusing anything that could point outside the set folder. A caller
    checking many paths of one set passes `base = real_folder(folder)` and one `dirs` set (the folders
    already seen to be real, not links), so each is computed once."""
    bad = f"{where}: unsafe path {rel!r}"
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BenchError(f"{bad}; a manifest lists relative paths only; rebuild the set with --fresh")
    if rel.startswith(("/", "~")) or ".." in rel.split("/"):  # strings: pathlib costs per path add up
        raise BenchError(f"{bad}; a manifest lists relative paths only; rebuild the set with --fresh")
    path = os.path.join(folder, rel)
    if base is not None and _no_link_below(folder, rel, set() if dirs is None else dirs):
        return Path(path)  # then its real path is base/rel: inside the set
    # realpath follows symlinks, so a link inside the set that leads out of it is caught here too.
    try:
        base = base or _real(folder)
        leads_out = os.path.lexists(path) and not _inside(_real(path), base)
    except (OSError, RuntimeError):  # a symlink loop
        raise BenchError(f"{bad} is a symbolic link loop; run `{repair_command(folder)}` to repair the "
                         "set") from None
    if leads_out:
        raise BenchError(f"{bad} leads outside {folder}; remove the link and rebuild the set with --fresh")
    return Path(path)


def real_folder(folder: Path) -> str | None:
    """The set folder with every symlink resolved, for `safe_path`; None when that fails (safe_path then
    says why)."""
    try:
        return _real(folder)
    except (OSError, RuntimeError):
        return None


def _real(path: Path | str) -> str:
    """`os.path.realpath` on strings (checking thousands of paths through pathlib costs seconds), raising
    RuntimeError on a symlink loop as `Path.resolve` does."""
    real = os.path.realpath(path)
    try:
        os.stat(real)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RuntimeError(f"symlink loop at {path}") from None
    return real


def _no_link_below(folder: Path, rel: str, dirs: set[str]) -> bool:
    """True when no component of `rel` below `folder` is a symlink, or one is missing (then the path names
    nothing); a few lstat calls where a full realpath costs one per component from the root. Folders found
    real are added to `dirs` and not looked at again."""
    here = str(folder)
    parts = rel.split("/")
    for i, part in enumerate(parts):
        here = os.path.join(here, part)
        if here in dirs:
            continue
        try:
            mode = os.lstat(here).st_mode
        except OSError:
            return True
        if stat.S_ISLNK(mode):
            return False
        if i < len(parts) - 1 and stat.S_ISDIR(mode):
            dirs.add(here)
    return True


def _inside(real: str, base: str) -> bool:
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _paths(sample: dict) -> list[str]:
    paths = [sample["blur"], *sample["sharp"], *(sample["flow"] or [])]
    if isinstance(sample.get("packed"), dict):
        paths += [sample["packed"]["frames"], sample["packed"]["blur"]]
    return paths


def _check_packed(sample: dict, where: Path, fix: str) -> None:
    """A sample's optional `packed` entry: where its frames and blur sit in the packed copy."""
    entry = sample.get("packed")
    if entry is None:
        return  # prepared before the packed copy existed: `bench prepare` adds it
    ok = isinstance(entry, dict) and all(k in entry for k in ENTRY_KEYS)
    if ok:
        ok = all(isinstance(entry[k], int) and not isinstance(entry[k], bool) and entry[k] >= 0
                 for k in ("first", "index"))
    if not ok:
        raise BenchError(f"{where}: sample {sample['id']!r} has a malformed packed entry; {fix}")


def load_manifest(folder: Path | str, verify: bool = False) -> dict:
    """Read and check `folder/manifest.json`; with `verify`, also check every file's sha256.

    Raises BenchError with one line naming the file and the command that repairs it.
    """
    folder = Path(folder)
    where = folder / MANIFEST
    if not where.is_file():
        raise BenchError(f"{where}: no prepared set here; run `{repair_command(folder)}`")
    try:
        manifest = load_json(where)
    except UnreadableFile as err:
        raise BenchError(f"{where}: manifest {err.reason}; "
                         f"run `{repair_command(folder)} --fresh`") from None
    fix = f"run `{repair_command(folder, manifest if isinstance(manifest, dict) else None)} --fresh`"
    if not isinstance(manifest, dict):
        raise BenchError(f"{where}: not a manifest object; {fix}")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise BenchError(f"{where}: missing keys {', '.join(missing)}; {fix}")
    n = manifest["frames"]
    if not isinstance(n, int) or n < 3 or n % 2 == 0 or manifest["center"] != (n + 1) // 2:
        raise BenchError(f"{where}: bad frames/center ({n!r}, {manifest['center']!r}); {fix}")
    if not isinstance(manifest["samples"], list) or not isinstance(manifest["sha256"], dict):
        raise BenchError(f"{where}: samples must be a list and sha256 a map; {fix}")
    digests = manifest["sha256"]
    base, dirs = real_folder(folder), set()
    for rel in digests:
        safe_path(folder, rel, where, base, dirs)
    for sample in manifest["samples"]:
        if not isinstance(sample, dict) or any(k not in sample for k in SAMPLE_KEYS):
            raise BenchError(f"{where}: a sample lacks one of {', '.join(SAMPLE_KEYS)}; {fix}")
        if sample["split"] not in ("train", "test"):
            raise BenchError(f"{where}: sample {sample['id']!r} has split {sample['split']!r}; {fix}")
        flows = sample["flow"]
        if not isinstance(sample["sharp"], list) or len(sample["sharp"]) != n or (
                flows is not None and (not isinstance(flows, list) or len(flows) != n)):
            raise BenchError(f"{where}: sample {sample['id']!r} does not list {n} frames; {fix}")
        _check_packed(sample, where, fix)
        for rel in _paths(sample):
            if rel not in digests:
                raise BenchError(f"{where}: {rel!r} has no sha256 entry; {fix}")
    if verify:
        verify_files(folder, manifest)
    return manifest


def damaged_files(folder: Path, manifest: dict, full: bool = False) -> list[tuple[str, str]]:
    """Every listed file that is missing or whose sha256 does not match: `(relpath, one-line message)`.

    Unless `full`, a file whose (size, mtime_ns, inode) equals the stat record's is taken as verified
    without hashing (docs/DESIGN.md "Data", "Verification"). When every file verifies, the record is
    rewritten with the stats seen, each taken before its file was hashed, so a write during the hash
    shows up as a changed stat next time."""
    fix = f"run `{repair_command(folder, manifest)}` again to repair it"
    pin = _manifest_pin(folder)
    known = {} if full or pin is None else read_stat_record(folder, pin)
    seen: dict[str, list[int]] = {}
    bad = []
    base, dirs = real_folder(folder), set()
    for rel, digest in manifest["sha256"].items():
        path = safe_path(folder, rel, folder / MANIFEST, base, dirs)
        key = _stat_key(path)
        if key is None:
            bad.append((rel, f"{path}: missing from the prepared set; {fix}"))
        elif known.get(rel) != key and sha256_file(path) != digest:
            bad.append((rel, f"{path}: content does not match its sha256 in the manifest; {fix}"))
        else:
            seen[rel] = key
    if not bad and pin is not None and seen != known:
        _write_stat_record(folder, pin, seen)
    return bad


def record_stats(folder: Path, manifest: dict) -> None:
    """After a build has written (or byte-compared) every file `manifest` lists, under the set's exclusive
    lock: record their stats, so the first verification after the build hashes nothing."""
    pin = _manifest_pin(folder)
    if pin is None:
        return
    keys = {rel: _stat_key(folder / rel) for rel in manifest["sha256"]}
    _write_stat_record(folder, pin, {rel: key for rel, key in keys.items() if key is not None})


def _stat_key(path: Path) -> list[int] | None:
    """[size, mtime_ns, inode] of a regular file (through a link inside the set), None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino] if stat.S_ISREG(st.st_mode) else None


def _manifest_pin(folder: Path) -> str | None:
    """The sha256 of the manifest as it is now: a stat record holds only for the manifest it was made with."""
    try:
        return sha256_file(folder / MANIFEST)
    except OSError:
        return None


def read_stat_record(folder: Path, pin: str) -> dict[str, list[int]]:
    """The stat record's files for the manifest with sha256 `pin`; empty when it is missing, unreadable,
    malformed or made for another manifest (it is a cache: anything doubtful means hashing)."""
    try:
        record = json.loads((folder / STAT_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(record, dict) or record.get("format") != STAT_FORMAT or record.get("manifest") != pin:
        return {}
    files = record.get("files")
    if not isinstance(files, dict):
        return {}
    return {rel: key for rel, key in files.items()
            if isinstance(key, list) and len(key) == 3 and all(type(v) is int for v in key)}


def _write_stat_record(folder: Path, pin: str, files: dict[str, list[int]]) -> None:
    """Best effort: a set that cannot take the record (read-only, full disk) is simply hashed again."""
    try:
        atomic_write_json(folder / STAT_RECORD, {"format": STAT_FORMAT, "manifest": pin, "files": files})
    except OSError:
        pass


def verify_files(folder: Path, manifest: dict, full: bool = True) -> None:
    """Check every listed file against its sha256 (`full=False`: only those whose stat changed); a mismatch
    raises a one-line BenchError (the first)."""
    bad = damaged_files(folder, manifest, full)
    if bad:
        raise BenchError(bad[0][1])


def split_counts(manifest: dict) -> dict[str, int]:
    counts = {"train": 0, "test": 0}
    for sample in manifest["samples"]:
        counts[sample["split"]] += 1
    return counts


def describe_sets(data_dir: Path | str) -> list[dict]:
    """One row per prepared set under `data_dir` for `bench list`.

    Each row: name, path, source, profile, frames, splits ({"train": samples, "test": samples}),
    resolution [h, w], seed, gamma, has_flow; a set whose manifest is unusable gets a row with `error`.
    """
    data_dir = Path(data_dir)
    rows: list[dict] = []
    if not data_dir.is_dir():
        return rows
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()):
        try:
            m = load_manifest(folder)
        except BenchError as err:
            rows.append({"name": folder.name, "path": str(folder), "error": str(err)})
            continue
        rows.append({
            "name": folder.name,
            "path": str(folder),
            "source": m["source"],
            "profile": m["profile"],
            "frames": m["frames"],
            "splits": split_counts(m),
            "resolution": m["resolution"],
            "seed": m["seed"],
            "gamma": m["gamma"],
            "has_flow": any(s["flow"] for s in m["samples"]),
        })
    return rows

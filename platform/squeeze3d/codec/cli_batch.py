"""Directory mode of the codec commands: run one file after another (or in threads), plan the outputs
(clashes, existing files, ``--force`` / ``--skip-existing``), and report every failure at the end."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from squeeze3d.errors import UserError


def progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(total=len(items), desc=desc, unit="file", file=sys.stderr, disable=len(items) < 2 or None)


def default_jobs() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def run_batch(files: list[Path], label: str, one, jobs: int = 1) -> int:
    """Run ``one(file) -> summary line`` over a directory's files; a bad file does not stop the others,
    and any failure makes the command exit 2 after listing each. ``jobs`` > 1: files run in that many
    threads, each with one torch thread (measured: two files at once on 2 cores run 1.9x faster than
    one file on two torch threads, whose small ops barely parallelise); the first file runs alone
    so models load once; lines print in input order."""
    def run(f: Path) -> tuple[str | None, str | None]:
        try:
            return one(f), None
        except UserError as e:
            msg = e.as_flag() if hasattr(e, "as_flag") else str(e)  # a setting: named by its flag
            # most errors already start with the file's path: print it once
            return None, msg if msg.startswith(f"{f}:") or msg.startswith(f"{f} ") else f"{f}: {msg}"

    failed = []
    bar = progress(files, label)
    jobs = max(1, min(int(jobs), len(files)))

    def report(result) -> None:
        line, err = result
        if line is not None and not bar.disable:
            bar.write(line, file=sys.stdout)  # above the bar, which stays at the bottom
        elif line is not None:
            print(line)
        else:
            failed.append(err)
        bar.update(1)

    if jobs == 1:
        for f in files:
            report(run(f))
    else:
        from concurrent.futures import ThreadPoolExecutor

        import torch

        report(run(files[0]))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(jobs) as ex:
                for result in ex.map(run, files[1:]):
                    report(result)
        finally:
            torch.set_num_threads(threads)
    bar.close()
    for msg in failed:
        print(f"squeeze3d: error: {msg}", file=sys.stderr)
    if failed:
        raise UserError(f"{len(failed)} of {len(files)} files failed")
    return 0


def decompress_jobs(headers: list, args) -> int:
    """As ``jobs_for``, over the pairs of the directory's neural files (``headers``: their containers,
    None for unreadable ones); fallback files need no model and decode in any thread."""
    from squeeze3d.codec.compressor import get_codec

    pairs = {c.pair for c in headers if c is not None and c.codec == "neural"}
    jobs = [jobs_for(get_codec(p, args.model, args.device), args) for p in sorted(pairs)]
    return min(jobs) if jobs else (args.jobs or default_jobs())


def jobs_for(codec, args) -> int:
    """Worker threads for a directory: ``--jobs``, else one per core when the pair's models allow it."""
    if args.jobs is not None:
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        if args.jobs > 1 and not codec.generator.thread_safe:
            raise UserError(f"--jobs {args.jobs}: pair {codec.pair.name}'s generator cannot decode in parallel "
                            "threads; use --jobs 1")
        return args.jobs
    return default_jobs() if codec.generator.thread_safe else 1


def skip_existing_output(src: Path, dst: Path, args) -> bool:
    """Single-file mode: True when ``dst`` exists and ``--skip-existing`` says leave it; an existing
    ``dst`` without ``--force`` is refused."""
    if dst.exists() and not dst.is_dir():
        if args.skip_existing:
            print(f"{src} -> {dst}: exists, skipped (--skip-existing)")
            return True
        if not args.force:
            raise exists_error(dst)
    return False


def exists_error(dst: Path) -> UserError:
    return UserError(f"{dst}: already exists; pass --force to overwrite it (or --skip-existing to keep it)")


def plan_outputs(pairs: list[tuple[Path, Path]], args, noun: str) -> list[tuple[Path, Path]]:
    """Directory mode, before anything is written: refuse outputs two inputs would share, and existing
    outputs unless --force (overwrite) or --skip-existing (drop those inputs, for resumable runs)."""
    by_out: dict[Path, list[Path]] = {}
    for src, out in pairs:
        by_out.setdefault(out, []).append(src)
    clashes = {o: s for o, s in by_out.items() if len(s) > 1}
    if clashes:
        shown = "; ".join(f"{', '.join(x.name for x in s)} -> {o.name}" for o, s in list(clashes.items())[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise UserError(f"{len(clashes)} output name(s) would be written by more than one input: {shown}{more}; "
                        f"rename the inputs so their names differ before the extension (nothing was written)")
    existing = [(s, o) for s, o in pairs if o.exists()]
    for _, o in existing:
        if o.is_dir():
            raise UserError(f"{o}: is a directory")
    if existing and args.skip_existing:
        print(f"skipping {len(existing)} of {len(pairs)} {noun} whose output exists (--skip-existing)",
              file=sys.stderr)
        keep = {s for s, _ in existing}
        return [(s, o) for s, o in pairs if s not in keep]
    if existing and not args.force:
        names = ", ".join(o.name for _, o in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise UserError(f"{len(existing)} of {len(pairs)} outputs already exist in {existing[0][1].parent} "
                        f"({names}); pass --force to overwrite them or --skip-existing to process only the "
                        f"missing ones (nothing was written)")
    return pairs

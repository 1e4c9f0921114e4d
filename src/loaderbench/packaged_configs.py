"""The configs that ship with loaderbench, and ``loaderbench-config``, which lists them and copies
one out to edit (as torchtune's ``tune ls`` and ``tune cp`` do)::

    loaderbench-config list
    loaderbench-config copy dataset/custom ./conf/dataset/my_data.yaml
    loaderbench --config-dir ./conf dataset=my_data

A copied option is found beside the packaged groups through Hydra's search path
(``--config-dir``, or ``hydra.searchpath=[file://./conf]``), so its ``defaults`` may name a
packaged option it extends. ``list`` and ``copy`` are not ``loaderbench`` subcommands because
there a bare word is a Hydra override.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PRIMARY = "config"  # the primary config, config.yaml at the top of the folder
USE = "loaderbench-config list shows them"


class NoSuchOption(LookupError):
    """The name is not a packaged group/option."""


def config_dir() -> Path:
    """The folder of the packaged configs: ``loaderbench/conf`` of an installed wheel, or the
    ``conf/`` of the source checkout this package runs from (an editable install, or
    ``PYTHONPATH=src``). The checkout's own folder, not whatever ``loaderbench.conf`` imports
    as: another install's mapping must not hand one checkout's code another's configs."""
    here = Path(__file__).resolve().parent
    for folder in (here / "conf", here.parent.parent / "conf"):  # a wheel; a src-layout checkout
        if (folder / f"{PRIMARY}.yaml").is_file():
            return folder
    raise FileNotFoundError(
        f"no packaged configs in {here / 'conf'}: this install of loaderbench is incomplete; "
        "reinstall it (pip install --force-reinstall <the wheel or the repository>)"
    )


def options(root: Path | None = None) -> dict[str, list[str]]:
    """Every option by group (``dataset`` -> ``[custom, fake, ...]``, ``hydra/launcher`` ->
    ``[slurm]``), groups in name order; the primary config is the group ``config`` alone."""
    root = root or config_dir()
    groups: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if rel.parent == Path("."):
            groups.setdefault(rel.stem, [])  # the primary config: a name, no options
        else:
            groups.setdefault(rel.parent.as_posix(), []).append(rel.stem)
    return dict(sorted(groups.items()))


def source(name: str, root: Path | None = None) -> Path:
    """The file of ``group/option`` (``.yaml`` optional), or ``config`` for the primary one."""
    root = root or config_dir()
    rel = name.removesuffix(".yaml").strip("/")
    path = root / f"{rel}.yaml"
    if not rel or ".." in Path(rel).parts or not path.is_file():
        raise NoSuchOption(f"{name}: no packaged option of that name ({USE})")
    return path


def copy(name: str, dest: Path, *, force: bool = False, root: Path | None = None) -> Path:
    """Copy option ``name`` to ``dest`` (a file, or a folder to keep its file name in);
    refuse to replace a file unless ``force``. Returns the file written."""
    src = source(name, root)
    if dest.is_dir() or str(dest).endswith(("/", "\\")):
        dest = dest / src.name
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists: pass --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def how_to_select(name: str, dest: Path) -> str | None:
    """The command that selects a copied option, when ``dest`` sits in a config folder laid
    out like the packaged one (``conf/dataset/my_data.yaml`` for a dataset option)."""
    group = Path(name.removesuffix(".yaml").strip("/")).parent.parts
    folder = dest.parent
    if not group or folder.parts[-len(group) :] != group:
        return None
    conf = folder.parents[len(group) - 1]
    key = "/".join(group)
    return f"loaderbench --config-dir {conf} {key}={dest.stem}"


def _list(root: Path) -> str:
    found = options(root)
    width = max(map(len, found)) + 2
    lines = [f"packaged configs in {root}:"]
    for group, names in found.items():
        what = "  ".join(names) if names else "(the primary config)"
        lines.append(f"  {group:<{width}}{what}")
    lines.append(
        "copy one to edit: loaderbench-config copy dataset/custom ./conf/dataset/my_data.yaml"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loaderbench-config", description="List loaderbench's packaged configs; copy one out."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every packaged group and its options")
    cp = commands.add_parser("copy", help="copy one option out to edit")
    cp.add_argument("name", help="group/option, e.g. dataset/custom (or config)")
    cp.add_argument("dest", type=Path, help="the file to write, or a folder to write it in")
    cp.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    try:
        root = config_dir()
        if args.command == "list":
            print(_list(root))
            return 0
        written = copy(args.name, args.dest, force=args.force, root=root)
    except (NoSuchOption, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"copied {source(args.name, root).relative_to(root)} to {written}")
    if select := how_to_select(args.name, written):
        print(f"select it with: {select}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

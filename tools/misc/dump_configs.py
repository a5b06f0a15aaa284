"""Dump every resolved config under configs/ to JSON, one file per config.

Two dumps taken before and after a config rework compare with ``--compare``: every config
must resolve to the same dict apart from the changes meant.

Example::

    python tools/misc/dump_configs.py /tmp/cfg_before
    # ... rework the configs ...
    python tools/misc/dump_configs.py /tmp/cfg_after --compare /tmp/cfg_before
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]


def config_files(root: Path = REPO / 'configs') -> List[Path]:
    """Every config a user can pass to a tool: all ``.py`` files outside ``_base_`` folders."""
    return sorted(p for p in root.rglob('*.py') if '_base_' not in p.relative_to(root).parts)


def resolve(path: Path) -> dict:
    """The config as the tools see it, as plain JSON-able data (configs are data: resolving
    one imports no plugin code)."""
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    return json.loads(json.dumps(cfg.to_dict(), sort_keys=True, default=str))


def dump(out_dir: Path, root: Path = REPO / 'configs') -> Dict[str, dict]:
    """Write ``<out_dir>/<path relative to root, / as __>.json`` for every config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dumped = {}
    for path in config_files(root):
        name = str(path.relative_to(root)).replace('/', '__')[:-len('.py')] + '.json'
        dumped[name] = resolve(path)
        (out_dir / name).write_text(json.dumps(dumped[name], sort_keys=True, indent=1))
    return dumped


def differences(old, new, where: str = '') -> List[str]:
    """Paths (``model.neck.in_channels``) at which two resolved configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            path = f'{where}.{key}' if where else str(key)
            if key not in new:
                found.append(f'{path}: removed')
            elif key not in old:
                found.append(f'{path}: added {new[key]!r}')
            else:
                found += differences(old[key], new[key], path)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in differences(a, b, f'{where}[{i}]')]
    return [] if old == new else [f'{where}: {old!r} -> {new!r}']


def compare(before: Path, after: Path) -> Dict[str, List[str]]:
    """Differences per config file name; a config present in one dump only is one line."""
    names = sorted({p.name for p in before.glob('*.json')} | {p.name for p in after.glob('*.json')})
    report = {}
    for name in names:
        if not (before / name).is_file() or not (after / name).is_file():
            report[name] = [f'only in {before if (before / name).is_file() else after}']
            continue
        report[name] = differences(json.loads((before / name).read_text()),
                                   json.loads((after / name).read_text()))
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', type=Path, help='folder for the JSON files')
    parser.add_argument('--compare', type=Path, metavar='DIR',
                        help='an earlier dump: print what differs, exit 1 if anything does')
    args = parser.parse_args(argv)
    dumped = dump(args.out_dir)
    print(f'{len(dumped)} configs dumped to {args.out_dir}')
    if args.compare is None:
        return 0
    report = compare(args.compare, args.out_dir)
    for name, found in report.items():
        print(f'{name}: ' + ('identical' if not found else f'{len(found)} differences'))
        for line in found:
            print(f'    {line}')
    same = sum(not found for found in report.values())
    print(f'{same} of {len(report)} configs identical')
    return int(same != len(report))


if __name__ == '__main__':
    sys.exit(main())

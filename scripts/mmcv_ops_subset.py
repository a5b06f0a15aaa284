"""Cut an unpacked mmcv 2.1 source tree down to the compiled ops this project's configs reach.

mmcv compiles some 80 C++/CUDA files for dozens of ops; our configs call a handful of kernels
(``benchmarks/gpu/config_steps.py`` records them per config; docs/gpu.md lists them). This
keeps the sources of the ops named below (CPU and CUDA), drops the others, removes their
bindings from ``pybind.cpp`` and ``cuda/cudabind.cpp``, and makes mmcv's extension loader
answer an op that was left out with an error naming the fix instead of failing the import of
``mmcv.ops``.

    python scripts/mmcv_ops_subset.py MMCV_SRC [--ops nms,roi_align,focal_loss]
"""
import argparse
import re
import sys
from pathlib import Path

# nms.cpp: nms, softnms, nms_match; roi_align.cpp: RoIAlign; focal_loss.cpp: the sigmoid focal
# loss kernel that mmdet's FocalLoss calls for CUDA tensors; info.cpp: version queries.
DEFAULT_OPS = ('nms', 'roi_align', 'focal_loss')
ALWAYS = ('info', 'pybind')
MISSING_OP_ERROR = (
    "mmcv was built with only the ops effdet_plugin's configs use; '{fun}' was left out. "
    "Rebuild mmcv with all ops: EFFDET_MMCV_OPS=all make setup")


def statements(body: str):
    """Split the body of ``PYBIND11_MODULE`` into its ``m.def(...);`` statements."""
    return [s.strip() + ';' for s in body.split(';') if s.strip()]


def filter_pybind(path: Path, kept_functions: set) -> list:
    """Keep the ``m.def`` statements whose C++ function is defined in a kept file."""
    text = path.read_text()
    head, _, rest = text.partition('PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {')
    body, _, tail = rest.rpartition('}')
    kept, dropped = [], []
    for stmt in statements(body):
        func = re.search(r'&(\w+)', stmt).group(1)
        (kept if func in kept_functions else dropped).append(stmt)
    path.write_text(head + 'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n  ' +
                    '\n  '.join(kept) + '\n}' + tail)
    return [re.search(r'm\.def\("(\w+)"', s).group(1) for s in kept]


def cudabind_chunks(text: str):
    """Split cudabind.cpp into per-op chunks: declarations and wrappers up to the run of
    ``REGISTER_DEVICE_IMPL(...)`` statements that closes them."""
    chunk, in_register, after_register = [], False, False
    for line in text.splitlines(keepends=True):
        starts_register = line.startswith('REGISTER_DEVICE_IMPL(')
        if after_register and line.strip() and not starts_register and not in_register:
            yield ''.join(chunk)
            chunk, after_register = [], False
        chunk.append(line)
        if starts_register:
            in_register = True
        if in_register and line.rstrip().endswith(');'):
            in_register, after_register = False, True
    if chunk:
        yield ''.join(chunk)


def filter_cudabind(path: Path, kept_impls: set) -> None:
    text = path.read_text()
    includes = [line for line in text.splitlines(keepends=True) if line.startswith('#include')]
    kept = includes
    body = ''.join(line for line in text.splitlines(keepends=True)
                   if not line.startswith('#include'))
    for chunk in cudabind_chunks(body):
        registered = set(re.findall(r'REGISTER_DEVICE_IMPL\((\w+),', chunk))
        if not registered or registered & kept_impls:
            kept.append(chunk)
    path.write_text(''.join(kept))


def patch_ext_loader(path: Path) -> None:
    """A left-out op becomes a function that raises, so ``import mmcv.ops`` still works."""
    old = "            assert hasattr(ext, fun), f'{fun} miss in module {name}'\n"
    new = ("            if not hasattr(ext, fun):\n"
           "                setattr(ext, fun, _left_out(fun))\n")
    text = path.read_text()
    if old not in text:
        sys.exit(f'error: {path} changed: cannot patch the extension loader')
    helper = ("\n\ndef _left_out(fun):\n"
              "    def missing(*args, **kwargs):\n"
              f"        raise RuntimeError({MISSING_OP_ERROR!r}.format(fun=fun))\n"
              "    return missing\n")
    text = text.replace(old, new).replace('import torch\n', 'import torch\n' + helper, 1)
    path.write_text(text)


def subset(src: Path, ops) -> dict:
    csrc = src / 'mmcv' / 'ops' / 'csrc' / 'pytorch'
    if not (csrc / 'pybind.cpp').is_file():
        sys.exit(f'error: {src} is not an unpacked mmcv source tree (no {csrc}/pybind.cpp)')
    unknown = [op for op in ops if not (csrc / f'{op}.cpp').is_file()]
    if unknown:
        sys.exit(f'error: no such mmcv op source: {", ".join(unknown)} (see {csrc})')
    keep = set(ops) | set(ALWAYS)
    removed = 0
    for path in csrc.glob('*.cpp'):
        if path.stem not in keep:
            path.unlink()
            removed += 1
    for path in (csrc / 'cpu').glob('*.cpp'):
        if path.stem not in keep:
            path.unlink()
            removed += 1
    for path in (csrc / 'cuda').glob('*.cu'):
        if path.name.removesuffix('_cuda.cu') not in keep:
            path.unlink()
            removed += 1
    kept_text = ''.join((csrc / f'{op}.cpp').read_text() for op in keep - {'pybind'})
    functions = set(re.findall(r'^[\w:<>, ]+?\b(\w+)\s*\(', kept_text, re.M))
    bound = filter_pybind(csrc / 'pybind.cpp', functions)
    filter_cudabind(csrc / 'cuda' / 'cudabind.cpp', {f for f in functions if f.endswith('_impl')})
    patch_ext_loader(src / 'mmcv' / 'utils' / 'ext_loader.py')
    return dict(ops=sorted(ops), bound=bound, removed_files=removed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', type=Path, help='unpacked mmcv-2.1.0 source tree')
    parser.add_argument('--ops', default=','.join(DEFAULT_OPS),
                        help='comma-separated op sources to keep (names of csrc/pytorch/*.cpp)')
    args = parser.parse_args()
    result = subset(args.src, [op for op in args.ops.split(',') if op])
    print(f"mmcv ops kept: {', '.join(result['ops'])}; bound: {', '.join(result['bound'])}; "
          f"{result['removed_files']} source files left out")


if __name__ == '__main__':
    main()

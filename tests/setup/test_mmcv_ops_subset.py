"""scripts/mmcv_ops_subset.py on a miniature mmcv source tree laid out like mmcv 2.1's."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'scripts' / 'mmcv_ops_subset.py'

CUDABIND = '''#include "pytorch_cpp_helper.hpp"
#include "pytorch_device_registry.hpp"

void BallQueryLauncher(int b, const Tensor xyz);

void ball_query_forward_cuda(int b, const Tensor xyz) {
  BallQueryLauncher(b, xyz);
};

void ball_query_forward_impl(int b, const Tensor xyz);
REGISTER_DEVICE_IMPL(ball_query_forward_impl, CUDA, ball_query_forward_cuda);

Tensor NMSCUDAKernelLauncher(Tensor boxes, Tensor scores, float iou_threshold,
                             int offset);

Tensor nms_cuda(Tensor boxes, Tensor scores, float iou_threshold, int offset) {
  return NMSCUDAKernelLauncher(boxes, scores, iou_threshold, offset);
}

Tensor nms_impl(Tensor boxes, Tensor scores, float iou_threshold, int offset);
REGISTER_DEVICE_IMPL(nms_impl, CUDA,
                     nms_cuda);
void CarafeLauncher(const Tensor x);
void carafe_forward_cuda(const Tensor x) { CarafeLauncher(x); }
void carafe_forward_impl(const Tensor x);
REGISTER_DEVICE_IMPL(carafe_forward_impl, CUDA, carafe_forward_cuda);
'''

PYBIND = '''#include <torch/extension.h>

Tensor nms(Tensor boxes, Tensor scores, float iou_threshold, int offset);
void ball_query_forward(Tensor new_xyz_tensor, Tensor xyz_tensor);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ball_query_forward", &ball_query_forward, "ball_query_forward",
        py::arg("new_xyz_tensor"), py::arg("xyz_tensor"));
  m.def("nms", &nms, "nms (CPU/CUDA) ", py::arg("boxes"), py::arg("scores"),
        py::arg("iou_threshold"), py::arg("offset"));
  m.def("get_compiler_version", &get_compiler_version, "get_compiler_version");
}
'''

EXT_LOADER = '''import importlib
import os

import torch

if torch.__version__ != 'parrots':

    def load_ext(name, funcs):
        ext = importlib.import_module('mmcv.' + name)
        for fun in funcs:
            assert hasattr(ext, fun), f'{fun} miss in module {name}'
        return ext
'''


@pytest.fixture
def tree(tmp_path) -> Path:
    csrc = tmp_path / 'mmcv' / 'ops' / 'csrc' / 'pytorch'
    for sub in ('cpu', 'cuda'):
        (csrc / sub).mkdir(parents=True)
    (csrc / 'pybind.cpp').write_text(PYBIND)
    (csrc / 'info.cpp').write_text('std::string get_compiler_version() { return ""; }\n')
    (csrc / 'nms.cpp').write_text(
        'Tensor nms_impl(Tensor boxes, Tensor scores, float iou_threshold, int offset) {}\n'
        'Tensor nms(Tensor boxes, Tensor scores, float iou_threshold, int offset) {}\n')
    (csrc / 'ball_query.cpp').write_text('void ball_query_forward(Tensor a, Tensor b) {}\n')
    (csrc / 'cpu' / 'nms.cpp').write_text('// cpu nms\n')
    (csrc / 'cuda' / 'nms_cuda.cu').write_text('// nms kernel\n')
    (csrc / 'cuda' / 'ball_query_cuda.cu').write_text('// ball query kernel\n')
    (csrc / 'cuda' / 'cudabind.cpp').write_text(CUDABIND)
    (tmp_path / 'mmcv' / 'utils').mkdir()
    (tmp_path / 'mmcv' / 'utils' / 'ext_loader.py').write_text(EXT_LOADER)
    return tmp_path


def test_keeps_only_the_named_ops(tree):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tree), '--ops', 'nms'],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'bound: nms, get_compiler_version; 2 source files left out' in proc.stdout
    csrc = tree / 'mmcv' / 'ops' / 'csrc' / 'pytorch'
    assert sorted(p.name for p in csrc.rglob('*.c*')) == [
        'cudabind.cpp', 'info.cpp', 'nms.cpp', 'nms.cpp', 'nms_cuda.cu', 'pybind.cpp']
    pybind = (csrc / 'pybind.cpp').read_text()
    assert 'm.def("nms"' in pybind and 'ball_query' not in pybind.split('PYBIND11_MODULE')[1]
    cudabind = (csrc / 'cuda' / 'cudabind.cpp').read_text()
    assert cudabind.startswith('#include "pytorch_cpp_helper.hpp"\n#include')
    assert 'REGISTER_DEVICE_IMPL(nms_impl, CUDA,\n                     nms_cuda);' in cudabind
    assert 'NMSCUDAKernelLauncher' in cudabind
    assert 'BallQuery' not in cudabind and 'Carafe' not in cudabind


def test_left_out_op_raises_a_clear_error_instead_of_failing_the_import(tree, monkeypatch):
    subprocess.run([sys.executable, str(SCRIPT), str(tree), '--ops', 'nms'], check=True,
                   capture_output=True)
    spec = importlib.util.spec_from_file_location(
        'ext_loader', tree / 'mmcv' / 'utils' / 'ext_loader.py')
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)

    class Ext:
        def nms(self):
            return 'kept'
    ext = Ext()
    monkeypatch.setattr(loader.importlib, 'import_module', lambda name: ext)
    loaded = loader.load_ext('_ext', ['nms', 'ball_query_forward'])
    assert loaded.nms() == 'kept'
    with pytest.raises(RuntimeError, match="'ball_query_forward' was left out.*EFFDET_MMCV_OPS=all"):
        loaded.ball_query_forward()


def test_unknown_op_is_refused(tree):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tree), '--ops', 'nms,nope'],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and 'no such mmcv op source: nope' in proc.stderr

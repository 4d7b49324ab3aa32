"""Without a GPU: the CUDA kernel library that CI compiles loads, has the ABI the wrapper expects, and rejects
invalid arguments before touching a device (checks the ctypes signatures of plugins.cuda_op)."""

from __future__ import annotations

import ctypes

import pytest

from plugins import _libs


def test_cuda_library_loads_and_validates_arguments():
    if _libs.find_library(_libs.CUDA_LIBRARY) is None:
        pytest.skip("libsfadacof_cuda not built (no CUDA compiler at configure time; plugins/ci_build.sh builds it)")
    from plugins import cuda_op

    lib = cuda_op._lib()
    null = [None] * 10
    # kernel_size 4 with dilation 1: (K-1)*d odd -> SFADACOF_CUDA_BAD_PARAMS (-1), no launch.
    assert lib.sfadacof_cuda_synthesis(*null, 0, 0, 1, 3, 8, 8, 4, 1, ctypes.c_void_p(0)) == -1
    # float32 tensors with float16 offsets -> SFADACOF_CUDA_BAD_TYPE (-2).
    assert lib.sfadacof_cuda_synthesis(*null, 0, 1, 1, 3, 8, 8, 5, 1, ctypes.c_void_p(0)) == -2
    # Empty batch: nothing to launch, success without a device.
    assert lib.sfadacof_cuda_synthesis(*null, 0, 0, 0, 3, 8, 8, 5, 1, ctypes.c_void_p(0)) == 0
    assert b"even" in lib.sfadacof_cuda_status_string(-1)
    assert lib.sfadacof_cuda_synthesis_naive(*null, None, None, 0, 0, 1, 3, 8, 8, 4, 1, ctypes.c_void_p(0)) == -1

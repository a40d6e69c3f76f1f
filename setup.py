"""dlu_mm: DLU (Dynamic Lightweight Upsampling) for MMDetection / MMSegmentation.

Builds ``dlu_mm._ext`` (the native reassembly kernels) the way mmcv builds its
ops: a torch C++ extension, so install with ``--no-build-isolation`` (torch is
imported at build time). ``DLU_MM_WITH_EXT=0`` skips the extension; the
package then runs on its plain-PyTorch path.
"""
import glob
import os

from setuptools import find_packages, setup


def ext_modules():
    if os.environ.get('DLU_MM_WITH_EXT', '1') == '0':
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension
    sources = sorted(glob.glob('dlu_mm/ops/csrc/*.cpp'))
    if not sources:
        return [], {}
    ext = CppExtension(
        'dlu_mm._ext',
        sources,
        extra_compile_args=['-O3', '-fopenmp', '-std=c++17'],
        extra_link_args=['-fopenmp'])
    return [ext], {'build_ext': BuildExtension.with_options(use_ninja=True)}


extensions, cmdclass = ext_modules()

setup(
    name='dlu_mm',
    version='0.1.0',
    description='DLU (Dynamic Lightweight Upsampling, ICPR 2024) for '
    'MMDetection 3.x and MMSegmentation 1.x',
    packages=find_packages(include=['dlu_mm', 'dlu_mm.*']),
    python_requires='>=3.9',
    install_requires=['torch>=2.0', 'mmengine>=0.10,<1.0',
                      'mmcv>=2.0.0rc4,<2.2.0'],
    extras_require={'mmdet': ['mmdet>=3.0,<4.0', 'pycocotools'],
                    'mmseg': ['mmsegmentation>=1.0,<2.0', 'ftfy', 'regex']},
    ext_modules=extensions,
    cmdclass=cmdclass,
    zip_safe=False,
)

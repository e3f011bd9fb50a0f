# Two commands do all set-up on a fresh machine:
#   make demo   builds the environment and the sample videos, then runs the crossing
#               pipeline on them and writes runs/latest/report.json
#   make test   builds the environment and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SLO_S ?= 120
STAMP := $(VENV)/.installed

.PHONY: demo test samples system lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[video,aws,test]'
	# facenet-pytorch pins an old torch; its code runs on the torch installed above.
	$(BIN)/pip install -q --no-deps 'facenet-pytorch==2.6.0'
	touch $(STAMP)

system:
	./scripts/system-deps.sh

samples: $(STAMP) system
	$(BIN)/llama-prefect samples --out samples

demo: samples
	$(BIN)/llama-prefect run crossing --videos samples --slo-s $(SLO_S)

test: $(STAMP) system
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy llama_prefect

clean:
	rm -rf $(VENV) runs samples build *.egg-info

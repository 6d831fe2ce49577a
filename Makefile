# Two commands on a fresh machine (see README.md#quickstart):
#   make demo   install what is missing, build, run the gateway in front of a real MCP server
#   make test   install what is missing, run the whole test suite
.PHONY: demo test lint
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	python3 scripts/check-imports.py

# Two commands on a fresh machine (see README.md#quickstart):
#   make demo   install what is missing, build, run the gateway in front of a real MCP server
#   make test   install what is missing, run the whole test suite
# And: make fuzz (every fuzz target 60 s; fuzz/run.sh SECONDS for longer), make audit
# (cargo audit against the committed advisory snapshot). docs/RELIABILITY.md.
.PHONY: demo test lint fuzz audit
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	python3 scripts/check-imports.py
fuzz:
	bash fuzz/run.sh 60
audit:
	bash scripts/audit.sh

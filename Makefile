# The two set-up commands of the README. Each creates .venv and installs what it needs.
.PHONY: run test
run:
	deploy/local/run.sh
test:
	deploy/local/test.sh

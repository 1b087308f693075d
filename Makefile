# The two entry points a newcomer needs (see README.md).
.PHONY: setup example test

setup:
	./scripts/setup.sh

# The main job: the offline digits benchmark under MLPerf LoadGen, built and judged by mlbuild.
example: setup
	mlbuild test //bench:digits_offline

test: setup
	python3 -m pytest -q

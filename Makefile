# The two entry points a newcomer needs (see README.md).
.PHONY: setup example test digits-image

setup:
	./scripts/setup.sh

# The main job: the offline digits benchmark under MLPerf LoadGen, built and judged by mlbuild.
example: setup
	mlbuild test //bench:digits_offline

test: setup
	python3 -m pytest -q

# A container image for //training:digits_container, built from this machine's files (busybox,
# Python, the pinned numpy and mlperf-logging wheels) and pinned in toolchains/digits_image.yaml.
digits-image: setup
	python3 scripts/build_image.py --tag mlbuild/digits-train:local \
	  $$(grep -E '^(numpy|mlperf-logging)==' toolchains/requirements/training.txt | sed 's/^/--package /') \
	  --out .mlbuild/images/digits-train.tar --toolchain digits_image=toolchains/digits_image.yaml

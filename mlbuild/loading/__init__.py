"""Loading: labels, BUILD files, configurations and toolchain declarations."""

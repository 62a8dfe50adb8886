"""What every command stands on: the session and its options, the one AWS client factory, errors,
`--debug`, shell completion and the preflight checks of `doctor`."""

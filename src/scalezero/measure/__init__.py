"""One measured run: runner, open-loop replay, overhead bench, read bandwidth."""

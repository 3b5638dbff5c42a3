"""Processes for the demo, the tests and the benchmarks: start a private Redis, the
sandbox, workers, beat and the API on free ports, wait until each is ready, and stop
them all (``supervise``); SIGTERM taken as Ctrl-C so stopping cleans up (``signals``);
the settings that point every provider at the sandbox (``wiring``).

Not part of a deployment's running path. Ground floor: it imports nothing of ours (it
starts the ``notifyq`` command as a program).
"""

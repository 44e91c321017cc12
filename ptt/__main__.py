"""``python -m ptt``: the same command as the ``ptt`` console script, e.g. where only the
interpreter is on PATH (a venv not activated, a systemd unit, a container)."""

from ptt.cli.entry import main

if __name__ == "__main__":
    main()

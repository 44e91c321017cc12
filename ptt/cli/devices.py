"""``ptt devices``: the sound devices PortAudio sees, for --input/--output and the config."""

from __future__ import annotations

import click

from ptt.cli.options import json_option
from ptt.cli.output import emit_json, table


@click.command()
@json_option
def devices(as_json: bool) -> None:
    """List audio input and output devices with their default rates.

    \b
    Use the index or the name with --input/--output, or as input_device /
    output_device in the client config. '<' marks the default input, '>' the default output.
    """
    from ptt.audio.devices import list_devices

    found = list_devices()
    if as_json:
        emit_json([{"index": d.index, "name": d.name, "inputs": d.max_input_channels,
                    "outputs": d.max_output_channels, "default_rate": d.default_rate,
                    "host_api": d.host_api, "default_input": d.default_input,
                    "default_output": d.default_output} for d in found])
        return
    if not found:
        click.echo("no audio devices found (no sound card, and no PulseAudio or PipeWire "
                   "server running)")
        return
    click.echo(table(["index", "", "name", "in", "out", "rate", "api"],
                     [[d.index, ("<" if d.default_input else "") + (">" if d.default_output
                                                                      else ""),
                       d.name, d.max_input_channels, d.max_output_channels, d.default_rate,
                       d.host_api] for d in found]))
